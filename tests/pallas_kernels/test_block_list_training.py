"""Block-list products in a training step, and the checks made before launch."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import dispatch
from pallas_kernels.block_sparse import block_list_api
from pallas_kernels.block_sparse.block_list_api import block_list_matmul
from pallas_kernels.block_sparse.block_list_api import \
    block_list_sparse_dense_matmul
from pallas_kernels.formats import block_list_from_mask
from pallas_kernels.formats._block_list import check_block_list


@pytest.mark.parametrize("impl", ["xla", "xla_blocks", "tpu", "triton"])
def test_training_with_changing_mask_compiles_once(impl):
  """A 2-layer MLP trains on the kernels while its block masks change."""
  rng = np.random.default_rng(0)
  bs, cap1, cap2 = (16, 16), 6, 3
  params = {"w1": jnp.asarray(rng.normal(size=(64, 48)) * 0.2, jnp.float32),
            "w2": jnp.asarray(rng.normal(size=(48, 32)) * 0.2, jnp.float32)}
  x = jnp.asarray(rng.normal(size=(8, 64)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(8, 32)), jnp.float32)

  def masks(step):
    r = np.random.default_rng(100 + step)
    m1 = np.zeros(12, bool)
    m1[r.permutation(12)[:cap1 - step % 2]] = True  # 6 or 5 blocks
    m2 = np.zeros(6, bool)
    m2[r.permutation(6)[:cap2]] = True
    return m1.reshape(4, 3), m2.reshape(3, 2)

  traces = []

  def make_step(sparse):
    def forward(p, m1, m2):
      if sparse:
        w1 = block_list_from_mask(p["w1"], m1, bs, capacity=cap1, name="fc1")
        w2 = block_list_from_mask(p["w2"], m2, bs, capacity=cap2, name="fc2")
        h = jax.nn.relu(block_list_matmul(x, w1, implementation=impl,
                                          name="fc1"))
        return block_list_matmul(h, w2, implementation=impl, name="fc2")
      e1 = jnp.repeat(jnp.repeat(m1, 16, 0), 16, 1)
      e2 = jnp.repeat(jnp.repeat(m2, 16, 0), 16, 1)
      h = jax.nn.relu(jnp.dot(x, jnp.where(e1, p["w1"], 0), precision="highest"))
      return jnp.dot(h, jnp.where(e2, p["w2"], 0), precision="highest")

    @jax.jit
    def step(p, m1, m2):
      if sparse:
        traces.append(1)
      loss, g = jax.value_and_grad(
          lambda p: jnp.mean((forward(p, m1, m2) - y) ** 2))(p)
      return jax.tree.map(lambda a, b: a - 0.5 * b, p, g), loss
    return step

  sparse_step, dense_step = make_step(True), make_step(False)
  ps, pd = params, params
  losses = []
  for i in range(4):
    m1, m2 = masks(i)
    ps, ls = sparse_step(ps, m1, m2)
    pd, ld = dense_step(pd, m1, m2)
    np.testing.assert_allclose(ls, ld, rtol=1e-4, atol=1e-5)
    losses.append(float(ls))
  assert len(traces) == 1
  for k in params:
    np.testing.assert_allclose(ps[k], pd[k], rtol=1e-4, atol=1e-5)
  assert losses[-1] < losses[0]


def test_smem_budget_is_checked_before_launch():
  bl = block_list_from_mask(jnp.ones((256, 256)), jnp.ones((2, 2), bool),
                            (128, 128))
  x = jnp.ones((1, 256))
  with pytest.raises(ValueError, match=r"layer 'proj'.*scalar memory "
                     r"\(SMEM\).*50-byte budget"):
    block_list_matmul(x, bl, implementation="tpu", smem_budget=50,
                      name="proj")
  with pytest.raises(ValueError, match=r"layer 'proj'.*SMEM"):
    block_list_sparse_dense_matmul(bl, x.T, implementation="tpu",
                                   smem_budget=50, name="proj")
  # Forced, the same rule applies and names the layer; chosen automatically,
  # the TPU kernel is left out and the reason says why.
  with dispatch.force("tpu"), pytest.raises(ValueError,
                                            match=r"layer 'proj'.*SMEM"):
    block_list_matmul(x, bl, smem_budget=50, name="proj")
  c = block_list_api.choose_implementation(bl, platform="tpu",
                                           smem_budget=50)
  assert c.implementation == "xla" and "SMEM" in c.reason
  # Within the budget the same call runs.
  out = block_list_matmul(x, bl, implementation="tpu")
  np.testing.assert_allclose(out, 256 * np.ones((1, 256)))


def test_bad_input_names_layer_and_rule():
  with pytest.raises(ValueError, match=r"layer 'fc1'.*block_shape \(48, 48\) "
                     r"must divide the matrix shape \(128, 64\)"):
    block_list_from_mask(jnp.ones((128, 64)), jnp.ones((2, 1), bool),
                         (48, 48), name="fc1")
  with pytest.raises(ValueError, match=r"layer 'fc1'.*block grid \(4, 2\)"):
    block_list_from_mask(jnp.ones((128, 64)), jnp.ones((2, 2), bool),
                         (32, 32), name="fc1")
  bl = block_list_from_mask(jnp.ones((128, 64)), jnp.eye(4, 2, dtype=bool),
                            (32, 32))
  with pytest.raises(ValueError, match=r"layer 'fc2'.*K=64.*\(128, 64\)"):
    block_list_matmul(jnp.ones((2, 64)), bl, name="fc2")
  with pytest.raises(ValueError, match=r"layer 'fc2'.*K=64 of the "
                     r"\(128, 64\)"):
    block_list_sparse_dense_matmul(bl, jnp.ones((128, 3)), name="fc2")
  with pytest.raises(ValueError, match=r"layer 'fc2'.*built for a \(128, 64\)"
                     r" matrix, but this layer needs \(64, 128\)"):
    check_block_list(bl, shape=(64, 128), name="fc2")
  # Metadata from another layout (a different block grid) is rejected.
  other = block_list_from_mask(jnp.ones((128, 64)), jnp.eye(8, 4, dtype=bool),
                               (16, 16))
  mixed = dataclasses.replace(bl, by_col=other.by_col)
  with pytest.raises(ValueError, match=r"layer 'fc3'.*inconsistent block "
                     r"list.*by_col"):
    block_list_matmul(jnp.ones((2, 128)), mixed, name="fc3")
  with pytest.raises(ValueError, match=r"layer 'fc4'.*powers of two"):
    block_list_matmul(jnp.ones((2, 96)), block_list_from_mask(
        jnp.ones((96, 96)), jnp.ones((2, 2), bool), (48, 48)),
                      implementation="triton", name="fc4")
  with pytest.raises(ValueError, match=r"layer 'fc5'.*multiples of 128"):
    block_list_matmul(jnp.ones((2, 128)), bl, implementation="tpu",
                      interpret=False, name="fc5")
  with pytest.raises(ValueError, match=r"layer 'fc6'.*'block_list_dsd' must "
                     r"be None, 'xla', 'pallas' or one of.*got 'mosaic'"):
    block_list_matmul(jnp.ones((2, 128)), bl, implementation="mosaic",
                      name="fc6")
  with pytest.raises(TypeError, match="BlockList"):
    block_list_matmul(jnp.ones((2, 128)), jnp.ones((128, 64)))

