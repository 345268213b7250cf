"""`sparsejax.flax.sparsify` (Linen and NNX) agrees with the param transform."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import sparsejax as sj
from sparsejax import flax as sjflax
from sparsejax.models import gpt as gpt_lib
from sparsejax.models.mlp import MLP

RULES = [sj.Rule(r".*attn.*kernel", sj.NM(2, 4)),
         sj.Rule(r".*mlp.*kernel", sj.NM(1, 8))]


def _tree_close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


def _maybe_jit(fn, jit):
  return jax.jit(fn) if jit else fn


# ---------------------------------------------------------------- Linen ---


@pytest.mark.parametrize("scan, remat, jit", [(False, False, True),
                                              (False, False, False),
                                              (True, True, True)])
def test_linen_sparsify_matches_param_transform(scan, remat, jit):
  cfg = gpt_lib.GPTConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128,
                          max_len=16, scan_layers=scan, remat=remat)
  model = gpt_lib.GPT(cfg)
  params = gpt_lib.init_params(model, jax.random.key(0))
  sp = sj.srste(RULES, decay=0.1)
  state = sp.init(params)
  tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 256)
  sparse_model = sjflax.sparsify(model, sp)

  def adapter_loss(p):
    logits = sparse_model.apply(
        {"params": p, **sjflax.state_collection(state)}, tokens)
    return jnp.mean(logits ** 2)

  def transform_loss(p):
    return jnp.mean(model.apply({"params": sp.view(p, state)}, tokens) ** 2)

  la, ga = _maybe_jit(jax.value_and_grad(adapter_loss), jit)(params)
  lt, gt = _maybe_jit(jax.value_and_grad(transform_loss), jit)(params)
  np.testing.assert_allclose(la, lt, rtol=1e-6)
  _tree_close(ga, gt, rtol=1e-5, atol=1e-8)
  # The view really is sparse: the loss differs from the dense model's.
  dense = jnp.mean(model.apply({"params": params}, tokens) ** 2)
  assert not np.allclose(la, dense, rtol=1e-6)
  # Param paths (and so checkpoints) are those of the dense model.
  variables = sparse_model.init(jax.random.key(0), tokens)
  assert (jax.tree.structure(nn.unbox(variables["params"]))
          == jax.tree.structure(params))
  assert set(variables) == {"params"}
  # Scanned layers are stacked (layers, in, out): N:M still runs along `in`.
  if scan:
    kept = sp.sparse_params(params, state)["blocks"]["mlp"]["fc1"]["kernel"]
    groups = (np.asarray(kept) != 0).reshape(2, 8, 8, 128).sum(axis=2)
    assert (groups == 1).all()


def test_linen_sparsify_class_and_missing_state():
  sp = sj.ste(sj.NM(2, 4))
  x = jax.random.normal(jax.random.key(0), (3, 8))
  layer = nn.Dense(4)
  params = layer.init(jax.random.key(1), x)["params"]
  state = sp.init(params)
  variables = {"params": params, **sjflax.state_collection(state)}
  by_instance = sjflax.sparsify(layer, sp).apply(variables, x)
  by_class = sjflax.sparsify(nn.Dense, sp)(4).apply(variables, x)
  np.testing.assert_array_equal(by_instance, by_class)
  np.testing.assert_allclose(
      by_instance, layer.apply({"params": sp.view(params, state)}, x),
      rtol=1e-6)
  with pytest.raises(ValueError, match="without its sparsity state"):
    sjflax.sparsify(layer, sp).apply({"params": params}, x)
  with pytest.raises(ValueError, match="at apply time"):
    sjflax.sparsify(layer, sp, state=state)
  with pytest.raises(TypeError, match="Linen or NNX"):
    sjflax.sparsify(lambda x: x, sp)


# ------------------------------------------------------------------ NNX ---


def _nnx_loss(model, x, y):
  return jnp.mean((model(x) - y) ** 2)


@pytest.mark.parametrize("jit", [True, False])
def test_nnx_sparsify_matches_param_transform(jit):
  x = jax.random.normal(jax.random.key(0), (32, 16))
  y = jax.random.normal(jax.random.key(1), (32, 4))
  rules = [sj.Rule(r"hidden/.*/kernel", sj.NM(2, 4)),
           sj.Rule(r"head/kernel", sj.NM(1, 8))]
  sp = sj.srste(rules, decay=0.2)
  plain = MLP(16, (64, 64), 4, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(plain)
  state = sp.init(params)

  def transform_loss(p):
    return _nnx_loss(nnx.merge(graphdef, sp.view(p, state)), x, y)

  lt, gt = _maybe_jit(jax.value_and_grad(transform_loss), jit)(params)

  model = MLP(16, (64, 64), 4, rngs=nnx.Rngs(0))
  dense_state = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))
  sparse = sjflax.sparsify(model, sp)
  grad_fn = nnx.value_and_grad(_nnx_loss)
  la, ga = (nnx.jit(grad_fn) if jit else grad_fn)(sparse, x, y)
  np.testing.assert_allclose(la, lt, rtol=1e-6)
  _tree_close(nnx.to_pure_dict(ga["model"]), nnx.to_pure_dict(gt),
              rtol=1e-5, atol=1e-8)
  assert not np.allclose(la, _nnx_loss(model, x, y), rtol=1e-6)
  # The model is unchanged: same class, same variables and paths, same
  # values (the view was only in place during the call).
  assert type(model) is MLP and type(model.hidden[0]) is nnx.Linear
  after = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))
  assert jax.tree.structure(after) == jax.tree.structure(dense_state)
  jax.tree.map(np.testing.assert_array_equal, after, dense_state)
  assert [p for p, _ in sj.rules.named_leaves(nnx.state(sparse.model, nnx.Param))
         ] == [p for p, _ in sj.rules.named_leaves(params)]


def test_nnx_training_with_optimizer_shares_one_state():
  x = jax.random.normal(jax.random.key(0), (64, 16))
  y = jnp.sin(x[:, :4])
  rule = sj.Rule(r".*kernel", sj.NM(2, 4))
  sp = sj.ste(rule)
  model = MLP(16, (64,), 4, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, sj.wrap(optax.adam(1e-2), sp),
                            wrt=nnx.Param)
  sparse = sjflax.sparsify(model, sp, state=optimizer)

  @nnx.jit
  def step(sparse, optimizer):
    loss, grads = nnx.value_and_grad(_nnx_loss)(sparse, x, y)
    optimizer.update(sparse.model, grads["model"])
    return loss

  losses = [float(step(sparse, optimizer)) for _ in range(30)]
  assert losses[-1] < 0.5 * losses[0]
  # One state: the wrapper reads the optimizer's variables.
  in_optimizer = sj.sparsity_state(optimizer.opt_state)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[...], b),
               in_optimizer, sparse.state,
               is_leaf=lambda v: isinstance(v, nnx.Variable))
  assert int(sparse.state.step) == 30
  # The masks follow the params (STE recomputes them at every update) and
  # the forward pass sees exactly the masked params.
  params = sparse.params()
  expected = sj.apply_masks(params, sj.compute_masks(params, rule))
  final = sparse.sparse_params()
  jax.tree.map(np.testing.assert_array_equal, final, expected)
  kernel = np.asarray(final["hidden"][0]["kernel"])
  assert ((kernel != 0).reshape(4, 4, 64).sum(axis=1) == 2).all()
  graphdef, rest = nnx.split(model)
  masked = nnx.merge(graphdef, rest)
  nnx.update(masked, final)
  np.testing.assert_allclose(sparse(x), masked(x), rtol=1e-6)


def test_nnx_sparsify_twice_fresh_instance_and_given_state():
  sp = sj.ste(sj.NM(2, 4))
  x = jax.random.normal(jax.random.key(0), (5, 8))
  model = nnx.Linear(8, 4, rngs=nnx.Rngs(0))
  first = sjflax.sparsify(model, sp)
  # A wrapper is not sparsified again.
  with pytest.raises(ValueError, match="already sparsified"):
    sjflax.sparsify(first, sp)
  # Sparsifying the model twice gives two independent wrappers of the same
  # model: each holds its own state, and the model itself stays dense.
  second = sjflax.sparsify(model, sp)
  assert second.model is model
  np.testing.assert_array_equal(first(x), second(x))
  np.testing.assert_array_equal(model(x), x @ model.kernel[...]
                                + model.bias[...])
  # A fresh instance of the class is untouched by any of it.
  fresh = nnx.Linear(8, 4, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(fresh(x), model(x))
  assert not np.allclose(first(x), fresh(x))
  # A given state is held as is (here: masks of another model's weights).
  other = nnx.Linear(8, 4, rngs=nnx.Rngs(7))
  other_state = sp.init(nnx.state(other, nnx.Param))
  given = sjflax.sparsify(model, sp, state=other_state)
  graphdef, params = nnx.split(model, nnx.Param)
  np.testing.assert_allclose(
      given(x), nnx.merge(graphdef, sp.view(params, other_state))(x),
      rtol=1e-6)
  assert not np.allclose(given(x), first(x))


def test_nnx_sparse_params_keep_param_sharding():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices")
  from jax.sharding import AxisType
  mesh = jax.make_mesh((2, 4), ("data", "model"),
                       axis_types=(AxisType.Auto,) * 2)
  init = nnx.with_partitioning(nnx.initializers.lecun_normal(),
                               (None, "model"))
  with jax.set_mesh(mesh):
    layer = nnx.Linear(16, 8, kernel_init=init, rngs=nnx.Rngs(0))
    sparse = sjflax.sparsify(layer, sj.ste(sj.NM(2, 4)))
    kept = sparse.sparse_params()["kernel"]
  assert kept.sharding.is_equivalent_to(layer.kernel[...].sharding, 2)
  assert not kept.sharding.is_fully_replicated
