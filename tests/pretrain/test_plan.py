"""Every registered training method plans on the smoke model."""


import jax
import pytest

from sparsejax.methods import registry
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import plan as plan_lib
from sparsejax.pretrain import recipes

SMOKE = recipes.recipe_path("smoke")


@pytest.mark.parametrize("method", registry.names("train"))
def test_every_method_plans(method):
  cfg = config_lib.load_config_file(SMOKE)
  cfg.sparsity.method = method
  cfg.sparsity.baseline = False
  if method in ("gradual_magnitude", "rigl", "set_sparse", "static_random",
                "srigl", "topkast"):  # unstructured patterns
    cfg.sparsity.rules = config_lib.ALL_BLOCK_KERNELS + "=0.75"
  (arm,) = plan_lib.plan(cfg, jax.devices()[:1])
  assert arm.sparsifier is not None and arm.name == "sparse"
  assert arm.label.startswith(f"sparse ({method} ")
  assert jax.tree.leaves(arm.abstract_state.opt_state)


def test_unknown_method_names_the_key_and_the_choices():
  cfg = config_lib.load_config_file(SMOKE)
  cfg.sparsity.method = "magic"
  with pytest.raises(config_lib.ConfigError,
                     match=r"sparsity.method='magic'.*'progressive_nm'"):
    plan_lib.make_sparsifier(cfg)


def test_a_bad_rule_names_the_key():
  cfg = config_lib.load_config_file(SMOKE)
  cfg.sparsity.rules = "block_(.*=2:4"
  with pytest.raises(config_lib.ConfigError,
                     match=r"sparsity.rules: bad sparsity rule.*valid regex"):
    config_lib.validate(cfg)


def test_load_config_file_errors(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="does not exist"):
    config_lib.load_config_file(tmp_path / "nope.py")
  (tmp_path / "empty.py").write_text("X = 1\n")
  with pytest.raises(config_lib.ConfigError, match="no get_config"):
    config_lib.load_config_file(tmp_path / "empty.py")
