"""`python -m sparsejax.pretrain`: the command line, outputs, bad input."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import loop
from sparsejax.pretrain import metrics as metrics_lib
from sparsejax.pretrain import plan as plan_lib
from sparsejax.pretrain import recipes
from sparsejax.pretrain import report as report_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SMOKE = recipes.recipe_path("smoke")


def _cli(*args, timeout=240):
  env = dict(os.environ)
  env["XLA_FLAGS"] = ""  # one CPU device, as a user's machine
  env["JAX_PLATFORMS"] = "cpu"
  return subprocess.run(
      [sys.executable, "-m", "sparsejax.pretrain", *args], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=timeout)


def _load(path):
  return config_lib.load_config_file(path)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("cli")
  proc = _cli("--config", "smoke", "--workdir",
              str(workdir), "--config.outputs.plots=True")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


@pytest.mark.system
def test_cli_prints_dense_and_sparse_figures(smoke_run):
  _, proc = smoke_run
  out = proc.stdout
  assert "val loss" in out and "perplexity" in out and "steps/s" in out
  assert "dense" in out and "sparse (progressive_nm 2:4)" in out
  assert "block_0/mlp/fc1/kernel" in out
  rows = [l for l in out.splitlines() if l.startswith("block_0/")]
  assert len(rows) == 6 and all(" 2:4 " in r and "50.00%" in r for r in rows)
  assert "12/12" in proc.stderr  # the progress bar


@pytest.mark.system
def test_cli_outputs(smoke_run):
  workdir, _ = smoke_run
  summary = json.loads((workdir / "summary.json").read_text())
  dense, sparse = summary["results"]["dense"], summary["results"]["sparse"]
  assert 0 < dense["val_loss"] < np.log(256)
  assert 0 < sparse["val_loss"] < np.log(256)
  assert sparse["perplexity"] == pytest.approx(np.exp(sparse["val_loss"]))
  assert dense["steps_per_s"] > 0 and sparse["steps_per_s"] > 0
  recs = metrics_lib.read_metrics(workdir / "sparse" / "metrics.jsonl")
  logged = [r for r in recs if "loss" in r]
  assert [r["step"] for r in logged] == [2, 4, 6, 8, 10, 12]
  for key in ("loss", "lr", "mask_sparsity", "forward_sparsity", "flip_rate",
              "phase", "n", "m", "beta", "steps_per_s", "grad_norm"):
    assert key in logged[-1], key
  assert [r["phase"] for r in logged] == [0, 1, 1, 1, 2, 2]
  # The dense phase's forward pass is dense; its masks already hold the
  # first frame (3:4).
  assert logged[0]["forward_sparsity"] == 0.0
  assert logged[0]["mask_sparsity"] == pytest.approx(0.25)
  assert logged[-1]["forward_sparsity"] == pytest.approx(0.5)
  assert logged[-1]["mask_sparsity"] == pytest.approx(0.5)
  assert (logged[-1]["n"], logged[-1]["m"], logged[-1]["beta"]) == (2, 4, 0.0)
  assert any("val_loss" in r for r in recs)
  for png in ("loss.png", "schedule.png"):
    data = (workdir / "plots" / png).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
  manifest = json.loads((workdir / "export" / "manifest.json").read_text())
  # fc2 contracts over d_ff=64 (16 whole 2:4 groups) and compresses smaller;
  # fc1 contracts over d_model=32, where the compressed form would not be
  # smaller, so it is stored masked dense (export never grows a layer).
  leaf = manifest["leaves"]["block_0/mlp/fc2/kernel"]
  assert (leaf["format"], leaf["n"], leaf["m"]) == ("nm_compressed", 2, 4)
  assert manifest["leaves"]["block_0/mlp/fc1/kernel"]["format"] == \
      "masked_dense"
  assert manifest["leaves"]["lm_head/kernel"]["format"] == "dense"
  assert 0 < manifest["stored_bytes"] < manifest["dense_bytes"]
  weights = np.load(workdir / "export" / "weights.npz")
  assert "block_0/mlp/fc2/kernel::values" in weights.files


@pytest.mark.system
def test_exported_weights_decompress_to_the_evaluated_model(smoke_run):
  from pallas_kernels import formats
  workdir, _ = smoke_run
  manifest = json.loads((workdir / "export" / "manifest.json").read_text())
  weights = np.load(workdir / "export" / "weights.npz")
  leaf = manifest["leaves"]["block_0/mlp/fc2/kernel"]
  c = formats.NMCompressed(
      values=weights["block_0/mlp/fc2/kernel::values"],
      indices=weights["block_0/mlp/fc2/kernel::indices"], n=leaf["n"],
      m=leaf["m"], shape=tuple(leaf["shape"]), tile_groups=leaf["tile_groups"])
  dense = np.asarray(formats.decompress(c))
  groups = (dense.reshape(-1, 4, dense.shape[1]) != 0).sum(axis=1)
  assert groups.max() <= 2
  assert np.count_nonzero(dense) > 0.45 * dense.size


def test_cli_rejects_unknown_key_before_compute(tmp_path):
  proc = _cli("--config", "smoke", "--workdir",
              str(tmp_path / "w"), "--config.model.widht=3", timeout=120)
  assert proc.returncode != 0
  assert "widht" in proc.stderr
  assert not (tmp_path / "w").exists()


def _refused(cfg, tmp_path, match, devices=None):
  workdir = tmp_path / "w"
  with pytest.raises(config_lib.ConfigError, match=match):
    loop.run(cfg, str(workdir), devices=devices or jax.devices()[:1],
             report=False, progress=False)
  assert not workdir.exists()  # nothing written


def test_unknown_key_in_a_config_file(tmp_path):
  cfg = _load(SMOKE)
  cfg.model.widht = 3
  _refused(cfg, tmp_path, "unknown config key.*model.widht")


def test_pattern_that_does_not_divide_a_layer(tmp_path):
  cfg = _load(SMOKE)
  cfg.sparsity.rules = r"block_0/mlp/fc1/kernel=2:5"
  _refused(cfg, tmp_path, "block_0/mlp/fc1/kernel.*not divisible by m=5")


def test_geometric_frames_must_divide(tmp_path):
  cfg = _load(SMOKE)
  cfg.sparsity.rules = config_lib.ALL_BLOCK_KERNELS + "=1:8"
  cfg.sparsity.structure = "geometric"  # needs axis 0 divisible by 64
  _refused(cfg, tmp_path, "does not fit the model")


def test_rule_matching_nothing(tmp_path):
  cfg = _load(SMOKE)
  cfg.sparsity.rules = ".*mpl.*kernel=2:4"
  _refused(cfg, tmp_path, "mpl")


def test_mesh_that_does_not_match_the_devices(tmp_path):
  cfg = _load(SMOKE)
  cfg.mesh.data, cfg.mesh.tensor = 3, 1
  _refused(cfg, tmp_path, "3 device.*but 1 are available")


def test_mesh_that_does_not_divide_the_batch(tmp_path):
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices")
  cfg = _load(SMOKE)
  cfg.data.batch_size = 6
  _refused(cfg, tmp_path, "data.batch_size=6 is not divisible",
           devices=jax.devices())


@pytest.mark.parametrize("key,value,match", [
    ("sparsity.method", "magic", "sparsity.method"),
    ("train.steps", 0, "train.steps"),
    ("sparsity.rules", "no-equals-sign", "REGEX=PATTERN"),
    ("sparsity.rules", ".*=3:2", "n <= m"),
    ("data.source", "files", "data.paths"),
])
def test_bad_values(tmp_path, key, value, match):
  cfg = _load(SMOKE)
  section, name = key.split(".")
  cfg[section][name] = value
  _refused(cfg, tmp_path, match)


def test_missing_data_files(tmp_path):
  cfg = _load(SMOKE)
  cfg.data.source = "files"
  cfg.data.paths = str(tmp_path / "nope.txt")
  _refused(cfg, tmp_path, "nope.txt")


@pytest.mark.parametrize("name", recipes.names())
def test_every_recipe_plans(name, tmp_path):
  """Recipes validate and fit their model (abstractly, no compute)."""
  cfg = _load(recipes.recipe_path(name))
  text = tmp_path / "data.txt"
  text.write_bytes(bytes(range(32, 127)) * 400)
  cfg.data.source, cfg.data.paths = "files", str(text)
  cfg.data.batch_size = cfg.eval.batch_size = 8
  cfg.data.seq_len = min(cfg.data.seq_len, 256)
  cfg.data.val_fraction = 0.1
  cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = -1, 1, 1
  arms = plan_lib.plan(cfg, jax.devices()[:1])
  assert arms[-1].abstract_state.params
  sp = arms[-1].sparsifier
  assert (sp is None) == (cfg.sparsity.method == "none")


def test_text_files_are_a_data_source(tmp_path):
  text = tmp_path / "corpus.txt"
  text.write_text("the quick brown fox jumps over the lazy dog. " * 400)
  cfg = _load(SMOKE)
  cfg.data.source, cfg.data.paths = "files", str(text)
  arm = plan_lib.plan(cfg, jax.devices()[:1])[-1]
  assert (len(arm.corpus.train.tokens) + len(arm.corpus.val_tokens)
          == text.stat().st_size)
  assert arm.corpus.fingerprint["source"] == "files"


def test_default_config_is_progressive_with_baseline():
  cfg = config_lib.get_config()
  config_lib.validate(cfg)
  sp = plan_lib.make_sparsifier(cfg)
  assert type(sp.schedule).__name__ == "ProgressiveNM" and cfg.sparsity.baseline
  table = report_lib.schedule_table(sp, config_lib.sparsity_rules(cfg),
                                    range(cfg.train.steps))
  assert (table["n"][-1], table["m"][-1]) == (2, 4)
  assert table["phase"][0] == 0 and table["phase"][-1] == 2
