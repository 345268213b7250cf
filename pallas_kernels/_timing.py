"""Fair, interleaved timing shared by the kernel benchmarks (dense baseline in the same process)."""
from __future__ import annotations

import platform as _platform
import statistics
import time

import jax
import numpy as np

__all__ = ["compile_fn", "interleaved_medians", "environment"]


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
