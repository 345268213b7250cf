"""nm_matmul: Pallas kernels (interpret mode) against the pure reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pallas_kernels.nm import api
from pallas_kernels.nm import nm_matmul
from pallas_kernels.nm import nm_matmul_reference
from pallas_kernels.formats import compress_nm
from pallas_kernels.formats import decompress

SETTINGS = settings(max_examples=8, deadline=None, derandomize=True,
                    database=None)
PATTERNS = [(2, 4), (1, 4), (2, 8), (1, 8), (1, 16), (3, 8)]
TOL = {"float32": 2e-5, "bfloat16": 2e-2}


def make(seed, k, cols, n, m, dtype, tg=None):
  rng = np.random.default_rng(seed)
  w = jnp.asarray(rng.normal(size=(k, cols)), dtype)
  scores = rng.random((k // m, m, cols))
  rank = np.argsort(np.argsort(-scores, axis=1), axis=1)
  mask = (rank < n).reshape(k, cols)
  return compress_nm(w, mask, n, m, tile_groups=tg), rng


def close(out, ref, dtype, k):
  out = np.asarray(out, np.float32)
  ref = np.asarray(ref, np.float32)
  scale = max(1.0, np.sqrt(k))
  np.testing.assert_allclose(out, ref, atol=TOL[dtype] * scale,
                             rtol=TOL[dtype])


@SETTINGS
@given(pattern=st.sampled_from(PATTERNS), groups=st.integers(1, 70),
       cols=st.integers(1, 140), batch=st.sampled_from([1, 3, 16, 37, 512]),
       dtype=st.sampled_from(["float32", "bfloat16"]),
       impl=st.sampled_from(["pallas_tpu", "pallas_gpu"]),
       seed=st.integers(0, 2**16))
def test_kernel_matches_reference(pattern, groups, cols, batch, dtype, impl,
                                  seed):
  n, m = pattern
  k = groups * m
  c, rng = make(seed, k, cols, n, m, dtype)
  x = jnp.asarray(rng.normal(size=(batch, k)), dtype)
  out = jax.jit(lambda x, c: nm_matmul(x, c, implementation=impl))(x, c)
  ref = nm_matmul_reference(x, c)
  assert out.shape == (batch, cols) and out.dtype == ref.dtype
  close(out, ref, dtype, k)


@pytest.mark.parametrize("pattern,dtype,impl", [
    ((2, 4), "bfloat16", "pallas_tpu"), ((1, 4), "float32", "pallas_gpu"),
    ((2, 8), "float32", "pallas_tpu"), ((1, 8), "bfloat16", "pallas_gpu"),
    ((1, 16), "bfloat16", "pallas_tpu"), ((1, 16), "float32", "pallas_gpu"),
])
def test_every_required_pattern(pattern, dtype, impl):
  n, m = pattern
  k = 48 * m  # ragged: 48 groups in a 64-group tile
  c, rng = make(11, k, 136, n, m, dtype)
  x = jnp.asarray(rng.normal(size=(7, k)), dtype)
  out = nm_matmul(x, c, implementation=impl)
  close(out, nm_matmul_reference(x, c), dtype, k)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_eager_and_jit(maybe_jit, impl):
  c, rng = make(0, 64, 24, 2, 4, "float32")
  x = jnp.asarray(rng.normal(size=(2, 5, 64)), jnp.float32)  # leading dims
  out = maybe_jit(lambda x, c: nm_matmul(x, c, implementation=impl))(x, c)
  ref = x @ decompress(c)
  assert out.shape == (2, 5, 24)
  close(out, ref, "float32", 64)


def test_mixed_dtypes_accumulate_in_f32():
  c, rng = make(1, 128, 16, 1, 8, "bfloat16")
  x = jnp.asarray(rng.normal(size=(4, 128)), jnp.float32)
  out = nm_matmul(x, c, implementation="pallas_gpu")
  assert out.dtype == jnp.float32
  close(out, nm_matmul_reference(x, c), "float32", 128)


@pytest.mark.parametrize("impl", ["pallas_tpu", "pallas_gpu", "xla"])
def test_gradients_match_dense_formula(impl):
  c, rng = make(2, 96, 12, 2, 8, "float32")
  x = jnp.asarray(rng.normal(size=(3, 96)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(3, 12)), jnp.float32)
  dense = decompress(c)

  def loss(x, values):
    w = type(c)(values, c.indices, c.n, c.m, c.shape, c.tile_groups)
    return jnp.sum(nm_matmul(x, w, implementation=impl) * g)

  dx, dv = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, c.values)
  np.testing.assert_allclose(dx, g @ dense.T, atol=1e-4, rtol=1e-4)
  # d loss / d W = x^T g, restricted to the kept entries.
  dw_dense = x.T @ g
  w_grad = type(c)(dv, c.indices, c.n, c.m, c.shape, c.tile_groups)
  mask = decompress(type(c)(jnp.ones_like(c.values), c.indices, c.n, c.m,
                            c.shape, c.tile_groups)) != 0
  np.testing.assert_allclose(decompress(w_grad), jnp.where(mask, dw_dense, 0),
                             atol=1e-4, rtol=1e-4)


def test_choose_implementation_is_inspectable():
  c, _ = make(0, 1024, 256, 2, 4, "bfloat16")
  x1 = jax.ShapeDtypeStruct((1, 1024), jnp.bfloat16)
  xb = jax.ShapeDtypeStruct((4096, 1024), jnp.bfloat16)
  assert api.choose_implementation(x1, c, platform="cpu").implementation == "xla"
  tpu = api.choose_implementation(x1, c, platform="tpu")
  assert tpu.implementation == "pallas_tpu" and not tpu.interpret
  assert api.choose_implementation(x1, c, platform="gpu").implementation == \
      "pallas_gpu"
  big = api.choose_implementation(xb, c, platform="gpu")
  assert big.implementation == "xla" and "memory-bound" in big.reason
  small, _ = make(0, 64, 256, 2, 4, "bfloat16")
  assert "tile_groups" in api.choose_implementation(
      x1, small, platform="tpu").reason
  forced = api.choose_implementation(xb, c, "pallas_gpu", platform="cpu")
  assert forced == api.Choice("pallas_gpu", "requested", True)
  # 1:16 leaves the memory-bound window much earlier than 2:4.
  c116, _ = make(0, 1024, 8, 1, 16, "bfloat16")
  assert api.batch_crossover(c116) < api.batch_crossover(c) / 4


def test_bad_input():
  c, _ = make(0, 64, 8, 2, 4, "float32")
  with pytest.raises(ValueError, match="K=64"):
    nm_matmul(jnp.ones((2, 32)), c)
  with pytest.raises(TypeError, match="NMCompressed"):
    nm_matmul(jnp.ones((2, 64)), jnp.ones((64, 8)))
  with pytest.raises(ValueError, match="implementation"):
    nm_matmul(jnp.ones((2, 64)), c, implementation="cuda")


def test_tpu_kernel_with_tpu_interpreter():
  """Runs the TPU kernel under the interpreter that models TPU semantics."""
  from pallas_kernels import _compat
  c, rng = make(8, 512, 128, 1, 8, "bfloat16", tg=64)
  x = jnp.asarray(rng.normal(size=(5, 512)), jnp.bfloat16)
  out = nm_matmul(x, c, implementation="pallas_tpu",
                  interpret=_compat.tpu_interpret_params())
  close(out, nm_matmul_reference(x, c), "bfloat16", 512)
