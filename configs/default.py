"""The embedded default of ``python -m sparsejax.pretrain``.

Progressive 2:4 next to a dense baseline on the ``pydoc_data`` text; the
same config as running without ``--config``.
"""
from sparsejax.pretrain import config as config_lib


def get_config():
  """Returns the default config.

  Returns:
    A ``ConfigDict``.

  Example:
    >>> get_config().sparsity.method
    'progressive_nm'
  """
  return config_lib.get_config()
