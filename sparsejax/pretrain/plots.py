"""The plots of a run (PNG, when matplotlib is installed).

Training/validation loss of the sparse run against the dense baseline, and
the schedule (sparsity, N:M density, mask-decay beta). Only process 0 writes.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from sparsejax.pretrain import metrics as metrics_lib
from sparsejax.pretrain import report

__all__ = ["plot_losses", "plot_schedule", "write_plots"]


def _pyplot():
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    print("matplotlib is not installed; skipping plots.", file=sys.stderr)
    return None
  return plt


def _finish(plt: Any, fig: Any, ax: Any, title: str,
            path: str | os.PathLike) -> bool:
  """Labels the step axis, titles, adds grid and legend, saves and closes."""
  ax.set_xlabel("step")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def plot_losses(runs: dict[str, list[dict[str, Any]]],
                path: str | os.PathLike) -> bool:
  """Plots training (and validation) loss of several runs over steps.

  Args:
    runs: ``{label: metrics records}``.
    path: Output PNG.

  Returns:
    ``True`` if the plot was written.

  Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "loss.png")
    >>> recs = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0,
    ...                                     "val_loss": 2.2}]
    >>> plot_losses({"dense": recs}, path), os.path.exists(path)
    (True, True)
  """
  plt = _pyplot()
  if plt is None or not metrics_lib.is_main():
    return False
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, (label, recs) in enumerate(runs.items()):
    color = f"C{i}"
    tr = [(r["step"], r["loss"]) for r in recs if "loss" in r]
    if tr:
      ax.plot(*zip(*tr), color=color, alpha=0.8, label=f"{label} train")
    va = [(r["step"], r["val_loss"]) for r in recs if "val_loss" in r]
    if va:
      ax.plot(*zip(*va), "o--", color=color, label=f"{label} validation")
  ax.set_ylabel("loss (nats/byte)")
  return _finish(plt, fig, ax, "Training and validation loss", path)


def plot_schedule(steps: np.ndarray, series: dict[str, np.ndarray],
                  path: str | os.PathLike, title: str = "Sparsity schedule"
                  ) -> bool:
  """Plots schedule values (sparsity, N:M density, beta, ...) over steps.

  Args:
    steps: 1-D steps.
    series: ``{name: values over steps}``, each in ``[0, 1]``.
    path: Output PNG.
    title: Plot title.

  Returns:
    ``True`` if the plot was written.

  Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "schedule.png")
    >>> plot_schedule(np.arange(3), {"beta": np.array([1., .5, 0.])}, path)
    True
  """
  plt = _pyplot()
  if plt is None or not metrics_lib.is_main() or not series:
    return False
  fig, ax = plt.subplots(figsize=(7, 4))
  for name, values in series.items():
    ax.plot(steps, values, label=name)
  ax.set_ylim(-0.05, 1.05)
  return _finish(plt, fig, ax, title, path)


def write_plots(arms: list[Any], workdir: str) -> None:
  """``plots/loss.png`` of every arm and ``plots/schedule.png`` of the sparse.

  Args:
    arms: The planned arms (see :func:`sparsejax.pretrain.plan.plan`).
    workdir: The run's folder (each arm's ``metrics.jsonl`` is read there).
  """
  plots = os.path.join(workdir, "plots")
  if metrics_lib.is_main():
    os.makedirs(plots, exist_ok=True)
  runs = {a.label: metrics_lib.read_metrics(
      os.path.join(workdir, a.name, "metrics.jsonl")) for a in arms}
  plot_losses(runs, os.path.join(plots, "loss.png"))
  sparse = [a for a in arms if a.sparsifier is not None]
  if not sparse:
    return
  a = sparse[0]
  steps = np.arange(a.config.train.steps + 1)
  table = report.schedule_table(a.sparsifier, a.rules, steps)
  series = {}
  measured = [(r["step"], r["sparsity"]) for r in runs[a.label]
              if "sparsity" in r]
  if "phase" in table:  # Progressive: masks apply from the sparse phase.
    series["sparsity in the forward pass"] = np.where(
        table["phase"] > 0, 1.0 - table["n"] / table["m"], 0.0)
  elif measured:
    xs, ys = zip(*measured)
    series["sparsity (measured)"] = np.interp(steps, xs, ys)
  if "n" in table:
    series["N:M density n/m"] = table["n"] / table["m"]
  if "beta" in table:
    series["mask decay beta"] = table["beta"]
  plot_schedule(steps, series, os.path.join(plots, "schedule.png"),
                title=f"Schedule: {a.label}")
