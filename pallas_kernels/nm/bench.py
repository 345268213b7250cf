"""Benchmark of ``nm_matmul`` against XLA dense ``jnp.dot`` (same process).

Run through ``python -m pallas_kernels.bench --op nm``.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from pallas_kernels import _timing
from pallas_kernels.nm.api import choose_implementation
from pallas_kernels.nm.api import nm_matmul
from pallas_kernels.formats import compress_nm
from sparsejax.patterns import NM

__all__ = ["run"]

HEADER = ("op  pattern shape       B     dtype    impl        dense_us  "
          "masked_us sparse_us ratio  bound  frac   GB/s    TFLOP/s")


def run(shapes, batches, patterns, dtype=jnp.bfloat16, implementation=None,
        reps: int = 20, emit=print):
  """Times dense vs N:M for every shape, pattern and batch; emits rows.

  Returns the list of result dicts.

  >>> rows = run([(64, 128)], [1], [(2, 4)], jnp.float32, reps=2, emit=lambda s: None)
  >>> rows[0]["pattern"], rows[0]["ratio"] > 0
  ('2:4', True)
  """
  results = []
  key = jax.random.key(0)
  itemsize = jnp.dtype(dtype).itemsize
  for (k, cols) in shapes:
    w = jax.random.normal(key, (k, cols), jnp.float32).astype(dtype)
    for (n, m) in patterns:
      mask = NM(n, m).mask(jnp.abs(w))
      wm = jnp.where(mask, w, jnp.zeros((), dtype))
      t0 = time.perf_counter()
      c = jax.block_until_ready(compress_nm(w, mask, n, m))
      convert_s = time.perf_counter() - t0
      dense_bytes = k * cols * itemsize
      bound = dense_bytes / c.nbytes()
      for b in batches:
        x = jax.random.normal(jax.random.key(b), (b, k),
                              jnp.float32).astype(dtype)
        choice = choose_implementation(x, c, implementation)

        def sparse_fn(x, c):
          return nm_matmul(x, c, implementation=implementation)

        med, dense_c, sparse_c = _timing.against_dense(sparse_fn, c, x, w, wm,
                                                       dtype, reps)
        ratio = med["dense"] / med["sparse"]
        io = (b * k + b * cols) * itemsize
        row = dict(
            op="nm", pattern=f"{n}:{m}", shape=f"{k}x{cols}", batch=b,
            dtype=jnp.dtype(dtype).name,
            impl=choice.implementation + ("*" if choice.interpret else ""),
            dense_us=med["dense"] * 1e6, masked_us=med["masked"] * 1e6,
            sparse_us=med["sparse"] * 1e6, ratio=ratio, bound=bound,
            frac=ratio / bound,
            gbps=(c.nbytes() + io) / med["sparse"] / 1e9,
            tflops=2 * b * k * cols * n / m / med["sparse"] / 1e12,
            compile_s=dense_c + sparse_c, convert_s=convert_s,
            reason=choice.reason)
        results.append(row)
        emit(f"{row['op']:<3} {row['pattern']:<7} {row['shape']:<11} "
             f"{b:<5} {row['dtype']:<8} {row['impl']:<11}"
             f"{row['dense_us']:9.1f} {row['masked_us']:9.1f} "
             f"{row['sparse_us']:9.1f} {ratio:5.2f} {bound:6.2f} "
             f"{row['frac']:5.2f} {row['gbps']:7.2f} {row['tflops']:9.4f}")
  return results
