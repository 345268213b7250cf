"""The comparison table: per arm, the mean and spread over seeds.

:func:`summarize` is a pure function of the per-run results; the printed
table (:func:`format_table`), ``results.csv`` and ``results.json`` are views
of its rows.

Per arm: the final validation loss (nats/byte) as mean ± sample standard
deviation over the seeds that finished (``None`` with one seed); the mean
flip rate (the method's ``flip_rate`` diagnostic averaged over logged steps,
then over seeds; ``None`` for dense); the mean wall time of a run; the ratio
of the arm's mean loss to the dense mean loss; and the difference to dense,
paired by seed (``loss(arm, seed) - loss(dense, seed)``), as mean ± std.
"""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Sequence

import numpy as np

__all__ = ["COLUMNS", "summarize", "format_table", "write_csv", "write_json"]

COLUMNS = ("arm", "method", "variant", "pattern", "n", "failed",
           "val_loss_mean", "val_loss_std", "flip_rate", "wall_s", "train_s",
           "loss_ratio", "loss_diff_mean", "loss_diff_std")
"""The fields of a row (and the CSV header), in order."""


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
  if not values:
    return None, None
  std = float(np.std(values, ddof=1)) if len(values) > 1 else None
  return float(np.mean(values)), std


def summarize(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per arm (in first-seen order) from per-run results.

  Args:
    results: Run results with ``arm``, ``method``, ``variant``, ``pattern``,
      ``seed``, ``status`` (``"finished"`` or another status, counted as
      failed), and for finished runs ``val_loss``, optional ``flip_rate``
      and ``wall_s``. The dense arm has ``method == "dense"``.

  Returns:
    Rows with the fields of :data:`COLUMNS`.

  Raises:
    ValueError: A finished run with a non-finite ``val_loss``, or an arm
      with the same seed twice.

  Example:
    >>> runs = [dict(arm="dense", method="dense", variant="dense",
    ...              pattern=None, seed=s, status="finished", val_loss=v,
    ...              wall_s=2.0) for s, v in ((0, 2.0), (1, 2.2))]
    >>> runs += [dict(arm="ste 2:4", method="ste", variant="ste",
    ...               pattern="2:4", seed=s, status="finished", val_loss=v,
    ...               flip_rate=f, wall_s=3.0)
    ...          for s, v, f in ((0, 2.2, 0.1), (1, 2.6, 0.3))]
    >>> row = summarize(runs)[1]
    >>> row["n"], row["val_loss_mean"], round(row["val_loss_std"], 4)
    (2, 2.4, 0.2828)
    >>> round(row["loss_ratio"], 4), round(row["loss_diff_mean"], 4)
    (1.1429, 0.3)
    >>> round(row["flip_rate"], 3), row["wall_s"], row["train_s"]
    (0.2, 3.0, None)
  """
  arms: dict[str, list[dict[str, Any]]] = {}
  for r in results:
    group = arms.setdefault(r["arm"], [])
    if any(o["seed"] == r["seed"] for o in group):
      raise ValueError(f"results hold arm {r['arm']!r} seed {r['seed']} "
                       "twice.")
    if r["status"] == "finished" and not math.isfinite(r["val_loss"]):
      raise ValueError(f"arm {r['arm']!r} seed {r['seed']}: val_loss is "
                       f"{r['val_loss']} in a finished run.")
    group.append(r)
  dense = {r["seed"]: r["val_loss"] for r in results
           if r["method"] == "dense" and r["status"] == "finished"}
  dense_mean, _ = _mean_std(list(dense.values()))
  rows = []
  for name, group in arms.items():
    done = [r for r in group if r["status"] == "finished"]
    mean, std = _mean_std([r["val_loss"] for r in done])
    flips = [r["flip_rate"] for r in done if r.get("flip_rate") is not None]
    walls = [r["wall_s"] for r in done if r.get("wall_s") is not None]
    trains = [r["train_s"] for r in done if r.get("train_s") is not None]
    diffs = [r["val_loss"] - dense[r["seed"]] for r in done
             if r["seed"] in dense]
    diff_mean, diff_std = _mean_std(diffs)
    first = group[0]
    rows.append({
        "arm": name, "method": first["method"], "variant": first["variant"],
        "pattern": first["pattern"], "n": len(done),
        "failed": len(group) - len(done), "val_loss_mean": mean,
        "val_loss_std": std, "flip_rate": _mean_std(flips)[0],
        "wall_s": _mean_std(walls)[0], "train_s": _mean_std(trains)[0],
        "loss_ratio": (mean / dense_mean if mean is not None and dense_mean
                       else None),
        "loss_diff_mean": diff_mean, "loss_diff_std": diff_std})
  return rows


def _num(value: float | None, fmt: str) -> str:
  return "n/a" if value is None else format(value, fmt)


def _pm(mean: float | None, std: float | None, fmt: str) -> str:
  if mean is None:
    return "n/a"
  return f"{mean:{fmt}} ± " + ("-" if std is None else f"{std:.4f}")


def format_table(rows: Sequence[dict[str, Any]]) -> str:
  """The rows as an aligned text table with a legend.

  Args:
    rows: Rows of :func:`summarize`.

  Returns:
    The table text.

  Example:
    >>> row = dict(arm="ste 2:4", method="ste", variant="ste", pattern="2:4",
    ...            n=2, failed=0, val_loss_mean=2.4, val_loss_std=0.2,
    ...            flip_rate=0.05, wall_s=3.0, train_s=1.0, loss_ratio=1.1,
    ...            loss_diff_mean=0.3, loss_diff_std=0.1)
    >>> print(format_table([row]).splitlines()[2])
    ste     2:4      2.4000 ± 0.2000  2     0.0500         3.0          1.0    1.1000      +0.3000 ± 0.1000
  """
  head = ("method", "pattern", "val loss mean ± std", "n", "flip rate",
          "wall s/run", "train s/run", "vs dense", "Δ vs dense (paired)")
  body = []
  for r in rows:
    n = str(r["n"]) + (f" ({r['failed']} diverged)" if r["failed"] else "")
    body.append((r["variant"], r["pattern"] or "-",
                 _pm(r["val_loss_mean"], r["val_loss_std"], ".4f"), n,
                 _num(r["flip_rate"], ".4f"), _num(r["wall_s"], ".1f"),
                 _num(r.get("train_s"), ".1f"),
                 _num(r["loss_ratio"], ".4f"),
                 _pm(r["loss_diff_mean"], r["loss_diff_std"], "+.4f")))
  widths = [max(len(line[i]) for line in [head] + body)
            for i in range(len(head))]
  fmt = lambda line: "  ".join(
      c.ljust(w) if i < 2 else c.rjust(w)
      for i, (c, w) in enumerate(zip(line, widths))).rstrip()
  lines = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]
  lines.append(
      "val loss: final validation loss (nats/byte), mean ± sample std over "
      "seeds; flip rate: mean per-step mask flip rate; wall s/run: whole run "
      "(plan, compile or compile-cache load, train, eval, checkpoints); "
      "train s/run: training steps only (after the first, compiling, step); "
      "vs dense: mean loss / dense mean loss; Δ: loss - dense loss of the "
      "same seed.")
  return "\n".join(lines)


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike
              ) -> None:
  """Writes the rows as CSV (header :data:`COLUMNS`; empty cell for n/a).

  Args:
    rows: Rows of :func:`summarize`.
    path: The file to write.

  Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "results.csv")
    >>> write_csv([dict.fromkeys(COLUMNS, None) | {"arm": "dense"}], path)
    >>> open(path).read().splitlines()[1].startswith("dense,")
    True
  """
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})


def write_json(rows: Sequence[dict[str, Any]],
               results: Sequence[dict[str, Any]], path: str | os.PathLike,
               **extra: Any) -> None:
  """Writes ``{"arms": rows, "runs": results, **extra}`` as JSON.

  Args:
    rows: Rows of :func:`summarize`.
    results: The per-run results (raw values).
    path: The file to write.
    **extra: More top-level entries (e.g. the command line).

  Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "results.json")
    >>> write_json([], [{"seed": 0}], path, seeds=[0])
    >>> json.load(open(path))
    {'arms': [], 'runs': [{'seed': 0}], 'seeds': [0]}
  """
  with open(path, "w") as f:
    json.dump({"arms": list(rows), "runs": list(results), **extra}, f,
              indent=2)
