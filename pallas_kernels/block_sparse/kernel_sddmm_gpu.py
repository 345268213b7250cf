"""Sampled dense-dense matmul (SDDMM) over a block list on GPU (Triton).

One program per stored block: block ``s`` of the result is the product of
the two dense operands restricted to that block's rows and columns,

* ``contract=0``: ``a (T, R)``, ``b (T, C)``, out ``a[:, rows].T @ b[:, cols]``
  (the weight gradient ``x.T @ g`` of ``x @ W``);
* ``contract=1``: ``a (R, T)``, ``b (C, T)``, out ``a[rows, :] @ b[cols, :].T``
  (the gradient ``g @ X.T`` of ``A @ X``),

accumulated in f32 over ``T`` in tiles of ``tt`` by a ``fori_loop`` with
dynamic ``pl.ds`` slices (the block list's ``rows``/``cols`` are read from
global memory, as in :mod:`pallas_kernels.block_sparse.kernel_gpu`). Slots
past the stored count run no iteration and come out zero. Blocks and ``tt``
must be powers of two >= 16.
"""
from __future__ import annotations

import functools

import jax

from pallas_kernels.block_sparse import kernel_gpu

__all__ = ["block_list_sddmm_gpu"]

pl = kernel_gpu.pl


def _tiles(a_ref, b_ref, r, c, t, *, bh, bw, tt, contract):
  """The ``t``-th tiles of ``a``'s block row ``r`` and ``b``'s column ``c``."""
  k = pl.ds(t * tt, tt)
  if contract == 0:
    return a_ref[k, pl.ds(r * bh, bh)], b_ref[k, pl.ds(c * bw, bw)]
  return a_ref[pl.ds(r * bh, bh), k], b_ref[pl.ds(c * bw, bw), k]


def _sddmm_kernel(rows_ref, cols_ref, live_ref, a_ref, b_ref, o_ref, *, bh,
                  bw, tt, nt, contract):
  s = pl.program_id(0)
  r, c = rows_ref[s], cols_ref[s]
  dims = ((0,), (0,)) if contract == 0 else ((1,), (1,))

  def term(t):
    at, bt = _tiles(a_ref, b_ref, r, c, t, bh=bh, bw=bw, tt=tt,
                    contract=contract)
    return kernel_gpu._dot(at, bt, dims)  # pylint: disable=protected-access

  steps = jax.numpy.where(s < live_ref[0], nt, 0)
  kernel_gpu._sum_into(o_ref, steps, term, (bh, bw))  # pylint: disable=protected-access


def block_list_sddmm_gpu(a, b, rows, cols, live, *, block_shape, contract: int,
                         tt: int, out_dtype, interpret=False,
                         num_warps: int = 4, num_stages: int = 3) -> jax.Array:
  """The stored blocks of ``a.T @ b`` (``contract=0``) or ``a @ b.T`` (1).

  Args:
    a: ``(T, R)`` (``contract=0``) or ``(R, T)`` dense operand, ``T`` a
      multiple of ``tt``.
    b: ``(T, C)`` or ``(C, T)`` dense operand.
    rows: ``(capacity,)`` int32 block row of each stored block.
    cols: ``(capacity,)`` int32 block column of each stored block.
    live: ``(1,)`` int32 number of stored blocks (slots from it on are zero).
    block_shape: ``(bh, bw)``, powers of two >= 16.
    contract: the axis of ``a`` and ``b`` that is summed over (0 or 1).
    tt: tile of the summed axis (a power of two >= 16).
    out_dtype: result dtype.
    interpret: run in the Pallas interpreter.
    num_warps: Triton warps per program.
    num_stages: Triton software-pipelining stages.

  Returns:
    ``(capacity * bh, bw)``: block ``s`` in rows ``s*bh:(s+1)*bh``.

  >>> import jax.numpy as jnp
  >>> rc = jnp.array([0, 1], jnp.int32)
  >>> out = block_list_sddmm_gpu(jnp.ones((16, 32)), jnp.ones((16, 32)), rc, rc,
  ...                            jnp.array([1], jnp.int32), block_shape=(16, 16),
  ...                            contract=0, tt=16, out_dtype=jnp.float32,
  ...                            interpret=True)
  >>> out[0, 0], out[16, 0]  # the second slot is past the stored count
  (Array(16., dtype=float32), Array(0., dtype=float32))
  """
  bh, bw = block_shape
  cap = rows.shape[0]
  nt = a.shape[contract] // tt
  kernel = functools.partial(_sddmm_kernel, bh=bh, bw=bw, tt=tt, nt=nt,
                             contract=contract)
  return kernel_gpu._call(  # pylint: disable=protected-access
      kernel, jax.ShapeDtypeStruct((cap * bh, bw), out_dtype), (cap, 1),
      (bh, bw), (rows, cols, live, a, b), interpret, "block_list_sddmm_gpu",
      num_warps, num_stages)
