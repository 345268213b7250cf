"""Block-sparse matmuls on NVIDIA GPUs through the Pallas Triton lowering.

Why Triton and not Mosaic GPU: the Triton lowering has no scalar prefetch, but
it does not need one -- each program reads its line's block count and indices
from global memory and runs a data-dependent ``fori_loop`` over exactly the
kept blocks, with dynamic ``pl.ds`` slices of the dense operand. That skips
empty work without padding steps and is the simplest correct kernel; it is
also the GPU lowering that cross-exports from a CPU-only host on every JAX
version we support (Mosaic GPU needs the CUDA plugin's dialects on 0.12). It
is deprecated from JAX 0.11; a Mosaic GPU port is the follow-up.

Triton needs power-of-two tiles >= 16: block sizes 16, 32, ..., 512.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pallas_kernels import _compat
from pallas_kernels.formats import PaddedBlockSparse

pl = _compat.pl

__all__ = ["dsd_gpu", "sdd_gpu", "block_list_dsd_gpu", "block_list_sdd_gpu"]


def _dot(a, b, contract=((1,), (0,))):
  """f32-accumulated product of two tiles in their common dtype."""
  cdt = jnp.result_type(a.dtype, b.dtype)
  prec = (jax.lax.Precision.HIGHEST if cdt == jnp.float32
          else jax.lax.Precision.DEFAULT)
  return jax.lax.dot_general(a.astype(cdt), b.astype(cdt),
                             (contract, ((), ())),
                             preferred_element_type=jnp.float32,
                             precision=prec)


def _sum_into(o_ref, count, term, shape):
  """Stores ``sum(term(k) for k < count)`` (f32 accumulator) in ``o_ref``."""
  acc = jax.lax.fori_loop(0, count, lambda k, acc: acc + term(k),
                          jnp.zeros(shape, jnp.float32))
  o_ref[...] = acc.astype(o_ref.dtype)


def _dsd_kernel(idx_ref, cnt_ref, x_ref, v_ref, o_ref, *, tb, bk, bn):
  b = pl.program_id(0)
  j = pl.program_id(1)

  def term(k):
    kb = idx_ref[j, k]
    xb = x_ref[pl.ds(b * tb, tb), pl.ds(kb * bk, bk)]
    return _dot(xb, v_ref[j, k, :, :])

  _sum_into(o_ref, cnt_ref[j], term, (tb, bn))


def _sdd_kernel(idx_ref, cnt_ref, v_ref, x_ref, o_ref, *, tn, bm, bk):
  i = pl.program_id(0)
  j = pl.program_id(1)

  def term(k):
    xb = x_ref[pl.ds(idx_ref[i, k] * bk, bk), pl.ds(j * tn, tn)]
    return _dot(v_ref[i, k, :, :], xb)

  _sum_into(o_ref, cnt_ref[i], term, (bm, tn))


def _call(kernel, out_shape, grid, out_block, args, interpret, name,
          num_warps, num_stages=2):
  whole = pl.no_block_spec
  with _compat.silence_triton_deprecation():
    return pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=grid,
        in_specs=[whole] * len(args),
        out_specs=pl.BlockSpec(out_block, lambda i, j: (i, j)),
        compiler_params=_compat.triton_params(num_warps, num_stages),
        interpret=interpret,
        name=name,
    )(*args)


def dsd_gpu(x, w: PaddedBlockSparse, *, tb: int, out_dtype, interpret=False,
            num_warps: int = 4):
  """``x @ W`` with ``W`` padded block-sparse, ``major="col"`` (Triton).

  >>> from pallas_kernels.formats import compress_padded_block
  >>> w = compress_padded_block(jnp.ones((32, 32)), jnp.eye(2, dtype=bool), (16, 16), major="col")
  >>> dsd_gpu(jnp.ones((16, 32)), w, tb=16, out_dtype=jnp.float32, interpret=True)[0, 0]
  Array(16., dtype=float32)
  """
  bk, bn = w.block_shape
  kernel = functools.partial(_dsd_kernel, tb=tb, bk=bk, bn=bn)
  return _call(kernel, jax.ShapeDtypeStruct((x.shape[0], w.shape[1]),
                                            out_dtype),
               (x.shape[0] // tb, w.indices.shape[0]), (tb, bn),
               (w.indices, w.counts, x, w.values), interpret,
               "block_sparse_dsd_gpu", num_warps)


def sdd_gpu(a: PaddedBlockSparse, x, *, tn: int, out_dtype, interpret=False,
            num_warps: int = 4):
  """``A @ x`` with ``A`` padded block-sparse, ``major="row"`` (Triton).

  >>> from pallas_kernels.formats import compress_padded_block
  >>> a = compress_padded_block(jnp.ones((32, 32)), jnp.eye(2, dtype=bool), (16, 16))
  >>> sdd_gpu(a, jnp.ones((32, 16)), tn=16, out_dtype=jnp.float32, interpret=True)[0, 0]
  Array(16., dtype=float32)
  """
  bm, bk = a.block_shape
  kernel = functools.partial(_sdd_kernel, tn=tn, bm=bm, bk=bk)
  return _call(kernel, jax.ShapeDtypeStruct((a.shape[0], x.shape[1]),
                                            out_dtype),
               (a.indices.shape[0], x.shape[1] // tn), (bm, tn),
               (a.indices, a.counts, a.values, x), interpret,
               "block_sparse_sdd_gpu", num_warps)


# --- Block-list kernels: balanced segments of a flat block list -----------
#
# The work items are *segments*: runs of at most ``split`` consecutive steps
# of one output line of a ``BlockOrder``. A line longer than ``split`` is cut
# into several segments (run by different programs, their f32 partial sums
# added afterwards), so at decode batch no program holds more than ``split``
# blocks however unbalanced the mask is. With one segment per line the kernel
# writes the output directly.


def _sum_segment(o_ref, g, sstart_ref, slen_ref, term, shape):
  """Stores the sum of ``term(s)`` over the steps ``s`` of segment ``g``."""
  start = sstart_ref[g]
  _sum_into(o_ref, slen_ref[g], lambda t: term(start + t), shape)


def _bl_dsd_kernel(red_ref, data_ref, sstart_ref, slen_ref, x_ref, v_ref,
                   o_ref, *, tb, kin, kout, contract):
  b, g = pl.program_id(0), pl.program_id(1)

  def term(s):
    xb = x_ref[pl.ds(b * tb, tb), pl.ds(red_ref[s] * kin, kin)]
    return _dot(xb, v_ref[data_ref[s], :, :], contract)

  _sum_segment(o_ref, g, sstart_ref, slen_ref, term, (tb, kout))


def _bl_sdd_kernel(red_ref, data_ref, sstart_ref, slen_ref, v_ref, x_ref,
                   o_ref, *, tn, kin, kout, contract):
  g, n = pl.program_id(0), pl.program_id(1)

  def term(s):
    xb = x_ref[pl.ds(red_ref[s] * kin, kin), pl.ds(n * tn, tn)]
    return _dot(v_ref[data_ref[s], :, :], xb, contract)

  _sum_segment(o_ref, g, sstart_ref, slen_ref, term, (kout, tn))


def block_list_dsd_gpu(x, values, order, seg_start, seg_len, *,
                       transpose: bool, tb: int, out_dtype, interpret=False,
                       num_warps: int = 4, num_stages: int = 3):
  """Per-segment ``x @ W`` (or ``x @ W.T``) over a block list (Triton).

  Args:
    x: ``(Bp, K)`` activations, ``Bp`` a multiple of ``tb``.
    values: ``(capacity, bh, bw)`` stored blocks.
    order: the ``BlockOrder`` whose steps the segments index.
    seg_start: ``(G,)`` int32 first step of each segment.
    seg_len: ``(G,)`` int32 blocks in each segment (0 for an unused one).
    transpose: multiply by the blocks transposed.
    tb: batch tile (a power of two >= 16).
    out_dtype: dtype of the per-segment results.
    interpret: run in the Pallas interpreter.
    num_warps: Triton warps per program.
    num_stages: Triton software-pipelining stages.

  Returns:
    ``(Bp, G * kout)``: segment ``g``'s sum in column block ``g``.

  >>> from pallas_kernels.formats import block_list_from_mask
  >>> bl = block_list_from_mask(jnp.ones((32, 32)), jnp.eye(2, dtype=bool), (16, 16))
  >>> o = bl.by_col
  >>> block_list_dsd_gpu(jnp.ones((16, 32)), bl.values, o, o.start, o.count,
  ...                    transpose=False, tb=16, out_dtype=jnp.float32,
  ...                    interpret=True)[0, ::16]
  Array([16., 16.], dtype=float32)
  """
  bh, bw = values.shape[1:]
  kin, kout = (bw, bh) if transpose else (bh, bw)
  contract = ((1,), (1,)) if transpose else ((1,), (0,))
  kernel = functools.partial(_bl_dsd_kernel, tb=tb, kin=kin, kout=kout,
                             contract=contract)
  return _call(kernel, jax.ShapeDtypeStruct(
                   (x.shape[0], seg_start.shape[0] * kout), out_dtype),
               (x.shape[0] // tb, seg_start.shape[0]), (tb, kout),
               (order.red, order.data, seg_start, seg_len, x, values),
               interpret, "block_list_dsd_gpu", num_warps, num_stages)


def block_list_sdd_gpu(values, order, seg_start, seg_len, x, *,
                       transpose: bool, tn: int, out_dtype, interpret=False,
                       num_warps: int = 4, num_stages: int = 3):
  """Per-segment ``A @ x`` (or ``A.T @ x``) over a block list (Triton).

  Args:
    values: ``(capacity, bh, bw)`` stored blocks of ``A``.
    order: the ``BlockOrder`` whose steps the segments index.
    seg_start: ``(G,)`` int32 first step of each segment.
    seg_len: ``(G,)`` int32 blocks in each segment.
    x: ``(K, Np)`` dense operand, ``Np`` a multiple of ``tn``.
    transpose: use the blocks transposed.
    tn: column tile (a power of two >= 16).
    out_dtype: dtype of the per-segment results.
    interpret: run in the Pallas interpreter.
    num_warps: Triton warps per program.
    num_stages: Triton software-pipelining stages.

  Returns:
    ``(G * kout, Np)``: segment ``g``'s sum in row block ``g``.

  >>> from pallas_kernels.formats import block_list_from_mask
  >>> bl = block_list_from_mask(jnp.ones((32, 32)), jnp.eye(2, dtype=bool), (16, 16))
  >>> o = bl.by_row
  >>> block_list_sdd_gpu(bl.values, o, o.start, o.count, jnp.ones((32, 16)),
  ...                    transpose=False, tn=16, out_dtype=jnp.float32,
  ...                    interpret=True)[::16, 0]
  Array([16., 16.], dtype=float32)
  """
  bh, bw = values.shape[1:]
  kin, kout = (bh, bw) if transpose else (bw, bh)
  contract = ((0,), (0,)) if transpose else ((1,), (0,))
  kernel = functools.partial(_bl_sdd_kernel, tn=tn, kin=kin, kout=kout,
                             contract=contract)
  return _call(kernel, jax.ShapeDtypeStruct(
                   (seg_start.shape[0] * kout, x.shape[1]), out_dtype),
               (seg_start.shape[0], x.shape[1] // tn), (kout, tn),
               (order.red, order.data, seg_start, seg_len, values, x),
               interpret, "block_list_sdd_gpu", num_warps, num_stages)
