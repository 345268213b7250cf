"""The default run's dense model only (no sparse arm)."""
import ml_collections

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The recipe, sized by ``variant`` (see :mod:`sparsejax.pretrain.variants`).

  Example:
    >>> get_config().sparsity.method
    'none'
  """
  c = config_lib.get_config()
  c.sparsity.method = "none"
  return variants.sized(c, variant)
