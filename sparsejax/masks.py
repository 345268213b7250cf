"""Masks as pytrees that mirror params.

A mask tree has exactly the structure of its params tree (nested dicts, Flax
Linen variables, Flax NNX `State`, lists, tuples, custom pytree nodes), so
`jax.tree.map(f, params, masks)` just works. A masked leaf holds a bool array
of its param's shape; a dense leaf holds a 0-d `True` (`dense_mask()`), which
broadcasts in `jnp.where(mask, w, 0)` and costs nothing to store or shard.

Non-finite weights are named: the leaves a computation targets are checked
for NaN/±inf (`on_nonfinite="warn"` by default, `"error"` or `"ignore"`),
under `jit` too (a device-side test and a host callback only when something
is found). Patterns rank NaN below every number, so a mask never keeps a NaN
over a finite entry (see `sparsejax.patterns`).
"""

from typing import Any

import jax
import jax.numpy as jnp

from sparsejax import _checks
from sparsejax import _ranking
from sparsejax import patterns as patterns_lib
from sparsejax import rules as rules_lib
from sparsejax import scores as scores_lib


def dense_mask() -> jax.Array:
  """The marker a mask tree holds for a leaf that is not masked.

  >>> dense_mask()
  Array(True, dtype=bool)
  """
  return jnp.ones((), bool)


def is_dense(mask: Any) -> bool:
  """Whether a mask leaf is the dense marker (a 0-d array).

  >>> is_dense(dense_mask()), is_dense(jnp.ones((2, 2), bool))
  (True, False)
  """
  return getattr(mask, "shape", None) == ()


def named_pairs(params: Any, masks: Any) -> list[tuple[str, Any, Any]]:
  """`[(path, param, mask), ...]`; a clear error if the two trees differ."""
  named_params = rules_lib.named_leaves(params)
  named_masks = rules_lib.named_leaves(masks)
  if [p for p, _ in named_params] != [p for p, _ in named_masks]:
    mask_paths = {p for p, _ in named_masks}
    param_paths = {p for p, _ in named_params}
    missing = sorted(param_paths - mask_paths)[:5]
    extra = sorted(mask_paths - param_paths)[:5]
    raise ValueError(
        "masks do not mirror params: params leaves without a mask "
        f"{missing}, mask leaves without a param {extra}. Compute masks from "
        "the same params tree (dense leaves hold dense_mask()).")
  return [(path, w, m) for (path, w), (_, m) in zip(named_params, named_masks)]


def check_masks(params: Any, masks: Any) -> None:
  """Raises a ValueError naming the leaf whose mask does not fit its param.

  >>> check_masks({"w": jnp.ones((2, 2))}, {"w": jnp.ones((2, 3), bool)})
  Traceback (most recent call last):
  ...
  ValueError: mask at 'w' has shape (2, 3) but its param has shape (2, 2).
  """
  for path, w, m in named_pairs(params, masks):
    if is_dense(m):
      continue
    if tuple(m.shape) != tuple(jnp.shape(w)):
      raise ValueError(f"mask at {path!r} has shape {tuple(m.shape)} but its "
                       f"param has shape {tuple(jnp.shape(w))}.")
    if m.dtype != jnp.bool_:
      raise TypeError(f"mask at {path!r} must be bool; got {m.dtype}.")


def check_targets_finite(params: Any, scores: Any, paths: Any,
                         on_nonfinite: str) -> None:
  """Reports NaN/±inf in the targeted leaves of `params` (and of `scores`,
  when given) by `on_nonfinite`, naming each leaf.

  >>> check_targets_finite({"w": jnp.array([jnp.nan])}, None, ["w"], "error")
  Traceback (most recent call last):
  ...
  ValueError: params at 'w' hold 1 non-finite entries (NaN or ±inf) of 1; pass on_nonfinite='ignore' to skip this check.
  """
  _checks.check_choice(on_nonfinite, "on_nonfinite", _checks.ON_NONFINITE)
  if on_nonfinite == "ignore":
    return
  paths = set(paths)
  trees = [("params", params)] + ([("scores", scores)] if scores is not None
                                   else [])
  for name, tree in trees:
    for path, leaf in rules_lib.named_leaves(tree):
      if path in paths:
        _checks.check_finite(leaf, name, path, on_nonfinite)


def _leaf_sparsity(sparsity: Any, paths: list[str]) -> Any:
  """`path -> override or None`; unknown paths in a dict are an error."""
  if not isinstance(sparsity, dict):
    return lambda path: sparsity
  unknown = sorted(set(sparsity) - set(paths))
  if unknown:
    raise ValueError(f"sparsity names leaves that no rule targets: "
                     f"{unknown[:5]}; targeted leaves: {paths[:5]}.")
  return sparsity.get


def compute_masks(params: Any, rules: Any, *, scores: Any = None,
                  sparsity: Any = None, on_unused: str = "warn",
                  on_nonfinite: str = "warn") -> Any:
  """Computes a mask tree mirroring `params`.

  Args:
    params: any pytree of arrays.
    rules: `Rule`s (first match wins), one `Rule`, or a bare pattern.
    scores: a pytree like `params` to rank by; default `magnitude(params)`.
    sparsity: per-leaf sparsities to use instead of the patterns' own: a float
      for every targeted leaf, or `{path: sparsity}` from `sparsejax.
      distributions`. Only patterns with a sparsity (unstructured, block,
      channel) accept it.
    on_unused: what to do about rules that matched no leaf: "warn" (default),
      "error" or "ignore".
    on_nonfinite: what to do about NaN/±inf in a targeted leaf (of `params`
      or `scores`): "warn" (default), "error" or "ignore"; the message names
      the leaf. Under `jit` it is reported when the compiled call runs.

  Returns:
    A pytree like `params`: bool masks for targeted leaves, `dense_mask()`
    elsewhere.

  >>> from sparsejax.patterns import NM
  >>> from sparsejax.rules import Rule
  >>> params = {"fc": {"kernel": jnp.arange(8.).reshape(4, 2), "bias": jnp.ones(2)}}
  >>> masks = compute_masks(params, [Rule(".*kernel", NM(2, 4))])
  >>> masks["fc"]["kernel"].astype(int), masks["fc"]["bias"]
  (Array([[0, 0],
         [0, 0],
         [1, 1],
         [1, 1]], dtype=int32), Array(True, dtype=bool))
  """
  rules_lib.report_unused(params, rules, on_unused)
  assignment = rules_lib.assign(params, rules)
  given_scores = scores
  if scores is None:
    scores = scores_lib.magnitude(params)
  named_scores = dict(rules_lib.named_leaves(scores))
  if list(named_scores) != list(assignment):
    raise ValueError("scores must be a pytree with the same leaves as params.")
  targeted = [p for p, r in assignment.items()
              if r is not None and r.pattern is not None]
  check_targets_finite(params, given_scores, targeted, on_nonfinite)
  override = _leaf_sparsity(sparsity, targeted)

  def one(keypath, leaf):
    path = rules_lib.path_str(keypath)
    rule = assignment[path]
    if rule is None or rule.pattern is None:
      return dense_mask()
    pattern = rule.pattern
    value = override(path)
    if value is not None:
      pattern = pattern.with_sparsity(value, path)
    score = named_scores[path]
    if tuple(jnp.shape(score)) != tuple(jnp.shape(leaf)):
      raise ValueError(f"score at {path!r} has shape {jnp.shape(score)} but "
                       f"its param has shape {jnp.shape(leaf)}.")
    return pattern.mask(jnp.asarray(score), path=path)

  return jax.tree_util.tree_map_with_path(one, params)


def apply_masks(params: Any, masks: Any) -> Any:
  """Zeroes the pruned entries: `where(mask, w, 0)` leaf by leaf.

  >>> apply_masks({"w": jnp.array([1., 2.])}, {"w": jnp.array([True, False])})
  {'w': Array([1., 0.], dtype=float32)}
  """
  check_masks(params, masks)
  return jax.tree.map(
      lambda w, m: w if is_dense(m) else jnp.where(m, w, jnp.zeros_like(w)),
      params, masks)


def compute_global_masks(params: Any, rules: Any, sparsity: float, *,
                         scores: Any = None, on_unused: str = "warn",
                         on_nonfinite: str = "warn") -> Any:
  """One threshold across every targeted leaf (global magnitude / saliency).

  Exactly `floor(sparsity * total)` entries are pruned over all leaves the
  rules target (their patterns only select leaves here). This is the one mask
  computation that needs a global order: on a sharded model it gathers the
  targeted scores. `sparsity` may be traced (checked when the compiled call
  runs); `on_unused` and `on_nonfinite` are as in `compute_masks`.

  >>> from sparsejax.patterns import Unstructured
  >>> params = {"a": jnp.array([[1., 2.]]), "b": jnp.array([[3., 4.]])}
  >>> m = compute_global_masks(params, Unstructured(0.5), 0.5)
  >>> m["a"].astype(int), m["b"].astype(int)
  (Array([[0, 0]], dtype=int32), Array([[1, 1]], dtype=int32))
  """
  _checks.check_fraction(sparsity, "sparsity")
  rules_lib.report_unused(params, rules, on_unused)
  assignment = rules_lib.assign(params, rules)
  given_scores = scores
  if scores is None:
    scores = scores_lib.magnitude(params)
  named = rules_lib.named_leaves(scores)
  targeted = [(p, s) for p, s in named
              if assignment[p] is not None and assignment[p].pattern is not None]
  check_targets_finite(params, given_scores, [p for p, _ in targeted],
                       on_nonfinite)
  for path, s in targeted:
    patterns_lib.check_float(jnp.result_type(s), path)
  if not targeted:
    return jax.tree.map(lambda _: dense_mask(), params)
  flat = jnp.concatenate([jnp.ravel(s).astype(jnp.float32) for _, s in targeted])
  keep = _ranking.keep_top_k(
      flat[None], patterns_lib.kept_count(flat.size, sparsity))[0]
  pieces, start = {}, 0
  for path, s in targeted:
    pieces[path] = keep[start:start + s.size].reshape(s.shape)
    start += s.size
  return jax.tree_util.tree_map_with_path(
      lambda kp, _: pieces.get(rules_lib.path_str(kp), dense_mask()), params)
