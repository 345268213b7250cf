"""Export to compressed formats and serve the unchanged Linen model."""

import jax
import numpy as np
import pytest

import sparsejax as sj
from pallas_kernels import formats
from sparsejax.models import gpt as gpt_lib

RULES = [sj.Rule(r".*attn.*kernel", sj.NM(2, 4)),
         sj.Rule(r".*mlp.*kernel", sj.NM(1, 8)),
         sj.Rule(r"lm_head/kernel", sj.Block((16, 32), 0.5))]


@pytest.fixture(scope="module")
def model_and_params():
  cfg = gpt_lib.GPTConfig(d_model=64, n_layers=1, n_heads=2, d_ff=128,
                          max_len=16)
  model = gpt_lib.GPT(cfg)
  params = gpt_lib.init_params(model, jax.random.key(0))
  masks = sj.compute_masks(params, RULES)
  return model, sj.apply_masks(params, masks), masks


@pytest.mark.parametrize("implementation", ["xla", "pallas"])
def test_served_model_matches_masked_dense(model_and_params, implementation):
  model, sparse, masks = model_and_params
  exported = sj.export(sparse, masks, RULES)
  fc1 = exported["block_0"]["mlp"]["fc1"]["kernel"]
  assert isinstance(fc1, formats.NMCompressed) and (fc1.n, fc1.m) == (1, 8)
  assert isinstance(exported["lm_head"]["kernel"], formats.PaddedBlockSparse)
  tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 256)
  expected = model.apply({"params": sparse}, tokens)

  @jax.jit
  def serve(p, t):
    with sj.serving(implementation):
      return model.apply({"params": p}, t)

  np.testing.assert_allclose(serve(exported, tokens), expected, rtol=1e-4,
                             atol=1e-5)


def test_export_round_trip_and_storage(model_and_params):
  _, sparse, masks = model_and_params
  exported = sj.export(sparse, masks, RULES)
  restored = jax.tree.map(
      lambda x: formats.decompress(x) if isinstance(x, sj.deploy.COMPRESSED)
      else x, exported,
      is_leaf=lambda x: isinstance(x, sj.deploy.COMPRESSED))
  jax.tree.map(np.testing.assert_array_equal, restored, sparse)
  # 1:8 keeps 1/8 of the values plus 3 index bits per kept value (small K
  # pads to a whole tile of groups, so measure a full-size kernel).
  big = {"mlp": {"kernel": jax.random.normal(jax.random.key(2), (1024, 128))}}
  big_masks = sj.compute_masks(big, sj.NM(1, 8))
  compressed = sj.export(big, big_masks, sj.NM(1, 8))
  ratio = big["mlp"]["kernel"].nbytes / sj.storage_bytes(compressed)
  assert 7.0 < ratio <= 8.0, ratio
