"""What a run shows: the schedule and the final report.

(The progress display is :mod:`sparsejax.pretrain.progress`.)

* the schedule of the sparse arm on the host (N:M frame, beta, phase), for
  the metrics and the plots (:mod:`sparsejax.pretrain.plots`);
* the final report: validation loss, perplexity and speed of each arm, then
  the per-layer table of :func:`sparsejax.summarize`.

Only process 0 prints or writes.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import sparsejax as sj
from sparsejax.summary import Summary

__all__ = [
    "schedule_table",
    "format_report",
]


def schedule_table(sparsifier: Any, rules: list[sj.Rule], steps: Any
                   ) -> dict[str, np.ndarray]:
  """Host-side schedule of the first N:M target of ``rules`` over ``steps``.

  Gives ``n``, ``m`` (the active N:M frame), ``beta`` (mask decay) and
  ``phase`` for a sparsifier with a ``table`` (progressive N:M); a constant
  ``n``/``m`` for the other N:M methods; an empty dict otherwise.

  Args:
    sparsifier: The arm's sparsifier (or ``None``).
    rules: Its rules.
    steps: 1-D steps.

  Returns:
    ``{name: array over steps}``.

  Example:
    >>> sp = sj.progressive_nm([sj.Rule(".*", sj.NM(2, 4))], total_steps=12,
    ...                        dense_steps=3, finetune_steps=3,
    ...                        structure="stepwise")
    >>> t = schedule_table(sp, sp.rules, [0, 5, 11])
    >>> t["n"].tolist(), t["m"].tolist(), t["phase"].tolist()
    ([3, 3, 2], [4, 4, 4], [0, 1, 2])
    >>> schedule_table(sj.ste(sj.NM(2, 4)), [sj.Rule(".*", sj.NM(2, 4))],
    ...                [0, 5])
    {'n': array([2, 2]), 'm': array([4, 4])}
  """
  targets = [r.pattern for r in rules if isinstance(r.pattern, sj.NM)]
  steps = np.asarray(steps, np.int64)
  if sparsifier is None or not targets:
    return {}
  n, m = targets[0].n, targets[0].m
  if hasattr(getattr(sparsifier, "schedule", None), "table"):
    t = sparsifier.table(steps, (n, m))
    return {"n": t.n, "m": t.m, "beta": t.beta, "phase": t.phase}
  return {"n": np.full(steps.shape, n), "m": np.full(steps.shape, m)}


def format_report(results: dict[str, dict[str, Any]],
                  layers: Summary | None = None) -> str:
  """The final text report: dense vs sparse, then the per-layer table.

  Args:
    results: ``{"dense": {...}, "sparse": {...}}`` with ``val_loss``,
      ``perplexity``, ``steps_per_s``, ``train_s`` and ``label``.
    layers: The sparse arm's :func:`sparsejax.summarize` (its masked leaves
      are listed), or ``None``.

  Returns:
    The report text.

  Example:
    >>> r = {"dense": {"label": "dense", "val_loss": 1.0, "perplexity": 2.72,
    ...                "steps_per_s": 5.0, "train_s": 10.0}}
    >>> print(format_report(r).splitlines()[1])
    val loss                1.0000
  """
  arms = list(results)
  width = max([12] + [len(results[a]["label"]) + 2 for a in arms])
  head = f"{'':18}" + "".join(f"{results[a]['label']:>{width}}" for a in arms)
  lines = [head]

  def row(name, key, fmt):
    cells = []
    for a in arms:
      v = results[a].get(key)
      cells.append(f"{'-' if v is None else format(v, fmt):>{width}}")
    return f"{name:18}" + "".join(cells)

  lines.append(row("val loss", "val_loss", ".4f"))
  lines.append(row("perplexity", "perplexity", ".3f"))
  lines.append(row("steps/s", "steps_per_s", ".2f"))
  lines.append(row("train time (s)", "train_s", ".1f"))
  if "dense" in results and "sparse" in results:
    d, s = results["dense"]["val_loss"], results["sparse"]["val_loss"]
    line = f"sparse vs dense validation loss: {100 * (s / d - 1):+.2f}%"
    ds, ss = results["dense"].get("steps_per_s"), results["sparse"].get(
        "steps_per_s")
    if ds and ss:
      line += f"; steps/s sparse/dense: {ss / ds:.3f}"
    lines.append(line)
  if layers is not None:
    lines += ["", layers.table(dense=False)]
  return "\n".join(lines)
