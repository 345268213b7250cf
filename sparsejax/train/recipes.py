"""From a config to the objects a run needs: optimizer and sparsifier.

Every sparsity method of the library is reachable from ``sparsity.method``;
the phases and windows of the methods are given as fractions of
``train.steps`` so that one recipe scales with the length of the run.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsejax as sj
from sparsejax.models import gpt
from sparsejax.train import config as config_lib

__all__ = [
    "model_config",
    "learning_rate",
    "make_optimizer",
    "make_sparsifier",
    "nm_targets",
    "schedule_table",
]


def model_config(config: Any) -> gpt.GPTConfig:
  """The :class:`~sparsejax.models.gpt.GPTConfig` of a run.

  Args:
    config: The run's ``ConfigDict``.

  Returns:
    A ``GPTConfig`` with a 256-token byte vocabulary and ``max_len`` equal to
    ``data.seq_len``.

  Example:
    >>> model_config(config_lib.get_config("smoke")).d_model
    32
  """
  m = config.model
  return gpt.GPTConfig(
      vocab_size=256, d_model=m.d_model, n_layers=m.n_layers,
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
    >>> lr = learning_rate(config_lib.get_config("smoke"))
    >>> float(lr(0)), round(float(lr(2)), 6)
    (0.0, 0.003)
  """
  o = config.optim
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=o.lr, warmup_steps=o.warmup_steps,
      decay_steps=config.train.steps, end_value=o.lr * o.end_lr_fraction)


def _decay_mask(params: Any) -> Any:
  return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def _steps(fraction: float, total: int) -> int:
  return int(round(fraction * total))


def make_sparsifier(config: Any) -> Any:
  """The sparsifier of ``config.sparsity`` (``None`` for ``method="none"``).

  Args:
    config: The run's ``ConfigDict``.

  Returns:
    A ``sparsejax`` sparsifier, or ``None``.

  Example:
    >>> sp = make_sparsifier(config_lib.get_config("smoke"))
    >>> type(sp).__name__, sp.total_steps, sp.dense_steps
    ('Progressive', 12, 3)
  """
  s, total = config.sparsity, config.train.steps
  if s.method == "none":
    return None
  rules = config_lib.parse_rules(s.rules)
  distribution = s.distribution or None
  if s.method == "progressive_nm":
    return sj.progressive_nm(
        rules, total_steps=total,
        dense_steps=_steps(s.dense_fraction, total),
        finetune_steps=_steps(s.finetune_fraction, total),
        structure=s.structure or None, decay=s.decay or None,
        c=s.c if s.decay else None, grad=s.grad, on_unused="error")
  if s.method == "srste_nm":
    return sj.srste_nm(rules, decay=s.srste_decay, on_unused="error")
  if s.method == "ste_nm":
    return sj.ste_nm(rules, on_unused="error")
  if s.method == "sste":
    return sj.sste(rules, on_unused="error")
  if s.method == "gradual_magnitude":
    return sj.gradual_magnitude(
        rules, begin_step=_steps(s.begin_fraction, total),
        end_step=_steps(s.end_fraction, total), frequency=s.frequency,
        on_unused="error")
  t_end = max(_steps(s.t_end_fraction, total), 1)
  sparsity = s.target if distribution else None
  if s.method == "rigl":
    return sj.rigl(rules, t_end=t_end, alpha=s.alpha, delta_t=s.delta_t,
                   seed=config.seed, distribution=distribution,
                   sparsity=sparsity, on_unused="error")
  if s.method == "set":
    return sj.set_sparse(rules, t_end=t_end, alpha=s.alpha,
                         delta_t=s.delta_t, seed=config.seed,
                         distribution=distribution, sparsity=sparsity,
                         on_unused="error")
  if s.method == "static_random":
    return sj.static_random(rules, seed=config.seed,
                            distribution=distribution, sparsity=sparsity,
                            on_unused="error")
  raise config_lib.ConfigError(f"unknown sparsity.method {s.method!r}")


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
    >>> cfg = config_lib.get_config("smoke")
    >>> tx = make_optimizer(cfg, make_sparsifier(cfg))
    >>> params = {"block_0": {"mlp": {"fc1": {"kernel": jnp.ones((8, 8))}}}}
    >>> state = tx.init(params)
    >>> type(state).__name__
    'WrappedState'
  """
  o = config.optim
  parts = []
  if o.clip_norm:
    parts.append(optax.clip_by_global_norm(o.clip_norm))
  parts.append(optax.adamw(learning_rate(config), b1=o.b1, b2=o.b2,
                           weight_decay=o.weight_decay, mask=_decay_mask))
  tx = optax.chain(*parts)
  if sparsifier is not None:
    tx = sj.wrap(tx, sparsifier)
  return tx


def nm_targets(config: Any) -> list[tuple[int, int]]:
  """The distinct ``(n, m)`` targets of the rules, in rule order.

  Args:
    config: The run's ``ConfigDict``.

  Returns:
    A list of pairs (empty for non-N:M methods).

  Example:
    >>> nm_targets(config_lib.get_config())
    [(2, 4)]
  """
  if config.sparsity.method == "none":
    return []
  out = []
  for rule in config_lib.parse_rules(config.sparsity.rules):
    p = rule.pattern
    if isinstance(p, sj.NM) and (p.n, p.m) not in out:
      out.append((p.n, p.m))
  return out


def schedule_table(config: Any, sparsifier: Any, steps: Any
                   ) -> dict[str, np.ndarray]:
  """Host-side schedule of the first N:M target over ``steps``.

  Gives ``n``, ``m`` (the active N:M frame), ``beta`` (mask decay) and
  ``phase`` for progressive N:M; a constant ``n``/``m`` for the other N:M
  methods; an empty dict otherwise.

  Args:
    config: The run's ``ConfigDict``.
    sparsifier: The run's sparsifier.
    steps: 1-D steps.

  Returns:
    ``{name: array over steps}``.

  Example:
    >>> cfg = config_lib.get_config("smoke")
    >>> t = schedule_table(cfg, make_sparsifier(cfg), [0, 5, 11])
    >>> t["n"].tolist(), t["m"].tolist(), t["phase"].tolist()
    ([3, 3, 2], [4, 4, 4], [0, 1, 2])
  """
  targets = nm_targets(config)
  steps = np.asarray(steps, np.int64)
  if sparsifier is None or not targets:
    return {}
  n, m = targets[0]
  if isinstance(sparsifier, sj.Progressive):
    t = sparsifier.table(steps, (n, m))
    return {"n": t.n, "m": t.m, "beta": t.beta, "phase": t.phase}
  return {"n": np.full(steps.shape, n), "m": np.full(steps.shape, m)}
