"""Calibration: input statistics of Dense layers, without editing the model.

One-shot pruning needs, for every targeted Dense layer with kernel `(in, out)`,
statistics of the layer's inputs over calibration tokens:

* Wanda: `Σ x²` per input feature (the squared input norms),
* SparseGPT: `Σ x xᵀ` (the Hessian up to a `2/n` factor),
* DSnoT: `Σ x` per input feature and the number of calibration sequences
  (the input means and variances, with `Σ x²`).

Both are accumulated in float32, streaming over batches, so memory depends on
the layer sizes and not on the number of calibration tokens.

Models are run as they are:

* **Flax Linen**: an `nn.Module` (called as `module.apply(variables, *batch)`)
  or any `apply_fn(params, batch)` that runs Linen modules.
* **Flax NNX**: an `nnx.Module` (called as `model(*batch)`). The model is
  split and merged into a private copy inside the traced function; the
  user's model is never modified. The copy is put in eval mode.

Both capture the inputs of `nn.Dense` / `nnx.Linear` calls through the
library's one interception of dense layer calls
(`sparsejax.flax.intercept.intercept_dense`).

A batch that is a tuple is unpacked into positional arguments; anything else
is passed as the single argument. A layer is named by the path of its kernel
in the params tree (`params/Dense_0/kernel` for Linen variables,
`layers/0/kernel` for an NNX `State`), so the same `Rule`s select it as
everywhere else in the library.

Across processes (JAX's multi-controller runtime), each process passes its
own rows as global arrays sharded over a data axis
(`jax.make_array_from_process_local_data`); the statistics are summed over
every row and held whole by every process (`stats_sharding`), so every
process prunes to the same weights and masks as one process holding all the
rows. Params held on one device are handed over to the batch's devices
(`params_for`).
"""

import collections.abc
import functools
import math
from typing import Any, Iterable, NamedTuple, Sequence
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparsejax import rules as rules_lib
from sparsejax.flax import intercept

_HIGHEST = jax.lax.Precision.HIGHEST


class CalibrationWarning(UserWarning):
  """Calibration statistics a one-shot method cannot use as they are.

  Issued, naming the layer, for inputs whose energy is zero (or underflows
  in float32) and for dead inputs (zero on every calibration token); the
  message says what the pruner did instead.
  """


class NonFiniteCalibrationError(ValueError, FloatingPointError):
  """Calibration statistics holding NaN or inf; the message names the layer.

  Both a `ValueError` (bad calibration data) and a `FloatingPointError`.
  """


def check_finite(stats: Any, path: str, method: str) -> None:
  """Raises `NonFiniteCalibrationError` naming the layer unless every entry
  of `stats` (an array, concrete) is finite.

  >>> check_finite(jnp.array([1., jnp.inf]), "fc/kernel", "SparseGPT")
  Traceback (most recent call last):
  ...
  sparsejax.oneshot.calibration.NonFiniteCalibrationError: SparseGPT at 'fc/kernel': the calibration statistics hold NaN or inf (non-finite calibration inputs of this layer).
  """
  if isinstance(stats, jax.core.Tracer):
    return
  if not bool(jnp.all(jnp.isfinite(jnp.asarray(stats)))):
    where = f" at {path!r}" if path else ""
    raise NonFiniteCalibrationError(
        f"{method}{where}: the calibration statistics hold NaN or inf "
        "(non-finite calibration inputs of this layer).")


def input_energy(sq_sum: Any, path: str, method: str,
                 dead_note: str = "their weights rank as unimportant") -> str:
  """Checks the per-input energy `Σ x²` of one layer (a concrete array).

  Returns "zero" when every input's energy is zero (or underflows), "dead"
  when some are, "ok" otherwise. Raises a ValueError naming the layer when
  the statistics hold NaN or inf; warns (`CalibrationWarning`) about dead
  inputs (`dead_note` says what the method does with them). A traced
  `sq_sum` is not checked ("ok").

  >>> input_energy(jnp.array([1., 2.]), "fc/kernel", "Wanda")
  'ok'
  >>> input_energy(jnp.array([1., jnp.nan]), "fc/kernel", "Wanda")
  Traceback (most recent call last):
  ...
  sparsejax.oneshot.calibration.NonFiniteCalibrationError: Wanda at 'fc/kernel': the calibration statistics hold NaN or inf (non-finite calibration inputs of this layer).
  """
  if isinstance(sq_sum, jax.core.Tracer):
    return "ok"
  energy = jnp.asarray(sq_sum, jnp.float32)
  where = f" at {path!r}" if path else ""
  check_finite(energy, path, method)
  live = jnp.abs(energy) >= jnp.finfo(jnp.float32).tiny
  if not bool(jnp.any(live)):
    return "zero"
  dead = int(energy.size - jnp.sum(live))
  if dead:
    warnings.warn(
        f"{method}{where}: {dead} of {energy.size} inputs are dead (zero, or "
        f"underflowing, on every calibration token); {dead_note}.",
        CalibrationWarning, stacklevel=3)
    return "dead"
  return "ok"


def warn_zero_energy(path: str, method: str, fallback: str) -> None:
  """The `CalibrationWarning` for a layer whose inputs are all zero."""
  where = f" at {path!r}" if path else ""
  warnings.warn(
      f"{method}{where}: every calibration input of this layer is zero (or "
      f"underflows in float32), so its statistics carry no information; "
      f"{fallback}.", CalibrationWarning, stacklevel=3)


class LayerStats(NamedTuple):
  """Streaming statistics of one Dense layer's inputs (float32).

  Attributes:
    sq_sum: `(in,)` sum over tokens of `x²` per input feature.
    xxt: `(in, in)` sum over tokens of `x xᵀ`, or None when not collected.
    count: number of tokens seen (int32 scalar).
    x_sum: `(in,)` sum over tokens of `x` per input feature (None in
      statistics built without it).
    samples: number of calibration sequences seen (int32 scalar, or None):
      an input `(tokens, in)` counts as one sequence, `(batch, seq, in)` as
      `batch`.
  """

  sq_sum: jax.Array
  xxt: Any
  count: jax.Array
  x_sum: Any = None
  samples: Any = None

  def input_norms(self) -> jax.Array:
    """`‖X_j‖₂` per input feature (Wanda's activation norm)."""
    return jnp.sqrt(self.sq_sum)

  def hessian(self) -> jax.Array:
    """SparseGPT's `H = (2/n) Σ x xᵀ`."""
    if self.xxt is None:
      raise ValueError("these statistics hold no Hessian; collect them with "
                       "hessian=True.")
    return 2.0 * self.xxt / jnp.maximum(self.count, 1).astype(jnp.float32)

  def input_mean(self) -> jax.Array:
    """`E[x_j]` per input feature over the calibration tokens.

    >>> accumulate(init_stats(2), jnp.array([[1., 2.], [3., 6.]])).input_mean()
    Array([2., 4.], dtype=float32)
    """
    if self.x_sum is None:
      raise ValueError("these statistics hold no input sums (x_sum); collect "
                       "them with accumulate / collect_stats.")
    return self.x_sum / jnp.maximum(self.count, 1).astype(jnp.float32)

  def input_variance(self) -> jax.Array:
    """`E[x_j²] - E[x_j]²` per input feature (population variance, >= 0).

    >>> accumulate(init_stats(2), jnp.array([[1., 2.], [3., 6.]])
    ...            ).input_variance()
    Array([1., 4.], dtype=float32)
    """
    mean = self.input_mean()
    second = self.sq_sum / jnp.maximum(self.count, 1).astype(jnp.float32)
    return jnp.maximum(second - jnp.square(mean), 0.0)


def init_stats(n_in: int, hessian: bool = True) -> "LayerStats":
  """Empty statistics for a layer with `n_in` input features.

  >>> init_stats(3).xxt.shape
  (3, 3)
  """
  return LayerStats(
      sq_sum=jnp.zeros((n_in,), jnp.float32),
      xxt=jnp.zeros((n_in, n_in), jnp.float32) if hessian else None,
      count=jnp.zeros((), jnp.int32),
      x_sum=jnp.zeros((n_in,), jnp.float32),
      samples=jnp.zeros((), jnp.int32))


def _gram(x):
  """`Σ x xᵀ` over every leading axis of `x` (f32, full precision).

  Under explicit sharding a batch sharded over a data axis makes the
  contraction ambiguous; the sum is then requested replicated, which reduces
  the per-shard products over the data axis.
  """
  sharding = getattr(jax.typeof(x), "sharding", None) if hasattr(
      jax, "typeof") else None
  mesh = getattr(sharding, "mesh", None)
  explicit = mesh is not None and not mesh.empty and _explicit(mesh)
  kwargs = {}
  if explicit:
    kwargs["out_sharding"] = jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec())
  return jnp.einsum("...i,...j->ij", x, x, precision=_HIGHEST, **kwargs)


def accumulate(stats: "LayerStats", x: jax.Array) -> "LayerStats":
  """Adds the tokens of `x` (shape `(..., in)`) to `stats`.

  >>> s = accumulate(init_stats(2), jnp.array([[1., 2.], [3., 4.]]))
  >>> s.sq_sum, s.xxt, s.count
  (Array([10., 20.], dtype=float32), Array([[10., 14.],
         [14., 20.]], dtype=float32), Array(2, dtype=int32))
  """
  x = jnp.asarray(x).astype(jnp.float32)
  if x.ndim == 1:
    x = x[None]
  tokens = x.size // max(x.shape[-1], 1)
  sequences = math.prod(x.shape[:-2])
  token_axes = tuple(range(x.ndim - 1))
  xxt = stats.xxt
  if xxt is not None:
    xxt = xxt + _gram(x)
  x_sum, samples = stats.x_sum, stats.samples
  if x_sum is not None:
    x_sum = x_sum + jnp.sum(x, axis=token_axes)
  if samples is not None:
    samples = samples + sequences
  return LayerStats(
      sq_sum=stats.sq_sum + jnp.sum(jnp.square(x), axis=token_axes),
      xxt=xxt,
      count=stats.count + tokens,
      x_sum=x_sum,
      samples=samples)


def stats_sharding(batch: Any) -> jax.sharding.NamedSharding | None:
  """Where calibration statistics of `batch` live: replicated over the mesh
  of a batch spread across several devices (None for any other batch).

  Rows spread over a data axis, across devices or across processes (global
  arrays from `jax.make_array_from_process_local_data`), are summed over
  that axis, and every device, so every process, holds the full statistics
  of all the rows: the pruned weights and masks come out whole everywhere.
  On a mesh with explicit axes (None) the statistics keep the shardings the
  types give them; sums over the data axis are reduced there as well.

  >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  >>> mesh = Mesh(np.array(jax.devices()), ("data",))
  >>> rows = jax.device_put(jnp.ones((8, 3)), NamedSharding(mesh, P("data")))
  >>> stats_sharding((rows,)).is_fully_replicated
  True
  >>> stats_sharding(jnp.ones((8, 3))) is None
  True
  """
  for leaf in jax.tree.leaves(batch):
    sharding = getattr(leaf, "sharding", None)
    if (isinstance(sharding, jax.sharding.NamedSharding) and
        sharding.mesh.size > 1 and not _explicit(sharding.mesh)):
      return jax.sharding.NamedSharding(sharding.mesh,
                                        jax.sharding.PartitionSpec())
  return None


def params_for(params: Any, batch: Any) -> Any:
  """`params` ready to run with `batch`: when the batch spans several
  devices, leaves this process holds on other devices (params built or
  loaded on one device) are handed over as host values, which every device
  of the batch's mesh receives; leaves already on those devices, and any
  leaf for a batch on one device, stay as they are.

  >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  >>> mesh = Mesh(np.array(jax.devices()), ("data",))
  >>> rows = jax.device_put(jnp.ones((8, 3)), NamedSharding(mesh, P("data")))
  >>> w = jax.device_put(jnp.ones(3), jax.devices()[0])
  >>> type(params_for({"w": w}, rows)["w"]).__name__
  'ndarray'
  >>> params_for({"w": w}, jnp.ones((8, 3)))["w"] is w
  True
  """
  devices = None
  for leaf in jax.tree.leaves(batch):
    sharding = getattr(leaf, "sharding", None)
    if sharding is not None and len(sharding.device_set) > 1:
      devices = sharding.device_set
      break
  if devices is None:
    return params

  def hand_over(x):
    if (isinstance(x, jax.Array) and x.is_fully_addressable and
        x.sharding.device_set != devices):
      return np.asarray(x)
    return x

  return jax.tree.map(hand_over, params)


def _explicit(mesh):
  return any(t == jax.sharding.AxisType.Explicit
             for t in getattr(mesh, "axis_types", ()))


def _kernel_path(module_path):
  return f"{module_path}/kernel" if module_path else "kernel"


def _batch_args(batch):
  return tuple(batch) if isinstance(batch, tuple) else (batch,)


# ---------------------------------------------------------------- runners ---
# Both frameworks report layer inputs through the shared interception of
# dense layer calls (`sparsejax.flax.intercept`).


class _LinenRunner:
  """Runs a Linen module or apply function, reporting Dense inputs."""

  kind = "linen"

  def __init__(self, model):
    self.model = model

  def default_params(self):
    raise ValueError("a Linen model needs its params (or variables) passed "
                     "explicitly.")

  def call(self, params, batch, on_input):
    wrapped = isinstance(params, collections.abc.Mapping) and "params" in params
    prefix = "params/" if wrapped else ""

    def report(call, proceed):
      on_input(prefix + _kernel_path(call.path), call.inputs)
      return proceed()

    with intercept.intercept_dense(report):
      if isinstance(self.model, nn.Module):
        variables = params if wrapped else {"params": params}
        return self.model.apply(variables, *_batch_args(batch))
      return self.model(params, batch)


class _NnxRunner:
  """Runs a private copy of an NNX module, reporting `nnx.Linear` inputs."""

  kind = "nnx"

  def __init__(self, model):
    self.graphdef, self.params, self.rest = nnx.split(model, nnx.Param, ...)

  def default_params(self):
    return self.params

  def call(self, params, batch, on_input):
    model = nnx.merge(self.graphdef, params, self.rest)
    model.eval()

    def report(call, proceed):
      if call.path is not None:
        on_input(_kernel_path(call.path), call.inputs)
      return proceed()

    with intercept.intercept_dense(report, model):
      return model(*_batch_args(batch))


def runner_for(model: Any) -> Any:
  """Wraps a Linen module, an apply function or an NNX module."""
  if isinstance(model, (_LinenRunner, _NnxRunner)):
    return model
  if isinstance(model, nnx.Module):
    return _NnxRunner(model)
  if isinstance(model, nn.Module) or callable(model):
    return _LinenRunner(model)
  raise TypeError(
      "expected a Flax Linen module, an apply_fn(params, batch) or a Flax NNX "
      f"module; got {type(model).__name__}.")


# ------------------------------------------------------------- collection ---


def _describe(batch):
  shapes = jax.tree.map(lambda a: tuple(jnp.shape(a)), batch)
  return str(shapes)


class Calibrator:
  """Collects input statistics of a model's Dense layers.

  Args:
    model: a Linen `nn.Module`, an `apply_fn(params, batch)` running Linen
      modules, or an NNX `nnx.Module`.
    params: the params tree the rules are matched against (Linen params or
      variables; an NNX `State` of `nnx.Param`, default: the model's own).

  >>> class Net(nn.Module):
  ...   @nn.compact
  ...   def __call__(self, x):
  ...     x = nn.relu(nn.Dense(4)(x))
  ...     return nn.Dense(2)(x)
  >>> net = Net()
  >>> variables = net.init(jax.random.key(0), jnp.ones((1, 3)))
  >>> cal = Calibrator(net, variables)
  >>> cal.layer_order(jnp.ones((5, 3)))
  ['params/Dense_0/kernel', 'params/Dense_1/kernel']
  >>> stats = cal.collect([jnp.ones((5, 3))], ["params/Dense_0/kernel"])
  >>> stats["params/Dense_0/kernel"].sq_sum
  Array([5., 5., 5.], dtype=float32)
  """

  def __init__(self, model, params=None):
    self.runner = runner_for(model)
    self.params = self.runner.default_params() if params is None else params
    self.kernels = dict(rules_lib.named_leaves(self.params))
    self._steps = {}

  def _trace(self, params, batch, index=0):
    """Dense inputs one batch reaches: `[(path, shape), ...]`, call order."""
    seen = []

    def run(params, batch):
      self.runner.call(params, batch, lambda p, x: seen.append(
          (p, tuple(x.shape))))
      return None

    try:
      jax.eval_shape(run, params, batch)
    except Exception as err:  # The model's own message, with context added.
      raise ValueError(
          f"calibration batch {index} (shapes {_describe(batch)}) could not "
          f"be run through the model: {type(err).__name__}: {err}") from err
    return seen

  def layer_order(self, batch: Any,
                  paths: Sequence[str] | None = None) -> list[str]:
    """Kernel paths of the Dense layers one batch reaches, in call order.

    Args:
      batch: one calibration batch.
      paths: if given, only these paths are returned.
    """
    order = []
    for path, _ in self._trace(self.params, batch):
      if path not in order and (paths is None or path in paths):
        order.append(path)
    return order

  def check_reached(self, batch: Any, paths: Sequence[str]) -> None:
    """Raises a ValueError naming every path in `paths` the batch misses."""
    reached = self.layer_order(batch)
    missing = [p for p in paths if p not in reached]
    if missing:
      raise ValueError(
          f"layer(s) {missing} were never reached by the calibration pass (a "
          "targeted leaf must be the kernel of an nn.Dense / nnx.Linear that "
          f"the model calls). Dense layers reached: {reached}.")
    return [p for p in reached if p in paths]

  def _check_input(self, path, x):
    n_in = self.kernels[path].shape[0]
    if x.shape[-1] != n_in:
      raise ValueError(
          f"layer {path!r} received inputs of shape {tuple(x.shape)}, but "
          f"its kernel {tuple(self.kernels[path].shape)} expects {n_in} "
          "input features.")

  def _step(self, paths, hessian, out_sharding=None):
    """Jitted step accumulating the statistics of every layer in `paths`."""
    key = ("all", tuple(paths), hessian, out_sharding)
    if key not in self._steps:
      wanted = set(paths)

      def step(params, batch, acc, target):
        del target
        acc = dict(acc)

        def on_input(path, x):
          if path in wanted:
            self._check_input(path, x)
            acc[path] = accumulate(acc[path], x)

        self.runner.call(params, batch, on_input)
        return acc

      self._steps[key] = jax.jit(step, out_shardings=out_sharding)
    return self._steps[key]

  def _selective_step(self, paths, hessian, out_sharding=None):
    """Jitted step accumulating only layer `paths[target]` (traced index).

    One accumulator per distinct input width is carried, so memory stays at
    one layer's statistics per width, and one compilation serves every layer
    of a sequential pass.
    """
    key = ("one", tuple(paths), hessian, out_sharding)
    if key not in self._steps:
      index = {p: i for i, p in enumerate(paths)}

      def step(params, batch, acc, target):
        acc = dict(acc)

        def on_input(path, x):
          if path not in index:
            return
          self._check_input(path, x)
          width = x.shape[-1]
          acc[width] = jax.lax.cond(target == index[path],
                                    lambda a: accumulate(a, x),
                                    lambda a: a, acc[width])

        self.runner.call(params, batch, on_input)
        return acc

      self._steps[key] = jax.jit(step, out_shardings=out_sharding)
    return self._steps[key]

  def _check_paths(self, paths):
    for path in paths:
      kernel = self.kernels.get(path)
      if kernel is None or len(jnp.shape(kernel)) != 2:
        raise ValueError(
            f"{path!r} is not a 2-D Dense kernel (in, out) of the params "
            f"(shape {None if kernel is None else tuple(jnp.shape(kernel))}); "
            "one-shot calibration covers nn.Dense / nnx.Linear kernels.")

  def _run(self, step_for, params, batches, acc, target):
    """Accumulates over `batches`; `step_for(out_sharding)` is the step."""
    count = 0
    for index, batch in enumerate(batches):
      if index == 0:
        params = params_for(params, batch)
      try:
        acc = step_for(stats_sharding(batch))(params, batch, acc, target)
      except (TypeError, ValueError) as err:
        raise ValueError(
            f"calibration batch {index} (shapes {_describe(batch)}) could "
            f"not be run through the model: {type(err).__name__}: "
            f"{err}") from err
      count += 1
    if count == 0:
      raise ValueError("no calibration batches were given.")
    return acc

  @staticmethod
  def _validate(path, stats):
    if int(stats.count) == 0:
      raise ValueError(
          f"layer {path!r} was never reached by the calibration pass (it "
          "received no tokens).")
    finite = jnp.all(jnp.isfinite(stats.sq_sum))
    for extra in (stats.xxt, stats.x_sum):
      if extra is not None:
        finite &= jnp.all(jnp.isfinite(extra))
    if not bool(finite):
      raise NonFiniteCalibrationError(
          f"the calibration inputs of layer {path!r} hold NaN or inf.")
    return stats

  def collect(self, batches: Iterable[Any], paths: Sequence[str], *,
              hessian: bool = True,
              params: Any = None) -> dict[str, "LayerStats"]:
    """Streams `batches` through the model; statistics of the layers `paths`.

    Args:
      batches: an iterable of batches (a generator is read once).
      paths: kernel paths of the layers to collect.
      hessian: also collect `Σ x xᵀ` (SparseGPT); otherwise only `Σ x²`.
      params: params to run with (default: the ones given at construction).

    Returns:
      `{path: LayerStats}`.
    """
    params = self.params if params is None else params
    paths = list(paths)
    self._check_paths(paths)
    acc = {p: init_stats(self.kernels[p].shape[0], hessian) for p in paths}
    acc = self._run(functools.partial(self._step, paths, hessian), params,
                    batches, acc, jnp.int32(0))
    return {path: self._validate(path, stats) for path, stats in acc.items()}

  def collect_one(self, batches: Iterable[Any], path: str,
                  paths: Sequence[str], *, hessian: bool = True,
                  params: Any = None) -> "LayerStats":
    """Statistics of layer `path` alone, for a sequential pass over `paths`.

    Every call with the same `paths` reuses one compiled step (the layer is
    selected by a traced index), so a sequential pass over L layers compiles
    the model once instead of L times.

    Args:
      batches: an iterable of batches.
      path: the layer to collect; one of `paths`.
      paths: every layer of the sequential pass.
      hessian: also collect `Σ x xᵀ`.
      params: params to run with (the partly pruned params).

    Returns:
      The layer's `LayerStats`.
    """
    params = self.params if params is None else params
    paths = list(paths)
    self._check_paths(paths)
    widths = sorted({self.kernels[p].shape[0] for p in paths})
    acc = {w: init_stats(w, hessian) for w in widths}
    acc = self._run(functools.partial(self._selective_step, paths, hessian),
                    params, batches, acc, jnp.int32(paths.index(path)))
    return self._validate(path, acc[self.kernels[path].shape[0]])


def collect_stats(model: Any, params: Any, batches: Iterable[Any],
                  rules: Any, *, hessian: bool = True,
                  on_unused: str = "warn") -> dict[str, "LayerStats"]:
  """Input statistics of every Dense layer the rules target (one pass).

  Args:
    model: a Linen `nn.Module`, an `apply_fn(params, batch)`, or an NNX
      module.
    params: the params the rules match (None for an NNX module's own).
    batches: an iterable of calibration batches.
    rules: `Rule`s, one `Rule` or a bare pattern (as in `compute_masks`).
    hessian: also collect `Σ x xᵀ` for SparseGPT.
    on_unused: "warn", "error" or "ignore" for rules that match nothing.

  Returns:
    `{kernel_path: LayerStats}`.

  >>> from flax import nnx
  >>> from sparsejax.patterns import NM
  >>> model = nnx.Linear(4, 2, rngs=nnx.Rngs(0))
  >>> stats = collect_stats(model, None, [jnp.ones((3, 4))], NM(2, 4))
  >>> stats["kernel"].count, stats["kernel"].hessian()[0, 0]
  (Array(3, dtype=int32), Array(2., dtype=float32))
  """
  calibrator = Calibrator(model, params)
  paths = targeted_paths(calibrator.params, rules, on_unused)
  batches = list(batches)
  if not batches:
    raise ValueError("no calibration batches were given.")
  paths = calibrator.check_reached(batches[0], paths)
  return calibrator.collect(batches, paths, hessian=hessian)


def targeted_paths(params: Any, rules: Any,
                   on_unused: str = "warn") -> list[str]:
  """Paths of the leaves the rules give a pattern, in leaf order.

  >>> from sparsejax.patterns import NM
  >>> targeted_paths({"fc": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones(2)}},
  ...                NM(2, 4))
  ['fc/kernel']
  """
  rules_lib.report_unused(params, rules, on_unused)
  return [path for path, rule in rules_lib.assign(params, rules).items()
          if rule is not None and rule.pattern is not None]
