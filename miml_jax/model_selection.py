"""Choosing C: a whole grid of C values fitted in one batched call, scored by k-fold CV.

The solvers take one C per label, so a grid of G values over L labels is one problem of G·L
labels (each label's column repeated with each C), and the k folds are k train masks: the whole
grid x folds x labels is one compiled call. Per-label choice minimises the held-out log loss of
that label; global choice maximises the held-out average precision of the label ranking (the
paper's first metric). Only the rows given (a training split) are ever used.
"""

import dataclasses

import numpy as np

from miml_jax import metrics
from miml_jax import scaling
from miml_jax.plumbing.errors import UserError
from miml_jax.solvers import fit_logistic

DEFAULT_CS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def fit_grid(X, Y, Cs, **kwargs):
  """`fit_logistic` for every C in `Cs` at once; arrays gain a grid axis before the labels.

  Returns the fit with coef (..., d, G, L), intercept/objective/n_iter/converged (..., G, L).
  """
  Cs = np.asarray(Cs, np.float64)
  Y = np.asarray(Y)
  G, L = len(Cs), Y.shape[1]
  fit = fit_logistic(X, np.tile(Y, (1, G)), C=np.repeat(Cs, L), **kwargs)
  return type(fit)(*(np.asarray(a).reshape(*np.shape(a)[:-1], G, L) for a in fit))


def kfold_masks(n: int, folds: int, seed: int = 0) -> np.ndarray:
  """(folds, n) bool training masks of a shuffled k-fold partition."""
  if not 2 <= folds <= n:
    raise UserError(f'cross-validation needs 2 to {n} folds, got {folds}')
  fold_of = np.empty(n, int)
  fold_of[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
  return fold_of[None, :] != np.arange(folds)[:, None]


@dataclasses.dataclass
class CVResult:
  """Cs: (G,); log_loss: (G, L) mean held-out log loss per label; average_precision: (G,)
  held-out a.p.; best_C: (L,) the choice; decisions: (n, G, L) held-out decision values."""
  Cs: np.ndarray
  log_loss: np.ndarray
  average_precision: np.ndarray
  best_C: np.ndarray
  decisions: np.ndarray


def cross_validate(X, Y, Cs=DEFAULT_CS, *, folds=5, select='per_label', penalty='l1',
                   scaling_kind='standardize', seed=0, tol=1e-4, max_iter=5000,
                   method='newton') -> CVResult:
  """k-fold CV over a grid of C on (X, Y) only; see the module docstring for `select`.
  method: the solver, 'newton' or 'fista' (`fit_logistic`)."""
  if select not in ('per_label', 'global'):
    raise UserError(f"select must be 'per_label' or 'global', got {select!r}")
  X = np.asarray(X, np.float32)
  Y = np.asarray(Y, np.float64)
  Cs = np.sort(np.asarray(Cs, np.float64))
  masks = kfold_masks(len(X), folds, seed)
  shift, scale = scaling.fit_scaling(X, masks, scaling_kind)
  fit = fit_grid(X, Y, Cs, penalty=penalty, train_mask=masks, shift=shift, scale=scale, tol=tol,
                 max_iter=max_iter, method=method)
  decisions = np.empty((len(X), len(Cs), Y.shape[1]))
  for k, mask in enumerate(masks):
    held = ~mask
    coef = fit.coef[k]                                                     # (d, G, L)
    decisions[held] = ((X[held].astype(np.float64) @ coef.reshape(len(coef), -1))
                       .reshape(-1, *coef.shape[1:]) + fit.intercept[k])
  ysign = 2 * Y[:, None, :] - 1
  log_loss = np.logaddexp(0, -ysign * decisions).mean(axis=0)              # (G, L)
  ap = np.array([metrics.evaluate(Y, decisions[:, g])['average_precision']
                 for g in range(len(Cs))])
  # Ties go to the smaller C, the sparser and more regularised model.
  if select == 'per_label':
    best = Cs[np.argmin(log_loss, axis=0)]
  else:
    best = np.full(Y.shape[1], Cs[int(np.argmax(ap))])
  return CVResult(Cs, log_loss, ap, best, decisions)


def tune_thresholds(Y, probabilities) -> np.ndarray:
  """(L,) per-label probability thresholds maximising F1 on (held-out) probabilities.

  A label is tagged where its probability is above its threshold (`miml_jax.tagging.tagger`); each
  threshold lies halfway between the lowest probability it keeps and the next lower one, so
  that new images near the cut fall on either side evenly. A label without positives keeps 0.5.
  """
  Y = np.asarray(Y, bool)
  out = np.full(Y.shape[1], 0.5)
  for j in range(Y.shape[1]):
    if not Y[:, j].any():
      continue
    p = probabilities[:, j]
    candidates = np.unique(p)
    predicted = p[None, :] >= candidates[:, None]
    tp = (predicted & Y[None, :, j]).sum(1)
    f1 = 2 * tp / (predicted.sum(1) + Y[:, j].sum())
    best = int(np.argmax(f1))
    below = candidates[best - 1] if best > 0 else 0.0
    out[j] = 0.5 * (below + candidates[best])
  return out
