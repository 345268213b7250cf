"""The exported weights of a run: ``sparsejax.deploy.export``, written to files.

The compression itself is :func:`sparsejax.deploy.export` (N:M leaves to
``NMCompressed``, block leaves to a padded block-sparse matrix); this module
gathers the arrays to the host and writes what it returns:

* ``weights.npz``: ``PATH::values`` and ``PATH::indices`` of N:M leaves
  (``PATH::counts`` too for block leaves), ``PATH`` of the others (masked
  leaves as ``W * mask``);
* ``masks_packed.npz``: every mask bit-packed along its last axis
  (``PATH::mask_bits``, :func:`sparsejax.pack_masks`);
* ``manifest.json``: each leaf's format, shape, dtype, N:M or block shape and
  sparsity, and the bytes stored against the dense bytes.

A leaf whose mask does not hold its rule's exact N:M (or whose ``m`` is
above 16, the largest group the compressed format stores) is written masked
dense. Only process 0 writes.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

import jax
import numpy as np

import sparsejax as sj
from pallas_kernels import formats
from sparsejax import masks as masks_lib
from sparsejax import rules as rules_lib
from sparsejax import summary as summary_lib
from sparsejax.pretrain import metrics as metrics_lib
from sparsejax.pretrain import paths

__all__ = ["to_host", "export_weights"]

_MAX_M = 16
_FORMAT_NOTE = (
    "nm_compressed leaves: pallas_kernels.formats.NMCompressed(values, "
    "indices, n, m, shape, tile_groups); rebuild with "
    "pallas_kernels.formats.decompress_nm. block_padded leaves: "
    "pallas_kernels.formats.PaddedBlockSparse(values, indices, counts, shape, "
    "block_shape, major). masked_dense: W*mask stored dense. mask_bits: "
    "sparsejax.packing.PackedMask bits along the last axis.")


def to_host(tree: Any) -> Any:
  """Numpy copies of a tree of (possibly multi-process sharded) arrays.

  Args:
    tree: A pytree of ``jax.Array``.

  Returns:
    The same tree of ``np.ndarray`` (gathered from every process).

  Example:
    >>> to_host({"w": jnp.ones(2)})["w"]
    array([1., 1.], dtype=float32)
  """
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  from jax.experimental import multihost_utils

  def one(x):
    # A global array spans processes: gather it. Anything this process holds
    # whole (host values, the 0-d masks of dense leaves) is already global.
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)

  return jax.tree.map(one, tree)


def _holds_exact_nm(pattern: Any, mask: np.ndarray, path: str) -> bool:
  axis = pattern.group_axis(mask.ndim, path)
  return summary_lib.nm_reached(mask, pattern.m, axis) == (
      f"{pattern.n}:{pattern.m}")


def _export_rules(params: Any, masks: Any, rules: list[sj.Rule]
                  ) -> list[sj.Rule]:
  """``rules`` after a keep-as-is rule per N:M leaf the format cannot hold."""
  assignment = rules_lib.assign(params, rules)
  as_is = []
  for path, _, m in masks_lib.named_pairs(params, masks):
    rule = assignment.get(path)
    pattern = rule.pattern if rule is not None else None
    if (isinstance(pattern, sj.NM) and not masks_lib.is_dense(m) and
        (pattern.m > _MAX_M or not _holds_exact_nm(pattern, m, path))):
      as_is.append(sj.Rule(re.escape(path), None, min_ndim=0, exclude=None))
  return as_is + list(rules)


def _leaves_of_type(tree: Any, types: Any) -> dict[str, Any]:
  """``{path: leaf}`` of the leaves of ``tree`` that are ``types`` instances."""
  is_type = lambda x: isinstance(x, types)
  flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_type)
  return {rules_lib.path_str(k): leaf for k, leaf in flat if is_type(leaf)}


def _store(path: str, leaf: Any, arrays: dict[str, np.ndarray]
           ) -> tuple[dict[str, Any], int]:
  if isinstance(leaf, formats.NMCompressed):
    arrays[path + "::values"] = np.asarray(leaf.values)
    arrays[path + "::indices"] = np.asarray(leaf.indices)
    return ({"format": "nm_compressed", "n": leaf.n, "m": leaf.m,
             "tile_groups": leaf.tile_groups}, int(leaf.nbytes()))
  for name in ("values", "indices", "counts"):
    arrays[f"{path}::{name}"] = np.asarray(getattr(leaf, name))
  stored = sum(arrays[f"{path}::{n}"].nbytes
               for n in ("values", "indices", "counts"))
  return ({"format": "block_padded", "block_shape": list(leaf.block_shape),
           "major": leaf.major}, int(stored))


def export_weights(params: Any, masks: Any, rules: list[sj.Rule],
                   directory: str | os.PathLike) -> dict[str, Any]:
  """Exports sparse weights with :func:`sparsejax.deploy.export` and writes them.

  Args:
    params: Exactly sparse params (the hard mask applied).
    masks: The masks (dense leaves hold a 0-d ``True``).
    rules: The sparsity rules (each leaf's pattern chooses its format).
    directory: Output folder (local or any ``etils.epath`` path).

  Returns:
    The manifest as a dict.

  Raises:
    ValueError: A leaf of ``params`` holds a NaN or an infinity (named);
      nothing is written.

  Example:
    >>> import tempfile
    >>> w = jnp.array([[1.], [0.], [3.], [0.]] * 16)
    >>> man = export_weights({"k": w, "b": jnp.ones(1)},
    ...                      {"k": w != 0, "b": sj.masks.dense_mask()},
    ...                      [sj.Rule("k", sj.NM(2, 4))], tempfile.mkdtemp())
    >>> man["leaves"]["k"]["format"], man["leaves"]["b"]["format"]
    ('nm_compressed', 'dense')
  """
  params, masks = to_host(params), to_host(masks)
  bad = [path for path, w, _ in masks_lib.named_pairs(params, masks)
         if np.issubdtype(w.dtype, np.inexact) and not np.isfinite(w).all()]
  if bad:
    raise ValueError(f"params hold non-finite values at {', '.join(bad)}; "
                     "nothing was exported.")
  compressed = _leaves_of_type(
      sj.deploy.export(params, masks, _export_rules(params, masks, rules)),
      (formats.NMCompressed, formats.PaddedBlockSparse))
  arrays: dict[str, np.ndarray] = {}
  leaves: dict[str, Any] = {}
  dense_bytes = stored_bytes = 0
  for path, w, m in masks_lib.named_pairs(params, masks):
    dense_bytes += w.nbytes
    if path in compressed:
      entry, stored = _store(path, compressed[path], arrays)
    elif masks_lib.is_dense(m):
      entry, stored = {"format": "dense"}, w.nbytes
      arrays[path] = w
    else:
      entry, stored = {"format": "masked_dense"}, w.nbytes
      arrays[path] = np.where(m, w, 0).astype(w.dtype)
    entry.update(shape=list(w.shape), dtype=str(w.dtype))
    if not masks_lib.is_dense(m):
      entry["sparsity"] = float(1.0 - np.mean(m))
    leaves[path] = entry
    stored_bytes += stored
  bits = {path + "::mask_bits": np.asarray(leaf.bits) for path, leaf in
          _leaves_of_type(sj.pack_masks(masks), sj.packing.PackedMask).items()}
  manifest = {"format_note": _FORMAT_NOTE, "leaves": leaves,
              "dense_bytes": int(dense_bytes),
              "stored_bytes": int(stored_bytes)}
  if metrics_lib.is_main():
    folder = paths.as_path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    for name, contents in (("weights.npz", arrays),
                           ("masks_packed.npz", bits)):
      with (folder / name).open("wb") as f:
        np.savez(f, **contents)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
  return manifest

