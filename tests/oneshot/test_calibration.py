"""Calibration capture (Linen and NNX), sequential pruning, bad inputs."""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sparsejax.masks import compute_masks
from sparsejax.masks import is_dense
from sparsejax.oneshot import Calibrator
from sparsejax.oneshot import collect_stats
from sparsejax.oneshot import prune
from sparsejax.oneshot import sparsegpt_layer
from sparsejax.oneshot import wanda_layer
from sparsejax.patterns import Block
from sparsejax.patterns import NM
from sparsejax.patterns import Unstructured
from sparsejax.rules import Rule
from sparsejax.rules import named_leaves

RULES = [Rule(r".*kernel", NM(2, 4))]


class LinenNet(nn.Module):
  """fc1 (12 -> 16), relu, fc2 (16 -> 8); an optional per-token gate."""

  @nn.compact
  def __call__(self, x, gate=None):
    h = nn.relu(nn.Dense(16, name="fc1")(x))
    if gate is not None:
      h = h * gate[..., None]
    return nn.Dense(8, name="fc2")(h)


class NnxNet(nnx.Module):
  """The same network in NNX, layers held in an `nnx.List`."""

  def __init__(self, rngs, unused=False):
    self.layers = nnx.List([nnx.Linear(12, 16, rngs=rngs),
                            nnx.Linear(16, 8, rngs=rngs)])
    self.unused = nnx.Linear(8, 8, rngs=rngs) if unused else None

  def __call__(self, x):
    return self.layers[1](nnx.relu(self.layers[0](x)))


def batches(count=2, shape=(3, 5, 12), seed=0):
  keys = jax.random.split(jax.random.key(seed), count)
  return [jax.random.normal(k, shape) * jnp.linspace(0.2, 3.0, shape[-1])
          for k in keys]


def linen_setup():
  model = LinenNet()
  variables = model.init(jax.random.key(1), jnp.ones((1, 12)))
  return model, variables


def forward_inputs(w1, b1, xs, gates=None):
  """Inputs of fc1 and fc2, computed by hand, as (tokens, features) arrays."""
  x = np.concatenate([np.asarray(b, np.float64).reshape(-1, 12) for b in xs])
  h = np.maximum(x @ np.asarray(w1, np.float64) + np.asarray(b1), 0.0)
  if gates is not None:
    h = h * np.concatenate([np.asarray(g).reshape(-1) for g in gates])[:, None]
  return x, h


def assert_stats(stats, x):
  np.testing.assert_allclose(np.asarray(stats.sq_sum), np.sum(x ** 2, axis=0),
                             rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(np.asarray(stats.xxt), x.T @ x, rtol=1e-5,
                             atol=1e-3)
  assert int(stats.count) == x.shape[0]


def test_linen_capture_matches_inputs_computed_by_hand():
  model, variables = linen_setup()
  data = batches()
  stats = collect_stats(model, variables, data, RULES)
  assert list(stats) == ["params/fc1/kernel", "params/fc2/kernel"]
  p = variables["params"]
  x, h = forward_inputs(p["fc1"]["kernel"], p["fc1"]["bias"], data)
  assert_stats(stats["params/fc1/kernel"], x)
  assert_stats(stats["params/fc2/kernel"], h)
  np.testing.assert_allclose(
      np.asarray(stats["params/fc2/kernel"].hessian()), 2 * h.T @ h / 30,
      rtol=1e-5, atol=1e-4)


def test_linen_apply_fn_with_bare_params_and_tuple_batches():
  model, variables = linen_setup()
  params = variables["params"]
  data = batches()
  gates = [jax.random.uniform(jax.random.key(9 + i), (3, 5)) for i in range(2)]

  def apply_fn(p, batch):
    return model.apply({"params": p}, *batch)

  stats = collect_stats(apply_fn, params, list(zip(data, gates)),
                        Rule(r"fc2/kernel", NM(2, 4)))
  assert list(stats) == ["fc2/kernel"]
  _, h = forward_inputs(params["fc1"]["kernel"], params["fc1"]["bias"], data,
                        gates)
  assert_stats(stats["fc2/kernel"], h)


def test_nnx_capture_matches_inputs_computed_by_hand():
  model = NnxNet(nnx.Rngs(0))
  kernel_before = np.asarray(model.layers[0].kernel[...])
  data = batches()
  stats = collect_stats(model, None, data, RULES)
  assert list(stats) == ["layers/0/kernel", "layers/1/kernel"]
  x, h = forward_inputs(model.layers[0].kernel[...],
                        model.layers[0].bias[...], data)
  assert_stats(stats["layers/0/kernel"], x)
  assert_stats(stats["layers/1/kernel"], h)
  # The user's model is untouched.
  assert type(model.layers[0]) is nnx.Linear
  np.testing.assert_array_equal(np.asarray(model.layers[0].kernel[...]),
                                kernel_before)


def test_layer_order_is_call_order():
  class Reversed(nn.Module):

    @nn.compact
    def __call__(self, x):
      late = nn.Dense(4, name="a_late")
      early = nn.Dense(12, name="z_early")
      return late(early(x))

  model = Reversed()
  variables = model.init(jax.random.key(0), jnp.ones((1, 12)))
  order = Calibrator(model, variables).layer_order(jnp.ones((2, 12)))
  assert order == ["params/z_early/kernel", "params/a_late/kernel"]


@pytest.mark.parametrize("framework", ["linen", "nnx"])
def test_sequential_calibrates_on_pruned_outputs(framework):
  data = batches()
  if framework == "linen":
    model, params = linen_setup()
    p = params["params"]
    names = ("params/fc1/kernel", "params/fc2/kernel")
    (w1, b1), w2 = (p["fc1"]["kernel"], p["fc1"]["bias"]), p["fc2"]["kernel"]
    get = lambda tree, i: tree["params"][("fc1", "fc2")[i]]["kernel"]
  else:
    model, params = NnxNet(nnx.Rngs(0)), None
    names = ("layers/0/kernel", "layers/1/kernel")
    w1, b1 = model.layers[0].kernel[...], model.layers[0].bias[...]
    w2 = model.layers[1].kernel[...]
    get = lambda tree, i: tree["layers"][i]["kernel"][...]
  x, h_dense = forward_inputs(w1, b1, data)
  pruned_w1, _ = wanda_layer(w1, jnp.sum(jnp.asarray(x) ** 2, axis=0),
                             NM(2, 4))
  _, h_pruned = forward_inputs(pruned_w1, b1, data)

  seq, seq_masks = prune(model, params, data, RULES, method="wanda")
  one, _ = prune(model, params, data, RULES, method="wanda", sequential=False)
  expected_seq, _ = wanda_layer(w2, jnp.asarray(np.sum(h_pruned ** 2, 0)),
                                NM(2, 4))
  expected_one, _ = wanda_layer(w2, jnp.asarray(np.sum(h_dense ** 2, 0)),
                                NM(2, 4))
  np.testing.assert_array_equal(np.asarray(get(seq, 0)), np.asarray(pruned_w1))
  np.testing.assert_array_equal(np.asarray(get(one, 0)), np.asarray(pruned_w1))
  np.testing.assert_array_equal(np.asarray(get(seq, 1)),
                                np.asarray(expected_seq))
  np.testing.assert_array_equal(np.asarray(get(one, 1)),
                                np.asarray(expected_one))
  assert not np.array_equal(np.asarray(get(seq, 1)), np.asarray(get(one, 1)))
  named = dict(named_leaves(seq_masks))
  assert all(named[n].shape == get(seq, i).shape for i, n in enumerate(names))
  assert [n for n, m in named.items() if is_dense(m)] == [
      n.replace("kernel", "bias") for n in names]


def test_sparsegpt_sequential_uses_pruned_hessian_nnx():
  model = NnxNet(nnx.Rngs(2))
  data = batches(seed=3)
  new, masks = prune(model, None, data, RULES, method="sparsegpt")
  w1, b1 = model.layers[0].kernel[...], model.layers[0].bias[...]
  x, _ = forward_inputs(w1, b1, data)
  pruned_w1, _ = sparsegpt_layer(w1, jnp.asarray(2 * x.T @ x / len(x),
                                                 jnp.float32), NM(2, 4))
  _, h = forward_inputs(pruned_w1, b1, data)
  expected, keep = sparsegpt_layer(model.layers[1].kernel[...],
                                   jnp.asarray(2 * h.T @ h / len(h),
                                               jnp.float32), NM(2, 4))
  np.testing.assert_allclose(np.asarray(new["layers"][0]["kernel"][...]),
                             np.asarray(pruned_w1), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(new["layers"][1]["kernel"][...]),
                             np.asarray(expected), rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(masks["layers"][1]["kernel"][...]),
                                np.asarray(keep))
  assert is_dense(masks["layers"][1]["bias"][...])
  # The pruned params install into the model and hold N:M.
  nnx.update(model, new)
  groups = np.asarray(model.layers[1].kernel[...] != 0).reshape(4, 4, 8)
  assert np.all(groups.sum(axis=1) <= 2)


def test_magnitude_needs_no_calibration():
  model, variables = linen_setup()
  new, masks = prune(model, variables, None, RULES, method="magnitude")
  expected = compute_masks(variables, RULES)
  for a, b in zip(jax.tree.leaves(masks), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  nnx_model = NnxNet(nnx.Rngs(0))
  new, masks = prune(nnx_model, None, None, RULES, method="magnitude")
  assert masks["layers"][0]["kernel"][...].shape == (12, 16)


def test_one_pass_accepts_a_generator():
  model, variables = linen_setup()
  data = batches()
  a, _ = prune(model, variables, iter(data), RULES, method="wanda",
               sequential=False)
  b, _ = prune(model, variables, data, RULES, method="wanda",
               sequential=False)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_sharded_params_and_batches_match_single_device():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices")
  mesh = jax.make_mesh((2, 4), ("data", "model"))
  sharding = jax.sharding.NamedSharding
  spec = jax.sharding.PartitionSpec
  model, variables = linen_setup()
  data = batches(shape=(4, 5, 12))

  def shard_param(x):
    if x.ndim == 2:
      return jax.device_put(x, sharding(mesh, spec(None, "model")))
    return jax.device_put(x, sharding(mesh, spec("model")))

  sharded_vars = jax.tree.map(shard_param, variables)
  sharded_data = [jax.device_put(b, sharding(mesh, spec("data")))
                  for b in data]
  stats = collect_stats(model, sharded_vars, sharded_data, RULES)
  ref_stats = collect_stats(model, variables, data, RULES)
  np.testing.assert_allclose(np.asarray(stats["params/fc2/kernel"].xxt),
                             np.asarray(ref_stats["params/fc2/kernel"].xxt),
                             rtol=1e-5, atol=1e-4)
  # N:M is shard-local; a block-wide unstructured order gathers its scores.
  for rules, sequential in ((RULES, True),
                            (Rule(r".*kernel", Unstructured(0.5)), False)):
    new, masks = prune(model, sharded_vars, sharded_data, rules,
                       sequential=sequential)
    ref, ref_masks = prune(model, variables, data, rules,
                           sequential=sequential)
    for a, b in zip(jax.tree.leaves(masks), jax.tree.leaves(ref_masks)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(ref)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4,
                                 atol=1e-5)
    kernel = new["params"]["fc2"]["kernel"]
    assert kernel.sharding.spec == spec(None, "model")


def test_wrong_batch_shape_is_a_clear_error():
  model, variables = linen_setup()
  with pytest.raises(ValueError, match=r"calibration batch 0 .*\(4, 7\)"):
    prune(model, variables, [jnp.ones((4, 7))], RULES, method="wanda")
  with pytest.raises(ValueError, match=r"calibration batch 1 "):
    prune(model, variables, [jnp.ones((4, 12)), jnp.ones((4, 9))], RULES,
          method="wanda", sequential=False)
  with pytest.raises(ValueError, match="no calibration batches"):
    prune(model, variables, [], RULES)


def test_layer_never_reached_is_named():
  model = NnxNet(nnx.Rngs(0), unused=True)
  with pytest.raises(ValueError, match=r"\['unused/kernel'\].*never reached"):
    prune(model, None, batches(), RULES, method="wanda")
  linen_model, variables = linen_setup()
  ghost = {"params": {**variables["params"],
                      "ghost": {"kernel": jnp.ones((8, 8))}}}
  with pytest.raises(ValueError, match=r"'params/ghost/kernel'.*never reached"):
    prune(linen_model, ghost, batches(), RULES, method="sparsegpt")


def test_unexpressible_pattern_fails_before_calibrating():
  model, variables = linen_setup()
  with pytest.raises(ValueError, match=r"'params/fc1/kernel'.*m=8"):
    prune(model, variables, batches(), Rule(r".*kernel", NM(2, 8)))
  with pytest.raises(ValueError, match=r"'params/fc1/kernel'.*Unstructured "
                     r"and NM"):
    prune(model, variables, batches(), Rule(r".*kernel", Block((4, 4), 0.5)),
          method="sparsegpt")
  # Wanda ranks any pattern.
  _, masks = prune(model, variables, batches(),
                   Rule(r".*kernel", Block((4, 4), 0.5)), method="wanda")
  assert float(masks["params"]["fc1"]["kernel"].mean()) == 0.5


def test_nan_calibration_data_names_the_layer():
  model, variables = linen_setup()
  bad = [jnp.full((2, 12), jnp.nan)]
  with pytest.raises(ValueError, match=r"'params/fc1/kernel'.*NaN"):
    prune(model, variables, bad, RULES, method="sparsegpt")


def test_no_warnings_on_a_clean_run():
  model, variables = linen_setup()
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    prune(model, variables, batches(), RULES, method="sparsegpt",
          sequential=False)


def test_collect_one_selects_the_layer_among_equal_widths():
  model = nn.Sequential([nn.Dense(12), nn.relu, nn.Dense(12), nn.relu,
                         nn.Dense(8)])
  variables = model.init(jax.random.key(0), jnp.ones((1, 12)))
  cal = Calibrator(model, variables)
  data = batches()
  paths = cal.layer_order(data[0])
  assert len(paths) == 3
  every = cal.collect(data, paths)
  for path in paths:
    one = cal.collect_one(data, path, paths)
    for a, b in zip(one, every[path]):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
  # Layers 0 and 1 share an input width but see different inputs.
  assert not np.allclose(np.asarray(every[paths[0]].sq_sum),
                         np.asarray(every[paths[1]].sq_sum))
