"""Pure-jnp references for block-sparse products."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.formats import decompress_block
from pallas_kernels.formats import decompress_block_list

__all__ = ["block_sparse_matmul_reference", "sparse_dense_matmul_reference",
           "block_list_matmul_reference",
           "block_list_sparse_dense_matmul_reference"]

_HI = jax.lax.Precision.HIGHEST


def _dot(a, b) -> jax.Array:
  """``a @ b`` in float32 at highest precision, cast to the operands' dtype."""
  odt = jnp.result_type(a.dtype, b.dtype)
  return jnp.dot(a, b, preferred_element_type=jnp.float32,
                 precision=_HI).astype(odt)


def block_sparse_matmul_reference(x, w) -> jax.Array:
  """``x @ decompress(w)``: dense activation times sparse weight.

  >>> from pallas_kernels.formats import compress_bsr
  >>> w = compress_bsr(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2))
  >>> block_sparse_matmul_reference(jnp.ones((1, 4)), w)
  Array([[2., 2., 2., 2.]], dtype=float32)
  """
  return _dot(x, decompress_block(w))


def sparse_dense_matmul_reference(a, x) -> jax.Array:
  """``decompress(a) @ x``: sparse matrix times dense matrix.

  >>> from pallas_kernels.formats import compress_bsr
  >>> a = compress_bsr(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2))
  >>> sparse_dense_matmul_reference(a, jnp.ones((4, 1)))[:, 0]
  Array([2., 2., 2., 2.], dtype=float32)
  """
  return _dot(decompress_block(a), x)


def block_list_matmul_reference(x, w) -> jax.Array:
  """``x @ decompress(w)`` for a :class:`~pallas_kernels.formats.BlockList`.

  >>> from pallas_kernels.formats import block_list_from_mask
  >>> w = block_list_from_mask(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2))
  >>> block_list_matmul_reference(jnp.ones((1, 4)), w)
  Array([[2., 2., 2., 2.]], dtype=float32)
  """
  return _dot(x, decompress_block_list(w))


def block_list_sparse_dense_matmul_reference(a, x) -> jax.Array:
  """``decompress(a) @ x`` for a :class:`~pallas_kernels.formats.BlockList`.

  >>> from pallas_kernels.formats import block_list_from_mask
  >>> a = block_list_from_mask(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2))
  >>> block_list_sparse_dense_matmul_reference(a, jnp.ones((4, 1)))[:, 0]
  Array([2., 2., 2., 2.], dtype=float32)
  """
  return _dot(decompress_block_list(a), x)
