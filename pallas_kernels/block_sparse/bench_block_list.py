"""Benchmark of ``block_list_matmul`` (dense x block-sparse) against XLA dense.

Run through ``python -m pallas_kernels.device_check``. Timed like the N:M
bench (:mod:`pallas_kernels._timing`: chains of dependent calls, interleaved
with the dense baselines on a random and on the masked weight, same
process), with rows in the same format; each row's ``op`` and ``pattern`` are
the dispatch's (``block_list_dsd``, ``b{bh}x{bw}/d{bucket}``), so
``--write-table`` rows are found by :mod:`pallas_kernels.dispatch`.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from pallas_kernels import _testing
from pallas_kernels import _timing
from pallas_kernels.block_sparse import block_list_api as api
from pallas_kernels.formats import block_list_from_mask
from pallas_kernels.formats._block_list import smem_bytes
from pallas_kernels.nm.bench import format_row
from pallas_kernels.nm.bench import header

__all__ = ["run", "HEADER", "WIDTHS", "default_implementations"]

WIDTHS = (14, 14)
HEADER = header(WIDTHS)


def default_implementations(platform: str | None = None) -> list[str]:
  """The block-list kernels native to the backend (the dense baselines are
  timed with every row).

  >>> default_implementations("cpu"), default_implementations("gpu")
  ([], ['triton'])
  """
  platform = platform or jax.default_backend()
  return [k for k, p in api.KERNELS.items() if p == platform]


def keep_count(grid: tuple[int, int], density: float) -> int:
  """Blocks kept at ``density`` of ``grid``: never above it, at least one.

  Rounding down keeps the measured case inside the dispatch's density
  bucket (:func:`pallas_kernels.dispatch.density_bucket`).

  >>> keep_count((32, 32), 0.1), keep_count((64, 64), 0.1), keep_count((2, 2), 0.1)
  (102, 409, 1)
  """
  return max(1, int(grid[0] * grid[1] * density + 1e-9))


def run(shapes: Sequence[tuple[int, int]], batches: Sequence[int],
        blocks: Sequence[int], densities: Sequence[float], dtype=jnp.bfloat16,
        implementations: Sequence[str] | None = None, reps: int = 20,
        emit: Callable[[str], Any] = print,
        length: int = 32) -> list[dict[str, Any]]:
  """Times dense vs ``x @ W`` with ``W`` a random block list, every case.

  A layout no listed implementation can run (e.g. 64x64 blocks for the TPU
  kernel) is skipped with a note. Columns as in
  :func:`pallas_kernels.nm.bench.run`; the bound is ``1 / density`` (work
  skipped); bytes count the stored blocks, their metadata, ``x`` and the
  output; TFLOP/s count the stored blocks' FLOPs.

  Args:
    shapes: ``(K, N)`` weight shapes.
    batches: activation rows.
    blocks: square block sizes.
    densities: kept fraction of the block grid.
    dtype: weight and activation dtype.
    implementations: names passed to ``block_list_matmul`` (default
      :func:`default_implementations`); one not native here runs in
      interpret mode and is marked ``*``.
    reps: repetitions (median taken; >= 20 for reported figures).
    emit: called with each formatted line.
    length: calls per timed chain.

  Returns:
    One dict per row, as :func:`pallas_kernels.nm.bench.run`.

  >>> rows = run([(64, 64)], [1], [32], [0.5], jnp.float32, ["xla_blocks"],
  ...            reps=2, emit=lambda s: None, length=2)
  >>> rows[0]["op"], rows[0]["pattern"], rows[0]["bound"], rows[0]["impl"]
  ('block_list_dsd', 'b32x32/d0.50', 2.0, 'xla_blocks')
  """
  platform = jax.default_backend()
  names = list(implementations if implementations is not None else
               default_implementations(platform))
  kind = jax.devices()[0].device_kind
  peak = _timing.peak_gbps(kind)
  itemsize = jnp.dtype(dtype).itemsize
  results = []
  for (k, cols) in shapes:
    w = jax.random.normal(jax.random.key(0), (k, cols),
                          jnp.float32).astype(dtype)
    for bs in blocks:
      if k % bs or cols % bs:
        continue
      grid = (k // bs, cols // bs)
      for density in densities:
        keep = keep_count(grid, density)
        mask = _testing.random_block_mask(grid, keep, seed=1)
        t0 = time.perf_counter()
        bl = jax.block_until_ready(block_list_from_mask(w, mask, (bs, bs)))
        convert_s = time.perf_counter() - t0
        impls = [i for i in names if api.unsupported(
            bl, i, interpret=api.KERNELS.get(i, "any") not in (platform,
                                                               "any")) is None]
        where = f"block_list b{bs}x{bs} d{density} {k}x{cols}"
        if not impls:
          emit(f"# {where}: skipped (none of {names} takes this layout)")
          continue
        wm = jnp.repeat(jnp.repeat(jnp.asarray(mask), bs, 0), bs, 1)
        wm = jnp.where(wm, w, jnp.zeros((), dtype))
        meta = smem_bytes(bl.by_col)  # the walk x @ W follows
        for b in batches:
          x = jax.random.normal(jax.random.key(b), (b, k),
                                jnp.float32).astype(dtype)
          choices = {i: api.choose_implementation(bl, "dsd", i, batch=b)
                     for i in impls}
          fns = {i: functools.partial(_call, impl=i) for i in impls}
          res = _timing.against_dense(fns, bl, x, w, wm, reps=reps,
                                      length=length)
          for impl in impls:
            row = dict(
                op=api.OPS["dsd"], pattern=api.pattern(bl),
                shape=f"{k}x{cols}", k=k, n=cols, batch=b,
                dtype=jnp.dtype(dtype).name, device_kind=kind,
                **_timing.row_timings(
                    res, impl, choices[impl],
                    bound=grid[0] * grid[1] / keep,
                    nbytes=keep * bs * bs * itemsize + meta
                    + (b * k + b * cols) * itemsize,
                    flops=2 * b * keep * bs * bs, peak=peak,
                    convert_s=convert_s))
            results.append(row)
            emit(format_row(row, WIDTHS))
  return results


def _call(x, bl, impl):
  return api.block_list_matmul(x, bl, implementation=impl)
