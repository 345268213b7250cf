"""Tests on JAX's multi-controller runtime (several local CPU processes)."""

import json

from sparsejax.pretrain import launch


def launch_by_method(worker, methods, processes, devices):
  """Runs ``python worker *methods`` as ``processes`` x ``devices``; returns
  ``{method: [the JSON line of each process]}`` (a worker prints one line
  per method, in order, starting ``{"method"``)."""
  out = launch.launch_local([worker, *methods], processes, devices,
                            timeout_s=600)
  lines = [[json.loads(l) for l in r.output.splitlines()
            if l.startswith('{"method"')] for r in out]
  return {m: [ls[i] for ls in lines] for i, m in enumerate(methods)}


def two_against_one(worker, methods):
  """``{method: (the lines of 2 processes x 4 devices, the line of 1 process
  x 8)}``: one launch per layout runs every method."""
  two = launch_by_method(worker, methods, 2, 4)
  one = launch_by_method(worker, methods, 1, 8)
  return {m: (two[m], one[m][0]) for m in methods}
