"""Joining JAX's multi-controller runtime: one process per host, one program.

With ``distributed=True`` every process calls :func:`join` before anything
touches a device. Two ways to say where the cluster is:

* **Explicit** (any machine, several processes on one CPU machine included):
  set ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0),
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` in every process. The CPU
  backend's collectives are switched to gloo first, so CPU processes reduce
  across each other; GPUs and TPUs keep their own collectives.
* **Detected**: with none of the three set, JAX finds the cluster itself on
  Cloud TPU, SLURM, Open MPI and Kubernetes.

Every mistake is one clear error before any compute: a variable missing or
malformed, a process id out of range, a coordinator that cannot be reached
within the time-out (naming the address), where JAX itself would abort the
process from C++ without a Python traceback.

Example (one process, nothing to join):
  >>> join(False)
  False
"""
from __future__ import annotations

import dataclasses
import os
import socket
import time
import warnings
from typing import Mapping

import jax

__all__ = ["ClusterError", "LocalCluster", "from_env", "join",
           "wait_for_coordinator"]

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
_ENV = (ENV_ADDRESS, ENV_NUM_PROCESSES, ENV_PROCESS_ID)


class ClusterError(RuntimeError):
  """The multi-process runtime cannot be joined; the message says why."""


@dataclasses.dataclass(frozen=True)
class LocalCluster:
  """An explicitly described cluster: the coordinator and this process."""

  address: str
  num_processes: int
  process_id: int

  @property
  def host_port(self) -> tuple[str, int]:
    host, _, port = self.address.rpartition(":")
    return host.strip("[]"), int(port)


def _int_var(environ: Mapping[str, str], name: str) -> int:
  text = environ[name].strip()
  try:
    return int(text)
  except ValueError:
    raise ClusterError(f"{name} must be an integer; got {text!r}.") from None


def from_env(environ: Mapping[str, str] | None = None
             ) -> LocalCluster | None:
  """The cluster the environment describes, or ``None`` when it names none.

  Args:
    environ: The environment (``os.environ`` by default).

  Returns:
    A :class:`LocalCluster` when all three variables are set, ``None`` when
    none is.

  Raises:
    ClusterError: Some but not all are set, or one is malformed or out of
      range.

  Example:
    >>> from_env({"JAX_COORDINATOR_ADDRESS": "localhost:1234",
    ...           "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"})
    LocalCluster(address='localhost:1234', num_processes=2, process_id=1)
    >>> from_env({}) is None
    True
    >>> from_env({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2",
    ...           "JAX_COORDINATOR_ADDRESS": "localhost:1234"})
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.cluster.ClusterError: JAX_PROCESS_ID must be in [0, 2) (JAX_NUM_PROCESSES is 2); got 2.
  """
  environ = os.environ if environ is None else environ
  present = [n for n in _ENV if environ.get(n, "").strip()]
  if not present:
    return None
  missing = [n for n in _ENV if n not in present]
  if missing:
    raise ClusterError(
        f"{', '.join(present)} set but {', '.join(missing)} not: set all "
        f"three of {', '.join(_ENV)} (or none, to let JAX detect the cluster "
        "on Cloud TPU or SLURM).")
  address = environ[ENV_ADDRESS].strip()
  host, sep, port = address.rpartition(":")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ClusterError(
        f"{ENV_ADDRESS} must be host:port with a port in 1..65535; got "
        f"{address!r}.")
  num = _int_var(environ, ENV_NUM_PROCESSES)
  pid = _int_var(environ, ENV_PROCESS_ID)
  if num < 1:
    raise ClusterError(f"{ENV_NUM_PROCESSES} must be >= 1; got {num}.")
  if not 0 <= pid < num:
    raise ClusterError(f"{ENV_PROCESS_ID} must be in [0, {num}) "
                       f"({ENV_NUM_PROCESSES} is {num}); got {pid}.")
  return LocalCluster(address, num, pid)


def wait_for_coordinator(address: str, timeout_s: float) -> None:
  """Waits until ``host:port`` accepts a TCP connection.

  Raises:
    ClusterError: It did not within ``timeout_s`` seconds (the message names
      the address).

  Example:
    >>> wait_for_coordinator("localhost:1", 0.2)
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.cluster.ClusterError: could not reach the coordinator at localhost:1 within 0.2 s (...
  """
  host, _, port = address.rpartition(":")
  deadline = time.monotonic() + timeout_s
  last = None
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)),
                                    timeout=max(0.1, min(2.0, timeout_s))):
        return
    except OSError as e:
      last = e
    if time.monotonic() >= deadline:
      raise ClusterError(
          f"could not reach the coordinator at {address} within "
          f"{timeout_s:g} s ({last}); is process 0 running, and is "
          f"{ENV_ADDRESS} its host:port?")
    time.sleep(0.1)


def _check_bindable(address: str) -> None:
  host, port = LocalCluster(address, 1, 0).host_port
  try:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_STREAM) as s:
      s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      s.bind(("" if host in ("localhost", "0.0.0.0") else host, port))
  except OSError as e:
    raise ClusterError(
        f"process 0 cannot serve the coordinator at {address}: {e}. Use a "
        f"free port on this host in {ENV_ADDRESS}.") from None


def join(distributed: bool, timeout_s: float = 120.0,
         environ: Mapping[str, str] | None = None) -> bool:
  """Joins the multi-process runtime when ``distributed`` is true.

  Must run before anything uses a device.

  Args:
    distributed: The config's ``distributed``; ``False`` joins nothing.
    timeout_s: How long to wait for the coordinator and for every process
      to register.
    environ: The environment (``os.environ`` by default).

  Returns:
    Whether this process is now part of a multi-process runtime.

  Raises:
    ClusterError: The environment is incomplete or malformed, the
      coordinator cannot be reached, or JAX cannot detect a cluster.

  Example:
    >>> join(False, environ={})
    False
  """
  environ = os.environ if environ is None else environ
  cluster = from_env(environ)
  if not distributed:
    if cluster is not None:
      warnings.warn(
          f"{ENV_ADDRESS} is set but distributed=False: running as one "
          "process; set --config.distributed=True to join the cluster.",
          stacklevel=2)
    return False
  if jax.distributed.is_initialized():
    return True
  if cluster is None:
    try:
      jax.distributed.initialize(initialization_timeout=int(timeout_s))
    except (ValueError, RuntimeError) as e:
      raise ClusterError(
          f"distributed=True but JAX found no cluster to join ({e}). On "
          f"your own machines set {', '.join(_ENV)} in every process.") from e
    return True
  if cluster.process_id == 0:
    _check_bindable(cluster.address)
  else:
    wait_for_coordinator(cluster.address, timeout_s)
  # gloo gives the CPU backend cross-process collectives; the default has
  # none. Accelerator backends are not affected.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator_address=cluster.address,
      num_processes=cluster.num_processes, process_id=cluster.process_id,
      initialization_timeout=int(timeout_s))
  return True
