"""Sparsity summaries: per-leaf and total, as data and as a printed table.

This is the per-layer report of the library: `summarize(params, masks, rules)`
gives one row per leaf (its pattern, the N:M structure its mask actually
holds, kept entries and sparsity) and the totals; `str(summary)` or
`summary.table(dense=False)` prints it.
"""

import dataclasses
from typing import Any

import jax
import numpy as np

from sparsejax import _checks
from sparsejax import masks as masks_lib
from sparsejax import rules as rules_lib


def nm_reached(mask: Any, m: int, axis: int = 0) -> str:
  """The N:M structure a mask holds along `axis` for group size `m`.

  Returns `"n:m"` when every group keeps the same `n`, `"mixed (lo-hi of m)"`
  otherwise, and `"n/a"` when `m` does not divide the axis.

  >>> nm_reached(np.array([[1], [0], [1], [0]], bool), 4)
  '2:4'
  >>> nm_reached(np.array([[1], [1], [1], [0]], bool), 2)
  'mixed (1-2 of 2)'
  """
  m = _checks.check_int(m, "m", 1)
  mask = np.asarray(mask)
  if not _checks.is_int(axis) or not -mask.ndim <= axis < mask.ndim:
    raise ValueError(f"axis must be an int in [{-mask.ndim}, {mask.ndim}) "
                     f"for a mask of shape {mask.shape}; got {axis!r}.")
  mask = np.moveaxis(mask, axis, 0)
  if mask.shape[0] % m:
    return "n/a"
  counts = mask.reshape(mask.shape[0] // m, m, -1).sum(axis=1)
  lo, hi = int(counts.min()), int(counts.max())
  return f"{lo}:{m}" if lo == hi else f"mixed ({lo}-{hi} of {m})"


@dataclasses.dataclass(frozen=True)
class LeafSummary:
  """One leaf of a `Summary`.

  Attributes:
    path: the leaf's '/'-joined path.
    shape: its shape.
    pattern: the pattern's name (`"2:4"`, `"unstructured"`, ...), `"masked"`
      for a mask without a known rule, or `"dense"`.
    kept: entries the mask keeps.
    size: entries of the leaf.
    reached: for an N:M pattern, the structure the mask holds (see
      `nm_reached`); "" otherwise.
  """

  path: str
  shape: tuple[int, ...]
  pattern: str
  kept: int
  size: int
  reached: str = ""

  @property
  def sparsity(self) -> float:
    """Fraction of the leaf's entries the mask drops."""
    return 1.0 - self.kept / self.size if self.size else 0.0


@dataclasses.dataclass(frozen=True)
class Summary:
  """Per-leaf rows plus totals; `str(summary)` is a table."""

  leaves: tuple[LeafSummary, ...]

  @property
  def size(self) -> int:
    return sum(r.size for r in self.leaves)

  @property
  def kept(self) -> int:
    return sum(r.kept for r in self.leaves)

  @property
  def sparsity(self) -> float:
    """Sparsity over every leaf, dense ones included."""
    return 1.0 - self.kept / self.size if self.size else 0.0

  @property
  def masked(self) -> tuple[LeafSummary, ...]:
    """The rows of the masked leaves."""
    return tuple(r for r in self.leaves if r.pattern != "dense")

  @property
  def masked_sparsity(self) -> float:
    """Sparsity over the masked leaves only."""
    size = sum(r.size for r in self.masked)
    return 1.0 - sum(r.kept for r in self.masked) / size if size else 0.0

  def table(self, dense: bool = True) -> str:
    """The table as text; `dense=False` lists the masked leaves only.

    >>> s = Summary((LeafSummary("w", (4, 4), "2:4", 8, 16, "2:4"),
    ...              LeafSummary("b", (4,), "dense", 4, 4)))
    >>> print(s.table(dense=False))
    path   shape  pattern        reached  kept  size  sparsity
    -----  -----  -------------  -------  ----  ----  --------
    w      4x4    2:4            2:4      8     16    50.00%
    total         masked 50.00%           12    20    40.00%
    """
    header = ("path", "shape", "pattern", "reached", "kept", "size",
              "sparsity")
    shown = self.leaves if dense else self.masked
    rows = [(r.path, "x".join(map(str, r.shape)) or "()", r.pattern,
             r.reached, f"{r.kept:,}", f"{r.size:,}", f"{r.sparsity:.2%}")
            for r in shown]
    rows.append(("total", "", f"masked {self.masked_sparsity:.2%}", "",
                 f"{self.kept:,}", f"{self.size:,}", f"{self.sparsity:.2%}"))
    widths = [max(len(str(row[i])) for row in [header] + rows)
              for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
             for row in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

  def __str__(self) -> str:
    return self.table()


def _reached(pattern, mask, path):
  if pattern is None or not pattern.is_nm or pattern.transposable:
    return ""
  return nm_reached(mask, pattern.m, pattern.group_axis(mask.ndim, path))


def summarize(params: Any, masks: Any, rules: Any = None, *,
              show: bool = True) -> Summary:
  """Per-leaf and total sparsity of `masks` over `params`.

  Args:
    params: the params tree (for shapes of dense leaves).
    masks: a mask tree mirroring `params` (arrays this process can read).
    rules: optional; names each leaf's pattern in the table and checks the
      N:M structure each mask reached.
    show: print the table.

  Returns:
    A `Summary` (rows in `.leaves`, totals in `.sparsity`, `.masked_sparsity`).

  Raises:
    ValueError: naming the leaf, when `masks` do not mirror `params` or a
      mask's shape is not its param's; TypeError for a mask that is not bool.

  >>> params = {"w": jnp.ones((4, 4)), "b": jnp.ones(4)}
  >>> masks = {"w": jnp.eye(4, dtype=bool), "b": masks_lib.dense_mask()}
  >>> s = summarize(params, masks, show=False)
  >>> round(s.masked_sparsity, 2), round(s.sparsity, 2)
  (0.75, 0.6)
  """
  if not isinstance(show, (bool, np.bool_)):
    raise _checks.ParamTypeError(f"show must be a bool; got {show!r}.")
  masks_lib.check_masks(params, masks)
  assignment = rules_lib.assign(params, rules) if rules is not None else {}
  rows = []
  for path, w, m in masks_lib.named_pairs(params, masks):
    shape = tuple(np.shape(w))
    size = int(np.prod(shape))
    if masks_lib.is_dense(m):
      rows.append(LeafSummary(path, shape, "dense", size, size))
      continue
    rule = assignment.get(path)
    pattern = rule.pattern if rule is not None else None
    name = pattern.name if pattern is not None else "masked"
    m = np.asarray(jax.device_get(m))
    rows.append(LeafSummary(path, shape, name, int(m.sum()), size,
                            _reached(pattern, m, path)))
  summary = Summary(tuple(rows))
  if show:
    print(summary)
  return summary
