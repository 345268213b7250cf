"""Activation sparsity views: Q-Sparse top-k and N:M on the last axis."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj
from sparsejax import activations
from sparsejax import patterns


def _tokens(shape=(3, 5, 16), seed=0, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.standard_normal(shape, np.float32), dtype)


def _reference_topk_keep(x, k):
  """Top-k of |x| per row, ties to the lower index (NumPy, stable sort)."""
  a = np.abs(np.asarray(x, np.float32)).reshape(-1, x.shape[-1])
  order = np.argsort(-a, axis=1, kind="stable")[:, :k]
  keep = np.zeros(a.shape, bool)
  np.put_along_axis(keep, order, True, axis=1)
  return keep.reshape(x.shape)


def _reference_nm_keep(x, n, m):
  groups = np.asarray(x, np.float32).reshape(*x.shape[:-1], -1, m)
  return _reference_topk_keep(groups, n).reshape(x.shape)


@pytest.mark.parametrize("k", [1, 5])
def test_topk_keeps_exactly_k_per_token(maybe_jit, k):
  x = _tokens()
  y = maybe_jit(lambda x: activations.qsparse_topk(x, k))(x)
  keep = _reference_topk_keep(x, k)
  np.testing.assert_array_equal(np.asarray(y), np.where(keep, x, 0.0))
  assert ((np.asarray(y) != 0).sum(-1) == k).all()


def test_topk_sparsity_gives_k_as_unstructured_counts():
  x = _tokens((4, 10))
  # floor(0.75 * 10) = 7 pruned: 3 kept, the count Unstructured(0.75) keeps.
  y = activations.qsparse_topk(x, sparsity=0.75)
  assert ((np.asarray(y) != 0).sum(-1) == 3).all()
  assert int(patterns.kept_count(10, 0.75)) == 3
  np.testing.assert_array_equal(y, activations.qsparse_topk(x, 3))
  np.testing.assert_array_equal(activations.qsparse_topk(x, sparsity=0.0), x)


def test_topk_ste_is_the_existing_view():
  x = _tokens()
  np.testing.assert_array_equal(activations.qsparse_topk(x, 4),
                                sj.views.activation_topk(x, 4))


def test_ties_go_to_the_lower_index(maybe_jit):
  x = jnp.array([[1.0, -1.0, 1.0, 1.0, 2.0, 2.0, -2.0, 2.0]])
  top = maybe_jit(lambda x: activations.qsparse_topk(x, 3))(x)
  np.testing.assert_array_equal(top, [[0, 0, 0, 0, 2.0, 2.0, -2.0, 0]])
  nm = maybe_jit(lambda x: activations.activation_nm(x, 2, 4))(x)
  np.testing.assert_array_equal(nm, [[1.0, -1.0, 0, 0, 2.0, 2.0, 0, 0]])


@pytest.mark.parametrize("n,m", [(1, 4), (2, 8)])
def test_nm_keeps_n_of_every_m_consecutive_features(maybe_jit, n, m):
  x = _tokens()
  y = maybe_jit(lambda x: activations.activation_nm(x, n, m))(x)
  keep = _reference_nm_keep(x, n, m)
  np.testing.assert_array_equal(np.asarray(y), np.where(keep, x, 0.0))
  counts = (np.asarray(y) != 0).reshape(3, 5, -1, m).sum(-1)
  assert (counts == n).all()


@pytest.mark.parametrize("fn", [
    lambda x, **kw: activations.qsparse_topk(x, 5, **kw),
    lambda x, **kw: activations.activation_nm(x, 2, 4, **kw),
])
def test_gradients_follow_their_formula(maybe_jit, fn):
  x = _tokens((2, 3, 8))
  g = _tokens((2, 3, 8), seed=1)
  keep = np.asarray(fn(x)) != 0
  # STE: dL/dx = g (identity); masked: dL/dx = g * mask.
  _, vjp = maybe_jit(lambda x: jax.vjp(fn, x))(x)
  np.testing.assert_array_equal(vjp(g)[0], g)
  _, vjp = jax.vjp(lambda x: fn(x, grad="masked"), x)
  np.testing.assert_array_equal(vjp(g)[0], np.where(keep, g, 0.0))
  grad = maybe_jit(jax.grad(lambda x: (fn(x, grad="masked") * g).sum()))(x)
  np.testing.assert_array_equal(grad, np.where(keep, g, 0.0))


def test_rescale_divides_each_token_by_its_kept_l2_norm(maybe_jit):
  x = _tokens((2, 3, 8))
  g = _tokens((2, 3, 8), seed=1)
  fn = lambda x: activations.qsparse_topk(x, 3, rescale=True)
  y, vjp = maybe_jit(lambda x: jax.vjp(fn, x))(x)
  v = np.asarray(activations.qsparse_topk(x, 3))
  norm = np.linalg.norm(v, axis=-1, keepdims=True)
  np.testing.assert_allclose(y, v / norm, rtol=1e-6)
  # d(v/|v|) = (I - u u^T) / |v| applied to g; the top-k passes it (STE).
  u = v / norm
  want = (g - u * np.sum(u * np.asarray(g), -1, keepdims=True)) / norm
  np.testing.assert_allclose(vjp(g)[0], want, rtol=1e-5, atol=1e-6)
  zero = activations.qsparse_topk(jnp.zeros((1, 4)), 2, rescale=True)
  np.testing.assert_array_equal(zero, np.zeros((1, 4)))


def test_bfloat16_keeps_dtype_and_counts():
  x = _tokens(dtype=jnp.bfloat16)
  for y, per in ((activations.qsparse_topk(x, 6), 6),
                 (activations.activation_nm(x, 2, 4), 8)):
    assert y.dtype == jnp.bfloat16
    assert ((np.asarray(y, np.float32) != 0).sum(-1) == per).all()
    g = jax.grad(lambda x: activations.activation_nm(x, 2, 4).astype(
        jnp.float32).sum())(x)
    assert g.dtype == jnp.bfloat16 and (np.asarray(g, np.float32) == 1).all()


def test_sparsify_input_dispatches_on_the_pattern():
  x = _tokens((2, 8))
  np.testing.assert_array_equal(
      activations.sparsify_input(x, sj.NM(1, 4)),
      activations.activation_nm(x, 1, 4))
  np.testing.assert_array_equal(
      activations.sparsify_input(x, sj.Unstructured(0.5)),
      activations.qsparse_topk(x, 4))
  assert float(activations.zero_fraction(
      activations.sparsify_input(x, sj.Unstructured(0.5)))) == 0.5


@pytest.mark.parametrize("call,message", [
    (lambda: activations.qsparse_topk(jnp.ones((2, 4)), 0),
     r"`k` must be in \[1, 4\]"),
    (lambda: activations.qsparse_topk(jnp.ones((2, 4)), 5),
     r"`k` must be in \[1, 4\]"),
    (lambda: activations.qsparse_topk(jnp.ones((2, 4)), 2.0),
     "`k` must be a static"),
    (lambda: activations.qsparse_topk(jnp.ones((2, 4))), "exactly one of"),
    (lambda: activations.qsparse_topk(jnp.ones((2, 4)), 2, sparsity=0.5),
     "exactly one of"),
    (lambda: activations.qsparse_topk(jnp.ones((2, 4)), sparsity=1.0),
     r"`sparsity` must be in \[0, 1\)"),
    (lambda: activations.qsparse_topk(jnp.ones((2, 4), jnp.int32), 2),
     "`x` must be floating-point"),
    (lambda: activations.qsparse_topk(jnp.float32(1.0), 1), "feature axis"),
    (lambda: activations.qsparse_topk(jnp.ones((2, 4)), 2, grad="exact"),
     "grad must be one of"),
    (lambda: activations.qsparse_topk(jnp.ones((2, 4)), 2, rescale=1),
     "rescale must be a bool"),
    (lambda: activations.activation_nm(jnp.ones((2, 6)), 2, 4),
     "6 features, which is not divisible by the group size m=4"),
    (lambda: activations.activation_nm(jnp.ones((2, 4)), 5, 4), "n <= m"),
    (lambda: activations.activation_nm(jnp.ones((2, 4), jnp.bool_), 2, 4),
     "`x` must be floating-point"),
    (lambda: activations.sparsify_input(jnp.ones((2, 6)), sj.NM(2, 4), "fc"),
     "activation pattern 2:4 at 'fc': the input has 6 features"),
    (lambda: activations.sparsify_input(jnp.ones((2, 8)),
                                        sj.Block((2, 2), 0.5), "fc"),
     "must be NM\\(n, m\\) or Unstructured"),
    (lambda: activations.sparsify_input(jnp.ones((2, 8)),
                                        sj.NM(2, 4, axis=0), "fc"),
     "contraction \\(last\\) axis"),
    (lambda: activations.sparsify_input(
        jnp.ones((2, 8)), sj.Unstructured(0.5, per_output=True), "fc"),
     "per_output"),
])
def test_bad_input_is_refused_naming_the_parameter(call, message):
  with pytest.raises(ValueError, match=message):
    call()
