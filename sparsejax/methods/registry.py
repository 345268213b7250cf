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
    raise TypeError(f"name must be a non-empty string; got {name!r}.")
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}; got {kind!r}.")
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
  if kind is not None and kind not in KINDS:
    raise ValueError(f"kind must be None or one of {KINDS}; got {kind!r}.")
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
  entry = _ENTRIES.get(name)
  if entry is None or (kind is not None and entry.kind != kind):
    what = "method" if kind is None else f"{kind} method"
    raise UnknownMethodError(
        f"unknown {what} {name!r}; registered: {', '.join(names(kind))}.")
  return entry.factory
