"""The files a run exports: ``sparsejax.deploy.export`` written with a manifest."""

import json

import jax.numpy as jnp
import numpy as np

import sparsejax as sj
from pallas_kernels import formats
from sparsejax.pretrain import export as export_lib


def _kernel(rows=32, cols=8, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(
      (rows, cols)).astype(np.float32))


def test_formats_by_pattern_and_mask(tmp_path):
  params = {"nm": _kernel(64), "loose": _kernel(seed=1), "wide": _kernel(64),
            "block": _kernel(32, 32), "b": jnp.ones(8)}
  rules = [sj.Rule("nm|loose", sj.NM(2, 4)), sj.Rule("wide", sj.NM(1, 32)),
           sj.Rule("block", sj.Block((8, 8), 0.5))]
  masks = sj.compute_masks(params, rules)
  # A mask that is not exactly 2:4 (a group keeps 3) stays masked dense.
  loose = np.asarray(masks["loose"]).copy()
  loose[:4, 0] = [True, True, True, False]
  masks["loose"] = jnp.asarray(loose)
  params = sj.apply_masks(params, masks)
  man = export_lib.export_weights(params, masks, rules, tmp_path)
  leaves = man["leaves"]
  assert leaves["nm"]["format"] == "nm_compressed"
  assert (leaves["nm"]["n"], leaves["nm"]["m"]) == (2, 4)
  assert leaves["loose"]["format"] == "masked_dense"
  assert leaves["wide"]["format"] == "masked_dense"  # m > 16
  assert leaves["block"]["format"] == "block_padded"
  assert leaves["b"]["format"] == "dense" and "sparsity" not in leaves["b"]
  assert leaves["nm"]["sparsity"] == 0.5
  assert man["dense_bytes"] == sum(np.asarray(p).nbytes
                                  for p in params.values())
  assert 0 < man["stored_bytes"] != man["dense_bytes"]
  assert json.loads((tmp_path / "manifest.json").read_text()) == man
  weights = np.load(tmp_path / "weights.npz")
  c = formats.NMCompressed(
      values=weights["nm::values"], indices=weights["nm::indices"], n=2, m=4,
      shape=(64, 8), tile_groups=leaves["nm"]["tile_groups"])
  np.testing.assert_array_equal(np.asarray(formats.decompress(c)),
                                np.asarray(params["nm"]))
  np.testing.assert_array_equal(weights["loose"], np.asarray(params["loose"]))
  bits = np.load(tmp_path / "masks_packed.npz")
  assert sorted(bits.files) == ["block::mask_bits", "loose::mask_bits",
                                "nm::mask_bits", "wide::mask_bits"]
