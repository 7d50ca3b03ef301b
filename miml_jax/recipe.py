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
  shrink     each calibration pulled toward the identity (a, b) = (1, 0), the model's own
             log-odds, by the share n+ / (n+ + `SHRINK_POSITIVES`) of a label with n+ positive
             training images: its held-out values come from fold models that saw even fewer
             positives, and their Platt scaling flattens what the final model learnt from them
             (with 25 msrc_v2 images, unshrunk, the recipe ranked worse than L1 alone).
Then each penalty is refitted on the whole training set with its chosen Cs. Calibration and
the mix are affine, so the recipe is one linear model again (`Recipe.coef`, `Recipe.intercept`)
whose decision values are log-odds: rank labels by them, tag where they are positive.

`fit_recipes` fits it on many training sets at once (Table 1's splits, Figure 3's subsets): the
held-out fits of all splits x folds x labels (x C) are one solver call per penalty, the final
fits one more per penalty, and Platt scaling and the mix are vectorised over the splits;
`fit_recipe` is the one-training-set case. Given the final fits (Table 1 passes newton_l1's and
newton_l2's), the L2 held-out fits start from their split's final L2 fit (`WARM_FOLDS`).
"""

import dataclasses

import numpy as np

from miml_jax import metrics
from miml_jax import model_selection
from miml_jax import scaling
from miml_jax.plumbing.errors import UserError
from miml_jax.solvers import fit_logistic

STEPS = ('cv_c', 'calibrate', 'mix', 'shrink')
# Part of the key of saved per-split results (`evaluation.run_recipe`): raised whenever the same
# steps give other results, so that a rerun never takes over splits fitted by older code.
VERSION = 3
# cv_c solves a whole grid of C per fold, several times the cost of the others, for less
# than they add (experiments/table1_recipe): asked for by name.
DEFAULT_STEPS = ('calibrate', 'mix', 'shrink')
MIX_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
# 'shrink': a label with this many positives trusts its Platt scaling half, the model's own
# log-odds half. Set on msrc_v2 alone (10 repetitions; 3, 10, 30 tried: 10 ranked best with all
# 394 training images and within 0.005 a.p. of the best with 25), so Scene checks it unseen.
SHRINK_POSITIVES = 10
# Held-out fits need less precision than the final ones: they only rank values of C.
CV_TOL = 1e-4
# The held-out fits that start from their split's final fit, when it is given (Table 1 passes
# newton_l2's): L2 alone. At `CV_TOL` a fold stops near where it starts; for L1, started from
# a fit that saw the fold's held-out rows, that made held-out scores look better than they are
# (log loss 0.0106 below the exact fits'), where L2's strongly convex Newton steps land closer
# to the fold's own optimum than from zero (0.008 mean deviation against 0.0125) and scored no
# better than exact (+0.0004): experiments/l2_queue_and_warm_starts.
WARM_FOLDS = ('l2',)


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

  a, b = np.zeros(f.shape[1]), np.log((pos + 1) / (neg + 1))
  # Columns are independent fits, each iterated only while it is unfinished (many splits' labels
  # are one call: a finished column must not keep the others' arrays, or line searches, large).
  cols = np.arange(f.shape[1])
  for _ in range(iterations):
    if not cols.size:
      break
    fc, tc, ac, bc = f[:, cols], t[:, cols], a[cols], b[cols]
    z = ac * fc + bc
    current = (np.logaddexp(0, z) - tc * z).sum(0)
    p = 1 / (1 + np.exp(-np.clip(z, -500, 500)))
    r, w = p - tc, p * (1 - p) + 1e-12
    g_a, g_b = (r * fc).sum(0), r.sum(0)
    h_aa, h_ab, h_bb = (w * fc * fc).sum(0) + 1e-12, (w * fc).sum(0), w.sum(0)
    det = h_aa * h_bb - h_ab ** 2
    step_a = -(h_bb * g_a - h_ab * g_b) / det
    step_b = -(h_aa * g_b - h_ab * g_a) / det
    slope = g_a * step_a + g_b * step_b   # minus the squared Newton decrement
    # Finished: a gradient at rounding level, or a step that would gain nothing measurable.
    going = (np.abs(g_a) + np.abs(g_b) >= 1e-10 * len(f)) & (-slope > 1e-13 * len(f))
    # Halve each column's step until its loss decreases enough (Armijo).
    size = np.ones_like(ac)
    for _ in range(40):
      za = (ac + size * step_a) * fc + (bc + size * step_b)
      trial = (np.logaddexp(0, za) - tc * za).sum(0)
      ok = trial <= current + 1e-4 * size * slope
      if ok[going].all():
        break
      size = np.where(ok, size, size / 2)
    ok &= going
    a[cols] = np.where(ok, ac + size * step_a, ac)
    b[cols] = np.where(ok, bc + size * step_b, bc)
    # A column whose step no longer decreases its loss is at its optimum (to rounding).
    cols = cols[ok]
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
  """raw (P, S, n, q) decision values of S splits -> (S, n, q): each penalty's calibrated by
  (a, b) (P, S, q), mixed by `weight` (S,), calibrated again by (a_mix, b_mix) (S, q)."""
  z = a[:, :, None] * raw + b[:, :, None]
  w = np.asarray(weight, np.float64)[:, None, None]
  mix = w * z[0] + (1 - w) * z[-1]
  return a_mix[:, None] * mix + b_mix[:, None]


def _platt_splits(decisions, Y, shrink=False):
  """`platt` of every split at once: decisions and Y (S, n, q) -> (a, b), each (S, q). The
  labels of all splits are columns of one problem (each column is its own fit). shrink: pulled
  toward the identity (a, b) = (1, 0) by the share n+ / (n+ + `SHRINK_POSITIVES`), n+ the
  label's positives (module docstring)."""
  S, n, q = decisions.shape
  columns = lambda v: np.moveaxis(v, 0, 1).reshape(n, S * q)
  a, b = platt(columns(decisions), columns(Y))
  a, b = a.reshape(S, q), b.reshape(S, q)
  if shrink:
    positives = np.asarray(Y, bool).sum(axis=1)
    share = positives / (positives + SHRINK_POSITIVES)
    a, b = 1 + (a - 1) * share, b * share
  return a, b


def _calibration(held, Y, steps):
  """Calibration and mix of held-out decision values held (P, S, n, q) against labels Y (S, n, q):
  (a, b) (P, S, q) each penalty's Platt scaling, weight (S,) the first penalty's share, (a_mix,
  b_mix) (S, q) the mix's Platt scaling, and precision (S, W) the held-out a.p. of each of
  `MIX_WEIGHTS` (None without the mix). Steps left out are identities (and weight 1)."""
  P, S, _, q = held.shape
  a, b = np.ones((P, S, q)), np.zeros((P, S, q))
  if 'calibrate' in steps:
    for k in range(P):
      a[k], b[k] = _platt_splits(held[k], Y, 'shrink' in steps)
  weight, a_mix, b_mix = np.ones(S), np.ones((S, q)), np.zeros((S, q))
  precision = None
  if 'mix' in steps:
    precision = np.stack([
        metrics.evaluate(Y, _mixed(held, a, b, np.full(S, w), a_mix, b_mix))[
            'average_precision'] for w in MIX_WEIGHTS], axis=1)            # (S, W)
    weight = np.asarray(MIX_WEIGHTS)[np.argmax(precision, axis=1)]
    if 'calibrate' in steps:
      a_mix, b_mix = _platt_splits(_mixed(held, a, b, weight, np.ones((S, q)),
                                          np.zeros((S, q))), Y, 'shrink' in steps)
  return a, b, weight, a_mix, b_mix, precision


def _fold_masks(rows, n, folds, seeds):
  """(S·F, n) training masks of each split's folds (`kfold_masks` of its training rows `rows`
  (S, m), seeded per split) over all n rows, and (S, F, m) the same on the training rows."""
  S, m = rows.shape
  on_rows = np.stack([model_selection.kfold_masks(m, folds, int(seed)) for seed in seeds])
  full = np.zeros((S, folds, n), bool)
  full[np.arange(S)[:, None, None], np.arange(folds)[None, :, None], rows[:, None, :]] = on_rows
  return full.reshape(S * folds, n), on_rows


def _held_out(X, Y, rows, fold_masks, on_rows, grid, penalty, scaling_kind, max_iter, method,
              start=None):
  """Held-out decision values (S, m, G, q) of every split's training rows under its folds' fits,
  for every C of `grid`, all splits x folds x C x labels in one solver call. start: optional
  (coef (S, D, G·q), intercept (S, G·q)), each split's weights its folds start from."""
  S, m = rows.shape
  folds = on_rows.shape[1]
  shift, scale = scaling.fit_scaling(X, fold_masks, scaling_kind)
  init = None if start is None else tuple(np.repeat(a, folds, axis=0) for a in start)
  fit = model_selection.fit_grid(X, Y, grid, penalty=penalty, train_mask=fold_masks,
                                 shift=shift, scale=scale, tol=CV_TOL, max_iter=max_iter,
                                 method=method, init=init)
  coef = np.asarray(fit.coef, np.float64)                      # (S·F, d, G, q)
  intercept = np.asarray(fit.intercept, np.float64)            # (S·F, G, q)
  d, G, q = coef.shape[1:]
  held = np.empty((S, m, G, q))
  for s in range(S):
    for f in range(folds):
      out = ~on_rows[s, f]
      k = s * folds + f
      held[s, out] = ((X[rows[s, out]].astype(np.float64) @ coef[k].reshape(d, -1))
                      .reshape(-1, G, q) + intercept[k])
  return held


def fit_recipes(X, Y, masks, *, steps=DEFAULT_STEPS, Cs=model_selection.DEFAULT_CS, folds=3,
                seeds=None, C=1.0, tol=1e-6, max_iter=20_000, scaling_kind='standardize',
                method='newton', final=None) -> list['Recipe']:
  """The recipe (module docstring) fitted on each of S training masks (S, n) of X (n, D), Y (n, q):
  every split's folds, penalties, grid of C and labels go through the solver together (one call
  per penalty for the held-out fits, one per penalty for the final fits), and Platt scaling and
  the mix are vectorised over splits. Returns one `Recipe` per mask.

  seeds: (S,) each split's fold partition (default 0..S-1); the other arguments as `fit_recipe`.
  final: {penalty: (coef (S, D, q), intercept (S, q), converged (S, q), n_iter (S, q))}, fits
  of these masks at C with these settings made elsewhere (Table 1's newton_l1 and newton_l2):
  taken as the final fits instead of solving them again (not with cv_c, whose C differ).
  The splits must have the same number of training rows (random splits, Figure 3's subsets);
  masks of different sizes are fitted one size at a time.
  """
  unknown = set(steps) - set(STEPS)
  if unknown:
    raise UserError(f'unknown recipe steps {sorted(unknown)}; choose from {", ".join(STEPS)}')
  final = final or {}
  if final and 'cv_c' in steps:
    raise UserError('the final fits cannot be given when cv_c chooses C per split')
  X = np.asarray(X, np.float32)
  Y = np.asarray(Y, np.float64)
  masks = np.asarray(masks, bool)
  S, q = len(masks), Y.shape[1]
  seeds = np.arange(S) if seeds is None else np.asarray(seeds)
  sizes = masks.sum(1)
  if len(set(sizes.tolist())) > 1:
    if final:
      raise UserError('the final fits can be given only for training parts of one size')
    out = [None] * S
    for size in sorted(set(sizes.tolist())):
      pick = np.flatnonzero(sizes == size)
      for i, r in zip(pick, fit_recipes(X, Y, masks[pick], steps=steps, Cs=Cs, folds=folds,
                                        seeds=seeds[pick], C=C, tol=tol, max_iter=max_iter,
                                        scaling_kind=scaling_kind, method=method)):
        out[i] = r
    return out
  rows = np.stack([np.flatnonzero(m) for m in masks])          # (S, m), ascending
  Y_train = Y[rows]                                            # (S, m, q)
  penalties = ('l1', 'l2') if 'mix' in steps else ('l1',)
  P = len(penalties)
  grid = np.sort(np.asarray(Cs if 'cv_c' in steps else (C,), np.float64))
  chosen = np.full((P, S, q), float(C))
  held = np.zeros((P, S, rows.shape[1], q))   # held-out decision values at the chosen C
  if steps:
    fold_masks, on_rows = _fold_masks(rows, len(X), folds, seeds)
    ysign = 2 * Y_train[:, :, None, :] - 1
    for k, penalty in enumerate(penalties):
      # L2 folds start from their split's final fit where it is given (`WARM_FOLDS`).
      start = final[penalty][:2] if penalty in final and penalty in WARM_FOLDS else None
      values = _held_out(X, Y, rows, fold_masks, on_rows, grid, penalty, scaling_kind,
                         max_iter, method, start)              # (S, m, G, q)
      # Per label, the C of least held-out log loss; ties go to the smaller C.
      best = np.argmin(np.logaddexp(0, -ysign * values).mean(axis=1), axis=1)   # (S, q)
      chosen[k] = grid[best]
      held[k] = np.take_along_axis(values, best[:, None, None, :], axis=2)[:, :, 0]
  a, b, weight, a_mix, b_mix, precision = _calibration(held, Y_train, steps)
  shift, scale = scaling.fit_scaling(X, masks, scaling_kind)
  coef = np.zeros((P, S, X.shape[1], q))
  intercept = np.zeros((P, S, q))
  converged = np.ones((P, S, q), bool)
  n_iter = np.zeros((P, S, q), int)
  shares = np.stack([weight, 1 - weight]) if P == 2 else np.ones((1, S))
  for k, penalty in enumerate(penalties):
    if penalty in final:
      coef[k], intercept[k], converged[k], n_iter[k] = (np.asarray(a) for a in final[penalty])
      continue
    fitted = np.flatnonzero(shares[k] != 0)   # a penalty left out of a split's mix: not refitted
    # One call for the splits that share their Cs (all of them unless cv_c chose per split).
    groups = {}
    for s in fitted:
      groups.setdefault(chosen[k, s].tobytes(), []).append(s)
    for group in groups.values():
      fit = fit_logistic(X, Y, penalty=penalty, C=chosen[k, group[0]], tol=tol,
                         max_iter=max_iter, train_mask=masks[group], shift=shift[group],
                         scale=scale[group], method=method)
      coef[k, group] = np.asarray(fit.coef)
      intercept[k, group] = np.asarray(fit.intercept)
      converged[k, group] = np.asarray(fit.converged)
      n_iter[k, group] = np.asarray(fit.n_iter)
  # The composition of affine maps, as one linear model per split: coef (P, S, D, q) -> (S, D, q).
  coef_out = _mixed(coef, a, np.zeros_like(b), weight, a_mix, np.zeros_like(b_mix))
  intercept_out = _mixed(intercept[:, :, None], a, b, weight, a_mix, b_mix)[:, 0]
  recipes = []
  for s in range(S):
    info = {'steps': list(steps), 'folds': folds,
            'converged': converged[:, s].tolist(), 'n_iter': n_iter[:, s].tolist(),
            'calibration': {'a': a[:, s].tolist(), 'b': b[:, s].tolist(),
                            'a_mix': a_mix[s].tolist(), 'b_mix': b_mix[s].tolist()}}
    if precision is not None:
      info['mix_average_precision'] = precision[s].tolist()
    recipes.append(Recipe(coef_out[s], intercept_out[s], penalties, chosen[:, s].copy(),
                          float(weight[s]), info))
  return recipes


def fit_recipe(X, Y, *, steps=DEFAULT_STEPS, Cs=model_selection.DEFAULT_CS, folds=3,
               seed=0, C=1.0, tol=1e-6, max_iter=20_000, scaling_kind='standardize',
               method='newton') -> Recipe:
  """Fits the recipe (module docstring) on features X (n, D) and labels Y (n, q).

  steps: the subset of `STEPS` to use (the others as in the paper: one C, no calibration, L1
  alone); by default all but cv_c. Cs: the grid for cv_c; C: both penalties' C without it.
  folds, seed: the cross-validation's partition of X (3 folds: the held-out fits are most of
  the recipe's cost). tol: the final fits' tolerance (held-out fits use `CV_TOL`).
  """
  return fit_recipes(X, Y, np.ones((1, len(X)), bool), steps=steps, Cs=Cs, folds=folds,
                     seeds=[seed], C=C, tol=tol, max_iter=max_iter, scaling_kind=scaling_kind,
                     method=method)[0]
