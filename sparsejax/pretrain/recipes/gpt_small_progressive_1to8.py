"""GPT-small, 1:8 with progressive gradient flow (SDGF + MDGF).

Dense for the first 10% of training, then the N:M pattern tightens stepwise
(7:8, 4:8, 2:8, 1:8) while pruned weights are scaled by an exponentially
decaying beta, then hard 1:8 fine-tuning for the last 10%. Needs
``--config.data.paths=...``.
"""
import ml_collections

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants
from sparsejax.pretrain.recipes import gpt_small_dense


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The recipe, sized by ``variant`` (see :mod:`sparsejax.pretrain.variants`).

  Example:
    >>> c = get_config()
    >>> c.sparsity.method, c.sparsity.structure, c.sparsity.decay
    ('progressive_nm', 'stepwise', 'exponential')
  """
  c = gpt_small_dense.get_config()
  c.sparsity.method = "progressive_nm"
  c.sparsity.rules = f"{config_lib.ALL_BLOCK_KERNELS}=1:8"
  c.sparsity.dense_fraction = 0.1
  c.sparsity.finetune_fraction = 0.1
  c.sparsity.structure = "stepwise"
  c.sparsity.decay = "exponential"
  c.sparsity.c = 1e-4
  return variants.sized(c, variant)
