"""Schedules: ``step -> value`` callables for sparsity, phases, decay and N:M.

Every schedule here is a plain callable of the optimizer step, compatible with
optax schedules: it accepts a Python int or a traced int32 scalar and returns
JAX scalars, so changing the step inside a jitted train step never retraces.
Everything that changes the *shape* of the computation (the set of N:M frames
of structure decay) is static; the active frame is selected at run time with
:func:`switch_frames` (``lax.switch``), so a frame change never recompiles.

:class:`NMSchedule` bundles the progressive-gradient-flow recipe (dense phase,
sparse phase with mask decay and/or structure decay, fine-tune phase) into one
inspectable object shared by training, logging, plots and tests.

Any step is accepted: a negative step counts as step 0 (the start) and a
Python int beyond int32 as the largest int32, so every schedule returns a
value in its documented range for every step. A custom ``t -> beta``
callable's output is clipped to ``[0, 1]``; a NaN (or ±inf) from it raises,
when the compiled call runs if it is traced (``sparsejax._checks``).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Callable, NamedTuple, Sequence

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from sparsejax import _checks

__all__ = [
    "polynomial_sparsity",
    "Phases",
    "DENSE",
    "SPARSE",
    "FINETUNE",
    "linear_decay",
    "exponential_decay",
    "sdgf_frames",
    "frame_index",
    "switch_frames",
    "check_frames_divide",
    "ScheduleState",
    "ScheduleWarning",
    "NMSchedule",
    "decay_rate",
]

Schedule = Callable[[Any], Any]
Frames = tuple[tuple[int, int], ...]

DENSE = 0
SPARSE = 1
FINETUNE = 2

# Defaults published with progressive gradient flow (tuned for runs of
# ~10^5 steps); a named decay without `c` instead takes its rate from the
# length of the sparse phase (`decay_rate`).
_DEFAULT_C = {"linear": 8e-4, "exponential": 1e-4}

# beta above this when the sparse phase ends (the hard-mask fine-tune or the
# exactly sparse export starts) is a cliff worth a warning.
_CLIFF_BETA = 0.05


class ScheduleWarning(UserWarning):
  """A schedule that will jump: beta still large when the hard mask starts."""


def decay_rate(decay: str, sparse_steps: int, end_beta: float = 0.01) -> float:
  """The rate at which a named decay reaches `end_beta` after `sparse_steps`.

  Linear: ``(1 - end_beta) / S``; exponential: ``-ln(end_beta) / S``.

  Args:
    decay: "linear" or "exponential".
    sparse_steps: ``S``, the length of the sparse phase (>= 1).
    end_beta: beta at the end of the sparse phase, in ``(0, 1)`` (``0`` is
      allowed for the linear decay).

  Returns:
    The rate ``c`` for :func:`linear_decay` / :func:`exponential_decay`.

  >>> round(decay_rate("exponential", 1000), 6)
  0.004605
  >>> decay_rate("linear", 100, 0.0)
  0.01
  """
  _checks.check_choice(decay, "decay", tuple(_DEFAULT_C))
  sparse_steps = _checks.check_int(sparse_steps, "`sparse_steps`", 1)
  end_beta = _checks.check_real(end_beta, "`end_beta`", 0.0, 1.0)
  if end_beta == 1.0 or (decay == "exponential" and end_beta == 0.0):
    raise ValueError(
        f"`end_beta` must be in (0, 1) for the {decay} decay (0 is allowed "
        f"for the linear one), got {end_beta}.")
  if decay == "linear":
    return (1.0 - end_beta) / sparse_steps
  return -math.log(end_beta) / sparse_steps


_INT32_MAX = int(np.iinfo(np.int32).max)


def _step(step: Any) -> jax.Array:
  """The step as int32, clamped to ``[0, int32 max]`` (negative: the start).

  >>> [int(_step(t)) for t in (-10, 0, 2**40)]
  [0, 0, 2147483647]
  """
  if _checks.is_int(step):
    step = min(max(int(step), 0), _INT32_MAX)
  return jnp.maximum(jnp.asarray(step, jnp.int32), 0)


# ----------------------------------------------------------------------------
# Gradual magnitude pruning.
# ----------------------------------------------------------------------------


def polynomial_sparsity(final: float,
                        initial: float = 0.0,
                        begin_step: int = 0,
                        *,
                        end_step: int,
                        frequency: int = 1,
                        power: float = 3) -> Schedule:
  """Zhu & Gupta gradual-pruning sparsity ``s_t``.

  ``s_t = s_f + (s_i - s_f) * (1 - (t' - t0) / (end_step - t0)) ** power``
  where ``t'`` is the last update step ``t0 + k * frequency <= t``; the value
  is constant between update steps, ``initial`` before ``begin_step`` and
  ``final`` from ``end_step`` on.

  Args:
    final: target sparsity ``s_f`` in ``[0, 1]``.
    initial: starting sparsity ``s_i`` in ``[0, final]``.
    begin_step: first update step ``t0``.
    end_step: step at which ``final`` is reached (``> begin_step``).
    frequency: update interval ``dt`` in steps.
    power: exponent (3 in the paper).

  Returns:
    A callable ``step -> float32 sparsity``.

  Raises:
    ValueError: on out-of-range arguments.

  >>> s = polynomial_sparsity(0.8, begin_step=0, end_step=100, frequency=10)
  >>> [round(float(s(t)), 4) for t in (0, 9, 10, 50, 100, 500)]
  [0.0, 0.0, 0.2168, 0.7, 0.8, 0.8]
  """
  final = _checks.check_real(final, "`final`", 0.0, 1.0)
  initial = _checks.check_real(initial, "`initial`", 0.0, final)
  begin_step = _checks.check_int(begin_step, "`begin_step`", 0)
  end_step = _checks.check_int(end_step, "`end_step`", begin_step + 1)
  frequency = _checks.check_int(frequency, "`frequency`", 1)
  power = _checks.check_real(power, "`power`", 0.0)
  span = end_step - begin_step

  def schedule(step):
    t = _step(step)
    since = jnp.clip(t - begin_step, 0, span)
    since = since - since % frequency
    frac = 1.0 - since.astype(jnp.float32) / span
    s = jnp.clip(final + (initial - final) * frac**power, initial, final)
    return jnp.where(t >= end_step, jnp.float32(final), s).astype(jnp.float32)

  return schedule


# ----------------------------------------------------------------------------
# Phases.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Phases:
  """Dense -> sparse -> fine-tune phases of a run of ``total_steps``.

  Steps ``[0, dense_steps)`` are dense, ``[dense_steps, total_steps -
  finetune_steps)`` sparse, the rest (and any step past the run) fine-tune.

  Attributes:
    total_steps: length of the run.
    dense_steps: dense warm-up steps.
    finetune_steps: final fine-tuning steps (hard mask, mask still
      recomputed every step).

  >>> p = Phases(100, dense_steps=10, finetune_steps=20)
  >>> [int(p.phase(t)) for t in (0, 9, 10, 79, 80, 150)]
  [0, 0, 1, 1, 2, 2]
  >>> [int(p.sparse_step(t)) for t in (0, 10, 25)]
  [0, 0, 15]
  """

  total_steps: int
  dense_steps: int = 0
  finetune_steps: int = 0

  def __post_init__(self):
    _checks.check_int(self.total_steps, "`total_steps`", 1)
    _checks.check_int(self.dense_steps, "`dense_steps`", 0)
    _checks.check_int(self.finetune_steps, "`finetune_steps`", 0)
    if self.dense_steps + self.finetune_steps >= self.total_steps:
      raise ValueError(
          f"dense_steps ({self.dense_steps}) + finetune_steps "
          f"({self.finetune_steps}) must be < total_steps ({self.total_steps}) "
          "so that the sparse phase has at least one step.")

  @property
  def sparse_begin(self) -> int:
    """First step of the sparse phase."""
    return self.dense_steps

  @property
  def sparse_end(self) -> int:
    """First step of the fine-tune phase."""
    return self.total_steps - self.finetune_steps

  @property
  def sparse_steps(self) -> int:
    """Length of the sparse phase."""
    return self.sparse_end - self.sparse_begin

  def phase(self, step: Any) -> jax.Array:
    """Phase code as int32: 0 (dense), 1 (sparse) or 2 (fine-tune).

    >>> int(Phases(10, dense_steps=2).phase(1))
    0
    """
    t = _step(step)
    return ((t >= self.sparse_begin).astype(jnp.int32) +
            (t >= self.sparse_end).astype(jnp.int32))

  def sparse_step(self, step: Any) -> jax.Array:
    """Steps since the sparse phase began, clamped at 0 (int32).

    >>> int(Phases(10, dense_steps=2).sparse_step(5))
    3
    """
    return jnp.maximum(_step(step) - self.sparse_begin, 0)


# ----------------------------------------------------------------------------
# Mask-decay (MDGF) beta.
# ----------------------------------------------------------------------------


def linear_decay(c: float = _DEFAULT_C["linear"]) -> Schedule:
  """Linear mask decay ``beta_t = max(1 - c*t, 0)``.

  ``t`` counts from the start of the sparse phase (see
  :meth:`Phases.sparse_step`).

  Args:
    c: decay rate per step (>= 0); 8e-4 is the small-config default.

  Returns:
    A callable ``t -> float32 beta``.

  >>> b = linear_decay(0.1)
  >>> [round(float(b(t)), 4) for t in (0, 5, 20)]
  [1.0, 0.5, 0.0]
  """
  c = _checks.check_real(c, "`c`", 0.0)

  def schedule(t):
    t = _step(t).astype(jnp.float32)
    return jnp.maximum(1.0 - c * t, 0.0)

  return schedule


def exponential_decay(c: float = _DEFAULT_C["exponential"]) -> Schedule:
  """Exponential mask decay ``beta_t = exp(-c*t)``.

  Args:
    c: decay rate per step (>= 0); 1e-4 is the published ViT default.

  Returns:
    A callable ``t -> float32 beta``.

  >>> b = exponential_decay(0.1)
  >>> round(float(b(10)), 4)
  0.3679
  """
  c = _checks.check_real(c, "`c`", 0.0)

  def schedule(t):
    t = _step(t).astype(jnp.float32)
    return jnp.exp(-c * t)

  return schedule


# ----------------------------------------------------------------------------
# Structure decay (SDGF) frames.
# ----------------------------------------------------------------------------



def sdgf_frames(n: int,
                m: int,
                kind: str | Sequence[Any] = "stepwise") -> Frames:
  """Static tuple of ``(n, m)`` patterns, one per structure-decay frame.

  * ``"stepwise"``: ``K = log2(m/n) + 1`` frames
    ``(m-1):m, (m/2):m, (m/4):m, ..., n:m`` (``m/n`` must be a power of two).
  * ``"geometric"``: ``K = 4`` frames ``n*2**(3-i) : m*2**(3-i)``; the group
    axis must be divisible by ``8*m``.
  * a list of ``(n, m)`` pairs: used as given; the last must be the target.

  Args:
    n: target kept entries per group.
    m: target group size.
    kind: ``"stepwise"``, ``"geometric"`` or a custom sequence of pairs.

  Returns:
    A tuple of ``(n, m)`` tuples, the target last.

  Raises:
    ValueError: on an invalid target, kind or custom list.

  >>> sdgf_frames(1, 8)
  ((7, 8), (4, 8), (2, 8), (1, 8))
  >>> sdgf_frames(1, 8, "geometric")
  ((8, 64), (4, 32), (2, 16), (1, 8))
  """
  n, m = _checks.check_nm(n, m, "the target")
  if isinstance(kind, str):
    if kind == "stepwise":
      ratio = m // n
      if m % n or ratio & (ratio - 1):
        raise ValueError(
            f"stepwise structure decay needs m/n to be a power of two, got "
            f"{n}:{m}.")
      k = ratio.bit_length()  # log2(m/n) + 1
      if k == 1:
        return ((n, m),)
      return ((m - 1, m),) + tuple((m >> i, m) for i in range(1, k))
    if kind == "geometric":
      return tuple((n << (3 - i), m << (3 - i)) for i in range(4))
    raise ValueError(
        f"`kind` must be 'stepwise', 'geometric' or a list of (n, m) pairs, "
        f"got {kind!r}.")
  try:
    frames = tuple(tuple(f) for f in kind)
  except TypeError:
    raise ValueError(
        f"`kind` must be 'stepwise', 'geometric' or a list of (n, m) pairs, "
        f"got {kind!r}.") from None
  if not frames:
    raise ValueError("`kind`: the custom frame list is empty.")
  out = []
  for i, f in enumerate(frames):
    if len(f) != 2:
      raise ValueError(f"`kind`: frame {i} must be an (n, m) pair, got {f!r}.")
    out.append(_checks.check_nm(f[0], f[1], f"frame {i}"))
  if out[-1] != (n, m):
    raise ValueError(
        f"`kind`: the last frame {out[-1]} must equal the target {(n, m)}.")
  return tuple(out)


def frame_index(step: Any, phases: Phases, num_frames: int) -> jax.Array:
  """Index of the active frame: the sparse phase split into equal frames.

  Frame ``i`` covers sparse steps ``[ceil(i*S/K), ceil((i+1)*S/K))`` for a
  sparse phase of ``S`` steps and ``K`` frames. Dense steps report frame 0,
  fine-tune steps frame ``K-1``. The boundaries are static integers, so the
  result is exact for any step and never overflows.

  Args:
    step: the optimizer step (int or traced int32).
    phases: the run's :class:`Phases`.
    num_frames: ``K``.

  Returns:
    int32 scalar in ``[0, K)``.

  >>> p = Phases(100, dense_steps=20, finetune_steps=0)
  >>> [int(frame_index(t, p, 4)) for t in (0, 20, 39, 40, 99, 200)]
  [0, 0, 0, 1, 3, 3]
  """
  k = _checks.check_int(num_frames, "`num_frames`", 1)
  s = phases.sparse_steps
  t = _step(step)
  idx = jnp.zeros((), jnp.int32)
  for i in range(1, k):
    boundary = phases.sparse_begin + -(-i * s // k)  # ceil(i*s/k)
    idx = idx + (t >= boundary).astype(jnp.int32)
  return idx


def switch_frames(frame_idx: Any, frames: Sequence[tuple[int, int]],
                  fn: Callable[..., Any], *operands: Any) -> Any:
  """Calls ``fn(n, m, *operands)`` for the active frame via ``lax.switch``.

  Every frame's branch is traced once with its static ``(n, m)``; the traced
  ``frame_idx`` picks one at run time, so moving to the next frame inside a
  jitted step does not recompile. All branches must return the same shapes
  and dtypes (e.g. a mask of the weight's shape). An out-of-range index is
  clamped by ``lax.switch``.

  Args:
    frame_idx: int scalar (traced or not).
    frames: static sequence of ``(n, m)`` pairs.
    fn: ``fn(n, m, *operands)`` with static ints ``n``, ``m``.
    *operands: arrays passed to every branch.

  Returns:
    The active branch's result.

  >>> frames = ((7, 8), (4, 8), (1, 8))
  >>> f = jax.jit(lambda i: switch_frames(i, frames, lambda n, m: n / m))
  >>> float(f(1))
  0.5
  """
  frames = tuple((int(n), int(m)) for n, m in frames)
  if not frames:
    raise ValueError("`frames` must not be empty.")
  if len(frames) == 1:
    return fn(*frames[0], *operands)
  branches = [
      (lambda *ops, n=n, m=m: fn(n, m, *ops)) for n, m in frames
  ]
  return lax.switch(jnp.asarray(frame_idx, jnp.int32), branches, *operands)


def check_frames_divide(axis_len: int, frames: Sequence[tuple[int, int]],
                        path: str = "") -> None:
  """Raises ValueError unless ``axis_len`` is divisible by every frame's m.

  Args:
    axis_len: length of the leaf's group axis.
    frames: the static frames.
    path: the leaf's name, used in the error.

  >>> check_frames_divide(64, sdgf_frames(1, 8, "geometric"), "mlp/kernel")
  >>> check_frames_divide(32, sdgf_frames(1, 8, "geometric"), "mlp/kernel")
  Traceback (most recent call last):
  ...
  ValueError: mlp/kernel: group axis of length 32 is not divisible by m=64 ...
  """
  for n, m in frames:
    if axis_len % m:
      raise ValueError(
          f"{path or 'leaf'}: group axis of length {axis_len} is not divisible "
          f"by m={m} of frame {n}:{m} (frames {tuple(frames)}; geometric "
          "structure decay needs the axis divisible by 8*M).")


# ----------------------------------------------------------------------------
# The combined schedule.
# ----------------------------------------------------------------------------


class ScheduleState(NamedTuple):
  """What an :class:`NMSchedule` prescribes at one step (traced scalars).

  Attributes:
    phase: int32, 0 dense / 1 sparse / 2 fine-tune.
    frame: int32 index into ``NMSchedule.frames``.
    n: int32, kept entries per group of the active frame.
    m: int32, group size of the active frame.
    beta: float32 mask-decay factor: 1 dense, decayed in the sparse phase
      (0 without mask decay), 0 in fine-tune.
    sparsity: float32, ``1 - n/m`` (0 in the dense phase).
  """

  phase: Any
  frame: Any
  n: Any
  m: Any
  beta: Any
  sparsity: Any


@dataclasses.dataclass(frozen=True)
class NMSchedule:
  """Progressive N:M schedule: phases, structure decay and mask decay.

  Attributes:
    target: the final ``(n, m)`` (or any object with integer ``n`` and ``m``
      attributes, such as an N:M pattern); stored as a tuple.
    phases: a :class:`Phases`.
    structure: ``None`` (the target throughout), ``"stepwise"``,
      ``"geometric"`` or a list of ``(n, m)`` ending at the target (SDGF).
    decay: ``None`` (hard mask, ``beta = 0`` in the sparse phase),
      ``"linear"``, ``"exponential"`` or any ``t -> beta`` callable such as an
      optax schedule (MDGF); ``t`` counts from the start of the sparse phase
      and the value is clipped to ``[0, 1]``.
    c: rate for a named ``decay``, kept as given; ``None`` (the default)
      takes it from the length of the sparse phase so that beta falls to
      ``end_beta`` when the sparse phase ends (:func:`decay_rate`). The
      published rates (linear 8e-4, exponential 1e-4) were tuned for runs of
      ~10^5 steps; pass them as ``c`` to reproduce those runs.
    end_beta: beta at the end of the sparse phase for a named ``decay``
      without ``c`` (default 0.01).
    warn: whether to warn (:class:`ScheduleWarning`) when beta is still
      above 0.05 at the end of the sparse phase, where it drops to 0 (the
      hard-mask fine-tune, or the exactly sparse export).

  Calling the schedule returns a :class:`ScheduleState` of traced scalars.
  The dense phase reports the first frame (with ``sparsity`` 0 and ``beta``
  1), the fine-tune phase the last frame (the target, ``beta`` 0). ``beta``
  decays continuously over the whole sparse phase, across frame changes
  (MDGF and SDGF combined). Select per-frame computations with
  ``switch_frames(state.frame, schedule.frames, fn)``.

  >>> sched = NMSchedule(target=(1, 8), phases=Phases(100, 10, 10),
  ...                    structure="stepwise", decay="linear", c=0.0125)
  >>> sched.frames
  ((7, 8), (4, 8), (2, 8), (1, 8))
  >>> st = sched(30)
  >>> int(st.phase), int(st.frame), int(st.n), int(st.m), float(st.beta)
  (1, 1, 4, 8, 0.75)
  >>> sched.table([0, 50, 95]).n
  array([7, 2, 1], dtype=int32)
  """

  target: tuple[int, int]
  phases: Phases
  structure: Any = None
  decay: Any = None
  c: float | None = None
  end_beta: float = 0.01
  warn: bool = dataclasses.field(default=True, repr=False, compare=False)
  frames: Frames = dataclasses.field(init=False, repr=False, compare=False)

  def __post_init__(self):
    target = self.target
    if hasattr(target, "n") and hasattr(target, "m"):  # An N:M pattern object.
      target = (target.n, target.m)
    try:
      n, m = target
    except (TypeError, ValueError):
      raise ValueError(
          f"`target` must be an (n, m) pair, got {self.target!r}.") from None
    n, m = _checks.check_nm(n, m, "`target`")
    object.__setattr__(self, "target", (n, m))
    if not isinstance(self.phases, Phases):
      raise ValueError(
          f"`phases` must be a Phases instance, got {self.phases!r}.")
    if self.structure is None:
      frames = ((n, m),)
    else:
      frames = sdgf_frames(n, m, self.structure)
      if not isinstance(self.structure, str):
        object.__setattr__(self, "structure", frames)
    object.__setattr__(self, "frames", frames)
    if isinstance(self.decay, str):
      if self.decay not in _DEFAULT_C:
        raise ValueError(
            f"`decay` must be None, 'linear', 'exponential' or a callable, got "
            f"{self.decay!r}.")
      if self.c is not None:
        _checks.check_real(self.c, "`c`", 0.0)
    elif self.decay is None or callable(self.decay):
      if self.c is not None:
        raise ValueError(
            "`c` applies only to decay='linear' or 'exponential'; put the rate "
            "inside a custom decay callable.")
    else:
      raise ValueError(
          f"`decay` must be None, 'linear', 'exponential' or a callable, got "
          f"{self.decay!r}.")
    if isinstance(self.decay, str) and self.c is None:
      decay_rate(self.decay, self.phases.sparse_steps, self.end_beta)
    if self.warn:
      self._warn_on_cliff()

  def _warn_on_cliff(self) -> None:
    """Warns when beta is above 0.05 as the sparse phase ends."""
    decay = self.beta_schedule()
    if decay is None:
      return
    end = self.phases.sparse_steps
    try:
      beta = float(np.clip(np.asarray(decay(end), np.float64), 0.0, 1.0))
    except (TypeError, jax.errors.ConcretizationTypeError):
      return  # A decay that cannot be evaluated outside jit: not checked.
    if beta > _CLIFF_BETA:
      after = ("the hard-mask fine-tune" if self.phases.finetune_steps else
               "the exactly sparse export")
      if not isinstance(self.decay, str):
        fix = f"make the decay reach {_CLIFF_BETA} by t = {end}"
      elif self.c is None:
        fix = f"lower `end_beta` (now {self.end_beta})"
      else:
        fix = (f"leave `c` unset to take the rate from the sparse phase "
               f"({end} steps), or raise it")
      warnings.warn(
          f"mask decay: beta is still {beta:.3g} when the sparse phase ends "
          f"(step {self.phases.sparse_end}) and drops to 0 there ({after}), a "
          f"jump the loss will show; {fix}.", ScheduleWarning, stacklevel=4)

  @property
  def num_frames(self) -> int:
    """Number of structure-decay frames ``K``."""
    return len(self.frames)

  def beta_schedule(self) -> Schedule | None:
    """The ``t -> beta`` callable (``t`` from the sparse-phase start), if any.

    >>> NMSchedule((2, 4), Phases(10), decay="exponential").beta_schedule()(0)
    Array(1., dtype=float32)
    """
    if self.decay is None:
      return None
    if isinstance(self.decay, str):
      c = self.c
      if c is None:
        c = decay_rate(self.decay, self.phases.sparse_steps, self.end_beta)
      make = linear_decay if self.decay == "linear" else exponential_decay
      return make(c)
    return self.decay

  def __call__(self, step: Any) -> ScheduleState:
    t = _step(step)
    phase = self.phases.phase(t)
    frame = frame_index(t, self.phases, self.num_frames)
    ns = jnp.asarray([f[0] for f in self.frames], jnp.int32)
    ms = jnp.asarray([f[1] for f in self.frames], jnp.int32)
    n, m = ns[frame], ms[frame]
    decay = self.beta_schedule()
    if decay is None:
      sparse_beta = jnp.zeros((), jnp.float32)
    else:
      raw = jnp.asarray(decay(self.phases.sparse_step(t)), jnp.float32)
      raw = _checks.check_traced_range(raw, "NMSchedule.decay(t)", -math.inf)
      sparse_beta = jnp.clip(raw, 0.0, 1.0)
    beta = jnp.where(phase == DENSE, 1.0,
                     jnp.where(phase == SPARSE, sparse_beta, 0.0))
    sparsity = jnp.where(phase == DENSE, 0.0,
                         1.0 - n.astype(jnp.float32) / m.astype(jnp.float32))
    return ScheduleState(phase=phase, frame=frame, n=n, m=m,
                         beta=beta.astype(jnp.float32),
                         sparsity=sparsity.astype(jnp.float32))

  def table(self, steps: Any) -> ScheduleState:
    """Evaluates the schedule at many steps on the host (NumPy arrays).

    Args:
      steps: 1-D sequence of steps.

    Returns:
      A :class:`ScheduleState` of NumPy arrays, one entry per step.

    >>> s = NMSchedule((2, 4), Phases(10, dense_steps=2, finetune_steps=2))
    >>> s.table(range(10)).phase
    array([0, 0, 1, 1, 1, 1, 1, 1, 2, 2], dtype=int32)
    """
    steps = jnp.asarray(np.asarray(steps, np.int64), jnp.int32).reshape(-1)
    out = jax.jit(jax.vmap(self.__call__))(steps)
    return ScheduleState(*(np.asarray(x) for x in out))
