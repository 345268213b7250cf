"""sparsejax: sparse-model research in JAX.

Functional sparsity transforms over pytrees: patterns, masks that mirror
params, scores, forward views, schedules, methods composed of them (with one
registry), one-shot pruning, and compressed formats served by Pallas kernels.

>>> import sparsejax as sj
>>> params = {"fc": {"kernel": jnp.ones((8, 4)), "bias": jnp.ones(4)}}
>>> masks = sj.compute_masks(params, [sj.Rule(r".*kernel", sj.NM(2, 4))])
>>> sj.summarize(params, masks, show=False).masked_sparsity
0.5
"""

from sparsejax.decay import MaskedDecayState
from sparsejax.decay import decoupled_masked_decay
from sparsejax.decay import masked_decay
from sparsejax.distributions import erk
from sparsejax.distributions import uniform
from pallas_kernels import formats
from sparsejax import methods
from sparsejax import oneshot
from sparsejax import schedules
from sparsejax import scores
from sparsejax import views
from sparsejax.deploy import export
from sparsejax.deploy import serving
from sparsejax.deploy import storage_bytes
from sparsejax.masks import apply_masks
from sparsejax.masks import check_masks
from sparsejax.masks import compute_global_masks
from sparsejax.masks import compute_masks
from sparsejax.masks import dense_mask
from sparsejax.masks import is_dense
from sparsejax.packing import PackedMask
from sparsejax.packing import pack_masks
from sparsejax.packing import unpack_masks
from sparsejax.patterns import Block
from sparsejax.patterns import Channel
from sparsejax.patterns import NM
from sparsejax.patterns import Pattern
from sparsejax.patterns import Unstructured
from sparsejax.rules import Rule
from sparsejax.rules import assign
from sparsejax.rules import named_leaves
from sparsejax.rules import unused_rules
from sparsejax.schedules import NMSchedule
from sparsejax.schedules import Phases
from sparsejax.schedules import ScheduleState
from sparsejax.schedules import exponential_decay
from sparsejax.schedules import linear_decay
from sparsejax.schedules import polynomial_sparsity
from sparsejax.schedules import sdgf_frames
from sparsejax.schedules import switch_frames
from sparsejax.scores import magnitude
from sparsejax.scores import random as random_scores
from sparsejax.scores import saliency
from sparsejax.optax_wrap import WrappedState
from sparsejax.optax_wrap import reset_where
from sparsejax.optax_wrap import sparsity_state
from sparsejax.optax_wrap import wrap
from sparsejax.methods import Method
from sparsejax.methods import SparsityState
from sparsejax.methods import gradual_magnitude
from sparsejax.methods import progressive_nm
from sparsejax.methods import prune_once
from sparsejax.methods import rigl
from sparsejax.methods import set_sparse
from sparsejax.methods import srste
from sparsejax.methods import sste
from sparsejax.methods import static_random
from sparsejax.methods import ste
from sparsejax.summary import Summary
from sparsejax.summary import summarize

__version__ = "0.1.0"

__all__ = [
    "Block",
    "Channel",
    "MaskedDecayState",
    "Method",
    "NM",
    "NMSchedule",
    "PackedMask",
    "Pattern",
    "Phases",
    "Rule",
    "ScheduleState",
    "SparsityState",
    "Summary",
    "Unstructured",
    "WrappedState",
    "apply_masks",
    "assign",
    "check_masks",
    "compute_global_masks",
    "compute_masks",
    "decoupled_masked_decay",
    "dense_mask",
    "erk",
    "exponential_decay",
    "export",
    "formats",
    "gradual_magnitude",
    "is_dense",
    "linear_decay",
    "magnitude",
    "methods",
    "masked_decay",
    "named_leaves",
    "oneshot",
    "pack_masks",
    "polynomial_sparsity",
    "progressive_nm",
    "prune_once",
    "random_scores",
    "reset_where",
    "rigl",
    "saliency",
    "schedules",
    "scores",
    "sdgf_frames",
    "serving",
    "set_sparse",
    "sparsity_state",
    "srste",
    "sste",
    "static_random",
    "ste",
    "storage_bytes",
    "summarize",
    "switch_frames",
    "uniform",
    "views",
    "unpack_masks",
    "unused_rules",
    "wrap",
]
