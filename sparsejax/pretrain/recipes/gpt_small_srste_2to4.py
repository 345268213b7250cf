"""GPT-small, 2:4 SR-STE on every block kernel (the 2:4 pretraining recipe).

The masked-decay strength 6e-5 is the published value for GPT-2 124M with
AdamW. Needs ``--config.data.paths=...`` (plain text files or folders).
"""
import ml_collections

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants
from sparsejax.pretrain.recipes import gpt_small_dense


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The recipe, sized by ``variant`` (see :mod:`sparsejax.pretrain.variants`).

  Example:
    >>> get_config().sparsity.rules
    'blocks?(_\\\\d+)?/(attn|mlp)/\\\\w+/kernel=2:4'
  """
  c = gpt_small_dense.get_config()
  c.sparsity.method = "srste"
  c.sparsity.rules = f"{config_lib.ALL_BLOCK_KERNELS}=2:4"
  c.sparsity.srste_decay = 6e-5
  return variants.sized(c, variant)
