"""Tile math shared by the TPU and GPU N:M kernels (pure jnp on tiles)."""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

_WORD = 32


def unpack_planes(planes, start=0, count: int = _WORD):
  """Bit planes -> in-group positions of a run of groups.

  Args:
    planes: ``bits`` unsigned arrays ``(q, tn)`` (``uint32`` or ``uint16``);
      bit ``p`` of word row ``w`` belongs to group-in-tile ``p*q + w``.
    start: first bit position (static int or traced scalar).
    count: number of bit positions to unpack.

  Returns:
    ``(count*q, tn)`` int32 positions of groups ``start*q ... (start+count)*q``:
    per plane one shift by the row's bit position, one mask and one or.
  """
  q, tn = planes[0].shape
  p = lax.broadcasted_iota(jnp.uint32, (count, q, tn), 0)
  if not isinstance(start, int) or start:
    p = p + jnp.asarray(start).astype(jnp.uint32)
  pos = None
  for b, plane in enumerate(planes):
    word = jnp.broadcast_to(plane.astype(jnp.uint32)[None], p.shape)
    bit = lax.shift_right_logical(word, p) & jnp.uint32(1)
    bit = bit << jnp.uint32(b) if b else bit
    pos = bit if pos is None else pos | bit
  return pos.astype(jnp.int32).reshape(count * q, tn)


def expanded(vals, poss, c: int, dtype):
  """``W_c = sum_s where(pos_s == c, val_s, 0)`` for one in-group position.

  Positions of the kept values of a group are distinct, so at most one term
  is nonzero: the sum is exact.
  """
  out = None
  for v, p in zip(vals, poss):
    term = jnp.where(p == c, v.astype(dtype), jnp.zeros((), dtype))
    out = term if out is None else out + term
  return out


def precision(dtype):
  """Full precision for f32 operands (exact f32 products), default otherwise."""
  return (lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32
          else lax.Precision.DEFAULT)


def dot(a, b):
  """f32-accumulating ``a @ b``; full precision for f32 inputs."""
  return jnp.dot(a, b, preferred_element_type=jnp.float32,
                 precision=precision(a.dtype))


def compute_dtype(x_dtype, w_dtype):
  """The dtype both operands are cast to before the product."""
  return jnp.result_type(x_dtype, w_dtype)


def operands(x, w, out_dtype):
  """``(B, K, N, out_dtype)`` of ``x @ W``, checking ``x`` against ``W``'s K.

  ``out_dtype`` defaults to the promotion of both dtypes.
  """
  b, k = x.shape
  if k != w.shape[0]:
    raise ValueError(f"x {x.shape} last axis must equal K={w.shape[0]} of w "
                     f"{w.shape}.")
  return b, k, w.shape[1], out_dtype or compute_dtype(x.dtype, w.values.dtype)


def round_up(a: int, b: int) -> int:
  return -(-a // b) * b


def pow2_at_least(a: int) -> int:
  return 1 << max(0, (int(a) - 1).bit_length())


__all__ = ["unpack_planes", "expanded", "dot", "compute_dtype", "precision",
           "operands", "round_up", "pow2_at_least"]
