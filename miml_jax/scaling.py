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

from miml_jax.errors import UserError

KINDS = ('none', 'standardize', 'max')


def fit_scaling(X, train_mask, kind: str):
  """X: (n, d); train_mask: (S, n) bool. Returns shift, scale: (S, d) float64."""
  if kind not in KINDS:
    raise UserError(f'unknown scaling {kind!r}; choose one of {", ".join(KINDS)}')
  X = np.asarray(X, np.float64)
  mask = np.asarray(train_mask, bool)
  S, d = mask.shape[0], X.shape[1]
  shift, scale = np.zeros((S, d)), np.ones((S, d))
  for s in range(S):
    Xs = X[mask[s]]
    if kind == 'standardize':
      shift[s] = Xs.mean(axis=0)
      std = Xs.std(axis=0)
      scale[s] = np.where(std > 0, std, 1.0)
    elif kind == 'max':
      top = np.abs(Xs).max()
      scale[s] = top if top > 0 else 1.0
  return shift, scale
