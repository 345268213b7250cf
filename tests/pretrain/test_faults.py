"""Damaged checkpoints and metrics: resume falls back to the newest intact
step with a warning, or stops with one clear error; nothing is deleted.

(The kill -9 of a real run during an asynchronous save is in
`test_checkpoint.py`, next to the uninterrupted reference run.)
"""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from sparsejax.pretrain import checkpoint as ckpt_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import data as data_lib
from sparsejax.pretrain import integrity
from sparsejax.pretrain import metrics as metrics_lib
from tests import checkpoint_damage as damage

TARGET = jax.eval_shape(lambda: damage.tiny_state(0))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  return damage.save_tiny(tmp_path_factory.mktemp("saved"))


@pytest.fixture
def ckpt_dir(saved, tmp_path):
  path = tmp_path / "checkpoints"
  shutil.copytree(saved, path)
  return str(path)


def _restore(directory):
  ckpt = ckpt_lib.Checkpointer(directory, keep=4, async_save=False)
  try:
    return ckpt.restore_latest(TARGET)
  finally:
    ckpt.close()


def test_saves_record_checksums_that_verify(saved):
  for step in damage.STEPS:
    step_dir = os.path.join(saved, str(step))
    with open(os.path.join(step_dir, integrity.MANIFEST)) as f:
      files = json.load(f)["files"]
    assert any("/d/" in rel for rel in files)  # the array data is covered
    assert integrity.verify(step_dir) == []
  step, state, data_state = _restore(saved)
  assert step == 3 and data_state.index == 30
  assert np.array_equal(state["fc1"]["kernel"], np.full((16, 8), 3.0))


@pytest.mark.parametrize("how, what, words", [
    ("flip", "data", r"checksum mismatch"),
    ("truncate", "data", r"truncated \(\d+ of \d+ bytes\)"),
    ("empty", "state/_METADATA", r"state/_METADATA is empty"),
    ("remove", "state", r"folder state is missing"),
])
def test_damaged_latest_falls_back_to_the_newest_intact(ckpt_dir, how, what,
                                                        words):
  step_dir = os.path.join(ckpt_dir, "3")
  path = (damage.data_files(step_dir)[0] if what == "data"
          else os.path.join(step_dir, what))
  getattr(damage, how)(path)
  with pytest.warns(integrity.DamagedCheckpointWarning,
                    match=r"checkpoint step 3 is damaged: .*" + words +
                    r".*; resuming from step 2") as seen:
    step, state, data_state = _restore(ckpt_dir)
  assert len(seen) == 1
  assert step == 2 and data_state.index == 20
  assert np.array_equal(state["bias"], np.arange(8.0) + 2)
  # Kept, renamed out of the way: a new save of step 3 works and verifies.
  assert ckpt_lib.finished_steps(ckpt_dir) == [1, 2]
  assert os.path.isdir(os.path.join(ckpt_dir, "3.damaged"))
  ckpt = ckpt_lib.Checkpointer(ckpt_dir, keep=4, async_save=True)
  assert ckpt.steps() == [1, 2]
  ckpt.save(3, damage.tiny_state(3), data_lib.DataState(index=30))
  ckpt.close()
  assert integrity.verify(os.path.join(ckpt_dir, "3")) == []
  assert _restore(ckpt_dir)[0] == 3


def test_a_step_without_checksums_counts_as_unfinished(ckpt_dir):
  os.remove(os.path.join(ckpt_dir, "3", integrity.MANIFEST))
  with pytest.warns(integrity.DamagedCheckpointWarning,
                    match=r"step 3 .* no checksum manifest .*did not finish"):
    assert _restore(ckpt_dir)[0] == 2


def test_two_damaged_steps_each_warn(ckpt_dir):
  damage.flip(damage.data_files(os.path.join(ckpt_dir, "3"))[0])
  damage.remove(os.path.join(ckpt_dir, "2", "meta"))
  with pytest.warns(integrity.DamagedCheckpointWarning) as seen:
    assert _restore(ckpt_dir)[0] == 1
  messages = sorted(str(w.message) for w in seen)
  assert "step 2 is damaged: folder meta is missing" in messages[0]
  assert "step 3 is damaged" in messages[1]
  assert ckpt_lib.finished_steps(ckpt_dir) == [1]


def test_no_intact_checkpoint_is_one_error_and_changes_nothing(ckpt_dir):
  for step in damage.STEPS:
    damage.truncate(damage.data_files(os.path.join(ckpt_dir, str(step)))[0])
  before = sorted(os.listdir(ckpt_dir))
  with pytest.raises(integrity.CheckpointError,
                     match=r"no intact checkpoint in .*step 3: .*truncated"
                     r".*step 2: .*step 1: .*Nothing was changed") as info:
    _restore(ckpt_dir)
  assert isinstance(info.value, config_lib.ConfigError)  # one `error:` line
  assert sorted(os.listdir(ckpt_dir)) == before


def test_no_checkpoints_starts_fresh(tmp_path):
  assert _restore(str(tmp_path)) is None


def test_torn_metrics_line_is_dropped_and_kept(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w") as f:
    f.write('{"step": 2, "loss": 3.0}\n{"step": 4, "loss": 2.5}\n'
            '{"step": 6, "loss": 2.0}\n{"step": 8, "lo')
  with pytest.warns(metrics_lib.TornMetricsWarning,
                    match=r"line 4 is torn .*kept in .*metrics.jsonl.torn"):
    metrics_lib.MetricsWriter(path, resume_step=4).close()
  assert [r["step"] for r in metrics_lib.read_metrics(path)] == [2, 4]
  with open(path + ".torn") as f:
    assert f.read() == '{"step": 8, "lo\n'


def test_corrupt_metrics_line_before_the_last_is_an_error(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  text = '{"step": 2}\n{"st#ep": 4}\n{"step": 6}\n'
  with open(path, "w") as f:
    f.write(text)
  with pytest.raises(config_lib.ConfigError, match=r"metrics.jsonl line 2 "
                     r"is corrupt"):
    metrics_lib.MetricsWriter(path, resume_step=6)
  with open(path) as f:
    assert f.read() == text
