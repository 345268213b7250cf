"""Device mesh and shardings of a pretraining run.

The mesh has three axes, sized by ``config.mesh``:

* ``data``: pure data parallelism (the batch is split over it);
* ``fsdp``: the batch *and* the ``embed`` axis of every parameter are split
  over it (fully-sharded data parallelism);
* ``tensor``: heads, MLP hidden units and the vocabulary are split over it.

Parameters are sharded by their logical axis names
(:func:`sparsejax.models.gpt.default_logical_rules`). The optimizer state is
sharded generically: a state leaf whose path ends with a parameter's path and
that has the parameter's shape (adam moments, sparsity masks) takes the
parameter's sharding; everything else (counters, dense-leaf mask markers,
flip counts, the PRNG key) is replicated. So masks are computed where their
weights live, and N:M masks need no communication.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sparsejax import rules as rules_lib
from sparsejax.models import gpt
from sparsejax.pretrain import config as config_lib

__all__ = [
    "AXES",
    "mesh_shape",
    "make_mesh",
    "logical_rules",
    "param_shardings",
    "batch_sharding",
    "replicated",
    "check_divisible",
]

AXES = ("data", "fsdp", "tensor")
"""Names of the mesh axes, in mesh order."""


def mesh_shape(mesh_config: Any, num_devices: int) -> tuple[int, int, int]:
  """Resolves ``-1`` in the mesh config and checks the device count.

  Args:
    mesh_config: ``config.mesh`` (``data``, ``fsdp``, ``tensor``).
    num_devices: Number of devices the mesh must cover.

  Returns:
    ``(data, fsdp, tensor)`` sizes whose product is ``num_devices``.

  Raises:
    ConfigError: If the sizes do not multiply to ``num_devices``.

  Example:
    >>> import ml_collections
    >>> mesh_shape(ml_collections.ConfigDict(
    ...     {"data": -1, "fsdp": 2, "tensor": 2}), 8)
    (2, 2, 2)
  """
  sizes = [int(mesh_config[a]) for a in AXES]
  fixed = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % fixed:
      raise config_lib.ConfigError(
          f"mesh {dict(zip(AXES, sizes))} does not fit {num_devices} "
          f"device(s): the fixed axes ({fixed}) do not divide the device "
          "count.")
    sizes[sizes.index(-1)] = num_devices // fixed
  if math.prod(sizes) != num_devices:
    raise config_lib.ConfigError(
        f"mesh {dict(zip(AXES, sizes))} has {math.prod(sizes)} device(s) but "
        f"{num_devices} are available; make data*fsdp*tensor equal the device "
        "count (or set one axis to -1).")
  return tuple(sizes)


def make_mesh(mesh_config: Any,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the ``(data, fsdp, tensor)`` mesh.

  Args:
    mesh_config: ``config.mesh``.
    devices: Devices to use; all devices (every process's) by default.

  Returns:
    A ``jax.sharding.Mesh`` with automatic axis types.

  Example:
    >>> import ml_collections
    >>> mesh = make_mesh(ml_collections.ConfigDict(
    ...     {"data": -1, "fsdp": 1, "tensor": 1}), jax.devices()[:1])
    >>> dict(mesh.shape)
    {'data': 1, 'fsdp': 1, 'tensor': 1}
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_config, len(devices))
  if devices == list(jax.devices()):
    try:
      array = mesh_utils.create_device_mesh(
          shape, devices=devices)
    except Exception:  # pylint: disable=broad-except
      array = np.array(devices).reshape(shape)
  else:
    array = np.array(devices).reshape(shape)
  return Mesh(array, AXES)


def logical_rules() -> tuple[tuple[str, Any], ...]:
  """Logical-axis rules of the run's mesh.

  Returns:
    Rules mapping ``batch`` to ``(data, fsdp)``, ``embed`` to ``fsdp`` and
    heads / MLP / vocabulary to ``tensor``.

  Example:
    >>> dict(logical_rules())["batch"], dict(logical_rules())["mlp"]
    (('data', 'fsdp'), 'tensor')
  """
  return gpt.default_logical_rules(data="data", model="tensor", fsdp="fsdp")


def param_shardings(model: gpt.GPT, mesh: Mesh) -> Any:
  """``NamedSharding`` of every parameter of ``model`` on ``mesh``.

  Args:
    model: The GPT.
    mesh: The run's mesh.

  Returns:
    A pytree like the params.

  Example:
    >>> import ml_collections
    >>> mesh = make_mesh(ml_collections.ConfigDict(
    ...     {"data": -1, "fsdp": 1, "tensor": 1}), jax.devices()[:1])
    >>> model = gpt.GPT(gpt.GPTConfig(d_model=32, n_layers=1, n_heads=2,
    ...                               d_ff=64))
    >>> sh = param_shardings(model, mesh)
    >>> tuple(sh["block_0"]["mlp"]["fc1"]["kernel"].spec)
    ('fsdp', 'tensor')
  """
  specs = gpt.logical_partition_specs(model)
  return nn.logical_to_mesh_sharding(specs, mesh, logical_rules())


def replicated(mesh: Mesh) -> NamedSharding:
  """A fully replicated sharding on ``mesh``.

  Args:
    mesh: A mesh.

  Returns:
    ``NamedSharding(mesh, P())``.

  Example:
    >>> import ml_collections
    >>> mesh = make_mesh(ml_collections.ConfigDict(
    ...     {"data": -1, "fsdp": 1, "tensor": 1}), jax.devices()[:1])
    >>> tuple(replicated(mesh).spec)
    ()
  """
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of a ``(batch, length)`` token array: batch over data and fsdp.

  Args:
    mesh: The run's mesh.

  Returns:
    ``NamedSharding(mesh, P(("data", "fsdp")))``.

  Example:
    >>> import ml_collections
    >>> mesh = make_mesh(ml_collections.ConfigDict(
    ...     {"data": -1, "fsdp": 1, "tensor": 1}), jax.devices()[:1])
    >>> tuple(batch_sharding(mesh).spec)
    (('data', 'fsdp'),)
  """
  return NamedSharding(mesh, P(("data", "fsdp")))


def check_divisible(params: Any, shardings: Any, mesh: Mesh,
                    batch_sizes: dict[str, int]) -> None:
  """Checks that the mesh divides every sharded dimension and batch size.

  Args:
    params: Params or their shape structs.
    shardings: Their shardings.
    mesh: The mesh.
    batch_sizes: ``{name: size}`` of batches split over ``(data, fsdp)``.

  Raises:
    ConfigError: Naming the first dimension that does not divide.

  Example:
    >>> import ml_collections
    >>> mesh = make_mesh(ml_collections.ConfigDict(
    ...     {"data": -1, "fsdp": 1, "tensor": 1}), jax.devices()[:1])
    >>> check_divisible({}, {}, mesh, {"data.batch_size": 8})
  """
  sizes = dict(mesh.shape)
  per_batch = sizes["data"] * sizes["fsdp"]
  for name, b in batch_sizes.items():
    if b % per_batch:
      raise config_lib.ConfigError(
          f"{name}={b} is not divisible by data*fsdp={per_batch} of the mesh "
          f"{sizes}.")
    if b % jax.process_count():
      raise config_lib.ConfigError(
          f"{name}={b} is not divisible by the {jax.process_count()} "
          "processes.")
  flat_sh = dict(rules_lib.named_leaves(shardings))
  for path, leaf in rules_lib.named_leaves(params):
    spec = flat_sh[path].spec
    for dim, axes in zip(np.shape(leaf), spec):
      if axes is None:
        continue
      axes = axes if isinstance(axes, tuple) else (axes,)
      n = math.prod(sizes[a] for a in axes)
      if dim % n:
        raise config_lib.ConfigError(
            f"parameter {path} of shape {tuple(np.shape(leaf))} cannot be "
            f"sharded as {spec} on mesh {sizes}: dimension {dim} is not "
            f"divisible by {n}.")
