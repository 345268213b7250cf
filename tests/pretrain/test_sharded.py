"""The pretraining loop on the 8-device CPU mesh the root conftest requests.

The same steps on 1 device and on a (data=2, fsdp=2, tensor=2) mesh give the
same loss curve and masks; masks and optimizer state are sharded like their
params; the N:M mask update compiles to no collectives.
"""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj
from sparsejax import masks as masks_lib
from sparsejax import rules as rules_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import loop
from sparsejax.pretrain import metrics as metrics_lib
from sparsejax.pretrain import plan as plan_lib
from sparsejax.pretrain import recipes

SMOKE = recipes.recipe_path("smoke")

COLLECTIVES = re.compile(
    r"\b(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)"
    r"(-start)?\(")

pytestmark = pytest.mark.skipif(
    jax.device_count() < 8, reason="needs 8 devices (XLA_FLAGS before JAX)")


def _smoke(data=-1, fsdp=1, tensor=1):
  cfg = config_lib.load_config_file(SMOKE)
  cfg.sparsity.baseline = False
  cfg.outputs.export = False
  cfg.progress = False
  cfg.checkpoint.every = cfg.eval.every = 100  # only at the end
  cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = data, fsdp, tensor
  return cfg


def _losses(workdir):
  recs = metrics_lib.read_metrics(os.path.join(workdir, "sparse", "metrics.jsonl"))
  return np.array([r["loss"] for r in recs if "loss" in r])


@pytest.mark.system
def test_one_device_and_eight_devices_agree(tmp_path):
  one = loop.run(_smoke(), str(tmp_path / "one"), devices=jax.devices()[:1],
                 report=False)
  eight = loop.run(_smoke(2, 2, 2), str(tmp_path / "eight"), report=False)
  np.testing.assert_allclose(_losses(tmp_path / "eight"),
                             _losses(tmp_path / "one"), rtol=2e-4)
  s1, s8 = (r["arms"]["sparse"]["state"] for r in (one, eight))
  kernel = s8.params["block_0"]["mlp"]["fc2"]["kernel"]
  assert len(kernel.sharding.device_set) == 8
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-5), s1.params,
               s8.params)
  m1 = sj.sparsity_state(s1.opt_state).masks
  m8 = sj.sparsity_state(s8.opt_state).masks
  for (path, a), (_, b) in zip(rules_lib.named_leaves(m1),
                               rules_lib.named_leaves(m8)):
    if masks_lib.is_dense(a):
      continue
    # Equal up to near-ties of |W| that float reassociation may swap.
    agree = np.mean(np.asarray(a) == np.asarray(b))
    assert agree >= 0.995, (path, agree)
  assert eight["results"]["sparse"]["val_loss"] == pytest.approx(
      one["results"]["sparse"]["val_loss"], rel=1e-3)


def test_state_is_sharded_like_params():
  arm = plan_lib.plan(_smoke(2, 2, 2))[-1]
  params_sh = arm.param_shardings
  sp_state = sj.sparsity_state(arm.state_shardings.opt_state)
  for path, sharding in rules_lib.named_leaves(params_sh):
    mask_sh = dict(rules_lib.named_leaves(sp_state.masks))[path]
    abstract = dict(rules_lib.named_leaves(arm.abstract_state.params))[path]
    mask_abstract = dict(rules_lib.named_leaves(
        sj.sparsity_state(arm.abstract_state.opt_state).masks))[path]
    if mask_abstract.shape == ():  # dense marker: replicated
      assert mask_sh.spec == jax.sharding.PartitionSpec()
    else:
      assert mask_abstract.shape == abstract.shape
      assert mask_sh == sharding, path
  adam = arm.state_shardings.opt_state.inner[1][0]
  assert adam.mu["block_0"]["attn"]["query"]["kernel"] == params_sh[
      "block_0"]["attn"]["query"]["kernel"]
  assert adam.count.spec == jax.sharding.PartitionSpec()


def _refresh(sp, params, step):
  """The masks a method's update computes from `params` after `step`."""
  state = sp.init(params)._replace(step=jnp.asarray(step, jnp.int32) - 1)
  zeros = jax.tree.map(jnp.zeros_like, params)
  return sp.update(params, zeros, state)[1].masks


@pytest.mark.parametrize("mesh", [(2, 2, 2), (1, 2, 4), (1, 8, 1)])
def test_nm_mask_update_has_no_collectives(mesh):
  """The mask refresh of a sharded model runs shard-locally."""
  cfg = _smoke(*mesh)
  cfg.model.d_model = 64  # 64 / 8 shards keeps whole 2:4 groups per shard
  cfg.model.d_ff = 128
  arm = plan_lib.plan(cfg)[-1]
  sp = arm.sparsifier
  mask_sh = sj.sparsity_state(arm.state_shardings.opt_state).masks
  sharded = [s for s in jax.tree.leaves(arm.param_shardings)
             if any(a is not None for a in s.spec)]
  assert sharded  # the test must exercise sharded kernels
  fn = jax.jit(lambda p, t: _refresh(sp, p, t),
               in_shardings=(arm.param_shardings, None),
               out_shardings=mask_sh)
  abstract = arm.abstract_state.params
  hlo = fn.lower(abstract, jnp.int32(0)).compile().as_text()
  assert not COLLECTIVES.search(hlo), COLLECTIVES.findall(hlo)
  # On random weights it computes exact target N:M masks of |W|, sharded
  # like the weights.
  rng = np.random.default_rng(0)
  params = jax.tree.map(
      lambda a, sh: jax.device_put(
          rng.standard_normal(a.shape).astype(a.dtype), sh),
      abstract, arm.param_shardings)
  masks = fn(params, jnp.int32(cfg.train.steps))
  for path, w, m in masks_lib.named_pairs(params, masks):
    if masks_lib.is_dense(m):
      continue
    assert m.sharding.is_equivalent_to(w.sharding, 2), path
    g = np.abs(np.asarray(w)).reshape(-1, 4, w.shape[1])
    k = np.asarray(m).reshape(g.shape)
    assert (k.sum(axis=1) == 2).all(), path
    kept = np.where(k, g, np.inf).min(axis=1)
    dropped = np.where(k, -np.inf, g).max(axis=1)
    assert (kept >= dropped).all(), path
