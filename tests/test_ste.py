"""Tests for the straight-through views in sparsejax.views.

Gradients are compared with the hand-written backward formulas (not with
numerical differentiation, which a straight-through estimator fails by
design): the loss is ``sum(c * view(w))`` for a random cotangent ``c``, so
``dL/dW~ = c`` and ``dL/dW`` must equal the view's formula applied to ``c``.
"""
import functools

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import views as ste_lib

shard_map = getattr(jax, "shard_map", None)
if shard_map is None:  # older JAX
  from jax.experimental.shard_map import shard_map  # pylint: disable=all

DECAY = 0.25
BETA = 0.375
N, M = 2, 4


def _np_soft_threshold(w, n, m, axis=0):
  """Sort-based NumPy reference of the S-STE projection."""
  w = np.asarray(w, np.float64)
  moved = np.moveaxis(w, axis, -1)
  g = moved.reshape(moved.shape[:-1] + (moved.shape[-1] // m, m))
  a = np.abs(g)
  tau = np.sort(a, axis=-1)[..., m - n - 1:m - n] if n < m else 0.0
  s = np.sign(g) * np.maximum(a - tau, 0.0)
  return np.moveaxis(s.reshape(moved.shape), -1, axis)


def _np_scale(w, n, m, axis=0):
  s = _np_soft_threshold(w, n, m, axis)
  w = np.asarray(w, np.float64)
  return (w * s).sum() / (s * s).sum()


# Each view: (forward(w, mask, hyper) -> w~, expected forward, expected grad).
# `hyper` is the traced scalar of the view (decay, beta or S-STE scale).
def _views():
  def fwd_mask(w, mask, h):
    del h
    return np.where(mask, w, 0.0)

  def fwd_decayed(w, mask, h):
    return np.where(mask, w, h * w)

  def fwd_sste(w, mask, h):
    del mask
    return h * _np_soft_threshold(w, N, M)

  return {
      "ste": (lambda w, mask, h: ste_lib.ste(w, mask), fwd_mask,
              lambda c, w, mask, h: c),
      "srste": (lambda w, mask, h: ste_lib.srste(w, mask, h), fwd_mask,
                lambda c, w, mask, h: c + h * np.where(mask, 0.0, w)),
      "decayed_identity": (lambda w, mask, h: ste_lib.decayed(w, mask, h),
                           fwd_decayed, lambda c, w, mask, h: c),
      "decayed_autodiff": (
          lambda w, mask, h: ste_lib.decayed(w, mask, h, grad="autodiff"),
          fwd_decayed, lambda c, w, mask, h: c * np.where(mask, 1.0, h)),
      "sste": (lambda w, mask, h: ste_lib.sste(w, N, M, h), fwd_sste,
               lambda c, w, mask, h: c),
  }


VIEWS = _views()
HYPER = {"ste": 0.0, "srste": DECAY, "decayed_identity": BETA,
         "decayed_autodiff": BETA, "sste": 1.3}


def _inputs(shape=(8, 16), dtype=jnp.float32, seed=0):
  kw, kc = jax.random.split(jax.random.key(seed))
  w = jax.random.normal(kw, shape, jnp.float32).astype(dtype)
  c = jax.random.normal(kc, shape, jnp.float32).astype(dtype)
  mask = np.abs(_np_soft_threshold(np.asarray(w, np.float32), N, M)) > 0
  return w, jnp.asarray(mask), c


def _tol(dtype):
  return dict(rtol=2e-2, atol=2e-2) if dtype == jnp.bfloat16 else dict(
      rtol=1e-6, atol=1e-6)


def _f32(x):
  return np.asarray(jnp.asarray(x, jnp.float32))


def _check(view_name, out, grad, w, mask, c, h, dtype):
  _, fwd, bwd = VIEWS[view_name]
  w32, c32, m = _f32(w), _f32(c), np.asarray(mask)
  assert out.dtype == dtype and grad.dtype == dtype
  np.testing.assert_allclose(_f32(out), fwd(w32, m, h), **_tol(dtype))
  np.testing.assert_allclose(_f32(grad), bwd(c32, w32, m, h), **_tol(dtype))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("view_name", list(VIEWS))
def test_view_forward_and_grad(view_name, dtype, maybe_jit):
  view = VIEWS[view_name][0]
  w, mask, c = _inputs(dtype=dtype)
  h = HYPER[view_name]

  def loss(w, mask, h):
    return jnp.sum((view(w, mask, h) * c).astype(jnp.float32))

  out = maybe_jit(view)(w, mask, h)  # `h` traced under jit.
  grad = maybe_jit(jax.grad(loss))(w, mask, h)
  _check(view_name, out, grad, w, mask, c, h, dtype)


@pytest.mark.parametrize("view_name", list(VIEWS))
def test_view_under_vmap(view_name):
  view = VIEWS[view_name][0]
  ws, masks, cs = zip(*(_inputs(shape=(4, 8), seed=s) for s in range(3)))
  w, mask, c = jnp.stack(ws), jnp.stack(masks), jnp.stack(cs)
  hs = jnp.array([0.0, 0.5, 1.0]) if view_name != "ste" else jnp.zeros(3)

  def loss(w, mask, h, c):
    return jnp.sum(view(w, mask, h) * c)

  grads = jax.jit(jax.vmap(jax.grad(loss)))(w, mask, hs, c)
  outs = jax.vmap(view)(w, mask, hs)
  for i in range(3):
    if view_name == "sste":
      # Per-example scale h; the S-STE projection is per example too.
      expected = float(hs[i]) * _np_soft_threshold(_f32(w[i]), N, M)
      np.testing.assert_allclose(_f32(outs[i]), expected, rtol=1e-6, atol=1e-6)
      np.testing.assert_allclose(_f32(grads[i]), _f32(c[i]))
    else:
      _check(view_name, outs[i], grads[i], w[i], mask[i], c[i], float(hs[i]),
             jnp.float32)


@pytest.mark.parametrize("view_name", list(VIEWS))
def test_view_under_checkpoint(view_name):
  view = VIEWS[view_name][0]
  w, mask, c = _inputs()
  h = HYPER[view_name]

  @jax.checkpoint
  def block(w, mask, h):
    return jnp.tanh(view(w, mask, h))

  def loss(w):
    return jnp.sum(block(w, mask, h) * c)

  grad = jax.jit(jax.grad(loss))(w)
  out = view(w, mask, h)
  # d tanh(y)/dy = 1 - tanh(y)^2, then the view's backward.
  g_tilde = _f32(c) * (1.0 - np.tanh(_f32(out))**2)
  expected = VIEWS[view_name][2](g_tilde, _f32(w), np.asarray(mask), h)
  np.testing.assert_allclose(_f32(grad), expected, rtol=1e-5, atol=1e-6)


def _mesh():
  return Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))


@pytest.mark.parametrize("view_name", list(VIEWS))
def test_view_inside_shard_map(view_name):
  view = VIEWS[view_name][0]
  mesh = _mesh()
  # Axis 0 (the group axis, length 16) splits into shards of 8: whole groups.
  w, mask, c = _inputs(shape=(16, 32))
  h = jnp.float32(HYPER[view_name])
  spec = P("data", "model")
  sharded_view = shard_map(
      view, mesh=mesh, in_specs=(spec, spec, P()), out_specs=spec)

  def loss(w, mask, h):
    return jnp.sum(sharded_view(w, mask, h) * c)

  out = jax.jit(sharded_view)(w, mask, h)
  grad = jax.jit(jax.grad(loss))(w, mask, h)
  _check(view_name, out, grad, w, mask, c, float(h), jnp.float32)


@pytest.mark.parametrize("view_name", list(VIEWS))
def test_view_with_sharded_inputs(view_name):
  view = VIEWS[view_name][0]
  mesh = _mesh()
  sharding = NamedSharding(mesh, P("data", "model"))
  w, mask, c = _inputs(shape=(16, 32))
  h = HYPER[view_name]
  w_s, mask_s, c_s = (jax.device_put(x, sharding) for x in (w, mask, c))

  def loss(w, mask, h, c):
    return jnp.sum(view(w, mask, h) * c)

  out = jax.jit(view)(w_s, mask_s, h)
  grad = jax.jit(jax.grad(loss))(w_s, mask_s, h, c_s)
  assert len(out.sharding.device_set) == 8
  assert len(grad.sharding.device_set) == 8
  _check(view_name, out, grad, w, mask, c, h, jnp.float32)


def test_no_gradient_to_hyperparameters():
  w, mask, c = _inputs()
  for name in ("srste", "decayed_identity", "decayed_autodiff", "sste"):
    view = VIEWS[name][0]
    g = jax.grad(lambda h, view=view: jnp.sum(view(w, mask, h) * c))(
        jnp.float32(0.5))
    assert float(g) == 0.0, name


def test_srste_decay_driven_by_schedule():
  w, mask, c = _inputs()

  @jax.jit
  def grad_at(step):
    decay = 1e-3 * step.astype(jnp.float32)
    return jax.grad(lambda w: jnp.sum(ste_lib.srste(w, mask, decay) * c))(w)

  for step in (0, 10):
    expected = _f32(c) + 1e-3 * step * np.where(mask, 0.0, _f32(w))
    np.testing.assert_allclose(grad_at(jnp.int32(step)), expected, rtol=1e-6)


def test_forward_mode_identity_views():
  w, mask, _ = _inputs()
  t = jnp.ones_like(w)
  for view in (lambda w: ste_lib.ste(w, mask),
               lambda w: ste_lib.decayed(w, mask, BETA),
               lambda w: ste_lib.sste(w, N, M, 1.5)):
    _, tangent = jax.jvp(view, (w,), (t,))
    np.testing.assert_array_equal(tangent, t)


def test_scalar_mask_marks_dense_leaf():
  w = jnp.arange(4.0)
  np.testing.assert_array_equal(ste_lib.ste(w, jnp.array(True)), w)
  np.testing.assert_array_equal(ste_lib.srste(w, jnp.array(False)), 0 * w)
  params = {"a": w, "b": jnp.ones(3)}
  masks = {"a": jnp.array([True, False, True, False]), "b": jnp.array(True)}
  out = jax.tree.map(ste_lib.ste, params, masks)
  np.testing.assert_array_equal(out["a"], [0.0, 0.0, 2.0, 0.0])
  np.testing.assert_array_equal(out["b"], params["b"])


# ----------------------------------------------------------------------------
# S-STE projection and scale.
# ----------------------------------------------------------------------------

NM_CASES = [(1, 2), (2, 4), (1, 4), (3, 4), (1, 8), (2, 8), (1, 16), (1, 32),
            (8, 64), (4, 4)]


@pytest.mark.parametrize("n,m", NM_CASES)
def test_soft_threshold_matches_reference(n, m):
  w = jax.random.normal(jax.random.key(n * 100 + m), (2 * m, 6))
  out = ste_lib.soft_threshold(w, n, m)
  np.testing.assert_allclose(out, _np_soft_threshold(w, n, m), rtol=1e-6,
                             atol=1e-7)
  nnz = (np.asarray(out) != 0).reshape(2, m, 6).sum(axis=1)
  assert (nnz == n).all()  # No ties in continuous random data.


@pytest.mark.parametrize("n,m", [(2, 4), (8, 64)])
def test_soft_threshold_other_axes(n, m):
  w = jax.random.normal(jax.random.key(1), (3, 2, 2 * m, 5))
  out = ste_lib.soft_threshold(w, n, m, axis=-2)
  np.testing.assert_allclose(out, _np_soft_threshold(w, n, m, axis=2),
                             rtol=1e-6, atol=1e-7)
  w2 = jax.random.normal(jax.random.key(2), (5, 4 * m))
  np.testing.assert_allclose(
      ste_lib.soft_threshold(w2, n, m, axis=-1),
      _np_soft_threshold(w2, n, m, axis=1), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n,m", [(2, 4), (1, 8), (3, 8), (4, 64)])
def test_soft_threshold_at_most_n_with_ties(n, m):
  # Quantised weights: many exact ties, zeros included.
  rng = np.random.default_rng(0)
  r = max(2, m // 4)
  w = jnp.asarray(rng.integers(-r, r + 1, size=(m * 50, 3)).astype(np.float32))
  out = np.asarray(ste_lib.soft_threshold(w, n, m))
  nnz = (out != 0).reshape(50, m, 3).sum(axis=1)
  assert nnz.max() <= n
  assert nnz.max() == n  # Some groups have no tie at the threshold.
  np.testing.assert_allclose(out, _np_soft_threshold(w, n, m))


def test_soft_threshold_tie_at_threshold_zeroes_tied_entries():
  w = jnp.array([1.0, -1.0, 1.0, 0.5, 3.0, 2.0, 2.0, 0.0])
  out = ste_lib.soft_threshold(w, 2, 4)
  # Group 1: |w| = 1, 1, 1, .5 -> tau = 1, nothing exceeds it.
  # Group 2: |w| = 3, 2, 2, 0 -> tau = 2, only the 3 survives (shrunk to 1).
  np.testing.assert_array_equal(out, [0, 0, 0, 0, 1, 0, 0, 0])


def test_soft_threshold_is_continuous():
  w = jax.random.normal(jax.random.key(3), (64, 8))
  eps = 1e-3
  delta = eps * jax.random.normal(jax.random.key(4), w.shape)
  for n, m in [(2, 4), (1, 8), (4, 64)]:
    diff = ste_lib.soft_threshold(w + delta, n, m) - ste_lib.soft_threshold(
        w, n, m)
    # Both |w_i| and tau move by at most max|delta|: 2-Lipschitz in sup norm.
    assert float(jnp.max(jnp.abs(diff))) <= 2 * float(
        jnp.max(jnp.abs(delta))) + 1e-6
  # Crossing the selection boundary is continuous too: swap two magnitudes.
  for t in np.linspace(-0.1, 0.1, 9):
    v = ste_lib.soft_threshold(jnp.array([1.0 + t, 1.0 - t, 0.2, 3.0]), 2, 4)
    want = [max(t, 0) * 2, max(-t, 0) * 2, 0, 2 + abs(t)]
    np.testing.assert_allclose(v, want, atol=1e-6)


def test_soft_threshold_inside_jit_and_grad():
  w = jax.random.normal(jax.random.key(10), (8, 3))
  out = jax.jit(ste_lib.soft_threshold, static_argnums=(1, 2))(w, 1, 4)
  np.testing.assert_allclose(out, _np_soft_threshold(w, 1, 4), rtol=1e-6)
  # Plain autodiff through tau: for 1:4, sum(S(w)) per group is
  # sign(w_top) * (|w_top| - |w_2nd|): gradient 1 on the kept entry and
  # -sign(w_top) * sign(w_2nd) on the entry holding tau, 0 elsewhere.
  g = np.asarray(jax.grad(lambda w: ste_lib.soft_threshold(w, 1, 4).sum())(w))
  wg = np.asarray(w).reshape(2, 4, 3)
  order = np.argsort(-np.abs(wg), axis=1)
  gg = g.reshape(2, 4, 3)
  for b in range(2):
    for c in range(3):
      top, second = order[b, 0, c], order[b, 1, c]
      assert gg[b, top, c] == 1.0
      assert gg[b, second, c] == -np.sign(wg[b, top, c]) * np.sign(
          wg[b, second, c])
      assert np.count_nonzero(gg[b, :, c]) == 2


def test_soft_threshold_bfloat16():
  w = jax.random.normal(jax.random.key(5), (16, 4)).astype(jnp.bfloat16)
  out = ste_lib.soft_threshold(w, 2, 4)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(_f32(out), _np_soft_threshold(_f32(w), 2, 4),
                             atol=1e-2)
  assert ((_f32(out) != 0).reshape(4, 4, 4).sum(axis=1) <= 2).all()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_sste_scale_formula(dtype, maybe_jit):
  w = jax.random.normal(jax.random.key(6), (32, 8)).astype(dtype)
  scale = maybe_jit(ste_lib.sste_scale, static_argnums=(1, 2))(w, 2, 4)
  assert scale.dtype == jnp.float32 and scale.shape == ()
  rtol = 1e-3 if dtype == jnp.bfloat16 else 1e-5  # S(W) is rounded to bf16.
  np.testing.assert_allclose(float(scale), _np_scale(_f32(w), 2, 4), rtol=rtol)
  assert float(scale) > 1.0  # S shrinks the kept weights.
  view = ste_lib.sste(w, 2, 4, scale)
  assert view.dtype == dtype


def test_sste_scale_zero_over_zero():
  assert float(ste_lib.sste_scale(jnp.zeros((8, 2)), 2, 4)) == 1.0
  assert float(ste_lib.sste_scale(jnp.ones((8, 2)), 2, 4)) == 1.0


def test_sste_scale_minimises_error():
  # beta is the least-squares fit of W by beta * S(W).
  w = jax.random.normal(jax.random.key(7), (16, 16))
  s = ste_lib.soft_threshold(w, 1, 4)
  beta = float(ste_lib.sste_scale(w, 1, 4))
  err = lambda b: float(jnp.sum((w - b * s)**2))
  assert err(beta) < err(beta * 1.01) and err(beta) < err(beta * 0.99)


# ----------------------------------------------------------------------------
# Activation top-k.
# ----------------------------------------------------------------------------


def test_activation_topk(maybe_jit):
  x = jax.random.normal(jax.random.key(8), (2, 3, 16))
  out = maybe_jit(ste_lib.activation_topk, static_argnums=1)(x, 5)
  out = np.asarray(out)
  assert ((out != 0).sum(-1) == 5).all()
  kth = np.sort(np.abs(np.asarray(x)), -1)[..., -5:-4]
  np.testing.assert_array_equal(out, np.where(np.abs(x) >= kth, x, 0))
  c = jax.random.normal(jax.random.key(9), x.shape)
  g = jax.grad(lambda x: jnp.sum(ste_lib.activation_topk(x, 5) * c))(x)
  np.testing.assert_array_equal(g, c)


def test_activation_topk_ties_keep_exactly_k():
  x = jnp.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
  out = ste_lib.activation_topk(x, 2)
  np.testing.assert_array_equal(out[0], [1.0, 1.0, 0.0, 0.0])
  x = jnp.ones((3, 8), jnp.bfloat16)
  assert int((ste_lib.activation_topk(x, 3) != 0).sum()) == 9


# ----------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("call,match", [
    (lambda: ste_lib.soft_threshold(jnp.ones((8, 2)), 5, 4), "`n`"),
    (lambda: ste_lib.soft_threshold(jnp.ones((8, 2)), 0, 4), "`n`"),
    (lambda: ste_lib.soft_threshold(jnp.ones((6, 2)), 2, 4), "divisible"),
    (lambda: ste_lib.soft_threshold(jnp.ones((8, 2)), 2, 4, axis=3), "axis"),
    (lambda: ste_lib.soft_threshold(jnp.ones((8,), jnp.int32), 2, 4), "`w`"),
    (lambda: ste_lib.sste(jnp.ones((8, 2)), 3, 2, 1.0), "`n`"),
    (lambda: ste_lib.sste(jnp.ones((8, 2)), 2, 4, jnp.ones(2)), "`scale`"),
    (lambda: ste_lib.sste_scale(jnp.ones((6, 2)), 2, 4), "divisible"),
    (lambda: ste_lib.srste(jnp.ones(4), jnp.ones(4, bool), -1.0), "`decay`"),
    (lambda: ste_lib.srste(jnp.ones(4), jnp.ones(3, bool)), "`mask`"),
    (lambda: ste_lib.ste(jnp.ones(4), jnp.ones((4, 1), bool)), "`mask`"),
    (lambda: ste_lib.ste(jnp.arange(4), jnp.ones(4, bool)), "`w`"),
    (lambda: ste_lib.decayed(jnp.ones(4), jnp.ones(4, bool), 1.5), "`beta`"),
    (lambda: ste_lib.decayed(jnp.ones(4), jnp.ones(4, bool), -0.1), "`beta`"),
    (lambda: ste_lib.decayed(jnp.ones(4), jnp.ones(4, bool), 0.5, grad="x"),
     "`grad`"),
    (lambda: ste_lib.activation_topk(jnp.ones((2, 4)), 5), "`k`"),
    (lambda: ste_lib.activation_topk(jnp.ones((2, 4), jnp.int32), 1), "`x`"),
])
def test_validation_errors(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_traced_hyperparameters_skip_range_checks():
  # Traced values cannot be range-checked; they must not raise.
  w, mask = jnp.ones(4), jnp.ones(4, bool)
  jax.jit(functools.partial(ste_lib.decayed, w, mask))(jnp.float32(0.5))
  jax.jit(functools.partial(ste_lib.srste, w, mask))(jnp.float32(0.1))


@pytest.mark.parametrize("beta", [2.0, -0.5, float("nan")])
def test_traced_beta_out_of_range_raises(beta, maybe_jit):
  w, mask = jnp.ones(2), jnp.array([True, False])
  fn = maybe_jit(lambda b: ste_lib.decayed(w, mask, b))
  np.testing.assert_allclose(fn(0.25), [1.0, 0.25])
  with pytest.raises((ValueError, jax.errors.JaxRuntimeError),
                     match=r"`beta` must be in \[0, 1\]"):
    jax.block_until_ready(fn(beta))


def test_traced_srste_decay_negative_raises(maybe_jit):
  fn = maybe_jit(lambda d: ste_lib.srste(jnp.ones(2), jnp.array([True, False]),
                                         d))
  with pytest.raises((ValueError, jax.errors.JaxRuntimeError),
                     match=r"`decay` must be >= 0"):
    jax.block_until_ready(fn(-1.0))
