"""The pretraining job across processes, and the elastic resume: a run
preempted in 2 processes x 4 devices resumes in 1 process x 8 and follows
the trajectory of an uninterrupted 8-device run."""

import json
import pathlib

import numpy as np
import pytest

from sparsejax.pretrain import launch

pytestmark = pytest.mark.system

WORKER = str(pathlib.Path(__file__).with_name("pretrain_worker.py"))


def _run(workdir, stop_at, processes, devices):
  runs = launch.launch_local([WORKER, str(workdir), str(stop_at)], processes,
                             devices, timeout_s=600)
  return [json.loads(r.output.strip().splitlines()[-1]) for r in runs]


def test_preempted_in_two_processes_resumes_in_one(tmp_path):
  first = _run(tmp_path / "elastic", 6, processes=2, devices=4)
  assert [r["processes"] for r in first] == [2, 2]
  assert not any(r["finished"] for r in first)
  resumed, = _run(tmp_path / "elastic", 0, processes=1, devices=8)
  assert resumed["finished"] and resumed["resumed_from"] == 6
  reference, = _run(tmp_path / "reference", 0, processes=1, devices=8)
  assert reference["finished"] and reference["resumed_from"] is None
  # The resumed run continues the same trajectory (reductions across
  # processes may round differently from in-process ones).
  assert resumed["losses"].keys() == reference["losses"].keys()
  np.testing.assert_allclose(list(resumed["losses"].values()),
                             list(reference["losses"].values()), rtol=1e-4)
  np.testing.assert_allclose(resumed["val_loss"], reference["val_loss"],
                             rtol=1e-4)
