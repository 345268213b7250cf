"""Block masks, layouts and tolerances shared by the block-list tests."""
import dataclasses

import numpy as np
from hypothesis import settings, strategies as st

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
  grid = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
  return (grid, (bh, bw), draw(st.sampled_from(KINDS)),
          draw(st.integers(0, 3)), draw(st.integers(0, 999)))
