"""Tile math shared by the TPU and GPU N:M kernels (pure jnp on tiles)."""
from __future__ import annotations


import jax.numpy as jnp
from jax import lax

_WORD = 32


def unpack_planes(planes, start: int = 0, count: int = _WORD):
  """Bit planes -> in-group positions of a run of groups.

  Args:
    planes: ``bits`` int32 arrays ``(q, tn)``; bit ``p`` of word row ``w``
      belongs to group-in-tile ``p*q + w``.
    start: first bit position (static int or traced scalar).
    count: number of bit positions to unpack.

  Returns:
    ``(count*q, tn)`` int32 positions of groups ``start*q ... (start+count)*q``.
  """
  q, tn = planes[0].shape
  p = lax.broadcasted_iota(jnp.int32, (count, q, tn), 0)
  if not isinstance(start, int) or start:
    p = p + start
  pos = None
  for b, plane in enumerate(planes):
    bit = lax.shift_right_logical(jnp.broadcast_to(plane[None], p.shape), p) & 1
    bit = bit << b if b else bit
    pos = bit if pos is None else pos | bit
  return pos.reshape(count * q, tn)


def expanded(vals, poss, c: int, dtype):
  """``W_c = sum_s where(pos_s == c, val_s, 0)`` for one in-group position."""
  out = None
  for v, p in zip(vals, poss):
    term = jnp.where(p == c, v.astype(dtype), jnp.zeros((), dtype))
    out = term if out is None else out + term
  return out


def dot(a, b):
  """f32-accumulating dot; full precision for f32 inputs."""
  prec = (lax.Precision.HIGHEST if a.dtype == jnp.float32
          else lax.Precision.DEFAULT)
  return jnp.dot(a, b, preferred_element_type=jnp.float32, precision=prec)


def compute_dtype(x_dtype, w_dtype):
  return jnp.result_type(x_dtype, w_dtype)


__all__ = ["unpack_planes", "expanded", "dot", "compute_dtype"]
