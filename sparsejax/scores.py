"""Scores: the importance of every entry, as pytrees that patterns rank.

This module is the only place importance is defined: training methods, the
one-shot pruners and the benchmarks all rank these. A score maps params (a
pytree, or a single array) to a pytree of the same structure; higher is kept.

Every score can be called as `score(params, grads=..., key=...)` (the form a
method uses); the ones that need a gradient or a key take it positionally
too. `needs_grads(score)` says whether a gradient is required.

Non-finite scores keep their IEEE values here; patterns rank NaN below every
number (so a finite entry always wins over a NaN) and +inf above every number
(an infinite magnitude is the largest). `compute_masks(on_nonfinite=...)` and
`Method(on_nonfinite=...)` name leaves that hold them.

>>> w = {"w": jnp.array([2., -3.])}
>>> g = {"w": jnp.array([-1., -1.])}
>>> magnitude(w)["w"], saliency(w, g)["w"], movement(w, g)["w"]
(Array([2., 3.], dtype=float32), Array([2., 3.], dtype=float32), Array([ 2., -3.], dtype=float32))
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

from sparsejax import _checks

Score = Callable[..., Any]


def _require(grads: Any, name: str) -> Any:
  if grads is None:
    raise ValueError(f"the {name} score needs grads (the gradient w.r.t. "
                     "params); pass them to update() (sparsejax.wrap does).")
  return grads


def magnitude(params: Any, grads: Any = None, *, key: Any = None) -> Any:
  """`|w|` leaf by leaf.

  >>> magnitude({"w": jnp.array([-2., 1.])})
  {'w': Array([2., 1.], dtype=float32)}
  """
  del grads, key
  return jax.tree.map(jnp.abs, params)


def random(params: Any, key: Any = None, *, grads: Any = None) -> Any:
  """Uniform random scores (one independent stream per leaf).

  >>> s = random({"w": jnp.zeros((2, 2))}, jax.random.key(0))
  >>> s["w"].shape
  (2, 2)
  """
  del grads
  if key is None:
    raise ValueError("the random score needs a PRNG key.")
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, max(len(leaves), 1))
  scores = [jax.random.uniform(k, jnp.shape(w)) for k, w in zip(keys, leaves)]
  return jax.tree.unflatten(treedef, scores)


def saliency(params: Any, grads: Any = None, *, key: Any = None) -> Any:
  """First-order saliency `|w * g|` (SNIP-style connection sensitivity).

  >>> saliency({"w": jnp.array([2., 3.])}, {"w": jnp.array([-1., 0.5])})
  {'w': Array([2. , 1.5], dtype=float32)}
  """
  del key
  grads = _require(grads, "saliency")
  return jax.tree.map(lambda w, g: jnp.abs(w * g), params, grads)


def movement(params: Any, grads: Any = None, *, key: Any = None) -> Any:
  """Movement `-w * g`: high for weights the gradient step moves away from 0.

  The one-step form of movement pruning (Sanh et al. 2020), whose score
  accumulates `-w * g` over training steps.

  >>> movement({"w": jnp.array([2., 3.])}, {"w": jnp.array([-1., 0.5])})
  {'w': Array([ 2. , -1.5], dtype=float32)}
  """
  del key
  grads = _require(grads, "movement")
  return jax.tree.map(lambda w, g: -(w * g), params, grads)


def gradient(params: Any, grads: Any = None, *, key: Any = None) -> Any:
  """`|g|`: RigL's growth criterion (the dense gradient's magnitude).

  >>> gradient({"w": jnp.array([2., 3.])}, {"w": jnp.array([-1., 0.5])})
  {'w': Array([1. , 0.5], dtype=float32)}
  """
  del key
  grads = _require(grads, "gradient")
  return jax.tree.map(lambda w, g: jnp.abs(g), params, grads)


def wanda(params: Any, sq_sums: Any) -> Any:
  """Wanda `|W_ij| * ||X_i||_2` for `(in, out)` kernels.

  Args:
    params: `(in, out)` kernels (a pytree or one array).
    sq_sums: matching `(in,)` sums over calibration tokens of the squared
      inputs (`LayerStats.sq_sum`); the norm is their square root.

  Returns:
    float32 scores shaped like `params`.

  Raises:
    ValueError: when a `sq_sums` leaf is not `(in,)` for its kernel, or holds
      a negative or NaN entry (traced: when the compiled call runs).

  >>> wanda(jnp.array([[1., -2.], [3., 1.]]), jnp.array([4., 1.]))
  Array([[2., 4.],
         [3., 1.]], dtype=float32)
  """
  def one(w, sq):
    if jnp.ndim(w) != 2 or jnp.shape(sq) != jnp.shape(w)[:1]:
      raise ValueError(f"wanda sq_sums must have shape (in,) = "
                       f"{jnp.shape(w)[:1]} for an (in, out) kernel of shape "
                       f"{jnp.shape(w)}; got {jnp.shape(sq)}.")
    sq = _checks.check_traced_range(jnp.asarray(sq, jnp.float32),
                                    "wanda sq_sums", 0.0)
    norms = jnp.sqrt(sq)
    return jnp.abs(jnp.asarray(w).astype(jnp.float32)) * norms[:, None]
  return jax.tree.map(one, params, sq_sums)


_NEEDS_GRADS = frozenset({saliency, movement, gradient})


def needs_grads(score: Score) -> bool:
  """Whether `score` needs the gradient (so it cannot run at `init`).

  >>> needs_grads(magnitude), needs_grads(saliency)
  (False, True)
  """
  return score in _NEEDS_GRADS or bool(getattr(score, "needs_grads", False))
