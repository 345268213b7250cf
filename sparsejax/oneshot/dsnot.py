"""DSnoT: training-free prune-and-grow refinement of a one-shot mask.

DSnoT (Zhang et al., ICLR 2024) starts from a pruned layer (Wanda or
SparseGPT) and, for every output unit (a column of a Flax `(in, out)`
kernel), swaps pruned and kept weights to shrink the expected
reconstruction error of that unit's output, without any weight update:

  `ε = Σ_j (W_j - K_j) s_j`

with `W` the dense kernel, `K` the pruned one and `s_j` the sum of input `j`
over one calibration sequence, averaged over sequences
(`LayerStats.x_sum / LayerStats.samples`; the published code's units, so
its threshold means the same here). Each cycle, while `|ε| > threshold`:

* **grow** the pruned weight with the largest `W_j s_j / Var[x_j]^p` when
  `ε > 0` (the smallest when `ε ≤ 0`): the one that most reduces `|ε|`, with
  the least input variance;
* **prune** a kept weight: unstructured, the one with the smallest Wanda
  score `|K_j| ‖x_j‖` among those whose `K_j s_j` has the sign that reduces
  `|ε|`; N:M, the kept weight with the smallest Wanda score in the grown
  weight's group (so every group keeps exactly N), and the swap is made
  only if `ε` keeps its initial sign.

A unit stops at its first refused swap, after `max_cycles` cycles, or when
no candidate is left. Kept counts per output unit never change, so the
result fits the starting mask's pattern exactly. Published defaults: 50
cycles, threshold 0.1, variance power 1 (the published code's separate
variance power for pruning is parsed but never used, so it is absent here).

DSnoT minimises the *expected* (mean) error, not the squared error: it
helps layers whose inputs have large means and can hurt others, and with
`max_cycles` near the number of pruned weights of a unit (narrow layers)
the swaps invert much of the mask. The published runs refine only the
attention projections (the MLP layers are skipped by default); here the
rules choose the layers.

Where this differs from the published code: candidates are restricted to
weights that are really pruned (grow) or kept (prune), where the published
pointers may run past them into the other set in small layers; the input
variance is the variance over all calibration tokens (the published code
averages per-sequence variances); inputs of zero variance rank first for
growth instead of dividing by zero. Started from SparseGPT, the published
code ranks by SparseGPT's saliency without SparseGPT's weight update; here
the refined layer keeps SparseGPT's updated weights, a regrown weight takes
its dense value, and `ε` counts both.

Composition: `sparsejax.oneshot.prune` and `prune_from_stats` offer DSnoT
as the registered one-shot methods "wanda+dsnot" and "sparsegpt+dsnot"
(the base pruner, then `dsnot_layer` on its result, published defaults).

References:
  * Zhang, Y., Zhao, L., Lin, M., Sun, Y., Yao, Y., Han, X., Tanner, J., Liu,
    S. and Ji, R. "Dynamic Sparse No Training: Training-Free Fine-tuning for
    Sparse LLMs." ICLR 2024. arXiv:2310.08915.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import _checks
from sparsejax import patterns as patterns_lib
from sparsejax.oneshot import calibration

DEFAULT_MAX_CYCLES = 50
DEFAULT_UPDATE_THRESHOLD = 0.1
DEFAULT_REGROW_VAR_POWER = 1.0
_TINY = float(jnp.finfo(jnp.float32).tiny)


def check_pattern(pattern: Any, shape: tuple[int, ...], dtype: Any = jnp.float32,
                  path: str = "") -> None:
  """Raises, naming the layer, unless DSnoT can refine a mask of `pattern`.

  DSnoT takes unstructured patterns and (non-transposable) N:M along the
  input axis of a 2-D `(in, out)` kernel.

  >>> check_pattern(patterns_lib.Block((2, 2), 0.5), (4, 4), path="fc/kernel")
  Traceback (most recent call last):
  ...
  TypeError: DSnoT at 'fc/kernel' refines unstructured or N:M (input axis) masks; the rule gives block 2x2 50%.
  """
  where = _checks.where(path)
  if len(shape) != 2:
    raise ValueError(f"DSnoT{where} refines 2-D Dense kernels (in, out); got "
                     f"shape {tuple(shape)}.")
  if not isinstance(pattern, patterns_lib.Pattern):
    raise TypeError(f"DSnoT{where} needs a sparsejax pattern; got {pattern!r}.")
  nm_on_input = (pattern.is_nm and not pattern.transposable
                 and pattern.group_axis(2, path) == 0)
  if not (pattern.is_unstructured or nm_on_input):
    raise TypeError(f"DSnoT{where} refines unstructured or N:M (input axis) "
                    f"masks; the rule gives {pattern}.")
  pattern.check(tuple(shape), dtype, path)


def check_options(max_cycles: Any, update_threshold: Any,
                  regrow_var_power: Any) -> tuple[int, float, float]:
  """Checks DSnoT's hyperparameters (static numbers); returns them.

  >>> check_options(50, 0.1, 1)
  (50, 0.1, 1.0)
  >>> check_options(-1, 0.1, 1)
  Traceback (most recent call last):
  ...
  ValueError: max_cycles must be >= 0; got -1.
  """
  for name, value in (("max_cycles", max_cycles),
                      ("update_threshold", update_threshold),
                      ("regrow_var_power", regrow_var_power)):
    if _checks.is_traced(value):
      raise _checks.ParamTypeError(
          f"{name} must be a static Python number (it is fixed when DSnoT "
          "compiles); got a traced value.")
  return (_checks.check_int(max_cycles, "max_cycles", 0),
          _checks.check_nonnegative(update_threshold, "update_threshold"),
          _checks.check_nonnegative(regrow_var_power, "regrow_var_power"))


def _require(ok: Any, message: str, error: type = ValueError) -> None:
  """Raises `error(message)` unless `ok`; a traced `ok` raises at run time."""
  if not _checks.is_traced(ok):
    if not bool(ok):
      raise error(message)
    return

  def fail(_):
    raise error(message)

  jax.lax.cond(ok, lambda: None, lambda: jax.debug.callback(fail, ok))


def _check_inputs(kernel, sparse_kernel, mask, stats, pattern, path):
  """Shapes, dtypes, finiteness and the mask's fit to `pattern`."""
  where = _checks.where(path)
  n_in, n_out = kernel.shape
  if tuple(sparse_kernel.shape) != (n_in, n_out):
    raise ValueError(f"DSnoT{where}: sparse_kernel has shape "
                     f"{tuple(sparse_kernel.shape)} but kernel has "
                     f"{(n_in, n_out)}.")
  if tuple(mask.shape) != (n_in, n_out) or mask.dtype != jnp.bool_:
    raise ValueError(f"DSnoT{where}: mask must be a bool array of the "
                     f"kernel's shape {(n_in, n_out)}; got {mask.dtype} "
                     f"{tuple(mask.shape)}.")
  if not isinstance(stats, calibration.LayerStats):
    raise TypeError(f"DSnoT{where}: stats must be the layer's LayerStats; "
                    f"got {type(stats).__name__}.")
  if stats.x_sum is None or stats.samples is None:
    raise ValueError(f"DSnoT{where}: stats hold no input sums (x_sum, "
                     "samples); collect them with accumulate / collect_stats.")
  for name in ("sq_sum", "x_sum"):
    shape = tuple(jnp.shape(getattr(stats, name)))
    if shape != (n_in,):
      raise ValueError(f"DSnoT{where}: stats.{name} has shape {shape} but the "
                       f"kernel {(n_in, n_out)} needs ({n_in},).")
    _require(jnp.all(jnp.isfinite(getattr(stats, name))),
             f"DSnoT{where}: stats.{name} holds NaN or inf (non-finite "
             "calibration inputs of this layer).",
             calibration.NonFiniteCalibrationError)
  for name, value in (("kernel", kernel), ("sparse_kernel", sparse_kernel)):
    _require(jnp.all(jnp.isfinite(value)),
             f"DSnoT{where}: {name} holds NaN or inf.")
  _require(stats.samples > 0, f"DSnoT{where}: stats.samples is 0 (no "
           "calibration sequence reached this layer).")
  if pattern.is_nm:
    kept = mask.reshape(n_in // pattern.m, pattern.m, n_out).sum(axis=1)
    expected, unit = pattern.n, f"group of {pattern.m} inputs"
  elif pattern.per_output:
    kept, expected = mask.sum(axis=0), pattern.kept(n_in, path)
    unit = "output unit"
  else:
    kept, expected = mask.sum(), pattern.kept(mask.size, path)
    unit = "kernel"
  _require(jnp.all(kept == expected), f"DSnoT{where}: mask does not fit "
           f"{pattern}: every {unit} must keep exactly the pattern's count.")


def _order(*keys):
  """Indices sorting by `keys` (first key first), ties by index."""
  keys = [jnp.where(k == 0, jnp.zeros_like(k), k) for k in keys]  # -0 == 0
  iota = jnp.arange(keys[0].shape[0])
  return jax.lax.sort((*keys, iota), num_keys=len(keys) + 1)[-1]


def _refine_unit(grow, cut, wanda, grow_key, keep, err, *, m, threshold,
                 max_cycles):
  """Swap cycles of one output unit (`m=0`: unstructured; else N:M groups).

  `grow`/`cut`: each input's change of `ε` when its weight is grown / cut.
  """
  iota = jnp.arange(keep.shape[0])
  # Pruned weights by growth key: `ε > 0` takes from the top, else the bottom.
  grow_order = _order(keep.astype(jnp.int32), grow_key)
  if not m:
    # Kept weights: negative contribution by ascending Wanda score, zero,
    # then positive by descending score (`ε < 0` takes from the top).
    side = jnp.where(keep, jnp.sign(cut).astype(jnp.int32) + 1, 3)
    cut_order = _order(side, jnp.where(side == 2, -wanda, wanda),
                       jnp.where(side == 2, -iota, iota))
  sign0 = jnp.sign(err)

  def body(state):
    keep, cuttable, err, lo, hi, cut_lo, cut_hi, active, cycle = state
    up, down = err > 0, err < 0
    g = grow_order[jnp.where(up, hi, lo)]
    if m:  # the kept weight of lowest Wanda score in g's group
      start = g - g % m
      block = jax.lax.dynamic_slice(jnp.where(cuttable, wanda, jnp.inf),
                                    (start,), (m,))
      c = start + jnp.argmin(block)
      found = jnp.isfinite(block).any()
    else:
      c = cut_order[jnp.where(down, cut_hi, cut_lo)]
      found = cut_lo <= cut_hi
    after = err + cut[c] - grow[g]
    ok = active & (jnp.abs(err) > threshold) & found & (lo <= hi)
    if m:
      ok &= jnp.sign(after) == sign0
    keep = keep.at[c].set(keep[c] & ~ok).at[g].set(keep[g] | ok)
    cuttable = cuttable.at[c].set(cuttable[c] & ~ok)
    return (keep, cuttable, jnp.where(ok, after, err), lo + ~up, hi - up,
            cut_lo + ~down, cut_hi - down, ok, cycle + 1)

  def cond(state):
    active, cycle = state[-2:]
    return active & (cycle < max_cycles)

  zero = jnp.zeros((), jnp.int32)
  last_pruned = jnp.sum(~keep, dtype=jnp.int32) - 1
  last_kept = jnp.sum(keep, dtype=jnp.int32) - 1
  state = (keep, keep, err, zero, last_pruned, zero, last_kept,
           jnp.array(True), zero)
  return jax.lax.while_loop(cond, body, state)[0]


@functools.partial(jax.jit, static_argnames=("m", "max_cycles", "threshold",
                                             "power"))
def _dsnot(kernel, sparse_kernel, mask, stats, *, m, max_cycles, threshold,
           power):
  f32 = jnp.float32
  dense, sparse = kernel.astype(f32).T, sparse_kernel.astype(f32).T
  keep = mask.T
  s = stats.x_sum / stats.samples.astype(f32)
  grow = dense * s
  cut = jnp.where(keep, sparse * s, 0.0)
  err = jnp.sum(grow - jnp.where(keep, sparse, 0.0) * s, axis=1)
  if power:
    scale = jnp.maximum(stats.input_variance(), _TINY)
    scale = scale if power == 1 else scale ** power
    grow_key = jnp.where(grow == 0, 0.0, grow / scale)
  else:
    grow_key = grow
  wanda = jnp.abs(sparse) * jnp.sqrt(stats.sq_sum)
  refine = functools.partial(_refine_unit, m=m, threshold=threshold,
                             max_cycles=max_cycles)
  new_keep = jax.vmap(refine)(grow, cut, wanda, grow_key, keep, err).T
  values = jnp.where(mask, sparse_kernel, kernel)
  return jnp.where(new_keep, values, jnp.zeros_like(values)), new_keep


def dsnot_layer(kernel: jax.Array, mask: jax.Array,
                stats: calibration.LayerStats,
                pattern: patterns_lib.Pattern, *,
                sparse_kernel: jax.Array | None = None,
                max_cycles: int = DEFAULT_MAX_CYCLES,
                update_threshold: float = DEFAULT_UPDATE_THRESHOLD,
                regrow_var_power: float = DEFAULT_REGROW_VAR_POWER,
                path: str = "") -> tuple[jax.Array, jax.Array]:
  """Refines one layer's one-shot mask by DSnoT's prune-and-grow cycles.

  Args:
    kernel: the dense `(in, out)` kernel.
    mask: `(in, out)` bool mask from a one-shot pruner, fitting `pattern`.
    stats: the layer's `LayerStats` (with `x_sum` and `samples`).
    pattern: the mask's pattern: `Unstructured` or `NM` along the input axis.
    sparse_kernel: the pruner's output kernel when it updated the kept
      weights (SparseGPT); default `kernel` where `mask`, else 0.
    max_cycles: at most this many swaps per output unit (static, >= 0).
    update_threshold: a unit stops once `|ε|` is at most this (static).
    regrow_var_power: growth ranks by `W_j s_j / Var[x_j]^power` (static).
    path: the layer's name for error messages.

  Returns:
    `(new_kernel, new_mask)`: kept weights keep their `sparse_kernel` values,
    regrown ones their `kernel` values; per output unit (and per N:M group)
    the kept count is unchanged.

  >>> from sparsejax.oneshot.calibration import accumulate, init_stats
  >>> kernel = jnp.array([[1.], [-2.], [.5], [-.2]])
  >>> stats = accumulate(init_stats(4, hessian=False),
  ...                    jnp.array([[.4, 1., 4., 2.], [.45, 1.2, 4., 2.]]))
  >>> mask = jnp.array([[False], [True], [False], [True]])
  >>> new, new_mask = dsnot_layer(kernel, mask, stats,
  ...                             patterns_lib.Unstructured(0.5, True))
  >>> new_mask.ravel().astype(int)  # grows input 2, cuts input 3
  Array([0, 1, 1, 0], dtype=int32)
  """
  kernel, mask = jnp.asarray(kernel), jnp.asarray(mask)
  check_pattern(pattern, kernel.shape, kernel.dtype, path)
  max_cycles, threshold, power = check_options(max_cycles, update_threshold,
                                               regrow_var_power)
  if sparse_kernel is None:
    sparse_kernel = jnp.where(mask, kernel, jnp.zeros_like(kernel)) if (
        mask.shape == kernel.shape) else kernel
  sparse_kernel = jnp.asarray(sparse_kernel)
  _check_inputs(kernel, sparse_kernel, mask, stats, pattern, path)
  stats = calibration.LayerStats(
      *(None if v is None else jnp.asarray(v) for v in stats))
  return _dsnot(kernel, sparse_kernel, mask, stats._replace(xxt=None),
                m=pattern.m if pattern.is_nm else 0, max_cycles=max_cycles,
                threshold=threshold, power=power)
