r"""The pretraining application: ``python -m sparsejax.pretrain``.

With no arguments this trains the embedded default -- a small byte-level GPT
on the ``pydoc_data`` help text that ships with Python, with progressive 2:4
sparsity -- next to its dense baseline, and prints the validation loss and
perplexity of both, their steps/s, the per-layer sparsity and the N:M
pattern reached. Both runs of 500 steps, compile included, took 204 s on a
2-core CPU with nothing else running (``python -m sparsejax.pretrain``, jax
0.12.0.1), reaching a validation loss of 1.5585 nats/byte dense and 1.5827
with progressive 2:4 (+1.55%; 2:4 SR-STE, with ``--config srste``: 1.5905,
+2.05%). Every recipe in
:mod:`sparsejax.pretrain.recipes` also runs CPU-sized:
``--config gpt_small_rigl_90:cpu``.

Configs
-------
A config is a Python file with ``get_config()`` returning an
``ml_collections.ConfigDict`` (see :func:`sparsejax.pretrain.config.get_config`
for every key); the recipes ship in the package
(:mod:`sparsejax.pretrain.recipes`) and ``--config`` takes one by name, or
the path of a file of your own::

  python -m sparsejax.pretrain --config smoke
  python -m sparsejax.pretrain --config srste \
      --config.train.steps=2000 --workdir runs/srste
  python -m sparsejax.pretrain --config gpt_small_progressive_1to8 \
      --config.data.paths=/data/text --workdir /ckpt/gpt-small-1to8

``--config.KEY=VALUE`` overrides any key (an unknown key is an error that
names the closest valid key);
``--workdir`` holds checkpoints, ``metrics.jsonl``, plots, the exported
weights and ``summary.json`` (default: a new folder under ``runs/``). Your
own data: ``--config.data.source=files --config.data.paths=a.txt,dir/`` (plain
text, byte-level tokens), ``--config.data.source=array_record`` (one window
per record), or any grain random-access source through
:func:`~sparsejax.pretrain.corpus.make_corpus` and ``loop.run(corpus=...)``.

Exit status: 0 when the run finished; 2 for any config, command-line or
workdir mistake, refused with one ``error:`` line before any compute; 3 when
training diverged. A step whose loss, gradient norm or updated params are
not finite is skipped inside the jitted step (params, optimizer and sparsity
state kept; the step count and the data move on); more than
``train.max_nonfinite_steps`` (default 10) skipped steps stop the run with an
``error:`` line naming the step and the values: no checkpoint is saved past
that point (the last good one stays), nothing is exported and the run is not
reported finished.

Rerunning with the same ``--workdir`` resumes from the last complete
checkpoint (bit-exact); the mesh and the logging/checkpoint/eval/output keys
may change, anything else is refused before any compute.

GPU box
-------
One process drives every local GPU; the mesh covers all of them::

  pip install -e . "jax[cuda12]"
  python -m sparsejax.pretrain --config gpt_small_srste_2to4 \
      --config.mesh.data=-1 --config.mesh.tensor=2 --workdir /ckpt/run1

TPU pod slice
-------------
Run the same command on every host of the slice (e.g. with
``gcloud compute tpus tpu-vm ssh NAME --worker=all --command=...``) and set
``distributed=True``, which calls ``jax.distributed.initialize()`` before
anything touches the devices (on Cloud TPU it needs no arguments). Every host
loads only its own rows of each batch; the mesh spans all chips of the slice.
The workdir must be one folder every host sees (an NFS or ``gcsfuse`` mount);
process 0 writes the metrics, plots and export, and every process takes part
in saving and restoring the sharded checkpoints::

  python -m sparsejax.pretrain --config tpu_pod_progressive_1to8 \
      --config.data.paths=/data/text --workdir /mnt/shared/runs/pod-1to8

(The ``tpu_pod_*`` recipes already set ``distributed=True``.)

In Python, the same launch is:

>>> import jax  # doctest: +SKIP
>>> jax.distributed.initialize()  # doctest: +SKIP
>>> from sparsejax.pretrain import config, loop  # doctest: +SKIP
>>> loop.run(config.get_config(), "/mnt/shared/run")  # doctest: +SKIP

Modules
-------
The application imports the library, never the other way round:

* :mod:`~sparsejax.pretrain.cli` -- the command line, parsed and checked;
* :mod:`~sparsejax.pretrain.config` -- the config schema;
* :mod:`~sparsejax.pretrain.recipes` -- the packaged recipes, by name;
* :mod:`~sparsejax.pretrain.variants` -- recipes sized for a CPU;
* :mod:`~sparsejax.pretrain.validation` -- the checks of a config and a
  workdir, each naming the key;
* :mod:`~sparsejax.pretrain.data` -- corpus, byte tokenizer, evaluation
  windows;
* :mod:`~sparsejax.pretrain.corpus` -- training windows, validation tokens
  and the data fingerprint;
* :mod:`~sparsejax.pretrain.pipeline` -- the grain input pipeline: per-epoch
  shuffling, per-process batches, checkpointable iterator state;
* :mod:`~sparsejax.pretrain.sources` -- ``data.source`` as a corpus;
* :mod:`~sparsejax.pretrain.plan` -- model, optimizer, sparsifier, mesh and
  shardings from a config, checked before any compute;
* :mod:`~sparsejax.pretrain.mesh` -- the ``(data, fsdp, tensor)`` mesh;
* :mod:`~sparsejax.pretrain.step` -- the train state and the jitted step;
* :mod:`~sparsejax.pretrain.evaluate` -- validation loss and perplexity;
* :mod:`~sparsejax.pretrain.checkpoint` -- orbax checkpoints, resume checks;
* :mod:`~sparsejax.pretrain.metrics`, :mod:`~sparsejax.pretrain.report`,
  :mod:`~sparsejax.pretrain.plots`, :mod:`~sparsejax.pretrain.export` -- what
  a run writes and prints;
* :mod:`~sparsejax.pretrain.loop` -- the training loop.
"""
