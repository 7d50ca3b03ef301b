"""The protocol as data: the methods' registry and a run's frozen settings."""

import dataclasses
import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from miml_jax import evaluation
from miml_jax import protocol
from miml_jax import recipe
from miml_jax import splits
from miml_jax.plumbing.errors import UserError
from miml_jax.protocol import Protocol
from miml_jax.solvers.liblinear import sklearn_penalty


def test_every_method_is_checked_against_a_liblinear_fit_of_its_own_penalty():
  for name, m in protocol.METHODS.items():
    assert m.name == name and m.penalty in ('l1', 'l2', None)
    if m.ours:
      ref = protocol.METHODS[m.reference]
      assert ref.solver == 'liblinear' and ref.penalty == m.penalty and ref.tol < m.tol
    for other in m.reuses:
      assert protocol.METHODS[other].ours
  assert protocol.default_tols() == {'newton': 1e-7, 'fista': 1e-7, 'liblinear': 1e-8,
                                     'liblinear_paper': 0.01}


def test_a_protocol_is_checked_once_made_and_cannot_change():
  p = Protocol(methods=('jax_l1', 'recipe', 'newton_l1'), tol=1e-5, Cs=('0.5', 2))
  # Old names become the current ones, and a method named twice runs once.
  assert p.methods == ('newton_l1', 'recipe') and p.Cs == (0.5, 2.0)
  assert p.recipe_steps == recipe.DEFAULT_STEPS
  assert p.tol_of('newton_l1') == 1e-5 and Protocol().tol_of('newton_l1') == 1e-7
  # The paper's LIBLINEAR setting keeps its own tolerance whatever --tol says.
  assert p.tol_of('liblinear_paper') == 0.01
  with pytest.raises(dataclasses.FrozenInstanceError):
    p.C = 2.0
  for bad, word in ((dict(methods=('newton_l3',)), 'newton_l3'), (dict(methods=()), 'no methods'),
                    (dict(C=0.0), 'C=0.0'), (dict(train_fraction=1.0), 'train_fraction'),
                    (dict(folds=1), 'folds'), (dict(recipe_steps=('cv',)), "'cv'"),
                    (dict(tol=-1e-3), 'tol'), (dict(Cs=()), 'Cs')):
    with pytest.raises(UserError, match=word):
      Protocol(**bad)


def test_the_json_holds_what_repeats_the_run():
  p = Protocol(methods=('newton_l2', 'recipe'), splits=4, seed=3, folds=2, recipe_steps=())
  out = json.loads(json.dumps(p.to_json()))
  assert out['recipe'] == {'steps': [], 'Cs': list(p.Cs), 'folds': 2}
  again = Protocol(**{k: v for k, v in out.items() if k != 'recipe'},
                   recipe_steps=tuple(out['recipe']['steps']), Cs=tuple(out['recipe']['Cs']),
                   folds=out['recipe']['folds'])
  assert again == p
  assert 'recipe' not in Protocol().to_json()
  np.testing.assert_array_equal(p.masks(30), splits.random_splits(30, 4, 2 / 3, seed=3))


def test_the_papers_setting_is_liblinears_command_line_defaults_on_raw_features():
  """liblinear_paper against scikit-learn called directly: raw features, no bias, eps 0.01,
  whatever the protocol's scaling and tolerance."""
  rng = np.random.default_rng(0)
  X = np.abs(rng.standard_normal((45, 6))) * rng.uniform(1, 30, 6)
  Y = (X @ rng.standard_normal((6, 2)) > np.median(X @ rng.standard_normal((6, 2)), 0)
       ).astype(float)
  Y[:2] = 1 - Y[:2]   # both classes in every training part
  masks = splits.random_splits(len(X), 2, seed=0)
  ours = evaluation.run_method('liblinear_paper', X, Y, masks, Protocol(tol=1e-6), n_jobs=1)
  test = evaluation.test_indices(masks)
  for s in range(2):
    for j in range(2):
      model = LogisticRegression(C=1.0, solver='liblinear', tol=0.01, fit_intercept=False,
                                 max_iter=1000, random_state=0, **sklearn_penalty('l1'))
      model.fit(X[masks[s]], Y[masks[s], j])
      np.testing.assert_allclose(ours.decisions[s, :, j], model.decision_function(X[test[s]]),
                                 rtol=1e-6, atol=1e-8)
  assert ours.tol == 0.01 and ours.weights is None
