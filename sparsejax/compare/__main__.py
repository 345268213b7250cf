"""Command line of ``python -m sparsejax.compare`` (see :mod:`.cli`).

Exit status: 0 when every run finished; 2 for a command-line, config or
output-folder mistake, refused with one ``error:`` line before any compute;
3 when a run stopped on non-finite values (the table and files are still
written, with that run counted as diverged).
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Iterator

__all__ = ["EXIT_CONFIG", "EXIT_NONFINITE", "main"]

EXIT_CONFIG = 2
"""Exit status of a command-line, config or output-folder mistake."""

EXIT_NONFINITE = 3
"""Exit status when a run stopped on non-finite values."""


def _write_outputs(request: Any, results: list[dict[str, Any]],
                   wall_s: float) -> list[dict[str, Any]]:
  """The table on stdout; ``results.{csv,json,png}`` in ``request.out``."""
  from sparsejax.compare import plot, table
  from sparsejax.pretrain import config as config_lib
  rows = table.summarize(results)
  out = request.out
  table.write_csv(rows, os.path.join(out, "results.csv"))
  table.write_json(rows, results, os.path.join(out, "results.json"),
                   argv=request.argv, seeds=request.seeds,
                   base_config=config_lib.to_dict(request.base),
                   wall_s=wall_s)
  base = request.base
  plot.write_plot(rows, results, os.path.join(out, "results.png"),
                  title=f"{base.train.steps} steps, d_model "
                  f"{base.model.d_model}: mean ± std over "
                  f"{len(request.seeds)} seed(s), dots: single seeds")
  print(table.format_table(rows), flush=True)
  print(f"outputs in {os.path.abspath(out)}; wall time {wall_s:.1f} s",
        flush=True)
  return rows


@contextlib.contextmanager
def _compile_cache(folder: str | None) -> Iterator[None]:
  """JAX's persistent compilation cache in ``folder`` while active (the
  previous settings are restored after): the seeds of an arm, and arms
  with programs in common, compile them once. ``None``: unchanged.

  JAX opens its cache once per process; the cache is reset on entry and on
  exit so that the folder takes effect even when the process (a notebook, a
  test run with ``JAX_COMPILATION_CACHE_DIR`` set) had one open already."""
  import jax
  from jax.experimental.compilation_cache import compilation_cache
  settings = {"jax_compilation_cache_dir": folder and os.path.abspath(folder),
              "jax_persistent_cache_min_compile_time_secs": 0.0,
              "jax_persistent_cache_min_entry_size_bytes": 0}
  if folder is None:
    settings = {}
  before = {k: getattr(jax.config, k) for k in settings}
  for key, value in settings.items():
    jax.config.update(key, value)
  if settings:
    compilation_cache.reset_cache()
  try:
    yield
  finally:
    for key, value in before.items():
      jax.config.update(key, value)
    if settings:
      compilation_cache.reset_cache()


def main(argv: list[str] | None = None) -> int:
  """Runs ``python -m sparsejax.compare`` with ``argv``; returns the status.

  Args:
    argv: The arguments without the program name (default:
      ``sys.argv[1:]``).

  Returns:
    The exit status: 0, :data:`EXIT_CONFIG` or :data:`EXIT_NONFINITE`.

  Example:
    >>> main(["--methods", "srtse"])
    2
  """
  from absl import logging

  from sparsejax.compare import cli, running
  from sparsejax.pretrain import config as config_lib
  t0 = time.perf_counter()
  try:
    request = cli.parse_args(sys.argv[1:] if argv is None else argv)
    if request.help:
      print(cli.__doc__, flush=True)
      return 0
    runs = running.plan_runs(request.base, request.arms, request.seeds)
    running.check_runs(runs, request.out)
  except config_lib.ConfigError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return EXIT_CONFIG
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  os.makedirs(request.out, exist_ok=True)
  try:
    with _compile_cache(request.compile_cache):
      results = running.run_grid(runs, request.out)
  except config_lib.ConfigError as e:  # e.g. a run folder damaged meanwhile
    print(f"error: {e}", file=sys.stderr, flush=True)
    return EXIT_CONFIG
  _write_outputs(request, results, time.perf_counter() - t0)
  failed = [r for r in results if r["status"] != "finished"]
  for r in failed:
    print(f"error: {r['arm']} seed {r['seed']}: {r.get('error', r['status'])}",
          file=sys.stderr, flush=True)
  return EXIT_NONFINITE if failed else 0


if __name__ == "__main__":
  sys.exit(main())
