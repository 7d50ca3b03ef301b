"""The recipe: L1 and L2 logistic regressions whose every setting is chosen on training data only.

Given a training set, k-fold cross-validation on it gives every choice, from held-out
predictions only:
  cv_c       C per label and per penalty, from a grid, by held-out log loss
             (`model_selection.cross_validate`); without it, one C (1, as in the paper).
  calibrate  per-label Platt scaling of each model's held-out decision values: log-odds
             a·f + b fitted by a one-dimensional logistic regression. It puts the labels on one
             scale for ranking them, and its 0.5 cut is the label's threshold for the Hamming
             loss (the probability cut that minimises the expected number of errors).
  mix        the weight w of the L1 model in w·L1 + (1 - w)·L2 of the two calibrated log-odds,
             from `MIX_WEIGHTS`, by held-out average precision, calibrated once more; without
             it, L1 alone (the paper's VGG+L1LR).
Then each penalty is refitted on the whole training set with its chosen Cs. Calibration and
the mix are affine, so the recipe is one linear model again (`Recipe.coef`, `Recipe.intercept`)
whose decision values are log-odds: rank labels by them, tag where they are positive.
"""

import dataclasses

import numpy as np

from miml_jax import metrics
from miml_jax import model_selection
from miml_jax import scaling
from miml_jax.errors import UserError
from miml_jax.solvers import fit_logistic

STEPS = ('cv_c', 'calibrate', 'mix')
# cv_c solves a whole grid of C per fold, several times the cost of the other two, for less
# than they add (experiments/table1_recipe): asked for by name.
DEFAULT_STEPS = ('calibrate', 'mix')
MIX_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Held-out fits need less precision than the final ones: they only rank values of C.
CV_TOL = 1e-4


def platt(decisions, Y, iterations: int = 100):
  """Per-label (a, b) of Platt scaling: p = sigmoid(a·f + b) fitted to labels Y (n, q) on decision
  values f (n, q), with Platt's smoothed targets ((n+ + 1) / (n+ + 2) and 1 / (n- + 2)) so that
  separable labels keep finite parameters.

  Newton's method with a backtracking line search, from a = 0 and b the log prior odds (as
  Lin, Lin and Weng's note on Platt's method): plain Newton steps diverge when held-out decision
  values are large.
  """
  f = np.asarray(decisions, np.float64)
  Y = np.asarray(Y, bool)
  pos = Y.sum(0)
  neg = len(Y) - pos
  t = np.where(Y, (pos + 1) / (pos + 2), 1 / (neg + 2))

  def loss(a, b):   # (q,) cross-entropy against the targets t
    z = a * f + b
    return (np.logaddexp(0, z) - t * z).sum(0)

  a, b = np.zeros(f.shape[1]), np.log((pos + 1) / (neg + 1))
  current = loss(a, b)
  for _ in range(iterations):
    p = 1 / (1 + np.exp(-np.clip(a * f + b, -500, 500)))
    r, w = p - t, p * (1 - p) + 1e-12
    g_a, g_b = (r * f).sum(0), r.sum(0)
    h_aa, h_ab, h_bb = (w * f * f).sum(0) + 1e-12, (w * f).sum(0), w.sum(0)
    det = h_aa * h_bb - h_ab ** 2
    step_a = -(h_bb * g_a - h_ab * g_b) / det
    step_b = -(h_aa * g_b - h_ab * g_a) / det
    # Halve each label's step until its loss decreases enough (Armijo).
    size = np.ones_like(a)
    slope = g_a * step_a + g_b * step_b
    for _ in range(40):
      trial = loss(a + size * step_a, b + size * step_b)
      ok = trial <= current + 1e-4 * size * slope
      if ok.all():
        break
      size = np.where(ok, size, size / 2)
    ok = trial <= current + 1e-4 * size * slope
    a, b = np.where(ok, a + size * step_a, a), np.where(ok, b + size * step_b, b)
    current = np.where(ok, trial, current)
    if np.max(np.abs(g_a) + np.abs(g_b)) < 1e-10 * len(f) or not ok.any():
      break
  return a, b


@dataclasses.dataclass
class Recipe:
  """A fitted recipe: one linear model, coef (D, q) and intercept (q,) in raw-feature units,
  whose decision values are the recipe's log-odds. Calibration and the mix are affine maps of
  each penalty's decision values, so their composition is linear in the features again.

  penalties: the penalties mixed; C: (P, q) their chosen C; weight: the first penalty's share
  of the mix; info: what was chosen and how (held-out scores, convergence of the final fits).
  """
  coef: np.ndarray
  intercept: np.ndarray
  penalties: tuple[str, ...]
  C: np.ndarray
  weight: float
  info: dict

  def decision_function(self, X) -> np.ndarray:
    """(n, q) log-odds of every label for features X (n, D)."""
    return np.asarray(X, np.float64) @ self.coef + self.intercept


def _mixed(raw, a, b, weight, a_mix, b_mix):
  """raw (P, n, q) decision values -> (n, q): each penalty's calibrated by (a, b) (P, q), mixed
  by `weight`, calibrated again by (a_mix, b_mix) (q,)."""
  z = a[:, None] * raw + b[:, None]
  mix = weight * z[0] + (1 - weight) * z[-1]
  return a_mix * mix + b_mix


def fit_recipe(X, Y, *, steps=DEFAULT_STEPS, Cs=model_selection.DEFAULT_CS, folds=3,
               seed=0, C=1.0, tol=1e-6, max_iter=20_000, scaling_kind='standardize',
               method='newton') -> Recipe:
  """Fits the recipe (module docstring) on features X (n, D) and labels Y (n, q).

  steps: the subset of `STEPS` to use (the others as in the paper: one C, no calibration, L1
  alone); by default all but cv_c. Cs: the grid for cv_c; C: both penalties' C without it.
  folds, seed: the cross-validation's partition of X (3 folds: the held-out fits are most of
  the recipe's cost). tol: the final fits' tolerance (held-out fits use `CV_TOL`).
  """
  unknown = set(steps) - set(STEPS)
  if unknown:
    raise UserError(f'unknown recipe steps {sorted(unknown)}; choose from {", ".join(STEPS)}')
  X = np.asarray(X, np.float32)
  Y = np.asarray(Y, np.float64)
  q = Y.shape[1]
  penalties = ('l1', 'l2') if 'mix' in steps else ('l1',)
  Cs = np.asarray(Cs if 'cv_c' in steps else (C,), np.float64)
  C = np.full((len(penalties), q), float(C))
  held = np.zeros((len(penalties), len(X), q))   # held-out decision values at the chosen C
  info = {'steps': list(steps), 'folds': folds}
  for k, penalty in enumerate(penalties if steps else ()):
    cv = model_selection.cross_validate(X, Y, Cs, folds=folds, penalty=penalty,
                                        scaling_kind=scaling_kind, seed=seed, tol=CV_TOL,
                                        max_iter=max_iter, method=method)
    C[k] = cv.best_C
    held[k] = cv.decisions[:, np.searchsorted(cv.Cs, cv.best_C), np.arange(q)]
  a, b = np.ones((len(penalties), q)), np.zeros((len(penalties), q))
  if 'calibrate' in steps:
    for k in range(len(penalties)):
      a[k], b[k] = platt(held[k], Y)
  weight, a_mix, b_mix = 1.0, np.ones(q), np.zeros(q)
  if 'mix' in steps:
    precision = [metrics.evaluate(Y, _mixed(held, a, b, w, 1.0, 0.0))['average_precision']
                 for w in MIX_WEIGHTS]
    weight = float(MIX_WEIGHTS[int(np.argmax(precision))])
    info['mix_average_precision'] = [float(p) for p in precision]
    if 'calibrate' in steps:
      a_mix, b_mix = platt(_mixed(held, a, b, weight, 1.0, 0.0), Y)
  shift, scale = scaling.fit_scaling(X, np.ones((1, len(X)), bool), scaling_kind)
  coef = np.zeros((len(penalties), X.shape[1], q))
  intercept = np.zeros((len(penalties), q))
  converged, n_iter = [], []
  shares = (weight, 1 - weight) if len(penalties) == 2 else (1.0,)
  for k, penalty in enumerate(penalties):
    if shares[k] == 0:   # left out of the mix: nothing to refit
      converged.append([True] * q)
      n_iter.append([0] * q)
      continue
    fit = fit_logistic(X, Y, penalty=penalty, C=C[k], tol=tol, max_iter=max_iter,
                       shift=shift[0], scale=scale[0], method=method)
    coef[k], intercept[k] = np.asarray(fit.coef), np.asarray(fit.intercept)
    converged.append(np.asarray(fit.converged).tolist())
    n_iter.append(np.asarray(fit.n_iter).tolist())
  info['converged'], info['n_iter'] = converged, n_iter
  info['calibration'] = {'a': a.tolist(), 'b': b.tolist(), 'a_mix': np.ravel(a_mix).tolist(),
                         'b_mix': np.ravel(b_mix).tolist()}
  # The composition of affine maps, as one linear model: coef (P, D, q) -> (D, q).
  return Recipe(_mixed(coef, a, np.zeros_like(b), weight, a_mix, 0.0),
                _mixed(intercept[:, None], a, b, weight, a_mix, b_mix)[0], penalties, C, weight,
                info)
