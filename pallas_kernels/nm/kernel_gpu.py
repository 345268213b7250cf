"""N:M matmul on NVIDIA GPUs through the Pallas Triton lowering.

Why Triton and not Mosaic GPU: (1) the kernel walks the K tiles with a
``fori_loop`` and dynamic ``pl.ds`` slices of whole-array refs, which the
Triton lowering supports directly; (2) on Hopper there is no sparse ``wgmma``
reachable from Pallas, so the win is bandwidth (read compressed tiles, expand
in registers) and Triton's ``tl.dot`` already issues ``wgmma``/``mma`` for the
dense product of the expanded tile; (3) it is the GPU lowering that can be
cross-exported and tested from a CPU-only host at both ends of the supported
JAX range (the Mosaic GPU lowering needs the CUDA plugin's MLIR dialects on
JAX 0.12). The Triton lowering is deprecated from JAX 0.11; a Mosaic GPU port
is the follow-up once it can be tested.

Triton needs power-of-two tiles: ``tb``, ``tn`` and ``tile_groups`` are powers
of two (``tile_groups`` always is) and at least 16.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pallas_kernels import _compat
from pallas_kernels.nm import _tile
from pallas_kernels.formats import NMCompressed

pl = _compat.pl

__all__ = ["nm_matmul_gpu"]

_WORD = 32


def _kernel(x_ref, v_ref, p_ref, o_ref, *, n, m, bits, tg, q, tb, tn, tiles,
            chunk, cdt):
  i = pl.program_id(0)
  j = pl.program_id(1)
  rows = pl.ds(i * tb, tb)
  cols = pl.ds(j * tn, tn)
  per = chunk // q  # bit positions per chunk

  nchunks = _WORD // per

  # One loop step expands `chunk` groups of one tile (bounded registers).
  def body(step, acc):
    t = jax.lax.div(step, nchunks)
    start = jax.lax.rem(step, nchunks) * per
    g0 = start * q
    poss, vals = [], []
    for s in range(n):
      planes = [p_ref[pl.ds(((t * n + s) * bits + b) * q, q), cols]
                for b in range(bits)]
      poss.append(_tile.unpack_planes(planes, start, per))
      vals.append(v_ref[pl.ds((t * n + s) * tg + g0, chunk), cols])
    for c in range(m):
      wc = _tile.expanded(vals, poss, c, cdt)
      xc = x_ref[rows, pl.ds((t * m + c) * tg + g0, chunk)].astype(cdt)
      acc = acc + _tile.dot(xc, wc)
    return acc

  acc = jax.lax.fori_loop(0, tiles * nchunks, body,
                          jnp.zeros((tb, tn), jnp.float32))
  o_ref[...] = acc.astype(o_ref.dtype)


def nm_matmul_gpu(xp, w: NMCompressed, *, tb: int, tn: int, out_dtype,
                  interpret=False, chunk_groups: int = 64, num_warps: int = 4,
                  num_stages: int = 2):
  """Runs the Triton kernel on prepared operands (see ``nm_matmul_tpu``).

  ``chunk_groups`` (a power of two, multiple of ``tile_groups // 32``) groups
  are expanded at a time, so a ``(chunk_groups, tn)`` tile is what lives in
  registers. Tile sizes are untuned defaults until measured on a GPU.

  >>> from pallas_kernels.formats import compress_nm
  >>> from pallas_kernels.nm.reference import permute_activation
  >>> c = compress_nm(jnp.ones((8, 16)), jnp.ones((8, 16), bool), 1, 1)
  >>> x = permute_activation(jnp.ones((16, 8)), c)
  >>> nm_matmul_gpu(x, c, tb=16, tn=16, out_dtype=jnp.float32, interpret=True)[0, 0]
  Array(8., dtype=float32)
  """
  bp = xp.shape[0]
  cols = w.shape[1]
  cdt = _tile.compute_dtype(xp.dtype, w.values.dtype)
  planes = jax.lax.bitcast_convert_type(w.indices, jnp.int32)
  q = w.words_per_plane
  chunk = max(min(chunk_groups, w.tile_groups), q)
  if chunk % q or chunk & (chunk - 1):
    raise ValueError(f"chunk_groups={chunk_groups} must be a power of two and "
                     f"a multiple of tile_groups // 32 = {q}.")
  kernel = functools.partial(
      _kernel, n=w.n, m=w.m, bits=w.bits, tg=w.tile_groups, q=q, tb=tb,
      tn=tn, tiles=w.num_tiles, chunk=chunk, cdt=cdt)
  whole = pl.no_block_spec
  with _compat.silence_triton_deprecation():
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((bp, cols), out_dtype),
        grid=(bp // tb, cols // tn),
        in_specs=[whole, whole, whole],
        out_specs=pl.BlockSpec((tb, tn), lambda i, j: (i, j)),
        compiler_params=_compat.triton_params(num_warps, num_stages),
        interpret=interpret,
        name="nm_matmul_gpu",
    )(xp, w.values, planes)
