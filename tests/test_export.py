"""Export to compressed formats and serve the unchanged Linen model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj
from pallas_kernels import formats
from sparsejax.models import gpt as gpt_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import plan as plan_lib
from sparsejax.pretrain.recipes import smoke as smoke_config

RULES = [sj.Rule(r".*attn.*kernel", sj.NM(2, 4)),
         sj.Rule(r".*mlp.*kernel", sj.NM(1, 8)),
         sj.Rule(r"lm_head/kernel", sj.Block((16, 32), 0.5))]
BLOCK_FORMATS = (formats.PaddedBlockSparse, formats.BSR)


@pytest.fixture(scope="module")
def model_and_params():
  cfg = gpt_lib.GPTConfig(d_model=64, n_layers=1, n_heads=2, d_ff=128,
                          max_len=16)
  model = gpt_lib.GPT(cfg)
  params = gpt_lib.init_params(model, jax.random.key(0))
  masks = sj.compute_masks(params, RULES)
  return model, sj.apply_masks(params, masks), masks


def _dense_bytes(x):
  return int(np.prod(x.shape)) * x.values.dtype.itemsize if isinstance(
      x, sj.deploy.COMPRESSED) else x.nbytes


def _assert_no_leaf_grows(params, exported, rows):
  leaves = dict(sj.rules.named_leaves(params))
  out = dict(zip([r.path for r in rows],
                 jax.tree.leaves(exported,
                                 is_leaf=lambda x: isinstance(
                                     x, sj.deploy.COMPRESSED))))
  assert sorted(out) == sorted(leaves)
  for row in rows:
    leaf = out[row.path]
    assert sj.deploy.storage_bytes(leaf) <= leaves[row.path].nbytes, row
    assert row.dense_bytes == leaves[row.path].nbytes
    if row.format == "dense":
      assert not isinstance(leaf, sj.deploy.COMPRESSED), row
    else:
      assert sj.deploy.storage_bytes(leaf) == row.compressed_bytes < row.dense_bytes
  assert sj.deploy.storage_bytes(exported) <= sj.deploy.storage_bytes(params)


@pytest.mark.parametrize("implementation", ["xla", "pallas"])
def test_served_model_matches_masked_dense(model_and_params, implementation):
  model, sparse, masks = model_and_params
  exported = sj.deploy.export(sparse, masks, RULES)
  fc1 = exported["block_0"]["mlp"]["fc1"]["kernel"]
  assert isinstance(fc1, formats.NMCompressed) and (fc1.n, fc1.m) == (1, 8)
  assert isinstance(exported["lm_head"]["kernel"], BLOCK_FORMATS)
  tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 256)
  expected = model.apply({"params": sparse}, tokens)

  @jax.jit
  def serve(p, t):
    with sj.flax.serving(implementation):
      return model.apply({"params": p}, t)

  np.testing.assert_allclose(serve(exported, tokens), expected, rtol=1e-4,
                             atol=1e-5)


def test_export_round_trip_and_storage(model_and_params):
  _, sparse, masks = model_and_params
  exported, rows = sj.deploy.export(sparse, masks, RULES, report=True)
  restored = jax.tree.map(
      lambda x: formats.decompress(x) if isinstance(x, sj.deploy.COMPRESSED)
      else x, exported,
      is_leaf=lambda x: isinstance(x, sj.deploy.COMPRESSED))
  jax.tree.map(np.testing.assert_array_equal, restored, sparse)
  _assert_no_leaf_grows(sparse, exported, rows)
  # 1:8 keeps 1/8 of the values plus 3 index bits per kept value (small K
  # pads to a whole tile of groups, so measure a full-size kernel).
  big = {"mlp": {"kernel": jax.random.normal(jax.random.key(2), (1024, 128))}}
  big_masks = sj.compute_masks(big, sj.NM(1, 8))
  compressed = sj.deploy.export(big, big_masks, sj.NM(1, 8))
  ratio = big["mlp"]["kernel"].nbytes / sj.deploy.storage_bytes(compressed)
  assert 7.0 < ratio <= 8.0, ratio


def test_smoke_model_export_never_grows():
  cfg = smoke_config.get_config()
  model = gpt_lib.GPT(plan_lib.model_config(cfg))
  params = gpt_lib.init_params(model, jax.random.key(0))
  rules = config_lib.sparsity_rules(cfg) + [
      sj.Rule(r"lm_head/kernel", sj.Block((8, 8), 0.5))]
  masks = sj.compute_masks(params, rules)
  sparse = sj.apply_masks(params, masks)
  exported, rows = sj.deploy.export(sparse, masks, rules, report=True)
  _assert_no_leaf_grows(sparse, exported, rows)
  nm = [r for r in rows if r.path.endswith("kernel") and "block_0" in r.path]
  assert len(nm) == 6
  # Each kernel is compressed exactly when that is smaller, and the report
  # says which and why.
  for r in nm:
    assert r.compressed_bytes is not None, r
    if r.compressed_bytes < r.dense_bytes:
      assert r.format == "nm 2:4" and r.reason == "compressed", r
    else:
      assert r.format == "dense" and "nm 2:4 would take" in r.reason, r
  head = [r for r in rows if r.path == "lm_head/kernel"]
  assert head[0].format != "dense"
  assert head[0].compressed_bytes < head[0].dense_bytes
  assert {r.reason for r in rows if r.compressed_bytes is None} == {"no rule"}


@pytest.mark.parametrize("shape,pattern", [
    ((4, 2), sj.NM(2, 4)), ((16, 1), sj.NM(1, 16)), ((8, 8), sj.NM(1, 8)),
    ((16, 32), sj.Block((16, 32), 0.5)), ((32, 32), sj.Block((16, 16), 0.25)),
    ((32, 32), sj.Block((2, 2), 0.5)),
])
def test_tiny_layers_stay_dense_when_compression_does_not_pay(shape, pattern):
  params = {"fc": {"kernel": jax.random.normal(jax.random.key(0), shape)}}
  masks = sj.compute_masks(params, pattern)
  sparse = sj.apply_masks(params, masks)
  exported, rows = sj.deploy.export(sparse, masks, pattern, report=True)
  _assert_no_leaf_grows(sparse, exported, rows)
  (row,) = rows
  leaf = exported["fc"]["kernel"]
  if row.compressed_bytes >= row.dense_bytes:
    assert row.format == "dense" and "would take" in row.reason
    np.testing.assert_array_equal(leaf, sparse["fc"]["kernel"])
  else:
    np.testing.assert_array_equal(formats.decompress(leaf),
                                  sparse["fc"]["kernel"])


def test_report_rows():
  params = {"big": {"kernel": jax.random.normal(jax.random.key(0), (256, 64)),
                    "bias": jnp.zeros(64)},
            "tiny": {"kernel": jnp.ones((4, 2))}}
  masks = sj.compute_masks(params, [sj.Rule(r".*kernel", sj.NM(2, 4))])
  _, rows = sj.deploy.export(sj.apply_masks(params, masks), masks,
                      [sj.Rule(r".*kernel", sj.NM(2, 4))], report=True)
  by_path = {r.path: r for r in rows}
  assert by_path["big/kernel"].format == "nm 2:4"
  assert by_path["big/kernel"].dense_bytes == 256 * 64 * 4
  assert by_path["big/bias"] == sj.deploy.ExportRow("big/bias", "dense", 256,
                                                    None, "no rule")
  assert by_path["tiny/kernel"].format == "dense"


def test_mask_that_does_not_fit_the_pattern_names_the_layer():
  params = {"layer": {"kernel": jnp.ones((64, 64))}}
  rule = [sj.Rule(r".*", sj.NM(2, 4))]
  masks = {"layer": {"kernel": jnp.ones((64, 64), bool)}}
  with pytest.raises(ValueError, match=r"mask at 'layer/kernel' is not 2:4"):
    sj.deploy.export(params, masks, rule)
  block = [sj.Rule(r".*", sj.Block((16, 16), 0.5))]
  partial = np.zeros((64, 64), bool)
  partial[:16, :8] = True  # half of block (0, 0)
  with pytest.raises(ValueError, match=r"'layer/kernel'.*block 16x16.*"
                     r"block \(0, 0\).*partly kept"):
    sj.deploy.export(params, {"layer": {"kernel": jnp.asarray(partial)}}, block)


def test_compressed_leaf_must_match_its_rule():
  w = jax.random.normal(jax.random.key(0), (256, 64))
  mask = sj.NM(2, 4).mask(jnp.abs(w))
  params = {"layer": {"kernel": formats.compress_nm(w, mask, 2, 4)}}
  masks = {"layer": {"kernel": mask}}
  kept, rows = sj.deploy.export(params, masks, sj.NM(2, 4), report=True)
  assert kept["layer"]["kernel"] is params["layer"]["kernel"]
  assert rows[0].reason == "already compressed"
  with pytest.raises(ValueError, match=r"'layer/kernel' is already compressed "
                     r"as nm 2:4, but its rule gives 1:8"):
    sj.deploy.export(params, masks, sj.NM(1, 8))
  with pytest.raises(ValueError, match=r"'layer/kernel' is already compressed "
                     r"as nm 2:4, but its rule gives block 16x16"):
    sj.deploy.export(params, masks, sj.Block((16, 16), 0.5))
