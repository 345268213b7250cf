"""Sparsity patterns: which entries of a tensor a mask keeps.

A pattern is a frozen dataclass with one job: `pattern.mask(scores)` returns a
bool array of the scores' shape that keeps the highest-scoring entries under
the pattern's structure. Masks hold their exact counts even when scores tie
(ties go to the lower index).

Non-finite scores: NaN ranks below every number (-inf included), so a mask
never keeps a NaN over a finite entry; +inf ranks above every number (an
infinite magnitude is the largest). Counts stay exact, so a NaN is kept only
where its group has too few numbers to fill the count (a 2:4 group with three
NaNs keeps its number and one NaN); `compute_masks(on_nonfinite=...)` names
such leaves.

Arguments are checked where they enter: counts, axes and flags at
construction, a sparsity at construction when concrete and, when traced
(a schedule's output under `jit`), when the mask is computed, naming the leaf.

Patterns rank the scores they are given; pass `jnp.abs(w)` (or any score from
`sparsejax.scores`) to prune by magnitude.

Axis convention: Flax stores a Dense kernel as `(in, out)` and a Conv kernel as
`(h, w, in, out)`. N:M groups run along the *input* (contraction) axis: axis 0
of a 2-D kernel and axis -2 of a convolution kernel.
"""

import dataclasses
import functools
import itertools
from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import _checks
from sparsejax import _ranking


def check_float(dtype: Any, path: str = "") -> None:
  """Raises a TypeError unless `dtype` is a floating-point dtype.

  >>> check_float(jnp.int32, "w")
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: scores must be floating-point at 'w'; got dtype int32. Sparsity patterns rank floating-point scores: integer and bool leaves cannot be pruned by score.
  """
  _checks.check_floating(
      dtype, "scores", path, " Sparsity patterns rank floating-point scores: "
      "integer and bool leaves cannot be pruned by score.")


def kept_count(size: int, sparsity: Any) -> jax.Array:
  """Entries kept out of `size`: `size - floor(sparsity * size)`.

  >>> int(kept_count(10, 0.75))
  3
  """
  pruned = jnp.floor(jnp.asarray(sparsity, jnp.float32) * size)
  return (size - pruned).astype(jnp.int32)


class Pattern:
  """Base class of every pattern: `mask(scores, path="") -> bool array`."""

  def check(self, shape: Sequence[int], dtype: Any = jnp.float32,
            path: str = "") -> None:
    """Raises a clear error if this pattern cannot apply to a leaf."""
    raise NotImplementedError

  def mask(self, scores: jax.Array, path: str = "") -> jax.Array:
    """The bool mask of `scores` (its shape) that this pattern keeps."""
    raise NotImplementedError

  @property
  def density(self) -> float | None:
    """Fraction of entries the pattern keeps (None when it varies by leaf)."""
    return None

  @property
  def name(self) -> str:
    """A short label of the structure, without any per-leaf sparsity."""
    return str(self)

  @property
  def is_nm(self) -> bool:
    """Whether the pattern keeps `n` of every `m` entries (N:M)."""
    return False

  @property
  def is_unstructured(self) -> bool:
    """Whether the pattern keeps the top entries one by one (no structure)."""
    return False

  @property
  def is_block(self) -> bool:
    """Whether the pattern keeps whole `block`-shaped tiles."""
    return False

  @property
  def has_sparsity(self) -> bool:
    """Whether the pattern has a sparsity fraction `with_sparsity` can set."""
    return False

  def with_sparsity(self, sparsity: Any, path: str = "") -> "Pattern":
    """This pattern at another sparsity (per-layer distributions, schedules).

    `path` names the leaf in errors.

    >>> Unstructured(0.5).with_sparsity(0.9)
    Unstructured(sparsity=0.9, per_output=False)
    >>> Unstructured(0.5).with_sparsity(1.2, "fc/kernel")
    Traceback (most recent call last):
    ...
    ValueError: Unstructured.sparsity at 'fc/kernel' must be in [0, 1); got 1.2.
    """
    if not self.has_sparsity:
      raise ValueError(f"pattern {self} has a fixed density; a per-layer "
                       "sparsity cannot be assigned to it"
                       f"{_checks.where(path)}.")
    _checks.check_fraction(sparsity, f"{type(self).__name__}.sparsity",
                           path=path, traced=False)
    return dataclasses.replace(self, sparsity=sparsity)


class FractionPattern(Pattern):
  """A pattern that prunes a `sparsity` fraction of its units.

  Subclasses are dataclasses with a `sparsity` field and a `name`.

  >>> Channel(0.25).density, Channel(0.25).has_sparsity, str(Channel(0.25))
  (0.75, True, 'channel axis -1 25%')
  """

  sparsity: float

  def check_sparsity(self, path: str = "") -> Any:
    """The sparsity, checked: a traced one when the compiled call runs.

    A concrete sparsity was checked at construction; a traced one (a
    schedule's output) is checked here, where the leaf is known.
    """
    return _checks.check_fraction(
        self.sparsity, f"{type(self).__name__}.sparsity", path=path)

  def kept(self, size: int, path: str = "") -> jax.Array:
    """Units kept out of `size` at this pattern's (checked) sparsity."""
    return kept_count(size, self.check_sparsity(path))

  @property
  def density(self) -> float:
    return 1.0 - self.sparsity

  @property
  def has_sparsity(self) -> bool:
    return True

  def __str__(self) -> str:
    return f"{self.name} {float(self.sparsity):.0%}"


@dataclasses.dataclass(frozen=True)
class NM(Pattern):
  """Keeps the `n` largest of every `m` consecutive entries along `axis`.

  Args:
    n: entries kept per group, 1 <= n <= m.
    m: group size.
    axis: the group axis. `None` means the contraction axis: 0 for a 2-D Dense
      kernel `(in, out)`, -2 for a convolution kernel `(..., in, out)` of 3 to 5
      dims. Anything else must name its axis.
    transposable: also hold n:m along the other matrix axis (the last two axes
      are tiled m x m; the best of the valid tile patterns is kept). Requires
      m <= 4.

  References:
    * Mishra, A., Albericio Latorre, J., Pool, J., Stosic, D., Stosic, D.,
      Venkatesh, G., Yu, C. and Micikevicius, P. "Accelerating Sparse Deep
      Neural Networks." arXiv:2104.08378, 2021.

  >>> w = jnp.array([[1., -4.], [3., 2.], [-2., 1.], [0.5, 3.]])
  >>> NM(2, 4).mask(jnp.abs(w)).astype(int)
  Array([[0, 1],
         [1, 0],
         [1, 0],
         [0, 1]], dtype=int32)
  """

  n: int
  m: int
  axis: int | None = None
  transposable: bool = False

  def __post_init__(self) -> None:
    _checks.check_nm(self.n, self.m, "NM")
    _checks.check_axis(self.axis, "NM.axis", optional=True)
    _checks.check_bool(self.transposable, "NM.transposable")
    if self.transposable and self.m > 4:
      raise ValueError(
          f"transposable N:M is supported for m <= 4; got {self.n}:{self.m}.")

  @property
  def density(self) -> float:
    return self.n / self.m

  @property
  def is_nm(self) -> bool:
    return True

  def __str__(self):
    return f"{self.n}:{self.m}" + (" transposable" if self.transposable else "")

  def group_axis(self, ndim: int, path: str = "") -> int:
    """The axis groups run along for a leaf with `ndim` dimensions."""
    if self.axis is not None:
      if not -ndim <= self.axis < ndim:
        raise ValueError(f"N:M axis {self.axis} is out of range for a {ndim}-D "
                         f"leaf{_checks.where(path)}.")
      return self.axis % ndim
    if ndim == 2:
      return 0
    if 3 <= ndim <= 5:
      return ndim - 2
    raise ValueError(
        f"N:M needs an explicit axis for a {ndim}-D leaf{_checks.where(path)}: the "
        "contraction axis is only implied for 2-D Dense kernels (axis 0) and "
        "3-5-D convolution kernels (axis -2). Pass NM(n, m, axis=...).")

  def check(self, shape: Sequence[int], dtype: Any = jnp.float32,
            path: str = "") -> None:
    check_float(dtype, path)
    axis = self.group_axis(len(shape), path)
    if shape[axis] % self.m:
      raise ValueError(
          f"N:M {self.n}:{self.m}{_checks.where(path)}: group axis {axis} has length "
          f"{shape[axis]}, which is not divisible by m={self.m} (shape "
          f"{tuple(shape)}).")
    if self.transposable:
      if len(shape) < 2:
        raise ValueError(f"transposable N:M needs a matrix{_checks.where(path)}.")
      other = len(shape) - 1 if axis == len(shape) - 2 else len(shape) - 2
      if axis not in (len(shape) - 2, len(shape) - 1) or shape[other] % self.m:
        raise ValueError(
            f"transposable {self.n}:{self.m}{_checks.where(path)} tiles the last two "
            f"axes by {self.m}x{self.m}; shape {tuple(shape)} does not fit.")

  def mask(self, scores: jax.Array, path: str = "") -> jax.Array:
    self.check(scores.shape, scores.dtype, path)
    if self.transposable:
      return _transposable_mask(scores, self.n, self.m)
    axis = self.group_axis(scores.ndim, path)
    return _ranking.keep_top_n_in_groups(scores, self.n, axis, self.m)


@functools.lru_cache(maxsize=None)
def transposable_tiles(n: int, m: int) -> np.ndarray:
  """All m x m 0/1 tiles with exactly n ones in every row and column.

  >>> transposable_tiles(2, 4).shape
  (90, 16)
  """
  rows = [r for r in itertools.product((0, 1), repeat=m) if sum(r) == n]
  tiles = [t for t in itertools.product(rows, repeat=m)
           if all(sum(col) == n for col in zip(*t))]
  return np.array(tiles, np.float32).reshape(len(tiles), m * m)


def _transposable_mask(scores, n, m):
  """Best valid m x m tile per tile of the last two axes (max kept score)."""
  *lead, rows, cols = scores.shape
  finite = jnp.nan_to_num(
      _ranking.finite_first(scores.astype(jnp.float32)),
      posinf=jnp.finfo(jnp.float32).max / 64,
      neginf=jnp.finfo(jnp.float32).min / 64)
  tiles = finite.reshape(*lead, rows // m, m, cols // m, m)
  tiles = jnp.moveaxis(tiles, -3, -2).reshape(*lead, rows // m, cols // m,
                                              m * m)
  patterns = jnp.asarray(transposable_tiles(n, m))
  best = jnp.argmax(tiles @ patterns.T, axis=-1)
  chosen = patterns[best].reshape(*lead, rows // m, cols // m, m, m)
  return jnp.moveaxis(chosen, -2, -3).reshape(scores.shape) > 0


@dataclasses.dataclass(frozen=True)
class Unstructured(FractionPattern):
  """Keeps the top `(1 - sparsity)` fraction of scores.

  Exactly `floor(sparsity * size)` entries are pruned per comparison group.

  Args:
    sparsity: fraction pruned, in [0, 1). May be a traced scalar (a schedule)
      when the pattern is built inside a jitted function.
    per_output: compare within each output unit (the last axis: a column of a
      Dense kernel, an output channel of a Conv kernel), as Wanda does,
      instead of across the whole tensor.

  >>> Unstructured(0.5).mask(jnp.array([3., 1., 4., 1.])).astype(int)
  Array([1, 0, 1, 0], dtype=int32)
  """

  sparsity: float
  per_output: bool = False

  def __post_init__(self) -> None:
    _checks.check_fraction(self.sparsity, "Unstructured.sparsity",
                           traced=False)
    _checks.check_bool(self.per_output, "Unstructured.per_output")

  @property
  def is_unstructured(self) -> bool:
    return True

  @property
  def name(self) -> str:
    return "unstructured" + (" per output" if self.per_output else "")

  def check(self, shape: Sequence[int], dtype: Any = jnp.float32,
            path: str = "") -> None:
    check_float(dtype, path)
    if self.per_output and len(shape) < 2:
      raise ValueError(f"per-output unstructured sparsity needs at least 2 "
                       f"dims{_checks.where(path)}; got shape {tuple(shape)}.")

  def mask(self, scores: jax.Array, path: str = "") -> jax.Array:
    self.check(scores.shape, scores.dtype, path)
    if self.per_output:
      rows = scores.reshape(-1, scores.shape[-1]).T
      keep = _ranking.keep_top_k(rows, self.kept(rows.shape[1], path))
      return keep.T.reshape(scores.shape)
    rows = scores.reshape(1, -1)
    keep = _ranking.keep_top_k(rows, self.kept(rows.shape[1], path))
    return keep.reshape(scores.shape)


@dataclasses.dataclass(frozen=True)
class Block(FractionPattern):
  """Keeps the top `(1 - sparsity)` fraction of (bh, bw) blocks.

  Blocks tile the last two axes; a block's score pools the scores inside it
  (mean by default, or max). Leading axes (a convolution's spatial dims) are
  part of the tensor: the top blocks are chosen across all of them.

  Args:
    block: (bh, bw) block shape; must divide the last two dims.
    sparsity: fraction of blocks pruned, in [0, 1).
    pool: "mean" or "max".

  >>> s = jnp.array([[1., 1., 9., 9.], [1., 1., 9., 9.]])
  >>> Block((2, 2), 0.5).mask(s).astype(int)
  Array([[0, 0, 1, 1],
         [0, 0, 1, 1]], dtype=int32)
  """

  block: tuple[int, int]
  sparsity: float
  pool: Literal["mean", "max"] = "mean"

  def __post_init__(self) -> None:
    try:
      block = tuple(self.block)
    except TypeError:
      block = ()
    if len(block) != 2 or not all(_checks.is_int(b) and b >= 1 for b in block):
      raise _checks.ParamTypeError(f"Block.block must be two positive ints (bh, bw); "
                           f"got {self.block!r}.")
    object.__setattr__(self, "block", tuple(int(b) for b in block))
    _checks.check_fraction(self.sparsity, "Block.sparsity", traced=False)
    _checks.check_choice(self.pool, "Block.pool", ("mean", "max"))

  @property
  def is_block(self) -> bool:
    return True

  @property
  def name(self) -> str:
    return f"block {self.block[0]}x{self.block[1]}"

  def check(self, shape: Sequence[int], dtype: Any = jnp.float32,
            path: str = "") -> None:
    check_float(dtype, path)
    if len(shape) < 2:
      raise ValueError(f"block sparsity needs at least 2 dims{_checks.where(path)}; "
                       f"got shape {tuple(shape)}.")
    bh, bw = self.block
    if bh > shape[-2] or bw > shape[-1] or shape[-2] % bh or shape[-1] % bw:
      raise ValueError(
          f"block {bh}x{bw}{_checks.where(path)} must divide the last two dims of "
          f"shape {tuple(shape)} (no padding is applied).")

  def block_scores(self, scores: jax.Array) -> jax.Array:
    """Pooled score of every block: shape (..., rows/bh, cols/bw)."""
    *lead, rows, cols = scores.shape
    bh, bw = self.block
    tiles = _ranking.finite_first(scores.astype(jnp.float32)).reshape(
        *lead, rows // bh, bh, cols // bw, bw)
    pool = jnp.mean if self.pool == "mean" else jnp.max
    return pool(tiles, axis=(-3, -1))

  def mask(self, scores: jax.Array, path: str = "") -> jax.Array:
    self.check(scores.shape, scores.dtype, path)
    pooled = self.block_scores(scores)
    rows = pooled.reshape(1, -1)
    keep = _ranking.keep_top_k(rows, self.kept(rows.shape[1], path))
    keep = keep.reshape(pooled.shape)
    bh, bw = self.block
    return jnp.repeat(jnp.repeat(keep, bh, axis=-2), bw, axis=-1)


@dataclasses.dataclass(frozen=True)
class Channel(FractionPattern):
  """Keeps whole channels: the top `(1 - sparsity)` slices along `axis`.

  A channel's score is the mean of the scores in its slice. `axis=-1` prunes
  output units (columns of a Dense kernel, output channels of a Conv kernel);
  `axis=-2` prunes input channels.

  >>> s = jnp.array([[1., 5.], [1., 5.], [1., 5.]])
  >>> Channel(0.5, axis=-1).mask(s).astype(int)
  Array([[0, 1],
         [0, 1],
         [0, 1]], dtype=int32)
  """

  sparsity: float
  axis: int = -1

  def __post_init__(self) -> None:
    _checks.check_fraction(self.sparsity, "Channel.sparsity", traced=False)
    _checks.check_axis(self.axis, "Channel.axis")

  @property
  def name(self) -> str:
    return f"channel axis {self.axis}"

  def check(self, shape: Sequence[int], dtype: Any = jnp.float32,
            path: str = "") -> None:
    check_float(dtype, path)
    if not -len(shape) <= self.axis < len(shape):
      raise ValueError(f"channel axis {self.axis} is out of range for shape "
                       f"{tuple(shape)}{_checks.where(path)}.")

  def mask(self, scores: jax.Array, path: str = "") -> jax.Array:
    self.check(scores.shape, scores.dtype, path)
    axis = self.axis % scores.ndim
    others = tuple(a for a in range(scores.ndim) if a != axis)
    pooled = jnp.mean(_ranking.finite_first(scores.astype(jnp.float32)),
                      axis=others)
    keep = _ranking.keep_top_k(pooled[None], self.kept(pooled.size, path))[0]
    shape = [1] * scores.ndim
    shape[axis] = scores.shape[axis]
    return jnp.broadcast_to(keep.reshape(shape), scores.shape)


def with_sparsity(pattern: Pattern, sparsity: Any, path: str = "") -> Pattern:
  """Returns `pattern` with its sparsity replaced (for per-layer distributions).

  >>> with_sparsity(Unstructured(0.5), 0.9)
  Unstructured(sparsity=0.9, per_output=False)
  """
  return pattern.with_sparsity(sparsity, path)
