"""The paper's protocol: fit each method on every split's training part, score the test part.

Methods (all at the same C, on the same scaled features unless said otherwise):
  jax_l1, jax_l2              our batched JAX solvers (Newton-type, see `fit_logistic`), tight
                              tolerance;
  liblinear_l1, liblinear_l2  scikit-learn's liblinear on the same problems, tight tolerance;
  liblinear_paper             what the paper ran: LIBLINEAR's command-line defaults for L1-LR
                              (eps 0.01, no bias) on raw features.
"""

import dataclasses
import time

import jax
import numpy as np
from absl import logging

from miml_jax import metrics
from miml_jax import scaling
from miml_jax.errors import UserError
from miml_jax.solvers import fit_logistic

METHODS = ('jax_l1', 'jax_l2', 'liblinear_l1', 'liblinear_l2', 'liblinear_paper')
# Our solvers' relative tolerance in the protocol. On the 30-split Table 1 problems it leaves
# every one within about 1e-6 of the optimum for 2% more time; 1e-6 left scene's L1 problems
# up to 1.2e-4 above it (`experiments/solver_speed.md`).
JAX_TOL = 1e-7


@dataclasses.dataclass
class MethodResult:
  """decisions: (S, n_test, q) test decision values; metrics: {name: (S,)} per split;
  objective: (S, q) the fit's objective, recomputed in float64 from its weights."""
  decisions: np.ndarray
  objective: np.ndarray
  metrics: dict
  fit_seconds: float
  converged_fraction: float
  nonzero_fraction: float


def test_indices(masks: np.ndarray) -> np.ndarray:
  """(S, n_test) indices of each split's test rows (every split has the same test size)."""
  sizes = (~masks).sum(axis=1)
  if len(set(sizes.tolist())) != 1:
    raise UserError('all splits must have the same number of test images')
  return np.stack([np.flatnonzero(~m) for m in masks])


def decision_values(X, coef, intercept) -> np.ndarray:
  """(S, n, q) float64 decision values X @ coef + intercept of every row under every split's fit."""
  # matmul, not einsum: numpy's einsum does not call BLAS for these (about 7x slower).
  return np.asarray(X, np.float64) @ coef + intercept[:, None]


def scaled_objective(X, Y, masks, shift, scale, coef, intercept, *, penalty, C,
                     fit_intercept=True, margins=None):
  """(S, q) liblinear objective, in float64, of raw-unit weights on each split's scaled features.

  coef: (S, d, q), intercept: (S, q) as `fit_logistic` returns them; the penalty applies to the
  weights of the scaled problem (coef * scale) and to its intercept weight (intercept scaling 1).
  margins: `decision_values(X, coef, intercept)`, if already at hand.
  """
  coef = np.asarray(coef, np.float64)
  intercept = np.asarray(intercept, np.float64)
  z = coef * scale[..., None]
  if fit_intercept:
    beta = intercept + (shift[:, None] @ coef)[:, 0]
    z = np.concatenate([z, beta[:, None]], axis=1)
  reg = np.abs(z).sum(1) if penalty == 'l1' else 0.5 * np.square(z).sum(1)
  if margins is None:
    margins = decision_values(X, coef, intercept)
  loss = (np.logaddexp(0, -(2 * Y - 1)[None] * margins) * masks[..., None]).sum(1)
  return reg + C * loss


def run_method(name, X, Y, masks, *, C=1.0, scaling_kind='standardize', jax_tol=JAX_TOL,
               liblinear_tol=1e-8, max_iter=20_000, n_jobs=-1, test_masks=None,
               scalings=None) -> MethodResult:
  """Fits `name` on every split (X: (n, d), Y: (n, q), masks: (S, n)) and scores its test part.

  test_masks: (S, n) the rows to score, if not all rows outside the training masks (Figure 3
  trains on subsets of a split's training part and scores the same test part).
  scalings: a dict the methods of one `run` share, {kind: (shift, scale)} of these masks, so
  that each kind of scaling is fitted once.
  """
  if name not in METHODS:
    raise UserError(f'unknown method {name!r}; choose from {", ".join(METHODS)}')
  if name.startswith('liblinear'):
    # Imported only when asked for: scikit-learn takes about 2 s to import, a large share of a
    # warm Table 1 run of our solvers on an accelerator.
    from miml_jax.solvers import liblinear   # pylint: disable=g-import-not-at-top
  penalty = 'l2' if name.endswith('l2') else 'l1'
  kind = 'none' if name == 'liblinear_paper' else scaling_kind
  scalings = {} if scalings is None else scalings
  if kind not in scalings:
    scalings[kind] = scaling.fit_scaling(X, masks, kind)
  shift, scale = scalings[kind]
  start = time.perf_counter()
  if name.startswith('jax'):
    fit = jax.block_until_ready(fit_logistic(
        np.asarray(X, np.float32), Y, penalty=penalty, C=C, tol=jax_tol, max_iter=max_iter,
        train_mask=masks, shift=shift, scale=scale))
  elif name == 'liblinear_paper':
    fit = liblinear.fit_liblinear(X, Y, penalty='l1', C=C, fit_intercept=False, tol=0.01,
                                  train_mask=masks, n_jobs=n_jobs)
  else:
    fit = liblinear.fit_liblinear(X, Y, penalty=penalty, C=C, tol=liblinear_tol,
                                  max_iter=100_000, train_mask=masks, shift=shift, scale=scale,
                                  n_jobs=n_jobs)
  seconds = time.perf_counter() - start
  coef = np.asarray(fit.coef, np.float64)
  intercept = np.asarray(fit.intercept, np.float64)
  test = test_indices(masks if test_masks is None else ~np.asarray(test_masks, bool))
  # Every row's decision values at once, for the objective; the test rows' are taken from them
  # (gathering the test rows of X for each split first copies the data S times).
  margins = decision_values(X, coef, intercept)
  decisions = np.take_along_axis(margins, test[..., None], axis=1)
  scores = metrics.evaluate(Y[test], decisions)
  objective = scaled_objective(X, Y, masks, shift, scale, coef, intercept, penalty=penalty, C=C,
                               fit_intercept=name != 'liblinear_paper', margins=margins)
  return MethodResult(decisions, objective, scores, seconds, float(np.mean(fit.converged)),
                      float(np.mean(coef != 0)))


def run(X, Y, masks, methods, **kwargs) -> dict:
  """{method: MethodResult} for each of `methods`; kwargs as `run_method`."""
  out, scalings = {}, {}
  for name in methods:
    logging.info('fitting %s on %d splits x %d labels', name, len(masks), Y.shape[1])
    out[name] = run_method(name, X, Y, masks, scalings=scalings, **kwargs)
    logging.info('%s: %.1f s, %s', name, out[name].fit_seconds,
                 {k: round(float(v.mean()), 4) for k, v in out[name].metrics.items()})
  return out


def agreement(results: dict, Y, masks) -> dict:
  """Ours against liblinear on the same problems: objective gaps, metric and time ratios.

  {'l1': {...}, 'l2': {...}} for each penalty where both `jax_<p>` and `liblinear_<p>` ran.
  Gaps are (ours - liblinear) / liblinear over the (split, label) problems with both classes in
  the training part (liblinear cannot fit the others).
  """
  pos = np.einsum('sn,nl->sl', masks, Y)
  valid = (pos > 0) & (pos < masks.sum(1, keepdims=True))
  out = {}
  for penalty in ('l1', 'l2'):
    ours, ref = results.get(f'jax_{penalty}'), results.get(f'liblinear_{penalty}')
    if ours is None or ref is None:
      continue
    gap = ((ours.objective - ref.objective) / ref.objective)[valid]
    out[penalty] = {
        'problems': int(valid.sum()),
        'objective_gap_worst': float(gap.max()),
        'objective_gap_median': float(np.median(gap)),
        'within_1e-4': float(np.mean(gap <= 1e-4)),
        'metric_difference_max': max(
            abs(float(ours.metrics[k].mean() - ref.metrics[k].mean())) for k in ours.metrics),
        'liblinear_seconds_over_ours': ref.fit_seconds / ours.fit_seconds,
    }
  return out


def summary(result: MethodResult) -> dict:
  """{metric: {'mean', 'std'}, 'fit_seconds', ...} of one method, JSON-ready."""
  out = {k: {'mean': float(v.mean()), 'std': float(v.std())} for k, v in result.metrics.items()}
  out['fit_seconds'] = result.fit_seconds
  out['converged_fraction'] = result.converged_fraction
  out['nonzero_fraction'] = result.nonzero_fraction
  return out
