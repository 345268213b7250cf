"""The default run with 2:4 SR-STE instead of progressive 2:4."""
from sparsejax.pretrain import config as config_lib


def get_config():
  """Returns the config.

  Returns:
    A ``ConfigDict``.

  Example:
    >>> get_config().sparsity.method
    'srste'
  """
  c = config_lib.get_config()
  c.sparsity.method = "srste"
  return c
