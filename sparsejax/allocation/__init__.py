"""Per-layer sensitivity and budgeted allocation of patterns.

`sensitivity` measures, for every targeted layer alone and every candidate
pattern, the held-out loss change of one-shot pruning that layer with that
pattern; `allocate` then picks one pattern (or dense) per layer meeting a
global budget of kept parameters or bytes at the least predicted loss, and
`uniform` gives the best single pattern at the same budget for comparison.

>>> import sparsejax as sj
>>> params = {"a": {"kernel": jnp.arange(1., 17.).reshape(4, 4)},
...           "b": {"kernel": jnp.arange(16., 0., -1.).reshape(4, 4)}}
>>> x = jax.random.normal(jax.random.key(0), (8, 4))
>>> y = x @ params["a"]["kernel"] @ params["b"]["kernel"]
>>> def loss_fn(p, x):  # distance to the dense model's outputs
...   return jnp.mean((x @ p["a"]["kernel"] @ p["b"]["kernel"] - y) ** 2)
>>> scan = sj.sensitivity(loss_fn, params, ".*kernel", [sj.NM(2, 4)], [x],
...                       progress=False)
>>> bool((scan.deltas > 0).all())
True
>>> best = sj.allocate(scan, 0.75)  # room to prune one of the two layers
>>> sum(r.pattern is not None for r in best.rules), best.kept_fraction
(1, 0.75)
"""

from sparsejax.allocation.knapsack import Allocation
from sparsejax.allocation.knapsack import allocate
from sparsejax.allocation.knapsack import uniform
from sparsejax.allocation.plot import plot_sensitivity
from sparsejax.allocation.scan import SensitivityScan
from sparsejax.allocation.scan import layer_rule
from sparsejax.allocation.scan import sensitivity

__all__ = [
    "Allocation",
    "SensitivityScan",
    "allocate",
    "layer_rule",
    "plot_sensitivity",
    "sensitivity",
    "uniform",
]
