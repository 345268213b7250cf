"""Activation sparsity in a pretraining run: config, plan check, metrics."""


import jax
import numpy as np
import pytest

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import pipeline
from sparsejax.pretrain import plan as plan_lib
from sparsejax.pretrain import recipes
from sparsejax.pretrain import step as step_lib

SMOKE = recipes.recipe_path("smoke")


def _smoke(rules=""):
  cfg = config_lib.load_config_file(SMOKE)
  cfg.sparsity.method = "none"
  cfg.activation_sparsity.rules = rules
  return cfg


@pytest.mark.parametrize("key,value,match", [
    ("rules", "block_(=2:4", r"activation_sparsity.rules: bad sparsity rule"),
    ("rules", "block_0/mlp/fc1=half", r"activation_sparsity.rules: bad"),
    ("grad", "exact", r"activation_sparsity.grad must be one of"),
])
def test_bad_values_name_the_key(key, value, match):
  cfg = _smoke("block_0/mlp/fc1=2:4")
  cfg.activation_sparsity[key] = value
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(cfg)


def test_off_by_default_and_scanned_blocks_are_refused():
  cfg = config_lib.get_config()
  assert config_lib.activation_rules(cfg) == []
  config_lib.validate(cfg)
  cfg.activation_sparsity.rules = r"blocks/mlp/fc2=2:4"
  cfg.model.scan_layers = True
  with pytest.raises(config_lib.ConfigError, match="model.scan_layers=False"):
    config_lib.validate(cfg)


@pytest.mark.parametrize("rules,match", [
    ("block_0/mlp/fc1=2:3", r"at 'block_0/mlp/fc1': the input has 32 features"),
    ("block_0/mlp/fc9=2:4", r"matched no dense layer: \['block_0/mlp/fc9'\]"),
])
def test_plan_checks_the_rules_against_the_model(rules, match):
  with pytest.raises(config_lib.ConfigError,
                     match=r"activation_sparsity.rules=.*" + match):
    plan_lib.plan(_smoke(rules), jax.devices()[:1])


def test_train_step_logs_the_achieved_sparsity_per_layer():
  (arm,) = plan_lib.plan(
      _smoke(r"block_0/mlp/fc2=1:4;block_0/attn/\w+=0.75"), jax.devices()[:1])
  batch = pipeline.train_dataset(
      arm.corpus.train, batch_size=arm.config.data.batch_size, seed=0)[0]
  state = step_lib.init_state(arm)
  with arm.context():
    state, metrics = step_lib.make_train_step(
        arm, plan_lib.learning_rate(arm.config))(state, batch)
  got = {k: float(v) for k, v in metrics.items()
         if k.startswith("act_sparsity")}
  layers = {f"act_sparsity/block_0/attn/{name}": 0.75
            for name in ("query", "key", "value", "out")}
  layers["act_sparsity/block_0/mlp/fc2"] = 0.75
  assert got == {"act_sparsity": 0.75, **layers}
  assert np.isfinite(float(metrics["loss"])) and int(state.step) == 1
