r"""Pretrain a sparse GPT: ``python -m sparsejax.pretrain``.

With no arguments this trains the embedded default -- a small byte-level GPT
on the ``pydoc_data`` help text that ships with Python, with progressive 2:4
sparsity -- next to its dense baseline, and prints the validation loss and
perplexity of both, their steps/s, the per-layer sparsity and the N:M
pattern reached. On a shared 2-core CPU it took 162 s (224 s on a busier
machine) for both runs of 500 steps, reaching a validation loss of 1.537 nats/byte dense and 1.562 with
progressive 2:4 (+1.6%; 2:4 SR-STE: 1.565, +1.8%).

Configs
-------
A config is a Python file with ``get_config(variant)`` returning an
``ml_collections.ConfigDict`` (see :func:`sparsejax.train.config.get_config`
for every key)::

  python -m sparsejax.pretrain --config configs/default.py:smoke
  python -m sparsejax.pretrain --config configs/default.py:srste \
      --config.train.steps=2000 --workdir runs/srste
  python -m sparsejax.pretrain --config configs/gpt_small_progressive_1to8.py \
      --config.data.paths=/data/text --workdir /ckpt/gpt-small-1to8

``--config.KEY=VALUE`` overrides any key (an unknown key is an error);
``--workdir`` holds checkpoints, ``metrics.jsonl``, plots, the exported
weights and ``summary.json`` (default: a new folder under ``runs/``). Your
own data: ``--config.data.source=files --config.data.paths=a.txt,dir/`` (plain
text, byte-level tokens).

Rerunning with the same ``--workdir`` resumes from the last complete
checkpoint (bit-exact); the mesh and the logging/checkpoint/eval/output keys
may change, anything else is refused before any compute.

GPU box
-------
One process drives every local GPU; the mesh covers all of them::

  pip install -e . "jax[cuda12]"
  python -m sparsejax.pretrain --config configs/gpt_small_srste_2to4.py \
      --config.mesh.data=-1 --config.mesh.tensor=2 --workdir /ckpt/run1

TPU pod slice
-------------
Run the same command on every host of the slice (e.g. with
``gcloud compute tpus tpu-vm ssh NAME --worker=all --command=...``) and set
``distributed=True``, which calls ``jax.distributed.initialize()`` before
anything touches the devices (on Cloud TPU it needs no arguments). Every host
loads only its own rows of each batch; the mesh spans all chips of the slice.
The workdir must be one folder every host sees (an NFS or ``gcsfuse`` mount);
process 0 writes the metrics, plots and export, and every process takes part
in saving and restoring the sharded checkpoints::

  python -m sparsejax.pretrain --config configs/tpu_pod_progressive_1to8.py \
      --config.data.paths=/data/text --workdir /mnt/shared/runs/pod-1to8

(``configs/tpu_pod_*.py`` already set ``distributed=True``.)

In Python, the same launch is:

>>> import jax  # doctest: +SKIP
>>> jax.distributed.initialize()  # doctest: +SKIP
>>> from sparsejax.train import config, loop  # doctest: +SKIP
>>> loop.run(config.get_config(), "/mnt/shared/run")  # doctest: +SKIP
"""
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
                              "train", "config.py")
"""Path of the embedded default config file (used when no ``--config``)."""

_CONFIG = config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG,
    "Config file with get_config(variant): PATH.py or PATH.py:VARIANT.")
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
  from sparsejax.train import config as config_lib
  from sparsejax.train import loop
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
