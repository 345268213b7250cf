"""Tests for sparsejax.schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax import schedules as sch


# ----------------------------------------------------------------------------
# Gradual magnitude pruning.
# ----------------------------------------------------------------------------


def _gmp_reference(t, final, initial, begin, end, freq, power):
  if t < begin:
    return initial
  if t >= end:
    return final
  last = begin + ((t - begin) // freq) * freq
  return final + (initial - final) * (1 - (last - begin) / (end - begin))**power


@pytest.mark.parametrize("freq", [1, 7, 100])
def test_polynomial_sparsity_values(freq, maybe_jit):
  kw = dict(final=0.9, initial=0.1, begin_step=100, end_step=1100,
            frequency=freq)
  s = maybe_jit(sch.polynomial_sparsity(**kw))
  steps = [0, 99, 100, 101, 150, 199, 200, 600, 1099, 1100, 5000]
  got = [float(s(jnp.int32(t))) for t in steps]
  want = [_gmp_reference(t, 0.9, 0.1, 100, 1100, freq, 3) for t in steps]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_polynomial_sparsity_known_points():
  s = sch.polynomial_sparsity(0.8, end_step=1000)
  assert float(s(0)) == 0.0
  # Halfway: 0.8 * (1 - 0.5**3) = 0.7.
  np.testing.assert_allclose(float(s(500)), 0.7, rtol=1e-6)
  np.testing.assert_allclose(float(s(1000)), 0.8, rtol=1e-6)
  vals = np.asarray(jax.vmap(s)(jnp.arange(1200)))
  assert (np.diff(vals) >= 0).all()


def test_polynomial_sparsity_constant_between_updates():
  s = sch.polynomial_sparsity(0.5, begin_step=10, end_step=110, frequency=25)
  vals = np.asarray(jax.vmap(s)(jnp.arange(0, 120)))
  changes = np.nonzero(np.diff(vals))[0] + 1
  np.testing.assert_array_equal(changes, [35, 60, 85, 110])
  np.testing.assert_allclose(vals[35], 0.5 - 0.5 * 0.75**3, rtol=1e-6)


@pytest.mark.parametrize("kw,match", [
    (dict(final=1.5, end_step=10), "final"),
    (dict(final=0.5, initial=0.6, end_step=10), "initial"),
    (dict(final=0.5, begin_step=10, end_step=10), "end_step"),
    (dict(final=0.5, end_step=10, frequency=0), "frequency"),
    (dict(final=0.5, begin_step=-1, end_step=10), "begin_step"),
])
def test_polynomial_sparsity_validation(kw, match):
  with pytest.raises(ValueError, match=match):
    sch.polynomial_sparsity(**kw)


# ----------------------------------------------------------------------------
# Phases.
# ----------------------------------------------------------------------------


def test_phase_boundaries(maybe_jit):
  p = sch.Phases(total_steps=100, dense_steps=10, finetune_steps=30)
  assert (p.sparse_begin, p.sparse_end, p.sparse_steps) == (10, 70, 60)
  phase = maybe_jit(p.phase)
  steps = (0, 9, 10, 11, 69, 70, 99, 100, 10**9)
  got = [int(phase(jnp.int32(t))) for t in steps]
  assert got == [0, 0, 1, 1, 1, 2, 2, 2, 2]
  sparse_step = maybe_jit(p.sparse_step)
  assert [int(sparse_step(t)) for t in (0, 10, 11, 69, 80)] == [0, 0, 1, 59, 70]


def test_phases_without_dense_or_finetune():
  p = sch.Phases(10)
  assert int(p.phase(0)) == sch.SPARSE
  assert int(p.phase(9)) == sch.SPARSE
  assert int(p.phase(10)) == sch.FINETUNE


@pytest.mark.parametrize("kw,match", [
    (dict(total_steps=10, dense_steps=6, finetune_steps=4), "total_steps"),
    (dict(total_steps=10, dense_steps=20), "total_steps"),
    (dict(total_steps=0), "total_steps"),
    (dict(total_steps=10, dense_steps=-1), "dense_steps"),
    (dict(total_steps=10, finetune_steps=2.5), "finetune_steps"),
])
def test_phases_validation(kw, match):
  with pytest.raises(ValueError, match=match):
    sch.Phases(**kw)


# ----------------------------------------------------------------------------
# Mask decay.
# ----------------------------------------------------------------------------


def test_linear_and_exponential_decay():
  lin, ex = sch.linear_decay(1e-2), sch.exponential_decay(1e-2)
  ts = jnp.array([0, 1, 50, 100, 1000])
  np.testing.assert_allclose(jax.vmap(lin)(ts), [1.0, 0.99, 0.5, 0.0, 0.0],
                             atol=1e-6)
  np.testing.assert_allclose(jax.vmap(ex)(ts), np.exp(-1e-2 * np.asarray(ts)),
                             rtol=1e-6)
  # Published defaults.
  np.testing.assert_allclose(float(sch.linear_decay()(1000)), 0.2, rtol=1e-5)
  np.testing.assert_allclose(float(sch.exponential_decay()(10_000)), np.exp(-1),
                             rtol=1e-6)
  with pytest.raises(ValueError, match="`c`"):
    sch.linear_decay(-1.0)


# ----------------------------------------------------------------------------
# Structure-decay frames.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("n,m,kind,want", [
    (1, 8, "stepwise", ((7, 8), (4, 8), (2, 8), (1, 8))),
    (1, 16, "stepwise", ((15, 16), (8, 16), (4, 16), (2, 16), (1, 16))),
    (2, 4, "stepwise", ((3, 4), (2, 4))),
    (1, 32, "stepwise", ((31, 32), (16, 32), (8, 32), (4, 32), (2, 32),
                         (1, 32))),
    (2, 16, "stepwise", ((15, 16), (8, 16), (4, 16), (2, 16))),
    (4, 4, "stepwise", ((4, 4),)),
    (1, 8, "geometric", ((8, 64), (4, 32), (2, 16), (1, 8))),
    (2, 4, "geometric", ((16, 32), (8, 16), (4, 8), (2, 4))),
    (1, 4, [(3, 4), [1, 2], (1, 4)], ((3, 4), (1, 2), (1, 4))),
])
def test_sdgf_frames(n, m, kind, want):
  frames = sch.sdgf_frames(n, m, kind)
  assert frames == want
  if kind == "stepwise":
    assert len(frames) == int(np.log2(m // n)) + 1


@pytest.mark.parametrize("args,match", [
    ((3, 8, "stepwise"), "power of two"),
    ((5, 4, "stepwise"), "`n`"),
    ((0, 4, "geometric"), "`n`"),
    ((1, 8, "cubic"), "kind"),
    ((1, 8, []), "empty"),
    ((1, 8, [(2, 8), (2, 8)]), "target"),
    ((1, 8, [(9, 8), (1, 8)]), "frame 0"),
    ((1, 8, [(1, 2, 3)]), "frame 0"),
])
def test_sdgf_frames_validation(args, match):
  with pytest.raises(ValueError, match=match):
    sch.sdgf_frames(*args)


def test_frame_index_equal_frames():
  p = sch.Phases(total_steps=100, dense_steps=10, finetune_steps=10)
  idx = np.asarray(jax.vmap(lambda t: sch.frame_index(t, p, 4))(
      jnp.arange(120)))
  assert (idx[:30] == 0).all()  # Dense steps report frame 0.
  sizes = np.bincount(idx[10:90], minlength=4)
  np.testing.assert_array_equal(sizes, [20, 20, 20, 20])
  assert (idx[90:] == 3).all()  # Fine-tune stays on the last frame.
  np.testing.assert_array_equal(np.nonzero(np.diff(idx))[0] + 1, [30, 50, 70])


def test_frame_index_uneven_split():
  p = sch.Phases(total_steps=10)
  idx = np.asarray(jax.vmap(lambda t: sch.frame_index(t, p, 4))(
      jnp.arange(10)))
  np.testing.assert_array_equal(idx, [0, 0, 0, 1, 1, 2, 2, 2, 3, 3])


def test_frame_index_large_steps_do_not_overflow():
  p = sch.Phases(total_steps=2_000_000_000)
  f = jax.jit(lambda t: sch.frame_index(t, p, 5))
  assert int(f(jnp.int32(1_999_999_999))) == 4
  assert int(f(jnp.int32(399_999_999))) == 0
  assert int(f(jnp.int32(400_000_000))) == 1


def test_switch_frames_selects_static_frame():
  frames = sch.sdgf_frames(1, 8)
  w = jnp.arange(16.0)

  def fn(n, m, w):
    assert isinstance(n, int) and isinstance(m, int)  # Static in each branch.
    return w * n + m

  f = jax.jit(lambda i, w: sch.switch_frames(i, frames, fn, w))
  for i, (n, m) in enumerate(frames):
    np.testing.assert_array_equal(f(jnp.int32(i), w), w * n + m)
  # Batched indices (vmap turns the switch into a select).
  out = jax.vmap(lambda i: sch.switch_frames(i, frames, fn, w))(jnp.arange(4))
  np.testing.assert_array_equal(out[2], w * 2 + 8)
  # One frame: a direct call.
  assert sch.switch_frames(0, ((2, 4),), lambda n, m: n * 10 + m) == 24


def test_check_frames_divide():
  sch.check_frames_divide(64, sch.sdgf_frames(1, 8, "geometric"), "a/kernel")
  with pytest.raises(ValueError, match="mlp/kernel.*m=64"):
    sch.check_frames_divide(32, sch.sdgf_frames(1, 8, "geometric"),
                            "mlp/kernel")
  sch.check_frames_divide(8, sch.sdgf_frames(1, 8, "stepwise"), "x")
  with pytest.raises(ValueError, match="`x`|x:"):
    sch.check_frames_divide(12, sch.sdgf_frames(1, 8, "stepwise"), "x")


# ----------------------------------------------------------------------------
# NMSchedule.
# ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::sparsejax.schedules.ScheduleWarning")
def test_nm_schedule_progressive(maybe_jit):
  sched = sch.NMSchedule(target=(1, 8), phases=sch.Phases(100, 10, 10),
                         structure="stepwise", decay="linear", c=0.01)
  call = maybe_jit(sched)
  expect = {  # step: (phase, frame, n, m, beta, sparsity)
      0: (0, 0, 7, 8, 1.0, 0.0),
      9: (0, 0, 7, 8, 1.0, 0.0),
      10: (1, 0, 7, 8, 1.0, 1 / 8),
      29: (1, 0, 7, 8, 0.81, 1 / 8),
      30: (1, 1, 4, 8, 0.8, 0.5),
      50: (1, 2, 2, 8, 0.6, 0.75),
      89: (1, 3, 1, 8, 0.21, 0.875),
      90: (2, 3, 1, 8, 0.0, 0.875),
      1000: (2, 3, 1, 8, 0.0, 0.875),
  }
  for step, want in expect.items():
    st = call(jnp.int32(step))
    assert st.phase.dtype == jnp.int32 and st.n.dtype == jnp.int32
    assert st.beta.dtype == jnp.float32
    got = (int(st.phase), int(st.frame), int(st.n), int(st.m), float(st.beta),
           float(st.sparsity))
    np.testing.assert_allclose(got, want, atol=1e-6, err_msg=str(step))


def test_nm_schedule_defaults_and_decay_kinds():
  p = sch.Phases(20_000, dense_steps=1000)
  hard = sch.NMSchedule((2, 4), p)
  assert hard.frames == ((2, 4),) and hard.num_frames == 1
  assert float(hard(1000).beta) == 0.0 and float(hard(999).beta) == 1.0
  np.testing.assert_allclose(float(hard(5000).sparsity), 0.5)
  # Without `c` the rate comes from the 19 000-step sparse phase: beta
  # reaches end_beta = 0.01 as it ends.
  ex = sch.NMSchedule((1, 32), p, decay="exponential")
  np.testing.assert_allclose(float(ex(11_000).beta),
                             np.exp(-np.log(100) * 10_000 / 19_000), rtol=1e-5)
  lin = sch.NMSchedule((1, 32), p, decay="linear")
  np.testing.assert_allclose(float(lin(1500).beta), 1 - 0.99 * 500 / 19_000,
                             rtol=1e-6)
  # The published rates, given explicitly, are kept.
  with pytest.warns(sch.ScheduleWarning):
    ex = sch.NMSchedule((1, 32), p, decay="exponential", c=1e-4)
  np.testing.assert_allclose(float(ex(11_000).beta), np.exp(-1.0), rtol=1e-6)
  lin = sch.NMSchedule((1, 32), p, decay="linear", c=8e-4)
  np.testing.assert_allclose(float(lin(1500).beta), 1 - 8e-4 * 500, rtol=1e-6)
  # Any optax schedule, clipped to [0, 1].
  cos = sch.NMSchedule((1, 32), p, decay=optax.cosine_decay_schedule(1.0, 100))
  np.testing.assert_allclose(float(cos(1050).beta), 0.5, atol=1e-6)
  up = sch.NMSchedule((1, 32), p, decay=lambda t: 2.0 - t * 0.0)
  assert float(up(2000).beta) == 1.0
  geo = sch.NMSchedule((1, 8), sch.Phases(40), structure="geometric")
  assert [int(geo(t).m) for t in (0, 10, 20, 30)] == [64, 32, 16, 8]
  assert [int(geo(t).n) for t in (0, 10, 20, 30)] == [8, 4, 2, 1]


def test_nm_schedule_table():
  sched = sch.NMSchedule((1, 8), sch.Phases(40, 4, 4), structure="stepwise",
                         decay="exponential", c=0.1)
  steps = np.arange(40)
  tab = sched.table(steps)
  assert isinstance(tab, sch.ScheduleState)
  assert all(isinstance(x, np.ndarray) and x.shape == (40,) for x in tab)
  for t in (0, 4, 13, 36, 39):
    st = sched(t)
    for name, col in zip(tab._fields, tab):
      np.testing.assert_allclose(col[t], np.asarray(st._asdict()[name]),
                                 err_msg=f"{name}@{t}")


def test_nm_schedule_accepts_pattern_like_target():
  class Pattern:
    n, m = 2, 8

  sched = sch.NMSchedule(Pattern(), sch.Phases(10), structure="stepwise")
  assert sched.target == (2, 8)
  assert sched.frames == ((7, 8), (4, 8), (2, 8))


def test_nm_schedule_is_hashable_and_static():
  a = sch.NMSchedule((1, 4), sch.Phases(10), structure=[(3, 4), (1, 4)])
  b = sch.NMSchedule((1, 4), sch.Phases(10), structure=((3, 4), (1, 4)))
  assert a == b and hash(a) == hash(b)
  f = jax.jit(lambda s, t: s(t).n, static_argnums=0)
  assert int(f(a, 9)) == 1


@pytest.mark.parametrize("kw,match", [
    (dict(target=(5, 4)), "`n`"),
    (dict(target=3), "target"),
    (dict(phases=10), "phases"),
    (dict(structure="spiral"), "kind"),
    (dict(decay="cosine"), "decay"),
    (dict(decay=None, c=0.1), "`c`"),
    (dict(decay="linear", c=-0.1), "`c`"),
    (dict(target=(3, 8), structure="stepwise"), "power of two"),
])
def test_nm_schedule_validation(kw, match):
  args = dict(target=(1, 8), phases=sch.Phases(100))
  args.update(kw)
  with pytest.raises(ValueError, match=match):
    sch.NMSchedule(**args)


def test_schedule_change_never_retraces():
  """1000 jitted steps through every frame and phase: one trace, one compile."""
  sched = sch.NMSchedule((1, 8), sch.Phases(1000, 100, 100),
                         structure="stepwise", decay="exponential", c=1e-2)
  traces = []

  def keep_mask(n, m, w):
    # Keep the n largest |w| of each group of m along axis 0 (no ties here).
    g = jnp.abs(w).reshape(-1, m, w.shape[1])
    rank = jnp.sum(g[:, None, :, :] > g[:, :, None, :], axis=2)
    return (rank < n).reshape(w.shape)

  @jax.jit
  def step_fn(step, w):
    traces.append(1)
    st = sched(step)
    mask = sch.switch_frames(st.frame, sched.frames, keep_mask, w)
    view = jnp.where(mask, w, st.beta * w)
    return jnp.sum(mask), st.n, st.beta, view

  w = jax.random.normal(jax.random.key(0), (16, 4))
  kept, ns = [], []
  for t in range(1000):
    k, n, _, _ = step_fn(jnp.int32(t), w)
    kept.append(int(k))
    ns.append(int(n))
  assert len(traces) == 1
  if hasattr(step_fn, "_cache_size"):
    assert step_fn._cache_size() == 1
  # The frames really changed: 7, 4, 2, 1 of every 8 entries kept.
  assert sorted(set(kept)) == [8, 16, 32, 56]
  assert sorted(set(ns)) == [1, 2, 4, 7]
  assert kept[0] == 56 and kept[999] == 8


# ----------------------------------------------------------------------------
# Any step: every schedule stays in its documented range.
# ----------------------------------------------------------------------------

STEPS = [-10, 0, 2**31 - 1]


def _in_range_everywhere(steps, call, lo, hi):
  for t in steps:
    v = np.asarray(call(t))
    assert np.isfinite(v).all() and (v >= lo).all() and (v <= hi).all(), t


def test_every_schedule_in_range_for_any_step(maybe_jit):
  steps = STEPS + ([] if maybe_jit is jax.jit else [10**12])
  poly = sch.polynomial_sparsity(0.8, 0.2, 5, end_step=100, frequency=10)
  _in_range_everywhere(steps, maybe_jit(poly), 0.2, 0.8)
  for make in (sch.linear_decay, sch.exponential_decay):
    _in_range_everywhere(steps, maybe_jit(make(0.1)), 0.0, 1.0)
    assert float(maybe_jit(make(0.1))(-10)) == 1.0  # negative: the start
  phases = sch.Phases(100, 10, 10)
  _in_range_everywhere(steps, maybe_jit(phases.phase), 0, 2)
  _in_range_everywhere(steps, maybe_jit(phases.sparse_step), 0, 2**31 - 1)
  _in_range_everywhere(
      steps, maybe_jit(lambda t: sch.frame_index(t, phases, 4)), 0, 3)
  sched = sch.NMSchedule((1, 8), phases, "stepwise", decay=lambda t: 2.0 - t)
  call = maybe_jit(sched)
  _in_range_everywhere(steps, lambda t: call(t).beta, 0.0, 1.0)
  _in_range_everywhere(steps, lambda t: call(t).sparsity, 0.0, 0.875)
  _in_range_everywhere(steps, lambda t: call(t).frame, 0, 3)


def test_custom_decay_nan_raises(maybe_jit):
  sched = sch.NMSchedule((2, 4), sch.Phases(100), decay=lambda t: t * jnp.nan)
  with pytest.raises((ValueError, jax.errors.JaxRuntimeError),
                     match=r"NMSchedule\.decay\(t\) must be a finite number"):
    jax.block_until_ready(maybe_jit(sched)(5))


# ---------------------------------------------------------------------------
# Named decays take their rate from the sparse phase; a cliff warns.
# ---------------------------------------------------------------------------


def _beta_at_sparse_end(sched):
  """beta at the last sparse step and at the first fine-tune step."""
  end = sched.phases.sparse_end
  t = sched.table([end - 1, end])
  return float(t.beta[0]), float(t.beta[1])


@pytest.mark.parametrize("decay", ["linear", "exponential"])
def test_named_decay_reaches_end_beta_with_the_readme_settings(decay):
  import warnings as w
  with w.catch_warnings():
    w.simplefilter("error", sch.ScheduleWarning)
    sp = sj.progressive_nm(sj.NM(2, 4), total_steps=10_000, dense_steps=1_000,
                           finetune_steps=1_000, decay=decay)
  sched = sp.schedule.nm_schedule(2, 4)
  last, finetune = _beta_at_sparse_end(sched)
  # t = S - 1 at the last sparse step: one step short of end_beta = 0.01.
  c = sch.decay_rate(decay, 8_000)
  expected = (1 - c * 7_999) if decay == "linear" else np.exp(-c * 7_999)
  assert last == pytest.approx(expected, rel=1e-4)
  assert 0.0099 < last < 0.0102 and finetune == 0.0


def test_decay_rate_formula_and_custom_end_beta():
  assert sch.decay_rate("linear", 200, 0.0) == pytest.approx(1 / 200)
  assert sch.decay_rate("exponential", 50, 0.1) == pytest.approx(
      np.log(10) / 50)
  with pytest.warns(sch.ScheduleWarning, match="lower `end_beta`"):
    sched = sch.NMSchedule((2, 4), sch.Phases(100), decay="exponential",
                           end_beta=0.2)
  assert float(sched.beta_schedule()(100)) == pytest.approx(0.2, rel=1e-5)


@pytest.mark.parametrize("decay,end_beta", [("exponential", 0.0),
                                            ("linear", 1.0),
                                            ("linear", -0.1),
                                            ("exponential", float("nan"))])
def test_decay_rate_rejects_end_beta_out_of_range(decay, end_beta):
  with pytest.raises(ValueError, match="end_beta"):
    sj.progressive_nm(sj.NM(2, 4), total_steps=100, decay=decay,
                      end_beta=end_beta)


def test_explicit_rate_is_kept_and_a_cliff_warns_once():
  with pytest.warns(sch.ScheduleWarning,
                    match=r"beta is still 0\.449 .*step 9000") as record:
    sp = sj.progressive_nm(sj.NM(2, 4), total_steps=10_000, dense_steps=1_000,
                           finetune_steps=1_000, decay="exponential", c=1e-4)
  assert len(record) == 1
  assert _beta_at_sparse_end(sp.schedule.nm_schedule(2, 4))[0] == (
      pytest.approx(np.exp(-1e-4 * 7_999), rel=1e-5))
  # Using the method (under jit too) does not warn again.
  import warnings as w
  params = {"w": jnp.ones((8, 4))}
  with w.catch_warnings():
    w.simplefilter("error", sch.ScheduleWarning)
    state = sp.init(params)
    jax.jit(sp.view)(params, state)
    jax.jit(sp.diagnostics)(state)


def test_custom_decay_that_ends_high_warns():
  with pytest.warns(sch.ScheduleWarning, match="exactly sparse export"):
    sch.NMSchedule((2, 4), sch.Phases(100), decay=lambda t: 0.5)
