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
