"""The one-command device check: its dry mode, its table rows, the native switch."""
import os
import pathlib
import re
import subprocess
import sys

import jax.numpy as jnp
import pytest

from pallas_kernels import _testing
from pallas_kernels import device_check
from pallas_kernels import dispatch
from pallas_kernels.block_sparse import api as blk_api
from pallas_kernels.block_sparse import bench as blk_bench
from pallas_kernels.block_sparse import bench_block_list as bl_bench
from pallas_kernels.block_sparse import block_list_api as bl_api
from pallas_kernels.block_sparse._bench_cases import block_cases
from pallas_kernels.formats import block_list_from_mask
from pallas_kernels.formats import compress_padded_block

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


@pytest.mark.system
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
  for op in ("block_list_dsd", "block_list_sddmm"):
    for impl in ("xla", "xla_blocks", "tpu*", "triton*"):
      assert re.search(rf"{op}\s+b64x64/d0.25\s+256x256\s+1\s+bfloat16 "
                       rf"{re.escape(impl)} ", text), (op, impl)
  assert "2:4: target >= 1.3x (bound 1.78x)" in text
  assert "1:16: target >= 6.0x (bound 12.80x)" in text
  rows = dispatch.load_table(table)
  # Only natively run rows are kept: on CPU those of the XLA paths.
  nm = [r for r in rows if r["op"] == "nm"]
  blk = [r for r in rows if r["op"].startswith("block_list_")]
  assert len(nm) + len(blk) == len(rows)
  assert {r["op"] for r in blk} == {"block_list_dsd", "block_list_sddmm"}
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


@pytest.mark.parametrize("bench", ["padded", "block_list"])
def test_bench_rows_reach_the_dispatch(bench, tmp_path, monkeypatch):
  """Rows a bench writes (kept as --write-table keeps them) are the cases the
  ops look up: padded ``block_dsd``; block-list ``block_list_dsd`` and
  ``block_list_sddmm``."""
  shape, bs, density, batch = (64, 64), 16, 0.25, 4
  quiet = dict(reps=1, emit=lambda s: None, length=1)
  if bench == "padded":
    rows = blk_bench.run([shape], [batch], [bs], [density], jnp.float32,
                         ["pallas_gpu"], **quiet)
  else:
    rows = bl_bench.run([shape], [batch], [bs], [density], jnp.float32,
                        ["triton"], **quiet)
  # This host can only interpret the kernels; keep the rows as if native.
  table = tmp_path / "table.json"
  dispatch.write_rows(table, device_check.table_rows(
      [dict(r, interpret=False) for r in rows]))
  monkeypatch.setattr(dispatch, "device_kind",
                      lambda platform=None: rows[0]["device_kind"])
  monkeypatch.setattr(dispatch, "table_path", lambda: table)
  monkeypatch.setenv(dispatch.ENV_CACHE_DIR, str(tmp_path / "cache"))
  monkeypatch.delenv(dispatch.ENV_FORCE, raising=False)
  case = next(block_cases([shape], [bs], [density], jnp.float32))
  if bench == "padded":
    p = compress_padded_block(case.w, case.mask, (bs, bs), major="col")
    choices = [blk_api.choose_implementation(p, "dsd", platform="gpu",
                                             batch=batch)]
  else:
    bl = block_list_from_mask(case.w, case.mask, (bs, bs))
    choices = [bl_api.choose_implementation(bl, op, platform="gpu",
                                            batch=batch)
               for op in ("dsd", "sddmm")]
  assert [r["op"] for r in rows] == (
      ["block_dsd"] if bench == "padded" else
      ["block_list_dsd", "block_list_sddmm"])
  assert all(c.source == "table" for c in choices), choices
