"""The timing harness shared by the benchmarks, the device check and autotuning."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import _testing
from pallas_kernels import _timing


def test_chain_runs_every_call():
  seen = []

  def fn(x, w):
    jax.debug.callback(lambda: seen.append(1))
    return x @ w

  run, compile_s = _timing.chain(fn, jnp.ones((2, 4)), jnp.eye(4), length=5)
  jax.block_until_ready(run())
  jax.effects_barrier()
  assert len(seen) == 5 and compile_s > 0


def test_against_dense_reports_per_call_seconds():
  x, w = jnp.ones((4, 64)), jnp.ones((64, 64))
  res = _timing.against_dense({"s": _timing.dense_matmul}, w, x, w, w, reps=3,
                              length=4)
  assert set(res["seconds"]) == {"dense", "masked", "s"}
  assert set(res["compile_s"]) == {"dense", "masked", "s"}


def test_interleaved_medians_divide_by_chain_length():
  med = _timing.interleaved_medians({"a": lambda: jnp.ones(2)}, reps=3)
  per = _timing.interleaved_medians({"a": lambda: jnp.ones(2)}, reps=3,
                                    per={"a": 1000})
  assert per["a"] < med["a"]


def test_bounds_and_peaks():
  assert round(_timing.nm_bound(2, 4), 2) == 1.78
  assert round(_timing.nm_bound(1, 16), 1) == 12.8
  assert _timing.peak_gbps("NVIDIA H100 80GB HBM3") == 3350.0
  assert _timing.peak_gbps("NVIDIA H100 PCIe") == 2000.0
  assert _timing.peak_gbps("TPU v5p") == 2765.0
  assert _timing.peak_gbps("Intel Xeon") is None


@pytest.mark.parametrize("n,m", [(2, 4), (1, 8), (1, 16), (3, 8)])
def test_nm_mask_keeps_the_largest(n, m):
  rng = np.random.default_rng(0)
  w = rng.normal(size=(4 * m, 7)).astype(np.float32)
  mask = np.asarray(_testing.nm_mask(jnp.asarray(w), n, m))
  groups = np.abs(w).reshape(-1, m, 7)
  kept = mask.reshape(-1, m, 7)
  assert (kept.sum(1) == n).all()
  smallest_kept = np.where(kept, groups, np.inf).min(1)
  largest_dropped = np.where(kept, -np.inf, groups).max(1)
  assert (smallest_kept >= largest_dropped).all()
  with pytest.raises(ValueError, match="divisible by m"):
    _testing.nm_mask(jnp.ones((m + 1, 2)), n, m)


def test_random_block_mask_keeps_exactly_keep_blocks():
  m = _testing.random_block_mask((8, 16), 13, seed=3)
  assert m.shape == (8, 16) and int(m.sum()) == 13
  with pytest.raises(ValueError, match="keep"):
    _testing.random_block_mask((2, 2), 5)
