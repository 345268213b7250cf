"""Checkpoints of the pretraining loop: bit-exact resume, atomicity, keep-k,
restore onto another mesh, refusal of an incompatible workdir."""

import os
import shutil

import jax
import numpy as np
import pytest

import sparsejax as sj
from sparsejax.pretrain import checkpoint as ckpt_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import loop
from sparsejax.pretrain import metrics as metrics_lib
from sparsejax.pretrain import plan as plan_lib
from sparsejax.pretrain import recipes
from sparsejax.pretrain import step as step_lib

SMOKE = recipes.recipe_path("smoke")


def _smoke(**overrides):
  cfg = config_lib.load_config_file(SMOKE)
  cfg.sparsity.baseline = False
  cfg.outputs.export = False
  cfg.progress = False
  for key, value in overrides.items():
    section, _, name = key.partition("__")
    if name:
      cfg[section][name] = value
    else:
      cfg[section] = value
  return cfg


def _leaves_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(la, lb))


def _snapshot(root):
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      p = os.path.join(d, f)
      st = os.stat(p)
      with open(p, "rb") as fh:
        out[p] = (st.st_mtime_ns, fh.read())
  return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("full"))
  out = loop.run(_smoke(), workdir, devices=jax.devices()[:1], report=False)
  return workdir, out


@pytest.mark.system
def test_resume_is_bit_exact(uninterrupted, tmp_path):
  """k steps, interruption, resume to N == N steps uninterrupted, bit for bit.

  A partially written checkpoint (a save killed midway) lies in the folder
  when the run resumes; it is ignored.
  """
  full_dir, full = uninterrupted
  workdir = str(tmp_path)
  first = loop.run(_smoke(), workdir, devices=jax.devices()[:1], stop_at=6,
                   report=False)
  assert not first["finished"]
  ckpt_dir = os.path.join(workdir, "sparse", "checkpoints")
  assert ckpt_lib.finished_steps(ckpt_dir)[-1] == 6
  # A save of step 8 killed midway: orbax's temporary folder, half written.
  partial = os.path.join(ckpt_dir, "8.orbax-checkpoint-tmp")
  os.makedirs(os.path.join(partial, "state.orbax-checkpoint-tmp"))
  with open(os.path.join(partial, "state.orbax-checkpoint-tmp", "garbage"),
            "wb") as f:
    f.write(b"\x00" * 100)
  assert ckpt_lib.finished_steps(ckpt_dir)[-1] == 6
  second = loop.run(_smoke(), workdir, devices=jax.devices()[:1],
                    report=False)
  assert second["finished"]
  assert second["arms"]["sparse"]["resumed_from"] == 6
  a = full["arms"]["sparse"]["state"]
  b = second["arms"]["sparse"]["state"]
  assert int(a.step) == int(b.step) == 12
  assert _leaves_equal(a.params, b.params)
  assert _leaves_equal(a.opt_state, b.opt_state)  # masks, moments, step
  assert _leaves_equal(a.rng, b.rng)
  assert second["results"]["sparse"]["val_loss"] == full["results"][
      "sparse"]["val_loss"]
  # The metrics of the resumed run hold every step once, equal to the full
  # run's losses.
  recs = metrics_lib.read_metrics(os.path.join(workdir, "sparse", "metrics.jsonl"))
  ref = metrics_lib.read_metrics(os.path.join(full_dir, "sparse",
                                          "metrics.jsonl"))
  losses = [(r["step"], r["loss"]) for r in recs if "loss" in r]
  assert losses == [(r["step"], r["loss"]) for r in ref if "loss" in r]


def test_keep_last_k(uninterrupted, tmp_path):
  workdir, _ = uninterrupted
  steps = ckpt_lib.finished_steps(os.path.join(workdir, "sparse",
                                               "checkpoints"))
  assert steps == [8, 12]  # every 4 steps, keep 2
  ckpt = ckpt_lib.Checkpointer(tmp_path, keep=3, async_save=True)
  for step in range(1, 6):
    ckpt.save(step, {"x": jax.numpy.full((4,), step)},
              {"iterator": {"next_index": step}, "fingerprint": {}})
  ckpt.close()
  assert ckpt_lib.finished_steps(tmp_path) == [3, 4, 5]


def test_restore_onto_a_different_mesh(uninterrupted):
  """Written on 1 device, restored on a (2, 2, 2) mesh of 8 devices."""
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices")
  workdir, full = uninterrupted
  cfg = _smoke(mesh__data=2, mesh__fsdp=2, mesh__tensor=2)
  arm = plan_lib.plan(cfg)[0]
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "sparse", "checkpoints"),
                               keep=2, async_save=False)
  with arm.context():
    state, data_state = ckpt.restore(12, arm.abstract_state)
  ckpt.close()
  assert data_state["iterator"] == {"next_index": 12}
  ref = full["arms"]["sparse"]["state"]
  assert _leaves_equal(state.params, ref.params)
  assert _leaves_equal(state.opt_state, ref.opt_state)
  kernel = state.params["block_0"]["mlp"]["fc1"]["kernel"]
  assert len(kernel.sharding.device_set) == 8
  assert tuple(kernel.sharding.spec) == ("fsdp", "tensor")
  mask = sj.sparsity_state(state.opt_state).masks["block_0"]["mlp"][
      "fc1"]["kernel"]
  assert mask.sharding.is_equivalent_to(kernel.sharding, 2)


@pytest.mark.parametrize("change", ["model", "sparsity", "optim"])
def test_incompatible_workdir_refused_before_compute(uninterrupted, change,
                                                     monkeypatch):
  workdir, _ = uninterrupted
  before = _snapshot(workdir)
  cfg = _smoke()
  if change == "model":
    cfg.model.d_model = 64
  elif change == "sparsity":
    cfg.sparsity.rules = ".*mlp.*kernel=1:4"
  else:
    cfg.optim.lr = 1e-2
  compiled = []
  monkeypatch.setattr(step_lib, "init_state",
                      lambda *a: compiled.append(a) or 1 / 0)
  with pytest.raises(config_lib.ConfigError, match="different config"):
    loop.run(cfg, workdir, devices=jax.devices()[:1], report=False)
  assert not compiled
  assert _snapshot(workdir) == before


def test_compatible_changes_are_accepted(uninterrupted):
  """Logging, evaluation and outputs may change between run and resume."""
  workdir, _ = uninterrupted
  cfg = _smoke()
  cfg.log_every = 3
  cfg.eval.max_windows = 8
  cfg.mesh.data = 1
  cfg.sparsity.baseline = True  # adds the dense arm; the sparse one resumes
  assert ckpt_lib.check_workdir(workdir, cfg)


def test_checkpoints_without_a_config_are_refused(uninterrupted, tmp_path):
  workdir, _ = uninterrupted
  shutil.copytree(os.path.join(workdir, "sparse"), tmp_path / "sparse")
  before = _snapshot(tmp_path)
  with pytest.raises(config_lib.ConfigError, match="no config.json"):
    loop.run(_smoke(), str(tmp_path), devices=jax.devices()[:1],
             report=False)
  assert _snapshot(tmp_path) == before
