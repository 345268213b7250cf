"""One-shot pruning from calibration data: SparseGPT, Wanda, magnitude, DSnoT.

Calibration runs a Flax model (Linen or NNX, unmodified) over calibration
batches and accumulates, for every Dense layer the rules target, the input
statistics each method needs; the methods then prune each layer on its own.

>>> import flax.linen as nn
>>> from sparsejax.patterns import Unstructured
>>> from sparsejax.rules import Rule
>>> model = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(8)])
>>> variables = model.init(jax.random.key(0), jnp.ones((1, 8)))
>>> batches = [jax.random.normal(jax.random.key(1), (32, 8))]
>>> new, masks = prune(model, variables, batches,
...                    [Rule(r".*kernel", Unstructured(0.5, per_output=True))],
...                    method="wanda")
>>> float(1 - masks["params"]["layers_0"]["kernel"].mean())
0.5
"""

from sparsejax.oneshot.calibration import CalibrationWarning
from sparsejax.oneshot.calibration import Calibrator
from sparsejax.oneshot.calibration import LayerStats
from sparsejax.oneshot.calibration import NonFiniteCalibrationError
from sparsejax.oneshot.calibration import accumulate
from sparsejax.oneshot.calibration import collect_stats
from sparsejax.oneshot.calibration import init_stats
from sparsejax.oneshot.dsnot import dsnot_layer
from sparsejax.oneshot.magnitude import magnitude_layer
from sparsejax.oneshot.prune import Pruner
from sparsejax.oneshot.prune import dsnot_refined
from sparsejax.oneshot.prune import prune
from sparsejax.oneshot.prune import prune_from_stats
from sparsejax.oneshot.prune import pruner
from sparsejax.oneshot.sparsegpt import sparsegpt_layer
from sparsejax.oneshot.sparsegpt import upper_cholesky_inverse
from sparsejax.oneshot.wanda import wanda_layer
from sparsejax.oneshot.wanda import wanda_scores

__all__ = [
    "CalibrationWarning",
    "Calibrator",
    "LayerStats",
    "NonFiniteCalibrationError",
    "Pruner",
    "accumulate",
    "collect_stats",
    "dsnot_layer",
    "dsnot_refined",
    "init_stats",
    "magnitude_layer",
    "prune",
    "prune_from_stats",
    "pruner",
    "sparsegpt_layer",
    "upper_cholesky_inverse",
    "wanda_layer",
    "wanda_scores",
]
