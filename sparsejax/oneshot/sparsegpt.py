"""SparseGPT: one-shot pruning with an optimal-brain-surgeon weight update.

For one Dense layer with kernel `W` of shape `(in, out)` (the Flax layout;
PyTorch stores the transpose) and calibration inputs `X` of shape
`(tokens, in)`, SparseGPT minimises `||X W - X Ŵ||²` over pruned kernels `Ŵ`
approximately, one input row at a time:

1. `H = (2/n) Xᵀ X`. Dead inputs (`H_jj = 0`) get `H_jj = 1` and their kernel
   rows are zeroed. Dampening adds `λ = percdamp · mean(diag H)` to the
   diagonal (1% by default).
2. `U` = the upper Cholesky factor of `H⁻¹` (`H⁻¹ = Uᵀ U`).
3. Rows of `W` (the "columns" of the published algorithm) are processed in
   blocks of 128. In a block, the mask is chosen from `w² / U_jj²`: for
   unstructured sparsity once per block (the pattern applied to the block),
   for N:M every `m` rows from the current, already updated, weights. Row `i`
   is then quantised to `q = w ⊙ keep`, its error `e = (w - q) / U_ii` is
   spread over the later rows of the block (`W[j] -= U_ij e`), and after the
   block the later rows of the kernel take `W[rest] -= U[block, rest]ᵀ E`.

Everything runs in float32 whatever the param dtype, inside one jitted
function. If the Cholesky factorisation fails (a Hessian that is not positive
definite even after dampening), the dampening is multiplied by 10 and the
factorisation retried; the increase is reported with a warning naming the
layer, and a layer that cannot be factorised at all raises an error rather
than returning NaN weights.

References:
  * Frantar, E. and Alistarh, D. "SparseGPT: Massive Language Models Can Be
    Accurately Pruned in One-Shot." ICML 2023. arXiv:2301.00774.
"""

import functools
import warnings

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import patterns as patterns_lib
from sparsejax import _checks
from sparsejax.methods.presets import _common
from sparsejax.oneshot import calibration
from sparsejax.sharding import sharded_mask

DEFAULT_BLOCKSIZE = 128
DEFAULT_PERCDAMP = 0.01
DEFAULT_DAMP_RETRIES = 6

_HIGHEST = jax.lax.Precision.HIGHEST


def check_pattern(pattern: patterns_lib.Pattern, shape: Sequence[int],
                  dtype: Any = jnp.float32, path: str = "") -> None:
  """Raises a clear error unless SparseGPT can prune `shape` with `pattern`.

  SparseGPT chooses masks row block by row block of an `(in, out)` kernel, so
  it supports unstructured sparsity (per tensor or per output unit, chosen
  within each block) and N:M groups along the input axis (axis 0).

  >>> check_pattern(patterns_lib.NM(2, 4), (8, 3))
  >>> check_pattern(patterns_lib.NM(2, 4), (6, 3), path="fc/kernel")
  Traceback (most recent call last):
  ...
  ValueError: N:M 2:4 at 'fc/kernel': group axis 0 has length 6, which is not
  divisible by m=4 (shape (6, 3)).
  """
  where = f"SparseGPT{_checks.where(path)}"
  if len(shape) != 2:
    raise ValueError(f"{where}: SparseGPT prunes 2-D Dense kernels (in, out); "
                     f"got shape {tuple(shape)}.")
  if pattern.is_nm:
    if pattern.transposable:
      raise ValueError(
          f"{where}: transposable {pattern} cannot be expressed; SparseGPT "
          "chooses masks one input row group at a time. Use NM(n, m).")
    if pattern.axis is not None and pattern.axis % 2 != 0:
      raise ValueError(
          f"{where}: N:M groups must run along the input axis (axis 0) of an "
          f"(in, out) kernel; got NM(..., axis={pattern.axis}).")
  elif not pattern.is_unstructured:
    raise ValueError(
        f"{where}: only Unstructured and NM patterns are supported; got "
        f"{pattern}. Use method='wanda' or 'magnitude' for other patterns.")
  elif isinstance(pattern.sparsity, jax.core.Tracer):
    raise ValueError(f"{where}: the sparsity must be concrete.")
  pattern.check(shape, dtype, path)


def check_options(
    blocksize: Any, percdamp: Any,
    retries: Any = DEFAULT_DAMP_RETRIES) -> tuple[int, float, int]:
  """Returns `(blocksize, percdamp, retries)`; raises, naming the parameter,
  unless `blocksize` is an int >= 1, `percdamp` a finite number > 0 and
  `retries` an int >= 0.

  >>> check_options(128, 0.01)
  (128, 0.01, 6)
  >>> check_options(128, 0.0)
  Traceback (most recent call last):
  ...
  ValueError: percdamp must be a finite number > 0 (a fraction of the mean Hessian diagonal, e.g. 0.01); got 0.0.
  """
  blocksize = _checks.check_int(blocksize, "blocksize", 1)
  retries = _checks.check_int(retries, "retries", 0)
  _common.check_number(percdamp, "percdamp")
  value = float(percdamp)
  if not (np.isfinite(value) and value > 0):
    raise ValueError(
        f"percdamp must be a finite number > 0 (a fraction of the mean "
        f"Hessian diagonal, e.g. 0.01); got {percdamp!r}.")
  return blocksize, value, retries


def upper_cholesky_inverse(h: jax.Array) -> jax.Array:
  """Upper-triangular `U` with `inv(h) = Uᵀ U` (the factor SparseGPT uses).

  Computed without forming `inv(h)`: with `J` the reversal permutation and
  `J h J = L Lᵀ`, `U = J L⁻¹ J`. Returns NaNs when `h` is not positive
  definite.

  >>> h = jnp.array([[4., 2.], [2., 3.]])
  >>> u = upper_cholesky_inverse(h)
  >>> bool(jnp.allclose(u.T @ u, jnp.linalg.inv(h), atol=1e-6))
  True
  """
  flipped = h[::-1, ::-1]
  lower = jnp.linalg.cholesky(flipped)
  return _lower_inverse(lower)[::-1, ::-1]


def _lower_inverse(lower, leaf=256):
  """Inverse of a lower-triangular matrix by recursive 2x2 blocking.

  `inv([[A, 0], [B, C]]) = [[inv(A), 0], [-inv(C) B inv(A), inv(C)]]`: two
  thirds of the work of a triangular solve against the identity, and all of
  it in matrix products.
  """
  n = lower.shape[0]
  if n <= leaf:
    eye = jnp.eye(n, dtype=lower.dtype)
    return jax.scipy.linalg.solve_triangular(lower, eye, lower=True)
  half = n // 2
  a_inv = _lower_inverse(lower[:half, :half], leaf)
  c_inv = _lower_inverse(lower[half:, half:], leaf)
  mm = functools.partial(jnp.matmul, precision=_HIGHEST)
  b_inv = -mm(c_inv, mm(lower[half:, :half], a_inv))
  top = jnp.concatenate([a_inv, jnp.zeros((half, n - half), lower.dtype)], 1)
  return jnp.concatenate([top, jnp.concatenate([b_inv, c_inv], 1)], 0)


def _prepare(w, h, percdamp, retries):
  """Dead inputs, dampening with retries, and the factor `U` of `inv(H)`.

  Once dead inputs have their diagonal set to 1 (as published), `H` is
  scaled to a largest diagonal entry of 1 (SparseGPT depends only on its
  relative scale), so tiny calibration inputs do not underflow in the
  factorisation.
  """
  tiny = jnp.finfo(h.dtype).tiny
  dead = jnp.abs(jnp.diagonal(h)) < tiny
  h = h + jnp.diag(dead.astype(h.dtype))
  w = jnp.where(dead[:, None], 0.0, w)
  h = h / jnp.max(jnp.abs(jnp.diagonal(h)))
  mean_diag = jnp.mean(jnp.diagonal(h))
  eye = jnp.eye(h.shape[0], dtype=h.dtype)

  def factor(damp):
    u = upper_cholesky_inverse(h + (damp * mean_diag) * eye)
    return u, jnp.all(jnp.isfinite(u)) & jnp.all(jnp.diagonal(u) > 0)

  def cond(state):
    _, _, ok, tries = state
    return (~ok) & (tries < retries)

  def body(state):
    _, _, _, tries = state
    tries = tries + 1
    damp = percdamp * jnp.float32(10.0) ** tries.astype(jnp.float32)
    u, ok = factor(damp)
    return damp, u, ok, tries

  # The first pass of the loop tries `percdamp` itself (one compiled copy of
  # the factorisation serves every attempt).
  start = (jnp.asarray(percdamp, jnp.float32),
           _filled_like(h, jnp.nan, h.dtype), jnp.bool_(False), jnp.int32(-1))
  damp, u, ok, _ = jax.lax.while_loop(cond, body, start)
  return w, u, damp, ok


def _filled_like(x, value, dtype):
  """`full_like` that keeps `x`'s (explicit) sharding on every JAX version."""
  return jnp.where(True, jnp.asarray(value, dtype), x.astype(dtype))


def _prune_block(block, u_block, pattern):
  """Chooses the block's mask and applies the in-block OBS updates.

  Rows are processed one at a time. For N:M the mask of a group of m rows is
  chosen when the loop reaches the group's first row, from the weights as
  updated so far.
  """
  diag = jnp.diagonal(u_block)
  diag_sq = jnp.square(diag)
  err = _filled_like(block, 0.0, block.dtype)
  if pattern.is_unstructured:
    keep = sharded_mask(pattern, jnp.square(block) / diag_sq[:, None])
    m = None
  else:
    keep = _filled_like(block, True, bool)
    m = pattern.m
    group_pattern = patterns_lib.NM(pattern.n, m, axis=0)

  def one(i, carry):
    block, err, keep = carry
    if m is not None:
      start = i - i % m
      rows = jax.lax.dynamic_slice_in_dim(block, start, m, axis=0)
      scale = jax.lax.dynamic_slice_in_dim(diag_sq, start, m)
      chosen = group_pattern.mask(jnp.square(rows) / scale[:, None])
      current = jax.lax.dynamic_slice_in_dim(keep, start, m, axis=0)
      chosen = jnp.where(i % m == 0, chosen, current)
      keep = jax.lax.dynamic_update_slice_in_dim(keep, chosen, start, axis=0)
    w = block[i]
    q = jnp.where(keep[i], w, 0.0)
    e = (w - q) / diag[i]
    # u_block is upper triangular: rows before i are left untouched, row i
    # becomes q, later rows absorb the error.
    block = block - u_block[i][:, None] * e[None, :]
    return block, err.at[i].set(e), keep

  return jax.lax.fori_loop(0, block.shape[0], one, (block, err, keep))


@functools.partial(jax.jit, static_argnames=("pattern", "blocksize",
                                              "retries"))
def sparsegpt_core(
    kernel: jax.Array, hessian: jax.Array, pattern: patterns_lib.Pattern,
    blocksize: int = DEFAULT_BLOCKSIZE, percdamp: float = DEFAULT_PERCDAMP,
    retries: int = DEFAULT_DAMP_RETRIES
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """The jitted algorithm; no checks, no warnings (see `sparsegpt_layer`).

  Args:
    kernel: `(in, out)` kernel, any float dtype.
    hessian: `(in, in)` Hessian `(2/n) Xᵀ X` (any positive scale).
    pattern: an `Unstructured` or `NM` pattern (validated by the caller).
    blocksize: rows per lazy-update block (rounded down to a multiple of m).
    percdamp: initial dampening as a fraction of `mean(diag H)`.
    retries: how many times the dampening may be multiplied by 10.

  Returns:
    `(new_kernel, keep_mask, damp_used, ok)`; when `ok` is False the kernel
    is returned unchanged (never NaN) and the mask keeps everything. A
    Hessian without energy (every diagonal entry zero or underflowing) prunes
    the kernel by magnitude `|W|` under `pattern`.

  >>> k = jnp.arange(1., 9.).reshape(4, 2)
  >>> new, keep, damp, ok = sparsegpt_core(k, jnp.eye(4), patterns_lib.NM(2, 4))
  >>> keep.sum(axis=0), bool(ok)
  (Array([2, 2], dtype=int32), True)
  """
  dtype = kernel.dtype
  w = kernel.astype(jnp.float32)
  h = hessian.astype(jnp.float32)
  w, u, damp, ok = _prepare(w, h, percdamp, retries)
  n_in = w.shape[0]
  if pattern.is_nm:
    blocksize = max(pattern.m, blocksize - blocksize % pattern.m)
  blocksize = min(blocksize, n_in)
  full = n_in // blocksize
  columns = jnp.arange(n_in)

  def step(w, b):
    start = b * blocksize
    block = jax.lax.dynamic_slice_in_dim(w, start, blocksize, axis=0)
    u_rows = jax.lax.dynamic_slice_in_dim(u, start, blocksize, axis=0)
    u_block = jax.lax.dynamic_slice_in_dim(u_rows, start, blocksize, axis=1)
    block, err, keep = _prune_block(block, u_block, pattern)
    w = jax.lax.dynamic_update_slice_in_dim(
        w, jnp.where(keep, block, 0.0), start, axis=0)
    # Lazy update of every later row; earlier rows get a zero coefficient.
    later = jnp.where(columns[None, :] >= start + blocksize, u_rows, 0.0)
    w = w - jnp.matmul(later.T, err, precision=_HIGHEST)
    return w, keep

  w, keeps = jax.lax.scan(step, w, jnp.arange(full))
  keep = keeps.reshape(full * blocksize, -1)
  tail = full * blocksize
  if tail < n_in:
    block, err, keep_tail = _prune_block(w[tail:], u[tail:, tail:], pattern)
    w = w.at[tail:].set(jnp.where(keep_tail, block, 0.0))
    keep = jnp.concatenate([keep, keep_tail], axis=0)
  new = w
  safe = ok & jnp.all(jnp.isfinite(new))
  new = jnp.where(safe, new, kernel.astype(jnp.float32))
  keep = jnp.where(safe, keep, True)
  # Inputs without energy (all zero, or underflowing): no Hessian to follow,
  # so the layer is pruned by magnitude, not zeroed.
  zero = ~jnp.any(jnp.abs(jnp.diagonal(h)) >= jnp.finfo(jnp.float32).tiny)
  by_size = sharded_mask(pattern, jnp.square(kernel.astype(jnp.float32)))
  keep = jnp.where(zero, by_size, keep)
  new = jnp.where(zero, jnp.where(by_size, kernel.astype(jnp.float32), 0.0),
                  new)
  return new.astype(dtype), keep, damp, safe | zero


def sparsegpt_layer(
    kernel: jax.Array, hessian: jax.Array, pattern: patterns_lib.Pattern, *,
    blocksize: int = DEFAULT_BLOCKSIZE, percdamp: float = DEFAULT_PERCDAMP,
    retries: int = DEFAULT_DAMP_RETRIES,
    path: str = "") -> tuple[jax.Array, jax.Array]:
  """Prunes one `(in, out)` Dense kernel with SparseGPT.

  Args:
    kernel: `(in, out)` kernel (any float dtype; the result keeps it).
    hessian: `(in, in)` Hessian of the layer's inputs, `(2/n) Xᵀ X` (as
      returned by `LayerStats.hessian()`); only its shape and relative scale
      matter.
    pattern: `Unstructured(s)` (chosen within each block of `blocksize`
      input rows; `per_output=True` compares within each output unit of the
      block) or `NM(n, m)` (groups along the input axis).
    blocksize: input rows per lazy-update block (128 as published).
    percdamp: dampening as a fraction of the mean Hessian diagonal (1%).
    retries: times the dampening may be raised tenfold if the Cholesky
      factorisation fails; each raise is reported with a warning.
    path: the layer's name, used in warnings and errors.

  Returns:
    `(new_kernel, mask)`: the updated kernel with pruned entries exactly zero,
    and the bool keep-mask.

  A Hessian without energy (all-zero or underflowing calibration inputs)
  prunes by magnitude instead, and dead inputs (their kernel rows are
  zeroed, as published) are reported, each with a `CalibrationWarning`
  naming the layer.

  Raises:
    ValueError: shapes or a pattern SparseGPT cannot express; `blocksize`,
      `percdamp` or `retries` out of range (naming the parameter).
    NonFiniteCalibrationError: (a `ValueError` and a `FloatingPointError`) a
      Hessian holding NaN or inf.
    FloatingPointError: the Hessian could not be factorised even after
      raising the dampening (the message names the layer).

  >>> x = jax.random.normal(jax.random.key(0), (64, 8))
  >>> k = jax.random.normal(jax.random.key(1), (8, 4))
  >>> new, mask = sparsegpt_layer(k, 2 * x.T @ x / 64, patterns_lib.NM(2, 4))
  >>> mask.sum(axis=0), bool(jnp.all((new != 0) <= mask))
  (Array([4, 4, 4, 4], dtype=int32), True)
  """
  kernel = jnp.asarray(kernel)
  hessian = jnp.asarray(hessian)
  check_pattern(pattern, kernel.shape, kernel.dtype, path)
  n_in = kernel.shape[0]
  if tuple(hessian.shape) != (n_in, n_in):
    raise ValueError(
        f"SparseGPT{_checks.where(path)}: the Hessian has shape "
        f"{tuple(hessian.shape)} but the kernel {tuple(kernel.shape)} needs "
        f"({n_in}, {n_in}).")
  blocksize, percdamp, retries = check_options(blocksize, percdamp, retries)
  calibration.check_finite(hessian, path, "SparseGPT")
  if calibration.input_energy(
      jnp.diagonal(hessian), path, "SparseGPT",
      "their kernel rows are zeroed (as published)") == "zero":
    calibration.warn_zero_energy(path, "SparseGPT", "pruned by weight "
                                 "magnitude |W| instead (no weight update)")
  new, keep, damp, ok = sparsegpt_core(kernel, hessian, pattern,
                                       blocksize=blocksize,
                                       percdamp=percdamp, retries=retries)
  if isinstance(ok, jax.core.Tracer):
    return new, keep
  if not bool(ok):
    raise FloatingPointError(
        f"SparseGPT{_checks.where(path)}: the Hessian is not positive definite even "
        f"after raising the dampening from {percdamp:g} to "
        f"{percdamp * 10.0 ** retries:g} of its mean diagonal (it may hold "
        "NaN/inf or be indefinite). Check the calibration inputs of this "
        "layer.")
  used = float(damp)
  if not np.isclose(used, percdamp, rtol=1e-6):
    warnings.warn(
        f"SparseGPT{_checks.where(path)}: the Hessian was not positive definite "
        f"with dampening {percdamp:g}; raised the dampening to {used:g} of "
        "its mean diagonal.", RuntimeWarning, stacklevel=2)
  return new, keep
