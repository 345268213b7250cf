"""Per-layer sparsity distributions: totals, ERK shape, dense fallback."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj

PARAMS = {
    "first": {"kernel": jnp.ones((8, 64))},
    "mid": {"kernel": jnp.ones((256, 256))},
    "wide": {"kernel": jnp.ones((64, 512))},
    "last": {"kernel": jnp.ones((256, 16))},
    "bias": jnp.ones(16),
}
RULES = [sj.Rule(r".*kernel", sj.Unstructured(0.5))]


def _kept_total(dist):
  masks = sj.compute_masks(PARAMS, RULES, sparsity=dist)
  summary = sj.summarize(PARAMS, masks, show=False)
  return summary, [r for r in summary.leaves if r.pattern != "dense"]


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.97])
@pytest.mark.parametrize("method", ["uniform", "erk"])
def test_totals_equal_global_target(method, target):
  dist = getattr(sj.distributions, method)(PARAMS, RULES, target)
  summary, masked = _kept_total(dist)
  total = sum(r.size for r in masked)
  # Each leaf rounds its pruned count down: at most one entry per leaf.
  assert abs(summary.masked_sparsity - target) <= len(masked) / total + 1e-9


def test_erk_formula_and_dense_fallback():
  dist = sj.distributions.erk(PARAMS, RULES, 0.9)
  # The smallest layer would need density > 1 and becomes dense.
  assert dist["first/kernel"] == 0.0
  rest = ["mid/kernel", "wide/kernel", "last/kernel"]
  eps = [(1 - dist[p]) / (sum(PARAMS[p.split("/")[0]]["kernel"].shape) /
                          math.prod(PARAMS[p.split("/")[0]]["kernel"].shape))
         for p in rest]
  np.testing.assert_allclose(eps, eps[0], rtol=1e-9)


def test_erk_power_zero_is_uniform_without_cap():
  dist = sj.distributions.erk(PARAMS, RULES, 0.6, power=0.0)
  np.testing.assert_allclose(list(dist.values()), 0.6, rtol=1e-9)


def test_fixed_overrides_keep_total():
  dist = sj.distributions.erk(PARAMS, RULES, 0.9, fixed={"last/kernel": 0.5})
  assert dist["last/kernel"] == 0.5
  summary, masked = _kept_total(dist)
  assert abs(summary.masked_sparsity - 0.9) <= 4 / sum(r.size for r in masked)


def test_bad_targets():
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    sj.distributions.erk(PARAMS, RULES, 1.0)
  with pytest.raises(ValueError, match="matches no targeted leaf"):
    sj.distributions.uniform(PARAMS, RULES, 0.5, fixed={"nope": 0.1})
  with pytest.raises(ValueError, match="target no leaf"):
    sj.distributions.uniform(PARAMS, [sj.Rule("x", sj.Unstructured(0.5))], 0.5)
  with pytest.raises(ValueError, match="fixed density"):
    sj.compute_masks(PARAMS, [sj.Rule(r".*kernel", sj.NM(2, 4))],
                     sparsity=0.5)
