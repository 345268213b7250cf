"""Straight-through sparsifiers: STE, SR-STE, S-STE and progressive N:M.

Each keeps dense shadow weights; the forward pass sees a sparse (or decayed)
view recomputed from |W| at every step. The formulas are in `sparsejax.views`
(the views) and `sparsejax.schedules` (the schedules).
"""

import dataclasses
import functools
from typing import Any, Callable

import jax.numpy as jnp

from sparsejax import masks as masks_lib
from sparsejax import patterns as patterns_lib
from sparsejax import schedules
from sparsejax import views
from sparsejax.sparsifiers import base


def _magnitude_masks(sparsifier, params):
  return sparsifier.map_targets(
      lambda path, pattern, w: pattern.mask(jnp.abs(w), path), params)


@dataclasses.dataclass(frozen=True)
class STE(base.Sparsifier):
  """Hard mask of |W| recomputed every step; identity backward.

  Works with any pattern (N:M, unstructured, block, channel).
  """

  def masks_at(self, params, step, state=None, grads=None):
    return _magnitude_masks(self, params)

  def view_leaf(self, pattern, w, mask, step, path, scale=None):
    return views.ste(w, mask)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SRSTE(STE):
  """STE forward; backward adds `decay * (1 - m) * W` (sparse-refined STE).

  Attributes:
    decay: lambda, a float or a schedule `step -> lambda` (default 2e-4, the
      published value for SGD at lr ~0.1; retune it for Adam-family
      optimizers, or use `sparsejax.decay.masked_decay` before the optimizer).
  """

  decay: float | Callable[[Any], Any] = 2e-4

  def __post_init__(self):
    super().__post_init__()
    if not callable(self.decay) and float(self.decay) < 0:
      raise ValueError(f"SR-STE decay must be >= 0; got {self.decay}.")

  def view_leaf(self, pattern, w, mask, step, path, scale=None):
    decay = self.decay(step) if callable(self.decay) else self.decay
    return views.srste(w, mask, decay)

  def schedule_values(self, step):
    decay = self.decay(step) if callable(self.decay) else self.decay
    return {"srste_decay": jnp.asarray(decay, jnp.float32)}


@dataclasses.dataclass(frozen=True)
class SSTE(base.Sparsifier):
  """S-STE: `W~ = beta * S(W)` (continuous N:M soft threshold).

  `beta = <W, S(W)> / <S(W), S(W)>` is computed per tensor at `init` and then
  frozen in `state.scales`. Backward is identity to W; beta gets no gradient.
  The masks in the state are the N:M support of S(W) (for diagnostics).
  """

  def check_leaf(self, path, leaf, pattern):
    base.nm_pattern(pattern, path).check(jnp.shape(leaf), jnp.result_type(leaf),
                                         path)

  def masks_at(self, params, step, state=None, grads=None):
    return _magnitude_masks(self, params)

  def init_scales(self, params, masks):
    return self.map_targets(
        lambda path, p, w: views.sste_scale(
            w, p.n, p.m, p.group_axis(w.ndim, path)), params)

  def view_leaf(self, pattern, w, mask, step, path, scale=None):
    return views.sste(w, pattern.n, pattern.m, scale,
                      pattern.group_axis(w.ndim, path))

  def sparse_params(self, params, state):
    """`beta * S(W)`: already exactly N:M, and what the model was trained on."""
    return self.view(params, state)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Progressive(base.Sparsifier):
  """Progressive N:M: dense, sparse and fine-tune phases with MDGF and/or SDGF.

  In the sparse phase the mask (N:M of |W|, recomputed every step) follows
  the structure-decay frames, and pruned weights are scaled by the mask-decay
  beta: `W~ = W * (m + (1 - m) * beta_t)`. The fine-tune phase uses the
  target pattern with a hard mask (beta = 0), still recomputed every step.

  Attributes:
    total_steps, dense_steps, finetune_steps: the phases.
    structure: None (target throughout), "stepwise", "geometric" or a list of
      (n, m) frames ending at each rule's target.
    decay: None (hard mask), "linear", "exponential" or `t -> beta`.
    c: rate of a named decay (defaults: linear 8e-4, exponential 1e-4).
    grad: "identity" (published reference) or "autodiff" (gradient scaled by
      the soft mask).
  """

  total_steps: int
  dense_steps: int = 0
  finetune_steps: int = 0
  structure: Any = None
  decay: Any = "exponential"
  c: float | None = None
  grad: str = "identity"

  def __post_init__(self):
    super().__post_init__()
    if self.grad not in ("identity", "autodiff"):
      raise ValueError(f"grad must be 'identity' or 'autodiff'; got "
                       f"{self.grad!r}.")
    self.phases  # validates the phase lengths  # noqa: B018

  @functools.cached_property
  def phases(self):
    return schedules.Phases(self.total_steps, self.dense_steps,
                            self.finetune_steps)

  def schedule(self, pattern):
    """The `NMSchedule` of one target pattern."""
    return _nm_schedule(self, pattern.n, pattern.m)

  def check_leaf(self, path, leaf, pattern):
    pattern = base.nm_pattern(pattern, path)
    pattern.check(jnp.shape(leaf), jnp.result_type(leaf), path)
    axis = pattern.group_axis(len(jnp.shape(leaf)), path)
    schedules.check_frames_divide(jnp.shape(leaf)[axis],
                                  self.schedule(pattern).frames, path)

  def masks_at(self, params, step, state=None, grads=None):
    def one(path, pattern, w):
      sched = self.schedule(pattern)
      frame = sched(step).frame
      return schedules.switch_frames(
          frame, sched.frames,
          lambda n, m, x: patterns_lib.NM(n, m, pattern.axis).mask(x, path),
          jnp.abs(w))
    return self.map_targets(one, params)

  def view_leaf(self, pattern, w, mask, step, path, scale=None):
    beta = _schedule_at(self, step).beta
    return views.decayed(w, mask, beta, grad=self.grad)

  def sparse_params(self, params, state):
    """Params under the target N:M hard mask (beta = 0) from the current |W|."""
    self._check_state(params, state)
    return masks_lib.apply_masks(params, _magnitude_masks(self, params))

  def schedule_values(self, step):
    st = _schedule_at(self, step)
    return {"phase": st.phase, "beta": st.beta}

  def diagnostics(self, state):
    """As the base, but `sparsity` is 0 in the dense phase (the forward pass
    is dense there); the masks' own sparsity stays in `mask_sparsity`."""
    out = super().diagnostics(state)
    if "sparsity" in out:
      out["mask_sparsity"] = out["sparsity"]
      dense = _schedule_at(self, state.step).phase == schedules.DENSE
      out["sparsity"] = jnp.where(dense, 0.0, out["sparsity"])
    return out

  def table(self, steps, target):
    """Host-side schedule values (phase, frame, n, m, beta) for one target.

    Args:
      steps: the steps to evaluate.
      target: the `(n, m)` of one rule's target pattern.
    """
    return _nm_schedule(self, *target).table(steps)


def _nm_schedule(sparsifier, n, m):
  return schedules.NMSchedule(
      target=(n, m), phases=sparsifier.phases, structure=sparsifier.structure,
      decay=sparsifier.decay, c=sparsifier.c)


def _schedule_at(sparsifier, step):
  # Phase and beta do not depend on the target; any (n, m) gives them.
  return schedules.NMSchedule(
      target=(1, 1), phases=sparsifier.phases, structure=None,
      decay=sparsifier.decay, c=sparsifier.c)(step)


def ste_nm(rules, *, on_unused="warn"):
  """Straight-through sparse training: hard mask of |W| every step.

  >>> import sparsejax as sj
  >>> sp = sj.ste_nm(sj.NM(2, 4))
  >>> params = {"w": jnp.array([[1.], [-3.], [2.], [0.5]])}
  >>> state = sp.init(params)
  >>> sp.view(params, state)["w"].ravel()
  Array([ 0., -3.,  2.,  0.], dtype=float32)
  """
  return STE(rules, on_unused)


def srste_nm(rules, *, decay=2e-4, on_unused="warn"):
  """SR-STE: STE forward, backward `g + decay * (1 - m) * W`.

  >>> import sparsejax as sj
  >>> sp = sj.srste_nm(sj.NM(1, 2), decay=0.5)
  >>> params = {"w": jnp.array([[1.], [-3.]])}
  >>> state = sp.init(params)
  >>> jax.grad(lambda p: sp.view(p, state)["w"].sum())(params)["w"].ravel()
  Array([1.5, 1. ], dtype=float32)
  """
  return SRSTE(rules, on_unused, decay=decay)


def sste(rules, *, on_unused="warn"):
  """S-STE: continuous N:M soft threshold with a frozen per-tensor scale.

  >>> import sparsejax as sj
  >>> sp = sj.sste(sj.NM(2, 4))
  >>> params = {"w": jnp.array([[4.], [-3.], [2.], [1.]])}
  >>> state = sp.init(params)
  >>> (sp.view(params, state)["w"] != 0).sum()
  Array(2, dtype=int32)
  """
  return SSTE(rules, on_unused)


def progressive_nm(rules=None, *, target=None, total_steps, dense_steps=0,
                   finetune_steps=0, structure=None, decay="exponential",
                   c=None, grad="identity", on_unused="warn"):
  """Progressive gradient flow for N:M (MDGF and/or SDGF) with phases.

  Args:
    rules: `Rule`s with N:M target patterns (e.g. 2:4 for attention, 1:8 for
      the MLP), or a single N:M pattern.
    target: an alias for `rules` when one N:M pattern applies everywhere.
    total_steps, dense_steps, finetune_steps: the phases of the run.
    structure: SDGF frames: None, "stepwise", "geometric" or a list.
    decay: MDGF decay of beta: None (hard), "linear", "exponential" or a
      callable `t -> beta` (t from the sparse-phase start).
    c: rate for a named decay.
    grad: "identity" or "autodiff" backward through the decayed view.

  >>> import sparsejax as sj
  >>> sp = sj.progressive_nm(target=sj.NM(1, 8), total_steps=100,
  ...                        structure="stepwise", decay="linear", c=0.01)
  >>> params = {"w": jnp.ones((8, 2))}
  >>> state = sp.init(params)
  >>> int(state.masks["w"][:, 0].sum())   # first frame 7:8
  7
  """
  if (rules is None) == (target is None):
    raise ValueError("give exactly one of `rules` and `target`.")
  sparsifier = Progressive(
      rules if rules is not None else target, on_unused,
      total_steps=total_steps, dense_steps=dense_steps,
      finetune_steps=finetune_steps, structure=structure, decay=decay, c=c,
      grad=grad)
  return sparsifier
