"""The pretraining loop: train each planned arm, then write the outputs.

Each arm lives in its own sub-folder of the workdir (checkpoints,
``metrics.jsonl``) and resumes on its own from its last complete checkpoint;
see :mod:`sparsejax.pretrain.step` for why a resumed run is bit-exact. The
workdir may be local or any ``etils.epath`` path (``gs://bucket/run``).
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import jax
import numpy as np
from etils import epath

import sparsejax as sj
from sparsejax.pretrain import checkpoint as ckpt_lib
from sparsejax.pretrain import corpus as corpus_lib
from sparsejax.pretrain import data as data_lib
from sparsejax.pretrain import evaluate as evaluate_lib
from sparsejax.pretrain import export as export_lib
from sparsejax.pretrain import integrity
from sparsejax.pretrain import metrics as metrics_lib
from sparsejax.pretrain import paths
from sparsejax.pretrain import pipeline
from sparsejax.pretrain import plan as plan_lib
from sparsejax.pretrain import progress as progress_lib
from sparsejax.pretrain import plots as plots_lib
from sparsejax.pretrain import report as report_lib
from sparsejax.pretrain import step as step_lib
from sparsejax.pretrain import validation

__all__ = ["train_arm", "run"]


class _Evaluator:
  """Evaluates an arm's state (hard masks applied), compiling once."""

  def __init__(self, arm: plan_lib.Arm):
    self.arm = arm
    self.params_of = step_lib.eval_params_fn(arm)
    self.loss_sum = evaluate_lib.loss_sum_fn(arm.model, arm.param_shardings,
                                             arm.batch_sharding)

  def __call__(self, state: step_lib.TrainState) -> tuple[Any, dict]:
    cfg, params = self.arm.config, self.params_of(state)
    with self.arm.context():
      result = evaluate_lib.evaluate(
          self.arm.model, params, self.arm.corpus.val_tokens,
          seq_len=cfg.data.seq_len, batch_size=cfg.eval.batch_size,
          max_windows=cfg.eval.max_windows,
          batch_sharding=self.arm.batch_sharding, loss_sum=self.loss_sum)
    return params, result


def _nonfinite_error(arm: plan_lib.Arm, state: step_lib.TrainState,
                     step: int, saved: list[int], workdir: epath.Path
                     ) -> step_lib.NonFiniteError:
  """The error of an arm stopped at ``step`` after too many skipped steps."""
  skips = jax.device_get(state.skips)
  kept = (f"the last good checkpoint (step {saved[-1]}) is kept in "
          f"{workdir / 'checkpoints'}" if saved else
          "no checkpoint had been saved")
  return step_lib.NonFiniteError(
      f"arm {arm.name!r} stopped at step {step}: {int(skips.count)} steps had "
      f"a non-finite loss or gradient (more than train.max_nonfinite_steps="
      f"{arm.config.train.max_nonfinite_steps}); the last, step "
      f"{int(skips.step)}, had loss {float(skips.loss)} and grad_norm "
      f"{float(skips.grad_norm)}. Nothing was saved or exported after it; "
      f"{kept}. Lower optim.lr (now {arm.config.optim.lr}) or check the data.")


def train_arm(arm: plan_lib.Arm, workdir: str | os.PathLike, *,
              stop_at: int | None = None,
              progress: bool = True) -> dict[str, Any]:
  """Trains (or resumes) one arm, checkpointing and logging as configured.

  Args:
    arm: The planned arm.
    workdir: The arm's folder (local or any ``etils.epath`` path).
    stop_at: Stop (with a checkpoint) after this many steps, as if the run
      were interrupted there.
    progress: Show the progress bar.

  Returns:
    ``{"state", "step", "finished", "steps_per_s", "train_s", "resumed_from"}``
    and, when finished, ``"val_loss"``, ``"perplexity"``, ``"eval_params"``.

  Raises:
    NonFiniteError: More than ``train.max_nonfinite_steps`` steps were
      skipped for non-finite values (checked when the loop syncs anyway: at
      the logging and checkpoint steps and the end), or the final params are
      not finite. No checkpoint is saved past the check that fails.
  """
  cfg = arm.config
  workdir = paths.as_path(workdir)
  total = cfg.train.steps
  end = total if stop_at is None else min(stop_at, total)
  ckpt = ckpt_lib.Checkpointer(workdir / "checkpoints",
                               keep=cfg.checkpoint.keep,
                               async_save=cfg.checkpoint.async_save)
  fingerprint = corpus_lib.data_fingerprint(
      arm.corpus, seed=cfg.seed, batch_size=cfg.data.batch_size)
  with arm.context():
    found = ckpt.restore_latest(arm.abstract_state)
  if found is None:
    latest, state, iterator_state, start = (None, step_lib.init_state(arm),
                                            None, 0)
  else:
    latest, state, data_state = found
    where = os.fspath(paths.as_path(ckpt.directory) / str(latest))
    corpus_lib.check_fingerprint(data_state["fingerprint"], fingerprint, where)
    iterator_state, start = data_state["iterator"], latest
    if iterator_state["next_index"] != latest:  # one batch per step
      raise integrity.CheckpointError(
          f"{where}: the data state says {iterator_state['next_index']} "
          f"batches were drawn in {latest} steps; the checkpoint is damaged.")
  batches = pipeline.train_iterator(
      pipeline.train_dataset(arm.corpus.train,
                             batch_size=cfg.data.batch_size, seed=cfg.seed),
      iterator_state)
  metrics_path = workdir / "metrics.jsonl"
  writer = metrics_lib.MetricsWriter(
      metrics_path, resume_step=latest,
      tensorboard_dir=(os.fspath(workdir / "tensorboard")
                       if cfg.outputs.tensorboard else None))
  table = report_lib.schedule_table(arm.sparsifier, arm.rules,
                                    np.arange(total + 1))
  step_fn = step_lib.make_train_step(arm, plan_lib.learning_rate(cfg))
  evaluator = _Evaluator(arm)
  bar = progress_lib.Progress(total, start, arm.name,
                              enabled=progress and cfg.progress)
  timed_s, paused, since_log = 0.0, 0.0, 0
  t_first = t_log = None
  last_eval = None
  diverged = None
  try:
    for step in range(start, end):
      batch = data_lib.global_batch(next(batches), arm.batch_sharding)
      with arm.context():
        state, metrics = step_fn(state, batch)
      s = step + 1
      since_log += 1
      if t_first is None:  # The first step compiles; time from its end.
        jax.block_until_ready(metrics["loss"])
        t_first = t_log = time.perf_counter()
        since_log = 0
        bar.started(s)
      if s % cfg.log_every == 0 or s == end:
        record, now = dict(jax.device_get(metrics)), time.perf_counter()
        if since_log and now > t_log + paused:
          record["steps_per_s"] = since_log / (now - t_log - paused)
        for key in ("n", "m", "beta", "phase"):
          if key in table and key not in record:
            record[key] = table[key][s]
        writer.write(s, record)
        bar.update(s, loss=float(record["loss"]))
        t_log, paused, since_log = now, 0.0, 0
        skipped = int(record["skipped"])
      elif s % cfg.checkpoint.every == 0:  # the save syncs anyway
        skipped = int(state.skips.count)
      else:
        skipped = 0
      if skipped > cfg.train.max_nonfinite_steps:
        diverged = s
        break
      if s % cfg.eval.every == 0 or s == total:
        t0 = time.perf_counter()
        params, result = evaluator(state)
        last_eval = (s, params, result)
        writer.write(s, {"val_loss": result["loss"],
                         "val_perplexity": result["perplexity"]})
        dt = time.perf_counter() - t0
        paused += dt
        timed_s -= dt
      if s % cfg.checkpoint.every == 0 or s == end:
        ckpt.save(s, state, {"iterator": batches.get_state(),
                             "fingerprint": fingerprint})
        writer.flush()  # on an object store, the file is rewritten here
  finally:
    bar.close()
    ckpt.close()
    writer.close()
  if diverged is not None:
    raise _nonfinite_error(arm, state, diverged, ckpt.steps(), workdir)
  timed_steps = 0
  if t_first is not None:
    jax.block_until_ready(state.params)
    timed_s += time.perf_counter() - t_first
    timed_steps = end - start - 1
  steps_per_s = timed_steps / timed_s if timed_steps > 0 else None
  if steps_per_s is None:  # Nothing (timed) ran now: use the logged rates.
    rates = [r["steps_per_s"] for r in metrics_lib.read_metrics(metrics_path)
             if "steps_per_s" in r]
    steps_per_s = float(np.median(rates)) if rates else None
  out = {"state": state, "step": max(end, start),
         "finished": max(end, start) >= total, "resumed_from": latest,
         "steps_per_s": steps_per_s,
         "train_s": timed_s if timed_steps > 0 else None}
  if out["finished"]:
    if last_eval is not None and last_eval[0] == total:
      _, params, result = last_eval
    else:
      params, result = evaluator(state)
    if not bool(step_lib.all_finite(params)):  # skipped steps keep these
      raise step_lib.NonFiniteError(
          f"arm {arm.name!r}: the params after step {out['step']} are not "
          "finite; nothing was exported.")
    out.update(val_loss=result["loss"], perplexity=result["perplexity"],
               eval_params=params)
  return out


def _write_outputs(arms: list[plan_lib.Arm], workdir: epath.Path,
                   results: dict[str, Any], final: dict[str, Any],
                   report: bool) -> sj.summary.Summary | None:
  """Per-layer summary, plots, export, ``summary.json`` and the report."""
  cfg = arms[-1].config
  layers = None
  sparse = [a for a in arms if a.name == "sparse"]
  if sparse:
    arm, out = sparse[0], final["sparse"]
    masks = export_lib.to_host(sj.sparsity_state(out["state"].opt_state).masks)
    params = export_lib.to_host(out["eval_params"])
    layers = sj.summarize(params, masks, arm.rules, show=False)
    if cfg.outputs.export:
      export_lib.export_weights(params, masks, arm.rules, workdir / "export")
  if cfg.outputs.plots:
    plots_lib.write_plots(arms, workdir)
  rows = [] if layers is None else [
      dict(path=r.path, shape=list(r.shape), pattern=r.pattern,
           reached=r.reached, kept=r.kept, size=r.size, sparsity=r.sparsity)
      for r in layers.masked]
  if metrics_lib.is_main():
    (workdir / "summary.json").write_text(
        json.dumps({"results": results, "layers": rows}, indent=2))
    if report:
      print(report_lib.format_report(results, layers), flush=True)
  return layers


def _check_saved_data(arm: plan_lib.Arm, directory: epath.Path) -> None:
  """Refuses checkpoints whose data state is of other data (before any
  compute); a damaged one is left to the restore's fallback."""
  steps = ckpt_lib.finished_steps(directory)
  if not steps:
    return
  ckpt = ckpt_lib.Checkpointer(directory, async_save=False)
  try:
    saved = ckpt.saved_data(steps[-1])
  except Exception:  # pylint: disable=broad-except
    return
  finally:
    ckpt.close()
  corpus_lib.check_fingerprint(
      saved["fingerprint"],
      corpus_lib.data_fingerprint(arm.corpus, seed=arm.config.seed,
                                batch_size=arm.config.data.batch_size),
      os.fspath(directory / str(steps[-1])))


def run(config: Any, workdir: str | os.PathLike, *,
        devices: Sequence[Any] | None = None,
        stop_at: int | None = None, progress: bool = True,
        report: bool = True,
        corpus: corpus_lib.Corpus | None = None) -> dict[str, Any]:
  """Plans, trains every arm, evaluates and writes the outputs.

  Everything that can be refused (config, mesh, patterns, data, a workdir
  that cannot be written or holds an incompatible run) is refused before any
  compute and before anything is written.

  Args:
    config: The run's ``ConfigDict``.
    workdir: Output folder, local or any ``etils.epath`` path such as
      ``gs://bucket/run``; a compatible run there is resumed.
    devices: Devices for the mesh (default: all).
    stop_at: Stop the first unfinished arm after this many steps (with a
      checkpoint), as if interrupted; later arms are not started.
    progress: Show progress bars.
    report: Print the final report.
    corpus: One's own data (:func:`~sparsejax.pretrain.corpus.make_corpus`)
      instead of ``config.data.source``.

  Raises:
    ConfigError: The config or workdir cannot be run (nothing computed).
    NonFiniteError: An arm stopped on non-finite values
      (:func:`train_arm`); nothing is exported.

  Returns:
    ``{"arms": {name: per-arm result}, "results": {...}, "layers": Summary or
    None, "finished": bool}``.

  Example:
    A config that cannot run is refused before anything is computed or
    written (``tests/pretrain`` runs real trainings):

    >>> import tempfile
    >>> from sparsejax.pretrain import config
    >>> cfg = config.get_config()
    >>> cfg.mesh.data = 3
    >>> run(cfg, tempfile.mkdtemp(), devices=jax.devices()[:1])
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: mesh {'data': 3, ...} has 3 device(s) but 1 are available; ...
  """
  workdir = paths.as_path(workdir)
  validation.check_workdir_path(workdir)
  arms = plan_lib.plan(config, devices, corpus=corpus)
  ckpt_lib.check_workdir(workdir, config)
  for arm in arms:
    _check_saved_data(arm, workdir / arm.name / "checkpoints")
  ckpt_lib.write_config(workdir, config)
  final, results = {}, {}
  for arm in arms:
    out = train_arm(arm, workdir / arm.name, stop_at=stop_at,
                    progress=progress)
    final[arm.name] = out
    if not out["finished"]:
      return {"arms": final, "results": results, "layers": None,
              "finished": False}
    results[arm.name] = {
        "label": arm.label, "val_loss": out["val_loss"],
        "perplexity": out["perplexity"], "steps_per_s": out["steps_per_s"],
        "train_s": out["train_s"], "resumed_from": out["resumed_from"]}
  layers = _write_outputs(arms, workdir, results, final, report)
  return {"arms": final, "results": results, "layers": layers,
          "finished": True}
