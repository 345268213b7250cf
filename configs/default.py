"""The embedded default of ``python -m sparsejax.pretrain``.

Progressive 2:4 next to a dense baseline on the ``pydoc_data`` text; the
same config as running without ``--config``.
"""
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants


def get_config(variant: str = ""):
  """Returns the default config.

  Args:
    variant: ``""`` (the recipe as written) or ``"cpu"`` (sized for a
      2-core CPU, see :mod:`sparsejax.pretrain.variants`).

  Returns:
    A ``ConfigDict``.

  Example:
    >>> get_config().sparsity.method
    'progressive_nm'
  """
  return variants.sized(config_lib.get_config(), variant)
