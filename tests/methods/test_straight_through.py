"""Straight-through methods and the optax wrapper: formulas, patterns, training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj


def _params(seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {"fc1": {"kernel": jax.random.normal(k1, (16, 64)) * 0.3,
                  "bias": jnp.zeros(64)},
          "fc2": {"kernel": jax.random.normal(k2, (64, 8)) * 0.3,
                  "bias": jnp.zeros(8)}}


def _mlp(params, x):
  h = jax.nn.relu(x @ params["fc1"]["kernel"] + params["fc1"]["bias"])
  return h @ params["fc2"]["kernel"] + params["fc2"]["bias"]


def _data(seed=1, n=256):
  x = jax.random.normal(jax.random.key(seed), (n, 16))
  teacher = _params(seed + 10)
  return x, _mlp(teacher, x)


def _loss(params, batch):
  x, y = batch
  return jnp.mean((_mlp(params, x) - y) ** 2)


def _groups_hold(mask, n, m):
  g = np.asarray(mask).reshape(mask.shape[0] // m, m, -1).sum(axis=1)
  return (g == n).all()


@pytest.mark.parametrize("make", [
    lambda: sj.ste(sj.NM(2, 4)),
    lambda: sj.srste(sj.NM(2, 4), decay=0.3),
    lambda: sj.progressive_nm(target=sj.NM(2, 4), total_steps=100,
                              dense_steps=0, decay="linear", c=0.01),
    lambda: sj.progressive_nm(target=sj.NM(2, 4), total_steps=100,
                              decay="linear", c=0.01, grad="autodiff"),
    lambda: sj.sste(sj.NM(2, 4)),
])
def test_view_gradient_matches_formula(make, maybe_jit):
  sp = make()
  params = _params()
  state = sp.init(params)
  state = state._replace(step=jnp.asarray(20, jnp.int32))
  x = jax.random.normal(jax.random.key(3), (32, 16))
  cotangent = jax.random.normal(jax.random.key(4), (32, 8))

  def loss(p):
    return jnp.sum(_mlp(sp.view(p, state), x) * cotangent)

  grads = maybe_jit(jax.grad(loss))(params)
  viewed = sp.view(params, state)
  g_tilde = jax.grad(lambda v: jnp.sum(_mlp(v, x) * cotangent))(viewed)
  for layer in ("fc1", "fc2"):
    w = params[layer]["kernel"]
    m = state.masks[layer]["kernel"]
    g = g_tilde[layer]["kernel"]
    if isinstance(sp.forward, sj.methods.SRSTE):
      expected = g + 0.3 * jnp.where(m, 0, w)
    elif (isinstance(sp.forward, sj.methods.MaskDecay)
          and sp.forward.grad == "autodiff"):
      beta = 1 - 0.01 * 20
      expected = g * jnp.where(m, 1.0, beta)
    else:
      expected = g
    np.testing.assert_allclose(grads[layer]["kernel"], expected, rtol=1e-5,
                               atol=1e-6)
    # Biases are dense leaves: ordinary gradient.
    np.testing.assert_allclose(grads[layer]["bias"], g_tilde[layer]["bias"],
                               rtol=1e-5, atol=1e-6)


def test_progressive_view_formula():
  sp = sj.progressive_nm(target=sj.NM(1, 4), total_steps=100, dense_steps=10,
                         finetune_steps=10, decay="linear", c=0.02)
  params = _params()
  state = sp.init(params)
  w, m = params["fc1"]["kernel"], state.masks["fc1"]["kernel"]
  for step, beta in [(0, 1.0), (9, 1.0), (10, 1.0), (30, 0.6), (89, 0.0),
                     (95, 0.0)]:
    st = state._replace(step=jnp.asarray(step, jnp.int32))
    out = sp.view(params, st)["fc1"]["kernel"]
    np.testing.assert_allclose(out, w * jnp.where(m, 1.0, beta), rtol=1e-6)


def test_sdgf_frames_reached_in_training_step():
  sp = sj.progressive_nm(target=sj.NM(1, 8), total_steps=40,
                         structure="stepwise", decay=None)
  params = {"w": jax.random.normal(jax.random.key(0), (64, 8))}
  state = sp.init(params)
  zero = jax.tree.map(jnp.zeros_like, params)
  update = jax.jit(lambda s: sp.update(params, zero, s)[1])
  seen = []
  for _ in range(40):
    n = int(state.masks["w"][:8, 0].sum())
    seen.append(n)
    assert _groups_hold(state.masks["w"], n, 8)
    state = update(state)
  assert sorted(set(seen), reverse=True) == [7, 4, 2, 1]
  assert update._cache_size() == 1


def test_geometric_frames_need_divisible_axis():
  sp = sj.progressive_nm(target=sj.NM(1, 8), total_steps=10,
                         structure="geometric")
  with pytest.raises(ValueError, match="w.*not divisible by m=64"):
    sp.init({"w": jnp.ones((32, 4))})


def test_view_rejects_other_structure():
  sp = sj.ste(sj.NM(2, 4))
  state = sp.init(_params())
  other = {"fc1": {"kernel": jnp.ones((16, 64))}}
  with pytest.raises(ValueError, match="do not mirror"):
    sp.view(other, state)


def test_progressive_needs_nm():
  with pytest.raises(TypeError, match="N:M pattern at 'fc1/kernel'"):
    sj.progressive_nm(target=sj.Unstructured(0.5), total_steps=10).init(
        _params())


def test_phases_longer_than_run():
  with pytest.raises(ValueError, match="total_steps"):
    sj.progressive_nm(target=sj.NM(2, 4), total_steps=10, dense_steps=6,
                      finetune_steps=4)


def test_sste_scale_frozen_and_sparse_params():
  sp = sj.sste(sj.NM(2, 4))
  params = _params()
  state = sp.init(params)
  w = params["fc1"]["kernel"]
  s = sj.views.soft_threshold(w, 2, 4, axis=0)
  beta = jnp.vdot(w, s) / jnp.vdot(s, s)
  np.testing.assert_allclose(state.extra.forward["fc1"]["kernel"], beta, rtol=1e-5)
  out = sp.sparse_params(params, state)["fc1"]["kernel"]
  np.testing.assert_allclose(out, beta * s, rtol=1e-5, atol=1e-7)
  assert _groups_hold(out != 0, 2, 4)


def _train(sp, steps=300, lr=3e-3):
  params = _params()
  batch = _data()
  tx = sj.wrap(optax.adam(lr), sp) if sp is not None else optax.adam(lr)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state):
    if sp is None:
      loss, grads = jax.value_and_grad(_loss)(params, batch)
    else:
      state = sj.sparsity_state(opt_state)
      loss, grads = jax.value_and_grad(
          lambda p: _loss(sp.view(p, state), batch))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  for _ in range(steps):
    params, opt_state, loss = step(params, opt_state)
  assert step._cache_size() == 1
  return params, opt_state


@pytest.fixture(scope="module")
def dense_loss():
  params, _ = _train(None)
  return float(_loss(params, _data()))


@pytest.mark.parametrize("name, make, n, m", [
    ("ste", lambda: sj.ste(sj.NM(2, 4)), 2, 4),
    ("srste", lambda: sj.srste(sj.NM(2, 4)), 2, 4),
    ("sste", lambda: sj.sste(sj.NM(2, 4)), 2, 4),
    ("mdgf", lambda: sj.progressive_nm(
        target=sj.NM(2, 4), total_steps=300, dense_steps=50,
        finetune_steps=50, decay="linear", c=0.01), 2, 4),
    ("sdgf", lambda: sj.progressive_nm(
        target=sj.NM(1, 4), total_steps=300, dense_steps=50,
        finetune_steps=50, structure="stepwise", decay=None), 1, 4),
])
def test_end_to_end_reaches_pattern(name, make, n, m, dense_loss):
  sp = make()
  params, opt_state = _train(sp)
  state = sj.sparsity_state(opt_state)
  final = sp.sparse_params(params, state)
  for layer in ("fc1", "fc2"):
    assert _groups_hold(final[layer]["kernel"] != 0, n, m), name
  loss = float(_loss(final, _data()))
  baseline = float(_loss(_params(), _data()))
  # Sparse training learns (well below the untrained loss) and stays within a
  # stated factor of the dense model trained the same way.
  assert loss < 0.5 * baseline, (name, loss, baseline)
  assert loss < 4.0 * dense_loss + 0.05, (name, loss, dense_loss)
  diag = sp.diagnostics(state)
  assert float(diag["mask_sparsity"]) == pytest.approx(1 - n / m)
  assert float(diag["forward_sparsity"]) == pytest.approx(1 - n / m)
  assert 0.0 <= float(diag["flip_rate"]) < 0.2


def test_gradual_magnitude_schedule_and_zeros_stay_zero():
  sp = sj.gradual_magnitude(sj.Unstructured(0.9), begin_step=20,
                            end_step=220, frequency=20)
  params, opt_state = _train(sp, steps=300)
  state = sj.sparsity_state(opt_state)
  for layer in ("fc1", "fc2"):
    w = params[layer]["kernel"]
    m = state.masks[layer]["kernel"]
    assert int(m.sum()) == w.size - int(0.9 * w.size)
    # Pruned weights are exactly zero in the params themselves (adam's
    # updates are masked), not only in the view.
    assert float(jnp.abs(jnp.where(m, 0, w)).max()) == 0.0
  s = [float(sp.schedule.sparsity_at(sj.Unstructured(0.9), t)) for t in (0, 20, 40,
                                                                220, 300)]
  assert s[0] == 0.0 and s[1] == 0.0 and s[3] == pytest.approx(0.9)
  assert s[2] == pytest.approx(0.9 * (1 - (1 - 20 / 200) ** 3), rel=1e-5)


def test_weight_decay_cannot_revive_pruned_weights():
  sp = sj.gradual_magnitude(sj.Unstructured(0.5), end_step=1, frequency=1)
  params = _params()
  tx = sj.wrap(optax.adamw(1e-2, weight_decay=0.5), sp)
  opt_state = tx.init(params)
  for _ in range(5):
    state = sj.sparsity_state(opt_state)
    grads = jax.grad(lambda p: _loss(sp.view(p, state), _data()))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  m = sj.sparsity_state(opt_state).masks["fc1"]["kernel"]
  assert float(jnp.abs(jnp.where(m, 0, params["fc1"]["kernel"])).max()) == 0


def test_per_rule_patterns():
  rules = [sj.Rule(r"fc1/kernel", sj.NM(2, 4)),
           sj.Rule(r"fc2/kernel", sj.NM(1, 8))]
  sp = sj.progressive_nm(rules, total_steps=10, decay=None)
  state = sp.init(_params())
  assert _groups_hold(state.masks["fc1"]["kernel"], 2, 4)
  assert _groups_hold(state.masks["fc2"]["kernel"], 1, 8)


def test_no_retrace_across_1000_steps():
  sp = sj.progressive_nm(target=sj.NM(1, 8), total_steps=1000,
                         dense_steps=100, finetune_steps=100,
                         structure="stepwise", decay="exponential")
  params = {"w": jax.random.normal(jax.random.key(0), (64, 8))}
  tx = sj.wrap(optax.sgd(1e-3), sp)
  traces = []

  @jax.jit
  def step(params, opt_state):
    traces.append(1)
    state = sj.sparsity_state(opt_state)
    grads = jax.grad(lambda p: jnp.sum(sp.view(p, state)["w"] ** 2))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = tx.init(params)
  for _ in range(1000):
    params, opt_state = step(params, opt_state)
  assert len(traces) == 1
  assert int(sj.sparsity_state(opt_state).step) == 1000
  assert _groups_hold(sj.sparsity_state(opt_state).masks["w"], 1, 8)


def test_diagnostics_flip_rate_formula():
  sp = sj.ste(sj.NM(2, 4))
  params = {"w": jnp.array([[4.], [3.], [2.], [1.]])}
  state = sp.init(params)
  updates = {"w": jnp.array([[-4.], [0.], [0.], [0.]])}
  _, state = sp.update(params, updates, state)
  diag = jax.jit(sp.diagnostics)(state)
  # The mask moved from {0, 1} to {1, 2}: two of four entries flipped.
  assert float(diag["flip_rate"]) == 0.5
  assert float(diag["flip_rate/w"]) == 0.5
  assert float(diag["mask_sparsity/w"]) == 0.5
