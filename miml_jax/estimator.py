"""scikit-learn estimators: multi-label logistic regression solved by the batched JAX solvers.

`MultiLabelLogisticRegression` is one L1- (or L2-) regularised logistic regression per label,
all fitted in one solver call. Like scikit-learn's classifiers it takes

- a 0/1 indicator matrix Y (n, L): multi-label, the MIML case. `predict_proba` gives independent
  per-label probabilities (n, L), `predict` the 0/1 tags (a label where its decision value is
  positive), `classes_` is `arange(L)`, as `OneVsRestClassifier` sets it;
- a 1-d y of two classes: a binary classifier (`predict_proba` (n, 2), `decision_function` (n,));
- a 1-d y of more classes: one-vs-rest over them (`predict` the class of largest decision value,
  `predict_proba` the per-class probabilities normalised to sum to 1).

`score` is the MIML average precision of the label ranking (`miml_jax.metrics`) for Y, accuracy
for a 1-d y. `MultiLabelLogisticRegressionCV` chooses C by k-fold cross-validation, every C and
fold in one batched call (`miml_jax.model_selection`). Shapes are padded (by at most an eighth)
before solving, so that fits of similar sizes reuse one compiled solver.
"""

import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import label_binarize
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from sklearn.utils.validation import validate_data

from miml_jax import metrics
from miml_jax import model_selection
from miml_jax import scaling
from miml_jax.solvers import fit_logistic


def _bucket(size: int, least: int) -> int:
  """size rounded up to a multiple of an eighth of the power of two below it (at least
  `least`): fits of similar sizes share one compiled solver, for at most 1/8 more work
  (5,888 features are solved as 6,144)."""
  size = int(size)
  if size <= least:
    return least
  step = max(1, (1 << (size - 1).bit_length() - 1) // 8)
  return -(-size // step) * step


def _pad(X, Y):
  """X (n, d), Y (n, L) padded with zero rows, features and labels to `_bucket` sizes, and the
  (1, n') mask of the real rows. Zero features get zero weights at the optimum (either penalty)
  and masked rows and extra labels do not enter the real labels' problems."""
  n, d = X.shape
  L = Y.shape[1]
  Xp = np.zeros((_bucket(n, 16), _bucket(d, 8)), np.float32)
  Xp[:n, :d] = X
  Yp = np.zeros((len(Xp), _bucket(L, 1)))
  Yp[:n, :L] = Y
  mask = np.zeros((1, len(Xp)), bool)
  mask[0, :n] = True
  return Xp, Yp, mask


class MultiLabelLogisticRegression(ClassifierMixin, BaseEstimator):
  """One L1- (or L2-) regularised logistic regression per label, fitted together.

  Parameters
  ----------
  penalty : {'l1', 'l2'}, default='l1'
  C : float or array of shape (n_labels,), default=1.0
      Inverse regularisation strength, as liblinear's C.
  solver : {'newton', 'fista'}, default='newton'
      The algorithm (Table 1's newton_* and fista_* methods): proximal Newton on a working set
      (L1) or Newton in sample space (L2); or FISTA. Both stop on the same optimality measure.
  scaling : {'standardize', 'none', 'max'}, default='standardize'
      Feature scaling from the training data before the fit (see `miml_jax.scaling`).
  fit_intercept : bool, default=True
  intercept_scaling : float, default=1.0
      As liblinear: the intercept is the penalised weight of a constant feature of this value.
  tol : float, default=1e-4
      Relative tolerance of the solver's optimality measure.
  max_iter : int, default=10000
  warm_start : bool, default=False
      As scikit-learn's: a new `fit` starts from the last one's `coef_` and `intercept_`
      (same features and labels) instead of zero, e.g. along a path of C. The tolerance means
      the same from any start (it is relative to the optimality measure at zero).

  Attributes
  ----------
  classes_ : ndarray
      arange(n_labels) for an indicator Y; the class labels for a 1-d y.
  coef_ : ndarray of shape (n_labels, n_features), in raw-feature units
      (1, n_features) for a binary y.
  intercept_ : ndarray of shape (n_labels,)
  n_iter_, converged_, objective_ : ndarray of shape (n_labels,)
  n_features_in_ : int
  feature_names_in_ : ndarray of shape (n_features_in_,), when X has string column names.

  Examples
  --------
  >>> clf = MultiLabelLogisticRegression(C=1.0).fit(X, Y)    # Y: (n, n_labels) in {0, 1}
  >>> clf.predict_proba(X_new)                                # (n_new, n_labels) sigmoids
  >>> clf.score(X_test, Y_test)                               # MIML average precision
  """

  def __init__(self, penalty='l1', C=1.0, solver='newton', scaling='standardize',
               fit_intercept=True, intercept_scaling=1.0, tol=1e-4, max_iter=10_000,
               warm_start=False):
    self.penalty = penalty
    self.solver = solver
    self.C = C
    self.scaling = scaling
    self.fit_intercept = fit_intercept
    self.intercept_scaling = intercept_scaling
    self.tol = tol
    self.max_iter = max_iter
    self.warm_start = warm_start

  def __sklearn_tags__(self):
    tags = super().__sklearn_tags__()
    tags.classifier_tags.multi_label = True
    tags.target_tags.multi_output = True
    return tags

  def _check_params(self, C):
    if self.penalty not in ('l1', 'l2'):
      raise ValueError(f"penalty must be 'l1' or 'l2', got {self.penalty!r}")
    if self.solver not in ('newton', 'fista'):
      raise ValueError(f"solver must be 'newton' or 'fista', got {self.solver!r}")
    if self.scaling not in scaling.KINDS:
      raise ValueError(f'scaling must be one of {", ".join(scaling.KINDS)}, got '
                       f'{self.scaling!r}')
    C = np.asarray(C, np.float64)
    if not C.size or not np.all(np.isfinite(C)) or np.any(C <= 0):
      raise ValueError(f'C must be finite and positive, got {C!r}')
    for name in ('tol', 'intercept_scaling'):
      value = getattr(self, name)
      if not np.isfinite(value) or value <= 0:
        raise ValueError(f'{name} must be finite and positive, got {value!r}')
    if int(self.max_iter) < 1:
      raise ValueError(f'max_iter must be at least 1, got {self.max_iter!r}')

  def _encode_targets(self, y):
    """Sets `classes_` and the kind of target; returns the 0/1 label matrix (n, L)."""
    if y.ndim == 2 and y.shape[1] == 1 and not np.isin(y, (0, 1)).all():
      y = y[:, 0]   # one output of class labels: the 1-d problem
    if y.ndim == 2:
      if not np.isin(y, (0, 1)).all():
        raise ValueError('a 2-d y must be a 0/1 label indicator matrix (n_samples, n_labels); '
                         'several outputs of class labels are not supported')
      self._target = 'multilabel'
      self.classes_ = np.arange(y.shape[1])
      return y.astype(np.float64)
    check_classification_targets(y)
    self.classes_ = np.unique(y)
    if len(self.classes_) < 2:
      raise ValueError(f'this solver needs samples of at least 2 classes in the data, but the '
                       f'data contains only one class: {self.classes_[0]!r}')
    if len(self.classes_) == 2:
      self._target = 'binary'
      return (y == self.classes_[1]).astype(np.float64)[:, None]
    self._target = 'multiclass'
    return label_binarize(y, classes=self.classes_).astype(np.float64)

  def _fit_labels(self, X, Y, C, init=None):
    """Solves every label of Y at once (shapes padded), from init (coef (L, d), intercept (L,))
    if given; returns the fit for the real labels."""
    n, d = X.shape
    L = Y.shape[1]
    Xp, Yp, mask = _pad(X, Y)
    C = np.broadcast_to(np.asarray(C, np.float64), (L,))
    Cp = np.concatenate([C, np.ones(Yp.shape[1] - L)])
    shift, scale = scaling.fit_scaling(Xp, mask, self.scaling)
    if init is not None:
      coef, intercept = np.zeros((1, Xp.shape[1], Yp.shape[1])), np.zeros((1, Yp.shape[1]))
      coef[0, :d, :L], intercept[0, :L] = init[0].T, init[1]
      init = (coef, intercept)
    fit = fit_logistic(Xp, Yp, penalty=self.penalty, C=Cp, method=self.solver,
                       fit_intercept=self.fit_intercept,
                       intercept_scaling=self.intercept_scaling, tol=self.tol,
                       max_iter=int(self.max_iter), train_mask=mask, shift=shift,
                       scale=scale, init=init)
    coef = np.asarray(fit.coef[0], np.float64)[:d, :L]
    return (coef.T, np.asarray(fit.intercept[0], np.float64)[:L],
            np.asarray(fit.n_iter[0])[:L], np.asarray(fit.converged[0])[:L],
            np.asarray(fit.objective[0], np.float64)[:L])

  def fit(self, X, y):
    """X: (n, d) features; y: (n, n_labels) 0/1, or 1-d class labels. Returns self."""
    self._check_params(self.C)
    X, y = validate_data(self, X, y, multi_output=True, dtype=np.float32, y_numeric=False)
    Y = self._encode_targets(np.asarray(y))
    C = self.C
    if np.ndim(C) and len(np.ravel(C)) != Y.shape[1]:
      raise ValueError(f'C has {len(np.ravel(C))} values for {Y.shape[1]} labels')
    init = None
    if self.warm_start and getattr(self, 'coef_', None) is not None:
      if self.coef_.shape != (Y.shape[1], X.shape[1]):
        raise ValueError(f'warm_start: the last fit had coef_ of shape {self.coef_.shape}; '
                         f'this one needs {(Y.shape[1], X.shape[1])}')
      init = (self.coef_, self.intercept_)
    (self.coef_, self.intercept_, self.n_iter_, self.converged_,
     self.objective_) = self._fit_labels(X, Y, C, init)
    self._warn_unconverged()
    return self

  def _warn_unconverged(self):
    if not self.converged_.all():
      stopped = self.n_iter_[~self.converged_]
      warnings.warn(
          f'{int((~self.converged_).sum())} of {len(self.converged_)} labels did not meet '
          f'tol={self.tol}: ' + ('they ran max_iter iterations; raise max_iter'
                                 if np.all(stopped >= self.max_iter) else
                                 'they stopped where float32 rounding stops progress (or at '
                                 'max_iter); a larger tol is as far as they go')
          + ' (converged_, n_iter_ say which)', ConvergenceWarning, stacklevel=3)

  def decision_function(self, X):
    """Margins Xw + b: (n, n_labels), or (n,) for a binary y."""
    check_is_fitted(self)
    X = validate_data(self, X, reset=False, dtype=np.float64)
    margins = X @ self.coef_.T + self.intercept_
    return margins[:, 0] if self._target == 'binary' else margins

  def predict_proba(self, X):
    """(n, n_labels) independent per-label probabilities for an indicator Y (sigmoids, not
    normalised); (n, n_classes) class probabilities for a 1-d y."""
    p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
    if self._target == 'binary':
      return np.stack([1.0 - p, p], axis=1)
    if self._target == 'multiclass':
      return p / p.sum(axis=1, keepdims=True)
    return p

  def predict_log_proba(self, X):
    return np.log(self.predict_proba(X))

  def predict(self, X):
    """(n, n_labels) 0/1 (a label where its margin is positive), or class labels (n,)."""
    margins = self.decision_function(X)
    if self._target == 'multilabel':
      return (margins > 0).astype(int)
    if self._target == 'binary':
      return self.classes_[(margins > 0).astype(int)]
    return self.classes_[np.argmax(margins, axis=1)]

  def score(self, X, y, sample_weight=None):
    """MIML average precision of the label ranking (`miml_jax.metrics`) for a 0/1 label matrix
    y (higher is better, at most 1); mean accuracy for a 1-d y, as every classifier."""
    if np.ndim(y) == 2 and self._target == 'multilabel':
      if sample_weight is not None:
        raise ValueError('sample_weight is not supported for the multi-label score')
      return float(metrics.evaluate(np.asarray(y), self.decision_function(X))[
          'average_precision'])
    return super().score(X, y, sample_weight=sample_weight)


class MultiLabelLogisticRegressionCV(MultiLabelLogisticRegression):
  """`MultiLabelLogisticRegression` with C chosen by k-fold cross-validation on the training
  data, as `LogisticRegressionCV` does for one label: every C of the grid and every fold in one
  batched solver call, then a refit on all the data at the chosen C.

  Parameters
  ----------
  Cs : sequence of float, default=(0.001, 0.003, ..., 10)
  cv : int, default=5
      Folds (shuffled with `random_state`).
  select : {'per_label', 'global'}, default='per_label'
      One C per label, minimising its held-out log loss, or one C for all, maximising the
      held-out MIML average precision.
  random_state : int, default=0
  penalty, solver, scaling, fit_intercept, intercept_scaling, tol, max_iter :
      As `MultiLabelLogisticRegression`.

  Attributes
  ----------
  C_ : ndarray of shape (n_labels,), the chosen C of each label.
  Cs_ : ndarray of shape (n_Cs,)
  cv_log_loss_ : ndarray of shape (n_Cs, n_labels), mean held-out log loss.
  cv_average_precision_ : ndarray of shape (n_Cs,), held-out average precision.
  And those of `MultiLabelLogisticRegression`.
  """

  def __init__(self, Cs=model_selection.DEFAULT_CS, cv=5, select='per_label', random_state=0,
               penalty='l1', solver='newton', scaling='standardize', fit_intercept=True,
               intercept_scaling=1.0, tol=1e-4, max_iter=10_000):
    # Not super().__init__: that would set C, which is not a parameter here.
    self.penalty = penalty
    self.solver = solver
    self.scaling = scaling
    self.fit_intercept = fit_intercept
    self.intercept_scaling = intercept_scaling
    self.tol = tol
    self.max_iter = max_iter
    self.Cs = Cs
    self.cv = cv
    self.select = select
    self.random_state = random_state

  def fit(self, X, y):
    """As `MultiLabelLogisticRegression.fit`, C chosen by cross-validation first."""
    Cs = np.asarray(self.Cs, np.float64)
    if Cs.ndim != 1:
      raise ValueError(f'Cs must be a sequence of numbers, got {self.Cs!r}')
    if self.select not in ('per_label', 'global'):
      raise ValueError(f"select must be 'per_label' or 'global', got {self.select!r}")
    self._check_params(Cs)
    X, y = validate_data(self, X, y, multi_output=True, dtype=np.float32, y_numeric=False)
    Y = self._encode_targets(np.asarray(y))
    if not 2 <= int(self.cv) <= len(X):
      raise ValueError(f'cv must be a number of folds in 2..{len(X)}, got {self.cv!r}')
    result = model_selection.cross_validate(
        X, Y, Cs, folds=int(self.cv), select=self.select, penalty=self.penalty,
        scaling_kind=self.scaling, seed=self.random_state, tol=self.tol,
        max_iter=int(self.max_iter), method=self.solver)
    self.Cs_, self.C_ = result.Cs, result.best_C
    self.cv_log_loss_, self.cv_average_precision_ = result.log_loss, result.average_precision
    (self.coef_, self.intercept_, self.n_iter_, self.converged_,
     self.objective_) = self._fit_labels(X, Y, self.C_)
    self._warn_unconverged()
    return self
