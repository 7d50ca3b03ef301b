"""What every solver takes and gives back: a batch of problems, the weights, the solver's state.

A `Problem` is every label of Y under every data split at once (the objective of
`miml_jax.solvers.objective` for each (split, label) pair). Its fields with the split axis first
(`PER_SPLIT`) are what spreads over devices; the rest is shared, so `partition_specs` derives
the sharding from the structure itself. A solver is a small frozen dataclass of its
hyper-parameters whose `run(problem)` returns `(Params, SolverState)`, in the style of jaxopt.

Batching is one layer, the same in every solver: a problem's step is written once for weights of
shape (S, D, L); the split axis S goes through the split operators of `miml_jax.solvers.design`
(the scaled features are never formed), the labels are the last axis of every product, and a
grid of C values is more labels (`miml_jax.model_selection.fit_grid`).
"""

from typing import ClassVar, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from miml_jax import sharding

# From this many training rows per split the Newton solvers leave matrices of the rows' or the
# working set's size (an m x m factorisation for L2, a K x K model Hessian for L1, both formed
# from gathered copies of the data) for products with the shared data only: memory of the data
# plus a few vectors, cost linear in the rows. Below it those matrices are cheaper, and they
# solve the Table 1 problems (at most 1,333 rows) as before. Measured in experiments/scale/.
MATRIX_FREE_ROWS = 2048


def matrix_free(problem: 'Problem') -> bool:
  """Whether the Newton solvers touch `problem`'s Hessians through products with the shared data
  only (`MATRIX_FREE_ROWS`): the one place that chooses, for L1 and L2."""
  return problem.rows.shape[1] >= MATRIX_FREE_ROWS


@flax.struct.dataclass
class Problem:
  """Split s, label j: rows where mask[s] is 1, features (X - shift[s]) / scale[s] (plus liblinear's
  constant intercept column of value intercept_scaling, if fit_intercept), labels Y[:, j], C[j].

  X: (n, d) features; Y: (n, L) 0/1 labels (in X's dtype); mask: (S, n) 0/1 (X's dtype);
  rows, valid: (S, m) each split's training rows, padded to the largest split, and which of
  them are real; shift, scale: (S, d); C: (L,); intercept_scaling: ().
  """
  X: jax.Array
  Y: jax.Array
  mask: jax.Array
  rows: jax.Array
  valid: jax.Array
  shift: jax.Array
  scale: jax.Array
  C: jax.Array
  intercept_scaling: jax.Array
  fit_intercept: bool = flax.struct.field(pytree_node=False, default=True)

  # The fields with the split axis first, sharded over devices; and those every device shares.
  PER_SPLIT: ClassVar[tuple[str, ...]] = ('mask', 'rows', 'valid', 'shift', 'scale')
  SHARED: ClassVar[tuple[str, ...]] = ('X', 'Y', 'C', 'intercept_scaling')

  @property
  def num_splits(self) -> int:
    return self.mask.shape[0]

  @property
  def num_labels(self) -> int:
    return self.Y.shape[1]

  @property
  def dim(self) -> int:
    """Weights per problem: the features, plus the intercept's."""
    return self.X.shape[1] + int(self.fit_intercept)

  def partition_specs(self, axis: str) -> 'Problem':
    """The same structure with a `PartitionSpec` for each field: split over `axis`, or shared."""
    return self.replace(**{name: PartitionSpec(axis) for name in self.PER_SPLIT},
                        **{name: PartitionSpec() for name in self.SHARED})

  def map_splits(self, fn) -> 'Problem':
    """The problem with fn applied to each per-split field (e.g. padding the split axis)."""
    return self.replace(**{name: fn(getattr(self, name)) for name in self.PER_SPLIT})

  def map_shared(self, fn) -> 'Problem':
    """The problem with fn applied to the shared fields (e.g. copying them to every device)."""
    return self.replace(**{name: fn(getattr(self, name)) for name in self.SHARED})


def training_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(S, m) indices of each split's training rows, padded to the largest split, and validity."""
  counts = mask.sum(axis=1)
  m = int(counts.max())
  rows = np.zeros((len(mask), m), np.int32)
  valid = np.zeros((len(mask), m), bool)
  for s, row in enumerate(mask):
    idx = np.flatnonzero(row)
    rows[s, :len(idx)] = idx
    valid[s, :len(idx)] = True
  return rows, valid


def make_problem(X, Y, mask, shift=0.0, scale=1.0, C=1.0, intercept_scaling=1.0,
                 fit_intercept=True) -> Problem:
  """A `Problem` from arrays (`fit_logistic` checks them first): X (n, d) float, Y (n, L) 0/1,
  mask (S, n) bool, shift/scale broadcastable to (S, d), C broadcastable to (L,)."""
  X = jnp.asarray(X)
  mask = np.asarray(mask, bool)
  dtype = X.dtype
  S, d = mask.shape[0], X.shape[1]
  rows, valid = training_rows(mask)
  return Problem(
      X=X, Y=jnp.asarray(Y, dtype), mask=jnp.asarray(mask, dtype), rows=jnp.asarray(rows),
      valid=jnp.asarray(valid), shift=jnp.broadcast_to(jnp.asarray(shift, dtype), (S, d)),
      scale=jnp.broadcast_to(jnp.asarray(scale, dtype), (S, d)),
      C=jnp.broadcast_to(jnp.asarray(C, dtype), (Y.shape[1],)),
      intercept_scaling=jnp.asarray(intercept_scaling, dtype), fit_intercept=fit_intercept)


def scaled_weights(problem: Problem, coef, intercept) -> jax.Array:
  """Raw-unit weights coef (S, d, L), intercept (S, L) as the scaled problem's z (S, D, L): the
  inverse of the solvers' way back (`design.raw_weights`), a starting point for a solver's run.

  x·coef + b = ((x - shift)/scale)·(coef·scale) + s₀·(b + shift·coef)/s₀.
  """
  coef = jnp.asarray(coef, problem.X.dtype)
  z = coef * problem.scale[..., None]
  if problem.fit_intercept:
    bias = (jnp.asarray(intercept, problem.X.dtype)
            + jnp.einsum('sd,sdl->sl', problem.shift, coef, precision='highest'))
    z = jnp.concatenate([z, (bias / problem.intercept_scaling)[:, None, :]], axis=1)
  return z


def loop_limits(problem: Problem, tol: float, iterations: int):
  """(tol, iterations) as the solvers' traced arguments: a new tolerance or iteration cap
  compiles nothing new."""
  return jnp.asarray(tol, problem.X.dtype), jnp.asarray(iterations, jnp.int32)


def zero_weights(problem: Problem, mesh=None):
  """(S, D, L) zero weights, every solver's default start, spread over the mesh as the splits
  are."""
  z = np.zeros((problem.num_splits, problem.dim, problem.num_labels), problem.X.dtype)
  return z if mesh is None else sharding.shard_leading(z, mesh)


class Params(NamedTuple):
  """The weights, in raw-feature units (decisions are X @ coef + intercept).
  coef: (S, d, L); intercept: (S, L) (b = s·β)."""
  coef: jax.Array
  intercept: jax.Array


class SolverState(NamedTuple):
  """Where each problem ended, (S, L) each: iter_num, the iterations it ran; error, its final
  optimality measure relative to its value at zero (`objective.optimality`); objective, F;
  converged, whether error <= tol (within max_iter)."""
  iter_num: jax.Array
  error: jax.Array
  objective: jax.Array
  converged: jax.Array
