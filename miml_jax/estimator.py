"""A scikit-learn estimator for multi-label logistic regression, solved by the batched JAX solvers."""

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.base import ClassifierMixin

from miml_jax import scaling
from miml_jax.errors import UserError
from miml_jax.solvers import fit_logistic


class MultiLabelLogisticRegression(ClassifierMixin, BaseEstimator):
  """One L1- (or L2-) regularised logistic regression per label, fitted together.

  Parameters
  ----------
  penalty : {'l1', 'l2'}, default='l1'
  C : float or array of shape (n_labels,), default=1.0
      Inverse regularisation strength, as liblinear's C.
  scaling : {'standardize', 'none', 'max'}, default='standardize'
      Feature scaling from the training data before the fit (see `miml_jax.scaling`).
  fit_intercept, intercept_scaling : as liblinear (the intercept is penalised).
  tol : float, default=1e-4
      Relative prox-gradient tolerance of the solver.
  max_iter : int, default=10000

  Attributes
  ----------
  coef_ : ndarray of shape (n_labels, n_features), in raw-feature units.
  intercept_ : ndarray of shape (n_labels,)
  n_iter_ : ndarray of shape (n_labels,)
  converged_ : ndarray of shape (n_labels,) of bool
  n_features_in_ : int

  Examples
  --------
  >>> clf = MultiLabelLogisticRegression(C=1.0).fit(X, Y)    # Y: (n, n_labels) in {0, 1}
  >>> clf.predict_proba(X_new)                                # (n_new, n_labels) sigmoids
  """

  def __init__(self, penalty='l1', C=1.0, scaling='standardize', fit_intercept=True,
               intercept_scaling=1.0, tol=1e-4, max_iter=10_000):
    self.penalty = penalty
    self.C = C
    self.scaling = scaling
    self.fit_intercept = fit_intercept
    self.intercept_scaling = intercept_scaling
    self.tol = tol
    self.max_iter = max_iter

  def fit(self, X, Y):
    """X: (n, d) features; Y: (n, n_labels) 0/1 (a 1-d y is one label). Returns self."""
    X = np.asarray(X, np.float32)
    Y = np.asarray(Y)
    if Y.ndim == 1:
      Y = Y[:, None]
    mask = np.ones((1, len(X)), bool)
    shift, scale = scaling.fit_scaling(X, mask, self.scaling)
    fit = fit_logistic(X, Y, penalty=self.penalty, C=self.C,
                             fit_intercept=self.fit_intercept,
                             intercept_scaling=self.intercept_scaling, tol=self.tol,
                             max_iter=self.max_iter, shift=shift[0], scale=scale[0])
    self.coef_ = np.asarray(fit.coef, np.float64).T
    self.intercept_ = np.asarray(fit.intercept, np.float64)
    self.n_iter_ = np.asarray(fit.n_iter)
    self.converged_ = np.asarray(fit.converged)
    self.objective_ = np.asarray(fit.objective, np.float64)
    self.n_features_in_ = X.shape[1]
    self.classes_ = np.array([0, 1])
    return self

  def decision_function(self, X):
    """(n, n_labels) margins Xw + b."""
    if not hasattr(self, 'coef_'):
      raise UserError('this MultiLabelLogisticRegression is not fitted yet; call fit first')
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or X.shape[1] != self.n_features_in_:
      raise UserError(f'X has shape {X.shape}; expected (n, {self.n_features_in_})')
    return X @ self.coef_.T + self.intercept_

  def predict_proba(self, X):
    """(n, n_labels) independent per-label probabilities (sigmoids, not normalised)."""
    return 1.0 / (1.0 + np.exp(-self.decision_function(X)))

  def predict(self, X):
    """(n, n_labels) 0/1: a label is predicted where its margin is positive."""
    return (self.decision_function(X) > 0).astype(int)
