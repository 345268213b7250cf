"""N:M compressed format with bit-planed in-group indices and a tiled layout.

Layout (``K`` the contraction axis, ``G = K / m`` groups, ``tg`` groups per
K tile, ``T = ceil(G / tg)`` tiles, ``bits = ceil(log2 m)``, word width
``ww = min(32, tg)`` bits and ``Q = max(1, tg / 32)`` words per bit plane):

* ``values`` has shape ``(T * n * tg, N)``. Inside tile ``t`` the rows are
  *slot-major*: row ``t*n*tg + s*tg + g`` holds the ``s``-th kept value (in
  increasing in-group position) of group ``t*tg + g``. Expanding a tile is then
  ``W_c = sum_s where(idx_s == c, val_s, 0)`` for every in-group position
  ``c``: lane-aligned elementwise selects, no gathers. ``W_c`` multiplies the
  activation columns ``(t*tg + g)*m + c`` -- a stride-``m`` slice of the
  activation in its natural order, so nothing is permuted per call.
* ``indices`` has shape ``(T * n * bits * Q, N)`` and an unsigned dtype of
  ``ww`` bits (``uint32`` for ``tg >= 32``, ``uint16`` for ``tg = 16``): bit
  planes. Word row ``t*n*bits*Q + (s*bits + b)*Q + w`` stores, in bit ``p``,
  bit ``b`` of the in-group position of slot ``s`` of group-in-tile
  ``g = p*Q + w``. Each kept value costs exactly ``bits`` bits. Decoding a run
  of groups is, per bit plane, one shift by the row's constant bit position,
  one mask and one or -- no cross-lane data movement, and the ``(32, Q, N)``
  result reshapes to ``(32*Q, N)`` without relayout on TPU's ``(8, 128)``
  tiles (``Q = 8`` for ``tg = 256``). Bit planes keep exactly ``bits`` bits
  for every ``m`` (3-bit positions of ``m = 8`` do not pack into bytes or
  words evenly), which the bandwidth bound depends on.
* ``N`` is not padded: kernels mask the ragged last column tile. ``K`` is
  padded only to whole tiles of groups; the default tile size keeps that
  padding at most ``1/8`` of the groups where a power-of-two tile allows it.

Groups past ``G`` (the ragged tail of the last tile) hold zero values and
position 0, so they contribute nothing.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels.formats._shape import dense_matching

__all__ = ["NMCompressed", "compress_nm", "decompress_nm", "nm_values_like",
           "default_tile_groups", "validate_nm_mask", "index_bits"]

_WORD = 32


def index_bits(m: int) -> int:
  """Bits needed to store one in-group position of an N:M pattern.

  >>> index_bits(4), index_bits(8), index_bits(16), index_bits(2)
  (2, 3, 4, 1)
  """
  return max(1, math.ceil(math.log2(m)))


_MIN_TILE = 16
_MAX_DEFAULT_TILE = 256


def default_tile_groups(k: int, m: int) -> int:
  """Default number of groups per K tile: a power of two in ``[16, 256]``.

  The largest tile whose padding of ``K`` stays within ``1/8`` of the groups
  (or, failing that, the one with the least padding). 256 groups (8 word rows
  per bit plane) suit the TPU's ``(8, 128)`` tiles; small matrices get small
  tiles so that a tiny layer does not grow.

  >>> default_tile_groups(4096, 4), default_tile_groups(64, 4)
  (256, 16)
  >>> default_tile_groups(2000, 4), default_tile_groups(400, 4)
  (256, 16)
  """
  groups = max(1, -(-k // m))
  best = None
  tg = _MAX_DEFAULT_TILE
  while tg >= _MIN_TILE:
    pad = -(-groups // tg) * tg - groups
    if 8 * pad <= groups:
      return tg
    if best is None or pad < best[0]:
      best = (pad, tg)
    tg //= 2
  return best[1]


def _word_dtype(tile_groups: int):
  return jnp.uint32 if tile_groups >= _WORD else jnp.uint16


def _check_nm(n, m):
  if not isinstance(n, (int, np.integer)) or not isinstance(m, (int, np.integer)):
    raise TypeError(f"n and m must be ints, got n={n!r}, m={m!r}.")
  if not 1 <= m <= 16:
    raise ValueError(f"m must be in [1, 16], got m={m}.")
  if not 1 <= n <= m:
    raise ValueError(f"n must be in [1, m], got n={n}, m={m} (N > M is not an "
                     "N:M pattern).")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NMCompressed:
  """A ``(K, N)`` matrix that is N:M sparse along axis 0, stored compressed.

  Attributes:
    values: ``(num_tiles * n * tile_groups, N)`` kept values, slot-major tiles.
    indices: ``(num_tiles * n * bits * words_per_plane, N)`` bit planes of the
      in-group positions (``uint32``; ``uint16`` when ``tile_groups == 16``).
    n: kept values per group (static).
    m: group size along axis 0 (static).
    shape: the dense ``(K, N)`` shape (static).
    tile_groups: groups per K tile, a power of two >= 16 (static).
  """
  values: jax.Array
  indices: jax.Array
  n: int = dataclasses.field(metadata=dict(static=True))
  m: int = dataclasses.field(metadata=dict(static=True))
  shape: tuple[int, int] = dataclasses.field(metadata=dict(static=True))
  tile_groups: int = dataclasses.field(metadata=dict(static=True))

  @property
  def bits(self) -> int:
    return index_bits(self.m)

  @property
  def groups(self) -> int:
    return self.shape[0] // self.m

  @property
  def num_tiles(self) -> int:
    return -(-self.groups // self.tile_groups)

  @property
  def dtype(self):
    return self.values.dtype

  @property
  def words_per_plane(self) -> int:
    return max(1, self.tile_groups // _WORD)

  @property
  def bits_per_word(self) -> int:
    """Groups (bits) stored per index word, ``min(32, tile_groups)``."""
    return min(_WORD, self.tile_groups)

  def nbytes(self) -> int:
    """Bytes of values plus packed indices (what a kernel reads)."""
    return int(self.values.size * self.values.dtype.itemsize
               + self.indices.size * self.indices.dtype.itemsize)


def validate_nm_mask(mask, n: int, m: int, axis_name: str = "mask") -> None:
  """Checks on the host that every group of ``m`` along axis 0 keeps ``n``.

  Args:
    mask: boolean ``(K, N)`` array (concrete, not traced).
    n: kept entries per group.
    m: group size.
    axis_name: name used in error messages.

  Raises:
    ValueError: naming the first offending group.

  >>> validate_nm_mask(np.array([[1], [0], [1], [0]], bool), 2, 4)
  >>> validate_nm_mask(np.array([[1], [1], [1], [0]], bool), 2, 4)
  Traceback (most recent call last):
  ...
  ValueError: mask is not 2:4 along axis 0: group 0 (rows 0:4) of column 0 keeps 3 entries, expected exactly 2.
  """
  _check_nm(n, m)
  mk = np.asarray(mask).astype(bool)
  if mk.ndim != 2:
    raise ValueError(f"{axis_name} must be 2-D (K, N), got shape {mk.shape}.")
  if mk.shape[0] % m:
    raise ValueError(f"{axis_name} axis 0 (K={mk.shape[0]}) must be divisible "
                     f"by m={m}.")
  counts = mk.reshape(mk.shape[0] // m, m, mk.shape[1]).sum(axis=1)
  bad = np.argwhere(counts != n)
  if bad.size:
    g, col = (int(v) for v in bad[0])
    raise ValueError(
        f"{axis_name} is not {n}:{m} along axis 0: group {g} (rows "
        f"{g * m}:{(g + 1) * m}) of column {col} keeps {int(counts[g, col])} "
        f"entries, expected exactly {n}.")


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def compress_nm(w, mask, n: int, m: int, *, tile_groups: int | None = None,
                validate: bool = True) -> NMCompressed:
  """Compresses a ``(K, N)`` weight whose mask is N:M along axis 0.

  Args:
    w: dense ``(K, N)`` weight (a Flax Dense kernel is ``(in, out)``).
    mask: boolean ``(K, N)``; every group of ``m`` consecutive rows of a column
      keeps exactly ``n`` entries.
    n: kept entries per group.
    m: group size, ``m <= 16``.
    tile_groups: groups per K tile (a power of two >= 16); defaults to
      :func:`default_tile_groups`.
    validate: check the mask on the host when it is concrete. Under ``jit``
      the check is skipped, so compression can be traced.

  Returns:
    An :class:`NMCompressed`; ``decompress_nm`` gives back ``w * mask``.

  Stacked weights (e.g. ``(layers, K, N)`` under ``scan``) compress with
  ``jax.vmap(lambda w, mk: compress_nm(w, mk, n, m))``; a conv kernel
  ``(h, w, in, out)`` is reshaped so the input channels form axis 0.

  >>> w = jnp.arange(8.0).reshape(8, 1)
  >>> mask = jnp.array([1, 0, 0, 1, 0, 1, 1, 0], bool).reshape(8, 1)
  >>> c = compress_nm(w, mask, 2, 4)
  >>> c.values.shape, c.indices.shape, c.indices.dtype
  ((32, 1), (4, 1), dtype('uint16'))
  >>> decompress_nm(c)[:, 0]
  Array([0., 0., 0., 3., 0., 5., 6., 0.], dtype=float32)
  """
  _check_nm(n, m)
  w = jnp.asarray(w)
  mask = jnp.asarray(mask)
  if w.ndim != 2:
    raise ValueError(f"w must be 2-D (K, N), got shape {w.shape}.")
  if mask.shape != w.shape:
    raise ValueError(f"mask shape {mask.shape} must equal w shape {w.shape}.")
  k, cols = w.shape
  if k % m:
    raise ValueError(f"w axis 0 (K={k}) must be divisible by m={m}.")
  if tile_groups is None:
    tile_groups = default_tile_groups(k, m)
  if tile_groups < _MIN_TILE or tile_groups & (tile_groups - 1):
    raise ValueError(f"tile_groups must be a power of two >= {_MIN_TILE}, "
                     f"got {tile_groups}.")
  if validate and _is_concrete(mask):
    validate_nm_mask(mask, n, m)
  return _compress_nm(w, mask, n=int(n), m=int(m), tile_groups=int(tile_groups))


@functools.partial(jax.jit, static_argnames=("n", "m", "tile_groups"))
def _compress_nm(w, mask, *, n, m, tile_groups):
  """Traced body of :func:`compress_nm` (one compiled program per layout)."""
  k, cols = w.shape
  mask = mask.astype(bool)
  groups = k // m
  tiles = -(-groups // tile_groups)
  gpad = tiles * tile_groups - groups
  wg = w.reshape(groups, m, cols)
  mg = mask.reshape(groups, m, cols)
  # Kept positions first, in increasing order (stable sort of ~mask).
  pos = jnp.argsort(~mg, axis=1, stable=True)[:, :n]  # (G, n, N)
  vals = jnp.take_along_axis(wg, pos, axis=1)
  vals = jnp.where(jnp.take_along_axis(mg, pos, axis=1), vals,
                   jnp.zeros((), w.dtype))
  pos = pos.astype(jnp.uint32)
  if gpad:
    vals = jnp.pad(vals, ((0, gpad), (0, 0), (0, 0)))
    pos = jnp.pad(pos, ((0, gpad), (0, 0), (0, 0)))
  tg, bits = tile_groups, index_bits(m)
  q, ww = max(1, tg // _WORD), min(_WORD, tg)
  vals = vals.reshape(tiles, tg, n, cols).transpose(0, 2, 1, 3)
  values = vals.reshape(tiles * n * tg, cols)
  # pos[t, s, p*Q + w] -> bit planes words[t, s, b, w] with bit p.
  pos = pos.reshape(tiles, tg, n, cols).transpose(0, 2, 1, 3)
  pos = pos.reshape(tiles, n, 1, ww, q, cols)
  b = jnp.arange(bits, dtype=jnp.uint32).reshape(1, 1, bits, 1, 1, 1)
  p = jnp.arange(ww, dtype=jnp.uint32).reshape(1, 1, 1, ww, 1, 1)
  planes = (((pos >> b) & 1) << p).sum(axis=3, dtype=jnp.uint32)
  indices = planes.reshape(tiles * n * bits * q, cols).astype(_word_dtype(tg))
  return NMCompressed(values=values, indices=indices, n=n, m=m,
                      shape=(k, cols), tile_groups=tg)


@jax.jit
def unpack_positions(c: NMCompressed) -> jax.Array:
  """In-group positions as ``(num_tiles, n, tile_groups, N)`` int32.

  >>> w = jnp.ones((4, 1)); mask = jnp.array([[0], [1], [0], [0]], bool)
  >>> unpack_positions(compress_nm(w, mask, 1, 4))[0, 0, :2, 0]
  Array([1, 0], dtype=int32)
  """
  t, n, bits, q = c.num_tiles, c.n, c.bits, c.words_per_plane
  ww = c.bits_per_word
  words = c.indices.astype(jnp.uint32).reshape(t, n, bits, 1, q, -1)
  b = jnp.arange(bits, dtype=jnp.uint32).reshape(1, 1, bits, 1, 1, 1)
  p = jnp.arange(ww, dtype=jnp.uint32).reshape(1, 1, 1, ww, 1, 1)
  pos = (((words >> p) & 1) << b).sum(axis=2, dtype=jnp.uint32)
  return pos.reshape(t, n, c.tile_groups, -1).astype(jnp.int32)


@jax.jit
def decompress_nm(c: NMCompressed) -> jax.Array:
  """Expands an :class:`NMCompressed` to the dense masked ``(K, N)`` matrix.

  >>> w = jnp.array([[1.0], [2.0], [3.0], [4.0]])
  >>> mask = jnp.array([[0], [1], [0], [1]], bool)
  >>> decompress_nm(compress_nm(w, mask, 2, 4))[:, 0]
  Array([0., 2., 0., 4.], dtype=float32)
  """
  pos = unpack_positions(c)  # (T, n, tg, N)
  vals = c.values.reshape(c.num_tiles, c.n, c.tile_groups, -1)
  dense = jnp.stack(
      [jnp.where(pos == j, vals, jnp.zeros((), vals.dtype)).sum(axis=1)
       for j in range(c.m)], axis=2)  # (T, tg, m, N)
  dense = dense.reshape(c.num_tiles * c.tile_groups * c.m, -1)
  return dense[:c.shape[0]].astype(c.values.dtype)


def nm_values_like(c: NMCompressed, dense) -> jax.Array:
  """Gathers ``dense`` at the kept positions of ``c``, in ``c.values`` layout.

  Used to map a dense gradient onto the compressed values.

  >>> w = jnp.array([[1.0], [2.0], [3.0], [4.0]])
  >>> c = compress_nm(w, jnp.array([[0], [1], [0], [1]], bool), 2, 4)
  >>> nm_values_like(c, 10 * w)[jnp.array([0, 16]), 0]
  Array([20., 40.], dtype=float32)
  """
  return _nm_values_like(c, dense_matching(dense, c))


@jax.jit
def _nm_values_like(c, dense):
  k, cols = c.shape
  pad = c.num_tiles * c.tile_groups * c.m - k
  dg = jnp.pad(dense, ((0, pad), (0, 0)))
  dg = dg.reshape(c.num_tiles, 1, c.tile_groups, c.m, cols)
  pos = unpack_positions(c)[:, :, :, None, :]
  out = jnp.take_along_axis(
      jnp.broadcast_to(dg, (c.num_tiles, c.n, c.tile_groups, c.m, cols)),
      pos, axis=3)[:, :, :, 0, :]
  # Padded groups are not part of the matrix.
  g = jnp.arange(c.num_tiles * c.tile_groups).reshape(c.num_tiles, 1, -1, 1)
  out = jnp.where(g < c.groups, out, jnp.zeros((), out.dtype))
  return out.reshape(c.values.shape).astype(dense.dtype)
