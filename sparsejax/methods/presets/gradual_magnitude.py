"""Gradual magnitude pruning (Zhu & Gupta): a cubic ramp of the sparsity."""

from typing import Any, Callable

from sparsejax import scores
from sparsejax.methods import forward
from sparsejax.methods import method as method_lib
from sparsejax.methods import policies
from sparsejax.methods.presets import _common
from sparsejax.methods import schedule


def gradual_magnitude(rules: Any, *, end_step: int, begin_step: int = 0,
                      frequency: int = 100, initial: float = 0.0,
                      power: float = 3.0, distribution: str | None = None,
                      sparsity: float | None = None,
                      score: Callable[..., Any] = scores.magnitude,
                      on_unused: str = "warn") -> method_lib.Method:
  """Prunes by magnitude every `frequency` steps up to each rule's sparsity.

  Sparsity rises from `initial` at `begin_step` to the pattern's own
  (unstructured, block or channel) at `end_step`; pruned weights stay zero
  because their updates are masked. With `distribution="erk"` (or "uniform")
  and a global `sparsity`, the final per-layer sparsities come from that
  distribution instead of the rules.

  Args:
    rules: `Rule`s, one `Rule`, or a bare pattern with a sparsity.
    end_step, begin_step, frequency, initial, power: the schedule.
    distribution, sparsity: optional global target and its distribution.
    score: what is pruned by (default `|W|`).
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.

  Returns:
    A hard `Method`.

  References:
    * Zhu, M. and Gupta, S. "To prune, or not to prune: exploring the efficacy
      of pruning for model compression." arXiv:1710.01878, 2017.

  >>> import sparsejax as sj
  >>> sp = sj.methods.gradual_magnitude(sj.Unstructured(0.75), end_step=2,
  ...                                   frequency=1)
  >>> params = {"w": jnp.arange(1., 9.).reshape(4, 2)}
  >>> state = sp.init(params)
  >>> zeros = {"w": jnp.zeros((4, 2))}
  >>> for _ in range(2):
  ...   _, state = sp.update(params, zeros, state)
  >>> int(state.masks["w"].sum())
  2
  """
  _common.check_common(rules, sparsity=sparsity, score=score,
                       initial=initial, power=power)
  return method_lib.Method(
      rules=rules, score=score,
      schedule=schedule.PolynomialSparsity(
          begin_step=begin_step, end_step=end_step, frequency=frequency,
          initial=initial, power=power),
      forward=forward.HardMask(),
      policy=policies.Refresh(every=frequency, begin=begin_step, end=end_step,
                              hard=True),
      distribution=distribution, sparsity=sparsity, on_unused=on_unused)
