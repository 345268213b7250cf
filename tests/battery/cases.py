"""The bad-input battery's one shape: a call, the error it must raise, and
the words its message must contain.

Each `test_*.py` module in this folder holds a `CASES` list and runs it with
`check_case`; `test_size.py` counts them. A case passes only when the call
raises the expected exception type *and* the message names what was wrong
(the parameter, the leaf path, the rule), so a vague error fails the test as
surely as a silent acceptance does.
"""

import dataclasses
import re
import warnings
from typing import Any, Callable

import pytest


@dataclasses.dataclass(frozen=True)
class Case:
  """One bad input.

  Attributes:
    id: a short unique name (the pytest id).
    call: a thunk that makes the bad call.
    raises: the exception type expected; `Warning` subclasses mean the call
      must warn (and may return) instead of raising.
    names: regular expressions that must all occur in the message
      (case-insensitive): the parameter or leaf, and the rule.
  """

  id: str
  call: Callable[[], Any]
  raises: type
  names: tuple[str, ...]


def case(id: str, call: Callable[[], Any], raises: type, *names: str) -> Case:
  """Builds a `Case`; `names` are regexes the message must contain."""
  return Case(id, call, raises, tuple(names))


def params(cases: list[Case]) -> list[Any]:
  """`pytest.mark.parametrize` values, one per case, with the case's id."""
  ids = [c.id for c in cases]
  dup = {i for i in ids if ids.count(i) > 1}
  assert not dup, f"duplicate case ids: {sorted(dup)}"
  return [pytest.param(c, id=c.id) for c in cases]


def check_case(c: Case) -> str:
  """Runs a case; fails unless it raises (or warns) as declared and the
  message names everything in `c.names`. Returns the message."""
  if issubclass(c.raises, Warning):
    with warnings.catch_warnings(record=True) as seen:
      warnings.simplefilter("always")
      c.call()
    hits = [w for w in seen if issubclass(w.category, c.raises)]
    assert hits, f"{c.id}: expected a {c.raises.__name__}, none was issued"
    message = " | ".join(str(w.message) for w in hits)
  else:
    with pytest.raises(Exception) as info:
      c.call()
    assert isinstance(info.value, c.raises), (
        f"{c.id}: expected {c.raises.__name__}, got "
        f"{type(info.value).__name__}: {info.value}")
    message = str(info.value)
  for pattern in c.names:
    assert re.search(pattern, message, re.IGNORECASE), (
        f"{c.id}: message does not name {pattern!r}: {message}")
  return message
