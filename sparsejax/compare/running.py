"""Running a grid: one pretraining run per (arm, seed), resumable run by run.

Each run trains one arm through the pretraining loop
(:func:`sparsejax.compare.training.train_run`) in its own folder ``OUT/runs/<arm slug>_seed<k>/``; when it finishes its
:data:`RESULT_FILE` is written there, with the run's full config. Rerunning
the same command skips runs that have a result file and resumes the others
from their last checkpoint (the pretraining loop's bit-exact resume). A run
folder whose stored config differs from the one the command would run now is
refused before anything is computed, naming the keys that differ: results of
two configs are never mixed in one table; use a new ``--out`` (or delete that
run's folder) instead.

A run that stops on non-finite values is a result too (``status`` is
``"nonfinite"``, with the error): it is written, reported in the table and not
retried.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Callable, Sequence

from sparsejax.compare import grid as grid_lib
from sparsejax.compare import training
from sparsejax.pretrain import checkpoint as ckpt_lib
from sparsejax.pretrain import config as config_lib

__all__ = ["RESULT_FILE", "Run", "plan_runs", "check_runs", "read_result",
           "run_grid"]

RESULT_FILE = "result.json"
"""The file a finished run writes in its folder."""

ConfigError = config_lib.ConfigError
RunFn = Callable[[Any, str], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of the grid.

  Attributes:
    arm: The arm.
    seed: The seed.
    config: The run's validated config (:func:`~.grid.run_config`).
  """
  arm: grid_lib.ArmSpec
  seed: int
  config: Any

  @property
  def dirname(self) -> str:
    """The run's folder name under ``OUT/runs/``."""
    return f"{self.arm.slug}_seed{self.seed}"


def plan_runs(base: Any, arms: Sequence[grid_lib.ArmSpec],
              seeds: Sequence[int]) -> list[Run]:
  """The runs of a grid, dense baseline first, then arm by arm.

  Args:
    base: The base config.
    arms: The sparse arms (the dense arm is added).
    seeds: The seeds; every arm runs once per seed.

  Returns:
    The runs, each with its checked config.

  Raises:
    ConfigError: An arm option that breaks the config or does not change
      the method, or two arms whose folder names coincide.

  Example:
    >>> runs = plan_runs(grid_lib.default_config(),
    ...                  [grid_lib.ArmSpec("ste", (), "2:4")], [0, 1])
    >>> [r.dirname for r in runs]
    ['dense_seed0', 'dense_seed1', 'ste_2-4_seed0', 'ste_2-4_seed1']
  """
  all_arms = [grid_lib.ArmSpec(grid_lib.DENSE)] + list(arms)
  slugs: dict[str, str] = {}
  for arm in all_arms:
    other = slugs.setdefault(arm.slug, arm.name)
    if other != arm.name:
      raise ConfigError(f"arms {other!r} and {arm.name!r} would share the "
                        f"folder {arm.slug!r}; name their options apart.")
  for arm in arms:
    if arm.options:
      _check_options(base, arm, seeds[0])
  return [Run(arm, seed, grid_lib.run_config(base, arm, seed))
          for arm in all_arms for seed in seeds]


def _get(config: Any, key: str) -> Any:
  """The value of a dotted key."""
  for part in key.split("."):
    config = config[part]
  return config


def _check_options(base: Any, arm: grid_lib.ArmSpec, seed: int) -> None:
  """Refuses an option of a sparse arm that leaves its method unchanged."""
  from sparsejax.pretrain import plan as plan_lib
  with_all = grid_lib.run_config(base, arm, seed)
  method = plan_lib.make_sparsifier(with_all)
  for i, (key, text) in enumerate(arm.options):
    if "." in key and not key.startswith("sparsity."):
      continue  # a key outside the sparsity section changes the run itself
    without = grid_lib.run_config(base, dataclasses.replace(
        arm, options=arm.options[:i] + arm.options[i + 1:]), seed)
    full = key if "." in key else f"sparsity.{key}"
    if _get(without, full) == _get(with_all, full):
      continue  # the base value, spelled out: allowed
    if plan_lib.make_sparsifier(without) == method:
      raise ConfigError(
          f"arm {arm.variant!r}: option {key}={text} does not change the "
          f"{arm.method} method (it takes no such "
          "setting); drop it.")


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = ""
          ) -> list[str]:
  """``key: old -> new`` for every leaf that differs."""
  out = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
    if isinstance(a, dict) and isinstance(b, dict):
      out += _diff(a, b, f"{prefix}{key}.")
    elif a != b and f"{prefix}{key}" != "progress":
      out.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return out


def check_runs(runs: Sequence[Run], out: str, *,
               plan_fn: Callable[[Any], Any] | None = None) -> None:
  """Every check of a grid that needs no compute, before any run starts.

  Each arm is planned once (its pattern must fit every layer it matches,
  with :func:`sparsejax.pretrain.plan.plan`), and every existing run folder
  must hold the same config.

  Args:
    runs: The runs (:func:`plan_runs`).
    out: The output folder.
    plan_fn: ``config -> anything`` raising ``ConfigError`` for a config
      that cannot run (default: the pretraining plan).

  Raises:
    ConfigError: Naming the arm, or the run folder and the keys that differ.

  Example:
    >>> import tempfile
    >>> base = grid_lib.default_config()
    >>> runs = plan_runs(base, [grid_lib.ArmSpec("ste", (), "3:7")], [0])
    >>> check_runs(runs, tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: arm 'ste 3:7': sparsity.rules=... does not fit the model: N:M 3:7 at ...
  """
  if plan_fn is None:
    from sparsejax.pretrain import plan as plan_lib
    plan_fn = plan_lib.plan
  seen = set()
  for run in runs:
    if run.arm not in seen:
      seen.add(run.arm)
      try:
        plan_fn(run.config)
      except ConfigError as e:
        raise ConfigError(f"arm {run.arm.name!r}: {e}") from None
    folder = os.path.join(out, "runs", run.dirname)
    result = read_result(folder)
    if result is None:
      try:
        ckpt_lib.check_workdir(folder, run.config)
      except ConfigError as e:
        raise ConfigError(f"{e} (run {run.dirname} of --out {out})") from None
      continue
    diffs = _diff(result.get("config", {}), config_lib.to_dict(run.config))
    if diffs:
      raise ConfigError(
          f"--out {out} holds a finished run {run.dirname} of another config "
          f"({'; '.join(diffs[:4])}{'; ...' if len(diffs) > 4 else ''}); "
          "results of two configs are not mixed: use a new --out, or delete "
          f"{folder} to rerun it.")


def read_result(folder: str) -> dict[str, Any] | None:
  """The result of a finished run in ``folder`` (``None`` if unfinished).

  Args:
    folder: A run folder.

  Returns:
    The stored result dict, or ``None``.

  Raises:
    ConfigError: The result file exists but is unreadable.

  Example:
    >>> read_result("/nonexistent") is None
    True
  """
  path = os.path.join(folder, RESULT_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path} is unreadable ({e}); delete it to rerun that "
                      "run.") from None


def _write_json(path: str, value: Any) -> None:
  """Writes ``value`` as JSON atomically."""
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)


def run_grid(runs: Sequence[Run], out: str,
             run_fn: RunFn = training.train_run,
             log: Any = None) -> list[dict[str, Any]]:
  """Runs every unfinished run, skipping finished ones; returns all results.

  Args:
    runs: The checked runs (:func:`plan_runs`, :func:`check_runs`).
    out: The output folder.
    run_fn: ``(config, folder) -> values`` (default
      :func:`~sparsejax.compare.training.train_run`).
    log: Stream for one line per run (default ``sys.stderr``).

  Returns:
    Per run, in order: ``{"arm", "method", "variant", "pattern", "seed",
    "dir", "config", "skipped"}`` plus the values of ``run_fn``.

  Example:
    >>> import io, tempfile
    >>> out = tempfile.mkdtemp()
    >>> runs = plan_runs(grid_lib.default_config(), [], [0])
    >>> fake = lambda config, folder: {"status": "finished", "val_loss": 2.0}
    >>> run_grid(runs, out, fake, log=io.StringIO())[0]["val_loss"]
    2.0
    >>> log = io.StringIO()
    >>> run_grid(runs, out, fake, log=log)[0]["skipped"], log.getvalue()[:29]
    (True, '[1/1] dense seed 0: finished ')
  """
  log = sys.stderr if log is None else log
  results = []
  for i, run in enumerate(runs, 1):
    folder = os.path.join(out, "runs", run.dirname)
    head = f"[{i}/{len(runs)}] {run.arm.name} seed {run.seed}"
    result = read_result(folder)
    skipped = result is not None
    if skipped:
      print(f"{head}: finished before, skipped ({folder})", file=log,
            flush=True)
    else:
      print(f"{head}: running in {folder}", file=log, flush=True)
      values = run_fn(run.config, folder)
      result = {"arm": run.arm.name, "method": run.arm.method,
                "variant": run.arm.variant, "pattern": run.arm.pattern,
                "seed": run.seed, "dir": run.dirname,
                "config": config_lib.to_dict(run.config), **values}
      os.makedirs(folder, exist_ok=True)
      _write_json(os.path.join(folder, RESULT_FILE), result)
      loss = result.get("val_loss")
      print(f"{head}: {result['status']}"
            + (f", val loss {loss:.4f}" if loss is not None else "")
            + (f", {result['wall_s']:.1f} s" if "wall_s" in result else ""),
            file=log, flush=True)
    results.append({**result, "skipped": skipped})
  return results
