"""TPU pod slice, 2:4 SR-STE on every block kernel.

The masked-decay strength 2e-4 is the published value for the larger GPT-2
models. Launch on every host with ``--config.data.paths=...``.
"""
import ml_collections

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants
from sparsejax.pretrain.recipes import tpu_pod_dense


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The recipe, sized by ``variant`` (see :mod:`sparsejax.pretrain.variants`).

  Example:
    >>> get_config().sparsity.srste_decay
    0.0002
  """
  c = tpu_pod_dense.get_config()
  c.sparsity.method = "srste"
  c.sparsity.rules = f"{config_lib.ALL_BLOCK_KERNELS}=2:4"
  c.sparsity.srste_decay = 2e-4
  return variants.sized(c, variant)
