"""What a method carries between steps: `SparsityState`.

The state is a pytree (a NamedTuple) that checkpoints as is. Every method has
the same three shared fields; anything more a method needs lives in `extra`,
a typed pytree the method's parts define (for example the frozen S-STE scales
or Top-KAST's backward masks), never in a new shared slot.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class SparsityState(NamedTuple):
  """The state of a sparsity method.

  Attributes:
    step: int32 count of `update` calls.
    masks: the current masks, mirroring params (0-d True for dense leaves).
    flips: int32 per leaf: entries whose mask changed at the last update.
    extra: the method's own state (a NamedTuple of its parts' states), or
      None when no part keeps any.
  """

  step: jax.Array
  masks: Any
  flips: Any
  extra: Any = None


class PartStates(NamedTuple):
  """`SparsityState.extra` of a composed method: one entry per stateful part.

  Each entry mirrors params (the dense marker on untargeted leaves) or is
  None when that part keeps no state.

  Attributes:
    forward: the forward view's per-leaf state (e.g. S-STE scales).
    policy: the update policy's per-leaf state (e.g. Top-KAST's backward
      masks).
  """

  forward: Any = None
  policy: Any = None


def zero_flips(masks: Any) -> Any:
  """A flips tree of zeros for `masks`.

  >>> zero_flips({"w": jnp.ones((2,), bool)})
  {'w': Array(0, dtype=int32)}
  """
  return jax.tree.map(lambda _: jnp.zeros((), jnp.int32), masks)


def count_flips(old: Any, new: Any) -> Any:
  """Per-leaf count of mask entries that changed (0 for dense leaves).

  >>> count_flips({"w": jnp.array([True, False])}, {"w": jnp.array([False, False])})
  {'w': Array(1, dtype=int32)}
  """
  return jax.tree.map(
      lambda a, b: jnp.sum(a != b, dtype=jnp.int32), old, new)
