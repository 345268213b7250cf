"""The sparsifier interface every method shares, and its state.

A sparsifier is a frozen dataclass of configuration with pure methods:

* `init(params) -> SparsityState`
* `view(params, state) -> params` the forward pass uses (differentiable)
* `update(params, updates, state, grads=None) -> (updates, state)`: called
  with the optimizer's updates for this step; refreshes masks from the
  updated params and, for pruning methods (`hard = True`), keeps pruned
  weights at zero.
* `sparse_params(params, state) -> params` exactly sparse, for evaluation and
  export (the hard mask, beta = 0).
* `diagnostics(state) -> dict` of scalars (flip rate, achieved sparsity,
  schedule values), cheap enough to log every step inside `jit`.

Two families share this interface. *Straight-through* methods (`hard=False`)
keep dense shadow weights that the optimizer updates everywhere; only the
forward view is sparse. *Pruning* methods (`hard=True`) hold pruned weights at
exactly zero: their updates are masked, newly pruned weights are zeroed and
regrown weights start from zero.
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax import distributions
from sparsejax import masks as masks_lib
from sparsejax import patterns as patterns_lib
from sparsejax import rules as rules_lib


class SparsityState(NamedTuple):
  """What a sparsifier carries between steps (a pytree; checkpoints as is).

  Attributes:
    step: int32 count of `update` calls.
    masks: the current masks, mirroring params (0-d True for dense leaves).
    flips: int32 per leaf: entries whose mask changed at the last refresh.
    scales: per-leaf float32 scalars some methods freeze at init (S-STE), or
      None.
  """

  step: jax.Array
  masks: Any
  flips: Any
  scales: Any = None


def _zero_flips(masks):
  return jax.tree.map(lambda _: jnp.zeros((), jnp.int32), masks)


def count_flips(old, new):
  """Per-leaf count of mask entries that changed (0 for dense leaves).

  >>> count_flips({"w": jnp.array([True, False])}, {"w": jnp.array([False, False])})
  {'w': Array(1, dtype=int32)}
  """
  return jax.tree.map(
      lambda a, b: jnp.sum(a != b, dtype=jnp.int32), old, new)


@dataclasses.dataclass(frozen=True)
class Sparsifier:
  """Base class: subclasses define `targets`, `masks_at` and `view_leaf`.

  Attributes:
    rules: `Rule`s (first match wins), one `Rule`, or a bare pattern.
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.
    distribution: None (each rule's pattern as given), "uniform" or "erk":
      per-leaf sparsities from the global `sparsity` (patterns with a
      sparsity only).
    sparsity: the global target for `distribution`.
  """

  rules: Any
  on_unused: str = "warn"
  distribution: str | None = None
  sparsity: float | None = None

  hard = False

  def __post_init__(self):
    # A tuple keeps the configuration hashable (a static argument of jit,
    # static metadata of an NNX graph).
    if isinstance(self.rules, (list, tuple)):
      object.__setattr__(self, "rules", tuple(self.rules))

  # ---- hooks for subclasses -------------------------------------------------

  def check_leaf(self, path, leaf, pattern):
    """Raises a clear error if `pattern` cannot be used on this leaf."""
    pattern.check(jnp.shape(leaf), jnp.result_type(leaf), path)

  def masks_at(self, params, step, state=None, grads=None):
    """The masks for the given step, from the current params."""
    raise NotImplementedError

  def view_leaf(self, pattern, w, mask, step, path, scale=None):
    """The forward view of one targeted leaf (`scale` from `state.scales`)."""
    raise NotImplementedError

  def schedule_values(self, step):
    """Scalars describing the schedule at `step` (for diagnostics)."""
    return {}

  def init_scales(self, params, masks):
    return None

  # ---- generic machinery ----------------------------------------------------

  def patterns(self, params):
    """`{path: pattern or None}` for every leaf, validated once."""
    assignment = rules_lib.assign(params, self.rules)
    per_leaf = self._distributed(params)
    out = {}
    for path, leaf in rules_lib.named_leaves(params):
      rule = assignment[path]
      pattern = rule.pattern if rule is not None else None
      if pattern is not None:
        if path in per_leaf:
          pattern = patterns_lib.with_sparsity(pattern, per_leaf[path])
        self.check_leaf(path, leaf, pattern)
      out[path] = pattern
    return out

  def _distributed(self, params):
    if self.distribution is None:
      if self.sparsity is not None:
        raise ValueError("`sparsity` is the global target of a "
                         "`distribution`; set distribution='uniform' or "
                         "'erk', or put the sparsity in the rule's pattern.")
      return {}
    if self.distribution not in ("uniform", "erk"):
      raise ValueError(f"distribution must be None, 'uniform' or 'erk'; got "
                       f"{self.distribution!r}.")
    if self.sparsity is None:
      raise ValueError(f"distribution={self.distribution!r} needs the global "
                       "`sparsity`.")
    fn = getattr(distributions, self.distribution)
    return fn(params, self.rules, self.sparsity)

  def map_targets(self, fn, params, *rest, untargeted=None):
    """Maps `fn(path, pattern, leaf, *rest_leaves)` over the targeted leaves.

    Untargeted leaves get `untargeted(leaf)`, by default the dense marker.
    """
    plan = self.patterns(params)

    def one(keypath, leaf, *others):
      path = rules_lib.path_str(keypath)
      pattern = plan[path]
      if pattern is None:
        return untargeted(leaf) if untargeted else masks_lib.dense_mask()
      return fn(path, pattern, leaf, *others)

    return jax.tree_util.tree_map_with_path(one, params, *rest)

  def init(self, params):
    """Validates the rules against `params` and computes the first masks."""
    rules_lib.report_unused(params, self.rules, self.on_unused)
    step = jnp.zeros((), jnp.int32)
    masks = self.masks_at(params, step)
    return SparsityState(step=step, masks=masks, flips=_zero_flips(masks),
                         scales=self.init_scales(params, masks))

  def _check_state(self, params, state):
    if not isinstance(state, SparsityState):
      raise TypeError(f"expected a SparsityState; got {type(state).__name__}. "
                      "Pass the state returned by init() (or found in the "
                      "optimizer state by sparsejax.sparsity_state).")
    masks_lib.check_masks(params, state.masks)

  def view(self, params, state):
    """The params the forward pass sees at `state.step` (differentiable)."""
    self._check_state(params, state)
    extras = (state.masks,) if state.scales is None else (state.masks,
                                                           state.scales)
    return self.map_targets(
        lambda path, pattern, w, m, *s: self.view_leaf(
            pattern, w, m, state.step, path, *s),
        params, *extras, untargeted=lambda w: w)

  def update(self, params, updates, state, *, grads=None):
    """Refreshes the masks after an optimizer step.

    Args:
      params: the params before this step's updates.
      updates: the optimizer's updates for this step.
      state: the current `SparsityState`.
      grads: the gradient w.r.t. params (needed by gradient-based growth).

    Returns:
      `(updates, state)`: for pruning methods the updates are masked so pruned
      weights stay exactly zero; straight-through methods pass them through.
    """
    self._check_state(params, state)
    step = state.step + 1
    if self.hard:
      updates = jax.tree.map(
          lambda u, m: u if masks_lib.is_dense(m) else jnp.where(m, u, 0),
          updates, state.masks)
    new_params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), params,
                              updates)
    masks = self.masks_at(new_params, step, state, grads)
    if self.hard:
      updates = jax.tree.map(
          lambda p, u, m: u if masks_lib.is_dense(m) else jnp.where(
              m, u, -p).astype(u.dtype), params, updates, masks)
    new_state = state._replace(step=step, masks=masks,
                               flips=count_flips(state.masks, masks))
    return updates, new_state

  def sparse_params(self, params, state):
    """Exactly sparse params for evaluation and export (the hard mask)."""
    self._check_state(params, state)
    return masks_lib.apply_masks(params, state.masks)

  def diagnostics(self, state):
    """Scalars to log: flip rate, achieved sparsity (total and per leaf).

    Flip rate is the fraction of maskable entries whose mask changed at the
    last refresh: `|m_t - m_{t-1}|_1 / D`.
    """
    named_masks = [(p, m) for p, m in rules_lib.named_leaves(state.masks)
                   if not masks_lib.is_dense(m)]
    flips = dict(rules_lib.named_leaves(state.flips))
    out = {"step": state.step}
    total = sum(m.size for _, m in named_masks)
    if not total:
      return out
    kept = sum(jnp.sum(m, dtype=jnp.int32) for _, m in named_masks)
    flipped = sum(flips[p] for p, _ in named_masks)
    out["sparsity"] = 1.0 - kept / total
    out["flip_rate"] = flipped / total
    for path, m in named_masks:
      out[f"sparsity/{path}"] = 1.0 - jnp.mean(m.astype(jnp.float32))
      out[f"flip_rate/{path}"] = flips[path] / m.size
    out.update(self.schedule_values(state.step))
    return out


def nm_pattern(pattern, path):
  """Returns `pattern` if it is N:M, else a clear TypeError naming the leaf."""
  if not isinstance(pattern, patterns_lib.NM) or pattern.transposable:
    raise TypeError(f"this method needs a (non-transposable) N:M pattern at "
                    f"{path!r}; the rule gives {pattern}.")
  return pattern
