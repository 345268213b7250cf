"""Masked weight decay as optax gradient transformations.

Two published ways of pulling pruned weights towards zero, kept separate from
the forward views so that they compose with any optimizer:

* :func:`masked_decay` adds ``decay * (1 - m) * W`` to the gradient *before*
  the optimizer (the 2:4 pretraining recipe: after clipping, before AdamW).
  ``decay`` may be an optax schedule, e.g. ``optax.linear_schedule(0, a, T)``
  for the annealed variant that rises from 0.
* :func:`decoupled_masked_decay` adds ``-lr * decay * (1 - m) * W`` to the
  update *after* the optimizer, i.e. ``W <- W - lr * decay * (1 - m) * W``.

Masks are a pytree mirroring ``params``; a 0-d ``True`` leaf marks a dense
leaf (no decay), and any mask leaf broadcasts against its parameter. They come
either from the factory (a fixed pytree, or a callable ``params -> masks``
evaluated at every update) or, when the factory got none, from the extra
argument ``update(updates, state, params, masks=...)`` -- which
``optax.chain`` forwards to every transform, so a mask-refreshing wrapper can
pass the current masks.

A scalar or a schedule's value must be finite and non-negative: a concrete
one is checked at once, a traced one (or a schedule's output) when the
update runs (``sparsejax._checks.check_traced_range``), naming the argument.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax import _checks

__all__ = [
    "MaskedDecayState",
    "masked_decay",
    "decoupled_masked_decay",
]

ScalarOrSchedule = Any  # float | jax.Array | Callable[[step], scalar]


class MaskedDecayState(NamedTuple):
  """State of the masked-decay transforms: the number of updates so far."""

  count: jax.Array


def _check_scalar_or_schedule(value: Any, name: str) -> None:
  if callable(value):
    return
  if isinstance(value, (str, bytes)) or jnp.ndim(value) != 0:
    raise ValueError(f"`{name}` must be a scalar or a schedule, got {value!r}.")
  _checks.check_traced_range(value, f"`{name}`", 0.0)


def _value(value: ScalarOrSchedule, count: jax.Array, name: str) -> jax.Array:
  """`value` (or its schedule's output at `count`), checked to be >= 0."""
  v = value(count) if callable(value) else value
  return _checks.check_traced_range(jnp.asarray(v, jnp.float32),
                                    f"`{name}`", 0.0)


def _resolve_masks(masks: Any, params: Any, extra_args: dict[str, Any],
                   name: str) -> Any:
  if params is None:
    raise ValueError(f"{name} requires `params` in update().")
  if masks is None:
    masks = extra_args.get("masks")
    if masks is None:
      raise ValueError(
          f"{name}: no masks. Pass `masks=` to the factory (a pytree or a "
          "callable params -> masks) or to update(..., masks=...).")
  elif callable(masks):
    masks = masks(params)
  return masks


class _MaskShapeError(ValueError):
  """A mask leaf whose shape differs from its parameter's."""


def _pruned_term(scale: jax.Array, updates: Any, params: Any,
                 masks: Any) -> Any:
  """``scale * (1 - m) * W`` per leaf, in each update's dtype."""

  def leaf(u, w, m):
    if u is None:
      return None
    m = jnp.asarray(m)
    if m.ndim and m.shape != jnp.shape(w):
      raise _MaskShapeError(
          f"mask shape {m.shape} does not match parameter shape "
          f"{jnp.shape(w)} (a 0-d mask broadcasts).")
    keep = m if m.dtype == jnp.bool_ else m != 0
    w32 = jnp.asarray(w).astype(jnp.float32)
    pruned = jnp.where(keep, jnp.zeros((), jnp.float32), w32)
    return (scale * pruned).astype(u.dtype)

  try:
    return jax.tree.map(leaf, updates, params, masks,
                        is_leaf=lambda x: x is None)
  except _MaskShapeError:
    raise
  except ValueError as e:
    raise ValueError(
        "the masks pytree must have the same structure as params (mark dense "
        f"leaves with a 0-d True): {e}") from None


def _add(updates: Any, terms: Any, sign: float) -> Any:
  return jax.tree.map(
      lambda u, t: None if u is None else u + sign * t,
      updates, terms, is_leaf=lambda x: x is None)


def _pruned_decay(name: str, masks: Any, sign: float,
                  scale: Callable[[jax.Array], Any]
                  ) -> optax.GradientTransformationExtraArgs:
  """Adds `sign * scale(count) * W` to the updates of pruned entries.

  `name` names the transformation in mask errors.
  """

  def init_fn(params):
    del params
    return MaskedDecayState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None, **extra_args):
    m = _resolve_masks(masks, params, extra_args, name)
    terms = _pruned_term(scale(state.count), updates, params, m)
    new_updates = _add(updates, terms, sign)
    return new_updates, MaskedDecayState(
        count=optax.safe_int32_increment(state.count))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def masked_decay(
    decay: ScalarOrSchedule,
    masks: Any | Callable[[Any], Any] = None,
) -> optax.GradientTransformationExtraArgs:
  """Adds ``decay * (1 - m) * W`` to the gradient (before the optimizer).

  Place it before the optimizer (after clipping), e.g.
  ``optax.chain(optax.clip_by_global_norm(1.0), masked_decay(6e-5), adamw)``.

  Args:
    decay: non-negative ``alpha``, or a schedule ``count -> alpha`` (e.g.
      ``optax.linear_schedule(0.0, 2e-4, 10_000)`` for the annealed variant).
    masks: a masks pytree, a callable ``params -> masks``, or ``None`` to read
      ``masks=`` from the update's extra arguments.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state
    :class:`MaskedDecayState`.

  Raises:
    ValueError: on a negative ``decay``; at update time, if ``params`` or the
      masks are missing or do not match ``params``.

  >>> import optax
  >>> params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}
  >>> masks = {"w": jnp.array([True, False]), "b": jnp.array(True)}
  >>> tx = masked_decay(0.5)
  >>> state = tx.init(params)
  >>> grads = jax.tree.map(jnp.zeros_like, params)
  >>> updates, state = tx.update(grads, state, params, masks=masks)
  >>> updates["w"], updates["b"]
  (Array([ 0., -1.], dtype=float32), Array([0.], dtype=float32))
  """
  _check_scalar_or_schedule(decay, "decay")
  return _pruned_decay("masked_decay", masks, 1.0,
                       lambda count: _value(decay, count, "decay"))


def decoupled_masked_decay(
    decay: ScalarOrSchedule,
    lr: ScalarOrSchedule,
    masks: Any | Callable[[Any], Any] = None,
) -> optax.GradientTransformationExtraArgs:
  """Decoupled masked weight decay ``W <- W - lr * decay * (1 - m) * W``.

  Place it after the optimizer (whose output is already the update that
  ``optax.apply_updates`` adds to the params); it adds
  ``-lr * decay * (1 - m) * W``.

  Args:
    decay: non-negative ``lambda`` or a schedule ``count -> lambda``.
    lr: the learning rate ``eta`` (scalar or schedule), normally the same one
      the optimizer uses.
    masks: a masks pytree, a callable ``params -> masks``, or ``None`` to read
      ``masks=`` from the update's extra arguments.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state
    :class:`MaskedDecayState`.

  >>> import optax
  >>> params = {"w": jnp.array([1.0, -2.0])}
  >>> tx = optax.chain(optax.sgd(0.1),
  ...                  decoupled_masked_decay(0.5, 0.1, lambda p: {
  ...                      "w": jnp.abs(p["w"]) > 1.5}))
  >>> state = tx.init(params)
  >>> updates, state = tx.update({"w": jnp.ones(2)}, state, params)
  >>> updates["w"]
  Array([-0.15, -0.1 ], dtype=float32)
  """
  _check_scalar_or_schedule(decay, "decay")
  _check_scalar_or_schedule(lr, "lr")
  return _pruned_decay(
      "decoupled_masked_decay", masks, -1.0,
      lambda count: _value(decay, count, "decay") * _value(lr, count, "lr"))
