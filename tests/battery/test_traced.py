"""Bad hyperparameters that may be traced (sparsity, beta, lambda, schedule
outputs) and bad arguments to schedules, decay, views and method parts.

Under `jit` a bad traced value raises when the compiled call runs: JAX
reports the `ValueError` as a `JaxRuntimeError` that keeps its message.
"""

import jax
import jax.numpy as jnp
import pytest

import sparsejax as sj
from sparsejax import _checks
from sparsejax import decay
from sparsejax import methods
from sparsejax import schedules as sch
from sparsejax import views
from tests.battery.cases import case, check_case, params

PTE = _checks.ParamTypeError
NFW = _checks.NonFiniteWarning
RUN = jax.errors.JaxRuntimeError
RANGE = r"\[0, 1\)"
NAN = jnp.nan
PARAMS = {"fc": {"kernel": jnp.arange(1., 9.).reshape(4, 2)}}
BAD = {"fc": {"kernel": jnp.array([[1., NAN], [2., 3.], [NAN, 4.], [5., 6.]])}}
W = {"w": jnp.array([[1.], [-3.], [2.], [0.5]])}
W_NAN = {"w": jnp.array([[1.], [NAN], [2.], [0.5]])}
MASK = jnp.array([True, False])
PHASES = sch.Phases(100, 10, 10)


def _run(fn, *args):
  """Calls `jax.jit(fn)(*args)` and waits for it (so callbacks have run)."""
  return jax.block_until_ready(jax.jit(fn)(*args))


def _unstructured(s):
  return lambda: _run(
      lambda s: sj.Unstructured(s).mask(jnp.arange(8.), "fc/kernel"), s)


def _decayed(beta):
  return lambda: _run(lambda b: views.decayed(jnp.ones(2), MASK, b), beta)


def _masked_decay_update(tx):
  def call():
    tx.init(W)
    return _run(lambda p: tx.update(p, tx.init(p), p, masks=W)[0], W)
  return call


def _method(**kw):
  return methods.Method(rules=sj.NM(2, 4), **kw)


CASES = [
    # Traced sparsity under jit: raises, never a 0% or 100% mask.
    case("jit-unstructured-above-one", _unstructured(1.5), RUN,
         r"Unstructured\.sparsity", "'fc/kernel'", RANGE),
    case("jit-unstructured-nan", _unstructured(NAN), RUN,
         r"Unstructured\.sparsity", "'fc/kernel'", "nan"),
    case("jit-unstructured-negative", _unstructured(-0.1), RUN,
         r"Unstructured\.sparsity", RANGE),
    case("jit-unstructured-one", _unstructured(1.0), RUN,
         r"Unstructured\.sparsity", RANGE),
    case("jit-block-nan",
         lambda: _run(lambda s: sj.Block((2, 2), s).mask(jnp.ones((4, 4)),
                                                         "w"), NAN),
         RUN, r"Block\.sparsity", "'w'"),
    case("jit-channel-one",
         lambda: _run(lambda s: sj.Channel(s).mask(jnp.ones((4, 4)), "w"),
                      1.0), RUN, r"Channel\.sparsity", "'w'", RANGE),
    case("jit-masks-override",
         lambda: _run(lambda s: sj.compute_masks(
             PARAMS, sj.Unstructured(0.5), sparsity={"fc/kernel": s}), 2.0),
         RUN, "'fc/kernel'", RANGE),
    case("jit-global-sparsity",
         lambda: _run(lambda s: sj.compute_global_masks(
             PARAMS, sj.Unstructured(0.5), s), NAN), RUN, "sparsity", RANGE),
    # Traced beta and lambda.
    case("jit-decayed-beta-two", _decayed(2.0), RUN, "`beta`", r"\[0, 1\]"),
    case("jit-decayed-beta-nan", _decayed(NAN), RUN, "`beta`", "nan"),
    case("jit-decayed-beta-negative", _decayed(-0.5), RUN, "`beta`"),
    case("jit-srste-decay-negative",
         lambda: _run(lambda d: views.srste(jnp.ones(2), MASK, d), -1.0), RUN,
         "`decay`", ">= 0"),
    case("jit-masked-decay-schedule",
         _masked_decay_update(decay.masked_decay(lambda c: c - 1.0)), RUN,
         "`decay`", ">= 0"),
    case("jit-decoupled-lr-schedule",
         _masked_decay_update(decay.decoupled_masked_decay(
             0.1, lambda c: c * NAN)), RUN, "`lr`"),
    case("jit-masked-decay-traced-scalar",
         lambda: _run(lambda d: decay.masked_decay(d).init(W).count, -2.0),
         RUN, "`decay`", ">= 0"),
    case("jit-nmschedule-custom-decay",
         lambda: _run(sch.NMSchedule((2, 4), PHASES, decay=lambda t: t * NAN),
                      50), RUN, r"NMSchedule\.decay", "finite"),
    case("jit-srste-forward-schedule",
         lambda: _run(lambda p: (lambda m: m.view(p, m.init(p)))(_method(
             forward=methods.SRSTE(lambda s: -1.0 - s))), W), RUN, "`decay`"),
    # Non-finite leaves under jit.
    case("jit-masks-nonfinite-error",
         lambda: _run(lambda p: sj.compute_masks(
             p, sj.NM(2, 4), on_nonfinite="error"), BAD), RUN,
         "params at 'fc/kernel'", "non-finite"),
    case("jit-masks-nonfinite-warn",
         lambda: _run(lambda p: sj.compute_masks(p, sj.NM(2, 4)), BAD), NFW,
         "params at 'fc/kernel'", "non-finite"),
    case("jit-global-nonfinite-error",
         lambda: _run(lambda p: sj.compute_global_masks(
             p, sj.Unstructured(0.5), 0.5, on_nonfinite="error"), BAD), RUN,
         "params at 'fc/kernel'", "non-finite"),
    case("jit-masks-scores-nonfinite-warn",
         lambda: _run(lambda s: sj.compute_masks(PARAMS, sj.NM(2, 4),
                                                 scores=s), BAD), NFW,
         "scores at 'fc/kernel'", "non-finite"),
    # Schedules.
    case("poly-final", lambda: sch.polynomial_sparsity(1.5, end_step=10),
         ValueError, "`final`", r"\[0\.0, 1\.0\]"),
    case("poly-final-str", lambda: sch.polynomial_sparsity("0.5", end_step=10),
         PTE, "`final`", "number"),
    case("poly-initial",
         lambda: sch.polynomial_sparsity(0.5, initial=0.7, end_step=10),
         ValueError, "`initial`", r"\[0.0, 0.5\]"),
    case("poly-end-step", lambda: sch.polynomial_sparsity(0.5, begin_step=5,
                                                end_step=5),
         ValueError, "`end_step`", ">= 6"),
    case("poly-frequency",
         lambda: sch.polynomial_sparsity(0.5, end_step=10, frequency=0),
         ValueError, "`frequency`", ">= 1"),
    case("poly-power",
         lambda: sch.polynomial_sparsity(0.5, end_step=10, power=-1),
         ValueError, "`power`"),
    case("phases-total", lambda: sch.Phases(0), ValueError, "`total_steps`",
         ">= 1"),
    case("phases-total-float", lambda: sch.Phases(10.0), PTE, "`total_steps`",
         "int"),
    case("phases-no-sparse-step", lambda: sch.Phases(10, 5, 5), ValueError,
         "dense_steps", "finetune_steps", "total_steps"),
    case("linear-decay-c", lambda: sch.linear_decay(-1.0), ValueError, "`c`",
         ">= 0"),
    case("exponential-decay-c-nan", lambda: sch.exponential_decay(NAN),
         ValueError, "`c`"),
    case("sdgf-not-power-of-two", lambda: sch.sdgf_frames(3, 8), ValueError,
         "stepwise", "power of two"),
    case("sdgf-kind", lambda: sch.sdgf_frames(1, 8, "cubic"), ValueError,
         "`kind`", "cubic"),
    case("sdgf-last-frame", lambda: sch.sdgf_frames(1, 8, [(4, 8), (2, 8)]),
         ValueError, "`kind`", "last frame"),
    case("frame-index-frames", lambda: sch.frame_index(0, PHASES, 0),
         ValueError, "`num_frames`", ">= 1"),
    case("frames-divide",
         lambda: sch.check_frames_divide(32, sch.sdgf_frames(1, 8, "geometric"),
                                         "mlp/kernel"),
         ValueError, "mlp/kernel", "m=64"),
    case("nmschedule-target", lambda: sch.NMSchedule("2:4", PHASES),
         ValueError, "`target`"),
    case("nmschedule-decay", lambda: sch.NMSchedule((2, 4), PHASES,
                                                     decay="cosine"),
         ValueError, "`decay`", "cosine"),
    case("nmschedule-c-with-callable",
         lambda: sch.NMSchedule((2, 4), PHASES, decay=lambda t: 1.0, c=0.1),
         ValueError, "`c`"),
    case("nmschedule-phases", lambda: sch.NMSchedule((2, 4), 100), ValueError,
         "`phases`", "Phases"),
    case("nmschedule-custom-decay-nan",
         lambda: sch.NMSchedule((2, 4), PHASES, decay=lambda t: NAN)(50),
         ValueError, r"NMSchedule\.decay", "finite"),
    # Decay transforms.
    case("masked-decay-negative", lambda: decay.masked_decay(-1.0),
         ValueError, "`decay`", ">= 0"),
    case("masked-decay-str", lambda: decay.masked_decay("0.1"), ValueError,
         "`decay`", "scalar"),
    case("masked-decay-vector", lambda: decay.masked_decay(jnp.ones(2)),
         ValueError, "`decay`", "scalar"),
    case("decoupled-lr-nan", lambda: decay.decoupled_masked_decay(0.1, NAN),
         ValueError, "`lr`"),
    # Views.
    case("decayed-beta", lambda: views.decayed(jnp.ones(2), MASK, 1.5),
         ValueError, "`beta`", r"\[0, 1\]"),
    case("decayed-beta-vector",
         lambda: views.decayed(jnp.ones(2), MASK, jnp.ones(2)), ValueError,
         "`beta`", "scalar"),
    case("decayed-grad",
         lambda: views.decayed(jnp.ones(2), MASK, 0.5, grad="bogus"),
         ValueError, "`grad`", "bogus"),
    case("srste-decay", lambda: views.srste(jnp.ones(2), MASK, -1.0),
         ValueError, "`decay`", ">= 0"),
    case("ste-mask-shape", lambda: views.ste(jnp.ones(2), jnp.ones(3, bool)),
         ValueError, "`mask`", "shape"),
    case("ste-int-weights", lambda: views.ste(jnp.ones(2, jnp.int32), MASK),
         TypeError, "`w`", "floating-point"),
    case("soft-threshold-axis",
         lambda: views.soft_threshold(jnp.ones((4, 4)), 2, 4, axis=2),
         ValueError, "`axis`", "out of range"),
    case("soft-threshold-nm", lambda: views.soft_threshold(jnp.ones(4), 5, 4),
         ValueError, "N:M", "n <= m"),
    case("activation-topk-k",
         lambda: views.activation_topk(jnp.ones((2, 4)), 0), ValueError,
         "`k`", r"\[1, 4\]"),
    # Method parts: forward views and schedules.
    case("srste-part-decay", lambda: methods.SRSTE(-1.0), ValueError,
         "SR-STE decay", ">= 0"),
    case("maskdecay-grad", lambda: methods.MaskDecay(grad="x"), ValueError,
         "grad", "'identity'"),
    case("sste-needs-nm",
         lambda: methods.Method(rules=sj.Unstructured(0.5),
                                forward=methods.SoftThreshold()).init(W),
         TypeError, "S-STE", "'w'"),
    case("poly-part-end-step", lambda: methods.PolynomialSparsity(end_step=0),
         ValueError, "end_step", ">= 1"),
    case("poly-part-initial",
         lambda: methods.PolynomialSparsity(end_step=10, initial=1.0),
         ValueError, "initial", RANGE),
    case("poly-part-needs-sparsity",
         lambda: _method(schedule=methods.PolynomialSparsity(
             end_step=10)).init(W), TypeError, "gradual", "'w'"),
    case("progressive-total-steps",
         lambda: methods.ProgressiveNM(total_steps=0), ValueError,
         "`total_steps`"),
    case("progressive-decay",
         lambda: methods.ProgressiveNM(total_steps=10, decay="cosine"),
         ValueError, "`decay`", "cosine"),
    case("progressive-needs-nm",
         lambda: methods.Method(rules=sj.Unstructured(0.5),
                                schedule=methods.ProgressiveNM(
                                    total_steps=10)).init(W),
         TypeError, "progressive N:M", "'w'"),
    case("method-on-nonfinite", lambda: _method(on_nonfinite="raise"),
         ValueError, "on_nonfinite", "'warn'"),
    case("method-nonfinite-error",
         lambda: _method(on_nonfinite="error").init(W_NAN), ValueError,
         "params at 'w'", "non-finite"),
    case("method-nonfinite-warn", lambda: _method().init(W_NAN), NFW,
         "params at 'w'", "non-finite"),
]


@pytest.mark.parametrize("c", params(CASES))
def test_bad_input(c):
  check_case(c)
