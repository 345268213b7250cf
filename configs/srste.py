"""The default run with 2:4 SR-STE instead of progressive 2:4."""
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
    'srste'
  """
  c = config_lib.get_config()
  c.sparsity.method = "srste"
  return variants.sized(c, variant)
