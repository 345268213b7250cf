"""One run of a grid, trained by the pretraining application.

:func:`train_run` is the adapter between a comparison and
``python -m sparsejax.pretrain``: it trains one arm with
:func:`sparsejax.pretrain.loop.run` (dense baseline switched off, no
progress bar or report) and returns what the comparison table needs.
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from sparsejax.pretrain import metrics as metrics_lib

__all__ = ["train_run"]


def train_run(config: Any, folder: str) -> dict[str, Any]:
  """Trains one run with the pretraining loop; returns its measured values.

  ``wall_s`` is the wall time of the whole call: planning (data, shapes),
  compiling the train and eval steps, training, evaluation and checkpoint
  writes; ``train_s`` and ``steps_per_s`` are the loop's own timing of the
  training steps (compilation and evaluation excluded). ``flip_rate`` is the
  mean of the method's ``flip_rate`` diagnostic over the logged steps
  (``None`` for dense).

  Args:
    config: The run's config (one arm: no dense baseline).
    folder: The run folder (resumed if it holds a checkpoint).

  Returns:
    ``{"status": "finished", "val_loss", "perplexity", "flip_rate",
    "wall_s", "train_s", "steps_per_s", "resumed_from"}``, or
    ``{"status": "nonfinite", "error", "wall_s"}`` for a diverged run.

  Raises:
    ConfigError: The config cannot run (nothing is computed or written).

  Example:
    >>> import tempfile
    >>> from sparsejax.compare import grid
    >>> cfg = grid.run_config(grid.default_config(), grid.ArmSpec("dense"), 0)
    >>> cfg.mesh.data = 1000
    >>> train_run(cfg, tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: mesh {'data': 1000, ...} has 1000 device(s) but ... are available; ...
  """
  from sparsejax.pretrain import loop
  from sparsejax.pretrain import step as step_lib
  name = "dense" if config.sparsity.method == "none" else "sparse"
  t0 = time.perf_counter()
  try:
    out = loop.run(config, folder, progress=False, report=False)
  except step_lib.NonFiniteError as e:
    return {"status": "nonfinite", "error": str(e),
            "wall_s": time.perf_counter() - t0}
  wall = time.perf_counter() - t0
  res = out["results"][name]
  records = metrics_lib.read_metrics(os.path.join(folder, name,
                                                  "metrics.jsonl"))
  flips = [r["flip_rate"] for r in records if "flip_rate" in r]
  return {"status": "finished", "val_loss": float(res["val_loss"]),
          "perplexity": float(res["perplexity"]),
          "flip_rate": float(np.mean(flips)) if flips else None,
          "wall_s": wall, "train_s": res["train_s"],
          "steps_per_s": res["steps_per_s"],
          "resumed_from": res["resumed_from"]}
