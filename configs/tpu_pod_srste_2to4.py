"""TPU pod slice, 2:4 SR-STE on every block kernel.

The masked-decay strength 2e-4 is the published value for the larger GPT-2
models. Launch on every host with ``--config.data.paths=...``.
"""
from sparsejax.train import config as base


def get_config(variant: str = ""):
  """Returns the recipe.

  Args:
    variant: unused.

  Returns:
    A ``ConfigDict``.

  Example:
    >>> get_config().sparsity.srste_decay
    0.0002
  """
  del variant
  c = base.tpu_pod("srste_nm")
  c.sparsity.rules = f"{base.ALL_BLOCK_KERNELS}=2:4"
  c.sparsity.srste_decay = 2e-4
  return c
