"""GPT-small, RigL at 90% sparsity with an ERK distribution.

Drop fraction 0.3 cosine-annealed, masks updated every 100 steps until 75%
of training, grown weights start at zero with reset optimizer moments.
Needs ``--config.data.paths=...``.
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
    >>> c.sparsity.method, c.sparsity.distribution, c.sparsity.target
    ('rigl', 'erk', 0.9)
  """
  del variant
  c = base.gpt_small("rigl")
  c.sparsity.rules = f"{base.ALL_BLOCK_KERNELS}=0.9"
  c.sparsity.distribution = "erk"
  c.sparsity.target = 0.9
  c.sparsity.alpha = 0.3
  c.sparsity.delta_t = 100
  c.sparsity.t_end_fraction = 0.75
  return c
