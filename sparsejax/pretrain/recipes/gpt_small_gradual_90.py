"""GPT-small, gradual magnitude pruning to 90% (Zhu & Gupta).

Cubic schedule from 0 to 90% unstructured sparsity per block kernel between
25% and 75% of training, pruning every 1000 steps. Needs
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
    >>> c.sparsity.method, c.sparsity.begin_fraction, c.sparsity.end_fraction
    ('gradual_magnitude', 0.25, 0.75)
  """
  c = gpt_small_dense.get_config()
  c.sparsity.method = "gradual_magnitude"
  c.sparsity.rules = f"{config_lib.ALL_BLOCK_KERNELS}=0.9"
  c.sparsity.distribution = ""  # each layer at the rule's own 90%
  c.sparsity.begin_fraction = 0.25
  c.sparsity.end_fraction = 0.75
  c.sparsity.frequency = 1000
  return variants.sized(c, variant)
