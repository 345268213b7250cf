"""Shared validators: one check per rule, one way to name a leaf in messages.

Every error names the parameter (and the leaf path, when there is one) and
the rule it broke.
"""

import math
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


def check_fraction(value: Any, name: str, *, closed: bool = False) -> Any:
  """Checks a fraction: in `[0, 1)` (a sparsity), or `[0, 1]` if `closed`.

  A traced value is returned unchecked (a schedule may drive it).

  >>> check_fraction(0.9, "sparsity")
  0.9
  >>> check_fraction(1.0, "sparsity")
  Traceback (most recent call last):
  ...
  ValueError: sparsity must be in [0, 1); got 1.0.
  """
  if isinstance(value, jax.core.Tracer):
    return value
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ParamTypeError(f"{name} must be a number; got {value!r}.") from None
  hi_ok = v <= 1.0 if closed else v < 1.0
  if not (math.isfinite(v) and v >= 0.0 and hi_ok):
    raise ValueError(
        f"{name} must be in [0, 1{']' if closed else ')'}; got {value!r}.")
  return value


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
