"""TPU pod slice, 1:8 progressive gradient flow (geometric SDGF + MDGF).

Geometric frames 8:64, 4:32, 2:16, 1:8 (every group axis is a multiple of
64). Launch on every host with ``--config.data.paths=...`` and a shared
``--workdir`` (see :mod:`sparsejax.pretrain`).
"""
import ml_collections

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants
from sparsejax.pretrain.recipes import tpu_pod_dense


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The recipe, sized by ``variant`` (see :mod:`sparsejax.pretrain.variants`).

  Example:
    >>> c = get_config()
    >>> c.sparsity.structure, c.distributed
    ('geometric', True)
  """
  c = tpu_pod_dense.get_config()
  c.sparsity.method = "progressive_nm"
  c.sparsity.rules = f"{config_lib.ALL_BLOCK_KERNELS}=1:8"
  c.sparsity.dense_fraction = 0.1
  c.sparsity.finetune_fraction = 0.1
  c.sparsity.structure = "geometric"
  c.sparsity.decay = "exponential"
  c.sparsity.c = 1e-4
  return variants.sized(c, variant)
