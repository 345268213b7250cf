"""One-shot pruning with the calibration rows spread over 2 processes x 4
devices gives the pruned weights and masks of 1 process x 8 holding every
row: the statistics (Wanda's input norms, SparseGPT's Hessian) are reduced
over the data axis across processes."""

import pathlib

import numpy as np
import pytest

from tests.multiprocess import two_against_one

pytestmark = pytest.mark.system

WORKER = str(pathlib.Path(__file__).with_name("oneshot_worker.py"))
METHODS = ("wanda", "sparsegpt")


@pytest.fixture(scope="module")
def runs():
  """{method: (results of the 2 processes, result of the 1 process)}."""
  return two_against_one(WORKER, METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_calibration_across_processes_prunes_like_one(runs, method):
  two, one = runs[method]
  assert [r["method"] for r in two] == [method, method] == [one["method"]] * 2
  assert [r["processes"] for r in two] == [2, 2] and one["processes"] == 1
  assert [r["rows"] for r in two] == [one["rows"] // 2] * 2
  # Every process holds the same global result.
  assert two[0]["params"] == two[1]["params"]
  assert two[0]["masks"] == two[1]["masks"]
  # The same masks as one process holding every row, bit for bit; the same
  # weights up to float rounding (gloo may sum in another order).
  assert two[0]["masks"] == one["masks"]
  assert two[0]["pruned"] == one["pruned"] and one["pruned"]
  for path in one["pruned"]:
    np.testing.assert_allclose(two[0]["params"][path], one["params"][path],
                               rtol=1e-5, atol=1e-6, err_msg=path)
