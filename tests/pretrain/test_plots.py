"""The schedule plot's curves: mask sparsity apart from what the forward pass
uses, phase boundaries where the phase changes."""

import numpy as np
import pytest

import sparsejax as sj
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import plan as plan_lib
from sparsejax.pretrain import plots, report


def _table(decay):
  sp = sj.progressive_nm([sj.Rule(".*", sj.NM(2, 4))], total_steps=40,
                         dense_steps=10, finetune_steps=10, decay=decay)
  steps = np.arange(41)
  return steps, report.schedule_table(sp, sp.rules, steps)


def test_forward_sparsity_counts_beta_scaled_entries_as_present():
  steps, table = _table("linear")
  series = plots.schedule_series(table)
  mask, forward = series["mask_sparsity"], series["forward_sparsity"]
  beta = table["beta"]
  assert np.all(mask[:10] == 0) and mask[-1] == 0.5
  # While beta > 0 the dropped entries are still used: nothing is sparse.
  assert np.all(forward[beta > 0] == 0)
  assert np.all(forward[(beta == 0) & (table["phase"] > 0)] ==
                mask[(beta == 0) & (table["phase"] > 0)])
  assert np.all(forward <= mask)


def test_phase_boundaries_mark_the_sparse_phase_and_the_finetune():
  steps, table = _table(None)
  marks = plots.phase_boundaries(steps, table["phase"])
  assert [label for _, label in marks] == [
      "sparse phase starts", "hard-mask fine-tune starts"]
  first, second = (step for step, _ in marks)
  assert table["phase"][first - 1] == 0 and table["phase"][first] == 1
  assert table["phase"][second - 1] == 1 and table["phase"][second] == 2


def test_schedule_plot_is_written(tmp_path):
  steps, table = _table("linear")
  path = tmp_path / "schedule.png"
  assert plots.plot_schedule(
      steps, plots.schedule_series(table), path,
      boundaries=plots.phase_boundaries(steps, table["phase"]))
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("method", [
    "progressive_nm", "ste", "srste", "sste", "rigl", "gradual_magnitude",
    "set_sparse", "static_random"])
def test_every_method_has_a_schedule_table(method):
  # The pretraining loop asks every sparse arm for its schedule table (the
  # metrics and plots use it); methods without an N:M schedule get constants.
  cfg = config_lib.get_config()
  cfg.sparsity.method = method
  if method in ("rigl", "gradual_magnitude", "set_sparse", "static_random"):
    cfg.sparsity.rules = config_lib.ALL_BLOCK_KERNELS + "=0.9"
  sp = plan_lib.make_sparsifier(cfg)
  rules = config_lib.sparsity_rules(cfg)
  table = report.schedule_table(sp, rules, np.arange(5))
  if any(isinstance(r.pattern, sj.NM) for r in rules):
    assert table["n"].shape == (5,) and table["m"].shape == (5,)
  else:
    assert table == {}
