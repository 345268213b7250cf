"""Scores: pytrees of arrays that patterns rank (higher is kept).

A score is just a pytree shaped like params; these are the common ones.
"""

import jax
import jax.numpy as jnp


def magnitude(params):
  """`|w|` leaf by leaf.

  >>> magnitude({"w": jnp.array([-2., 1.])})
  {'w': Array([2., 1.], dtype=float32)}
  """
  return jax.tree.map(jnp.abs, params)


def random(params, key):
  """Uniform random scores (one independent stream per leaf).

  >>> s = random({"w": jnp.zeros((2, 2))}, jax.random.key(0))
  >>> s["w"].shape
  (2, 2)
  """
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, max(len(leaves), 1))
  scores = [jax.random.uniform(k, jnp.shape(w)) for k, w in zip(keys, leaves)]
  return jax.tree.unflatten(treedef, scores)


def saliency(params, grads):
  """First-order saliency `|w * g|` (SNIP-style connection sensitivity).

  >>> saliency({"w": jnp.array([2., 3.])}, {"w": jnp.array([-1., 0.5])})
  {'w': Array([2. , 1.5], dtype=float32)}
  """
  return jax.tree.map(lambda w, g: jnp.abs(w * g), params, grads)
