"""Tile arithmetic shared by the block-list launch paths.

>>> round_up(17, 16), pow2_at_least(17, 16), pad_to(jnp.ones((3, 2)), 0, 4).shape
(32, 32, (4, 2))
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["round_up", "pad_to", "pow2_at_least"]


def round_up(a: int, b: int) -> int:
  """``a`` rounded up to a multiple of ``b``.

  >>> round_up(5, 4)
  8
  """
  return -(-a // b) * b


def pad_to(x: jax.Array, axis: int, tile: int) -> jax.Array:
  """``x`` zero-padded at the end of ``axis`` to a multiple of ``tile``.

  >>> pad_to(jnp.ones((2, 3)), 1, 4).sum()
  Array(6., dtype=float32)
  """
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, round_up(x.shape[axis], tile) - x.shape[axis])
  return jnp.pad(x, pad)


def pow2_at_least(v: int, lo: int) -> int:
  """The smallest power of two >= ``v``, and at least ``lo``.

  >>> pow2_at_least(3, 16), pow2_at_least(33, 16)
  (16, 64)
  """
  return max(lo, 1 << max(0, (v - 1).bit_length()))
