"""Pure-jnp reference for ``x @ W`` with ``W`` N:M compressed along K."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.formats import decompress_nm
from pallas_kernels.formats import NMCompressed

__all__ = ["nm_matmul_reference", "permute_activation", "out_dtype"]


def out_dtype(x, w: NMCompressed):
  """Result dtype of ``x @ w``: the promotion of both dtypes.

  >>> from pallas_kernels.formats import compress_nm
  >>> c = compress_nm(jnp.ones((4, 1)), jnp.array([[1], [1], [0], [0]], bool), 2, 4)
  >>> out_dtype(jnp.ones((1, 4), jnp.bfloat16), c)
  dtype('float32')
  """
  return jnp.result_type(x.dtype, w.values.dtype)


def nm_matmul_reference(x, w: NMCompressed) -> jax.Array:
  """``x @ decompress(w)`` with f32 accumulation (the ground truth).

  Args:
    x: ``(B, K)`` activations.
    w: N:M compressed ``(K, N)`` weight.

  Returns:
    ``(B, N)`` in the promoted dtype of ``x`` and ``w``.

  >>> from pallas_kernels.formats import compress_nm
  >>> w = jnp.ones((4, 2)); mask = jnp.array([[1, 0], [0, 1], [0, 0], [0, 0]], bool)
  >>> nm_matmul_reference(jnp.array([[1., 2., 3., 4.]]), compress_nm(w, mask, 1, 4))
  Array([[1., 2.]], dtype=float32)
  """
  dense = decompress_nm(w)
  return jnp.dot(x, dense, preferred_element_type=jnp.float32,
                 precision=jax.lax.Precision.HIGHEST).astype(out_dtype(x, w))


def permute_activation(x, w: NMCompressed) -> jax.Array:
  """Reorders the columns of ``x`` into the slot-major tile order of ``w``.

  Column ``(t*m + c)*tg + g`` of the result is column ``(t*tg + g)*m + c`` of
  ``x`` (zero past ``K``): the order in which a kernel meets the expanded
  weight rows ``W_c``.

  >>> from pallas_kernels.formats import compress_nm
  >>> c = compress_nm(jnp.ones((64, 1)), jnp.ones((64, 1), bool), 2, 2)
  >>> permute_activation(jnp.arange(64.0)[None], c)[0, :3]
  Array([0., 2., 4.], dtype=float32)
  """
  b, k = x.shape
  t, tg, m = w.num_tiles, w.tile_groups, w.m
  x = jnp.pad(x, ((0, 0), (0, t * tg * m - k)))
  return x.reshape(b, t, tg, m).transpose(0, 1, 3, 2).reshape(b, t * m * tg)
