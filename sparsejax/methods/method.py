"""`Method`: a sparsity method assembled from small pure parts.

A method is data, not a subclass. Its parts:

* `rules`: which leaves, which pattern (`sparsejax.rules`); optionally a
  global `sparsity` spread over the leaves by a `distribution`.
* `score`: the importance of every entry (`sparsejax.scores`).
* `schedule`: step -> the pattern in force (sparsity, (n, m) frame) and the
  scalars the view reads (beta, phase); see `sparsejax.methods.schedule`.
* `forward`: what the forward pass sees and how gradients flow back (hard/STE,
  SR-STE, S-STE, mask decay); see `sparsejax.methods.forward`.
* `policy`: when masks refresh and how (every step, once, drop/grow) and
  whether pruned weights are held at zero; see `sparsejax.methods.policies`.

Swap one part with `dataclasses.replace(method, score=...)`; a new method is
a new composition (and, if it needs one, a new part) in one file.

The protocol every consumer uses (the optax wrapper, the Flax adapters, the
training loop): `init`, `view`, `update`, `sparse_params`, `diagnostics`,
`patterns` and the `hard` flag.
"""

import dataclasses
import zlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax import _checks
from sparsejax import distributions
from sparsejax import masks as masks_lib
from sparsejax import rules as rules_lib
from sparsejax import scores as scores_lib
from sparsejax.methods import forward as forward_lib
from sparsejax.methods import policies
from sparsejax.methods import schedule as schedule_lib
from sparsejax.methods import state as state_lib


class ViewInputs(NamedTuple):
  """What a forward view sees for one targeted leaf.

  Attributes:
    path: the leaf's '/'-joined path (for messages).
    pattern: the leaf's pattern (after any distribution).
    w: the dense weights.
    mask: the current mask (bool, `w`'s shape).
    step: int32 step of the state.
    values: the schedule's scalars at `step` (e.g. `beta`).
    forward_state: this leaf's forward-view state, or None.
    policy_state: this leaf's policy state, or None.
  """

  path: str
  pattern: Any
  w: jax.Array
  mask: jax.Array
  step: jax.Array
  values: dict
  forward_state: Any = None
  policy_state: Any = None


def leaf_key(seed: int, step: Any, path: str) -> jax.Array:
  """A PRNG key for one leaf at one step (stable across tree changes).

  >>> leaf_key(0, 3, "fc/kernel").shape
  ()
  """
  key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(path.encode()))
  return jax.random.fold_in(key, step)


def _tree_or_nones(tree: Any, params: Any) -> Any:
  return tree if tree is not None else jax.tree.map(
      lambda _: masks_lib.dense_mask(), params)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Method:
  """A sparsity method: rules, score, schedule, forward view, update policy.

  Attributes:
    rules: `Rule`s (first match wins), one `Rule`, or a bare pattern.
    score: `score(params, grads=..., key=...) -> scores` (`sparsejax.scores`).
    schedule: the pattern in force at a step (`sparsejax.methods.schedule`).
    forward: the forward view (`sparsejax.methods.forward`).
    policy: when and how masks change (`sparsejax.methods.policies`).
    distribution: None (each rule's pattern as given), "uniform" or "erk":
      per-leaf sparsities from the global `sparsity`.
    sparsity: the global target for `distribution`.
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.
    on_nonfinite: "warn", "error" or "ignore" for NaN/±inf in a targeted
      leaf when its scores are computed (masks at `init` and `update`),
      naming the leaf. Eager calls only: under `jit` the check is skipped so
      that a mask refresh of sharded params needs no collective (check the
      loss, or call `compute_masks`, which reports under `jit` too).
    seed: seeds random scores and growth (per leaf, per step).

  >>> import sparsejax as sj
  >>> m = sj.methods.Method(rules=sj.NM(2, 4))      # STE: the defaults
  >>> params = {"w": jnp.array([[1.], [-3.], [2.], [0.5]])}
  >>> m.view(params, m.init(params))["w"].ravel()
  Array([ 0., -3.,  2.,  0.], dtype=float32)
  """

  rules: Any
  score: Callable[..., Any] = scores_lib.magnitude
  schedule: Any = schedule_lib.Constant()
  forward: Any = forward_lib.HardMask()
  policy: Any = policies.Refresh()
  distribution: str | None = None
  sparsity: float | None = None
  on_unused: str = "warn"
  on_nonfinite: str = "warn"
  seed: int = 0

  def __post_init__(self):
    # A tuple keeps the configuration hashable (a static argument of jit).
    if isinstance(self.rules, (list, tuple)):
      object.__setattr__(self, "rules", tuple(self.rules))
    _checks.check_choice(self.on_unused, "on_unused",
                         ("warn", "error", "ignore"))
    _checks.check_choice(self.on_nonfinite, "on_nonfinite",
                         _checks.ON_NONFINITE)
    _checks.check_choice(self.distribution, "distribution",
                         (None, "uniform", "erk"))
    if self.distribution is None and self.sparsity is not None:
      raise ValueError("sparsity is the global target of a distribution; set "
                       "distribution='uniform' or 'erk', or put the sparsity "
                       "in the rule's pattern.")
    if self.distribution is not None:
      if self.sparsity is None:
        raise ValueError(f"distribution={self.distribution!r} needs the "
                         "global sparsity (or pass distribution=None).")
      _checks.check_fraction(self.sparsity, "sparsity")
    if not callable(self.score):
      raise TypeError(f"score must be a callable from sparsejax.scores; got "
                      f"{self.score!r}.")

  @property
  def hard(self) -> bool:
    """Whether pruned weights are held at exactly zero (the policy's say)."""
    return bool(self.policy.hard)

  # ---- targets --------------------------------------------------------------

  def patterns(self, params: Any) -> dict:
    """`{path: pattern or None}` for every leaf, validated once."""
    assignment = rules_lib.assign(params, self.rules)
    per_leaf = self._distributed(params)
    out = {}
    for path, leaf in rules_lib.named_leaves(params):
      rule = assignment[path]
      pattern = rule.pattern if rule is not None else None
      if pattern is not None:
        if path in per_leaf:
          pattern = pattern.with_sparsity(per_leaf[path], path)
        shape, dtype = tuple(jnp.shape(leaf)), jnp.result_type(leaf)
        pattern.check(shape, dtype, path)
        for part in (self.schedule, self.forward, self.policy):
          part.check(pattern, shape, path)
      out[path] = pattern
    return out

  def _distributed(self, params):
    if self.distribution is None:
      return {}
    fn = getattr(distributions, self.distribution)
    return fn(params, self.rules, self.sparsity)

  def map_targets(self, fn: Callable[..., Any], params: Any, *rest: Any,
                  untargeted: Callable[[Any], Any] | None = None) -> Any:
    """Maps `fn(path, pattern, leaf, *rest_leaves)` over the targeted leaves.

    Untargeted leaves get `untargeted(leaf)`, by default the dense marker.
    `rest` trees have `params`' structure as a prefix.
    """
    plan = self.patterns(params)

    def one(keypath, leaf, *others):
      path = rules_lib.path_str(keypath)
      pattern = plan[path]
      if pattern is None:
        return untargeted(leaf) if untargeted else masks_lib.dense_mask()
      return fn(path, pattern, leaf, *others)

    return jax.tree_util.tree_map_with_path(one, params, *rest)

  # ---- helpers for parts ----------------------------------------------------

  def leaf_scores(self, path: str, w: jax.Array, grad: Any, step: Any,
                  score: Callable[..., Any] | None = None) -> jax.Array:
    """`score` (default: the method's) of one leaf at `step`, as float32.

    NaN/±inf in a concrete `w` are reported by `on_nonfinite`, naming the
    leaf (a traced one is not checked: see `Method.on_nonfinite`).
    """
    score = self.score if score is None else score
    _checks.check_finite(w, "params", path, self.on_nonfinite, traced=False)
    if grad is None and scores_lib.needs_grads(score):
      name = getattr(score, "__name__", repr(score))
      raise ValueError(f"the {name} score at {path!r} needs grads: pass them "
                       "to update() (sparsejax.wrap does).")
    out = score(w, grads=grad, key=leaf_key(self.seed, step, path))
    return jnp.asarray(out).astype(jnp.float32)

  def scheduled_mask(self, path: str, pattern: Any, scores: jax.Array,
                     step: Any) -> jax.Array:
    """The mask the schedule prescribes at `step` for these scores."""
    return self.schedule.mask(pattern, scores, step, path)

  def values(self, step: Any) -> dict:
    """The schedule's scalars at `step` (what views and diagnostics read)."""
    return dict(self.schedule.values(step))

  # ---- the protocol ---------------------------------------------------------

  def init(self, params: Any) -> state_lib.SparsityState:
    """Validates the rules against `params` and computes the first masks."""
    rules_lib.report_unused(params, self.rules, self.on_unused)
    step = jnp.zeros((), jnp.int32)
    masks, policy_state = self.policy.init(self, params)
    forward_state = None
    if self.forward.has_state:
      forward_state = self.map_targets(
          lambda path, pattern, w, m: self.forward.init_state(
              pattern, w, m, path), params, masks)
    return state_lib.SparsityState(
        step=step, masks=masks, flips=state_lib.zero_flips(masks),
        extra=self._extra(forward_state, policy_state))

  @staticmethod
  def _extra(forward_state, policy_state):
    if forward_state is None and policy_state is None:
      return None
    return state_lib.PartStates(forward=forward_state, policy=policy_state)

  def check_state(self, params: Any, state: Any) -> None:
    """Raises a clear error unless `state` is this method's state for params."""
    if not isinstance(state, state_lib.SparsityState):
      raise TypeError(f"expected a SparsityState; got {type(state).__name__}. "
                      "Pass the state returned by init() (or found in the "
                      "optimizer state by sparsejax.sparsity_state).")
    masks_lib.check_masks(params, state.masks)

  def _part_state(self, state, name, params):
    extra = state.extra
    tree = None if extra is None else getattr(extra, name)
    return _tree_or_nones(tree, params), tree is not None

  def _map_views(self, params, state, leaf):
    """`leaf(ViewInputs)` on every targeted leaf; other leaves as they are."""
    self.check_state(params, state)
    values = self.values(state.step)
    fstate, has_f = self._part_state(state, "forward", params)
    pstate, has_p = self._part_state(state, "policy", params)

    def one(path, pattern, w, mask, fs, ps):
      return leaf(ViewInputs(
          path, pattern, w, mask, state.step, values,
          fs if has_f else None, ps if has_p else None))

    return self.map_targets(one, params, state.masks, fstate, pstate,
                            untargeted=lambda w: w)

  def view(self, params: Any, state: state_lib.SparsityState) -> Any:
    """The params the forward pass sees at `state.step` (differentiable)."""
    return self._map_views(params, state, self.forward.leaf)

  def update(self, params: Any, updates: Any, state: state_lib.SparsityState,
             *, grads: Any = None) -> tuple[Any, state_lib.SparsityState]:
    """Refreshes the masks after an optimizer step.

    Args:
      params: the params before this step's updates.
      updates: the optimizer's updates for this step.
      state: the current `SparsityState`.
      grads: the gradient w.r.t. params (gradient scores and growth need it).

    Returns:
      `(updates, state)`: updates reach only the entries the policy leaves
      trainable (`policy.trainable(state)`; all of them when None); for hard
      methods pruned weights stay exactly zero (newly pruned ones are
      zeroed, regrown ones start at zero).
    """
    self.check_state(params, state)
    step = state.step + 1
    trainable = self.policy.trainable(state)
    if trainable is not None:
      updates = jax.tree.map(
          lambda u, m: u if masks_lib.is_dense(m) else jnp.where(m, u, 0),
          updates, trainable)
    new_params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), params,
                              updates)
    masks, policy_state = self.policy.update(self, new_params, grads, state,
                                             step)
    if self.hard:
      updates = jax.tree.map(
          lambda p, u, m: u if masks_lib.is_dense(m) else jnp.where(
              m, u, -p).astype(u.dtype), params, updates, masks)
    forward_state = None if state.extra is None else state.extra.forward
    new_state = state._replace(
        step=step, masks=masks, flips=state_lib.count_flips(state.masks, masks),
        extra=self._extra(forward_state, policy_state))
    return updates, new_state

  def sparse_params(self, params: Any, state: state_lib.SparsityState) -> Any:
    """Exactly sparse params for evaluation and export (beta = 0)."""

    def one(inputs):
      path, pattern, w = inputs.path, inputs.pattern, inputs.w
      mask = self.schedule.final_mask(
          pattern, inputs.mask,
          lambda: self.leaf_scores(path, w, None, state.step), path)
      return self.forward.sparse(inputs._replace(mask=mask))

    return self._map_views(params, state, one)

  def table(self, steps: Any, target: tuple[int, int]) -> Any:
    """The schedule's host-side values at `steps` for one target pattern.

    Delegates to the schedule part (e.g. `ProgressiveNM.table`: phase,
    frame, n, m, beta per step).

    >>> import sparsejax as sj
    >>> sp = sj.progressive_nm(sj.NM(1, 8), total_steps=10, dense_steps=2)
    >>> [int(p) for p in sp.table([0, 5], (1, 8)).phase]
    [0, 1]
    """
    if not hasattr(self.schedule, "table"):
      raise TypeError(f"the schedule {type(self.schedule).__name__} has no "
                      "table; only N:M schedules (e.g. progressive_nm's) do.")
    return self.schedule.table(steps, target)

  def diagnostics(self, state: state_lib.SparsityState) -> dict:
    """Scalars to log: flip rate and two sparsities (total and per leaf).

    * `mask_sparsity`: the fraction of maskable entries the masks drop.
    * `forward_sparsity`: the fraction the forward pass does not use. It is
      0 while the schedule keeps the forward pass dense (a dense phase) and
      while pruned entries still enter it scaled by a mask-decay beta > 0;
      otherwise it equals `mask_sparsity`.
    * `flip_rate`: the fraction of maskable entries whose mask changed at
      the last update, `|m_t - m_{t-1}|_1 / D`.

    Per leaf: `mask_sparsity/<path>`, `forward_sparsity/<path>`,
    `flip_rate/<path>`; then the parts' own values (e.g. `phase`, `beta`).

    >>> import sparsejax as sj
    >>> sp = sj.progressive_nm(sj.NM(2, 4), total_steps=10, dense_steps=2,
    ...                        decay="linear", c=0.25)
    >>> p = {"w": jnp.ones((8, 2))}
    >>> d = sp.diagnostics(sp.init(p)._replace(step=jnp.asarray(3)))
    >>> float(d["mask_sparsity"]), float(d["forward_sparsity"])
    (0.5, 0.0)
    """
    named_masks = [(p, m) for p, m in rules_lib.named_leaves(state.masks)
                   if not masks_lib.is_dense(m)]
    flips = dict(rules_lib.named_leaves(state.flips))
    out = {"step": state.step}
    total = sum(m.size for _, m in named_masks)
    if not total:
      return out
    values = {}
    for part in (self.schedule, self.forward, self.policy):
      values.update(part.values(state.step))
    uses_pruned = jnp.asarray(False)
    dense = self.schedule.dense(state.step)
    if dense is not None:
      uses_pruned = uses_pruned | dense
    pruned_weight = getattr(self.forward, "pruned_weight", None)
    if pruned_weight is not None:
      uses_pruned = uses_pruned | (pruned_weight(values) > 0)

    def forward(sparsity):
      return jnp.where(uses_pruned, 0.0, sparsity)

    kept = sum(jnp.sum(m, dtype=jnp.int32) for _, m in named_masks)
    flipped = sum(flips[p] for p, _ in named_masks)
    out["mask_sparsity"] = 1.0 - kept / total
    out["forward_sparsity"] = forward(out["mask_sparsity"])
    out["flip_rate"] = flipped / total
    for path, m in named_masks:
      leaf = 1.0 - jnp.mean(m.astype(jnp.float32))
      out[f"mask_sparsity/{path}"] = leaf
      out[f"forward_sparsity/{path}"] = forward(leaf)
      out[f"flip_rate/{path}"] = flips[path] / m.size
    out.update(values)
    return out
