"""The shared interception of dense layer calls, and calibration on it."""

import threading

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparsejax.flax import intercept as intercept_lib
from sparsejax.flax import intercept_dense
from sparsejax.oneshot import collect_stats
from sparsejax.oneshot import prune
from sparsejax.patterns import NM
from sparsejax.rules import Rule

RULES = [Rule(r".*kernel", NM(2, 4))]


class LinenNet(nn.Module):

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(16, name="fc1")(x))
    return nn.Dense(8, name="fc2")(h)


class NnxNet(nnx.Module):

  def __init__(self, rngs):
    self.fc1 = nnx.Linear(12, 16, rngs=rngs)
    self.fc2 = nnx.Linear(16, 8, rngs=rngs)

  def __call__(self, x):
    return self.fc2(nnx.relu(self.fc1(x)))


def _nets():
  """A Linen and an NNX net holding the same weights."""
  linen = LinenNet()
  variables = linen.init(jax.random.key(0), jnp.ones((1, 12)))
  model = NnxNet(nnx.Rngs(0))
  nnx.update(model, variables["params"])
  return linen, variables, model


def _log(seen):

  def handler(call, proceed):
    seen.append((call.framework, call.path, tuple(call.inputs.shape),
                 tuple(call.kernel.shape), call.bias is not None))
    return proceed()

  return handler


def test_linen_and_nnx_calls_arrive_in_order_with_paths():
  linen, variables, model = _nets()
  x = jnp.ones((3, 12))
  seen = []
  with intercept_dense(_log(seen)):
    y_linen = linen.apply(variables, x)
  with intercept_dense(_log(seen), model):
    y_nnx = model(x)
  assert seen == [("linen", "fc1", (3, 12), (12, 16), True),
                  ("linen", "fc2", (3, 16), (16, 8), True),
                  ("nnx", "fc1", (3, 12), (12, 16), True),
                  ("nnx", "fc2", (3, 16), (16, 8), True)]
  np.testing.assert_allclose(y_linen, y_nnx, rtol=1e-6)


def test_handler_output_replaces_the_layer_and_contexts_nest():
  _, _, model = _nets()
  x = jnp.ones((2, 12))
  order = []

  def outer(call, proceed):
    order.append(("outer", call.path))
    return proceed()

  def zero_fc2(call, proceed):
    order.append(("inner", call.path))
    out = proceed()
    return jnp.zeros_like(out) if call.path == "fc2" else out

  linen, variables, _ = _nets()
  with intercept_dense(outer, model):
    with intercept_dense(zero_fc2, model):
      y = model(x)
  with intercept_dense(outer):
    with intercept_dense(zero_fc2):
      y_linen = linen.apply(variables, x)
  np.testing.assert_array_equal(y, jnp.zeros((2, 8)))
  np.testing.assert_array_equal(y_linen, jnp.zeros((2, 8)))
  # Both frameworks nest alike: the outer handler runs first.
  assert order == [("outer", "fc1"), ("inner", "fc1"), ("outer", "fc2"),
                   ("inner", "fc2")] * 2


def test_nnx_inside_jit_and_no_trace_left_behind():
  _, _, model = _nets()
  original = nnx.Linear.__dict__["__call__"]
  seen = []

  @nnx.jit
  def run(model, x):
    with intercept_dense(_log(seen), model):
      return model(x)

  run(model, jnp.ones((2, 12)))
  assert [s[1] for s in seen] == ["fc1", "fc2"]
  # Outside any context the layer class is exactly as Flax defines it, and
  # nothing is delivered.
  assert nnx.Linear.__dict__["__call__"] is original
  assert not intercept_lib._INSTALLED
  seen.clear()
  model(jnp.ones((2, 12)))
  assert seen == []
  # A layer outside the named model is still delivered, without a path.
  stray = nnx.Linear(12, 4, rngs=nnx.Rngs(1))
  with intercept_dense(_log(seen), model):
    stray(jnp.ones((1, 12)))
  assert seen == [("nnx", None, (1, 12), (12, 4), True)]


def test_other_threads_are_not_intercepted():
  _, _, model = _nets()
  seen, other = [], []
  started, release = threading.Event(), threading.Event()

  def worker():
    started.wait()
    with intercept_dense(_log(other)):
      pass
    model(jnp.ones((1, 12)))  # runs while the main thread's context is open
    release.set()

  thread = threading.Thread(target=worker)
  thread.start()
  with intercept_dense(_log(seen), model):
    started.set()
    release.wait(timeout=60)
  thread.join()
  assert other == [] and seen == []


def test_calibration_is_the_same_through_linen_and_nnx():
  """Both capture paths of the one mechanism give the same statistics."""
  linen, variables, model = _nets()
  data = [jax.random.normal(jax.random.key(i), (4, 3, 12)) for i in range(2)]
  linen_stats = collect_stats(linen, variables, data, RULES)
  nnx_stats = collect_stats(model, None, data, RULES)
  assert list(linen_stats) == ["params/fc1/kernel", "params/fc2/kernel"]
  assert list(nnx_stats) == ["fc1/kernel", "fc2/kernel"]
  for name in ("fc1", "fc2"):
    for a, b in zip(linen_stats[f"params/{name}/kernel"],
                    nnx_stats[f"{name}/kernel"]):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                                 atol=1e-5)
  for sequential in (True, False):
    linen_new, _ = prune(linen, variables, data, RULES, method="sparsegpt",
                         sequential=sequential)
    nnx_new, _ = prune(model, None, data, RULES, method="sparsegpt",
                       sequential=sequential)
    for name in ("fc1", "fc2"):
      np.testing.assert_allclose(
          np.asarray(linen_new["params"][name]["kernel"]),
          np.asarray(nnx_new[name]["kernel"][...]), rtol=1e-4, atol=1e-5)
  # Capturing leaves the NNX model's layers as they were.
  assert type(model.fc1) is nnx.Linear
