"""The default run with 2:4 SR-STE instead of progressive 2:4."""
import ml_collections

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The recipe, sized by ``variant`` (see :mod:`sparsejax.pretrain.variants`).

  Example:
    >>> get_config().sparsity.method
    'srste'
  """
  c = config_lib.get_config()
  c.sparsity.method = "srste"
  return variants.sized(c, variant)
