"""``results.png``: validation loss per arm with error bars, dense as reference.

One point per sparse arm (mean over seeds, error bar ± sample std, the
single seeds as small dots), grouped by pattern along the x axis; the dense
mean is a horizontal line with its ± std band.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

__all__ = ["write_plot"]


def write_plot(rows: Sequence[dict[str, Any]],
               results: Sequence[dict[str, Any]], path: str | os.PathLike,
               title: str = "") -> None:
  """Writes the comparison chart as a PNG.

  Args:
    rows: Rows of :func:`sparsejax.compare.table.summarize`.
    results: The per-run results (the seeds' own points).
    path: The PNG to write.
    title: The chart title.

  Example:
    >>> import tempfile
    >>> rows = [dict(arm="dense", method="dense", variant="dense",
    ...              pattern=None, val_loss_mean=2.0, val_loss_std=0.1),
    ...         dict(arm="ste 2:4", method="ste", variant="ste",
    ...              pattern="2:4", val_loss_mean=2.2, val_loss_std=None)]
    >>> path = os.path.join(tempfile.mkdtemp(), "results.png")
    >>> write_plot(rows, [], path)
    >>> os.path.getsize(path) > 0
    True
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  sparse = [r for r in rows if r["method"] != "dense"
            and r["val_loss_mean"] is not None]
  dense = [r for r in rows if r["method"] == "dense"
           and r["val_loss_mean"] is not None]
  fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(sparse) + 2.0), 4.5))
  if dense:
    mean, std = dense[0]["val_loss_mean"], dense[0]["val_loss_std"] or 0.0
    ax.axhline(mean, color="black", linestyle="--", label="dense")
    if std:
      ax.axhspan(mean - std, mean + std, color="gray", alpha=0.2)
  for x, row in enumerate(sparse):
    ax.errorbar(x, row["val_loss_mean"], yerr=row["val_loss_std"] or 0.0,
                fmt="o", capsize=4, color=f"C{x % 10}")
    seeds = [r["val_loss"] for r in results
             if r.get("arm") == row["arm"] and r.get("status") == "finished"]
    ax.plot([x + 0.15] * len(seeds), seeds, ".", color=f"C{x % 10}",
            alpha=0.5)
  ax.set_xlim(-0.6, max(len(sparse), 1) - 0.4)
  ax.set_xticks(range(len(sparse)))
  ax.set_xticklabels([f"{r['variant']}\n{r['pattern']}" for r in sparse],
                     rotation=30, ha="right", fontsize=8)
  ax.set_ylabel("final validation loss (nats/byte)")
  ax.set_title(title or "mean ± std over seeds (dots: single seeds)")
  if dense:
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
