"""One-shot pruning of a small GPT with calibration rows spread over the
processes.

Run as one process with 8 devices (it holds every calibration row) or as 2
processes with 4 each (each holds half the rows; see
``sparsejax.pretrain.launch``); prints one JSON line per method: a
fingerprint of every pruned kernel and mask, and the kept counts.

  python tests/multiprocess/oneshot_worker.py wanda sparsegpt
"""

import hashlib
import json
import os
import sys

from sparsejax.pretrain import cluster

cluster.join("JAX_NUM_PROCESSES" in os.environ, timeout_s=60)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import sparsejax as sj  # noqa: E402
from sparsejax.models import gpt as gpt_lib  # noqa: E402

CFG = gpt_lib.GPTConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64,
                        max_len=16)
RULES = [sj.Rule(r".*attn.*kernel", sj.NM(2, 4)),
         sj.Rule(r".*mlp.*kernel", sj.Unstructured(0.5, per_output=True))]
BATCHES, ROWS = 2, 8


def calibration_batches(mesh):
  """Global `(ROWS, 16)` token batches; this process holds its rows only."""
  tokens = np.random.default_rng(1).integers(0, 256, (BATCHES, ROWS, 16),
                                             dtype=np.int32)
  per = ROWS // jax.process_count()
  mine = slice(jax.process_index() * per, (jax.process_index() + 1) * per)
  sharding = NamedSharding(mesh, P("data"))
  return [jax.make_array_from_process_local_data(sharding, t[mine])
          for t in tokens]


def to_host(tree):
  """{leaf path: numpy value}, by plain numpy reads: the pruned params and
  masks must come back whole on every process."""
  return {path: np.asarray(leaf)
          for path, leaf in sj.rules.named_leaves(tree)}


def main(methods):
  mesh = Mesh(np.array(jax.devices()), ("data",))
  model = gpt_lib.GPT(CFG)
  # Params as built, on one device of this process; the rows span all 8.
  params = gpt_lib.init_params(model, jax.random.key(0))
  batches = calibration_batches(mesh)
  for method in methods:
    new, masks = sj.oneshot.prune(model, params, batches, RULES,
                                  method=method)
    new, masks = to_host(new), to_host(masks)
    pruned = [p for p, m in masks.items() if m.ndim and not m.all()]
    print(json.dumps({
        "method": method, "processes": jax.process_count(),
        "devices": jax.device_count(),
        "rows": sum(s.data.shape[0] for s in batches[0].addressable_shards
                    if s.replica_id == 0),
        "pruned": pruned,
        "masks": {p: [hashlib.sha256(m.tobytes()).hexdigest()[:16],
                      int(m.sum())] for p, m in masks.items()},
        "params": {p: new[p].tolist() for p in pruned},
    }), flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
