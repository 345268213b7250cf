"""GPT-small, 2:4 SR-STE on every block kernel (the 2:4 pretraining recipe).

The masked-decay strength 6e-5 is the published value for GPT-2 124M with
AdamW. Needs ``--config.data.paths=...`` (plain text files or folders).
"""
from sparsejax.train import config as base


def get_config(variant: str = ""):
  """Returns the recipe.

  Args:
    variant: unused (kept for ``--config FILE:VARIANT``).

  Returns:
    A ``ConfigDict``.

  Example:
    >>> get_config().sparsity.rules
    'blocks?(_\\\\d+)?/(attn|mlp)/\\\\w+/kernel=2:4'
  """
  del variant
  c = base.gpt_small("srste_nm")
  c.sparsity.rules = f"{base.ALL_BLOCK_KERNELS}=2:4"
  c.sparsity.srste_decay = 6e-5
  return c
