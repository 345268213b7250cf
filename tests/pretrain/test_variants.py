"""Every packaged recipe has a CPU-sized variant (``NAME:cpu``) that keeps
the recipe's method and knobs and runs on the embedded corpus as it is."""
import jax
import pytest

from sparsejax.pretrain import cli
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import plan as plan_lib
from sparsejax.pretrain import recipes
from sparsejax.pretrain import variants

RECIPES = recipes.names()


def test_every_recipe_is_listed():
  assert len(RECIPES) >= 12


@pytest.mark.parametrize("name", RECIPES)
def test_cpu_variant_runs_as_is(name, tmp_path):
  full = config_lib.load_config_file(recipes.recipe_path(name))
  small = cli.parse_args(["--config", f"{name}:cpu", "--workdir",
                          str(tmp_path / "run")]).config
  base = config_lib.get_config()
  # What the recipe is about is kept ...
  for key in ("method", "rules", "structure", "decay", "grad", "srste_decay",
              "distribution", "target", "alpha", "baseline"):
    assert small.sparsity[key] == full.sparsity[key], key
  for key in ("positions", "scan_layers", "tie_embeddings"):
    assert small.model[key] == full.model[key], key
  # ... what sizes the run is the embedded default's, on one process.
  assert small.data.source == "pydoc" and small.data.paths == ""
  assert config_lib.to_dict(small.data) == config_lib.to_dict(base.data)
  assert small.train.steps == base.train.steps
  for key in ("d_model", "n_layers", "n_heads", "d_ff", "dtype"):
    assert small.model[key] == base.model[key], key
  assert small.mesh.fsdp == 1 and not small.distributed and small.progress
  # Step knobs and the per-step decay rate keep the recipe's proportions.
  ratio = base.train.steps / full.train.steps
  assert small.sparsity.frequency == max(1, round(full.sparsity.frequency *
                                                  ratio))
  if full.sparsity.c is not None:
    assert small.sparsity.c == pytest.approx(full.sparsity.c / ratio)
  # The rules fit the small model and the corpus is there: the run plans.
  arms = plan_lib.plan(small, jax.devices()[:1])
  assert arms[-1].config.sparsity.method == full.sparsity.method


@pytest.mark.parametrize("name", RECIPES)
def test_progress_is_on_in_every_recipe(name):
  assert config_lib.load_config_file(recipes.recipe_path(name)).progress


def test_unknown_variant_and_variant_of_a_plain_file(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="unknown config variant "
                     "'gpu'; a recipe takes ':cpu'"):
    cli.parse_args(["--config", "gpt_small_rigl_90:gpu"])
  plain = tmp_path / "plain.py"
  plain.write_text("from sparsejax.pretrain import config\n"
                   "def get_config():\n  return config.get_config()\n")
  with pytest.raises(config_lib.ConfigError, match="takes no variant"):
    cli.parse_args(["--config", f"{plain}:cpu"])


def test_cpu_variant_of_the_default_is_the_default():
  base = config_lib.get_config()
  assert config_lib.to_dict(variants.cpu_sized(base)) == config_lib.to_dict(
      base)
