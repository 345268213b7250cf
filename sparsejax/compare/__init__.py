r"""Method comparisons with seeds and error bars: ``python -m sparsejax.compare``.

A grid of registered training methods x patterns x seeds, plus the dense
baseline for every seed, each run trained through the pretraining
application (same data, steps and config apart from method, pattern and
seed). It prints one row per arm -- final validation loss mean ± std over
seeds, the number of seeds, the mean flip rate, the wall time per run and
the difference to dense -- and writes ``results.csv``, ``results.json``
(with every run's raw values) and ``results.png`` into ``--out``::

  python -m sparsejax.compare                      # CPU-sized default grid
  python -m sparsejax.compare --methods ste,srste --patterns 2:4,1:16 \
      --seeds 0,1,2 --out runs/cmp
  python -m sparsejax.compare --config gpt_small_srste_2to4 \
      --set train.steps=2000 --methods srste,progressive_nm --out /ckpt/cmp

An arm may carry config options in brackets, keys of the ``sparsity``
section or dotted keys: progressive gradient flow with MDGF in both gradient
modes and with SDGF is::

  --methods "progressive_nm[structure=,decay=linear,grad=identity],\
    progressive_nm[structure=,decay=linear,grad=autodiff],\
    progressive_nm[structure=stepwise,decay=]"

A newly registered method is an arm by its name. Runs are resumable one by
one: a finished run keeps ``OUT/runs/<arm>_seed<k>/result.json`` and is
skipped when the command is repeated (or grown by more methods, patterns or
seeds); an unfinished one resumes from its checkpoint. An output folder
holding runs of another config is refused, naming the keys that differ.
JAX's persistent compilation cache (``OUT/jax_cache``, ``--compile-cache``)
lets the seeds of an arm share its compiled programs.

Modules: :mod:`~sparsejax.compare.grid` (arms, seeds, per-run configs),
:mod:`~sparsejax.compare.cli` (the command line),
:mod:`~sparsejax.compare.running` (runs and resume),
:mod:`~sparsejax.compare.training` (one run through the pretraining loop),
:mod:`~sparsejax.compare.table` (mean ± std, CSV, JSON) and
:mod:`~sparsejax.compare.plot` (the chart).

>>> from sparsejax.compare import table
>>> table.COLUMNS[:3]
('arm', 'method', 'variant')
"""
