"""SET: drop the smallest-magnitude weights, regrow at random."""

from typing import Any, Callable

from sparsejax import scores
from sparsejax.methods import method as method_lib
from sparsejax.methods import policies
from sparsejax.methods.presets import _common


def set_sparse(rules: Any, *, t_end: int, alpha: float = 0.3,
               delta_t: int = 100, seed: int = 0,
               distribution: str | None = "erk",
               sparsity: float | None = None,
               score: Callable[..., Any] = scores.magnitude,
               grow: Callable[..., Any] = scores.random,
               on_unused: str = "warn") -> method_lib.Method:
  """Sparse Evolutionary Training (Mocanu et al. 2018).

  `distribution="erk"` (the default) spreads the global `sparsity` over the
  targeted leaves; pass `distribution=None` to use each rule's own.

  Args:
    rules: `Rule`s with per-tensor `Unstructured` patterns.
    t_end: last update step (~75% of training).
    alpha: initial drop fraction (0.3), cosine-annealed.
    delta_t: steps between updates (100).
    seed: seeds the initial masks and the growth.
    distribution, sparsity: the global target and its distribution.
    score: what is dropped by (default `|W|`).
    grow: what is grown by (default random).
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.

  Returns:
    A hard `Method`.

  References:
    * Mocanu, D. C., Mocanu, E., Stone, P., Nguyen, P. H., Gibescu, M. and
      Liotta, A. "Scalable training of artificial neural networks with adaptive
      sparse connectivity inspired by network science." Nature Communications
      9, 2383 (2018). doi:10.1038/s41467-018-04316-3.

  >>> import sparsejax as sj
  >>> sp = sj.methods.set_sparse(sj.Unstructured(0.5), sparsity=0.5,
  ...                            t_end=10, delta_t=2)
  >>> params = {"w": jax.random.normal(jax.random.key(0), (8, 8))}
  >>> state = sp.init(params)
  >>> _, state = sp.update(params, {"w": jnp.zeros((8, 8))}, state)
  >>> _, state = sp.update(params, {"w": jnp.zeros((8, 8))}, state)
  >>> int(state.masks["w"].sum()), int(state.flips["w"]) > 0
  (32, True)
  """
  _common.check_common(rules, seed=seed, sparsity=sparsity, score=score,
                       alpha=alpha)
  policy = policies.DropGrow(grow=grow, alpha=alpha, delta_t=delta_t,
                            t_end=t_end)
  return _common.hard(rules, score, policy, distribution=distribution,
                      sparsity=sparsity, on_unused=on_unused, seed=seed)
