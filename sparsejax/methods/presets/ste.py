"""STE: a hard mask of the scores, recomputed every step; identity backward."""

from typing import Any, Callable

from sparsejax import scores
from sparsejax.methods import forward
from sparsejax.methods import method as method_lib
from sparsejax.methods import policies
from sparsejax.methods.presets import _common


def ste(rules: Any, *, score: Callable[..., Any] = scores.magnitude,
        on_unused: str = "warn") -> method_lib.Method:
  """Straight-through sparse training with any pattern (N:M, block, ...).

  Args:
    rules: `Rule`s, one `Rule`, or a bare pattern.
    score: what the mask keeps the top of (default `|W|`).
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.

  Returns:
    A `Method`: dense shadow weights, forward `W * m(W)`, `dL/dW = g`.

  References:
    * Bengio, Y., Léonard, N. and Courville, A. "Estimating or Propagating
      Gradients Through Stochastic Neurons for Conditional Computation."
      arXiv:1308.3432, 2013.

  >>> import sparsejax as sj
  >>> sp = sj.methods.ste(sj.NM(2, 4))
  >>> params = {"w": jnp.array([[1.], [-3.], [2.], [0.5]])}
  >>> state = sp.init(params)
  >>> sp.view(params, state)["w"].ravel()
  Array([ 0., -3.,  2.,  0.], dtype=float32)
  """
  _common.check_common(rules, score=score)
  return method_lib.Method(rules=rules, score=score,
                           forward=forward.HardMask(),
                           policy=policies.Refresh(), on_unused=on_unused)
