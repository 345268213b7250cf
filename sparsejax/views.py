"""Differentiable forward views of sparse weights (the straight-through family).

A *view* maps the dense ("shadow") weights ``W`` that the optimizer updates to
the weights ``W~`` that the forward pass sees, together with a chosen backward
rule. All views here are pure functions of arrays (a weight, a boolean mask,
scalars that may be traced) and static Python integers, so they compose with
``jax.jit``, ``jax.vmap``, ``jax.grad``, ``jax.checkpoint`` and ``shard_map``,
and work for float32 and bfloat16 weights.

=======================  ==================  ==================================
view                     forward             backward ``dL/dW``
=======================  ==================  ==================================
``ste``                  ``W*m``             ``g``
``srste``                ``W*m``             ``g + decay*(1-m)*W``
``decayed`` (identity)   ``W*(m+(1-m)b)``    ``g``
``decayed`` (autodiff)   ``W*(m+(1-m)b)``    ``g*(m+(1-m)b)``
``sste``                 ``scale*S(W)``      ``g``
``activation_topk``      top-k of ``|x|``    ``g``
=======================  ==================  ==================================

Here ``g = dL/dW~``. Masks and scales never receive gradients.

Masks are boolean arrays of the weight's shape (any other dtype is read as
"nonzero means kept"). A 0-d mask broadcasts: the library marks dense leaves
with a scalar ``True``, so ``jax.tree.map(ste, params, masks)`` leaves those
leaves untouched.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from sparsejax import _checks
from sparsejax import _ranking

__all__ = [
    "ste",
    "srste",
    "decayed",
    "soft_threshold",
    "sste_scale",
    "sste",
    "activation_topk",
]


# ----------------------------------------------------------------------------
# Validation helpers.
# ----------------------------------------------------------------------------


def _check_mask(mask: Any, w: jax.Array) -> jax.Array:
  mask = jnp.asarray(mask)
  if mask.ndim != 0 and mask.shape != w.shape:
    raise ValueError(
        f"`mask` shape {mask.shape} does not match `w` shape {w.shape} "
        "(a 0-d mask is also accepted and broadcasts).")
  if mask.dtype != jnp.bool_:
    mask = mask != 0
  return mask


def _check_scalar(x: Any, name: str, lo: float, hi: float | None) -> jax.Array:
  """Checks a scalar hyper-parameter: at once when concrete, at run time
  when traced (``_checks.check_traced_range``)."""
  if isinstance(x, (str, bytes)) or jnp.ndim(x) != 0:
    raise ValueError(f"`{name}` must be a scalar, got {x!r}.")
  return jnp.asarray(_checks.check_traced_range(x, f"`{name}`", lo, hi))


def _floating(w: Any, name: str = "w") -> jax.Array:
  """`w` as an array; raises unless it is floating-point."""
  w = jnp.asarray(w)
  _checks.check_floating(w.dtype, f"`{name}`")
  return w


def _check_axis(w: jax.Array, axis: int, m: int) -> int:
  if w.ndim == 0:
    raise ValueError("`w` must have at least one dimension.")
  if not -w.ndim <= axis < w.ndim:
    raise ValueError(f"`axis`={axis} is out of range for `w` of rank {w.ndim}.")
  axis %= w.ndim
  if w.shape[axis] % m:
    raise ValueError(
        f"`w` axis {axis} has length {w.shape[axis]}, which is not divisible "
        f"by the group size `m`={m}.")
  return axis


# ----------------------------------------------------------------------------
# Identity-backward wrapper.
# ----------------------------------------------------------------------------


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _identity_grad(fn, w, *args):
  """Returns ``fn(w, *args)`` with tangent (hence gradient) identity to ``w``.

  ``args`` receive no derivative. A custom JVP (rather than VJP) keeps the view
  usable under forward-mode differentiation too; the tangent is linear in
  ``w``'s tangent, so reverse mode follows by transposition.
  """
  return fn(w, *args)


@_identity_grad.defjvp
def _identity_grad_jvp(fn, primals, tangents):
  w, *args = primals
  return _identity_grad(fn, w, *args), tangents[0]


def _apply_mask(w, mask):
  return jnp.where(mask, w, jnp.zeros((), w.dtype))


# ----------------------------------------------------------------------------
# Public views.
# ----------------------------------------------------------------------------


def ste(w: jax.Array, mask: jax.Array) -> jax.Array:
  """Straight-through masked view: forward ``w*mask``, backward identity.

  Args:
    w: floating-point weights.
    mask: boolean mask of ``w``'s shape (or a 0-d mask that broadcasts; the
      library's dense-leaf marker ``True`` returns ``w`` unchanged).

  Returns:
    ``w`` with pruned entries set to zero; ``dL/dw`` equals the gradient with
    respect to the output.

  Raises:
    ValueError: if ``w`` is not floating point or the shapes differ.

  >>> w = jnp.array([1.0, -2.0, 3.0, -4.0])
  >>> mask = jnp.array([False, True, False, True])
  >>> ste(w, mask)
  Array([ 0., -2.,  0., -4.], dtype=float32)
  >>> jax.grad(lambda w: ste(w, mask).sum())(w)
  Array([1., 1., 1., 1.], dtype=float32)
  """
  w = _floating(w)
  mask = _check_mask(mask, w)
  return _identity_grad(_apply_mask, w, mask)


@jax.custom_vjp
def _srste(w, mask, decay):
  return _apply_mask(w, mask)


def _srste_fwd(w, mask, decay):
  return _apply_mask(w, mask), (w, mask, decay)


def _srste_bwd(res, g):
  w, mask, decay = res
  pruned = jnp.where(mask, jnp.zeros((), w.dtype), w)
  dw = g + (decay * pruned).astype(g.dtype)
  return dw, None, None


_srste.defvjp(_srste_fwd, _srste_bwd)


def srste(w: jax.Array, mask: jax.Array, decay: Any = 2e-4) -> jax.Array:
  """SR-STE view: forward ``w*mask``, backward ``g + decay*(1-mask)*w``.

  The extra backward term pulls pruned weights towards zero (sparse-refined
  straight-through estimator). ``decay`` may be a traced scalar, so a schedule
  can drive it inside a jitted step. Neither ``mask`` nor ``decay`` receives a
  gradient.

  The decay term is added once per use of the view in the loss: a weight that
  goes through ``srste`` twice is regularised twice, and a view whose output
  does not reach the loss adds nothing.

  Args:
    w: floating-point weights.
    mask: boolean mask of ``w``'s shape (or a broadcasting 0-d mask).
    decay: non-negative scalar ``lambda`` (default 2e-4, the published value
      for SGD; retune it for Adam-type optimizers); a traced one is checked
      when the compiled call runs.

  Returns:
    ``w`` with pruned entries set to zero.

  Raises:
    ValueError: on a non-float ``w``, mismatched mask shape, non-scalar
      ``decay``, or ``decay < 0`` or NaN (traced: when the call runs).

  >>> w = jnp.array([1.0, -2.0, 3.0, -4.0])
  >>> mask = jnp.array([False, True, False, True])
  >>> srste(w, mask, decay=0.5)
  Array([ 0., -2.,  0., -4.], dtype=float32)
  >>> jax.grad(lambda w: srste(w, mask, decay=0.5).sum())(w)
  Array([1.5, 1. , 2.5, 1. ], dtype=float32)
  """
  w = _floating(w)
  mask = _check_mask(mask, w)
  decay = _check_scalar(decay, "decay", 0.0, None)
  return _srste(w, mask, decay)


def _decayed_forward(w, mask, beta):
  return jnp.where(mask, w, w * beta.astype(w.dtype))


def decayed(w: jax.Array,
            mask: jax.Array,
            beta: Any,
            *,
            grad: str = "identity") -> jax.Array:
  """Mask-decay (MDGF) view: forward ``w*(mask + (1-mask)*beta)``.

  ``beta`` runs from 1 (dense) to 0 (hard mask) over the sparse phase, driven
  by a schedule; it may be traced. It never receives a gradient.

  Args:
    w: floating-point weights.
    mask: boolean mask of ``w``'s shape (or a broadcasting 0-d mask).
    beta: scalar in ``[0, 1]``; a traced one (a schedule's output) is checked
      when the compiled call runs, so ``beta = 2`` or NaN raises instead of
      scaling the pruned weights up.
    grad: ``"identity"`` (the published reference: ``dL/dw = g``) or
      ``"autodiff"`` (the gradient is scaled by the soft mask,
      ``dL/dw = g*(mask + (1-mask)*beta)``).

  Returns:
    The decayed view of ``w``.

  Raises:
    ValueError: on a non-float ``w``, mismatched mask, non-scalar ``beta``, a
      ``beta`` outside ``[0, 1]`` or NaN (traced: when the call runs) or an
      unknown ``grad``.

  >>> w = jnp.array([1.0, -2.0, 3.0, -4.0])
  >>> mask = jnp.array([False, True, False, True])
  >>> decayed(w, mask, 0.5)
  Array([ 0.5, -2. ,  1.5, -4. ], dtype=float32)
  >>> jax.grad(lambda w: decayed(w, mask, 0.5, grad="autodiff").sum())(w)
  Array([0.5, 1. , 0.5, 1. ], dtype=float32)
  """
  if grad not in ("identity", "autodiff"):
    raise ValueError(
        f"`grad` must be 'identity' or 'autodiff', got {grad!r}.")
  w = _floating(w)
  mask = _check_mask(mask, w)
  beta = lax.stop_gradient(_check_scalar(beta, "beta", 0.0, 1.0))
  if grad == "identity":
    return _identity_grad(_decayed_forward, w, mask, beta)
  return _decayed_forward(w, mask, beta)


# ----------------------------------------------------------------------------
# S-STE.
# ----------------------------------------------------------------------------


def soft_threshold(w: jax.Array, n: int, m: int, axis: int = 0) -> jax.Array:
  """S-STE projection: per group of ``m`` along ``axis``, soft-threshold.

  With ``tau`` the ``(m-n)``-th smallest ``|w|`` of the group (equivalently
  the ``(n+1)``-th largest, counting ties with multiplicity),
  ``S(w)_i = sign(w_i) * max(|w_i| - tau, 0)``. The result is continuous in
  ``w``; for ``n == m`` it is ``w`` itself (``tau = 0``).

  Ties: an entry is nonzero only if ``|w_i| > tau`` strictly, and at most
  ``n`` entries of a group can exceed its ``(n+1)``-th largest magnitude, so
  every group has at most ``n`` nonzeros, exactly ``n`` when the ``n``-th and
  ``(n+1)``-th largest magnitudes differ. When they tie, all entries tied at
  ``tau`` become zero and the group keeps fewer than ``n`` (e.g. 2:4 of
  ``[1, 1, 1, 0.5]`` is all zeros). No index tie-break is needed: the result
  is symmetric in tied entries and still continuous.

  The function is differentiated by ordinary autodiff (through ``tau`` too);
  use :func:`sste` for the straight-through view.

  Args:
    w: floating-point weights.
    n: entries kept per group (static int, ``1 <= n <= m``).
    m: group size (static int); ``w.shape[axis]`` must be divisible by it.
    axis: the group axis (the input/contraction axis: 0 for a Dense
      ``(in, out)`` kernel, -2 for a Conv ``(h, w, in, out)`` kernel).

  Returns:
    ``S(w)``, same shape and dtype as ``w``.

  Raises:
    ValueError: on bad ``n``/``m``, a non-divisible axis or a non-float ``w``.

  >>> w = jnp.array([0.5, -2.0, 3.0, -1.0])
  >>> soft_threshold(w, 2, 4)
  Array([ 0., -1.,  2.,  0.], dtype=float32)
  """
  w = _floating(w)
  n, m = _checks.check_nm(n, m, "N:M")
  axis = _check_axis(w, axis, m)
  if n == m:
    return w
  return _soft_threshold(w, n, m, axis)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _soft_threshold(w, n, m, axis):
  # Jitted so that eager calls compile once instead of dispatching the
  # pairwise loop op by op; under an outer jit it is simply inlined.
  # tau is the largest |w| outside the group's top n: the (n+1)-th largest,
  # counting ties with multiplicity.
  grouped_shape = w.shape[:axis] + (w.shape[axis] // m, m) + w.shape[axis + 1:]
  a = jnp.abs(w)
  top = _ranking.keep_top_n_in_groups(a, n, axis, m).reshape(grouped_shape)
  tau = jnp.max(jnp.where(top, jnp.zeros((), a.dtype), a.reshape(grouped_shape)),
                axis=axis + 1, keepdims=True)
  g = w.reshape(grouped_shape)
  # sign(w) * max(|w| - tau, 0) == w - clip(w, -tau, tau), with fewer ops.
  return (g - jnp.clip(g, -tau, tau)).reshape(w.shape)


def sste_scale(w: jax.Array, n: int, m: int, axis: int = 0) -> jax.Array:
  """Per-tensor S-STE scale ``beta = <W, S(W)> / <S(W), S(W)>``.

  Computed once at initialisation and then frozen (store it in the sparsity
  state). Sums are accumulated in float32; when ``S(W)`` is all zeros
  (``0/0``) the scale is 1.

  Args:
    w: floating-point weights.
    n: entries kept per group.
    m: group size.
    axis: the group axis.

  Returns:
    A float32 scalar.

  >>> w = jnp.array([0.5, -2.0, 3.0, -1.0])
  >>> sste_scale(w, 2, 4)
  Array(1.6, dtype=float32)
  """
  w = _floating(w)
  n, m = _checks.check_nm(n, m, "N:M")
  axis = _check_axis(w, axis, m)
  return _sste_scale(w, n, m, axis)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _sste_scale(w, n, m, axis):
  s = (w if n == m else _soft_threshold(w, n, m, axis)).astype(jnp.float32)
  w32 = w.astype(jnp.float32)
  num = jnp.sum(w32 * s)
  den = jnp.sum(s * s)
  safe = den > 0
  return jnp.where(safe, num / jnp.where(safe, den, 1.0), 1.0)


def _sste_forward(w, scale, n, m, axis):
  s = w if n == m else _soft_threshold(w, n, m, axis)
  return (scale.astype(jnp.float32) * s.astype(jnp.float32)).astype(w.dtype)


def sste(w: jax.Array, n: int, m: int, scale: Any, axis: int = 0) -> jax.Array:
  """S-STE view ``scale * S(W)`` with identity backward to ``W``.

  Args:
    w: floating-point weights.
    n: entries kept per group.
    m: group size.
    scale: the frozen scalar from :func:`sste_scale` (may be traced); it
      receives no gradient.
    axis: the group axis.

  Returns:
    ``scale * soft_threshold(w, n, m, axis)`` in ``w``'s dtype.

  >>> w = jnp.array([0.5, -2.0, 3.0, -1.0])
  >>> scale = sste_scale(w, 2, 4)
  >>> sste(w, 2, 4, scale)
  Array([ 0. , -1.6,  3.2,  0. ], dtype=float32)
  >>> jax.grad(lambda w: sste(w, 2, 4, scale).sum())(w)
  Array([1., 1., 1., 1.], dtype=float32)
  """
  w = _floating(w)
  n, m = _checks.check_nm(n, m, "N:M")
  axis = _check_axis(w, axis, m)
  if jnp.ndim(scale) != 0:
    raise ValueError(f"`scale` must be a scalar, got shape {jnp.shape(scale)}.")
  scale = lax.stop_gradient(jnp.asarray(scale))
  fn = functools.partial(_sste_forward, n=n, m=m, axis=axis)
  return _identity_grad(fn, w, scale)


# ----------------------------------------------------------------------------
# Activation sparsity.
# ----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="k")
def _topk_last(x, *, k):
  d = x.shape[-1]
  flat = x.reshape(-1, d)
  _, idx = lax.top_k(jnp.abs(flat), k)
  rows = jnp.arange(flat.shape[0])[:, None]
  keep = jnp.zeros(flat.shape, jnp.bool_).at[rows, idx].set(True)
  return jnp.where(keep, flat, jnp.zeros((), x.dtype)).reshape(x.shape)


def activation_topk(x: jax.Array, k: int) -> jax.Array:
  """Keeps the ``k`` largest ``|x|`` along the last axis; STE backward.

  Each token (every index of the leading axes) keeps exactly ``k`` features,
  ties broken towards the lower index; no rescaling. The backward is identity
  (``dL/dx = g``), so dropped features still receive gradient. Serves
  activation sparsity on a linear layer's input and k-sparse autoencoders.

  Args:
    x: floating-point activations ``(..., features)``.
    k: static int, ``1 <= k <= features``.

  Returns:
    ``x`` with all but the top-``k`` magnitudes per token set to zero.

  Raises:
    ValueError: on a non-float ``x`` or ``k`` out of range.

  >>> x = jnp.array([[0.1, -3.0, 2.0, 0.5]])
  >>> activation_topk(x, 2)
  Array([[ 0., -3.,  2.,  0.]], dtype=float32)
  """
  x = _floating(x, "x")
  if x.ndim == 0:
    raise ValueError("`x` must have at least one dimension.")
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
    raise ValueError(
        f"`k` must be a static Python int, got {type(k).__name__}.")
  k = int(k)
  if not 1 <= k <= x.shape[-1]:
    raise ValueError(
        f"`k` must be in [1, {x.shape[-1]}] (the last axis), got {k}.")
  if k == x.shape[-1]:
    return x
  return _identity_grad(functools.partial(_topk_last, k=k), x)
