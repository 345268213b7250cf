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

__all__ = ["dsd_gpu", "sdd_gpu"]


def _dot(a, b):
  cdt = jnp.result_type(a.dtype, b.dtype)
  prec = (jax.lax.Precision.HIGHEST if cdt == jnp.float32
          else jax.lax.Precision.DEFAULT)
  return jnp.dot(a.astype(cdt), b.astype(cdt),
                 preferred_element_type=jnp.float32, precision=prec)


def _dsd_kernel(idx_ref, cnt_ref, x_ref, v_ref, o_ref, *, tb, bk, bn):
  b = pl.program_id(0)
  j = pl.program_id(1)

  def body(k, acc):
    kb = idx_ref[j, k]
    xb = x_ref[pl.ds(b * tb, tb), pl.ds(kb * bk, bk)]
    return acc + _dot(xb, v_ref[j, k, :, :])

  acc = jax.lax.fori_loop(0, cnt_ref[j], body, jnp.zeros((tb, bn),
                                                         jnp.float32))
  o_ref[...] = acc.astype(o_ref.dtype)


def _sdd_kernel(idx_ref, cnt_ref, v_ref, x_ref, o_ref, *, tn, bm, bk):
  i = pl.program_id(0)
  j = pl.program_id(1)

  def body(k, acc):
    kb = idx_ref[i, k]
    xb = x_ref[pl.ds(kb * bk, bk), pl.ds(j * tn, tn)]
    return acc + _dot(v_ref[i, k, :, :], xb)

  acc = jax.lax.fori_loop(0, cnt_ref[i], body, jnp.zeros((bm, tn),
                                                         jnp.float32))
  o_ref[...] = acc.astype(o_ref.dtype)


def _call(kernel, out_shape, grid, out_block, args, interpret, name,
          num_warps):
  whole = pl.no_block_spec
  with _compat.silence_triton_deprecation():
    return pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=grid,
        in_specs=[whole] * len(args),
        out_specs=pl.BlockSpec(out_block, lambda i, j: (i, j)),
        compiler_params=_compat.triton_params(num_warps, 2),
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
