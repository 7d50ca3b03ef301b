"""The recipe: Platt scaling against scikit-learn, the paper's L1 as its empty case, and every
choice made without the test rows."""

import numpy as np
import pytest

from miml_jax import evaluation
from miml_jax import recipe
from miml_jax import scaling
from miml_jax import splits
from miml_jax.solvers import fit_logistic
from miml_jax.plumbing.errors import UserError
from miml_jax.protocol import Protocol


def _problem(n=90, d=40, q=3, seed=0):
  rng = np.random.default_rng(seed)
  X = rng.gamma(0.5, 2.0, (n, d)).astype(np.float32)
  w = rng.standard_normal((d, q)) * (rng.random((d, q)) < 0.2)
  Y = ((X - X.mean(0)) @ w + rng.standard_normal((n, q)) > 0).astype(np.float64)
  return X, Y


def test_platt_matches_sklearn_on_smoothed_targets():
  from sklearn.linear_model import LogisticRegression
  rng = np.random.default_rng(1)
  f = rng.standard_normal((200, 3)) * [1.0, 3.0, 0.2]
  Y = rng.random((200, 3)) < 1 / (1 + np.exp(-(2 * f - 0.5)))
  Y[:, 2] = f[:, 2] > 0   # separable: Platt's targets keep it finite
  a, b = recipe.platt(f, Y)
  for j in range(3):
    # Platt's targets t as two weighted copies of each row (label 1 with weight t, 0 with 1 - t).
    pos, neg = Y[:, j].sum(), (~Y[:, j]).sum()
    t = np.where(Y[:, j], (pos + 1) / (pos + 2), 1 / (neg + 2))
    model = LogisticRegression(C=1e10, tol=1e-12, max_iter=10_000).fit(
        np.r_[f[:, j], f[:, j]][:, None], np.r_[np.ones(200), np.zeros(200)],
        sample_weight=np.r_[t, 1 - t])
    np.testing.assert_allclose([a[j], b[j]], [model.coef_[0, 0], model.intercept_[0]],
                               rtol=1e-4, atol=1e-6)
  assert np.all(np.isfinite(a)) and a[2] > 0


def test_no_steps_is_the_papers_l1():
  X, Y = _problem()
  masks = splits.random_splits(len(X), 2, 2 / 3, seed=0)
  ours = evaluation.run_recipe(X, Y, masks, Protocol(recipe_steps=()))
  paper = evaluation.run_method('newton_l1', X, Y, masks)
  # The same problems, solved on the training rows alone rather than under a mask: equal to
  # the solver tolerance.
  np.testing.assert_allclose(ours.decisions, paper.decisions, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize('steps', [recipe.STEPS, ('calibrate',)])
def test_choices_never_see_the_test_rows(steps):
  """Changing the test rows' labels changes nothing; changing a training label does."""
  X, Y = _problem(seed=2)
  masks = splits.random_splits(len(X), 1, 2 / 3, seed=3)
  protocol = Protocol(recipe_steps=steps, Cs=(0.1, 1.0), folds=3)
  base = evaluation.run_recipe(X, Y, masks, protocol)
  other = Y.copy()
  other[~masks[0]] = 1 - other[~masks[0]]
  np.testing.assert_array_equal(evaluation.run_recipe(X, other, masks, protocol).decisions,
                                base.decisions)
  other = Y.copy()
  first = np.flatnonzero(masks[0])[:5]
  other[first] = 1 - other[first]
  assert not np.array_equal(evaluation.run_recipe(X, other, masks, protocol).decisions,
                            base.decisions)


@pytest.mark.slow
def test_fitted_recipe_reports_its_choices():
  X, Y = _problem(seed=4)
  fitted = recipe.fit_recipe(X, Y, steps=recipe.STEPS, Cs=(0.1, 1.0), folds=3)
  assert fitted.penalties == ('l1', 'l2')
  assert fitted.coef.shape == (X.shape[1], Y.shape[1]) and fitted.intercept.shape == (3,)
  assert set(np.unique(fitted.C)) <= {0.1, 1.0}
  assert fitted.weight in recipe.MIX_WEIGHTS
  assert len(fitted.info['mix_average_precision']) == len(recipe.MIX_WEIGHTS)
  # The one linear model is the composition of the parts: each penalty refitted at its chosen
  # C, calibrated, mixed, calibrated again.
  shift, scale = scaling.fit_scaling(X, np.ones((1, len(X)), bool), 'standardize')
  parts = []
  for k, penalty in enumerate(fitted.penalties):
    fit = fit_logistic(X, Y, penalty=penalty, C=fitted.C[k], tol=1e-6, max_iter=20_000,
                       shift=shift[0], scale=scale[0])
    parts.append(X.astype(np.float64) @ np.asarray(fit.coef, np.float64)
                 + np.asarray(fit.intercept))
  cal = {k: np.asarray(v) for k, v in fitted.info['calibration'].items()}
  z = [cal['a'][k] * parts[k] + cal['b'][k] for k in range(2)]
  want = cal['a_mix'] * (fitted.weight * z[0] + (1 - fitted.weight) * z[1]) + cal['b_mix']
  got = fitted.decision_function(X)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
  assert np.all(cal['a'] > 0) and np.all(cal['a_mix'] > 0)
  with pytest.raises(UserError, match='unknown recipe steps'):
    recipe.fit_recipe(X, Y, steps=('cv_c', 'bagging'))


@pytest.mark.slow
def test_splits_batched_are_the_recipes_of_each_split():
  """fit_recipes over several masks: each split's recipe as fitted on its training rows alone
  (the same folds, choices and final fits), to the solvers' tolerance."""
  X, Y = _problem(seed=6)
  masks = splits.random_splits(len(X), 3, 2 / 3, seed=1)
  kwargs = dict(steps=recipe.STEPS, Cs=(0.1, 1.0), folds=3, tol=1e-7)
  batched = recipe.fit_recipes(X, Y, masks, **kwargs)
  for s, (mask, ours) in enumerate(zip(masks, batched)):
    alone = recipe.fit_recipe(X[mask], Y[mask], seed=s, **kwargs)
    np.testing.assert_array_equal(ours.C, alone.C)
    assert ours.weight == alone.weight
    want = alone.decision_function(X)
    np.testing.assert_allclose(ours.decision_function(X), want, rtol=1e-3,
                               atol=1e-3 * np.abs(want).max())


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_finished_splits(tmp_path, monkeypatch):
  X, Y = _problem(seed=5)
  masks = splits.random_splits(len(X), 3, 2 / 3, seed=0)
  # With a progress bar the splits go in groups (of one here: 3 splits, up to 5 updates).
  two_folds = Protocol(folds=2)
  whole = evaluation.run_recipe(X, Y, masks, two_folds, progress=True)
  real, calls, interrupted = recipe.fit_recipes, [], []

  def dying(*args, seeds, **kwargs):
    calls.append([int(s) for s in seeds])
    if 1 in calls[-1] and not interrupted:
      interrupted.append(True)
      raise KeyboardInterrupt
    return real(*args, seeds=seeds, **kwargs)

  monkeypatch.setattr(recipe, 'fit_recipes', dying)
  with pytest.raises(KeyboardInterrupt):
    evaluation.run_recipe(X, Y, masks, two_folds, parts_dir=tmp_path / 'parts', progress=True)
  assert len(list((tmp_path / 'parts').iterdir())) == 1
  resumed = evaluation.run_recipe(X, Y, masks, two_folds, parts_dir=tmp_path / 'parts',
                                  progress=True)
  assert calls == [[0], [1], [1], [2]]
  np.testing.assert_array_equal(resumed.decisions, whole.decisions)
  # Other settings (or data) do not take the saved splits; without a bar, one batch.
  calls.clear()
  evaluation.run_recipe(X, Y, masks, Protocol(folds=3), parts_dir=tmp_path / 'parts')
  assert calls == [[0, 1, 2]]


@pytest.mark.slow
def test_table1_recipe_takes_over_the_newton_fits_with_the_same_results():
  """In one run with newton_l1 and newton_l2 the recipe's final fits are theirs (the same
  problems): the same decisions as solving them again, and the reuse is recorded."""
  X, Y = _problem(seed=7)
  masks = splits.random_splits(len(X), 2, 2 / 3, seed=0)
  alone = evaluation.run(X, Y, masks, Protocol(methods=('recipe',), folds=2))['recipe']
  together = evaluation.run(X, Y, masks,
                            Protocol(methods=('recipe', 'newton_l1', 'newton_l2'), folds=2))
  assert list(together) == ['recipe', 'newton_l1', 'newton_l2']
  assert alone.reused == () and together['recipe'].reused == ('newton_l1', 'newton_l2')
  np.testing.assert_allclose(together['recipe'].decisions, alone.decisions, rtol=1e-4,
                             atol=1e-4 * np.abs(alone.decisions).max())
  assert evaluation.summary(together['recipe'])['fits_reused_from'] == ['newton_l1',
                                                                        'newton_l2']


def test_given_final_fits_start_the_l2_folds_and_never_the_l1_folds(monkeypatch):
  """With the final fits given (Table 1), each L2 fold starts from its split's final L2 fit and
  still ends at its own optimum; L1 folds start from zero (started from a fit that saw their
  held-out rows, they would stop near it and score too well)."""
  from miml_jax import model_selection   # pylint: disable=g-import-not-at-top
  X, Y = _problem(seed=8)
  masks = splits.random_splits(len(X), 2, 2 / 3, seed=0)
  shift, scale = scaling.fit_scaling(X, masks, 'standardize')
  final = {}
  for penalty in ('l1', 'l2'):
    fit = fit_logistic(X, Y, penalty=penalty, tol=1e-7, train_mask=masks, shift=shift,
                       scale=scale)
    final[penalty] = tuple(np.asarray(a) for a in (fit.coef, fit.intercept, fit.converged,
                                                   fit.n_iter))
  real, seen = model_selection.fit_grid, {}

  def recording(X, Y, Cs, **kwargs):
    seen[kwargs['penalty']] = kwargs.get('init'), kwargs['train_mask'], kwargs['shift'], \
        kwargs['scale']
    return real(X, Y, Cs, **kwargs)

  monkeypatch.setattr(model_selection, 'fit_grid', recording)
  recipe.fit_recipes(X, Y, masks, folds=3, tol=1e-7, final=final)
  assert seen['l1'][0] is None
  init, fold_masks, fold_shift, fold_scale = seen['l2']
  np.testing.assert_array_equal(init[0], np.repeat(final['l2'][0], 3, axis=0))
  np.testing.assert_array_equal(init[1], np.repeat(final['l2'][1], 3, axis=0))
  kwargs = dict(penalty='l2', train_mask=fold_masks, shift=fold_shift, scale=fold_scale)
  warm = real(X, Y, [1.0], init=init, tol=recipe.CV_TOL, **kwargs)
  exact = real(X, Y, [1.0], tol=1e-8, **kwargs)
  assert np.all(warm.n_iter >= 1)
  np.testing.assert_allclose(warm.objective, exact.objective, rtol=1e-4)


@pytest.mark.slow
def test_shrink_pulls_each_calibration_toward_the_identity():
  """'shrink' moves each label's Platt (a, b) toward (1, 0) by n+ / (n+ + SHRINK_POSITIVES): a
  label with few positives keeps the model's own log-odds, one with many its calibration."""
  X, Y = _problem(n=120, d=30, q=3, seed=5)
  Y[:, 0] = 0
  Y[:4, 0] = 1   # a rare label: 4 positives
  plain = recipe.fit_recipe(X, Y, steps=('calibrate',))
  shrunk = recipe.fit_recipe(X, Y, steps=('calibrate', 'shrink'))
  share = Y.sum(0) / (Y.sum(0) + recipe.SHRINK_POSITIVES)
  a, b = (np.asarray(plain.info['calibration'][k])[0] for k in ('a', 'b'))
  np.testing.assert_allclose(shrunk.info['calibration']['a'][0], 1 + (a - 1) * share)
  np.testing.assert_allclose(shrunk.info['calibration']['b'][0], b * share)
  assert share[0] < 0.3 < 0.8 < share[1:].min()
