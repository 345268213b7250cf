"""Damaged checkpoints and metrics: resume falls back to the newest intact
step with a warning, or stops with one clear error; nothing is deleted. And
a real run killed (`kill -9`) during an asynchronous save resumes bit-exact.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from sparsejax.pretrain import checkpoint as ckpt_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import integrity
from sparsejax.pretrain import metrics as metrics_lib
from tests import checkpoint_damage as damage

TARGET = jax.eval_shape(lambda: damage.tiny_state(0))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


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
  assert step == 3 and data_state == damage.data_state(3)
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
  assert step == 2 and data_state == damage.data_state(2)
  assert np.array_equal(state["bias"], np.arange(8.0) + 2)
  # Kept, renamed out of the way: a new save of step 3 works and verifies.
  assert ckpt_lib.finished_steps(ckpt_dir) == [1, 2]
  assert os.path.isdir(os.path.join(ckpt_dir, "3.damaged"))
  ckpt = ckpt_lib.Checkpointer(ckpt_dir, keep=4, async_save=True)
  assert ckpt.steps() == [1, 2]
  ckpt.save(3, damage.tiny_state(3), damage.data_state(3))
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


def _cli(workdir, *flags):
  """Starts the smoke run of the command line (one CPU device)."""
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  return subprocess.Popen(
      [sys.executable, "-m", "sparsejax.pretrain",
       "--config=smoke", "--config.sparsity.baseline=False",
       "--config.outputs.export=False", "--config.progress=False",
       f"--workdir={workdir}", *flags], cwd=ROOT, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_during_async_save(proc, ckpt_dir, timeout=240):
  """`kill -9`s `proc` once two steps are saved while the save of a third is
  in flight; returns the checkpoint folder's names just before the kill."""
  deadline = time.monotonic() + timeout
  try:
    while True:
      names = sorted(os.listdir(ckpt_dir)) if os.path.isdir(ckpt_dir) else []
      done = [n for n in names if n.isdigit() and os.path.exists(
          os.path.join(ckpt_dir, n, integrity.MANIFEST))]
      if len(done) >= 2 and any(".orbax-checkpoint-tmp" in n for n in names):
        proc.send_signal(signal.SIGKILL)
        break
      assert proc.poll() is None, "the run ended before it could be killed"
      assert time.monotonic() < deadline, "no asynchronous save to kill"
      time.sleep(0.002)
  finally:
    proc.kill()
    proc.communicate()
  assert proc.returncode == -signal.SIGKILL
  return names


def _final(workdir):
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "sparse", "checkpoints"),
                               async_save=False)
  state, _ = ckpt.restore(12, None)
  ckpt.close()
  return state


@pytest.mark.system
def test_kill_during_async_save_then_resume_is_bit_exact(tmp_path):
  """`kill -9` while a checkpoint is being written; then the newest complete
  step is damaged (64 flipped bytes) and a torn line ends `metrics.jsonl`.
  The resumed run warns about both, falls back to the step before, and ends
  bit for bit equal to an uninterrupted run (run alongside the killed one)."""
  ref_dir, workdir = str(tmp_path / "ref"), str(tmp_path / "run")
  ckpt_dir = os.path.join(workdir, "sparse", "checkpoints")
  reference = _cli(ref_dir)
  killed_at = _kill_during_async_save(
      _cli(workdir, "--config.checkpoint.every=1"), ckpt_dir)
  steps = ckpt_lib.finished_steps(ckpt_dir)
  assert all(integrity.verify(os.path.join(ckpt_dir, str(s))) == []
             for s in steps), killed_at
  damage.flip(damage.data_files(os.path.join(ckpt_dir, str(steps[-1])))[0])
  metrics_path = os.path.join(workdir, "sparse", "metrics.jsonl")
  damage.append(metrics_path, b'{"step": 99, "lo')
  out, err = _cli(workdir).communicate(timeout=240)
  assert "finished" in out, err
  assert f"checkpoint step {steps[-1]} is damaged: " in err, err
  assert f"checksum mismatch (its bytes changed); resuming from step " \
         f"{steps[-2]}" in err, err
  assert "metrics.jsonl line" in err and "is torn" in err, err
  assert "Traceback" not in err, err
  ref_out, ref_err = reference.communicate(timeout=240)
  assert reference.returncode == 0, ref_err
  a, b = _final(ref_dir), _final(workdir)
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a),
                                                    jax.tree.leaves(b)))
  assert len(jax.tree.leaves(a)) == len(jax.tree.leaves(b)) > 10
  with open(os.path.join(workdir, "summary.json")) as f:
    results = json.load(f)["results"]["sparse"]
  with open(os.path.join(ref_dir, "summary.json")) as f:
    assert results["val_loss"] == json.load(f)["results"]["sparse"][
        "val_loss"]
  assert results["resumed_from"] == steps[-2]
  losses = [(r["step"], r["loss"])
            for d in (workdir, ref_dir) for r in metrics_lib.read_metrics(
                os.path.join(d, "sparse", "metrics.jsonl")) if "loss" in r]
  assert losses[:len(losses) // 2] == losses[len(losses) // 2:]
  print(f"killed at {killed_at}; resumed from {steps[-2]} (step {steps[-1]}"
        " damaged); bit-exact")
