"""The flags every experiment command shares (dataset or feature file, weights, feature cache,
split seed), and the features they name."""

from absl import app
from absl import flags

from miml_jax import datasets
from miml_jax.errors import exit_on_user_error
from miml_jax.features import cached_features
from miml_jax.features import read_feature_file

DATASET = flags.DEFINE_list('dataset', None, 'scene, msrc_v2, or a dataset folder (table1: '
                             'several, comma-separated).')
FEATURES = flags.DEFINE_list(
    'features', None, 'A finished feature file instead of --dataset (table1: several): results '
    'are named after the dataset it was made from, and neither images nor weights are needed.')
DATA_DIR = flags.DEFINE_string('data_dir', None, 'Folder holding datasets by name '
                               '(default: $MIML_JAX_DATA).')
WEIGHTS = flags.DEFINE_string('weights', 'weights/vgg16_lpips.safetensors', 'Weights file.')
CACHE_DIR = flags.DEFINE_string('cache_dir', 'cache', 'Where feature files are kept.')
SEED = flags.DEFINE_integer('seed', 0, 'Split seed (the same splits in every experiment).')
HOLDERS = (DATASET, FEATURES, DATA_DIR, WEIGHTS, CACHE_DIR, SEED)
flags.mark_flags_as_mutual_exclusive(['dataset', 'features'], required=True)


def _names() -> list:
  return DATASET.value or FEATURES.value or []


def load_features():
  """(dataset name, FeatureFile) named by the flags; features extracted if not cached.

  The weights' checksum and source are in the file's attrs (`weights_sha256`,
  `weights_source`). A user error (missing dataset, bad weights, damaged feature file) exits
  with one line, as every command does.
  """
  names = _names()
  if len(names) != 1:
    raise app.UsageError(f'this command takes one --{"dataset" if DATASET.value else "features"}'
                         f', got {len(names)}: {",".join(names)}')
  return next(each_features())


def each_features():
  """(dataset name, FeatureFile) for each dataset or feature file the flags name, in turn."""
  names = _names()
  if not names:
    raise app.UsageError('--dataset or --features names nothing')
  with exit_on_user_error():   # every name checked before the first long job starts
    if FEATURES.value:
      files = [read_feature_file(path) for path in names]
    else:
      found = [datasets.load(name, DATA_DIR.value) for name in names]
  if FEATURES.value:
    yield from ((str(data.attrs['dataset']), data) for data in files)
    return
  for dataset in found:
    with exit_on_user_error():
      data, _ = cached_features(dataset, WEIGHTS.value, CACHE_DIR.value)
    yield dataset.name, data
