"""Sparsity summaries: per-leaf and total, as data and as a printed table."""

import dataclasses

import jax
import numpy as np

from sparsejax import masks as masks_lib
from sparsejax import rules as rules_lib


@dataclasses.dataclass(frozen=True)
class LeafSummary:
  path: str
  shape: tuple[int, ...]
  pattern: str
  kept: int
  size: int

  @property
  def sparsity(self):
    return 1.0 - self.kept / self.size if self.size else 0.0


@dataclasses.dataclass(frozen=True)
class Summary:
  """Per-leaf rows plus totals; `str(summary)` is a table."""

  leaves: tuple[LeafSummary, ...]

  @property
  def size(self):
    return sum(r.size for r in self.leaves)

  @property
  def kept(self):
    return sum(r.kept for r in self.leaves)

  @property
  def sparsity(self):
    """Sparsity over every leaf, dense ones included."""
    return 1.0 - self.kept / self.size if self.size else 0.0

  @property
  def masked_sparsity(self):
    """Sparsity over the masked leaves only."""
    masked = [r for r in self.leaves if r.pattern != "dense"]
    size = sum(r.size for r in masked)
    return 1.0 - sum(r.kept for r in masked) / size if size else 0.0

  def __str__(self):
    header = ("path", "shape", "pattern", "kept", "size", "sparsity")
    rows = [(r.path, "x".join(map(str, r.shape)) or "()", r.pattern,
             f"{r.kept:,}", f"{r.size:,}", f"{r.sparsity:.2%}")
            for r in self.leaves]
    rows.append(("total", "", f"masked {self.masked_sparsity:.2%}",
                 f"{self.kept:,}", f"{self.size:,}", f"{self.sparsity:.2%}"))
    widths = [max(len(str(row[i])) for row in [header] + rows)
              for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
             for row in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summarize(params, masks, rules=None, *, show=True):
  """Per-leaf and total sparsity of `masks` over `params`.

  Args:
    params: the params tree (for shapes of dense leaves).
    masks: a mask tree mirroring `params`.
    rules: optional; names each leaf's pattern in the table.
    show: print the table.

  Returns:
    A `Summary` (rows in `.leaves`, totals in `.sparsity`, `.masked_sparsity`).

  >>> params = {"w": jnp.ones((4, 4)), "b": jnp.ones(4)}
  >>> masks = {"w": jnp.eye(4, dtype=bool), "b": masks_lib.dense_mask()}
  >>> s = summarize(params, masks, show=False)
  >>> round(s.masked_sparsity, 2), round(s.sparsity, 2)
  (0.75, 0.6)
  """
  assignment = rules_lib.assign(params, rules) if rules is not None else {}
  rows = []
  for path, w, m in masks_lib.named_pairs(params, masks):
    shape = tuple(np.shape(w))
    size = int(np.prod(shape))
    if masks_lib.is_dense(m):
      rows.append(LeafSummary(path, shape, "dense", size, size))
      continue
    rule = assignment.get(path)
    name = rule.pattern.name if rule is not None and rule.pattern else "masked"
    kept = int(np.asarray(jax.device_get(m)).sum())
    rows.append(LeafSummary(path, shape, name, kept, size))
  summary = Summary(tuple(rows))
  if show:
    print(summary)
  return summary
