"""Sphinx configuration of the sparsejax documentation.

Build (from the repository root)::

  python -m sphinx -W --keep-going -b html docs docs/_build/html

Two folders are written here at build time and never committed (see
`.gitignore`): `docs/tutorials/` (the notebooks of `colab/`, copied so that
`colab/` stays their only source) and `docs/api/_generated/` (one page per
public namespace, listing its public names for autosummary). myst-nb executes
the tutorials during the build; `SPARSEJAX_DOCS_EXECUTE=off` skips that for a
quick look at the prose.
"""

import importlib
import inspect
import os
import pathlib
import shutil
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import sparsejax  # noqa: E402  (after the path is set)

project = "sparsejax"
author = "The sparsejax authors"
copyright = "The sparsejax authors"  # noqa: A001
release = sparsejax.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_templates", "jupyter_execute", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# -- HTML ---------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = f"sparsejax {release}"
html_theme_options = {
    "repository_url": "https://github.com/sparsejax/sparsejax",
    "use_repository_button": True,
    "show_toc_level": 2,
    # The sidebar lists the guide, the method pages, the tutorials and one
    # page per API namespace (see `unlist_name_pages` for the rest).
    "max_navbar_depth": 2,
}

# -- MyST ---------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# -- autodoc / autosummary / napoleon -----------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [("References", "notes_style")]

# Every cross-reference must resolve: a name that moved or a typo in a
# docstring fails the build. A reference to an alias (a name relative to its
# module, or a private module's path as type hints print it) resolves to the
# page of the object it names (`resolve_alias` below). The types of
# third-party libraries (JAX, optax, Flax, NumPy, grain) have no inventory
# offline and are not checked; nor are private names, which have no page.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jnp|jaxlib|optax|flax|nn|nnx|np|numpy|chex|ml_collections|orbax|grain|etils|epath|matplotlib|plt|collections|typing|types|dataclasses|enum|pathlib|os|re)(\..*)?"),
    (r"py:.*", r"(.*\.)?_[A-Za-z]\w*"),
    (r"py:.*", r"(Any|Callable|Iterable|Iterator|Sequence|Mapping|Literal|Optional|Union|NamedTuple|PyTree|Array|ArrayLike|DTypeLike|Self)"),
    (r"py:.*", r"(int|float|str|bool|tuple|list|dict|None|object|type|bytes|callable|function|optional)"),
]

# -- Notebooks (myst-nb) --------------------------------------------------------
nb_execution_mode = os.environ.get("SPARSEJAX_DOCS_EXECUTE", "force")
nb_execution_raise_on_error = True
nb_execution_timeout = 900
nb_execution_show_tb = True
nb_merge_streams = True
nb_execution_excludepatterns = []

suppress_warnings = [
    "mystnb.unknown_mime_type",
]

# -- Generated inputs ----------------------------------------------------------
TUTORIALS = DOCS / "tutorials"
GENERATED = DOCS / "api" / "_generated"

# (title, module, whether to list modules imported into it)
NAMESPACES = [
    ("sparsejax", "sparsejax"),
    ("sparsejax.patterns", "sparsejax.patterns"),
    ("sparsejax.rules", "sparsejax.rules"),
    ("sparsejax.masks", "sparsejax.masks"),
    ("sparsejax.scores", "sparsejax.scores"),
    ("sparsejax.distributions", "sparsejax.distributions"),
    ("sparsejax.packing", "sparsejax.packing"),
    ("sparsejax.summary", "sparsejax.summary"),
    ("sparsejax.views", "sparsejax.views"),
    ("sparsejax.schedules", "sparsejax.schedules"),
    ("sparsejax.decay", "sparsejax.decay"),
    ("sparsejax.methods", "sparsejax.methods"),
    ("sparsejax.optax_wrap", "sparsejax.optax_wrap"),
    ("sparsejax.sharding", "sparsejax.sharding"),
    ("sparsejax.flax", "sparsejax.flax"),
    ("sparsejax.activations", "sparsejax.activations"),
    ("sparsejax.oneshot", "sparsejax.oneshot"),
    ("sparsejax.allocation", "sparsejax.allocation"),
    ("sparsejax.deploy", "sparsejax.deploy"),
    ("sparsejax.models", "sparsejax.models"),
    ("sparsejax.models.minilm", "sparsejax.models.minilm"),
    ("sparsejax.models.tokenizer", "sparsejax.models.tokenizer"),
    ("sparsejax.compare", "sparsejax.compare"),
    ("sparsejax.pretrain", "sparsejax.pretrain"),
    ("sparsejax.pretrain.config", "sparsejax.pretrain.config"),
    ("sparsejax.pretrain.recipes", "sparsejax.pretrain.recipes"),
    ("sparsejax.pretrain.variants", "sparsejax.pretrain.variants"),
    ("sparsejax.pretrain.cli", "sparsejax.pretrain.cli"),
    ("sparsejax.pretrain.plan", "sparsejax.pretrain.plan"),
    ("sparsejax.pretrain.loop", "sparsejax.pretrain.loop"),
    ("sparsejax.pretrain.data", "sparsejax.pretrain.data"),
    ("sparsejax.pretrain.corpus", "sparsejax.pretrain.corpus"),
    ("sparsejax.pretrain.sources", "sparsejax.pretrain.sources"),
    ("sparsejax.pretrain.pipeline", "sparsejax.pretrain.pipeline"),
    ("sparsejax.pretrain.checkpoint", "sparsejax.pretrain.checkpoint"),
    ("sparsejax.pretrain.paths", "sparsejax.pretrain.paths"),
    ("sparsejax.pretrain.cluster", "sparsejax.pretrain.cluster"),
    ("sparsejax.pretrain.launch", "sparsejax.pretrain.launch"),
    ("sparsejax.pretrain.mesh", "sparsejax.pretrain.mesh"),
    ("sparsejax.pretrain.step", "sparsejax.pretrain.step"),
    ("sparsejax.pretrain.validation", "sparsejax.pretrain.validation"),
    ("sparsejax.pretrain.evaluate", "sparsejax.pretrain.evaluate"),
    ("sparsejax.pretrain.integrity", "sparsejax.pretrain.integrity"),
    ("sparsejax.pretrain.export", "sparsejax.pretrain.export"),
    ("sparsejax.pretrain.metrics", "sparsejax.pretrain.metrics"),
    ("sparsejax.pretrain.plots", "sparsejax.pretrain.plots"),
    ("sparsejax.pretrain.report", "sparsejax.pretrain.report"),
    ("sparsejax.pretrain.progress", "sparsejax.pretrain.progress"),
    ("sparsejax.pretrain.activation_sparsity",
     "sparsejax.pretrain.activation_sparsity"),
    ("sparsejax.compare.cli", "sparsejax.compare.cli"),
    ("sparsejax.compare.grid", "sparsejax.compare.grid"),
    ("sparsejax.compare.running", "sparsejax.compare.running"),
    ("sparsejax.compare.training", "sparsejax.compare.training"),
    ("sparsejax.compare.table", "sparsejax.compare.table"),
    ("sparsejax.compare.plot", "sparsejax.compare.plot"),
    ("pallas_kernels", "pallas_kernels"),
    ("pallas_kernels.formats", "pallas_kernels.formats"),
    ("pallas_kernels.nm", "pallas_kernels.nm"),
    ("pallas_kernels.nm.api", "pallas_kernels.nm.api"),
    ("pallas_kernels.block_sparse", "pallas_kernels.block_sparse"),
    ("pallas_kernels.block_sparse.api", "pallas_kernels.block_sparse.api"),
    ("pallas_kernels.block_sparse.block_list_api",
     "pallas_kernels.block_sparse.block_list_api"),
    ("pallas_kernels.block_sparse.block_list_sddmm",
     "pallas_kernels.block_sparse.block_list_sddmm"),
    ("pallas_kernels.dispatch", "pallas_kernels.dispatch"),
    ("pallas_kernels.device_check", "pallas_kernels.device_check"),
]


def public_names(module):
  """A namespace's public names: its `__all__`, else what it defines."""
  names = getattr(module, "__all__", None)
  if names is None:
    names = []
    for name, obj in vars(module).items():
      if name.startswith("_") or inspect.ismodule(obj):
        continue
      home = getattr(obj, "__module__", None) or ""
      if home == module.__name__ or home.startswith(module.__name__ + "."):
        names.append(name)
  return [n for n in names
          if not inspect.ismodule(getattr(module, n, None))]


# id of each documented object -> the full name its page documents it under.
DOCUMENTED = {}


def write_api_pages():
  shutil.rmtree(GENERATED, ignore_errors=True)  # stale stubs go too
  GENERATED.mkdir(parents=True)
  documented = DOCUMENTED  # id of an object -> the name of its page
  for title, modname in NAMESPACES:
    module = importlib.import_module(modname)
    names, seen = [], []
    for name in public_names(module):
      obj = getattr(module, name)
      key = ((modname, name) if isinstance(obj, (int, float, str, bool))
             or obj is None else id(obj))
      if key in documented:
        seen.append(documented[key])  # one page per object
        continue
      documented[key] = f"{modname}.{name}"
      names.append(name)
    lines = [f"# `{title}`", "", "```{eval-rst}",
             f".. automodule:: {modname}", "   :no-members:", "",
             f".. currentmodule:: {modname}", ""]
    if names:
      lines += [".. autosummary::", "   :toctree: stubs", "   :nosignatures:",
                ""]
      lines += [f"   {n}" for n in names]
    lines += ["```", ""]
    if seen:
      lines += ["Also here, documented on their first page: "
                + ", ".join(f"{{py:obj}}`{name}`" for name in seen) + ".", ""]
    (GENERATED / f"{modname}.md").write_text("\n".join(lines))


def copy_tutorials():
  TUTORIALS.mkdir(exist_ok=True)
  for old in TUTORIALS.glob("*.ipynb"):
    old.unlink()
  for notebook in sorted((ROOT / "colab").glob("[0-9]*.ipynb")):
    shutil.copy2(notebook, TUTORIALS / notebook.name)


def drop_type_docstrings(app, what, name, obj, options, lines):
  """A constant (a dict, a tuple) has no docstring of its own: show none."""
  if what in ("data", "attribute") and lines and (
      inspect.getdoc(type(obj)) or "").startswith(lines[0].strip()):
    lines[:] = []


def _locate(dotted):
  """The object a dotted path names (a module, then attributes), or None."""
  parts = dotted.split(".")
  for split in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:split]))
    except ImportError:
      continue
    try:
      for attr in parts[split:]:
        obj = getattr(obj, attr)
    except AttributeError:
      return None
    return obj
  return None


def _documented_name(dotted):
  """The documented full name of what `dotted` names, or None.

  `pallas_kernels.formats._block_list.BlockList` -> `pallas_kernels.formats.
  BlockList`; a member of a documented class keeps its attribute path.
  """
  parts = dotted.split(".")
  for split in range(len(parts), 0, -1):
    obj = _locate(".".join(parts[:split]))
    if obj is not None and id(obj) in DOCUMENTED:
      return ".".join([DOCUMENTED[id(obj)], *parts[split:]])
  return None


def resolve_alias(app, env, node, contnode):
  """Resolves a Python reference Sphinx did not find to its object's page."""
  if node.get("refdomain") != "py":
    return None
  target = node["reftarget"].lstrip(".~")
  context = [node.get("py:module"), node.get("py:class")]
  candidates = []
  if context[0] and context[1]:
    candidates.append(f"{context[0]}.{context[1]}.{target}")
  if context[0]:
    candidates.append(f"{context[0]}.{target}")
  # Relative to the object whose docstring holds the reference (its class,
  # then its module), which may differ from the page's module.
  source = str(node.source or "")
  if "docstring of " in source:
    owner = source.rsplit("docstring of ", 1)[1].split(":")[0].split(".")
    candidates += [".".join([*owner[:k], target])
                   for k in range(len(owner) - 1, 0, -1)]
  # Last: the name as it is, then as the package's top level exports it.
  candidates += [target, f"{(context[0] or '').split('.')[0]}.{target}"]
  domain = env.domains["py"]
  for candidate in candidates:
    name = _documented_name(candidate)
    if name is None or name == node["reftarget"]:
      continue
    found = domain.resolve_xref(env, node["refdoc"], app.builder,
                                node["reftype"], name, node, contnode)
    if found is None and node["reftype"] != "obj":
      found = domain.resolve_xref(env, node["refdoc"], app.builder, "obj",
                                  name, node, contnode)
    if found is not None:
      return found
  return None


def skip_data_members(app, what, name, obj, skip, options):
  """A class page lists its methods and properties; its fields are described
  by the class docstring's `Attributes:` section, so autodoc skips them."""
  if what != "class":
    return None
  if isinstance(obj, (property, classmethod, staticmethod)):
    return None
  # A method is defined in its class (`Class.method`); a function held as a
  # field's value (a default score, say) is a field.
  if inspect.isroutine(obj) and "." in getattr(obj, "__qualname__", ""):
    return None
  return True


STUBS = "api/_generated/stubs/"


def unlist_name_pages(app, doctree):
  """The ~400 pages of single names are reached from their namespace's
  table, not from the site's table of contents.

  Autosummary puts them in a hidden toctree; Sphinx then walks all of them
  to render every page's sidebar, which made writing the site take minutes.
  Their toctree entries are dropped before Sphinx records them (this runs
  ahead of its collectors) and the pages are orphans.
  """
  from sphinx.ext.autosummary import autosummary_toc

  for node in list(doctree.findall(autosummary_toc)):
    node.parent.remove(node)
  if app.env.docname.startswith(STUBS):
    app.env.metadata[app.env.docname]["orphan"] = True


def setup(app):
  app.connect("doctree-read", unlist_name_pages, priority=400)
  app.connect("autodoc-process-docstring", drop_type_docstrings)
  app.connect("autodoc-skip-member", skip_data_members)
  app.connect("missing-reference", resolve_alias)


write_api_pages()
copy_tutorials()
