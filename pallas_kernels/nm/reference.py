"""Pure-jnp reference for ``x @ W`` with ``W`` N:M compressed along K."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.formats import decompress_nm
from pallas_kernels.formats import NMCompressed

__all__ = ["nm_matmul_reference", "out_dtype"]


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
