"""The scikit-learn side: the estimators pass `check_estimator`, work in pipelines, searches and
cross-validation, and the scorers compute the MIML metrics."""

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.exceptions import NotFittedError
from sklearn.metrics import label_ranking_average_precision_score
from sklearn.model_selection import GridSearchCV
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from miml_jax import metrics
from miml_jax import scorers
from miml_jax.estimator import MultiLabelLogisticRegression
from miml_jax.estimator import MultiLabelLogisticRegressionCV
from miml_jax.solvers.liblinear import fit_liblinear
from tests import conftest
from tests.test_solvers import cnn_like


@parametrize_with_checks([MultiLabelLogisticRegression(),
                          MultiLabelLogisticRegressionCV(Cs=(0.1, 1.0), cv=3)])
def test_scikit_learn_conformance(estimator, check):
  """Every check of scikit-learn's `check_estimator`, with the multi-label tags; none is
  expected to fail."""
  with warnings.catch_warnings():
    # A few checks fit with max_iter=1 or on noise: the warning is what they should get.
    warnings.simplefilter('ignore', ConvergenceWarning)
    check(estimator)


def test_warm_start_follows_a_path_of_C_to_the_same_optima():
  X, Y = cnn_like(np.random.default_rng(5), n=120, d=30)
  clf = MultiLabelLogisticRegression(warm_start=True)
  warm_iterations = cold_iterations = 0
  for C in (0.1, 0.3, 1.0):
    clf.set_params(C=C).fit(X, Y)
    cold = MultiLabelLogisticRegression(C=C).fit(X, Y)
    np.testing.assert_allclose(clf.objective_, cold.objective_, rtol=1e-6)
    if C > 0.1:   # started from the last C's weights
      warm_iterations += clf.n_iter_.sum()
      cold_iterations += cold.n_iter_.sum()
  assert warm_iterations < cold_iterations
  with pytest.raises(ValueError, match=r'warm_start: the last fit had coef_ of shape \(3, 30\)'):
    clf.fit(X[:, :20], Y)


def test_multi_label_api():
  rng = np.random.default_rng(9)
  X, Y = cnn_like(rng)
  clf = MultiLabelLogisticRegression(C=1.0)
  assert clf.get_params()['C'] == 1.0 and clf.set_params(C=0.5) is clf
  with pytest.raises(NotFittedError):
    clf.predict(X)
  clf.fit(X, Y)
  assert clf.coef_.shape == (3, X.shape[1]) and clf.intercept_.shape == (3,)
  np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
  assert clf.n_features_in_ == X.shape[1]
  proba = clf.predict_proba(X)
  assert proba.shape == Y.shape and np.all((proba > 0) & (proba < 1))
  np.testing.assert_array_equal(clf.predict(X), (clf.decision_function(X) > 0).astype(int))
  np.testing.assert_allclose(proba, 1 / (1 + np.exp(-(X @ clf.coef_.T + clf.intercept_))))
  assert (clf.predict(X) == Y).mean() > 0.8
  assert np.mean(clf.coef_ == 0) > 0.3  # L1 selects
  assert clf.score(X, Y) == pytest.approx(
      float(metrics.evaluate(Y, clf.decision_function(X))['average_precision']))
  with pytest.raises(ValueError, match='features'):
    clf.decision_function(X[:, :5])


@pytest.mark.slow
def test_the_same_optimum_as_liblinear_through_the_estimator():
  """Padding shapes changes nothing: the estimator's weights are liblinear's
  (scaling 'none', raw features)."""
  rng = np.random.default_rng(4)
  X, Y = cnn_like(rng, n=90, d=37, L=3)
  X = (X - X.mean(0)) / X.std(0)
  for penalty in ('l1', 'l2'):
    with warnings.catch_warnings():
      # float32 stops short of 1e-8 (as far as its rounding allows), and says so.
      warnings.simplefilter('ignore', ConvergenceWarning)
      ours = MultiLabelLogisticRegression(penalty=penalty, C=0.5, scaling='none', tol=1e-8,
                                          max_iter=50_000).fit(X, Y)
    ref = fit_liblinear(X, Y, penalty=penalty, C=0.5, tol=1e-10, max_iter=1_000_000)
    np.testing.assert_allclose(ours.objective_, np.asarray(ref.objective), rtol=1e-5)
    np.testing.assert_allclose(ours.decision_function(X),
                               X @ np.asarray(ref.coef) + np.asarray(ref.intercept), rtol=1e-3,
                               atol=1e-3)


@pytest.mark.slow
def test_binary_and_multiclass_targets():
  rng = np.random.default_rng(1)
  X = rng.standard_normal((60, 4))
  y = np.where(X[:, 0] + 0.3 * rng.standard_normal(60) > 0, 'dog', 'cat')
  clf = MultiLabelLogisticRegression(C=10.0).fit(X, y)
  np.testing.assert_array_equal(clf.classes_, ['cat', 'dog'])
  assert clf.decision_function(X).shape == (60,) and clf.predict_proba(X).shape == (60, 2)
  assert (clf.predict(X) == y).mean() > 0.85
  z = np.digitize(X[:, 1], [-0.5, 0.5])   # three classes along one feature
  multi = MultiLabelLogisticRegression(C=10.0).fit(X, z)
  np.testing.assert_array_equal(multi.classes_, [0, 1, 2])
  np.testing.assert_allclose(multi.predict_proba(X).sum(1), 1.0)
  assert (multi.predict(X) == z).mean() > 0.8
  with pytest.raises(ValueError, match='only one class'):
    MultiLabelLogisticRegression().fit(X, np.ones(60))
  with pytest.raises(ValueError):
    MultiLabelLogisticRegression().fit(X, X[:, 0])   # a continuous target


def test_convergence_warning():
  X, Y = cnn_like(np.random.default_rng(2))
  with pytest.warns(ConvergenceWarning, match='did not meet tol=.*raise max_iter'):
    MultiLabelLogisticRegression(max_iter=1).fit(X, Y)


@pytest.mark.slow
def test_cross_val_predict_grid_search_and_cv():
  X, Y = cnn_like(np.random.default_rng(3), n=90, d=30)
  proba = cross_val_predict(MultiLabelLogisticRegression(), X, Y, cv=3, method='predict_proba')
  assert proba.shape == Y.shape and np.all((proba > 0) & (proba < 1))
  search = GridSearchCV(MultiLabelLogisticRegression(), {'C': [0.1, 1.0]}, cv=3,
                        scoring=scorers.SCORERS, refit='miml_average_precision').fit(X, Y)
  assert search.best_params_['C'] in (0.1, 1.0)
  assert set(search.cv_results_) >= {f'mean_test_miml_{n}' for n in metrics.NAMES}
  assert np.all(search.cv_results_['mean_test_miml_coverage'] <= 0)   # losses come negated
  cv = MultiLabelLogisticRegressionCV(Cs=(0.01, 0.1, 1.0), cv=3).fit(X, Y)
  assert cv.C_.shape == (3,) and set(cv.C_) <= {0.01, 0.1, 1.0}
  assert cv.cv_log_loss_.shape == (3, 3)
  np.testing.assert_array_equal(cv.C_, np.asarray(cv.Cs_)[cv.cv_log_loss_.argmin(0)])


def test_scorers_match_an_independent_reference():
  rng = np.random.default_rng(5)
  Y = (rng.random((40, 5)) < 0.4).astype(int)
  Y[Y.sum(1) == 0, 0] = 1
  scores = rng.standard_normal((40, 5))    # no ties
  clf = _Fixed(scores)
  ap = scorers.SCORERS['miml_average_precision'](clf, np.arange(40), Y)
  assert ap == pytest.approx(label_ranking_average_precision_score(Y, scores))
  loss = scorers.SCORERS['miml_hamming_loss'](clf, np.arange(40), Y)
  assert loss == pytest.approx(-np.mean((scores > 0) != Y))


class _Fixed(ClassifierMixin, BaseEstimator):
  """A fitted 'classifier' whose decision values are given (rows indexed by X)."""

  def __init__(self, scores):
    self._scores = scores
    self.classes_ = np.arange(scores.shape[1])

  def decision_function(self, X):
    return self._scores[np.asarray(X)]


@pytest.mark.slow
def test_a_pipeline_from_images_is_a_tagger(tmp_path):
  from miml_jax import VGG16Features
  root = conftest.tiny_dataset(tmp_path, n=12)
  from miml_jax import datasets
  data = datasets.load(str(root))
  tagger = make_pipeline(VGG16Features(weights=str(tmp_path / 'w.safetensors'), image_size=32),
                         MultiLabelLogisticRegression())
  tagger.fit(data.image_paths, data.labels)
  assert tagger.predict(data.image_paths).shape == (12, 2)
  assert tagger.predict_proba(data.image_paths[:3]).shape == (3, 2)
  # Arrays instead of files: the same features.
  from PIL import Image
  arrays = [np.asarray(Image.open(p).convert('RGB')) for p in data.image_paths[:3]]
  features = tagger[0]
  np.testing.assert_allclose(features.transform(arrays),
                             features.transform(data.image_paths[:3]), rtol=1e-5, atol=1e-5)
  assert features.n_features_out_ == 5888
