"""The released package: the sdist and wheel build, and the installed wheel
(not this source tree) imports, carries its data files and runs an example,
and resolves a pretraining recipe by name from the installed package.
"""

import os
import pathlib
import subprocess
import sys
import textwrap
import zipfile

import pytest

pytestmark = pytest.mark.system

ROOT = pathlib.Path(__file__).resolve().parents[1]

SMOKE = textwrap.dedent("""
    import pathlib, sys
    import jax, jax.numpy as jnp
    import sparsejax as sj
    import pallas_kernels
    from pallas_kernels import dispatch
    here = pathlib.Path(sj.__file__).resolve().parent
    assert str(here).startswith(sys.argv[1]), here
    assert (here / "py.typed").exists()
    assert dispatch.table_path().exists(), dispatch.table_path()
    rules = [sj.Rule("kernel", sj.NM(2, 4))]
    params = {"kernel": jax.random.normal(jax.random.key(0), (8, 4))}
    masks = sj.compute_masks(params, rules)
    from sparsejax.pretrain import cli, recipes
    assert recipes.recipe_path("smoke").startswith(sys.argv[1])
    args = cli.parse_args(["--config", "smoke:cpu", "--workdir", "unused"])
    print(sj.__version__, int(masks["kernel"].sum()),
          args.config.sparsity.method, args.config.train.steps,
          ",".join(recipes.names()))
""")


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("dist")
  # The wheel is built from the sdist, so both are checked.
  result = subprocess.run(
      [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return out


def test_wheel_holds_the_data_files_and_the_license(dist):
  import sparsejax
  wheel, = dist.glob("sparsejax-*.whl")
  assert wheel.name.startswith(f"sparsejax-{sparsejax.__version__}-")
  names = zipfile.ZipFile(wheel).namelist()
  for needed in ("sparsejax/py.typed", "pallas_kernels/py.typed",
                 "pallas_kernels/measured/table.json",
                 "sparsejax/pretrain/recipes/smoke.py"):
    assert needed in names, needed
  assert any(n.endswith("LICENSE") for n in names)
  assert not any(n.startswith("tests/") for n in names)
  sdist, = dist.glob("sparsejax-*.tar.gz")
  assert sdist.stat().st_size > 0


def test_installed_wheel_imports_and_runs(dist, tmp_path):
  wheel, = dist.glob("sparsejax-*.whl")
  target = tmp_path / "site"
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                  "--no-index", "--target", str(target), str(wheel)],
                 check=True, capture_output=True, timeout=300)
  env = dict(os.environ, PYTHONPATH=str(target), JAX_PLATFORMS="cpu")
  result = subprocess.run(
      [sys.executable, "-c", SMOKE, str(target.resolve())], cwd=tmp_path,
      env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  import sparsejax
  from sparsejax.pretrain import recipes
  assert result.stdout.split() == [sparsejax.__version__, "16",
                                   "progressive_nm", "500",
                                   ",".join(recipes.names())]
