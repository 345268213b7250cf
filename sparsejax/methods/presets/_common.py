"""What the hard-mask presets share: one constructor of their `Method`."""

from typing import Any, Callable

from sparsejax.methods import forward
from sparsejax.methods import method as method_lib


def hard(rules: Any, score: Callable[..., Any], policy: Any,
         **options: Any) -> method_lib.Method:
  """A `Method` that masks the forward pass hard (`W * m`).

  Args:
    rules: `Rule`s, one `Rule`, or a bare pattern.
    score: what the policy ranks weights by.
    policy: when and how masks change.
    **options: the other `Method` fields (`distribution`, `sparsity`,
      `on_unused`, `seed`).

  >>> import sparsejax as sj
  >>> from sparsejax.methods import policies
  >>> hard(sj.NM(2, 4), sj.scores.magnitude, policies.PruneAt(0)).hard
  True
  """
  return method_lib.Method(rules=rules, score=score,
                           forward=forward.HardMask(), policy=policy,
                           **options)
