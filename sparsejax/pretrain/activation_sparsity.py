"""Activation sparsity in a pretraining run: the model, its check, metrics.

``activation_sparsity.rules`` (see :func:`~.config.activation_rules`) make
the run's GPT sparsify the inputs of the Dense layers they name, in both
arms, in training and evaluation alike
(:func:`sparsejax.flax.sparsify_activations`); the achieved sparsity is
logged as ``act_sparsity`` (the mean over the layers) and
``act_sparsity/<layer path>``. With the rules empty (the default) nothing
changes.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import sparsejax as sj
from sparsejax.models import gpt
from sparsejax.pretrain import config as config_lib

__all__ = ["METRIC", "activation_model", "check_activation_rules",
           "loss_and_sparsity", "metrics"]

METRIC = "act_sparsity"
"""Metrics key of the achieved activation sparsity (mean; per layer below)."""


def activation_model(model: gpt.GPT, config: Any) -> gpt.GPT:
  """The GPT with ``activation_sparsity.rules`` applied; as it is when off.

  Args:
    model: The run's GPT.
    config: The run's ``ConfigDict``.

  Returns:
    ``sparsejax.flax.sparsify_activations(model, rules)``, or ``model``.

  Example:
    >>> cfg = config_lib.get_config()
    >>> model = gpt.GPT(gpt.GPTConfig(d_model=32, n_layers=1, n_heads=2,
    ...                               d_ff=64, max_len=16))
    >>> activation_model(model, cfg) is model
    True
    >>> cfg.activation_sparsity.rules = r"block_0/mlp/fc2=0.5"
    >>> type(activation_model(model, cfg)).__name__
    'ActivationSparseGPT'
  """
  rules = config_lib.activation_rules(config)
  if not rules:
    return model
  return sj.flax.sparsify_activations(model, rules,
                                      grad=config.activation_sparsity.grad)


def check_activation_rules(model: gpt.GPT, params: Any, config: Any) -> None:
  """Traces one forward pass (no compute) to check the activation rules.

  A pattern that does not fit a layer's input, or a rule that matches no
  Dense layer, raises a ``ConfigError`` naming the key and the layer.

  Args:
    model: The model from :func:`activation_model`.
    params: Its params (abstract shapes suffice).
    config: The run's ``ConfigDict``.
  """
  if not config_lib.activation_rules(config):
    return
  tokens = jax.ShapeDtypeStruct((1, min(config.data.seq_len, 8)), jnp.int32)
  try:
    jax.eval_shape(lambda p, t: model.apply({"params": p}, t), params, tokens)
  except ValueError as e:
    raise config_lib.ConfigError(
        f"activation_sparsity.rules={config.activation_sparsity.rules!r} "
        f"does not fit the model: {e}") from None


def loss_and_sparsity(model: gpt.GPT, params: Any, batch: dict[str, Any],
                      dropout_rng: jax.Array | None = None
                      ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """``gpt.lm_loss`` that also returns the achieved activation sparsity.

  Args:
    model: The model from :func:`activation_model`.
    params: Its params.
    batch: ``{"inputs", "targets"}`` (and optional ``"weights"``).
    dropout_rng: When given, dropout is active with this key.

  Returns:
    ``(loss, {layer path: fraction of zeros in its sparsified input})``.

  Example:
    >>> cfg = config_lib.get_config()
    >>> cfg.activation_sparsity.rules = r"block_0/mlp/fc2=0.75"
    >>> model = activation_model(gpt.GPT(gpt.GPTConfig(
    ...     d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=16)), cfg)
    >>> params = gpt.init_params(model, jax.random.key(0))
    >>> x = jnp.zeros((2, 8), jnp.int32)
    >>> loss, achieved = loss_and_sparsity(model, params,
    ...                                    {"inputs": x, "targets": x})
    >>> {path: float(v) for path, v in achieved.items()}
    {'block_0/mlp/fc2': 0.75}
  """
  deterministic = dropout_rng is None
  logits, stats = model.apply(
      {"params": params}, batch["inputs"], deterministic=deterministic,
      rngs=None if deterministic else {"dropout": dropout_rng},
      mutable=[sj.flax.ACTIVATION_SPARSITY])
  loss = gpt.cross_entropy(logits, batch["targets"], batch.get("weights"))
  return loss, sj.flax.achieved_sparsity(stats)


def metrics(achieved: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """The metrics of the achieved sparsity: the mean, then each layer's.

  Args:
    achieved: ``{layer path: fraction}`` (empty when off).

  Returns:
    ``{"act_sparsity": mean, "act_sparsity/<path>": fraction, ...}``, or
    ``{}``.

  Example:
    >>> metrics({"a": jnp.float32(0.5), "b": jnp.float32(0.75)})["act_sparsity"]
    Array(0.625, dtype=float32)
    >>> metrics({})
    {}
  """
  if not achieved:
    return {}
  out = {METRIC: jnp.mean(jnp.stack(list(achieved.values())))}
  out.update({f"{METRIC}/{path}": v for path, v in achieved.items()})
  return out
