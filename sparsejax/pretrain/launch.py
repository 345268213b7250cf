"""Runs one program as several JAX processes on this machine.

The multi-host code path (one process per host, a coordinator, collectives
across processes) can be exercised on a single machine: each process gets
``devices`` host CPU devices, a free local coordinator port, the process
count and its id through the variables :mod:`sparsejax.pretrain.cluster`
reads. If one process fails or the time-out passes, all are stopped.

From the command line (everything after ``--`` is the Python command line of
each process)::

  python -m sparsejax.pretrain.launch --processes 2 --devices 4 -- \\
      -m sparsejax.pretrain --config.distributed=True --workdir runs/mp

Example:
  >>> runs = launch_local(["-c", "print('hi')"], processes=1, devices=1)
  >>> runs[0].returncode, runs[0].output.strip()
  (0, 'hi')
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Mapping, Sequence

__all__ = ["ProcessRun", "LaunchError", "free_port", "launch_local", "main"]

_CLUSTER_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                 "JAX_PROCESS_ID")


class LaunchError(RuntimeError):
  """A process failed or the launch timed out; holds every process's run."""

  def __init__(self, message: str, runs: list["ProcessRun"]):
    super().__init__(message)
    self.runs = runs


@dataclasses.dataclass(frozen=True)
class ProcessRun:
  """One finished process: its id, exit code (None if killed) and output."""

  process_id: int
  returncode: int | None
  output: str


def free_port() -> int:
  """A TCP port that is free on this machine now.

  Example:
    >>> 0 < free_port() < 65536
    True
  """
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _environments(processes: int, devices: int,
                  env: Mapping[str, str] | None) -> list[dict[str, str]]:
  base = dict(os.environ, **(env or {}))
  base["XLA_FLAGS"] = " ".join(
      [f for f in base.get("XLA_FLAGS", "").split()
       if "xla_force_host_platform_device_count" not in f] +
      [f"--xla_force_host_platform_device_count={devices}"])
  base.setdefault("JAX_PLATFORMS", "cpu")
  base["PYTHONUNBUFFERED"] = "1"
  for name in _CLUSTER_VARS:
    base.pop(name, None)
  if processes == 1:
    return [base]
  address = f"localhost:{free_port()}"
  return [dict(base, JAX_COORDINATOR_ADDRESS=address,
               JAX_NUM_PROCESSES=str(processes), JAX_PROCESS_ID=str(pid))
          for pid in range(processes)]


def launch_local(argv: Sequence[str], processes: int, devices: int,
                 timeout_s: float = 300.0,
                 env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike | None = None,
                 echo: bool = False) -> list[ProcessRun]:
  """Runs ``python *argv`` as ``processes`` processes of one JAX cluster.

  Args:
    argv: The Python command line of every process (without ``python``).
    processes: How many processes; 1 runs one ordinary process (no cluster
      variables).
    devices: Host CPU devices per process.
    timeout_s: Wall-clock limit for all of them together.
    env: Extra environment variables.
    cwd: Working directory (default: the current one).
    echo: Also print each process's output, prefixed with ``[pN]``, when
      it finishes.

  Returns:
    One :class:`ProcessRun` per process, by process id.

  Raises:
    LaunchError: A process exited non-zero or the time ran out; every other
      process is killed, and the error holds all outputs.
  """
  if processes < 1 or devices < 1:
    raise ValueError(f"processes and devices must be >= 1; got {processes} "
                     f"and {devices}.")
  procs, logs = [], []
  try:
    for penv in _environments(processes, devices, env):
      log = tempfile.TemporaryFile("w+")
      logs.append(log)
      procs.append(subprocess.Popen(
          [sys.executable, *argv], env=penv, cwd=cwd, stdout=log,
          stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + timeout_s
    failure = None
    while failure is None and any(p.poll() is None for p in procs):
      bad = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
      if bad:
        failure = f"process {bad[0]} exited with {procs[bad[0]].returncode}"
      elif time.monotonic() > deadline:
        failure = f"timed out after {timeout_s:g} s"
      else:
        time.sleep(0.05)
    if failure is None:
      bad = [i for i, p in enumerate(procs) if p.returncode != 0]
      if bad:
        failure = f"process {bad[0]} exited with {procs[bad[0]].returncode}"
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.wait()
  runs = []
  for pid, (p, log) in enumerate(zip(procs, logs)):
    log.seek(0)
    runs.append(ProcessRun(pid, p.returncode, log.read()))
    log.close()
  if echo:
    for run in runs:
      for line in run.output.splitlines():
        print(f"[p{run.process_id}] {line}")
  if failure is not None:
    tails = "\n".join(f"--- process {r.process_id} (exit {r.returncode}) "
                      f"---\n{r.output[-3000:]}" for r in runs)
    raise LaunchError(f"python {' '.join(argv)}: {failure}\n{tails}", runs)
  return runs


def main(argv: Sequence[str] | None = None) -> int:
  """``python -m sparsejax.pretrain.launch -n 2 -d 4 -- <python args>``."""
  parser = argparse.ArgumentParser(
      prog="python -m sparsejax.pretrain.launch",
      description="Run a Python command as several JAX processes on this "
                  "machine (CPU devices, a local coordinator).")
  parser.add_argument("-n", "--processes", type=int, default=2)
  parser.add_argument("-d", "--devices", type=int, default=4,
                      help="host CPU devices per process")
  parser.add_argument("--timeout", type=float, default=3600.0,
                      help="seconds for all processes together")
  parser.add_argument("command", nargs=argparse.REMAINDER,
                      help="after --: the Python command line")
  args = parser.parse_args(argv)
  command = (args.command[1:] if args.command[:1] == ["--"]
             else args.command)
  if not command:
    parser.error("give the Python command line after --")
  if args.processes < 1 or args.devices < 1:
    parser.error("--processes and --devices must be >= 1")
  try:
    launch_local(command, args.processes, args.devices, args.timeout,
                 echo=True)
  except LaunchError as e:  # The outputs were echoed already.
    print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
