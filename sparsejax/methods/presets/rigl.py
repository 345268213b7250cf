"""RigL: drop the smallest-magnitude weights, grow by largest `|gradient|`."""

from typing import Any, Callable

from sparsejax import scores
from sparsejax.methods import method as method_lib
from sparsejax.methods import policies
from sparsejax.methods.presets import _common


def rigl(rules: Any, *, t_end: int, alpha: float = 0.3, delta_t: int = 100,
         seed: int = 0, distribution: str | None = "erk",
         sparsity: float | None = None,
         score: Callable[..., Any] = scores.magnitude,
         grow: Callable[..., Any] = scores.gradient,
         on_unused: str = "warn") -> method_lib.Method:
  """Rigged Lottery (Evci et al. 2020); growth needs `grads` in `update`.

  Args:
    rules: `Rule`s with per-tensor `Unstructured` patterns.
    t_end: last update step (~75% of training).
    alpha: initial drop fraction (0.3), cosine-annealed.
    delta_t: steps between updates (100).
    seed: seeds the initial masks.
    distribution, sparsity: the global target and its distribution ("erk").
    score: what is dropped by (default `|W|`; e.g. `sparsejax.scores.movement`).
    grow: what is grown by (default `|gradient|` of the masked forward).
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.

  Returns:
    A hard `Method`.

  References:
    * Evci, U., Gale, T., Menick, J., Castro, P. S. and Elsen, E. "Rigging the
      Lottery: Making All Tickets Winners." ICML 2020. arXiv:1911.11134.

  >>> import sparsejax as sj
  >>> sp = sj.methods.rigl(sj.Unstructured(0.5), distribution=None, t_end=10,
  ...                      delta_t=1)
  >>> params = {"w": jnp.arange(1., 9.).reshape(4, 2)}
  >>> state = sp.init(params)
  >>> grads = {"w": jnp.where(state.masks["w"], 0., jnp.arange(8.).reshape(4, 2))}
  >>> _, new = sp.update(params, {"w": jnp.zeros((4, 2))}, state, grads=grads)
  >>> int(new.masks["w"].sum())
  4
  """
  _common.check_common(rules, seed=seed, sparsity=sparsity, score=score,
                       alpha=alpha)
  policy = policies.DropGrow(grow=grow, alpha=alpha, delta_t=delta_t,
                            t_end=t_end)
  return _common.hard(rules, score, policy, distribution=distribution,
                      sparsity=sparsity, on_unused=on_unused, seed=seed)
