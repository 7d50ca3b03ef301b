"""Packs the inputs of the accelerator benchmarks into one folder small enough to travel.

  python -m miml_jax.benchmarks.gpu_kit --data_dir=../shared/datasets --output=gpu_kit

A borrowed accelerator machine gets only what is sent with the working tree (64 MiB here), not
the datasets or the weights. The kit holds, per dataset, its feature file stored as float16
(`<name>.h5`: the solver and Table 1 benchmarks need nothing else), and for --image_datasets a
copy of the image files in the plain layout (the end-to-end extraction figure; timing runs use
random weights, the speed does not depend on them). `experiments/gpu/run.sh` runs on it.
"""

import os
import shutil

from absl import app
from absl import flags

from miml_jax import datasets
from miml_jax import runtime_flags
from miml_jax.datasets import official
from miml_jax.errors import exit_on_user_error
from miml_jax.errors import UserError
from miml_jax.features import cached_features
from miml_jax.features import save_feature_file

_DATASETS = flags.DEFINE_list('datasets', ['msrc_v2', 'scene'], 'Datasets whose features go.')
_IMAGE_DATASETS = flags.DEFINE_list('image_datasets', ['scene'],
                                    'Datasets whose image files go too.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Folder holding datasets by name '
                                '(default: $MIML_JAX_DATA).')
_WEIGHTS = flags.DEFINE_string('weights', 'weights/vgg16_lpips.safetensors', 'Weights file.')
_CACHE_DIR = flags.DEFINE_string('cache_dir', 'cache', 'Where feature files are kept.')
_OUTPUT = flags.DEFINE_string('output', 'gpu_kit', 'The kit folder.')
_LIMIT_MIB = flags.DEFINE_float('limit_mib', 64, 'Size the kit must stay under.')


def folder_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def pack_features(dataset: datasets.Dataset, output: str) -> str:
  data, _ = cached_features(dataset, _WEIGHTS.value, _CACHE_DIR.value)
  return save_feature_file(data, os.path.join(output, f'{dataset.name}.h5'), 'float16')


def pack_images(dataset: datasets.Dataset, output: str) -> str:
  root = os.path.join(output, dataset.name)
  if os.path.isdir(root):   # a kit copy made earlier (the originals stay where they are)
    shutil.rmtree(root)
  return official.write_plain(root, list(zip(dataset.image_paths, dataset.image_names)),
                              dataset.label_names, dataset.labels)


def main(argv):
  runtime_flags.apply()
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  output = _OUTPUT.value
  with exit_on_user_error():
    if os.path.abspath(output) == os.path.abspath(_DATA_DIR.value or ''):
      raise UserError(f'{output}: the kit would overwrite the datasets; choose another --output')
    # Each dataset is loaded (its files listed and checked) once.
    loaded = {name: datasets.load(name, _DATA_DIR.value)
              for name in dict.fromkeys(_DATASETS.value + _IMAGE_DATASETS.value)}
    for name in _DATASETS.value:
      print('features:', pack_features(loaded[name], output))
    for name in _IMAGE_DATASETS.value:
      print('images:', pack_images(loaded[name], output))
    size = folder_bytes(output) / 2**20
    print(f'{output}: {size:.1f} MiB (limit {_LIMIT_MIB.value:g} MiB, with the source tree)')
    if size > _LIMIT_MIB.value:
      raise UserError(f'{output}: {size:.1f} MiB is over the {_LIMIT_MIB.value:g} MiB limit; '
                      f'pass fewer --image_datasets')


if __name__ == '__main__':
  app.run(main)
