"""Static random sparse training: a random mask at init, never changed."""

from typing import Any

from sparsejax import scores
from sparsejax.methods import method as method_lib
from sparsejax.methods import policies
from sparsejax.methods.presets import _common


def static_random(rules: Any, *, seed: int = 0,
                  distribution: str | None = None,
                  sparsity: float | None = None,
                  on_unused: str = "warn") -> method_lib.Method:
  """Random masks at `init` (per leaf, from `seed`), held for the whole run.

  Args:
    rules: `Rule`s, one `Rule`, or a bare pattern.
    seed: seeds the masks.
    distribution, sparsity: optional global target and its distribution.
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.

  Returns:
    A hard `Method`.

  References:
    * Liu, S., Chen, T., Chen, X., Shen, L., Mocanu, D. C., Wang, Z. and
      Pechenizkiy, M. "The Unreasonable Effectiveness of Random Pruning: Return
      of the Most Naive Baseline for Sparse Training." ICLR 2022.
      arXiv:2202.02643.

  >>> import sparsejax as sj
  >>> sp = sj.methods.static_random(sj.Unstructured(0.75))
  >>> int(sp.init({"w": jnp.ones((8, 8))}).masks["w"].sum())
  16
  """
  _common.check_common(rules, seed=seed, sparsity=sparsity)
  return _common.hard(rules, scores.random, policies.PruneAt(0),
                      distribution=distribution, sparsity=sparsity,
                      on_unused=on_unused, seed=seed)
