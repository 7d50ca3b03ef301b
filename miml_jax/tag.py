"""Tag your own images.

  python -m miml_jax.tag train --data=FOLDER --output=MODEL [--C=1.0|cv] [--thresholds=tuned]
  python -m miml_jax.tag predict --model=MODEL [--format=table|json|csv] IMAGE_OR_FOLDER...

`train` takes a dataset in the plain layout (images/ + labels.csv), extracts (and caches) its
features and writes a tagger file; `predict` prints each image's tags with their probabilities.
"""

import csv
import io
import json
import os
import sys

from absl import app
from absl import flags

from miml_jax import model_selection
from miml_jax import runtime_flags
from miml_jax import tagger as tagger_lib
from miml_jax.errors import exit_on_user_error
from miml_jax.errors import UserError

_DATA = flags.DEFINE_string('data', None, 'train: dataset folder, or a name under --data_dir.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Folder holding datasets by name.')
_WEIGHTS = flags.DEFINE_string('weights', 'weights/vgg16_lpips.safetensors', 'VGG16 weights.')
_CACHE_DIR = flags.DEFINE_string('cache_dir', 'cache', 'train: where features are cached.')
_MODEL = flags.DEFINE_string('model', None, 'predict: the tagger file.')
_OUTPUT = flags.DEFINE_string('output', None, 'train: the tagger file to write.')
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
  if fmt == 'json':
    return json.dumps([{'image': p, 'tags': [n for n, v, t in zip(names, row, tagger.thresholds)
                                             if v >= t],
                        'probabilities': {n: round(float(v), 4) for n, v in zip(names, row)}}
                       for p, row in zip(paths, probabilities)], indent=1)
  if fmt == 'csv':
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(['image', *names])
    for p, row in zip(paths, probabilities):
      w.writerow([p, *(f'{v:.4f}' for v in row)])
    return buf.getvalue().rstrip('\n')
  width = max(len(p) for p in paths)
  lines = []
  for p, row in zip(paths, probabilities):
    order = sorted(range(len(names)), key=lambda j: -row[j])
    tags = [f'{names[j]} {row[j]:.2f}' for j in order if row[j] >= tagger.thresholds[j]]
    lines.append(f'{p:<{width}}  {", ".join(tags) if tags else "(no tag)"}')
  return '\n'.join(lines)


def train(argv):
  if len(argv) > 2:
    raise app.UsageError(f'train takes no positional arguments: {" ".join(argv[2:])}')
  if not _DATA.value or not _OUTPUT.value:
    raise UserError('train needs --data=FOLDER and --output=MODEL')
  if _C.value == 'cv':
    C = 'cv'
  else:
    try:
      C = float(_C.value)
    except ValueError:
      raise UserError(f"--C must be a positive number or 'cv', got {_C.value!r}") from None
    if C <= 0:
      raise UserError(f'--C must be positive, got {C}')
  try:
    Cs = [float(c) for c in _CS.value]
  except ValueError:
    raise UserError(f'--Cs must be numbers, got {",".join(_CS.value)}') from None
  tagger = tagger_lib.train(_DATA.value, _WEIGHTS.value, data_dir=_DATA_DIR.value,
                            cache_dir=_CACHE_DIR.value, image_size=_IMAGE_SIZE.value, C=C, Cs=Cs, folds=_FOLDS.value,
                            select=_SELECT.value, thresholds=_THRESHOLDS.value)
  tagger.save(_OUTPUT.value)
  nonzero = (tagger.coef != 0).sum(axis=0)
  print(f'{_OUTPUT.value}: {len(tagger.label_names)} labels from {tagger.info["n_images"]} '
        f'images; non-zero weights per label: '
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
  print(render(paths, probabilities, tagger, _FORMAT.value))


def main(argv):
  runtime_flags.apply()
  commands = {'train': train, 'predict': predict}
  if len(argv) < 2 or argv[1] not in commands:
    raise app.UsageError('usage: python -m miml_jax.tag train|predict [flags] [images...]')
  with exit_on_user_error():
    commands[argv[1]](argv)


if __name__ == '__main__':
  app.run(main)
