"""The flags every experiment command shares (dataset, weights, feature cache, split seed), and
the features they name."""

from absl import flags

from miml_jax import datasets
from miml_jax.errors import exit_on_user_error
from miml_jax.features import cached_features

DATASET = flags.DEFINE_string('dataset', None, 'scene, msrc_v2, or a dataset folder.',
                              required=True)
DATA_DIR = flags.DEFINE_string('data_dir', None, 'Folder holding datasets by name '
                               '(default: $MIML_JAX_DATA).')
WEIGHTS = flags.DEFINE_string('weights', 'weights/vgg16_lpips.safetensors', 'Weights file.')
CACHE_DIR = flags.DEFINE_string('cache_dir', 'cache', 'Where feature files are kept.')
SEED = flags.DEFINE_integer('seed', 0, 'Split seed (the same splits in every experiment).')
HOLDERS = (DATASET, DATA_DIR, WEIGHTS, CACHE_DIR, SEED)


def load_features():
  """(Dataset, FeatureFile, WeightsInfo) named by the flags; features extracted if not cached.

  A user error (missing dataset, bad weights) exits with one line, as every command does.
  """
  with exit_on_user_error():
    dataset = datasets.load(DATASET.value, DATA_DIR.value)
    data, info = cached_features(dataset, WEIGHTS.value, CACHE_DIR.value)
  return dataset, data, info
