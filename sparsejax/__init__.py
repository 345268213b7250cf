"""sparsejax: sparse-model research in JAX.

`import sparsejax as sj` gives the names used day to day: patterns, `Rule`,
masks, the methods, the optax wrapper and the report. Everything else lives
in a namespace:

========================  ====================================================
`sj.methods`              `Method` and its parts, the presets, the registry
`sj.scores`               importance: magnitude, random, saliency, Wanda, ...
`sj.views`                forward views: STE, SR-STE, S-STE, mask decay
`sj.activations`          activation sparsity: Q-Sparse top-k, N:M inputs
`sj.schedules`            sparsity, N:M frames, decay β, phases
`sj.distributions`        per-layer sparsity: uniform, ERK, global top-k
`sj.decay`                masked weight decay for optax
`sj.flax`                 `sparsify` (Linen and NNX), layer interception,
                          `serving`
`sj.oneshot`              calibration, Wanda, SparseGPT, magnitude
`sj.allocation`           per-layer `sensitivity` scan (heat map) and
                          `allocate` to a budget (`uniform` baseline)
`sj.deploy`               `export` to compressed formats, `storage_bytes`
`sj.formats`              the compressed formats (`pallas_kernels.formats`)
`sj.masks`, `sj.rules`,   helpers: `dense_mask`, `is_dense`, `named_leaves`,
`sj.packing`,             `assign`, `PackedMask`, `like_params`, `Summary`
`sj.sharding`,
`sj.summary`
========================  ====================================================

Importing sparsejax loads neither the pretraining application
(`sparsejax.pretrain`) nor Pallas.

>>> import sparsejax as sj
>>> params = {"fc": {"kernel": jnp.ones((8, 4)), "bias": jnp.ones(4)}}
>>> masks = sj.compute_masks(params, [sj.Rule(r".*kernel", sj.NM(2, 4))])
>>> sj.summarize(params, masks, show=False).masked_sparsity
0.5
"""

from pallas_kernels import formats
from sparsejax import activations
from sparsejax import allocation
from sparsejax import decay
from sparsejax import deploy
from sparsejax import distributions
from sparsejax import flax
from sparsejax import masks
from sparsejax import methods
from sparsejax import oneshot
from sparsejax import packing
from sparsejax import rules
from sparsejax import schedules
from sparsejax import scores
from sparsejax import sharding
from sparsejax import summary
from sparsejax import views
from sparsejax.allocation import allocate
from sparsejax.allocation import sensitivity
from sparsejax.decay import masked_decay
from sparsejax.masks import apply_masks
from sparsejax.masks import check_masks
from sparsejax.masks import compute_global_masks
from sparsejax.masks import compute_masks
from sparsejax.methods import Method
from sparsejax.methods import SparsityState
from sparsejax.methods import gradual_magnitude
from sparsejax.methods import progressive_nm
from sparsejax.methods import prune_once
from sparsejax.methods import rigl
from sparsejax.methods import set_sparse
from sparsejax.methods import srigl
from sparsejax.methods import srste
from sparsejax.methods import sste
from sparsejax.methods import static_random
from sparsejax.methods import ste
from sparsejax.methods import topkast
from sparsejax.optax_wrap import sparsity_state
from sparsejax.optax_wrap import wrap
from sparsejax.packing import pack_masks
from sparsejax.packing import unpack_masks
from sparsejax.patterns import Block
from sparsejax.patterns import Channel
from sparsejax.patterns import NM
from sparsejax.patterns import Pattern
from sparsejax.patterns import Unstructured
from sparsejax.rules import Rule
from sparsejax.rules import parse_rules
from sparsejax.summary import summarize
from sparsejax._checks import ParamTypeError

__version__ = "0.1.0"

# The day-to-day names (33); namespaces follow.
__all__ = [
    # patterns and rules
    "NM", "Unstructured", "Block", "Channel", "Pattern", "Rule",
    "parse_rules",
    # masks
    "compute_masks", "compute_global_masks", "apply_masks", "check_masks",
    "pack_masks", "unpack_masks",
    # methods
    "Method", "SparsityState", "ste", "srste", "sste", "progressive_nm",
    "gradual_magnitude", "prune_once", "static_random", "set_sparse", "rigl",
    "topkast", "srigl",
    # optax and reporting
    "wrap", "sparsity_state", "masked_decay", "summarize",
    # sensitivity and budgeted allocation
    "sensitivity", "allocate",
    # the error a parameter of the wrong type raises
    "ParamTypeError",
    # namespaces
    "methods", "scores", "views", "activations", "schedules", "distributions",
    "decay", "flax", "oneshot", "allocation", "deploy", "formats", "masks",
    "rules",
    "packing", "sharding", "summary",
]
