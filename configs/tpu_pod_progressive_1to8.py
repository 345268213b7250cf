"""TPU pod slice, 1:8 progressive gradient flow (geometric SDGF + MDGF).

Geometric frames 8:64, 4:32, 2:16, 1:8 (every group axis is a multiple of
64). Launch on every host with ``--config.data.paths=...`` and a shared
``--workdir`` (see :mod:`sparsejax.pretrain`).
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
    >>> c.sparsity.structure, c.distributed
    ('geometric', True)
  """
  c = config_lib.load_config_file(
      os.path.join(os.path.dirname(__file__), "tpu_pod_dense.py"))
  c.sparsity.method = "progressive_nm"
  c.sparsity.rules = f"{config_lib.ALL_BLOCK_KERNELS}=1:8"
  c.sparsity.dense_fraction = 0.1
  c.sparsity.finetune_fraction = 0.1
  c.sparsity.structure = "geometric"
  c.sparsity.decay = "exponential"
  c.sparsity.c = 1e-4
  return variants.sized(c, variant)
