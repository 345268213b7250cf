"""Small Vision Transformer in Flax NNX.

Parameter paths (``nnx.state(model, nnx.Param)``)::

  patch_embed/kernel           (p, p, in_channels, dim)   # conv, stride p
  cls_token                    (1, 1, dim)                # pool="cls" only
  pos_embed                    (1, num_patches [+1], dim)
  blocks/{i}/norm1/{scale,bias}
  blocks/{i}/attn/query/kernel (dim, dim)
  blocks/{i}/attn/key/kernel   (dim, dim)
  blocks/{i}/attn/value/kernel (dim, dim)
  blocks/{i}/attn/out/kernel   (dim, dim)
  blocks/{i}/norm2/{scale,bias}
  blocks/{i}/mlp/fc1/kernel    (dim, mlp_dim)
  blocks/{i}/mlp/fc2/kernel    (mlp_dim, dim)
  norm/{scale,bias}
  head/kernel                  (dim, num_classes)

Blocks are pre-LayerNorm; attention uses separate ``nnx.Linear`` projections
so every kernel is 2-D ``(in, out)``.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["ViT", "ViTBlock", "SelfAttention", "FeedForward"]


class SelfAttention(nnx.Module):
  """Bidirectional multi-head self-attention with q/k/v/out ``nnx.Linear``.

  Args:
    dim: Model width.
    num_heads: Number of heads (``dim % num_heads == 0``).
    dtype: Computation dtype.
    param_dtype: Parameter dtype.
    rngs: ``nnx.Rngs``.

  Example:
    >>> attn = SelfAttention(64, 2, rngs=nnx.Rngs(0))
    >>> attn(jnp.ones((2, 5, 64))).shape
    (2, 5, 64)
  """

  def __init__(self, dim: int, num_heads: int, *, dtype: Any = None,
               param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f"dim={dim} not divisible by num_heads={num_heads}")
    self.num_heads = num_heads
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.query = nnx.Linear(dim, dim, **kw)
    self.key = nnx.Linear(dim, dim, **kw)
    self.value = nnx.Linear(dim, dim, **kw)
    self.out = nnx.Linear(dim, dim, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    b, t, d = x.shape
    shape = (b, t, self.num_heads, d // self.num_heads)
    q = self.query(x).reshape(shape)
    k = self.key(x).reshape(shape)
    v = self.value(x).reshape(shape)
    y = jax.nn.dot_product_attention(q, k, v)
    return self.out(y.reshape(b, t, d))


class FeedForward(nnx.Module):
  """``fc2(gelu(fc1(x)))``.

  Args:
    dim: Model width.
    hidden: Hidden width.
    dtype: Computation dtype.
    param_dtype: Parameter dtype.
    rngs: ``nnx.Rngs``.

  Example:
    >>> FeedForward(64, 128, rngs=nnx.Rngs(0))(jnp.ones((2, 5, 64))).shape
    (2, 5, 64)
  """

  def __init__(self, dim: int, hidden: int, *, dtype: Any = None,
               param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1 = nnx.Linear(dim, hidden, **kw)
    self.fc2 = nnx.Linear(hidden, dim, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(nnx.gelu(self.fc1(x)))


class ViTBlock(nnx.Module):
  """Pre-LN encoder block: ``x + attn(norm1(x))``, ``x + mlp(norm2(x))``.

  Args:
    dim: Model width.
    num_heads: Attention heads.
    mlp_dim: Feed-forward hidden width.
    dtype: Computation dtype.
    param_dtype: Parameter dtype.
    rngs: ``nnx.Rngs``.

  Example:
    >>> ViTBlock(64, 2, 128, rngs=nnx.Rngs(0))(jnp.ones((2, 5, 64))).shape
    (2, 5, 64)
  """

  def __init__(self, dim: int, num_heads: int, mlp_dim: int, *,
               dtype: Any = None, param_dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1 = nnx.LayerNorm(dim, **kw)
    self.attn = SelfAttention(dim, num_heads, **kw)
    self.norm2 = nnx.LayerNorm(dim, **kw)
    self.mlp = FeedForward(dim, mlp_dim, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class ViT(nnx.Module):
  """Vision Transformer classifier for small NHWC images.

  Args:
    image_size: Height and width of the (square) input.
    patch_size: Side of the square patches (divides ``image_size``).
    in_channels: Input channels.
    num_classes: Number of output logits.
    dim: Model width (a multiple of 64 suits every N:M pattern).
    depth: Number of blocks.
    num_heads: Attention heads.
    mlp_dim: Feed-forward hidden width.
    pool: ``"cls"`` (class token) or ``"mean"`` (mean over patches).
    dtype: Computation dtype.
    param_dtype: Parameter dtype.
    rngs: ``nnx.Rngs``.

  Example:
    >>> model = ViT(image_size=8, patch_size=4, in_channels=1, num_classes=4,
    ...             dim=64, depth=2, num_heads=2, mlp_dim=128,
    ...             rngs=nnx.Rngs(0))
    >>> model(jnp.ones((2, 8, 8, 1))).shape
    (2, 4)
    >>> model.blocks[1].mlp.fc1.kernel.shape
    (64, 128)
  """

  def __init__(self,
               image_size: int = 32,
               patch_size: int = 4,
               in_channels: int = 3,
               num_classes: int = 10,
               *,
               dim: int = 64,
               depth: int = 2,
               num_heads: int = 4,
               mlp_dim: int = 128,
               pool: str = "cls",
               dtype: Any = None,
               param_dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    if image_size % patch_size:
      raise ValueError(
          f"patch_size={patch_size} must divide image_size={image_size}")
    if pool not in ("cls", "mean"):
      raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.pool = pool
    self.patch_embed = nnx.Conv(
        in_channels, dim, kernel_size=(patch_size, patch_size),
        strides=(patch_size, patch_size), padding="VALID", **kw)
    num_tokens = (image_size // patch_size) ** 2 + (pool == "cls")
    init = nnx.initializers.normal(0.02)
    if pool == "cls":
      self.cls_token = nnx.Param(jnp.zeros((1, 1, dim), param_dtype))
    self.pos_embed = nnx.Param(
        init(rngs.params(), (1, num_tokens, dim), param_dtype))
    self.blocks = nnx.List(
        [ViTBlock(dim, num_heads, mlp_dim, **kw) for _ in range(depth)])
    self.norm = nnx.LayerNorm(dim, **kw)
    self.head = nnx.Linear(dim, num_classes, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps NHWC images ``(batch, image_size, image_size, c)`` to logits."""
    x = self.patch_embed(x)
    b, h, w, d = x.shape
    x = x.reshape(b, h * w, d)
    if self.pool == "cls":
      cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (b, 1, d))
      x = jnp.concatenate([cls, x], axis=1)
    x = x + self.pos_embed[...].astype(x.dtype)
    for block in self.blocks:
      x = block(x)
    x = self.norm(x)
    x = x[:, 0] if self.pool == "cls" else x.mean(axis=1)
    return self.head(x)
