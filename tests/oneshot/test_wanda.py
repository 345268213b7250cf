"""Wanda and one-shot magnitude pruning on single layers and params trees."""

import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.masks import compute_masks
from sparsejax.masks import is_dense
from sparsejax.oneshot import accumulate
from sparsejax.oneshot import init_stats
from sparsejax.oneshot import magnitude_layer
from sparsejax.oneshot import prune_from_stats
from sparsejax.oneshot import wanda_layer
from sparsejax.oneshot import wanda_scores
from sparsejax.patterns import Block
from sparsejax.patterns import NM
from sparsejax.patterns import Unstructured
from sparsejax.rules import Rule


def layer(n_in=32, n_out=12, tokens=64, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(tokens, n_in)) * np.exp(rng.normal(size=n_in))
  w = rng.normal(size=(n_in, n_out))
  return x.astype(np.float32), w.astype(np.float32)


def numpy_wanda_per_output(w, x, sparsity):
  """Published Wanda in NumPy: prune the lowest scores of each output unit."""
  score = np.abs(w) * np.sqrt(np.sum(x.astype(np.float64) ** 2, axis=0))[
      :, None]
  keep = np.ones_like(w, bool)
  k = int(sparsity * w.shape[0])
  order = np.argsort(score, axis=0, kind="stable")
  np.put_along_axis(keep, order[:k], False, axis=0)
  return keep


def test_scores_are_weight_times_input_norm():
  x, w = layer()
  scores = wanda_scores(jnp.asarray(w), jnp.sum(jnp.asarray(x) ** 2, axis=0))
  expected = np.abs(w) * np.linalg.norm(x, axis=0)[:, None]
  np.testing.assert_allclose(np.asarray(scores), expected, rtol=1e-5)


def test_per_output_unstructured_matches_numpy(maybe_jit):
  x, w = layer()
  sq = jnp.sum(jnp.asarray(x) ** 2, axis=0)
  fn = maybe_jit(lambda w, sq: wanda_layer(
      w, sq, Unstructured(0.5, per_output=True)))
  new, keep = fn(jnp.asarray(w), sq)
  np.testing.assert_array_equal(np.asarray(keep),
                                numpy_wanda_per_output(w, x, 0.5))
  assert np.all(np.asarray(keep).sum(axis=0) == 16)
  np.testing.assert_array_equal(np.asarray(new), np.where(keep, w, 0))


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_nm_validity(maybe_jit, n, m):
  x, w = layer(seed=1)
  sq = jnp.sum(jnp.asarray(x) ** 2, axis=0)
  new, keep = maybe_jit(lambda w, sq: wanda_layer(w, sq, NM(n, m)))(
      jnp.asarray(w), sq)
  groups = np.asarray(keep).reshape(32 // m, m, 12)
  assert np.all(groups.sum(axis=1) == n)
  # Within each group the kept entries have the largest scores.
  scores = np.asarray(wanda_scores(jnp.asarray(w), sq)).reshape(32 // m, m, 12)
  kept_min = np.where(groups, scores, np.inf).min(axis=1)
  pruned_max = np.where(groups, -np.inf, scores).max(axis=1)
  assert np.all(kept_min >= pruned_max)
  assert np.all((np.asarray(new) != 0) <= np.asarray(keep))


def test_activation_norms_change_the_choice_versus_magnitude():
  w = jnp.array([[1.0], [2.0], [3.0], [4.0]])
  sq = jnp.array([100.0, 100.0, 0.01, 0.01])
  _, keep_wanda = wanda_layer(w, sq, NM(2, 4))
  _, keep_magnitude = magnitude_layer(w, NM(2, 4))
  np.testing.assert_array_equal(np.asarray(keep_wanda[:, 0]),
                                [True, True, False, False])
  np.testing.assert_array_equal(np.asarray(keep_magnitude[:, 0]),
                                [False, False, True, True])


def test_magnitude_layer_matches_compute_masks():
  _, w = layer(seed=2)
  params = {"fc": {"kernel": jnp.asarray(w)}}
  for pattern in (NM(2, 4), Unstructured(0.6), Block((4, 4), 0.5)):
    new, keep = magnitude_layer(params["fc"]["kernel"], pattern)
    expected = compute_masks(params, pattern)["fc"]["kernel"]
    np.testing.assert_array_equal(np.asarray(keep), np.asarray(expected))
    np.testing.assert_array_equal(np.asarray(new), np.where(expected, w, 0))


def test_bfloat16_kernel_keeps_its_dtype():
  x, w = layer(seed=3)
  new, _ = wanda_layer(jnp.asarray(w, jnp.bfloat16),
                       jnp.sum(jnp.asarray(x) ** 2, axis=0), NM(2, 4))
  assert new.dtype == jnp.bfloat16


@pytest.mark.parametrize("kernel_shape,sq_shape,pattern,match", [
    ((6, 4), (6,), NM(2, 4), r"'fc/kernel'.*not divisible by m=4"),
    ((8, 4), (6,), NM(2, 4), r"'fc/kernel'.*statistics have shape \(6,\)"),
    ((8, 4, 2), (8,), NM(2, 4), r"'fc/kernel'.*2-D"),
])
def test_bad_input_errors_name_the_layer(kernel_shape, sq_shape, pattern,
                                         match):
  with pytest.raises(ValueError, match=match):
    wanda_layer(jnp.ones(kernel_shape), jnp.ones(sq_shape), pattern,
                path="fc/kernel")


def test_prune_from_stats_over_a_params_tree():
  x, w = layer(seed=4)
  params = {"params": {"fc": {"kernel": jnp.asarray(w), "bias": jnp.ones(12)},
                       "head": {"kernel": jnp.ones((12, 3))}}}
  stats = {"params/fc/kernel": accumulate(init_stats(32, hessian=False),
                                          jnp.asarray(x))}
  rules = [Rule(r".*head.*", None), Rule(r".*kernel", NM(2, 4))]
  new, masks = prune_from_stats(params, stats, rules, method="wanda")
  _, keep = wanda_layer(jnp.asarray(w), stats["params/fc/kernel"].sq_sum,
                        NM(2, 4))
  np.testing.assert_array_equal(np.asarray(masks["params"]["fc"]["kernel"]),
                                np.asarray(keep))
  assert is_dense(masks["params"]["fc"]["bias"])
  assert is_dense(masks["params"]["head"]["kernel"])
  np.testing.assert_array_equal(np.asarray(new["params"]["head"]["kernel"]),
                                np.ones((12, 3)))
  with pytest.raises(ValueError, match="'params/fc/kernel'.*never reached"):
    prune_from_stats(params, {}, rules, method="wanda")
  with pytest.raises(ValueError, match="method must be one of"):
    prune_from_stats(params, stats, rules, method="obs")
