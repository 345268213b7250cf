"""The pretraining smoke job (sparse arm only) in this process's cluster.

  python tests/multiprocess/pretrain_worker.py WORKDIR STOP_AT

``STOP_AT`` 0 trains to the end; otherwise the run stops there with a
checkpoint, as if preempted. Prints one JSON line: whether it finished, the
step it resumed from, its validation loss and the logged training losses,
the results and per-layer summary the run returned, and every file outside
the checkpoints that this process opened for writing (seen through Python's
audit hooks), with how many times.
"""

import collections
import json
import os
import sys

from sparsejax.pretrain import cluster

cluster.join("JAX_NUM_PROCESSES" in os.environ, timeout_s=60)

import jax  # noqa: E402

from sparsejax.pretrain import cli, loop, metrics  # noqa: E402

ARGS = ["--config", "smoke", "--config.sparsity.baseline=False"]


def record_writes(workdir):
  """A Counter that counts each file under ``workdir`` this process opens
  for writing, by path relative to it (checkpoints left out: every process
  writes its own shards of those)."""
  root = os.path.abspath(workdir) + os.sep
  writes = collections.Counter()
  write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

  def hook(event, args):
    if event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
      return
    path, mode, flags = args
    writing = (any(c in mode for c in "wax+") if isinstance(mode, str)
               else bool((flags or 0) & write_flags))
    path = os.path.abspath(os.fsdecode(path))
    if writing and path.startswith(root):
      rel = path[len(root):]
      if "checkpoints" not in rel.split(os.sep):
        writes[rel] += 1

  sys.addaudithook(hook)
  return writes


def main(workdir, stop_at):
  writes = record_writes(workdir)
  args = cli.parse_args(ARGS + ["--workdir", workdir])
  out = loop.run(args.config, workdir, stop_at=stop_at or None,
                 progress=False, report=False)
  arm, = out["arms"]
  records = metrics.read_metrics(os.path.join(workdir, arm, "metrics.jsonl"))
  layers = out.get("layers")
  print(json.dumps({
      "process": jax.process_index(),
      "processes": jax.process_count(), "devices": jax.device_count(),
      "finished": out["finished"],
      "resumed_from": out["arms"][arm].get("resumed_from"),
      "val_loss": out["arms"][arm].get("val_loss"),
      "losses": {r["step"]: r["loss"] for r in records if "loss" in r},
      "results": {a: {k: v for k, v in r.items() if k in ("val_loss",
                                                           "perplexity")}
                  for a, r in out["results"].items()},
      "layers": None if layers is None else [
          [r.path, r.kept, r.size, r.reached] for r in layers.masked],
      "writes": dict(writes),
  }), flush=True)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]))
