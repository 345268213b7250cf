"""Command line of ``python -m sparsejax.pretrain``."""
from __future__ import annotations

import datetime
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

__all__ = ["DEFAULT_CONFIG", "main"]

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "config.py")
"""Path of the embedded default config (used when no ``--config``)."""

_CONFIG = config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG,
    "Config file with get_config(), e.g. configs/smoke.py.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None,
    "Output folder (checkpoints, metrics, plots, export); a compatible run "
    "there is resumed. Default: a new folder under ./runs/.")


def main(argv: list[str]) -> None:
  """Entry point of ``python -m sparsejax.pretrain`` (absl ``app.run``).

  Args:
    argv: Remaining command-line arguments (none are accepted).

  Example:
    >>> main(["pretrain", "extra"])
    Traceback (most recent call last):
    ...
    absl.app.UsageError: unexpected arguments: extra
  """
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  t0 = time.perf_counter()
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  config = _CONFIG.value
  workdir = _WORKDIR.value or os.path.join(
      "runs", datetime.datetime.now().strftime("pretrain-%Y%m%d-%H%M%S"))
  import jax
  if config.get("distributed", False):
    jax.distributed.initialize()
  from sparsejax.pretrain import config as config_lib
  from sparsejax.pretrain import loop
  try:
    out = loop.run(config, workdir)
  except config_lib.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if jax.process_index() == 0:
    state = "finished" if out["finished"] else "stopped"
    print(f"{state}; outputs in {os.path.abspath(workdir)}; wall time "
          f"{time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
  app.run(main)
