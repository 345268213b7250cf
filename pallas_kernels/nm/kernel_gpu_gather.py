"""N:M matmul at high sparsity (1:8, 1:16) by gather-and-FMA on CUDA cores.

Expand-then-MMA spends ``m`` selects per kept value to build a dense tile
whose ``m - n`` zeros the tensor core then multiplies; at 1:8 and 1:16 and a
batch of a few rows that is mostly wasted work. This kernel instead gathers,
for every kept value, the one activation it multiplies -- column
``(t*tg + g)*m + pos`` of ``x`` -- and accumulates ``val * x`` in f32 FMAs:
per kept value and batch row one cached load and one FMA, no expansion.

Grid and split-K are those of :mod:`.kernel_gpu` (``(N/tn, splits, B/tb)``,
f32 partial sums reduced by XLA), with a batch tile of at most 8 rows: this is
the small-batch path; larger batches belong to the MMA kernel or to dense.
Positions are decoded from the bit planes exactly as there; ``x`` stays in its
natural order, nothing is padded or permuted per call, and all edges (batch
rows, ``K`` past the last group, ``N`` past the last column) are masked.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pallas_kernels import _compat
from pallas_kernels.formats import NMCompressed
from pallas_kernels.nm import _tile
from pallas_kernels.nm import kernel_gpu

pl = _compat.pl

__all__ = ["nm_matmul_gpu_gather"]

_MAX_TB = 8


def _kernel(x_ref, v_ref, p_ref, o_ref, *, n, bits, m, tg, q, tb, tn, chunk,
            per_split, steps, batch, k, cols, split_out):
  _, s, i, row_ids, rmask, cmask, colsl = kernel_gpu.program_tile(
      tb=tb, tn=tn, batch=batch, cols=cols, row_shape=(tb, 1, 1))
  nper = chunk // q
  nchunks = tg // chunk
  first, count = kernel_gpu.split_steps(s, per_split=per_split, steps=steps)

  def body(step, acc):
    t, start, g0 = kernel_gpu.step_origin(first + step, nchunks=nchunks,
                                          nper=nper, q=q)
    group = (t * tg + g0) + jax.lax.broadcasted_iota(jnp.int32, (chunk, tn), 0)
    for sl in range(n):
      pos, val = kernel_gpu.load_slot(
          p_ref, v_ref, t, sl, start, g0, colsl, cmask, n=n, bits=bits, q=q,
          tg=tg, chunk=chunk, nper=nper)
      val = val.astype(jnp.float32)
      kidx = (group * m + pos)[None]                            # (1, chunk, tn)
      xmask = rmask & (kidx < k) & cmask[None]
      xg = _compat.masked_load(
          x_ref.at[jnp.where(xmask, row_ids, 0), jnp.where(xmask, kidx, 0)],
          xmask)                                                # (tb, chunk, tn)
      acc = acc + jnp.sum(xg.astype(jnp.float32) * val[None], axis=1)
    return acc

  acc = jax.lax.fori_loop(0, count, body, jnp.zeros((tb, tn), jnp.float32))
  rows = pl.ds(i * tb, tb)
  omask = rmask[:, :, 0] & cmask
  kernel_gpu.store_tile(o_ref, acc.astype(o_ref.dtype), s, rows, colsl, omask,
                        split_out)


def nm_matmul_gpu_gather(x, w: NMCompressed, *, out_dtype=None,
                         interpret=False, tn: int = 128, chunk: int = 16,
                         num_warps: int = 8, num_stages: int = 3) -> jax.Array:
  """``x @ W`` by gather-and-FMA (Triton lowering); meant for 1:8 and 1:16.

  Args:
    x: ``(B, K)`` activations in natural order; ``B`` small (1-8 per tile).
    w: the compressed weight, as stored by ``compress_nm``.
    out_dtype: result dtype (default: promotion of both dtypes).
    interpret: run in the Pallas interpreter (CPU).
    tn: output-column tile (power of two).
    chunk: groups per loop step (power of two >= 16).
    num_warps: Triton warps per program.
    num_stages: Triton software-pipelining stages of the K loop.

  Returns:
    ``(B, N)`` product, accumulated in f32.

  >>> from pallas_kernels.formats import compress_nm
  >>> import numpy as np
  >>> mask = np.tile(np.eye(8, dtype=bool)[:, :1], (16, 24))
  >>> c = compress_nm(jnp.ones((128, 24)), mask, 1, 8)
  >>> nm_matmul_gpu_gather(jnp.ones((2, 128)), c, interpret=True)[1, :3]
  Array([16., 16., 16.], dtype=float32)
  """
  b, k, cols, out_dtype = _tile.operands(x, w, out_dtype)
  tn = min(tn, max(16, _tile.pow2_at_least(cols)))
  pln = kernel_gpu.plan(b, w, tn=tn, chunk=chunk, max_tb=_MAX_TB)
  tb = min(_MAX_TB, _tile.pow2_at_least(b))
  ntiles = pl.cdiv(cols, tn) * pl.cdiv(b, tb)
  steps = w.num_tiles * (w.tile_groups // pln.chunk)
  splits, per = kernel_gpu.split_k(steps, -(-kernel_gpu.MIN_PROGRAMS // ntiles))
  split_out = splits > 1
  kernel = functools.partial(
      _kernel, n=w.n, bits=w.bits, m=w.m, tg=w.tile_groups,
      q=w.words_per_plane, tb=tb, tn=tn, chunk=pln.chunk, per_split=per,
      steps=steps, batch=b, k=k, cols=cols, split_out=split_out)
  return kernel_gpu.launch(kernel, x, w, tb=tb, tn=tn, splits=splits,
                           out_dtype=out_dtype, num_warps=num_warps,
                           num_stages=num_stages, interpret=interpret,
                           name="nm_matmul_gpu_gather")
