"""Export to compressed formats, and serve a Flax model on the kernels.

`export(params, masks, rules)` replaces every 2-D kernel whose rule gives an
N:M pattern along axis 0 with an `NMCompressed`, and every 2-D kernel with a
block pattern with a column-major padded block-sparse matrix, wherever the
compressed form is smaller than the dense one (`report=True` says, per leaf,
what was chosen and why). Other leaves stay as they are. The result is a
pytree: it jits, shards and checkpoints.

`serving()` (from `sparsejax.flax`) is a context in which every Linen
`nn.Dense` and NNX `nnx.Linear` whose kernel is compressed runs through
`pallas_kernels` (`nm_matmul`, `block_sparse_matmul`, which choose a Pallas
kernel only where one was measured faster than dense), so the same model code
serves the exported params::

    exported = sj.deploy.export(params, masks, rules)
    with sj.flax.serving():
      logits = model.apply({"params": exported}, tokens)
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import formats
from sparsejax import _checks
from sparsejax import masks as masks_lib
from sparsejax import rules as rules_lib
from sparsejax.flax.compressed import serving  # noqa: F401  (re-export)

COMPRESSED = (formats.NMCompressed, formats.BSR, formats.PaddedBlockSparse)


class ExportRow(NamedTuple):
  """What `export` did with one leaf.

  `format` is `"dense"` or the compressed format (`"nm 2:4"`,
  `"padded block 16x32"`, `"bsr 16x32"`); `compressed_bytes` is the size of the compressed arrays
  when a compression was tried (None otherwise).
  """
  path: str
  format: str
  dense_bytes: int
  compressed_bytes: int | None
  reason: str


def _is_compressed(x):
  return isinstance(x, COMPRESSED)


def _dtype(w):
  return w.values.dtype if _is_compressed(w) else jnp.result_type(w)


def _dense_bytes(w):
  return int(np.prod(jnp.shape(w) if not _is_compressed(w) else w.shape)
             ) * jnp.dtype(_dtype(w)).itemsize


def _format_name(c):
  if isinstance(c, formats.NMCompressed):
    return f"nm {c.n}:{c.m}"
  kind = "bsr" if isinstance(c, formats.BSR) else "padded block"
  return f"{kind} {c.block_shape[0]}x{c.block_shape[1]}"


def _block_grid(path, mask, block):
  """The block mask of an element mask; errors if blocks are partly kept."""
  bh, bw = block
  mk = np.asarray(mask).astype(bool)
  if mk.shape[0] % bh or mk.shape[1] % bw:
    raise ValueError(f"mask at {path!r} has shape {mk.shape}, which the block "
                     f"{bh}x{bw} does not tile.")
  tiles = mk.reshape(mk.shape[0] // bh, bh, mk.shape[1] // bw, bw)
  grid = tiles.any(axis=(1, 3))
  partial = np.argwhere(grid & ~tiles.all(axis=(1, 3)))
  if partial.size:
    i, j = (int(v) for v in partial[0])
    raise ValueError(
        f"mask at {path!r} does not fit the rule's pattern block {bh}x{bw}: "
        f"block ({i}, {j}) (rows {i * bh}:{(i + 1) * bh}, cols "
        f"{j * bw}:{(j + 1) * bw}) is only partly kept.")
  return grid


def _check_existing(path, c, pattern):
  """A leaf that is already compressed must match its rule's pattern."""
  if isinstance(c, formats.NMCompressed):
    ok = (pattern is not None and pattern.is_nm and not pattern.transposable
          and (pattern.n, pattern.m) == (c.n, c.m)
          and pattern.group_axis(2, path) == 0)
  else:
    ok = pattern is not None and pattern.is_block and tuple(
        pattern.block) == tuple(c.block_shape)
  if not ok:
    raise ValueError(
        f"param at {path!r} is already compressed as {_format_name(c)}, but "
        f"its rule gives {'no pattern' if pattern is None else pattern}; "
        "decompress it (pallas_kernels.formats.decompress) or change the rule.")


def _compress(path, w, mask, pattern):
  """The compressed leaf for a pattern with a format, or `(None, reason)`."""
  if pattern.is_nm:
    if pattern.transposable:
      return None, "transposable N:M has no compressed format"
    if pattern.group_axis(2, path) != 0:
      return None, ("N:M groups run along axis 1; the format compresses "
                    "along axis 0 (the contraction axis)")
    formats.validate_nm_mask(mask, pattern.n, pattern.m,
                             axis_name=f"mask at {path!r}")
    return formats.compress_nm(w, mask, pattern.n, pattern.m,
                               validate=False), "compressed"
  if pattern.is_block:
    block = tuple(pattern.block)
    grid = _block_grid(path, mask, block)
    padded = formats.compress_padded_block(w, grid, block, major="col")
    if storage_bytes(padded) < _dense_bytes(w):
      return padded, "compressed (padded: static grid)"
    bsr = formats.compress_bsr(w, grid, block, major="col")
    return bsr, (f"compressed (BSR: the padded form takes "
                 f"{storage_bytes(padded)} bytes)")
  return None, f"pattern {pattern} has no compressed format"


def _export_leaf(path, w, mask, pattern):
  """Returns `(leaf, ExportRow)`: the compressed leaf only if it is smaller."""
  dense = _dense_bytes(w)
  if _is_compressed(w):
    _check_existing(path, w, pattern)
    size = storage_bytes(w)
    if size >= dense:
      return formats.decompress(w), ExportRow(
          path, "dense", dense, size, f"already compressed, but {size} bytes "
          f">= {dense} dense: expanded")
    return w, ExportRow(path, _format_name(w), dense, size,
                        "already compressed")
  if pattern is None:
    return w, ExportRow(path, "dense", dense, None, "no rule")
  if masks_lib.is_dense(mask):
    return w, ExportRow(path, "dense", dense, None, "mask is dense")
  if jnp.ndim(w) != 2:
    return w, ExportRow(path, "dense", dense, None,
                        f"{jnp.ndim(w)}-D leaf (formats are 2-D)")
  compressed, reason = _compress(path, w, mask, pattern)
  if compressed is None:
    return w, ExportRow(path, "dense", dense, None, reason)
  size = storage_bytes(compressed)
  if size >= dense:
    return w, ExportRow(path, "dense", dense, size,
                        f"{_format_name(compressed)} would take {size} bytes "
                        f">= {dense} dense")
  return compressed, ExportRow(path, _format_name(compressed), dense, size,
                               reason)


def export(params, masks, rules, *, report: bool = False):
  """Compresses the targeted kernels (host-side; masks must be concrete).

  A leaf becomes compressed only where its compressed form is smaller than
  the dense one (sizes from the actual arrays): exporting never grows a
  model. Block patterns use the padded format (a static grid for the
  kernels) where it is smaller, else BSR. Leaves already compressed are kept
  if they match their rule.

  Args:
    params: the params (e.g. `sparsifier.sparse_params(params, state)`).
    masks: the masks that produced them.
    rules: the rules (their patterns choose the format).
    report: also return one `ExportRow` per leaf (path, format chosen or
      "dense", dense bytes, compressed bytes, reason).

  Returns:
    A pytree like `params` with compressed leaves where a format applies and
    pays; with `report=True`, `(exported, rows)`.

  Raises:
    ValueError: naming the layer, when a mask does not fit its rule's pattern
      (an N:M group keeping another count, a partly kept block) or a leaf is
      already compressed with another pattern than its rule's.

  >>> import sparsejax as sj
  >>> params = {"fc": {"kernel": jnp.arange(1024.).reshape(128, 8)},
  ...           "tiny": {"kernel": jnp.ones((4, 2))}}
  >>> masks = sj.compute_masks(params, sj.NM(2, 4))
  >>> out, rows = export(params, masks, sj.NM(2, 4), report=True)
  >>> type(out["fc"]["kernel"]).__name__, type(out["tiny"]["kernel"]).__name__
  ('NMCompressed', 'ArrayImpl')
  >>> [(r.path, r.format) for r in rows]
  [('fc/kernel', 'nm 2:4'), ('tiny/kernel', 'dense')]
  >>> bad = {"fc": {"kernel": jnp.ones((128, 8), bool)}, "tiny": masks["tiny"]}
  >>> export(params, bad, sj.NM(2, 4))
  Traceback (most recent call last):
  ...
  ValueError: mask at 'fc/kernel' is not 2:4 along axis 0: group 0 (rows 0:4) of column 0 keeps 4 entries, expected exactly 2.
  """
  if not isinstance(report, (bool, np.bool_)):
    raise _checks.ParamTypeError(f"report must be a bool; got {report!r}.")
  rules = rules_lib.as_rules(rules)
  shadow = jax.tree.map(
      lambda x: np.broadcast_to(np.zeros((), _dtype(x)), x.shape)
      if _is_compressed(x) else x, params, is_leaf=_is_compressed)
  masks_lib.check_masks(shadow, masks)
  assignment = rules_lib.assign(shadow, rules)
  named_masks = dict(rules_lib.named_leaves(masks))
  rows = []

  def one(keypath, w):
    path = rules_lib.path_str(keypath)
    rule = assignment[path]
    leaf, row = _export_leaf(path, w, named_masks[path],
                             rule.pattern if rule is not None else None)
    rows.append(row)
    return leaf

  exported = jax.tree_util.tree_map_with_path(one, params,
                                              is_leaf=_is_compressed)
  return (exported, rows) if report else exported


def storage_bytes(tree):
  """Bytes of every array in a (possibly exported) params tree.

  >>> storage_bytes({"w": jnp.zeros((4, 4))})
  64
  """
  return sum(int(x.nbytes) for x in jax.tree.leaves(tree)
             if hasattr(x, "nbytes"))
