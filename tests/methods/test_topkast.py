"""Top-KAST: exact forward sparsity, backward set, penalty gradient, updates."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from tests.methods.test_straight_through import _data, _loss, _mlp, _params

RULE = [sj.Rule(r".*kernel", sj.Unstructured(0.8))]


def _top(w, keep):
  """Reference top-`keep` of |w| by sorting (distinct magnitudes)."""
  flat = np.abs(np.asarray(w)).ravel()
  out = np.zeros(flat.size, bool)
  out[np.argsort(-flat)[:keep]] = True
  return out.reshape(np.shape(w))


def test_sets_are_nested_top_k_and_forward_is_exact():
  sp = sj.methods.topkast(RULE, backward_extra=0.1)
  params = _params()
  state = sp.init(params)
  viewed = sp.view(params, state)
  for layer in ("fc1", "fc2"):
    w = params[layer]["kernel"]
    a = np.asarray(state.masks[layer]["kernel"])
    b = np.asarray(state.extra.policy[layer]["kernel"].backward)
    size = w.size
    np.testing.assert_array_equal(a, _top(w, size - int(0.8 * size)))
    np.testing.assert_array_equal(b, _top(w, size - int(0.7 * size + 1e-9)))
    assert (a <= b).all() and b.sum() > a.sum()
    np.testing.assert_array_equal(viewed[layer]["kernel"], np.where(a, w, 0))
    assert int((viewed[layer]["kernel"] != 0).sum()) == a.sum()
  # Biases are untouched, and evaluation uses W * A.
  np.testing.assert_array_equal(viewed["fc1"]["bias"], params["fc1"]["bias"])
  np.testing.assert_array_equal(sp.sparse_params(params, state)["fc2"]["kernel"],
                                viewed["fc2"]["kernel"])
  assert not sp.hard


@pytest.mark.parametrize("penalty", [0.0, 0.05])
def test_gradient_matches_formula(penalty, maybe_jit):
  sp = sj.methods.topkast(RULE, backward_extra=0.15, penalty=penalty)
  params = _params()
  state = sp.init(params)
  x = jax.random.normal(jax.random.key(3), (32, 16))
  cot = jax.random.normal(jax.random.key(4), (32, 8))
  grads = maybe_jit(jax.grad(
      lambda p: jnp.sum(_mlp(sp.view(p, state), x) * cot)))(params)
  g_tilde = jax.grad(lambda v: jnp.sum(_mlp(v, x) * cot))(
      sp.view(params, state))
  density = 0.2
  for layer in ("fc1", "fc2"):
    w = params[layer]["kernel"]
    a = state.masks[layer]["kernel"]
    b = state.extra.policy[layer]["kernel"].backward
    g = g_tilde[layer]["kernel"]
    expected = np.where(b, g + penalty * np.where(a, 1.0, 1.0 / density) * w,
                        0.0)
    np.testing.assert_allclose(grads[layer]["kernel"], expected, rtol=1e-5,
                               atol=1e-6)
    # Outside the backward set nothing flows, whatever g is there.
    assert float(jnp.abs(jnp.where(b, 0, grads[layer]["kernel"])).max()) == 0
    assert float(jnp.abs(jnp.where(b, 0, g)).max()) > 0
    np.testing.assert_allclose(grads[layer]["bias"], g_tilde[layer]["bias"],
                               rtol=1e-5, atol=1e-6)


def test_penalty_gradient_alone():
  # With g = 0 (a loss that ignores the view's value) only the penalty acts:
  # penalty * w on A, penalty * w / D on B \ A, 0 outside B.
  sp = sj.methods.topkast(sj.Unstructured(0.5), backward_extra=0.25,
                          penalty=0.1)
  params = {"w": jnp.array([[4.], [-3.], [2.], [1.]])}
  state = sp.init(params)
  grad = jax.grad(lambda p: 0.0 * sp.view(p, state)["w"].sum())(params)["w"]
  np.testing.assert_allclose(grad.ravel(), [0.4, -0.3, 0.1 * 2 / 0.5, 0.0],
                             rtol=1e-6)


def test_updates_reach_only_the_backward_set():
  sp = sj.methods.topkast(RULE, backward_extra=0.1, penalty=1e-3,
                          refresh_every=1000)
  tx = sj.wrap(optax.adam(1e-2), sp)
  params = _params()
  opt_state = tx.init(params)
  batch = _data()
  start = params

  @jax.jit
  def step(params, opt_state):
    state = sj.sparsity_state(opt_state)
    grads = jax.grad(lambda p: _loss(sp.view(p, state), batch))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(20):
    params, opt_state = step(params, opt_state)
  state = sj.sparsity_state(opt_state)
  for layer in ("fc1", "fc2"):
    b = state.extra.policy[layer]["kernel"].backward
    w0, w = start[layer]["kernel"], params[layer]["kernel"]
    np.testing.assert_array_equal(np.where(b, 0, w), np.where(b, 0, w0))
    assert float(jnp.abs(jnp.where(b, w - w0, 0)).max()) > 0
  assert step._cache_size() == 1
  assert float(_loss(sp.sparse_params(params, state), batch)) < float(
      _loss(sp.sparse_params(start, sp.init(start)), batch))


def test_sets_refresh_every_interval():
  sp = sj.methods.topkast(sj.Unstructured(0.5), backward_extra=0.25,
                          refresh_every=2)
  params = {"w": jnp.array([[4.], [3.], [2.], [1.]])}
  state = sp.init(params)
  np.testing.assert_array_equal(state.masks["w"].ravel(), [1, 1, 0, 0])
  np.testing.assert_array_equal(state.extra.policy["w"].backward.ravel(),
                                [1, 1, 1, 0])
  # The last update is outside B, so it is dropped: new w = [1, 2, 3, 1].
  updates = {"w": jnp.array([[-3.], [-1.], [1.], [3.]])}
  out, s1 = sp.update(params, updates, state)   # step 1: sets kept
  np.testing.assert_array_equal(out["w"].ravel(), [-3., -1., 1., 0.])
  np.testing.assert_array_equal(s1.masks["w"], state.masks["w"])
  new_params = {"w": params["w"] + out["w"]}
  _, s2 = sp.update(new_params, {"w": jnp.zeros((4, 1))}, s1)  # refreshed
  np.testing.assert_array_equal(s2.masks["w"].ravel(), [0, 1, 1, 0])
  # Tied magnitudes (entries 0 and 3) go to the lower index.
  np.testing.assert_array_equal(s2.extra.policy["w"].backward.ravel(),
                                [1, 1, 1, 0])
  assert int(s2.flips["w"]) == 2


def test_registered_and_validated():
  assert sj.methods.get("topkast") is sj.methods.topkast
  with pytest.raises(ValueError, match="backward_extra must be > 0"):
    sj.methods.topkast(RULE, backward_extra=0.0)
  with pytest.raises(ValueError, match="penalty must be >= 0"):
    sj.methods.topkast(RULE, penalty=-1.0)
  with pytest.raises(TypeError, match="Top-KAST needs .*'fc1/kernel'"):
    sj.methods.topkast(sj.NM(2, 4)).init(_params())
