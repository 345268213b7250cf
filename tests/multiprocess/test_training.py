"""Sparse training on JAX's multi-controller runtime: 2 processes x 4 CPU
devices against 1 process x 8, the same (data 2, model 4) mesh."""

import json
import pathlib

import numpy as np
import pytest

from sparsejax.pretrain import launch

WORKER = str(pathlib.Path(__file__).with_name("train_worker.py"))


def run_processes(argv, processes, devices):
  """The JSON each process printed last, by process id."""
  runs = launch.launch_local(argv, processes, devices, timeout_s=400)
  return [json.loads(r.output.strip().splitlines()[-1]) for r in runs]


@pytest.mark.parametrize("method", ["ste", "rigl"])
def test_two_processes_train_like_one(method):
  two = run_processes([WORKER, method], processes=2, devices=4)
  one, = run_processes([WORKER, method], processes=1, devices=8)
  assert [r["processes"] for r in two] == [2, 2]
  assert [r["devices"] for r in two] == [8, 8] and one["devices"] == 8
  # Every process sees the same global results.
  assert two[0]["losses"] == two[1]["losses"]
  assert two[0]["masks"] == two[1]["masks"]
  # Cross-process (gloo) reductions may sum in another order than the
  # in-process ones: losses agree to float rounding.
  np.testing.assert_allclose(two[0]["losses"], one["losses"], rtol=1e-5)
  assert one["losses"][-1] < one["losses"][0]
  # Masks: the same kept counts everywhere, and the same entries.
  assert {k: v[1] for k, v in two[0]["masks"].items()} == {
      k: v[1] for k, v in one["masks"].items()}
  assert two[0]["masks"] == one["masks"]
  # An N:M mask refresh is local to each shard, across processes as well;
  # a per-tensor unstructured one reduces its threshold, the same way in
  # both layouts.
  assert two[0]["nm_refresh_collectives"] == []
  assert one["nm_refresh_collectives"] == []
  assert two[0]["refresh_collectives"] == one["refresh_collectives"]
