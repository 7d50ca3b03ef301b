"""Spreading batched work over this host's devices with `jax.sharding`.

Both batched computations here have one axis of independent work: the images of an extraction
batch, and the data splits of a solver call. That axis is sharded over a one-dimensional mesh of
the local devices (padded to a multiple of their number), everything else is replicated, and
XLA partitions the jitted program; on one device nothing changes.
"""

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

AXIS = 'data'


def local_mesh() -> Mesh | None:
  """A mesh over this process's devices, or None when there is only one."""
  devices = jax.local_devices()
  return Mesh(np.array(devices), (AXIS,)) if len(devices) > 1 else None


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


def shard_leading(x, mesh: Mesh | None):
  """x placed with its leading axis split over the mesh (as is, without a mesh)."""
  if mesh is None:
    return x
  return jax.device_put(x, NamedSharding(mesh, PartitionSpec(AXIS)))


def replicate(x, mesh: Mesh | None):
  """x (a pytree) copied to every device of the mesh (as is, without a mesh)."""
  if mesh is None:
    return x
  return jax.device_put(x, NamedSharding(mesh, PartitionSpec()))
