"""N:M matmul on TPU (Mosaic): compressed tiles are expanded in VMEM.

Grid ``(B/tb, N/tn, K-tiles)``, the K-tile axis innermost and ``arbitrary``.
Every step DMAs one compressed value tile ``(n*tg, tn)`` and its packed index
planes ``(n*bits*tg/32, tn)`` -- the bandwidth saving -- unpacks positions with
shifts, expands ``W_c`` with lane-aligned selects and accumulates
``x_c @ W_c`` on the MXU into an f32 VMEM scratch.

Layout constraints for real TPU lowering: ``tile_groups`` a multiple of 256
(so each bit plane is 8 sublanes of int32) and ``tn`` a multiple of 128. The
api falls back to XLA otherwise. Interpret mode accepts any layout.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pallas_kernels import _compat
from pallas_kernels.nm import _tile
from pallas_kernels.formats import NMCompressed

pl = _compat.pl

__all__ = ["nm_matmul_tpu"]


def _kernel(x_ref, v_ref, p_ref, o_ref, acc_ref, *, n, m, bits, tg, q, cdt):
  t = pl.program_id(2)

  @pl.when(t == 0)
  def _():
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  poss = [_tile.unpack_planes(
      [p_ref[(s * bits + b) * q:(s * bits + b + 1) * q, :]
       for b in range(bits)]) for s in range(n)]
  # Selects run on 32-bit data (same layout as the int32 positions); the
  # expanded tile is cast to the MXU dtype afterwards.
  vals = [v_ref[s * tg:(s + 1) * tg, :].astype(jnp.float32) for s in range(n)]
  acc = acc_ref[...]
  for c in range(m):
    wc = _tile.expanded(vals, poss, c, jnp.float32).astype(cdt)
    xc = x_ref[:, c * tg:(c + 1) * tg].astype(cdt)
    acc = acc + _tile.dot(xc, wc)
  acc_ref[...] = acc

  @pl.when(t == pl.num_programs(2) - 1)
  def _():
    o_ref[...] = acc_ref[...].astype(o_ref.dtype)


def nm_matmul_tpu(xp, w: NMCompressed, *, tb: int, tn: int, out_dtype,
                  interpret=False):
  """Runs the TPU kernel on prepared operands.

  Args:
    xp: ``(Bp, T*m*tg)`` permuted activation, ``Bp`` a multiple of ``tb``.
    w: compressed weight whose ``N`` is a multiple of ``tn``.
    tb: batch tile.
    tn: output-column tile.
    out_dtype: result dtype.
    interpret: run in the Pallas interpreter (CPU).

  Returns:
    ``(Bp, N)`` product.

  >>> from pallas_kernels.formats import compress_nm
  >>> from pallas_kernels.nm.reference import permute_activation
  >>> c = compress_nm(jnp.ones((8, 128)), jnp.ones((8, 128), bool), 1, 1)
  >>> x = permute_activation(jnp.ones((16, 8)), c)
  >>> nm_matmul_tpu(x, c, tb=16, tn=128, out_dtype=jnp.float32, interpret=True)[0, 0]
  Array(8., dtype=float32)
  """
  bp = xp.shape[0]
  k_cols = w.shape[1]
  t, tg, n, m, bits, q = (w.num_tiles, w.tile_groups, w.n, w.m, w.bits,
                          w.words_per_plane)
  cdt = _tile.compute_dtype(xp.dtype, w.values.dtype)
  planes = jax.lax.bitcast_convert_type(w.indices, jnp.int32)
  kernel = functools.partial(_kernel, n=n, m=m, bits=bits, tg=tg, q=q,
                             cdt=cdt)
  grid = (bp // tb, k_cols // tn, t)
  return pl.pallas_call(
      kernel,
      out_shape=jax.ShapeDtypeStruct((bp, k_cols), out_dtype),
      grid=grid,
      in_specs=[
          pl.BlockSpec((tb, m * tg), lambda i, j, k: (i, k)),
          pl.BlockSpec((n * tg, tn), lambda i, j, k: (k, j)),
          pl.BlockSpec((n * bits * q, tn), lambda i, j, k: (k, j)),
      ],
      out_specs=pl.BlockSpec((tb, tn), lambda i, j, k: (i, j)),
      scratch_shapes=[_compat.vmem((tb, tn), jnp.float32)],
      compiler_params=_compat.tpu_params(("parallel", "parallel",
                                          "arbitrary")),
      interpret=interpret,
      name="nm_matmul_tpu",
  )(xp, w.values, planes)
