"""Benchmark of ``block_sparse_matmul`` against XLA dense ``jnp.dot``.

Run through ``python -m pallas_kernels.bench --op block``; timed like the
N:M bench (chains of dependent calls, interleaved with dense baselines).
"""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

from pallas_kernels import _timing
from pallas_kernels.block_sparse import api
from pallas_kernels.block_sparse._bench_cases import bench_row
from pallas_kernels.block_sparse._bench_cases import block_cases
from pallas_kernels.formats import compress_padded_block
from pallas_kernels.nm.bench import format_row

__all__ = ["run"]


def run(shapes, batches, blocks, densities, dtype=jnp.bfloat16,
        implementations=None, reps: int = 20, emit=print, length: int = 32):
  """Times dense vs block-sparse ``x @ W`` (``W`` grouped by block column).

  The bound is ``1 / density`` (work skipped). Columns as in
  :func:`pallas_kernels.nm.bench.run`; each row's ``op`` and ``pattern`` are
  the dispatch's (``block_dsd``, :func:`~pallas_kernels.block_sparse.api.pattern`).
  Returns result dicts.

  >>> rows = run([(64, 64)], [1], [32], [0.5], jnp.float32, reps=2,
  ...            emit=lambda s: None, length=2)
  >>> rows[0]["bound"], rows[0]["impl"], rows[0]["op"], rows[0]["pattern"]
  (2.0, 'xla', 'block_dsd', 'b32x32/d0.50')
  """
  platform = jax.default_backend()
  impls = list(implementations or
               ["xla"] + [k for k, p in api.KERNELS.items() if p == platform])
  results = []
  itemsize = jnp.dtype(dtype).itemsize
  for case in block_cases(shapes, blocks, densities, dtype):
    bs = case.block
    t0 = time.perf_counter()
    p = jax.block_until_ready(
        compress_padded_block(case.w, case.mask, (bs, bs), major="col"))
    convert_s = time.perf_counter() - t0
    for b in batches:
      x = jax.random.normal(jax.random.key(b), (b, case.k),
                            jnp.float32).astype(dtype)
      choices = {i: api.choose_implementation(p, "dsd", i, batch=b)
                 for i in impls}
      fns = {i: functools.partial(api._dsd_call, impl=i) for i in impls}  # pylint: disable=protected-access
      res = _timing.against_dense(fns, p, x, case.w, case.masked, reps=reps,
                                  length=length)
      for impl in impls:
        row = bench_row(
            op=api.OPS["dsd"], pattern=api.pattern(p), case=case, batch=b,
            res=res, impl=impl, choice=choices[impl],
            nbytes=(case.keep * bs * bs * itemsize
                    + (b * case.k + b * case.n) * itemsize),
            convert_s=convert_s)
        results.append(row)
        emit(format_row(row))
  return results
