"""Sparsity methods: compositions of rules, score, schedule, view and policy.

Every method is a `Method` (a frozen dataclass of parts). The published ones
are presets, one file each under `presets/`, registered under their own
name. Swap a part without subclassing:

>>> import dataclasses, sparsejax as sj
>>> m = sj.methods.rigl(sj.Unstructured(0.9), distribution=None, t_end=100,
...                     score=sj.scores.movement)
>>> m2 = dataclasses.replace(m, forward=sj.methods.SRSTE(1e-4))
>>> m2.policy == m.policy, m2.hard
(True, True)
"""

from sparsejax.methods.forward import HardMask
from sparsejax.methods.forward import MaskDecay
from sparsejax.methods.forward import SoftThreshold
from sparsejax.methods.forward import SRSTE
from sparsejax.methods.method import Method
from sparsejax.methods.method import ViewInputs
from sparsejax.methods.method import leaf_key
from sparsejax.methods.policies import DropGrow
from sparsejax.methods.policies import PruneAt
from sparsejax.methods.policies import Refresh
from sparsejax.methods.registry import get
from sparsejax.methods.registry import names
from sparsejax.methods.registry import register
from sparsejax.methods.registry import UnknownMethodError
from sparsejax.methods.schedule import Constant
from sparsejax.methods.schedule import PolynomialSparsity
from sparsejax.methods.schedule import ProgressiveNM
from sparsejax.methods.state import PartStates
from sparsejax.methods.state import SparsityState

# The registry: one line per published method.
from sparsejax.methods.presets import gradual_magnitude as _gradual_magnitude
from sparsejax.methods.presets import progressive_nm as _progressive_nm
from sparsejax.methods.presets import prune_once as _prune_once
from sparsejax.methods.presets import rigl as _rigl
from sparsejax.methods.presets import set_sparse as _set_sparse
from sparsejax.methods.presets import srste as _srste
from sparsejax.methods.presets import sste as _sste
from sparsejax.methods.presets import static_random as _static_random
from sparsejax.methods.presets import ste as _ste

ste = register("ste", _ste.ste)
srste = register("srste", _srste.srste)
sste = register("sste", _sste.sste)
progressive_nm = register("progressive_nm", _progressive_nm.progressive_nm)
gradual_magnitude = register("gradual_magnitude",
                             _gradual_magnitude.gradual_magnitude)
prune_once = register("prune_once", _prune_once.prune_once)
static_random = register("static_random", _static_random.static_random)
set_sparse = register("set_sparse", _set_sparse.set_sparse)
rigl = register("rigl", _rigl.rigl)
from sparsejax.methods.presets import topkast as _topkast  # noqa: E402
topkast = register("topkast", _topkast.topkast)
from sparsejax.methods.presets import srigl as _srigl  # noqa: E402
srigl = register("srigl", _srigl.srigl)
