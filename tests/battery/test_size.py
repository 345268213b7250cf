"""The battery holds at least 150 bad inputs, each with a unique id."""

import importlib
import pathlib


def test_battery_has_at_least_150_cases():
  here = pathlib.Path(__file__).parent
  total, ids = 0, set()
  for path in sorted(here.glob("test_*.py")):
    if path.stem == "test_size":
      continue
    module = importlib.import_module(f"tests.battery.{path.stem}")
    for c in getattr(module, "CASES", []):
      assert (path.stem, c.id) not in ids
      ids.add((path.stem, c.id))
      total += 1
  assert total >= 150, f"the battery holds {total} cases; it needs >= 150"
