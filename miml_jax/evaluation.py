"""The paper's protocol: fit each method on every split's training part, score the test part.

Methods, by algorithm and penalty (all at the same C, on the same scaled features unless said
otherwise), each at its own default tolerance (`TOLS`) of the one optimality measure of
`miml_jax.solvers.objective`:
  newton_l1, newton_l2        our batched JAX Newton solvers (`fit_logistic(method='newton')`:
                              L1 proximal Newton on a working set, L2 Newton in sample space);
  fista_l1, fista_l2          our batched FISTA (`fit_logistic(method='fista')`);
  liblinear_l1, liblinear_l2  scikit-learn's liblinear on the same problems;
  liblinear_paper             what the paper ran: LIBLINEAR's command-line defaults for L1-LR
                              (eps 0.01, no bias) on raw features;
  recipe                      `miml_jax.recipe`: C, calibration and the L1/L2 mix chosen by
                              cross-validation inside each split's training part (`run_recipe`).
The names before the FISTA methods joined, jax_l1 and jax_l2, are newton_l1 and newton_l2
(`RENAMED`).
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import time

import jax
import numpy as np
import tqdm
from absl import logging

from miml_jax import metrics
from miml_jax import safefile
from miml_jax import scaling
from miml_jax.errors import UserError
from miml_jax.solvers import fit_logistic
from miml_jax.solvers import LogisticFit

METHODS = ('newton_l1', 'newton_l2', 'fista_l1', 'fista_l2', 'liblinear_l1', 'liblinear_l2',
           'liblinear_paper', 'recipe')
RENAMED = {'jax_l1': 'newton_l1', 'jax_l2': 'newton_l2'}
# Each solver's tolerance in the protocol. Newton's 1e-7 leaves every 30-split Table 1 problem
# within about 1e-6 of the optimum for 2% more time than 1e-6, which left scene's L1 problems up
# to 1.2e-4 above it (`experiments/solver_speed.md`); FISTA stops on the same measure; liblinear
# at 1e-8 is the reference optimum. liblinear_paper's 0.01 is part of the paper's method.
TOLS = {'newton': 1e-7, 'fista': 1e-7, 'liblinear': 1e-8, 'liblinear_paper': 0.01}
JAX_TOL = TOLS['newton']
# Updates of a method's progress bar (groups of splits fitted together).
_PROGRESS_STEPS = 5


# XLA's compile events (tracing, lowering, compiling or fetching from the persistent cache):
# their durations add up to a method's compile seconds.
_COMPILE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
                   '/jax/core/compile/jaxpr_to_mlir_module_duration',
                   '/jax/core/compile/backend_compile_duration')
_compile_seconds = [0.0]


def _count_compile_time(event, duration, **_):
  if event in _COMPILE_EVENTS:
    _compile_seconds[0] += duration


jax.monitoring.register_event_duration_secs_listener(_count_compile_time)


def method_name(name: str) -> str:
  """A method's current name (old ones renamed), or `UserError` for an unknown one."""
  if name in RENAMED:
    logging.warning('method %s is now called %s', name, RENAMED[name])
    return RENAMED[name]
  if name not in METHODS:
    raise UserError(f'unknown method {name!r}; choose from {", ".join(METHODS)}')
  return name


def algorithm(name: str) -> str:
  """'newton', 'fista', 'liblinear' or 'liblinear_paper': the key of `TOLS` (the recipe's final
  fits are Newton's)."""
  if name == 'recipe':
    return 'newton'
  return name if name == 'liblinear_paper' else name.rsplit('_', 1)[0]


@dataclasses.dataclass
class MethodResult:
  """decisions: (S, n_test, q) test decision values; metrics: {name: (S,)} per split;
  objective: (S, q) the fit's objective, recomputed in float64 from its weights; n_iter,
  converged: (S, q) as the solver reported them; fit_seconds includes compile_seconds.
  weights: (coef (S, d, q), intercept (S, q)) of our solvers' fits (None for the others);
  reused: the methods whose fits this one took over instead of solving them again (the
  recipe's final fits are newton_l1's and newton_l2's problems), not in its fit_seconds."""
  decisions: np.ndarray
  objective: np.ndarray
  metrics: dict
  fit_seconds: float
  compile_seconds: float
  n_iter: np.ndarray
  converged: np.ndarray
  nonzero_fraction: float
  tol: float
  weights: tuple | None = None
  reused: tuple[str, ...] = ()

  @property
  def converged_fraction(self) -> float:
    return float(np.mean(self.converged))


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


def run_method(name, X, Y, masks, *, C=1.0, scaling_kind='standardize', tol=None,
               max_iter=20_000, n_jobs=-1, test_masks=None, scalings=None,
               progress=False, recipe_kwargs=None, parts_dir=None,
               final_fits=None) -> MethodResult:
  """Fits `name` on every split (X: (n, d), Y: (n, q), masks: (S, n)) and scores its test part.

  tol: the solver's tolerance (None: its default in `TOLS`; liblinear_paper always 0.01).
  test_masks: (S, n) the rows to score, if not all rows outside the training masks (Figure 3
  trains on subsets of a split's training part and scores the same test part).
  scalings: a dict the methods of one `run` share, {kind: (shift, scale)} of these masks, so
  that each kind of scaling is fitted once.
  progress: a progress bar on stderr, by splits, with the time left.
  recipe_kwargs: `recipe.fit_recipe`'s settings (steps, Cs, folds) for the method 'recipe'
  (which takes C for both its models unless its steps choose C); parts_dir: where it keeps its
  finished splits (`run_recipe`), and final_fits: {method: MethodResult} of newton_l1 and
  newton_l2 on the same splits and settings, whose fits the recipe takes as its final ones.
  """
  name = method_name(name)
  if name == 'recipe':
    return run_recipe(X, Y, masks, C=C, scaling_kind=scaling_kind, tol=tol,
                      max_iter=max_iter, test_masks=test_masks, progress=progress,
                      parts_dir=parts_dir, final_fits=final_fits, **(recipe_kwargs or {}))
  kind_of = algorithm(name)
  if kind_of.startswith('liblinear'):
    # Imported only when asked for: scikit-learn takes about 2 s to import, a large share of a
    # warm Table 1 run of our solvers on an accelerator.
    from miml_jax.solvers import liblinear   # pylint: disable=g-import-not-at-top
  tol = TOLS[kind_of] if tol is None or kind_of == 'liblinear_paper' else tol
  penalty = 'l2' if name.endswith('l2') else 'l1'
  kind = 'none' if name == 'liblinear_paper' else scaling_kind
  scalings = {} if scalings is None else scalings
  if kind not in scalings:
    scalings[kind] = scaling.fit_scaling(X, masks, kind)
  shift, scale = scalings[kind]

  def fit_splits(part):
    if kind_of in ('newton', 'fista'):
      return jax.block_until_ready(fit_logistic(
          np.asarray(X, np.float32), Y, penalty=penalty, C=C, tol=tol, max_iter=max_iter,
          train_mask=masks[part], shift=shift[part], scale=scale[part], method=kind_of))
    if name == 'liblinear_paper':
      return liblinear.fit_liblinear(X, Y, penalty='l1', C=C, fit_intercept=False, tol=tol,
                                     train_mask=masks[part], n_jobs=n_jobs)
    return liblinear.fit_liblinear(X, Y, penalty=penalty, C=C, tol=tol, max_iter=100_000,
                                   train_mask=masks[part], shift=shift[part], scale=scale[part],
                                   n_jobs=n_jobs)

  # With a progress bar, the splits are fitted a few at a time (the bar moves and estimates
  # the time left); each part is one batched call, so the work is the same. The last part is
  # padded with repeats of its first split, so that every part has the same shape and the
  # solver compiles once.
  S = len(masks)
  step = S if not progress else max(1, -(-S // _PROGRESS_STEPS))
  seconds, fits = 0.0, []
  compiled = _compile_seconds[0]
  with tqdm.tqdm(total=S, unit='split', desc=name, disable=not progress) as bar:
    for first in range(0, S, step):
      size = min(step, S - first)
      part = np.r_[first:first + size, np.full(step - size, first)]
      start = time.perf_counter()
      fits.append([np.asarray(a)[:size] for a in fit_splits(part)])
      seconds += time.perf_counter() - start
      bar.update(size)
  fit = LogisticFit(*(np.concatenate(field) for field in zip(*fits)))
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
  return MethodResult(decisions, objective, scores, seconds, _compile_seconds[0] - compiled,
                      np.asarray(fit.n_iter), np.asarray(fit.converged, bool),
                      float(np.mean(coef != 0)), float(tol),
                      (coef, intercept) if kind_of in ('newton', 'fista') else None)


def run_recipe(X, Y, masks, *, scaling_kind='standardize', tol=None, max_iter=20_000,
               test_masks=None, progress=False, parts_dir=None, final_fits=None,
               **recipe_kwargs) -> MethodResult:
  """The recipe (`miml_jax.recipe`) fitted on each split's training part alone (its
  cross-validation folds cut from that part), scored on the test part; the splits batched
  (`recipe.fit_recipes`), a few at a time with a progress bar (as `run_method`).

  parts_dir: a folder where each finished split is saved (checked, atomically) and found again
  by a rerun of the same data and settings, so that an interrupted run loses at most the group
  of splits it was on. objective is NaN (the recipe has no single objective); n_iter and
  converged are those of its final fits, summed and all-of over the penalties;
  nonzero_fraction that of its one linear model (the union of the mixed models' supports);
  a split's seconds are its share of its group's time. final_fits: {method: MethodResult} of
  newton_l1 / newton_l2 on the same masks, C, scaling, tolerance and iteration cap (as
  `run` passes them): their fits are the recipe's final ones (unless cv_c chooses C), taken
  over rather than solved again.
  """
  from miml_jax import recipe as recipe_lib   # pylint: disable=g-import-not-at-top
  tol = TOLS['newton'] if tol is None else tol
  test = test_indices(masks if test_masks is None else ~np.asarray(test_masks, bool))
  S, q = len(masks), Y.shape[1]
  decisions = np.empty((S, test.shape[1], q))
  converged = np.ones((S, q), bool)
  n_iter = np.zeros((S, q), int)
  seconds, nonzero = np.zeros(S), np.zeros(S)
  compiled = _compile_seconds[0]
  reused = {}
  if 'cv_c' not in recipe_kwargs.get('steps', recipe_lib.DEFAULT_STEPS):
    reused = {name.rsplit('_', 1)[1]: r for name, r in (final_fits or {}).items()
              if name in ('newton_l1', 'newton_l2') and r.weights is not None}
  settings = dict(scaling_kind=scaling_kind, tol=tol, max_iter=max_iter,
                  version=recipe_lib.VERSION, **recipe_kwargs)
  data_key = _digest(X, Y, json.dumps(settings, sort_keys=True, default=str))
  keys = [_digest(masks[s], test[s], data_key) for s in range(S)]
  parts = [None if parts_dir is None else
           os.path.join(parts_dir, f'split-{s:03d}-{keys[s]}.safetensors') for s in range(S)]
  todo = []
  for s in range(S):
    saved = None if parts[s] is None else _load_split(parts[s], keys[s], decisions.shape[1:])
    if saved is None:
      todo.append(s)
      continue
    decisions[s], converged[s], n_iter[s] = (saved['decisions'], saved['converged'],
                                             saved['n_iter'])
    seconds[s], nonzero[s] = saved['seconds'][0], saved['nonzero'][0]
  # Groups of the same size (the last padded with repeats of its first split), so that the
  # solvers compile once.
  step = max(1, len(todo)) if not progress else max(1, -(-S // _PROGRESS_STEPS))
  with tqdm.tqdm(total=S, initial=S - len(todo), unit='split', desc='recipe',
                 disable=not progress) as bar:
    for first in range(0, len(todo), step):
      group = todo[first:first + step]
      padded = group + [group[0]] * (step - len(group))
      start = time.perf_counter()
      final = {penalty: (r.weights[0][padded], r.weights[1][padded], r.converged[padded],
                         r.n_iter[padded]) for penalty, r in reused.items()}
      fitted = recipe_lib.fit_recipes(X, Y, masks[padded], seeds=padded, tol=tol,
                                      max_iter=max_iter, scaling_kind=scaling_kind,
                                      final=final, **recipe_kwargs)
      elapsed = time.perf_counter() - start
      for s, recipe in zip(group, fitted):
        seconds[s] = elapsed / len(group)
        decisions[s] = recipe.decision_function(X[test[s]])
        converged[s] = np.all(recipe.info['converged'], axis=0)
        n_iter[s] = np.sum(recipe.info['n_iter'], axis=0)
        nonzero[s] = np.mean(recipe.coef != 0)
        if parts[s] is not None:
          safefile.save(parts[s], {'decisions': decisions[s], 'converged': converged[s],
                                   'n_iter': n_iter[s].astype(np.int64),
                                   'seconds': seconds[s:s + 1], 'nonzero': nonzero[s:s + 1]},
                        {'format': _SPLIT_FORMAT, 'key': keys[s]})
      bar.update(len(group))
  scores = metrics.evaluate(Y[test], decisions)
  return MethodResult(decisions, np.full((S, q), np.nan), scores, float(seconds.sum()),
                      _compile_seconds[0] - compiled, n_iter, converged, float(nonzero.mean()),
                      float(tol), reused=tuple(f'newton_{p}' for p in reused))


_SPLIT_FORMAT = 'miml_jax.recipe_split/1'


def _load_split(path: str, key: str, shape) -> dict | None:
  """A finished split saved by an earlier run of the same data and settings (`key`), or None
  if there is none, or it is damaged or changed (it is then removed and fitted again)."""
  if not os.path.exists(path):
    return None
  try:
    arrays, meta = safefile.load(path, _SPLIT_FORMAT, 'finished split')
    if meta.get('key') != key or arrays['decisions'].shape != tuple(shape):
      raise UserError(f'{path}: from other data or settings')
  except (UserError, KeyError) as e:
    logging.warning('%s; fitting that split again', e)
    with contextlib.suppress(OSError):
      os.unlink(path)
    return None
  return arrays


def _digest(*parts) -> str:
  """A short hex digest of arrays and strings."""
  h = hashlib.sha256()
  for part in parts:
    h.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray)
             else str(part).encode())
  return h.hexdigest()[:16]


def run(X, Y, masks, methods, **kwargs) -> dict:
  """{method: MethodResult} for each of `methods`; kwargs as `run_method`."""
  out, scalings = {}, {}
  names = list(map(method_name, methods))
  # The recipe's final fits are newton_l1's and newton_l2's problems: it runs after them and
  # takes their fits over.
  for name in sorted(names, key=lambda n: n == 'recipe'):
    logging.info('fitting %s on %d splits x %d labels', name, len(masks), Y.shape[1])
    extra = {'final_fits': dict(out)} if name == 'recipe' else {}
    out[name] = run_method(name, X, Y, masks, scalings=scalings, **extra, **kwargs)
    logging.info('%s: %.1f s, %s', name, out[name].fit_seconds,
                 {k: round(float(v.mean()), 4) for k, v in out[name].metrics.items()})
  return {name: out[name] for name in names}


def _fittable(Y, masks) -> np.ndarray:
  """(S, q) the (split, label) problems with both classes in the training part (liblinear cannot
  fit the others)."""
  pos = np.einsum('sn,nl->sl', masks, Y)
  return (pos > 0) & (pos < masks.sum(1, keepdims=True))


def objective_gaps(results: dict, Y, masks) -> dict:
  """{method: (ours - liblinear) / liblinear over the fittable problems} for each of our methods
  whose penalty liblinear (at its tight tolerance) also ran."""
  valid = _fittable(Y, masks)
  out = {}
  for name, result in results.items():
    if name == 'recipe':   # no single objective to compare
      continue
    ref = results.get(f'liblinear_{name.rsplit("_", 1)[1]}')
    if algorithm(name) in ('newton', 'fista') and ref is not None:
      out[name] = ((result.objective - ref.objective) / ref.objective)[valid]
  return out


def agreement(results: dict, Y, masks) -> dict:
  """Ours against liblinear on the same problems: objective gaps, metric and time ratios.

  {method: {...}} for each of our methods (newton_l1, fista_l2, ...) whose penalty liblinear
  also ran. Gaps are (ours - liblinear) / liblinear over the (split, label) problems with both
  classes in the training part (liblinear cannot fit the others).
  """
  out = {}
  for name, gap in objective_gaps(results, Y, masks).items():
    ours, ref = results[name], results[f'liblinear_{name.rsplit("_", 1)[1]}']
    out[name] = {
        'problems': int(gap.size),
        'objective_gap_worst': float(gap.max()),
        'objective_gap_median': float(np.median(gap)),
        'within_1e-4': float(np.mean(gap <= 1e-4)),
        'metric_difference_max': max(
            abs(float(ours.metrics[k].mean() - ref.metrics[k].mean())) for k in ours.metrics),
        'liblinear_seconds_over_ours': ref.fit_seconds / ours.fit_seconds,
    }
  return out


def summary(result: MethodResult) -> dict:
  """{metric: {'mean', 'std'}, 'fit_seconds', 'compile_seconds', 'iterations', ...} of one
  method, JSON-ready."""
  out = {k: {'mean': float(v.mean()), 'std': float(v.std())} for k, v in result.metrics.items()}
  out['fit_seconds'] = result.fit_seconds
  out['compile_seconds'] = result.compile_seconds
  out['iterations'] = {'median': float(np.median(result.n_iter)),
                       'max': int(np.max(result.n_iter))}
  out['converged_fraction'] = result.converged_fraction
  out['nonzero_fraction'] = result.nonzero_fraction
  out['tol'] = result.tol
  if result.reused:
    out['fits_reused_from'] = list(result.reused)
  return out
