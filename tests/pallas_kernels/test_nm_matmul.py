"""nm_matmul: every Pallas kernel (interpret mode) against the pure reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pallas_kernels import _compat
from pallas_kernels.nm import api
from pallas_kernels.nm import kernel_gpu
from pallas_kernels.nm import kernel_tpu
from pallas_kernels.nm import nm_matmul
from pallas_kernels.nm import nm_matmul_reference
from pallas_kernels.formats import compress_nm
from pallas_kernels.formats import decompress

SETTINGS = settings(max_examples=5, deadline=None, derandomize=True,
                    database=None)
PATTERNS = [(2, 4), (1, 4), (2, 8), (1, 8), (1, 16), (3, 8)]
KERNELS = sorted(api.KERNELS)
TOL = {"float32": 2e-5, "bfloat16": 2e-2, "float16": 4e-3}


def make(seed, k, cols, n, m, dtype, tg=None, zero_groups=False):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(k, cols))
  if zero_groups:  # every other group of every column holds only zeros
    w.reshape(k // m, m, cols)[::2] = 0.0
  w = jnp.asarray(w, dtype)
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
       cols=st.integers(1, 140), batch=st.sampled_from([1, 3, 8, 16, 100]),
       dtype=st.sampled_from(["float32", "bfloat16", "float16"]),
       impl=st.sampled_from(KERNELS), seed=st.integers(0, 2**16))
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


@pytest.mark.parametrize("impl", KERNELS)
@pytest.mark.parametrize("pattern,dtype", [
    ((2, 4), "bfloat16"), ((1, 4), "float32"), ((2, 8), "float16"),
    ((1, 8), "bfloat16"), ((1, 16), "float32")])
def test_every_required_pattern(pattern, dtype, impl):
  n, m = pattern
  k = 52 * m  # ragged K: 52 groups in tiles of 64 (or 4 tiles of 16)
  c, rng = make(11, k, 136, n, m, dtype, tg=64 if m < 16 else None)
  assert c.num_tiles * c.tile_groups > 52
  x = jnp.asarray(rng.normal(size=(7, k)), dtype)
  out = nm_matmul(x, c, implementation=impl)
  close(out, nm_matmul_reference(x, c), dtype, k)


@pytest.mark.parametrize("impl", KERNELS)
def test_all_zero_groups_and_large_batch(impl):
  c, rng = make(4, 64 * 8, 40, 1, 8, "float32", zero_groups=True)
  dense = np.asarray(decompress(c))
  assert (dense.reshape(64, 8, 40)[::2] == 0).all()
  batch = 512 if impl == "triton" else 24
  x = jnp.asarray(rng.normal(size=(batch, 512)), jnp.float32)
  out = jax.jit(lambda x, c: nm_matmul(x, c, implementation=impl))(x, c)
  close(out, nm_matmul_reference(x, c), "float32", 512)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_eager_and_jit(maybe_jit, impl):
  c, rng = make(0, 64, 24, 2, 4, "float32")
  x = jnp.asarray(rng.normal(size=(2, 5, 64)), jnp.float32)  # leading dims
  out = maybe_jit(lambda x, c: nm_matmul(x, c, implementation=impl))(x, c)
  ref = x @ decompress(c)
  assert out.shape == (2, 5, 24)
  close(out, ref, "float32", 64)


@pytest.mark.parametrize("impl", KERNELS)
def test_mixed_dtypes_accumulate_in_f32(impl):
  c, rng = make(1, 128, 16, 1, 8, "bfloat16")
  x = jnp.asarray(rng.normal(size=(4, 128)), jnp.float32)
  out = nm_matmul(x, c, implementation=impl)
  assert out.dtype == jnp.float32
  close(out, nm_matmul_reference(x, c), "float32", 128)


@pytest.mark.parametrize("impl", KERNELS)
def test_nothing_is_padded_or_permuted_per_call(impl):
  """Around the kernel only a reshape and (split-K) a reduction remain."""
  c, _ = make(3, 1000, 130, 2, 4, "bfloat16")  # ragged K and N
  x = jnp.ones((3, 1000), jnp.bfloat16)
  jaxpr = jax.make_jaxpr(lambda x, c: nm_matmul(x, c, implementation=impl))(
      x, c)

  def prims(jxp):
    for eqn in jxp.eqns:
      yield eqn.primitive.name
      if eqn.primitive.name == "pallas_call":
        continue  # the kernel body itself
      for v in eqn.params.values():
        sub = getattr(v, "jaxpr", v)
        if hasattr(sub, "eqns"):
          yield from prims(sub)

  names = set(prims(jaxpr.jaxpr)) - {"pallas_call"}
  assert "pallas_call" in set(prims(jaxpr.jaxpr))
  assert not names & {"pad", "transpose", "gather", "concatenate",
                      "dynamic_update_slice", "scatter"}, names


@pytest.mark.parametrize("impl", KERNELS + ["xla"])
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


def test_kernel_table_names_platforms():
  assert {"tpu", "triton", "triton_gather"} <= set(api.KERNELS)
  assert api.kernel_for("pallas_tpu") is api.KERNELS["tpu"]
  assert api.kernel_for("pallas_gpu") is api.KERNELS["triton"]
  assert api.KERNELS["tpu"].platform == "tpu"
  assert api.KERNELS["triton_gather"].platform == "gpu"
  big, _ = make(0, 1024, 8, 2, 4, "bfloat16")
  small, _ = make(0, 64, 8, 2, 4, "bfloat16")
  assert api.KERNELS["tpu"].unsupported(big) is None
  assert "tile_groups" in api.KERNELS["tpu"].unsupported(small)
  assert api.KERNELS["triton"].unsupported(small) is None


def test_choose_implementation_is_inspectable():
  """Without a measurement every backend gets XLA; requests are honoured."""
  c, _ = make(0, 1024, 256, 2, 4, "bfloat16")
  x1 = jax.ShapeDtypeStruct((1, 1024), jnp.bfloat16)
  xb = jax.ShapeDtypeStruct((4096, 1024), jnp.bfloat16)
  assert api.choose_implementation(x1, c, platform="cpu").implementation == "xla"
  for platform in ("tpu", "gpu"):
    auto = api.choose_implementation(x1, c, platform=platform, autotune=False)
    assert (auto.implementation, auto.source) == ("xla", "default"), auto
  forced = api.choose_implementation(xb, c, "pallas_gpu", platform="cpu")
  assert forced == api.Choice("triton", "requested", "requested", True)
  pallas = api.choose_implementation(x1, c, "pallas", platform="tpu")
  assert pallas == api.Choice("tpu", "requested", "requested", False)
  gather = api.choose_implementation(x1, c, "triton_gather", platform="gpu")
  assert gather == api.Choice("triton_gather", "requested", "requested", False)
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
  with pytest.raises(TypeError, match=r"int32 .*\(2, 64\).*\(64, 8\)"):
    nm_matmul(jnp.ones((2, 64), jnp.int32), c, implementation="triton")
  with pytest.raises(ValueError, match=r"\(2, 32\).*K=64"):
    kernel_gpu.nm_matmul_gpu(jnp.ones((2, 32)), c, interpret=True)
  with pytest.raises(ValueError, match=r"\(2, 32\).*K=64"):
    kernel_tpu.nm_matmul_tpu(jnp.ones((2, 32)), c, interpret=True)


def test_gpu_plan_fills_the_chip_at_decode():
  """Batch 1 on a 4096x4096 2:4 weight: >= 2 programs per SM of 132."""
  c = jax.eval_shape(lambda: compress_nm(
      jnp.ones((4096, 4096), jnp.bfloat16), jnp.ones((4096, 4096), bool), 2,
      4))
  p = kernel_gpu.plan(1, c)
  programs = (4096 // p.tn) * p.splits
  assert programs >= 2 * 132 and p.tb == 16
  assert p.splits * p.steps_per_split * p.chunk >= c.num_tiles * c.tile_groups
  big = kernel_gpu.plan(512, c)
  assert big.splits == 1 or (4096 // big.tn) * (512 // big.tb) < 264


def test_tpu_plan_tiles():
  c = jax.eval_shape(lambda: compress_nm(
      jnp.ones((16384, 4096), jnp.bfloat16), jnp.ones((16384, 4096), bool), 1,
      16))
  assert c.tile_groups == 256
  p = kernel_tpu.plan(1, c)
  assert p.tb == 1  # batch 1 is not padded
  assert 512 <= p.tn <= 2048 and p.kt >= 2 and c.num_tiles % p.kt == 0


@pytest.mark.parametrize("pattern,dtype,batch", [((2, 4), "bfloat16", 5),
                                                 ((1, 8), "float32", 1)])
def test_tpu_kernel_with_tpu_interpreter(pattern, dtype, batch):
  """Runs the TPU kernel under the interpreter that models TPU semantics."""
  n, m = pattern
  k = 300 * m  # two 256-group tiles, the second ragged
  c, rng = make(8, k, 200, n, m, dtype, tg=256)
  x = jnp.asarray(rng.normal(size=(batch, k)), dtype)
  out = kernel_tpu.nm_matmul_tpu(x, c, tn=128,
                                 interpret=_compat.tpu_interpret_params())
  close(out, nm_matmul_reference(x, c), dtype, k)
