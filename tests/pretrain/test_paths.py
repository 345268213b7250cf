"""Workdirs through ``etils.epath``: local paths of every type, and the
application's own file operations on an object-store path.

The object-store tests run under ``etils.epath.testing.mock_epath()``, which
serves ``gs://bucket/...`` from the local file system (relative to the
current directory, here ``tmp_path``), so they show that every file
operation goes through epath and none assumes a local path (no append mode,
no ``os`` call). Orbax itself is not exercised on ``gs://``: tensorstore
would contact Google Cloud Storage, which a test cannot do offline.
"""

import json
import os
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath
from etils.epath import testing as epath_testing

import sparsejax as sj
from sparsejax.pretrain import checkpoint as ckpt_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import export as export_lib
from sparsejax.pretrain import integrity
from sparsejax.pretrain import metrics as metrics_lib
from sparsejax.pretrain import paths
from sparsejax.pretrain import plots as plots_lib
from sparsejax.pretrain import validation
from tests import checkpoint_damage as damage

PATH_TYPES = {"str": str, "pathlib": pathlib.Path, "epath": epath.Path}
RUN = "gs://bucket/run"


def _export_inputs():
  w = jnp.asarray(np.arange(64 * 4, dtype=np.float32).reshape(64, 4) + 1)
  params = {"k": w, "b": jnp.ones(4)}
  rules = [sj.Rule("k", sj.NM(2, 4))]
  masks = sj.compute_masks(params, rules)
  return sj.apply_masks(params, masks), masks, rules


@pytest.fixture
def object_store(tmp_path, monkeypatch):
  """``gs://bucket/...`` served from ``tmp_path / "gs:" / "bucket"``."""
  monkeypatch.chdir(tmp_path)
  with epath_testing.mock_epath():
    yield tmp_path / "gs:" / "bucket" / "run"


def test_as_path_is_absolute_only_when_local(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert paths.as_path(pathlib.Path("run")) == epath.Path(tmp_path / "run")
  assert os.fspath(paths.as_path(epath.Path(RUN))) == RUN
  with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
    paths.as_path(3)


@pytest.mark.parametrize("kind", sorted(PATH_TYPES))
def test_local_paths_of_every_type(kind, tmp_path):
  as_type = PATH_TYPES[kind]
  ckpt = ckpt_lib.Checkpointer(as_type(tmp_path / "ckpt"), async_save=False)
  try:
    ckpt.save(3, damage.tiny_state(3), damage.data_state(3))
    step, state, data_state = ckpt.restore_latest(
        jax.eval_shape(lambda: damage.tiny_state(0)))
  finally:
    ckpt.close()
  assert isinstance(ckpt.directory, str)
  assert ckpt.directory == os.fspath(tmp_path / "ckpt")
  assert (step, data_state) == (3, damage.data_state(3))
  np.testing.assert_array_equal(state["bias"], np.arange(8.0) + 3)
  assert ckpt_lib.finished_steps(as_type(tmp_path / "ckpt")) == [3]
  assert integrity.verify(as_type(tmp_path / "ckpt" / "3")) == []

  metrics = as_type(tmp_path / "m" / "metrics.jsonl")
  writer = metrics_lib.MetricsWriter(metrics)
  writer.write(1, {"loss": 2.5})
  writer.close()
  assert metrics_lib.read_metrics(metrics) == [{"step": 1, "loss": 2.5}]

  manifest = export_lib.export_weights(*_export_inputs(),
                                       as_type(tmp_path / "export"))
  assert manifest["leaves"]["k"]["format"] == "nm_compressed"
  assert sorted(os.listdir(tmp_path / "export")) == [
      "manifest.json", "masks_packed.npz", "weights.npz"]


def test_local_metrics_are_appended_at_each_write(tmp_path):
  path = tmp_path / "metrics.jsonl"
  writer = metrics_lib.MetricsWriter(path)
  writer.write(1, {"loss": 2.5})
  # On disk before any flush or close: appended and flushed by write.
  assert metrics_lib.read_metrics(path) == [{"step": 1, "loss": 2.5}]
  writer.write(2, {"loss": 2.0})
  assert len(metrics_lib.read_metrics(path)) == 2
  writer.close()
  assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]


def test_object_store_metrics_are_rewritten_whole(object_store):
  path = f"{RUN}/sparse/metrics.jsonl"
  local = object_store / "sparse" / "metrics.jsonl"
  writer = metrics_lib.MetricsWriter(path)
  writer.write(1, {"loss": 2.5})
  assert local.read_text() == ""  # kept in memory until a flush
  writer.flush()
  assert metrics_lib.read_metrics(path) == [{"step": 1, "loss": 2.5}]
  writer.write(2, {"loss": 2.0})
  writer.close()
  assert [r["step"] for r in metrics_lib.read_metrics(path)] == [1, 2]

  local.write_text(local.read_text() + '{"step": 3, "lo')  # a torn line
  with pytest.warns(metrics_lib.TornMetricsWarning, match="line 3 is torn"):
    writer = metrics_lib.MetricsWriter(path, resume_step=1)
  writer.write(2, {"loss": 1.5})
  writer.close()
  assert metrics_lib.read_metrics(path) == [{"step": 1, "loss": 2.5},
                                            {"step": 2, "loss": 1.5}]
  assert (object_store / "sparse" / "metrics.jsonl.torn").read_text() == (
      '{"step": 3, "lo\n')
  assert sorted(os.listdir(local.parent)) == ["metrics.jsonl",
                                              "metrics.jsonl.torn"]


def test_object_store_export_and_plots(object_store):
  params, masks, rules = _export_inputs()
  manifest = export_lib.export_weights(params, masks, rules, f"{RUN}/export")
  with np.load(object_store / "export" / "weights.npz") as weights:
    assert set(weights.files) == {"b", "k::values", "k::indices"}
    np.testing.assert_array_equal(weights["b"], np.ones(4))
  with np.load(object_store / "export" / "masks_packed.npz") as bits:
    assert bits.files == ["k::mask_bits"]
  stored = json.loads((object_store / "export" / "manifest.json").read_text())
  assert stored == json.loads(json.dumps(manifest))

  (epath.Path(RUN) / "plots").mkdir()  # as write_plots does
  assert plots_lib.plot_schedule(np.arange(3), {"beta": np.ones(3)},
                                 epath.Path(RUN) / "plots" / "schedule.png")
  png = (object_store / "plots" / "schedule.png").read_bytes()
  assert png.startswith(b"\x89PNG")


def _fake_step(directory: epath.Path, step: int) -> epath.Path:
  """A step folder with files written through epath, and its manifest."""
  step_dir = directory / str(step)
  (step_dir / "state").mkdir(parents=True)
  (step_dir / "state" / "x").write_bytes(bytes(range(64)) * step)
  (step_dir / "_CHECKPOINT_METADATA").write_text("{}")
  integrity.write_manifest(step_dir)
  return step_dir


def test_object_store_integrity(object_store):
  directory = epath.Path(RUN) / "checkpoints"
  for step in (2, 3):
    _fake_step(directory, step)
  assert ckpt_lib.finished_steps(directory) == [2, 3]
  assert integrity.verify(directory / "3") == []
  local = object_store / "checkpoints"
  assert (local / "3" / integrity.MANIFEST).is_file()

  (directory / "3" / "state" / "x").write_bytes(b"short")
  assert integrity.verify(directory / "3") == [
      "state/x is truncated (5 of 192 bytes)"]
  with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    found = integrity.restore_newest_intact(
        directory, [2, 3], lambda step: f"state {step}")
  assert found == (2, "state 2")
  assert f"kept as {RUN}/checkpoints/3.damaged" in str(seen[0].message)
  assert sorted(os.listdir(local)) == ["2", "3.damaged"]
  assert ckpt_lib.finished_steps(directory) == [2]


def test_object_store_config_snapshot_and_workdir_check(object_store):
  config = config_lib.get_config()
  validation.check_workdir_path(RUN)  # does not exist yet: fine
  assert not ckpt_lib.check_workdir(RUN, config)
  ckpt_lib.write_config(RUN, config)
  stored = json.loads((object_store / ckpt_lib.CONFIG_FILE).read_text())
  assert stored == config_lib.to_dict(config)
  assert sorted(os.listdir(object_store)) == [ckpt_lib.CONFIG_FILE]
  assert ckpt_lib.check_workdir(RUN, config)
  validation.check_workdir_path(RUN)  # an existing folder: fine
  config.model.d_model = 64
  with pytest.raises(config_lib.ConfigError, match="model.d_model: 128 -> 64"):
    ckpt_lib.check_workdir(RUN, config)

  epath.Path(f"{RUN}/file").write_text("x")
  with pytest.raises(config_lib.ConfigError,
                     match=f"--workdir {RUN}/file is a file, not a folder"):
    validation.check_workdir_path(f"{RUN}/file")
