"""Packs the inputs of the accelerator benchmarks into one folder small enough to travel.

  python -m miml_jax.benchmarks.gpu_kit --data_dir=../shared/datasets --output_dir=gpu_kit
  python -m miml_jax.benchmarks.gpu_kit --backbone=efficientnet_lite0 ... (any backbone's features)

A borrowed accelerator machine gets only what is sent with the working tree (64 MiB here), not
the datasets or the weights. The kit holds, per dataset, its feature file stored as float16
(`<name>.h5`: the solver and Table 1 benchmarks need nothing else), and for --image_datasets a
copy of the image files in the plain layout (the end-to-end extraction figure; timing runs use
random weights, the speed does not depend on them). `experiments/gpu/run.sh` runs on it.
"""

import os
import shutil

from absl import flags

from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax import datasets
from miml_jax.plumbing import input_flags
from miml_jax.plumbing import outputs
from miml_jax.plumbing import runtime_flags
from miml_jax.datasets import official
from miml_jax.plumbing.errors import UserError
from miml_jax.features import cached_features
from miml_jax.features import save_feature_file
from miml_jax.features import store
from miml_jax.weights import hub

_DATASETS = flags.DEFINE_list('datasets', ['msrc_v2', 'scene'], 'Datasets whose features go.')
_IMAGE_DATASETS = flags.DEFINE_list('image_datasets', ['scene'],
                                    'Datasets whose image files go too.')
_DATA_DIR, _CACHE_DIR = input_flags.DATA_DIR, input_flags.CACHE_DIR
flags.adopt_module_key_flags(input_flags)
_OUTPUT_DIR = common_flags.output_dir('gpu_kit')
_LIMIT_MIB = flags.DEFINE_float('limit_mib', 64, 'Size the kit must stay under.')


def folder_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def pack_features(dataset: datasets.Dataset, output: str) -> str:
  data = cached_features(dataset, input_flags.weights(), _CACHE_DIR.value)
  return save_feature_file(data, os.path.join(output, f'{dataset.name}.h5'), 'float16')


# Marks a dataset copy made by this command: only such a folder is ever replaced.
KIT_MARKER = '.miml_jax_kit_copy'


def pack_images(dataset: datasets.Dataset, output: str) -> str:
  root = os.path.join(output, dataset.name)
  if os.path.isdir(root):   # a kit copy made earlier (checked by check_output)
    shutil.rmtree(root)
  return official.write_plain(root, list(zip(dataset.image_paths, dataset.image_names)),
                              dataset.label_names, dataset.labels, marker=KIT_MARKER)


def check_output(output: str, loaded: dict) -> None:
  """The kit folder must hold none of the datasets, weights or feature cache it is made from:
  its feature files and image copies replace what is there."""
  outputs.check_folder(output)
  inputs = outputs.Inputs([hub.path_of(input_flags.weights())])
  for dataset in loaded.values():
    inputs.update(store.dataset_inputs(dataset))
    inputs.add(store.cache_path(dataset, input_flags.weights(), _CACHE_DIR.value))
    copy = os.path.join(output, dataset.name)
    if os.path.lexists(copy) and not os.path.isfile(os.path.join(copy, KIT_MARKER)):
      raise UserError(f'{copy}: exists and is not a dataset copy made by this command; the kit '
                      f'would replace it, choose another --output')
  for name in _DATASETS.value:
    outputs.check_file(os.path.join(output, f'{name}.h5'), inputs, kind=store.KIND)


def main(argv):
  cli.no_arguments(argv)
  cli.positive(_LIMIT_MIB)
  output = _OUTPUT_DIR.value
  # Each dataset is loaded (its files listed and checked) once.
  loaded = {name: datasets.load(name, _DATA_DIR.value)
            for name in dict.fromkeys(_DATASETS.value + _IMAGE_DATASETS.value)}
  check_output(output, loaded)
  runtime_flags.apply()
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
  cli.run(main)
