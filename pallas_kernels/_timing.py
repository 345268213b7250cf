"""Fair, interleaved timing shared by the kernel benchmarks (dense baseline in the same process)."""
from __future__ import annotations

import platform as _platform
import statistics
import time

import jax
import numpy as np

__all__ = ["compile_fn", "interleaved_medians", "against_dense", "environment"]


def compile_fn(fn, *args):
  """Jits and compiles ``fn`` for ``args``; returns ``(compiled, seconds)``.

  >>> c, s = compile_fn(lambda x: x + 1, jax.numpy.ones(2))
  >>> float(c(jax.numpy.ones(2))[0]), s > 0
  (2.0, True)
  """
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - t0


def interleaved_medians(calls, reps: int = 20, warmup: int = 3):
  """Median seconds of each zero-argument call, timed interleaved.

  Every call is warmed up, then each repetition runs all calls once (the
  order rotates each repetition so no call always runs first) and blocks on
  the result, which times device work rather than dispatch.

  Args:
    calls: dict name -> zero-argument callable returning arrays.
    reps: repetitions (at least 20 for reported numbers).
    warmup: untimed calls per entry.

  Returns:
    dict name -> median seconds.

  >>> m = interleaved_medians({"a": lambda: jax.numpy.ones(2)}, reps=3)
  >>> m["a"] > 0
  True
  """
  names = list(calls)
  for name in names:
    for _ in range(warmup):
      jax.block_until_ready(calls[name]())
  times = {name: [] for name in names}
  for r in range(reps):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
      t0 = time.perf_counter()
      jax.block_until_ready(calls[name]())
      times[name].append(time.perf_counter() - t0)
  return {name: statistics.median(v) for name, v in times.items()}


def against_dense(sparse_fn, sparse_weight, x, w, masked_w, dtype,
                  reps: int = 20):
  """Times ``sparse_fn(x, sparse_weight)`` against XLA dense matmuls.

  The baselines are ``x @ w`` (a random dense weight) and ``x @ masked_w``
  (the masked weight as dense), both at ``dtype`` with f32 accumulation,
  interleaved with the sparse call in this process.

  Returns:
    ``(medians, dense_compile_s, sparse_compile_s)``; ``medians`` maps
    "dense", "masked" and "sparse" to median seconds.

  >>> x, w = jax.numpy.ones((2, 4)), jax.numpy.ones((4, 4))
  >>> med, _, _ = against_dense(lambda x, w: x @ w, w, x, w, w, x.dtype, reps=2)
  >>> sorted(med)
  ['dense', 'masked', 'sparse']
  """

  def dense_fn(x, w):
    return jax.numpy.dot(x, w, preferred_element_type=jax.numpy.float32
                         ).astype(dtype)

  dense, dense_s = compile_fn(dense_fn, x, w)
  sparse, sparse_s = compile_fn(sparse_fn, x, sparse_weight)
  med = interleaved_medians(
      {"dense": lambda: dense(x, w), "masked": lambda: dense(x, masked_w),
       "sparse": lambda: sparse(x, sparse_weight)}, reps=reps)
  return med, dense_s, sparse_s


def environment() -> str:
  """One line naming the device and the software versions.

  >>> "jax" in environment()
  True
  """
  dev = jax.devices()[0]
  import jaxlib  # pylint: disable=g-import-not-at-top
  return (f"device={dev.platform}:{dev.device_kind} (x{jax.device_count()}) "
          f"jax={jax.__version__} jaxlib={jaxlib.__version__} "
          f"numpy={np.__version__} python={_platform.python_version()} "
          f"host={_platform.machine()}")
