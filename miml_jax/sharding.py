"""Spreading batched work over devices with `jax.sharding`.

Both batched computations here have one axis of independent work: the images of an extraction
batch, and the data splits of a solver call. That axis is sharded over a one-dimensional mesh
(padded to a multiple of its size) and everything else is replicated: the extractor lets XLA
partition its jitted program, the solvers run per device on their share (`map_splits`); on one
device nothing changes. The solvers use every device of every process
(`global_mesh`: after `jax.distributed.initialize`, all hosts; each process passes the same
inputs and gets the whole result back), the extractor its own process's devices (`local_mesh`).
"""

import functools

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
from jax.experimental import multihost_utils

AXIS = 'data'


def local_mesh() -> Mesh | None:
  """A mesh over this process's devices, or None when there is only one."""
  devices = jax.local_devices()
  return Mesh(np.array(devices), (AXIS,)) if len(devices) > 1 else None


def global_mesh() -> Mesh | None:
  """A mesh over the devices of all processes, or None when there is only one."""
  devices = jax.devices()
  return Mesh(np.array(devices), (AXIS,)) if len(devices) > 1 else None


@functools.lru_cache(maxsize=None)
def _split_mapped(fn, mesh: Mesh, problem_specs, n_split: int, n_shared: int, static: tuple):
  specs = (problem_specs, *[PartitionSpec(AXIS)] * n_split, *[PartitionSpec()] * n_shared)
  mapped = jax.shard_map(lambda *args: fn(*args, **dict(static)), mesh=mesh, in_specs=specs,
                         out_specs=PartitionSpec(AXIS), check_vma=False)
  return jax.jit(mapped)


def map_splits(fn, mesh: Mesh | None, problem, *split_args, shared=(), **static):
  """fn(problem, *split_args, *shared, **static), each device running fn on its own share of
  the splits.

  problem: a `miml_jax.solvers.problem.Problem`, placed with `place`; its own structure says
  which fields carry the split axis (`Problem.partition_specs`). split_args have the split axis
  first too; `shared` are replicated. Every output has the split axis first. The devices never
  wait for one another (no collective inside fn), so a device whose splits are solved stops
  early. Compiled once per (fn, mesh, problem structure, argument counts, static).
  """
  if mesh is None:
    return fn(problem, *split_args, *shared, **static)
  mapped = _split_mapped(fn, mesh, problem.partition_specs(AXIS), len(split_args), len(shared),
                         tuple(sorted(static.items())))
  return mapped(problem, *split_args, *shared)


def place(problem, mesh: Mesh | None, splits: int):
  """The problem with its per-split fields padded to `splits` (repeats of the first split, work
  to throw away) and split over the mesh, its other fields replicated."""
  problem = problem.map_splits(lambda a: shard_leading(pad_leading(a, splits), mesh))
  return problem.map_shared(lambda a: replicate(a, mesh))


def gather(x):
  """x as a whole on this process: arrays spread over other processes' devices are gathered
  (every process must call this); others are returned as they are."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return multihost_utils.process_allgather(x, tiled=True)
  return x


def padded(n: int, mesh: Mesh | None) -> int:
  """n rounded up to a multiple of the mesh's size."""
  size = 1 if mesh is None else mesh.size
  return -(-n // size) * size


def pad_leading(x, n: int):
  """x with its leading axis extended to n by repeating its first entry (work to throw away)."""
  x = np.asarray(x)
  if len(x) == n:
    return x
  return np.concatenate([x, np.repeat(x[:1], n - len(x), axis=0)])


def _placed(x, mesh: Mesh, spec: PartitionSpec):
  if jax.process_count() > 1:
    # Across processes every one holds the whole value; each places its own devices' part.
    x = jax.tree.map(np.asarray, x)
  return jax.device_put(x, NamedSharding(mesh, spec))


def shard_leading(x, mesh: Mesh | None):
  """x placed with its leading axis split over the mesh (as is, without a mesh)."""
  return x if mesh is None else _placed(x, mesh, PartitionSpec(AXIS))


def replicate(x, mesh: Mesh | None):
  """x (a pytree) copied to every device of the mesh (as is, without a mesh)."""
  return x if mesh is None else _placed(x, mesh, PartitionSpec())
