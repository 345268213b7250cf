"""Benchmark of ``block_sparse_matmul`` against XLA dense ``jnp.dot``.

Run through ``python -m pallas_kernels.bench --op block``.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from pallas_kernels import _timing
from pallas_kernels.block_sparse.api import block_sparse_matmul
from pallas_kernels.block_sparse.api import choose_implementation
from pallas_kernels.formats import compress_padded_block

__all__ = ["run"]


def run(shapes, batches, blocks, densities, dtype=jnp.bfloat16,
        implementation=None, reps: int = 20, emit=print):
  """Times dense vs block-sparse ``x @ W`` (``W`` grouped by block column).

  The bound is ``1 / density`` (work skipped). Returns result dicts.

  >>> rows = run([(64, 64)], [1], [32], [0.5], jnp.float32, reps=2, emit=lambda s: None)
  >>> rows[0]["bound"]
  2.0
  """
  results = []
  itemsize = jnp.dtype(dtype).itemsize
  for (k, cols) in shapes:
    w = jax.random.normal(jax.random.key(0), (k, cols),
                          jnp.float32).astype(dtype)
    for bs in blocks:
      if k % bs or cols % bs:
        continue
      grid = (k // bs, cols // bs)
      for density in densities:
        keep = max(1, round(density * grid[0] * grid[1]))
        order = jax.random.permutation(jax.random.key(1),
                                       grid[0] * grid[1])
        bmask = jnp.zeros(grid[0] * grid[1], bool).at[order[:keep]].set(True)
        bmask = bmask.reshape(grid)
        dens = keep / (grid[0] * grid[1])
        t0 = time.perf_counter()
        p = jax.block_until_ready(
            compress_padded_block(w, bmask, (bs, bs), major="col"))
        convert_s = time.perf_counter() - t0
        wm = jnp.repeat(jnp.repeat(bmask, bs, 0), bs, 1)
        wm = jnp.where(wm, w, jnp.zeros((), dtype))
        for b in batches:
          x = jax.random.normal(jax.random.key(b), (b, k),
                                jnp.float32).astype(dtype)
          choice = choose_implementation(p, "dsd", implementation)

          def sparse_fn(x, p):
            return block_sparse_matmul(x, p, implementation=implementation)

          med, dc, sc = _timing.against_dense(sparse_fn, p, x, w, wm, dtype,
                                              reps)
          ratio = med["dense"] / med["sparse"]
          bound = 1.0 / dens
          stored = keep * bs * bs * itemsize
          row = dict(
              op="blk", pattern=f"b{bs}/d{dens:.2f}", shape=f"{k}x{cols}",
              batch=b, dtype=jnp.dtype(dtype).name,
              impl=choice.implementation + ("*" if choice.interpret else ""),
              dense_us=med["dense"] * 1e6, masked_us=med["masked"] * 1e6,
              sparse_us=med["sparse"] * 1e6, ratio=ratio, bound=bound,
              frac=ratio / bound,
              gbps=(stored + (b * k + b * cols) * itemsize) / med["sparse"]
              / 1e9,
              tflops=2 * b * keep * bs * bs / med["sparse"] / 1e12,
              compile_s=dc + sc, convert_s=convert_s, reason=choice.reason)
          results.append(row)
          emit(f"{row['op']:<3} {row['pattern']:<10} {row['shape']:<11} "
               f"{b:<5} {row['dtype']:<8} {row['impl']:<11}"
               f"{row['dense_us']:9.1f} {row['masked_us']:9.1f} "
               f"{row['sparse_us']:9.1f} {ratio:5.2f} {bound:6.2f} "
               f"{row['frac']:5.2f} {row['gbps']:7.2f} {row['tflops']:9.4f}")
  return results
