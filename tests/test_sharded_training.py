"""The same sparse training run on 1 device and on a 2x4 (data, model) mesh."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import sparsejax as sj
from sparsejax import sharding as sharding_lib
from sparsejax.models import gpt as gpt_lib

COLLECTIVES = re.compile(
    r"\b(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)"
    r"(-start)?\(")
CFG = gpt_lib.GPTConfig(d_model=64, n_layers=2, n_heads=4, d_ff=128,
                        max_len=16)
RULES = [sj.Rule(r".*attn.*kernel", sj.NM(2, 4)),
         sj.Rule(r".*mlp.*kernel", sj.NM(1, 8))]


def _run(mesh, steps=6):
  model = gpt_lib.GPT(CFG)
  params = gpt_lib.init_params(model, jax.random.key(0))
  sp = sj.progressive_nm(RULES, total_steps=steps, dense_steps=1,
                         decay="linear", c=0.2)
  tx = sj.wrap(optax.adamw(1e-2), sp)
  opt_state = tx.init(params)
  tokens = jax.random.randint(jax.random.key(1), (8, 17), 0, 256)

  def loss_fn(p, batch):
    logits = model.apply({"params": p}, batch[:, :-1])
    return gpt_lib.cross_entropy(logits, batch[:, 1:])

  def step(params, opt_state, batch):
    state = sj.sparsity_state(opt_state)
    loss, grads = jax.value_and_grad(
        lambda p: loss_fn(sp.view(p, state), batch))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  if mesh is None:
    jitted = jax.jit(step)
  else:
    rules = gpt_lib.default_logical_rules("data", "model")
    param_sh = nn.logical_to_mesh_sharding(
        gpt_lib.logical_partition_specs(model), mesh, rules)
    state_sh = sharding_lib.like_params(opt_state, params, param_sh, mesh)
    batch_sh = NamedSharding(mesh, P("data"))
    params = jax.device_put(params, param_sh)
    opt_state = jax.device_put(opt_state, state_sh)
    tokens = jax.device_put(tokens, batch_sh)
    jitted = jax.jit(step, in_shardings=(param_sh, state_sh, batch_sh),
                     out_shardings=(param_sh, state_sh, None))
  losses = []
  for _ in range(steps):
    params, opt_state, loss = jitted(params, opt_state, tokens)
    losses.append(float(loss))
  return losses, params, sj.sparsity_state(opt_state), sp


@pytest.fixture(scope="module")
def mesh():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices")
  return Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))


def test_one_device_and_mesh_agree(mesh):
  losses1, params1, state1, _ = _run(None)
  losses8, params8, state8, _ = _run(mesh)
  np.testing.assert_allclose(losses8, losses1, rtol=2e-4)
  # Masks are sharded like their params and equal to the 1-device masks.
  kernel = state8.masks["block_0"]["mlp"]["fc1"]["kernel"]
  param = params8["block_0"]["mlp"]["fc1"]["kernel"]
  assert kernel.sharding.is_equivalent_to(param.sharding, kernel.ndim)
  assert not kernel.sharding.is_fully_replicated
  mismatch = jax.tree.map(lambda a, b: float(jnp.mean(a != b)), state1.masks,
                          state8.masks)
  # Near-ties may flip under a different reduction order; almost all agree.
  assert max(jax.tree.leaves(mismatch)) < 0.01
  # Adam normalises each gradient entry, so a gradient that is ~0 up to float
  # noise can move either way by up to lr per step; bound by a tenth of lr.
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-3),
      params1, params8)


def _refresh(sp, params, step):
  """The masks a method's update computes from `params` after `step`."""
  state = sp.init(params)._replace(step=jnp.asarray(step, jnp.int32) - 1)
  zeros = jax.tree.map(jnp.zeros_like, params)
  return sp.update(params, zeros, state)[1].masks


def test_mask_refresh_has_no_collectives(mesh):
  model = gpt_lib.GPT(CFG)
  params = gpt_lib.init_params(model, jax.random.key(0))
  rules = gpt_lib.default_logical_rules("data", "model")
  param_sh = nn.logical_to_mesh_sharding(
      gpt_lib.logical_partition_specs(model), mesh, rules)
  params = jax.device_put(params, param_sh)
  sp = sj.progressive_nm(RULES, total_steps=10, structure="stepwise",
                         decay=None)
  masks_sh = sharding_lib.like_params(sp.init(params).masks, params, param_sh,
                                      mesh)
  fn = jax.jit(lambda p, t: _refresh(sp, p, t), in_shardings=(param_sh, None),
               out_shardings=masks_sh)
  hlo = fn.lower(params, jnp.int32(3)).compile().as_text()
  assert not COLLECTIVES.search(hlo), COLLECTIVES.findall(hlo)[:5]
