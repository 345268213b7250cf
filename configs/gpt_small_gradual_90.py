"""GPT-small, gradual magnitude pruning to 90% (Zhu & Gupta).

Cubic schedule from 0 to 90% unstructured sparsity per block kernel between
25% and 75% of training, pruning every 1000 steps. Needs
``--config.data.paths=...``.
"""
from sparsejax.train import config as base


def get_config(variant: str = ""):
  """Returns the recipe.

  Args:
    variant: unused.

  Returns:
    A ``ConfigDict``.

  Example:
    >>> c = get_config()
    >>> c.sparsity.method, c.sparsity.begin_fraction, c.sparsity.end_fraction
    ('gradual_magnitude', 0.25, 0.75)
  """
  del variant
  c = base.gpt_small("gradual_magnitude")
  c.sparsity.rules = f"{base.ALL_BLOCK_KERNELS}=0.9"
  c.sparsity.begin_fraction = 0.25
  c.sparsity.end_fraction = 0.75
  c.sparsity.frequency = 1000
  return c
