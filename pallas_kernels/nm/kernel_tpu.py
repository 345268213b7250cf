"""N:M matmul on TPU (Mosaic): compressed tiles are expanded in VMEM.

Grid ``(B/tb, N/tn, T/kt)``: batch tiles, column tiles of ``tn`` (512-2048
lanes) and steps of ``kt`` K tiles each, the step axis innermost and
``arbitrary``. Every step DMAs ``kt`` compressed value tiles
``(kt*n*tg, tn)`` and their index bit planes ``(kt*n*bits*tg/32, tn)`` -- the
bandwidth saving -- double buffered, while the activation stays resident in
VMEM for the whole row of column tiles (``index_map (i, 0)``, one DMA per
batch tile, single buffered). Deeper buffering of the grid pipeline
(``pl.Buffered(3)``) is rejected by the Mosaic lowering at both ends of the
supported JAX range ("Only single (1) and double (2) buffering are
supported"); instead each step moves about 1 MiB of compressed weights per
column tile of 1024 (``kt`` K tiles), so two buffers keep megabytes in flight
and the per-step overhead is amortised. The batch is never padded: a
batch of up to 256 rows is one full-extent block, so batch 1 occupies one
sublane of the vregs and the MXU pads it to 8 sublanes itself.

Per run of ``gc = 128`` groups the kernel unpacks positions (one shift, mask
and or per bit plane on ``(8, 128)``-aligned tiles), expands
``W_c = sum_s where(pos_s == c, val_s, 0)`` with lane-aligned selects and
accumulates ``x_c @ W_c`` on the MXU into an f32 VMEM accumulator. ``x_c``
(the activation columns ``g*m + c`` of the run, a stride-``m`` lane gather)
comes from the activation in its natural order without a per-call
permutation: the run's ``(tb, m*gc)`` slice is rotated by ``c`` lanes
(``pltpu.roll``, the XLU) and multiplied on the MXU by a one-hot ``(m*gc,
gc)`` selection matrix built once per step from iotas. That selection product
is exact (one nonzero term; f32 operands use full precision) and costs
``m*gc/tn`` of the main product's MXU work, which is idle in the
bandwidth-bound regime this kernel is for. Lane-strided loads, the direct
alternative, are not supported by Mosaic.

Layout requirements for real TPU lowering: ``tile_groups`` a multiple of 256
(each bit plane is then whole ``(8, 128)`` int32 tiles). The interpreter
accepts any layout. Ragged ``K`` (groups past the last one), ragged ``N`` and
a ragged batch are handled by partial blocks and an in-kernel mask of the
activation columns past ``K``.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pallas_kernels import _compat
from pallas_kernels.formats import NMCompressed
from pallas_kernels.nm import _tile

pl = _compat.pl
pltpu = _compat.pltpu

__all__ = ["nm_matmul_tpu", "plan", "Plan", "LOWERING_TILE_GROUPS"]

# tile_groups must be a multiple of this for the Mosaic lowering.
LOWERING_TILE_GROUPS = 256
_MAX_TB = 256
_STEP_ROWS = 1024      # compressed value rows per grid step (per column)
_VMEM_LIMIT = 32 * 1024 * 1024


class Plan(NamedTuple):
  """Tiling of one call: batch tile, column tile, K tiles per step."""
  tb: int
  tn: int
  kt: int


def plan(batch: int, w: NMCompressed, *, tn: int | None = None,
         kt: int | None = None) -> Plan:
  """Chooses the tiles for ``batch`` rows times ``w``.

  >>> from pallas_kernels.formats import compress_nm
  >>> c = jax.eval_shape(lambda: compress_nm(  # shapes only
  ...     jnp.ones((4096, 4096), jnp.bfloat16), jnp.ones((4096, 4096), bool), 2, 4))
  >>> plan(1, c)
  Plan(tb=1, tn=1024, kt=2)
  """
  tb = batch if batch <= _MAX_TB else _MAX_TB
  cols = w.shape[1]
  if tn is None:
    tn = cols if cols <= 1024 else (2048 if w.n * w.tile_groups <= 256
                                    else 1024)
  if kt is None:
    kt = max(1, _STEP_ROWS // (w.n * w.tile_groups))
  kt = max(1, min(kt, w.num_tiles))
  while w.num_tiles % kt:  # whole tiles per step: no partial value blocks
    kt -= 1
  return Plan(tb, tn, kt)


def _kernel(x_ref, v_ref, p_ref, o_ref, acc_ref, *, n, m, bits, tg, q, kt,
            gc, k, cdt):
  step = pl.program_id(2)

  @pl.when(step == 0)
  def _():
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  width = m * gc
  # sel[r, g] = (r == g*m): picks lanes 0, m, 2m, ... of a run.
  sel = (jax.lax.broadcasted_iota(jnp.int32, (width, gc), 0) ==
         jax.lax.broadcasted_iota(jnp.int32, (width, gc), 1) * m).astype(cdt)
  lane = jax.lax.broadcasted_iota(jnp.int32, (1, width), 1)
  acc = acc_ref[...]
  for tt in range(kt):
    for sub in range(tg // gc):
      g0 = sub * gc
      poss = [_tile.unpack_planes(
          [p_ref[((tt * n + s) * bits + b) * q:((tt * n + s) * bits + b + 1) * q,
                 :] for b in range(bits)], g0 // q, gc // q) for s in range(n)]
      # Selects run on 32-bit data (same layout as the int32 positions).
      vals = [v_ref[(tt * n + s) * tg + g0:(tt * n + s) * tg + g0 + gc, :]
              .astype(jnp.float32) for s in range(n)]
      base = (step * kt + tt) * (m * tg) + g0 * m
      xr = x_ref[:, pl.ds(pl.multiple_of(base, gc), width)].astype(jnp.float32)
      xr = jnp.where(base + lane < k, xr, 0.0)
      for c in range(m):
        xs = xr if c == 0 else pltpu.roll(xr, width - c, 1)
        xc = _tile.dot(xs.astype(cdt), sel).astype(cdt)        # exact
        wc = _tile.expanded(vals, poss, c, jnp.float32).astype(cdt)
        acc = acc + _tile.dot(xc, wc)
  acc_ref[...] = acc

  @pl.when(step == pl.num_programs(2) - 1)
  def _():
    o_ref[...] = acc_ref[...].astype(o_ref.dtype)


def nm_matmul_tpu(x, w: NMCompressed, *, out_dtype=None, interpret=False,
                  tn: int | None = None, kt: int | None = None) -> jax.Array:
  """``x @ W`` with the Mosaic TPU kernel; ``x`` is ``(B, K)`` as it comes.

  Args:
    x: ``(B, K)`` activations in natural order (nothing padded or permuted).
    w: the compressed weight, as stored by ``compress_nm``.
    out_dtype: result dtype (default: promotion of both dtypes).
    interpret: ``False``, ``True`` or ``pltpu.InterpretParams`` (TPU
      semantics on CPU).
    tn: output-column tile (a multiple of 128, or ``N``); default
      from :func:`plan`.
    kt: K tiles per grid step (a divisor of ``w.num_tiles``).

  Returns:
    ``(B, N)`` product, accumulated in f32.

  >>> from pallas_kernels.formats import compress_nm
  >>> c = compress_nm(jnp.ones((32, 128)), jnp.ones((32, 128), bool), 1, 1)
  >>> nm_matmul_tpu(jnp.ones((2, 32)), c, interpret=True)[1, 0]
  Array(32., dtype=float32)
  """
  b, k, cols, out_dtype = _tile.operands(x, w, out_dtype)
  cdt = _tile.compute_dtype(x.dtype, w.values.dtype)
  if cdt == jnp.float16:  # no f16 MXU path on TPU: exact f32 products instead
    cdt = jnp.dtype(jnp.float32)
  tb, tn, kt = plan(b, w, tn=tn, kt=kt)
  n, m, bits, tg, q = w.n, w.m, w.bits, w.tile_groups, w.words_per_plane
  gc = min(128, tg)
  kernel = functools.partial(_kernel, n=n, m=m, bits=bits, tg=tg, q=q, kt=kt,
                             gc=gc, k=k, cdt=cdt)
  kx = w.num_tiles * tg * m  # whole tiles: the block may overhang K
  resident = _compat.buffered(1)
  xspec = (pl.BlockSpec((tb, kx), lambda i, j, s: (i, 0))
           if resident is None else
           pl.BlockSpec((tb, kx), lambda i, j, s: (i, 0),
                        pipeline_mode=resident))
  return pl.pallas_call(
      kernel,
      out_shape=jax.ShapeDtypeStruct((b, cols), out_dtype),
      grid=(pl.cdiv(b, tb), pl.cdiv(cols, tn), w.num_tiles // kt),
      in_specs=[
          xspec,
          pl.BlockSpec((kt * n * tg, tn), lambda i, j, s: (s, j)),
          pl.BlockSpec((kt * n * bits * q, tn), lambda i, j, s: (s, j)),
      ],
      out_specs=pl.BlockSpec((tb, tn), lambda i, j, s: (i, j)),
      scratch_shapes=[_compat.vmem((tb, tn), jnp.float32)],
      compiler_params=_compat.tpu_params(
          ("parallel", "parallel", "arbitrary"), vmem_limit_bytes=_VMEM_LIMIT),
      interpret=interpret,
      name="nm_matmul_tpu",
  )(x, w.values, w.indices)
