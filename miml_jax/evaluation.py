"""The paper's protocol run: each method of a `miml_jax.protocol.Protocol` fitted on every split's
training part, its test part scored; the results JSON-ready (`summary`) and checked against
liblinear (`agreement`).
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
from miml_jax import protocol as protocol_lib
from miml_jax.plumbing import safefile
from miml_jax import scaling
from miml_jax.plumbing.errors import UserError
from miml_jax.solvers import fit_logistic
from miml_jax.solvers import LogisticFit

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


def run_method(name, X, Y, masks, protocol=None, *, n_jobs=-1,
               test_masks=None, scalings=None, progress=False, parts_dir=None,
               final_fits=None) -> MethodResult:
  """Fits method `name` under `protocol` (its C, scaling, tolerance and iteration cap; None: the
  default `Protocol`) on every split (X: (n, d), Y: (n, q), masks: (S, n)) and scores its test
  part.

  n_jobs: liblinear's processes. test_masks: (S, n) the rows to score, if not all rows outside
  the training masks (Figure 3 trains on subsets of a split's training part and scores the same
  test part). scalings: a dict the methods of one `run` share, {kind: (shift, scale)} of these
  masks, so that each kind of scaling is fitted once. progress: a progress bar on stderr, by
  splits, with the time left. For the recipe: parts_dir, where it keeps its finished splits,
  and final_fits, as `run_recipe`.
  """
  # Built here, not as a default: a Protocol checks the recipe's steps, and importing the recipe
  # is work an import of this module should not do.
  protocol = protocol_lib.Protocol() if protocol is None else protocol
  method = protocol_lib.method(name)
  if method.solver == 'recipe':
    return run_recipe(X, Y, masks, protocol, test_masks=test_masks, progress=progress,
                      parts_dir=parts_dir, final_fits=final_fits)
  if method.solver == 'liblinear':
    # Imported only when asked for: scikit-learn takes about 2 s to import, a large share of a
    # warm Table 1 run of our solvers on an accelerator.
    from miml_jax.solvers import liblinear   # pylint: disable=g-import-not-at-top
  tol, C = protocol.tol_of(method.name), protocol.C
  max_iter = method.max_iter or protocol.max_iter
  kind = protocol.scaling if method.scaled else 'none'
  scalings = {} if scalings is None else scalings
  if kind not in scalings:
    scalings[kind] = scaling.fit_scaling(X, masks, kind)
  shift, scale = scalings[kind]

  def fit_splits(part):
    if method.ours:
      return jax.block_until_ready(fit_logistic(
          np.asarray(X, np.float32), Y, penalty=method.penalty, C=C, tol=tol,
          max_iter=max_iter, train_mask=masks[part], shift=shift[part], scale=scale[part],
          method=method.solver))
    return liblinear.fit_liblinear(
        X, Y, penalty=method.penalty, C=C, tol=tol, max_iter=max_iter, train_mask=masks[part],
        fit_intercept=method.fit_intercept,
        **(dict(shift=shift[part], scale=scale[part]) if method.scaled else {}), n_jobs=n_jobs)

  # With a progress bar, the splits are fitted a few at a time (the bar moves and estimates
  # the time left); each part is one batched call, so the work is the same. The last part is
  # padded with repeats of its first split, so that every part has the same shape and the
  # solver compiles once.
  S = len(masks)
  step = S if not progress else max(1, -(-S // _PROGRESS_STEPS))
  seconds, fits = 0.0, []
  compiled = _compile_seconds[0]
  with tqdm.tqdm(total=S, unit='split', desc=method.name, disable=not progress) as bar:
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
  objective = scaled_objective(X, Y, masks, shift, scale, coef, intercept,
                               penalty=method.penalty, C=C, fit_intercept=method.fit_intercept,
                               margins=margins)
  return MethodResult(decisions, objective, scores, seconds, _compile_seconds[0] - compiled,
                      np.asarray(fit.n_iter), np.asarray(fit.converged, bool),
                      float(np.mean(coef != 0)), float(tol),
                      (coef, intercept) if method.ours else None)


def run_recipe(X, Y, masks, protocol=None, *, test_masks=None,
               progress=False, parts_dir=None, final_fits=None) -> MethodResult:
  """The recipe (`miml_jax.recipe`, with `protocol`'s steps, grid, folds, C, scaling, tolerance
  and iteration cap) fitted on each split's training part alone (its cross-validation folds cut
  from that part), scored on the test part; the splits batched (`recipe.fit_recipes`), a few at
  a time with a progress bar (as `run_method`).

  parts_dir: a folder where each finished split is saved (checked, atomically) and found again
  by a rerun of the same data and settings, so that an interrupted run loses at most the group
  of splits it was on. objective is NaN (the recipe has no single objective); n_iter and
  converged are those of its final fits, summed and all-of over the penalties;
  nonzero_fraction that of its one linear model (the union of the mixed models' supports);
  a split's seconds are its share of its group's time. final_fits: {method: MethodResult} of
  the methods the recipe reuses (`Method.reuses`) on the same masks and protocol (as `run`
  passes them): their fits are the recipe's final ones (unless cv_c chooses C), taken over
  rather than solved again.
  """
  from miml_jax import recipe as recipe_lib   # pylint: disable=g-import-not-at-top
  protocol = protocol_lib.Protocol() if protocol is None else protocol
  tol = protocol.tol_of('recipe')
  scaling_kind, max_iter = protocol.scaling, protocol.max_iter
  recipe_kwargs = dict(protocol.recipe_kwargs, C=protocol.C)
  test = test_indices(masks if test_masks is None else ~np.asarray(test_masks, bool))
  S, q = len(masks), Y.shape[1]
  decisions = np.empty((S, test.shape[1], q))
  converged = np.ones((S, q), bool)
  n_iter = np.zeros((S, q), int)
  seconds, nonzero = np.zeros(S), np.zeros(S)
  compiled = _compile_seconds[0]
  final_fits = final_fits or {}
  reused_from = [] if 'cv_c' in protocol.recipe_steps else [
      name for name in protocol_lib.METHODS['recipe'].reuses
      if name in final_fits and final_fits[name].weights is not None]
  reused = {protocol_lib.METHODS[name].penalty: final_fits[name] for name in reused_from}
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
                      float(tol), reused=tuple(reused_from))


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


def run(X, Y, masks, protocol: protocol_lib.Protocol, **kwargs) -> dict:
  """{method: MethodResult} for each of `protocol.methods`, in that order, on these masks (the
  protocol's own, `protocol.masks(len(X))`, or Figure 3's subsets); kwargs as `run_method`."""
  out, scalings = {}, {}
  # A method that takes others' fits over (the recipe: newton_l1's and newton_l2's problems)
  # runs after them.
  for name in sorted(protocol.methods, key=lambda n: bool(protocol_lib.METHODS[n].reuses)):
    logging.info('fitting %s on %d splits x %d labels', name, len(masks), Y.shape[1])
    reuses = protocol_lib.METHODS[name].reuses
    extra = {'final_fits': {r: out[r] for r in reuses if r in out}} if reuses else {}
    out[name] = run_method(name, X, Y, masks, protocol, scalings=scalings, **extra, **kwargs)
    logging.info('%s: %.1f s, %s', name, out[name].fit_seconds,
                 {k: round(float(v.mean()), 4) for k, v in out[name].metrics.items()})
  return {name: out[name] for name in protocol.methods}


def _fittable(Y, masks) -> np.ndarray:
  """(S, q) the (split, label) problems with both classes in the training part (liblinear cannot
  fit the others)."""
  pos = np.einsum('sn,nl->sl', masks, Y)
  return (pos > 0) & (pos < masks.sum(1, keepdims=True))


def objective_gaps(results: dict, Y, masks) -> dict:
  """{method: (ours - reference) / reference objective over the fittable problems} for each
  method whose reference (`Method.reference`) also ran."""
  valid = _fittable(Y, masks)
  out = {}
  for name, result in results.items():
    ref = results.get(protocol_lib.METHODS[name].reference)
    if ref is not None:
      out[name] = ((result.objective - ref.objective) / ref.objective)[valid]
  return out


def agreement(results: dict, Y, masks) -> dict:
  """Ours against liblinear on the same problems: objective gaps, metric and time ratios.

  {method: {...}} for each method whose reference (`Method.reference`: liblinear at its tight
  tolerance, same penalty) also ran. Gaps are (ours - liblinear) / liblinear over the (split,
  label) problems with both classes in the training part (liblinear cannot fit the others).
  """
  out = {}
  for name, gap in objective_gaps(results, Y, masks).items():
    ours, ref = results[name], results[protocol_lib.METHODS[name].reference]
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
