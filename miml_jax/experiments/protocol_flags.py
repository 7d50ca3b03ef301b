"""The flags of the paper's protocol that table1 and figure3 share (splits, C, scaling, methods,
tolerance, iteration cap, liblinear processes), checked in one place, and the keyword arguments
of `evaluation.run` they give."""

from absl import flags

from miml_jax import cli
from miml_jax import evaluation
from miml_jax import model_selection
from miml_jax import recipe
from miml_jax import scaling

SPLITS = flags.DEFINE_integer('splits', 30, 'Random train/test splits.')
TRAIN_FRACTION = flags.DEFINE_float('train_fraction', 2 / 3, 'Training share of each split.')
C = flags.DEFINE_float('C', 1.0, 'Inverse regularisation strength (liblinear C).')
SCALING = flags.DEFINE_enum('scaling', 'standardize', list(scaling.KINDS),
                            'Feature scaling for all methods but liblinear_paper.')
SOLVERS = flags.DEFINE_list('solvers', ['newton_l1', 'newton_l2'],
                            f'Methods, of {", ".join(evaluation.METHODS)}.')
TOL = flags.DEFINE_float(
    'tol', None, 'Tolerance of every solver but liblinear_paper (default: each its own, ' +
    ', '.join(f'{k} {v:g}' for k, v in evaluation.TOLS.items()) + ').')
MAX_ITER = flags.DEFINE_integer('max_iter', 20_000, 'Iteration cap of our solvers.')
N_JOBS = flags.DEFINE_integer('n_jobs', -1, 'Parallel liblinear fits (-1: all cores).')
RECIPE_STEPS = flags.DEFINE_list(
    'recipe_steps', list(recipe.DEFAULT_STEPS), 'The recipe method\'s choices made by '
    f'cross-validation inside each training part, of {", ".join(recipe.STEPS)} (fewer: an '
    'ablation; none: newton_l1).')
RECIPE_CS = flags.DEFINE_list('recipe_Cs', [str(c) for c in model_selection.DEFAULT_CS],
                              'The recipe\'s grid of C (with cv_c).')
RECIPE_FOLDS = flags.DEFINE_integer('recipe_folds', 3, 'The recipe\'s cross-validation folds.')
HOLDERS = (SPLITS, TRAIN_FRACTION, C, SCALING, SOLVERS, TOL, MAX_ITER, N_JOBS, RECIPE_STEPS,
           RECIPE_CS, RECIPE_FOLDS)


def methods() -> list[str]:
  """--solvers by their current names, after checking every flag here (but the split flags,
  which need the datasets: `data_flags.check_split_flags`)."""
  names = cli.choices(SOLVERS, evaluation.METHODS + tuple(evaluation.RENAMED))
  cli.positive(C)
  if TOL.value is not None:
    cli.positive(TOL)
  cli.at_least(MAX_ITER, 1)
  cli.processes(N_JOBS)
  if 'recipe' in names:
    if RECIPE_STEPS.value:   # none at all is the paper's L1 at C = 1
      cli.choices(RECIPE_STEPS, recipe.STEPS)
    cli.positive_numbers(RECIPE_CS)
    cli.at_least(RECIPE_FOLDS, 2)
  return [evaluation.method_name(name) for name in names]


def run_kwargs() -> dict:
  """The keyword arguments of `evaluation.run` the flags give."""
  return dict(C=C.value, scaling_kind=SCALING.value, tol=TOL.value, max_iter=MAX_ITER.value,
              n_jobs=N_JOBS.value, progress=True,
              recipe_kwargs={'steps': tuple(RECIPE_STEPS.value or ()),
                             'Cs': tuple(cli.positive_numbers(RECIPE_CS)),
                             'folds': RECIPE_FOLDS.value})
