"""sparsejax: sparse-model research in JAX.

Functional sparsity transforms over pytrees: patterns, masks that mirror
params, straight-through views, schedules, pruning algorithms, one-shot
pruning, and compressed formats served by Pallas kernels.

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
from sparsejax import oneshot
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
from sparsejax.sparsifiers import DynamicSparse
from sparsejax.sparsifiers import GradualMagnitude
from sparsejax.sparsifiers import OneShot
from sparsejax.sparsifiers import Progressive
from sparsejax.sparsifiers import SRSTE
from sparsejax.sparsifiers import SSTE
from sparsejax.sparsifiers import STE
from sparsejax.sparsifiers import Sparsifier
from sparsejax.sparsifiers import SparsityState
from sparsejax.sparsifiers import gradual_magnitude
from sparsejax.sparsifiers import one_shot
from sparsejax.sparsifiers import progressive_nm
from sparsejax.sparsifiers import rigl
from sparsejax.sparsifiers import set_sparse
from sparsejax.sparsifiers import srste_nm
from sparsejax.sparsifiers import sste
from sparsejax.sparsifiers import static_random
from sparsejax.sparsifiers import ste_nm
from sparsejax.views import activation_topk
from sparsejax.views import decayed
from sparsejax.views import soft_threshold
from sparsejax.views import srste
from sparsejax.views import ste
from sparsejax.views import sste as sste_view
from sparsejax.views import sste_scale
from sparsejax.summary import Summary
from sparsejax.summary import summarize

__version__ = "0.1.0"

__all__ = [
    "Block",
    "Channel",
    "DynamicSparse",
    "GradualMagnitude",
    "MaskedDecayState",
    "NM",
    "NMSchedule",
    "OneShot",
    "PackedMask",
    "Pattern",
    "Phases",
    "Progressive",
    "Rule",
    "SRSTE",
    "SSTE",
    "STE",
    "ScheduleState",
    "Sparsifier",
    "SparsityState",
    "Summary",
    "Unstructured",
    "WrappedState",
    "activation_topk",
    "apply_masks",
    "assign",
    "check_masks",
    "compute_global_masks",
    "compute_masks",
    "decayed",
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
    "masked_decay",
    "named_leaves",
    "one_shot",
    "oneshot",
    "pack_masks",
    "polynomial_sparsity",
    "progressive_nm",
    "random_scores",
    "reset_where",
    "rigl",
    "saliency",
    "sdgf_frames",
    "serving",
    "set_sparse",
    "soft_threshold",
    "sparsity_state",
    "srste",
    "srste_nm",
    "sste",
    "sste_scale",
    "sste_view",
    "static_random",
    "ste",
    "ste_nm",
    "storage_bytes",
    "summarize",
    "switch_frames",
    "uniform",
    "unpack_masks",
    "unused_rules",
    "wrap",
]
