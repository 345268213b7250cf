"""Benchmark of ``nm_matmul`` against XLA dense ``jnp.dot`` (same process).

Run through ``python -m pallas_kernels.bench --op nm``.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from pallas_kernels import _timing
from pallas_kernels.nm_matmul.api import choose_implementation
from pallas_kernels.nm_matmul.api import nm_matmul
from sparsejax.formats import compress_nm

__all__ = ["nm_mask", "run"]

HEADER = ("op  pattern shape       B     dtype    impl        dense_us  "
          "masked_us sparse_us ratio  bound  frac   GB/s    TFLOP/s")


def nm_mask(w, n: int, m: int):
  """Magnitude N:M mask along axis 0 (ties broken by index).

  >>> nm_mask(jnp.array([[1.0], [3.0], [2.0], [0.0]]), 2, 4)[:, 0]
  Array([False,  True,  True, False], dtype=bool)
  """
  k, cols = w.shape
  g = jnp.abs(w).reshape(k // m, m, cols)
  rank = jnp.argsort(jnp.argsort(-g, axis=1, stable=True), axis=1)
  return (rank < n).reshape(k, cols)


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
      mask = nm_mask(w, n, m)
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

        def dense_fn(x, w):
          return jnp.dot(x, w, preferred_element_type=jnp.float32).astype(
              dtype)

        def sparse_fn(x, c):
          return nm_matmul(x, c, implementation=implementation)

        dense, dense_c = _timing.compile_fn(dense_fn, x, w)
        sparse, sparse_c = _timing.compile_fn(sparse_fn, x, c)
        med = _timing.interleaved_medians(
            {"dense": lambda: dense(x, w), "masked": lambda: dense(x, wm),
             "sparse": lambda: sparse(x, c)}, reps=reps)
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
