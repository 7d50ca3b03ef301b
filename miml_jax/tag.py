"""Tag your own images.

  python -m miml_jax.tag train --dataset=FOLDER --output=MODEL [--method=recipe|l1] [--C=1.0|cv]
  python -m miml_jax.tag train --features=FEATURES.h5 --output=MODEL [...]
  python -m miml_jax.tag predict --model=MODEL [--format=table|json|csv] IMAGE_OR_FOLDER...

`train` takes a dataset in the plain layout (images/ + labels.csv), extracts (and caches) its
features and writes a tagger file (or trains on a feature file: one larger than this machine's
memory is refused before it is read, with the memory it needs). By default it trains the recipe
(`miml_jax.recipe`: L1 and L2 models calibrated and mixed by cross-validation on the training
images); `--method=l1` is the paper's L1 logistic regression alone. `predict` prints each
image's tags with their probabilities, from features of the views the tagger was trained on.
"""

import csv
import io
import json
import math
import os
import sys

from absl import flags

from miml_jax import cli
from miml_jax import datasets
from miml_jax import input_flags
from miml_jax import model_selection
from miml_jax import outputs
from miml_jax import runtime_flags
from miml_jax import tagger as tagger_lib
from miml_jax.errors import UserError
from miml_jax.features import extract
from miml_jax.features import store
from miml_jax.weights import hub

_MODEL = flags.DEFINE_string('model', None, 'predict: the tagger file.')
_OUTPUT = flags.DEFINE_string('output', None, 'train: the tagger file to write.')
_FEATURES = flags.DEFINE_string('features', None, 'train: a feature file to train on, instead '
                                'of --dataset (e.g. features extracted once, on another machine).')
_METHOD = flags.DEFINE_enum('method', 'recipe', list(tagger_lib.METHODS),
                            'train: recipe (L1 and L2, calibrated and mixed by cross-validation '
                            'on the training images) or l1 (the paper\'s L1 logistic regression).')
_C = flags.DEFINE_string('C', '1.0', "train: inverse regularisation strength, or 'cv'.")
_CS = flags.DEFINE_list('Cs', [str(c) for c in model_selection.DEFAULT_CS],
                        'train: the grid for --C=cv.')
_SELECT = flags.DEFINE_enum('select', 'per_label', ['per_label', 'global'],
                            'train: choose C per label or one for all.')
_FOLDS = flags.DEFINE_integer('folds', 5, 'train: cross-validation folds.')
_THRESHOLDS = flags.DEFINE_enum('thresholds', 'fixed', ['fixed', 'tuned'],
                                'train: probability 0.5, or per-label F1-optimal on held-out '
                                'predictions of the training data.')
_FORMAT = flags.DEFINE_enum('format', 'table', ['table', 'json', 'csv'], 'predict: output.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32, 'Images per device step.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 224, 'train: images are resized to this square '
                                   'size (fc7 exists only at 224); predict uses the model\'s.')
_SCALES = flags.DEFINE_list('scales', None, 'train: several input sizes whose features are '
                            'averaged (instead of --image_size), e.g. 224,320; predict uses the '
                            'model\'s.')
_AUGMENT = flags.DEFINE_enum('augment', 'flip', list(extract.AUGMENTS),
                             'train: flip (the default, part of the recipe) averages each '
                             'image\'s features with its mirror image\'s, at twice the '
                             'extraction time; none: one view; predict uses the model\'s.')

_OVERWRITE = cli.define_overwrite()
flags.declare_key_flag('overwrite')
flags.adopt_module_key_flags(input_flags)
_WEIGHTS, _DATA_DIR, _CACHE_DIR = input_flags.WEIGHTS, input_flags.DATA_DIR, input_flags.CACHE_DIR

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp')


def image_files(args) -> list[str]:
  """Image files named on the command line, folders expanded (sorted, recursively)."""
  out = []
  for arg in args:
    if os.path.isdir(arg):
      found = sorted(os.path.join(d, f) for d, _, files in os.walk(arg) for f in files
                     if f.lower().endswith(IMAGE_EXTENSIONS))
      if not found:
        raise UserError(f'{arg}: no images ({", ".join(IMAGE_EXTENSIONS)}) in this folder')
      out += found
    elif os.path.isfile(arg):
      out.append(arg)
    else:
      raise UserError(f'{arg}: no such file or folder')
  return out


def render(paths, probabilities, tagger, fmt: str) -> str:
  names = tagger.label_names
  tagged = tagger.tags(probabilities)
  if fmt == 'json':
    return json.dumps([{**cli.json_path(p), 'tags': [n for n, t in zip(names, on) if t],
                        'probabilities': {n: round(float(v), 4) for n, v in zip(names, row)}}
                       for p, row, on in zip(paths, probabilities, tagged)], indent=1,
                      ensure_ascii=False)
  if fmt == 'csv':
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(['image', *names])
    for p, row in zip(paths, probabilities):
      w.writerow([p, *(f'{v:.4f}' for v in row)])
    return buf.getvalue().rstrip('\n')
  width = max(len(p) for p in paths)
  lines = []
  for p, row, on in zip(paths, probabilities, tagged):
    order = sorted(range(len(names)), key=lambda j: -row[j])
    tags = [f'{names[j]} {row[j]:.2f}' for j in order if on[j]]
    lines.append(f'{p:<{width}}  {", ".join(tags) if tags else "(no tag)"}')
  return '\n'.join(lines)


def train(argv):
  if len(argv) > 2:
    raise UserError(f'train takes no positional arguments: {" ".join(argv[2:])}')
  if bool(input_flags.DATASET.value) == bool(_FEATURES.value) or not _OUTPUT.value:
    raise UserError('train needs --dataset=NAME_OR_FOLDER (or --features=FILE) and '
                    '--output=MODEL')
  if _C.value == 'cv':
    C = 'cv'
  else:
    try:
      C = float(_C.value)
    except ValueError:
      C = math.nan
    if not math.isfinite(C) or C <= 0:
      raise UserError(f"--C must be a finite positive number or 'cv', got {_C.value!r}")
  Cs = cli.positive_numbers(_CS)
  if _METHOD.value == 'recipe' and _THRESHOLDS.value != 'fixed':
    raise UserError("--method=recipe calibrates its probabilities: its thresholds are 'fixed' "
                    "(--thresholds=tuned is for --method=l1)")
  fit_kwargs = dict(method=_METHOD.value, C=C, Cs=Cs, folds=_FOLDS.value, select=_SELECT.value,
                    thresholds=_THRESHOLDS.value)
  cross_validates = C == 'cv' or _THRESHOLDS.value == 'tuned' or _METHOD.value == 'recipe'
  if _FEATURES.value:
    if cross_validates:
      cli.at_least(_FOLDS, 2)
    outputs.check_file(_OUTPUT.value, outputs.Inputs([_FEATURES.value]), kind=tagger_lib.KIND,
                       overwrite=_OVERWRITE.value)
    tagger = tagger_lib.train_from_file(_FEATURES.value, **fit_kwargs)
  else:
    image_size = cli.image_sizes(_SCALES, _IMAGE_SIZE)
    extract.check_sizes(_BATCH_SIZE.value, image_size, augment=_AUGMENT.value)
    dataset = datasets.load(input_flags.one_dataset(), _DATA_DIR.value)
    if cross_validates:
      cli.at_least(_FOLDS, 2, len(dataset.image_names))
    # Checked before the features are extracted: the tagger file never lands on what train
    # reads.
    inputs = store.dataset_inputs(dataset)
    inputs.add(hub.path_of(_WEIGHTS.value))
    inputs.add(store.cache_path(dataset, _WEIGHTS.value, _CACHE_DIR.value,
                                image_size=image_size, augment=_AUGMENT.value))
    outputs.check_file(_OUTPUT.value, inputs, kind=tagger_lib.KIND, overwrite=_OVERWRITE.value)
    tagger = tagger_lib.train(dataset, _WEIGHTS.value, cache_dir=_CACHE_DIR.value,
                              image_size=image_size, augment=_AUGMENT.value, **fit_kwargs)
  tagger.save(_OUTPUT.value)
  nonzero = (tagger.coef != 0).sum(axis=0)
  how = ''
  if 'recipe' in tagger.info:
    how = f' (recipe: L1 share of the L1/L2 mix {tagger.info["recipe"]["weight"]:g})'
  print(f'{_OUTPUT.value}: {len(tagger.label_names)} labels from {tagger.info["n_images"]} '
        f'images{how}; non-zero weights per label: '
        + ', '.join(f'{n} {k}' for n, k in zip(tagger.label_names, nonzero)))


def predict(argv):
  if not _MODEL.value:
    raise UserError('predict needs --model=MODEL')
  if len(argv) < 3:
    raise UserError('predict needs at least one image or folder')
  tagger = tagger_lib.Tagger.load(_MODEL.value)
  paths = image_files(argv[2:])
  probabilities = tagger_lib.predict_images(tagger, paths, _WEIGHTS.value,
                                            batch_size=_BATCH_SIZE.value,
                                            progress=len(paths) > 100 and sys.stderr.isatty())
  cli.write_stdout(render(paths, probabilities, tagger, _FORMAT.value) + '\n')


def main(argv):
  commands = {'train': train, 'predict': predict}
  if len(argv) < 2 or argv[1] not in commands:
    raise UserError('usage: python -m miml_jax.tag train|predict [flags] [images...]')
  extract.check_sizes(_BATCH_SIZE.value, _IMAGE_SIZE.value)
  runtime_flags.apply()
  commands[argv[1]](argv)


if __name__ == '__main__':
  cli.run(main)
