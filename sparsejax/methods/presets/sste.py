"""S-STE: continuous N:M soft threshold with a frozen per-tensor scale."""

from typing import Any

from sparsejax.methods import forward
from sparsejax.methods import method as method_lib
from sparsejax.methods import policies
from sparsejax.methods.presets import _common


def sste(rules: Any, *, on_unused: str = "warn") -> method_lib.Method:
  """S-STE: `W~ = scale * S(W)`; needs N:M patterns.

  Args:
    rules: `Rule`s with N:M patterns, one `Rule`, or a bare N:M pattern.
    on_unused: "warn", "error" or "ignore" for rules that match no leaf.

  Returns:
    A `Method` whose state keeps the scales in `extra.forward`.

  References:
    * Hu, Y., Zhu, J. and Chen, J. "S-STE: Continuous Pruning Function for
      Efficient 2:4 Sparse Pre-training." NeurIPS 2024. arXiv:2409.09099.

  >>> import sparsejax as sj
  >>> sp = sj.methods.sste(sj.NM(2, 4))
  >>> params = {"w": jnp.array([[4.], [-3.], [2.], [1.]])}
  >>> state = sp.init(params)
  >>> (sp.view(params, state)["w"] != 0).sum()
  Array(2, dtype=int32)
  """
  _common.check_rules(rules)
  return method_lib.Method(rules=rules, forward=forward.SoftThreshold(),
                           policy=policies.Refresh(), on_unused=on_unused)
