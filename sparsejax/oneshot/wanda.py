"""Wanda: prune by weight magnitude times input activation norm.

For a Dense kernel `W` of shape `(in, out)` and calibration inputs `X`, the
score of `W_ij` is `|W_ij| · ‖X_i‖₂` with `i` the input feature and the
norm taken over calibration tokens. No weight is updated: pruned entries are
set to zero and the rest are kept as they are.

The published comparison group is each output unit (a column of the Flax
kernel): use `Unstructured(s, per_output=True)` for it, or `NM(n, m)` for
N:M groups along the input axis. Any pattern is accepted and ranks the Wanda
scores its own way.

References:
  * Sun, M., Liu, Z., Bair, A. and Kolter, J. Z. "A Simple and Effective
    Pruning Approach for Large Language Models." ICLR 2024. arXiv:2306.11695.
"""

import functools

from typing import Any, Sequence

import jax
import jax.numpy as jnp

from sparsejax import _checks
from sparsejax import patterns as patterns_lib
from sparsejax import scores as scores_lib
from sparsejax import sharding as sharding_lib
from sparsejax.oneshot import calibration


def wanda_scores(kernel: jax.Array, sq_sum: jax.Array) -> jax.Array:
  """`|W| · ‖X_i‖₂` for an `(in, out)` kernel and `Σ x²` per input.

  >>> wanda_scores(jnp.array([[1., -2.], [3., 1.]]), jnp.array([4., 1.]))
  Array([[2., 4.],
         [3., 1.]], dtype=float32)
  """
  return scores_lib.wanda(kernel, sq_sum)


@functools.partial(jax.jit, static_argnames=("pattern",))
def _wanda(kernel, sq_sum, pattern):
  # Inputs without energy give no ranking: fall back to |W| for the layer.
  zero = ~jnp.any(jnp.abs(sq_sum) >= jnp.finfo(jnp.float32).tiny)
  scores = jnp.where(zero, scores_lib.magnitude(kernel.astype(jnp.float32)),
                     wanda_scores(kernel, sq_sum))
  keep = sharding_lib.sharded_mask(pattern, scores)
  return jnp.where(keep, kernel, jnp.zeros_like(kernel)), keep


def check_layer(kernel_shape: Sequence[int], sq_sum_shape: Sequence[int],
                pattern: patterns_lib.Pattern, dtype: Any = jnp.float32,
                path: str = "") -> None:
  """Raises a clear error, naming the layer, if Wanda cannot prune it."""
  where = _checks.where(path)
  if len(kernel_shape) != 2:
    raise ValueError(f"Wanda{where}: Wanda prunes 2-D Dense kernels (in, "
                     f"out); got shape {tuple(kernel_shape)}.")
  if tuple(sq_sum_shape) != (kernel_shape[0],):
    raise ValueError(
        f"Wanda{where}: the input statistics have shape "
        f"{tuple(sq_sum_shape)} but the kernel {tuple(kernel_shape)} needs "
        f"({kernel_shape[0]},).")
  if not isinstance(pattern, patterns_lib.Pattern):
    raise TypeError(f"Wanda{where} needs a sparsejax pattern; got "
                    f"{pattern!r}.")
  pattern.check(tuple(kernel_shape), dtype, path)


def wanda_layer(kernel: jax.Array, sq_sum: jax.Array,
                pattern: patterns_lib.Pattern, *,
                path: str = "") -> tuple[jax.Array, jax.Array]:
  """Prunes one `(in, out)` kernel with Wanda scores.

  Args:
    kernel: `(in, out)` Dense kernel.
    sq_sum: `(in,)` sum over calibration tokens of the squared inputs
      (`LayerStats.sq_sum`).
    pattern: e.g. `Unstructured(0.5, per_output=True)` (as published) or
      `NM(2, 4)`.
    path: the layer's name for error messages.

  Returns:
    `(new_kernel, mask)`, pruned entries exactly zero. A layer whose inputs
    all have zero energy (all-zero or underflowing calibration inputs) is
    pruned by magnitude `|W|` instead, with a `CalibrationWarning`; dead
    inputs (some zero) are warned about.

  Raises:
    ValueError: naming the layer, for shapes Wanda cannot prune or
      statistics holding NaN or inf.

  >>> k = jnp.array([[1., -2.], [3., 1.], [0.5, 2.], [2., 0.1]])
  >>> new, mask = wanda_layer(k, jnp.array([4., 1., 9., 1.]),
  ...                         patterns_lib.NM(2, 4))
  >>> mask.astype(int)
  Array([[1, 1],
         [1, 0],
         [0, 1],
         [0, 0]], dtype=int32)
  """
  kernel = jnp.asarray(kernel)
  sq_sum = jnp.asarray(sq_sum)
  check_layer(kernel.shape, sq_sum.shape, pattern, kernel.dtype, path)
  if calibration.input_energy(sq_sum, path, "Wanda") == "zero":
    calibration.warn_zero_energy(path, "Wanda", "pruned by weight magnitude "
                                 "|W| instead")
  return _wanda(kernel, sq_sum, pattern)
