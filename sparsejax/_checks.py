"""Shared validators: one check per rule, one way to name a leaf in messages.

Every error names the parameter (and the leaf path, when there is one) and
the rule it broke.
"""

import math
from typing import Any, Iterable

import jax
import numpy as np


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
    raise TypeError(f"{name} must be an int; got {value!r}.")
  if lo is not None and value < lo:
    raise ValueError(f"{name} must be >= {lo}; got {value}.")
  return int(value)


def check_nm(n: Any, m: Any, name: str = "N:M") -> tuple[int, int]:
  """Returns `(n, m)` as ints; raises unless `1 <= n <= m`.

  >>> check_nm(2, 4)
  (2, 4)
  >>> check_nm(5, 4, "target")
  Traceback (most recent call last):
  ...
  ValueError: target needs 1 <= n <= m; got 5:4.
  """
  for label, value in (("n", n), ("m", m)):
    if not is_int(value):
      raise TypeError(f"{name}.{label} must be an int; got {value!r}.")
  if not 1 <= n <= m:
    raise ValueError(f"{name} needs 1 <= n <= m; got {n}:{m}.")
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
    raise TypeError(f"{name} must be a number; got {value!r}.") from None
  hi_ok = v <= 1.0 if closed else v < 1.0
  if not (math.isfinite(v) and v >= 0.0 and hi_ok):
    raise ValueError(
        f"{name} must be in [0, 1{']' if closed else ')'}; got {value!r}.")
  return value


def check_nonnegative(value: Any, name: str) -> float:
  """Returns `value` as a float; raises unless it is finite and `>= 0`.

  >>> check_nonnegative(2e-4, "decay")
  0.0002
  """
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise TypeError(f"{name} must be a number; got {value!r}.") from None
  if not math.isfinite(v) or v < 0:
    raise ValueError(f"{name} must be >= 0; got {value!r}.")
  return v


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
