"""Starts one program as several JAX processes on this machine.

Each process gets ``devices`` host CPU devices, the coordinator's address
(a free local port), the process count and its id through the environment
variables :mod:`sparsejax.pretrain.cluster` reads, and a bounded time-out;
all of them are killed if one fails or the time runs out. Each process's
last stdout line must be JSON; the list of those is returned, by process id.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
from typing import Any, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def run_processes(argv: Sequence[str], processes: int, devices: int,
                  timeout_s: float = 240.0, env: dict[str, str] | None = None,
                  cwd: str | os.PathLike | None = None) -> list[Any]:
  """Runs ``python argv...`` as ``processes`` processes; returns their JSON.

  With ``processes == 1`` no cluster variables are set (one ordinary
  process). Raises AssertionError naming the process, its exit code and the
  tail of its output when any process fails or times out.
  """
  port = free_port()
  base = dict(os.environ, **(env or {}))
  base["XLA_FLAGS"] = (
      f"--xla_force_host_platform_device_count={devices}")
  base["JAX_PLATFORMS"] = "cpu"
  base["PYTHONUNBUFFERED"] = "1"
  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
               "JAX_PROCESS_ID"):
    base.pop(name, None)
  procs, logs = [], []
  for pid in range(processes):
    penv = dict(base)
    if processes > 1:
      penv.update(JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                  JAX_NUM_PROCESSES=str(processes), JAX_PROCESS_ID=str(pid))
    log = open(_log_path(port, pid), "w+")
    logs.append(log)
    procs.append(subprocess.Popen(
        [sys.executable, *argv], env=penv, cwd=cwd or ROOT, stdout=log,
        stderr=subprocess.STDOUT, text=True))
  deadline = time.monotonic() + timeout_s
  failed = None
  try:
    while any(p.poll() is None for p in procs):
      bad = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
      if bad:
        failed = bad[0]
        break
      if time.monotonic() > deadline:
        failed = "timeout"
        break
      time.sleep(0.05)
    else:
      bad = [i for i, p in enumerate(procs) if p.returncode != 0]
      failed = bad[0] if bad else None
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.wait()
  outputs = []
  for log in logs:
    log.seek(0)
    outputs.append(log.read())
    log.close()
    os.unlink(log.name)
  if failed is not None:
    which = (f"timed out after {timeout_s:g} s" if failed == "timeout" else
             f"process {failed} exited with {procs[failed].returncode}")
    tails = "\n".join(f"--- process {i} ---\n{out[-3000:]}"
                      for i, out in enumerate(outputs))
    raise AssertionError(f"{' '.join(argv)}: {which}\n{tails}")
  return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


def _log_path(port: int, pid: int) -> str:
  return os.path.join(os.environ.get("TMPDIR", "/tmp"),
                      f"sparsejax-mp-{os.getpid()}-{port}-{pid}.log")
