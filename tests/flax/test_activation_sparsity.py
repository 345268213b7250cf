"""Activation sparsity on chosen dense layers' inputs, Linen and NNX."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import sparsejax as sj
from sparsejax import activations
from sparsejax.flax import ACTIVATION_SPARSITY
from sparsejax.flax import achieved_sparsity
from sparsejax.flax import intercept_dense
from sparsejax.flax import sparsify
from sparsejax.flax import sparsify_activations
from tests.flax.test_intercept import LinenNet
from tests.flax.test_intercept import NnxNet

RULES = [sj.Rule("fc2", sj.NM(2, 4)), sj.Rule("fc1", sj.Unstructured(0.75))]


def _nets():
  """A Linen and an NNX net holding the same weights, and an input."""
  linen = LinenNet()
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 12)),
                  jnp.float32)
  params = linen.init(jax.random.key(0), x)["params"]
  model = NnxNet(nnx.Rngs(0))
  nnx.update(model, params)
  return linen, params, model, x


def _reference(params, x):
  """The net written out, with the rules' input sparsity by hand."""
  fc1, fc2 = params["fc1"], params["fc2"]
  h = activations.qsparse_topk(x, sparsity=0.75) @ fc1["kernel"] + fc1["bias"]
  h = activations.activation_nm(nn.relu(h), 2, 4)
  return h @ fc2["kernel"] + fc2["bias"], h


def test_linen_and_nnx_match_the_written_out_net(maybe_jit):
  linen, params, model, x = _nets()
  expected, fc2_input = _reference(params, x)
  sparse_linen = sparsify_activations(linen, RULES)
  y_linen = maybe_jit(lambda p, x: sparse_linen.apply({"params": p}, x))(
      params, x)
  sparse_nnx = sparsify_activations(model, RULES)
  y_nnx = nnx.jit(lambda m, x: m(x))(sparse_nnx, x)
  np.testing.assert_allclose(y_linen, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y_nnx, expected, rtol=1e-5, atol=1e-6)
  # fc2 saw at most 2 of every 4 features per token (ReLU zeros may be among
  # the kept ones); the dense net differs.
  assert ((np.asarray(fc2_input) != 0).reshape(2, 3, 4, 4).sum(-1) <= 2).all()
  assert not np.allclose(model(x), expected, atol=1e-3)
  # The Linen params keep their paths (checkpoints load unchanged).
  assert jax.tree.structure(sparse_linen.init(jax.random.key(0), x)) == (
      jax.tree.structure(linen.init(jax.random.key(0), x)))


def test_gradients_are_straight_through(maybe_jit):
  linen, params, _, x = _nets()
  sparse = sparsify_activations(linen, RULES)

  # The views' STE: the sparsified input's gradient reaches the input as is.
  reference_loss = lambda p, x: jnp.sum(_reference(p, x)[0] ** 2)
  loss = lambda p, x: jnp.sum(sparse.apply({"params": p}, x) ** 2)
  got = maybe_jit(jax.grad(loss, argnums=(0, 1)))(params, x)
  want = jax.grad(reference_loss, argnums=(0, 1))(params, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6), got, want)
  # The input gradient is that of the dense first layer (identity backward):
  # dL/dx = dL/d(x_sparse) = g_h @ W1^T, nonzero at dropped features too.
  assert (np.asarray(got[1]) != 0).mean() > 0.9


def test_masked_gradient_zeroes_dropped_features():
  linen, params, _, x = _nets()
  sparse = sparsify_activations(linen, RULES, grad="masked")
  gx = jax.grad(lambda x: sparse.apply({"params": params}, x).sum())(x)
  kept = np.asarray(activations.qsparse_topk(x, sparsity=0.75)) != 0
  assert (np.asarray(gx)[~kept] == 0).all()
  np.testing.assert_allclose(
      np.asarray(gx)[kept],
      np.asarray(jax.grad(lambda x: sparse.apply({"params": params}, x).sum()
                          )(x) * kept)[kept])


def test_achieved_sparsity_inside_jit_linen_and_nnx():
  linen, params, model, x = _nets()
  sparse_linen = sparsify_activations(linen, RULES)

  @jax.jit
  def step(p, x):
    y, stats = sparse_linen.apply({"params": p}, x,
                                  mutable=[ACTIVATION_SPARSITY])
    return y, achieved_sparsity(stats)

  _, fc2_input = _reference(params, x)
  want = {"fc1": 0.75, "fc2": float(activations.zero_fraction(fc2_input))}
  assert want["fc2"] > 0.5  # ReLU zeros add to the 2:4 pruned half
  _, stats = step(params, x)
  assert {k: float(v) for k, v in stats.items()} == want
  # Without the mutable collection nothing is recorded and apply is as before.
  assert not isinstance(sparse_linen.apply({"params": params}, x), tuple)

  sparse_nnx = sparsify_activations(model, RULES)

  @nnx.jit
  def nnx_step(m, x):
    y = m(x)
    return y, achieved_sparsity(m)

  _, stats = nnx_step(sparse_nnx, x)
  assert {k: float(v) for k, v in stats.items()} == want
  # The wrapper holds the last call's values outside jit too.
  assert set(achieved_sparsity(sparse_nnx)) == {"fc1", "fc2"}
  with pytest.raises(TypeError, match="records no activation sparsity"):
    achieved_sparsity(model)


def test_composes_with_weight_sparsity():
  linen, params, model, x = _nets()
  sp = sj.ste(sj.NM(2, 4))
  state = sp.init(params)
  viewed = sp.view(params, state)
  expected, _ = _reference(viewed, x)
  both = sparsify_activations(sparsify(linen, sp), RULES)
  y = both.apply({"params": params, **sj.flax.state_collection(state)}, x)
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
  nnx_both = sparsify_activations(sparsify(model, sp), RULES)
  np.testing.assert_allclose(nnx_both(x), expected, rtol=1e-5, atol=1e-6)
  assert set(achieved_sparsity(nnx_both)) == {"fc1", "fc2"}


def test_dense_rule_and_first_match_wins():
  linen, params, _, x = _nets()
  rules = [sj.Rule("fc2", None), sj.Rule("fc.", sj.NM(1, 4))]
  y, stats = sparsify_activations(linen, rules).apply(
      {"params": params}, x, mutable=[ACTIVATION_SPARSITY])
  assert set(achieved_sparsity(stats)) == {"fc1"}
  fc1, fc2 = params["fc1"], params["fc2"]
  h = nn.relu(activations.activation_nm(x, 1, 4) @ fc1["kernel"] + fc1["bias"])
  np.testing.assert_allclose(y, h @ fc2["kernel"] + fc2["bias"], rtol=1e-5,
                             atol=1e-6)


def test_bfloat16_layers():
  linen = nn.Dense(8, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
  x = jnp.ones((2, 16), jnp.bfloat16).at[:, ::3].set(3.0)
  params = linen.init(jax.random.key(0), x)["params"]
  sparse = sparsify_activations(linen, sj.Rule(".*", sj.NM(1, 4)))
  y, stats = sparse.apply({"params": params}, x, mutable=[ACTIVATION_SPARSITY])
  assert y.dtype == jnp.bfloat16
  assert float(achieved_sparsity(stats)[""]) == 0.75


def test_pattern_that_does_not_fit_names_the_layer():
  linen, params, model, x = _nets()
  rules = [sj.Rule("fc1", sj.NM(2, 8))]  # fc1 takes 12 features
  with pytest.raises(ValueError, match="at 'fc1': the input has 12 features"):
    sparsify_activations(linen, rules).apply({"params": params}, x)
  with pytest.raises(ValueError, match="at 'fc1': the input has 12 features"):
    sparsify_activations(model, rules)(x)


def test_unused_rule_is_reported_with_the_layer_paths():
  linen, params, model, x = _nets()
  rules = [sj.Rule("fc3", sj.NM(2, 4))]
  message = r"matched no dense layer: \['fc3'\].*called were: fc1, fc2"
  with pytest.raises(ValueError, match=message):
    sparsify_activations(linen, rules).apply({"params": params}, x)
  with pytest.raises(ValueError, match=message):
    sparsify_activations(model, rules)(x)
  with pytest.warns(UserWarning, match=message):
    sparsify_activations(model, rules, on_unused="warn")(x)


@pytest.mark.parametrize("call,error,message", [
    (lambda m: sparsify_activations(m, [sj.Rule("fc1", sj.Block((2, 2), 0.5))]),
     TypeError, "activation pattern at 'fc1' must be NM"),
    (lambda m: sparsify_activations(m, ["fc1=2:4"]), TypeError,
     r"rules\[0\] must be a sparsejax Rule"),
    (lambda m: sparsify_activations(m, RULES, grad="exact"), ValueError,
     "grad must be one of"),
    (lambda m: sparsify_activations(m, RULES, on_unused="maybe"), ValueError,
     "on_unused must be one of"),
    (lambda m: sparsify_activations(object(), RULES), TypeError,
     "model must be a Flax Linen or NNX module"),
    (lambda m: sparsify_activations(sparsify_activations(m, RULES), RULES),
     ValueError, "already has activation sparsity"),
])
def test_bad_arguments_are_refused_before_any_call(call, error, message):
  _, _, model, _ = _nets()
  with pytest.raises(error, match=message):
    call(model)


def test_proceed_on_new_inputs_reaches_inner_handlers():
  linen, params, model, x = _nets()
  seen = []

  def halve(call, proceed):
    return proceed(call.inputs * 0.5)

  def log(call, proceed):
    seen.append(call.inputs)
    return proceed()

  with intercept_dense(halve, model), intercept_dense(log, model):
    y_nnx = model(x)
  with intercept_dense(halve), intercept_dense(log):
    y_linen = linen.apply({"params": params}, x)
  np.testing.assert_array_equal(seen[0], x * 0.5)
  np.testing.assert_array_equal(seen[2], x * 0.5)
  fc1, fc2 = params["fc1"], params["fc2"]
  h = nn.relu(x * 0.5 @ fc1["kernel"] + fc1["bias"]) * 0.5
  np.testing.assert_allclose(y_nnx, h @ fc2["kernel"] + fc2["bias"],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y_linen, y_nnx, rtol=1e-6)
