"""GPT-small, RigL at 90% sparsity with an ERK distribution.

Drop fraction 0.3 cosine-annealed, masks updated every 100 steps until 75%
of training, grown weights start at zero with reset optimizer moments.
Needs ``--config.data.paths=...``.
"""
import ml_collections

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants
from sparsejax.pretrain.recipes import gpt_small_dense


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The recipe, sized by ``variant`` (see :mod:`sparsejax.pretrain.variants`).

  Example:
    >>> c = get_config()
    >>> c.sparsity.method, c.sparsity.distribution, c.sparsity.target
    ('rigl', 'erk', 0.9)
  """
  c = gpt_small_dense.get_config()
  c.sparsity.method = "rigl"
  c.sparsity.rules = f"{config_lib.ALL_BLOCK_KERNELS}=0.9"
  c.sparsity.distribution = "erk"
  c.sparsity.target = 0.9
  c.sparsity.alpha = 0.3
  c.sparsity.delta_t = 100
  c.sparsity.t_end_fraction = 0.75
  return variants.sized(c, variant)
