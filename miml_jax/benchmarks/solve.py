"""The Table 1 solver workload (splits x labels): our batched solvers against liblinear, one run.

  python -m miml_jax.benchmarks.solve --features=cache/msrc_v2_lpips.h5 --splits=30 \
      --penalties=l1,l2 --scaling=standardize --n_jobs=2 --output=solve_msrc.json

Ours: Newton-type solvers (or FISTA, --solver=fista) in one jitted call per penalty; for L1
Newton, each inner method in --l1_subproblems (`l1_subproblems` in the output). Both solve
the same problems (liblinear's objective on the same scaled features); the objective gaps, against
liblinear at the first (tightest) of --liblinear_tols, show whether they reached the same
optimum. With looser tolerances too (--liblinear_tols=1e-8,1e-4), `speedup_at_1e-4` compares our
time with the fastest liblinear run that stops within 1e-4 of that optimum. Labels with one class
in a split's training part are left out (liblinear cannot fit them). --recipe times the recipe
(`recipe.fit_recipes`, all splits batched, Table 1's settings) on the same splits and prints its
time over the L1 Newton fit's (`recipe_over_newton_l1`); with l2 in --penalties too, also as
Table 1 runs it, its final fits taken from the L1 and L2 fits timed before
(`given_final_fits_over_newton_l1`).
"""

import json
import time

import jax
import numpy as np
from absl import flags

from miml_jax.plumbing import atomic
from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax import evaluation
from miml_jax import protocol
from miml_jax.plumbing import outputs
from miml_jax import recipe
from miml_jax.plumbing import runtime_flags
from miml_jax import scaling
from miml_jax import splits
from miml_jax.plumbing.errors import UserError
from miml_jax.features import read_feature_file
from miml_jax.solvers import fit_logistic
from miml_jax.solvers import l1_prox_newton
from miml_jax.solvers.liblinear import fit_liblinear

_FEATURES = common_flags.features()
flags.mark_flag_as_required('features')
_SPLITS = common_flags.splits()
_SEED = common_flags.seed()
_PENALTIES = common_flags.penalties()
_SCALING = common_flags.scaling_kind()
_C = common_flags.C()
_JAX_TOL = common_flags.tol(default=protocol.METHODS['newton_l1'].tol)
_MAX_ITER = common_flags.max_iter()
_LIBLINEAR_TOLS = flags.DEFINE_list(
    'liblinear_tols', ['1e-8'], 'liblinear tolerances to time; the first, the tightest, gives '
    'the reference objective of every gap.')
_N_JOBS = common_flags.n_jobs()
_SOLVER_DTYPE = flags.DEFINE_enum('solver_dtype', 'float32', ['float32', 'float64'],
                                  'Our solvers\' dtype.')
_SOLVER = flags.DEFINE_enum('solver', 'newton', ['newton', 'fista'],
                            'Our solver (the algorithm of table1\'s newton_* or fista_* methods).')
_NEWTON_BLOCK = flags.DEFINE_integer('newton_block', None,
                                     "Coordinates per Newton step (default: the solver's).")
_L1_SUBPROBLEMS = flags.DEFINE_list(
    'l1_subproblems', ['auto'], "L1 Newton's inner method(s) to time: auto (the solver's "
    'choice for the shapes and device), cd, fista, matrix_free; the first gives the headline '
    'figures.')
_RECIPE = flags.DEFINE_boolean('recipe', False, 'Time the recipe too (with l1 in --penalties), '
                               'against the L1 Newton fit.')
_RECIPE_STEPS = common_flags.recipe_steps()
_OUTPUT = common_flags.output('a JSON file of the figures.')
_OVERWRITE = common_flags.overwrite()

FORMAT = 'miml_jax.benchmarks.solve/1'


def _timed(fn):
  """(seconds, result) of fn(), its arrays computed."""
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  return time.perf_counter() - start, out


def main(argv):
  cli.no_arguments(argv)
  features = common_flags.one_feature_file(_FEATURES)
  cli.positive_numbers(_LIBLINEAR_TOLS)
  cli.choices(_L1_SUBPROBLEMS, ('auto', *l1_prox_newton.SUBPROBLEMS))
  if _RECIPE.value:
    if 'l1' not in _PENALTIES.value:
      raise UserError('--recipe is timed against the L1 fit: keep l1 in --penalties')
  if _OUTPUT.value:
    outputs.check_file(_OUTPUT.value, outputs.Inputs([features]),
                       kind=FORMAT.split('/')[0], overwrite=_OVERWRITE.value)
  runtime_flags.apply()
  if _SOLVER_DTYPE.value == 'float64':
    jax.config.update('jax_enable_x64', True)
  data = read_feature_file(features)
  X, Y = data.features, data.labels.astype(np.float64)
  masks = splits.random_splits(len(X), _SPLITS.value, seed=_SEED.value)
  shift, scale = scaling.fit_scaling(X, masks, _SCALING.value)
  # (split, label) pairs liblinear can fit: both classes in the training part.
  pos = np.einsum('sn,nl->sl', masks, Y)
  valid = (pos > 0) & (pos < masks.sum(1, keepdims=True))
  print(f'{features}: {X.shape[0]} images x {X.shape[1]} features, {Y.shape[1]} labels; '
        f'{_SPLITS.value} splits; {valid.sum()} of {valid.size} problems have both classes; '
        f'scaling={_SCALING.value} C={_C.value}; jax on {jax.devices()[0].device_kind}')
  result = {'format': FORMAT, 'features': features, 'splits': _SPLITS.value,
            'scaling': _SCALING.value,
            'C': _C.value, 'dtype': _SOLVER_DTYPE.value, 'device': jax.devices()[0].device_kind,
            'problems': int(valid.sum()), 'penalties': {}}
  Xd = X.astype(_SOLVER_DTYPE.value)
  fits = {}   # each penalty's first fit, for the recipe as Table 1 runs it
  for penalty in _PENALTIES.value:
    kwargs = dict(penalty=penalty, C=_C.value, train_mask=masks, shift=shift, scale=scale)
    liblinear = {}
    for tol in map(float, _LIBLINEAR_TOLS.value):
      start = time.perf_counter()
      fit = fit_liblinear(X, Y, tol=tol, max_iter=100_000, n_jobs=_N_JOBS.value, **kwargs)
      seconds = time.perf_counter() - start
      # Objectives recomputed in float64 from the returned weights.
      liblinear[tol] = seconds, evaluation.scaled_objective(
          X, Y, masks, shift, scale, fit.coef, fit.intercept, penalty=penalty, C=_C.value)
    liblinear_s, f_ref = next(iter(liblinear.values()))   # the first, tightest tolerance
    gap_to_ref = lambda f: ((f - f_ref) / f_ref)[valid]
    variants = {}
    l1_newton = penalty == 'l1' and _SOLVER.value != 'fista'
    subproblems = _L1_SUBPROBLEMS.value if l1_newton else ['auto']
    for sub in subproblems:
      method = dict(method=_SOLVER.value, newton_block=_NEWTON_BLOCK.value,
                    l1_subproblem=None if sub == 'auto' else sub)
      # Twice: the first run compiles every shape its batches reach (as the sub-batches shrink
      # and working sets grow, more than its first iterations show), the second is timed.
      first_s, ours = _timed(lambda: fit_logistic(Xd, Y, tol=_JAX_TOL.value,
                                                  max_iter=_MAX_ITER.value, **method, **kwargs))
      jax_s, ours = _timed(lambda: fit_logistic(Xd, Y, tol=_JAX_TOL.value,
                                                max_iter=_MAX_ITER.value, **method, **kwargs))
      gap = gap_to_ref(evaluation.scaled_objective(X, Y, masks, shift, scale, ours.coef,
                                                   ours.intercept, penalty=penalty, C=_C.value))
      n_iter = np.asarray(ours.n_iter)[valid]
      fits.setdefault(penalty, ours)
      variants[sub] = {
          'jax_seconds': jax_s, 'jax_first_run_seconds': first_s,
          'jax_compile_seconds': max(first_s - jax_s, 0.0),
          'jax_iterations_max': int(n_iter.max()),
          'jax_iterations_median': float(np.median(n_iter)),
          'jax_converged_fraction': float(np.asarray(ours.converged)[valid].mean()),
          'gap_worst': float(gap.max()), 'gap_median': float(np.median(gap)),
          'within_1e-4': float(np.mean(gap <= 1e-4)),
          'nonzero_fraction': float(np.mean(np.asarray(ours.coef) != 0)),
      }
    row = {
        'solver': 'fista' if _SOLVER.value == 'fista' else (
            'sample-space newton' if penalty == 'l2' else 'working-set proximal newton'),
        **next(iter(variants.values())),
        'liblinear_seconds': liblinear_s,
    }
    row['speedup'] = liblinear_s / row['jax_seconds']
    row['speedup_first_run'] = liblinear_s / row['jax_first_run_seconds']
    if len(variants) > 1:
      row['l1_subproblems'] = variants
    # Looser liblinear runs: their time, and how far from the reference optimum they stop.
    row['liblinear_by_tol'] = {
        f'{tol:g}': {'seconds': t, 'gap_worst': float(gap_to_ref(f).max())}
        for tol, (t, f) in liblinear.items()}
    # The fair ratio: against the fastest liblinear run within 1e-4 of the reference, when ours
    # is within 1e-4 too.
    fair = [v['seconds'] for v in row['liblinear_by_tol'].values() if v['gap_worst'] <= 1e-4]
    if fair and row['gap_worst'] <= 1e-4:
      row['speedup_at_1e-4'] = min(fair) / row['jax_seconds']
    result['penalties'][penalty] = row
    print(penalty, json.dumps(row))
    print(f'{penalty}: liblinear {liblinear_s:.1f} s / ours {row["jax_seconds"]:.1f} s = '
          f'{row["speedup"]:.2f}x (ours first run in this process {row["jax_first_run_seconds"]:.1f} s: '
          f'{row["speedup_first_run"]:.2f}x); worst objective gap {row["gap_worst"]:.1e}')
  if _RECIPE.value:
    kwargs = dict(steps=tuple(_RECIPE_STEPS.value), C=_C.value, tol=_JAX_TOL.value,
                  scaling_kind=_SCALING.value, method=_SOLVER.value)
    fit = lambda: recipe.fit_recipes(Xd, Y, masks, max_iter=_MAX_ITER.value, **kwargs)
    first_s, _ = _timed(fit)
    seconds, _ = _timed(fit)
    row = {'steps': _RECIPE_STEPS.value, 'seconds': seconds, 'first_run_seconds': first_s,
           'compile_seconds': max(first_s - seconds, 0.0)}
    l1_seconds = result['penalties']['l1']['jax_seconds']
    row['recipe_over_newton_l1'] = row['seconds'] / l1_seconds
    print(f'recipe: {seconds:.1f} s = {row["recipe_over_newton_l1"]:.2f}x newton_l1 '
          f'(first run {first_s:.1f} s)')
    if 'l2' in fits and 'cv_c' not in kwargs['steps']:
      # As Table 1 runs it: the final fits are newton_l1's and newton_l2's, timed above.
      final = {penalty: tuple(np.asarray(a) for a in (fit.coef, fit.intercept, fit.converged,
                                                       fit.n_iter))
               for penalty, fit in fits.items()}
      given = lambda: recipe.fit_recipes(Xd, Y, masks, max_iter=_MAX_ITER.value, final=final,
                                         **kwargs)
      first_own, _ = _timed(given)   # its warm-started folds reach other batch shapes
      own, _ = _timed(given)
      row['final_fits_given'] = sorted(final)
      row['seconds_given_final_fits'] = own
      row['first_run_seconds_given_final_fits'] = first_own
      row['given_final_fits_over_newton_l1'] = own / l1_seconds
      print(f'recipe given the L1 and L2 fits (as in Table 1): {own:.1f} s = '
            f'{row["given_final_fits_over_newton_l1"]:.2f}x newton_l1 (first run {first_own:.1f} s)')
    result['recipe'] = row
    print('recipe', json.dumps(row))
  if _OUTPUT.value:
    atomic.write_json(_OUTPUT.value, result)


if __name__ == '__main__':
  cli.run(main)
