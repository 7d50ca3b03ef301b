"""A batch of problems that shrinks to those still going.

Problems (split x label) finish at different iterations, and a batched step costs the whole
batch's arithmetic until its last problem stops. So a solver stops its loop once the problems
still going fit in a quarter of the batch (`fits_smaller`), and goes on with the sub-batch of
their splits x labels from the state they are in (`go_on`: `sub_batch`, then `merged` writes
the results back). Sub-batch sizes are rounded up to powers of two, so that few shapes compile (JAX's
compilation cache keeps them for the next run). Splits spread over several processes are not
gathered for a subset: there (`can_shrink` False) a solver runs the whole batch to the end.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from miml_jax import sharding
from miml_jax.solvers.problem import Problem


def can_shrink() -> bool:
  """Whether this process holds every split (a single-process run)."""
  return jax.process_count() == 1


def fits_smaller(going):
  """Whether the problems still going (S, L) fit in a quarter of the batch, as the sub-batch of
  their splits x labels, each count rounded up to a power of two (`sub_batch`). Traced."""
  S, L = going.shape
  rounded = lambda k, most: jnp.minimum(
      jnp.left_shift(1, 32 - jax.lax.clz(jnp.maximum(k, 1).astype(jnp.int32) - 1)), most)
  size = rounded(going.any(axis=1).sum(), S) * rounded(going.any(axis=0).sum(), L)
  return 4 * size <= S * L


class SubBatch(NamedTuple):
  """The splits `rows` x labels `cols` of a batch (padded, work to throw away), as `problem`;
  take: (rows, cols) the entries that are picked problems, not padding."""
  problem: Problem
  rows: np.ndarray
  cols: np.ndarray
  take: np.ndarray
  mesh: object

  def of(self, a):
    """The sub-batch's part of a per-problem array a (S, ..., L), placed as its splits are."""
    return sharding.shard_leading(np.asarray(a)[self.rows][..., self.cols], self.mesh)

  def merged(self, old, new):
    """old (S, ..., L) with new's entries (the sub-batch's, split axis first and label axis
    last) where `take` holds."""
    old = np.array(old)
    r, c = np.nonzero(self.take)
    old[self.rows[r], ..., self.cols[c]] = np.asarray(new)[r, ..., c]
    return jnp.asarray(old)


def sub_batch(problem: Problem, pick, mesh) -> SubBatch:
  """The splits x labels holding the picked problems pick (S, L), each count padded to a power
  of two (at most the batch's) and to a multiple of the mesh's size."""
  S, L = pick.shape
  real_rows, real_cols = np.flatnonzero(pick.any(axis=1)), np.flatnonzero(pick.any(axis=0))
  rows, cols = _padded(real_rows, S, mesh), _padded(real_cols, L, None)
  sub = sharding.place(problem.map_splits(lambda a: np.asarray(a)[rows]).replace(
      Y=problem.Y[:, cols], C=problem.C[cols]), mesh, len(rows))
  take = pick[np.ix_(rows, cols)]
  take[len(real_rows):] = take[:, len(real_cols):] = False
  return SubBatch(sub, rows, cols, take, mesh)


def _padded(index, total, mesh):
  """index padded (with its first entry) to a power of two, at most total, and to a multiple
  of the mesh's size."""
  size = min(1 << (len(index) - 1).bit_length(), total)
  return sharding.pad_leading(index, sharding.padded(size, mesh))


def go_on(problem: Problem, pick, mesh, run, state, params, result, *, left, begin=None):
  """The picked problems pick (S, L) solved on as their sub-batch (`sub_batch`): by run(sub
  problem, sub state, left) from the state they are in, or, given begin, from
  begin(sub problem, their weights state.z) (a fresh start there); their results (params,
  result, state) merged back into the batch's. Returns the three, merged."""
  sub = sub_batch(problem, pick, mesh)
  sub_start = (begin(sub.problem, sub.of(state.z)) if begin is not None
               else jax.tree.map(sub.of, state))
  (sub_params, sub_result), sub_state = run(sub.problem, sub_start, left)
  return (jax.tree.map(sub.merged, params, sub_params),
          jax.tree.map(sub.merged, result, sub_result),
          jax.tree.map(sub.merged, state, sub_state))
