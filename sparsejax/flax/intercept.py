"""One interception mechanism for dense layer calls, Linen and NNX.

`intercept_dense(handler, model)` is a context in which every call of a dense
layer (Linen `nn.Dense`, NNX `nnx.Linear`) is handed to
`handler(call, proceed)` instead of running directly. `call` is a `DenseCall`
(the layer's path, module, input, kernel, bias and compute dtype) and
`proceed()` runs the layer as it is (`proceed(inputs)`: on other inputs of
the same shape, e.g. sparsified ones); the handler returns the layer's output.
Calibration capture (`sparsejax.oneshot.calibration`) observes the input and
proceeds; serving (`sparsejax.flax.compressed`) replaces the matmul when the
kernel is compressed.

* **Linen** goes through `nn.intercept_methods`; the path is the module's
  own path (`block_0/mlp/fc1`).
* **NNX** needs no class swap: while the context is open, the layer class's
  `__call__` dispatches to the handlers of the current context (a context
  variable, so other threads are unaffected) and falls through otherwise.
  Paths are those of the layers inside `model` (e.g. `layers/0`); enter the
  context where the model is called, inside `nnx.jit` with the model the
  jitted function receives (a jitted function sees a copy of the graph). A
  layer outside `model` is still delivered, with `path=None`.

Each layer type has one entry in `LINEN_LAYERS` / `NNX_LAYERS` (a function
reading a `DenseCall` from the call); Einsum, DenseGeneral or Conv are added
by writing such a reader.

>>> from flax import nnx
>>> model = nnx.Sequential(nnx.Linear(4, 3, rngs=nnx.Rngs(0)))
>>> seen = []
>>> def log(call, proceed):
...   seen.append((call.path, call.inputs.shape, call.kernel.shape))
...   return proceed()
>>> with intercept_dense(log, model):
...   y = model(jnp.ones((2, 4)))
>>> seen
[('layers/0', (2, 4), (4, 3))]
"""

import contextlib
import contextvars
import threading
from typing import Any, Callable, NamedTuple

import flax.linen as nn
from flax import nnx


class DenseCall(NamedTuple):
  """One dense layer call, as the handler sees it.

  Attributes:
    path: the layer's module path, `/`-joined (`fc1`, `layers/0`), or None
      for an NNX layer outside the context's model.
    module: the Linen or NNX layer object.
    inputs: the layer's input `(..., in)`.
    kernel: the kernel value the layer would use (an array, or a compressed
      format from `sparsejax.deploy.export`).
    bias: the bias value, or None.
    dtype: the layer's compute dtype (None: from the input and kernel).
    framework: "linen" or "nnx".
  """

  path: Any
  module: Any
  inputs: Any
  kernel: Any
  bias: Any
  dtype: Any
  framework: str


Handler = Callable[[DenseCall, Callable[[], Any]], Any]


def _value(variable):
  return variable.get_value() if hasattr(variable, "get_value") else (
      variable.value)


def _linen_dense(module, args, kwargs):
  inputs = args[0] if args else kwargs["inputs"]
  kernel = module.get_variable("params", "kernel")
  bias = module.get_variable("params", "bias") if module.use_bias else None
  return inputs, kernel, bias, module.dtype


def _nnx_linear(module, args, kwargs):
  inputs = args[0] if args else kwargs["inputs"]
  bias = _value(module.bias) if module.bias is not None else None
  return inputs, _value(module.kernel), bias, module.dtype


# Layer type -> reader `(module, args, kwargs) -> (inputs, kernel, bias,
# dtype)`. First matching type (isinstance) wins.
LINEN_LAYERS = {nn.Dense: _linen_dense}
NNX_LAYERS = {nnx.Linear: _nnx_linear}


def _reader(table, module):
  for cls, read in table.items():
    if isinstance(module, cls):
      return read
  return None


def _with_inputs(args, kwargs, inputs):
  """The layer's call arguments with its input replaced (None: as they are)."""
  if inputs is None:
    return args, kwargs
  if args:
    return (inputs,) + tuple(args[1:]), kwargs
  return args, {**kwargs, "inputs": inputs}


def _linen_interceptor(handler):

  def intercept(next_fun, args, kwargs, context):
    module = context.module
    read = _reader(LINEN_LAYERS, module)
    if (read is None or context.method_name != "__call__"
        or not module.has_variable("params", "kernel")):
      return next_fun(*args, **kwargs)
    inputs, kernel, bias, dtype = read(module, args, kwargs)
    call = DenseCall("/".join(str(p) for p in module.path), module, inputs,
                     kernel, bias, dtype, "linen")

    def proceed(inputs=None):
      new_args, new_kwargs = _with_inputs(args, kwargs, inputs)
      return next_fun(*new_args, **new_kwargs)

    return handler(call, proceed)

  return intercept


# ----------------------------------------------------------------- NNX ----

# Outermost first: a tuple of `(handler, {id(module): path})`.
_NNX_ACTIVE = contextvars.ContextVar("sparsejax_nnx_intercept", default=())
_LOCK = threading.Lock()
# class -> [original __call__, open contexts, whether the class defined it]
_INSTALLED = {}


def _dispatching_call(original):

  def __call__(self, *args, **kwargs):
    active = _NNX_ACTIVE.get()
    read = _reader(NNX_LAYERS, self) if active else None
    if read is None:
      return original(self, *args, **kwargs)

    def run(level, args, kwargs):
      if level == len(active):
        return original(self, *args, **kwargs)
      handler, paths = active[level]
      inputs, kernel, bias, dtype = read(self, args, kwargs)
      call = DenseCall(paths.get(id(self)), self, inputs, kernel, bias, dtype,
                       "nnx")

      def proceed(inputs=None):
        return run(level + 1, *_with_inputs(args, kwargs, inputs))

      return handler(call, proceed)

    return run(0, args, kwargs)

  __call__.__wrapped__ = original
  __call__.__doc__ = original.__doc__
  return __call__


def _install():
  with _LOCK:
    for cls in NNX_LAYERS:
      entry = _INSTALLED.get(cls)
      if entry is None:
        own = "__call__" in cls.__dict__
        original = cls.__call__
        _INSTALLED[cls] = entry = [original, 0, own]
        setattr(cls, "__call__", _dispatching_call(original))
      entry[1] += 1


def _uninstall():
  with _LOCK:
    for cls in list(_INSTALLED):
      entry = _INSTALLED[cls]
      entry[1] -= 1
      if entry[1] == 0:
        if entry[2]:
          setattr(cls, "__call__", entry[0])
        else:
          delattr(cls, "__call__")
        del _INSTALLED[cls]


def module_paths(model: Any) -> dict:
  """`{id(layer): path}` for the interceptable NNX layers inside `model`.

  A layer reachable by several paths keeps the first one.

  >>> model = nnx.Sequential(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
  >>> list(module_paths(model).values())
  ['layers/0']
  """
  paths = {}
  if model is None:
    return paths
  for path, node in nnx.iter_graph(model):
    if _reader(NNX_LAYERS, node) is not None and id(node) not in paths:
      paths[id(node)] = "/".join(str(p) for p in path)
  return paths


@contextlib.contextmanager
def intercept_dense(handler: Handler, model: Any = None):
  """Hands every dense layer call in the context to `handler`.

  Args:
    handler: `handler(call: DenseCall, proceed) -> output`; `proceed()` runs
      the handlers of nested contexts, then the layer unchanged;
      `proceed(inputs)` does so with `inputs` in place of the layer's input.
    model: an NNX module whose layers are named by their paths in it
      (optional; Linen layers always know their path).

  Yields:
    None. Contexts nest as `nn.intercept_methods` does: the outermost
    handler runs first and its `proceed()` reaches the inner ones.
  """
  token = _NNX_ACTIVE.set(_NNX_ACTIVE.get() + ((handler,
                                                module_paths(model)),))
  _install()
  try:
    with nn.intercept_methods(_linen_interceptor(handler)):
      yield
  finally:
    _uninstall()
    _NNX_ACTIVE.reset(token)
