"""One-shot magnitude pruning: the baseline without calibration data.

References:
  * Han, S., Pool, J., Tran, J. and Dally, W. J. "Learning both Weights and
    Connections for Efficient Neural Networks." NeurIPS 2015. arXiv:1506.02626.
"""

import functools

import jax
import jax.numpy as jnp

from sparsejax import patterns as patterns_lib
from sparsejax import scores as scores_lib
from sparsejax import sharding as sharding_lib


@functools.partial(jax.jit, static_argnames=("pattern",))
def _magnitude(kernel, pattern):
  scores = scores_lib.magnitude(kernel.astype(jnp.float32))
  keep = sharding_lib.sharded_mask(pattern, scores)
  return jnp.where(keep, kernel, jnp.zeros_like(kernel)), keep


def magnitude_layer(kernel: jax.Array, pattern: patterns_lib.Pattern, *,
                    path: str = "") -> tuple[jax.Array, jax.Array]:
  """Keeps the largest `|w|` of one kernel under `pattern`.

  Args:
    kernel: any float array the pattern applies to.
    pattern: a sparsejax pattern.
    path: the layer's name for error messages.

  Returns:
    `(new_kernel, mask)`.

  >>> new, mask = magnitude_layer(jnp.array([[1., -4.], [3., 2.]]),
  ...                             patterns_lib.Unstructured(0.5))
  >>> new
  Array([[ 0., -4.],
         [ 3.,  0.]], dtype=float32)
  """
  kernel = jnp.asarray(kernel)
  if not isinstance(pattern, patterns_lib.Pattern):
    raise TypeError(f"magnitude pruning at {path!r} needs a sparsejax "
                    f"pattern; got {pattern!r}.")
  pattern.check(kernel.shape, kernel.dtype, path)
  return _magnitude(kernel, pattern)
