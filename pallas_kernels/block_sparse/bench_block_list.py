"""Benchmark of the block-list ops (``x @ W`` and its weight-gradient SDDMM) against XLA dense.

Run through ``python -m pallas_kernels.device_check``. Timed like the N:M
bench (:mod:`pallas_kernels._timing`: chains of dependent calls, interleaved
with the dense baselines on a random and on the masked weight, same
process), with rows in the same format; each row's ``op`` and ``pattern`` are
the dispatch's (``block_list_dsd`` or ``block_list_sddmm``,
``b{bh}x{bw}/d{bucket}``), so ``--write-table`` rows are found by
:mod:`pallas_kernels.dispatch`.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from pallas_kernels import _timing
from pallas_kernels.block_sparse import block_list_api as api
from pallas_kernels.block_sparse._bench_cases import bench_row
from pallas_kernels.block_sparse._bench_cases import block_cases
from pallas_kernels.block_sparse._bench_cases import keep_count
from pallas_kernels.formats import block_list_from_mask
from pallas_kernels.formats._block_list import smem_bytes
from pallas_kernels.nm.bench import format_row
from pallas_kernels.nm.bench import header

__all__ = ["run", "HEADER", "WIDTHS", "default_implementations",
           "keep_count"]

WIDTHS = (16, 14)
HEADER = header(WIDTHS)


def default_implementations(platform: str | None = None) -> list[str]:
  """The block-list kernels native to the backend (the dense baselines are
  timed with every row).

  >>> default_implementations("cpu"), default_implementations("gpu")
  ([], ['triton'])
  """
  platform = platform or jax.default_backend()
  return [k for k, p in api.KERNELS.items() if p == platform]


def run(shapes: Sequence[tuple[int, int]], batches: Sequence[int],
        blocks: Sequence[int], densities: Sequence[float], dtype=jnp.bfloat16,
        implementations: Sequence[str] | None = None, reps: int = 20,
        emit: Callable[[str], Any] = print, length: int = 32,
        ops: Sequence[str] = ("dsd", "sddmm")) -> list[dict[str, Any]]:
  """Times dense vs the block-list ops with ``W`` a random block list.

  ``"dsd"`` is ``x @ W``; ``"sddmm"`` is its weight gradient ``x.T @ g`` at
  ``W``'s blocks (same FLOPs as the dense baseline ``x @ W``). A layout no
  listed implementation can run (e.g. 64x64 blocks for the TPU kernel) is
  skipped with a note. Columns as in :func:`pallas_kernels.nm.bench.run`;
  the bound is ``1 / density`` (work skipped); bytes count the stored
  blocks, their metadata and the dense operands; TFLOP/s count the stored
  blocks' FLOPs.

  Args:
    shapes: ``(K, N)`` weight shapes.
    batches: activation rows.
    blocks: square block sizes.
    densities: kept fraction of the block grid.
    dtype: weight and activation dtype.
    implementations: names passed to the ops (default
      :func:`default_implementations`); one not native here runs in
      interpret mode and is marked ``*``.
    reps: repetitions (median taken; >= 20 for reported figures).
    emit: called with each formatted line.
    length: calls per timed chain.
    ops: keys of :data:`~pallas_kernels.block_sparse.block_list_api.OPS`
      to time (``"dsd"``, ``"sddmm"``).

  Returns:
    One dict per row, as :func:`pallas_kernels.nm.bench.run`.

  >>> rows = run([(64, 64)], [1], [32], [0.5], jnp.float32, ["xla_blocks"],
  ...            reps=2, emit=lambda s: None, length=2)
  >>> [(r["op"], r["pattern"], r["bound"], r["impl"]) for r in rows]
  [('block_list_dsd', 'b32x32/d0.50', 2.0, 'xla_blocks'), ('block_list_sddmm', 'b32x32/d0.50', 2.0, 'xla_blocks')]
  """
  platform = jax.default_backend()
  names = list(implementations if implementations is not None else
               default_implementations(platform))
  itemsize = jnp.dtype(dtype).itemsize
  results = []
  for case in block_cases(shapes, blocks, densities, dtype):
    bs = case.block
    t0 = time.perf_counter()
    bl = jax.block_until_ready(block_list_from_mask(case.w, case.mask,
                                                    (bs, bs)))
    convert_s = time.perf_counter() - t0
    impls = [i for i in names if api.unsupported(
        bl, i, interpret=api.KERNELS.get(i, "any") not in (platform,
                                                           "any")) is None]
    if not impls:
      emit(f"# block_list b{bs}x{bs} d{case.density} {case.k}x{case.n}: "
           f"skipped (none of {names} takes this layout)")
      continue
    stored = case.keep * bs * bs * itemsize
    for b in batches:
      x = jax.random.normal(jax.random.key(b), (b, case.k),
                            jnp.float32).astype(dtype)
      for op in ops:
        weight, meta = bl, smem_bytes(bl.by_col)  # the walk x @ W follows
        if op == "sddmm":
          weight = (bl, jax.random.normal(jax.random.key(b + 1), (b, case.n),
                                          jnp.float32).astype(dtype))
          meta = 2 * 4 * bl.capacity    # int32 rows and cols
        choices = {i: api.choose_implementation(bl, op, i, batch=b)
                   for i in impls}
        fns = {i: functools.partial(
            api._timed_call, op=op, impl=i,  # pylint: disable=protected-access
            smem_budget=api.TPU_SMEM_BUDGET_BYTES) for i in impls}
        res = _timing.against_dense(fns, weight, x, case.w, case.masked,
                                    reps=reps, length=length)
        for impl in impls:
          row = bench_row(
              op=api.OPS[op], pattern=api.pattern(bl), case=case, batch=b,
              res=res, impl=impl, choice=choices[impl],
              nbytes=stored + meta + (b * case.k + b * case.n) * itemsize,
              convert_s=convert_s)
          results.append(row)
          emit(format_row(row, WIDTHS))
  return results
