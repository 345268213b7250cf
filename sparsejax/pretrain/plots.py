"""The plots of a run (PNG; matplotlib is a dependency of the package).

Training/validation loss of the sparse run against the dense baseline, and
the schedule: the mask's sparsity, the sparsity the forward pass actually
uses (entries scaled by a mask-decay beta > 0 count as present), the N:M
density and beta, with the phase boundaries marked. Every curve has its own
line style, so two curves that coincide are both visible. Only process 0
writes.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from sparsejax.pretrain import metrics as metrics_lib
from sparsejax.pretrain import paths
from sparsejax.pretrain import report

__all__ = ["phase_boundaries", "plot_losses", "plot_schedule",
           "schedule_series", "write_plots"]

# Distinct styles so that coinciding curves stay visible.
_STYLES = [("-", None), ("--", None), (":", "o"), ("-.", "s"), ("-", "^")]
_PHASES = {1: "sparse phase starts", 2: "hard-mask fine-tune starts"}


def _pyplot():
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    print("matplotlib is not installed, so no plots are written; install it "
          "with `pip install matplotlib`.", file=sys.stderr)
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
  with paths.as_path(path).open("wb") as f:
    fig.savefig(f, format="png", dpi=110)
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


def phase_boundaries(steps: np.ndarray, phase: np.ndarray
                     ) -> list[tuple[int, str]]:
  """The steps where the phase changes, with what starts there.

  Example:
    >>> phase_boundaries(np.arange(6), np.array([0, 0, 1, 1, 2, 2]))
    [(2, 'sparse phase starts'), (4, 'hard-mask fine-tune starts')]
  """
  steps, phase = np.asarray(steps), np.asarray(phase)
  change = np.nonzero(phase[1:] != phase[:-1])[0] + 1
  return [(int(steps[i]), _PHASES.get(int(phase[i]), f"phase {phase[i]}"))
          for i in change]


def schedule_series(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The curves of the schedule plot from a :func:`report.schedule_table`.

  The names are those of ``Method.diagnostics`` and ``metrics.jsonl``:
  ``mask_sparsity`` is the fraction of entries the mask drops (from the
  sparse phase on); ``forward_sparsity`` is the fraction the forward pass
  does not use: while a mask-decay beta is above 0 the dropped entries are
  still used, scaled by beta, so it stays 0 until beta reaches 0.

  Example:
    >>> t = {"n": np.array([4, 2, 2]), "m": np.array([4, 4, 4]),
    ...      "beta": np.array([1.0, 0.5, 0.0]), "phase": np.array([0, 1, 2])}
    >>> {k: v.tolist() for k, v in schedule_series(t).items()}
    ... # doctest: +NORMALIZE_WHITESPACE
    {'mask_sparsity': [0.0, 0.5, 0.5], 'forward_sparsity': [0.0, 0.0, 0.5],
     'density n/m': [1.0, 0.5, 0.5], 'beta': [1.0, 0.5, 0.0]}
  """
  series = {}
  if "n" not in table:
    return series
  density = table["n"] / table["m"]
  active = table["phase"] > 0 if "phase" in table else np.ones(density.shape,
                                                               bool)
  mask_sparsity = np.where(active, 1.0 - density, 0.0)
  series["mask_sparsity"] = mask_sparsity
  beta = table.get("beta")
  series["forward_sparsity"] = (mask_sparsity if beta is None else
                                np.where(beta > 0, 0.0, mask_sparsity))
  series["density n/m"] = density
  if beta is not None:
    series["beta"] = beta
  return series


def plot_schedule(steps: np.ndarray, series: dict[str, np.ndarray],
                  path: str | os.PathLike, title: str = "Sparsity schedule",
                  boundaries: list[tuple[int, str]] = ()) -> bool:
  """Plots schedule values (sparsity, N:M density, beta, ...) over steps.

  Args:
    steps: 1-D steps.
    series: ``{name: values over steps}``, each in ``[0, 1]``.
    path: Output PNG.
    title: Plot title.
    boundaries: ``[(step, label)]`` drawn as vertical lines (see
      :func:`phase_boundaries`).

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
  every = max(1, len(steps) // 12)
  for i, (name, values) in enumerate(series.items()):
    style, marker = _STYLES[i % len(_STYLES)]
    ax.plot(steps, values, linestyle=style, marker=marker, markevery=every,
            linewidth=2.2 - 0.3 * (i % 3), label=name)
  for j, (step, label) in enumerate(boundaries):
    ax.axvline(step, color="0.4", linestyle=":" if j else "--", linewidth=1,
               label=f"step {step}: {label}")
  ax.set_ylim(-0.05, 1.05)
  return _finish(plt, fig, ax, title, path)


def write_plots(arms: list[Any], workdir: str | os.PathLike) -> None:
  """``plots/loss.png`` of every arm and ``plots/schedule.png`` of the sparse.

  Args:
    arms: The planned arms (see :func:`sparsejax.pretrain.plan.plan`).
    workdir: The run's folder (each arm's ``metrics.jsonl`` is read there;
      local or any ``etils.epath`` path).
  """
  workdir = paths.as_path(workdir)
  plots = workdir / "plots"
  if metrics_lib.is_main():
    plots.mkdir(parents=True, exist_ok=True)
  runs = {a.label: metrics_lib.read_metrics(
      workdir / a.name / "metrics.jsonl") for a in arms}
  plot_losses(runs, plots / "loss.png")
  sparse = [a for a in arms if a.sparsifier is not None]
  if not sparse:
    return
  a = sparse[0]
  steps = np.arange(a.config.train.steps + 1)
  table = report.schedule_table(a.sparsifier, a.rules, steps)
  series = schedule_series(table)
  measured = [(r["step"], r["mask_sparsity"]) for r in runs[a.label]
              if "mask_sparsity" in r]
  if "phase" not in table and measured:
    xs, ys = zip(*measured)
    series["mask_sparsity (measured)"] = np.interp(steps, xs, ys)
  boundaries = (phase_boundaries(steps, table["phase"]) if "phase" in table
                else [])
  plot_schedule(steps, series, plots / "schedule.png",
                title=f"Schedule: {a.label}", boundaries=boundaries)
