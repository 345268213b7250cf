"""Sensitivity scan and budgeted allocation on a tiny Flax MLP."""

import itertools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj
from sparsejax.allocation import SensitivityScan
from sparsejax.allocation import uniform
from sparsejax.oneshot import calibration
from sparsejax.rules import named_leaves

PATTERNS = (sj.NM(2, 4), sj.NM(1, 4), sj.NM(2, 16), sj.Unstructured(0.75))


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(64)(x))
    x = nn.relu(nn.Dense(64)(x))
    return nn.Dense(4)(x)


MODEL = MLP()


def loss_fn(params, batch):
  x, y = batch
  return jnp.mean((MODEL.apply({"params": params}, x) - y) ** 2)


@pytest.fixture(scope="module")
def setup():
  params = MODEL.init(jax.random.key(0), jnp.ones((1, 8)))["params"]
  teacher = MODEL.init(jax.random.key(1), jnp.ones((1, 8)))["params"]
  xs = [jax.random.normal(jax.random.key(10 + i), (32, 8)) for i in range(3)]
  heldout = [(x, MODEL.apply({"params": teacher}, x)) for x in xs[:2]]
  return params, heldout, [xs[2]]


def scan_of(setup, method="magnitude", **kw):
  params, heldout, calib = setup
  return sj.sensitivity(loss_fn, params, r".*kernel", PATTERNS, heldout,
                        method=method, model=MODEL,
                        calibration_batches=calib, progress=False, **kw)


@pytest.fixture(scope="module")
def magnitude_scan(setup):
  return scan_of(setup)


def heldout_loss(params, heldout):
  return float(np.mean([float(loss_fn(params, b)) for b in heldout]))


# Each method against pruning by hand: every (layer, pattern) for magnitude;
# fewer for the calibrated methods, whose every `prune` call compiles anew.
BY_HAND = {"magnitude": (r".*kernel", PATTERNS),
           "wanda": (r"Dense_[01]/kernel", PATTERNS[1:3]),
           "sparsegpt": (r"Dense_1/kernel", PATTERNS[::3])}


@pytest.mark.parametrize("method", list(BY_HAND))
def test_deltas_equal_pruning_one_layer_by_hand(setup, magnitude_scan, method,
                                                monkeypatch):
  params, heldout, calib = setup
  layers, patterns = BY_HAND[method]
  passes = []
  collect = calibration.Calibrator.collect
  monkeypatch.setattr(calibration.Calibrator, "collect",
                      lambda self, *a, **kw: passes.append(a[1]) or collect(
                          self, *a, **kw))
  scan = magnitude_scan if method == "magnitude" else sj.sensitivity(
      loss_fn, params, layers, patterns, heldout, method=method, model=MODEL,
      calibration_batches=calib, progress=False)
  monkeypatch.undo()
  # Statistics of every scanned layer come from one calibration pass.
  assert passes == ([] if method == "magnitude" else [list(scan.layers)])
  dense = heldout_loss(params, heldout)
  np.testing.assert_allclose(scan.dense_loss, dense, rtol=1e-6)
  checked = 0
  for i, j in itertools.product(range(len(scan.layers)), range(len(patterns))):
    if not scan.fits[i, j]:
      continue
    path, pattern = scan.layers[i], patterns[j]
    new, masks = sj.oneshot.prune(
        MODEL, params, calib, sj.Rule(re.escape(path), pattern),
        method=method)
    mask = dict(named_leaves(masks))[path]
    assert int(mask.sum()) == scan.kept[i, j], (path, pattern)
    np.testing.assert_allclose(scan.deltas[i, j],
                               heldout_loss(new, heldout) - dense,
                               rtol=1e-4, atol=1e-6,
                               err_msg=f"{path} {pattern}")
    checked += 1
  assert checked == int(scan.fits.sum()) >= 2


def test_pruning_changes_the_loss_and_counts_follow_the_pattern(
    magnitude_scan):
  scan = magnitude_scan
  assert scan.layers == ("Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel")
  fits = scan.fits
  assert np.all(scan.deltas[fits] != 0)
  np.testing.assert_array_equal(scan.sizes, [512, 4096, 256])
  np.testing.assert_array_equal(scan.dense_bytes, 4 * scan.sizes)
  np.testing.assert_array_equal(scan.kept[fits],
                                (np.outer(scan.sizes, [.5, .25, .125, .25])
                                 )[fits].astype(int))


def test_unfit_pattern_is_an_na_cell(magnitude_scan):
  scan = magnitude_scan
  assert scan.fits[:, 2].tolist() == [False, True, True]  # 2:16 over 8 inputs
  assert np.isnan(scan.deltas[0, 2]) and scan.kept[0, 2] == 0
  assert "not divisible by m=16" in scan.unfit[0][2]
  assert all(r is None for r in scan.unfit[1])


def test_bytes_are_the_exported_size(setup, magnitude_scan):
  params = setup[0]
  scan = magnitude_scan
  rule = sj.allocation.layer_rule("Dense_1/kernel", sj.NM(1, 4))
  exported = sj.deploy.export(params, sj.compute_masks(params, rule), rule)
  compressed = sj.deploy.storage_bytes(exported["Dense_1"]["kernel"])
  assert scan.nbytes[1, 1] == compressed < scan.dense_bytes[1]
  assert scan.nbytes[1, 3] == scan.dense_bytes[1]  # unstructured: no format


def test_loss_is_traced_once_for_every_layer_and_pattern(setup, maybe_jit):
  params, heldout, _ = setup
  traces = []

  def counted(p, batch):
    traces.append(1)
    return loss_fn(p, batch)

  scan = sj.sensitivity(maybe_jit(counted), params, ".*kernel", PATTERNS,
                        heldout, progress=False)
  assert int(scan.fits.sum()) == 11 and len(heldout) == 2
  assert len(traces) == 1


def test_allocated_rules_prune_to_the_budget(setup, magnitude_scan,
                                             maybe_jit):
  params = setup[0]
  scan = magnitude_scan
  total = int(scan.sizes.sum())
  for budget in (0.3, 0.2):
    best = sj.allocate(scan, budget)
    masks = maybe_jit(lambda p: sj.compute_masks(p, best.rules))(params)
    kept = sum(int(dict(named_leaves(masks))[p].sum()) for p in scan.layers)
    assert kept == best.kept <= budget * total
    assert best.kept_fraction == kept / total
    if budget == 0.2:  # below every single pattern's kept fraction
      with pytest.raises(ValueError, match="the smallest such is 0.217"):
        uniform(scan, budget)
      continue
    base = uniform(scan, budget)
    assert base.kept <= budget * total
    assert best.predicted_delta <= base.predicted_delta + 1e-12


def test_byte_budget_is_met(setup, magnitude_scan):
  params = setup[0]
  scan = magnitude_scan
  budget = int(0.5 * scan.dense_bytes.sum())
  best = sj.allocate(scan, budget, budget_kind="bytes")
  masks = sj.compute_masks(params, best.rules)
  exported = sj.deploy.export(params, masks, best.rules)
  flat = jax.tree_util.tree_flatten_with_path(
      exported, is_leaf=lambda x: isinstance(x, sj.deploy.COMPRESSED))[0]
  by_path = {sj.rules.path_str(k): v for k, v in flat}
  size = sum(sj.deploy.storage_bytes(by_path[p]) for p in scan.layers)
  assert size == best.nbytes <= budget


def random_scan(rng):
  layers, patterns = int(rng.integers(1, 5)), int(rng.integers(1, 4))
  sizes = rng.integers(4, 40, size=layers)
  kept = (sizes[:, None] * rng.uniform(0.05, 0.95, (layers, patterns))
          ).astype(np.int64)
  nbytes = 4 * kept + rng.integers(0, 8, (layers, patterns))
  fits = rng.uniform(size=(layers, patterns)) < 0.8
  deltas = np.where(fits, rng.normal(0.5, 0.6, (layers, patterns)), np.nan)
  unfit = tuple(tuple(None if f else "n/a" for f in row) for row in fits)
  return SensitivityScan(
      tuple(f"l{i}" for i in range(layers)),
      tuple(sj.Unstructured(0.1 * (k + 1)) for k in range(patterns)),
      deltas, 1.0, np.where(fits, kept, 0), np.where(fits, nbytes, 0), sizes,
      4 * sizes, unfit, "magnitude")


def brute_force(scan, capacity, budget_kind):
  """Least predicted delta (then cost) over every combination, or None."""
  best = None
  per_layer = [[-1] + list(np.flatnonzero(scan.fits[i]))
               for i in range(len(scan.layers))]
  for choice in itertools.product(*per_layer):
    cost = sum((scan.sizes[i] if j < 0 else scan.kept[i, j])
               if budget_kind == "params" else
               (scan.dense_bytes[i] if j < 0 else scan.nbytes[i, j])
               for i, j in enumerate(choice))
    delta = sum(scan.deltas[i, j] for i, j in enumerate(choice) if j >= 0)
    if cost <= capacity and (best is None or (delta, cost) < best):
      best = (delta, cost)
  return best


@pytest.mark.parametrize("budget_kind", ["params", "bytes"])
def test_allocation_is_optimal_against_brute_force(budget_kind):
  rng = np.random.default_rng(0)
  for _ in range(60):
    scan = random_scan(rng)
    fraction = float(rng.uniform(0.05, 1.0))
    total = scan.sizes.sum() if budget_kind == "params" else (
        scan.dense_bytes.sum())
    budget = round(fraction, 3) if budget_kind == "params" else int(
        fraction * total)
    capacity = (int(np.floor(budget * total + 1e-9))
                if budget_kind == "params" else budget)
    expected = brute_force(scan, capacity, budget_kind)
    if expected is None:
      with pytest.raises(ValueError, match="smallest achievable"):
        sj.allocate(scan, budget, budget_kind=budget_kind)
      continue
    got = sj.allocate(scan, budget, budget_kind=budget_kind)
    assert got.cost <= capacity and got.capacity == capacity
    np.testing.assert_allclose(got.predicted_delta, expected[0], atol=1e-12)
    assert got.cost == expected[1]


def test_infeasible_budget_states_the_smallest(magnitude_scan):
  smallest = (0.25 * 512 + 0.125 * 4096 + 0.125 * 256) / 4864
  with pytest.raises(ValueError, match=f"smallest achievable is "
                     f"{smallest:.6g} of the 4864 scanned parameters"):
    sj.allocate(magnitude_scan, 0.1)
  with pytest.raises(ValueError, match="budget_kind must be one of"):
    sj.allocate(magnitude_scan, 0.5, budget_kind="flops")
  with pytest.raises(ValueError, match=r"budget must be in \[0.0, 1.0\]"):
    sj.allocate(magnitude_scan, 1.5)
  with pytest.raises(TypeError, match="scan must be a SensitivityScan"):
    sj.allocate({"deltas": 1}, 0.5)


def test_bad_arguments_fail_before_compute(setup):
  params, heldout, calib = setup
  calls = []

  def counting(p, batch):
    calls.append(1)
    return loss_fn(p, batch)

  def scan(**kw):
    args = dict(loss_fn=counting, params=params, layers=".*kernel",
                patterns=PATTERNS, heldout_batches=heldout, progress=False)
    args.update(kw)
    return sj.sensitivity(**args)

  with pytest.raises(ValueError, match="layers is empty"):
    scan(layers=[])
  with pytest.raises(ValueError, match=r"matched no leaf: \['.*kernal'\]"):
    scan(layers=".*kernal")
  with pytest.raises(ValueError, match="patterns is empty"):
    scan(patterns=[])
  with pytest.raises(TypeError, match=r"patterns\[1\] must be a sparsejax"):
    scan(patterns=[sj.NM(2, 4), "1:4"])
  with pytest.raises(ValueError, match="heldout_batches is empty"):
    scan(heldout_batches=iter([]))
  with pytest.raises(ValueError, match=r"method must be one of \(.*'magnitude'"
                     r".*'wanda'.*\); got 'obs'"):
    scan(method="obs")
  with pytest.raises(ValueError, match="needs calibration statistics"):
    scan(method="wanda")
  with pytest.raises(ValueError, match="calibration_batches is empty"):
    scan(method="wanda", model=MODEL, calibration_batches=[])
  assert not calls


def test_nonfinite_losses_name_what_was_pruned(setup):
  params, heldout, _ = setup

  def log_loss(p, batch):  # -inf once a Dense_0 weight is zero
    return loss_fn(p, batch) + jnp.sum(jnp.log(jnp.abs(p["Dense_0"]["kernel"])))

  with pytest.raises(ValueError, match="'Dense_0/kernel' pruned 2:4 is -inf"):
    sj.sensitivity(log_loss, params, "Dense_0/kernel", [sj.NM(2, 4)], heldout,
                   progress=False)
  bad = jax.tree.map(lambda x: x * jnp.nan, params)
  with pytest.raises(ValueError, match="loss of the dense params is nan"):
    sj.sensitivity(loss_fn, bad, ".*kernel", [sj.NM(2, 4)], heldout,
                   progress=False)
