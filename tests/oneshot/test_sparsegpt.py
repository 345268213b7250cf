"""SparseGPT: agreement with a NumPy float64 reference, ordering, errors.

`sparsegpt_reference` below is a NumPy float64 transcription of the published
procedure in the PyTorch `(out, in)` layout (Cholesky of H, explicit inverse,
upper Cholesky of the inverse, column loop), independent of the JAX
implementation's shortcuts.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.oneshot import magnitude_layer
from sparsejax.oneshot import sparsegpt_layer
from sparsejax.oneshot import upper_cholesky_inverse
from sparsejax.oneshot import CalibrationWarning
from sparsejax.oneshot import wanda_layer
from sparsejax.oneshot.sparsegpt import sparsegpt_core
from sparsejax.patterns import NM
from sparsejax.patterns import Block
from sparsejax.patterns import Unstructured


def sparsegpt_reference(w_out_in, h, *, sparsity=0.0, n=0, m=0,
                        blocksize=128, percdamp=0.01):
  """Returns the pruned `(out, in)` weights and their keep-mask."""
  w = np.array(w_out_in, np.float64)
  h = np.array(h, np.float64)
  cols = w.shape[1]
  dead = np.diag(h) == 0
  h[dead, dead] = 1.0
  w[:, dead] = 0.0
  h[np.arange(cols), np.arange(cols)] += percdamp * np.mean(np.diag(h))
  hinv = np.linalg.inv(np.linalg.cholesky(h))
  hinv = hinv.T @ hinv                     # inv(H)
  u = np.linalg.cholesky(hinv).T           # upper factor: inv(H) = uᵀ u
  keep = np.ones_like(w, bool)
  for i1 in range(0, cols, blocksize):
    i2 = min(i1 + blocksize, cols)
    w1 = w[:, i1:i2].copy()
    u1 = u[i1:i2, i1:i2]
    err1 = np.zeros_like(w1)
    keep1 = np.ones_like(w1, bool)
    d = np.diag(u1)
    if not m:
      score = w1 ** 2 / d[None, :] ** 2
      k = int(np.floor(sparsity * score.size))
      order = np.argsort(score.ravel(), kind="stable")
      flat = keep1.ravel()
      flat[order[:k]] = False
      keep1 = flat.reshape(w1.shape)
    for i in range(i2 - i1):
      if m and i % m == 0:
        score = w1[:, i:i + m] ** 2 / d[None, i:i + m] ** 2
        drop = np.argsort(score, axis=1, kind="stable")[:, :m - n]
        keep1[:, i:i + m] = True
        np.put_along_axis(keep1[:, i:i + m], drop, False, axis=1)
      col = w1[:, i]
      q = np.where(keep1[:, i], col, 0.0)
      e = (col - q) / d[i]
      w1[:, i:] -= np.outer(e, u1[i, i:])
      w1[:, i] = q
      err1[:, i] = e
    w[:, i1:i2] = w1
    keep[:, i1:i2] = keep1
    w[:, i2:] -= err1 @ u[i1:i2, i2:]
  return w, keep


def correlated_layer(n_in=128, n_out=64, tokens=1024, seed=0, mixing=1.0):
  """Inputs with correlated features of very different scales, and a kernel."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(tokens, n_in))
  a = np.eye(n_in) + mixing * rng.normal(size=(n_in, n_in)) / np.sqrt(n_in)
  x = (z @ a) * np.exp(rng.normal(size=n_in))
  w = rng.normal(size=(n_in, n_out))
  return x, w


def hessian(x):
  return 2.0 * x.T @ x / x.shape[0]


def recon_error(x, w, new):
  return float(np.sum((x @ w - x @ np.asarray(new, np.float64)) ** 2))


def test_upper_cholesky_inverse_matches_published_route():
  x, _ = correlated_layer(n_in=48, tokens=256)
  h = hessian(x) + 0.01 * np.eye(48)
  u = np.asarray(upper_cholesky_inverse(jnp.asarray(h, jnp.float32)))
  expected = np.linalg.cholesky(np.linalg.inv(h)).T
  np.testing.assert_allclose(u, expected, rtol=2e-3, atol=1e-4 * abs(
      expected).max())
  assert np.allclose(np.tril(u, -1), 0.0)


@pytest.mark.parametrize("pattern,kwargs", [
    (Unstructured(0.5), dict(sparsity=0.5)),
    (NM(2, 4), dict(n=2, m=4)),
    (NM(4, 8), dict(n=4, m=8)),
], ids=str)
def test_agrees_with_numpy_float64_reference(pattern, kwargs):
  # 200 inputs: one full block of 128 and a tail of 72; a dead input.
  x, w = correlated_layer(n_in=200, n_out=40, tokens=512, seed=1,
                          mixing=0.3)
  x[:, 7] = 0.0
  h = hessian(x)
  ref_w, ref_keep = sparsegpt_reference(w.T, h, **kwargs)
  with pytest.warns(CalibrationWarning, match=r"1 of 200 inputs are dead"):
    new, keep = sparsegpt_layer(jnp.asarray(w, jnp.float32),
                                jnp.asarray(h, jnp.float32), pattern)
  new, keep = np.asarray(new, np.float64).T, np.asarray(keep).T
  assert (keep == ref_keep).mean() > 0.999
  # Each output unit's updates depend only on its own mask: units whose masks
  # agree must agree to float32 accuracy (a near-tie decided differently in
  # float32 changes the rest of that unit's row).
  same = np.all(keep == ref_keep, axis=1)
  assert same.mean() >= 0.9
  rel = np.linalg.norm(new[same] - ref_w[same]) / np.linalg.norm(ref_w[same])
  assert rel < 1e-4, rel
  assert np.all(new[:, 7] == 0.0)       # the dead input's weights
  assert np.all(new[~keep] == 0.0)      # pruned entries are exact zeros
  if isinstance(pattern, Unstructured):  # exact count in each block
    assert (~keep[:, :128]).sum() == 40 * 128 // 2
    assert (~keep[:, 128:]).sum() == 40 * 72 // 2


def test_small_blocks_agree_with_reference():
  x, w = correlated_layer(n_in=96, n_out=16, tokens=256, seed=2, mixing=0.3)
  h = hessian(x)
  ref_w, ref_keep = sparsegpt_reference(w.T, h, n=2, m=4, blocksize=32)
  new, keep = sparsegpt_layer(jnp.asarray(w, jnp.float32),
                              jnp.asarray(h, jnp.float32), NM(2, 4),
                              blocksize=32)
  same = np.all(np.asarray(keep).T == ref_keep, axis=1)
  assert same.mean() >= 0.9
  rel = np.linalg.norm(np.asarray(new).T[same] - ref_w[same]) / (
      np.linalg.norm(ref_w[same]))
  assert rel < 1e-4, rel


@pytest.mark.parametrize("pattern", [
    Unstructured(0.5, per_output=True), Unstructured(0.5), NM(2, 4)],
                         ids=str)
def test_reconstruction_error_orders_sparsegpt_wanda_magnitude(pattern):
  x, w = correlated_layer()
  xj, wj = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
  err_sparsegpt = recon_error(
      x, w, sparsegpt_layer(wj, jnp.asarray(hessian(x), jnp.float32),
                            pattern)[0])
  err_wanda = recon_error(
      x, w, wanda_layer(wj, jnp.sum(xj ** 2, axis=0), pattern)[0])
  err_magnitude = recon_error(x, w, magnitude_layer(wj, pattern)[0])
  assert err_sparsegpt < err_wanda < err_magnitude, (
      err_sparsegpt, err_wanda, err_magnitude)


@pytest.mark.parametrize("n,m", [(2, 4), (1, 16)])
def test_nm_validity(n, m):
  x, w = correlated_layer(seed=3)
  new, keep = sparsegpt_layer(jnp.asarray(w, jnp.float32),
                              jnp.asarray(hessian(x), jnp.float32), NM(n, m))
  groups = np.asarray(keep).reshape(128 // m, m, 64)
  assert np.all(groups.sum(axis=1) == n)
  nonzero = (np.asarray(new) != 0).reshape(128 // m, m, 64)
  assert np.all(nonzero.sum(axis=1) <= n)
  assert np.all(np.asarray(new)[~np.asarray(keep)] == 0)


def test_runs_under_jit_and_eagerly(maybe_jit):
  x, w = correlated_layer(n_in=32, n_out=8, tokens=128, seed=5)
  w, h = jnp.asarray(w, jnp.float32), jnp.asarray(hessian(x), jnp.float32)
  fn = maybe_jit(lambda w, h: sparsegpt_layer(w, h, NM(2, 4)))
  new, keep = fn(w, h)
  ref_w, ref_keep = sparsegpt_reference(np.asarray(w).T, np.asarray(h), n=2,
                                        m=4)
  np.testing.assert_array_equal(np.asarray(keep).T, ref_keep)
  np.testing.assert_allclose(np.asarray(new).T, ref_w, rtol=1e-3, atol=1e-4)


def test_low_precision_params_keep_dtype_and_compute_in_float32():
  x, w = correlated_layer(n_in=64, n_out=16, tokens=256, seed=6, mixing=0.3)
  h = jnp.asarray(hessian(x), jnp.bfloat16)
  w16 = jnp.asarray(w, jnp.bfloat16)
  new, keep = sparsegpt_layer(w16, h, NM(2, 4))
  assert new.dtype == jnp.bfloat16
  ref_w, _ = sparsegpt_reference(np.asarray(w16, np.float64).T,
                                 np.asarray(h, np.float64), n=2, m=4)
  rel = np.linalg.norm(np.asarray(new, np.float64).T - ref_w) / (
      np.linalg.norm(ref_w))
  assert rel < 1e-2, rel


def test_indefinite_hessian_raises_dampening_and_says_so():
  # Eigenvalues -2 and 4, mean diagonal 1: dampening up to 1 fails, 10 works.
  h = jnp.array([[1., 3., 0., 0.], [3., 1., 0., 0.],
                 [0., 0., 1., 3.], [0., 0., 3., 1.]])
  w = jnp.arange(1., 9.).reshape(4, 2)
  with pytest.warns(RuntimeWarning, match=r"'layer/kernel'.*raised the "
                    r"dampening to 10"):
    new, keep = sparsegpt_layer(w, h, NM(2, 4), path="layer/kernel")
  assert np.all(np.isfinite(np.asarray(new)))
  assert int(keep.sum()) == 4


def test_hopeless_hessian_raises_naming_the_layer():
  h = -jnp.eye(4)
  with pytest.raises(FloatingPointError, match="'mlp/fc/kernel'"):
    sparsegpt_layer(jnp.ones((4, 2)), h, NM(2, 4), path="mlp/fc/kernel")
  nan_h = jnp.full((4, 4), jnp.nan)
  with pytest.raises(FloatingPointError, match="'fc'"):
    sparsegpt_layer(jnp.ones((4, 2)), nan_h, NM(2, 4), path="fc")


def test_core_never_returns_nan_when_factorisation_fails():
  w = jnp.ones((4, 2))
  new, keep, _, ok = jax.jit(sparsegpt_core, static_argnames=(
      "pattern", "blocksize", "retries"))(w, -jnp.eye(4), NM(2, 4))
  assert not bool(ok)
  np.testing.assert_array_equal(np.asarray(new), np.asarray(w))
  assert bool(keep.all())


def test_no_warning_for_a_well_conditioned_hessian():
  x, w = correlated_layer(n_in=32, n_out=8, tokens=128, seed=7)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    sparsegpt_layer(jnp.asarray(w, jnp.float32),
                    jnp.asarray(hessian(x), jnp.float32), NM(2, 4))


@pytest.mark.parametrize("pattern,shape,hshape,match", [
    (NM(2, 4), (6, 3), (6, 6), r"'fc/kernel'.*not divisible by m=4"),
    (Block((2, 2), 0.5), (8, 4), (8, 8), r"'fc/kernel'.*Unstructured and NM"),
    (NM(2, 4, axis=1), (8, 4), (8, 8), r"'fc/kernel'.*input axis"),
    (NM(2, 4, transposable=True), (8, 4), (8, 8), r"'fc/kernel'.*transposable"),
    (NM(2, 4), (8, 4, 4), (8, 8), r"'fc/kernel'.*2-D Dense kernels"),
    (NM(2, 4), (8, 4), (4, 4), r"'fc/kernel'.*Hessian has shape \(4, 4\)"),
])
def test_bad_input_errors_name_the_layer(pattern, shape, hshape, match):
  with pytest.raises(ValueError, match=match):
    sparsegpt_layer(jnp.ones(shape), jnp.eye(hshape[0]), pattern,
                    path="fc/kernel")
