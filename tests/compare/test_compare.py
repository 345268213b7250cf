"""python -m sparsejax.compare: grid parsing and checks, the table math,
the output files, resuming run by run, and one small end-to-end grid."""

import csv
import json
import math
import os

import jax
import numpy as np
import pytest

from sparsejax.compare import __main__ as main_lib
from sparsejax.compare import cli
from sparsejax.compare import grid
from sparsejax.compare import running
from sparsejax.compare import table
from sparsejax.methods import registry
from sparsejax.pretrain import config as config_lib

ConfigError = config_lib.ConfigError


def _one_error_line(capsys):
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: "), err
  return err[0]


# Grids: parsing and checks (no compute).

def test_methods_parse_with_options_in_order():
  assert cli.parse_methods("sste, progressive_nm[structure=,grad=autodiff]"
                            ",ste") == [
      ("sste", ()),
      ("progressive_nm", (("structure", ""), ("grad", "autodiff"))),
      ("ste", ())]


@pytest.mark.parametrize("parse,text,words", [
    (cli.parse_methods, "", ["--methods is empty"]),
    (cli.parse_methods, " , ", ["--methods is empty"]),
    (cli.parse_methods, "srtse", [
        "'srtse'", "did you mean 'srste'", "registered: ",
        ", ".join(registry.names("train"))]),
    (cli.parse_methods, "ste[decay]", ["option 'decay'", "KEY=VALUE"]),
    (cli.parse_methods, "ste,ste", ["twice"]),
    (cli.parse_methods, "ste[", ["bad arm 'ste['"]),
    (cli.parse_patterns, "", ["--patterns is empty"]),
    (cli.parse_patterns, "2/4", ["bad pattern '2/4'"]),
    (cli.parse_patterns, "5:4", ["5:4"]),
    (cli.parse_patterns, "dense", ["'dense' is not a sparse pattern"]),
    (cli.parse_patterns, "2:4,2:4", ["twice"]),
    (cli.parse_seeds, "", ["--seeds is empty"]),
    (cli.parse_seeds, "0,x", ["--seeds: 'x' is not a non-negative int"]),
    (cli.parse_seeds, "1.0", ["'1.0' is not a non-negative int"]),
    (cli.parse_seeds, "-1", ["'-1' is not a non-negative int"]),
    (cli.parse_seeds, "0,0", ["twice"]),
])
def test_bad_grids_name_the_option_and_rule(parse, text, words):
  with pytest.raises(ConfigError) as e:
    parse(text)
  for word in words:
    assert word in str(e.value)


def test_a_run_config_differs_from_the_base_only_in_method_pattern_seed():
  base = grid.default_config()
  base.sparsity.rules = (f"{config_lib.MLP_KERNELS}=1:8;.*/attn/out/kernel="
                         f"dense;{config_lib.ATTN_KERNELS}=2:4")
  arm = grid.ArmSpec("progressive_nm", (("decay", "exponential"),), "1:16")
  cfg = grid.run_config(base, arm, 3)
  old, new = config_lib.to_dict(base), config_lib.to_dict(cfg)
  changed = {(s, k) for s in old for k in (old[s] if isinstance(old[s], dict)
                                           else [None])
             if (old[s] if k is None else old[s][k]) !=
             (new[s] if k is None else new[s][k])}
  assert changed == {("seed", None), ("sparsity", "rules"),
                     ("sparsity", "baseline"), ("sparsity", "decay")}
  # Every sparse rule gets the pattern; regexes and dense rules are kept.
  assert cfg.sparsity.rules == (
      f"{config_lib.MLP_KERNELS}=1:16;.*/attn/out/kernel=dense;"
      f"{config_lib.ATTN_KERNELS}=1:16")
  assert cfg.seed == 3 and not cfg.sparsity.baseline
  dense = grid.run_config(base, grid.ArmSpec(grid.DENSE), 3)
  assert dense.sparsity.method == "none"


@pytest.mark.parametrize("argv,words", [
    (["--set", "optim.lrr=1"], ["--set optim.lrr=1", "did you mean "
                                "'optim.lr'"]),
    (["--set", "sparsity.method=ste"], ["set by the grid"]),
    (["--set", "train.steps"], ["KEY=VALUE"]),
    (["--set", "train.steps=ten"], ["train.steps", "an int"]),
    (["--methods", "ste[decay=cubic]"], ["arm 'ste[decay=cubic] 2:4'",
                                         "sparsity.decay",
                                         "cubic"]),
    (["--methods", "ste[nope=1]"], ["unknown config key 'sparsity.nope'"]),
    (["--method", "ste"], ["unrecognized arguments: --method"]),
    (["--config", "/nonexistent.py"], ["/nonexistent.py", "does not exist"]),
])
def test_bad_command_lines_are_config_errors(argv, words):
  with pytest.raises(ConfigError) as e:
    r = cli.parse_args(argv)
    running.plan_runs(r.base, r.arms, r.seeds)
  for word in words:
    assert word in str(e.value)


def test_set_applies_to_every_run_and_the_defaults_are_the_cpu_grid():
  r = cli.parse_args(["--set", "train.steps=30", "--seeds", "4"])
  assert [a.name for a in r.arms] == [
      f"{m} 2:4" for m in cli.DEFAULT_METHODS.split(",")]
  runs = running.plan_runs(r.base, r.arms, r.seeds)
  assert {run.config.train.steps for run in runs} == {30}
  assert [run.config.seed for run in runs] == [4] * 5
  assert r.compile_cache == os.path.join("compare_out", "jax_cache")


def test_an_option_that_changes_nothing_is_refused():
  base = grid.default_config()
  with pytest.raises(ConfigError, match=r"decay=exponential does not change "
                     "the ste method"):
    running.plan_runs(base, [grid.ArmSpec("ste", (("decay", "exponential"),),
                                          "2:4")], [0])
  # The base value spelled out is allowed; a real change is kept.
  explicit = grid.ArmSpec("progressive_nm", (("grad", "identity"),
                                             ("decay", "exponential")), "2:4")
  runs = running.plan_runs(base, [explicit], [0])
  assert runs[-1].config.sparsity.decay == "exponential"


@pytest.mark.parametrize("argv,words", [
    (["--methods", ""], ["--methods is empty"]),
    (["--methods", "rgil"], ["did you mean 'rigl'"]),
    (["--patterns", "2:4,3:7"], ["arm 'ste 3:7'", "does not fit the model",
                                 "m=7"]),
    (["--seeds", "a"], ["--seeds: 'a'"]),
    (["--set", "modle.d_model=8"], ["unknown config key 'modle.d_model'"]),
])
def test_the_command_refuses_with_one_error_line_before_writing(
    tmp_path, capsys, argv, words):
  out = tmp_path / "out"
  status = main_lib.main(["--methods", "ste", "--out", str(out)] + argv)
  assert status == main_lib.EXIT_CONFIG == 2
  line = _one_error_line(capsys)
  for word in words:
    assert word in line
  assert not out.exists()


def test_help_prints_the_options(capsys):
  assert main_lib.main(["--help"]) == 0
  printed = capsys.readouterr().out
  for option in ("--methods", "--patterns", "--seeds", "--config", "--set",
                 "--out", "--compile-cache"):
    assert option in printed


# The table: mean ± std over seeds, paired differences (a pure function).

def _result(arm, method, seed, loss, status="finished", **kw):
  return dict(arm=arm, method=method, variant=method,
              pattern=None if method == "dense" else "2:4", seed=seed,
              status=status, val_loss=loss, **kw)


def test_summary_rows_follow_the_formulas():
  dense = [2.0, 2.1, 2.3]
  ste = [2.2, 2.15, 2.6]
  results = [_result("dense", "dense", s, v, wall_s=1.0 + s)
             for s, v in enumerate(dense)]
  results += [_result("ste 2:4", "ste", s, v, flip_rate=0.1 * (s + 1),
                      wall_s=4.0, train_s=2.0) for s, v in enumerate(ste)]
  d, s = table.summarize(results)
  assert d["n"] == 3 and d["failed"] == 0 and d["flip_rate"] is None
  np.testing.assert_allclose(d["val_loss_mean"], np.mean(dense))
  np.testing.assert_allclose(
      d["val_loss_std"], math.sqrt(sum((v - np.mean(dense)) ** 2
                                       for v in dense) / 2))
  np.testing.assert_allclose(d["wall_s"], 2.0)
  np.testing.assert_allclose(d["loss_ratio"], 1.0)
  np.testing.assert_allclose(d["loss_diff_mean"], 0.0, atol=1e-12)
  diffs = np.subtract(ste, dense)
  np.testing.assert_allclose(s["val_loss_mean"], np.mean(ste))
  np.testing.assert_allclose(s["val_loss_std"], np.std(ste, ddof=1))
  np.testing.assert_allclose(s["loss_ratio"], np.mean(ste) / np.mean(dense))
  np.testing.assert_allclose(s["loss_diff_mean"], np.mean(diffs))
  np.testing.assert_allclose(s["loss_diff_std"], np.std(diffs, ddof=1))
  np.testing.assert_allclose(s["flip_rate"], 0.2)
  assert (s["wall_s"], s["train_s"]) == (4.0, 2.0)
  text = table.format_table([d, s])
  assert f"{np.mean(ste):.4f} ± {np.std(ste, ddof=1):.4f}" in text
  assert "n/a" in text.splitlines()[2]  # dense has no flip rate


def test_summary_counts_diverged_runs_and_pairs_only_common_seeds():
  results = [_result("dense", "dense", 0, 2.0),
             _result("dense", "dense", 1, 2.4),
             _result("ste 2:4", "ste", 0, 2.5),
             _result("ste 2:4", "ste", 1, None, status="nonfinite")]
  _, s = table.summarize(results)
  assert (s["n"], s["failed"], s["val_loss_std"]) == (1, 1, None)
  np.testing.assert_allclose(s["loss_diff_mean"], 0.5)
  np.testing.assert_allclose(s["loss_ratio"], 2.5 / 2.2)
  assert "1 (1 diverged)" in table.format_table([s])


@pytest.mark.parametrize("results,match", [
    ([_result("dense", "dense", 0, 2.0), _result("dense", "dense", 0, 2.1)],
     "seed 0 twice"),
    ([_result("dense", "dense", 0, float("nan"))], "val_loss is nan"),
])
def test_summary_refuses_inconsistent_results(results, match):
  with pytest.raises(ValueError, match=match):
    table.summarize(results)


def test_csv_and_json_hold_the_rows_and_the_raw_runs(tmp_path):
  results = [_result("dense", "dense", s, v, wall_s=1.0)
             for s, v in enumerate([2.0, 2.2])]
  rows = table.summarize(results)
  table.write_csv(rows, tmp_path / "r.csv")
  table.write_json(rows, results, tmp_path / "r.json", seeds=[0, 1])
  with open(tmp_path / "r.csv") as f:
    got = list(csv.DictReader(f))
  assert list(got[0]) == list(table.COLUMNS)
  assert float(got[0]["val_loss_mean"]) == pytest.approx(2.1)
  assert got[0]["flip_rate"] == "" and got[0]["n"] == "2"
  data = json.loads((tmp_path / "r.json").read_text())
  assert data["runs"] == results and data["arms"] == rows
  assert data["seeds"] == [0, 1]


# Resume: finished runs are skipped, changed configs refused.

class _FakeRun:
  """A run function that records its calls and returns a loss per seed."""

  def __init__(self):
    self.calls = []

  def __call__(self, config, folder):
    self.calls.append(os.path.basename(folder))
    return {"status": "finished", "val_loss": 2.0 + 0.1 * config.seed,
            "flip_rate": None, "wall_s": 0.5}


def _runs(seeds, steps=30):
  base = grid.default_config()
  base.train.steps = steps
  return running.plan_runs(base, [grid.ArmSpec("ste", (), "2:4")], seeds)


def test_rerun_skips_finished_runs_and_runs_the_rest(tmp_path, capsys):
  out, fake = str(tmp_path), _FakeRun()
  first = running.run_grid(_runs([0]), out, fake)
  assert fake.calls == ["dense_seed0", "ste_2-4_seed0"]
  assert not any(r["skipped"] for r in first)
  stored = running.read_result(os.path.join(out, "runs", "ste_2-4_seed0"))
  assert stored["val_loss"] == 2.0 and stored["arm"] == "ste 2:4"
  assert stored["config"]["sparsity"]["method"] == "ste"
  # A run that was interrupted (its folder exists, no result) runs again.
  os.makedirs(os.path.join(out, "runs", "dense_seed1"))
  fake.calls.clear()
  runs = _runs([0, 1])
  running.check_runs(runs, out, plan_fn=lambda config: None)
  second = running.run_grid(runs, out, fake)
  assert fake.calls == ["dense_seed1", "ste_2-4_seed1"]
  assert [r["skipped"] for r in second] == [True, False, True, False]
  assert "finished before, skipped" in capsys.readouterr().err
  rows = table.summarize(second)
  np.testing.assert_allclose(rows[1]["val_loss_mean"], 2.05)


def test_a_changed_config_in_the_same_out_dir_is_refused(tmp_path):
  out = str(tmp_path)
  running.run_grid(_runs([0]), out, _FakeRun())
  with pytest.raises(ConfigError) as e:
    running.check_runs(_runs([0], steps=40), out, plan_fn=lambda c: None)
  msg = str(e.value)
  assert "dense_seed0" in msg and "train.steps: 30 -> 40" in msg
  assert "use a new --out" in msg


def test_an_unreadable_result_file_names_its_path(tmp_path):
  folder = tmp_path / "runs" / "dense_seed0"
  folder.mkdir(parents=True)
  (folder / running.RESULT_FILE).write_text("{")
  with pytest.raises(ConfigError, match=r"result.json is unreadable"):
    running.read_result(str(folder))


@pytest.mark.system
def test_a_tiny_grid_end_to_end_and_its_rerun(tmp_path, capsys):
  out = tmp_path / "cmp"
  argv = ["--config", "smoke",
          "--set", "train.steps=8", "--set", "checkpoint.every=8",
          "--set", "eval.every=8", "--methods", "srste", "--seeds", "0,1",
          "--out", str(out)]
  cache_dir = jax.config.jax_compilation_cache_dir
  assert main_lib.main(argv) == 0
  assert jax.config.jax_compilation_cache_dir == cache_dir  # restored
  assert any((out / "jax_cache").iterdir())
  printed = capsys.readouterr().out
  assert "srste" in printed and "dense" in printed
  data = json.loads((out / "results.json").read_text())
  assert [(r["arm"], r["seed"]) for r in data["runs"]] == [
      ("dense", 0), ("dense", 1), ("srste 2:4", 0), ("srste 2:4", 1)]
  for r in data["runs"]:
    assert r["status"] == "finished" and math.isfinite(r["val_loss"])
    assert r["wall_s"] > 0 and r["config"]["train"]["steps"] == 8
  sparse = [r for r in data["runs"] if r["method"] == "srste"]
  assert all(0 <= r["flip_rate"] <= 1 for r in sparse)
  # The seeds differ (init and data order), so the spread is not zero.
  assert sparse[0]["val_loss"] != sparse[1]["val_loss"]
  assert data["arms"] == table.summarize(data["runs"])
  assert (out / "results.csv").exists()
  assert (out / "results.png").stat().st_size > 0
  assert main_lib.main(argv) == 0
  assert capsys.readouterr().err.count("finished before, skipped") == 4
