"""Per-layer sparsities from one global target.

Each function returns `{path: sparsity}` for the leaves the rules target; pass
it to `compute_masks(..., sparsity=...)`. The kept count over all targeted
leaves then equals `(1 - target) * total` up to one entry per leaf (each leaf
rounds its pruned count down).
"""

import math
import re
from typing import Any, Mapping

import numpy as np

from sparsejax import _checks
from sparsejax import patterns as patterns_lib
from sparsejax import rules as rules_lib


def _targets(params, rules):
  assignment = rules_lib.assign(params, rules)
  out = {}
  for path, leaf in rules_lib.named_leaves(params):
    rule = assignment[path]
    if rule is not None and rule.pattern is not None:
      out[path] = tuple(np.shape(leaf))
  if not out:
    raise ValueError("the rules target no leaf; nothing to distribute.")
  return out


def _pinned(shapes, fixed):
  pinned = {}
  for regex, sparsity in (fixed or {}).items():
    _checks.check_fraction(sparsity, f"fixed[{regex!r}]")
    hits = [p for p in shapes if re.fullmatch(regex, p)]
    if not hits:
      raise ValueError(f"fixed sparsity {regex!r} matches no targeted leaf; "
                       f"targeted leaves: {list(shapes)[:8]}")
    for path in hits:
      pinned.setdefault(path, float(sparsity))
  return pinned


def uniform(params: Any, rules: Any, sparsity: float, *,
            fixed: Mapping[str, float] | None = None) -> dict[str, float]:
  """Every targeted leaf gets `sparsity`, except those pinned in `fixed`.

  With `fixed`, the remaining leaves share one sparsity chosen so the global
  total still equals the target.

  >>> from sparsejax.patterns import Unstructured
  >>> params = {"a": jnp.ones((10, 10)), "b": jnp.ones((10, 10))}
  >>> uniform(params, Unstructured(0.5), 0.5, fixed={"a": 0.2})
  {'a': 0.2, 'b': 0.8}
  """
  return _solve(_targets(params, rules), sparsity, fixed,
                lambda shape: 1.0, cap=False)


def erk(params: Any, rules: Any, sparsity: float, *, power: float = 1.0,
        fixed: Mapping[str, float] | None = None) -> dict[str, float]:
  """Erdos-Renyi-Kernel: density proportional to `(sum(dims) / prod(dims))**power`.

  Solves `sum_l eps * p_l * N_l = (1 - s) * sum_l N_l`; a layer whose density
  `eps * p_l` would exceed 1 becomes dense and eps is solved again over the
  rest. Leaves pinned in `fixed` (`{path_regex: sparsity}`) keep their value.

  >>> from sparsejax.patterns import Unstructured
  >>> params = {"small": jnp.ones((4, 4)), "big": jnp.ones((64, 64))}
  >>> d = erk(params, Unstructured(0.9), 0.9)
  >>> d["small"] < d["big"]
  True
  """
  def weight(shape):
    return (sum(shape) / math.prod(shape)) ** power
  return _solve(_targets(params, rules), sparsity, fixed, weight, cap=True)


def _solve(shapes, sparsity, fixed, weight, cap):
  _checks.check_fraction(sparsity, "sparsity")
  sizes = {p: math.prod(s) for p, s in shapes.items()}
  pinned = _pinned(shapes, fixed)
  kept_budget = (1.0 - sparsity) * sum(sizes.values())
  kept_budget -= sum((1.0 - s) * sizes[p] for p, s in pinned.items())
  free = [p for p in shapes if p not in pinned]
  dense = set()
  while True:
    open_paths = [p for p in free if p not in dense]
    budget = kept_budget - sum(sizes[p] for p in dense)
    denom = sum(weight(shapes[p]) * sizes[p] for p in open_paths)
    eps = budget / denom if denom else 0.0
    over = [p for p in open_paths if eps * weight(shapes[p]) > 1.0]
    if not over or not cap:
      break
    dense.update(over)
  if budget < -1e-9 or (not cap and eps > 1.0 + 1e-9):
    raise ValueError(f"global sparsity {sparsity} cannot be met with the "
                     f"fixed sparsities {fixed}.")
  out = {}
  for path in shapes:
    if path in pinned:
      out[path] = pinned[path]
    elif path in dense:
      out[path] = 0.0
    else:
      out[path] = float(max(1.0 - eps * weight(shapes[path]), 0.0))
      if out[path] >= 1.0:
        raise ValueError(f"global sparsity {sparsity} leaves nothing to keep "
                         f"at {path!r} given the fixed sparsities {fixed}.")
  return out
