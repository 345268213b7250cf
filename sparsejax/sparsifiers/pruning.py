"""Pruning sparsifiers: weights are really zero and stay zero.

`one_shot` prunes once (magnitude, random or saliency scores; per rule or
with one global threshold) and holds the masks.

`gradual_magnitude` (Zhu & Gupta) raises sparsity on a cubic schedule and
prunes by magnitude at each update step; pruned weights stay zero because
their updates are masked (`hard = True`, enforced by `Sparsifier.update`).
"""

import dataclasses

import jax
import jax.numpy as jnp

from sparsejax import masks as masks_lib
from sparsejax import patterns as patterns_lib
from sparsejax import scores as scores_lib
from sparsejax import schedules
from sparsejax import views
from sparsejax.sparsifiers import base


@dataclasses.dataclass(frozen=True, kw_only=True)
class GradualMagnitude(base.Sparsifier):
  """Cubic sparsity schedule; magnitude pruning at every `frequency` steps.

  Each rule's pattern (unstructured, block or channel) gives the final
  sparsity of its leaves; sparsity rises from `initial` at `begin_step` to the
  pattern's own at `end_step`.
  """

  begin_step: int = 0
  end_step: int
  frequency: int = 100
  initial: float = 0.0
  power: float = 3.0

  hard = True

  def check_leaf(self, path, leaf, pattern):
    if not hasattr(pattern, "sparsity"):
      raise TypeError(f"gradual magnitude pruning needs a pattern with a "
                      f"sparsity (unstructured, block, channel) at {path!r}; "
                      f"the rule gives {pattern}.")
    if float(pattern.sparsity) < self.initial:
      raise ValueError(f"final sparsity {pattern.sparsity} at {path!r} is "
                       f"below the initial sparsity {self.initial}.")
    pattern.check(jnp.shape(leaf), jnp.result_type(leaf), path)

  def sparsity_at(self, pattern, step):
    """The scheduled sparsity of a leaf whose final pattern is `pattern`."""
    return schedules.polynomial_sparsity(
        float(pattern.sparsity), self.initial, self.begin_step,
        end_step=self.end_step, frequency=self.frequency, power=self.power)(step)

  def is_update_step(self, step):
    since = step - self.begin_step
    return (since >= 0) & (since % self.frequency == 0) & (
        step <= self.end_step)

  def masks_at(self, params, step, state=None, grads=None):
    def one(path, pattern, w, *old):
      now = patterns_lib.with_sparsity(
          pattern, self.sparsity_at(pattern, step)).mask(jnp.abs(w), path)
      if not old:
        return now
      return jnp.where(self.is_update_step(step), now, old[0])
    if state is None:
      return self.map_targets(one, params)
    return self.map_targets(one, params, state.masks)

  def view_leaf(self, pattern, w, mask, step, path, scale=None):
    return views.ste(w, mask)

  def schedule_values(self, step):
    return {"is_update_step": self.is_update_step(step)}


def gradual_magnitude(rules, *, end_step, begin_step=0, frequency=100,
                      initial=0.0, power=3.0, distribution=None,
                      sparsity=None, on_unused="warn"):
  """Gradual magnitude pruning to each rule's sparsity by `end_step`.

  With `distribution="erk"` (or "uniform") and a global `sparsity`, the final
  per-layer sparsities come from that distribution instead of the rules.

  >>> import sparsejax as sj
  >>> sp = sj.gradual_magnitude(sj.Unstructured(0.75), end_step=2, frequency=1)
  >>> params = {"w": jnp.arange(1., 9.).reshape(4, 2)}
  >>> state = sp.init(params)
  >>> zeros = {"w": jnp.zeros((4, 2))}
  >>> for _ in range(2):
  ...   _, state = sp.update(params, zeros, state)
  >>> int(state.masks["w"].sum())
  2
  """
  return GradualMagnitude(rules, on_unused, distribution, sparsity,
                          begin_step=begin_step,
                          end_step=end_step, frequency=frequency,
                          initial=initial, power=power)


@dataclasses.dataclass(frozen=True, kw_only=True)
class OneShot(base.Sparsifier):
  """Prunes once at `prune_step` by a score, then holds the masks fixed.

  Attributes:
    score: "magnitude" |W|, "random", or "saliency" |W * grad| (needs the
      gradient, so `prune_step >= 1`: it uses the gradient of that step).
    prune_step: the step whose update computes the masks (0 = at `init`).
    global_sparsity: one threshold across all targeted leaves at this
      sparsity instead of each rule's own (global magnitude / saliency).
    seed: for random scores.
  """

  score: str = "magnitude"
  prune_step: int = 0
  global_sparsity: float | None = None
  seed: int = 0

  hard = True

  def __post_init__(self):
    super().__post_init__()
    if self.score not in ("magnitude", "random", "saliency"):
      raise ValueError(f"score must be 'magnitude', 'random' or 'saliency'; "
                       f"got {self.score!r}.")
    if self.score == "saliency" and self.prune_step < 1:
      raise ValueError("saliency pruning needs a gradient: prune_step >= 1.")
    if self.global_sparsity is not None:
      patterns_lib.check_sparsity(self.global_sparsity, "global_sparsity")

  def check_leaf(self, path, leaf, pattern):
    pattern.check(jnp.shape(leaf), jnp.result_type(leaf), path)

  def _scores(self, params, grads):
    if self.score == "magnitude":
      return scores_lib.magnitude(params)
    if self.score == "random":
      return scores_lib.random(params, jax.random.key(self.seed))
    return scores_lib.saliency(params, grads)

  def _prune(self, params, grads):
    scores = self._scores(params, grads)
    if self.global_sparsity is not None:
      return masks_lib.compute_global_masks(
          params, self.rules, self.global_sparsity, scores=scores,
          on_unused="ignore")
    return self.map_targets(lambda path, pattern, s: pattern.mask(s, path),
                            scores)

  def masks_at(self, params, step, state=None, grads=None):
    if state is None:
      if self.prune_step == 0:
        return self._prune(params, None)
      return self.map_targets(lambda path, _, w: jnp.ones(jnp.shape(w), bool),
                              params)
    if self.score == "saliency" and grads is None:
      raise ValueError("saliency pruning needs grads passed to update() "
                       "(sparsejax.wrap does).")
    return jax.lax.cond(step == self.prune_step,
                        lambda: self._prune(params, grads),
                        lambda: state.masks)

  def view_leaf(self, pattern, w, mask, step, path, scale=None):
    return views.ste(w, mask)


def one_shot(rules, *, score="magnitude", prune_step=0, global_sparsity=None,
             seed=0, distribution=None, sparsity=None, on_unused="warn"):
  """One-shot pruning by magnitude, random or saliency scores.

  >>> import sparsejax as sj
  >>> sp = sj.one_shot(sj.Unstructured(0.5))
  >>> sp.init({"w": jnp.array([[1., -3.], [2., 0.5]])}).masks["w"].astype(int)
  Array([[0, 1],
         [1, 0]], dtype=int32)
  """
  return OneShot(rules, on_unused, distribution, sparsity, score=score,
                 prune_step=prune_step, global_sparsity=global_sparsity,
                 seed=seed)
