"""Decoder-only GPT (Flax Linen) with logical-axis sharding annotations.

A pre-LayerNorm transformer for byte-level (or any) language modelling, sized
by :class:`GPTConfig`. Every parameter carries logical axis names through
``nn.with_logical_partitioning`` so that ``nn.logical_to_mesh_sharding`` with
:func:`default_logical_rules` (or your own rules) shards it over a device
mesh. Activations are constrained with :func:`constrain`.

Parameter layout (``params`` collection, plain layers)::

  token_embed/embedding          (vocab, d_model)      ("vocab", "embed")
  pos_embed/embedding            (max_len, d_model)    ("position", "embed")
  block_{i}/ln1/{scale,bias}     (d_model,)            ("embed",)
  block_{i}/attn/query/kernel    (d_model, d_model)    ("embed", "heads")
  block_{i}/attn/key/kernel      (d_model, d_model)    ("embed", "heads")
  block_{i}/attn/value/kernel    (d_model, d_model)    ("embed", "heads")
  block_{i}/attn/out/kernel      (d_model, d_model)    ("heads", "embed")
  block_{i}/ln2/{scale,bias}     (d_model,)            ("embed",)
  block_{i}/mlp/fc1/kernel       (d_model, d_ff)       ("embed", "mlp")
  block_{i}/mlp/fc2/kernel       (d_ff, d_model)       ("mlp", "embed")
  final_norm/{scale,bias}        (d_model,)            ("embed",)
  lm_head/kernel                 (d_model, vocab)      ("embed", "vocab")

All kernels are 2-D ``(in, out)`` ``nn.Dense`` kernels, so N:M groups along
axis 0 apply to every linear layer. With ``scan_layers=True`` the blocks live
under ``blocks/...`` with a leading ``("layers",)`` axis of size ``n_layers``
(convert with :func:`stack_layers` / :func:`unstack_layers`). With
``positions="rotary"`` there is no ``pos_embed``; with ``tie_embeddings=True``
there is no ``lm_head``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


__all__ = [
    "GPTConfig",
    "GPT",
    "Block",
    "CausalSelfAttention",
    "MlpBlock",
    "constrain",
    "default_logical_rules",
    "rotary_embedding",
    "init_params",
    "logical_partition_specs",
    "stack_layers",
    "unstack_layers",
    "cross_entropy",
    "lm_loss",
    "make_loss_fn",
]


@dataclasses.dataclass(frozen=True)
class GPTConfig:
  """Hyper-parameters of :class:`GPT`.

  Attributes:
    vocab_size: Vocabulary size; 256 for byte-level tokens.
    d_model: Residual width; a multiple of 64 keeps every kernel's axis 0
      compatible with 1:8 geometric and 1:16 N:M schedules.
    n_layers: Number of transformer blocks.
    n_heads: Number of attention heads (``d_model % n_heads == 0``).
    d_ff: Hidden width of the feed-forward block.
    max_len: Longest sequence (size of the learned position table).
    dropout: Dropout rate on the embeddings and residual branches.
    dtype: Computation dtype.
    param_dtype: Parameter dtype.
    positions: ``"learned"`` (absolute table) or ``"rotary"`` (RoPE).
    tie_embeddings: Reuse the token embedding as the output projection.
    scan_layers: Run the blocks with ``nn.scan`` (stacked parameters, one
      compiled block).
    remat: Rematerialise each block in the backward pass (``nn.remat``).
    remat_policy: Optional name of a ``jax.checkpoint_policies`` entry.
    use_bias: Biases in the Dense layers.
    init_std: Standard deviation of the normal initialisers; residual output
      projections use ``init_std / sqrt(2 * n_layers)``.
    rope_base: Base of the rotary frequencies.

  Example:
    >>> GPTConfig(d_model=64, n_heads=2).head_dim
    32
  """
  vocab_size: int = 256
  d_model: int = 256
  n_layers: int = 4
  n_heads: int = 4
  d_ff: int = 1024
  max_len: int = 256
  dropout: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  positions: str = "learned"
  tie_embeddings: bool = False
  scan_layers: bool = False
  remat: bool = False
  remat_policy: str | None = None
  use_bias: bool = True
  init_std: float = 0.02
  rope_base: float = 10000.0

  def __post_init__(self):
    if self.d_model % self.n_heads:
      raise ValueError(
          f"d_model={self.d_model} not divisible by n_heads={self.n_heads}")
    if self.positions not in ("learned", "rotary"):
      raise ValueError(
          f"positions must be 'learned' or 'rotary', got {self.positions!r}")
    if self.positions == "rotary" and self.head_dim % 2:
      raise ValueError("rotary positions need an even head_dim")

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads


# --------------------------------------------------------------------------
# Sharding helpers
# --------------------------------------------------------------------------


def default_logical_rules(data: Any = "data",
                          model: Any = "model",
                          fsdp: Any = None) -> tuple[tuple[str, Any], ...]:
  """Logical-to-mesh axis rules for :class:`GPT` and :class:`BertEncoder`.

  Batch goes over ``data`` (and ``fsdp``), heads / MLP hidden / vocabulary over
  ``model`` (tensor parallelism), and the embedding axis of parameters over
  ``fsdp`` (fully-sharded data parallelism) when given.

  Args:
    data: Mesh axis (or tuple of axes) for the batch; ``None`` to replicate.
    model: Mesh axis for tensor parallelism; ``None`` to replicate.
    fsdp: Optional mesh axis sharding parameters along ``embed``.

  Returns:
    A tuple of ``(logical_name, mesh_axes)`` pairs for
    ``nn.logical_to_mesh_sharding`` / ``nn.logical_axis_rules``.

  Example:
    >>> dict(default_logical_rules())["mlp"]
    'model'
  """
  if fsdp is None:
    batch = data
  else:
    data_axes = () if data is None else (
        tuple(data) if isinstance(data, (tuple, list)) else (data,))
    batch = data_axes + (fsdp,)
  return (
      ("batch", batch),
      ("length", None),
      ("embed", fsdp),
      ("heads", model),
      ("kv", None),
      ("mlp", model),
      ("vocab", model),
      ("position", None),
      ("layers", None),
  )


def constrain(x: jax.Array, logical_axes: tuple[str | None, ...]) -> jax.Array:
  """Constrains an activation's sharding by logical axis names.

  Active inside ``with jax.set_mesh(mesh), nn.logical_axis_rules(rules):``
  (e.g. with :func:`default_logical_rules`); a no-op without rules or mesh, so
  models using it run unchanged on one device. Build the mesh with
  ``jax.sharding.Mesh(devices, names)`` (automatic axes): ``jax.make_mesh``
  defaults to explicit axes, under which the embedding lookup needs an
  explicit output sharding.

  Args:
    x: Activation.
    logical_axes: One logical name (or ``None``) per axis of ``x``.

  Returns:
    ``x`` with a sharding constraint attached.

  Example:
    >>> constrain(jnp.ones((2, 3)), ("batch", "embed")).shape
    (2, 3)
  """
  return nn.with_logical_constraint(x, logical_axes)


def _normal(std: float, axes: tuple[str | None, ...]) -> Callable:
  return nn.with_logical_partitioning(nn.initializers.normal(std), axes)


def _const(init: Callable, axes: tuple[str | None, ...]) -> Callable:
  return nn.with_logical_partitioning(init, axes)


def rotary_embedding(x: jax.Array, positions: jax.Array,
                     base: float = 10000.0) -> jax.Array:
  """Applies rotary position embedding (RoPE) to ``(..., T, heads, dim)``.

  The two halves of the last axis are rotated as complex pairs by angles
  ``position * base ** (-2i / dim)``.

  Args:
    x: Queries or keys, shape ``(batch, T, heads, head_dim)``.
    positions: Integer positions of shape ``(T,)``.
    base: Frequency base.

  Returns:
    Array of the same shape and dtype.

  Example:
    >>> q = jnp.ones((1, 3, 2, 4))
    >>> r = rotary_embedding(q, jnp.arange(3))
    >>> bool(jnp.allclose(r[:, 0], q[:, 0]))  # position 0 is unrotated
    True
  """
  dim = x.shape[-1]
  half = dim // 2
  freqs = base ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / dim)
  angles = positions.astype(jnp.float32)[:, None] * freqs[None, :]
  sin = jnp.sin(angles)[:, None, :]
  cos = jnp.cos(angles)[:, None, :]
  x1 = x[..., :half].astype(jnp.float32)
  x2 = x[..., half:].astype(jnp.float32)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


# --------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------


def _dense(cfg: GPTConfig, features: int, axes: tuple[str, str], std: float,
           name: str) -> nn.Dense:
  return nn.Dense(
      features,
      use_bias=cfg.use_bias,
      dtype=cfg.dtype,
      param_dtype=cfg.param_dtype,
      kernel_init=_normal(std, axes),
      bias_init=_const(nn.initializers.zeros, (axes[1],)),
      name=name)


def _layer_norm(cfg: GPTConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(
      epsilon=1e-5,
      dtype=cfg.dtype,
      param_dtype=cfg.param_dtype,
      scale_init=_const(nn.initializers.ones, ("embed",)),
      bias_init=_const(nn.initializers.zeros, ("embed",)),
      name=name)


class CausalSelfAttention(nn.Module):
  """Multi-head causal self-attention with separate q/k/v/out Dense layers.

  Attributes:
    config: Model configuration.

  Example:
    >>> cfg = GPTConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128, max_len=32)
    >>> x = jnp.ones((1, 5, 64))
    >>> attn = CausalSelfAttention(cfg)
    >>> v = jax.eval_shape(attn.init, jax.random.key(0), x)
    >>> sorted(v["params"])
    ['key', 'out', 'query', 'value']
  """
  config: GPTConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    b, t, d = x.shape
    heads, hd = cfg.n_heads, cfg.head_dim
    std = cfg.init_std
    q = _dense(cfg, d, ("embed", "heads"), std, "query")(x)
    k = _dense(cfg, d, ("embed", "heads"), std, "key")(x)
    v = _dense(cfg, d, ("embed", "heads"), std, "value")(x)
    q, k, v = (constrain(a.reshape(b, t, heads, hd),
                         ("batch", "length", "heads", "kv")) for a in (q, k, v))
    if cfg.positions == "rotary":
      pos = jnp.arange(t)
      q = rotary_embedding(q, pos, cfg.rope_base)
      k = rotary_embedding(k, pos, cfg.rope_base)
    y = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    y = constrain(y.reshape(b, t, d), ("batch", "length", "heads"))
    out_std = std / math.sqrt(2 * cfg.n_layers)
    return _dense(cfg, d, ("heads", "embed"), out_std, "out")(y)


class MlpBlock(nn.Module):
  """Feed-forward block ``fc2(gelu(fc1(x)))``.

  Attributes:
    config: Model configuration.

  Example:
    >>> cfg = GPTConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128, max_len=32)
    >>> v = jax.eval_shape(MlpBlock(cfg).init, jax.random.key(0),
    ...                    jnp.ones((1, 2, 64)))
    >>> v["params"]["fc1"]["kernel"].value.shape
    (64, 128)
  """
  config: GPTConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    h = _dense(cfg, cfg.d_ff, ("embed", "mlp"), cfg.init_std, "fc1")(x)
    h = constrain(nn.gelu(h), ("batch", "length", "mlp"))
    out_std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
    return _dense(cfg, cfg.d_model, ("mlp", "embed"), out_std, "fc2")(h)


class Block(nn.Module):
  """Pre-LN transformer block: ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``.

  Attributes:
    config: Model configuration.
    deterministic: Disables dropout.
    scanned: Use the ``(carry, x) -> (carry, None)`` signature of ``nn.scan``.

  Example:
    >>> cfg = GPTConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128, max_len=32)
    >>> x = jnp.ones((1, 4, 64))
    >>> v = jax.eval_shape(Block(cfg).init, jax.random.key(0), x)
    >>> jax.eval_shape(Block(cfg).apply, v, x).shape
    (1, 4, 64)
  """
  config: GPTConfig
  deterministic: bool = True
  scanned: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, _: Any = None) -> Any:
    cfg = self.config
    drop = nn.Dropout(cfg.dropout, deterministic=self.deterministic)
    h = CausalSelfAttention(cfg, name="attn")(_layer_norm(cfg, "ln1")(x))
    x = constrain(x + drop(h), ("batch", "length", "embed"))
    h = MlpBlock(cfg, name="mlp")(_layer_norm(cfg, "ln2")(x))
    x = constrain(x + drop(h), ("batch", "length", "embed"))
    return (x, None) if self.scanned else x


class GPT(nn.Module):
  """Decoder-only transformer language model.

  Attributes:
    config: Model configuration.

  Example:
    >>> model = GPT(GPTConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128,
    ...                       max_len=32))
    >>> tokens = jnp.zeros((2, 16), jnp.int32)
    >>> params = init_params(model, jax.random.key(0))
    >>> jax.jit(model.apply)({"params": params}, tokens).shape
    (2, 16, 256)
    >>> params["block_0"]["mlp"]["fc1"]["kernel"].shape
    (64, 128)
  """
  config: GPTConfig

  @nn.compact
  def __call__(self, tokens: jax.Array,
               deterministic: bool = True) -> jax.Array:
    """Returns next-token logits of shape ``(batch, T, vocab_size)``.

    Args:
      tokens: Integer tokens of shape ``(batch, T)``.
      deterministic: Disables dropout; pass ``False`` and a ``"dropout"`` rng
        to train with dropout.
    """
    cfg = self.config
    _, t = tokens.shape
    if t > cfg.max_len and cfg.positions == "learned":
      raise ValueError(f"sequence length {t} exceeds max_len={cfg.max_len}")
    embed = nn.Embed(
        cfg.vocab_size, cfg.d_model, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        embedding_init=_normal(cfg.init_std, ("vocab", "embed")),
        name="token_embed")
    x = embed(tokens)
    if cfg.positions == "learned":
      pos = nn.Embed(
          cfg.max_len, cfg.d_model, dtype=cfg.dtype,
          param_dtype=cfg.param_dtype,
          embedding_init=_normal(cfg.init_std, ("position", "embed")),
          name="pos_embed")
      x = x + pos(jnp.arange(t))[None]
    x = nn.Dropout(cfg.dropout, deterministic=deterministic)(x)
    x = constrain(x, ("batch", "length", "embed"))

    block_cls = Block
    if cfg.remat:
      policy = (getattr(jax.checkpoint_policies, cfg.remat_policy)
                if cfg.remat_policy else None)
      block_cls = nn.remat(block_cls, policy=policy,
                           prevent_cse=not cfg.scan_layers)
    if cfg.scan_layers:
      scan = nn.scan(
          block_cls,
          variable_axes={"params": 0},
          split_rngs={"params": True, "dropout": True},
          length=cfg.n_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})
      x, _ = scan(cfg, deterministic, True, name="blocks")(x, None)
    else:
      for i in range(cfg.n_layers):
        x = block_cls(cfg, deterministic, name=f"block_{i}")(x)

    x = _layer_norm(cfg, "final_norm")(x)
    if cfg.tie_embeddings:
      logits = embed.attend(x)
    else:
      logits = nn.Dense(
          cfg.vocab_size, use_bias=False, dtype=cfg.dtype,
          param_dtype=cfg.param_dtype,
          kernel_init=_normal(cfg.init_std, ("embed", "vocab")),
          name="lm_head")(x)
    return constrain(logits, ("batch", "length", "vocab"))


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------


def _dummy_tokens(model: GPT, seq_len: int | None) -> jax.Array:
  t = min(model.config.max_len, 8) if seq_len is None else seq_len
  return jnp.zeros((1, t), jnp.int32)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_unboxed(model: GPT, rng: jax.Array, seq_len: int | None) -> Any:
  return nn.unbox(model.init(rng, _dummy_tokens(model, seq_len))["params"])


def init_params(model: GPT, rng: jax.Array, seq_len: int | None = None) -> Any:
  """Initialises the ``params`` collection, unboxed (plain arrays).

  Args:
    model: The model.
    rng: PRNG key.
    seq_len: Length of the dummy input (does not affect shapes).

  Returns:
    The ``params`` pytree of ``jax.Array``.

  Example:
    >>> model = GPT(GPTConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128,
    ...                       max_len=32))
    >>> p = init_params(model, jax.random.key(0))
    >>> sorted(p)
    ['block_0', 'block_1', 'final_norm', 'lm_head', 'pos_embed', 'token_embed']
  """
  return _init_unboxed(model, rng, seq_len)


def logical_partition_specs(model: GPT) -> Any:
  """Logical ``PartitionSpec`` of every parameter (no arrays are allocated).

  Map them to a mesh with ``nn.logical_to_mesh_sharding(specs, mesh, rules)``.

  Args:
    model: The model.

  Returns:
    A pytree like the ``params`` collection with
    ``jax.sharding.PartitionSpec`` leaves over logical axis names.

  Example:
    >>> model = GPT(GPTConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128,
    ...                       max_len=32))
    >>> specs = logical_partition_specs(model)
    >>> tuple(specs["block_0"]["mlp"]["fc1"]["kernel"])
    ('embed', 'mlp')
  """
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          _dummy_tokens(model, None))
  return nn.get_partition_spec(shapes)["params"]


def stack_layers(params: Any, n_layers: int) -> Any:
  """Converts ``block_{i}`` parameters to the ``scan_layers=True`` layout.

  Args:
    params: Unboxed ``params`` of a model built with ``scan_layers=False``.
    n_layers: Number of blocks.

  Returns:
    Params with ``block_*`` replaced by ``blocks`` (leading layer axis).

  Example:
    >>> p = {"block_0": {"w": jnp.zeros(2)}, "block_1": {"w": jnp.ones(2)},
    ...      "lm_head": 1}
    >>> stack_layers(p, 2)["blocks"]["w"].shape
    (2, 2)
  """
  params = dict(params)
  blocks = [params.pop(f"block_{i}") for i in range(n_layers)]
  params["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)
  return params


def unstack_layers(params: Any) -> Any:
  """Inverse of :func:`stack_layers`.

  Args:
    params: Unboxed ``params`` of a model built with ``scan_layers=True``.

  Returns:
    Params with ``blocks`` replaced by ``block_0 ... block_{n-1}``.

  Example:
    >>> p = unstack_layers({"blocks": {"w": jnp.arange(4.0).reshape(2, 2)}})
    >>> p["block_1"]["w"].tolist()
    [2.0, 3.0]
  """
  params = dict(params)
  blocks = params.pop("blocks")
  n = jax.tree.leaves(blocks)[0].shape[0]
  for i in range(n):
    params[f"block_{i}"] = jax.tree.map(lambda x, i=i: x[i], blocks)
  return params


# --------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------


def cross_entropy(logits: jax.Array, targets: jax.Array,
                  weights: jax.Array | None = None) -> jax.Array:
  """Mean token cross-entropy in float32, optionally weighted.

  Args:
    logits: ``(..., vocab)`` logits.
    targets: Integer targets of shape ``logits.shape[:-1]``.
    weights: Optional per-token weights (e.g. a 0/1 mask).

  Returns:
    Scalar mean loss (weighted mean if ``weights`` is given).

  Example:
    >>> float(cross_entropy(jnp.zeros((1, 2, 4)), jnp.array([[0, 3]])))
    1.386...
  """
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), targets)
  if weights is None:
    return losses.mean()
  weights = weights.astype(jnp.float32)
  return (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def lm_loss(model: GPT, params: Any, batch: dict[str, jax.Array],
            dropout_rng: jax.Array | None = None) -> jax.Array:
  """Next-token cross-entropy of ``model`` on ``batch``.

  Args:
    model: The model.
    params: The ``params`` collection (boxed or unboxed).
    batch: ``{"inputs", "targets"}`` integer arrays of shape ``(batch, T)``,
      (targets are the inputs shifted by one token); an optional
      ``"weights"`` entry masks tokens.
    dropout_rng: When given, dropout is active with this key.

  Returns:
    Scalar loss.

  Example:
    >>> model = GPT(GPTConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128,
    ...                       max_len=32))
    >>> p = init_params(model, jax.random.key(0))
    >>> batch = {"inputs": jnp.zeros((2, 16), jnp.int32),
    ...          "targets": jnp.ones((2, 16), jnp.int32)}
    >>> jax.eval_shape(functools.partial(lm_loss, model), p, batch).shape
    ()
  """
  deterministic = dropout_rng is None
  rngs = None if deterministic else {"dropout": dropout_rng}
  logits = model.apply({"params": params}, batch["inputs"],
                       deterministic=deterministic, rngs=rngs)
  return cross_entropy(logits, batch["targets"], batch.get("weights"))


def make_loss_fn(model: GPT) -> Callable[..., jax.Array]:
  """Returns ``loss_fn(params, batch, dropout_rng=None) -> scalar``.

  Args:
    model: The model.

  Returns:
    :func:`lm_loss` with ``model`` bound, ready for ``jax.value_and_grad``.

  Example:
    >>> model = GPT(GPTConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128,
    ...                       max_len=32))
    >>> loss_fn = make_loss_fn(model)
    >>> p = init_params(model, jax.random.key(0))
    >>> x = jnp.zeros((2, 16), jnp.int32)
    >>> loss, grads = jax.jit(jax.value_and_grad(loss_fn))(
    ...     p, {"inputs": x, "targets": x})
    >>> 5.0 < float(loss) < 6.0  # about log(256) at initialisation
    True
    >>> grads["lm_head"]["kernel"].shape
    (64, 256)
  """
  return functools.partial(lm_loss, model)
