"""The one-command device check: its dry mode, its table rows, the native switch."""
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import pytest

from pallas_kernels import _testing
from pallas_kernels import device_check
from pallas_kernels import dispatch
from pallas_kernels.block_sparse import bench_block_list as bl_bench
from pallas_kernels.block_sparse import block_list_api as bl_api
from pallas_kernels.formats import block_list_from_mask

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_kernel_implementations_switch(monkeypatch):
  cands = {"pallas_tpu": "tpu", "pallas_gpu": "gpu"}
  monkeypatch.delenv(_testing.ENV_NATIVE, raising=False)
  assert _testing.kernel_implementations(cands, "cpu") == list(cands)
  monkeypatch.setenv(_testing.ENV_NATIVE, "1")
  assert _testing.kernel_implementations(cands, "gpu") == ["pallas_gpu"]
  assert _testing.kernel_implementations(cands, "tpu") == ["pallas_tpu"]
  with pytest.raises(RuntimeError, match="natively"):
    _testing.kernel_implementations(cands, "cpu")


def test_dry_run_prints_the_table_and_writes_rows(tmp_path):
  table = tmp_path / "table.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop(_testing.ENV_NATIVE, None)
  out = subprocess.run(
      [sys.executable, "-m", "pallas_kernels.device_check", "--dry",
       "--write-table", str(table)], cwd=ROOT, env=env, capture_output=True,
      text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stdout + out.stderr
  text = out.stdout
  assert "jax=" in text and "jaxlib=" in text
  assert "tests: PASSED" in text
  for impl in ("xla", "tpu*", "triton*", "triton_gather*"):
    assert f"bfloat16 {impl} " in text
  for impl in ("xla", "xla_blocks", "tpu*", "triton*"):
    assert f"block_list_dsd b64x64/d0.25   256x256     1     bfloat16 {impl} " \
        in text
  assert "2:4: target >= 1.3x (bound 1.78x)" in text
  assert "1:16: target >= 6.0x (bound 12.80x)" in text
  rows = dispatch.load_table(table)
  # Only natively run rows are kept: on CPU those of the XLA paths.
  nm = [r for r in rows if r["op"] == "nm"]
  blk = [r for r in rows if r["op"] == "block_list_dsd"]
  assert len(nm) + len(blk) == len(rows)
  assert nm and {r["implementation"] for r in nm} == {"xla"}
  assert {r["implementation"] for r in blk} == {"xla", "xla_blocks"}
  assert {r["batch"] for r in rows} == {1}
  assert {r["pattern"] for r in nm} == {"2:4", "1:16"}
  assert {r["pattern"] for r in blk} == {"b64x64/d0.25"}
  assert all(r["device_kind"] == "cpu" and r["us"] > 0 for r in rows)


def test_device_plan_matches_the_issue():
  p = device_check.plan(dry=False)
  assert p.shapes == ((4096, 4096), (8192, 8192))
  assert p.batches == (1, 8, 16) and p.dtype == "bfloat16"
  assert p.patterns == ((2, 4), (1, 8), (1, 16)) and p.reps >= 20
  assert p.tests == ("tests/pallas_kernels",)
  for platform, sizes in (("gpu", (128, 64)), ("tpu", (128, 64, 256))):
    p = device_check.plan(dry=False, platform=platform)
    assert p.block_sizes == sizes and p.densities == (0.1, 0.25)
    assert p.block_batches == (1, 16, 2048)
  assert set(device_check.SUITES) == {"nm", "block_list"}


def test_table_rows_skip_interpreted_and_unbucketed():
  base = dict(device_kind="NVIDIA H200", op="nm", pattern="1:8",
              dtype="bfloat16", k=4096, n=4096, batch=16,
              implementation="pallas_gpu", interpret=False, sparse_us=7.0,
              dense_us=28.0)
  rows = device_check.table_rows([base, dict(base, interpret=True),
                                  dict(base, batch=12)])
  assert rows == [dict(device_kind="NVIDIA H200", op="nm", pattern="1:8",
                       dtype="bfloat16", shape=[4096, 4096], batch=16,
                       implementation="pallas_gpu", us=7.0, dense_us=28.0)]
  assert dispatch.check_rows(rows) == rows


def test_ci_runs_the_dry_check_and_the_script_calls_it():
  assert "-m pallas_kernels.device_check --dry" in (ROOT / ".ci/run").read_text()
  script = ROOT / "benchmarks/device_check.sh"
  assert os.access(script, os.X_OK)
  assert "-m pallas_kernels.device_check" in script.read_text()


def test_a_failing_implementation_is_isolated_and_reported():
  lines = []

  def run(names):
    if "broken" in names:
      raise RuntimeError("Mosaic lowering failed\ndetails")
    return [{"implementation": n} for n in names]

  device_check._FAILURES.clear()
  rows = device_check._isolating_failures(run, ["xla", "broken"], "nm 2:4",
                                          lines.append)
  assert rows == [{"implementation": "xla"}]
  assert device_check._FAILURES == ["nm 2:4 broken"]
  assert any("broken: FAILED (RuntimeError: Mosaic lowering failed)" in l
             for l in lines)
  device_check._FAILURES.clear()


def test_block_list_rows_reach_the_dispatch(tmp_path, monkeypatch):
  """A measured block-list row, written as --write-table writes it, is the
  case the op looks up."""
  grid = (8192 // 128, 8192 // 128)
  keep = bl_bench.keep_count(grid, 0.1)
  bl = block_list_from_mask(jnp.zeros((8192, 8192), jnp.bfloat16),
                            _testing.random_block_mask(grid, keep), (128, 128))
  bench_row = dict(device_kind="NVIDIA H200", op=bl_api.OPS["dsd"],
                   pattern=bl_api.pattern(bl), dtype="bfloat16", k=8192,
                   n=8192, batch=2048, implementation="triton",
                   interpret=False, sparse_us=300.0, dense_us=450.0)
  table = tmp_path / "table.json"
  dispatch.write_rows(table, device_check.table_rows([bench_row]))
  monkeypatch.setattr(dispatch, "device_kind",
                      lambda platform=None: "NVIDIA H200")
  monkeypatch.setattr(dispatch, "table_path", lambda: table)
  monkeypatch.setenv(dispatch.ENV_CACHE_DIR, str(tmp_path / "cache"))
  monkeypatch.delenv(dispatch.ENV_FORCE, raising=False)
  c = bl_api.choose_implementation(bl, "dsd", platform="gpu", batch=2048)
  assert (c.implementation, c.source) == ("triton", "table")
  assert bl_api.pattern(bl) == "b128x128/d0.10"
