"""The flags every experiment command shares (dataset or feature file, backbone and weights,
feature cache,
split seed, overwrite), the inputs they name, and the checks of the result files written from
them."""

import dataclasses
import os
from typing import Callable

from absl import flags
from absl import logging

from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax import datasets
from miml_jax.plumbing import input_flags
from miml_jax.plumbing import outputs
from miml_jax.plumbing import safefile
from miml_jax.plumbing.errors import UserError
from miml_jax.features import FeatureFile
from miml_jax.features import cached_features
from miml_jax.features import extract
from miml_jax.features import read_feature_file
from miml_jax.features import store
from miml_jax.weights import hub

DATASET = input_flags.DATASET
FEATURES = common_flags.features(several=True)
DATA_DIR = input_flags.DATA_DIR
WEIGHTS = input_flags.WEIGHTS
BACKBONE = input_flags.BACKBONE
CACHE_DIR = input_flags.CACHE_DIR
SCALES = common_flags.scales(' (with --dataset)')
AUGMENT = common_flags.augment(note=' (with --dataset)')
SEED = common_flags.seed()
OVERWRITE = common_flags.overwrite()
HOLDERS = (DATASET, FEATURES, DATA_DIR, BACKBONE, WEIGHTS, CACHE_DIR, SCALES, AUGMENT, SEED)
flags.mark_flags_as_mutual_exclusive(['dataset', 'features'])


@dataclasses.dataclass
class Source:
  """One dataset (or feature file) the flags name: its result name, the files it is read from
  (no output may land on them), and its features, extracted on first use if not cached."""
  name: str
  n_images: int
  inputs: outputs.Inputs
  load: Callable[[], FeatureFile]


def image_size():
  """--scales as `extract`'s image_size: 224, one other size, or a tuple of them."""
  sizes = cli.image_sizes(SCALES)
  extract.check_sizes(1, sizes)
  return sizes


def _dataset_source(dataset: datasets.Dataset) -> Source:
  views = {'image_size': image_size(), 'augment': AUGMENT.value}
  inputs = store.dataset_inputs(dataset)
  weights = input_flags.weights()
  inputs.add(hub.path_of(weights))
  inputs.add(store.cache_path(dataset, weights, CACHE_DIR.value, **views))
  return Source(dataset.name, len(dataset.image_names), inputs,
                lambda: cached_features(dataset, weights, CACHE_DIR.value, **views))


def _file_source(path: str) -> Source:
  data = read_feature_file(path)
  return Source(str(data.attrs['dataset']), len(data.features), outputs.Inputs([path]),
                lambda: data)


def sources() -> list[Source]:
  """Every dataset or feature file the flags name, each checked before any long work starts;
  `UserError` if two of them would write results under the same name."""
  names = DATASET.value or FEATURES.value or []
  if not names:
    raise UserError('which data? give --dataset=NAME_OR_FOLDER (scene, msrc_v2, or your own '
                    'folder), or --features=FILE.h5 (--helpshort lists the flags)')
  if FEATURES.value:
    found = [_file_source(path) for path in names]
  else:
    found = [_dataset_source(datasets.load(name, DATA_DIR.value)) for name in names]
  by_name = {}
  for given, source in zip(names, found):
    if source.name in by_name:
      raise UserError(f'{by_name[source.name]} and {given} are both named {source.name!r}: '
                      f'their results would overwrite each other; run them separately (with '
                      f'different output folders) or rename one')
    by_name[source.name] = given
  return found


def one_source() -> Source:
  """The one dataset or feature file of a command that takes a single one."""
  names = DATASET.value or FEATURES.value or []
  if len(names) != 1:
    raise UserError(f'this command takes one --{"dataset" if DATASET.value else "features"}, '
                    f'got {len(names)}: {",".join(names)}')
  return sources()[0]


def check_split_flags(splits, train_fraction, sources_: list[Source]) -> None:
  """--splits at least 1, and a --train_fraction that leaves every dataset at least one image
  on each side."""
  cli.fraction(train_fraction)
  for source in sources_:
    size = int(round(train_fraction.value * source.n_images))
    if not 0 < size < source.n_images:
      raise UserError(f'--train_fraction={train_fraction.value} leaves {size} of '
                      f'{source.name}\'s {source.n_images} images for training; each side of a '
                      f'split needs at least one')


def check_results(stem: str, extensions, inputs: outputs.Inputs, kind: str, *,
                  parts: bool = False) -> str:
  """Checks the result files `<stem><ext>` (and with `parts`, the folder of finished parts
  `<stem>.parts`) before any work (`miml_jax.plumbing.outputs`); returns stem."""
  outputs.check_folder(os.path.dirname(os.path.abspath(stem)))
  outputs.check_files([stem + ext for ext in extensions], inputs, kind=kind,
                      overwrite=OVERWRITE.value)
  if parts:
    outputs.check_parts_folder(stem + '.parts', stem + extensions[0])
  return stem


def previous_results(path: str, what: str) -> dict | None:
  """The results an earlier run wrote at `path`, to resume from; None if there are none. Results
  changed since they were written (checksum), or written before results carried checksums, are
  refused (`UserError`), or with --overwrite set aside: the run starts over."""
  if not os.path.exists(path):
    return None
  try:
    return safefile.load_json(path, what)
  except UserError as e:
    if OVERWRITE.value:
      logging.warning('%s; starting over (--overwrite)', e)
      return None
    raise UserError(f'{e}; pass --overwrite to start over') from None
