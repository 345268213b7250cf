"""The default run's dense model only (no sparse arm)."""
from sparsejax.pretrain import config as config_lib


def get_config():
  """Returns the config.

  Returns:
    A ``ConfigDict``.

  Example:
    >>> get_config().sparsity.method
    'none'
  """
  c = config_lib.get_config()
  c.sparsity.method = "none"
  return c
