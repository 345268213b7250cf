"""Serving exported Linen and NNX models on the compressed-kernel ops."""

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import sparsejax as sj
from pallas_kernels import formats
from sparsejax import flax as sjflax
from sparsejax.flax import compressed as serving_lib

RULES = [sj.Rule(r".*fc1/kernel", sj.NM(2, 4)),
         sj.Rule(r".*fc2/kernel", sj.Block((16, 32), 0.5))]


class LinenNet(nn.Module):

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(64, name="fc1")(x))
    return nn.Dense(32, name="fc2")(h)


class NnxNet(nnx.Module):

  def __init__(self, rngs):
    self.fc1 = nnx.Linear(64, 64, rngs=rngs)
    self.fc2 = nnx.Linear(64, 32, rngs=rngs)

  def __call__(self, x):
    return self.fc2(nnx.relu(self.fc1(x)))


def _x(width=64):  # K=64: 16 whole 2:4 groups, smaller compressed
  return jax.random.normal(jax.random.key(3), (2, 5, width))


def _check_formats(exported, get):
  assert isinstance(get(exported, "fc1"), formats.NMCompressed)
  assert isinstance(get(exported, "fc2"),
                    (formats.PaddedBlockSparse, formats.BSR))


@pytest.mark.parametrize("implementation", ["xla", "pallas"])
def test_linen_served_model_matches_masked_dense(implementation):
  model = LinenNet()
  params = model.init(jax.random.key(0), _x())["params"]
  masks = sj.compute_masks(params, RULES)
  sparse = sj.apply_masks(params, masks)
  exported = sj.deploy.export(sparse, masks, RULES)
  _check_formats(exported, lambda t, k: t[k]["kernel"])
  expected = model.apply({"params": sparse}, _x())

  @jax.jit
  def serve(p, x):
    with sjflax.serving(implementation):
      return model.apply({"params": p}, x)

  np.testing.assert_allclose(serve(exported, _x()), expected, rtol=1e-4,
                             atol=1e-5)
  # The Pallas path really runs a Pallas kernel (interpreted on CPU).
  jaxpr = str(jax.make_jaxpr(serve)(exported, _x()))
  assert ("pallas_call" in jaxpr) == (implementation == "pallas")


@pytest.mark.parametrize("implementation", ["xla", "pallas"])
def test_nnx_served_model_matches_masked_dense(implementation):
  model = NnxNet(nnx.Rngs(0))
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  masks = sj.compute_masks(params, RULES)
  sparse = sj.apply_masks(params, masks)
  nnx.update(model, sparse)
  expected = model(_x())
  exported = sj.deploy.export(sparse, masks, RULES)
  _check_formats(exported, lambda t, k: t[k]["kernel"])
  nnx.update(model, exported)  # the kernels now hold the compressed formats
  _check_formats(model, lambda m, k: getattr(m, k).kernel.get_value())

  @nnx.jit
  def serve(model, x):
    with sjflax.serving(implementation, model=model):
      return model(x)

  np.testing.assert_allclose(serve(model, _x()), expected, rtol=1e-4,
                             atol=1e-5)
  # Eagerly too, and the dense result comes back from a decompressed tree.
  with sjflax.serving(implementation, model=model):
    np.testing.assert_allclose(model(_x()), expected, rtol=1e-4, atol=1e-5)
  nnx.update(model, serving_lib.decompress(exported))
  np.testing.assert_allclose(model(_x()), expected, rtol=1e-5, atol=1e-6)


def test_wrong_input_width_names_the_layer():
  model = LinenNet()
  params = model.init(jax.random.key(0), _x())["params"]
  masks = sj.compute_masks(params, RULES)
  exported = sj.deploy.export(sj.apply_masks(params, masks), masks, RULES)
  with pytest.raises(ValueError, match=r"layer 'fc1' .*width 24.*K=64"):
    with sjflax.serving():
      model.apply({"params": exported}, _x(24))
  nnx_model = NnxNet(nnx.Rngs(0))
  nnx.update(nnx_model, exported)
  with pytest.raises(ValueError, match=r"layer 'fc1' .*width 24.*K=64"):
    with sjflax.serving(model=nnx_model):
      nnx_model(_x(24))


def test_deploy_reexports_serving():
  assert sj.flax.serving is sjflax.serving
  assert sj.deploy.serving is sjflax.serving


def test_import_loads_no_pallas():
  code = ("import sys, sparsejax, sparsejax.flax\n"
          "bad = [m for m in sys.modules if m.startswith(("
          "'jax.experimental.pallas', 'pallas_kernels.nm', "
          "'pallas_kernels.block_sparse'))]\n"
          "assert not bad, bad\n")
  subprocess.run([sys.executable, "-c", code], check=True)
