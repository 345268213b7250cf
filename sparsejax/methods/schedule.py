"""Schedules as method parts: which pattern is in force at a step.

Each part adapts `sparsejax.schedules` (where the formulas live):

* `Constant()`: each rule's pattern at every step.
* `PolynomialSparsity(...)`: the Zhu & Gupta cubic ramp of the sparsity.
* `ProgressiveNM(...)`: dense / sparse / fine-tune phases, SDGF frames of
  (n, m) and the MDGF decay beta.

A part has `mask(pattern, scores, step, path)`, `values(step) -> dict` of
scalars (views read them; diagnostics log them), `dense(step)` (a bool scalar
when the forward pass is dense at `step`, or None), `final_mask(pattern,
mask, scores_fn, path)` (the mask of the exactly sparse model) and
`check(pattern, shape, path)`.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax

from sparsejax import _checks
from sparsejax import patterns as patterns_lib
from sparsejax import schedules


@dataclasses.dataclass(frozen=True)
class Constant:
  """Each rule's own pattern at every step.

  >>> Constant().mask(patterns_lib.NM(1, 2), jnp.array([[1.], [2.]]), 0, "w")
  Array([[False],
         [ True]], dtype=bool)
  """

  def check(self, pattern: Any, shape: tuple, path: str) -> None:
    """Any pattern works."""

  def mask(self, pattern: Any, scores: jax.Array, step: Any,
           path: str) -> jax.Array:
    """The pattern's mask of `scores`."""
    return pattern.mask(scores, path)

  def values(self, step: Any) -> dict:
    """No scalars."""
    return {}

  def dense(self, step: Any) -> Any:
    """Never a dense phase."""
    return None

  def final_mask(self, pattern: Any, mask: jax.Array,
                 scores_fn: Callable[[], jax.Array], path: str) -> jax.Array:
    """The state's mask."""
    return mask


@dataclasses.dataclass(frozen=True, kw_only=True)
class PolynomialSparsity(Constant):
  """Sparsity rising from `initial` at `begin_step` to the pattern's own.

  `s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (end - t0)) ** power`, constant
  between update steps (`sparsejax.schedules.polynomial_sparsity`).

  >>> sched = PolynomialSparsity(end_step=100, frequency=10)
  >>> float(sched.sparsity_at(patterns_lib.Unstructured(0.8), 50))
  0.7
  """

  begin_step: int = 0
  end_step: int
  frequency: int = 100
  initial: float = 0.0
  power: float = 3.0

  def __post_init__(self):
    _checks.check_int(self.begin_step, "begin_step", 0)
    _checks.check_int(self.end_step, "end_step", self.begin_step + 1)
    _checks.check_int(self.frequency, "frequency", 1)
    _checks.check_fraction(self.initial, "initial")
    _checks.check_nonnegative(self.power, "power")

  def check(self, pattern: Any, shape: tuple, path: str) -> None:
    if not pattern.has_sparsity:
      raise TypeError(f"gradual magnitude pruning needs a pattern with a "
                      f"sparsity (unstructured, block, channel)"
                      f"{_checks.where(path)}; the rule gives {pattern}.")
    if float(pattern.sparsity) < self.initial:
      raise ValueError(f"final sparsity {pattern.sparsity}{_checks.where(path)}"
                       f" is below the initial sparsity {self.initial}.")

  def sparsity_at(self, pattern: Any, step: Any) -> jax.Array:
    """The scheduled sparsity of a leaf whose final pattern is `pattern`."""
    return schedules.polynomial_sparsity(
        float(pattern.sparsity), self.initial, self.begin_step,
        end_step=self.end_step, frequency=self.frequency, power=self.power)(step)

  def mask(self, pattern: Any, scores: jax.Array, step: Any,
           path: str) -> jax.Array:
    return pattern.with_sparsity(self.sparsity_at(pattern, step)).mask(
        scores, path)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProgressiveNM(Constant):
  """Progressive N:M: phases, structure decay (SDGF) and mask decay (MDGF).

  Attributes:
    total_steps, dense_steps, finetune_steps: the phases.
    structure: None (target throughout), "stepwise", "geometric" or a list of
      (n, m) frames ending at each rule's target.
    decay: None (hard mask), "linear", "exponential" or `t -> beta` (t from
      the sparse-phase start).
    c: rate of a named decay, kept as given; None takes it from the sparse
      phase's length so that beta reaches `end_beta` as it ends
      (`sparsejax.schedules.decay_rate`).
    end_beta: beta at the end of the sparse phase when `c` is None.

  A beta still above 0.05 when the sparse phase ends warns once, at
  construction (`sparsejax.schedules.ScheduleWarning`).

  >>> sched = ProgressiveNM(total_steps=100, structure="stepwise")
  >>> sched.table([0, 99], (1, 8)).n
  array([7, 1], dtype=int32)
  """

  total_steps: int
  dense_steps: int = 0
  finetune_steps: int = 0
  structure: Any = None
  decay: Any = "exponential"
  c: float | None = None
  end_beta: float = 0.01

  def __post_init__(self):
    if isinstance(self.structure, list):
      object.__setattr__(self, "structure",
                         tuple(tuple(f) for f in self.structure))
    self.phases  # validates the phase lengths  # noqa: B018
    self.nm_schedule(1, 1, warn=True)  # validates decay and c; warns once

  @functools.cached_property
  def phases(self) -> schedules.Phases:
    """The dense / sparse / fine-tune phases."""
    return schedules.Phases(self.total_steps, self.dense_steps,
                            self.finetune_steps)

  def nm_schedule(self, n: int, m: int, structure: Any = None,
                  warn: bool = False) -> schedules.NMSchedule:
    """The `NMSchedule` of a target `n:m`."""
    return schedules.NMSchedule(target=(n, m), phases=self.phases,
                                structure=structure, decay=self.decay,
                                c=self.c, end_beta=self.end_beta, warn=warn)

  def for_pattern(self, pattern: Any) -> schedules.NMSchedule:
    """The `NMSchedule` of one target pattern (with the structure frames)."""
    return self.nm_schedule(pattern.n, pattern.m, self.structure)

  def check(self, pattern: Any, shape: tuple, path: str) -> None:
    _checks.check_nm_pattern(pattern, path, "progressive N:M")
    axis = pattern.group_axis(len(shape), path)
    schedules.check_frames_divide(shape[axis],
                                  self.for_pattern(pattern).frames, path)

  def mask(self, pattern: Any, scores: jax.Array, step: Any,
           path: str) -> jax.Array:
    sched = self.for_pattern(pattern)
    return schedules.switch_frames(
        sched(step).frame, sched.frames,
        lambda n, m, x: patterns_lib.NM(n, m, pattern.axis).mask(x, path),
        scores)

  def values(self, step: Any) -> dict:
    # Phase and beta do not depend on the target; any (n, m) gives them.
    st = self.nm_schedule(1, 1)(step)
    return {"phase": st.phase, "beta": st.beta}

  def dense(self, step: Any) -> Any:
    return self.phases.phase(step) == schedules.DENSE

  def final_mask(self, pattern: Any, mask: jax.Array,
                 scores_fn: Callable[[], jax.Array], path: str) -> jax.Array:
    """The target N:M of the current scores (the last frame, beta = 0)."""
    return pattern.mask(scores_fn(), path)

  def table(self, steps: Any, target: tuple[int, int]) -> Any:
    """Host-side schedule values (phase, frame, n, m, beta) for one target.

    Args:
      steps: the steps to evaluate.
      target: the `(n, m)` of one rule's target pattern.
    """
    return self.nm_schedule(*target, self.structure).table(steps)
