"""Test configuration shared by the unit tests and the docstring examples.

Eight host devices are requested before JAX starts so that sharding tests can
build a 2x4 mesh on a CPU-only machine. Single-device code is unaffected.

On CPU the tests compile without LLVM's optimisation passes: the suite runs
thousands of small programs, where compiling dominates and running them
optimised saves nothing (about 30% less wall time, same results). A flag
already in ``XLA_FLAGS`` is kept; on an accelerator nothing is changed.

The run shares one persistent compilation cache, a fresh folder removed at
exit (unless ``JAX_COMPILATION_CACHE_DIR`` is set): tests that build the
same program (the same model's step, the pretraining job started in
subprocesses and in several JAX processes) compile it once. The xdist
workers and the subprocesses tests start inherit it (about 15% less wall
time on the slow parts of the suite).
"""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_TEST_FLAGS = {"xla_force_host_platform_device_count": "8"}
if os.environ["JAX_PLATFORMS"] == "cpu":
  _TEST_FLAGS.update(xla_backend_optimization_level="0",
                     xla_llvm_disable_expensive_passes="true")
for _flag, _value in _TEST_FLAGS.items():
  if _flag not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += f" --{_flag}={_value}"

if ("JAX_COMPILATION_CACHE_DIR" not in os.environ
    and "PYTEST_XDIST_WORKER" not in os.environ):
  _cache = tempfile.mkdtemp(prefix="sparsejax-tests-jax-cache-")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache,
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

import jax  # noqa: E402  (must come after XLA_FLAGS)
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
  import jax.numpy as jnp

  doctest_namespace.update(jax=jax, jnp=jnp, np=np)


@pytest.fixture(params=["eager", "jit"])
def maybe_jit(request):
  """Runs a function eagerly and under `jax.jit`; tests use both."""
  if request.param == "jit":
    return jax.jit
  return lambda f, **kw: f


def pytest_configure(config):
  config.addinivalue_line(
      "markers",
      "system: end-to-end test (CLI subprocess runs, whole training runs, "
      "several JAX processes, a wheel build); skipped when "
      "SPARSEJAX_SKIP_SYSTEM_TESTS=1")


def pytest_collection_modifyitems(config, items):
  """Skips `system` tests when SPARSEJAX_SKIP_SYSTEM_TESTS=1.

  CI runs them in one of its two legs only (see .ci/run), to stay within its
  time budget; by default they run.
  """
  if os.environ.get("SPARSEJAX_SKIP_SYSTEM_TESTS") != "1":
    return
  skip = pytest.mark.skip(reason="system test; SPARSEJAX_SKIP_SYSTEM_TESTS=1")
  for item in items:
    if "system" in item.keywords:
      item.add_marker(skip)
