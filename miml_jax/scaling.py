"""Feature scaling from training statistics, per data split.

Scale and C go together (see the solvers' docstring): the L1 penalty is applied to the weights of
the scaled features. Kinds:
  'none'         raw features, the paper's setting.
  'standardize'  each feature minus its training mean, over its training std (constant: 1).
  'max'          every feature divided by the largest training value of the split.
Returned as (shift, scale) for `fit_logistic`, which fits on (X - shift) / scale without forming
it and reports weights in raw-feature units.
"""

import numpy as np

from miml_jax.plumbing.errors import UserError

KINDS = ('none', 'standardize', 'max')


def fit_scaling(X, train_mask, kind: str):
  """X: (n, d); train_mask: (S, n) bool. Returns shift, scale: (S, d) float64.

  A feature whose training values agree to float32 rounding (relative spread under 1e-7) counts
  as constant and keeps scale 1: dividing by its std would blow the rounding up to unit size.
  """
  if kind not in KINDS:
    raise UserError(f'unknown scaling {kind!r}; choose one of {", ".join(KINDS)}')
  X = np.asarray(X)
  mask = np.asarray(train_mask, bool)
  S, d = mask.shape[0], X.shape[1]
  counts = mask.sum(axis=1, keepdims=True)
  if not counts.all():
    raise UserError(f'split {int(np.argmin(counts))} has no training rows to scale by')
  shift, scale = np.zeros((S, d)), np.ones((S, d))
  if kind == 'standardize':
    # Moments about the mean of all rows, as matrix products: every split in one pass.
    # In float64, a block of rows at a time: never a float64 copy of all of X.
    centre = sum(block.sum(axis=0) for _, block in _row_blocks(X)) / len(X)
    weights = mask / counts
    mean, second = np.zeros((S, d)), np.zeros((S, d))
    for rows, block in _row_blocks(X):
      block = block - centre
      mean += weights[:, rows] @ block
      second += weights[:, rows] @ (block * block)
    var = np.maximum(second - mean * mean, 0.0)
    shift = centre + mean
    # One pass loses a variance to rounding where the split's mean lies far from the overall
    # one, relative to its spread (a feature that is zero on a split's training rows only):
    # those few columns get the exact two-pass moments.
    doubtful = var <= 1e-8 * mean * mean
    for s in np.flatnonzero(doubtful.any(axis=1)):
      cols = np.flatnonzero(doubtful[s])
      exact = X[np.ix_(mask[s], cols)].astype(np.float64)
      shift[s, cols] = exact.mean(axis=0)
      var[s, cols] = exact.var(axis=0)
    std = np.sqrt(var)
    scale = np.where(std > 1e-7 * np.abs(shift), std, 1.0)
  elif kind == 'max':
    for s in range(S):
      top = np.abs(X[mask[s]]).max()
      scale[s] = top if top > 0 else 1.0
  return shift, scale


# Rows per block of the float64 statistics: 16 MB per block of 512 features.
_BLOCK_ROWS = 4096


def _row_blocks(X):
  """(slice, float64 copy of those rows) for consecutive blocks of X's rows."""
  for start in range(0, len(X), _BLOCK_ROWS):
    rows = slice(start, start + _BLOCK_ROWS)
    yield rows, np.asarray(X[rows], np.float64)
