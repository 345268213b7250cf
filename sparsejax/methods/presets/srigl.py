"""SRigL (Lasby et al. 2023): RigL with constant fan-in.

Every output unit (the last axis: a column of a Flax `(in, out)` kernel, an
output channel of a convolution) keeps the same number of nonzeros, so the
sparse layer is a structured (constant fan-in) matrix. Masks start at random
with that fan-in; every `delta_t` steps while `t < t_end` each unit drops its
`k = floor(f_t * fan_in)` active weights of lowest score (`|W|`) and grows the
`k` inactive ones of largest growth score (`|gradient|`) *within the unit*, with
RigL's cosine-annealed `f_t = (alpha / 2) * (1 + cos(pi * t / t_end))`.
Pruned weights are held at zero; grown ones start at zero and `sparsejax.wrap`
resets their optimizer moments. (The paper's optional dynamic neuron ablation
is not included.)

This file is the whole method: a drop/grow policy and the preset.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from sparsejax import _checks
from sparsejax import _ranking
from sparsejax import patterns as patterns_lib
from sparsejax import scores
from sparsejax.methods import method as method_lib
from sparsejax.methods import policies
from sparsejax.methods.presets import _common


def per_unit(x: jax.Array) -> jax.Array:
  """`(units, fan_in)` rows of a kernel whose last axis is the output unit.

  >>> per_unit(jnp.arange(6.).reshape(3, 2))
  Array([[0., 2., 4.],
         [1., 3., 5.]], dtype=float32)
  """
  return x.reshape(-1, x.shape[-1]).T


def from_units(rows: jax.Array, shape: tuple) -> jax.Array:
  """The inverse of `per_unit`.

  >>> from_units(per_unit(jnp.arange(6.).reshape(3, 2)), (3, 2))
  Array([[0., 1.],
         [2., 3.],
         [4., 5.]], dtype=float32)
  """
  return rows.T.reshape(shape)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConstantFanIn(policies.DropGrow):
  """RigL drop/grow within each output unit, so every unit keeps its fan-in.

  Attributes: as `DropGrow` (`grow`, `alpha`, `delta_t`, `t_end`,
  `initial`); the rule's unstructured sparsity applies per output unit.
  """

  def check(self, pattern: Any, shape: tuple, path: str) -> None:
    if not pattern.is_unstructured:
      raise TypeError(f"SRigL needs an Unstructured pattern (its sparsity "
                      f"applies per output unit){_checks.where(path)}; the "
                      f"rule gives {pattern}.")
    if len(shape) < 2:
      raise ValueError(f"SRigL needs at least 2 dims (inputs, output units)"
                       f"{_checks.where(path)}; got shape {tuple(shape)}.")

  @staticmethod
  def unit_pattern(pattern: Any) -> patterns_lib.Unstructured:
    """The rule's sparsity, compared within each output unit."""
    return patterns_lib.Unstructured(pattern.sparsity, per_output=True)

  def init(self, method: Any, params: Any) -> tuple[Any, Any]:
    score = scores.random if self.initial == "random" else None
    zero = jnp.zeros((), jnp.int32)
    return method.map_targets(
        lambda path, pattern, w: self.unit_pattern(pattern).mask(
            method.leaf_scores(path, w, None, zero, score=score), path),
        params), None

  def drop_and_grow(self, method: Any, path: str, w: jax.Array,
                    mask: jax.Array, grad: Any, step: Any) -> jax.Array:
    """Each unit drops `k` and grows `k` of its own inputs."""
    rows = per_unit(mask)
    fan_in = jnp.sum(rows[0], dtype=jnp.int32)  # the same for every unit
    k = jnp.floor(self.drop_fraction(step) * fan_in).astype(jnp.int32)
    drop_scores = per_unit(method.leaf_scores(path, w, grad, step))
    survivors = _ranking.keep_top_k(
        jnp.where(rows, drop_scores, -jnp.inf), fan_in - k)
    growth = per_unit(method.leaf_scores(path, w, grad, step,
                                         score=self.grow))
    grown = _ranking.keep_top_k(jnp.where(survivors, -jnp.inf, growth), k)
    return from_units(survivors | grown, jnp.shape(mask))


def srigl(rules: Any, *, t_end: int, alpha: float = 0.3, delta_t: int = 100,
          seed: int = 0, distribution: str | None = "erk",
          sparsity: float | None = None,
          score: Callable[..., Any] = scores.magnitude,
          grow: Callable[..., Any] = scores.gradient,
          on_unused: str = "warn") -> method_lib.Method:
  """SRigL: RigL with constant fan-in per output unit.

  Args:
    rules: `Rule`s with `Unstructured` patterns (their sparsity applies per
      output unit).
    t_end: last update step (~75% of training).
    alpha: initial drop fraction (0.3), cosine-annealed.
    delta_t: steps between updates (100).
    seed: seeds the initial masks.
    distribution, sparsity: the global target and its distribution ("erk").
    score: what is dropped by (default `|W|`).
    grow: what is grown by (default `|gradient|`); needs `grads` in `update`.
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.

  Returns:
    A hard `Method`.

  References:
    * Lasby, M., Golubeva, A., Evci, U., Nica, M. and Ioannou, Y. "Dynamic
      Sparse Training with Structured Sparsity." ICLR 2024. arXiv:2305.02299.

  >>> import sparsejax as sj
  >>> sp = sj.methods.srigl(sj.Unstructured(0.5), distribution=None,
  ...                       t_end=10, delta_t=1)
  >>> state = sp.init({"w": jnp.ones((4, 3))})
  >>> state.masks["w"].sum(axis=0)
  Array([2, 2, 2], dtype=int32)
  """
  _common.check_common(rules, seed=seed, sparsity=sparsity, score=score,
                       alpha=alpha)
  policy = ConstantFanIn(grow=grow, alpha=alpha, delta_t=delta_t, t_end=t_end)
  return _common.hard(rules, score, policy, distribution=distribution,
                      sparsity=sparsity, on_unused=on_unused, seed=seed)
