"""The block-list layout: walks, flags, conversions, capacity."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from pallas_kernels.formats import block_list_from_mask
from pallas_kernels.formats import BlockList
from pallas_kernels.formats import compress_bsr
from pallas_kernels.formats import compress_padded_block
from pallas_kernels.formats import decompress
from pallas_kernels.formats import decompress_block_list
from pallas_kernels.formats import to_block_list
from pallas_kernels.formats._block_list import FIRST
from pallas_kernels.formats._block_list import LAST
from pallas_kernels.formats._block_list import VALID

from block_list_cases import block_mask
from block_list_cases import layout
from block_list_cases import SETTINGS


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


def test_block_list_is_a_pytree():
  bl = block_list_from_mask(jnp.ones((32, 32)), jnp.eye(2, dtype=bool),
                            (16, 16))
  leaves, tree = jax.tree.flatten(bl)
  again = jax.tree.unflatten(tree, leaves)
  assert isinstance(again, BlockList) and again.shape == (32, 32)
  assert all(isinstance(l, jax.Array) for l in leaves)

