"""The pretraining smoke job (sparse arm only) in this process's cluster.

  python tests/multiprocess/pretrain_worker.py WORKDIR STOP_AT

``STOP_AT`` 0 trains to the end; otherwise the run stops there with a
checkpoint, as if preempted. Prints one JSON line: whether it finished, the
step it resumed from, its validation loss and the logged training losses.
"""

import json
import os
import sys

from sparsejax.pretrain import cluster

cluster.join("JAX_NUM_PROCESSES" in os.environ, timeout_s=60)

import jax  # noqa: E402

from sparsejax.pretrain import cli, loop, metrics  # noqa: E402

ARGS = ["--config", "smoke", "--config.sparsity.baseline=False"]


def main(workdir, stop_at):
  args = cli.parse_args(ARGS + ["--workdir", workdir])
  out = loop.run(args.config, workdir, stop_at=stop_at or None,
                 progress=False, report=False)
  arm, = out["arms"]
  records = metrics.read_metrics(os.path.join(workdir, arm, "metrics.jsonl"))
  print(json.dumps({
      "processes": jax.process_count(), "devices": jax.device_count(),
      "finished": out["finished"],
      "resumed_from": out["arms"][arm].get("resumed_from"),
      "val_loss": out["arms"][arm].get("val_loss"),
      "losses": {r["step"]: r["loss"] for r in records if "loss" in r},
  }), flush=True)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]))
