"""The block-list products on every implementation (kernels in interpret
mode) against the references, forward and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from pallas_kernels import _compat
from pallas_kernels.block_sparse import _block_list_paths
from pallas_kernels.block_sparse import block_list_api
from pallas_kernels.block_sparse.block_list_api import block_list_matmul
from pallas_kernels.block_sparse.block_list_api import \
    block_list_sparse_dense_matmul
from pallas_kernels.block_sparse.reference import block_list_matmul_reference
from pallas_kernels.block_sparse.reference import \
    block_list_sparse_dense_matmul_reference
from pallas_kernels.formats import block_list_from_mask
from pallas_kernels.formats import compress_bsr
from pallas_kernels.formats import compress_padded_block
from pallas_kernels.formats import decompress
from pallas_kernels.formats import decompress_block_list

from block_list_cases import block_mask
from block_list_cases import close
from block_list_cases import IMPLS
from block_list_cases import layout
from block_list_cases import SETTINGS
from block_list_cases import with_values


@SETTINGS
@given(c=layout(), impl=st.sampled_from(IMPLS),
       dtype=st.sampled_from(["float32", "bfloat16"]),
       batch=st.sampled_from([1, 3, 17]))
def test_products_match_reference(c, impl, dtype, batch):
  grid, bs, kind, spare, seed = c
  rng = np.random.default_rng(seed)
  shape = (grid[0] * bs[0], grid[1] * bs[1])
  w = jnp.asarray(rng.normal(size=shape), dtype)
  m = block_mask(kind, grid, rng)
  bl = block_list_from_mask(w, m, bs, capacity=max(1, int(m.sum())) + spare)
  impl, split = impl
  x = jnp.asarray(rng.normal(size=(batch, shape[0])), dtype)
  out = jax.jit(lambda x, w: block_list_matmul(
      x, w, implementation=impl, split=split))(x, bl)
  ref = block_list_matmul_reference(x, bl)
  assert out.shape == ref.shape and out.dtype == ref.dtype
  close(out, ref, dtype, shape[0])
  y = jnp.asarray(rng.normal(size=(shape[1], batch)), dtype)
  out = jax.jit(lambda a, y: block_list_sparse_dense_matmul(
      a, y, implementation=impl, split=split))(bl, y)
  ref = block_list_sparse_dense_matmul_reference(bl, y)
  assert out.shape == ref.shape and out.dtype == ref.dtype
  close(out, ref, dtype, shape[1])


def test_unbalanced_mask_splits_long_lines():
  """One full block column: the Triton path cuts it into segments."""
  order = block_list_from_mask(jnp.ones((128, 64)), np.eye(8, 4, dtype=bool)
                               | (np.arange(4) == 1)[None, :], (16, 16)).by_col
  start, length, line = _block_list_paths._segments(order, 2)
  length, line, start = map(np.asarray, (length, line, start))
  assert length.max() <= 2
  for l, n in enumerate(np.asarray(order.count)):
    assert length[line == l].sum() == n
  assert (length[line == 4] == 0).all()  # unused segments do nothing
  assert _block_list_paths._choose_split(64, 4, 64, 1, None) == 1
  assert _block_list_paths._choose_split(64, 4, 8, 1, None) == 1
  assert _block_list_paths._choose_split(64, 512, 8, 1, None) is None


@pytest.mark.parametrize("impl,split", IMPLS)
def test_gradients_match_dense_masked_reference(impl, split):
  rng = np.random.default_rng(11)
  m = block_mask("one_full_row", (4, 3), rng)
  m[0, 0] = m[3, 2] = True
  w = jnp.asarray(rng.normal(size=(64, 48)), jnp.float32)
  bl = block_list_from_mask(w, m, (16, 16), capacity=int(m.sum()) + 2)
  dense = decompress_block_list(bl)
  keep = np.repeat(np.repeat(m, 16, 0), 16, 1)
  x = jnp.asarray(rng.normal(size=(5, 64)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(5, 48)), jnp.float32)

  def loss(x, v):
    return jnp.sum(block_list_matmul(x, with_values(bl, v),
                                     implementation=impl, split=split) * g)

  dx, dv = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, bl.values)
  np.testing.assert_allclose(dx, g @ dense.T, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(decompress_block_list(with_values(bl, dv)),
                             np.where(keep, x.T @ g, 0), atol=1e-4,
                             rtol=1e-4)
  # Sparse x dense: both gradients.
  y = jnp.asarray(rng.normal(size=(48, 6)), jnp.float32)
  gy = jnp.asarray(rng.normal(size=(64, 6)), jnp.float32)

  def loss2(v, y):
    return jnp.sum(block_list_sparse_dense_matmul(
        with_values(bl, v), y, implementation=impl, split=split) * gy)

  dv, dy = jax.jit(jax.grad(loss2, argnums=(0, 1)))(bl.values, y)
  np.testing.assert_allclose(dy, dense.T @ gy, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(decompress_block_list(with_values(bl, dv)),
                             np.where(keep, gy @ y.T, 0), atol=1e-4,
                             rtol=1e-4)


def test_tpu_kernel_with_tpu_interpreter():
  """SMEM-driven index maps and idle steps under TPU-semantics interpret."""
  ip = _compat.tpu_interpret_params()
  rng = np.random.default_rng(5)
  m = np.array([[False, True, False], [False, False, False],
                [True, True, False]])
  w = jnp.asarray(rng.normal(size=(384, 384)), jnp.float32)
  bl = block_list_from_mask(w, m, (128, 128), capacity=5)
  x = jnp.asarray(rng.normal(size=(9, 384)), jnp.float32)
  out = block_list_matmul(x, bl, implementation="tpu", interpret=ip)
  close(out, block_list_matmul_reference(x, bl), "float32", 384)
  y = jnp.asarray(rng.normal(size=(384, 130)), jnp.float32)
  out = block_list_sparse_dense_matmul(bl, y, implementation="tpu",
                                       interpret=ip)
  close(out, block_list_sparse_dense_matmul_reference(bl, y), "float32", 384)


def test_bsr_and_padded_inputs_convert_once():
  rng = np.random.default_rng(8)
  w = jnp.asarray(rng.normal(size=(64, 32)), jnp.float32)
  m = block_mask("random", (4, 2), rng)
  m[0, 0] = True
  x = jnp.asarray(rng.normal(size=(3, 64)), jnp.float32)
  for b in (compress_bsr(w, m, (16, 16), major="col"),
            compress_padded_block(w, m, (16, 16), major="row")):
    bl = block_list_api.as_block_list(b)
    assert block_list_api.as_block_list(b) is bl  # cached, not rebuilt
    out = block_list_matmul(x, b, implementation="triton")
    close(out, x @ decompress(b), "float32", 64)
    out = block_list_sparse_dense_matmul(b, x.T[:32], implementation="xla")
    close(out, decompress(b) @ x.T[:32], "float32", 32)
  with pytest.raises(ValueError, match=r"layer 'fc1'.*to_block_list"):
    jax.jit(lambda b: block_list_matmul(x, b, name="fc1"))(b)

