"""The block-list SDDMM (the products' weight gradient) against the dense
masked reference, on every implementation (kernels in interpret mode)."""
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
from pallas_kernels.block_sparse.block_list_sddmm import block_list_sddmm
from pallas_kernels.formats import block_list_from_mask
from pallas_kernels.formats import decompress_block_list

from block_list_cases import block_mask

KINDS = ["random", "none", "all", "one_full_row", "empty_rows"]
IMPLS = ["xla", "triton", "tpu"]


def _case(kind, seed, bs=(16, 32), grid=(3, 2), t=5):
  rng = np.random.default_rng(seed)
  m = block_mask(kind, grid, rng)
  shape = (grid[0] * bs[0], grid[1] * bs[1])
  bl = block_list_from_mask(jnp.asarray(rng.normal(size=shape), jnp.float32),
                            m, bs, capacity=grid[0] * grid[1] + 1)
  a = jnp.asarray(rng.normal(size=(t, shape[0])), jnp.float32)
  b = jnp.asarray(rng.normal(size=(t, shape[1])), jnp.float32)
  keep = np.repeat(np.repeat(m, bs[0], 0), bs[1], 1)
  return bl, a, b, keep


def _as_dense(bl, blocks):
  return np.asarray(decompress_block_list(
      dataclasses.replace(bl, values=blocks)))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_sddmm_matches_dense_masked_product(kind, impl):
  bl, a, b, keep = _case(kind, KINDS.index(kind))
  want = np.where(keep, np.asarray(a).T @ np.asarray(b), 0)
  outs = [jax.jit(lambda a, b, bl: block_list_sddmm(
      a, b, bl, implementation=impl))(a, b, bl)]
  if kind == "random":   # eagerly too (once: interpret mode is slow eagerly)
    outs.append(block_list_sddmm(a, b, bl, implementation=impl))
  for out in outs:
    assert out.shape == bl.values.shape and out.dtype == jnp.float32
    np.testing.assert_allclose(_as_dense(bl, out), want, atol=1e-4,
                               rtol=1e-4)
    # Spare slots past the stored count stay zero.
    assert not np.asarray(out)[int(bl.nnz):].any()


@pytest.mark.parametrize("impl", IMPLS)
def test_sddmm_contracting_the_last_axis(impl):
  """``contract=1`` (the gradient of ``A @ X``): ``a @ b.T`` sampled."""
  bl, a, b, keep = _case("empty_rows", 3, t=20)
  out = jax.jit(lambda a, b: _sddmm_paths.sampled_product(
      a.T, b.T, bl, contract=1, impl=impl, interpret=True,
      out_dtype=jnp.float32))(a, b)
  np.testing.assert_allclose(_as_dense(bl, out),
                             np.where(keep, np.asarray(a).T @ b, 0),
                             atol=1e-4, rtol=1e-4)


def test_sddmm_bfloat16_accumulates_in_float32():
  bl, a, b, keep = _case("all", 4, t=40)
  a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
  want = np.where(keep, np.asarray(a16, np.float32).T
                  @ np.asarray(b16, np.float32), 0)
  for impl in IMPLS:
    out = jax.jit(lambda a, b, impl=impl: block_list_sddmm(
        a, b, bl, implementation=impl))(a16, b16)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(_as_dense(bl, out).astype(np.float32), want,
                               atol=0.1, rtol=2e-2)


def test_tpu_sddmm_with_tpu_interpreter():
  """SMEM-driven index maps, idle slots, several tiles of the summed axis."""
  bl, a, b, keep = _case("one_full_row", 6, bs=(128, 128), grid=(2, 2),
                         t=530)
  out = block_list_sddmm(a, b, bl, implementation="tpu",
                         interpret=_compat.tpu_interpret_params())
  np.testing.assert_allclose(_as_dense(bl, out),
                             np.where(keep, np.asarray(a).T @ b, 0),
                             atol=1e-3, rtol=1e-4)


def _pallas_calls(fn, *args):
  return str(jax.make_jaxpr(fn)(*args)).count("pallas_call")


@pytest.mark.parametrize("impl", ["triton", "tpu"])
def test_weight_gradient_runs_on_the_forward_kernel(impl):
  bl, x, _, _ = _case("random", 7)
  y = jnp.ones((bl.shape[1], 3), jnp.float32)

  def loss_dsd(x, v):
    w = dataclasses.replace(bl, values=v)
    return block_list_matmul(x, w, implementation=impl).sum()

  def loss_sdd(v, y):
    a = dataclasses.replace(bl, values=v)
    return block_list_sparse_dense_matmul(a, y, implementation=impl).sum()

  # Forward, input gradient and weight gradient: three kernel launches.
  grad_dsd = jax.grad(loss_dsd, argnums=(0, 1))
  grad_sdd = jax.grad(loss_sdd, argnums=(0, 1))
  assert _pallas_calls(grad_dsd, x, bl.values) == 3
  assert _pallas_calls(grad_sdd, bl.values, y) == 3
  # The automatic choice on CPU runs no kernel at all.
  auto = jax.grad(lambda x, v: block_list_matmul(
      x, dataclasses.replace(bl, values=v)).sum(), argnums=(0, 1))
  assert _pallas_calls(auto, x, bl.values) == 0


def test_bad_input_is_refused_before_launch():
  bl, a, b, _ = _case("random", 8)
  with pytest.raises(ValueError, match="layer 'fc1': the SDDMM operands"):
    block_list_sddmm(a[:, :-1], b, bl, name="fc1")
  with pytest.raises(ValueError, match="layer 'fc1': the TPU kernel needs "
                     "blocks that are multiples of 128"):
    block_list_sddmm(a, b, bl, implementation="tpu", interpret=False,
                     name="fc1")
  with pytest.raises(ValueError, match="layer 'fc1': implementation"):
    block_list_sddmm(a, b, bl, implementation="mosaic", name="fc1")
