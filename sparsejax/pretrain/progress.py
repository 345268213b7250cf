"""The training progress display: a ``tqdm`` bar, or plain lines in logs.

On a terminal the bar is ``tqdm``'s, redrawn in place. When the output is not
a terminal (a log file, a cluster job's stdout) a plain line is printed about
every tenth of the run and at least once a minute, so a log shows progress
without carriage returns.

The clock starts when the first step has finished, not before: the first
step compiles the training step, and an ETA that counted the compilation
would promise minutes for a run of seconds. Until then the line says
``compiling``.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import tqdm

from sparsejax.pretrain import metrics as metrics_lib

__all__ = ["Progress"]

_PLAIN_EVERY_S = 60.0


class Progress:
  """Progress of one arm's training, from ``start`` to ``total`` steps.

  Args:
    total: Number of steps of the run.
    start: The step the run starts at (after a resume).
    label: Prefix of the line (the arm's name).
    enabled: ``False`` prints nothing (and so does every process but 0).
    stream: Output stream (default ``sys.stderr``).

  Call :meth:`started` once the first step has finished (the clock starts
  there), :meth:`update` at each logged step and :meth:`close` at the end.

  Example:
    >>> import io
    >>> out = io.StringIO()
    >>> bar = Progress(10, label="dense", stream=out)
    >>> bar.started(1)
    >>> bar.update(10, loss=1.0)
    >>> bar.close()
    >>> lines = out.getvalue().splitlines()
    >>> lines[0]
    'dense: compiling the training step (step 1 of 10)'
    >>> lines[-1].startswith("dense: 100%") and "10/10" in lines[-1]
    True
  """

  def __init__(self, total: int, start: int = 0, label: str = "",
               enabled: bool = True, stream: Any = None):
    self.total, self.start, self.label = int(total), int(start), label
    self.enabled = enabled and metrics_lib.is_main()
    self.stream = sys.stderr if stream is None else stream
    self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
    self._bar = None
    self._t0 = None
    self._n0 = self.start
    self._last_tenth = -1
    self._last_line_t = 0.0
    if self.enabled:
      self._write(f"{label}: compiling the training step (step "
                  f"{self.start + 1} of {self.total})")

  def _write(self, line: str) -> None:
    self.stream.write(line + "\n")
    self.stream.flush()

  def started(self, step: int) -> None:
    """Starts the clock: ``step`` steps are done, compilation included."""
    if not self.enabled or self._t0 is not None:
      return
    self._t0, self._n0 = time.perf_counter(), int(step)
    if self.tty:
      self._bar = tqdm.tqdm(total=self.total, initial=self._n0,
                            desc=self.label, file=self.stream,
                            dynamic_ncols=True, leave=True, unit="step")

  def update(self, step: int, **postfix: float) -> None:
    """Shows ``step`` of ``total`` with ``postfix`` values (e.g. loss)."""
    if not self.enabled:
      return
    if self._t0 is None:
      self.started(step)
    text = ", ".join(f"{k} {v:.4g}" for k, v in postfix.items())
    if self._bar is not None:
      self._bar.set_postfix_str(text, refresh=False)
      self._bar.update(step - self._bar.n)
      return
    now = time.perf_counter()
    tenth = (10 * step) // max(self.total, 1)
    if (tenth == self._last_tenth and step != self.total
        and now - self._last_line_t < _PLAIN_EVERY_S):
      return
    self._last_tenth, self._last_line_t = tenth, now
    meter = tqdm.tqdm.format_meter(
        step - self._n0, self.total - self._n0, now - self._t0,
        unit="step", postfix=text or None)
    # The meter's counts start at the clock; the line shows the run's steps
    # and takes the meter's [elapsed<remaining, rate, postfix] part.
    self._write(f"{self.label}: {round(100 * step / max(self.total, 1)):3d}%"
                f" {step}/{self.total} {meter[meter.index('['):]}")

  def close(self) -> None:
    """Ends the display."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None
