"""The flags of the paper's protocol that table1 and figure3 share (splits, C, scaling, methods,
tolerance, iteration cap, liblinear processes, the recipe's steps, grid and folds), and the
`miml_jax.protocol.Protocol` they make. Those other commands take too are defined in
`miml_jax.plumbing.common_flags`."""

from absl import flags

from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax import protocol as protocol_lib
from miml_jax.experiments import data_flags

SPLITS = common_flags.splits()
TRAIN_FRACTION = flags.DEFINE_float('train_fraction', 2 / 3, 'Training share of each split.')
C = common_flags.C()
SCALING = common_flags.scaling_kind()
SOLVERS = flags.DEFINE_list('solvers', ['newton_l1', 'newton_l2'],
                            f'Methods, of {", ".join(protocol_lib.METHODS)}.')
TOL = common_flags.tol(default_help='each method its own, ' + ', '.join(
    f'{k} {v:g}' for k, v in protocol_lib.default_tols().items()))
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


# The flags that only the recipe reads.
RECIPE_HOLDERS = (RECIPE_STEPS, RECIPE_CS, RECIPE_FOLDS)


def protocol() -> protocol_lib.Protocol:
  """The protocol the flags give, methods by their current names. (`cli.run` has checked the
  shared flags; the split flags need the datasets: `data_flags.check_split_flags`.)"""
  names = cli.choices(SOLVERS, tuple(protocol_lib.METHODS) + tuple(protocol_lib.RENAMED))
  cli.fraction(TRAIN_FRACTION)   # named by its flag, before the protocol's own check
  return protocol_lib.Protocol(
      methods=tuple(names), splits=SPLITS.value, train_fraction=TRAIN_FRACTION.value,
      seed=data_flags.SEED.value, C=C.value, scaling=SCALING.value, tol=TOL.value,
      max_iter=MAX_ITER.value, recipe_steps=tuple(RECIPE_STEPS.value or ()),
      Cs=tuple(cli.positive_numbers(RECIPE_CS)), folds=RECIPE_FOLDS.value)
