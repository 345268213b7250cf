"""GPT-small, 1:8 with progressive gradient flow (SDGF + MDGF).

Dense for the first 10% of training, then the N:M pattern tightens stepwise
(7:8, 4:8, 2:8, 1:8) while pruned weights are scaled by an exponentially
decaying beta, then hard 1:8 fine-tuning for the last 10%. Needs
``--config.data.paths=...``.
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
    >>> c.sparsity.method, c.sparsity.structure, c.sparsity.decay
    ('progressive_nm', 'stepwise', 'exponential')
  """
  del variant
  c = base.gpt_small("progressive_nm")
  c.sparsity.rules = f"{base.ALL_BLOCK_KERNELS}=1:8"
  c.sparsity.dense_fraction = 0.1
  c.sparsity.finetune_fraction = 0.1
  c.sparsity.structure = "stepwise"
  c.sparsity.decay = "exponential"
  c.sparsity.c = 1e-4
  return c
