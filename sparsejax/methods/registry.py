"""One registry of methods by name: training methods and one-shot pruners.

`register(name, factory, kind="train")` adds an entry; `get(name)` returns it;
`names(kind)` lists them. Training methods are registered by
`sparsejax.methods`, the one-shot pruners (`kind="oneshot"`) by
`sparsejax.oneshot`; configs, the one-shot entry point and the benchmarks look
methods up here.

>>> import sparsejax as sj
>>> sj.methods.get("rigl") is sj.methods.rigl
True
>>> "wanda" in sj.methods.names("oneshot")
True
"""

from typing import Any, Callable, NamedTuple

from sparsejax import _checks

KINDS = ("train", "oneshot")


class Entry(NamedTuple):
  """A registered method: its factory (or pruner) and its kind."""

  factory: Any
  kind: str


class UnknownMethodError(KeyError):
  """`get` of a name that is not registered (lists the registered ones)."""

  def __str__(self) -> str:
    return str(self.args[0])


_ENTRIES: dict[str, Entry] = {}


def register(name: str, factory: Callable[..., Any] | Any,
             kind: str = "train") -> Any:
  """Registers `factory` under `name` and returns it (usable as a decorator).

  Args:
    name: the method's name; re-registering the same object is a no-op,
      another object under a taken name is an error.
    factory: for "train", a function returning a method; for "oneshot", a
      pruner (see `sparsejax.oneshot.prune`).
    kind: "train" or "oneshot".

  Returns:
    `factory`, unchanged.

  >>> register("ste", get("ste")) is get("ste")
  True
  """
  if not isinstance(name, str) or not name:
    raise _checks.ParamTypeError(
        f"name must be a non-empty string; got {name!r}.")
  _checks.check_choice(kind, "kind", KINDS)
  if kind == "train" and not callable(factory):
    raise _checks.ParamTypeError(
        f"factory of the train method {name!r} must be callable (rules -> "
        f"Method); got {factory!r}.")
  if kind == "oneshot" and not callable(getattr(factory, "prune_layer",
                                                None)):
    raise _checks.ParamTypeError(
        f"factory of the oneshot method {name!r} must be a Pruner (with a "
        f"prune_layer); got {factory!r}.")
  old = _ENTRIES.get(name)
  if old is not None and (old.factory is not factory or old.kind != kind):
    raise ValueError(f"a method named {name!r} is already registered "
                     f"({old.kind}); choose another name.")
  _ENTRIES[name] = Entry(factory, kind)
  return factory


def names(kind: str | None = None) -> tuple[str, ...]:
  """The registered names (of one kind, or all), sorted.

  >>> "set_sparse" in names("train"), "set_sparse" in names("oneshot")
  (True, False)
  """
  _checks.check_choice(kind, "kind", (None,) + KINDS)
  return tuple(sorted(n for n, e in _ENTRIES.items()
                      if kind is None or e.kind == kind))


def get(name: str, kind: str | None = None) -> Any:
  """The factory (or pruner) registered under `name`.

  Args:
    name: a registered name.
    kind: if given, the entry must be of this kind.

  Raises:
    UnknownMethodError: (a `KeyError`) naming the registered methods.

  >>> get("rgil")
  Traceback (most recent call last):
  ...
  sparsejax.methods.registry.UnknownMethodError: unknown method 'rgil'; registered: ...
  """
  if not isinstance(name, str):
    raise _checks.ParamTypeError(
        f"name must be a method name (a string, one of {', '.join(names())})"
        f"; got {name!r}.")
  _checks.check_choice(kind, "kind", (None,) + KINDS)
  entry = _ENTRIES.get(name)
  if entry is None or (kind is not None and entry.kind != kind):
    what = "method" if kind is None else f"{kind} method"
    raise UnknownMethodError(
        f"unknown {what} {name!r}; registered: {', '.join(names(kind))}.")
  return entry.factory


def _describe(value: Any) -> str:
  """`the function optax.adam`, `the string 'ste'`, `a Rule`, ..."""
  if isinstance(value, str):
    return f"the string {value!r}"
  if isinstance(value, type):
    return f"the class {value.__module__}.{value.__qualname__}"
  if callable(value) and hasattr(value, "__qualname__"):
    module = getattr(value, "__module__", "") or ""
    top = module.split(".")[0]
    return f"the function {top + '.' if top else ''}{value.__qualname__}"
  return f"{value!r} (a {type(value).__name__})"


def is_sparsifier(value: Any) -> bool:
  """Whether `value` has a sparsifier's protocol (`init`, `update`, `view`).

  >>> import sparsejax as sj
  >>> is_sparsifier(sj.ste(sj.NM(2, 4))), is_sparsifier("ste")
  (True, False)
  """
  return not isinstance(value, type) and all(
      callable(getattr(value, attr, None))
      for attr in ("init", "update", "view"))


def check_sparsifier(value: Any, name: str = "sparsifier") -> Any:
  """Returns `value`; a `ParamTypeError` naming `name` unless it is a method.

  The message says what was given and how to make a method of it: a name
  is looked up in the registry, a factory is called with rules, a pattern
  goes into a method.

  >>> check_sparsifier("ste")
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: sparsifier must be a sparsejax method (e.g. sj.ste(sj.NM(2, 4))); got the string 'ste'. Build one from the registry by name: sj.methods.get('ste')(rules).
  """
  if is_sparsifier(value):
    return value
  head = (f"{name} must be a sparsejax method (e.g. sj.ste(sj.NM(2, 4))); "
          f"got {_describe(value)}.")
  factories = {id(e.factory): n for n, e in _ENTRIES.items()
               if e.kind == "train"}
  if isinstance(value, str):
    known = value if value in names("train") else "ste"
    hint = (f" Build one from the registry by name: "
            f"sj.methods.get({known!r})(rules).")
    if value not in names("train"):
      hint += f" Registered methods: {', '.join(names('train'))}."
  elif id(value) in factories:
    hint = (f" It is the factory of {factories[id(value)]!r}; call it with "
            f"rules, e.g. sj.{factories[id(value)]}(sj.NM(2, 4)) (see its "
            "docstring for the required arguments).")
  elif any(e.factory is value for e in _ENTRIES.values()
           if e.kind == "oneshot"):
    hint = (" It is a one-shot pruner: run it with "
            "sj.oneshot.prune(model, params, batches, rules, method=...).")
  elif type(value).__module__.startswith("sparsejax.patterns") or type(
      value).__name__ == "Rule":
    hint = (" A pattern or rule says where; a method says how: pass it to "
            "one, e.g. sj.ste(pattern) or sj.methods.get('rigl')(rules, "
            "t_end=...).")
  else:
    hint = (" Build one with a preset (sj.methods.names('train')) or "
            "sj.methods.get(name)(rules).")
  raise _checks.ParamTypeError(head + hint)
