"""DSnoT against a NumPy transcription of the published update rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.masks import check_masks
from sparsejax.oneshot import LayerStats
from sparsejax.oneshot import NonFiniteCalibrationError
from sparsejax.oneshot import accumulate
from sparsejax.oneshot import dsnot_layer
from sparsejax.oneshot import init_stats
from sparsejax.oneshot import prune
from sparsejax.oneshot import prune_from_stats
from sparsejax.oneshot import sparsegpt_layer
from sparsejax.oneshot import wanda_layer
from sparsejax.patterns import Block
from sparsejax.patterns import NM
from sparsejax.patterns import Unstructured

PER_OUTPUT = Unstructured(0.5, per_output=True)
PATTERNS = [PER_OUTPUT, NM(2, 4), NM(4, 8)]


def layer(n_in=64, n_out=8, seqs=2, seq_len=32, seed=0):
  """A layer whose inputs have nonzero means, as in transformer layers."""
  rng = np.random.default_rng(seed)
  mean = rng.normal(size=n_in)
  spread = np.exp(rng.normal(size=n_in) * 0.5)
  x = mean + spread * rng.normal(size=(seqs, seq_len, n_in))
  w = rng.normal(size=(n_in, n_out))
  return x.astype(np.float32), w.astype(np.float32)


def stats_of(x):
  return accumulate(init_stats(x.shape[-1], hessian=False), x)


def numpy_dsnot(w, keep, stats, m=0, max_cycles=50, threshold=0.1, power=1.0):
  """The published DSnoT loop, one output unit at a time (m=0: unstructured).

  Follows the published code, with two documented differences: growth and
  pruning candidates are only the weights really pruned / kept (pointers
  skip the rest and stop when none is left), and kept weights whose
  contribution is exactly 0 sit between the negative and positive ones.
  """
  s = np.asarray(stats.x_sum) / np.float32(stats.samples)
  var = np.maximum(np.asarray(stats.input_variance()), np.finfo(np.float32).tiny)
  norm = np.sqrt(np.asarray(stats.sq_sum))
  keep = np.array(keep).T.copy()
  for unit, row in enumerate(w.T):
    d = row * s
    kept = keep[unit]
    err = np.float32(np.sum(np.where(kept, 0, d)))
    sign0 = np.sign(err)
    metric = np.where(kept, np.float32(0), d)
    if power:
      metric = np.where(metric == 0, 0, metric / var ** np.float32(power))
    grow = [j for j in np.argsort(metric, kind="stable") if not kept[j]]
    lo, hi = 0, len(grow) - 1
    wanda = np.abs(row) * norm
    score = np.where(kept, wanda, np.inf)
    kept_by_wanda = [j for j in np.argsort(score, kind="stable") if kept[j]]
    cut = ([j for j in kept_by_wanda if d[j] < 0]
           + [j for j in kept_by_wanda if d[j] == 0]
           + [j for j in kept_by_wanda if d[j] > 0][::-1])
    cut_lo, cut_hi = 0, len(cut) - 1
    for _ in range(max_cycles):
      if lo > hi or abs(err) <= threshold:
        break
      if err > 0:
        g, hi = grow[hi], hi - 1
      else:
        g, lo = grow[lo], lo + 1
      if m:
        start = g - g % m
        block = score[start:start + m]
        if np.all(np.isinf(block)):
          break
        c = start + int(np.argmin(block))
        if np.sign(err + d[c] - d[g]) != sign0:
          break
        score[c] = np.inf
      else:
        if cut_lo > cut_hi:
          break
        if err < 0:
          c, cut_hi = cut[cut_hi], cut_hi - 1
        else:
          c, cut_lo = cut[cut_lo], cut_lo + 1
      kept[c], kept[g] = False, True
      err = np.float32(np.float32(err + d[c]) - d[g])
  return keep.T


def start_mask(w, stats, pattern):
  return wanda_layer(w, stats.sq_sum, pattern)[1]


def recon_error(x, w, sparse):
  x = x.reshape(-1, x.shape[-1]).astype(np.float64)
  return float(np.linalg.norm(x @ w - x @ np.asarray(sparse, np.float64)))


def m_of(pattern):
  return pattern.m if pattern.is_nm else 0


@pytest.mark.parametrize("pattern", PATTERNS, ids=str)
def test_matches_published_rule(pattern, maybe_jit):
  x, w = layer()
  stats = stats_of(x)
  mask = start_mask(w, stats, pattern)
  new, new_mask = maybe_jit(lambda k, mk, st: dsnot_layer(k, mk, st, pattern))(
      w, mask, stats)
  expected = numpy_dsnot(w, mask, stats, m_of(pattern))
  np.testing.assert_array_equal(new_mask, expected)
  assert np.sum(np.asarray(new_mask) != np.asarray(mask)) >= 8  # it swapped
  np.testing.assert_array_equal(new, np.where(expected, w, 0))


@pytest.mark.parametrize("pattern,options", [
    (PER_OUTPUT, dict(max_cycles=3, update_threshold=0.5,
                      regrow_var_power=2.0)),
    (NM(1, 4), {}),
], ids=str)
def test_matches_published_rule_with_options(pattern, options):
  x, w = layer(seed=1)
  stats = stats_of(x)
  mask = start_mask(w, stats, pattern)
  _, new_mask = dsnot_layer(w, mask, stats, pattern, **options)
  expected = numpy_dsnot(
      w, mask, stats, m_of(pattern), options.get("max_cycles", 50),
      options.get("update_threshold", 0.1),
      options.get("regrow_var_power", 1.0))
  np.testing.assert_array_equal(new_mask, expected)
  assert np.any(np.asarray(new_mask) != np.asarray(mask))


@pytest.mark.parametrize("pattern", PATTERNS[:2], ids=str)
def test_reconstruction_error_improves_on_wanda(pattern):
  # A wide layer, as DSnoT is meant for: 50 swaps are ~10% of the pruned
  # weights of a unit. The rule lowers the expected error, not the squared
  # one, so this is measured, not guaranteed: with 50 swaps in a unit of 32
  # pruned weights it inverts most of the mask and the error grows, and
  # some wide layers get worse too (1024 x 4, seed 0: +5%).
  gains = []
  for seed in range(2):
    x, w = layer(n_in=1024, seqs=4, seed=seed)
    stats = stats_of(x)
    start, mask = wanda_layer(w, stats.sq_sum, pattern)
    new, new_mask = dsnot_layer(w, mask, stats, pattern)
    before, after = recon_error(x, w, start), recon_error(x, w, new)
    assert after <= before * (1 + 1e-6), (seed, before, after)
    gains.append(before / after)
    # Kept counts per output unit and per N:M group are unchanged.
    np.testing.assert_array_equal(np.sum(new_mask, 0), np.sum(mask, 0))
    np.testing.assert_array_equal(pattern.mask(jnp.where(new_mask, 1., 0.)),
                                  new_mask)
  assert np.mean(gains) > 1.05, gains


def test_sparsegpt_start_keeps_updated_weights():
  x, w = layer(seed=3)
  stats = accumulate(init_stats(w.shape[0]), x)
  sparse, mask = sparsegpt_layer(w, stats.hessian(), NM(2, 4))
  new, new_mask = dsnot_layer(w, mask, stats, NM(2, 4), sparse_kernel=sparse)
  kept, grown = mask & new_mask, new_mask & ~mask
  assert np.any(grown)
  np.testing.assert_array_equal(np.asarray(new)[kept], np.asarray(sparse)[kept])
  np.testing.assert_array_equal(np.asarray(new)[grown], w[grown])
  np.testing.assert_array_equal(np.asarray(new)[~new_mask], 0)


def test_registered_pruners_compose_with_prune_from_stats():
  x, w = layer(seed=1)
  params = {"fc": {"kernel": w, "bias": np.zeros(w.shape[1], np.float32)}}
  stats = {"fc/kernel": accumulate(init_stats(w.shape[0]), x)}
  for method, pattern in (("wanda+dsnot", PER_OUTPUT),
                          ("sparsegpt+dsnot", NM(2, 4))):
    base, base_masks = prune_from_stats(params, stats, pattern,
                                        method=method.split("+")[0])
    new, masks = prune_from_stats(params, stats, pattern, method=method)
    check_masks(new, masks)
    mask = masks["fc"]["kernel"]
    np.testing.assert_array_equal(pattern.mask(jnp.where(mask, 1., 0.)), mask)
    refined, refined_mask = dsnot_layer(
        w, base_masks["fc"]["kernel"], stats["fc/kernel"], pattern,
        sparse_kernel=base["fc"]["kernel"])
    np.testing.assert_array_equal(mask, refined_mask)
    np.testing.assert_array_equal(new["fc"]["kernel"], refined)
    assert np.any(mask != base_masks["fc"]["kernel"])


def test_prune_end_to_end_with_nnx_model():
  from flax import nnx
  model = nnx.Linear(8, 4, rngs=nnx.Rngs(0))
  batches = [jax.random.normal(jax.random.key(i), (2, 8, 8)) + 1.
             for i in range(2)]
  _, masks = prune(model, None, batches, NM(2, 4), method="wanda+dsnot",
                   sequential=False)
  np.testing.assert_array_equal(masks["kernel"].reshape(2, 4, -1).sum(1), 2)


def test_stats_count_sequences_and_sums():
  x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
  stats = accumulate(accumulate(init_stats(4), x), x[0])
  assert int(stats.samples) == 3 and int(stats.count) == 9
  both = np.concatenate([x.reshape(-1, 4), x[0]])
  np.testing.assert_allclose(stats.x_sum, both.sum(0))
  np.testing.assert_allclose(stats.input_variance(), both.var(0), rtol=1e-5)


def _bad(case, w, mask, stats):
  pattern, kwargs = PER_OUTPUT, {}
  if case == "stats shape":
    stats = stats._replace(x_sum=stats.x_sum[:-1])
  elif case == "no sums":
    stats = LayerStats(stats.sq_sum, None, stats.count)
  elif case == "mask shape":
    mask = mask[:-4]
  elif case == "mask count":
    mask = mask.at[0, 0].set(~mask[0, 0])
  elif case == "mask of another pattern":
    pattern = NM(2, 4)
  elif case == "block pattern":
    pattern = Block((4, 4), 0.5)
  else:
    kwargs = {"negative threshold": dict(update_threshold=-0.1),
              "negative cycles": dict(max_cycles=-1),
              "float cycles": dict(max_cycles=2.5),
              "negative power": dict(regrow_var_power=-1.0)}[case]
  return dsnot_layer(w, mask, stats, pattern, path="fc/kernel", **kwargs)


@pytest.mark.parametrize("case,match", [
    ("stats shape", "stats.x_sum has shape"),
    ("no sums", "no input sums"),
    ("mask shape", "mask must be a bool array"),
    ("mask count", "does not fit unstructured"),
    ("mask of another pattern", "does not fit 2:4"),
    ("block pattern", "refines unstructured or N:M"),
    ("negative threshold", "update_threshold must be >= 0"),
    ("negative cycles", "max_cycles must be >= 0"),
    ("float cycles", "max_cycles must be an int"),
    ("negative power", "regrow_var_power must be >= 0"),
])
def test_bad_input_names_the_parameter(case, match):
  x, w = layer()
  stats = stats_of(x)
  mask = start_mask(w, stats, PER_OUTPUT)
  with pytest.raises((ValueError, TypeError), match=match):
    _bad(case, jnp.asarray(w), mask, stats)


def test_nonfinite_statistics_raise_before_compute():
  x, w = layer()
  stats = stats_of(x)
  mask = start_mask(w, stats, PER_OUTPUT)
  bad = stats._replace(x_sum=stats.x_sum.at[3].set(jnp.nan))
  with pytest.raises(NonFiniteCalibrationError, match="'fc/kernel'.*x_sum"):
    dsnot_layer(w, mask, bad, PER_OUTPUT, path="fc/kernel")
  with pytest.raises(Exception, match="x_sum holds NaN or inf"):
    jax.jit(lambda st: dsnot_layer(w, mask, st, PER_OUTPUT)[1])(
        bad).block_until_ready()


def test_traced_hyperparameters_are_refused():
  x, w = layer()
  stats = stats_of(x)
  mask = start_mask(w, stats, PER_OUTPUT)
  with pytest.raises(TypeError, match="update_threshold must be a static"):
    jax.jit(lambda t: dsnot_layer(w, mask, stats, PER_OUTPUT,
                                  update_threshold=t)[1])(0.1)
