"""TPU pod slice, 2:4 SR-STE on every block kernel.

The masked-decay strength 2e-4 is the published value for the larger GPT-2
models. Launch on every host with ``--config.data.paths=...``.
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
    >>> get_config().sparsity.srste_decay
    0.0002
  """
  c = config_lib.load_config_file(
      os.path.join(os.path.dirname(__file__), "tpu_pod_dense.py"))
  c.sparsity.method = "srste"
  c.sparsity.rules = f"{config_lib.ALL_BLOCK_KERNELS}=2:4"
  c.sparsity.srste_decay = 2e-4
  return variants.sized(c, variant)
