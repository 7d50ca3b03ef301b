r"""The five MIML metrics of the paper (Zhou et al., "Multi-instance multi-label learning", 2012).

For p test images with label sets Y_i ⊆ {1..q} and scores f(x_i, l) (decision values):

- average_precision (↑): mean over i, and over l ∈ Y_i, of |{l' ∈ Y_i : rank(l') ≤ rank(l)}| /
  rank(l), where rank(l) = |{l' : f(l') ≥ f(l)}| (1 = best).
- coverage (↓): mean over i of max_{l ∈ Y_i} rank(l) - 1, divided by q as the paper's footnote
  says, so that it lies in [0, 1].
- hamming_loss (↓): fraction of (image, label) pairs where [f > 0] differs from [l ∈ Y_i].
- one_error (↓): fraction of images whose top-scored label is not in Y_i.
- ranking_loss (↓): mean over i of the fraction of pairs (l ∈ Y_i, k ∉ Y_i) ordered wrongly,
  f(l) ≤ f(k).

Ties count against the classifier, as scikit-learn counts them: a label tied with others gets the
worst of their ranks, and a tied (relevant, irrelevant) pair is a wrongly ordered pair. For
one_error, a tie at the top counts as the fraction of irrelevant labels among the tied ones (the
expected error of breaking the tie at random). An image with no relevant label (or all labels
relevant) has no ranking to get wrong: its average_precision is 1 and its ranking_loss 0 (as in
scikit-learn), its coverage is 0 (none) or (q - 1)/q (all). All functions take a leading batch
axis: scores and labels (..., p, q) give (...,) values, so 30 splits are one call.
"""

import jax
import jax.numpy as jnp
import numpy as np

HIGHER_IS_BETTER = {'average_precision': True, 'coverage': False, 'hamming_loss': False,
                    'one_error': False, 'ranking_loss': False}


def _ranks(scores):
  """(..., q) -> (..., q, q) [f(l') >= f(l)] as [l, l'], and pessimistic 1-based ranks."""
  geq = scores[..., None, :] >= scores[..., :, None]
  return geq, geq.sum(axis=-1)


def average_precision(labels, scores):
  geq, rank = _ranks(scores)
  rel = labels.astype(bool)
  rel_above = (geq & rel[..., None, :]).sum(axis=-1)          # relevant l' with f(l') >= f(l)
  per_label = jnp.where(rel, rel_above / rank, 0.0)
  n_rel = rel.sum(axis=-1)
  q = labels.shape[-1]
  ap = per_label.sum(axis=-1) / jnp.maximum(n_rel, 1)
  return jnp.where((n_rel == 0) | (n_rel == q), 1.0, ap).mean(axis=-1)


def coverage(labels, scores):
  _, rank = _ranks(scores)
  q = labels.shape[-1]
  worst = jnp.where(labels.astype(bool), rank, 0).max(axis=-1)
  return (jnp.maximum(worst - 1, 0) / q).mean(axis=-1)


def hamming_loss(labels, scores):
  return ((scores > 0) != labels.astype(bool)).mean(axis=(-2, -1))


def one_error(labels, scores):
  top = scores == scores.max(axis=-1, keepdims=True)
  wrong = (top & ~labels.astype(bool)).sum(axis=-1) / top.sum(axis=-1)
  return wrong.mean(axis=-1)


def ranking_loss(labels, scores):
  rel = labels.astype(bool)
  # pairs (l relevant, k irrelevant) with f(k) >= f(l)
  geq, _ = _ranks(scores)
  bad = (geq & rel[..., :, None] & ~rel[..., None, :]).sum(axis=(-2, -1))
  n_rel = rel.sum(axis=-1)
  pairs = n_rel * (labels.shape[-1] - n_rel)
  return jnp.where(pairs > 0, bad / jnp.maximum(pairs, 1), 0.0).mean(axis=-1)


METRICS = {'average_precision': average_precision, 'coverage': coverage,
           'hamming_loss': hamming_loss, 'one_error': one_error, 'ranking_loss': ranking_loss}


@jax.jit
def _evaluate(labels, scores):
  return {name: fn(labels, scores) for name, fn in METRICS.items()}


def evaluate(labels, scores) -> dict:
  """All five metrics. labels: (..., p, q) in {0, 1}; scores: (..., p, q). Returns {name: (...)}.

  Values are numpy float64 arrays (scalars without a batch axis).
  """
  labels = jnp.asarray(labels)
  scores = jnp.asarray(scores, jnp.float32 if not jax.config.jax_enable_x64 else jnp.float64)
  if labels.shape != scores.shape or labels.ndim < 2:
    raise ValueError(f'labels {labels.shape} and scores {scores.shape} must both be (..., p, q)')
  return {k: np.asarray(v, np.float64) for k, v in _evaluate(labels, scores).items()}


NAMES = tuple(METRICS)
