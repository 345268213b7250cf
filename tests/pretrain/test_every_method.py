"""The pretraining loop trains every kind of method end to end: straight-
through N:M (STE, SR-STE, S-STE), progressive N:M and drop-and-grow (RigL)."""
import math

import jax
import pytest

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import loop
from sparsejax.pretrain import recipes

SMOKE = recipes.recipe_path("smoke")


@pytest.mark.system
@pytest.mark.parametrize("method,pattern", [
    ("ste", "2:4"), ("srste", "2:4"), ("sste", "2:4"), ("rigl", "0.75")])
def test_method_trains_in_the_pretraining_loop(method, pattern, tmp_path):
  cfg = config_lib.load_config_file(SMOKE)
  cfg.sparsity.method = method
  cfg.sparsity.rules = f"{config_lib.ALL_BLOCK_KERNELS}={pattern}"
  cfg.sparsity.distribution = ""
  cfg.sparsity.delta_t = 4
  cfg.sparsity.baseline = False
  cfg.outputs.export = False
  cfg.progress = False
  out = loop.run(cfg, str(tmp_path), devices=jax.devices()[:1], report=False)
  assert out["finished"]
  loss = out["results"]["sparse"]["val_loss"]
  assert math.isfinite(loss) and loss < 5.6  # below the uniform 8 bits
