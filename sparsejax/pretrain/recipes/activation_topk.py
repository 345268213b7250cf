"""Q-Sparse activation sparsity: every block projection sees its top-50% input.

The default GPT with dense weights, where each Dense layer of the blocks
(attention query/key/value/out, MLP fc1/fc2) keeps the top half of its input
features by magnitude per token (Wang et al. 2024, "Q-Sparse", top-K with the
straight-through estimator); the LM head stays dense. The achieved sparsity
is logged per layer as ``act_sparsity/<layer>``. 319 s of wall time (136 s
of CPU time) on a shared 2-core CPU.
"""
import ml_collections

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import variants

BLOCK_LAYERS = r"block_\d+/(attn|mlp)/\w+"
"""Every Dense layer of the (unscanned) transformer blocks."""


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The recipe, sized by ``variant`` (see :mod:`sparsejax.pretrain.variants`).

  Example:
    >>> c = get_config()
    >>> c.sparsity.method, c.activation_sparsity.rules.endswith("=0.5")
    ('none', True)
  """
  c = config_lib.get_config()
  c.sparsity.method = "none"
  c.activation_sparsity.rules = f"{BLOCK_LAYERS}=0.5"
  c.train.steps = 200
  c.optim.warmup_steps = 20
  c.checkpoint.every = 100
  c.eval.every = 100
  return variants.sized(c, variant)
