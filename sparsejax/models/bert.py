"""BERT encoder (Flax Linen) and its sentence embedding.

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

The pretrained weights are converted and loaded by
:mod:`sparsejax.models.minilm`; texts are tokenized by
:mod:`sparsejax.models.tokenizer`.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "BertConfig",
    "BertEmbeddings",
    "BertSelfAttention",
    "BertLayer",
    "BertEncoder",
    "mean_pool",
    "l2_normalize",
    "sentence_embedding",
]

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
