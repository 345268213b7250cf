"""The block-list kernels lower for TPU (Mosaic) and CUDA (Triton) from CPU.

Forward and backward (``value_and_grad``) of both products go through
``jax.export``, the weight gradient's SDDMM kernel included; interpret mode
passing does not mean a kernel lowers.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import _compat
from pallas_kernels.block_sparse import _sddmm_paths
from pallas_kernels.block_sparse.block_list_api import block_list_matmul
from pallas_kernels.block_sparse.block_list_api import \
    block_list_sparse_dense_matmul
from pallas_kernels.formats import block_list_from_mask

CUSTOM_CALL = {"tpu": "tpu_custom_call", "cuda": "__gpu$xla.gpu.triton"}
IMPL = {"tpu": "tpu", "cuda": "triton"}
CASES = [("tpu", (256, 256)), ("tpu", (128, 128)), ("cuda", (128, 128)),
         ("cuda", (64, 64))]


def _block_list(bs, dtype, shape=(512, 768)):
  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.normal(size=shape), dtype)
  grid = (shape[0] // bs[0], shape[1] // bs[1])
  m = rng.random(grid) < 0.4
  m[0, :] = False       # an empty block row
  m[:, -1] = True       # a full block column
  return block_list_from_mask(w, m, bs, capacity=int(m.sum()) + 3)


def _export(fn, platform, *args, calls=3):
  exp = _compat.export(fn, platform, *args)
  text = exp.mlir_module()
  # The products, the input and the weight gradients run on kernels.
  assert text.count(CUSTOM_CALL[platform]) >= calls, text[:2000]
  return exp


@pytest.mark.parametrize("platform,bs", CASES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_dense_times_block_list_lowers_with_gradient(platform, bs, dtype):
  bl = _block_list(bs, dtype)
  x = jax.ShapeDtypeStruct((4, 512), dtype)

  def loss(x, values, bl):
    w = dataclasses.replace(bl, values=values)
    out = block_list_matmul(x, w, implementation=IMPL[platform],
                            interpret=False)
    return out.astype(jnp.float32).sum()

  exp = _export(jax.value_and_grad(loss, argnums=(0, 1)), platform, x,
                bl.values, bl)
  _, dx, dv = exp.out_avals
  assert dx.shape == (4, 512) and dv.shape == bl.values.shape


@pytest.mark.parametrize("platform,bs", CASES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_block_list_times_dense_lowers_with_gradient(platform, bs, dtype):
  bl = _block_list(bs, dtype)
  y = jax.ShapeDtypeStruct((768, 8), dtype)

  def loss(values, y, bl):
    a = dataclasses.replace(bl, values=values)
    out = block_list_sparse_dense_matmul(a, y, implementation=IMPL[platform],
                                         interpret=False)
    return out.astype(jnp.float32).sum()

  exp = _export(jax.value_and_grad(loss, argnums=(0, 1)), platform,
                bl.values, y, bl)
  _, dv, dy = exp.out_avals
  assert dy.shape == (768, 8) and dv.shape == bl.values.shape


@pytest.mark.parametrize("platform,bs", CASES)
@pytest.mark.parametrize("contract", [0, 1])
def test_sddmm_lowers(platform, bs, contract):
  """Both operand layouts, with the summed axis over several tiles."""
  bl = _block_list(bs, "bfloat16")
  rows, cols = bl.shape
  t = 600
  a = jax.ShapeDtypeStruct((t, rows) if contract == 0 else (rows, t),
                           jnp.bfloat16)
  b = jax.ShapeDtypeStruct((t, cols) if contract == 0 else (cols, t),
                           jnp.bfloat16)

  def sddmm(a, b, bl):
    return _sddmm_paths.sampled_product(
        a, b, bl, contract=contract, impl=IMPL[platform], interpret=False,
        out_dtype=jnp.bfloat16)

  exp = _export(sddmm, platform, a, b, bl, calls=1)
  assert exp.out_avals[0].shape == bl.values.shape


@pytest.mark.parametrize("platform", ["tpu", "cuda"])
def test_metadata_built_under_jit_lowers(platform):
  """Mask -> block list -> kernel in one exported program (training step)."""
  bs = (128, 128) if platform == "cuda" else (256, 256)
  w = jax.ShapeDtypeStruct((512, 768), jnp.bfloat16)
  m = jax.ShapeDtypeStruct((512 // bs[0], 768 // bs[1]), jnp.bool_)
  x = jax.ShapeDtypeStruct((16, 512), jnp.bfloat16)

  def step(w, m, x):
    def loss(w):
      bl = block_list_from_mask(w, m, bs, capacity=4, check=False)
      return block_list_matmul(x, bl, implementation=IMPL[platform],
                               interpret=False).astype(jnp.float32).sum()
    return jax.value_and_grad(loss)(w)

  exp = _export(step, platform, w, m, x, calls=1)
  assert exp.out_avals[1].shape == (512, 768)
