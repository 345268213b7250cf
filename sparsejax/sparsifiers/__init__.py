"""Sparsifiers: one object per method, all with the same pure interface."""

from sparsejax.sparsifiers.base import SparsityState
from sparsejax.sparsifiers.base import Sparsifier
from sparsejax.sparsifiers.straight_through import Progressive
from sparsejax.sparsifiers.straight_through import SRSTE
from sparsejax.sparsifiers.straight_through import SSTE
from sparsejax.sparsifiers.straight_through import STE
from sparsejax.sparsifiers.straight_through import progressive_nm
from sparsejax.sparsifiers.straight_through import srste_nm
from sparsejax.sparsifiers.straight_through import sste
from sparsejax.sparsifiers.straight_through import ste_nm
from sparsejax.sparsifiers.pruning import GradualMagnitude
from sparsejax.sparsifiers.pruning import gradual_magnitude
from sparsejax.sparsifiers.pruning import OneShot
from sparsejax.sparsifiers.pruning import one_shot
from sparsejax.sparsifiers.dynamic import DynamicSparse
from sparsejax.sparsifiers.dynamic import rigl
from sparsejax.sparsifiers.dynamic import set_sparse
from sparsejax.sparsifiers.dynamic import static_random
