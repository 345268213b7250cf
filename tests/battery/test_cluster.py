"""Bad multi-process settings: each one clear error before any compute."""

import pytest

from sparsejax.pretrain import cluster
from tests.battery.cases import case, check_case, params

A, N, I = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"


def env(**kw):
  full = {A: "localhost:1234", N: "2", I: "0"}
  full.update({k: v for k, v in kw.items()})
  return {k: v for k, v in full.items() if v is not None}


def from_env(**kw):
  return lambda: cluster.from_env(env(**kw))


CASES = [
    case("only-address", lambda: cluster.from_env({A: "localhost:1"}),
         cluster.ClusterError, N, I, "all three"),
    case("no-address", from_env(**{A: None}), cluster.ClusterError, A),
    case("no-process-id", from_env(**{I: None}), cluster.ClusterError, I),
    case("address-no-port", from_env(**{A: "localhost"}),
         cluster.ClusterError, A, "host:port"),
    case("address-port-text", from_env(**{A: "localhost:http"}),
         cluster.ClusterError, A, "host:port"),
    case("address-port-zero", from_env(**{A: "localhost:0"}),
         cluster.ClusterError, A, "1..65535"),
    case("address-port-huge", from_env(**{A: "localhost:70000"}),
         cluster.ClusterError, A, "1..65535"),
    case("address-no-host", from_env(**{A: ":1234"}), cluster.ClusterError,
         A),
    case("num-processes-text", from_env(**{N: "two"}), cluster.ClusterError,
         N, "integer"),
    case("num-processes-zero", from_env(**{N: "0"}), cluster.ClusterError,
         N, ">= 1"),
    case("process-id-text", from_env(**{I: "1.0"}), cluster.ClusterError, I,
         "integer"),
    case("process-id-negative", from_env(**{I: "-1"}), cluster.ClusterError,
         I, r"\[0, 2\)"),
    case("process-id-too-large", from_env(**{I: "2"}), cluster.ClusterError,
         I, r"\[0, 2\)"),
    case("coordinator-unreachable",
         lambda: cluster.wait_for_coordinator("localhost:1", 0.3),
         cluster.ClusterError, "localhost:1", "0.3 s"),
    case("join-unreachable",
         lambda: cluster.join(True, timeout_s=0.3,
                              environ=env(**{A: "localhost:1", I: "1"})),
         cluster.ClusterError, "coordinator", "localhost:1"),
    case("env-set-but-not-distributed",
         lambda: cluster.join(False, environ=env()), UserWarning,
         "distributed=False", A),
]


@pytest.mark.parametrize("c", params(CASES))
def test_bad_cluster_settings(c):
  check_case(c)
