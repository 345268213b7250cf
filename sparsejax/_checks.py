"""Shared validators: one check per rule, one way to name a leaf in messages.

Every error names the parameter (and the leaf path, when there is one) and
the rule it broke.

Traced values. A hyperparameter that a schedule may drive (a sparsity, the
mask-decay beta, a decay rate) is often a tracer inside `jax.jit`, where its
value is unknown when the check runs. `check_traced_range` checks it either
way, with one message:

* a concrete value is checked at once (a `ValueError`);
* a traced value is checked when the compiled call runs: a `lax.cond` on the
  device calls a host callback (`jax.debug.callback`) only when the value is
  out of range or NaN, and the callback raises the same `ValueError`. JAX
  surfaces it from the jitted call as a `jax.errors.JaxRuntimeError` whose
  message holds the `ValueError`'s text, parameter and leaf included.

Raising was chosen over clamping: an out-of-range sparsity or beta is a bug
upstream (a schedule, a config), and no clamp is right for NaN, so the call
fails instead of training on a silent 0% or 100% mask. In range, the check
costs one scalar comparison and no host round trip.

Non-finite values. `check_finite` counts the NaN/±inf entries of a leaf and,
by `on_nonfinite`, warns (`NonFiniteWarning`), raises (`ValueError`) or does
nothing, naming the leaf; traced leaves report through the same callback.
"""

import math
import warnings
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np


class ParamTypeError(TypeError, ValueError):
  """A parameter of the wrong type.

  Also a `ValueError`, so a caller that catches either sees it (as NumPy's
  `AxisError` is both a `ValueError` and an `IndexError`).

  >>> issubclass(ParamTypeError, TypeError), issubclass(ParamTypeError, ValueError)
  (True, True)
  """


def where(path: str) -> str:
  """The suffix naming a leaf in a message (empty without a path).

  >>> where("fc1/kernel"), where("")
  (" at 'fc1/kernel'", '')
  """
  return f" at {path!r}" if path else ""


def is_int(value: Any) -> bool:
  """Whether `value` is a Python or NumPy integer (bool excluded).

  >>> is_int(3), is_int(True), is_int(3.0)
  (True, False, False)
  """
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(value: Any, name: str, lo: int | None = None) -> int:
  """Returns `value` as an int; raises unless it is an int `>= lo`.

  >>> check_int(100, "delta_t", 1)
  100
  >>> check_int(0, "delta_t", 1)
  Traceback (most recent call last):
  ...
  ValueError: delta_t must be >= 1; got 0.
  """
  if not is_int(value):
    raise ParamTypeError(f"{name} must be an int; got {value!r}.")
  if lo is not None and value < lo:
    raise ValueError(f"{name} must be >= {lo}; got {value}.")
  return int(value)


def check_nm(n: Any, m: Any, name: str = "N:M") -> tuple[int, int]:
  """Returns `(n, m)` as ints; raises unless they are ints with `1 <= n <= m`.

  >>> check_nm(2, 4)
  (2, 4)
  >>> check_nm(5, 4, "target")
  Traceback (most recent call last):
  ...
  ValueError: target needs n >= 1 and n <= m (`n` kept of every `m`); got 5:4.
  """
  for label, value in (("n", n), ("m", m)):
    if not is_int(value):
      raise ParamTypeError(f"{name}.{label} must be an int; got {value!r}.")
  if not 1 <= n <= m:
    raise ValueError(
        f"{name} needs n >= 1 and n <= m (`n` kept of every `m`); got "
        f"{n}:{m}.")
  return int(n), int(m)


def is_traced(value: Any) -> bool:
  """Whether `value` is a tracer (its value is known only at run time).

  >>> is_traced(0.5)
  False
  >>> jax.jit(lambda x: jnp.asarray(is_traced(x)))(0.5)
  Array(True, dtype=bool)
  """
  return isinstance(value, jax.core.Tracer)


def _range_text(lo: float, hi: float | None, hi_open: bool) -> str:
  if hi is None and lo == -math.inf:
    return "a finite number"
  if hi is None:
    return f">= {lo:g}"
  return f"in [{lo:g}, {hi:g}{')' if hi_open else ']'}"


def _in_range(v: Any, lo: float, hi: float | None, hi_open: bool) -> Any:
  """Elementwise: finite and in range (NumPy or jnp inputs alike)."""
  xp = jnp if is_traced(v) else np
  ok = xp.isfinite(v) & (v >= lo)
  if hi is not None:
    ok = ok & ((v < hi) if hi_open else (v <= hi))
  return ok


def check_traced_range(value: Any, name: str, lo: float,
                       hi: float | None = None, path: str = "", *,
                       hi_open: bool = False) -> Any:
  """Returns `value`; raises unless it is finite and in `[lo, hi]`.

  `hi=None` means no upper bound; `hi_open` excludes `hi`. A concrete value
  raises a `ValueError` at once; a traced one raises the same `ValueError`
  from a host callback when the jitted call runs (JAX reports it as a
  `jax.errors.JaxRuntimeError` carrying the message). See the module notes.

  >>> check_traced_range(0.5, "beta", 0, 1)
  0.5
  >>> check_traced_range(float("nan"), "sparsity", 0, 1, "fc/kernel",
  ...                    hi_open=True)
  Traceback (most recent call last):
  ...
  ValueError: sparsity at 'fc/kernel' must be in [0, 1); got nan.
  >>> f = jax.jit(lambda b: check_traced_range(b, "beta", 0, 1) * 2)
  >>> float(f(0.5))
  1.0
  """
  rule = _range_text(lo, hi, hi_open)
  if not is_traced(value):
    try:
      if value is None or isinstance(value, (str, bytes, bool)):
        raise TypeError
      v = np.asarray(value, np.float64)
    except (TypeError, ValueError):
      raise ParamTypeError(
          f"{name}{where(path)} must be a number; got {value!r}.") from None
    if not np.all(_in_range(v, lo, hi, hi_open)):
      shown = value if v.ndim else v.item()
      raise ValueError(f"{name}{where(path)} must be {rule}; got {shown!r}.")
    return value

  def fail(v):
    v = np.asarray(v, np.float64)
    bad = v[~_in_range(v, lo, hi, hi_open)]
    if bad.size:
      raise ValueError(f"{name}{where(path)} must be {rule}; got "
                       f"{float(bad.ravel()[0]):.6g} (a traced value, "
                       "checked when the compiled call ran).")

  v = jnp.asarray(value, jnp.float32)
  jax.lax.cond(jnp.all(_in_range(v, lo, hi, hi_open)), lambda x: None,
               lambda x: jax.debug.callback(fail, x), v)
  return value


def check_fraction(value: Any, name: str, *, closed: bool = False,
                   path: str = "", traced: bool = True) -> Any:
  """Checks a fraction: in `[0, 1)` (a sparsity), or `[0, 1]` if `closed`.

  A traced value (a schedule may drive it) is checked at run time by
  `check_traced_range`, or returned unchecked when `traced=False` (for a
  caller that checks it where it is used, with the leaf's path).

  >>> check_fraction(0.9, "sparsity")
  0.9
  >>> check_fraction(1.0, "sparsity")
  Traceback (most recent call last):
  ...
  ValueError: sparsity must be in [0, 1); got 1.0.
  """
  if is_traced(value) and not traced:
    return value
  return check_traced_range(value, name, 0.0, 1.0, path, hi_open=not closed)


def check_real(value: Any, name: str, lo: float,
               hi: float | None = None) -> float:
  """Returns `value` as a float; raises unless it is finite, in `[lo, hi]`.

  >>> check_real(0.5, "final", 0.0, 1.0)
  0.5
  >>> check_real(1.5, "final", 0.0, 1.0)
  Traceback (most recent call last):
  ...
  ValueError: final must be in [0.0, 1.0]; got 1.5.
  """
  try:
    if isinstance(value, (str, bytes, bool)):
      raise TypeError
    v = float(value)
  except (TypeError, ValueError):
    raise ParamTypeError(f"{name} must be a number; got {value!r}.") from None
  if not math.isfinite(v) or v < lo or (hi is not None and v > hi):
    rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
    raise ValueError(f"{name} must be {rng}; got {value!r}.")
  return v


def check_nonnegative(value: Any, name: str) -> float:
  """Returns `value` as a float; raises unless it is finite and `>= 0`.

  >>> check_nonnegative(2e-4, "decay")
  0.0002
  """
  return check_real(value, name, 0)


def check_floating(dtype: Any, name: str, path: str = "",
                   hint: str = "") -> None:
  """Raises unless `dtype` is a floating-point dtype (`hint` ends the message).

  >>> check_floating(np.int32, "scores", "fc/kernel")
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: scores must be floating-point at 'fc/kernel'; got dtype int32.
  """
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ParamTypeError(f"{name} must be floating-point{where(path)}; got "
                         f"dtype {np.dtype(dtype)}.{hint}")


def check_bool(value: Any, name: str) -> bool:
  """Returns `value`; raises unless it is a bool.

  >>> check_bool(1, "transposable")
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: transposable must be a bool; got 1.
  """
  if not isinstance(value, (bool, np.bool_)):
    raise ParamTypeError(f"{name} must be a bool; got {value!r}.")
  return bool(value)


def check_axis(value: Any, name: str, optional: bool = False) -> int | None:
  """Returns `value`; raises unless it is an int (or None, when `optional`).

  >>> check_axis(1.5, "NM.axis", optional=True)
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: NM.axis must be an int or None; got 1.5.
  """
  if value is None and optional:
    return None
  if not is_int(value):
    kind = "an int or None" if optional else "an int"
    raise ParamTypeError(f"{name} must be {kind}; got {value!r}.")
  return int(value)


class NonFiniteWarning(RuntimeWarning):
  """A leaf holds NaN or ±inf entries (`on_nonfinite="warn"`)."""


ON_NONFINITE = ("warn", "error", "ignore")


def check_finite(x: Any, name: str, path: str = "",
                 on_nonfinite: str = "warn", *, traced: bool = True) -> Any:
  """Returns `x`; reports its NaN/±inf entries by `on_nonfinite`.

  "warn" issues a `NonFiniteWarning`, "error" raises a `ValueError`,
  "ignore" does nothing; the message names the leaf and the count. Non-float
  leaves are never reported. A traced `x` is reported when the compiled call
  runs (see the module notes), or not checked at all when `traced=False`
  (the count is a reduction: on a sharded leaf it costs a collective).

  >>> check_finite(jnp.array([1.0, jnp.nan]), "params", "fc/kernel", "error")
  Traceback (most recent call last):
  ...
  ValueError: params at 'fc/kernel' hold 1 non-finite entries (NaN or ±inf) of 2; pass on_nonfinite='ignore' to skip this check.
  """
  check_choice(on_nonfinite, "on_nonfinite", ON_NONFINITE)
  if on_nonfinite == "ignore" or (is_traced(x) and not traced) or not (
      jnp.issubdtype(jnp.result_type(x), jnp.inexact)):
    return x
  size = int(np.prod(jnp.shape(x)))

  def report(count):
    count = int(np.sum(count))
    if not count:
      return
    message = (f"{name}{where(path)} hold {count} non-finite entries (NaN or "
               f"±inf) of {size}; pass on_nonfinite='ignore' to skip this "
               "check.")
    if on_nonfinite == "error":
      raise ValueError(message)
    warnings.warn(message, NonFiniteWarning, stacklevel=4)

  count = jnp.sum(~jnp.isfinite(x), dtype=jnp.int32)
  if is_traced(count):
    jax.lax.cond(count == 0, lambda c: None,
                 lambda c: jax.debug.callback(report, c), count)
  else:
    report(count)
  return x


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
  """Raises unless `value` is one of `choices`.

  >>> check_choice("erk", "distribution", (None, "uniform", "erk"))
  'erk'
  """
  choices = tuple(choices)
  if value not in choices:
    shown = ", ".join(repr(c) for c in choices)
    raise ValueError(f"{name} must be one of {shown}; got {value!r}.")
  return value


def check_nm_pattern(pattern: Any, path: str, what: str) -> Any:
  """Returns `pattern`; a TypeError naming the leaf unless it is plain N:M.

  >>> from sparsejax.patterns import Unstructured
  >>> check_nm_pattern(Unstructured(0.5), "fc/kernel", "S-STE")
  Traceback (most recent call last):
  ...
  TypeError: S-STE needs a (non-transposable) N:M pattern at 'fc/kernel'; the rule gives unstructured 50%.
  """
  if not pattern.is_nm or pattern.transposable:
    raise TypeError(f"{what} needs a (non-transposable) N:M pattern"
                    f"{where(path)}; the rule gives {pattern}.")
  return pattern
