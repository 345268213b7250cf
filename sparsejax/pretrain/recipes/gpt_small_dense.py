"""GPT-small dense baseline: the scale of every ``gpt_small_*`` recipe.

12 layers, width 768 (~85M block weights) on a GPU box: byte-level tokens,
sequences of 1024, a global batch of 256 sequences, AdamW with the GPT-2
hyper-parameters, 100k steps; data from plain text files (``data.paths``).
The mesh is pure data parallel over every local device. Needs
``--config.data.paths=...``.
"""
import ml_collections

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The recipe, sized by ``variant`` (see :mod:`sparsejax.pretrain.variants`).

  Example:
    >>> c = get_config()
    >>> c.sparsity.method, c.model.d_model, c.data.seq_len
    ('none', 768, 1024)
  """
  c = config_lib.get_config()
  c.data.source = "files"
  c.data.seq_len = 1024
  c.data.batch_size = 256
  c.data.val_fraction = 0.005
  c.model.d_model = 768
  c.model.n_layers = 12
  c.model.n_heads = 12
  c.model.d_ff = 3072
  c.model.remat = True
  c.optim.lr = 6e-4
  c.optim.warmup_steps = 2000
  c.optim.b2 = 0.95
  c.optim.weight_decay = 0.1
  c.optim.end_lr_fraction = 0.1
  c.train.steps = 100_000
  c.sparsity.method = "none"
  c.sparsity.baseline = False
  c.sparsity.frequency = 1000
  c.checkpoint.every = 2000
  c.checkpoint.keep = 3
  c.eval.every = 2000
  c.eval.batch_size = 64
  c.eval.max_windows = 1024
  c.log_every = 50
  return variants.sized(c, variant)
