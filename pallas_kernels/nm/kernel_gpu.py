"""N:M matmul on NVIDIA GPUs through the Pallas Triton lowering (split-K).

Decode regime first: at batch 1-16 the whole chip must be reading compressed
weights all the time, so the grid is ``(N/tn, splits, B/tb)``: ``N`` in column
tiles of ``tn`` output features and the contraction split into ``splits``
contiguous runs of K chunks, each program writing an f32 partial sum that a
small XLA reduction adds up (as split-K decode-attention kernels do). The
number of splits is chosen so that the grid has at least two programs per SM
of a 132-SM H100/H200 (:func:`plan`).

Per K chunk of ``chunk`` groups, a program loads the ``n`` value strips and
the ``n * bits`` index bit-plane rows of its column tile (masked at the ragged
``N`` edge), decodes positions with one shift/mask/or per bit plane, expands
``W_c`` for every in-group position ``c`` with ``n`` selects and accumulates
``W_c^T @ x_c^T`` into a ``(tn, tb)`` f32 accumulator: the weight tile is the
large MMA operand (``M = tn``) and the batch, padded to 16 in registers only,
the small one. ``x_c`` is a stride-``m`` slice of the activation in its
natural order (a masked strided load; ``x`` is tiny and cache resident), so
nothing is permuted or padded per call. The K loop is an ``scf.for`` that
Triton software-pipelines over ``num_stages`` stages.

Why Triton here: the K loop has a data-dependent trip count per split, and
the activation is read with per-element (stride-``m``) addressing and masks;
the Triton lowering supports both directly and cross-exports for ``cuda``
from a CPU-only host at both ends of the supported JAX range. Mosaic GPU's
TMA and ``wgmma`` operands need tiled, swizzled shared-memory layouts, which
a stride-``m`` view of the activation is not, and Pallas Mosaic GPU offers no
register gather or lane shuffle to build ``x_c`` on chip.

All tile sizes are powers of two; ``chunk`` is at least 16 (the MMA's K).
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

__all__ = ["nm_matmul_gpu", "plan", "Plan", "split_k", "MIN_PROGRAMS"]

_SMS = 132          # H100 / H200 SXM
_PROGRAMS_PER_SM = 2
MIN_PROGRAMS = _SMS * _PROGRAMS_PER_SM


class Plan(NamedTuple):
  """Tiling of one call: batch tile, column tile, groups per step, splits."""
  tb: int
  tn: int
  chunk: int
  splits: int
  steps_per_split: int


def plan(batch: int, w: NMCompressed, *, tn: int | None = None,
         chunk: int | None = None, min_programs: int = MIN_PROGRAMS,
         max_tb: int = 64) -> Plan:
  """Chooses tiles and the K split for ``batch`` rows times ``w``.

  >>> from pallas_kernels.formats import compress_nm
  >>> c = jax.eval_shape(lambda: compress_nm(  # shapes only
  ...     jnp.ones((4096, 4096), jnp.bfloat16), jnp.ones((4096, 4096), bool), 2, 4))
  >>> plan(1, c)
  Plan(tb=16, tn=128, chunk=32, splits=11, steps_per_split=3)
  """
  tb = min(max_tb, max(16, _tile.pow2_at_least(batch)))
  cols = w.shape[1]
  if tn is None:
    tn = 128 if cols > 64 else max(16, _tile.pow2_at_least(cols))
  if chunk is None:
    # Live per step: n value and n position tiles plus one expanded tile of
    # (chunk, tn); 32 x 128 (16 x 128 for m >= 8, whose steps run m dots)
    # keeps them in registers at 8 warps.
    chunk = 32 if w.m <= 4 else 16
  chunk = max(16, min(chunk, w.tile_groups))
  if chunk & (chunk - 1) or chunk % w.words_per_plane:
    raise ValueError(f"chunk={chunk} must be a power of two and a multiple "
                     f"of the words per bit plane ({w.words_per_plane}).")
  steps = w.num_tiles * (w.tile_groups // chunk)
  tiles = -(-cols // tn) * -(-batch // tb)
  splits, per = split_k(steps, -(-min_programs // tiles))
  return Plan(tb, tn, chunk, splits, per)


def split_k(steps: int, want: int) -> tuple[int, int]:
  """``(splits, steps_per_split)``: at least ``want`` splits where ``steps``
  allows, none empty.

  >>> split_k(16, 9), split_k(4, 100), split_k(10, 1), split_k(10, 4)
  ((16, 1), (4, 1), (1, 10), (5, 2))
  """
  per = max(1, steps // max(1, want))
  return -(-steps // per), per


def program_tile(*, tb, tn, batch, cols, row_shape):
  """This program's ids ``(j, s, i)`` (column tile, K split, batch tile), its
  row ids (``row_shape``, iota on axis 0), the in-range row and column masks
  and the column slice."""
  j = pl.program_id(0)
  s = pl.program_id(1)
  i = pl.program_id(2)
  col_ids = j * tn + jax.lax.broadcasted_iota(jnp.int32, (1, tn), 1)
  cmask = col_ids < cols
  row_ids = i * tb + jax.lax.broadcasted_iota(jnp.int32, row_shape, 0)
  rmask = row_ids < batch
  return j, s, i, row_ids, rmask, cmask, pl.ds(j * tn, tn)


def split_steps(s, *, per_split, steps):
  """First K step of split ``s`` and how many steps it runs."""
  first = s * per_split
  return first, jnp.minimum(per_split, steps - first)


def step_origin(st, *, nchunks, nper, q):
  """K tile ``t``, first bit position and first group of K step ``st``."""
  t = jax.lax.div(st, nchunks)
  start = jax.lax.rem(st, nchunks) * nper
  return t, start, start * q


def load_slot(p_ref, v_ref, t, sl, start, g0, colsl, cmask, *, n, bits, q, tg,
              chunk, nper):
  """Positions and values of slot ``sl`` for ``chunk`` groups from ``g0``."""
  planes = [_compat.masked_load(
      p_ref.at[pl.ds(((t * n + sl) * bits + b) * q, q), colsl], cmask)
            for b in range(bits)]
  pos = _tile.unpack_planes(planes, start, nper)                # (chunk, tn)
  val = _compat.masked_load(
      v_ref.at[pl.ds((t * n + sl) * tg + g0, chunk), colsl], cmask)
  return pos, val


def store_tile(o_ref, out, s, rows, colsl, mask, split_out):
  """Masked store of an output tile (into split ``s``'s partial sums)."""
  dst = o_ref.at[s, rows, colsl] if split_out else o_ref.at[rows, colsl]
  _compat.masked_store(dst, out, mask)


def launch(kernel, x, w, *, tb, tn, splits, out_dtype, num_warps, num_stages,
           interpret, name):
  """Runs an ``(N/tn, splits, B/tb)`` N:M kernel on the Triton lowering; with
  more than one split it writes f32 partial sums, reduced here."""
  b, cols = x.shape[0], w.shape[1]
  split_out = splits > 1
  if split_out:
    out_shape = jax.ShapeDtypeStruct((splits, b, cols), jnp.float32)
  else:
    out_shape = jax.ShapeDtypeStruct((b, cols), out_dtype)
  whole = pl.no_block_spec
  with _compat.silence_triton_deprecation():
    out = pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(pl.cdiv(cols, tn), splits, pl.cdiv(b, tb)),
        in_specs=[whole, whole, whole],
        out_specs=whole,
        compiler_params=_compat.triton_params(num_warps, num_stages),
        interpret=interpret,
        name=name,
    )(x, w.values, w.indices)
  if split_out:
    out = out.sum(axis=0).astype(out_dtype)
  return out


def _kernel(x_ref, v_ref, p_ref, o_ref, *, n, m, bits, tg, q, tb, tn, chunk,
            per_split, steps, batch, k, cols, cdt, split_out):
  _, s, i, row_ids, rmask, cmask, colsl = program_tile(
      tb=tb, tn=tn, batch=batch, cols=cols, row_shape=(tb, 1))
  rowsl = pl.ds(i * tb, tb)
  nper = chunk // q            # bit positions per chunk
  nchunks = tg // chunk
  first, count = split_steps(s, per_split=per_split, steps=steps)

  def body(step, acc):
    t, start, g0 = step_origin(first + step, nchunks=nchunks, nper=nper, q=q)
    poss, vals = [], []
    for sl in range(n):
      pos, val = load_slot(p_ref, v_ref, t, sl, start, g0, colsl, cmask, n=n,
                           bits=bits, q=q, tg=tg, chunk=chunk, nper=nper)
      poss.append(pos)
      vals.append(val)
    kbase = (t * tg + g0) * m
    kcol = kbase + m * jax.lax.broadcasted_iota(jnp.int32, (1, chunk), 1)
    for c in range(m):
      wc = _tile.expanded(vals, poss, c, cdt)                     # (chunk, tn)
      xmask = rmask & (kcol + c < k)
      xc = _compat.masked_load(                                   # (tb, chunk)
          x_ref.at[jnp.where(xmask, row_ids, 0), jnp.where(xmask, kcol + c, 0)],
          xmask).astype(cdt)
      acc = acc + _tile.dot(wc.T, xc.T)                           # (tn, tb)
    return acc

  acc = jax.lax.fori_loop(0, count, body, jnp.zeros((tn, tb), jnp.float32))
  store_tile(o_ref, acc.T.astype(o_ref.dtype), s, rowsl, colsl, rmask & cmask,
             split_out)


def nm_matmul_gpu(x, w: NMCompressed, *, out_dtype=None, interpret=False,
                  tn: int | None = None, chunk: int | None = None,
                  splits: int | None = None, num_warps: int = 8,
                  num_stages: int = 3) -> jax.Array:
  """``x @ W`` on the Triton lowering; ``x`` is ``(B, K)`` in natural order.

  Args:
    x: ``(B, K)`` activations (any ``B``; no padding needed).
    w: the compressed weight, as stored by ``compress_nm``.
    out_dtype: result dtype (default: promotion of both dtypes).
    interpret: run in the Pallas interpreter (CPU).
    tn: output-column tile (power of two); default from :func:`plan`.
    chunk: groups expanded per loop step (power of two >= 16).
    splits: force the number of K splits (default from :func:`plan`).
    num_warps: Triton warps per program.
    num_stages: Triton software-pipelining stages of the K loop.

  Returns:
    ``(B, N)`` product, accumulated in f32.

  >>> from pallas_kernels.formats import compress_nm
  >>> c = compress_nm(jnp.ones((64, 24)), jnp.ones((64, 24), bool), 1, 1)
  >>> nm_matmul_gpu(jnp.ones((3, 64)), c, interpret=True)[2, :3]
  Array([64., 64., 64.], dtype=float32)
  """
  b, k, cols, out_dtype = _tile.operands(x, w, out_dtype)
  cdt = _tile.compute_dtype(x.dtype, w.values.dtype)
  pln = plan(b, w, tn=tn, chunk=chunk)
  if splits is not None:
    steps = w.num_tiles * (w.tile_groups // pln.chunk)
    sp, per = split_k(steps, splits)
    pln = pln._replace(splits=sp, steps_per_split=per)
  tb, tn, ch = pln.tb, pln.tn, pln.chunk
  split_out = pln.splits > 1
  kernel = functools.partial(
      _kernel, n=w.n, m=w.m, bits=w.bits, tg=w.tile_groups,
      q=w.words_per_plane, tb=tb, tn=tn, chunk=ch,
      per_split=pln.steps_per_split,
      steps=w.num_tiles * (w.tile_groups // ch), batch=b, k=k, cols=cols,
      cdt=cdt, split_out=split_out)
  return launch(kernel, x, w, tb=tb, tn=tn, splits=pln.splits,
                out_dtype=out_dtype, num_warps=num_warps,
                num_stages=num_stages, interpret=interpret,
                name="nm_matmul_gpu")
