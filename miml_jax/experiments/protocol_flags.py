"""The flags of the paper's protocol that table1 and figure3 share (splits, C, scaling, methods,
tolerance, iteration cap, liblinear processes, the recipe's steps, grid and folds), and the
keyword arguments of `evaluation.run` they give. Those other commands take too are defined in
`miml_jax.common_flags`."""

from absl import flags

from miml_jax import cli
from miml_jax import common_flags
from miml_jax import evaluation

SPLITS = common_flags.splits()
TRAIN_FRACTION = flags.DEFINE_float('train_fraction', 2 / 3, 'Training share of each split.')
C = common_flags.C()
SCALING = common_flags.scaling_kind()
SOLVERS = flags.DEFINE_list('solvers', ['newton_l1', 'newton_l2'],
                            f'Methods, of {", ".join(evaluation.METHODS)}.')
TOL = common_flags.tol(default_help='each method its own, ' + ', '.join(
    f'{k} {v:g}' for k, v in evaluation.TOLS.items()))
MAX_ITER = common_flags.max_iter()
N_JOBS = common_flags.n_jobs()
RECIPE_STEPS = common_flags.recipe_steps()
RECIPE_CS = common_flags.Cs()
RECIPE_FOLDS = common_flags.folds(default=3)
# The recipe's grid and folds had names of their own before they were the shared ones.
flags.DEFINE_alias('recipe_Cs', 'Cs')
flags.DEFINE_alias('recipe_folds', 'folds')
HOLDERS = (SPLITS, TRAIN_FRACTION, C, SCALING, SOLVERS, TOL, MAX_ITER, N_JOBS, RECIPE_STEPS,
           RECIPE_CS, RECIPE_FOLDS)


def methods() -> list[str]:
  """--solvers by their current names. (`cli.run` has checked the shared flags; the split
  flags need the datasets: `data_flags.check_split_flags`.)"""
  names = cli.choices(SOLVERS, evaluation.METHODS + tuple(evaluation.RENAMED))
  return [evaluation.method_name(name) for name in names]


def run_kwargs() -> dict:
  """The keyword arguments of `evaluation.run` the flags give."""
  return dict(C=C.value, scaling_kind=SCALING.value, tol=TOL.value, max_iter=MAX_ITER.value,
              n_jobs=N_JOBS.value, progress=True,
              recipe_kwargs={'steps': tuple(RECIPE_STEPS.value or ()),
                             'Cs': tuple(cli.positive_numbers(RECIPE_CS)),
                             'folds': RECIPE_FOLDS.value})
