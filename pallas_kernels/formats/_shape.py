"""Shape checks shared by the compressed formats."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def dense_matching(dense, fmt) -> jax.Array:
  """``dense`` as an array, checked to have ``fmt``'s dense shape.

  >>> import types
  >>> dense_matching([[1.0, 2.0]], types.SimpleNamespace(shape=(1, 2))).shape
  (1, 2)
  """
  dense = jnp.asarray(dense)
  if dense.shape != tuple(fmt.shape):
    raise ValueError(f"dense shape {dense.shape} must equal {fmt.shape}.")
  return dense
