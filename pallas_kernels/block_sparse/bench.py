"""Benchmark of ``block_sparse_matmul`` against XLA dense ``jnp.dot``.

Run through ``python -m pallas_kernels.bench --op block``; timed like the
N:M bench (chains of dependent calls, interleaved with dense baselines).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from pallas_kernels import _timing
from pallas_kernels.block_sparse.api import block_sparse_matmul
from pallas_kernels.block_sparse.api import choose_implementation
from pallas_kernels.block_sparse.api import KERNELS
from pallas_kernels.formats import compress_padded_block
from pallas_kernels.nm.bench import format_row

__all__ = ["run"]


def run(shapes, batches, blocks, densities, dtype=jnp.bfloat16,
        implementations=None, reps: int = 20, emit=print, length: int = 32):
  """Times dense vs block-sparse ``x @ W`` (``W`` grouped by block column).

  The bound is ``1 / density`` (work skipped). Columns as in
  :func:`pallas_kernels.nm.bench.run`. Returns result dicts.

  >>> rows = run([(64, 64)], [1], [32], [0.5], jnp.float32, reps=2,
  ...            emit=lambda s: None, length=2)
  >>> rows[0]["bound"], rows[0]["impl"]
  (2.0, 'xla')
  """
  platform = jax.default_backend()
  impls = list(implementations or
               ["xla"] + [k for k, p in KERNELS.items() if p == platform])
  kind = jax.devices()[0].device_kind
  peak = _timing.peak_gbps(kind)
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
          choices = {i: choose_implementation(p, "dsd", i, batch=b)
                     for i in impls}
          fns = {i: _call(i) for i in impls}
          res = _timing.against_dense(fns, p, x, w, wm, reps=reps,
                                      length=length)
          bound = 1.0 / dens
          stored = keep * bs * bs * itemsize
          for impl in impls:
            row = dict(
                op="blk", pattern=f"b{bs}/d{dens:.2f}", shape=f"{k}x{cols}",
                k=k, n=cols, batch=b, dtype=jnp.dtype(dtype).name,
                device_kind=kind,
                **_timing.row_timings(
                    res, impl, choices[impl], bound=bound,
                    nbytes=stored + (b * k + b * cols) * itemsize,
                    flops=2 * b * keep * bs * bs, peak=peak,
                    convert_s=convert_s))
            results.append(row)
            emit(format_row(row))
  return results


def _call(impl):
  def fn(x, p):
    return block_sparse_matmul(x, p, implementation=impl)
  return fn
