"""The measured dispatch (N:M, padded and block-list ops) and the package boundaries."""
import functools
import json
import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import _testing
from pallas_kernels import dispatch
from pallas_kernels.block_sparse import api as blk_api
from pallas_kernels.block_sparse import block_list_api as bl_api
from pallas_kernels.block_sparse import block_sparse_matmul
from pallas_kernels.block_sparse.reference import block_list_matmul_reference
from pallas_kernels.formats import block_list_from_mask
from pallas_kernels.formats import compress_nm
from pallas_kernels.formats import compress_padded_block
from pallas_kernels.nm import api as nm_api
from pallas_kernels.nm import nm_matmul

KIND = "NVIDIA H200"
CASE = dict(op="nm", pattern="2:4", dtype="bfloat16", shape=(4096, 4096))


def _python(code):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=300, check=False, env=env,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                           os.path.abspath(__file__)))))
  assert out.returncode == 0, out.stderr
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_pallas_kernels_imports_nothing_from_sparsejax():
  loaded = _python(
      "import importlib, json, pkgutil, sys, pallas_kernels\n"
      "names = [m.name for m in pkgutil.walk_packages(pallas_kernels.__path__,"
      " 'pallas_kernels.')]\n"
      "for n in names: importlib.import_module(n)\n"
      "print(json.dumps([len(names), [m for m in sys.modules "
      "if m.split('.')[0] == 'sparsejax']]))")
  assert loaded[0] >= 15 and loaded[1] == []


def test_sparsejax_loads_no_pallas():
  mods = _python("import json, sys, sparsejax\n"
                 "print(json.dumps(sorted(sys.modules)))")
  assert not [m for m in mods if m.startswith("jax.experimental.pallas")]
  assert not [m for m in mods if m.startswith(("pallas_kernels.nm",
                                               "pallas_kernels.block_sparse"))]


@pytest.fixture
def device(monkeypatch, tmp_path):
  """A fake device kind for every platform, an empty table and cache."""
  monkeypatch.setattr(dispatch, "device_kind", lambda platform=None: KIND)
  table = tmp_path / "table.json"
  dispatch.write_rows(table, [])
  monkeypatch.setattr(dispatch, "table_path", lambda: table)
  monkeypatch.setenv(dispatch.ENV_CACHE_DIR, str(tmp_path / "cache"))
  monkeypatch.delenv(dispatch.ENV_AUTOTUNE, raising=False)
  monkeypatch.delenv(dispatch.ENV_FORCE, raising=False)
  return table


def row(impl="k", us=10.0, dense_us=30.0, batch=8, **kw):
  base = dict(device_kind=KIND, **CASE, batch=batch, implementation=impl,
              us=us, dense_us=dense_us)
  base["shape"] = list(base["shape"])
  base.update(kw)
  return base


def pick(batch=8, candidates=None, **kw):
  return dispatch.choose(**CASE, candidates=candidates or {"k": "gpu"},
                         batch=batch, platform="gpu", **kw)


def test_no_measurement_means_dense(device):
  c = pick()
  assert (c.implementation, c.source) == ("xla", "default")
  assert "no measurement" in c.reason and "device_check" in c.reason


def test_table_decides_by_measurement(device):
  dispatch.write_rows(device, [row("k", 10.0, 30.0), row("j", 5.0, 30.0)])
  c = pick(candidates={"k": "gpu", "j": "gpu"})
  assert (c.implementation, c.source) == ("j", "table") and "6.00x" in c.reason
  assert pick(candidates={"k": "gpu"}).implementation == "k"
  # Same case, another batch bucket, dtype, shape or device: unmeasured.
  assert pick(batch=16).source == "default"
  assert pick(batch=4).source == "default"
  assert pick(batch=5).implementation == "k"  # bucket 8 covers batch 5..8
  dispatch.write_rows(device, [row("k", 10.0, 30.0, dtype="float32"),
                               row("k", 10.0, 30.0, shape=[4096, 8192]),
                               row("k", 10.0, 30.0, device_kind="TPU v5 lite")])
  assert pick(batch=16).source == "default"


def test_slower_or_marginal_kernel_is_not_chosen(device):
  dispatch.write_rows(device, [row(us=40.0, dense_us=30.0)])
  c = pick()
  assert (c.implementation, c.source) == ("xla", "table")
  assert "0.75x" in c.reason
  dispatch.write_rows(device, [row(us=30.0, dense_us=30.0 * 1.01)])
  assert pick().implementation == "xla"


def test_cpu_default_is_xla_even_when_measured(device):
  calls = []
  c = dispatch.choose(**CASE, candidates={"k": "gpu"}, batch=8,
                      platform="cpu", autotune=True,
                      measure=lambda names: calls.append(names))
  assert c.implementation == "xla" and not calls and "cpu" in c.reason


def test_explicit_and_forced_choices(device, monkeypatch):
  dispatch.write_rows(device, [row(us=10.0, dense_us=30.0)])
  cands = {"k": "gpu", "t": "tpu"}
  assert pick(candidates=cands, implementation="t") == dispatch.Choice(
      "t", "requested", "requested", True)
  assert pick(candidates=cands, implementation="pallas").implementation == "k"
  with dispatch.force("xla"):
    assert pick(candidates=cands) == dispatch.Choice("xla", "forced", "forced")
    assert pick(candidates=cands, implementation="k").source == "requested"
  monkeypatch.setenv(dispatch.ENV_FORCE, "t")
  assert pick(candidates=cands) == dispatch.Choice("t", "forced", "forced",
                                                   True)
  with dispatch.force(None):
    assert pick(candidates=cands).implementation == "t"  # env still applies
  monkeypatch.delenv(dispatch.ENV_FORCE)
  assert pick(candidates=cands).source == "table"
  with pytest.raises(ValueError, match="'nm'.*got 'triton'"):
    pick(candidates=cands, implementation="triton")


def test_autotune_measures_once_and_caches(device, tmp_path):
  calls = []

  def measure(names):
    calls.append(list(names))
    return {"dense": 30e-6, **{n: 10e-6 for n in names}}

  assert pick(measure=measure).source == "default" and not calls  # opt-in
  with dispatch.autotune():
    first = pick(measure=measure)
    second = pick(measure=measure)
  assert calls == [["k"]]
  assert first.implementation == second.implementation == "k"
  assert first.source == second.source == "autotune"
  cached = json.loads(dispatch.cache_path(KIND).read_text())
  assert cached["jax"] == jax.__version__ and cached["device_kind"] == KIND
  assert cached["rows"][0]["batch"] == 8 and cached["rows"][0]["us"] == 10.0
  # The cache wins over the shipped table.
  dispatch.write_rows(device, [row(us=40.0)])
  assert pick().implementation == "k" and pick().source == "autotune"


def test_autotune_env_var_and_slow_kernel(device, monkeypatch):
  monkeypatch.setenv(dispatch.ENV_AUTOTUNE, "1")
  c = pick(measure=lambda names: {"dense": 1e-6, "k": 2e-6})
  assert (c.implementation, c.source) == ("xla", "autotune")
  assert "0.50x" in c.reason


@pytest.mark.parametrize("content,match", [
    ("{not json", "unreadable"),
    ('{"schema": 99, "rows": []}', "unreadable"),
    ('{"schema": 1, "rows": [{"op": "nm"}]}', "unreadable"),
    ('{"schema": 1, "device_kind": "NVIDIA H200", "jax": "0.0.1", '
     '"rows": []}', "stale"),
    ('{"schema": 1, "device_kind": "TPU v5 lite", "jax": "JAX", "rows": []}',
     "stale"),
])
def test_bad_cache_is_ignored_with_a_warning(device, content, match):
  path = dispatch.cache_path(KIND)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(content.replace("JAX", jax.__version__))
  dispatch.write_rows(device, [row()])
  with pytest.warns(UserWarning, match=match):
    c = pick()
  assert (c.implementation, c.source) == ("k", "table")


def test_corrupt_table_is_ignored_with_a_warning(device):
  device.write_text("[1, 2")
  with pytest.warns(UserWarning, match="measurement table"):
    assert pick().source == "default"


def test_check_rows_names_the_bad_row():
  with pytest.raises(ValueError, match=r"rows\[1\] field 'us'"):
    dispatch.check_rows([row(), row(us="fast")])
  with pytest.raises(ValueError, match="not a bucket"):
    dispatch.check_rows([row(batch=12)])


def test_shipped_table_holds_only_real_measurements():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    rows = dispatch.load_table()
  for r in rows:  # empty until a device run fills it
    assert r["device_kind"] != "cpu" and r["us"] > 0


def _nm(k=256, cols=128, n=2, m=4, dtype=jnp.bfloat16):
  w = jax.random.normal(jax.random.key(0), (k, cols)).astype(dtype)
  return compress_nm(w, _testing.nm_mask(w, n, m), n, m)


def test_nm_api_uses_the_table(device):
  c = _nm(1024, 256)
  x = jax.ShapeDtypeStruct((2, 4, 1024), jnp.bfloat16)
  assert nm_api.choose_implementation(x, c, platform="gpu").source == "default"
  dispatch.write_rows(device, [row("triton", 10.0, 30.0, shape=[1024, 256])])
  got = nm_api.choose_implementation(x, c, platform="gpu")
  assert (got.implementation, got.source) == ("triton", "table")
  assert nm_api.choose_implementation(x, c, platform="cpu").implementation == \
      "xla"
  with dispatch.force("pallas"):
    forced = nm_api.choose_implementation(x, c, platform="cpu")
  assert forced.source == "forced" and forced.interpret


def test_nm_autotune_measure_times_dense_and_each_implementation():
  c = _nm(256, 128)
  seconds = nm_api._measure(jnp.ones((3, 256), jnp.bfloat16), c)(["xla"])
  assert set(seconds) == {"dense", "xla"} and min(seconds.values()) > 0
  # Also from inside a traced function (the first use may be under jit).
  out = []

  @jax.jit
  def f(x, c):
    out.append(nm_api._measure(x, c)(["xla"]))
    return x

  f(jnp.ones((3, 256), jnp.bfloat16), c)
  assert set(out[0]) == {"dense", "xla"}


def test_forced_implementation_runs(device):
  c = _nm(64, 128, dtype=jnp.float32)
  x = jax.random.normal(jax.random.key(1), (2, 64))
  want = nm_matmul(x, c, implementation="xla")
  with dispatch.force("pallas_gpu"):
    got = nm_matmul(x, c)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_op_errors_name_the_layer_and_the_weight():
  c = _nm(64, 128)
  with pytest.raises(ValueError, match=r"'blocks/0/mlp'.*\(2, 32\).*K=64.*"
                     r"\(64, 128\)"):
    nm_matmul(jnp.ones((2, 32), jnp.bfloat16), c, name="blocks/0/mlp")
  with pytest.raises(TypeError, match=r"x \(layer 'fc'\) has dtype int32.*"
                     r"\(64, 128\)"):
    nm_matmul(jnp.ones((2, 64), jnp.int32), c, name="fc")
  with pytest.raises(TypeError, match="NMCompressed"):
    nm_matmul(jnp.ones((2, 64)), jnp.ones((64, 128)), name="fc")
  p = compress_padded_block(jnp.ones((64, 32)), jnp.eye(2, dtype=bool),
                            (32, 16), major="col")
  with pytest.raises(ValueError, match=r"'head'.*K=64.*\(64, 32\)"):
    block_sparse_matmul(jnp.ones((2, 63)), p, name="head")
  with pytest.raises(TypeError, match=r"'head'.*int8"):
    block_sparse_matmul(jnp.ones((2, 64), jnp.int8), p, name="head")
  with pytest.raises(ValueError, match="implementation"):
    blk_api.choose_implementation(p, implementation="mosaic")


def test_batch_bucket():
  assert [dispatch.batch_bucket(b) for b in (1, 2, 3, 4, 5, 16, 17)] == [
      1, 2, 4, 4, 8, 16, 32]
  with pytest.raises(ValueError):
    dispatch.batch_bucket(0)


@pytest.mark.parametrize("op,major", [("dsd", "col"), ("sdd", "row")])
def test_block_autotune_measure_times_dense_and_each_implementation(op, major):
  w = jax.random.normal(jax.random.key(0), (64, 128))
  p = compress_padded_block(w, jnp.eye(2, 4, dtype=bool), (32, 32),
                            major=major)
  seconds = blk_api._measure(p, op, 3, jnp.float32)(["xla"])
  assert set(seconds) == {"dense", "xla"} and min(seconds.values()) > 0


def test_failed_autotune_falls_back_to_dense_with_a_warning(device):
  def measure(names):
    raise RuntimeError("kernel does not compile")

  with dispatch.autotune(), pytest.warns(UserWarning, match="does not compile"):
    c = pick(measure=measure)
  assert (c.implementation, c.source) == ("xla", "autotune")
  assert not dispatch.cache_path(KIND).exists()


def _block_list(density_blocks=1):
  """A (256, 256) block list with 128x128 blocks (TPU kernel layout)."""
  mask = np.zeros((2, 2), bool)
  mask.flat[:density_blocks] = True
  w = jax.random.normal(jax.random.key(0), (256, 256)).astype(jnp.bfloat16)
  return block_list_from_mask(w, mask, (128, 128))


def blrow(impl="tpu", us=10.0, dense_us=30.0, batch=8, **kw):
  case = dict(op="block_list_dsd", pattern="b128x128/d0.25", shape=[256, 256])
  return row(impl, us, dense_us, batch, **{**case, **kw})


@pytest.fixture
def ran(monkeypatch):
  """Records the implementation each block-list product runs (at trace)."""
  seen = []

  def spy(a, values, struct, cfg):
    seen.append(cfg.impl)
    return product(a, values, struct, cfg)

  product = bl_api.product
  monkeypatch.setattr(bl_api, "product", spy)
  return seen


def test_block_list_pattern_and_op_name_the_case():
  assert bl_api.pattern(_block_list()) == "b128x128/d0.25"
  assert bl_api.pattern(_block_list(3)) == "b128x128/d1.00"
  assert bl_api.OPS == {"dsd": "block_list_dsd", "sdd": "block_list_sdd",
                        "sddmm": "block_list_sddmm"}
  assert dispatch.density_bucket(0.0999) == 0.1
  assert dispatch.density_bucket(0.1001) == 0.25
  with pytest.raises(ValueError, match="density"):
    dispatch.density_bucket(1.5)


def test_block_list_on_cpu_without_measurement_runs_dense(ran):
  bl = _block_list()
  x = jnp.ones((8, 256), jnp.bfloat16)
  c = bl_api.choose_implementation(bl, batch=8)
  assert (c.implementation, c.source) == ("xla", "default")
  out = bl_api.block_list_matmul(x, bl)
  jax.jit(bl_api.block_list_matmul)(x, bl)
  assert ran == ["xla", "xla"]
  want = block_list_matmul_reference(x, bl)
  np.testing.assert_allclose(np.asarray(out, np.float32),
                             np.asarray(want, np.float32), rtol=2e-2)


@pytest.mark.parametrize("op,batch", [("dsd", 8), ("sdd", 8), ("sddmm", 8)])
def test_block_list_table_decides(device, op, batch):
  bl = _block_list()
  pick_bl = functools.partial(bl_api.choose_implementation, bl, op,
                              platform="tpu", batch=batch)
  assert pick_bl().source == "default"
  name = bl_api.OPS[op]
  dispatch.write_rows(device, [blrow(us=10.0, dense_us=30.0, op=name)])
  assert (pick_bl().implementation, pick_bl().source) == ("tpu", "table")
  assert pick_bl(batch=16).source == "default"  # another batch bucket
  dispatch.write_rows(device, [blrow(us=30.0, dense_us=30.0 * 1.01, op=name)])
  assert (pick_bl().implementation, pick_bl().source) == ("xla", "table")


def test_block_list_measured_choice_runs_eagerly_and_under_jit(
    device, monkeypatch, ran):
  monkeypatch.setattr(bl_api._compat, "backend", lambda: "tpu")
  bl = _block_list()
  x = jnp.ones((5, 256), jnp.bfloat16)  # batch bucket 8

  def both():
    ran.clear()
    eager = bl_api.block_list_matmul(x, bl, interpret=True)
    jitted = jax.jit(functools.partial(bl_api.block_list_matmul,
                                       interpret=True))(x, bl)
    np.testing.assert_allclose(np.asarray(eager, np.float32),
                               np.asarray(jitted, np.float32), rtol=2e-2)
    return list(ran)

  assert both() == ["xla", "xla"]                  # unmeasured: dense
  dispatch.write_rows(device, [blrow(us=10.0, dense_us=30.0)])
  assert both() == ["tpu", "tpu"]                  # measured faster
  with dispatch.force("xla_blocks"):               # force() still wins
    assert both() == ["xla_blocks", "xla_blocks"]
  ran.clear()
  bl_api.block_list_matmul(x, bl, implementation="xla")  # and so does this
  assert ran == ["xla"]
  dispatch.write_rows(device, [blrow(us=40.0, dense_us=30.0)])
  assert both() == ["xla", "xla"]                  # measured slower


def test_weight_gradient_follows_the_sddmm_measurement(device, monkeypatch):
  """Chosen automatically, the weight gradient runs on a kernel only where
  the SDDMM was measured faster; a requested kernel computes it too."""
  monkeypatch.setattr(bl_api._compat, "backend", lambda: "tpu")
  bl = _block_list()

  def cfg(implementation=None):
    return bl_api._configure(bl, "dsd", jnp.bfloat16, 8, implementation,
                             True, None, None, 2,
                             bl_api.TPU_SMEM_BUDGET_BYTES)

  dispatch.write_rows(device, [blrow(us=10.0, dense_us=30.0)])
  assert (cfg().impl, cfg().dw_impl) == ("tpu", "xla")  # SDDMM unmeasured
  dispatch.write_rows(device, [blrow(us=10.0, dense_us=30.0,
                                     op="block_list_sddmm")])
  assert (cfg().impl, cfg().dw_impl) == ("tpu", "tpu")
  dispatch.write_rows(device, [blrow(us=40.0, dense_us=30.0)])
  assert (cfg().impl, cfg().dw_impl) == ("xla", "tpu")  # each op measured
  assert cfg("triton").dw_impl == "triton"
  assert cfg("xla_blocks").dw_impl == "xla"


@pytest.mark.parametrize("op", ["dsd", "sdd", "sddmm"])
def test_block_list_autotune_measure_times_dense_and_each_implementation(op):
  bl = block_list_from_mask(jnp.ones((64, 32)), jnp.eye(4, 2, dtype=bool),
                            (16, 16))
  seconds = bl_api._measure(bl, op, 3, jnp.float32,
                            bl_api.TPU_SMEM_BUDGET_BYTES)(["xla_blocks"])
  assert set(seconds) == {"dense", "xla_blocks"} and min(seconds.values()) > 0
