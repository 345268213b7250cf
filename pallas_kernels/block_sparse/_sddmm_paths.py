"""The block-list SDDMM on each implementation: the stored blocks of a
product of two dense operands.

Private to the block-list products' custom VJP (the weight gradient) and to
:mod:`pallas_kernels.block_sparse.block_list_sddmm`. With ``contract=0`` the
operands are ``a (T, R)`` and ``b (T, C)`` and block ``s`` is
``a[:, rows_s].T @ b[:, cols_s]``; with ``contract=1`` they are ``a (R, T)``
and ``b (C, T)`` and it is ``a[rows_s, :] @ b[cols_s, :].T``. Slots past the
stored count are zero.

* ``"xla"`` / ``"xla_blocks"`` -- a batched gather-matmul in XLA;
* ``"triton"`` -- :mod:`~pallas_kernels.block_sparse.kernel_sddmm_gpu`;
* ``"tpu"`` -- :mod:`~pallas_kernels.block_sparse.kernel_sddmm_tpu`.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from pallas_kernels.block_sparse import kernel_sddmm_gpu
from pallas_kernels.block_sparse import kernel_sddmm_tpu
from pallas_kernels.block_sparse._padding import pad_to
from pallas_kernels.block_sparse._padding import pow2_at_least
from pallas_kernels.block_sparse._padding import round_up

_HI = jax.lax.Precision.HIGHEST


def _xla(a, b, struct, contract):
  bh, bw = struct.block_shape
  nr, nc = struct.grid
  if contract == 0:
    ar = a.reshape(a.shape[0], nr, bh)[:, struct.rows]
    bc = b.reshape(b.shape[0], nc, bw)[:, struct.cols]
    eq = "tci,tcj->cij"
  else:
    ar = a.reshape(nr, bh, a.shape[1])[struct.rows]
    bc = b.reshape(nc, bw, b.shape[1])[struct.cols]
    eq = "cit,cjt->cij"
  # Exact f32 operands: XLA's CPU runtime has no bf16 x bf16 -> f32 dot
  # for this layout under jit (JAX 0.10), and the sum is f32 anyway.
  return jnp.einsum(eq, ar.astype(jnp.float32), bc.astype(jnp.float32),
                    precision=_HI)


def _tile(impl, contract, t):
  """The kernel's tile of the summed axis (``t`` long)."""
  if impl == "triton":
    return min(64, pow2_at_least(t, 16))
  return min(512, round_up(t, 16 if contract == 0 else 128))


def sampled_product(a, b, struct, *, contract: int, impl: str,
                    interpret: Any, out_dtype) -> jax.Array:
  """``(capacity, bh, bw)``: the stored blocks of the product, zero past the
  stored count, in ``out_dtype`` (accumulated in f32)."""
  if impl in ("xla", "xla_blocks"):
    out = _xla(a, b, struct, contract)
    return jnp.where(struct.valid[:, None, None], out, 0).astype(out_dtype)
  tt = _tile(impl, contract, a.shape[contract])
  a, b = pad_to(a, contract, tt), pad_to(b, contract, tt)
  rows = struct.rows.astype(jnp.int32)
  cols = struct.cols.astype(jnp.int32)
  live = jnp.minimum(struct.nnz, struct.capacity).astype(jnp.int32)[None]
  kw = dict(block_shape=struct.block_shape, contract=contract, tt=tt,
            out_dtype=out_dtype, interpret=interpret)
  if impl == "tpu":
    return kernel_sddmm_tpu.block_list_sddmm_tpu(a, b, rows, cols, live, **kw)
  if impl == "triton":
    out = kernel_sddmm_gpu.block_list_sddmm_gpu(a, b, rows, cols, live, **kw)
    return out.reshape(struct.capacity, *struct.block_shape)
  raise ValueError(f"no SDDMM implementation {impl!r}.")
