"""Tests for the masked-decay optax transforms in sparsejax.decay."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsejax import decay as decay_lib


def _setup(dtype=jnp.float32):
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  params = {
      "dense": {"kernel": jax.random.normal(k1, (8, 4)).astype(dtype),
                "bias": jnp.arange(4.0).astype(dtype)},
      "out": jax.random.normal(k2, (4, 2)).astype(dtype),
  }
  grads = jax.tree.map(
      lambda p: jax.random.normal(k3, p.shape).astype(p.dtype), params)
  masks = {
      "dense": {"kernel": jnp.abs(params["dense"]["kernel"]) > 0.5,
                "bias": jnp.array(True)},  # Dense leaf marker.
      "out": jnp.arange(8).reshape(4, 2) % 2 == 0,
  }
  return params, grads, masks


def _expected_term(params, masks):
  def leaf(w, m):
    w = np.asarray(w, np.float32)
    return np.where(np.broadcast_to(np.asarray(m), w.shape), 0.0, w)
  return jax.tree.map(leaf, params, masks)


def _assert_tree_close(a, b, **kw):
  jax.tree.map(
      lambda x, y: np.testing.assert_allclose(
          np.asarray(x, np.float32), np.asarray(y, np.float32), **kw), a, b)


@pytest.mark.parametrize("masks_from", ["extra_args", "pytree", "callable"])
def test_masked_decay_formula(masks_from, maybe_jit):
  params, grads, masks = _setup()
  alpha = 0.3
  if masks_from == "extra_args":
    tx, kw = decay_lib.masked_decay(alpha), {"masks": masks}
  elif masks_from == "pytree":
    tx, kw = decay_lib.masked_decay(alpha, masks), {}
  else:
    tx = decay_lib.masked_decay(
        alpha, lambda p: jax.tree.map(lambda _, m: m, p, masks))
    kw = {}
  state = tx.init(params)
  assert isinstance(state, decay_lib.MaskedDecayState)
  update = maybe_jit(tx.update)
  updates, state = update(grads, state, params, **kw)
  term = _expected_term(params, masks)
  want = jax.tree.map(lambda g, t: np.asarray(g) + alpha * t, grads, term)
  _assert_tree_close(updates, want, rtol=1e-6)
  # The dense-marked bias is untouched.
  np.testing.assert_array_equal(updates["dense"]["bias"],
                                grads["dense"]["bias"])
  assert int(state.count) == 1


def test_masked_decay_annealed_schedule():
  params, grads, masks = _setup()
  sched = optax.linear_schedule(0.0, 1.0, transition_steps=4)
  tx = decay_lib.masked_decay(sched)
  state = tx.init(params)
  term = _expected_term(params, masks)
  update = jax.jit(tx.update)
  for step in range(6):
    updates, state = update(grads, state, params, masks=masks)
    alpha = min(step / 4, 1.0)
    want = jax.tree.map(lambda g, t, a=alpha: np.asarray(g) + a * t, grads,
                        term)
    _assert_tree_close(updates, want, rtol=1e-6, atol=1e-7)


def test_masked_decay_in_chain_before_adamw():
  params, grads, masks = _setup()
  alpha, lr = 0.1, 1e-2
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   decay_lib.masked_decay(alpha),
                   optax.adamw(lr, weight_decay=0.0))
  state = tx.init(params)
  updates, _ = jax.jit(tx.update)(grads, state, params, masks=masks)
  # Reference: clip, add the term by hand, then adamw.
  term = _expected_term(params, masks)

  @jax.jit
  def reference(grads, params):
    clipped, _ = optax.clip_by_global_norm(1.0).update(grads, None)
    g = jax.tree.map(lambda c, t: c + alpha * t, clipped, term)
    ref_tx = optax.adamw(lr, weight_decay=0.0)
    return ref_tx.update(g, ref_tx.init(params), params)[0]

  ref = reference(grads, params)
  _assert_tree_close(updates, ref, rtol=1e-5, atol=1e-8)


def test_decoupled_masked_decay_formula(maybe_jit):
  params, grads, masks = _setup()
  lam, lr = 0.5, 0.1
  tx = optax.chain(optax.sgd(lr), decay_lib.decoupled_masked_decay(lam, lr))
  state = tx.init(params)
  updates, state = maybe_jit(tx.update)(grads, state, params, masks=masks)
  new_params = optax.apply_updates(params, updates)
  term = _expected_term(params, masks)
  # W <- W - lr * g - lr * lam * (1 - m) * W.
  want = jax.tree.map(
      lambda w, g, t: np.asarray(w) - lr * np.asarray(g) - lr * lam * t,
      params, grads, term)
  _assert_tree_close(new_params, want, rtol=1e-6, atol=1e-7)


def test_decoupled_masked_decay_schedules():
  params, grads, masks = _setup()
  lr = optax.exponential_decay(1.0, transition_steps=1, decay_rate=0.5)
  lam = optax.linear_schedule(0.0, 1.0, transition_steps=2)
  tx = decay_lib.decoupled_masked_decay(lam, lr, masks)
  state = tx.init(params)
  term = _expected_term(params, masks)
  zeros = jax.tree.map(jnp.zeros_like, grads)
  for step in range(3):
    updates, state = tx.update(zeros, state, params)
    scale = min(step / 2, 1.0) * 0.5**step
    _assert_tree_close(updates, jax.tree.map(lambda t, s=scale: -s * t, term),
                       rtol=1e-6, atol=1e-8)


def test_bfloat16_updates_keep_dtype():
  params, grads, masks = _setup(jnp.bfloat16)
  tx = decay_lib.masked_decay(0.25)
  updates, _ = tx.update(grads, tx.init(params), params, masks=masks)
  assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
  term = _expected_term(params, masks)
  want = jax.tree.map(lambda g, t: np.asarray(g, np.float32) + 0.25 * t, grads,
                      term)
  _assert_tree_close(updates, want, rtol=2e-2, atol=2e-2)


def test_masks_sharded_like_params():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(2, 4),
                           ("data", "model"))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(
      "data", "model"))
  w = jax.device_put(jax.random.normal(jax.random.key(1), (8, 16)), sharding)
  m = jax.device_put(jnp.abs(w) > 1.0, sharding)
  params, masks = {"w": w}, {"w": m}
  tx = decay_lib.masked_decay(0.5)
  updates, _ = jax.jit(tx.update)({"w": jnp.zeros_like(w)}, tx.init(params),
                                  params, masks=masks)
  assert updates["w"].sharding.is_equivalent_to(sharding, 2)
  np.testing.assert_allclose(updates["w"], np.where(m, 0.0, 0.5 * w),
                             rtol=1e-6)


def test_errors():
  params, grads, masks = _setup()
  tx = decay_lib.masked_decay(0.1)
  state = tx.init(params)
  with pytest.raises(ValueError, match="no masks"):
    tx.update(grads, state, params)
  with pytest.raises(ValueError, match="params"):
    tx.update(grads, state, masks=masks)
  bad = {"dense": masks["dense"]}
  with pytest.raises(ValueError, match="structure"):
    tx.update(grads, state, params, masks=bad)
  wrong_shape = dict(masks, out=jnp.ones((2, 4), bool))
  with pytest.raises(ValueError, match="mask shape"):
    tx.update(grads, state, params, masks=wrong_shape)
  with pytest.raises(ValueError, match="`decay`"):
    decay_lib.masked_decay(-1.0)
  with pytest.raises(ValueError, match="`lr`"):
    decay_lib.decoupled_masked_decay(0.1, -1.0)
  with pytest.raises(ValueError, match="`decay`"):
    decay_lib.decoupled_masked_decay(jnp.ones(2), 0.1)


def test_inject_hyperparams_drives_decay():
  params, grads, masks = _setup()
  tx = optax.inject_hyperparams(decay_lib.masked_decay)(decay=0.2)
  state = tx.init(params)
  state.hyperparams["decay"] = jnp.float32(0.7)
  updates, _ = jax.jit(tx.update)(grads, state, params, masks=masks)
  term = _expected_term(params, masks)
  want = jax.tree.map(lambda g, t: np.asarray(g) + 0.7 * t, grads, term)
  _assert_tree_close(updates, want, rtol=1e-6)


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_traced_decay_checked_when_the_update_runs(bad, maybe_jit):
  params, masks = {"w": jnp.ones(2)}, {"w": jnp.array([True, False])}

  def step(d):
    tx = decay_lib.masked_decay(lambda count: d)
    return tx.update(params, tx.init(params), params, masks=masks)[0]

  np.testing.assert_allclose(maybe_jit(step)(0.5)["w"], [1.0, 1.5])
  with pytest.raises((ValueError, jax.errors.JaxRuntimeError),
                     match=r"`decay` must be >= 0"):
    jax.block_until_ready(maybe_jit(step)(bad))
