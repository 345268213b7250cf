"""Forward views as method parts: what the forward pass sees, per leaf.

Each part wraps a view of `sparsejax.views` (where the formulas and their
custom gradients live) and reads what it needs from `ViewInputs`:

=================  ==========================  ============================
part               forward                     backward `dL/dW`
=================  ==========================  ============================
`HardMask()`       `W*m`                       `g` (straight-through)
`SRSTE(decay)`     `W*m`                       `g + decay*(1-m)*W`
`MaskDecay(grad)`  `W*(m+(1-m)*beta)`          `g` or `g*(m+(1-m)*beta)`
`SoftThreshold()`  `scale*S(W)` (S-STE)        `g`
=================  ==========================  ============================

A part has `leaf(inputs) -> w~`, `sparse(inputs) -> exactly sparse w`,
`check(pattern, shape, path)`, `values(step) -> dict`,
`pruned_weight(values)` (the factor pruned entries enter the forward pass
with: 0 for a hard mask, beta for mask decay; diagnostics use it) and, when
`has_state`, `init_state(pattern, w, mask, path)` (kept in
`SparsityState.extra.forward`).
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from sparsejax import _checks
from sparsejax import views


@dataclasses.dataclass(frozen=True)
class HardMask:
  """`W * m` with identity backward (the straight-through estimator).

  >>> import sparsejax as sj
  >>> m = sj.methods.Method(rules=sj.NM(1, 2), forward=HardMask())
  >>> p = {"w": jnp.array([[1.], [-3.]])}
  >>> m.view(p, m.init(p))["w"].ravel()
  Array([ 0., -3.], dtype=float32)
  """

  has_state = False

  def check(self, pattern: Any, shape: tuple, path: str) -> None:
    """Any pattern works."""

  def values(self, step: Any) -> dict:
    """No scalars."""
    return {}

  def pruned_weight(self, values: dict) -> jax.Array:
    """The factor pruned entries enter the forward pass with (0: absent)."""
    return jnp.zeros((), jnp.float32)

  def leaf(self, inputs: Any) -> jax.Array:
    """The forward view of one leaf."""
    return views.ste(inputs.w, inputs.mask)

  def sparse(self, inputs: Any) -> jax.Array:
    """`W * m` exactly."""
    return jnp.where(inputs.mask, inputs.w, jnp.zeros((), inputs.w.dtype))


@dataclasses.dataclass(frozen=True)
class SRSTE(HardMask):
  """SR-STE: forward `W * m`, backward `g + decay * (1 - m) * W`.

  Attributes:
    decay: lambda, a float or a schedule `step -> lambda` (default 2e-4, the
      published value for SGD at lr ~0.1; retune it for Adam-family
      optimizers, or use `sparsejax.decay.masked_decay` before the optimizer).

  >>> import sparsejax as sj
  >>> m = sj.methods.Method(rules=sj.NM(1, 2), forward=SRSTE(0.5))
  >>> p = {"w": jnp.array([[1.], [-3.]])}
  >>> s = m.init(p)
  >>> jax.grad(lambda p: m.view(p, s)["w"].sum())(p)["w"].ravel()
  Array([1.5, 1. ], dtype=float32)
  """

  decay: float | Callable[[Any], Any] = 2e-4

  def __post_init__(self):
    if not callable(self.decay):
      _checks.check_nonnegative(self.decay, "SR-STE decay")

  def decay_at(self, step: Any) -> jax.Array:
    """lambda at `step`."""
    decay = self.decay(step) if callable(self.decay) else self.decay
    return jnp.asarray(decay, jnp.float32)

  def values(self, step: Any) -> dict:
    return {"srste_decay": self.decay_at(step)}

  def leaf(self, inputs: Any) -> jax.Array:
    return views.srste(inputs.w, inputs.mask, self.decay_at(inputs.step))


@dataclasses.dataclass(frozen=True)
class MaskDecay(HardMask):
  """MDGF: `W * (m + (1 - m) * beta)`, beta from the schedule's values.

  Attributes:
    grad: "identity" (the published reference) or "autodiff" (gradient scaled
      by the soft mask).

  >>> import sparsejax as sj
  >>> from sparsejax.methods import schedule
  >>> m = sj.methods.Method(
  ...     rules=sj.NM(1, 2), forward=MaskDecay(),
  ...     schedule=schedule.ProgressiveNM(total_steps=10, decay="linear", c=0.5))
  >>> p = {"w": jnp.array([[1.], [-3.]])}
  >>> s = m.init(p)._replace(step=jnp.asarray(1))
  >>> m.view(p, s)["w"].ravel()
  Array([ 0.5, -3. ], dtype=float32)
  """

  grad: str = "identity"

  def __post_init__(self):
    _checks.check_choice(self.grad, "grad", ("identity", "autodiff"))

  def pruned_weight(self, values: dict) -> jax.Array:
    """beta: pruned entries enter the forward pass scaled by it."""
    return jnp.asarray(values.get("beta", 0.0), jnp.float32)

  def leaf(self, inputs: Any) -> jax.Array:
    beta = inputs.values.get("beta", jnp.zeros((), jnp.float32))
    return views.decayed(inputs.w, inputs.mask, beta, grad=self.grad)


@dataclasses.dataclass(frozen=True)
class SoftThreshold(HardMask):
  """S-STE: `W~ = scale * S(W)`, the continuous N:M soft threshold.

  `scale = <W, S(W)> / <S(W), S(W)>` per tensor, computed at `init` and then
  frozen in the state. Backward is identity to W; the scale gets no gradient.
  The state's masks are the N:M support of `|W|` (for diagnostics).

  >>> import sparsejax as sj
  >>> m = sj.methods.Method(rules=sj.NM(2, 4), forward=SoftThreshold())
  >>> p = {"w": jnp.array([[4.], [-3.], [2.], [1.]])}
  >>> (m.view(p, m.init(p))["w"] != 0).sum()
  Array(2, dtype=int32)
  """

  has_state = True

  def check(self, pattern: Any, shape: tuple, path: str) -> None:
    _checks.check_nm_pattern(pattern, path, "S-STE")

  def init_state(self, pattern: Any, w: jax.Array, mask: jax.Array,
                 path: str) -> jax.Array:
    """The frozen per-tensor scale."""
    return views.sste_scale(w, pattern.n, pattern.m,
                            pattern.group_axis(w.ndim, path))

  def leaf(self, inputs: Any) -> jax.Array:
    p = inputs.pattern
    return views.sste(inputs.w, p.n, p.m, inputs.forward_state,
                      p.group_axis(inputs.w.ndim, inputs.path))

  def sparse(self, inputs: Any) -> jax.Array:
    """`scale * S(W)`: already exactly N:M, and what the model trained on."""
    return self.leaf(inputs)
