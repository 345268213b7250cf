"""Command line of ``python -m sparsejax.pretrain`` (see :mod:`.cli`).

Exit status: 0 when every arm finished (or was stopped as asked); 2 for a
config, command-line or workdir mistake, or a multi-process setting that
cannot be joined (see :mod:`.cluster`), refused before any compute; 3 when
training stopped on non-finite values
(:class:`~sparsejax.pretrain.step.NonFiniteError`: the last good checkpoint
stays, nothing is exported and the run is not reported finished). A failure
prints one ``error:`` line on stderr, without a traceback.
"""
from __future__ import annotations

import sys
import time

__all__ = ["EXIT_CONFIG", "EXIT_NONFINITE", "main"]

EXIT_CONFIG = 2
"""Exit status of a config, command-line or workdir mistake."""

EXIT_NONFINITE = 3
"""Exit status of a run stopped on non-finite loss, gradients or params."""


def main(argv: list[str] | None = None) -> int:
  """Runs ``python -m sparsejax.pretrain`` with ``argv``; returns the status.

  Args:
    argv: The arguments without the program name (default:
      ``sys.argv[1:]``).

  Returns:
    The exit status: 0, :data:`EXIT_CONFIG` or :data:`EXIT_NONFINITE`.

  Example:
    >>> main(["--config.optim.lrr=1"])
    2
  """
  from absl import logging

  from sparsejax.pretrain import cli
  from sparsejax.pretrain import config as config_lib
  t0 = time.perf_counter()
  try:
    args = cli.parse_args(sys.argv[1:] if argv is None else argv)
  except config_lib.ConfigError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return EXIT_CONFIG
  if args.help:
    print(cli.help_text(), flush=True)
    return 0
  logging.set_verbosity(logging.WARNING if args.verbosity is None
                        else args.verbosity)  # orbax logs every save at INFO
  import jax

  from sparsejax.pretrain import cluster
  try:
    cluster.join(bool(args.config.distributed))
  except cluster.ClusterError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return EXIT_CONFIG
  from sparsejax.pretrain import loop
  from sparsejax.pretrain import paths
  from sparsejax.pretrain import step as step_lib
  try:
    out = loop.run(args.config, args.workdir)
  except config_lib.ConfigError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return EXIT_CONFIG
  except step_lib.NonFiniteError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return EXIT_NONFINITE
  if jax.process_index() == 0:
    state = "finished" if out["finished"] else "stopped"
    print(f"{state}; outputs in {paths.as_path(args.workdir)}; wall time "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
