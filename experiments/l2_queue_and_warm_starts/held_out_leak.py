"""The recipe's held-out decision values, fold fits started from zero or from each split's fit
on all its training rows, at two tolerances, against the same fits solved to 1e-8.

  python experiments/l2_queue_and_warm_starts/held_out_leak.py \
      cache/msrc_v2_vgg16_lpips_flip.h5 30 1e-4,1e-6
"""
import sys
import time

import numpy as np

from miml_jax import recipe
from miml_jax import scaling
from miml_jax import splits
from miml_jax.features import read_feature_file
from miml_jax.solvers import fit_logistic

data = read_feature_file(sys.argv[1])
X, Y = data.features, data.labels.astype(np.float64)
S, tols = int(sys.argv[2]), [float(t) for t in sys.argv[3].split(',')]
masks = splits.random_splits(len(X), 30, seed=0)[:S]
rows = np.stack([np.flatnonzero(m) for m in masks])
fold_masks, on_rows = recipe._fold_masks(rows, len(X), 3, np.arange(S))   # the recipe's folds
fold_shift, fold_scale = scaling.fit_scaling(X, fold_masks, 'standardize')
shift, scale = scaling.fit_scaling(X, masks, 'standardize')
ysign = 2 * Y[rows] - 1
log_loss = lambda v: np.logaddexp(0, -ysign * v).mean()


def held_out(penalty, tol, init=None):
  fit = fit_logistic(X, Y, penalty=penalty, tol=tol, max_iter=20_000, train_mask=fold_masks,
                     shift=fold_shift, scale=fold_scale, init=init)
  out = np.empty(rows.shape + (Y.shape[1],))
  for s in range(S):
    for f in range(3):
      held = ~on_rows[s, f]
      out[s, held] = X[rows[s, held]] @ np.asarray(fit.coef[3 * s + f], np.float64) + np.asarray(
          fit.intercept[3 * s + f])
  return out


for penalty in ('l1', 'l2'):
  final = fit_logistic(X, Y, penalty=penalty, tol=1e-7, max_iter=20_000, train_mask=masks,
                       shift=shift, scale=scale)
  warm = tuple(np.repeat(np.asarray(a), 3, axis=0) for a in (final.coef, final.intercept))
  exact = held_out(penalty, 1e-8)
  for tol in tols:
    for start_name, init in (('zero', None), ('final fit', warm)):
      start = time.perf_counter()
      values = held_out(penalty, tol, init)
      print(f'{penalty} tol {tol:g} from {start_name}: {time.perf_counter() - start:.1f} s, '
            f'mean |v - exact| {np.abs(values - exact).mean():.2e}, held-out log loss - exact '
            f'{log_loss(values) - log_loss(exact):+.2e}', flush=True)
