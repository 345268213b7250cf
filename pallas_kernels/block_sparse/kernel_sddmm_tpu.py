"""Sampled dense-dense matmul (SDDMM) over a block list on TPU (Mosaic).

The grid is ``(capacity, T // tt)``: one step per stored block (times the
tiles of the summed axis ``T``; one tile when ``T <= tt``). The block list's
``rows``/``cols`` and the stored count are scalar-prefetched into SMEM and
drive the index maps, so step ``s`` reads only the dense tiles of block
``s``'s row and column and writes output block ``s``:

* ``contract=0``: ``a (T, R)``, ``b (T, C)``, block ``a[:, rows].T @ b[:, cols]``;
* ``contract=1``: ``a (R, T)``, ``b (C, T)``, block ``a[rows, :] @ b[cols, :].T``.

Slots past the stored count skip the MXU, come out zero and keep the tile
indices of the step before (no DMA). Lowering needs blocks that are
multiples of 128 and ``tt`` a multiple of 16 (``contract=0``) or 128
(``contract=1``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pallas_kernels import _compat

__all__ = ["block_list_sddmm_tpu"]

pl = _compat.pl
_SQ = _compat.SQUEEZED


def _sddmm_kernel(rows_ref, cols_ref, live_ref, a_ref, b_ref, o_ref, acc_ref,
                  *, contract):
  del rows_ref, cols_ref
  s, t = pl.program_id(0), pl.program_id(1)

  @pl.when(t == 0)
  def _():
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  @pl.when(s < live_ref[0])
  def _():
    a, b = a_ref[...], b_ref[...]
    cdt = jnp.result_type(a.dtype, b.dtype)
    prec = (jax.lax.Precision.HIGHEST if cdt == jnp.float32
            else jax.lax.Precision.DEFAULT)
    dims = ((0,), (0,)) if contract == 0 else ((1,), (1,))
    acc_ref[...] += jax.lax.dot_general(
        a.astype(cdt), b.astype(cdt), (dims, ((), ())),
        preferred_element_type=jnp.float32, precision=prec)

  @pl.when(t == pl.num_programs(1) - 1)
  def _():
    o_ref[...] = acc_ref[...].astype(o_ref.dtype)


def _operand_spec(block, contract, tt, lines):
  """The BlockSpec of a dense operand whose block ``lines[s]`` step ``s``
  reads; idle slots hold the last tile of the last stored block."""
  def index_map(s, t, rows, cols, live):
    idx = (rows, cols)[lines]
    blk = idx[jnp.minimum(s, jnp.maximum(live[0] - 1, 0))]
    tile = jnp.where(s < live[0], t, pl.num_programs(1) - 1)
    return (tile, blk) if contract == 0 else (blk, tile)

  shape = (tt, block) if contract == 0 else (block, tt)
  return pl.BlockSpec(shape, index_map)


def block_list_sddmm_tpu(a, b, rows, cols, live, *, block_shape, contract: int,
                         tt: int, out_dtype, interpret=False) -> jax.Array:
  """The stored blocks of ``a.T @ b`` (``contract=0``) or ``a @ b.T`` (1).

  The arguments are those of
  :func:`~pallas_kernels.block_sparse.kernel_sddmm_gpu.block_list_sddmm_gpu`
  (``block_shape`` any multiples of 128 when lowered, ``tt`` a multiple of 16
  for ``contract=0`` or of 128 for ``contract=1``), except that ``interpret``
  may also be a ``pltpu.InterpretParams`` and there are no Triton options.

  Returns:
    ``(capacity, bh, bw)``: the stored blocks of the product.

  >>> rc = jnp.array([0, 1], jnp.int32)
  >>> out = block_list_sddmm_tpu(jnp.ones((8, 4)), jnp.ones((8, 4)), rc, rc,
  ...                            jnp.array([1], jnp.int32), block_shape=(2, 2),
  ...                            contract=0, tt=8, out_dtype=jnp.float32,
  ...                            interpret=True)
  >>> out[:, 0, 0]  # the second slot is past the stored count
  Array([8., 0.], dtype=float32)
  """
  bh, bw = block_shape
  cap = rows.shape[0]
  nt = a.shape[contract] // tt
  spec = _compat.PrefetchScalarGridSpec(
      num_scalar_prefetch=3,
      grid=(cap, nt),
      in_specs=[_operand_spec(bh, contract, tt, 0),
                _operand_spec(bw, contract, tt, 1)],
      out_specs=pl.BlockSpec((_SQ, bh, bw),
                             lambda s, t, rows, cols, live: (s, 0, 0)),
      scratch_shapes=[_compat.vmem((bh, bw), jnp.float32)],
  )
  return pl.pallas_call(
      functools.partial(_sddmm_kernel, contract=contract),
      out_shape=jax.ShapeDtypeStruct((cap, bh, bw), out_dtype),
      grid_spec=spec,
      compiler_params=_compat.tpu_params(("parallel", "arbitrary")),
      interpret=interpret,
      name="block_list_sddmm_tpu",
  )(rows, cols, live, a, b)
