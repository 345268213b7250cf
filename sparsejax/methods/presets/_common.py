"""What the presets share: their checks at construction, and one
constructor of the hard-mask `Method`.

The parts (`PolynomialSparsity`, `DropGrow`, `SRSTE`, ...) check the ranges
of their fields; a preset also checks, before building them, that numbers are
numbers (not strings or bools, which `float()` would quietly accept), that
seeds are ints and that `rules` are rules, so every mistake is reported at
construction with the parameter's name.
"""

from typing import Any, Callable

import jax
import numpy as np

from sparsejax import _checks
from sparsejax import rules as rules_lib
from sparsejax.methods import forward
from sparsejax.methods import method as method_lib


def check_number(value: Any, name: str, *, optional: bool = False) -> Any:
  """Returns `value`; a `ParamTypeError` naming `name` unless it is a real
  number (a Python or NumPy scalar, or a 0-d numeric array; not a string or
  a bool). `optional` also lets None through.

  >>> check_number(0.5, "alpha")
  0.5
  >>> check_number("0.1", "decay")
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: decay must be a number; got the string '0.1'.
  """
  if value is None and optional:
    return value
  if isinstance(value, jax.core.Tracer):
    return value
  if isinstance(value, str):
    raise _checks.ParamTypeError(
        f"{name} must be a number; got the string {value!r}.")
  ok = not isinstance(value, (bool, np.bool_)) and np.ndim(value) == 0
  if ok:
    dtype = np.asarray(value).dtype
    ok = np.issubdtype(dtype, np.number) and dtype != np.bool_
  if not ok:
    raise _checks.ParamTypeError(f"{name} must be a number; got {value!r}.")
  return value


def check_numbers(**values: Any) -> None:
  """`check_number` of each named value (None allowed: an unset option).

  >>> check_numbers(alpha=0.3, sparsity=None)
  """
  for name, value in values.items():
    check_number(value, name, optional=True)


def check_seed(seed: Any) -> int:
  """Returns `seed`; raises unless it is an int (bools excluded).

  >>> check_seed(True)
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: seed must be an int; got True.
  """
  return _checks.check_int(seed, "seed")


def check_rules(rules: Any, name: str = "rules") -> Any:
  """Returns `rules`; raises unless they are `Rule`s, one `Rule` or a pattern.

  >>> check_rules("2:4")
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: rules must be sparsejax Rules, one Rule or a pattern (e.g. sj.NM(2, 4)); got the string '2:4'. Parse a rule string with sj.parse_rules('REGEX=PATTERN').
  """
  rules_lib.as_rules(rules, name)
  return rules


def check_callable(value: Any, name: str, what: str) -> Any:
  """Returns `value`; a `ParamTypeError` naming `name` unless it is callable.

  >>> check_callable("magnitude", "score", "a score from sparsejax.scores")
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: score must be a score from sparsejax.scores; got 'magnitude'.
  """
  if not callable(value):
    raise _checks.ParamTypeError(f"{name} must be {what}; got {value!r}.")
  return value


def check_common(rules: Any, *, seed: Any = 0, sparsity: Any = None,
                 score: Any = None, **numbers: Any) -> None:
  """The checks most presets share: rules, seed, global sparsity, score and
  any other numbers (by name).

  >>> check_common(".*=2:4")
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: rules must be sparsejax Rules, one Rule or a pattern (e.g. sj.NM(2, 4)); got the string '.*=2:4'. Parse a rule string with sj.parse_rules('REGEX=PATTERN').
  """
  check_rules(rules)
  check_seed(seed)
  check_numbers(sparsity=sparsity, **numbers)
  if score is not None:
    check_callable(score, "score", "a score from sparsejax.scores (e.g. "
                   "sj.scores.magnitude)")


def hard(rules: Any, score: Callable[..., Any], policy: Any,
         **options: Any) -> method_lib.Method:
  """A `Method` that masks the forward pass hard (`W * m`).

  Args:
    rules: `Rule`s, one `Rule`, or a bare pattern.
    score: what the policy ranks weights by.
    policy: when and how masks change.
    **options: the other `Method` fields (`distribution`, `sparsity`,
      `on_unused`, `seed`).

  >>> import sparsejax as sj
  >>> from sparsejax.methods import policies
  >>> hard(sj.NM(2, 4), sj.scores.magnitude, policies.PruneAt(0)).hard
  True
  """
  return method_lib.Method(rules=rules, score=score,
                           forward=forward.HardMask(), policy=policy,
                           **options)
