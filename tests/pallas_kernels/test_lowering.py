"""Cross-lowering smoke tests: every kernel exports for TPU and CUDA from CPU.

Interpret mode passing does not mean a kernel lowers; these tests run the real
Mosaic TPU and Triton lowerings (no execution) through ``jax.export``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import _compat
from pallas_kernels.block_sparse import block_sparse_matmul
from pallas_kernels.block_sparse import sparse_dense_matmul
from pallas_kernels.nm import nm_matmul
from pallas_kernels.formats import compress_nm
from pallas_kernels.formats import compress_padded_block

PLATFORMS = {"tpu": ("pallas_tpu", "tpu_custom_call"),
             "cuda": ("pallas_gpu", "__gpu$xla.gpu.triton")}
# Every N:M kernel by name, with the platform it lowers for.
NM_KERNELS = [("tpu", "tpu"), ("triton", "cuda"), ("triton_gather", "cuda")]


def _nm_operands(n, m, dtype, k=2048, cols=256, batch=8):
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(k, cols)), dtype)
  scores = rng.random((k // m, m, cols))
  mask = (np.argsort(np.argsort(-scores, axis=1), axis=1) < n).reshape(k, cols)
  c = compress_nm(w, mask, n, m, tile_groups=256)
  return jax.ShapeDtypeStruct((batch, k), dtype), c


def _export(fn, platform, *args):
  exp = _compat.export(fn, platform, *args)
  text = exp.mlir_module()
  assert PLATFORMS[platform][1] in text, text[:2000]
  return exp


@pytest.mark.parametrize("impl,platform", NM_KERNELS)
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("pattern", [(2, 4), (1, 4), (2, 8), (1, 8), (1, 16)])
def test_nm_matmul_lowers(impl, platform, dtype, pattern):
  x, c = _nm_operands(*pattern, dtype)
  exp = _export(lambda x, c: nm_matmul(x, c, implementation=impl,
                                       interpret=False), platform, x, c)
  assert exp.out_avals[0].shape == (8, 256)
  assert exp.out_avals[0].dtype == jnp.dtype(dtype)


@pytest.mark.parametrize("impl,platform", NM_KERNELS)
@pytest.mark.parametrize("batch", [1, 16, 300])
def test_nm_matmul_lowers_ragged(impl, platform, batch):
  """Ragged K (a partial last tile) and N, batch 1 to past one batch tile."""
  x, c = _nm_operands(2, 8, "bfloat16", k=3000, cols=1300, batch=batch)
  assert c.num_tiles * c.tile_groups > 3000 // 8
  exp = _export(lambda x, c: nm_matmul(x, c, implementation=impl,
                                       interpret=False), platform, x, c)
  assert exp.out_avals[0].shape == (batch, 1300)


@pytest.mark.parametrize("impl,platform", NM_KERNELS)
def test_nm_matmul_lowers_f16(impl, platform):
  x, c = _nm_operands(1, 8, "float16", k=2048, cols=128, batch=4)
  _export(lambda x, c: nm_matmul(x, c, implementation=impl, interpret=False),
          platform, x, c)


def _block(major, bs, dtype, shape=(512, 512)):
  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.normal(size=shape), dtype)
  grid = (shape[0] // bs[0], shape[1] // bs[1])
  bm = rng.random(grid) < 0.4
  bm[0, :] = False
  bm[:, 0] = False
  return compress_padded_block(w, bm, bs, major=major)


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_block_sparse_matmul_lowers(platform, dtype):
  w = _block("col", (128, 256), dtype)
  x = jax.ShapeDtypeStruct((16, 512), dtype)
  impl = PLATFORMS[platform][0]
  exp = _export(lambda x, w: block_sparse_matmul(
      x, w, implementation=impl, interpret=False), platform, x, w)
  assert exp.out_avals[0].shape == (16, 512)


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_sparse_dense_matmul_lowers(platform, dtype):
  a = _block("row", (64, 128), dtype)
  x = jax.ShapeDtypeStruct((512, 256), dtype)
  impl = PLATFORMS[platform][0]
  exp = _export(lambda a, x: sparse_dense_matmul(
      a, x, implementation=impl, interpret=False), platform, a, x)
  assert exp.out_avals[0].shape == (512, 256)


@pytest.mark.parametrize("bs", [(16, 16), (32, 64), (512, 512)])
def test_block_sizes_lower_for_cuda(bs):
  w = _block("col", bs, "bfloat16", shape=(1024, 1024))
  x = jax.ShapeDtypeStruct((4, 1024), jnp.bfloat16)
  _export(lambda x, w: block_sparse_matmul(
      x, w, implementation="pallas_gpu", interpret=False), "cuda", x, w)


@pytest.mark.parametrize("impl,platform", NM_KERNELS)
def test_gradient_lowers(impl, platform):
  x, c = _nm_operands(2, 4, "bfloat16", k=1024, cols=128)
  xs = jnp.zeros(x.shape, x.dtype)

  def loss(x, c):
    return nm_matmul(x, c, implementation=impl,
                     interpret=False).astype(jnp.float32).sum()

  _export(jax.value_and_grad(loss), platform, xs, c)
