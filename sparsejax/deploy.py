"""Export to compressed formats, and serve a Flax Linen model on the kernels.

`export(params, masks, rules)` replaces every 2-D kernel whose rule gives an
N:M pattern along axis 0 with an `NMCompressed`, and every 2-D kernel with a
block pattern with a column-major padded block-sparse matrix. Other leaves
stay as they are. The result is a pytree: it jits, shards and checkpoints.

`serving()` is a context in which every Linen `nn.Dense` whose kernel is
compressed runs through `pallas_kernels` (`nm_matmul`, `block_sparse_matmul`,
which pick a Pallas kernel or the XLA fallback by backend and batch), so the
same model code serves the exported params:

    exported = sj.export(params, masks, rules)
    with sj.serving():
      logits = model.apply({"params": exported}, tokens)
"""

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import formats
from sparsejax import masks as masks_lib
from sparsejax import patterns as patterns_lib
from sparsejax import rules as rules_lib
from sparsejax.flax.compressed import serving  # noqa: F401  (re-export)

COMPRESSED = (formats.NMCompressed, formats.BSR, formats.PaddedBlockSparse)


def _export_leaf(path, w, mask, pattern):
  if masks_lib.is_dense(mask) or pattern is None or jnp.ndim(w) != 2:
    return w
  if isinstance(pattern, patterns_lib.NM) and not pattern.transposable and (
      pattern.group_axis(2, path) == 0):
    return formats.compress_nm(w, mask, pattern.n, pattern.m)
  if isinstance(pattern, patterns_lib.Block):
    bh, bw = pattern.block
    grid = np.asarray(mask).reshape(w.shape[0] // bh, bh, w.shape[1] // bw,
                                    bw).any(axis=(1, 3))
    return formats.compress_padded_block(w, grid, pattern.block, major="col")
  return w


def export(params, masks, rules):
  """Compresses the targeted kernels (host-side; masks must be concrete).

  Args:
    params: the params (e.g. `sparsifier.sparse_params(params, state)`).
    masks: the masks that produced them.
    rules: the rules (their patterns choose the format).

  Returns:
    A pytree like `params` with compressed leaves where a format applies.

  >>> import sparsejax as sj
  >>> params = {"fc": {"kernel": jnp.arange(32.).reshape(8, 4)}}
  >>> masks = sj.compute_masks(params, sj.NM(2, 4))
  >>> type(export(params, masks, sj.NM(2, 4))["fc"]["kernel"]).__name__
  'NMCompressed'
  """
  masks_lib.check_masks(params, masks)
  assignment = rules_lib.assign(params, rules)
  named_masks = dict(rules_lib.named_leaves(masks))

  def one(keypath, w):
    path = rules_lib.path_str(keypath)
    rule = assignment[path]
    return _export_leaf(path, w, named_masks[path],
                        rule.pattern if rule is not None else None)

  return jax.tree_util.tree_map_with_path(one, params)


def storage_bytes(tree):
  """Bytes of every array in a (possibly exported) params tree.

  >>> storage_bytes({"w": jnp.zeros((4, 4))})
  64
  """
  return sum(x.nbytes for x in jax.tree.leaves(tree) if hasattr(x, "nbytes"))
