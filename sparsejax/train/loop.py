"""The pretraining loop: plan, train each arm, evaluate, report.

A run has one or two *arms* trained with the same config, data order and
initial params: ``dense`` (the baseline, ``sparsity.method="none"``) and
``sparse`` (the configured method). Each arm lives in its own sub-folder of
the workdir (checkpoints, ``metrics.jsonl``) and resumes on its own.

:func:`plan` derives everything a run needs from the config *abstractly*
(shapes, shardings, sparsity patterns checked against every layer, the mesh
checked against the devices, the data loaded), so a bad config fails before
any compute and before anything is written. :func:`run` then trains.

Determinism: params are initialised from ``config.seed``; the batch of step
``t`` depends only on the data position stored in the checkpoint; dropout
keys are ``fold_in(key, step)``. A run resumed from a checkpoint therefore
reaches bit for bit the params of an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import time
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsejax as sj
from sparsejax import data as data_lib
from sparsejax import masks as masks_lib
from sparsejax import rules as rules_lib
from sparsejax import sharding as state_shardings
from sparsejax.models import gpt
from sparsejax.train import checkpoint as ckpt_lib
from sparsejax.train import config as config_lib
from sparsejax.train import outputs
from sparsejax.train import recipes
from sparsejax.train import sharding as sharding_lib

__all__ = ["TrainState", "Arm", "plan", "make_train_step", "run"]


class TrainState(NamedTuple):
  """Everything that evolves during training (checkpointed as one pytree).

  Attributes:
    step: int32 number of completed steps.
    params: The dense (shadow) params.
    opt_state: Optimizer state; for a sparse arm it holds the
      ``SparsityState`` (masks, sparsifier step, flips).
    rng: uint32 PRNG key data; step ``t`` uses ``fold_in(rng, t)``.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


@dataclasses.dataclass
class Arm:
  """One arm of a run, fully planned (no arrays allocated yet).

  Attributes:
    name: ``"dense"`` or ``"sparse"``.
    config: The arm's config.
    label: Display name (e.g. ``"sparse (progressive_nm 2:4)"``).
    model: The GPT.
    sparsifier: The sparsifier or ``None``.
    tx: The optimizer.
    rules: Sparsity rules (empty for dense).
    mesh: The device mesh.
    param_shardings: Shardings of the params.
    state_shardings: Shardings of the :class:`TrainState`.
    abstract_state: Shapes, dtypes and shardings of the :class:`TrainState`.
    batch_sharding: Sharding of token batches.
    train_tokens: Training split.
    val_tokens: Validation split.
  """
  name: str
  config: Any
  label: str
  model: gpt.GPT
  sparsifier: Any
  tx: Any
  rules: list[Any]
  mesh: Any
  param_shardings: Any
  state_shardings: Any
  abstract_state: Any
  batch_sharding: Any
  train_tokens: np.ndarray
  val_tokens: np.ndarray

  @contextlib.contextmanager
  def context(self):
    """Mesh and logical-axis rules active while tracing the model."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(
        sharding_lib.logical_rules()):
      yield


def _load_tokens(config: Any) -> tuple[np.ndarray, np.ndarray]:
  d = config.data
  if d.source == "pydoc":
    tokens = data_lib.encode(data_lib.pydoc_corpus())
  else:
    paths = [p.strip() for p in d.paths.split(",") if p.strip()]
    try:
      tokens = data_lib.text_files(paths)
    except (OSError, ValueError) as e:
      raise config_lib.ConfigError(f"data.paths: {e}") from None
  train, val = data_lib.train_val_split(tokens, d.val_fraction)
  n = data_lib.num_windows(len(train), d.seq_len)
  if n < d.batch_size:
    raise config_lib.ConfigError(
        f"the training split ({len(train)} tokens) gives only {n} windows of "
        f"{d.seq_len + 1} tokens; data.batch_size={d.batch_size} needs more "
        "data or a shorter data.seq_len.")
  if len(val) <= d.seq_len:
    raise config_lib.ConfigError(
        f"the validation split ({len(val)} tokens) is shorter than one window "
        f"(data.seq_len={d.seq_len}); raise data.val_fraction.")
  return train, val


def _with_shardings(abstract: Any, shardings: Any) -> Any:
  return jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract, shardings)


def _init_fn(model: gpt.GPT, tx: Any, seq_len: int):
  def init(key):
    pkey, dkey = jax.random.split(key)
    tokens = jnp.zeros((1, min(seq_len, 8)), jnp.int32)
    params = nn.unbox(model.init(pkey, tokens)["params"])
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params),
                      rng=jax.random.key_data(dkey))
  return init


def _arm_label(config: Any) -> str:
  s = config.sparsity
  if s.method == "none":
    return "dense"
  pats = sorted({r.partition("=")[2].strip()
                 for r in s.rules.split(";") if r.strip()})
  return f"sparse ({s.method} {','.join(pats)})"


def _plan_arm(name: str, config: Any, devices: Sequence[Any] | None,
              tokens: tuple[np.ndarray, np.ndarray]) -> Arm:
  model = gpt.GPT(recipes.model_config(config))
  sparsifier = recipes.make_sparsifier(config)
  tx = recipes.make_optimizer(config, sparsifier)
  rules = ([] if sparsifier is None else
           config_lib.parse_rules(config.sparsity.rules))
  mesh = sharding_lib.make_mesh(config.mesh, devices)
  param_sh = sharding_lib.param_shardings(model, mesh)
  init = _init_fn(model, tx, config.data.seq_len)
  try:
    abstract = jax.eval_shape(init, jax.random.key(0))
  except (ValueError, TypeError) as e:
    raise config_lib.ConfigError(
        f"sparsity.rules={config.sparsity.rules!r} with "
        f"sparsity.method={config.sparsity.method!r} does not fit the model: "
        f"{e}") from None
  sharding_lib.check_divisible(
      abstract.params, param_sh, mesh,
      {"data.batch_size": config.data.batch_size,
       "eval.batch_size": config.eval.batch_size})
  state_sh = state_shardings.like_params(abstract, abstract.params, param_sh,
                                         mesh)
  state_sh = state_sh._replace(params=param_sh)
  return Arm(
      name=name, config=config, label=_arm_label(config), model=model,
      sparsifier=sparsifier, tx=tx, rules=rules, mesh=mesh,
      param_shardings=param_sh, state_shardings=state_sh,
      abstract_state=_with_shardings(abstract, state_sh),
      batch_sharding=sharding_lib.batch_sharding(mesh),
      train_tokens=tokens[0], val_tokens=tokens[1])


def plan(config: Any, devices: Sequence[Any] | None = None) -> list[Arm]:
  """Validates ``config`` and plans its arms without computing anything.

  Args:
    config: The run's ``ConfigDict``.
    devices: Devices of the mesh (default: all).

  Returns:
    The arms in training order (dense baseline first).

  Raises:
    ConfigError: Unknown keys, bad values, a pattern that does not divide a
      layer, a mesh that does not match the devices, too little data.

  Example:
    >>> cfg = config_lib.get_config("smoke")
    >>> [a.name for a in plan(cfg, jax.devices()[:1])]
    ['dense', 'sparse']
  """
  config_lib.validate(config)
  tokens = _load_tokens(config)
  arms = []
  if config.sparsity.method == "none":
    return [_plan_arm("dense", config, devices, tokens)]
  if config.sparsity.baseline:
    dense = copy.deepcopy(config)
    dense.sparsity.method = "none"
    arms.append(_plan_arm("dense", dense, devices, tokens))
  arms.append(_plan_arm("sparse", config, devices, tokens))
  return arms


def _scalar_diagnostics(sparsifier: Any, opt_state: Any) -> dict[str, Any]:
  diag = sparsifier.diagnostics(sj.sparsity_state(opt_state))
  return {k: v for k, v in diag.items() if "/" not in k and k != "step"}


def make_train_step(arm: Arm):
  """The jitted ``(state, batch) -> (state, metrics)`` of an arm.

  Args:
    arm: A planned arm.

  Returns:
    A jitted function; ``state`` is donated on accelerators.

  Example:
    >>> arm = plan(config_lib.get_config("smoke"), jax.devices()[:1])[-1]
    >>> step_fn = make_train_step(arm)  # compiled at its first call
    >>> callable(step_fn)
    True
  """
  loss_fn = gpt.make_loss_fn(arm.model)
  sp, tx = arm.sparsifier, arm.tx
  lr = recipes.learning_rate(arm.config)
  dropout = arm.config.model.dropout > 0

  def step_fn(state: TrainState, batch: dict[str, jax.Array]):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def objective(params):
      if sp is not None:
        params = sp.view(params, sj.sparsity_state(state.opt_state))
      return loss_fn(params, batch, rng if dropout else None)

    loss, grads = jax.value_and_grad(objective)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
               "lr": lr(state.step)}
    if sp is not None:
      metrics.update(_scalar_diagnostics(sp, opt_state))
    return TrainState(state.step + 1, params, opt_state, state.rng), metrics

  return jax.jit(step_fn,
                 in_shardings=(arm.state_shardings, arm.batch_sharding),
                 out_shardings=(arm.state_shardings,
                                sharding_lib.replicated(arm.mesh)),
                 donate_argnums=_donate(arm))


def _donate(arm: Arm) -> tuple[int, ...]:
  # Host-memory devices may hand a checkpoint being written asynchronously
  # the very buffers a donated step overwrites; donate only on accelerators.
  platform = arm.mesh.devices.flat[0].platform
  return () if platform == "cpu" else (0,)


def _eval_params_fn(arm: Arm):
  """Jitted ``state -> params`` that the arm is evaluated and exported with."""
  sp = arm.sparsifier
  if sp is None:
    return lambda state: state.params
  return jax.jit(
      lambda params, opt_state: sp.sparse_params(
          params, sj.sparsity_state(opt_state)),
      in_shardings=(arm.param_shardings, arm.state_shardings.opt_state),
      out_shardings=arm.param_shardings)


def _loss_sum_fn(arm: Arm):
  model = arm.model

  def fn(params, batch):
    logits = model.apply({"params": params}, batch["inputs"])
    losses = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), batch["targets"])
    return (losses * batch["weights"][:, None]).sum()

  return jax.jit(fn, in_shardings=(arm.param_shardings, arm.batch_sharding),
                 out_shardings=sharding_lib.replicated(arm.mesh))


def _evaluate(arm: Arm, params: Any, loss_sum: Any = None) -> dict[str, float]:
  """Validation loss (nats per byte) and perplexity of ``params``.

  Consecutive windows of the validation split (at most
  ``eval.max_windows``), batched by ``eval.batch_size``; the last batch is
  padded with zero-weight windows. Each process loads only its rows.

  Args:
    arm: The planned arm.
    params: Params to evaluate (sharded like ``arm.param_shardings``).
    loss_sum: Optional precompiled loss function (from a previous call).

  Returns:
    ``{"loss", "perplexity", "tokens"}``.
  """
  cfg = arm.config
  seq_len, bs = cfg.data.seq_len, cfg.eval.batch_size
  windows = data_lib.sequential_windows(arm.val_tokens, seq_len)
  n = len(windows["inputs"])
  if cfg.eval.max_windows:
    n = min(n, cfg.eval.max_windows)
  loss_sum = loss_sum or _loss_sum_fn(arm)
  rows = data_lib.local_batch_slice(bs, jax.process_index(),
                                    jax.process_count())
  total = 0.0
  with arm.context():
    for start in range(0, n, bs):
      k = min(bs, n - start)
      inputs = np.zeros((bs, seq_len), np.int32)
      targets = np.zeros((bs, seq_len), np.int32)
      weights = np.zeros((bs,), np.float32)
      inputs[:k] = windows["inputs"][start:start + k]
      targets[:k] = windows["targets"][start:start + k]
      weights[:k] = 1.0
      local = {"inputs": inputs[rows], "targets": targets[rows],
               "weights": weights[rows]}
      batch = data_lib.global_batch(local, arm.batch_sharding)
      total += float(loss_sum(params, batch))
  loss = total / (n * seq_len)
  return {"loss": loss, "perplexity": math.exp(loss), "tokens": n * seq_len}


def _init_state(arm: Arm) -> TrainState:
  init = _init_fn(arm.model, arm.tx, arm.config.data.seq_len)
  with arm.context():
    return jax.jit(init, out_shardings=arm.state_shardings)(
        jax.random.key(arm.config.seed))


def _train_arm(arm: Arm, workdir: str, *, stop_at: int | None = None,
              progress: bool = True) -> dict[str, Any]:
  """Trains (or resumes) one arm, checkpointing and logging as configured.

  Args:
    arm: The planned arm.
    workdir: The arm's folder.
    stop_at: Stop (with a checkpoint) after this many steps, as if the run
      were interrupted there.
    progress: Show the progress bar.

  Returns:
    ``{"state", "step", "finished", "steps_per_s", "train_s", "resumed_from"}``
    and, when finished, ``"val_loss"``, ``"perplexity"``, ``"eval_params"``.
  """
  cfg = arm.config
  total = cfg.train.steps
  end = total if stop_at is None else min(stop_at, total)
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                               keep=cfg.checkpoint.keep,
                               async_save=cfg.checkpoint.async_save)
  latest = ckpt.latest_step()
  if latest is None:
    state = _init_state(arm)
    data_state = data_lib.DataState(seed=cfg.seed)
    start = 0
  else:
    with arm.context():
      state, data_state = ckpt.restore(latest, arm.abstract_state)
    start = latest
  tb = os.path.join(workdir, "tensorboard") if cfg.outputs.tensorboard else None
  writer = outputs.MetricsWriter(os.path.join(workdir, "metrics.jsonl"),
                                 resume_step=latest, tensorboard_dir=tb)
  table = recipes.schedule_table(cfg, arm.sparsifier, np.arange(total + 1))
  step_fn = make_train_step(arm)
  eval_params = _eval_params_fn(arm)
  loss_sum = _loss_sum_fn(arm)
  bar = outputs.ProgressBar(total, start, arm.name,
                            enabled=progress and cfg.progress)
  timed_steps, timed_s, paused = 0, 0.0, 0.0
  t_first = t_log = None
  steps_since_log = 0
  last_eval = None
  for step in range(start, end):
    local, data_state = data_lib.next_batch(
        arm.train_tokens, data_state, cfg.data.batch_size, cfg.data.seq_len)
    batch = data_lib.global_batch(local, arm.batch_sharding)
    with arm.context():
      state, metrics = step_fn(state, batch)
    s = step + 1
    steps_since_log += 1
    if t_first is None:  # The first step compiles; time from its end.
      jax.block_until_ready(metrics["loss"])
      t_first = t_log = time.perf_counter()
      steps_since_log = 0
    if s % cfg.log_every == 0 or s == end:
      metrics = jax.device_get(metrics)
      now = time.perf_counter()
      record = dict(metrics)
      if steps_since_log and now > t_log + paused:
        record["steps_per_s"] = steps_since_log / (now - t_log - paused)
      for key in ("n", "m", "beta", "phase"):
        if key in table and key not in record:
          record[key] = table[key][s]
      writer.write(s, record)
      bar.update(s, f"loss {float(metrics['loss']):.3f}")
      t_log, paused, steps_since_log = now, 0.0, 0
    if s % cfg.eval.every == 0 or s == total:
      t0 = time.perf_counter()
      params = (eval_params(state.params, state.opt_state)
                if arm.sparsifier is not None else state.params)
      result = _evaluate(arm, params, loss_sum)
      last_eval = (s, params, result)
      writer.write(s, {"val_loss": result["loss"],
                       "val_perplexity": result["perplexity"]})
      dt = time.perf_counter() - t0
      paused += dt
      timed_s -= dt
    if s % cfg.checkpoint.every == 0 or s == end:
      ckpt.save(s, state, data_state)
  if t_first is not None:
    jax.block_until_ready(state.params)
    timed_s += time.perf_counter() - t_first
    timed_steps = end - start - 1
  bar.close()
  ckpt.close()
  writer.close()
  steps_per_s = timed_steps / timed_s if timed_steps > 0 else None
  if steps_per_s is None:  # Nothing (timed) ran now: use the logged rates.
    rates = [r["steps_per_s"] for r in outputs.read_metrics(
        os.path.join(workdir, "metrics.jsonl")) if "steps_per_s" in r]
    steps_per_s = float(np.median(rates)) if rates else None
  out = {"state": state, "step": max(end, start),
         "finished": max(end, start) >= total, "resumed_from": latest,
         "steps_per_s": steps_per_s,
         "train_s": timed_s if timed_steps > 0 else None}
  if out["finished"]:
    if last_eval is not None and last_eval[0] == total:
      _, params, result = last_eval
    else:
      params = (eval_params(state.params, state.opt_state)
                if arm.sparsifier is not None else state.params)
      result = _evaluate(arm, params, loss_sum)
    out.update(val_loss=result["loss"], perplexity=result["perplexity"],
               eval_params=params)
  return out


def _layer_rows(arm: Arm, params: Any, state: TrainState) -> list[dict]:
  masks = sj.sparsity_state(state.opt_state).masks
  assignment = rules_lib.assign(params, arm.rules)
  rows = []
  for path, w, m in masks_lib.named_pairs(params, masks):
    if masks_lib.is_dense(m):
      continue
    m = np.asarray(jax.device_get(m)) if jax.process_count() == 1 else (
        np.asarray(outputs._host(m)))  # pylint: disable=protected-access
    pattern = assignment[path].pattern
    reached = (outputs.nm_reached(m, pattern.m) if isinstance(pattern, sj.NM)
               else "unstructured")
    rows.append({"path": path, "shape": list(np.shape(w)),
                 "target": str(pattern), "reached": reached,
                 "sparsity": float(1.0 - m.mean())})
  return rows


def _write_outputs(arms: list[Arm], workdir: str, results: dict,
                   layers: list[dict], final: dict) -> None:
  cfg = arms[-1].config
  if cfg.outputs.plots:
    plots = os.path.join(workdir, "plots")
    if jax.process_index() == 0:
      os.makedirs(plots, exist_ok=True)
    runs = {a.label: outputs.read_metrics(
        os.path.join(workdir, a.name, "metrics.jsonl")) for a in arms}
    outputs.plot_losses(runs, os.path.join(plots, "loss.png"))
    sparse = [a for a in arms if a.sparsifier is not None]
    if sparse:
      a = sparse[0]
      steps = np.arange(a.config.train.steps + 1)
      table = recipes.schedule_table(a.config, a.sparsifier, steps)
      series = {}
      recs = runs[a.label]
      sp = [(r["step"], r["sparsity"]) for r in recs if "sparsity" in r]
      if "phase" in table:  # Progressive: masks apply from the sparse phase.
        series["sparsity in the forward pass"] = np.where(
            table["phase"] > 0, 1.0 - table["n"] / table["m"], 0.0)
      elif sp:
        xs, ys = zip(*sp)
        series["sparsity (measured)"] = np.interp(steps, xs, ys)
      if "n" in table:
        series["N:M density n/m"] = table["n"] / table["m"]
      if "beta" in table:
        series["mask decay beta"] = table["beta"]
      outputs.plot_schedule(steps, series,
                            os.path.join(plots, "schedule.png"),
                            title=f"Schedule: {a.label}")
  if cfg.outputs.export and "sparse" in final:
    arm = [a for a in arms if a.name == "sparse"][0]
    st = final["sparse"]
    masks = sj.sparsity_state(st["state"].opt_state).masks
    outputs.export_weights(st["eval_params"], masks, arm.rules,
                           os.path.join(workdir, "export"))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump({"results": results, "layers": layers}, f, indent=2)


def run(config: Any, workdir: str, *, devices: Sequence[Any] | None = None,
        stop_at: int | None = None, progress: bool = True,
        report: bool = True) -> dict[str, Any]:
  """Plans, trains every arm, evaluates and writes the outputs.

  Everything that can be refused (config, mesh, patterns, data, a workdir of
  an incompatible run) is refused before any compute and before anything is
  written.

  Args:
    config: The run's ``ConfigDict``.
    workdir: Output folder; a compatible run there is resumed.
    devices: Devices for the mesh (default: all).
    stop_at: Stop the first unfinished arm after this many steps (with a
      checkpoint), as if interrupted; later arms are not started.
    progress: Show progress bars.
    report: Print the final report.

  Returns:
    ``{"arms": {name: per-arm result}, "results": {...}, "layers": [...],
    "finished": bool}``.

  Example:
    A config that cannot run is refused before anything is computed or
    written (``tests/train`` runs real trainings):

    >>> import tempfile
    >>> cfg = config_lib.get_config("smoke")
    >>> cfg.mesh.data = 3
    >>> run(cfg, tempfile.mkdtemp(), devices=jax.devices()[:1])
    Traceback (most recent call last):
    ...
    sparsejax.train.config.ConfigError: mesh {'data': 3, ...} has 3 device(s) but 1 are available; ...
  """
  workdir = os.path.abspath(os.fspath(workdir))
  arms = plan(config, devices)
  ckpt_lib.check_workdir(workdir, config)
  ckpt_lib.write_config(workdir, config)
  final, results = {}, {}
  finished = True
  for arm in arms:
    out = _train_arm(arm, os.path.join(workdir, arm.name), stop_at=stop_at,
                    progress=progress)
    final[arm.name] = out
    if not out["finished"]:
      finished = False
      break
    results[arm.name] = {
        "label": arm.label, "val_loss": out["val_loss"],
        "perplexity": out["perplexity"], "steps_per_s": out["steps_per_s"],
        "train_s": out["train_s"], "resumed_from": out["resumed_from"]}
  layers = []
  if finished and "sparse" in final:
    sparse_arm = [a for a in arms if a.name == "sparse"][0]
    layers = _layer_rows(sparse_arm, final["sparse"]["eval_params"],
                         final["sparse"]["state"])
  if finished:
    _write_outputs(arms, workdir, results, layers, final)
    if report and jax.process_index() == 0:
      print(outputs.format_report(results, layers), flush=True)
  return {"arms": final, "results": results, "layers": layers,
          "finished": finished}
