"""TPU pod slice, dense: the scale of every ``tpu_pod_*`` recipe.

24 layers, width 2048 (~1.2B block weights): bfloat16 compute, scanned and
rematerialised blocks, rotary positions, sequences of 2048, a global batch
of 1024 sequences; parameters sharded 8-way (``fsdp``) and the batch over
every chip; one process per host (``distributed=True``), each loading only
its rows. Launch on every host with ``--config.data.paths=...`` and a shared
``--workdir`` (see :mod:`sparsejax.pretrain`).
"""
import ml_collections

from sparsejax.pretrain import variants
from sparsejax.pretrain.recipes import gpt_small_dense


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The recipe, sized by ``variant`` (see :mod:`sparsejax.pretrain.variants`).

  Example:
    >>> c = get_config()
    >>> c.model.scan_layers, c.mesh.fsdp, c.distributed
    (True, 8, True)
  """
  c = gpt_small_dense.get_config()
  c.data.seq_len = 2048
  c.data.batch_size = 1024
  c.model.d_model = 2048
  c.model.n_layers = 24
  c.model.n_heads = 16
  c.model.d_ff = 8192
  c.model.dtype = "bfloat16"
  c.model.scan_layers = True
  c.model.remat = True
  c.model.positions = "rotary"
  c.optim.lr = 2e-4
  c.optim.warmup_steps = 1000
  c.train.steps = 200_000
  c.mesh.data = -1
  c.mesh.fsdp = 8
  c.mesh.tensor = 1
  c.eval.batch_size = 256
  c.distributed = True
  return variants.sized(c, variant)
