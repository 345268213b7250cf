"""Linen and NNX adapters agree with the param-transform path."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import flax.linen as nn
from flax import nnx

import sparsejax as sj
from sparsejax.flax import linen as sjlinen
from sparsejax.flax import nnx as sjnnx
from sparsejax.models import gpt as gpt_lib
from sparsejax.models.mlp import MLP

RULES = [sj.Rule(r".*attn.*kernel", sj.NM(2, 4)),
         sj.Rule(r".*mlp.*kernel", sj.NM(1, 8))]


def _tree_close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


@pytest.mark.parametrize("scan, remat", [(False, False), (True, True)])
def test_linen_adapter_matches_param_transform(scan, remat):
  cfg = gpt_lib.GPTConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128,
                          max_len=16, scan_layers=scan, remat=remat)
  model = gpt_lib.GPT(cfg)
  params = gpt_lib.init_params(model, jax.random.key(0))
  sp = sj.srste_nm(RULES, decay=0.1)
  state = sp.init(params)
  tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 256)
  sparse_cls = sjlinen.sparsify(gpt_lib.GPT, sp)

  def adapter_loss(p):
    logits = sparse_cls(cfg).apply(
        {"params": p, **sjlinen.state_collection(state)}, tokens)
    return jnp.mean(logits ** 2)

  def transform_loss(p):
    return jnp.mean(model.apply({"params": sp.view(p, state)}, tokens) ** 2)

  la, ga = jax.jit(jax.value_and_grad(adapter_loss))(params)
  lt, gt = jax.jit(jax.value_and_grad(transform_loss))(params)
  np.testing.assert_allclose(la, lt, rtol=1e-6)
  _tree_close(ga, gt, rtol=1e-5, atol=1e-8)
  # Param paths (and so checkpoints) are unchanged by the adapter.
  variables = sparse_cls(cfg).init(jax.random.key(0), tokens)
  boxed = variables["params"]
  assert jax.tree.structure(nn.unbox(boxed)) == jax.tree.structure(params)
  # Scanned layers are stacked (layers, in, out): N:M still runs along `in`.
  if scan:
    m = state.masks["blocks"]["mlp"]["fc1"]["kernel"]
    groups = np.asarray(m).reshape(2, 8, 8, 128).sum(axis=2)
    assert (groups == 1).all()


def _nnx_loss(model, x, y):
  return jnp.mean((model(x) - y) ** 2)


def test_nnx_adapter_matches_param_transform():
  x = jax.random.normal(jax.random.key(0), (32, 16))
  y = jax.random.normal(jax.random.key(1), (32, 4))
  rules = [sj.Rule(r"hidden/.*/kernel", sj.NM(2, 4)),
           sj.Rule(r"head/kernel", sj.NM(1, 8))]
  sp = sj.srste_nm(rules, decay=0.2)
  plain = MLP(16, (64, 64), 4, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(plain)
  state = sp.init(params)

  def transform_loss(p):
    return _nnx_loss(nnx.merge(graphdef, sp.view(p, state)), x, y)

  lt, gt = jax.value_and_grad(transform_loss)(params)

  model = MLP(16, (64, 64), 4, rngs=nnx.Rngs(0))
  adapter_state = sjnnx.sparsify(model, sp)
  jax.tree.map(np.testing.assert_array_equal, adapter_state.masks,
               state.masks)
  la, ga = nnx.value_and_grad(_nnx_loss)(model, x, y)
  np.testing.assert_allclose(la, lt, rtol=1e-6)
  _tree_close(nnx.state(ga, nnx.Param), gt, rtol=1e-5, atol=1e-8)
  assert [p for p, _ in sj.named_leaves(nnx.state(model, nnx.Param))] == [
      p for p, _ in sj.named_leaves(params)]


def test_nnx_training_with_optimizer_and_sync():
  x = jax.random.normal(jax.random.key(0), (64, 16))
  y = jnp.sin(x[:, :4])
  sp = sj.ste_nm(sj.Rule(r".*kernel", sj.NM(2, 4)))
  model = MLP(16, (64,), 4, rngs=nnx.Rngs(0))
  sjnnx.sparsify(model, sp)
  optimizer = nnx.Optimizer(model, sj.wrap(optax.adam(1e-2), sp),
                            wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(_nnx_loss)(model, x, y)
    optimizer.update(model, grads)
    sjnnx.sync(model, optimizer)
    return loss

  losses = [float(step(model, optimizer)) for _ in range(30)]
  assert losses[-1] < losses[0]
  # The masks in the model follow the optimizer's refreshed sparsity state.
  st = sjnnx.model_state(model, sp)
  assert int(st.step) == 30
  expected = sp.masks_at(nnx.state(model, nnx.Param), 30)
  jax.tree.map(np.testing.assert_array_equal, st.masks, expected)
  final = sp.sparse_params(nnx.state(model, nnx.Param), st)
  kernel = np.asarray(final["hidden"][0]["kernel"][...])
  assert ((kernel != 0).reshape(4, 4, 64).sum(axis=1) == 2).all()


def test_nnx_masks_carry_param_sharding():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices")
  from jax.sharding import AxisType
  mesh = jax.make_mesh((2, 4), ("data", "model"),
                       axis_types=(AxisType.Auto,) * 2)
  init = nnx.with_partitioning(nnx.initializers.lecun_normal(),
                               (None, "model"))
  with jax.set_mesh(mesh):
    layer = nnx.Linear(16, 8, kernel_init=init, rngs=nnx.Rngs(0))
    sjnnx.sparsify(layer, sj.ste_nm(sj.NM(2, 4)))
  mask = layer.kernel_mask[...]
  assert mask.sharding.is_equivalent_to(layer.kernel[...].sharding, 2)
  assert not mask.sharding.is_fully_replicated
  spec = nnx.get_partition_spec(nnx.state(layer, sjnnx.Mask))
  assert tuple(spec["kernel_mask"].get_value()) == (None, "model")
