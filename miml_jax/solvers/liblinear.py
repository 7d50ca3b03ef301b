"""The reference: scikit-learn's liblinear, one fit per (split, label), in parallel with joblib.

Same objective, same C and intercept handling as `miml_jax.solvers.objective`. liblinear refuses a
training split in which a label has only one class; such a label gets w = 0 and a constant
decision of ±1 towards the one class seen (what LIBLINEAR's own `train` predicts).
"""

import re

import joblib
import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

from miml_jax.solvers.objective import LogisticFit


def sklearn_penalty(penalty: str) -> dict:
  """How the installed scikit-learn asks liblinear for `penalty`. From 1.8, `l1_ratio` chooses
  it and `penalty=` is deprecated; before, `l1_ratio` is ignored unless penalty='elasticnet'
  (which liblinear refuses), so an L1 fit must say penalty='l1'."""
  major, minor = (int(re.match(r'\d+', part).group())
                  for part in sklearn.__version__.split('.')[:2])
  if (major, minor) >= (1, 8):
    return {'l1_ratio': 1.0 if penalty == 'l1' else 0.0}
  return {'penalty': penalty}


def _fit_one(Xs, y, penalty, C, tol, fit_intercept, intercept_scaling, max_iter):
  if y.min() == y.max():
    return np.zeros(Xs.shape[1]), (1.0 if y[0] > 0 else -1.0), 0, True
  # A fixed seed for liblinear's random coordinate order: the reference gives the same answer,
  # in the same time, on every run.
  clf = LogisticRegression(solver='liblinear', C=C, tol=tol, fit_intercept=fit_intercept,
                           intercept_scaling=intercept_scaling, max_iter=max_iter,
                           random_state=0, **sklearn_penalty(penalty))
  clf.fit(Xs, y)
  n_iter = int(np.max(clf.n_iter_))
  return clf.coef_[0], float(clf.intercept_[0]) if fit_intercept else 0.0, n_iter, \
      n_iter < max_iter


def fit_liblinear(X, Y, *, penalty='l1', C=1.0, fit_intercept=True, intercept_scaling=1.0,
                  tol=1e-4, max_iter=1000, train_mask=None, shift=None, scale=None,
                  n_jobs=1) -> LogisticFit:
  """As `fit_logistic` (same arguments and shapes), solved by liblinear.

  `objective` is the fitted model's objective evaluated here in float64; `kkt` is NaN (liblinear
  does not report it); `n_jobs` fits run in parallel (joblib).
  """
  X = np.asarray(X, np.float64)
  Y = np.asarray(Y)
  single = train_mask is None
  mask = np.ones((1, len(X)), bool) if single else np.asarray(train_mask, bool)
  S, d, L = len(mask), X.shape[1], Y.shape[1]
  shift = np.broadcast_to(0.0 if shift is None else np.asarray(shift, np.float64), (S, d))
  scale = np.broadcast_to(1.0 if scale is None else np.asarray(scale, np.float64), (S, d))
  C = np.broadcast_to(np.asarray(C, np.float64), (L,))
  jobs = [(s, j) for s in range(S) for j in range(L)]
  scaled = [(X[mask[s]] - shift[s]) / scale[s] for s in range(S)]
  results = joblib.Parallel(n_jobs=n_jobs)(
      joblib.delayed(_fit_one)(scaled[s], Y[mask[s], j], penalty, float(C[j]), tol,
                               fit_intercept, intercept_scaling, max_iter) for s, j in jobs)
  coef, intercept = np.zeros((S, d, L)), np.zeros((S, L))
  n_iter, converged, objective = np.zeros((S, L), int), np.zeros((S, L), bool), np.zeros((S, L))
  for (s, j), (w, b, it, ok) in zip(jobs, results):
    margins = scaled[s] @ w + b
    ysign = 2.0 * Y[mask[s], j] - 1.0
    beta = b / intercept_scaling if fit_intercept else 0.0
    reg = (np.abs(w).sum() + abs(beta)) if penalty == 'l1' else 0.5 * (w @ w + beta * beta)
    objective[s, j] = reg + C[j] * np.logaddexp(0.0, -ysign * margins).sum()
    # Back to raw-feature units, as fit_logistic reports.
    coef[s, :, j] = w / scale[s]
    intercept[s, j] = b - coef[s, :, j] @ shift[s]
    n_iter[s, j], converged[s, j] = it, ok
  fit = LogisticFit(coef, intercept, objective, n_iter, converged, np.full((S, L), np.nan))
  if single:
    fit = LogisticFit(*(a[0] for a in fit))
  return fit

