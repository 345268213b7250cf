"""Device-time measurement shared by the kernel benchmarks, the device check and autotuning.

A call is timed as a chain of ``length`` dependent calls inside one jitted
function (a ``lax.fori_loop`` whose next input is the previous input plus a
tiny multiple of a slice of the previous output, so no call can be skipped,
reordered or hoisted); the whole chain is timed and divided by ``length``, so
dispatch is excluded. Repetitions are interleaved across the timed
functions (the order rotates), and the median of ``reps`` >= 20 is reported.
Compilation is timed separately and excluded.
"""
from __future__ import annotations

import math
import platform as _platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["compile_fn", "chain", "interleaved_medians", "against_dense",
           "row_timings", "environment", "peak_gbps", "nm_bound", "PEAK_GBPS"]

# HBM bandwidth in GB/s by device kind (substring, checked in order).
PEAK_GBPS = (
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),
    ("H200", 4800.0),
    ("A100", 2039.0),
    ("TPU v5 lite", 819.0),
    ("TPU v5e", 819.0),
    ("TPU v5p", 2765.0),
    ("TPU v5", 2765.0),
    ("TPU v6 lite", 1640.0),
    ("TPU v6e", 1640.0),
)


def peak_gbps(kind: str) -> float | None:
  """Peak memory bandwidth (GB/s) of a device kind, or None if unknown.

  >>> peak_gbps("NVIDIA H200"), peak_gbps("TPU v5 lite"), peak_gbps("cpu")
  (4800.0, 819.0, None)
  """
  for name, value in PEAK_GBPS:
    if name.lower() in kind.lower():
      return value
  return None


def nm_bound(n: int, m: int, value_bits: int = 16) -> float:
  """Upper bound on an N:M kernel's speedup over dense when weights dominate.

  ``value_bits / bpe`` with ``bpe = value_bits * n/m + (n/m) * log2(m)``
  (bit-packed in-group indices).

  >>> [round(nm_bound(*p), 2) for p in ((2, 4), (1, 8), (1, 16))]
  [1.78, 6.74, 12.8]
  """
  bpe = value_bits * n / m + n / m * math.log2(m)
  return value_bits / bpe


def compile_fn(fn, *args):
  """Jits and compiles ``fn`` for ``args``; returns ``(compiled, seconds)``.

  >>> c, s = compile_fn(lambda x: x + 1, jax.numpy.ones(2))
  >>> float(c(jax.numpy.ones(2))[0]), s > 0
  (2.0, True)
  """
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - t0


def _feedback(x, out):
  """``x`` plus a tiny multiple of a slice of ``out`` (a real dependency)."""
  sl = out.reshape(out.shape[0], -1)[:, :1] if out.ndim > 1 else out[:1]
  tiny = jnp.asarray(1e-30, jnp.float32)
  return (x.astype(jnp.float32) + sl.astype(jnp.float32) * tiny).astype(
      x.dtype)


def chain(fn: Callable[..., jax.Array], x: jax.Array, *consts: Any,
          length: int = 32) -> tuple[Callable[[], jax.Array], float]:
  """Compiles ``length`` dependent calls of ``fn(x, *consts)`` as one program.

  Each step's input is the previous input plus ``1e-30`` times the first
  column of the previous output, behind an optimisation barrier that also
  covers ``consts``: XLA can neither drop a call nor hoist work on ``consts``
  (say, expanding a compressed weight) out of the loop.

  Args:
    fn: ``fn(x, *consts) -> array`` with leading axis of ``x``'s size.
    x: the first input (its dtype is kept).
    *consts: operands passed unchanged to every call.
    length: calls in the chain.

  Returns:
    ``(run, compile_seconds)``: ``run()`` executes the chain and returns its
    final input (block on it to time it).

  >>> run, _ = chain(lambda x, w: x @ w, jnp.ones((2, 4)), jnp.eye(4), length=3)
  >>> run().shape
  (2, 4)
  """
  if length < 1:
    raise ValueError(f"length must be >= 1, got {length}.")

  def program(x, *consts):
    def body(_, carry):
      x, consts = jax.lax.optimization_barrier(carry)
      return _feedback(x, fn(x, *consts)), consts

    return jax.lax.fori_loop(0, length, body, (x, consts))[0]

  compiled, seconds = compile_fn(program, x, *consts)
  return (lambda: compiled(x, *consts)), seconds


def interleaved_medians(calls: Mapping[str, Callable[[], Any]],
                        reps: int = 20, warmup: int = 2,
                        per: Mapping[str, int] | None = None
                        ) -> dict[str, float]:
  """Median seconds of each zero-argument call, timed interleaved.

  Every call is warmed up, then each repetition runs all calls once (the
  order rotates each repetition so no call always runs first) and blocks on
  the result.

  Args:
    calls: dict name -> zero-argument callable returning arrays.
    reps: repetitions (at least 20 for reported numbers).
    warmup: untimed calls per entry.
    per: dict name -> calls chained inside one call (the median is divided
      by it); 1 where absent.

  Returns:
    dict name -> median seconds (per chained call).

  >>> m = interleaved_medians({"a": lambda: jax.numpy.ones(2)}, reps=3)
  >>> m["a"] > 0
  True
  """
  names = list(calls)
  per = per or {}
  for name in names:
    for _ in range(warmup):
      jax.block_until_ready(calls[name]())
  times: dict[str, list[float]] = {name: [] for name in names}
  for r in range(reps):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
      t0 = time.perf_counter()
      jax.block_until_ready(calls[name]())
      times[name].append(time.perf_counter() - t0)
  return {name: statistics.median(v) / per.get(name, 1)
          for name, v in times.items()}


def dense_matmul(x, w):
  """XLA dense ``x @ w`` in ``w``'s dtype with f32 accumulation (the baseline).

  >>> dense_matmul(jnp.ones((1, 2), jnp.bfloat16), jnp.ones((2, 3), jnp.bfloat16)).dtype
  dtype(bfloat16)
  """
  dtype = jnp.result_type(x.dtype, w.dtype)
  return jnp.dot(x, w, preferred_element_type=jnp.float32).astype(dtype)


def against_dense(sparse_fns: Mapping[str, Callable[..., jax.Array]],
                  sparse_weight: Any, x: jax.Array, w: jax.Array,
                  masked_w: jax.Array | None = None, reps: int = 20,
                  length: int = 32) -> dict[str, Any]:
  """Times sparse implementations against XLA dense matmuls, interleaved.

  The baselines are ``x @ w`` (a random dense weight) and ``x @ masked_w``
  (the masked weight as dense), at the weight's dtype with f32 accumulation,
  in this process. Every entry is timed as a :func:`chain` of ``length``
  calls.

  Args:
    sparse_fns: name -> ``fn(x, sparse_weight)``.
    sparse_weight: the compressed weight.
    x: activations.
    w: random dense weight.
    masked_w: masked dense weight (skipped when None).
    reps: repetitions (median taken).
    length: calls per chain.

  Returns:
    dict with ``"seconds"`` (name -> seconds per call; names ``"dense"``,
    ``"masked"`` and those of ``sparse_fns``) and ``"compile_s"`` (name ->
    compile seconds of the chain, excluded from the times).

  >>> x, w = jax.numpy.ones((2, 4)), jax.numpy.ones((4, 4))
  >>> r = against_dense({"s": lambda x, w: x @ w}, w, x, w, w, reps=2, length=2)
  >>> sorted(r["seconds"])
  ['dense', 'masked', 's']
  """
  runs, compile_s = {}, {}
  runs["dense"], compile_s["dense"] = chain(dense_matmul, x, w, length=length)
  if masked_w is not None:
    runs["masked"], compile_s["masked"] = chain(dense_matmul, x, masked_w,
                                                length=length)
  for name, fn in sparse_fns.items():
    runs[name], compile_s[name] = chain(fn, x, sparse_weight, length=length)
  seconds = interleaved_medians(runs, reps=reps,
                                per={name: length for name in runs})
  return dict(seconds=seconds, compile_s=compile_s)


def row_timings(res: Mapping[str, Any], impl: str, choice: Any, *,
                bound: float, nbytes: float, flops: float,
                peak: float | None, convert_s: float) -> dict[str, Any]:
  """The timing columns of a bench row for ``impl``.

  Args:
    res: the :func:`against_dense` result.
    impl: the timed implementation's name.
    choice: what the op's ``choose_implementation`` returned for it.
    bound: the ratio to dense the sparse product cannot beat.
    nbytes: bytes one call moves (weight as stored, activations, output).
    flops: useful FLOPs of one sparse product.
    peak: HBM bandwidth of the device in GB/s, or None where unknown.
    convert_s: seconds the weight's conversion took.

  >>> import collections
  >>> c = collections.namedtuple("C", "implementation interpret reason")
  >>> res = dict(seconds=dict(dense=2.0, masked=2.0, s=1.0),
  ...            compile_s=dict(dense=0.5, s=0.25))
  >>> r = row_timings(res, "s", c("s", False, "why"), bound=4.0, nbytes=1e9,
  ...                 flops=1e12, peak=None, convert_s=0.0)
  >>> r["ratio"], r["frac"], r["gbps"], r["tflops"], r["impl"]
  (2.0, 0.5, 1.0, 1.0, 's')
  """
  sec = res["seconds"]
  ratio = sec["dense"] / sec[impl]
  gbps = nbytes / sec[impl] / 1e9
  return dict(
      implementation=choice.implementation,
      impl=choice.implementation + ("*" if choice.interpret else ""),
      interpret=choice.interpret,
      dense_us=sec["dense"] * 1e6, masked_us=sec["masked"] * 1e6,
      sparse_us=sec[impl] * 1e6, ratio=ratio,
      ratio_masked=sec["masked"] / sec[impl], bound=bound,
      frac=ratio / bound, gbps=gbps,
      peak_frac=None if peak is None else gbps / peak,
      tflops=flops / sec[impl] / 1e12,
      compile_s=res["compile_s"][impl],
      dense_compile_s=res["compile_s"]["dense"],
      convert_s=convert_s, reason=choice.reason)


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
