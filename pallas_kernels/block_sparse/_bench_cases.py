"""The cases and rows shared by the block-sparse benchmarks.

Both benches (:mod:`~pallas_kernels.block_sparse.bench` for the padded
format, :mod:`~pallas_kernels.block_sparse.bench_block_list` for the block
list) walk the same cases (:func:`block_cases`) and build their rows with
:func:`bench_row`, whose ``op`` and ``pattern`` are the dispatch's own key
for the measured operand, so a row written to the table
(``device_check --write-table``) is found by the dispatch for that case.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import _testing
from pallas_kernels import _timing

__all__ = ["BlockCase", "block_cases", "keep_count", "bench_row"]


@dataclasses.dataclass(frozen=True)
class BlockCase:
  """One measured weight: a random ``(k, n)`` matrix and a block mask."""
  k: int
  n: int
  block: int
  density: float
  keep: int
  w: jax.Array
  mask: np.ndarray

  @property
  def grid(self) -> tuple[int, int]:
    return (self.k // self.block, self.n // self.block)

  @property
  def masked(self) -> jax.Array:
    """The masked weight as a dense matrix (the ``masked`` baseline)."""
    keep = np.repeat(np.repeat(self.mask, self.block, 0), self.block, 1)
    return jnp.where(keep, self.w, jnp.zeros((), self.w.dtype))


def keep_count(grid: tuple[int, int], density: float) -> int:
  """Blocks kept at ``density`` of ``grid``: never above it, at least one.

  Rounding down keeps the measured case inside the dispatch's density
  bucket (:func:`pallas_kernels.dispatch.density_bucket`).

  >>> keep_count((32, 32), 0.1), keep_count((64, 64), 0.1), keep_count((2, 2), 0.1)
  (102, 409, 1)
  """
  return max(1, int(grid[0] * grid[1] * density + 1e-9))


def block_cases(shapes: Sequence[tuple[int, int]], blocks: Sequence[int],
                densities: Sequence[float], dtype: Any) -> Iterator[BlockCase]:
  """Every (shape, square block, density) case whose blocks divide the shape.

  >>> [(c.block, c.keep) for c in block_cases([(64, 64)], [16, 48], [0.5], jnp.float32)]
  [(16, 8)]
  """
  for (k, n) in shapes:
    w = jax.random.normal(jax.random.key(0), (k, n), jnp.float32).astype(dtype)
    for bs in blocks:
      if k % bs or n % bs:
        continue
      grid = (k // bs, n // bs)
      for density in densities:
        keep = keep_count(grid, density)
        yield BlockCase(k, n, bs, density, keep, w,
                        _testing.random_block_mask(grid, keep, seed=1))


def bench_row(*, op: str, pattern: str, case: BlockCase, batch: int,
              res: dict[str, Any], impl: str, choice: Any, nbytes: float,
              convert_s: float) -> dict[str, Any]:
  """One bench row keyed as the dispatch looks it up.

  Args:
    op: the dispatch op name (e.g. ``"block_dsd"``, ``"block_list_sddmm"``).
    pattern: the dispatch pattern of the measured operand.
    case: the measured case (its bound is ``1 / density``, its FLOPs those of
      the stored blocks).
    batch: rows of the activations (the summed length for an SDDMM).
    res: the :func:`pallas_kernels._timing.against_dense` result.
    impl: the timed implementation.
    choice: what the op's ``choose_implementation`` returned for ``impl``.
    nbytes: bytes one call moves.
    convert_s: seconds the weight's conversion took.

  >>> import collections
  >>> c = next(block_cases([(32, 32)], [16], [0.5], jnp.float32))
  >>> res = dict(seconds=dict(dense=2.0, masked=2.0, k=1.0),
  ...            compile_s=dict(dense=0.5, k=0.25))
  >>> ch = collections.namedtuple("C", "implementation interpret reason")("k", False, "")
  >>> r = bench_row(op="block_dsd", pattern="b16x16/d0.50", case=c, batch=1,
  ...               res=res, impl="k", choice=ch, nbytes=1e3, convert_s=0.0)
  >>> r["op"], r["pattern"], r["shape"], r["bound"], r["ratio"]
  ('block_dsd', 'b16x16/d0.50', '32x32', 2.0, 2.0)
  """
  kind = jax.devices()[0].device_kind
  grid = case.grid
  return dict(
      op=op, pattern=pattern, shape=f"{case.k}x{case.n}", k=case.k, n=case.n,
      batch=batch, dtype=jnp.dtype(case.w.dtype).name, device_kind=kind,
      **_timing.row_timings(
          res, impl, choice, bound=grid[0] * grid[1] / case.keep,
          nbytes=nbytes, flops=2 * batch * case.keep * case.block ** 2,
          peak=_timing.peak_gbps(kind), convert_s=convert_s))
