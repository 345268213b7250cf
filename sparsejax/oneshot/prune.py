"""The one-shot pruning entry point: calibrate, then prune layer by layer.

The pruners are registered in `sparsejax.methods.registry` with
`kind="oneshot"` ("magnitude", "wanda", "sparsegpt", and "wanda+dsnot",
"sparsegpt+dsnot": the base pruner's mask refined by DSnoT, see
`sparsejax.oneshot.dsnot`); `prune` and `prune_from_stats` look the method
up there, so a new pruner is one `Pruner` and one `register` call.
"""

import dataclasses
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import _checks
from sparsejax import masks as masks_lib
from sparsejax import rules as rules_lib
from sparsejax.methods import registry
from sparsejax.oneshot import calibration
from sparsejax.oneshot import dsnot as dsnot_lib
from sparsejax.oneshot import magnitude as magnitude_lib
from sparsejax.oneshot import sparsegpt as sparsegpt_lib
from sparsejax.oneshot import wanda as wanda_lib


@dataclasses.dataclass(frozen=True)
class Pruner:
  """A one-shot pruner, as the registry holds it (`kind="oneshot"`).

  Attributes:
    prune_layer: `(kernel, stats, pattern, path, options) -> (kernel, mask)`;
      `stats` is the layer's `LayerStats` (None when `needs_stats` is False).
    check: `(shape, dtype, pattern, path)`: raises, naming the layer, on
      anything the pruner cannot prune.
    needs_stats: whether it needs calibration statistics.
    hessian: whether the statistics must include the Hessian.
  """

  prune_layer: Callable[..., Any]
  check: Callable[..., None]
  needs_stats: bool = True
  hessian: bool = False


def _magnitude_layer(kernel, stats, pattern, path, options):
  return magnitude_lib.magnitude_layer(kernel, pattern, path=path)


def _magnitude_check(shape, dtype, pattern, path):
  pattern.check(shape, dtype, path)


def _wanda_layer(kernel, stats, pattern, path, options):
  return wanda_lib.wanda_layer(kernel, stats.sq_sum, pattern, path=path)


def _wanda_check(shape, dtype, pattern, path):
  wanda_lib.check_layer(shape, shape[:1], pattern, dtype, path)


def _sparsegpt_check(shape, dtype, pattern, path):
  sparsegpt_lib.check_pattern(pattern, shape, dtype, path)


def _sparsegpt_layer(kernel, stats, pattern, path, options):
  return sparsegpt_lib.sparsegpt_layer(kernel, stats.hessian(), pattern,
                                       path=path, **options)


MAGNITUDE = registry.register(
    "magnitude", Pruner(_magnitude_layer, _magnitude_check, needs_stats=False),
    kind="oneshot")
WANDA = registry.register("wanda", Pruner(_wanda_layer, _wanda_check),
                          kind="oneshot")
SPARSEGPT = registry.register(
    "sparsegpt", Pruner(_sparsegpt_layer, _sparsegpt_check,
                        hessian=True), kind="oneshot")


def dsnot_refined(base: Pruner) -> Pruner:
  """`base`, then DSnoT on its result (published DSnoT defaults).

  >>> dsnot_refined(WANDA).hessian, dsnot_refined(SPARSEGPT).hessian
  (False, True)
  """

  def prune_layer(kernel, stats, pattern, path, options):
    sparse, mask = base.prune_layer(kernel, stats, pattern, path, options)
    return dsnot_lib.dsnot_layer(kernel, mask, stats, pattern,
                                 sparse_kernel=sparse, path=path)

  def check(shape, dtype, pattern, path):
    base.check(shape, dtype, pattern, path)
    dsnot_lib.check_pattern(pattern, shape, dtype, path)

  return Pruner(prune_layer, check, hessian=base.hessian)


WANDA_DSNOT = registry.register("wanda+dsnot", dsnot_refined(WANDA),
                                kind="oneshot")
SPARSEGPT_DSNOT = registry.register("sparsegpt+dsnot",
                                    dsnot_refined(SPARSEGPT), kind="oneshot")


def pruner(method: str) -> Pruner:
  """The registered one-shot pruner called `method`.

  >>> pruner("wanda") is WANDA
  True
  """
  try:
    return registry.get(method, kind="oneshot")
  except (KeyError, TypeError):
    raise ValueError(f"method must be one of {registry.names('oneshot')}; "
                     f"got {method!r}.") from None


def _targets(params, rules, on_unused):
  """`{path: pattern}` of targeted leaves, in leaf order."""
  rules_lib.report_unused(params, rules, on_unused)
  return {path: rule.pattern
          for path, rule in rules_lib.assign(params, rules).items()
          if rule is not None and rule.pattern is not None}


def _check_targets(kernels, targets, method):
  """Fails early, naming the layer, on anything the method cannot prune."""
  for path, pattern in targets.items():
    kernel = kernels[path]
    shape, dtype = tuple(jnp.shape(kernel)), jnp.result_type(kernel)
    method.check(shape, dtype, pattern, path)


def _prune_layer(method, kernel, stats, pattern, path, options):
  if method.needs_stats and stats is None:
    raise ValueError(f"no calibration statistics for layer {path!r}: it was "
                     "never reached by the calibration pass.")
  if stats is not None:  # A kernel on one device, statistics on a mesh.
    kernel = calibration.params_for(kernel, stats.sq_sum)
  return method.prune_layer(kernel, stats, pattern, path, options)


def _placed_like(new: Any, old: Any) -> Any:
  """`new` held the way `old` is: on its devices and sharding, or on the host
  when `old` is a host array.

  A sequential pass calibrates on partly pruned params; keeping every leaf as
  it was keeps the calibration step's signature, so it compiles once and not
  once per pruned layer (pruned kernels of global calibration statistics come
  back replicated over the calibration mesh).

  >>> _placed_like(jnp.ones(2), np.zeros(2))
  array([1., 1.], dtype=float32)
  """
  if not isinstance(old, jax.Array):
    return np.asarray(new)
  if isinstance(new, jax.Array) and new.sharding.is_equivalent_to(
      old.sharding, new.ndim):
    return new
  if isinstance(new, jax.Array) and not new.is_fully_addressable:
    return np.asarray(new)  # Replicated across processes: whole here.
  return jax.device_put(new, old.sharding)


def _assemble(params, new_kernels, new_masks):
  def kernel(keypath, leaf):
    return new_kernels.get(rules_lib.path_str(keypath), leaf)

  def mask(keypath, _):
    return new_masks.get(rules_lib.path_str(keypath), masks_lib.dense_mask())

  return (jax.tree_util.tree_map_with_path(kernel, params),
          jax.tree_util.tree_map_with_path(mask, params))


def prune_from_stats(params: Any, stats: Any, rules: Any, *,
                     method: str = "sparsegpt",
                     blocksize: int = sparsegpt_lib.DEFAULT_BLOCKSIZE,
                     percdamp: float = sparsegpt_lib.DEFAULT_PERCDAMP,
                     on_unused: str = "warn") -> tuple[Any, Any]:
  """Prunes every targeted layer from precomputed statistics (one pass).

  Args:
    params: the params tree the rules match.
    stats: `{kernel_path: LayerStats}` from `collect_stats` (SparseGPT needs
      them collected with `hessian=True`; magnitude needs none).
    rules: `Rule`s, one `Rule`, or a bare pattern.
    method: a registered one-shot method: "sparsegpt", "wanda",
      "magnitude", "wanda+dsnot" or "sparsegpt+dsnot"
      (`sparsejax.methods.names("oneshot")`).
    blocksize: SparseGPT block size (128).
    percdamp: SparseGPT dampening (0.01 of the mean Hessian diagonal).
    on_unused: "warn", "error" or "ignore" for rules that match nothing.

  Returns:
    `(new_params, masks)`; masks mirror params (`dense_mask()` on leaves
    that were not pruned).

  >>> from sparsejax.patterns import NM
  >>> from sparsejax.oneshot.calibration import accumulate, init_stats
  >>> params = {"fc": {"kernel": jnp.arange(8.).reshape(4, 2),
  ...                  "bias": jnp.ones(2)}}
  >>> stats = {"fc/kernel": accumulate(init_stats(4), jnp.ones((3, 4)))}
  >>> new, masks = prune_from_stats(params, stats, NM(2, 4), method="wanda")
  >>> new["fc"]["kernel"]
  Array([[0., 0.],
         [0., 0.],
         [4., 5.],
         [6., 7.]], dtype=float32)
  """
  method = pruner(method)
  blocksize, percdamp, _ = sparsegpt_lib.check_options(blocksize, percdamp)
  targets = _targets(params, rules, on_unused)
  kernels = dict(rules_lib.named_leaves(params))
  _check_targets(kernels, targets, method)
  options = dict(blocksize=blocksize, percdamp=percdamp)
  new_kernels, new_masks = {}, {}
  for path, pattern in targets.items():
    new_kernels[path], new_masks[path] = _prune_layer(
        method, kernels[path], (stats or {}).get(path), pattern, path, options)
  return _assemble(params, new_kernels, new_masks)


def prune(model: Any, params: Any, calibration_batches: Iterable[Any],
          rules: Any, *, method: str = "sparsegpt", sequential: bool = True,
          blocksize: int = sparsegpt_lib.DEFAULT_BLOCKSIZE,
          percdamp: float = sparsegpt_lib.DEFAULT_PERCDAMP,
          on_unused: str = "warn") -> tuple[Any, Any]:
  """One-shot pruning of a Flax model from calibration data.

  Args:
    model: a Linen `nn.Module` (run as `module.apply(variables, *batch)`),
      an `apply_fn(params, batch)` running Linen modules, or an NNX module
      (run as `model(*batch)` on a private copy; the model is not modified).
    params: the params the rules match: Linen params or variables, or an
      NNX `State` of `nnx.Param` (None: the NNX model's own).
    calibration_batches: an iterable of batches (tuples are unpacked into
      positional arguments). Ignored by "magnitude". Sequential mode reads it
      once per layer, so it is kept in a list. Across processes, each
      process passes its own rows as global arrays sharded over a data axis
      (`jax.make_array_from_process_local_data`); every process gets the
      result of all the rows (`sparsejax.oneshot.calibration`).
    rules: `Rule`s, one `Rule`, or a bare pattern; targeted leaves must be
      `nn.Dense` / `nnx.Linear` kernels for "wanda" and "sparsegpt".
    method: "sparsegpt" (weight update), "wanda", "magnitude", or
      "wanda+dsnot" / "sparsegpt+dsnot" (the mask refined by DSnoT).
    sequential: prune the layers in call order, each calibrated on the
      outputs of the layers already pruned (the published default; one
      calibration pass, and one compilation of the forward pass, per layer).
      The published code works per transformer block (the layers of a block
      are calibrated together, then the block's outputs are recomputed);
      here every layer sees the effect of every layer pruned before it,
      whatever the model's structure. False collects every layer's
      statistics in one pass over the dense model.
    blocksize: SparseGPT block size (128).
    percdamp: SparseGPT dampening (0.01 of the mean Hessian diagonal).
    on_unused: "warn", "error" or "ignore" for rules that match nothing.

  Returns:
    `(new_params, masks)`: params shaped like `params`, pruned entries
    exactly zero; masks mirror params in the library's mask format.

  Layers whose calibration inputs are all zero (or underflow) are pruned by
  magnitude instead, and dead inputs are reported, each with a
  `CalibrationWarning` naming the layer.

  Raises:
    ValueError: calibration batches the model cannot run, a targeted layer
      the calibration pass never reaches, a pattern the method cannot
      express, calibration inputs holding NaN or inf (each names the layer);
      `blocksize` or `percdamp` out of range (naming the parameter).
    FloatingPointError: a SparseGPT Hessian that cannot be factorised even
      with raised dampening.

  >>> from flax import nnx
  >>> from sparsejax.patterns import NM
  >>> model = nnx.Sequential(nnx.Linear(8, 8, rngs=nnx.Rngs(0)), nnx.relu,
  ...                        nnx.Linear(8, 4, rngs=nnx.Rngs(1)))
  >>> batches = [jax.random.normal(jax.random.key(i), (16, 8))
  ...            for i in range(2)]
  >>> new, masks = prune(model, None, batches, NM(2, 4), method="sparsegpt")
  >>> masks["layers"][0]["kernel"].sum(axis=0)
  Array([4, 4, 4, 4, 4, 4, 4, 4], dtype=int32)
  >>> nnx.update(model, new)  # install the pruned weights
  """
  method_name, method = method, pruner(method)
  blocksize, percdamp, _ = sparsegpt_lib.check_options(blocksize, percdamp)
  if not isinstance(sequential, bool):
    raise _checks.ParamTypeError(
        f"sequential must be a bool; got {sequential!r}.")
  calibrator = None
  if method.needs_stats or params is None:
    calibrator = calibration.Calibrator(model, params)
    params = calibrator.params
  targets = _targets(params, rules, on_unused)
  kernels = dict(rules_lib.named_leaves(params))
  _check_targets(kernels, targets, method)
  options = dict(blocksize=blocksize, percdamp=percdamp)
  if not method.needs_stats:
    return prune_from_stats(params, None, rules, method=method_name,
                            on_unused="ignore")
  batches = list(calibration_batches)
  if not batches:
    raise ValueError("no calibration batches were given.")
  order = calibrator.check_reached(batches[0], list(targets))
  hessian = method.hessian
  new_kernels, new_masks = {}, {}
  if not sequential:
    stats = calibrator.collect(batches, order, hessian=hessian)
    for path in order:
      new_kernels[path], new_masks[path] = _prune_layer(
          method, kernels[path], stats[path], targets[path], path, options)
    return _assemble(params, new_kernels, new_masks)
  current = params
  for path in order:
    stats = calibrator.collect_one(batches, path, order, hessian=hessian,
                                   params=current)
    new_kernels[path], new_masks[path] = _prune_layer(
        method, kernels[path], stats, targets[path], path, options)
    current, _ = _assemble(params, {
        p: _placed_like(k, kernels[p]) for p, k in new_kernels.items()}, {})
  return _assemble(params, new_kernels, new_masks)
