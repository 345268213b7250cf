"""Bad inputs to patterns, mask trees and scores: each error names the
parameter or leaf and the rule it broke."""

import jax.numpy as jnp
import pytest

import sparsejax as sj
from sparsejax import _checks
from sparsejax import masks as masks_lib
from sparsejax import scores
from tests.battery.cases import case, check_case, params

PTE = _checks.ParamTypeError
NFW = _checks.NonFiniteWarning
RANGE = r"\[0, 1\)"
NAN = jnp.nan
PARAMS = {"fc": {"kernel": jnp.arange(1., 9.).reshape(4, 2),
                 "bias": jnp.ones(2)}}
BAD = {"fc": {"kernel": jnp.array([[1., NAN], [2., 3.], [NAN, 4.], [5., 6.]]),
              "bias": jnp.ones(2)}}
U_RULE = sj.Rule(r".*kernel", sj.Unstructured(0.5))
NM_RULE = sj.Rule(r".*kernel", sj.NM(2, 4))


def _scores_with(value):
  return {"fc": {"kernel": jnp.ones((4, 2)).at[0, 0].set(value),
                 "bias": jnp.ones(2)}}


CASES = [
    # N:M: counts, axis, flags at construction; shapes at mask time.
    case("nm-n-float", lambda: sj.NM(2.0, 4), PTE, r"NM\.n", "int"),
    case("nm-m-str", lambda: sj.NM(2, "4"), PTE, r"NM\.m", "int"),
    case("nm-n-zero", lambda: sj.NM(0, 4), ValueError, "NM", "n >= 1"),
    case("nm-n-above-m", lambda: sj.NM(5, 4), ValueError, "NM", "n <= m"),
    case("nm-axis-float", lambda: sj.NM(2, 4, axis=1.5), PTE, r"NM\.axis",
         "int or None"),
    case("nm-axis-str", lambda: sj.NM(2, 4, axis="0"), PTE, r"NM\.axis"),
    case("nm-transposable-int", lambda: sj.NM(2, 4, transposable=1), PTE,
         r"NM\.transposable", "bool"),
    case("nm-transposable-m8", lambda: sj.NM(2, 8, transposable=True),
         ValueError, "transposable", "m <= 4"),
    case("nm-axis-out-of-range",
         lambda: sj.NM(2, 4, axis=3).mask(jnp.ones((8, 4)), "fc/kernel"),
         ValueError, "axis 3", "out of range", "'fc/kernel'"),
    case("nm-not-divisible",
         lambda: sj.NM(2, 4).mask(jnp.ones((6, 4)), "fc/kernel"), ValueError,
         "'fc/kernel'", "not divisible by m=4"),
    case("nm-1d-needs-axis", lambda: sj.NM(2, 4).mask(jnp.ones(8), "fc/bias"),
         ValueError, "'fc/bias'", "explicit axis"),
    case("nm-int-scores",
         lambda: sj.NM(2, 4).mask(jnp.ones((8, 4), jnp.int32), "w"), TypeError,
         "scores", "floating-point", "'w'"),
    case("nm-transposable-shape",
         lambda: sj.NM(2, 4, transposable=True).mask(jnp.ones((8, 6)), "w"),
         ValueError, "transposable", "'w'"),
    # Unstructured.
    case("unstructured-one", lambda: sj.Unstructured(1.0), ValueError,
         r"Unstructured\.sparsity", RANGE),
    case("unstructured-above-one", lambda: sj.Unstructured(1.5), ValueError,
         r"Unstructured\.sparsity", RANGE),
    case("unstructured-negative", lambda: sj.Unstructured(-0.1), ValueError,
         r"Unstructured\.sparsity", RANGE),
    case("unstructured-nan", lambda: sj.Unstructured(float("nan")),
         ValueError, r"Unstructured\.sparsity", RANGE, "nan"),
    case("unstructured-inf", lambda: sj.Unstructured(float("inf")),
         ValueError, r"Unstructured\.sparsity", RANGE),
    case("unstructured-str", lambda: sj.Unstructured("0.5"), PTE,
         r"Unstructured\.sparsity", "number"),
    case("unstructured-none", lambda: sj.Unstructured(None), PTE,
         r"Unstructured\.sparsity", "number"),
    case("unstructured-bool", lambda: sj.Unstructured(True), PTE,
         r"Unstructured\.sparsity", "number"),
    case("unstructured-array-nan", lambda: sj.Unstructured(jnp.array(NAN)),
         ValueError, r"Unstructured\.sparsity", RANGE),
    case("unstructured-per-output-str",
         lambda: sj.Unstructured(0.5, per_output="yes"), PTE,
         r"Unstructured\.per_output", "bool"),
    case("unstructured-per-output-1d",
         lambda: sj.Unstructured(0.5, per_output=True).mask(jnp.ones(4), "b"),
         ValueError, "per-output", "2 dims", "'b'"),
    # Block.
    case("block-zero", lambda: sj.Block((0, 4), 0.5), ValueError,
         r"Block\.block", "positive"),
    case("block-float", lambda: sj.Block((2.0, 4), 0.5), PTE, r"Block\.block",
         "ints"),
    case("block-scalar", lambda: sj.Block(4, 0.5), PTE, r"Block\.block",
         r"\(bh, bw\)"),
    case("block-three-dims", lambda: sj.Block((2, 2, 2), 0.5), PTE,
         r"Block\.block", "two"),
    case("block-sparsity-one", lambda: sj.Block((2, 2), 1.0), ValueError,
         r"Block\.sparsity", RANGE),
    case("block-pool", lambda: sj.Block((2, 2), 0.5, pool="sum"), ValueError,
         r"Block\.pool", "'mean', 'max'"),
    case("block-not-dividing",
         lambda: sj.Block((4, 4), 0.5).mask(jnp.ones((6, 8)), "w"), ValueError,
         "'w'", "must divide"),
    case("block-1d", lambda: sj.Block((2, 2), 0.5).mask(jnp.ones(8), "b"),
         ValueError, "'b'", "at least 2 dims"),
    # Channel.
    case("channel-sparsity-negative", lambda: sj.Channel(-0.5), ValueError,
         r"Channel\.sparsity", RANGE),
    case("channel-axis-float", lambda: sj.Channel(0.5, axis=0.5), PTE,
         r"Channel\.axis", "int"),
    case("channel-axis-out-of-range",
         lambda: sj.Channel(0.5, axis=5).mask(jnp.ones((4, 4)), "w"),
         ValueError, "channel axis 5", "out of range", "'w'"),
    # Per-leaf sparsity.
    case("with-sparsity-fixed-density",
         lambda: sj.NM(2, 4).with_sparsity(0.5, "fc/kernel"), ValueError,
         "fixed density", "'fc/kernel'"),
    case("with-sparsity-out-of-range",
         lambda: sj.Unstructured(0.5).with_sparsity(1.2, "fc/kernel"),
         ValueError, r"Unstructured\.sparsity", "'fc/kernel'", RANGE),
    # Mask trees.
    case("masks-override-out-of-range",
         lambda: sj.compute_masks(PARAMS, U_RULE, sparsity={"fc/kernel": 1.5}),
         ValueError, "'fc/kernel'", RANGE),
    case("masks-override-nan",
         lambda: sj.compute_masks(PARAMS, U_RULE, sparsity=float("nan")),
         ValueError, "'fc/kernel'", RANGE),
    case("masks-override-unknown-leaf",
         lambda: sj.compute_masks(PARAMS, U_RULE, sparsity={"fc/kernal": 0.5}),
         ValueError, "fc/kernal", "no rule targets"),
    case("masks-override-on-nm",
         lambda: sj.compute_masks(PARAMS, NM_RULE, sparsity=0.5), ValueError,
         "fixed density", "'fc/kernel'"),
    case("masks-on-nonfinite-choice",
         lambda: sj.compute_masks(PARAMS, NM_RULE, on_nonfinite="raise"),
         ValueError, "on_nonfinite", "'warn'"),
    case("masks-nan-error",
         lambda: sj.compute_masks(BAD, NM_RULE, on_nonfinite="error"),
         ValueError, "params at 'fc/kernel'", "2 non-finite"),
    case("masks-nan-warn", lambda: sj.compute_masks(BAD, NM_RULE), NFW,
         "params at 'fc/kernel'", "non-finite"),
    case("masks-inf-scores-error",
         lambda: sj.compute_masks(PARAMS, NM_RULE, scores=_scores_with(
             jnp.inf), on_nonfinite="error"), ValueError,
         "scores at 'fc/kernel'", "non-finite"),
    case("masks-score-shape",
         lambda: sj.compute_masks(PARAMS, NM_RULE, scores={
             "fc": {"kernel": jnp.ones((8, 2)), "bias": jnp.ones(2)}}),
         ValueError, "score at 'fc/kernel'", "shape"),
    case("global-nan-error",
         lambda: sj.compute_global_masks(BAD, U_RULE, 0.5,
                                         on_nonfinite="error"),
         ValueError, "params at 'fc/kernel'", "non-finite"),
    case("global-sparsity-one",
         lambda: sj.compute_global_masks(PARAMS, U_RULE, 1.0), ValueError,
         "sparsity", RANGE),
    case("check-masks-shape",
         lambda: sj.check_masks({"w": jnp.ones((2, 2))},
                                {"w": jnp.ones((2, 3), bool)}),
         ValueError, "mask at 'w'", "shape"),
    case("check-masks-dtype",
         lambda: sj.check_masks({"w": jnp.ones((2, 2))},
                                {"w": jnp.ones((2, 2))}),
         TypeError, "mask at 'w'", "bool"),
    case("masks-do-not-mirror",
         lambda: sj.apply_masks({"w": jnp.ones(2)}, {"v": jnp.ones(2, bool)}),
         ValueError, "do not mirror", "'w'"),
    # Scores.
    case("saliency-needs-grads", lambda: scores.saliency(PARAMS), ValueError,
         "saliency", "grads"),
    case("movement-needs-grads", lambda: scores.movement(PARAMS), ValueError,
         "movement", "grads"),
    case("random-needs-key", lambda: scores.random(PARAMS), ValueError,
         "random", "key"),
    case("wanda-sq-sums-shape",
         lambda: scores.wanda(jnp.ones((4, 2)), jnp.ones(2)), ValueError,
         "wanda sq_sums", r"\(in,\)"),
    case("wanda-sq-sums-negative",
         lambda: scores.wanda(jnp.ones((2, 2)), jnp.array([1., -1.])),
         ValueError, "wanda sq_sums", ">= 0"),
]


@pytest.mark.parametrize("c", params(CASES))
def test_bad_input(c):
  check_case(c)
