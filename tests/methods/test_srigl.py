"""SRigL: constant fan-in after every update, constant nnz, per-unit growth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj
from tests.methods.test_straight_through import _data, _loss, _params, _train

RULE = [sj.Rule(r".*kernel", sj.Unstructured(0.75))]


def _fan_in(mask):
  return np.asarray(mask).reshape(-1, mask.shape[-1]).sum(axis=0)


def test_constant_fan_in_after_every_update():
  sp = sj.methods.srigl(RULE, distribution=None, t_end=100, delta_t=5)
  params = _params()
  state = sp.init(params)
  want = {"fc1": 16 - int(0.75 * 16), "fc2": 64 - int(0.75 * 64)}
  grads = jax.tree.map(
      lambda w: jax.random.normal(jax.random.key(5), w.shape), params)
  zero = jax.tree.map(jnp.zeros_like, params)
  update = jax.jit(lambda s: sp.update(params, zero, s, grads=grads)[1])
  moved = 0
  for t in range(1, 40):
    state = update(state)
    for layer, fan_in in want.items():
      assert (_fan_in(state.masks[layer]["kernel"]) == fan_in).all(), (t, layer)
    flips = int(state.flips["fc2"]["kernel"])
    if t % 5:
      assert flips == 0
    else:
      moved += flips
      f_t = 0.3 / 2 * (1 + np.cos(np.pi * t / 100))
      # At most 2k per unit change (k dropped, k grown), 8 units.
      assert flips <= 8 * 2 * int(np.floor(f_t * want["fc2"]))
  assert moved > 0
  assert update._cache_size() == 1


def test_growth_by_gradient_within_each_unit():
  sp = sj.methods.srigl(sj.Unstructured(0.5), distribution=None, t_end=10,
                        delta_t=1, alpha=0.3)
  # Two units (columns) of fan-in 4 of 8 inputs; start from the top half of
  # |W| in each column.
  w = jnp.array([[8., 1.], [7., 2.], [6., 3.], [5., 4.],
                 [1., 8.], [2., 7.], [3., 6.], [4., 5.]])
  params = {"w": w}
  state = sp.init(params)._replace(masks={"w": jnp.abs(w) >= 5})
  # The gradient is largest in column 0 everywhere: a global RigL would grow
  # only there. Column 1 must grow its own best (row 1).
  g = jnp.zeros((8, 2)).at[4:, 0].set(jnp.array([90., 80., 70., 60.]))
  g = g.at[:4, 1].set(jnp.array([1., 5., 4., 2.]))
  _, new = sp.update(params, {"w": jnp.zeros((8, 2))}, state,
                     grads={"w": g})
  k = int(np.floor(0.15 * (1 + np.cos(np.pi / 10)) * 4))
  assert k == 1
  mask = np.asarray(new.masks["w"])
  assert (_fan_in(mask) == 4).all()
  # Column 0 dropped its smallest active weight (5, row 3) and grew row 4.
  np.testing.assert_array_equal(mask[:, 0], [1, 1, 1, 0, 1, 0, 0, 0])
  # Column 1 dropped its smallest active weight (5, row 7) and grew row 1.
  np.testing.assert_array_equal(mask[:, 1], [0, 1, 0, 0, 1, 1, 1, 0])


def test_trains_with_zeros_held_and_moments_reset():
  sp = sj.methods.srigl(RULE, distribution=None, t_end=150, delta_t=20)
  params, opt_state = _train(sp, steps=200)
  state = sj.sparsity_state(opt_state)
  for layer, fan_in in (("fc1", 4), ("fc2", 16)):
    m = state.masks[layer]["kernel"]
    assert (_fan_in(m) == fan_in).all()
    assert float(jnp.abs(jnp.where(m, 0, params[layer]["kernel"])).max()) == 0
  assert float(_loss(params, _data())) < float(_loss(_params(), _data()))


def test_erk_distribution_keeps_constant_fan_in_per_layer():
  sp = sj.methods.srigl(RULE, sparsity=0.75, t_end=100)
  state = sp.init(_params())
  for layer in ("fc1", "fc2"):
    fan = _fan_in(state.masks[layer]["kernel"])
    assert (fan == fan[0]).all() and 0 < fan[0]


def test_registered_and_validated():
  assert sj.methods.get("srigl") is sj.methods.srigl
  with pytest.raises(TypeError, match="SRigL needs .*'fc1/kernel'"):
    sj.methods.srigl(sj.NM(2, 4), distribution=None, t_end=5).init(_params())
  with pytest.raises(ValueError, match="t_end"):
    sj.methods.srigl(RULE, distribution=None, t_end=0)
  sp = sj.methods.srigl(RULE, distribution=None, t_end=5, delta_t=1)
  params = _params()
  with pytest.raises(ValueError, match="gradient score .*needs grads"):
    sp.update(params, params, sp.init(params))
