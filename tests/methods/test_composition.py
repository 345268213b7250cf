"""Methods as compositions: the registry, swapping parts, state, jit."""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj
from sparsejax.methods import registry

TRAIN = ("gradual_magnitude", "progressive_nm", "prune_once", "rigl",
         "set_sparse", "srste", "sste", "static_random", "ste")


def test_registry_names_and_lookup():
  assert set(TRAIN) <= set(sj.methods.names("train"))
  assert {"magnitude", "sparsegpt", "wanda"} <= set(
      sj.methods.names("oneshot"))
  assert not set(sj.methods.names("train")) & set(sj.methods.names("oneshot"))
  for name in TRAIN:
    assert sj.methods.get(name) is getattr(sj.methods, name)
    assert getattr(sj, name) is getattr(sj.methods, name)
  assert sj.methods.get("wanda", kind="oneshot") is sj.oneshot.pruner("wanda")


def test_unknown_name_lists_registered():
  with pytest.raises(KeyError, match="unknown method 'rgil'.*rigl"):
    sj.methods.get("rgil")
  with pytest.raises(KeyError, match="unknown oneshot method 'rigl'"):
    sj.methods.get("rigl", kind="oneshot")
  with pytest.raises(ValueError, match="already registered"):
    registry.register("rigl", sj.methods.ste)
  with pytest.raises(ValueError, match="kind must be one of"):
    registry.register("x", sj.methods.ste, kind="eval")


def _params():
  k1, k2 = jax.random.split(jax.random.key(0))
  return {"fc": {"kernel": jax.random.normal(k1, (8, 4)), "bias": jnp.ones(4)},
          "out": {"kernel": jax.random.normal(k2, (4, 4))}}


def test_state_has_typed_extra_instead_of_scales():
  params = _params()
  assert sj.SparsityState._fields == ("step", "masks", "flips", "extra")
  assert sj.ste(sj.NM(2, 4)).init(params).extra is None
  state = sj.sste(sj.NM(2, 4)).init(params)
  assert isinstance(state.extra, sj.methods.PartStates)
  assert state.extra.policy is None
  assert state.extra.forward["fc"]["kernel"].shape == ()
  assert sj.masks.is_dense(state.extra.forward["fc"]["bias"])


def test_swap_view_with_dataclasses_replace(maybe_jit):
  params = {"w": jnp.array([[1.], [-3.]])}
  method = dataclasses.replace(sj.ste(sj.NM(1, 2)),
                               forward=sj.methods.SRSTE(0.5))
  state = method.init(params)
  grad = maybe_jit(jax.grad(lambda p: method.view(p, state)["w"].sum()))(
      params)["w"]
  # g + decay * (1 - m) * w: the pruned 1.0 gets 1 + 0.5 * 1.
  np.testing.assert_allclose(grad.ravel(), [1.5, 1.0])


def test_swap_score_drops_by_movement():
  # Active entries 0..3 of one column; movement -w*g ranks entry 1 lowest
  # though its magnitude is the largest.
  params = {"w": jnp.array([[1.], [4.], [2.], [3.], [0.], [0.], [0.], [0.]])}
  grads = {"w": jnp.array([[0.], [5.], [0.], [0.], [0.], [0.], [9.], [0.]])}
  kw = dict(distribution=None, t_end=10, delta_t=1, alpha=0.5)
  by_movement = sj.rigl(sj.Unstructured(0.5), score=sj.scores.movement, **kw)
  by_magnitude = sj.rigl(sj.Unstructured(0.5), **kw)
  zero = {"w": jnp.zeros((8, 1))}
  for method, dropped in ((by_movement, 1), (by_magnitude, 0)):
    state = method.init(params)._replace(
        masks={"w": jnp.arange(8)[:, None] < 4})
    _, new = method.update(params, zero, state, grads=grads)
    mask = np.asarray(new.masks["w"]).ravel()
    # k = floor(0.25 * (1 + cos(pi / 10)) * 4) = 1 dropped, 1 grown (entry 6).
    assert mask.sum() == 4 and mask[6] and not mask[dropped], method.score


def test_prune_once_accepts_a_score_function():
  params = {"w": jnp.array([[1., -3.], [2., 0.5]])}
  grads = {"w": jnp.array([[4., 0.], [0., -4.]])}
  method = sj.prune_once(sj.Unstructured(0.5), score=sj.scores.saliency,
                         prune_step=1)
  state = method.init(params)
  updates, state = method.update(params, jax.tree.map(jnp.zeros_like, params),
                                 state, grads=grads)
  np.testing.assert_array_equal(state.masks["w"], [[True, False],
                                                   [False, True]])
  np.testing.assert_array_equal(updates["w"], [[0., 3.], [-2., 0.]])
  with pytest.raises(ValueError, match="prune_step >= 1"):
    sj.prune_once(sj.Unstructured(0.5), score=sj.scores.movement)


@pytest.mark.parametrize("name, kwargs", [
    ("ste", {}),
    ("srste", {"decay": 0.1}),
    ("sste", {}),
    ("progressive_nm", {"total_steps": 10, "decay": "linear", "c": 0.1}),
])
def test_methods_are_static_jit_arguments(name, kwargs):
  params = _params()
  method = sj.methods.get(name)(sj.NM(2, 4), **kwargs)
  assert hash(method) == hash(sj.methods.get(name)(sj.NM(2, 4), **kwargs))

  @jax.jit
  def run(params):
    state = method.init(params)
    grads = jax.grad(lambda p: jnp.sum(method.view(p, state)["fc"]["kernel"]
                                       ** 2))(params)
    return method.update(params, grads, state, grads=grads)

  updates, state = run(params)
  eager_updates, eager_state = run.__wrapped__(params)
  for a, b in zip(jax.tree.leaves((updates, state)),
                  jax.tree.leaves((eager_updates, eager_state))):
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_bad_parts_are_named():
  with pytest.raises(ValueError, match="distribution must be one of"):
    sj.methods.Method(rules=sj.NM(2, 4), distribution="erdos")
  with pytest.raises(ValueError, match="grad must be one of"):
    sj.methods.MaskDecay("backprop")
  with pytest.raises(ValueError, match="SR-STE decay must be >= 0"):
    sj.srste(sj.NM(2, 4), decay=-1.0)
  with pytest.raises(TypeError, match="S-STE needs .*N:M pattern at 'fc/kernel'"):
    sj.sste(sj.Unstructured(0.5)).init(_params())
  with pytest.raises(ValueError, match="alpha must be in"):
    sj.rigl(sj.Unstructured(0.5), distribution=None, t_end=10, alpha=1.5)


def _nan_params():
  return {"w": jnp.array([[1.], [jnp.nan], [2.], [0.5]])}


def test_on_nonfinite_modes_name_the_leaf():
  warn = sj.methods.Method(rules=sj.NM(2, 4))
  with pytest.warns(sj._checks.NonFiniteWarning, match=r"params at 'w'"):
    state = warn.init(_nan_params())
  assert bool(state.masks["w"][0, 0]) and bool(state.masks["w"][2, 0])
  error = dataclasses.replace(warn, on_nonfinite="error")
  with pytest.raises(ValueError, match=r"params at 'w' hold 1 non-finite"):
    error.init(_nan_params())
  ignore = dataclasses.replace(warn, on_nonfinite="ignore")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    ignore.init(_nan_params())
    # Under jit the method does not check (a refresh stays collective-free).
    jax.block_until_ready(jax.jit(error.init)(_nan_params()))


def test_traced_bad_decay_schedule_raises_under_jit(maybe_jit):
  params = {"w": jnp.array([[1.], [-3.]])}
  bad = sj.methods.Method(rules=sj.NM(1, 2),
                          forward=sj.methods.SRSTE(lambda s: s - 1.0))
  state = bad.init(params)
  with pytest.raises((ValueError, jax.errors.JaxRuntimeError),
                     match=r"`decay` must be >= 0"):
    jax.block_until_ready(maybe_jit(bad.view)(params, state))
