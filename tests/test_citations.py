"""Every registered method cites its paper; CITATION.cff is valid CFF 1.2 and
names the package's version."""
import datetime
import importlib
import pathlib
import re

import pytest

import sparsejax
from sparsejax.methods import registry

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A "References:" section of "* ..." entries, one of them with an arXiv id or
# a DOI and a year.
SECTION = re.compile(r"^( *)References:\n((?:\1  .*\n)+)", re.M)
IDENTIFIER = re.compile(r"(arXiv:\d{4}\.\d{4,5}|doi:10\.\d{4,9}/\S+)")
YEAR = re.compile(r"\b(19|20)\d\d\b")


def _references(doc):
  match = SECTION.search(doc or "")
  assert match, "no References: section"
  entries = re.split(r"\n *\* ", "\n" + match.group(2).strip())[1:]
  assert entries, "References: has no '* ' entries"
  for entry in entries:
    assert IDENTIFIER.search(entry), f"no arXiv id or DOI in {entry!r}"
    assert YEAR.search(entry), f"no year in {entry!r}"
  return entries


@pytest.mark.parametrize("name", registry.names("train"))
def test_every_training_method_cites_its_paper(name):
  factory = registry.get(name, "train")
  _references(factory.__doc__)


@pytest.mark.parametrize("name", registry.names("oneshot"))
def test_every_oneshot_pruner_cites_its_papers(name):
  # "wanda+dsnot" is Wanda's mask refined by DSnoT: both are cited, each in
  # the module that implements it.
  for part in name.split("+"):
    module = importlib.import_module(f"sparsejax.oneshot.{part}")
    _references(module.__doc__)


def test_a_missing_or_empty_section_is_caught():
  with pytest.raises(AssertionError, match="no References"):
    _references("Summary.\n\nArgs:\n  x: y.\n")
  with pytest.raises(AssertionError, match="no arXiv id or DOI"):
    _references("Summary.\n\nReferences:\n  * Someone. A paper. 2020.\n")


def _citation():
  yaml = pytest.importorskip("yaml")  # installed with the test extras
  return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def test_citation_file_has_the_package_version():
  assert str(_citation()["version"]) == sparsejax.__version__


def test_citation_file_is_cff_1_2():
  cff = _citation()
  for key in ("cff-version", "message", "title", "authors"):  # required
    assert cff.get(key), key
  assert cff["cff-version"] == "1.2.0"
  assert cff.get("type", "software") in ("software", "dataset")
  for author in cff["authors"]:
    assert author.get("name") or author.get("family-names"), author
  assert isinstance(cff["date-released"], datetime.date)
  assert cff["license"] == "Apache-2.0"
