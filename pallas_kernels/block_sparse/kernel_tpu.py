"""Block-sparse matmuls on TPU (Mosaic) driven by scalar-prefetched indices.

Both kernels take the padded fixed-width format, so the grid is static:
``(outer, cols, width)`` with the ``width`` axis innermost (``arbitrary``).
The block indices and per-line counts live in SMEM
(``PrefetchScalarGridSpec``) and drive the ``index_map``: the dense operand's
block for step ``k`` is the one matching the ``k``-th kept block. Padding steps
(``k >= count``) map to the previous block (no new DMA) and skip the MXU; the
accumulator is zeroed at ``k == 0`` so empty lines produce zeros.

TPU lowering needs lane dims that are multiples of 128: ``bk`` and ``bn`` for
the dense x sparse kernel, ``bk`` (and ``bm`` a multiple of 16) for the
sparse x dense one. The api falls back to XLA otherwise.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pallas_kernels import _compat
from pallas_kernels.formats import PaddedBlockSparse

pl = _compat.pl
_SQ = _compat.SQUEEZED

__all__ = ["dsd_tpu", "sdd_tpu", "block_list_dsd_tpu", "block_list_sdd_tpu"]


def _dot(a, b):
  prec = (jax.lax.Precision.HIGHEST if jnp.result_type(a, b) == jnp.float32
          else jax.lax.Precision.DEFAULT)
  cdt = jnp.result_type(a.dtype, b.dtype)
  return jnp.dot(a.astype(cdt), b.astype(cdt),
                 preferred_element_type=jnp.float32, precision=prec)


def _kernel(idx_ref, cnt_ref, a_ref, b_ref, o_ref, acc_ref, *, line_axis):
  del idx_ref
  line = pl.program_id(line_axis)
  k = pl.program_id(2)

  @pl.when(k == 0)
  def _():
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  @pl.when(k < cnt_ref[line])
  def _():
    acc_ref[...] += _dot(a_ref[...], b_ref[...])

  @pl.when(k == pl.num_programs(2) - 1)
  def _():
    o_ref[...] = acc_ref[...].astype(o_ref.dtype)


def _clamp(k, cnt, line):
  return jnp.minimum(k, jnp.maximum(cnt[line] - 1, 0))


def _padded_call(line_axis, grid, in_specs, out_block, out_shape, args,
                 interpret, name):
  """Runs :func:`_kernel` over a padded layout (indices and counts
  scalar-prefetched); output tile ``out_block`` at grid position ``(a, b)``,
  accumulated in f32 over the last grid axis."""
  spec = _compat.PrefetchScalarGridSpec(
      num_scalar_prefetch=2,
      grid=grid,
      in_specs=in_specs,
      out_specs=pl.BlockSpec(out_block, lambda a, b, k, idx, cnt: (a, b)),
      scratch_shapes=[_compat.vmem(out_block, jnp.float32)],
  )
  return pl.pallas_call(
      functools.partial(_kernel, line_axis=line_axis),
      out_shape=out_shape,
      grid_spec=spec,
      compiler_params=_compat.tpu_params(("parallel", "parallel",
                                          "arbitrary")),
      interpret=interpret,
      name=name,
  )(*args)


def dsd_tpu(x, w: PaddedBlockSparse, *, tb: int, out_dtype, interpret=False):
  """``x @ W`` with ``W`` padded block-sparse, ``major="col"``.

  Args:
    x: ``(Bp, K)`` activations, ``Bp`` a multiple of ``tb``.
    w: ``(K, N)`` weight grouped by block column.
    tb: batch tile.
    out_dtype: result dtype.
    interpret: run in the Pallas interpreter.

  >>> from pallas_kernels.formats import compress_padded_block
  >>> w = compress_padded_block(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2), major="col")
  >>> dsd_tpu(jnp.ones((8, 4)), w, tb=8, out_dtype=jnp.float32, interpret=True)[0]
  Array([2., 2., 2., 2.], dtype=float32)
  """
  bk, bn = w.block_shape
  nbc, width = w.indices.shape
  grid = (x.shape[0] // tb, nbc, width)
  return _padded_call(
      1, grid,
      [pl.BlockSpec((tb, bk), lambda b, j, k, idx, cnt: (b, idx[j, k])),
       pl.BlockSpec((_SQ, _SQ, bk, bn),
                    lambda b, j, k, idx, cnt: (j, _clamp(k, cnt, j), 0, 0))],
      (tb, bn), jax.ShapeDtypeStruct((x.shape[0], w.shape[1]), out_dtype),
      (w.indices, w.counts, x, w.values), interpret, "block_sparse_dsd_tpu")


def sdd_tpu(a: PaddedBlockSparse, x, *, tn: int, out_dtype, interpret=False):
  """``A @ x`` with ``A`` padded block-sparse, ``major="row"``.

  Args:
    a: ``(M, K)`` sparse matrix grouped by block row.
    x: ``(K, Np)`` dense matrix, ``Np`` a multiple of ``tn``.
    tn: column tile of ``x`` and the output.
    out_dtype: result dtype.
    interpret: run in the Pallas interpreter.

  >>> from pallas_kernels.formats import compress_padded_block
  >>> a = compress_padded_block(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2))
  >>> sdd_tpu(a, jnp.ones((4, 8)), tn=8, out_dtype=jnp.float32, interpret=True)[:, 0]
  Array([2., 2., 2., 2.], dtype=float32)
  """
  bm, bk = a.block_shape
  nbr, width = a.indices.shape
  grid = (nbr, x.shape[1] // tn, width)
  return _padded_call(
      0, grid,
      [pl.BlockSpec((_SQ, _SQ, bm, bk),
                    lambda i, j, k, idx, cnt: (i, _clamp(k, cnt, i), 0, 0)),
       pl.BlockSpec((bk, tn), lambda i, j, k, idx, cnt: (idx[i, k], j))],
      (bm, tn), jax.ShapeDtypeStruct((a.shape[0], x.shape[1]), out_dtype),
      (a.indices, a.counts, a.values, x), interpret, "block_sparse_sdd_tpu")


# --- Block-list kernels: one grid step per stored block -------------------
#
# The grid's step axis walks a ``BlockOrder`` (see
# ``pallas_kernels.formats._block_list``): ``line``/``red``/``data``/``flags``
# are scalar-prefetched into SMEM and drive the index maps. Steps without a
# block repeat the next block's indices (``data_next``), so the pipeline
# issues no DMA for them; the value blocks are triple buffered.


def _bl_kernel(line_ref, red_ref, data_ref, flags_ref, a_ref, b_ref, o_ref,
               acc_ref, *, step_axis, contract):
  del line_ref, red_ref, data_ref
  f = flags_ref[pl.program_id(step_axis)]

  @pl.when((f & 1) != 0)
  def _():
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  @pl.when((f & 4) != 0)
  def _():
    a, b = a_ref[...], b_ref[...]
    cdt = jnp.result_type(a.dtype, b.dtype)
    prec = (jax.lax.Precision.HIGHEST if cdt == jnp.float32
            else jax.lax.Precision.DEFAULT)
    acc_ref[...] += jax.lax.dot_general(
        a.astype(cdt), b.astype(cdt), (contract, ((), ())),
        preferred_element_type=jnp.float32, precision=prec)

  @pl.when((f & 2) != 0)
  def _():
    o_ref[...] = acc_ref[...].astype(o_ref.dtype)


def _value_spec(block_shape, index_map, stages):
  if stages not in (1, 2):
    raise ValueError(f"the TPU grid pipeline takes 1 or 2 buffers per "
                     f"operand, got stages={stages}.")
  if stages == 1:
    return pl.BlockSpec((_SQ,) + tuple(block_shape), index_map,
                        pipeline_mode=pl.Buffered(1))
  return pl.BlockSpec((_SQ,) + tuple(block_shape), index_map)


def _bl_call(grid, in_specs, out_spec, acc_shape, contract, out_shape, order,
             operands, interpret, name):
  """Runs :func:`_bl_kernel` along ``order``'s steps (the last grid axis),
  its ``line``/``red``/``data``/``flags`` scalar-prefetched."""
  spec = _compat.PrefetchScalarGridSpec(
      num_scalar_prefetch=4,
      grid=grid,
      in_specs=in_specs,
      out_specs=out_spec,
      scratch_shapes=[_compat.vmem(acc_shape, jnp.float32)],
  )
  return pl.pallas_call(
      functools.partial(_bl_kernel, step_axis=1, contract=contract),
      out_shape=out_shape,
      grid_spec=spec,
      compiler_params=_compat.tpu_params(("parallel", "arbitrary")),
      interpret=interpret,
      name=name,
  )(order.line, order.red, order.data, order.flags, *operands)


def block_list_dsd_tpu(x, values, order, *, lines: int, transpose: bool,
                       tb: int, out_dtype, interpret=False, stages: int = 2):
  """``x @ W`` (or ``x @ W.T``) walking a block list grouped by output line.

  Args:
    x: ``(Bp, K)`` activations, ``Bp`` a multiple of ``tb``.
    values: ``(capacity, bh, bw)`` stored blocks.
    order: the ``BlockOrder`` grouped by output block column of the product
      (``by_col`` for ``x @ W``, ``by_row`` for ``x @ W.T``).
    lines: number of output lines (``order.lines``).
    transpose: multiply by the blocks transposed (``x @ W.T``).
    tb: batch tile.
    out_dtype: result dtype.
    interpret: run in the Pallas interpreter (``True`` or
      ``pltpu.InterpretParams``).
    stages: pipeline buffers for the value blocks (1 or 2).

  Returns:
    ``(Bp, lines * kout)`` where ``kout`` is ``bw`` (``bh`` transposed).

  >>> from pallas_kernels.formats import block_list_from_mask
  >>> bl = block_list_from_mask(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2))
  >>> block_list_dsd_tpu(jnp.ones((8, 4)), bl.values, bl.by_col, lines=2,
  ...                    transpose=False, tb=8, out_dtype=jnp.float32,
  ...                    interpret=True)[0]
  Array([2., 2., 2., 2.], dtype=float32)
  """
  bh, bw = values.shape[1:]
  kin, kout = (bw, bh) if transpose else (bh, bw)
  contract = ((1,), (1,)) if transpose else ((1,), (0,))
  return _bl_call(
      (x.shape[0] // tb, order.steps),
      [pl.BlockSpec((tb, kin), lambda b, s, ln, rd, dt, fl: (b, rd[s])),
       _value_spec((bh, bw), lambda b, s, ln, rd, dt, fl: (dt[s], 0, 0),
                   stages)],
      pl.BlockSpec((tb, kout), lambda b, s, ln, rd, dt, fl: (b, ln[s])),
      (tb, kout), contract,
      jax.ShapeDtypeStruct((x.shape[0], lines * kout), out_dtype), order,
      (x, values), interpret, "block_list_dsd_tpu")


def block_list_sdd_tpu(values, order, x, *, lines: int, transpose: bool,
                       tn: int, out_dtype, interpret=False, stages: int = 2):
  """``A @ x`` (or ``A.T @ x``) walking a block list grouped by output line.

  Args:
    values: ``(capacity, bh, bw)`` stored blocks of ``A``.
    order: the ``BlockOrder`` grouped by output block row of the product
      (``by_row`` for ``A @ x``, ``by_col`` for ``A.T @ x``).
    x: ``(K, Np)`` dense operand, ``Np`` a multiple of ``tn``.
    lines: number of output lines (``order.lines``).
    transpose: use the blocks transposed (``A.T @ x``).
    tn: column tile.
    out_dtype: result dtype.
    interpret: run in the Pallas interpreter.
    stages: pipeline buffers for the value blocks (1 or 2).

  Returns:
    ``(lines * kout, Np)`` where ``kout`` is ``bh`` (``bw`` transposed).

  >>> from pallas_kernels.formats import block_list_from_mask
  >>> bl = block_list_from_mask(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2))
  >>> block_list_sdd_tpu(bl.values, bl.by_row, jnp.ones((4, 8)), lines=2,
  ...                    transpose=False, tn=8, out_dtype=jnp.float32,
  ...                    interpret=True)[:, 0]
  Array([2., 2., 2., 2.], dtype=float32)
  """
  bh, bw = values.shape[1:]
  kin, kout = (bh, bw) if transpose else (bw, bh)
  contract = ((0,), (0,)) if transpose else ((1,), (0,))
  return _bl_call(
      (x.shape[1] // tn, order.steps),
      [_value_spec((bh, bw), lambda n, s, ln, rd, dt, fl: (dt[s], 0, 0),
                   stages),
       pl.BlockSpec((kin, tn), lambda n, s, ln, rd, dt, fl: (rd[s], n))],
      pl.BlockSpec((kout, tn), lambda n, s, ln, rd, dt, fl: (ln[s], n)),
      (kout, tn), contract,
      jax.ShapeDtypeStruct((lines * kout, x.shape[1]), out_dtype), order,
      (values, x), interpret, "block_list_sdd_tpu")
