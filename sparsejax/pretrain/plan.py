"""What a run builds from its config: model, optimizer, sparsifier, mesh, arms.

:func:`plan` derives everything a run needs *abstractly* (shapes, shardings,
sparsity patterns checked against every layer, the mesh checked against the
devices, the data loaded), so a bad config fails before any compute and
before anything is written.

A run has one or two *arms* trained with the same config, data order and
initial params: ``dense`` (the baseline, ``sparsity.method="none"``) and
``sparse`` (the configured method).

The sparsifier of a config comes from :func:`make_sparsifier` only: it holds
the one table from ``sparsity.method`` to a factory of the library. The
phases and windows of the methods are given as fractions of ``train.steps``
so that one recipe scales with the length of the run.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
from typing import Any, Callable, Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import sparsejax as sj
from sparsejax import sharding as state_shardings
from sparsejax.methods import registry
from sparsejax.models import gpt
from sparsejax.pretrain import activation_sparsity as activation_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import corpus as corpus_lib
from sparsejax.pretrain import data as data_lib
from sparsejax.pretrain import mesh as mesh_lib
from sparsejax.pretrain import sources
from sparsejax.pretrain import step as step_lib
from sparsejax.pretrain import validation

__all__ = ["Arm", "model_config", "learning_rate",
           "make_optimizer", "make_sparsifier", "plan"]


def _steps(fraction: float, total: int) -> int:
  return int(round(fraction * total))


def _hyperparameters(config: Any, rules: list[sj.Rule]) -> dict[str, Any]:
  """Every method hyperparameter a config gives, by the factories' names.

  Phases and windows are fractions of ``train.steps`` in the config, so one
  recipe scales with the length of the run; a factory takes the subset its
  signature names. ``sparsity.distribution`` spreads ``sparsity.target`` over
  the layers only where every rule's pattern has a sparsity to set (N:M
  patterns have a fixed density).
  """
  s, total = config.sparsity, config.train.steps
  dist = s.distribution or None
  if not all(r.pattern is None or r.pattern.has_sparsity for r in rules):
    dist = None
  return {
      "total_steps": total,
      "dense_steps": _steps(s.dense_fraction, total),
      "finetune_steps": _steps(s.finetune_fraction, total),
      "structure": s.structure or None,
      # The mask decay of progressive N:M is a name; SR-STE's is lambda.
      "decay": (s.srste_decay if config.sparsity.method == "srste"
                else s.decay or None),
      "c": s.c if s.decay else None,
      "grad": s.grad,
      "begin_step": _steps(s.begin_fraction, total),
      "end_step": _steps(s.end_fraction, total),
      "frequency": s.frequency,
      "t_end": max(_steps(s.t_end_fraction, total), 1),
      "alpha": s.alpha,
      "delta_t": s.delta_t,
      "seed": config.seed,
      "distribution": dist,
      "sparsity": s.target if dist else None,
      "on_unused": "error",
  }


def make_sparsifier(config: Any) -> Any:
  """The sparsifier of ``config.sparsity`` (``None`` for ``method="none"``).

  ``sparsity.method`` is any name in the method registry
  (``sparsejax.methods.names("train")``); the factory gets the config's
  hyperparameters that its signature names, so a newly registered method is
  usable from a config with no edit here.

  Args:
    config: The run's ``ConfigDict``.

  Returns:
    A ``sparsejax`` method, or ``None``.

  Raises:
    ConfigError: ``sparsity.method`` names no registered method, or bad rules.

  Example:
    >>> sp = make_sparsifier(config_lib.get_config())
    >>> type(sp.schedule).__name__, sp.schedule.dense_steps
    ('ProgressiveNM', 75)
  """
  method = config.sparsity.method
  if method == "none":
    return None
  validation.check_method(method)
  factory = registry.get(method, kind="train")
  accepted = inspect.signature(factory).parameters
  rules = config_lib.sparsity_rules(config)
  kwargs = {k: v for k, v in _hyperparameters(config, rules).items()
            if k in accepted}
  return factory(rules, **kwargs)


def model_config(config: Any) -> gpt.GPTConfig:
  """The :class:`~sparsejax.models.gpt.GPTConfig` of a run.

  Args:
    config: The run's ``ConfigDict``.

  Returns:
    A ``GPTConfig`` with a 256-token byte vocabulary and ``max_len`` equal to
    ``data.seq_len``.

  Example:
    >>> model_config(config_lib.get_config()).d_model
    128
  """
  m = config.model
  return gpt.GPTConfig(
      vocab_size=data_lib.VOCAB_SIZE, d_model=m.d_model, n_layers=m.n_layers,
      n_heads=m.n_heads, d_ff=m.d_ff, max_len=config.data.seq_len,
      dropout=m.dropout, dtype=jnp.dtype(m.dtype), positions=m.positions,
      tie_embeddings=m.tie_embeddings, scan_layers=m.scan_layers,
      remat=m.remat)


def learning_rate(config: Any) -> optax.Schedule:
  """Linear warm-up then cosine decay to ``end_lr_fraction * lr``.

  Args:
    config: The run's ``ConfigDict``.

  Returns:
    An optax schedule ``step -> lr``.

  Example:
    >>> lr = learning_rate(config_lib.get_config())
    >>> float(lr(0)), round(float(lr(40)), 6)
    (0.0, 0.003)
  """
  o = config.optim
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=o.lr, warmup_steps=o.warmup_steps,
      decay_steps=config.train.steps, end_value=o.lr * o.end_lr_fraction)


def make_optimizer(config: Any, sparsifier: Any = None
                   ) -> optax.GradientTransformation:
  """Gradient clipping + AdamW (no decay on biases/norms), wrapped if sparse.

  Args:
    config: The run's ``ConfigDict``.
    sparsifier: Optional sparsifier; the optimizer is then
      ``sparsejax.wrap(tx, sparsifier)`` and its state holds the masks.

  Returns:
    An optax transformation.

  Example:
    >>> cfg = config_lib.get_config()
    >>> tx = make_optimizer(cfg, make_sparsifier(cfg))
    >>> params = {"block_0": {"mlp": {"fc1": {"kernel": jnp.ones((8, 8))}}}}
    >>> type(tx.init(params)).__name__
    'WrappedState'
  """
  o = config.optim
  decay_mask = lambda params: jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)
  parts = [optax.clip_by_global_norm(o.clip_norm)] if o.clip_norm else []
  parts.append(optax.adamw(learning_rate(config), b1=o.b1, b2=o.b2,
                           weight_decay=o.weight_decay, mask=decay_mask))
  tx = optax.chain(*parts)
  return tx if sparsifier is None else sj.wrap(tx, sparsifier)


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
    state_shardings: Shardings of the :class:`~.step.TrainState`.
    abstract_state: Shapes, dtypes and shardings of the ``TrainState``.
    batch_sharding: Sharding of token batches.
    corpus: The training windows and validation tokens.
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
  corpus: corpus_lib.Corpus

  @contextlib.contextmanager
  def context(self) -> Iterator[None]:
    """Mesh and logical-axis rules active while tracing the model."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(
        mesh_lib.logical_rules()):
      yield


def _label(config: Any, rules: list[sj.Rule]) -> str:
  if config.sparsity.method == "none":
    return "dense"
  patterns = sorted({str(r.pattern or "dense") for r in rules})
  return f"sparse ({config.sparsity.method} {','.join(patterns)})"


def _plan_arm(name: str, config: Any, devices: Sequence[Any] | None,
              corpus: corpus_lib.Corpus) -> Arm:
  model = activation_lib.activation_model(gpt.GPT(model_config(config)),
                                          config)
  sparsifier = make_sparsifier(config)
  tx = make_optimizer(config, sparsifier)
  rules = [] if sparsifier is None else config_lib.sparsity_rules(config)
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  param_sh = mesh_lib.param_shardings(model, mesh)
  init = step_lib.init_fn(model, tx, config.data.seq_len)
  try:
    abstract = jax.eval_shape(init, jax.random.key(0))
  except (ValueError, TypeError) as e:
    raise config_lib.ConfigError(
        f"sparsity.rules={config.sparsity.rules!r} with "
        f"sparsity.method={config.sparsity.method!r} does not fit the model: "
        f"{e}") from None
  activation_lib.check_activation_rules(model, abstract.params, config)
  mesh_lib.check_divisible(
      abstract.params, param_sh, mesh,
      {"data.batch_size": config.data.batch_size,
       "eval.batch_size": config.eval.batch_size})
  state_sh = state_shardings.like_params(abstract, abstract.params, param_sh,
                                         mesh)._replace(params=param_sh)
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract, state_sh)
  return Arm(
      name=name, config=config, label=_label(config, rules), model=model,
      sparsifier=sparsifier, tx=tx, rules=rules, mesh=mesh,
      param_shardings=param_sh, state_shardings=state_sh,
      abstract_state=abstract, batch_sharding=mesh_lib.batch_sharding(mesh),
      corpus=corpus)


def plan(config: Any, devices: Sequence[Any] | None = None, *,
         corpus: corpus_lib.Corpus | None = None) -> list[Arm]:
  """Validates ``config`` and plans its arms without computing anything.

  Args:
    config: The run's ``ConfigDict``.
    devices: Devices of the mesh (default: all).
    corpus: One's own data (:func:`~sparsejax.pretrain.corpus.make_corpus`)
      instead of ``config.data.source``.

  Returns:
    The arms in training order (dense baseline first).

  Raises:
    ConfigError: Unknown keys, bad values, a pattern that does not divide a
      layer, a mesh that does not match the devices, too little data.

  Example:
    >>> [a.name for a in plan(config_lib.get_config(), jax.devices()[:1])]
    ['dense', 'sparse']
  """
  config_lib.validate(config)
  make_sparsifier(config)  # an unknown method fails before the data loads
  if corpus is None:
    corpus = sources.load_corpus(config)
  else:
    sources.check_corpus(corpus, config)
  if config.sparsity.method == "none":
    return [_plan_arm("dense", config, devices, corpus)]
  arms = []
  if config.sparsity.baseline:
    dense = copy.deepcopy(config)
    dense.sparsity.method = "none"
    arms.append(_plan_arm("dense", dense, devices, corpus))
  arms.append(_plan_arm("sparse", config, devices, corpus))
  return arms
