"""SR-STE: STE forward; backward adds `decay * (1 - m) * W`."""

from typing import Any, Callable

from sparsejax import scores
from sparsejax.methods import forward
from sparsejax.methods import method as method_lib
from sparsejax.methods import policies
from sparsejax.methods.presets import _common


def srste(rules: Any, *, decay: float | Callable[[Any], Any] = 2e-4,
          score: Callable[..., Any] = scores.magnitude,
          on_unused: str = "warn") -> method_lib.Method:
  """Sparse-refined STE with any pattern: backward `g + decay * (1 - m) * W`.

  Args:
    rules: `Rule`s, one `Rule`, or a bare pattern.
    decay: lambda, a float >= 0 or a schedule `step -> lambda` (default
      2e-4, published for SGD at lr ~0.1; retune it for Adam).
    score: what the mask keeps the top of (default `|W|`).
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.

  Returns:
    A `Method`.

  References:
    * Zhou, A., Ma, Y., Zhu, J., Liu, J., Zhang, Z., Yuan, K., Sun, W. and Li,
      H. "Learning N:M Fine-grained Structured Sparse Neural Networks From
      Scratch." ICLR 2021. arXiv:2102.04010.
    * Hu, Y., Zhao, K., Huang, W., Chen, J. and Zhu, J. "Accelerating
      Transformer Pre-training with 2:4 Sparsity." ICML 2024. arXiv:2404.01847.
      (The decay applied to gradients under AdamW, as the GPT recipes use it.)

  >>> import sparsejax as sj
  >>> sp = sj.methods.srste(sj.NM(1, 2), decay=0.5)
  >>> params = {"w": jnp.array([[1.], [-3.]])}
  >>> state = sp.init(params)
  >>> jax.grad(lambda p: sp.view(p, state)["w"].sum())(params)["w"].ravel()
  Array([1.5, 1. ], dtype=float32)
  """
  _common.check_common(rules, score=score)
  if not callable(decay):
    _common.check_number(decay, "decay")
  return method_lib.Method(rules=rules, score=score,
                           forward=forward.SRSTE(decay),
                           policy=policies.Refresh(), on_unused=on_unused)
