"""The pretraining job across processes, and the elastic resume both ways: a
run preempted in 2 processes x 4 devices resumes in 1 process x 8, one
preempted in 1 x 8 resumes in 2 x 4, and both follow the trajectory of an
uninterrupted 8-device run. The outputs of a 2-process run (export, summary,
metrics) are written once, by process 0, and every process returns the same
numbers."""

import json
import pathlib

import numpy as np
import pytest

from sparsejax.pretrain import launch

pytestmark = pytest.mark.system

WORKER = str(pathlib.Path(__file__).with_name("pretrain_worker.py"))
OUTPUTS = {"export/weights.npz", "export/masks_packed.npz",
           "export/manifest.json", "summary.json"}


def _run(workdir, stop_at, processes, devices):
  runs = launch.launch_local([WORKER, str(workdir), str(stop_at)], processes,
                             devices, timeout_s=600)
  return [json.loads(r.output.strip().splitlines()[-1]) for r in runs]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted run in 1 process x 8 devices."""
  out, = _run(tmp_path_factory.mktemp("reference"), 0, processes=1,
              devices=8)
  assert out["finished"] and out["resumed_from"] is None
  return out


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
  """Preempted at step 6 in 1 process x 8, resumed in 2 processes x 4."""
  workdir = tmp_path_factory.mktemp("grown")
  first, = _run(workdir, 6, processes=1, devices=8)
  assert first["processes"] == 1 and not first["finished"]
  return _run(workdir, 0, processes=2, devices=4)


def _same_trajectory(resumed, reference):
  # Reductions across processes may round differently from in-process ones.
  assert resumed["losses"].keys() == reference["losses"].keys()
  np.testing.assert_allclose(list(resumed["losses"].values()),
                             list(reference["losses"].values()), rtol=1e-4)
  np.testing.assert_allclose(resumed["val_loss"], reference["val_loss"],
                             rtol=1e-4)


def test_preempted_in_two_processes_resumes_in_one(tmp_path, reference):
  first = _run(tmp_path / "elastic", 6, processes=2, devices=4)
  assert [r["processes"] for r in first] == [2, 2]
  assert not any(r["finished"] for r in first)
  resumed, = _run(tmp_path / "elastic", 0, processes=1, devices=8)
  assert resumed["finished"] and resumed["resumed_from"] == 6
  _same_trajectory(resumed, reference)


def test_preempted_in_one_process_resumes_in_two(grown, reference):
  assert [r["processes"] for r in grown] == [2, 2]
  assert [r["devices"] for r in grown] == [8, 8]
  assert all(r["finished"] and r["resumed_from"] == 6 for r in grown)
  # The resumed steps are logged once (by process 0) and read by both.
  assert grown[0]["losses"] == grown[1]["losses"]
  _same_trajectory(grown[0], reference)


def test_two_processes_write_outputs_once_and_agree(grown):
  main, other = grown
  # Process 0 writes the export, the summary and the metrics, each file
  # once; process 1 writes nothing outside its checkpoint shards.
  assert other["writes"] == {}
  for name in OUTPUTS:
    assert main["writes"].get(name) == 1, (name, main["writes"])
  # Nothing else: no per-process copies.
  assert set(main["writes"]) <= OUTPUTS | {
      "config.json.tmp", "sparse/metrics.jsonl", "sparse/metrics.jsonl.tmp"}
  # Both processes return the same numbers.
  assert main["val_loss"] == other["val_loss"]
  assert main["results"] == other["results"]
  assert main["layers"] == other["layers"] and main["layers"]
