"""The batched JAX solvers against scikit-learn's liblinear, at the same C and a tight tolerance."""

import contextlib
import dataclasses
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from miml_jax import scaling
from miml_jax.plumbing.errors import UserError
from miml_jax.solvers import fista
from miml_jax.solvers import fit_logistic
from miml_jax.solvers import l2_newton_cg
from miml_jax.solvers import l2_newton
from miml_jax.solvers import make_problem
from miml_jax.solvers import objective
from miml_jax.solvers import problem as problem_module
from miml_jax.solvers import l1_prox_newton
from miml_jax.solvers import steps
from miml_jax.solvers import liblinear
from miml_jax.solvers.liblinear import fit_liblinear
from miml_jax.solvers.objective import log1p_exp


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def cnn_like(rng, n=120, d=60, L=3):
  """Non-negative, mean-dominated, sparse-ish features, like pooled ReLU activations."""
  X = np.maximum(rng.standard_normal((n, d)) * 2 + 1, 0) * rng.uniform(1, 50, d)
  w = rng.standard_normal((d, L)) * (rng.random((d, L)) < 0.1) / X.std(0)[:, None]
  Y = ((X - X.mean(0)) @ w + 0.5 * rng.standard_normal((n, L)) > 0).astype(float)
  return X, Y


def liblinear_objective(X, y, penalty, C, fit_intercept=True, s=1.0, tol=1e-10):
  clf = LogisticRegression(solver='liblinear', C=C, tol=tol, max_iter=1_000_000,
                           fit_intercept=fit_intercept, intercept_scaling=s,
                           **liblinear.sklearn_penalty(penalty)).fit(X, y)
  w, b = clf.coef_[0], (clf.intercept_[0] if fit_intercept else 0.0)
  beta = b / s if fit_intercept else 0.0
  reg = np.abs(w).sum() + abs(beta) if penalty == 'l1' else 0.5 * (w @ w + beta * beta)
  margins = X @ w + b
  return reg + C * np.logaddexp(0, -(2 * y - 1) * margins).sum(), clf


@contextlib.contextmanager
def matrix_free_from(rows):
  """The Newton solvers choose their matrix-free methods from `rows` training rows (None: as
  they are)."""
  with contextlib.ExitStack() as stack:
    if rows is not None:
      stack.enter_context(mock.patch.object(problem_module, 'MATRIX_FREE_ROWS', rows))
    yield


@pytest.mark.slow
@pytest.mark.parametrize('penalty,method,sub', [
    ('l1', 'auto', 'cd'), ('l1', 'auto', 'fista'), ('l1', 'auto', 'matrix_free'),
    ('l1', 'fista', None), ('l2', 'auto', None), ('l2', 'auto', 'matrix_free'),
    ('l2', 'fista', None)])
@pytest.mark.parametrize('fit_intercept,s', [(True, 1.0), (True, 10.0), (False, 1.0)])
def test_matches_liblinear_on_raw_cnn_like_features(penalty, method, sub, fit_intercept, s):
  rng = np.random.default_rng(0)
  X, Y = cnn_like(rng)
  Xtest, _ = cnn_like(rng)
  C = np.array([1.0, 0.1, 0.5])
  # 'matrix_free': what every problem of 2,048 rows or more gets (L2: truncated Newton).
  with matrix_free_from(1 if sub == 'matrix_free' else None):
    fit = fit_logistic(X, Y, penalty=penalty, C=C, fit_intercept=fit_intercept,
                       intercept_scaling=s, tol=1e-8, max_iter=50_000, method=method,
                       l1_subproblem=None if sub == 'matrix_free' else sub)
  if s == 1.0:  # a cheap intercept (s = 10) makes L2 slower to certify; the objective still holds
    assert np.all(fit.converged)
  for j in range(Y.shape[1]):
    ref, clf = liblinear_objective(X, Y[:, j], penalty, C[j], fit_intercept, s)
    assert float(fit.objective[j]) <= ref * (1 + 1e-5)
    # The objective the solver reports is the objective of the weights it returns.
    recomputed = objective(X, Y[:, j:j + 1], fit.coef[:, j:j + 1], fit.intercept[j:j + 1],
                                 penalty=penalty, C=C[j], intercept_scaling=s,
                                 fit_intercept=fit_intercept)
    np.testing.assert_allclose(recomputed[0], fit.objective[j], rtol=1e-10)
    ours = Xtest @ np.asarray(fit.coef[:, j]) + float(fit.intercept[j])
    assert np.mean(np.sign(ours) == np.sign(clf.decision_function(Xtest))) >= 0.99


def test_float32_reaches_1e4_of_liblinear():
  rng = np.random.default_rng(1)
  X, Y = cnn_like(rng)
  with jax.enable_x64(False):
    fit = fit_logistic(X.astype(np.float32), Y, tol=1e-5, max_iter=20_000)
  assert fit.objective.dtype == np.float32
  for j in range(Y.shape[1]):
    ref, _ = liblinear_objective(X, Y[:, j], 'l1', 1.0)
    assert float(fit.objective[j]) <= ref * (1 + 1e-4)


@pytest.mark.parametrize('kind', ['standardize', 'max'])
def test_scaled_problem_matches_liblinear_on_scaled_features(kind):
  rng = np.random.default_rng(2)
  X, Y = cnn_like(rng)
  mask = np.ones((1, len(X)), bool)
  shift, scale = scaling.fit_scaling(X, mask, kind)
  fit = fit_logistic(X, Y, tol=1e-8, max_iter=50_000, shift=shift[0], scale=scale[0])
  Xs = (X - shift[0]) / scale[0]
  for j in range(Y.shape[1]):
    ref, clf = liblinear_objective(Xs, Y[:, j], 'l1', 1.0)
    assert float(fit.objective[j]) <= ref * (1 + 1e-6)
    # Weights come back in raw units: the same decisions on raw features.
    np.testing.assert_allclose(X @ np.asarray(fit.coef[:, j]) + float(fit.intercept[j]),
                               clf.decision_function(Xs), atol=1e-3 * np.abs(
                                   clf.decision_function(Xs)).max())


@pytest.mark.slow
@pytest.mark.parametrize('penalty', ['l1', 'l2'])
@pytest.mark.parametrize('matrix_free', [False, True])
def test_batched_over_splits_equals_separate_calls(penalty, matrix_free):
  rng = np.random.default_rng(3)
  X, Y = cnn_like(rng, n=90)
  # Splits of different sizes: Newton pads each split's training rows to the largest.
  masks = np.stack([rng.permutation(90) < k for k in (60, 60, 50, 70)])
  shift, scale = scaling.fit_scaling(X, masks, 'standardize')
  with matrix_free_from(1 if matrix_free else None):
    batched = fit_logistic(X, Y, penalty=penalty, tol=1e-8, max_iter=20_000, train_mask=masks,
                           shift=shift, scale=scale)
    alone = [fit_logistic(X[masks[s]], Y[masks[s]], penalty=penalty, tol=1e-8,
                          max_iter=20_000, shift=shift[s], scale=scale[s]) for s in range(4)]
  for s, alone in enumerate(alone):
    np.testing.assert_allclose(batched.objective[s], alone.objective, rtol=1e-7)
    np.testing.assert_allclose(batched.coef[s], alone.coef, atol=1e-5 * np.abs(alone.coef).max())


@pytest.mark.slow
@pytest.mark.parametrize('penalty,method,matrix_free', [
    ('l1', 'newton', False), ('l1', 'newton', True), ('l2', 'newton', False),
    ('l2', 'newton', True), ('l1', 'fista', False), ('l2', 'fista', False)])
def test_a_warm_start_reaches_liblinears_optimum_in_fewer_iterations(penalty, method,
                                                                     matrix_free):
  # Cross-validation's use: each fold starts from the fit on its whole split.
  rng = np.random.default_rng(4)
  X, Y = cnn_like(rng, n=150)
  whole = np.ones((1, 150), bool)
  folds = np.stack([rng.permutation(150) < 100 for _ in range(3)])
  shift, scale = scaling.fit_scaling(X, np.concatenate([whole, folds]), 'standardize')
  kw = dict(penalty=penalty, tol=1e-8, max_iter=20_000, method=method)
  with matrix_free_from(1 if matrix_free else None):
    full = fit_logistic(X, Y, train_mask=whole, shift=shift[:1], scale=scale[:1], **kw)
    cold = fit_logistic(X, Y, train_mask=folds, shift=shift[1:], scale=scale[1:], **kw)
    warm = fit_logistic(X, Y, train_mask=folds, shift=shift[1:], scale=scale[1:], **kw,
                        init=(np.repeat(full.coef, 3, 0), np.repeat(full.intercept, 3, 0)))
  assert np.all(warm.converged)
  if method == 'newton':   # FISTA's iterations hardly depend on the start: its rate does not
    assert np.sum(warm.n_iter) < np.sum(cold.n_iter)
  for s in range(3):
    Xs = (X[folds[s]] - shift[1 + s]) / scale[1 + s]
    for j in range(Y.shape[1]):
      reference, _ = liblinear_objective(Xs, Y[folds[s], j], penalty, 1.0)
      assert warm.objective[s, j] <= reference * (1 + 1e-6)
  # From the optimum itself (raw units in, raw units out) a problem is solved at once.
  again = fit_logistic(X, Y, train_mask=folds, shift=shift[1:], scale=scale[1:], **kw,
                       init=(warm.coef, warm.intercept))
  np.testing.assert_allclose(again.objective, warm.objective, rtol=1e-9)
  assert np.all(again.n_iter <= (fista._CHECK_EVERY if method == 'fista' else 1))


def test_a_warm_start_of_the_wrong_shape_is_named():
  X, Y = cnn_like(np.random.default_rng(0), n=40, d=8, L=2)
  with pytest.raises(UserError, match=r'init must be coef, intercept of shapes \(8, 2\) and '
                     r'\(2,\); got \(9, 2\) and \(2,\)'):
    fit_logistic(X, Y, init=(np.zeros((9, 2)), np.zeros(2)))
  with pytest.raises(UserError, match='init holds NaN'):
    fit_logistic(X, Y, init=(np.full((8, 2), np.nan), np.zeros(2)))
  with pytest.raises(UserError, match='init must be a pair'):
    fit_logistic(X, Y, init=np.zeros((8, 2)))


@pytest.mark.slow
@pytest.mark.parametrize('sub', ['cd', 'fista'])
def test_l1_newton_grows_its_working_set_to_the_support(sub):
  """A working set far smaller than the supports: solved again with larger ones, same optimum."""
  rng = np.random.default_rng(11)
  X, Y = cnn_like(rng)
  C = np.array([1.0, 0.1, 5.0])
  fit = fit_logistic(X, Y, C=C, tol=1e-8, max_iter=5_000, newton_block=4, l1_subproblem=sub)
  assert np.all(fit.converged)
  assert np.all((np.asarray(fit.coef) != 0).sum(axis=0)[[0, 2]] > 8)
  for j in range(Y.shape[1]):
    ref, _ = liblinear_objective(X, Y[:, j], 'l1', C[j])
    assert float(fit.objective[j]) <= ref * (1 + 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('sub', ['cd', 'fista'])
def test_l1_newton_does_not_stop_on_a_working_set_just_too_small(sub):
  """A support a little larger than the set, in float32: progress stalls with a few slots left
  for the weights that would enter. The solver must grow the set, not stop above the optimum
  (it once stopped 4e-6 above here, and 16% above on the full Scene data)."""
  rng = np.random.default_rng(12)
  X, Y = cnn_like(rng, n=300, d=200, L=1)
  ref, clf = liblinear_objective(X, Y[:, 0], 'l1', 20.0)
  support = int(np.sum(clf.coef_ != 0))
  with jax.enable_x64(False):
    fit = fit_logistic(X.astype(np.float32), Y, C=20.0, tol=1e-8, max_iter=5_000,
                       newton_block=support - 2, l1_subproblem=sub)
  assert float(fit.objective[0]) <= ref * (1 + 1e-6)


@pytest.mark.slow
def test_l1_newton_keeps_its_working_set_when_rounding_stops_it():
  """Asked for more than float32 can give, every problem stops at the limit of rounding: with
  all of the remaining violation inside the set, growing it cannot help and must not happen (it
  once recompiled and solved again at twice the block, 3x the time on msrc_v2)."""
  rng = np.random.default_rng(13)
  X, Y = cnn_like(rng, n=300, d=200, L=2)
  X = (X - X.mean(0)) / X.std(0)   # converges to rounding fast (supports of 48 and 42)
  grown = []
  solve = l1_prox_newton.solve

  def recording(*args, block, **kwargs):
    grown.append(block)
    return solve(*args, block=block, **kwargs)

  with jax.enable_x64(False), mock.patch.object(l1_prox_newton, 'solve', recording):
    fit = fit_logistic(X.astype(np.float32), Y, C=0.2, tol=1e-12, max_iter=5_000,
                       newton_block=64)
  supports = (np.asarray(fit.coef) != 0).sum(axis=0)
  assert np.all(supports >= 32) and np.all(supports <= 48), supports   # half the set or more
  assert grown == [64]
  for j in range(Y.shape[1]):
    ref, _ = liblinear_objective(X, Y[:, j], 'l1', 0.2, tol=1e-8)
    assert float(fit.objective[j]) <= ref * (1 + 1e-5)


@pytest.mark.slow
def test_l1_newton_batch_shrinks_to_the_problems_still_going():
  """Problems that finish late go on in smaller batches (their splits x labels), those whose
  support outgrew the set alone at a larger one; every problem still reaches liblinear's optimum
  (some stop at float32's rounding before the tolerance, as in one batch)."""
  rng = np.random.default_rng(21)
  X, Y = cnn_like(rng, n=200, d=120, L=8)
  masks = np.stack([rng.permutation(200) < 150 for _ in range(4)])
  shift, scale = scaling.fit_scaling(X, masks, 'standardize')
  C = np.geomspace(0.05, 5, 8)            # supports from a few weights to more than the set
  batches = []
  solve = l1_prox_newton.solve

  def recording(problem, *args, block, **kwargs):
    batches.append((problem.num_splits, problem.num_labels, block))
    return solve(problem, *args, block=block, **kwargs)

  with jax.enable_x64(False), mock.patch.object(l1_prox_newton, 'solve', recording):
    fit = fit_logistic(X.astype(np.float32), Y, C=C, tol=1e-6, max_iter=5_000, train_mask=masks,
                       shift=shift, scale=scale, newton_block=16)
  assert batches[0] == (4, 8, 16)
  assert any(s * L < 32 for s, L, block in batches if block == 16), batches   # shrank
  assert any(block > 16 for _, _, block in batches), batches                   # grew
  assert np.all(np.asarray(fit.n_iter) >= 1)
  for s, mask in enumerate(masks):
    Xs = (X[mask] - shift[s]) / scale[s]
    for j in range(Y.shape[1]):
      ref, _ = liblinear_objective(Xs, Y[mask, j], 'l1', C[j], tol=1e-8)
      assert float(fit.objective[s, j]) <= ref * (1 + 1e-5), (s, j)


def test_l2_newton_batch_shrinks_to_the_problems_still_going():
  """Problems that need more iterations go on in a smaller batch (their splits x labels) from
  where they are; every problem still reaches liblinear's optimum."""
  rng = np.random.default_rng(22)
  X, Y = cnn_like(rng, n=120, d=40, L=8)
  masks = np.stack([rng.permutation(120) < 90 for _ in range(4)])
  shift, scale = scaling.fit_scaling(X, masks, 'standardize')
  C = np.geomspace(0.01, 100, 8)           # from a few iterations to many
  batches = []
  solve = l2_newton.solve

  def recording(problem, *args, **kwargs):
    batches.append((problem.num_splits, problem.num_labels))
    return solve(problem, *args, **kwargs)

  with mock.patch.object(l2_newton, 'solve', recording):
    fit = fit_logistic(X, Y, penalty='l2', C=C, tol=1e-8, max_iter=5_000, train_mask=masks,
                       shift=shift, scale=scale)
  assert batches[0] == (4, 8)
  assert len(batches) > 1 and all(s * L <= 8 for s, L in batches[1:]), batches
  assert np.all(fit.converged)
  for s, mask in enumerate(masks):
    Xs = (X[mask] - shift[s]) / scale[s]
    for j in range(Y.shape[1]):
      ref, _ = liblinear_objective(Xs, Y[mask, j], 'l2', C[j])
      assert float(fit.objective[s, j]) <= ref * (1 + 1e-7), (s, j)


@pytest.mark.slow
def test_liblinear_wrapper_agrees_and_handles_one_class_labels():
  rng = np.random.default_rng(4)
  X, Y = cnn_like(rng)
  Y[:, 1] = 1.0  # one class only
  masks = np.stack([rng.permutation(len(X)) < 80 for _ in range(2)])
  shift, scale = scaling.fit_scaling(X, masks, 'standardize')
  ours = fit_logistic(X, Y, tol=1e-8, max_iter=50_000, train_mask=masks, shift=shift,
                            scale=scale)
  ref = fit_liblinear(X, Y, tol=1e-10, max_iter=100_000, train_mask=masks, shift=shift,
                      scale=scale, n_jobs=2)
  for j in (0, 2):
    assert np.all(np.asarray(ours.objective[:, j]) <= ref.objective[:, j] * (1 + 1e-6))
  # A one-class label: a finite model leaning to that class, never NaN.
  assert np.all(np.isfinite(ours.coef)) and np.all(np.asarray(ours.intercept[:, 1]) > 0)
  assert np.all(ref.intercept[:, 1] == 1.0)


def test_degenerate_inputs_never_give_nan():
  rng = np.random.default_rng(5)
  X, Y = cnn_like(rng)
  X[:, :5] = 0.0           # all-zero columns
  X[:, 5] = 7.0            # a constant column
  X[:, 6] *= 1e6           # a huge one
  Y[:, 0] = 0.0            # a label without positives
  for kind in ('none', 'standardize'):
    shift, scale = scaling.fit_scaling(X, np.ones((1, len(X)), bool), kind)
    fit = fit_logistic(X, Y, tol=1e-6, max_iter=5_000, shift=shift[0], scale=scale[0])
    for a in fit:
      assert np.all(np.isfinite(np.asarray(a, np.float64)))
    assert np.all(np.asarray(fit.coef[:5]) == 0)


def test_standardize_matches_scikit_learn_per_split():
  from sklearn.preprocessing import StandardScaler
  rng = np.random.default_rng(8)
  X, _ = cnn_like(rng)
  X[:, 0] = 3.7            # constant: its float64 std is rounding noise (about 4e-16), not 0
  X[:, 1] = 0.0
  X[:, 2] = 1e4 + rng.normal(size=len(X))   # a large mean with a small spread
  masks = rng.random((3, len(X))) < 0.6
  X[masks[1], 3:13] = 0.0  # zero on one split's training rows only: one pass would lose it
  shift, scale = scaling.fit_scaling(X, masks, 'standardize')
  for s, mask in enumerate(masks):
    ref = StandardScaler().fit(X[mask].astype(np.float64))
    np.testing.assert_allclose(shift[s], ref.mean_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scale[s], ref.scale_, rtol=1e-9)
  assert np.all(scale[:, :2] == 1.0)
  assert np.all(scale[1, 3:13] == 1.0) and np.all(shift[1, 3:13] == 0.0)
  with pytest.raises(scaling.UserError, match='split 1 has no training rows'):
    scaling.fit_scaling(X, np.stack([masks[0], np.zeros(len(X), bool)]), 'standardize')


@pytest.mark.parametrize('penalty', ['l1', 'l2'])
def test_reports_non_convergence(penalty):
  X, Y = cnn_like(np.random.default_rng(6))
  fit = fit_logistic(X, Y, penalty=penalty, tol=1e-12, max_iter=3)
  assert not np.any(fit.converged) and np.all(np.asarray(fit.n_iter) == 3)
  assert np.all(np.asarray(fit.kkt) > 1e-12)


def test_compiles_once_for_same_shapes():
  rng = np.random.default_rng(7)
  X, Y = cnn_like(rng)
  fit_logistic(X, Y, C=1.0, max_iter=10, method='fista')
  before = fista.solve._cache_size()
  for C in (0.5, 2.0):
    fit_logistic(X * 2, 1 - Y, C=C, max_iter=10, tol=1e-3, method='fista')
  assert fista.solve._cache_size() == before
  fit_logistic(X, Y, C=1.0, max_iter=10)
  before = l1_prox_newton.solve._cache_size()
  for C in (0.5, 2.0):
    fit_logistic(X * 2, 1 - Y, C=C, max_iter=20, tol=1e-3)
  assert l1_prox_newton.solve._cache_size() == before
  fit_logistic(X, Y, penalty='l2', max_iter=10)
  before = l2_newton.solve._cache_size()
  fit_logistic(X * 2, 1 - Y, penalty='l2', C=0.5, max_iter=10, tol=1e-3)
  assert l2_newton.solve._cache_size() == before


def test_bad_arguments_are_named():
  X, Y = cnn_like(np.random.default_rng(8))
  with pytest.raises(UserError, match='penalty'):
    fit_logistic(X, Y, penalty='l3')
  with pytest.raises(UserError, match='method must be one of'):
    fit_logistic(X, Y, method='lbfgs')
  with pytest.raises(UserError, match='l1_subproblem must be one of cd, fista'):
    fit_logistic(X, Y, l1_subproblem='newton')
  with pytest.raises(UserError, match='only 0 and 1'):
    fit_logistic(X, Y * 2)
  X[0, 0] = np.nan
  with pytest.raises(UserError, match='NaN'):
    fit_logistic(X, Y)


@pytest.mark.parametrize('penalty', ['l1', 'l2'])
def test_matches_liblinear_on_real_features(lpips_weights, datasets_dir, penalty):
  """Real VGG16 features of 90 msrc_v2 images (at 64x64 to keep the test quick), float32."""
  from miml_jax import datasets
  from miml_jax import features
  data = datasets.load('msrc_v2', datasets_dir)
  rng = np.random.default_rng(0)
  rows = rng.choice(len(data.image_names), 90, replace=False)
  X = features.extract_features([data.image_paths[i] for i in rows], lpips_weights,
                                image_size=64, batch_size=30)
  Y = data.labels[rows][:, [0, 1, 2, 6, 9]].astype(float)    # building, grass, tree, sky, water
  masks = np.stack([rng.permutation(90) < 60 for _ in range(2)])
  shift, scale = scaling.fit_scaling(X, masks, 'standardize')
  with jax.enable_x64(False):
    ours = fit_logistic(X, Y, penalty=penalty, tol=1e-6, max_iter=20_000,
                              train_mask=masks, shift=shift, scale=scale)
  ref = fit_liblinear(X, Y, penalty=penalty, tol=1e-10, max_iter=1_000_000, train_mask=masks,
                      shift=shift, scale=scale, n_jobs=2)
  pos = np.einsum('sn,nl->sl', masks, Y)
  valid = (pos > 0) & (pos < 60)
  assert valid.sum() >= 8
  gap = (np.asarray(ours.objective, np.float64) - ref.objective) / ref.objective
  assert np.all(gap[valid] <= 1e-4)
  for s in range(2):
    test = ~masks[s]
    ours_dec = X[test] @ np.asarray(ours.coef[s], np.float64) + np.asarray(ours.intercept[s])
    ref_dec = X[test] @ ref.coef[s] + ref.intercept[s]
    assert np.mean(np.sign(ours_dec[:, valid[s]]) == np.sign(ref_dec[:, valid[s]])) >= 0.99


def test_the_liblinear_reference_is_l1_when_asked():
  """Whatever scikit-learn is installed, fit_liblinear's L1 is L1: sparse weights, where L2's
  are dense (scikit-learn before 1.8 ignores l1_ratio for liblinear and fits L2)."""
  X, Y = cnn_like(np.random.default_rng(3), n=200, d=80, L=2)
  X = (X - X.mean(0)) / X.std(0)
  l1 = fit_liblinear(X, Y, penalty='l1', C=0.05, tol=1e-8, max_iter=100_000)
  l2 = fit_liblinear(X, Y, penalty='l2', C=0.05, tol=1e-8, max_iter=100_000)
  assert np.mean(np.asarray(l1.coef) == 0) > 0.5
  assert np.mean(np.asarray(l2.coef) == 0) == 0


@pytest.mark.slow
@pytest.mark.parametrize('method', ['newton', 'fista'])
@pytest.mark.parametrize('penalty', ['l1', 'l2'])
def test_converged_means_the_optimum_on_badly_scaled_float32(method, penalty):
  """One meaning of converged: raw, badly scaled features (scales up to 50, mean-dominated) in
  float32, tol 1e-7. Whatever stops early says so; a problem that says converged is within 1e-5
  of liblinear's optimum, and `converged` is exactly `kkt <= tol`."""
  X, Y = cnn_like(np.random.default_rng(11), n=600, d=100, L=3)
  with jax.enable_x64(False):
    fit = fit_logistic(X.astype(np.float32), Y, penalty=penalty, C=1.0, tol=1e-7,
                       max_iter=3000, method=method)
  ref = fit_liblinear(X, Y, penalty=penalty, tol=1e-10, max_iter=1_000_000)
  coef, b = np.asarray(fit.coef, np.float64), np.asarray(fit.intercept, np.float64)
  z = np.vstack([coef, b[None]])
  reg = np.abs(z).sum(0) if penalty == 'l1' else 0.5 * np.square(z).sum(0)
  ours = reg + np.logaddexp(0, -(2 * Y - 1) * (X @ coef + b)).sum(0)
  gap = (ours - np.asarray(ref.objective)) / np.asarray(ref.objective)
  converged = np.asarray(fit.converged)
  assert np.all(gap[converged] <= 1e-5), (gap, converged, np.asarray(fit.kkt))
  np.testing.assert_array_equal(converged, np.asarray(fit.kkt) <= 1e-7)


@pytest.mark.slow
def test_the_solver_api_as_the_readme_shows_it():
  """A solver is a frozen dataclass; run(problem) gives (Params, SolverState), the same as
  fit_logistic's."""
  from miml_jax.solvers import FISTA, NewtonL2, ProxNewtonL1, make_problem
  rng = np.random.default_rng(21)
  X, Y = cnn_like(rng, n=80, d=20, L=2)
  masks = np.stack([rng.permutation(80) < 50 for _ in range(3)])
  shift, scale = scaling.fit_scaling(X, masks, 'standardize')
  with jax.enable_x64(False):
    problem = make_problem(X.astype(np.float32), Y, masks, shift, scale, C=0.5)
    for solver, kwargs in ((ProxNewtonL1(tol=1e-6), {}),
                           (NewtonL2(tol=1e-6), {'penalty': 'l2'}),
                           (FISTA(penalty='l1', tol=1e-6), {'method': 'fista'})):
      params, state = solver.run(problem)
      fit = fit_logistic(X.astype(np.float32), Y, C=0.5, tol=1e-6, train_mask=masks,
                         shift=shift, scale=scale, **kwargs)
      np.testing.assert_allclose(params.coef, fit.coef, rtol=1e-5, atol=1e-6)
      np.testing.assert_array_equal(state.iter_num, fit.n_iter)
      np.testing.assert_array_equal(state.converged, np.asarray(state.error) <= 1e-6)
      assert state.objective.shape == (3, 2)
  with pytest.raises(dataclasses.FrozenInstanceError):
    solver.tol = 1.0


@pytest.mark.parametrize('method', ['newton', 'fista'])
def test_a_problem_solved_at_zero_says_converged(method):
  """2 positives in 24 at C = 0.1: the intercept's gradient at z = 0 is exactly 1 (the L1 kink),
  and no feature's reaches it, so z = 0 is the optimum. In float32 that gradient rounds to
  1 + 1 ulp; the solvers must still call the problem solved, at once."""
  rng = np.random.default_rng(5)
  X = rng.standard_normal((24, 50))
  X = (X - X.mean(0)) / X.std(0)
  Y = np.zeros((24, 1))
  Y[:2] = 1
  with jax.enable_x64(False):
    fit = fit_logistic(X.astype(np.float32), Y, C=0.1, tol=1e-4, method=method)
  assert bool(fit.converged[0]) and int(fit.n_iter[0]) == 0
  assert np.all(np.asarray(fit.coef) == 0)


@pytest.mark.slow
def test_matrix_free_solvers_hold_little_beyond_the_data():
  """From MATRIX_FREE_ROWS rows the Newton solvers' working memory (XLA's temporaries) stays
  near the data: no (m, m) system for L2, no gathered (S, L, K, m) columns or (K, K) Hessians
  for L1, which the matrix methods need here at many times the data's size."""
  n, d, L, S = 3000, 400, 4, 2
  rng = np.random.default_rng(12)
  with jax.enable_x64(False):
    X = rng.standard_normal((n, d)).astype(np.float32)
    problem = make_problem(X, (X[:, :L] > 0).astype(np.float32), np.ones((S, n), bool))
    data = X.nbytes
    state = l1_prox_newton.start(problem, jnp.zeros((S, d + 1, L), np.float32))
    tol, iters, compact = jnp.float32(1e-4), jnp.asarray(5), jnp.asarray(True)

    def temporaries(fn, *args, **static):
      return fn.lower(problem, *args, **static).compile().memory_analysis().temp_size_in_bytes

    l1_free = temporaries(l1_prox_newton.solve, state, tol, iters, compact, block=256,
                          subproblem='matrix_free')
    l1_matrix = temporaries(l1_prox_newton.solve, state, tol, iters, compact, block=256,
                            subproblem='cd')
    z0 = jnp.zeros((S, d + 1, L), np.float32)
    l2_free = temporaries(l2_newton_cg.solve, l2_newton_cg.start(problem, z0), tol, iters)
    l2_matrix = temporaries(l2_newton.solve, l2_newton.start(problem, z0), tol, iters, compact)
  assert l1_free < 2 * data < l1_matrix
  assert l2_free < 2 * data < l2_matrix


def test_standardize_in_row_blocks_equals_the_whole_in_float64():
  rng = np.random.default_rng(13)
  X = (rng.random((500, 30)) * 3 + 100).astype(np.float32)
  X[:300, 4] = 0                         # zero on most rows: the two-pass columns
  masks = rng.random((3, 500)) < 0.6
  with mock.patch.object(scaling, '_BLOCK_ROWS', 64):
    shift, scale = scaling.fit_scaling(X, masks, 'standardize')
  X64 = X.astype(np.float64)
  for s in range(3):
    np.testing.assert_allclose(shift[s], X64[masks[s]].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scale[s], X64[masks[s]].std(axis=0), rtol=1e-9)


@pytest.mark.parametrize('solver', [l2_newton.NewtonL2(tol=1e-7),
                                    l2_newton_cg.NewtonCGL2(tol=1e-7),
                                    l1_prox_newton.ProxNewtonL1(tol=1e-7, block=32)],
                         ids=['l2_newton', 'l2_newton_cg', 'l1_prox_newton'])
def test_one_iteration_at_a_time_lowers_the_objective_to_liblinears(solver):
  """init_state / update, as in jaxopt: each iteration lowers F (beyond rounding, never raises
  it), a problem once done stays put, and iterating reaches liblinear's optimum."""
  rng = np.random.default_rng(31)
  X, Y = cnn_like(rng, n=90, d=30, L=2)
  masks = np.stack([rng.permutation(90) < 60 for _ in range(2)])
  shift, scale = scaling.fit_scaling(X, masks, 'standardize')
  penalty = 'l1' if isinstance(solver, l1_prox_newton.ProxNewtonL1) else 'l2'
  problem = make_problem(X.astype(np.float32), Y, masks, shift.astype(np.float32),
                         scale.astype(np.float32), 1.0)
  state = solver.init_state(problem)
  assert int(np.max(state.n_iter)) == 0
  before = np.asarray(state.f)
  for _ in range(40):
    params, state = solver.update(problem, state)
    after = np.asarray(state.f)
    assert np.all(after <= before * (1 + 1e-6)), (before, after)
    before = after
  assert bool(np.all(state.done)) and int(np.max(state.n_iter)) < 40
  for s, mask in enumerate(masks):
    Xs = (X[mask] - shift[s]) / scale[s]
    for j in range(Y.shape[1]):
      ref, clf = liblinear_objective(Xs, Y[mask, j], penalty, 1.0)
      assert float(state.f[s, j]) <= ref * (1 + 1e-5), (s, j)
      # The raw-unit weights decide as liblinear's on the scaled rows.
      ours = X[mask] @ np.asarray(params.coef)[s, :, j] + float(params.intercept[s, j])
      np.testing.assert_allclose(ours, clf.decision_function(Xs), atol=2e-3 * np.abs(ours).max())


def test_the_logistic_loss_is_numpys_logaddexp_everywhere():
  """`objective.log1p_exp`, the loss every solver sums (written out for speed), against numpy's
  logaddexp(0, x) in float64: tiny, huge and infinite margins, and NaN passed on."""
  x = np.concatenate([np.random.default_rng(5).standard_normal(10_000) * s
                      for s in (1e-4, 1, 30, 1e3)] + [[0.0, -0.0, 88.0, -104.0, 1e30, -1e30]])
  ours = np.asarray(log1p_exp(jnp.asarray(x, jnp.float32)), np.float64)
  reference = np.logaddexp(0.0, x.astype(np.float32).astype(np.float64))
  # Within 2.5 float32 ulps; below float32's smallest normal number XLA's CPU flushes to zero.
  np.testing.assert_allclose(ours, reference, rtol=3e-7, atol=np.finfo(np.float32).tiny)
  special = np.asarray(log1p_exp(jnp.asarray([np.inf, -np.inf, np.nan], jnp.float32)))
  assert special[0] == np.inf and special[1] == 0.0 and np.isnan(special[2])


def _halving_loop(measures, tol, max_iter, early_stop):
  """A toy solver on `steps`: each iteration halves the measure (carried as grad) of every
  problem not done and counts itself in z. Returns the final state."""
  g = jnp.asarray(measures, jnp.float32)[None, None, :]                   # (S=1, D=1, L)
  zero = jnp.zeros_like(g)
  measure = lambda s: s.grad[:, 0, :]

  def body(s):
    kkt = measure(s)
    converged, revert, done = steps.progress(s, kkt, tol)
    return steps.advance(s, s.z + 1, s.xz, lambda z, xz: s.f, grad=jnp.where(done, s.grad,
                         s.grad / 2), kkt=kkt, move=~done, tentative=jnp.zeros_like(done),
                         revert=revert, converged=converged, done=done)

  state = steps.start(zero, zero, jnp.zeros((1, g.shape[-1])), g)
  return steps.iterate(body, state, max_iter,
                       **(dict(measure=measure, tol=tol) if early_stop else {}))


def test_the_loop_stops_once_every_problem_left_is_converged_where_it_stands():
  """With a measure, `steps.iterate` spends no iteration only to find the problems converged
  (the last one of a Newton batch: every problem's factorisation for nothing), and marks them
  converged and done as that iteration would have."""
  for early_stop, bodies in ((False, 5), (True, 4)):
    s = _halving_loop([1.0, 0.25], 0.1, 100, early_stop)
    assert float(s.z.max()) == bodies, early_stop
    assert list(np.asarray(s.n_iter[0])) == [4, 2]
    assert bool(np.all(s.converged)) and bool(np.all(s.done))
    np.testing.assert_array_equal(np.asarray(s.kkt[0]), [0.0625, 0.0625])
  s = _halving_loop([0.05, 0.01], 0.1, 100, True)      # converged at the start: no iteration
  assert float(s.z.max()) == 0 and bool(np.all(s.converged)) and int(s.n_iter.max()) == 0
  s = _halving_loop([1.0, 0.25], 0.1, 2, True)         # max_iter still ends the loop
  assert float(s.z.max()) == 2 and not bool(s.converged[0, 0])


def test_the_l1_state_is_the_newton_state_and_its_working_set():
  assert l1_prox_newton._State._fields == steps.NewtonState._fields + ('crowded', 'full')


def test_the_working_set_grows_by_half_in_steps_of_128():
  sizes = [l1_prox_newton.BLOCK]
  while sizes[-1] < 2000:
    sizes.append(l1_prox_newton.grown(sizes[-1]))
  assert sizes == [128, 256, 384, 640, 1024, 1536, 2304]
  assert l1_prox_newton.grown(4) == 128   # a small block asked for grows to the first step


def test_longer_steps_are_taken_only_where_they_lower_f_beyond_rounding():
  t = np.asarray(steps.lengths(np.float32))
  assert t.shape == (steps.NUM_LENGTHS,) and t[steps.HERE] == 0
  np.testing.assert_array_equal(t[:len(steps.LONGER) + 2], [*steps.LONGER, 1.0, 0.5])
  eps = np.finfo(np.float32).eps
  here = np.float32(100.0)
  f = np.full((3, steps.NUM_LENGTHS), here + 1.0, np.float32)
  f[:, steps.HERE] = here
  f[0, 0] = here - 1.0                         # length 4 lowers F clearly: taken
  f[1, 0] = here - 0.5 * eps * here            # length 4 within rounding, 1 too: 1, tentatively
  f[1, len(steps.LONGER)] = here
  f[2, 1] = here                               # only a longer length ties: nothing moves
  best, strict, tentative = steps.choose(jnp.asarray(f), jnp.zeros(3, bool), eps)
  assert list(np.asarray(strict)) == [True, False, False]
  assert list(np.asarray(tentative)) == [False, True, False]
  assert int(best[0]) == 0 and int(best[1]) == len(steps.LONGER)


@pytest.mark.parametrize('penalty', ['l1', 'l2'])
def test_fista_one_iteration_at_a_time_is_its_run(penalty):
  """FISTA's init_state / update: k updates are k iterations of `run` (the same iterates, its
  Newton step where run takes one), and F never rises from one to the next."""
  rng = np.random.default_rng(32)
  X, Y = cnn_like(rng, n=80, d=20, L=2)
  masks = np.stack([rng.permutation(80) < 60 for _ in range(2)])
  shift, scale = scaling.fit_scaling(X, masks, 'standardize')
  problem = make_problem(X.astype(np.float32), Y, masks, shift.astype(np.float32),
                         scale.astype(np.float32), 1.0)
  k = 23                                   # past two of L1's Newton steps (every 10)
  solver = fista.FISTA(penalty=penalty, tol=1e-12, max_iter=k)
  params_run, state_run = solver.run(problem)
  state = solver.init_state(problem)
  before = np.asarray(state.f)
  # FISTA keeps a step uphill by no more than rounding (`_UPHILL_EPS` eps of |F|).
  rounding = 1 + fista._UPHILL_EPS * np.finfo(np.float32).eps
  for _ in range(k):
    params, state = solver.update(problem, state)
    after = np.asarray(state.f)
    assert np.all(after <= before * rounding), (before, after)
    before = after
  assert np.all(np.asarray(state.n_iter) == k) and np.all(np.asarray(state_run.iter_num) == k)
  np.testing.assert_allclose(params.coef, params_run.coef, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(state.f, state_run.objective, rtol=1e-6)
