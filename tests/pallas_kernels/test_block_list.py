"""Block-list layout and its kernels (interpret mode) against the references."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pallas_kernels import _compat
from pallas_kernels import dispatch
from pallas_kernels.block_sparse import _block_list_paths
from pallas_kernels.block_sparse import block_list_api
from pallas_kernels.block_sparse.block_list_api import block_list_matmul
from pallas_kernels.block_sparse.block_list_api import \
    block_list_sparse_dense_matmul
from pallas_kernels.block_sparse.reference import block_list_matmul_reference
from pallas_kernels.block_sparse.reference import \
    block_list_sparse_dense_matmul_reference
from pallas_kernels.formats import block_list_from_mask
from pallas_kernels.formats import BlockList
from pallas_kernels.formats import compress_bsr
from pallas_kernels.formats import compress_padded_block
from pallas_kernels.formats import decompress
from pallas_kernels.formats import decompress_block_list
from pallas_kernels.formats import to_block_list
from pallas_kernels.formats._block_list import check_block_list
from pallas_kernels.formats._block_list import FIRST
from pallas_kernels.formats._block_list import LAST
from pallas_kernels.formats._block_list import VALID

SETTINGS = settings(max_examples=4, deadline=None, derandomize=True,
                    database=None)
TOL = {"float32": 2e-5, "bfloat16": 2e-2}
KINDS = ["random", "none", "all", "one_full_row", "one_full_col",
         "empty_rows"]
# Triton: split=None balances (segments of one block here), 64 >= every
# block grid here, so one segment per line (direct output).
IMPLS = [("xla", None), ("xla_blocks", None), ("tpu", None), ("triton", None),
         ("triton", 64)]


def block_mask(kind, grid, rng):
  m = rng.random(grid) < 0.4
  if kind == "none":
    m[:] = False
  elif kind == "all":
    m[:] = True
  elif kind == "one_full_row":
    m[:] = False
    m[rng.integers(grid[0]), :] = True
  elif kind == "one_full_col":
    m[:] = False
    m[:, rng.integers(grid[1])] = True
  elif kind == "empty_rows":
    m[::2, :] = False
  return m


def with_values(bl, values):
  return dataclasses.replace(bl, values=values)


def close(out, ref, dtype, k):
  np.testing.assert_allclose(np.asarray(out, np.float32),
                             np.asarray(ref, np.float32),
                             atol=TOL[dtype] * max(1.0, np.sqrt(k)),
                             rtol=TOL[dtype])


@st.composite
def layout(draw):
  bh = draw(st.sampled_from([16, 32]))
  bw = draw(st.sampled_from([16, 32]))
  grid = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
  return (grid, (bh, bw), draw(st.sampled_from(KINDS)),
          draw(st.integers(0, 3)), draw(st.integers(0, 999)))


def check_order(order, rows, cols, valid, by_col, lines):
  """The walk's invariants: every block once, grouped by line, flags right."""
  line = np.asarray(order.line)
  red = np.asarray(order.red)
  data = np.asarray(order.data)
  flags = np.asarray(order.flags)
  has = (flags & VALID) != 0
  mine, other = (cols, rows) if by_col else (rows, cols)
  # Every stored block is visited exactly once, at a step of its own line.
  assert sorted(data[has].tolist()) == np.flatnonzero(valid).tolist()
  np.testing.assert_array_equal(line[has], mine[data[has]])
  np.testing.assert_array_equal(red[has], other[data[has]])
  # Lines are contiguous and ascending; each has one FIRST and one LAST.
  used = (flags & (FIRST | LAST | VALID)) != 0
  nused = int(used.sum())
  assert used[:nused].all() and not used[nused:].any()
  assert (np.diff(line[:nused]) >= 0).all()
  assert nused == sum(max(1, int((mine[valid] == l).sum()))
                      for l in range(lines))
  for l in range(lines):
    steps = np.flatnonzero(line[:nused] == l)
    assert len(steps) >= 1
    assert (flags[steps[0]] & FIRST) and (flags[steps[-1]] & LAST)
    assert sum(bool(f & FIRST) for f in flags[steps]) == 1
    assert sum(bool(f & LAST) for f in flags[steps]) == 1
  # data_next: an idle step repeats the next block's indices (the previous
  # one's past the last block), so the pipeline fetches nothing for it.
  idx = np.flatnonzero(has)
  for s in np.flatnonzero(~has):
    if idx.size == 0:
      break
    after = idx[idx > s]
    src = after[0] if after.size else idx[idx < s][-1]
    assert (data[s], red[s]) == (data[src], red[src])


@SETTINGS
@given(c=layout())
def test_layout_properties(c):
  grid, bs, kind, spare, seed = c
  rng = np.random.default_rng(seed)
  shape = (grid[0] * bs[0], grid[1] * bs[1])
  w = jnp.asarray(rng.normal(size=shape), jnp.float32)
  m = block_mask(kind, grid, rng)
  bl = block_list_from_mask(w, m, bs, capacity=int(m.sum()) + spare)
  assert bl.capacity == int(m.sum()) + spare and int(bl.nnz) == m.sum()
  dense_mask = np.repeat(np.repeat(m, bs[0], 0), bs[1], 1)
  np.testing.assert_array_equal(decompress_block_list(bl),
                                np.where(dense_mask, w, 0))
  valid = np.asarray(bl.valid)
  rows, cols = np.asarray(bl.rows), np.asarray(bl.cols)
  assert valid.sum() == m.sum()
  check_order(bl.by_row, rows, cols, valid, False, grid[0])
  check_order(bl.by_col, rows, cols, valid, True, grid[1])
  assert bl.by_row.steps == bl.capacity + grid[0]
  assert bl.rows.dtype == bl.cols.dtype == jnp.int16
  assert bl.by_col.line.dtype == bl.by_col.flags.dtype == jnp.int32
  np.testing.assert_array_equal(bl.by_row.count, m.sum(1))
  np.testing.assert_array_equal(bl.by_col.count, m.sum(0))


def test_walks_of_a_known_mask():
  """Empty first row and empty columns: idle steps prefetch the next block."""
  m = np.array([[0, 0, 0, 0], [0, 0, 1, 0], [1, 0, 1, 0]], bool)
  bl = block_list_from_mask(jnp.ones((6, 8)), m, (2, 2))
  # Stored row-major: d0 = (1, 2), d1 = (2, 0), d2 = (2, 2).
  assert bl.rows.tolist() == [1, 2, 2] and bl.cols.tolist() == [2, 0, 2]
  r = bl.by_row
  assert r.line.tolist() == [0, 1, 2, 2, 2, 2]
  assert r.red.tolist() == [2, 2, 0, 2, 2, 2]
  assert r.data.tolist() == [0, 0, 1, 2, 2, 2]
  assert r.flags.tolist() == [FIRST | LAST, 7, FIRST | VALID, LAST | VALID,
                              0, 0]
  c = bl.by_col
  assert c.line.tolist() == [0, 1, 2, 2, 3, 3, 3]
  assert c.red.tolist() == [2, 1, 1, 2, 2, 2, 2]
  assert c.data.tolist() == [1, 0, 0, 2, 2, 2, 2]
  assert c.flags.tolist() == [7, 3, 5, 6, 3, 0, 0]
  assert c.start.tolist() == [0, 1, 2, 4] and c.count.tolist() == [1, 0, 2, 0]


@pytest.mark.parametrize("major", ["row", "col"])
@pytest.mark.parametrize("fmt", ["bsr", "padded"])
def test_conversion_from_bsr_and_padded(major, fmt):
  rng = np.random.default_rng(3)
  w = jnp.asarray(rng.normal(size=(64, 96)), jnp.float32)
  m = block_mask("empty_rows", (4, 3), rng)
  m[1, 1] = True
  make = compress_bsr if fmt == "bsr" else compress_padded_block
  b = make(w, m, (16, 32), major=major)
  bl = to_block_list(b)
  assert bl.capacity == int(m.sum())
  np.testing.assert_array_equal(decompress_block_list(bl), decompress(b))


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


def test_overflow_is_reported():
  w = jnp.ones((32, 32))
  m = jnp.ones((2, 2), bool)
  with pytest.raises(ValueError, match=r"layer 'fc1'.*keeps 4 blocks.*"
                     r"capacity is 3"):
    block_list_from_mask(w, m, (16, 16), capacity=3, name="fc1")
  f = jax.jit(lambda w, m: block_list_from_mask(
      w, m, (16, 16), capacity=3, name="fc1").values)
  assert f(w, m.at[0, 0].set(False)).shape == (3, 16, 16)
  with pytest.raises(Exception, match=r"layer 'fc1'.*keeps 4 blocks"):
    jax.block_until_ready(f(w, m))
  bl = jax.jit(lambda w, m: block_list_from_mask(
      w, m, (16, 16), capacity=3, check=False))(w, m)
  assert int(bl.nnz) == 4 and bl.capacity == 3
  with pytest.raises(ValueError, match="capacity must be given"):
    jax.jit(lambda m: block_list_from_mask(w, m, (16, 16)))(m)


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


def test_block_list_is_a_pytree():
  bl = block_list_from_mask(jnp.ones((32, 32)), jnp.eye(2, dtype=bool),
                            (16, 16))
  leaves, tree = jax.tree.flatten(bl)
  again = jax.tree.unflatten(tree, leaves)
  assert isinstance(again, BlockList) and again.shape == (32, 32)
  assert all(isinstance(l, jax.Array) for l in leaves)


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
