"""Update policies as method parts: when masks change, and how.

* `Refresh(...)`: the schedule's mask of the current scores, recomputed every
  `every` steps (every step for the straight-through family; the update steps
  of gradual pruning).
* `PruneAt(step)`: masks computed once (per rule or with one global
  threshold) and then held.
* `DropGrow(grow, ...)`: dynamic sparse training. Every `delta_t` steps while
  `t < t_end`, each leaf drops the `k = f_t * nnz` active entries of lowest
  score and grows `k` inactive ones of highest `grow` score (SET: random;
  RigL: `|gradient|`); `f_t = (alpha / 2) * (1 + cos(pi * t / t_end))`.

A policy has `hard` (pruned weights held at exactly zero; regrown ones start
at zero and `sparsejax.wrap` resets their optimizer moments),
`trainable(state)` (a mask tree of the entries optimizer updates may reach,
or None for all of them), `init(method, params) -> (masks, policy_state)`, `update(method, params, grads, state,
step) -> (masks, policy_state)`, `values(step) -> dict` and `check(pattern,
shape, path)`. `policy_state` (None here) lands in `SparsityState.extra`.
"""

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from sparsejax import _checks
from sparsejax import _ranking
from sparsejax import masks as masks_lib
from sparsejax import scores as scores_lib


def grads_or_markers(grads: Any, params: Any) -> Any:
  """`grads`, or a tree of dense markers shaped like params when None."""
  if grads is not None:
    return grads
  return jax.tree.map(lambda _: masks_lib.dense_mask(), params)


def top_k(scores: jax.Array, k: Any) -> jax.Array:
  """Keeps the `k` largest entries of an array (exact, ties to lower index).

  >>> top_k(jnp.array([[1., 3.], [2., 0.]]), 2).astype(int)
  Array([[0, 1],
         [1, 0]], dtype=int32)
  """
  return _ranking.keep_top_k(scores.reshape(1, -1), k).reshape(scores.shape)


def hard_trainable(policy: Any, state: Any) -> Any:
  """A hard policy trains only kept entries; a soft one trains them all."""
  return state.masks if policy.hard else None


def scheduled_masks(method: Any, params: Any, grads: Any, step: Any) -> Any:
  """The schedule's masks of the method's scores at `step`."""
  has_grads = grads is not None

  def one(path, pattern, w, g):
    scores = method.leaf_scores(path, w, g if has_grads else None, step)
    return method.scheduled_mask(path, pattern, scores, step)

  return method.map_targets(one, params, grads_or_markers(grads, params))


@dataclasses.dataclass(frozen=True)
class Refresh:
  """Masks recomputed from the scores at update steps.

  Update steps are `begin, begin + every, ...` up to `end` (None: no end).
  With the defaults masks are recomputed at every step.

  Attributes:
    every: steps between refreshes.
    begin: the first refresh step.
    end: the last refresh step, or None.
    hard: hold pruned weights at exactly zero (pruning) or keep dense shadow
      weights (the straight-through family).

  >>> Refresh(every=10, begin=20, end=100).is_update_step(jnp.asarray(30))
  Array(True, dtype=bool)
  """

  every: int = 1
  begin: int = 0
  end: int | None = None
  hard: bool = False

  def __post_init__(self):
    _checks.check_int(self.every, "every", 1)
    _checks.check_int(self.begin, "begin", 0)
    if self.end is not None:
      _checks.check_int(self.end, "end", self.begin)

  @property
  def every_step(self) -> bool:
    """Whether every step refreshes."""
    return self.every == 1 and self.begin == 0 and self.end is None

  def is_update_step(self, step: Any) -> jax.Array:
    """Whether `step` refreshes the masks."""
    since = step - self.begin
    out = (since >= 0) & (since % self.every == 0)
    return out if self.end is None else out & (step <= self.end)

  def trainable(self, state: Any) -> Any:
    """Kept entries when hard, else every entry (None)."""
    return hard_trainable(self, state)

  def check(self, pattern: Any, shape: tuple, path: str) -> None:
    """Any pattern works."""

  def values(self, step: Any) -> dict:
    return {} if self.every_step else {
        "is_update_step": self.is_update_step(step)}

  def init(self, method: Any, params: Any) -> tuple[Any, Any]:
    return scheduled_masks(method, params, None, jnp.zeros((), jnp.int32)), None

  def update(self, method: Any, params: Any, grads: Any, state: Any,
             step: Any) -> tuple[Any, Any]:
    new = scheduled_masks(method, params, grads, step)
    if self.every_step:
      return new, None
    refresh = self.is_update_step(step)
    return jax.tree.map(lambda n, o: jnp.where(refresh, n, o), new,
                        state.masks), None


@dataclasses.dataclass(frozen=True)
class PruneAt:
  """Masks computed once, at `step`, then held (pruned weights stay zero).

  Attributes:
    step: the step whose update computes the masks (0: at `init`; a score
      that needs the gradient needs `step >= 1`).
    global_sparsity: one threshold across all targeted leaves at this
      sparsity instead of each rule's own pattern (global magnitude /
      saliency).

  >>> import sparsejax as sj
  >>> m = sj.methods.Method(rules=sj.Unstructured(0.5), policy=PruneAt(0))
  >>> m.init({"w": jnp.array([[1., -3.], [2., 0.5]])}).masks["w"]
  Array([[False,  True],
         [ True, False]], dtype=bool)
  """

  step: int = 0
  global_sparsity: float | None = None

  hard = True

  def __post_init__(self):
    _checks.check_int(self.step, "prune_step", 0)
    if self.global_sparsity is not None:
      _checks.check_fraction(self.global_sparsity, "global_sparsity")

  def trainable(self, state: Any) -> Any:
    """Kept entries when hard, else every entry (None)."""
    return hard_trainable(self, state)

  def check(self, pattern: Any, shape: tuple, path: str) -> None:
    """Any pattern works."""

  def values(self, step: Any) -> dict:
    return {}

  def prune(self, method: Any, params: Any, grads: Any, step: Any) -> Any:
    """The masks of the method's scores (per rule, or globally)."""
    if self.global_sparsity is None:
      return scheduled_masks(method, params, grads, step)
    has_grads = grads is not None
    scores = method.map_targets(
        lambda path, _, w, g: method.leaf_scores(
            path, w, g if has_grads else None, step),
        params, grads_or_markers(grads, params), untargeted=lambda w: w)
    # leaf_scores has reported non-finite leaves (Method.on_nonfinite).
    return masks_lib.compute_global_masks(
        params, method.rules, self.global_sparsity, scores=scores,
        on_unused="ignore", on_nonfinite="ignore")

  def init(self, method: Any, params: Any) -> tuple[Any, Any]:
    if self.step == 0:
      return self.prune(method, params, None, jnp.zeros((), jnp.int32)), None
    return method.map_targets(
        lambda path, _, w: jnp.ones(jnp.shape(w), bool), params), None

  def update(self, method: Any, params: Any, grads: Any, state: Any,
             step: Any) -> tuple[Any, Any]:
    return jax.lax.cond(step == self.step,
                        lambda: self.prune(method, params, grads, step),
                        lambda: state.masks), None


@dataclasses.dataclass(frozen=True, kw_only=True)
class DropGrow:
  """Dynamic sparse training: drop the lowest scores, grow by `grow`.

  Drops rank active entries by the method's `score` (`|W|` for SET and RigL);
  growth ranks the entries left inactive by `grow`. nnz never changes; a
  weight may be dropped and regrown in the same update.

  Attributes:
    grow: a score from `sparsejax.scores` (`random`: SET; `gradient`: RigL).
    alpha: initial drop fraction (0.3).
    delta_t: steps between updates (100).
    t_end: last update step (set it to ~75% of training).
    initial: initial masks: "random" (default) or "score" (the method's).

  >>> DropGrow(grow=scores_lib.random, t_end=100).drop_fraction(0)
  Array(0.3, dtype=float32)
  """

  grow: Callable[..., Any]
  alpha: float = 0.3
  delta_t: int = 100
  t_end: int
  initial: str = "random"

  hard = True

  def __post_init__(self):
    if not callable(self.grow):
      raise TypeError(f"grow must be a score from sparsejax.scores; got "
                      f"{self.grow!r}.")
    _checks.check_fraction(self.alpha, "alpha", closed=True)
    _checks.check_int(self.delta_t, "delta_t", 1)
    if not _checks.is_int(self.t_end) or self.t_end < 1:
      raise ValueError(f"t_end must be an int >= 1 (the last update step, "
                       f"~75% of training); got {self.t_end!r}.")
    _checks.check_choice(self.initial, "initial", ("random", "score"))

  def trainable(self, state: Any) -> Any:
    """Kept entries when hard, else every entry (None)."""
    return hard_trainable(self, state)

  def check(self, pattern: Any, shape: tuple, path: str) -> None:
    if not pattern.is_unstructured or pattern.per_output:
      raise TypeError(f"dynamic sparse training needs an Unstructured "
                      f"(per-tensor) pattern{_checks.where(path)}; the rule "
                      f"gives {pattern}.")

  def drop_fraction(self, step: Any) -> jax.Array:
    """Cosine-annealed `f_t`."""
    t = jnp.asarray(step, jnp.float32)
    return self.alpha / 2 * (1 + jnp.cos(math.pi * t / self.t_end))

  def is_update_step(self, step: Any) -> jax.Array:
    """Whether `step` drops and grows."""
    return (step % self.delta_t == 0) & (step < self.t_end) & (step > 0)

  def values(self, step: Any) -> dict:
    return {"drop_fraction": self.drop_fraction(step),
            "is_update_step": self.is_update_step(step)}

  def init(self, method: Any, params: Any) -> tuple[Any, Any]:
    score = scores_lib.random if self.initial == "random" else None
    zero = jnp.zeros((), jnp.int32)
    return method.map_targets(
        lambda path, pattern, w: pattern.mask(
            method.leaf_scores(path, w, None, zero, score=score), path),
        params), None

  def drop_and_grow(self, method: Any, path: str, w: jax.Array,
                    mask: jax.Array, grad: Any, step: Any) -> jax.Array:
    """One leaf's new mask: `nnz - k` survivors plus `k` grown entries."""
    nnz = jnp.sum(mask, dtype=jnp.int32)
    k = jnp.floor(self.drop_fraction(step) * nnz).astype(jnp.int32)
    drop_scores = method.leaf_scores(path, w, grad, step)
    survivors = top_k(jnp.where(mask, drop_scores, -jnp.inf), nnz - k)
    growth = method.leaf_scores(path, w, grad, step, score=self.grow)
    grown = top_k(jnp.where(survivors, -jnp.inf, growth), k)
    return survivors | grown

  def update(self, method: Any, params: Any, grads: Any, state: Any,
             step: Any) -> tuple[Any, Any]:
    has_grads = grads is not None

    def one(path, pattern, w, mask, g):
      g = g if has_grads else None
      return jax.lax.cond(
          self.is_update_step(step),
          lambda: self.drop_and_grow(method, path, w, mask, g, step),
          lambda: mask)

    return method.map_targets(one, params, state.masks,
                              grads_or_markers(grads, params)), None
