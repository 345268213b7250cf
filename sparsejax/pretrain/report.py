"""What a run shows: progress bar, schedule and the final report.

* a text progress bar per arm;
* the schedule of the sparse arm on the host (N:M frame, beta, phase), for
  the metrics and the plots (:mod:`sparsejax.pretrain.plots`);
* the final report: validation loss, perplexity and speed of each arm, then
  the per-layer table of :func:`sparsejax.summarize`.

Only process 0 prints or writes.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np

import sparsejax as sj
from sparsejax.pretrain import metrics as metrics_lib
from sparsejax.summary import Summary

__all__ = [
    "ProgressBar",
    "schedule_table",
    "format_report",
]


class ProgressBar:
  """A one-line text progress bar on stderr.

  On a terminal the line is redrawn in place; otherwise a line is printed
  about every tenth of the run.

  Args:
    total: Number of steps.
    start: The step the bar starts at (after a resume).
    label: Prefix of the line.
    enabled: ``False`` prints nothing.
    stream: Output stream (default ``sys.stderr``).

  Example:
    >>> import io
    >>> out = io.StringIO()
    >>> bar = ProgressBar(10, label="dense", stream=out)
    >>> bar.update(10, "loss 1.0")
    >>> bar.close()
    >>> "10/10" in out.getvalue()
    True
  """

  def __init__(self, total: int, start: int = 0, label: str = "",
               enabled: bool = True, stream: Any = None):
    self.total, self.start, self.label = total, start, label
    self.enabled = enabled and metrics_lib.is_main()
    self.stream = sys.stderr if stream is None else stream
    self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
    self._t0 = time.perf_counter()
    self._last_printed = -1

  def update(self, step: int, text: str = "") -> None:
    """Redraws the bar at ``step`` with ``text`` after it."""
    if not self.enabled:
      return
    frac = step / max(self.total, 1)
    width = 24
    filled = int(round(width * frac))
    bar = "#" * filled + "-" * (width - filled)
    elapsed = time.perf_counter() - self._t0
    done = step - self.start
    eta = elapsed / done * (self.total - step) if done > 0 else float("nan")
    eta_s = ("?" if not math.isfinite(eta) else
             f"{int(eta) // 60}:{int(eta) % 60:02d}")
    line = (f"{self.label:>6} [{bar}] {step}/{self.total} {text} "
            f"eta {eta_s}")
    if self.tty:
      self.stream.write("\r" + line.ljust(100))
      self.stream.flush()
    else:
      tenth = int(10 * frac)
      if tenth != self._last_printed or step == self.total:
        self._last_printed = tenth
        self.stream.write(line + "\n")
        self.stream.flush()

  def close(self) -> None:
    """Ends the line."""
    if self.enabled and self.tty:
      self.stream.write("\n")
      self.stream.flush()


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
  """
  targets = [r.pattern for r in rules if isinstance(r.pattern, sj.NM)]
  steps = np.asarray(steps, np.int64)
  if sparsifier is None or not targets:
    return {}
  n, m = targets[0].n, targets[0].m
  if hasattr(sparsifier, "table"):
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
