"""Sensitivity scan: the held-out loss change of pruning one layer at a time.

For every targeted layer on its own and every candidate pattern, the layer is
pruned one-shot by a registered pruner (`sparsejax.oneshot.prune_from_stats`,
method "magnitude", "wanda" or "sparsegpt") while every other layer stays
dense, and the held-out loss is measured. Calibration statistics are
collected once, over all scanned layers in one pass on the dense model, and
reused for every (layer, pattern). The loss is one jitted function of the
whole params tree: pruning one kernel changes its values but neither its
shape nor the tree, so the function is traced once per held-out batch shape,
not once per layer or pattern.

A pattern that does not fit a layer (a group axis not divisible by `m`, a
pattern the method cannot express) is not an error: its cell is "n/a" (`fits`
False, NaN delta, the pruner's message in `unfit`), shown as such in the heat
map and never chosen by `allocate`. Anything wrong with the arguments
themselves is an error before any compute.
"""

import dataclasses
import math
import re
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from sparsejax import _checks
from sparsejax import deploy
from sparsejax import rules as rules_lib
from sparsejax.oneshot import calibration
from sparsejax.oneshot.prune import prune_from_stats
from sparsejax.oneshot.prune import pruner as find_pruner
from sparsejax.oneshot import sparsegpt as sparsegpt_lib
from sparsejax.patterns import Pattern


def layer_rule(path: str, pattern: Pattern | None) -> rules_lib.Rule:
  """A rule that matches exactly the leaf at `path` (and nothing else).

  The path is regex-escaped, and the default skips (1-D leaves, embeddings)
  are off, so the rule applies to that leaf whatever it is.

  >>> from sparsejax.patterns import NM
  >>> rule = layer_rule("block_0/mlp.fc1/kernel", NM(2, 4))
  >>> rule.path, rule.accepts("block_0/mlpXfc1/kernel", (8, 8))
  ('block_0/mlp\\\\.fc1/kernel', False)
  """
  return rules_lib.Rule(re.escape(path), pattern, min_ndim=0, exclude=None)


@dataclasses.dataclass(frozen=True, eq=False)
class SensitivityScan:
  """What `sensitivity` measured: one row per layer, one column per pattern.

  Attributes:
    layers: the scanned kernel paths, in leaf order.
    patterns: the candidate patterns.
    deltas: `(layers, patterns)` held-out loss after pruning that layer alone
      with that pattern, minus `dense_loss`; NaN where the pattern does not
      fit the layer.
    dense_loss: the held-out loss of the unpruned params.
    kept: `(layers, patterns)` entries the pruned layer keeps (0 where n/a).
    nbytes: `(layers, patterns)` bytes of the pruned layer after
      `sj.deploy.export` (its dense size where the pattern has no compressed
      format, or compression would not be smaller; 0 where n/a).
    sizes: `(layers,)` entries of each dense layer.
    dense_bytes: `(layers,)` bytes of each dense layer.
    unfit: `unfit[i][j]` the reason pattern `j` does not fit layer `i`, or
      None where it does.
    method: the one-shot method that pruned.
  """

  layers: tuple[str, ...]
  patterns: tuple[Pattern, ...]
  deltas: np.ndarray
  dense_loss: float
  kept: np.ndarray
  nbytes: np.ndarray
  sizes: np.ndarray
  dense_bytes: np.ndarray
  unfit: tuple[tuple[str | None, ...], ...]
  method: str

  @property
  def fits(self) -> np.ndarray:
    """`(layers, patterns)` bool: whether the pattern fits the layer."""
    return np.array([[r is None for r in row] for row in self.unfit],
                    dtype=bool).reshape(self.deltas.shape)

  @property
  def labels(self) -> tuple[str, ...]:
    """The patterns as short labels (``"2:4"``, ``"unstructured 50%"``)."""
    return tuple(str(p) for p in self.patterns)

  def plot(self, path: Any, **kwargs: Any) -> Any:
    """Draws the heat map to `path` (see `plot_sensitivity`)."""
    from sparsejax.allocation import plot  # matplotlib only when drawing
    return plot.plot_sensitivity(self, path, **kwargs)


def _layer_paths(params, layers):
  """The kernel paths `layers` selects, in leaf order; errors if none."""
  entries = [layers] if isinstance(layers, (str, rules_lib.Rule)) else layers
  if isinstance(entries, Pattern) or not hasattr(entries, "__iter__"):
    raise _checks.ParamTypeError(
        "layers must be a regex, a Rule, or a list of them (their patterns "
        f"are ignored); got {layers!r}.")
  entries = [rules_lib.Rule(e, None) if isinstance(e, str) else e
             for e in entries]
  rules = rules_lib.as_rules(entries, "layers")
  if not rules:
    raise ValueError("layers is empty: name at least one layer to scan.")
  leaves = rules_lib.named_leaves(params)
  rules_lib.report_unused(params, rules, "error")
  return [path for path, leaf in leaves
          if any(r.accepts(path, jnp.shape(leaf)) for r in rules)]


def _check_patterns(patterns):
  if isinstance(patterns, Pattern) or not hasattr(patterns, "__iter__"):
    raise _checks.ParamTypeError(
        f"patterns must be a list of sparsejax patterns; got {patterns!r}.")
  patterns = tuple(patterns)
  if not patterns:
    raise ValueError("patterns is empty: give at least one candidate pattern "
                     "(e.g. [sj.NM(2, 4), sj.Unstructured(0.5)]).")
  for j, pattern in enumerate(patterns):
    if not isinstance(pattern, Pattern):
      raise _checks.ParamTypeError(
          f"patterns[{j}] must be a sparsejax pattern; got {pattern!r}.")
  if len(set(patterns)) != len(patterns):
    raise ValueError(
        f"patterns holds duplicates: {[str(p) for p in patterns]}.")
  return patterns


def _unfit_reason(pruner, kernel, pattern, path):
  """None if the method can prune the kernel with the pattern, else why."""
  try:
    pruner.check(tuple(jnp.shape(kernel)), jnp.result_type(kernel), pattern,
                 path)
  except (ValueError, TypeError) as err:
    return str(err)
  return None


def _calibration_stats(pruner, method, model, params, batches, paths):
  """`{path: LayerStats}` in one pass on the dense model (None: not needed)."""
  if not pruner.needs_stats:
    return None
  if model is None or batches is None:
    raise ValueError(f"method={method!r} needs calibration statistics: pass "
                     "model= (the Flax model) and calibration_batches=.")
  batches = list(batches)
  if not batches:
    raise ValueError("calibration_batches is empty.")
  calibrator = calibration.Calibrator(model, params)
  order = calibrator.check_reached(batches[0], paths)
  return calibrator.collect(batches, order, hessian=pruner.hessian)


def _heldout_loss(loss_fn, batches):
  """`params -> mean over batches of loss_fn(params, batch)`, jitted once."""
  evaluate = jax.jit(loss_fn)

  def heldout(params, what):
    losses = [evaluate(params, batch) for batch in batches]
    if jnp.shape(losses[0]) != ():
      raise ValueError(f"loss_fn must return a scalar; got shape "
                       f"{jnp.shape(losses[0])}.")
    value = float(np.mean([float(v) for v in losses]))
    if not math.isfinite(value):
      raise ValueError(f"the held-out loss of {what} is {value}.")
    return value

  return heldout


def _layer_bytes(new_params, masks, rule, path):
  """Bytes of the pruned layer once exported (dense size if not smaller)."""
  _, rows = deploy.export(new_params, masks, rule, report=True)
  row = next(r for r in rows if r.path == path)
  return row.dense_bytes if row.format == "dense" else row.compressed_bytes


def sensitivity(loss_fn: Callable[[Any, Any], Any], params: Any,
                layers: Any, patterns: Sequence[Pattern],
                heldout_batches: Iterable[Any], *, method: str = "magnitude",
                model: Any = None,
                calibration_batches: Iterable[Any] | None = None,
                blocksize: int = sparsegpt_lib.DEFAULT_BLOCKSIZE,
                percdamp: float = sparsegpt_lib.DEFAULT_PERCDAMP,
                progress: bool = True) -> SensitivityScan:
  """Held-out loss change of one-shot pruning each layer alone, per pattern.

  Args:
    loss_fn: `(params, batch) -> scalar` loss; the held-out loss is its mean
      over `heldout_batches` (each batch weighs the same). It is jitted here.
    params: the params tree `loss_fn` takes and the layer regexes match.
    layers: which kernels to scan: a regex (`re.fullmatch` on the '/'-joined
      path), a `Rule` (its pattern is ignored) or a list of them; the rules'
      default skips apply (1-D leaves, embeddings). A regex matching nothing
      is an error.
    patterns: the candidate patterns (e.g. `[sj.NM(2, 4), sj.NM(1, 4),
      sj.Unstructured(0.9)]`).
    heldout_batches: the batches the loss is measured on (kept in a list).
    method: a registered one-shot pruner (`sj.methods.names("oneshot")`).
    model: the Flax model calibration runs (Linen module, `apply_fn(params,
      batch)` or NNX module); needed by "wanda" and "sparsegpt".
    calibration_batches: inputs of the calibration pass (as for
      `sj.oneshot.prune`); needed by "wanda" and "sparsegpt".
    blocksize, percdamp: SparseGPT options (see `sj.oneshot.prune`).
    progress: show a progress bar over the (layer, pattern) pairs.

  Returns:
    A `SensitivityScan`. A pattern the method cannot apply to a layer (shape
    not divisible, pattern not expressible) is an "n/a" cell, not an error:
    `fits` False, NaN delta, the reason in `unfit`.

  Raises:
    ValueError: no layer, no pattern, no held-out or calibration batch, an
      unknown method (the message lists the registered ones), a regex that
      matches nothing, a non-scalar or non-finite loss (naming the layer and
      pattern), a layer the calibration pass never reaches.

  >>> import sparsejax as sj
  >>> params = {"a": {"kernel": jnp.arange(1., 17.).reshape(4, 4)},
  ...           "b": {"kernel": jnp.ones((4, 6))}}
  >>> def loss_fn(p, x):
  ...   return jnp.mean((x @ p["a"]["kernel"] @ p["b"]["kernel"]) ** 2)
  >>> scan = sensitivity(loss_fn, params, ".*kernel",
  ...                    [sj.NM(2, 4), sj.NM(1, 8)], [jnp.ones((2, 4))],
  ...                    progress=False)
  >>> scan.layers, scan.labels
  (('a/kernel', 'b/kernel'), ('2:4', '1:8'))
  >>> scan.kept.tolist(), scan.fits.tolist()
  ([[8, 0], [12, 0]], [[True, False], [True, False]])
  >>> bool(scan.deltas[0, 0] < 0), bool(np.isnan(scan.deltas[0, 1]))
  (True, True)
  """
  if not callable(loss_fn):
    raise _checks.ParamTypeError(
        f"loss_fn must be a function (params, batch) -> loss; got {loss_fn!r}.")
  pruner = find_pruner(method)
  blocksize, percdamp, _ = sparsegpt_lib.check_options(blocksize, percdamp)
  _checks.check_bool(progress, "progress")
  paths = _layer_paths(params, layers)
  patterns = _check_patterns(patterns)
  batches = list(heldout_batches)
  if not batches:
    raise ValueError("heldout_batches is empty: the loss needs at least one "
                     "held-out batch.")
  kernels = dict(rules_lib.named_leaves(params))
  unfit = [[_unfit_reason(pruner, kernels[path], pattern, path)
            for pattern in patterns] for path in paths]
  reached = [p for p, row in zip(paths, unfit) if any(r is None for r in row)]
  stats = _calibration_stats(pruner, method, model, params,
                             calibration_batches, reached)
  heldout = _heldout_loss(loss_fn, batches)
  dense_loss = heldout(params, "the dense params")

  shape = (len(paths), len(patterns))
  deltas = np.full(shape, np.nan)
  kept = np.zeros(shape, np.int64)
  nbytes = np.zeros(shape, np.int64)
  pairs = [(i, j) for i in range(shape[0]) for j in range(shape[1])
           if unfit[i][j] is None]
  for i, j in tqdm.tqdm(pairs, desc="sensitivity", unit="pair",
                        disable=not progress):
    path, pattern = paths[i], patterns[j]
    rule = layer_rule(path, pattern)
    new, masks = prune_from_stats(
        params, None if stats is None else {path: stats[path]}, rule,
        method=method, blocksize=blocksize, percdamp=percdamp,
        on_unused="error")
    deltas[i, j] = heldout(new, f"{path!r} pruned {pattern}") - dense_loss
    kept[i, j] = int(np.sum(dict(rules_lib.named_leaves(masks))[path]))
    nbytes[i, j] = _layer_bytes(new, masks, rule, path)

  return SensitivityScan(
      layers=tuple(paths), patterns=patterns, deltas=deltas,
      dense_loss=dense_loss, kept=kept, nbytes=nbytes,
      sizes=np.array([int(np.size(kernels[p])) for p in paths], np.int64),
      dense_bytes=np.array([int(kernels[p].nbytes) for p in paths], np.int64),
      unfit=tuple(tuple(row) for row in unfit), method=method)
