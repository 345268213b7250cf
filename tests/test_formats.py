"""Tests for pallas_kernels.formats: exact round trips, validation, pytrees."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pallas_kernels import formats as F

SETTINGS = settings(max_examples=6, deadline=None, derandomize=True,
                    database=None)
# Every new block layout compiles several conversions: fewer examples.
BLOCK_SETTINGS = settings(SETTINGS, max_examples=3)
PATTERNS = [(2, 4), (1, 4), (2, 8), (1, 8), (1, 16), (3, 8), (1, 2), (4, 4)]


def random_nm_mask(rng, k, cols, n, m):
  scores = rng.random((k // m, m, cols))
  rank = np.argsort(np.argsort(-scores, axis=1), axis=1)
  return (rank < n).reshape(k, cols)


@SETTINGS
@given(pattern=st.sampled_from(PATTERNS), groups=st.integers(1, 40),
       cols=st.integers(1, 9), dtype=st.sampled_from(["float32", "bfloat16"]),
       tg=st.sampled_from([None, 16, 32, 64]), seed=st.integers(0, 2**16))
def test_nm_round_trip(pattern, groups, cols, dtype, tg, seed):
  n, m = pattern
  k = groups * m
  rng = np.random.default_rng(seed)
  w = jnp.asarray(rng.normal(size=(k, cols)), dtype)
  mask = random_nm_mask(rng, k, cols, n, m)
  c = F.compress_nm(w, mask, n, m, tile_groups=tg)
  expect = jnp.where(mask, w, 0)
  np.testing.assert_array_equal(np.asarray(F.decompress(c), np.float32),
                                np.asarray(expect, np.float32))
  # Values are exactly recoverable from the masked dense matrix.
  np.testing.assert_array_equal(
      np.asarray(F.nm_values_like(c, expect), np.float32),
      np.asarray(c.values, np.float32))
  assert c.values.dtype == w.dtype
  assert c.indices.dtype == (jnp.uint32 if c.tile_groups >= 32 else jnp.uint16)
  # N is never padded; K only to whole tiles of groups.
  assert c.values.shape == (c.num_tiles * n * c.tile_groups, cols)
  assert c.indices.shape[1] == cols


def test_nm_compress_jits(maybe_jit):
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(64, 8)), jnp.float32)
  mask = jnp.asarray(random_nm_mask(rng, 64, 8, 2, 8))
  f = maybe_jit(lambda w, mask: F.compress_nm(w, mask, 2, 8))
  c = f(w, mask)
  assert isinstance(c, F.NMCompressed)
  dense = maybe_jit(F.decompress)(c)
  np.testing.assert_array_equal(dense, jnp.where(mask, w, 0))


def test_nm_pytree_metadata_is_static():
  w = jnp.ones((32, 4))
  mask = jnp.asarray(random_nm_mask(np.random.default_rng(1), 32, 4, 1, 4))
  c = F.compress_nm(w, mask, 1, 4)
  leaves, treedef = jax.tree.flatten(c)
  assert len(leaves) == 2
  c2 = jax.tree.unflatten(treedef, leaves)
  assert (c2.n, c2.m, c2.shape, c2.tile_groups) == (1, 4, (32, 4), 16)
  out = jax.jit(lambda c: c)(c)
  assert out.shape == (32, 4)


@pytest.mark.parametrize("n,m,bits", [(2, 4, 2), (1, 4, 2), (2, 8, 3),
                                      (1, 8, 3), (1, 16, 4)])
@pytest.mark.parametrize("groups", [256, 16])  # a 256-group tile; a tiny layer
def test_nm_indices_are_bit_packed(n, m, bits, groups):
  k, cols = groups * m, 72  # whole tiles, ragged N: no padding at all
  mask = random_nm_mask(np.random.default_rng(0), k, cols, n, m)
  c = F.compress_nm(jnp.ones((k, cols), jnp.bfloat16), mask, n, m)
  assert c.tile_groups == groups
  kept = k * cols * n // m
  assert c.indices.size * c.indices.dtype.itemsize * 8 == kept * bits
  assert c.values.size == kept
  bpe = 8 * c.nbytes() / (k * cols)
  assert bpe == pytest.approx(16 * n / m + n / m * bits)


@pytest.mark.parametrize("k,cols,n,m", [(64, 64, 2, 4), (128, 32, 1, 8),
                                        (8, 4, 2, 4), (1000, 3, 1, 4)])
def test_nm_small_layers_stay_smaller_than_dense(k, cols, n, m):
  mask = random_nm_mask(np.random.default_rng(2), k, cols, n, m)
  w = jnp.ones((k, cols), jnp.bfloat16)
  c = F.compress_nm(w, mask, n, m)
  groups = k // m
  # K pads to whole tiles of >= 16 groups, at most 1/8 where a tile allows.
  padded = c.num_tiles * c.tile_groups
  assert padded - groups <= max(16 - groups, groups // 8)
  if groups >= 16:
    assert c.nbytes() < w.nbytes


@pytest.mark.parametrize("k,m", [(4096, 4), (14336, 8), (4000, 4), (400, 4),
                                 (64, 4), (8, 4), (4096, 16)])
def test_default_tile_groups_bounds_padding(k, m):
  groups = k // m
  tg = F.default_tile_groups(k, m)
  assert 16 <= tg <= 256 and tg & (tg - 1) == 0
  pad = -(-groups // tg) * tg - groups
  assert pad <= max(groups // 8, 16 - groups) or tg == 16


def test_nm_validation_errors():
  w = jnp.ones((8, 2))
  good = jnp.asarray(random_nm_mask(np.random.default_rng(0), 8, 2, 2, 4))
  with pytest.raises(ValueError, match="n must be in"):
    F.compress_nm(w, good, 5, 4)
  with pytest.raises(ValueError, match="m must be in"):
    F.compress_nm(w, good, 1, 32)
  with pytest.raises(ValueError, match="divisible by m=3"):
    F.compress_nm(w, good, 1, 3)
  with pytest.raises(ValueError, match="mask shape"):
    F.compress_nm(w, good[:4], 2, 4)
  with pytest.raises(ValueError, match="must be 2-D"):
    F.compress_nm(jnp.ones(8), jnp.ones(8, bool), 2, 4)
  with pytest.raises(ValueError, match="tile_groups"):
    F.compress_nm(w, good, 2, 4, tile_groups=48)
  with pytest.raises(ValueError, match="tile_groups"):
    F.compress_nm(w, good, 2, 4, tile_groups=8)
  bad = good.at[0, 1].set(~good[0, 1])
  with pytest.raises(ValueError, match=r"not 2:4 .*group 0 .*column 1"):
    F.compress_nm(w, bad, 2, 4)
  with pytest.raises(TypeError):
    F.compress_nm(w, good, 2.0, 4)
  # Validation is host-side only: compress still traces under jit.
  jax.jit(lambda w, mk: F.compress_nm(w, mk, 2, 4))(w, bad)
  F.compress_nm(w, bad, 2, 4, validate=False)


@st.composite
def block_case(draw):
  bh = draw(st.sampled_from([1, 2, 4, 16]))
  bw = draw(st.sampled_from([1, 2, 8, 16]))
  gr = draw(st.integers(1, 6))
  gc = draw(st.integers(1, 6))
  seed = draw(st.integers(0, 2**16))
  density = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
  return bh, bw, gr, gc, seed, density


@BLOCK_SETTINGS
@given(case=block_case(), major=st.sampled_from(["row", "col"]),
       dtype=st.sampled_from(["float32", "bfloat16"]))
def test_block_round_trips(case, major, dtype):
  bh, bw, gr, gc, seed, density = case
  rng = np.random.default_rng(seed)
  w = jnp.asarray(rng.normal(size=(gr * bh, gc * bw)), dtype)
  bm = rng.random((gr, gc)) < density
  bm[0] = False  # always an empty line (row) and ...
  expect = np.asarray(w, np.float32) * np.kron(bm, np.ones((bh, bw)))
  bsr = F.compress_bsr(w, bm, (bh, bw), major=major)
  pad = F.compress_padded_block(w, bm, (bh, bw), major=major)
  for fmt in (bsr, pad, F.bsr_to_padded(bsr), F.padded_to_bsr(pad)):
    np.testing.assert_array_equal(np.asarray(F.decompress(fmt), np.float32),
                                  expect)
  assert bsr.values.shape[0] == bm.sum()
  np.testing.assert_array_equal(np.diff(np.asarray(bsr.indptr)),
                                (bm if major == "row" else bm.T).sum(1))
  np.testing.assert_array_equal(
      np.asarray(F.block_values_like(pad, w), np.float32),
      np.asarray(pad.values, np.float32))
  # Padding slots repeat the last valid index, so a kernel refetches nothing.
  idx, cnt = np.asarray(pad.indices), np.asarray(pad.counts)
  for line in range(idx.shape[0]):
    c = cnt[line]
    tail = idx[line, max(c - 1, 0):]
    assert (tail == tail[0]).all()
    if c == 0:
      assert (idx[line] == 0).all()


def test_block_formats_jit(maybe_jit):
  rng = np.random.default_rng(3)
  w = jnp.asarray(rng.normal(size=(8, 12)), jnp.float32)
  bm = jnp.asarray(rng.random((4, 3)) < 0.5).at[1].set(False)
  expect = w * jnp.kron(bm, jnp.ones((2, 4)))
  bsr = maybe_jit(lambda w, bm: F.compress_bsr(w, bm, (2, 4), nnz=12))(w, bm)
  pad = maybe_jit(lambda w, bm: F.compress_padded_block(
      w, bm, (2, 4), width=3))(w, bm)
  for fmt in (bsr, pad, maybe_jit(lambda b: F.bsr_to_padded(b, 3))(bsr),
              maybe_jit(lambda p: F.padded_to_bsr(p, 12))(pad)):
    np.testing.assert_array_equal(maybe_jit(F.decompress)(fmt), expect)


def test_block_validation_errors():
  w = jnp.ones((8, 8))
  bm = jnp.eye(2, dtype=bool)
  with pytest.raises(ValueError, match="must divide"):
    F.compress_bsr(w, bm, (3, 4))
  with pytest.raises(ValueError, match="block grid"):
    F.compress_bsr(w, jnp.eye(3, dtype=bool), (4, 4))
  with pytest.raises(ValueError, match="major"):
    F.compress_bsr(w, bm, (4, 4), major="diag")
  with pytest.raises(ValueError, match="width=1"):
    F.compress_padded_block(w, jnp.ones((2, 2), bool), (4, 4), width=1)
  with pytest.raises(ValueError, match="nnz=1"):
    F.compress_bsr(w, jnp.ones((2, 2), bool), (4, 4), nnz=1)
  with pytest.raises(ValueError, match="width must be given"):
    jax.jit(lambda w, m: F.compress_padded_block(w, m, (4, 4)))(w, bm)
  with pytest.raises(TypeError, match="decompress expects"):
    F.decompress(w)


def test_formats_shard_along_output_columns():
  """Compression is column-local: a column-sharded weight stays sharded."""
  devices = np.array(jax.devices())
  if devices.size < 2:
    pytest.skip("needs several devices (conftest requests 8 host devices)")
  mesh = jax.sharding.Mesh(devices, ("x",))
  cols = 16 * devices.size
  spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "x"))
  rng = np.random.default_rng(5)
  w = jax.device_put(jnp.asarray(rng.normal(size=(64, cols)), jnp.float32),
                     spec)
  mask = jax.device_put(jnp.asarray(random_nm_mask(rng, 64, cols, 2, 4)), spec)
  c = jax.jit(lambda w, mk: F.compress_nm(w, mk, 2, 4))(w, mask)
  assert len(c.values.sharding.device_set) == devices.size
  assert not c.values.sharding.is_fully_replicated
  np.testing.assert_array_equal(jax.jit(F.decompress)(c),
                                jnp.where(mask, w, 0))


def test_stacked_weights_via_vmap():
  """Stacked (scanned) layers: vmap the 2-D conversions over the layer axis."""
  rng = np.random.default_rng(6)
  w = jnp.asarray(rng.normal(size=(3, 32, 8)), jnp.float32)
  mask = jnp.stack([jnp.asarray(random_nm_mask(rng, 32, 8, 2, 4))
                    for _ in range(3)])
  c = jax.vmap(lambda w, mk: F.compress_nm(w, mk, 2, 4))(w, mask)
  assert c.values.shape[0] == 3 and c.shape == (32, 8)
  np.testing.assert_array_equal(jax.vmap(F.decompress)(c),
                                jnp.where(mask, w, 0))
