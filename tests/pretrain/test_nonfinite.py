"""Non-finite training: a bad step is skipped inside the jitted step; too
many stop the run (exit 3) with the last good checkpoint kept and nothing
exported or reported finished."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.pretrain import checkpoint as ckpt_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import data as data_lib
from sparsejax.pretrain import pipeline
from sparsejax.pretrain import export as export_lib
from sparsejax.pretrain import plan as plan_lib
from sparsejax.pretrain import recipes
from sparsejax.pretrain import step as step_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SMOKE = recipes.recipe_path("smoke")


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b)))


@pytest.mark.system
def test_a_nan_batch_is_skipped_and_training_continues():
  cfg = config_lib.load_config_file(SMOKE)
  cfg.sparsity.baseline = False
  (arm,) = plan_lib.plan(cfg, jax.devices()[:1])
  step_fn = step_lib.make_train_step(arm, plan_lib.learning_rate(cfg))
  state = step_lib.init_state(arm)
  batches = pipeline.train_iterator(pipeline.train_dataset(
      arm.corpus.train, batch_size=cfg.data.batch_size, seed=cfg.seed))

  def batch():
    return next(batches)

  def run(state, local):
    with arm.context():
      return step_fn(state, data_lib.global_batch(local, arm.batch_sharding))

  for _ in range(3):
    state, metrics = run(state, batch())
  assert int(metrics["skipped"]) == 0
  before = jax.device_get(state)
  # A token outside the vocabulary reads the embedding out of bounds: NaN.
  poisoned = batch()
  poisoned["inputs"] = np.full_like(poisoned["inputs"], 10 ** 6)
  state, metrics = run(state, poisoned)
  assert not np.isfinite(float(metrics["loss"]))
  assert int(state.step) == 4 and int(metrics["skipped"]) == 1
  assert _same(state.params, before.params)  # the update was not applied
  assert _same(state.opt_state, before.opt_state)  # masks, counters kept
  skips = jax.device_get(state.skips)
  assert int(skips.count) == 1 and int(skips.step) == 4
  assert not np.isfinite(skips.loss)
  state, metrics = run(state, batch())  # training goes on from there
  assert np.isfinite(float(metrics["loss"])) and int(metrics["skipped"]) == 1
  assert not _same(state.params, before.params)
  assert bool(step_lib.all_finite(state.params))


def test_export_refuses_non_finite_params(tmp_path):
  w = jnp.ones((4, 4)).at[1, 2].set(jnp.inf)
  with pytest.raises(ValueError, match="non-finite values at fc/kernel"):
    export_lib.export_weights({"fc": {"kernel": w}}, {"fc": {"kernel": True}},
                              [], str(tmp_path / "export"))
  assert not (tmp_path / "export").exists()


@pytest.mark.system
def test_a_diverging_run_stops_with_status_3_and_keeps_a_good_checkpoint(
    tmp_path):
  workdir = tmp_path / "run"
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "sparsejax.pretrain", "--config", SMOKE,
       "--workdir", str(workdir), "--config.optim.lr=1e30",
       "--config.train.max_nonfinite_steps=2", "--config.progress=False",
       "--config.sparsity.baseline=False"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 3, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, proc.stderr
  assert "Traceback" not in proc.stderr
  assert "train.max_nonfinite_steps=2" in errors[0] and "nan" in errors[0]
  assert "finished" not in proc.stdout + proc.stderr
  assert "reached" not in proc.stdout
  assert not (workdir / "export").exists()
  assert not (workdir / "summary.json").exists()
  # The last checkpoint saved holds the last good (finite) state; it loads.
  steps = ckpt_lib.finished_steps(workdir / "sparse" / "checkpoints")
  assert steps and f"step {steps[-1]})" in errors[0]
  cfg = config_lib.load_config_file(SMOKE)
  cfg.sparsity.baseline, cfg.optim.lr = False, 1e30
  cfg.train.max_nonfinite_steps = 2
  (arm,) = plan_lib.plan(cfg, jax.devices()[:1])
  ckpt = ckpt_lib.Checkpointer(workdir / "sparse" / "checkpoints")
  with arm.context():
    state, _ = ckpt.restore(steps[-1], arm.abstract_state)
  ckpt.close()
  assert int(state.step) == steps[-1]
  assert int(state.skips.count) <= 2
  assert bool(step_lib.all_finite(state.params))
