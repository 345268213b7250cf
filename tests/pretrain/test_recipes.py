"""``--config`` takes a packaged recipe by name (``smoke``, ``smoke:cpu``) or
the path of a config file; an unknown name lists the recipes."""
import os

import pytest

from sparsejax.pretrain import __main__ as main_lib
from sparsejax.pretrain import cli
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import recipes
from sparsejax.pretrain import variants

USER_RECIPE = """from sparsejax.pretrain import config
def get_config():
  c = config.get_config()
  c.model.d_model = 96
  return c
"""


def _config(*argv):
  return config_lib.to_dict(cli.parse_args(
      [*argv, "--workdir", os.path.join("runs", "unused")]).config)


def test_the_recipes_are_listed_by_name():
  names = recipes.names()
  assert {"smoke", "default", "srste", "gpt_small_rigl_90",
          "tpu_pod_srste_2to4"} <= set(names)
  assert list(names) == sorted(names)
  assert not any(n.startswith("_") for n in names)


def test_a_name_loads_the_packaged_file():
  path = recipes.recipe_path("smoke")
  assert _config("--config", "smoke") == _config("--config", path)
  assert _config("--config", "smoke")["model"]["d_model"] == 32


def test_a_name_takes_a_variant():
  smoke = config_lib.load_config_file(recipes.recipe_path("smoke"))
  expected = config_lib.to_dict(variants.sized(smoke, "cpu"))
  assert _config("--config", "smoke:cpu") == expected


def test_recipes_build_on_each_other():
  srste, dense = (
      config_lib.to_dict(config_lib.load_config_file(*cli.config_source(n)))
      for n in ("gpt_small_srste_2to4", "gpt_small_dense"))
  assert srste["model"] == dense["model"] and dense["model"]["n_layers"] == 12
  assert srste["sparsity"]["method"] == "srste"


def test_an_unknown_name_is_one_error_line_listing_the_recipes(capsys):
  assert main_lib.main(["--config", "smok:cpu"]) == main_lib.EXIT_CONFIG
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1
  assert err[0].startswith("error: --config: unknown recipe 'smok'; "
                           "did you mean 'smoke'?")
  for name in recipes.names():
    assert name in err[0]


def test_the_old_checkout_path_points_to_the_name():
  with pytest.raises(config_lib.ConfigError,
                     match=r"'configs/srste\.py' does not exist; the packaged "
                     r"recipe of that name is --config srste\."):
    cli.parse_args(["--config", "configs/srste.py"])


def test_a_file_of_your_own_wins_over_a_recipe_name(tmp_path, monkeypatch):
  (tmp_path / "smoke.py").write_text(USER_RECIPE)
  monkeypatch.chdir(tmp_path)
  assert _config("--config", "smoke.py")["model"]["d_model"] == 96
  assert _config("--config", str(tmp_path / "smoke.py"))["model"][
      "d_model"] == 96
  assert _config("--config", "smoke")["model"]["d_model"] == 32
