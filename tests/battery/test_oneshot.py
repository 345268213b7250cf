"""Bad inputs and degenerate calibration data for one-shot pruning.

Every error names the parameter or the layer; degenerate statistics (zero
energy, underflow, dead inputs) warn naming the layer.
"""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import sparsejax as sj
from sparsejax import oneshot
from sparsejax._checks import ParamTypeError
from sparsejax.oneshot import CalibrationWarning
from sparsejax.oneshot import NonFiniteCalibrationError
from sparsejax.oneshot.calibration import accumulate
from sparsejax.oneshot.calibration import init_stats
from tests.battery.cases import case
from tests.battery.cases import check_case
from tests.battery.cases import params

NM = sj.NM(2, 4)
RULES = [sj.Rule(r".*kernel", NM)]
KERNEL = jnp.arange(1., 33.).reshape(8, 4)
MODEL = nn.Dense(4)
VARIABLES = MODEL.init(jax.random.key(0), jnp.ones((1, 8)))
BATCHES = [jax.random.normal(jax.random.key(1), (16, 8))]
P = {"fc": {"kernel": KERNEL}}


def _stats(x):
  return {"fc/kernel": accumulate(init_stats(8), x)}


def _prune(**kw):
  return oneshot.prune(MODEL, VARIABLES, BATCHES, RULES, **kw)


def _from_stats(x, method, **kw):
  return oneshot.prune_from_stats(P, _stats(x), NM, method=method, **kw)


CASES = [
    # ---- options: percdamp, blocksize, retries, method, sequential -------
    case("percdamp-zero", lambda: _prune(percdamp=0.0), ValueError,
         "percdamp", "> 0"),
    case("percdamp-negative", lambda: _prune(percdamp=-0.01), ValueError,
         "percdamp", "> 0"),
    case("percdamp-nan", lambda: _prune(percdamp=float("nan")), ValueError,
         "percdamp", "finite"),
    case("percdamp-inf", lambda: _prune(percdamp=float("inf")), ValueError,
         "percdamp", "finite"),
    case("percdamp-string", lambda: _prune(percdamp="0.01"), ParamTypeError,
         "percdamp", "number"),
    case("percdamp-bool", lambda: _prune(percdamp=True), ParamTypeError,
         "percdamp", "number"),
    case("percdamp-from-stats",
         lambda: _from_stats(BATCHES[0], "sparsegpt", percdamp=-1.0),
         ValueError, "percdamp", "> 0"),
    case("percdamp-layer",
         lambda: oneshot.sparsegpt_layer(KERNEL, jnp.eye(8), NM,
                                         percdamp=0.0, path="fc/kernel"),
         ValueError, "percdamp", "> 0"),
    case("blocksize-zero", lambda: _prune(blocksize=0), ValueError,
         "blocksize", ">= 1"),
    case("blocksize-float", lambda: _prune(blocksize=64.0), ParamTypeError,
         "blocksize", "int"),
    case("blocksize-string", lambda: _prune(blocksize="128"),
         ParamTypeError, "blocksize", "int"),
    case("blocksize-layer",
         lambda: oneshot.sparsegpt_layer(KERNEL, jnp.eye(8), NM,
                                         blocksize=-4, path="fc/kernel"),
         ValueError, "blocksize", ">= 1"),
    case("retries-negative",
         lambda: oneshot.sparsegpt_layer(KERNEL, jnp.eye(8), NM, retries=-1,
                                         path="fc/kernel"),
         ValueError, "retries", ">= 0"),
    case("method-unknown", lambda: _prune(method="obs"), ValueError,
         "method", "sparsegpt", "'obs'"),
    case("method-not-string", lambda: _prune(method=3), ValueError,
         "method", "wanda"),
    case("sequential-string", lambda: _prune(sequential="yes"),
         ParamTypeError, "sequential", "bool"),
    case("on-unused-unknown", lambda: _prune(on_unused="loud"), ValueError,
         "on_unused", "'loud'"),
    # ---- shapes and patterns -------------------------------------------
    case("wanda-stats-shape",
         lambda: oneshot.wanda_layer(KERNEL, jnp.ones(7), NM,
                                     path="fc/kernel"),
         ValueError, "'fc/kernel'", r"\(7,\)", r"\(8,\)"),
    case("wanda-kernel-3d",
         lambda: oneshot.wanda_layer(jnp.ones((8, 4, 2)), jnp.ones(8), NM,
                                     path="fc/kernel"),
         ValueError, "'fc/kernel'", "2-D"),
    case("wanda-pattern-string",
         lambda: oneshot.wanda_layer(KERNEL, jnp.ones(8), "2:4",
                                     path="fc/kernel"),
         TypeError, "'fc/kernel'", "pattern"),
    case("sparsegpt-hessian-shape",
         lambda: oneshot.sparsegpt_layer(KERNEL, jnp.eye(7), NM,
                                         path="fc/kernel"),
         ValueError, "'fc/kernel'", r"\(7, 7\)", r"\(8, 8\)"),
    case("sparsegpt-block-pattern",
         lambda: oneshot.sparsegpt_layer(KERNEL, jnp.eye(8),
                                         sj.Block((2, 2), 0.5),
                                         path="fc/kernel"),
         ValueError, "'fc/kernel'", "Unstructured and NM"),
    case("magnitude-pattern-string",
         lambda: oneshot.magnitude_layer(KERNEL, "2:4", path="fc/kernel"),
         TypeError, "'fc/kernel'", "pattern"),
    case("nm-group-does-not-divide",
         lambda: oneshot.prune(
             nn.Dense(4), nn.Dense(4).init(jax.random.key(0),
                                           jnp.ones((1, 6))),
             [jnp.ones((3, 6))], RULES),
         ValueError, "'params/kernel'", "not divisible by m=4"),
    case("batch-width-wrong",
         lambda: oneshot.prune(MODEL, VARIABLES, [jnp.ones((4, 5))], RULES),
         ValueError, "calibration batch 0", r"\(4, 5\)"),
    case("no-batches", lambda: oneshot.prune(MODEL, VARIABLES, [], RULES),
         ValueError, "no calibration batches"),
    case("stats-missing-for-layer",
         lambda: oneshot.prune_from_stats(P, {}, NM, method="wanda"),
         ValueError, "'fc/kernel'", "never reached"),
    case("stats-without-hessian",
         lambda: oneshot.prune_from_stats(
             P, {"fc/kernel": accumulate(init_stats(8, hessian=False),
                                         BATCHES[0])}, NM),
         ValueError, "Hessian", "hessian=True"),
    # ---- degenerate calibration data -------------------------------------
    case("sparsegpt-all-zero-inputs",
         lambda: oneshot.prune(MODEL, VARIABLES, [jnp.zeros((16, 8))],
                               RULES, method="sparsegpt"),
         CalibrationWarning, "'params/kernel'", "zero", "magnitude"),
    case("wanda-all-zero-inputs",
         lambda: oneshot.prune(MODEL, VARIABLES, [jnp.zeros((16, 8))], RULES,
                               method="wanda"),
         CalibrationWarning, "'params/kernel'", "zero", "magnitude"),
    case("sparsegpt-underflowing-inputs",
         lambda: _from_stats(jnp.full((16, 8), 1e-30), "sparsegpt"),
         CalibrationWarning, "'fc/kernel'", "underflow", "magnitude"),
    case("wanda-underflowing-inputs",
         lambda: _from_stats(jnp.full((16, 8), 1e-30), "wanda"),
         CalibrationWarning, "'fc/kernel'", "underflow", "magnitude"),
    case("sparsegpt-dead-input",
         lambda: _from_stats(BATCHES[0].at[:, 3].set(0.0), "sparsegpt"),
         CalibrationWarning, "'fc/kernel'", "1 of 8 inputs are dead"),
    case("wanda-dead-input",
         lambda: _from_stats(BATCHES[0].at[:, 3].set(0.0), "wanda"),
         CalibrationWarning, "'fc/kernel'", "1 of 8 inputs are dead"),
    case("sparsegpt-zero-hessian-layer",
         lambda: oneshot.sparsegpt_layer(KERNEL, jnp.zeros((8, 8)), NM,
                                         path="mlp/fc/kernel"),
         CalibrationWarning, "'mlp/fc/kernel'", "magnitude"),
    case("wanda-zero-stats-layer",
         lambda: oneshot.wanda_layer(KERNEL, jnp.zeros(8), NM,
                                     path="mlp/fc/kernel"),
         CalibrationWarning, "'mlp/fc/kernel'", "magnitude"),
    case("nan-calibration-inputs",
         lambda: oneshot.prune(MODEL, VARIABLES, [jnp.full((4, 8), jnp.nan)],
                               RULES, method="wanda"),
         NonFiniteCalibrationError, "'params/kernel'", "NaN"),
    case("inf-hessian-layer",
         lambda: oneshot.sparsegpt_layer(
             KERNEL, jnp.eye(8).at[0, 0].set(jnp.inf), NM,
             path="fc/kernel"),
         NonFiniteCalibrationError, "'fc/kernel'", "NaN or inf"),
    case("nan-wanda-stats-layer",
         lambda: oneshot.wanda_layer(KERNEL, jnp.full(8, jnp.nan), NM,
                                     path="fc/kernel"),
         NonFiniteCalibrationError, "'fc/kernel'", "NaN or inf"),
    case("nan-stats-from-stats",
         lambda: _from_stats(jnp.full((4, 8), jnp.inf), "sparsegpt"),
         NonFiniteCalibrationError, "'fc/kernel'", "non-finite"),
    case("indefinite-hessian-layer",
         lambda: oneshot.sparsegpt_layer(KERNEL, -jnp.eye(8), NM,
                                         path="fc/kernel"),
         FloatingPointError, "'fc/kernel'", "positive definite"),
]


@pytest.mark.parametrize("c", params(CASES))
def test_bad_input_is_named(c):
  check_case(c)


@pytest.mark.parametrize("method", ["sparsegpt", "wanda", "magnitude"])
@pytest.mark.parametrize("data", ["normal", "zero", "underflow", "dead"])
def test_pruned_kernel_and_mask_agree(method, data):
  x = {"normal": BATCHES[0], "zero": jnp.zeros((16, 8)),
       "underflow": jnp.full((16, 8), 1e-30),
       "dead": BATCHES[0].at[:, :2].set(0.0)}[data]
  with pytest.warns() if data != "normal" and method != "magnitude" else (
      _no_warning()):
    new, masks = _from_stats(x, method)
  kernel, mask = new["fc"]["kernel"], masks["fc"]["kernel"]
  assert bool(jnp.all(kernel == jnp.where(mask, kernel, 0.0)))
  assert bool(jnp.all(mask.sum(axis=0) == 4))          # still 2:4
  if data in ("zero", "underflow"):   # the fallback keeps the largest |W|
    _, by_size = oneshot.magnitude_layer(KERNEL, NM)
    assert bool(jnp.all(mask == by_size))
    assert bool(jnp.all(kernel == jnp.where(by_size, KERNEL, 0.0)))


def test_zero_energy_fallback_under_jit(maybe_jit):
  zero = jnp.zeros((8, 8))
  new, keep, _, ok = maybe_jit(
      oneshot.sparsegpt.sparsegpt_core,
      static_argnames=("pattern", "blocksize", "retries"))(KERNEL, zero, NM)
  _, by_size = oneshot.magnitude_layer(KERNEL, NM)
  assert bool(ok) and bool(jnp.all(keep == by_size))
  assert bool(jnp.all(new == jnp.where(by_size, KERNEL, 0.0)))


class _no_warning:
  """A context that fails on any CalibrationWarning."""

  def __enter__(self):
    self._ctx = warnings.catch_warnings()
    self._ctx.__enter__()
    warnings.simplefilter("error", CalibrationWarning)

  def __exit__(self, *exc):
    return self._ctx.__exit__(*exc)
