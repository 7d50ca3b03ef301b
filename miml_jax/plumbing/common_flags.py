"""The flags that several commands take, each defined here once: one name, one meaning, one
check.

A command asks for the ones it takes, with its own default where it differs:

    _TOL = common_flags.tol(default=1e-4)
    _SPLITS = common_flags.splits()

The flag is then the command's own (`--helpshort` lists it), and `cli.run` checks its value
before `main` starts, so a bad number never reaches any work. One process runs one command: a
flag asked for again (two command modules imported together, as in tests) is the one first
defined, with that command's default.
"""

from typing import Callable

from absl import flags

from miml_jax.plumbing import cli
from miml_jax import model_selection
from miml_jax import scaling
from miml_jax.plumbing.errors import UserError

# The DEFINE_* calls below define the flags of whichever module calls these functions.
flags.disclaim_key_flags()

PENALTIES = ('l1', 'l2')
SELECTS = ('per_label', 'global')


def _once(name: str, define: Callable[[], flags.FlagHolder],
          check: Callable[[flags.FlagHolder], object] | None = None) -> flags.FlagHolder:
  if name in flags.FLAGS:
    flags.declare_key_flag(name)     # of the module asking (this one is disclaimed)
    return flags.FlagHolder(flags.FLAGS, flags.FLAGS[name])
  holder = define()
  if check is not None:
    cli.check_before_main(lambda: check(holder))
  return holder


def overwrite() -> flags.FlagHolder[bool]:
  return _once('overwrite', lambda: flags.DEFINE_boolean(
      'overwrite', False, 'Replace an existing output file that miml_jax did not make (by '
      'default such a file is never overwritten).'))


def data_dir() -> flags.FlagHolder[str]:
  return _once('data_dir', lambda: flags.DEFINE_string(
      'data_dir', None, 'Folder of datasets by name: searched first for a --dataset (then '
      '$MIML_JAX_DATA, then ~/miml_jax_data), and where `python -m miml_jax.datasets fetch` '
      'puts one (default: the first of those two).'))


def output(what: str, *, required: bool = False) -> flags.FlagHolder[str]:
  """--output: the one file a command writes (`what` it is, for the help)."""
  return _once('output', lambda: flags.DEFINE_string(
      'output', None, f'The file to write: {what}', required=required))


def output_dir(default: str = 'results') -> flags.FlagHolder[str]:
  """--output_dir: the folder a command writes its files into."""
  return _once('output_dir', lambda: flags.DEFINE_string(
      'output_dir', default, 'Folder to write into (made if missing).'))


def features(*, several: bool = False) -> flags.FlagHolder[list[str]]:
  """--features: feature files (`python -m miml_jax.features`) read instead of --dataset;
  a command that takes one reads it with `one_feature_file`."""
  return _once('features', lambda: flags.DEFINE_list(
      'features', None, 'A finished feature file (from `python -m miml_jax.features`) instead '
      'of --dataset' + (' (several, comma-separated)' if several else '') + ': results are '
      'named after the dataset it was made from, and neither images nor weights are needed.'))


def one_feature_file(holder: flags.FlagHolder) -> str | None:
  """The one --features of a command that takes a single file; None if not given."""
  if not holder.value:
    return None
  if len(holder.value) != 1:
    raise UserError(f'this command takes one --features file, got {len(holder.value)}: '
                    f'{",".join(holder.value)}')
  return holder.value[0]


def splits(default: int = 30) -> flags.FlagHolder[int]:
  return _once('splits', lambda: flags.DEFINE_integer(
      'splits', default, 'Random train/test splits: the first ones of --seed, the same in '
      'every command.'), lambda h: cli.at_least(h, 1))


def seed(default: int = 0) -> flags.FlagHolder[int]:
  return _once('seed', lambda: flags.DEFINE_integer(
      'seed', default, 'Seed of the random splits (the same splits in every command).'),
      lambda h: cli.at_least(h, 0))


# pylint: disable=invalid-name   (C and Cs: the names the paper and liblinear use)
def C(default: float = 1.0, *, or_cv: bool = False) -> flags.FlagHolder:
  """--C, liblinear's inverse regularisation strength; with `or_cv`, also 'cv' (the value is
  then the string 'cv' or a float)."""
  if not or_cv:
    return _once('C', lambda: flags.DEFINE_float(
        'C', default, 'Inverse regularisation strength (liblinear\'s C).'), cli.positive)
  return _once('C', lambda: flags.DEFINE(
      _NumberOrCV(), 'C', default, 'Inverse regularisation strength (liblinear\'s C), or cv: '
      'chosen by cross-validation from --Cs.'), _check_number_or_cv)


class _NumberOrCV(flags.ArgumentParser):
  syntactic_help = "a number or 'cv'"

  def parse(self, argument):
    if isinstance(argument, (int, float)) or argument == 'cv':
      return argument
    try:
      return float(argument)
    except ValueError:
      raise ValueError(f"a number or 'cv', got {argument!r}") from None

  def flag_type(self):
    return 'float or cv'


def _check_number_or_cv(holder):
  if holder.value != 'cv':
    cli.positive(holder, or_what=" or 'cv'")


def Cs(default=model_selection.DEFAULT_CS) -> flags.FlagHolder[list[str]]:
  # pylint: enable=invalid-name
  return _once('Cs', lambda: flags.DEFINE_list(
      'Cs', [str(c) for c in default], 'The grid of C that cross-validation chooses from.'),
      cli.positive_numbers)


def folds(default: int = 5) -> flags.FlagHolder[int]:
  """--folds (at least 2 here; the command checks it against its training images)."""
  return _once('folds', lambda: flags.DEFINE_integer(
      'folds', default, 'Cross-validation folds of the training images.'),
      lambda h: cli.at_least(h, 2))


def select() -> flags.FlagHolder[str]:
  return _once('select', lambda: flags.DEFINE_enum(
      'select', 'per_label', list(SELECTS), 'Cross-validation\'s choice of C: one per label, '
      'or one for all labels.'))


def scaling_kind() -> flags.FlagHolder[str]:
  return _once('scaling', lambda: flags.DEFINE_enum(
      'scaling', 'standardize', list(scaling.KINDS), 'Feature scaling, with the statistics of '
      'each training part.'))


def penalties() -> flags.FlagHolder[list[str]]:
  return _once('penalties', lambda: flags.DEFINE_list(
      'penalties', list(PENALTIES), 'Regularisers: l1 and/or l2.'),
      lambda h: cli.choices(h, PENALTIES))


def tol(default: float | None = None, *, default_help: str = '') -> flags.FlagHolder:
  """--tol, the relative tolerance of our solvers (None: each solver its own, `default_help`
  says which)."""
  return _once('tol', lambda: flags.DEFINE_float(
      'tol', default, 'Relative tolerance of our solvers' +
      (f' (default: {default_help})' if default_help else '') + '.'),
      lambda h: h.value is None or cli.positive(h))


def max_iter(default: int = 20_000) -> flags.FlagHolder[int]:
  return _once('max_iter', lambda: flags.DEFINE_integer(
      'max_iter', default, 'Iteration cap of our solvers.'), lambda h: cli.at_least(h, 1))


def n_jobs() -> flags.FlagHolder[int]:
  return _once('n_jobs', lambda: flags.DEFINE_integer(
      'n_jobs', -1, 'liblinear fits run in parallel (-1: all cores).'), cli.processes)


def batch_size() -> flags.FlagHolder[int]:
  """--batch_size of feature extraction (checked with the image size, `extract.check_sizes`)."""
  return _once('batch_size', lambda: flags.DEFINE_integer(
      'batch_size', 32, 'Images per device step of feature extraction.'))


def image_size(note: str = '') -> flags.FlagHolder[int]:
  return _once('image_size', lambda: flags.DEFINE_integer(
      'image_size', 224, 'Images are resized to this square size (fc7 exists only at 224)' +
      note + '.'))


def scales(note: str = '') -> flags.FlagHolder[list[str]]:
  return _once('scales', lambda: flags.DEFINE_list(
      'scales', None, 'Several input sizes whose features are averaged (instead of '
      '--image_size), e.g. 224,320' + note + '.'))


def augment(default: str = 'none', note: str = '') -> flags.FlagHolder[str]:
  from miml_jax.features import extract   # pylint: disable=g-import-not-at-top
  return _once('augment', lambda: flags.DEFINE_enum(
      'augment', default, list(extract.AUGMENTS), 'flip averages each image\'s features with '
      'its mirror image\'s, at twice the extraction time; none: one view' + note + '.'))


def recipe_steps() -> flags.FlagHolder[list[str]]:
  from miml_jax import recipe   # pylint: disable=g-import-not-at-top
  return _once('recipe_steps', lambda: flags.DEFINE_list(
      'recipe_steps', list(recipe.DEFAULT_STEPS), 'The recipe\'s choices made by '
      f'cross-validation inside each training part, of {", ".join(recipe.STEPS)} (fewer: an '
      'ablation; none: L1 at C = 1).'),
      # None at all is the paper's L1 at C = 1.
      lambda h: not h.value or cli.choices(h, recipe.STEPS))
