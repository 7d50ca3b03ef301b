"""MIML metrics against scikit-learn and hand-computed cases, ties included."""

import numpy as np
import pytest
from sklearn import metrics as skm

from miml_jax import metrics


def random_case(rng, p=40, q=6, ties=False):
  labels = (rng.random((p, q)) < 0.35).astype(int)
  labels[np.arange(p), rng.integers(0, q, p)] = 1     # at least one relevant label
  scores = rng.standard_normal((p, q))
  if ties:
    scores = np.round(scores)                          # many ties
  return labels, scores


@pytest.mark.parametrize('ties', [False, True])
def test_against_scikit_learn(ties):
  rng = np.random.default_rng(0)
  labels, scores = random_case(rng, ties=ties)
  got = metrics.evaluate(labels, scores)
  q = labels.shape[1]
  np.testing.assert_allclose(got['average_precision'],
                             skm.label_ranking_average_precision_score(labels, scores), rtol=1e-6)
  np.testing.assert_allclose(got['ranking_loss'], skm.label_ranking_loss(labels, scores),
                             rtol=1e-6)
  np.testing.assert_allclose(got['coverage'], (skm.coverage_error(labels, scores) - 1) / q,
                             rtol=1e-6)
  np.testing.assert_allclose(got['hamming_loss'], skm.hamming_loss(labels, scores > 0),
                             rtol=1e-6)


def test_batched_over_splits_equals_one_by_one():
  rng = np.random.default_rng(1)
  cases = [random_case(rng) for _ in range(3)]
  labels = np.stack([c[0] for c in cases])
  scores = np.stack([c[1] for c in cases])
  batched = metrics.evaluate(labels, scores)
  for k, (y, s) in enumerate(cases):
    for name, value in metrics.evaluate(y, s).items():
      np.testing.assert_allclose(batched[name][k], value, rtol=1e-6)


def test_hand_computed_with_ties():
  # Image 1: relevant {0, 2}; scores rank 2 first, then 1 and 0 tied.
  # Image 2: relevant {1}; all three scores tied at the top.
  labels = np.array([[1, 0, 1], [0, 1, 0]])
  scores = np.array([[0.5, 0.5, 0.9], [-1.0, -1.0, -1.0]])
  got = metrics.evaluate(labels, scores)
  # Pessimistic ranks: image 1: label 2 -> 1, labels 0, 1 -> 3. AP = mean(1/1, 2/3) = 5/6.
  # Image 2: every rank is 3; AP = 1/3.
  assert got['average_precision'] == pytest.approx((5 / 6 + 1 / 3) / 2)
  # Coverage: (3 - 1)/3 for both.
  assert got['coverage'] == pytest.approx(2 / 3)
  # Ranking loss: image 1 pairs (0,1) tied -> wrong, (2,1) right: 1/2; image 2: 2/2 = 1.
  assert got['ranking_loss'] == pytest.approx((0.5 + 1.0) / 2)
  # One error: image 1 top is 2 (relevant): 0; image 2: 2 of 3 tied tops irrelevant: 2/3.
  assert got['one_error'] == pytest.approx((0 + 2 / 3) / 2)
  # Hamming: predictions f > 0: image 1 [1,1,1] vs [1,0,1] -> 1 wrong; image 2 [0,0,0] vs
  # [0,1,0] -> 1 wrong: 2 of 6.
  assert got['hamming_loss'] == pytest.approx(2 / 6)


def test_images_without_or_with_all_labels():
  labels = np.array([[0, 0, 0], [1, 1, 1]])
  scores = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
  got = metrics.evaluate(labels, scores)
  assert got['average_precision'] == 1.0 and got['ranking_loss'] == 0.0
  assert got['coverage'] == pytest.approx((0 + 2 / 3) / 2)
  np.testing.assert_allclose(got['ranking_loss'], skm.label_ranking_loss(labels, scores))
  np.testing.assert_allclose(got['average_precision'],
                             skm.label_ranking_average_precision_score(labels, scores))


def test_perfect_and_shape_errors():
  labels = np.array([[1, 0], [0, 1]])
  got = metrics.evaluate(labels, np.where(labels == 1, 2.0, -2.0))
  assert got['average_precision'] == 1 and got['one_error'] == 0 and got['hamming_loss'] == 0
  with pytest.raises(ValueError):
    metrics.evaluate(labels, np.zeros((2, 3)))
