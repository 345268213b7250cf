"""The metrics of a run: ``metrics.jsonl`` per arm, optionally TensorBoard.

One JSON object per logged step (loss, lr, ``mask_sparsity`` and
``forward_sparsity``, flip rate, phase, N:M, beta, steps/s; ``val_loss`` at evaluations), mirrored to TensorBoard when
``outputs.tensorboard`` is set and a writer is installed. Only process 0
writes.

The file may be local or on an object store (any ``etils.epath`` path such
as ``gs://bucket/run/sparse/metrics.jsonl``). Object stores have no append
mode, so there :class:`MetricsWriter` keeps the records in memory and
rewrites the whole file at each :meth:`MetricsWriter.flush` and at
:meth:`MetricsWriter.close`.
"""
from __future__ import annotations

import json
import math
import os
import sys
import warnings
from typing import Any

import jax
import numpy as np
from etils import epath

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import paths

__all__ = ["MetricsWriter", "read_metrics", "is_main", "TornMetricsWarning"]


class TornMetricsWarning(UserWarning):
  """The last line of a metrics file was torn (and dropped)."""


def is_main() -> bool:
  """Whether this is process 0, the one that writes files."""
  return jax.process_index() == 0


def _jsonable(v: Any) -> Any:
  v = np.asarray(v)
  if v.dtype == bool:
    return bool(v)
  if np.issubdtype(v.dtype, np.integer):
    return int(v)
  v = float(v)
  return v if math.isfinite(v) else str(v)


def _parse(path: epath.Path
           ) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
  """Records of a metrics file and its torn last line ``(number, text)``.

  Raises ``ConfigError`` for an unparseable line that is not the last.
  """
  with path.open() as f:
    lines = [(i, line) for i, line in enumerate(f, 1) if line.strip()]
  records = []
  for k, (i, line) in enumerate(lines):
    try:
      record = json.loads(line)
      if not isinstance(record, dict) or "step" not in record:
        raise ValueError("not a JSON object with a step")
    except ValueError as e:
      if k == len(lines) - 1:
        return records, (i, line)
      raise config_lib.ConfigError(
          f"{path} line {i} is corrupt ({e}): {line.strip()[:80]!r}; only "
          "a torn last line (a run killed mid-write) can be dropped. Repair "
          "or remove that line, or use a new --workdir.") from None
    records.append(record)
  return records, None


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads a ``metrics.jsonl`` file (missing file: empty list).

  A torn last line (a run killed while writing it) is skipped with a
  :class:`TornMetricsWarning`.

  Args:
    path: File path (any ``etils.epath`` path).

  Returns:
    The records in file order.

  Raises:
    ConfigError: A line other than the last is corrupt (names the line).

  Example:
    >>> read_metrics("/nonexistent/metrics.jsonl")
    []
  """
  path = epath.Path(path)
  if not path.exists():
    return []
  records, torn = _parse(path)
  if torn is not None:
    warnings.warn(f"{path} line {torn[0]} is torn (a run killed while "
                  "writing it); skipped it", TornMetricsWarning, stacklevel=2)
  return records


def _lines(records: list[dict[str, Any]]) -> str:
  """The JSON lines of ``records``."""
  return "".join(json.dumps(r) + "\n" for r in records)


class MetricsWriter:
  """Appends metrics as JSON lines (and to TensorBoard when asked).

  On resume, records after the restored step (written by the interrupted
  run after its last checkpoint) are dropped first, so the file holds each
  step once. A torn last line (the run was killed while writing it) is
  dropped with a :class:`TornMetricsWarning` and kept in
  ``<path>.torn``; a corrupt line before it is a ``ConfigError`` naming the
  line.

  A local file is appended to (and flushed) at each :meth:`write`. On an
  object store (a path with a ``scheme://``, which has no append mode) the
  records are kept in memory and the whole file is rewritten (a temporary
  file, then a replace) at each :meth:`flush` and at :meth:`close`.

  Args:
    path: The ``metrics.jsonl`` path (any ``etils.epath`` path).
    resume_step: The restored step; ``None`` starts a new file.
    tensorboard_dir: Folder for TensorBoard event files, or ``None``.

  Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "metrics.jsonl")
    >>> w = MetricsWriter(path)
    >>> w.write(1, {"loss": np.float32(2.5)}); w.flush()
    >>> w.write(2, {"loss": 2.0}); w.close()
    >>> w = MetricsWriter(path, resume_step=1); w.close()
    >>> read_metrics(path)
    [{'step': 1, 'loss': 2.5}]
    >>> with open(path, "a") as f:
    ...   _ = f.write('{"step": 2, "lo')
    >>> with warnings.catch_warnings(record=True) as seen:
    ...   w = MetricsWriter(path, resume_step=1); w.close()
    >>> print(seen[0].message)
    /.../metrics.jsonl line 2 is torn (...); dropped it, its text is kept in /.../metrics.jsonl.torn
    >>> read_metrics(path)
    [{'step': 1, 'loss': 2.5}]
  """

  def __init__(self, path: str | os.PathLike, resume_step: int | None = None,
               tensorboard_dir: str | None = None):
    self.path = os.fspath(path)
    self._file = None
    self._records: list[dict[str, Any]] | None = None
    self._tb = None
    if not is_main():
      return
    target = epath.Path(self.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    keep = []
    if resume_step is not None and target.exists():
      records, torn = _parse(target)
      if torn is not None:
        kept = _backup(target, torn[1])
        warnings.warn(
            f"{self.path} line {torn[0]} is torn (the run was killed while "
            f"writing it); dropped it, its text is kept in {kept}",
            TornMetricsWarning, stacklevel=2)
      keep = [r for r in records if r["step"] <= resume_step]
    paths.write_text_atomic(target, _lines(keep))
    if paths.is_local(target):
      self._file = target.open("a")
    else:
      self._records = keep
    if tensorboard_dir:
      self._tb = _tensorboard_writer(tensorboard_dir)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    """Writes one record for ``step`` (kept in memory on an object store)."""
    if self._file is None and self._records is None:
      return
    record = {"step": int(step)}
    record.update({k: _jsonable(v) for k, v in metrics.items()})
    if self._records is not None:
      self._records.append(record)
    else:
      self._file.write(_lines([record]))
      self._file.flush()
    if self._tb is not None:
      for k, v in record.items():
        if k != "step" and isinstance(v, (int, float)):
          self._tb.add_scalar(k, v, int(step))

  def flush(self) -> None:
    """Makes the records written so far durable.

    A local file already is (each :meth:`write` flushes it); on an object
    store the whole file is rewritten.
    """
    if self._records is not None:
      paths.write_text_atomic(self.path, _lines(self._records))

  def close(self) -> None:
    """Flushes, then closes the file (and the TensorBoard writer)."""
    self.flush()
    self._records = None
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def _backup(path: epath.Path, text: str) -> str:
  """Adds a dropped line to ``<path>.torn``; returns that path.

  The file is rewritten whole, as object stores have no append mode.
  """
  torn = path.with_name(path.name + ".torn")
  old = torn.read_text() if torn.exists() else ""
  paths.write_text_atomic(
      torn, old + (text if text.endswith("\n") else text + "\n"))
  return os.fspath(torn)


def _tensorboard_writer(logdir: str) -> Any:
  """A TensorBoard ``SummaryWriter`` if one is installed, else ``None``."""
  try:
    from torch.utils.tensorboard import SummaryWriter
  except ImportError:
    try:
      from tensorboardX import SummaryWriter
    except ImportError:
      try:
        import tensorflow as tf
      except ImportError:
        print("outputs.tensorboard=True but no TensorBoard writer is "
              "installed (pip install tensorboardX); writing JSONL only.",
              file=sys.stderr)
        return None

      class _TF:

        def __init__(self, d):
          self.w = tf.summary.create_file_writer(d)

        def add_scalar(self, k, v, step):
          with self.w.as_default():
            tf.summary.scalar(k, v, step=step)

        def close(self):
          self.w.close()

      return _TF(logdir)
  return SummaryWriter(logdir)
