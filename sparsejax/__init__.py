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

from sparsejax.distributions import erk
from sparsejax.distributions import uniform
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
from sparsejax.scores import magnitude
from sparsejax.scores import random as random_scores
from sparsejax.scores import saliency
from sparsejax.summary import Summary
from sparsejax.summary import summarize

__version__ = "0.1.0"

__all__ = [
    "Block",
    "Channel",
    "NM",
    "PackedMask",
    "Pattern",
    "Rule",
    "Summary",
    "Unstructured",
    "apply_masks",
    "assign",
    "check_masks",
    "compute_global_masks",
    "compute_masks",
    "dense_mask",
    "erk",
    "is_dense",
    "magnitude",
    "named_leaves",
    "pack_masks",
    "random_scores",
    "saliency",
    "summarize",
    "uniform",
    "unpack_masks",
    "unused_rules",
]
