"""Budgeted per-layer allocation from a sensitivity scan.

`allocate` picks, for every scanned layer, one candidate pattern or dense so
that the whole meets a budget at the least predicted loss. The prediction is
additive: the loss change of pruning several layers is taken to be the sum
of the changes each layer caused when pruned alone (`scan.deltas`). That
ignores interactions between layers (pruning one layer changes the inputs of
the next), so it is a ranking heuristic, not a promise: measure the loss of
the allocated rules.

The choice is a multiple-choice knapsack (one option per layer, integer
costs: entries kept or bytes). It is solved exactly by dynamic programming
over Pareto frontiers, with no discretisation of the budget: after layer k
the frontier holds every (cost, predicted loss) reachable by the first k
layers that no other reachable pair beats in both (lower or equal cost and
loss, one strictly), dropping pairs whose cost plus the cheapest options of
the remaining layers already exceeds the budget. Optimality: for an optimal
allocation, its first-k-layer part is either on the frontier or beaten by a
frontier pair; swapping that part in keeps the budget and does not raise the
predicted loss, so some optimum is built from frontier pairs only, and the
best feasible pair of the last frontier is optimal. Among equal predicted
losses the cheaper allocation wins. The frontier never holds more pairs than
distinct costs, so the work is at most layers x options x budget, and far
less in practice.
"""

from fractions import Fraction
from typing import NamedTuple

import numpy as np

from sparsejax import _checks
from sparsejax.allocation.scan import SensitivityScan
from sparsejax.allocation.scan import layer_rule
from sparsejax.patterns import Pattern
from sparsejax.rules import Rule

BUDGET_KINDS = ("params", "bytes")


class Allocation(NamedTuple):
  """One pattern (or dense) per scanned layer, and what it is predicted to do.

  Attributes:
    rules: one exact `Rule` per layer (pattern None: the layer stays dense),
      ready for `sj.compute_masks`, `sj.oneshot.prune` or a training method.
    patterns: the chosen pattern per layer (None: dense).
    predicted_delta: the sum of the chosen layers' scanned loss changes.
    kept: entries kept over the scanned layers.
    kept_fraction: `kept` over all entries of the scanned layers.
    nbytes: bytes of the scanned layers after export.
    cost: what the budget counts: `kept` or `nbytes`.
    capacity: the largest `cost` the budget allows.
  """

  rules: tuple[Rule, ...]
  patterns: tuple[Pattern | None, ...]
  predicted_delta: float
  kept: int
  kept_fraction: float
  nbytes: int
  cost: int
  capacity: int


def _check_scan(scan):
  if not isinstance(scan, SensitivityScan):
    raise _checks.ParamTypeError(
        f"scan must be a SensitivityScan (from sj.sensitivity); got "
        f"{type(scan).__name__}.")


def _capacity(scan, budget, budget_kind):
  """The budget as the largest integer cost allowed, and how to state it."""
  _checks.check_choice(budget_kind, "budget_kind", BUDGET_KINDS)
  if budget_kind == "params":
    budget = _checks.check_real(budget, "budget", 0.0, 1.0)
    total = int(scan.sizes.sum())
    return int(Fraction(str(budget)) * total), (
        lambda cost: f"{cost / total:.6g} of the {total} scanned parameters "
        "kept")
  budget = _checks.check_real(budget, "budget", 0.0)
  return int(budget), lambda cost: f"{cost} bytes"


def _options(scan, budget_kind):
  """Per layer: `(costs, deltas, pattern indices)`, dense first (index -1)."""
  cost = scan.kept if budget_kind == "params" else scan.nbytes
  dense = scan.sizes if budget_kind == "params" else scan.dense_bytes
  fits = scan.fits
  out = []
  for i in range(len(scan.layers)):
    idx = np.flatnonzero(fits[i])
    out.append((np.concatenate([[dense[i]], cost[i, idx]]).astype(np.int64),
                np.concatenate([[0.0], scan.deltas[i, idx]]),
                np.concatenate([[-1], idx]).astype(np.int64)))
  return out


def _allocation(scan, choice, budget_kind, capacity):
  """The `Allocation` of pattern indices per layer (-1: dense)."""
  patterns = tuple(None if j < 0 else scan.patterns[j] for j in choice)
  pairs = list(enumerate(choice))
  kept = sum(int(scan.sizes[i] if j < 0 else scan.kept[i, j])
             for i, j in pairs)
  nbytes = sum(int(scan.dense_bytes[i] if j < 0 else scan.nbytes[i, j])
               for i, j in pairs)
  delta = float(sum(scan.deltas[i, j] for i, j in pairs if j >= 0))
  rules = tuple(layer_rule(path, p) for path, p in zip(scan.layers, patterns))
  return Allocation(rules, patterns, delta, kept,
                    kept / int(scan.sizes.sum()), nbytes,
                    kept if budget_kind == "params" else nbytes, capacity)


def _pareto(costs, deltas):
  """Indices of the pairs no other pair beats, cheapest first."""
  order = np.lexsort((deltas, costs))
  best = np.minimum.accumulate(deltas[order])
  keep = np.ones(len(order), bool)
  keep[1:] = deltas[order][1:] < best[:-1]
  return order[keep]


def allocate(scan: SensitivityScan, budget: float, *,
             budget_kind: str = "params") -> Allocation:
  """The per-layer patterns of least predicted loss that meet a budget.

  Args:
    scan: a `SensitivityScan`.
    budget: for `budget_kind="params"`, the fraction of the scanned layers'
      entries kept, in [0, 1]; for `"bytes"`, their total bytes after
      `sj.deploy.export`. The allocation's cost never exceeds it.
    budget_kind: "params" or "bytes".

  Returns:
    An `Allocation`; `allocation.rules` holds one exact rule per layer.

  Raises:
    ValueError: a budget no allocation meets (the message states the
      smallest achievable one), a bad `budget` or `budget_kind`.

  >>> from sparsejax.patterns import NM
  >>> scan = SensitivityScan(("a", "b"), (NM(2, 4), NM(1, 4)),
  ...     np.array([[0.1, 0.5], [0.2, 0.3]]), 1.0,
  ...     np.array([[8, 4], [8, 4]]), np.array([[48, 32], [48, 32]]),
  ...     np.array([16, 16]), np.array([64, 64]),
  ...     ((None, None), (None, None)), "magnitude")
  >>> best = allocate(scan, 0.375)
  >>> [str(p) for p in best.patterns], best.kept_fraction, best.predicted_delta
  (['2:4', '1:4'], 0.375, 0.4)
  >>> allocate(scan, 0.2)
  Traceback (most recent call last):
  ...
  ValueError: budget=0.2 (budget_kind='params') cannot be met: the smallest achievable is 0.25 of the 32 scanned parameters kept (every layer at its cheapest fitting pattern).
  """
  _check_scan(scan)
  capacity, state = _capacity(scan, budget, budget_kind)
  options = _options(scan, budget_kind)
  cheapest = np.array([c.min() for c, _, _ in options], np.int64)
  if cheapest.sum() > capacity:
    raise ValueError(
        f"budget={budget!r} (budget_kind={budget_kind!r}) cannot be met: the "
        f"smallest achievable is {state(int(cheapest.sum()))} (every layer at "
        "its cheapest fitting pattern).")
  rest = np.concatenate([np.cumsum(cheapest[::-1])[::-1][1:], [0]])
  costs, deltas = np.zeros(1, np.int64), np.zeros(1)
  history = []  # per layer: (parent index, option index) of each pair
  for (opt_cost, opt_delta, _), after in zip(options, rest):
    cand_cost = (costs[:, None] + opt_cost[None, :]).ravel()
    cand_delta = (deltas[:, None] + opt_delta[None, :]).ravel()
    feasible = np.flatnonzero(cand_cost + after <= capacity)
    front = feasible[_pareto(cand_cost[feasible], cand_delta[feasible])]
    history.append(np.divmod(front, len(opt_cost)))
    costs, deltas = cand_cost[front], cand_delta[front]
  pick = int(np.argmin(deltas))  # the first minimum: the cheapest
  choice = []
  for (parents, picks), (_, _, idx) in zip(history[::-1], options[::-1]):
    choice.append(int(idx[picks[pick]]))
    pick = int(parents[pick])
  return _allocation(scan, choice[::-1], budget_kind, capacity)


def uniform(scan: SensitivityScan, budget: float, *,
            budget_kind: str = "params") -> Allocation:
  """The best single pattern for every layer that meets the same budget.

  The baseline for `allocate`: each candidate pattern (and all-dense) is
  applied to every layer it fits (layers it does not fit stay dense); among
  those meeting the budget, the one of least predicted loss (then least
  cost) is returned.

  Args:
    scan: a `SensitivityScan`.
    budget: as for `allocate`.
    budget_kind: "params" or "bytes".

  Returns:
    An `Allocation`.

  Raises:
    ValueError: no single pattern meets the budget (the message states the
      smallest budget one meets).

  Two layers of 16 entries; 2:4 costs 0.1 on either, 1:4 0.5 and 0.3:

  >>> from sparsejax.patterns import NM
  >>> kept, fits = np.array([[8, 4]] * 2), ((None, None),) * 2
  >>> scan = SensitivityScan(("a", "b"), (NM(2, 4), NM(1, 4)),
  ...     np.array([[0.1, 0.5], [0.1, 0.3]]), 1.0, kept, 4 * kept,
  ...     np.array([16, 16]), np.array([64, 64]), fits, "magnitude")
  >>> best = uniform(scan, 0.375)  # 2:4 everywhere keeps 0.5: too much
  >>> [str(p) for p in best.patterns], best.predicted_delta
  (['1:4', '1:4'], 0.8)
  >>> [str(p) for p in allocate(scan, 0.375).patterns]  # 0.4: better
  ['2:4', '1:4']
  """
  _check_scan(scan)
  capacity, state = _capacity(scan, budget, budget_kind)
  fits = scan.fits
  candidates = [[-1] * len(scan.layers)] + [
      [j if fits[i, j] else -1 for i in range(len(scan.layers))]
      for j in range(len(scan.patterns))]
  results = [_allocation(scan, c, budget_kind, capacity)
             for c in candidates]
  feasible = [r for r in results if r.cost <= capacity]
  if not feasible:
    smallest = min(r.cost for r in results)
    raise ValueError(
        f"budget={budget!r} (budget_kind={budget_kind!r}) cannot be met by "
        f"one pattern for every layer: the smallest such is {state(smallest)}.")
  return min(feasible, key=lambda r: (r.predicted_delta, r.cost))
