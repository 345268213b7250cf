"""Dynamic sparse training: static random, SET and RigL.

Masks live in the sparsifier state. Every `delta_t` steps while `t < t_end`,
each targeted leaf drops the `k = f_t * nnz` active weights of smallest |W|
and grows `k` inactive ones (SET: at random; RigL: largest |gradient| of the
masked forward, which the straight-through view passes to every weight).
`f_t = (alpha / 2) * (1 + cos(pi * t / t_end))`. nnz never changes; a weight
may be dropped and regrown in the same update; grown weights start at zero
and `sparsejax.wrap` resets their optimizer moments.
"""

import dataclasses
import math
import zlib

import jax
import jax.numpy as jnp

from sparsejax import _ranking
from sparsejax import patterns as patterns_lib
from sparsejax import views
from sparsejax.sparsifiers import base


def _leaf_key(seed, step, path):
  key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(path.encode()))
  return jax.random.fold_in(key, step)


def _top(scores, k):
  return _ranking.keep_top_k(scores.reshape(1, -1), k).reshape(scores.shape)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DynamicSparse(base.Sparsifier):
  """Random initial masks, then optional drop-and-grow (SET / RigL).

  Attributes:
    grow: None (static random sparse training), "random" (SET) or
      "gradient" (RigL).
    alpha: initial drop fraction (0.3).
    delta_t: steps between updates (100).
    t_end: last update step (set it to ~75% of training).
    initial: "random" (default) or "magnitude" initial masks.
    seed: seeds the initial masks and SET's growth (per leaf, per step).
  """

  grow: str | None = None
  alpha: float = 0.3
  delta_t: int = 100
  t_end: int = 0
  initial: str = "random"
  seed: int = 0

  hard = True

  def __post_init__(self):
    super().__post_init__()
    if self.grow not in (None, "random", "gradient"):
      raise ValueError(f"grow must be None, 'random' or 'gradient'; got "
                       f"{self.grow!r}.")
    if self.initial not in ("random", "magnitude"):
      raise ValueError(f"initial must be 'random' or 'magnitude'; got "
                       f"{self.initial!r}.")
    if not 0.0 <= self.alpha <= 1.0:
      raise ValueError(f"alpha must be in [0, 1]; got {self.alpha}.")
    if self.delta_t < 1:
      raise ValueError(f"delta_t must be >= 1; got {self.delta_t}.")
    if self.grow is not None and self.t_end < 1:
      raise ValueError("SET and RigL need t_end >= 1 (the last update step, "
                       "~75% of training).")

  def check_leaf(self, path, leaf, pattern):
    if not isinstance(pattern, patterns_lib.Unstructured) or (
        pattern.per_output):
      raise TypeError(f"dynamic sparse training needs an Unstructured "
                      f"(per-tensor) pattern at {path!r}; the rule gives "
                      f"{pattern}.")
    pattern.check(jnp.shape(leaf), jnp.result_type(leaf), path)

  def drop_fraction(self, step):
    """Cosine-annealed `f_t`."""
    t = jnp.asarray(step, jnp.float32)
    return self.alpha / 2 * (1 + jnp.cos(math.pi * t / max(self.t_end, 1)))

  def is_update_step(self, step):
    return (step % self.delta_t == 0) & (step < self.t_end) & (step > 0)

  def masks_at(self, params, step, state=None, grads=None):
    if state is None:
      return self.map_targets(self._initial_mask, params)
    if self.grow is None:
      return state.masks
    if self.grow == "gradient" and grads is None:
      raise ValueError("RigL grows by gradient magnitude: pass grads to "
                       "update() (sparsejax.wrap does).")
    rest = (state.masks,) if grads is None else (state.masks, grads)

    def one(path, pattern, w, mask, *g):
      return jax.lax.cond(self.is_update_step(step),
                          lambda: self._drop_and_grow(path, w, mask, step, *g),
                          lambda: mask)
    return self.map_targets(one, params, *rest)

  def _initial_mask(self, path, pattern, w):
    if self.initial == "magnitude":
      scores = jnp.abs(w)
    else:
      scores = jax.random.uniform(_leaf_key(self.seed, 0, path), jnp.shape(w))
    return pattern.mask(scores, path)

  def _drop_and_grow(self, path, w, mask, step, grad=None):
    nnz = jnp.sum(mask, dtype=jnp.int32)
    k = jnp.floor(self.drop_fraction(step) * nnz).astype(jnp.int32)
    survivors = _top(jnp.where(mask, jnp.abs(w).astype(jnp.float32), -jnp.inf),
                     nnz - k)
    if self.grow == "random":
      growth = jax.random.uniform(_leaf_key(self.seed, step, path),
                                  jnp.shape(w))
    else:
      growth = jnp.abs(grad).astype(jnp.float32)
    grown = _top(jnp.where(survivors, -jnp.inf, growth), k)
    return survivors | grown

  def view_leaf(self, pattern, w, mask, step, path, scale=None):
    return views.ste(w, mask)

  def schedule_values(self, step):
    return {"drop_fraction": self.drop_fraction(step),
            "is_update_step": self.is_update_step(step)}


def static_random(rules, *, seed=0, distribution=None, sparsity=None,
                  on_unused="warn"):
  """Static random sparse training: a random mask at init, never changed.

  >>> import sparsejax as sj
  >>> sp = sj.static_random(sj.Unstructured(0.75))
  >>> int(sp.init({"w": jnp.ones((8, 8))}).masks["w"].sum())
  16
  """
  return DynamicSparse(rules, on_unused, distribution, sparsity, grow=None,
                       seed=seed)


def set_sparse(rules, *, t_end, alpha=0.3, delta_t=100, seed=0,
               distribution="erk", sparsity=None, on_unused="warn"):
  """SET: drop smallest-magnitude weights, regrow at random.

  `distribution="erk"` (the default) spreads the global `sparsity` over the
  targeted leaves; pass `distribution=None` to use each rule's own.

  >>> import sparsejax as sj
  >>> sp = sj.set_sparse(sj.Unstructured(0.5), sparsity=0.5, t_end=10, delta_t=2)
  >>> params = {"w": jax.random.normal(jax.random.key(0), (8, 8))}
  >>> state = sp.init(params)
  >>> _, state = sp.update(params, {"w": jnp.zeros((8, 8))}, state)
  >>> _, state = sp.update(params, {"w": jnp.zeros((8, 8))}, state)
  >>> int(state.masks["w"].sum()), int(state.flips["w"]) > 0
  (32, True)
  """
  return DynamicSparse(rules, on_unused, distribution, _global(
      distribution, sparsity), grow="random", t_end=t_end, alpha=alpha,
                       delta_t=delta_t, seed=seed)


def rigl(rules, *, t_end, alpha=0.3, delta_t=100, seed=0, distribution="erk",
         sparsity=None, on_unused="warn"):
  """RigL: drop smallest-magnitude weights, grow by largest |gradient|.

  >>> import sparsejax as sj
  >>> sp = sj.rigl(sj.Unstructured(0.5), distribution=None, t_end=10, delta_t=1)
  >>> params = {"w": jnp.arange(1., 9.).reshape(4, 2)}
  >>> state = sp.init(params)
  >>> grads = {"w": jnp.where(state.masks["w"], 0., jnp.arange(8.).reshape(4, 2))}
  >>> _, new = sp.update(params, {"w": jnp.zeros((4, 2))}, state, grads=grads)
  >>> int(new.masks["w"].sum())
  4
  """
  return DynamicSparse(rules, on_unused, distribution, _global(
      distribution, sparsity), grow="gradient", t_end=t_end, alpha=alpha,
                       delta_t=delta_t, seed=seed)


def _global(distribution, sparsity):
  if distribution is not None and sparsity is None:
    raise ValueError(f"distribution={distribution!r} needs the global "
                     "`sparsity` (or pass distribution=None).")
  return sparsity
