"""TPU pod slice, 1:8 progressive gradient flow (geometric SDGF + MDGF).

Geometric frames 8:64, 4:32, 2:16, 1:8 (every group axis is a multiple of
64). Launch on every host with ``--config.data.paths=...`` and a shared
``--workdir`` (see :mod:`sparsejax.pretrain`).
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
    >>> c.sparsity.structure, c.distributed
    ('geometric', True)
  """
  del variant
  c = base.tpu_pod("progressive_nm")
  c.sparsity.rules = f"{base.ALL_BLOCK_KERNELS}=1:8"
  c.sparsity.dense_fraction = 0.1
  c.sparsity.finetune_fraction = 0.1
  c.sparsity.structure = "geometric"
  c.sparsity.decay = "exponential"
  c.sparsity.c = 1e-4
  return c
