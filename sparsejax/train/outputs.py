"""What a pretraining run writes and prints.

* ``metrics.jsonl`` per arm (one JSON object per logged step: loss, lr,
  sparsity, flip rate, phase, N:M, beta, steps/s; ``val_loss`` at
  evaluations), optionally mirrored to TensorBoard when ``tensorboard`` is
  installed;
* PNG plots: training/validation loss of the sparse run against the dense
  baseline, and the schedule (sparsity, N:M density, mask-decay beta);
* the exported weights: N:M leaves in the compressed format of
  :mod:`pallas_kernels.formats` plus bit-packed masks, other leaves as arrays;
* a text progress bar and the final report.

Only process 0 writes files.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Iterable

import jax
import numpy as np

import sparsejax as sj
from sparsejax import masks as masks_lib
from sparsejax import rules as rules_lib

__all__ = [
    "MetricsWriter",
    "ProgressBar",
    "read_metrics",
    "plot_losses",
    "plot_schedule",
    "export_weights",
    "nm_reached",
    "format_report",
]


def _is_main() -> bool:
  return jax.process_index() == 0


def _jsonable(v: Any) -> Any:
  v = np.asarray(v)
  if v.dtype == bool:
    return bool(v)
  if np.issubdtype(v.dtype, np.integer):
    return int(v)
  v = float(v)
  return v if math.isfinite(v) else str(v)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads a ``metrics.jsonl`` file (missing file: empty list).

  Args:
    path: File path.

  Returns:
    The records in file order.

  Example:
    >>> read_metrics("/nonexistent/metrics.jsonl")
    []
  """
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class MetricsWriter:
  """Appends metrics as JSON lines (and to TensorBoard when asked).

  On resume, records after the restored step (written by the interrupted
  run after its last checkpoint) are dropped first, so the file holds each
  step once.

  Args:
    path: The ``metrics.jsonl`` path.
    resume_step: The restored step; ``None`` starts a new file.
    tensorboard_dir: Folder for TensorBoard event files, or ``None``.

  Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "metrics.jsonl")
    >>> w = MetricsWriter(path)
    >>> w.write(1, {"loss": np.float32(2.5)}); w.write(2, {"loss": 2.0})
    >>> w.close()
    >>> w = MetricsWriter(path, resume_step=1); w.close()
    >>> read_metrics(path)
    [{'step': 1, 'loss': 2.5}]
  """

  def __init__(self, path: str | os.PathLike, resume_step: int | None = None,
               tensorboard_dir: str | None = None):
    self.path = os.fspath(path)
    self._file = None
    self._tb = None
    if not _is_main():
      return
    os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
    keep = []
    if resume_step is not None:
      keep = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
    with open(self.path, "w") as f:
      for r in keep:
        f.write(json.dumps(r) + "\n")
    self._file = open(self.path, "a")
    if tensorboard_dir:
      self._tb = _tensorboard_writer(tensorboard_dir)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    """Writes one record for ``step``."""
    if self._file is None:
      return
    record = {"step": int(step)}
    record.update({k: _jsonable(v) for k, v in metrics.items()})
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._tb is not None:
      for k, v in record.items():
        if k != "step" and isinstance(v, (int, float)):
          self._tb.add_scalar(k, v, int(step))

  def close(self) -> None:
    """Closes the file (and the TensorBoard writer)."""
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


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
    self.enabled = enabled and _is_main()
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


def _pyplot():
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    print("matplotlib is not installed; skipping plots.", file=sys.stderr)
    return None
  return plt


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
  if plt is None or not _is_main():
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
  ax.set_xlabel("step")
  ax.set_ylabel("loss (nats/byte)")
  ax.set_title("Training and validation loss")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


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
  if plt is None or not _is_main() or not series:
    return False
  fig, ax = plt.subplots(figsize=(7, 4))
  for name, values in series.items():
    ax.plot(steps, values, label=name)
  ax.set_xlabel("step")
  ax.set_ylim(-0.05, 1.05)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def nm_reached(mask: np.ndarray, m: int, axis: int = 0) -> str:
  """The N:M structure a mask holds along ``axis`` for group size ``m``.

  Args:
    mask: A boolean mask.
    m: Group size to check.
    axis: Group axis.

  Returns:
    ``"n:m"`` if every group keeps the same ``n``, otherwise
    ``"mixed (lo-hi of m)"``.

  Example:
    >>> nm_reached(np.array([[1], [0], [1], [0]], bool), 4)
    '2:4'
    >>> nm_reached(np.array([[1], [1], [1], [0]], bool), 2)
    'mixed (1-2 of 2)'
  """
  mask = np.moveaxis(np.asarray(mask), axis, 0)
  if mask.shape[0] % m:
    return "n/a"
  counts = mask.reshape(mask.shape[0] // m, m, -1).sum(axis=1)
  lo, hi = int(counts.min()), int(counts.max())
  return f"{lo}:{m}" if lo == hi else f"mixed ({lo}-{hi} of {m})"


def _host(tree: Any) -> Any:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    tree = multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, tree)


def export_weights(params: Any, masks: Any, rules: Any,
                   directory: str | os.PathLike) -> dict[str, Any]:
  """Exports sparse weights: compressed N:M where possible.

  Each 2-D leaf whose rule is N:M (``m <= 16``) and whose mask holds that
  pattern is stored with :func:`pallas_kernels.formats.compress_nm` (values and
  bit-packed in-group indices); other masked leaves are stored as masked
  dense arrays, dense leaves as they are. Every mask is also stored
  bit-packed (:func:`sparsejax.pack_masks`). ``manifest.json`` describes
  every leaf and the storage saved.

  Args:
    params: Exactly sparse params (the hard mask applied).
    masks: The masks (dense leaves hold a 0-d ``True``).
    rules: The sparsity rules (to know each leaf's N:M target).
    directory: Output folder.

  Returns:
    The manifest as a dict.

  Example:
    >>> import tempfile
    >>> w = jnp.array([[1.], [0.], [3.], [0.]] * 8)
    >>> mask = w != 0
    >>> man = export_weights({"k": w, "b": jnp.ones(1)},
    ...                      {"k": mask, "b": sj.dense_mask()},
    ...                      [sj.Rule("k", sj.NM(2, 4))], tempfile.mkdtemp())
    >>> man["leaves"]["k"]["format"], man["leaves"]["b"]["format"]
    ('nm_compressed', 'dense')
  """
  from pallas_kernels import formats

  params, masks = _host(params), _host(masks)
  assignment = rules_lib.assign(params, rules) if rules else {}
  arrays: dict[str, np.ndarray] = {}
  leaves: dict[str, Any] = {}
  dense_bytes = stored_bytes = 0
  for path, w, m in masks_lib.named_pairs(params, masks):
    w = np.asarray(w)
    dense_bytes += w.nbytes
    rule = assignment.get(path)
    pattern = rule.pattern if rule is not None else None
    entry: dict[str, Any] = {"shape": list(w.shape), "dtype": str(w.dtype)}
    if masks_lib.is_dense(m):
      entry["format"] = "dense"
      arrays[path] = w
      stored_bytes += w.nbytes
    elif (isinstance(pattern, sj.NM) and w.ndim == 2 and pattern.m <= 16 and
          not pattern.transposable and
          nm_reached(m, pattern.m) == f"{pattern.n}:{pattern.m}"):
      c = formats.compress_nm(w, m, pattern.n, pattern.m)
      arrays[path + "::values"] = np.asarray(c.values)
      arrays[path + "::indices"] = np.asarray(c.indices)
      entry.update(format="nm_compressed", n=pattern.n, m=pattern.m,
                   tile_groups=c.tile_groups)
      stored_bytes += int(c.nbytes())
    else:
      entry["format"] = "masked_dense"
      arrays[path] = np.where(m, w, 0).astype(w.dtype)
      stored_bytes += w.nbytes
    if not masks_lib.is_dense(m):
      entry["sparsity"] = float(1.0 - np.mean(m))
    leaves[path] = entry
  packed_arrays = {}
  for path, leaf in _named_packed(sj.pack_masks(masks)):
    packed_arrays[path + "::mask_bits"] = np.asarray(leaf.bits)
  manifest = {
      "format_note": (
          "nm_compressed leaves: pallas_kernels.formats.NMCompressed(values, "
          "indices, n, m, shape, tile_groups); rebuild with "
          "pallas_kernels.formats.decompress_nm. masked_dense: W*mask stored "
          "dense. mask_bits: sparsejax.PackedMask bits along the last axis."),
      "leaves": leaves,
      "dense_bytes": int(dense_bytes),
      "stored_bytes": int(stored_bytes),
  }
  if _is_main():
    os.makedirs(directory, exist_ok=True)
    np.savez(os.path.join(directory, "weights.npz"), **arrays)
    np.savez(os.path.join(directory, "masks_packed.npz"), **packed_arrays)
    with open(os.path.join(directory, "manifest.json"), "w") as f:
      json.dump(manifest, f, indent=2)
  return manifest


def _named_packed(packed: Any) -> Iterable[tuple[str, Any]]:
  is_packed = lambda x: isinstance(x, sj.PackedMask)
  flat, _ = jax.tree_util.tree_flatten_with_path(packed, is_leaf=is_packed)
  for keypath, leaf in flat:
    if is_packed(leaf):
      yield rules_lib.path_str(keypath), leaf


def format_report(results: dict[str, dict[str, Any]],
                  layers: list[dict[str, Any]]) -> str:
  """The final text report: dense vs sparse, then the per-layer table.

  Args:
    results: ``{"dense": {...}, "sparse": {...}}`` with ``val_loss``,
      ``perplexity``, ``steps_per_s``, ``train_s`` and ``label``.
    layers: Rows with ``path``, ``shape``, ``target``, ``reached``,
      ``sparsity``.

  Returns:
    The report text.

  Example:
    >>> r = {"dense": {"label": "dense", "val_loss": 1.0, "perplexity": 2.72,
    ...                "steps_per_s": 5.0, "train_s": 10.0}}
    >>> print(format_report(r, []).splitlines()[1])
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
  if layers:
    lines.append("")
    cols = ("layer", "shape", "target", "reached", "sparsity")
    rows = [(r["path"], "x".join(map(str, r["shape"])), r["target"],
             r["reached"], f"{r['sparsity']:.2%}") for r in layers]
    widths = [max(len(x[i]) for x in [cols] + rows) for i in range(len(cols))]
    for x in [cols] + rows:
      lines.append("  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip())
  return "\n".join(lines)
