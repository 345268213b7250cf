"""The library never imports the pretraining application."""

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "sparsejax"


def test_import_sparsejax_loads_no_application_module():
  code = ("import sys, sparsejax, sparsejax.models, sparsejax.oneshot; "
          "print(sorted(m for m in sys.modules "
          "if m.startswith('sparsejax.pretrain')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True, cwd=PACKAGE.parent,
                       env={"JAX_PLATFORMS": "cpu", "PATH": ""})
  assert out.stdout.strip() == "[]", out.stdout


def _imported_modules(path):
  tree = ast.parse(path.read_text())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      yield from (f"{node.module}.{alias.name}" for alias in node.names)


# The applications built on the pretraining loop (`python -m
# sparsejax.compare` runs grids of it) may import it; the library may not.
APPLICATIONS = ("pretrain", "compare")


def test_no_library_module_imports_the_application():
  library = [p for p in PACKAGE.rglob("*.py")
             if not any(PACKAGE / app in p.parents for app in APPLICATIONS)]
  assert len(library) > 20
  offenders = {str(p.relative_to(PACKAGE)): m for p in library
               for m in _imported_modules(p)
               if m.startswith("sparsejax.pretrain")}
  assert not offenders, offenders
