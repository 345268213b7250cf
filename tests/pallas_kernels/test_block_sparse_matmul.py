"""Block-sparse matmuls: Pallas kernels (interpret) against the reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pallas_kernels.block_sparse import api
from pallas_kernels.block_sparse import block_sparse_matmul
from pallas_kernels.block_sparse import block_sparse_matmul_reference
from pallas_kernels.block_sparse import sparse_dense_matmul
from pallas_kernels.block_sparse import sparse_dense_matmul_reference
from pallas_kernels.formats import compress_bsr
from pallas_kernels.formats import compress_padded_block
from pallas_kernels.formats import decompress

from block_list_cases import close

SETTINGS = settings(max_examples=4, deadline=None, derandomize=True,
                    database=None)


def make(seed, shape, bs, density, dtype, major, fmt="padded"):
  rng = np.random.default_rng(seed)
  w = jnp.asarray(rng.normal(size=shape), dtype)
  grid = (shape[0] // bs[0], shape[1] // bs[1])
  bm = rng.random(grid) < density
  if major == "row":
    bm[0, :] = False  # an empty block row
  else:
    bm[:, 0] = False  # an empty block column
  if fmt == "bsr":
    return compress_bsr(w, bm, bs, major=major), rng
  return compress_padded_block(w, bm, bs, major=major), rng


@st.composite
def case(draw):
  bh = draw(st.sampled_from([16, 32, 64]))
  bw = draw(st.sampled_from([16, 32, 128]))
  gr = draw(st.integers(1, 4))
  gc = draw(st.integers(1, 4))
  return ((gr * bh, gc * bw), (bh, bw), draw(st.sampled_from([0.0, 0.3, 1.0])),
          draw(st.sampled_from(["float32", "bfloat16"])),
          draw(st.sampled_from(["pallas_tpu", "pallas_gpu"])),
          draw(st.sampled_from(["padded", "bsr"])), draw(st.integers(0, 999)))


@SETTINGS
@given(c=case(), batch=st.sampled_from([1, 5, 16, 100, 512]))
def test_dense_sparse_matches_reference(c, batch):
  shape, bs, density, dtype, impl, fmt, seed = c
  w, rng = make(seed, shape, bs, density, dtype, "col", fmt)
  x = jnp.asarray(rng.normal(size=(batch, shape[0])), dtype)
  out = jax.jit(lambda x, w: block_sparse_matmul(x, w, implementation=impl))(
      x, w)
  ref = block_sparse_matmul_reference(x, w)
  assert out.shape == ref.shape and out.dtype == ref.dtype
  close(out, ref, dtype, shape[0])


@SETTINGS
@given(c=case(), cols=st.sampled_from([1, 7, 128, 200]))
def test_sparse_dense_matches_reference(c, cols):
  shape, bs, density, dtype, impl, fmt, seed = c
  a, rng = make(seed, shape, bs, density, dtype, "row", fmt)
  x = jnp.asarray(rng.normal(size=(shape[1], cols)), dtype)
  out = jax.jit(lambda a, x: sparse_dense_matmul(a, x, implementation=impl))(
      a, x)
  ref = sparse_dense_matmul_reference(a, x)
  assert out.shape == ref.shape and out.dtype == ref.dtype
  close(out, ref, dtype, shape[1])


def test_empty_matrix_gives_zeros(maybe_jit):
  w = compress_padded_block(jnp.ones((32, 32)), jnp.zeros((2, 2), bool),
                            (16, 16), major="col")
  for impl in ("pallas_tpu", "pallas_gpu"):
    out = maybe_jit(lambda x, w: block_sparse_matmul(
        x, w, implementation=impl))(jnp.ones((3, 32)), w)
    np.testing.assert_array_equal(out, 0)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_eager_and_jit(maybe_jit, impl):
  w, rng = make(4, (64, 32), (16, 16), 0.5, "float32", "col")
  x = jnp.asarray(rng.normal(size=(2, 3, 64)), jnp.float32)
  out = maybe_jit(lambda x, w: block_sparse_matmul(x, w, implementation=impl))(
      x, w)
  close(out, x @ decompress(w), "float32", 64)
  a, _ = make(5, (32, 64), (16, 16), 0.5, "float32", "row", "bsr")
  y = jnp.asarray(rng.normal(size=(64, 9)), jnp.float32)
  out = maybe_jit(lambda a, y: sparse_dense_matmul(a, y, implementation=impl))(
      a, y)
  close(out, decompress(a) @ y, "float32", 64)


@pytest.mark.parametrize("impl", ["pallas_tpu", "pallas_gpu"])
def test_gradients_match_dense_formula(impl):
  w, rng = make(6, (64, 32), (16, 16), 0.5, "float32", "col")
  x = jnp.asarray(rng.normal(size=(3, 64)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(3, 32)), jnp.float32)
  dense = decompress(w)

  def loss(x, values):
    ww = type(w)(values, w.indices, w.counts, w.shape, w.block_shape, w.major)
    return jnp.sum(block_sparse_matmul(x, ww, implementation=impl) * g)

  dx, dv = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w.values)
  np.testing.assert_allclose(dx, g @ dense.T, atol=1e-4, rtol=1e-4)
  gw = type(w)(dv, w.indices, w.counts, w.shape, w.block_shape, w.major)
  keep = decompress(type(w)(jnp.ones_like(w.values), w.indices, w.counts,
                            w.shape, w.block_shape, w.major)) != 0
  np.testing.assert_allclose(decompress(gw), jnp.where(keep, x.T @ g, 0),
                             atol=1e-4, rtol=1e-4)
  # Sparse x dense: gradient w.r.t. the dense operand.
  a, _ = make(7, (32, 64), (16, 16), 0.5, "float32", "row")
  y = jnp.asarray(rng.normal(size=(64, 5)), jnp.float32)
  gy = jnp.asarray(rng.normal(size=(32, 5)), jnp.float32)
  dy = jax.grad(lambda y: jnp.sum(
      sparse_dense_matmul(a, y, implementation=impl) * gy))(y)
  np.testing.assert_allclose(dy, decompress(a).T @ gy, atol=1e-4, rtol=1e-4)


def _measured(monkeypatch, tmp_path, kind, rows):
  """Points the dispatch at a table of ``rows`` measured on a fake ``kind``."""
  from pallas_kernels import dispatch
  monkeypatch.setattr(dispatch, "device_kind", lambda platform=None: kind)
  table = tmp_path / "table.json"
  dispatch.write_rows(table, rows)
  monkeypatch.setattr(dispatch, "table_path", lambda: table)
  monkeypatch.setenv(dispatch.ENV_CACHE_DIR, str(tmp_path / "cache"))


def _row(w, impl, us, dense_us, kind="TPU v5 lite", batch=1):
  bh, bw = w.block_shape
  return dict(device_kind=kind, op="block_dsd",
              pattern=f"b{bh}x{bw}/d{api._stored_density(w):.2f}",
              dtype=w.values.dtype.name, shape=list(w.shape), batch=batch,
              implementation=impl, us=us, dense_us=dense_us)


def test_choose_implementation(monkeypatch, tmp_path):
  w, _ = make(0, (1024, 1024), (128, 128), 0.2, "bfloat16", "col")
  assert api.choose_implementation(w, platform="cpu").implementation == "xla"
  # No measurement: the dense path, whatever a model would predict.
  _measured(monkeypatch, tmp_path, "TPU v5 lite", [])
  none = api.choose_implementation(w, platform="tpu")
  assert none.implementation == "xla" and none.source == "default"
  assert "no measurement" in none.reason
  # Measured faster than dense: the kernel; measured slower: dense.
  _measured(monkeypatch, tmp_path, "TPU v5 lite",
            [_row(w, "pallas_tpu", 10.0, 30.0)])
  fast = api.choose_implementation(w, platform="tpu")
  assert (fast.implementation, fast.source) == ("pallas_tpu", "table")
  assert api.choose_implementation(w, platform="tpu",
                                   batch=2).implementation == "xla"
  _measured(monkeypatch, tmp_path, "TPU v5 lite",
            [_row(w, "pallas_tpu", 40.0, 30.0)])
  assert api.choose_implementation(w, platform="tpu").implementation == "xla"
  r, _ = make(0, (1024, 1024), (128, 128), 0.2, "bfloat16", "row")
  assert "major" in api.choose_implementation(r, platform="tpu").reason
  s, _ = make(0, (256, 256), (16, 16), 0.2, "bfloat16", "col")
  assert "TPU (8, 128) tiling" in api.choose_implementation(
      s, platform="tpu").reason
  d, _ = make(0, (256, 256), (32, 32), 1.0, "bfloat16", "col",
              fmt="bsr")
  assert "dense" in api.choose_implementation(d, platform="gpu").reason
  with pytest.raises(ValueError, match="major='col'"):
    api.choose_implementation(r, "dsd", "pallas_tpu")
  forced = api.choose_implementation(w, "dsd", "pallas_gpu", platform="cpu")
  assert forced == api.Choice("pallas_gpu", "requested", "requested", True)


def test_bad_input():
  w, _ = make(0, (64, 32), (16, 16), 0.5, "float32", "col")
  with pytest.raises(ValueError, match="K=64"):
    block_sparse_matmul(jnp.ones((2, 32)), w)
  with pytest.raises(TypeError, match="BSR or PaddedBlockSparse"):
    block_sparse_matmul(jnp.ones((2, 64)), jnp.ones((64, 32)))
  with pytest.raises(ValueError, match="x must be 2-D"):
    sparse_dense_matmul(w, jnp.ones((3, 3)))
  with pytest.raises(ValueError, match="implementation"):
    block_sparse_matmul(jnp.ones((2, 64)), w, implementation="triton")


def test_tpu_kernels_with_tpu_interpreter():
  """Scalar prefetch + SMEM-driven index maps under TPU-semantics interpret."""
  from pallas_kernels import _compat
  ip = _compat.tpu_interpret_params()
  w, rng = make(9, (256, 384), (128, 128), 0.5, "float32", "col")
  x = jnp.asarray(rng.normal(size=(20, 256)), jnp.float32)
  out = block_sparse_matmul(x, w, implementation="pallas_tpu", interpret=ip)
  close(out, block_sparse_matmul_reference(x, w), "float32", 256)
  a, _ = make(10, (64, 256), (16, 128), 0.5, "float32", "row", "bsr")
  y = jnp.asarray(rng.normal(size=(256, 130)), jnp.float32)
  out = sparse_dense_matmul(a, y, implementation="pallas_tpu", interpret=ip)
  close(out, sparse_dense_matmul_reference(a, y), "float32", 256)
