"""GPT-small, gradual magnitude pruning to 90% (Zhu & Gupta).

Cubic schedule from 0 to 90% unstructured sparsity per block kernel between
25% and 75% of training, pruning every 1000 steps. Needs
``--config.data.paths=...``.
"""
import os

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants


def get_config(variant: str = ""):
  """Returns the recipe.

  Args:
    variant: ``""`` (the recipe as written) or ``"cpu"`` (sized for a
      2-core CPU, see :mod:`sparsejax.pretrain.variants`).

  Returns:
    A ``ConfigDict``.

  Example:
    >>> c = get_config()
    >>> c.sparsity.method, c.sparsity.begin_fraction, c.sparsity.end_fraction
    ('gradual_magnitude', 0.25, 0.75)
  """
  c = config_lib.load_config_file(
      os.path.join(os.path.dirname(__file__), "gpt_small_dense.py"))
  c.sparsity.method = "gradual_magnitude"
  c.sparsity.rules = f"{config_lib.ALL_BLOCK_KERNELS}=0.9"
  c.sparsity.distribution = ""  # each layer at the rule's own 90%
  c.sparsity.begin_fraction = 0.25
  c.sparsity.end_fraction = 0.75
  c.sparsity.frequency = 1000
  return variants.sized(c, variant)
