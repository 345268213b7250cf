"""Top-KAST (Jayakumar et al. 2020): top-K always sparse training.

Two nested top-k sets of the scores (`|W|` by default), refreshed together every
`refresh_every` steps: the forward set A (density D, from the rule's pattern)
and a larger backward set B ⊇ A (density D + `backward_extra`). The forward
pass sees `W * A`; gradients and optimizer updates reach only B, so weights in
B \\ A can grow into A. An L2 exploration penalty acts on B and is heavier on
B \\ A, scaled by 1/D:

  `R(W) = (penalty / 2) * (sum_{A} w^2 + (1 / D) * sum_{B \\ A} w^2)`,

so `dL/dW = B * (g + penalty * (A + (1 - A) / D) * W)` with `g = dL/dW~`.
Weights outside B keep their values (they are not trained); the exactly sparse
model is `W * A`.

This file is the whole method: a policy (the two sets, kept in the state's
typed extension), a forward view (the masked backward and the penalty) and the
preset that composes them.
"""

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax import _checks
from sparsejax import scores
from sparsejax.methods import forward
from sparsejax.methods import method as method_lib
from sparsejax.methods import policies
from sparsejax.methods.presets import _common


class TopKASTLeaf(NamedTuple):
  """Top-KAST's per-leaf state (in `SparsityState.extra.policy`).

  Attributes:
    backward: the backward set B (bool, the leaf's shape).
  """

  backward: jax.Array


def backward_sparsity(pattern: Any, backward_extra: float) -> float:
  """The sparsity of B: the forward sparsity less `backward_extra` (>= 0).

  >>> from sparsejax.patterns import Unstructured
  >>> round(backward_sparsity(Unstructured(0.8), 0.1), 6)
  0.7
  """
  return max(float(pattern.sparsity) - backward_extra, 0.0)


@dataclasses.dataclass(frozen=True)
class TopKASTSets:
  """The policy: A and B from the scores every `refresh_every` steps.

  Attributes:
    backward_extra: density of B minus density of A, in (0, 1].
    refresh_every: steps between refreshes of both sets.
  """

  backward_extra: float = 0.1
  refresh_every: int = 100

  hard = False

  def __post_init__(self):
    _checks.check_fraction(self.backward_extra, "backward_extra", closed=True)
    if not self.backward_extra > 0:
      raise ValueError(f"backward_extra must be > 0 (B is larger than A); "
                       f"got {self.backward_extra!r}.")
    _checks.check_int(self.refresh_every, "refresh_every", 1)

  def check(self, pattern: Any, shape: tuple, path: str) -> None:
    if not pattern.has_sparsity:
      raise TypeError(f"Top-KAST needs a pattern with a sparsity (top-k "
                      f"sets){_checks.where(path)}; the rule gives {pattern}.")

  def values(self, step: Any) -> dict:
    return {"is_update_step": step % self.refresh_every == 0}

  def trainable(self, state: Any) -> Any:
    """Updates reach only the backward set B."""
    return jax.tree.map(
        lambda m, leaf: m if not isinstance(leaf, TopKASTLeaf) else
        leaf.backward, state.masks, state.extra.policy,
        is_leaf=lambda x: isinstance(x, TopKASTLeaf))

  def sets(self, method: Any, params: Any, grads: Any, step: Any) -> Any:
    """`(A masks, policy state with B)` from the scores at `step`."""
    has_grads = grads is not None

    def one(path, pattern, w, g):
      s = method.leaf_scores(path, w, g if has_grads else None, step)
      wide = pattern.with_sparsity(
          backward_sparsity(pattern, self.backward_extra))
      return pattern.mask(s, path), TopKASTLeaf(wide.mask(s, path))

    both = method.map_targets(one, params,
                              policies.grads_or_markers(grads, params))
    is_pair = lambda x: isinstance(x, tuple) and not isinstance(  # noqa: E731
        x, TopKASTLeaf)
    a = jax.tree.map(lambda x: x[0] if is_pair(x) else x, both,
                     is_leaf=is_pair)
    b = jax.tree.map(lambda x: x[1] if is_pair(x) else x, both,
                     is_leaf=is_pair)
    return a, b

  def init(self, method: Any, params: Any) -> tuple[Any, Any]:
    return self.sets(method, params, None, jnp.zeros((), jnp.int32))

  def update(self, method: Any, params: Any, grads: Any, state: Any,
             step: Any) -> tuple[Any, Any]:
    new_a, new_b = self.sets(method, params, grads, step)
    refresh = step % self.refresh_every == 0
    pick = lambda n, o: jnp.where(refresh, n, o)  # noqa: E731
    return (jax.tree.map(pick, new_a, state.masks),
            jax.tree.map(pick, new_b, state.extra.policy))


@jax.custom_vjp
def _topkast(w, a, b, penalty, density):
  return jnp.where(a, w, jnp.zeros((), w.dtype))


def _topkast_fwd(w, a, b, penalty, density):
  return _topkast(w, a, b, penalty, density), (w, a, b, penalty, density)


def _topkast_bwd(res, g):
  w, a, b, penalty, density = res
  scale = jnp.where(a, 1.0, 1.0 / density) * penalty
  dw = jnp.where(b, g + (scale * w).astype(g.dtype), jnp.zeros((), g.dtype))
  return dw, None, None, None, None


_topkast.defvjp(_topkast_fwd, _topkast_bwd)


@dataclasses.dataclass(frozen=True)
class TopKASTView(forward.HardMask):
  """Forward `W * A`; backward `B * (g + penalty * (A + (1 - A) / D) * W)`.

  Attributes:
    penalty: the exploration penalty's coefficient (0 disables it).
  """

  penalty: float = 1e-4

  def __post_init__(self):
    _checks.check_nonnegative(self.penalty, "penalty")

  def leaf(self, inputs: Any) -> jax.Array:
    density = jnp.float32(1.0 - float(inputs.pattern.sparsity))
    return _topkast(inputs.w, inputs.mask, inputs.policy_state.backward,
                    jnp.float32(self.penalty), density)


def topkast(rules: Any, *, backward_extra: float = 0.1,
            penalty: float = 1e-4, refresh_every: int = 100,
            distribution: str | None = None, sparsity: float | None = None,
            score: Callable[..., Any] = scores.magnitude,
            on_unused: str = "warn") -> method_lib.Method:
  """Top-KAST: forward top-D, backward top-(D + M), exploration penalty.

  Args:
    rules: `Rule`s whose patterns have a sparsity (the forward set A: e.g.
      `Unstructured(0.8)` for D = 20%).
    backward_extra: M, the extra density of the backward set B (0.1: B keeps
      30% when A keeps 20%).
    penalty: coefficient of the L2 exploration penalty (B \\ A scaled by
      1/D); tune it like weight decay, 0 disables it.
    refresh_every: steps between refreshes of A and B.
    distribution, sparsity: optional global target and its distribution.
    score: what the sets keep the top of (default `|W|`).
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.

  Returns:
    A `Method` (not hard: weights outside A keep their values).

  References:
    * Jayakumar, S. M., Pascanu, R., Rae, J. W., Osindero, S. and Elsen, E.
      "Top-KAST: Top-K Always Sparse Training." NeurIPS 2020. arXiv:2106.03517.

  >>> import sparsejax as sj
  >>> sp = sj.methods.topkast(sj.Unstructured(0.5), backward_extra=0.25,
  ...                         penalty=0.0)
  >>> params = {"w": jnp.array([[4.], [3.], [2.], [1.]])}
  >>> state = sp.init(params)
  >>> sp.view(params, state)["w"].ravel()
  Array([4., 3., 0., 0.], dtype=float32)
  >>> jax.grad(lambda p: sp.view(p, state)["w"].sum())(params)["w"].ravel()
  Array([1., 1., 1., 0.], dtype=float32)
  """
  _common.check_common(rules, sparsity=sparsity, score=score,
                       backward_extra=backward_extra, penalty=penalty)
  return method_lib.Method(
      rules=rules, score=score, forward=TopKASTView(penalty),
      policy=TopKASTSets(backward_extra, refresh_every),
      distribution=distribution, sparsity=sparsity, on_unused=on_unused)
