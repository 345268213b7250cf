"""GPT-small dense baseline (the reference for every gpt_small_* recipe).

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
    >>> get_config().sparsity.method
    'none'
  """
  del variant
  return base.gpt_small("none")
