"""A few steps of a tiny model: the default run shrunk for CI (seconds)."""
import ml_collections

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The recipe, sized by ``variant`` (see :mod:`sparsejax.pretrain.variants`).

  Example:
    >>> c = get_config()
    >>> c.sparsity.method, c.train.steps, c.model.d_model
    ('progressive_nm', 12, 32)
  """
  c = config_lib.get_config()
  c.data.seq_len = 32
  c.data.batch_size = 8
  c.model.d_model = 32
  c.model.n_layers = 1
  c.model.n_heads = 2
  c.model.d_ff = 64
  c.optim.warmup_steps = 2
  c.train.steps = 12
  c.sparsity.dense_fraction = 0.25
  c.sparsity.finetune_fraction = 0.25
  c.sparsity.c = 0.2
  c.checkpoint.every = 4
  c.eval.every = 6
  c.eval.batch_size = 8
  c.eval.max_windows = 16
  c.log_every = 2
  c.outputs.plots = False
  return variants.sized(c, variant)
