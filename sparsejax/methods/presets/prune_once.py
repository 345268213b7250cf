"""Prune once by a score (magnitude, random, saliency), then hold the masks."""

from typing import Any, Callable

from sparsejax import _checks
from sparsejax import scores
from sparsejax.methods import method as method_lib
from sparsejax.methods import policies
from sparsejax.methods.presets import _common

SCORES = {"magnitude": scores.magnitude, "random": scores.random,
          "saliency": scores.saliency}


def prune_once(rules: Any, *, score: str | Callable[..., Any] = "magnitude",
               prune_step: int = 0, global_sparsity: float | None = None,
               seed: int = 0, distribution: str | None = None,
               sparsity: float | None = None,
               on_unused: str = "warn") -> method_lib.Method:
  """Prunes at `prune_step` by a score, per rule or globally, then holds.

  Args:
    rules: `Rule`s, one `Rule`, or a bare pattern.
    score: "magnitude" `|W|`, "random", "saliency" `|W * grad|` or any score of
      `sparsejax.scores`. A score that needs the gradient uses the gradient
      of `prune_step`, so it needs `prune_step >= 1`.
    prune_step: the step whose update computes the masks (0: at `init`).
    global_sparsity: one threshold across all targeted leaves at this
      sparsity instead of each rule's own (global magnitude / saliency).
    seed: for random scores.
    distribution, sparsity: optional global target and its distribution.
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.

  Returns:
    A hard `Method`.

  References:
    * Han, S., Pool, J., Tran, J. and Dally, W. J. "Learning both Weights and
      Connections for Efficient Neural Networks." NeurIPS 2015.
      arXiv:1506.02626.
    * Lee, N., Ajanthan, T. and Torr, P. H. S. "SNIP: Single-shot Network
      Pruning based on Connection Sensitivity." ICLR 2019. arXiv:1810.02340.
      (The saliency score.)

  >>> import sparsejax as sj
  >>> sp = sj.methods.prune_once(sj.Unstructured(0.5))
  >>> sp.init({"w": jnp.array([[1., -3.], [2., 0.5]])}).masks["w"].astype(int)
  Array([[0, 1],
         [1, 0]], dtype=int32)
  """
  _common.check_common(rules, seed=seed, sparsity=sparsity,
                       global_sparsity=global_sparsity)
  _checks.check_int(prune_step, "prune_step", 0)
  if isinstance(score, str):
    if score not in SCORES:
      raise ValueError(f"score must be one of {sorted(SCORES)} or a score "
                       f"from sparsejax.scores; got {score!r}.")
    score = SCORES[score]
  _common.check_callable(score, "score", "'magnitude', 'random', 'saliency' "
                         "or a score from sparsejax.scores")
  if scores.needs_grads(score) and prune_step < 1:
    name = getattr(score, "__name__", repr(score))
    raise ValueError(f"{name} pruning needs a gradient: prune_step >= 1 (it "
                     f"uses that step's gradient); got prune_step="
                     f"{prune_step}.")
  return _common.hard(rules, score,
                      policies.PruneAt(prune_step, global_sparsity),
                      distribution=distribution, sparsity=sparsity,
                      on_unused=on_unused, seed=seed)
