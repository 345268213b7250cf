"""The Colab tutorials: each `.ipynb` and its jupytext `.py` hold the same cells.

The notebooks themselves are executed top to bottom by CI when it builds the
documentation (`python -m sphinx -W -b html docs docs/_build/html`: a failing
cell fails the build; `python -m pytest --nbmake colab/` runs them alone);
this module
only checks, quickly, that the pairs are in sync and follow the conventions:
no committed outputs, an "Open in Colab" badge naming the file, and a first
code cell that installs sparsejax only when it is missing.
"""

import json
import pathlib

import pytest

jupytext = pytest.importorskip("jupytext")

COLAB = pathlib.Path(__file__).resolve().parent.parent / "colab"
SCRIPTS = sorted(p for p in COLAB.glob("[0-9]*.py"))
BADGE = ("https://colab.research.google.com/github/sparsejax/sparsejax/blob/"
         "main/colab/{name}.ipynb")


def _cells(path):
  notebook = jupytext.read(path)
  return [(c.cell_type, c.source.strip()) for c in notebook.cells]


def test_every_notebook_is_paired():
  notebooks = sorted(p.stem for p in COLAB.glob("*.ipynb"))
  assert notebooks, "no notebooks in colab/"
  assert notebooks == [p.stem for p in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_pair_holds_the_same_cells(script):
  ipynb = script.with_suffix(".ipynb")
  assert _cells(script) == _cells(ipynb), (
      f"{ipynb.name} and {script.name} differ; regenerate the notebook with "
      f"`jupytext --to ipynb colab/{script.name}`.")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_notebook_conventions(script):
  ipynb = script.with_suffix(".ipynb")
  raw = json.loads(ipynb.read_text())
  assert raw["metadata"]["jupytext"]["formats"] == "ipynb,py:percent"
  for cell in raw["cells"]:
    if cell["cell_type"] == "code":
      assert not cell["outputs"] and cell["execution_count"] is None, (
          f"{ipynb.name} holds outputs; clear them before committing.")
  cells = _cells(ipynb)
  kind, title = cells[0]
  assert kind == "markdown" and BADGE.format(name=script.stem) in title
  # The first code cell installs sparsejax, but only when it is missing.
  first_code = next(src for kind, src in cells if kind == "code")
  assert "sparsejax" in first_code and "pip" in first_code
  assert "find_spec" in first_code or "ImportError" in first_code
