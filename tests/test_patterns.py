"""Patterns: exact counts, ties, NaN, idempotence, axis convention, errors."""

import itertools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj
from sparsejax import patterns

SETTINGS = hypothesis.settings(max_examples=6, deadline=None)
DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16]
NM_PAIRS = [(1, 2), (2, 4), (1, 4), (3, 4), (2, 8), (1, 8), (1, 16), (4, 4)]


def _scores(seed, shape, dtype=jnp.float32, ties=False):
  rng = np.random.default_rng(seed)
  if ties:
    values = rng.integers(0, 3, size=shape).astype(np.float32)
  else:
    values = rng.standard_normal(shape).astype(np.float32)
  return jnp.asarray(values, dtype)


def _group_counts(mask, axis, m):
  moved = np.moveaxis(np.asarray(mask), axis, 0)
  return moved.reshape(moved.shape[0] // m, m, -1).sum(axis=1)


@SETTINGS
@hypothesis.given(
    nm=st.sampled_from(NM_PAIRS), groups=st.integers(1, 4),
    cols=st.integers(1, 5), dtype=st.sampled_from(DTYPES),
    ties=st.booleans(), seed=st.integers(0, 2**16))
def test_nm_exact_counts_and_top_scores(nm, groups, cols, dtype, ties, seed):
  n, m = nm
  scores = _scores(seed, (groups * m, cols), dtype, ties)
  mask = np.asarray(sj.NM(n, m).mask(scores))
  assert (_group_counts(mask, 0, m) == n).all()
  # Every kept score is >= every pruned score of its group.
  s = np.asarray(scores.astype(jnp.float32)).reshape(groups, m, cols)
  k = mask.reshape(groups, m, cols)
  lowest_kept = np.where(k, s, np.inf).min(axis=1)
  highest_pruned = np.where(~k, s, -np.inf).max(axis=1)
  assert (lowest_kept >= highest_pruned).all()


def test_nm_tie_break_prefers_lower_index():
  mask = sj.NM(2, 4).mask(jnp.zeros((8, 3)))
  expected = np.tile(np.array([1, 1, 0, 0], bool), 2)[:, None]
  np.testing.assert_array_equal(mask, np.broadcast_to(expected, (8, 3)))


def test_nan_never_kept_before_finite():
  s = jnp.array([jnp.nan, 1.0, jnp.nan, -jnp.inf])[:, None]
  np.testing.assert_array_equal(sj.NM(2, 4).mask(s)[:, 0], [0, 1, 0, 1])
  u = sj.Unstructured(0.5).mask(jnp.array([jnp.nan, 0.0, jnp.nan, -1.0]))
  np.testing.assert_array_equal(u, [0, 1, 0, 1])


def test_axis_convention_dense_and_conv():
  n, m = 1, 4
  dense = _scores(0, (8, 6), jnp.float32)
  assert (_group_counts(sj.NM(n, m).mask(dense), 0, m) == n).all()
  conv = _scores(1, (3, 3, 8, 5), jnp.float32)
  mask = sj.NM(n, m).mask(conv)
  assert (_group_counts(mask, 2, m) == n).all()
  explicit = sj.NM(n, m, axis=1).mask(_scores(2, (5, 8)))
  assert (_group_counts(explicit, 1, m) == n).all()


@pytest.mark.parametrize("nm", NM_PAIRS)
def test_nm_idempotent(nm):
  n, m = nm
  w = _scores(3, (4 * m, 7), jnp.float32)
  pattern = sj.NM(n, m)
  mask = pattern.mask(jnp.abs(w))
  again = pattern.mask(jnp.abs(jnp.where(mask, w, 0)))
  np.testing.assert_array_equal(mask, again)


@SETTINGS
@hypothesis.given(
    shape=st.sampled_from([(7,), (4, 5), (3, 2, 6), (1, 1)]),
    sparsity=st.floats(0.0, 0.99), per_output=st.booleans(),
    dtype=st.sampled_from(DTYPES), ties=st.booleans(),
    seed=st.integers(0, 2**16))
def test_unstructured_exact_count(shape, sparsity, per_output, dtype, ties,
                                  seed):
  hypothesis.assume(not per_output or len(shape) >= 2)
  scores = _scores(seed, shape, dtype, ties)
  mask = np.asarray(sj.Unstructured(sparsity, per_output=per_output).mask(
      scores))
  s = np.asarray(scores.astype(jnp.float32))
  if per_output:
    mask2 = mask.reshape(-1, shape[-1])
    s2 = s.reshape(-1, shape[-1])
    group = mask2.shape[0]
    expected = group - int(np.floor(np.float32(sparsity) * group))
    assert (mask2.sum(axis=0) == expected).all()
    for j in range(shape[-1]):
      kept, pruned = s2[mask2[:, j], j], s2[~mask2[:, j], j]
      assert not pruned.size or kept.min() >= pruned.max()
  else:
    expected = s.size - int(np.floor(np.float32(sparsity) * s.size))
    assert mask.sum() == expected
    kept, pruned = s[mask], s[~mask]
    assert not pruned.size or kept.min() >= pruned.max()


def test_unstructured_ties_keep_lowest_indices():
  mask = sj.Unstructured(0.5).mask(jnp.ones(6))
  np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0, 0])


def test_unstructured_traced_sparsity_does_not_retrace():
  traces = []

  @jax.jit
  def f(scores, s):
    traces.append(1)
    return sj.Unstructured(s).mask(scores).sum()

  scores = _scores(0, (100,), jnp.float32)
  counts = [int(f(scores, s)) for s in (0.1, 0.5, 0.9)]
  assert counts == [90, 50, 10]
  assert len(traces) == 1


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_block_selects_best_blocks(pool):
  rng = np.random.default_rng(0)
  s = jnp.asarray(rng.random((8, 12)), jnp.float32)
  pattern = sj.Block((2, 3), 0.75, pool=pool)
  mask = np.asarray(pattern.mask(s))
  blocks = mask.reshape(4, 2, 4, 3)
  # Each block is all-kept or all-pruned, with exactly 4 of 16 kept.
  assert (blocks.all(axis=(1, 3)) | ~blocks.any(axis=(1, 3))).all()
  kept_blocks = blocks.all(axis=(1, 3))
  assert kept_blocks.sum() == 4
  pooled = np.asarray(s).reshape(4, 2, 4, 3)
  pooled = pooled.mean(axis=(1, 3)) if pool == "mean" else pooled.max(
      axis=(1, 3))
  assert pooled[kept_blocks].min() >= pooled[~kept_blocks].max()


def test_block_on_conv_kernel_spans_leading_dims():
  s = _scores(0, (3, 3, 8, 8), jnp.float32)
  mask = np.asarray(sj.Block((4, 4), 0.5).mask(jnp.abs(s)))
  assert mask.sum() == s.size // 2


def test_channel_keeps_whole_channels():
  s = _scores(0, (6, 10), jnp.float32)
  out = np.asarray(sj.Channel(0.3, axis=-1).mask(jnp.abs(s)))
  assert (out.all(axis=0) | ~out.any(axis=0)).all()
  assert out.all(axis=0).sum() == 7
  inp = np.asarray(sj.Channel(0.5, axis=0).mask(jnp.abs(s)))
  assert inp.all(axis=1).sum() == 3


def test_transposable_tiles_count():
  assert patterns.transposable_tiles(2, 4).shape == (90, 16)
  assert patterns.transposable_tiles(1, 4).shape == (24, 16)


def test_transposable_is_nm_both_ways_and_optimal():
  s = jnp.abs(_scores(0, (8, 12), jnp.float32))
  mask = np.asarray(sj.NM(2, 4, transposable=True).mask(s))
  assert (_group_counts(mask, 0, 4) == 2).all()
  assert (_group_counts(mask, 1, 4) == 2).all()
  # Brute-force optimality on the first tile.
  tile = np.asarray(s)[:4, :4]
  best = max(
      (tile * np.array(t).reshape(4, 4)).sum()
      for t in itertools.product((0, 1), repeat=16)
      if all(sum(r) == 2 for r in np.array(t).reshape(4, 4))
      and all(sum(c) == 2 for c in np.array(t).reshape(4, 4).T))
  np.testing.assert_allclose((tile * mask[:4, :4]).sum(), best, rtol=1e-6)


@pytest.mark.parametrize("pattern", [
    sj.NM(2, 4), sj.NM(1, 8), sj.Unstructured(0.7),
    sj.Unstructured(0.5, per_output=True), sj.Block((4, 4), 0.5),
    sj.Channel(0.5), sj.NM(2, 4, transposable=True)])
def test_jit_equals_eager(pattern, maybe_jit):
  s = jnp.abs(_scores(5, (16, 16), jnp.bfloat16))
  eager = pattern.mask(s)
  np.testing.assert_array_equal(maybe_jit(pattern.mask)(s), eager)


@pytest.mark.parametrize("build, message", [
    (lambda: sj.NM(5, 4), "n <= m"),
    (lambda: sj.NM(0, 4), "n >= 1"),
    (lambda: sj.NM(2, 8, transposable=True), "m <= 4"),
    (lambda: sj.Unstructured(1.0), r"\[0, 1\)"),
    (lambda: sj.Unstructured(-0.1), r"\[0, 1\)"),
    (lambda: sj.Block((0, 4), 0.5), "positive"),
    (lambda: sj.Block((4, 4), 0.5, pool="sum"), "pool"),
])
def test_bad_pattern_arguments(build, message):
  with pytest.raises(ValueError, match=message):
    build()


def test_bad_shapes_name_the_path():
  with pytest.raises(ValueError, match=r"'mlp/kernel'.*not divisible by m=4"):
    sj.NM(2, 4).mask(jnp.ones((6, 4)), path="mlp/kernel")
  with pytest.raises(ValueError, match=r"'w'.*must divide"):
    sj.Block((4, 4), 0.5).mask(jnp.ones((6, 8)), path="w")
  with pytest.raises(ValueError, match=r"'w'.*must divide"):
    sj.Block((16, 4), 0.5).mask(jnp.ones((8, 8)), path="w")
  with pytest.raises(ValueError, match="explicit axis"):
    sj.NM(2, 4).mask(jnp.ones((8,)), path="b")
  with pytest.raises(TypeError, match="floating-point"):
    sj.NM(2, 4).mask(jnp.ones((8, 4), jnp.int32), path="w")
  with pytest.raises(TypeError, match="floating-point"):
    sj.Unstructured(0.5).mask(jnp.ones((8, 4), bool), path="w")


def _nan_groups(seed, dtype):
  """Scores (16, 6) with NaNs in about half the entries (and +/-inf)."""
  rng = np.random.default_rng(seed)
  s = rng.standard_normal((16, 6)).astype(np.float32)
  s[rng.random(s.shape) < 0.5] = np.nan
  s[0, 0], s[1, 1] = np.inf, -np.inf
  return jnp.asarray(s, dtype)


@pytest.mark.parametrize("pattern, axis", [
    (sj.NM(2, 4), 1), (sj.NM(1, 4), 1), (sj.NM(3, 4), 1), (sj.NM(1, 8), 1),
    (sj.Unstructured(0.5), None), (sj.Unstructured(0.5, per_output=True), 0)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_groups_never_keep_nan_over_finite(pattern, axis, dtype, maybe_jit):
  s = _nan_groups(7, dtype)
  mask = np.asarray(maybe_jit(pattern.mask)(s))
  nan = np.isnan(np.asarray(s.astype(jnp.float32)))
  if pattern.is_nm:
    groups = (16 // pattern.m, pattern.m, 6)
    mask, nan = mask.reshape(groups), nan.reshape(groups)  # groups: axis 1
    assert (mask.sum(axis=1) == pattern.n).all()  # counts stay exact
  # Wherever a NaN is kept, every finite entry of its group is kept too.
  kept_nan = (mask & nan).any(axis=axis)
  dropped_finite = (~mask & ~nan).any(axis=axis)
  assert not (kept_nan & dropped_finite).any()


def test_three_nans_in_a_group_keep_the_number_and_inf_ranks_first():
  s = jnp.array([[jnp.nan, 1.0], [jnp.nan, jnp.nan], [jnp.nan, jnp.nan],
                 [2.0, jnp.nan]])
  mask = np.asarray(sj.NM(2, 4).mask(s))
  assert mask[3, 0] and mask[0, 1] and mask.sum(axis=0).tolist() == [2, 2]
  top = sj.NM(1, 4, axis=0).mask(jnp.array([1.0, jnp.inf, 2.0, jnp.nan]))
  np.testing.assert_array_equal(top, [0, 1, 0, 0])


@pytest.mark.parametrize("sparsity", [1.5, float("nan"), -0.1, 1.0])
def test_bad_traced_sparsity_raises_never_a_silent_mask(sparsity, maybe_jit):
  fn = maybe_jit(lambda s: sj.Unstructured(s).mask(jnp.arange(8.), "fc/k"))
  with pytest.raises((ValueError, jax.errors.JaxRuntimeError),
                     match=r"Unstructured\.sparsity.*\[0, 1\)"):
    jax.block_until_ready(fn(sparsity))


def test_arguments_checked_at_construction():
  with pytest.raises(TypeError, match=r"NM\.axis must be an int or None"):
    sj.NM(2, 4, axis=1.5)
  with pytest.raises(TypeError, match=r"Channel\.axis must be an int"):
    sj.Channel(0.5, axis=None)
  with pytest.raises(ValueError, match=r"'fc/kernel'.*\[0, 1\)"):
    sj.Unstructured(0.5).with_sparsity(2.0, "fc/kernel")
