"""The default run's dense model only (no sparse arm)."""
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants


def get_config(variant: str = ""):
  """Returns the config.

  Args:
    variant: ``""`` (the recipe as written) or ``"cpu"`` (sized for a
      2-core CPU, see :mod:`sparsejax.pretrain.variants`).

  Returns:
    A ``ConfigDict``.

  Example:
    >>> get_config().sparsity.method
    'none'
  """
  c = config_lib.get_config()
  c.sparsity.method = "none"
  return variants.sized(c, variant)
