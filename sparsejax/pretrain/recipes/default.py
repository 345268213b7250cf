"""The embedded default of ``python -m sparsejax.pretrain``.

Progressive 2:4 next to a dense baseline on the ``pydoc_data`` text; the
same config as running without ``--config``.
"""
import ml_collections

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The recipe, sized by ``variant`` (see :mod:`sparsejax.pretrain.variants`).

  Example:
    >>> get_config().sparsity.method
    'progressive_nm'
  """
  return variants.sized(config_lib.get_config(), variant)
