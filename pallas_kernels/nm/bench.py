"""Benchmark of ``nm_matmul`` against XLA dense ``jnp.dot`` (same process).

Run through ``python -m pallas_kernels.bench --op nm`` or
``python -m pallas_kernels.device_check``. Every implementation is timed as
a chain of dependent calls in one program (:mod:`pallas_kernels._timing`),
interleaved with the dense baselines on a random and on the masked weight.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from pallas_kernels import _testing
from pallas_kernels import _timing
from pallas_kernels.formats import compress_nm
from pallas_kernels.nm.api import choose_implementation
from pallas_kernels.nm.api import PLATFORMS
from pallas_kernels.nm.api import nm_matmul

__all__ = ["run", "HEADER", "header", "format_row",
           "default_implementations"]


def header(widths: tuple[int, int] = (3, 10)) -> str:
  """The table header for rows printed with :func:`format_row` ``widths``.

  >>> header().split()[:3]
  ['op', 'pattern', 'shape']
  """
  return (f"{'op':<{widths[0]}} {'pattern':<{widths[1]}} shape       B     "
          "dtype    impl          dense_us masked_us sparse_us  d/s   md/s  "
          "bound  frac    GB/s  %peak TFLOP/s")


HEADER = header()


def default_implementations(platform: str | None = None) -> list[str]:
  """``"xla"`` plus every kernel native to the backend.

  >>> default_implementations("cpu")
  ['xla']
  """
  platform = platform or jax.default_backend()
  return ["xla"] + [k for k, p in PLATFORMS.items() if p == platform]


def format_row(row: dict[str, Any], widths: tuple[int, int] = (3, 10)) -> str:
  """One table line of a result row (blank where a figure is unknown).

  ``widths`` are the op and pattern columns' widths (see :func:`header`).

  >>> r = dict(op="nm", pattern="2:4", shape="8x8", batch=1, dtype="bfloat16",
  ...          impl="xla", dense_us=1.0, masked_us=1.0, sparse_us=2.0,
  ...          ratio=0.5, ratio_masked=0.5, bound=1.78, frac=0.28, gbps=1.0,
  ...          peak_frac=None, tflops=0.5)
  >>> format_row(r).split()[-2:]
  ['1.00', '0.5000']
  """
  peak = "" if row["peak_frac"] is None else f"{100 * row['peak_frac']:5.1f}"
  tflops = "" if row.get("tflops") is None else f"{row['tflops']:8.4f}"
  return (f"{row['op']:<{widths[0]}} {row['pattern']:<{widths[1]}} "
          f"{row['shape']:<11} "
          f"{row['batch']:<5} {row['dtype']:<8} {row['impl']:<13}"
          f"{row['dense_us']:9.1f} {row['masked_us']:9.1f} "
          f"{row['sparse_us']:9.1f} {row['ratio']:5.2f} "
          f"{row['ratio_masked']:5.2f} {row['bound']:6.2f} "
          f"{row['frac']:5.2f} {row['gbps']:7.2f} {peak:>6} {tflops:>8}"
          ).rstrip()


def run(shapes: Sequence[tuple[int, int]], batches: Sequence[int],
        patterns: Sequence[tuple[int, int]], dtype=jnp.bfloat16,
        implementations: Sequence[str] | None = None, reps: int = 20,
        emit: Callable[[str], Any] = print,
        length: int = 32) -> list[dict[str, Any]]:
  """Times dense vs N:M for every shape, pattern, batch and implementation.

  Args:
    shapes: ``(K, N)`` weight shapes.
    batches: activation rows.
    patterns: ``(n, m)`` pairs.
    dtype: weight and activation dtype.
    implementations: names passed to ``nm_matmul`` (default
      :func:`default_implementations`); a kernel not native to this backend
      runs in interpret mode and is marked ``*``.
    reps: repetitions (median taken; >= 20 for reported figures).
    emit: called with each formatted line.
    length: calls per timed chain.

  Returns:
    One dict per row: times in us, ``ratio`` (dense/sparse),
    ``ratio_masked`` (masked-dense/sparse), ``bound`` (``16/bpe``, bit-packed
    indices), ``frac`` (ratio/bound), ``gbps`` (bytes moved / time),
    ``peak_frac`` (of the device's HBM peak, None if unknown), ``tflops``
    (useful FLOPs of the sparse product per second), compile and
    conversion seconds (excluded from the times).

  >>> rows = run([(64, 128)], [1], [(2, 4)], jnp.float32, reps=2,
  ...            emit=lambda s: None, length=2)
  >>> rows[0]["pattern"], rows[0]["ratio"] > 0, rows[0]["impl"]
  ('2:4', True, 'xla')
  """
  impls = list(implementations or default_implementations())
  kind = jax.devices()[0].device_kind
  peak = _timing.peak_gbps(kind)
  bits = jnp.finfo(dtype).bits
  itemsize = jnp.dtype(dtype).itemsize
  results = []
  for (k, cols) in shapes:
    w = jax.random.normal(jax.random.key(0), (k, cols),
                          jnp.float32).astype(dtype)
    for (n, m) in patterns:
      mask = _testing.nm_mask(w, n, m)
      wm = jnp.where(mask, w, jnp.zeros((), dtype))
      t0 = time.perf_counter()
      c = jax.block_until_ready(compress_nm(w, mask, n, m))
      convert_s = time.perf_counter() - t0
      bound = _timing.nm_bound(n, m, bits)
      for b in batches:
        x = jax.random.normal(jax.random.key(b), (b, k),
                              jnp.float32).astype(dtype)
        choices = {impl: choose_implementation(x, c, impl) for impl in impls}
        fns = {impl: _call(impl) for impl in impls}
        res = _timing.against_dense(fns, c, x, w, wm, reps=reps,
                                    length=length)
        io = (b * k + b * cols) * itemsize
        for impl in impls:
          row = dict(
              op="nm", pattern=f"{n}:{m}", shape=f"{k}x{cols}", k=k, n=cols,
              batch=b, dtype=jnp.dtype(dtype).name, device_kind=kind,
              **_timing.row_timings(
                  res, impl, choices[impl], bound=bound,
                  nbytes=c.nbytes() + io, flops=2 * b * k * cols * n / m,
                  peak=peak, convert_s=convert_s))
          results.append(row)
          emit(format_row(row))
  return results


def _call(impl):
  def fn(x, c):
    return nm_matmul(x, c, implementation=impl)
  return fn
