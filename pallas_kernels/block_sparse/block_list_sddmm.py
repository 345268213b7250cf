"""The block-list SDDMM: ``a.T @ b`` computed only at a block list's blocks.

:func:`block_list_sddmm` is the weight gradient of
:func:`~pallas_kernels.block_sparse.block_list_api.block_list_matmul`
(``dW = x.T @ g`` at the stored blocks of ``W``), exposed on its own. The
custom VJPs of both block-list products call the same implementations.

Implementations, chosen like the products' (dispatch op
``block_list_sddmm``, pattern
:func:`~pallas_kernels.block_sparse.block_list_api.pattern`): ``"xla"`` / ``"xla_blocks"`` -- a batched
gather-matmul over the stored blocks (the automatic choice wherever no
kernel was measured faster); ``"triton"`` -- Pallas Triton, one program per
stored block (blocks powers of two >= 16); ``"tpu"`` -- Mosaic TPU, one
scalar-prefetched grid step per stored block (blocks multiples of 128). No
speed is claimed for any of them (unmeasured).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from pallas_kernels.block_sparse import block_list_api
from pallas_kernels.block_sparse._sddmm_paths import sampled_product
from pallas_kernels.formats._block_list import BlockList
from pallas_kernels.formats._block_list import check_block_list

__all__ = ["block_list_sddmm"]


def block_list_sddmm(a, b, like: BlockList, *,
                     implementation: str | None = None, interpret: Any = None,
                     name: str | None = None,
                     smem_budget: int = block_list_api.TPU_SMEM_BUDGET_BYTES
                     ) -> jax.Array:
  """The blocks of ``a.T @ b`` at the stored blocks of ``like``.

  Args:
    a: ``(T, R)`` dense operand (e.g. the activations ``x``).
    b: ``(T, C)`` dense operand (e.g. the output gradient ``g``).
    like: the block list whose ``(R, C)`` structure is sampled (its values
      are not read).
    implementation: ``None`` (chosen by measurement, see
      :func:`~pallas_kernels.block_sparse.block_list_api.choose_implementation`
      with ``op="sddmm"``) or one of its implementations.
    interpret: run a Pallas kernel in interpret mode; defaults to True off
      its platform.
    name: layer name used in error messages.
    smem_budget: TPU only: scalar-memory bytes the metadata may use.

  Returns:
    ``(capacity, bh, bw)`` in the promoted dtype (accumulated in f32): slot
    ``s`` holds ``(a.T @ b)`` restricted to stored block ``s``; slots past
    the stored count are zero.

  >>> from pallas_kernels.formats import block_list_from_mask
  >>> w = block_list_from_mask(jnp.ones((32, 32)), jnp.eye(2, dtype=bool), (16, 16))
  >>> block_list_sddmm(jnp.ones((3, 32)), jnp.ones((3, 32)), w,
  ...                  implementation="triton")[:, 0, 0]
  Array([3., 3.], dtype=float32)
  >>> block_list_sddmm(jnp.ones((3, 32)), jnp.ones((4, 32)), w, name="fc1")
  Traceback (most recent call last):
  ...
  ValueError: layer 'fc1': the SDDMM operands must be 2-D (T, 32) and (T, 32) for the (32, 32) block list, got (3, 32) and (4, 32).
  """
  a, b = jnp.asarray(a), jnp.asarray(b)
  check_block_list(like, name=name)
  rows, cols = like.shape
  if (a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]
      or a.shape[1] != rows or b.shape[1] != cols):
    where = f"layer {name!r}: " if name else ""
    raise ValueError(f"{where}the SDDMM operands must be 2-D (T, {rows}) and "
                     f"(T, {cols}) for the {tuple(like.shape)} block list, "
                     f"got {a.shape} and {b.shape}.")
  cfg = block_list_api._configure(  # pylint: disable=protected-access
      like, "sddmm", jnp.result_type(a.dtype, b.dtype), a.shape[0],
      implementation, interpret, name, None, 2, smem_budget)
  return sampled_product(a, b, like, contract=0, impl=cfg.impl,
                         interpret=cfg.interpret,
                         out_dtype=jnp.result_type(a.dtype, b.dtype))
