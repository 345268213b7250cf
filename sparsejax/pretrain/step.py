"""The train state, its initialisation and the jitted train step of an arm.

Determinism: params are initialised from ``config.seed``; dropout keys are
``fold_in(key, step)``; the batch of step ``t`` depends only on the data
position stored in the checkpoint. A run resumed from a checkpoint therefore
reaches bit for bit the params of an uninterrupted run.

Non-finite steps: a step whose loss, gradient norm or updated params are not
all finite is *skipped* inside the jitted step (no host sync): the params,
the optimizer state and the sparsity state (masks and the schedules' step
counters) stay as they were, while ``TrainState.step`` still advances -- the
batch is consumed and the data order, dropout keys and checkpoint steps stay
on the step grid of an uninterrupted run. :class:`Skips` counts the skipped
steps and remembers the last one; the loop reads it when it syncs anyway
(logging, checkpoints, the end) and stops with :class:`NonFiniteError` past
``train.max_nonfinite_steps``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import sparsejax as sj
from sparsejax.models import gpt
from sparsejax.pretrain import activation_sparsity as activation_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import mesh as mesh_lib

__all__ = ["TrainState", "Skips", "NonFiniteError", "all_finite", "init_fn", "init_state",
           "make_train_step", "eval_params_fn"]


class NonFiniteError(RuntimeError):
  """Training stopped on non-finite values; the last good checkpoint stays.

  ``python -m sparsejax.pretrain`` prints it as one ``error:`` line and exits
  with status 3.
  """


class Skips(NamedTuple):
  """The skipped (non-finite) steps of a run, carried in the train state.

  Attributes:
    count: int32 number of steps skipped so far.
    step: int32 the last skipped step (1-based, as the step count after it),
      or 0 if none.
    loss: float32 the loss of the last skipped step.
    grad_norm: float32 the gradient norm of the last skipped step.
  """
  count: jax.Array
  step: jax.Array
  loss: jax.Array
  grad_norm: jax.Array

  @classmethod
  def zeros(cls) -> "Skips":
    """No skipped step.

    Example:
      >>> int(Skips.zeros().count)
      0
    """
    zero = jnp.zeros((), jnp.float32)
    return cls(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), zero, zero)


class TrainState(NamedTuple):
  """Everything that evolves during training (checkpointed as one pytree).

  Attributes:
    step: int32 number of completed steps.
    params: The dense (shadow) params.
    opt_state: Optimizer state; for a sparse arm it holds the
      ``SparsityState`` (masks, sparsifier step, flips).
    rng: uint32 PRNG key data; step ``t`` uses ``fold_in(rng, t)``.
    skips: The :class:`Skips` of non-finite steps.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  skips: Skips


def init_fn(model: gpt.GPT, tx: optax.GradientTransformation,
            seq_len: int) -> Callable[[jax.Array], TrainState]:
  """``key -> TrainState``: params from ``model.init``, state from ``tx``.

  Args:
    model: The GPT.
    tx: The optimizer.
    seq_len: Sequence length (the dummy input is at most 8 tokens).

  Returns:
    A function of a PRNG key, to jit or ``jax.eval_shape``.

  Example:
    >>> model = gpt.GPT(gpt.GPTConfig(d_model=32, n_layers=1, n_heads=2,
    ...                               d_ff=64, max_len=16))
    >>> state = jax.eval_shape(init_fn(model, optax.sgd(0.1), 16),
    ...                        jax.random.key(0))
    >>> state.step.shape, state.params["lm_head"]["kernel"].shape
    ((), (32, 256))
  """
  def init(key: jax.Array) -> TrainState:
    pkey, dkey = jax.random.split(key)
    tokens = jnp.zeros((1, min(seq_len, 8)), jnp.int32)
    params = nn.unbox(model.init(pkey, tokens)["params"])
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params),
                      rng=jax.random.key_data(dkey), skips=Skips.zeros())
  return init


def init_state(arm: Any) -> TrainState:
  """The arm's initial state from ``config.seed``, sharded as planned.

  Args:
    arm: A planned :class:`~sparsejax.pretrain.plan.Arm`.

  Returns:
    The :class:`TrainState` at step 0.
  """
  init = init_fn(arm.model, arm.tx, arm.config.data.seq_len)
  with arm.context():
    return jax.jit(init, out_shardings=arm.state_shardings)(
        jax.random.key(arm.config.seed))


def _scalar_diagnostics(sparsifier: Any, opt_state: Any) -> dict[str, Any]:
  diag = sparsifier.diagnostics(sj.sparsity_state(opt_state))
  return {k: v for k, v in diag.items() if "/" not in k and k != "step"}


def all_finite(tree: Any) -> jax.Array:
  """Whether every floating-point leaf of ``tree`` is finite (a bool scalar).

  Args:
    tree: A pytree of arrays.

  Returns:
    A boolean ``jax.Array`` (traceable; no host sync).

  Example:
    >>> bool(all_finite({"w": jnp.ones(2), "b": jnp.array([1.0, jnp.nan])}))
    False
  """
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_train_step(arm: Any, learning_rate: optax.Schedule
                    ) -> Callable[..., tuple[TrainState, dict[str, Any]]]:
  """The jitted ``(state, batch) -> (state, metrics)`` of an arm.

  A step with a non-finite loss, gradient norm or updated params is skipped
  (see the module doc); ``metrics["skipped"]`` is the number skipped so far.

  Args:
    arm: A planned :class:`~sparsejax.pretrain.plan.Arm`.
    learning_rate: The schedule, reported as the ``lr`` metric.

  Returns:
    A jitted function; ``state`` is donated on accelerators.

  Example:
    >>> from sparsejax.pretrain import config, plan
    >>> arm = plan.plan(config.get_config(), jax.devices()[:1])[-1]
    >>> step_fn = make_train_step(arm, plan.learning_rate(arm.config))
    >>> callable(step_fn)  # compiled at its first call
    True
  """
  loss_fn = gpt.make_loss_fn(arm.model)
  sp, tx = arm.sparsifier, arm.tx
  dropout = arm.config.model.dropout > 0
  sparse_inputs = bool(config_lib.activation_rules(arm.config))

  def step_fn(state: TrainState, batch: dict[str, jax.Array]):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def objective(params):
      if sp is not None:
        params = sp.view(params, sj.sparsity_state(state.opt_state))
      if not sparse_inputs:
        return loss_fn(params, batch, rng if dropout else None), {}
      return activation_lib.loss_and_sparsity(arm.model, params, batch,
                                              rng if dropout else None)

    (loss, achieved), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & all_finite(params)
    keep = lambda new, old: jax.tree.map(
        lambda a, b: jnp.where(ok, a, b), new, old)
    params = keep(params, state.params)
    opt_state = keep(opt_state, state.opt_state)
    step = state.step + 1
    skips = keep(state.skips, Skips(
        state.skips.count + 1, step, loss.astype(jnp.float32),
        grad_norm.astype(jnp.float32)))
    metrics = {"loss": loss, "grad_norm": grad_norm,
               "lr": learning_rate(state.step), "skipped": skips.count}
    if sp is not None:
      metrics.update(_scalar_diagnostics(sp, opt_state))
    metrics.update(activation_lib.metrics(achieved))
    return TrainState(step, params, opt_state, state.rng, skips), metrics

  # Host-memory devices may hand a checkpoint being written asynchronously
  # the very buffers a donated step overwrites; donate only on accelerators.
  on_cpu = arm.mesh.devices.flat[0].platform == "cpu"
  return jax.jit(step_fn,
                 in_shardings=(arm.state_shardings, arm.batch_sharding),
                 out_shardings=(arm.state_shardings,
                                mesh_lib.replicated(arm.mesh)),
                 donate_argnums=() if on_cpu else (0,))


def eval_params_fn(arm: Any) -> Callable[[TrainState], Any]:
  """``state -> params`` the arm is evaluated and exported with.

  The dense arm's params as they are; a sparse arm's params with its hard
  masks applied (``sparsifier.sparse_params``), jitted and sharded.

  Args:
    arm: A planned :class:`~sparsejax.pretrain.plan.Arm`.

  Returns:
    A function of a :class:`TrainState`.
  """
  sp = arm.sparsifier
  if sp is None:
    return lambda state: state.params
  sparse = jax.jit(
      lambda params, opt_state: sp.sparse_params(
          params, sj.sparsity_state(opt_state)),
      in_shardings=(arm.param_shardings, arm.state_shardings.opt_state),
      out_shardings=arm.param_shardings)
  return lambda state: sparse(state.params, state.opt_state)
