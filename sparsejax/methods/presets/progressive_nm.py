"""Progressive gradient flow for N:M (MDGF and/or SDGF) with phases."""

from typing import Any, Callable

from sparsejax import _checks
from sparsejax import scores
from sparsejax.methods import forward
from sparsejax.methods import method as method_lib
from sparsejax.methods import policies
from sparsejax.methods.presets import _common
from sparsejax.methods import schedule


def progressive_nm(rules: Any = None, *, target: Any = None, total_steps: int,
                   dense_steps: int = 0, finetune_steps: int = 0,
                   structure: Any = None, decay: Any = "exponential",
                   c: float | None = None, end_beta: float = 0.01,
                   grad: str = "identity",
                   score: Callable[..., Any] = scores.magnitude,
                   on_unused: str = "warn") -> method_lib.Method:
  """Dense, sparse and fine-tune phases; mask decay and structure decay.

  In the sparse phase the mask (N:M of the scores, recomputed every step)
  follows the SDGF frames and pruned weights are scaled by the MDGF beta:
  `W~ = W * (m + (1 - m) * beta_t)`. The fine-tune phase uses the target
  pattern with a hard mask (beta = 0), still recomputed every step.

  Args:
    rules: `Rule` objects with N:M target patterns (e.g. 2:4 for attention,
      1:8 for the MLP), or a single N:M pattern.
    target: an alias for `rules` when one N:M pattern applies everywhere.
    total_steps, dense_steps, finetune_steps: the phases of the run.
    structure: SDGF frames: None, "stepwise", "geometric" or a list.
    decay: MDGF decay of beta: None (hard), "linear", "exponential" or a
      callable `t -> beta` (t from the sparse-phase start).
    c: rate for a named decay, kept as given. None (the default) takes it
      from the sparse phase's length, so that beta reaches `end_beta` when
      the hard-mask fine-tune starts (`sparsejax.schedules.decay_rate`); a
      beta still above 0.05 there warns (`ScheduleWarning`). The published
      rates (linear 8e-4, exponential 1e-4) suit runs of ~10^5 steps.
    end_beta: beta at the end of the sparse phase when `c` is None (0.01).
    grad: "identity" (published reference) or "autodiff" backward.
    score: what the mask keeps the top of (default `|W|`).
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.

  Returns:
    A `Method`.

  References:
    * Bambhaniya, A. R., Yazdanbakhsh, A., Subramanian, S., Kao, S.-C.,
      Agrawal, S., Evci, U. and Krishna, T. "Progressive Gradient Flow for
      Robust N:M Sparsity Training in Transformers." arXiv:2402.04744, 2024.

  >>> import sparsejax as sj
  >>> sp = sj.methods.progressive_nm(target=sj.NM(1, 8), total_steps=100,
  ...                                structure="stepwise", decay="linear",
  ...                                c=0.01)
  >>> params = {"w": jnp.ones((8, 2))}
  >>> state = sp.init(params)
  >>> int(state.masks["w"][:, 0].sum())   # first frame 7:8
  7
  """
  if (rules is None) == (target is None):
    raise ValueError("give exactly one of rules and target.")
  _common.check_common(rules if rules is not None else target, score=score,
                       c=c)
  if isinstance(structure, str):
    _checks.check_choice(structure, "structure",
                         (None, "stepwise", "geometric"))
  elif structure is not None and not isinstance(structure, (list, tuple)):
    raise _checks.ParamTypeError(
        f"structure must be None, 'stepwise', 'geometric' or a list of "
        f"(n, m) frames; got {structure!r}.")
  return method_lib.Method(
      rules=rules if rules is not None else target, score=score,
      schedule=schedule.ProgressiveNM(
          total_steps=total_steps, dense_steps=dense_steps,
          finetune_steps=finetune_steps, structure=structure, decay=decay,
          c=c, end_beta=end_beta),
      forward=forward.MaskDecay(grad), policy=policies.Refresh(),
      on_unused=on_unused)
