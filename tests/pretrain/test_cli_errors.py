"""The real command refuses a bad command line with one `error:` line, exit
status 2 and no traceback, before anything is written (the in-process
battery is tests/battery/test_cli.py)."""

import os
import subprocess
import sys

import pytest

from sparsejax.pretrain import __main__ as main_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _cli(*args):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "sparsejax.pretrain", *args], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=120)


@pytest.mark.system
@pytest.mark.parametrize("args,names", [
    (("--config.optim.lrr=1e-3",), ("optim.lrr", "did you mean 'optim.lr'")),
    (("--config.sparsity.rules=block_(=2:4",), ("sparsity.rules", "regex")),
], ids=["misspelled-key", "invalid-regex"])
def test_a_mistake_is_one_error_line_and_exit_2(tmp_path, args, names):
  workdir = tmp_path / "run"
  proc = _cli("--config", "smoke", "--workdir", str(workdir), *args)
  assert proc.returncode == main_lib.EXIT_CONFIG == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert "Traceback" not in proc.stderr + proc.stdout
  for name in names:
    assert name in lines[0]
  assert not workdir.exists()


@pytest.mark.system
def test_an_unusable_workdir_is_refused(tmp_path):
  blocker = tmp_path / "a-file"
  blocker.write_text("")
  proc = _cli("--config", "smoke", "--workdir", str(blocker / "run"))
  assert proc.returncode == 2
  assert proc.stderr.startswith("error: --workdir ")
  assert "cannot be created" in proc.stderr and "Traceback" not in proc.stderr


def test_main_returns_the_status_in_process(capsys):
  assert main_lib.main(["--config.train.steps=0"]) == 2
  err = capsys.readouterr().err
  assert err == "error: train.steps must be >= 1; got 0.\n"


def test_an_incomplete_cluster_setting_is_refused(tmp_path, monkeypatch,
                                                 capsys):
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
  monkeypatch.delenv("JAX_PROCESS_ID", raising=False)
  status = main_lib.main(["--config", "smoke",
                          "--config.distributed=True",
                          "--workdir", str(tmp_path / "run")])
  assert status == main_lib.EXIT_CONFIG
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: JAX_NUM_PROCESSES set")
  assert "JAX_COORDINATOR_ADDRESS" in err[0]
