"""Activation sparsity: the input of a linear layer, sparsified per token.

A linear layer ``y = x @ W`` contracts the last axis of its input; zeroing
input features skips the matching rows of ``W``. Two structures are offered,
both per token (every index of the leading axes is one token) and both with
a straight-through backward by default:

=====================  ===============================  ==================
function               keeps, per token                 pattern (rules)
=====================  ===============================  ==================
``qsparse_topk``       the ``k`` largest ``|x|``        ``Unstructured(s)``
``activation_nm``      the ``n`` largest ``|x|`` of     ``NM(n, m)``
                       every ``m`` consecutive
                       features (contraction axis)
=====================  ===============================  ==================

Backward (``grad``): ``"ste"`` passes the output gradient through unchanged
(``dL/dx = g``, Q-Sparse's straight-through estimator, so dropped features
keep learning); ``"masked"`` is the exact derivative of the forward
(``dL/dx = g * mask``).

Ties keep the lower feature index, so every token keeps exactly ``k`` (or
``n`` per group) features; a kept feature may itself be zero.
``qsparse_topk`` with ``grad="ste"`` is ``sparsejax.views.activation_topk``
with ``k`` also given as a sparsity. :func:`sparsify_input` applies a rule's
pattern to a layer input and is what
:func:`sparsejax.flax.sparsify_activations` runs.

References:
  * Wang, H., Ma, S., Wang, R. and Wei, F. "Q-Sparse: All Large Language Models
    can be Fully Sparsely-Activated." arXiv:2407.10969, 2024.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import _checks
from sparsejax import _ranking
from sparsejax import patterns as patterns_lib
from sparsejax import views

__all__ = [
    "GRADS",
    "qsparse_topk",
    "activation_nm",
    "check_input_pattern",
    "sparsify_input",
    "zero_fraction",
]

# The views' machinery, shared: the identity-tangent wrapper and the per-token
# top-k forward of `views.activation_topk`.
_identity_grad = views._identity_grad  # pylint: disable=protected-access
_topk_last = views._topk_last  # pylint: disable=protected-access

GRADS = ("ste", "masked")
"""The backward rules, straight-through (identity) or the masked derivative."""


def _check_input(x: Any, name: str = "x", path: str = "") -> jax.Array:
  x = jnp.asarray(x)
  _checks.check_floating(x.dtype, f"`{name}`", path,
                         " Activation sparsity ranks float features.")
  if x.ndim == 0:
    raise ValueError(f"`{name}`{_checks.where(path)} must have a feature "
                     "axis (at least one dimension); got a scalar.")
  return x


def _masked(x, keep):
  return jnp.where(keep, x, jnp.zeros((), x.dtype))


@functools.partial(jax.jit, static_argnames=("n", "m"))
def _nm_forward(x, *, n, m):
  # Jitted so that an eager call compiles once instead of dispatching the
  # ranking op by op; under an outer jit it is inlined.
  keep = _ranking.keep_top_n_in_groups(jnp.abs(x), n, x.ndim - 1, m)
  return _masked(x, keep)


def _with_grad(forward, x, grad):
  _checks.check_choice(grad, "grad", GRADS)
  if grad == "ste":
    return _identity_grad(forward, x)
  return forward(x)


def _l2_normalized(y):
  """Each token divided by its L2 norm (float32 sums; a zero token stays 0)."""
  norm = jnp.linalg.norm(y.astype(jnp.float32), axis=-1, keepdims=True)
  safe = jnp.where(norm > 0, norm, 1.0)
  return (y.astype(jnp.float32) / safe).astype(y.dtype)


def qsparse_topk(x: jax.Array, k: int | None = None, *,
                 sparsity: float | None = None, grad: str = "ste",
                 rescale: bool = False) -> jax.Array:
  """Q-Sparse top-K: the ``k`` largest ``|x|`` per token, the rest zero.

  Wang, Ma, Wang and Wei, "Q-Sparse: All Large Language Models can be Fully
  Sparsely-Activated" (arXiv:2407.10969, 2024), Sec. 2: a linear layer
  computes ``Y = (X * M) W^T`` with the mask ``M = Top_k(|X|)`` taken per
  token along the feature axis, trained with the straight-through
  estimator (the gradient of ``X * M`` is passed to ``X`` unchanged). The
  paper gives ``K`` directly or through the sparsity ratio ``S`` of the
  features (``K = (1 - S) d``); here ``sparsity`` prunes
  ``floor(sparsity * d)`` features, the count ``sparsejax.Unstructured``
  uses. The paper's text adds that the tensor is rescaled by its L2 norm
  after the top-K, a step its equations do not show: by default nothing is
  rescaled (the equations; ``sparsejax.views.activation_topk``), and
  ``rescale=True`` divides each token by the L2 norm of its kept values
  (differentiated as written; the STE covers the mask only).

  Args:
    x: floating-point activations ``(..., d)``.
    k: features kept per token, a static int in ``[1, d]``.
    sparsity: instead of ``k``: the pruned fraction, a static float in
      ``[0, 1)``; ``k = d - floor(sparsity * d)``.
    grad: ``"ste"`` (the paper: ``dL/dx = g``) or ``"masked"``
      (``dL/dx = g * M``).
    rescale: divide each token's ``x * M`` by its L2 norm (an all-zero
      token stays zero).

  Returns:
    ``x * M`` (or ``x * M / |x * M|``) in ``x``'s dtype and shape.

  Raises:
    ValueError: a non-float or 0-d ``x``; both or neither of ``k`` and
      ``sparsity``; ``k`` or ``sparsity`` out of range; an unknown ``grad``.

  >>> x = jnp.array([[0.1, -3.0, 2.0, 0.5], [1.0, 1.0, -1.0, 0.0]])
  >>> qsparse_topk(x, 2)
  Array([[ 0., -3.,  2.,  0.],
         [ 1.,  1.,  0.,  0.]], dtype=float32)
  >>> qsparse_topk(x, sparsity=0.75)[0]
  Array([ 0., -3.,  0.,  0.], dtype=float32)
  >>> jax.grad(lambda x: qsparse_topk(x, 1).sum())(x[0])
  Array([1., 1., 1., 1.], dtype=float32)
  >>> qsparse_topk(jnp.array([3.0, 0.1, -4.0]), 2, rescale=True)
  Array([ 0.6,  0. , -0.8], dtype=float32)
  """
  x = _check_input(x)
  d = x.shape[-1]
  if (k is None) == (sparsity is None):
    raise ValueError("give exactly one of `k` (features kept per token) and "
                     f"`sparsity` (fraction pruned); got k={k!r}, "
                     f"sparsity={sparsity!r}.")
  if sparsity is not None:
    if _checks.is_traced(sparsity):
      raise ValueError("`sparsity` must be a static float (it sets the "
                       "shape-independent count k at trace time).")
    _checks.check_fraction(sparsity, "`sparsity`")
    k = d - int(np.floor(np.float32(sparsity) * d))
  if not _checks.is_int(k):
    raise _checks.ParamTypeError(
        f"`k` must be a static Python int; got {k!r}.")
  if not 1 <= k <= d:
    raise ValueError(f"`k` must be in [1, {d}] (the last axis of `x`); got "
                     f"{k}.")
  _checks.check_choice(grad, "grad", GRADS)
  _checks.check_bool(rescale, "rescale")
  if k == d:
    return _l2_normalized(x) if rescale else x
  y = _with_grad(functools.partial(_topk_last, k=int(k)), x, grad)
  return _l2_normalized(y) if rescale else y


def activation_nm(x: jax.Array, n: int, m: int, *,
                  grad: str = "ste") -> jax.Array:
  """N:M along the contraction axis: ``n`` largest ``|x|`` of every ``m``.

  Groups are ``m`` consecutive features of the last axis of a Dense input
  (the axis the layer contracts), per token, so the sparsified input feeds
  an N:M sparse-times-dense matmul. Ranking is the library's N:M ranking
  (``sparsejax.NM``), ties to the lower index.

  Args:
    x: floating-point activations ``(..., d)``, ``d`` divisible by ``m``.
    n: features kept per group, a static int, ``1 <= n <= m``.
    m: group size, a static int.
    grad: ``"ste"`` (``dL/dx = g``) or ``"masked"`` (``dL/dx = g * mask``).

  Returns:
    ``x`` with all but ``n`` of every ``m`` features zero.

  Raises:
    ValueError: a non-float or 0-d ``x``; bad ``n``/``m``; a last axis not
      divisible by ``m``; an unknown ``grad``.

  >>> x = jnp.array([[0.1, -3.0, 2.0, 0.5, 4.0, 1.0, -2.0, 0.0]])
  >>> activation_nm(x, 2, 4)
  Array([[ 0., -3.,  2.,  0.,  4.,  0., -2.,  0.]], dtype=float32)
  >>> jax.grad(lambda x: activation_nm(x, 1, 4, grad="masked").sum())(x[0])
  Array([0., 1., 0., 0., 1., 0., 0., 0.], dtype=float32)
  """
  x = _check_input(x)
  n, m = _checks.check_nm(n, m, "N:M")
  if x.shape[-1] % m:
    raise ValueError(f"the last axis of `x` has {x.shape[-1]} features, "
                     f"which is not divisible by the group size m={m}.")
  _checks.check_choice(grad, "grad", GRADS)
  if n == m:
    return x
  return _with_grad(functools.partial(_nm_forward, n=n, m=m), x, grad)


def check_input_pattern(pattern: Any, width: int | None = None,
                        path: str = "") -> None:
  """Raises unless ``pattern`` can sparsify an input of ``width`` features.

  Activation sparsity takes ``NM(n, m)`` (groups along the contraction axis;
  ``axis`` unset or -1, not transposable) and ``Unstructured(s)`` (Q-Sparse
  top-k per token; not ``per_output``) with a static sparsity.

  Args:
    pattern: a ``sparsejax`` pattern.
    width: the layer's input features (the contraction axis); None checks
      the pattern alone.
    path: the layer path, named in errors.

  >>> check_input_pattern(patterns_lib.NM(2, 4), 6, "mlp/fc2")
  Traceback (most recent call last):
  ...
  ValueError: activation pattern 2:4 at 'mlp/fc2': the input has 6 features, which is not divisible by m=4.
  """
  where = _checks.where(path)
  if isinstance(pattern, patterns_lib.NM):
    if pattern.transposable or pattern.axis not in (None, -1):
      raise ValueError(f"activation pattern {pattern}{where}: N:M runs along "
                       "the input's contraction (last) axis; leave `axis` "
                       "unset and transposable=False.")
    if width is not None and width % pattern.m:
      raise ValueError(f"activation pattern {pattern}{where}: the input has "
                       f"{width} features, which is not divisible by "
                       f"m={pattern.m}.")
    return
  if isinstance(pattern, patterns_lib.Unstructured):
    if pattern.per_output:
      raise ValueError(f"activation pattern {pattern}{where}: per_output "
                       "has no meaning for an input; use Unstructured(s).")
    if _checks.is_traced(pattern.sparsity):
      raise ValueError(f"activation pattern{where}: the sparsity must be a "
                       "static float, not a traced value.")
    return
  raise _checks.ParamTypeError(
      f"activation pattern{where} must be NM(n, m) or Unstructured(sparsity) "
      f"(per-token top-k); got {pattern!r}.")


def sparsify_input(x: jax.Array, pattern: Any, path: str = "", *,
                   grad: str = "ste") -> jax.Array:
  """A layer input sparsified by a rule's pattern (checked first).

  ``NM(n, m)`` runs :func:`activation_nm`; ``Unstructured(s)`` runs
  :func:`qsparse_topk` with ``sparsity=s``.

  Args:
    x: the layer input ``(..., d)``.
    pattern: ``NM`` or ``Unstructured`` (see :func:`check_input_pattern`).
    path: the layer path, named in errors.
    grad: ``"ste"`` or ``"masked"``.

  Returns:
    The sparsified input.

  >>> sparsify_input(jnp.array([3.0, -1.0, 0.5, 2.0]),
  ...                patterns_lib.Unstructured(0.5))
  Array([3., 0., 0., 2.], dtype=float32)
  """
  x = _check_input(x, "inputs", path)
  check_input_pattern(pattern, x.shape[-1], path)
  if isinstance(pattern, patterns_lib.NM):
    return activation_nm(x, pattern.n, pattern.m, grad=grad)
  return qsparse_topk(x, sparsity=float(pattern.sparsity), grad=grad)


def zero_fraction(x: jax.Array) -> jax.Array:
  """The fraction of exact zeros in ``x`` (float32; traceable).

  >>> zero_fraction(jnp.array([0.0, 1.0, 0.0, -2.0]))
  Array(0.5, dtype=float32)
  """
  x = jnp.asarray(x)
  return jnp.mean((x == 0).astype(jnp.float32))
