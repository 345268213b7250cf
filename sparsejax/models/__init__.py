"""Reference models for tests, tutorials, one-shot pruning and pretraining.

Both Flax APIs are exercised on purpose:

* **Flax NNX** — :class:`MLP`, :class:`CNN` and :class:`ViT`, the small models
  of the tests and tutorials (``nnx.split`` / ``nnx.merge``, ``nnx.Param``
  filters and module surgery).
* **Flax Linen** — the decoder-only :class:`GPT` and the :class:`BertEncoder`
  (all-MiniLM-L6-v2). Linen because the pretraining script shards them with
  logical-axis rules (``nn.with_logical_partitioning`` /
  ``nn.logical_to_mesh_sharding``) and because one-shot calibration
  intercepts their ``nn.Dense`` calls with ``nn.intercept_methods``.

Every linear kernel is a 2-D ``(in, out)`` ``nn.Dense`` / ``nnx.Linear``
kernel (attention uses separate ``query``/``key``/``value``/``out`` layers)
and convolution kernels are ``(h, w, in, out)``, so N:M groups along the input
axis apply everywhere. Module names are chosen for path rules:
``.*attn.*kernel`` selects attention projections and ``.*mlp.*kernel`` the
feed-forward layers.

Models only live here as models: the Hugging Face converter and the MiniLM
package loader are in :mod:`sparsejax.models.minilm`, the sentence tokenizer
in :mod:`sparsejax.models.tokenizer`.
"""
from sparsejax.models.bert import BertConfig
from sparsejax.models.bert import BertEncoder
from sparsejax.models.cnn import CNN
from sparsejax.models.gpt import GPT
from sparsejax.models.gpt import GPTConfig
from sparsejax.models.gpt import default_logical_rules
from sparsejax.models.minilm import load_minilm
from sparsejax.models.minilm import SentenceEncoder
from sparsejax.models.mlp import MLP
from sparsejax.models.vit import ViT

__all__ = [
    "BertConfig",
    "BertEncoder",
    "CNN",
    "GPT",
    "GPTConfig",
    "MLP",
    "SentenceEncoder",
    "ViT",
    "default_logical_rules",
    "load_minilm",
]
