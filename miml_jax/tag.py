"""Tag your own images.

  python -m miml_jax.tag train --dataset=FOLDER --output=MODEL [--method=recipe|l1] [--C=1.0|cv]
  python -m miml_jax.tag train --features=FEATURES.h5 --output=MODEL [...]
  python -m miml_jax.tag predict --model=MODEL [--format=table|json|csv] IMAGE_OR_FOLDER...
  python -m miml_jax.tag predict --model=MODEL --output=TAGS.csv|TAGS.jsonl IMAGE_OR_FOLDER...
      [--write=xmp|embed [--keyword_prefix=miml]]
  python -m miml_jax.tag evaluate --model=MODEL --dataset=FOLDER [--output=REPORT.json]
  python -m miml_jax.tag review --model=MODEL --output=PAGE.html [--limit=200] IMAGE_OR_FOLDER...
  python -m miml_jax.tag review --model=MODEL --output=PAGE.html --predictions=TAGS.csv
  python -m miml_jax.tag train --dataset=FOLDER --corrections=FILE.csv|--from_xmp=FOLDER ...

`train` takes a dataset in the plain layout (images/ + labels.csv), extracts (and caches) its
features (EfficientNet-Lite0's by default, `--backbone`) and writes a tagger file (or trains on
a feature file: one larger than this machine's memory is refused before it is read, with the
memory it needs). By default it trains the recipe
(`miml_jax.recipe`: L1 and L2 models calibrated and mixed by cross-validation on the training
images); `--method=l1` is the paper's L1 logistic regression alone. `predict` prints each
image's tags with their probabilities, from features of the views the tagger was trained on;
with `--output` it writes them to a file as it goes, and a rerun resumes (`miml_jax.tagging.predictions`);
`--write` puts the tags where photo tools read them (`miml_jax.tagging.keywords`). `evaluate` scores a
tagger on a labelled folder (`miml_jax.tagging.report`); `review` writes a page to correct tags on
(`miml_jax.tagging.review`), whose export `train --corrections` learns from (`miml_jax.tagging.corrections`).
"""

import contextlib
import csv
import io
import json
import os
import sys

import numpy as np
import tqdm
from absl import flags
from absl import logging

from miml_jax.plumbing import atomic
from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax.tagging import corrections
from miml_jax import datasets
from miml_jax import images
from miml_jax.plumbing import input_flags
from miml_jax.tagging import keywords
from miml_jax.tagging import photo_files
from miml_jax.plumbing import outputs
from miml_jax.tagging import predictions
from miml_jax.tagging import report
from miml_jax.tagging import review
from miml_jax.plumbing import safefile
from miml_jax.plumbing import runtime_flags
from miml_jax.tagging import tagger as tagger_lib
from miml_jax.plumbing.errors import Interrupted
from miml_jax.plumbing.errors import UserError
from miml_jax.features import extract
from miml_jax.features import store
from miml_jax.weights import hub

_MODEL = flags.DEFINE_string('model', None, 'predict, evaluate, review: the tagger file.')
_OUTPUT = common_flags.output(
    'train: the tagger file; predict: a .csv or .jsonl file of rows written as batches finish, '
    'which a rerun with the same model continues (and extends with images added since); '
    'without it predict prints --format at the end; evaluate: a .json report (and the Markdown '
    'it prints, as .md beside it); review: the .html page.')
_FEATURES = common_flags.features()
_METHOD = flags.DEFINE_enum('method', 'recipe', list(tagger_lib.METHODS),
                            'train: recipe (L1 and L2, calibrated and mixed by cross-validation '
                            'on the training images) or l1 (the paper\'s L1 logistic regression).')
_C = common_flags.C(or_cv=True)
_CS = common_flags.Cs()
_SELECT = common_flags.select()
_FOLDS = common_flags.folds()
_THRESHOLDS = flags.DEFINE_enum('thresholds', 'fixed', ['fixed', 'tuned'],
                                'train: probability 0.5, or per-label F1-optimal on held-out '
                                'predictions of the training data.')
_FORMAT = flags.DEFINE_enum('format', 'table', ['table', 'json', 'csv'],
                            'predict: what it prints, without --output.')

_CORRECTIONS = flags.DEFINE_string(
    'corrections', None, 'train: a CSV image,label,value (0/1) of corrected labels, e.g. from '
    '`tag review`: the dataset\'s images get them, other images are added (miml_jax.tagging.corrections).')
_FROM_XMP = flags.DEFINE_string(
    'from_xmp', None, 'train: a folder of images whose keywords (sidecars written by --write=xmp '
    'and edited in a photo tool) are corrected labels, as --corrections.')
_WRITE = flags.DEFINE_enum(
    'write', 'none', ['none', 'xmp', 'embed'], 'predict: also write each image\'s tags as '
    'keywords photo tools read: xmp into <image>.xmp sidecars (the image is not touched), embed '
    'into the image file\'s own XMP and IPTC; the user\'s own keywords are kept, and a rerun '
    'replaces only the ones it wrote (miml_jax.tagging.keywords).')
_KEYWORD_PREFIX = flags.DEFINE_string(
    'keyword_prefix', None, 'predict --write: the parent of the hierarchical keywords, e.g. '
    'miml writes miml|sea (dc:subject keeps the plain label).')
_PREDICTIONS = flags.DEFINE_string(
    'predictions', None, 'review: the .csv or .jsonl of `predict --output` with this model, '
    'instead of images (nothing is extracted again).')
_LIMIT = flags.DEFINE_integer('limit', 200, 'review: the most images on the page (the least '
                              'certain ones).')
_BATCH_SIZE = common_flags.batch_size()
_IMAGE_SIZE = common_flags.image_size('; train: predict uses the model\'s')
_SCALES = common_flags.scales('; train: predict uses the model\'s')
_AUGMENT = common_flags.augment(
    'flip', '; train: flip is the default, part of the recipe; predict uses the model\'s')

_OVERWRITE = common_flags.overwrite()
flags.adopt_module_key_flags(input_flags)
# Tagging a photo library: EfficientNet-Lite0, ~10x VGG16's images/s on a laptop CPU at Table
# 1's quality (experiments/backbones/); predict, evaluate and review use the model's backbone.
flags.FLAGS.set_default('backbone', 'efficientnet_lite0')
flags.FLAGS['backbone'].help += (' tag\'s default: efficientnet_lite0 (train; predict, evaluate '
                                 'and review use the model\'s).')
_DATA_DIR, _CACHE_DIR = input_flags.DATA_DIR, input_flags.CACHE_DIR

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
  features = common_flags.one_feature_file(_FEATURES)
  if bool(input_flags.DATASET.value) == bool(features) or not _OUTPUT.value:
    raise UserError('train needs --dataset=NAME_OR_FOLDER (or --features=FILE) and '
                    '--output=MODEL')
  C = _C.value
  Cs = cli.positive_numbers(_CS)
  if _METHOD.value == 'recipe' and _THRESHOLDS.value != 'fixed':
    raise UserError("--method=recipe calibrates its probabilities: its thresholds are 'fixed' "
                    "(--thresholds=tuned is for --method=l1)")
  fit_kwargs = dict(method=_METHOD.value, C=C, Cs=Cs, folds=_FOLDS.value, select=_SELECT.value,
                    thresholds=_THRESHOLDS.value)
  cross_validates = C == 'cv' or _THRESHOLDS.value == 'tuned' or _METHOD.value == 'recipe'
  if (_CORRECTIONS.value or _FROM_XMP.value) and features:
    raise UserError('--corrections and --from_xmp go with --dataset (their images are found, '
                    'and new ones extracted, through it)')
  if _CORRECTIONS.value and _FROM_XMP.value:
    raise UserError('give --corrections or --from_xmp, not both')
  if features:
    outputs.check_file(_OUTPUT.value, outputs.Inputs([features]), kind=tagger_lib.KIND,
                       overwrite=_OVERWRITE.value)
    tagger = tagger_lib.train_from_file(features, **fit_kwargs)
  else:
    image_size = cli.image_sizes(_SCALES, _IMAGE_SIZE)
    extract.check_sizes(_BATCH_SIZE.value, image_size, augment=_AUGMENT.value)
    dataset = datasets.load(input_flags.one_dataset(), _DATA_DIR.value)
    if cross_validates:
      cli.at_least(_FOLDS, 2, len(dataset.image_names))
    run = LibraryRun()
    fixes = None
    if _CORRECTIONS.value:
      fixes = corrections.read_csv(_CORRECTIONS.value, dataset.label_names)
    elif _FROM_XMP.value:
      fixes = corrections.from_xmp(_FROM_XMP.value, dataset.label_names,
                                   unreadable=run.unreadable)
    if fixes is not None:
      # Every image named is found (or refused, with its line) before any extraction.
      corrections.apply(fixes, dataset.image_names, dataset.image_paths, dataset.labels,
                        dataset.label_names)
    # Checked before the features are extracted: the tagger file never lands on what train
    # reads (the dataset, the weights, the feature cache, the corrections and their photos).
    inputs = store.dataset_inputs(dataset)
    weights = input_flags.weights()
    inputs.add(hub.path_of(weights))
    inputs.add(store.cache_path(dataset, weights, _CACHE_DIR.value,
                                image_size=image_size, augment=_AUGMENT.value))
    for path in fixes.read if fixes is not None else ():
      inputs.add(path)
    outputs.check_file(_OUTPUT.value, inputs, kind=tagger_lib.KIND, overwrite=_OVERWRITE.value)
    tagger = tagger_lib.train(dataset, weights, cache_dir=_CACHE_DIR.value,
                              image_size=image_size, augment=_AUGMENT.value, corrections=fixes,
                              **fit_kwargs)
  tagger.save(_OUTPUT.value)
  nonzero = (tagger.coef != 0).sum(axis=0)
  how = ''
  if 'recipe' in tagger.info:
    how = f' (recipe: L1 share of the L1/L2 mix {tagger.info["recipe"]["weight"]:g})'
  fixed = tagger.info.get('corrections')
  if fixed:
    how += (f'; corrections from {fixed["source"]}: {fixed["changed"]} labels changed, '
            f'{fixed["added"]} images added')
  print(f'{_OUTPUT.value}: {len(tagger.label_names)} labels from {tagger.info["n_images"]} '
        f'images{how}; non-zero weights per label: '
        + ', '.join(f'{n} {k}' for n, k in zip(tagger.label_names, nonzero)))
  if not features:
    run.finish()


def prediction_identity(tagger, weights_info) -> dict:
  """What a prediction file's rows depend on: the model, the weights, the labels."""
  return {'model_sha256': tagger.sha256, 'weights_sha256': weights_info.checksum,
          'labels': list(tagger.label_names)}


class LibraryRun:
  """A run over a photo library goes past what it cannot do for one photo: each problem is one
  warning naming the file, and the run ends with exit status 1 and the counts (`finish`)."""

  def __init__(self, total: int = 0):
    self.total = total
    self.skipped = 0
    self.keywords_failed = 0

  def unreadable(self, index, error) -> None:   # pylint: disable=unused-argument
    cli.warn(f'{error}; skipped')
    self.skipped += 1

  def keywords_not_written(self, message: str) -> None:
    cli.warn(message)
    self.keywords_failed += 1

  def finish(self, keyword_total: int = 0) -> None:
    said = []
    if self.skipped:
      said.append(f'{self.skipped} of {self.total} images skipped (they cannot be read)')
    if self.keywords_failed:
      said.append(f'keywords not written for {self.keywords_failed} of {keyword_total} images '
                  '(a rerun tries them again)')
    if said:
      raise UserError('; '.join(said) + ' (the warnings above say why; the rest is done)')


def predict(argv):
  if not _MODEL.value:
    raise UserError('predict needs --model=MODEL')
  if len(argv) < 3:
    raise UserError('predict needs at least one image or folder')
  if _OUTPUT.value:
    predictions.format_of(_OUTPUT.value)
  prefix = _KEYWORD_PREFIX.value
  if prefix is not None:
    if _WRITE.value == 'none':
      raise UserError('--keyword_prefix is for --write=xmp or --write=embed')
    keywords.check_prefix(prefix)
  tagger = tagger_lib.Tagger.load(_MODEL.value)
  run = LibraryRun()
  paths = images.image_files(argv[2:], unreadable=run.unreadable)
  if _OUTPUT.value:
    # A folder, an input or an unwritable place is refused here; whose file it is, and whether
    # it continues, `PredictionFile` decides.
    inputs = outputs.Inputs([_MODEL.value, *paths])
    outputs.check_file(_OUTPUT.value, inputs, kind=predictions.FORMAT, overwrite=True)
    outputs.check_file(predictions.record_path(_OUTPUT.value), inputs,
                       kind=predictions.FORMAT.split('/')[0], overwrite=_OVERWRITE.value)
  from miml_jax import weights as weights_lib   # pylint: disable=g-import-not-at-top
  weights = input_flags.weights(tagger.backbone)
  params, info = weights_lib.load(weights)
  tagger.check_weights(info.checksum, weights)
  if _WRITE.value != 'none':
    # What an earlier write killed mid-way left beside the photos.
    removed = photo_files.remove_stale_temporaries(paths)
    if removed:
      logging.info('removed %d temporary files that interrupted writes left', removed)
  with (atomic.exclusive(_OUTPUT.value + '.lock') if _OUTPUT.value
        else contextlib.nullcontext()):
    out = None
    if _OUTPUT.value:
      out = predictions.PredictionFile(_OUTPUT.value, prediction_identity(tagger, info),
                                       tagger.label_names, overwrite=_OVERWRITE.value)
    todo = out.todo(paths) if out else paths
    earlier = len(paths) - len(todo)
    in_file = earlier
    done, printed, shown = earlier, [], []
    # What the listing passed over (a pipe, a link to nowhere) counts among the images.
    run.total = len(todo) + run.skipped
    try:
      with tqdm.tqdm(total=len(paths), initial=done, unit='img', desc='predict',
                     disable=not sys.stderr.isatty()) as bar:
        for indices, probabilities in tagger_lib.iter_predictions(
            tagger, todo, (params, info), batch_size=_BATCH_SIZE.value,
            unreadable=run.unreadable):
          batch = [todo[i] for i in indices]
          tagged = tagger.tags(probabilities)
          # Keywords before rows: a row in the file has its keywords written, and a photo
          # whose keywords could not be written gets no row, so that a rerun tries it again.
          written = np.ones(len(batch), bool)
          if _WRITE.value != 'none':
            written = write_keywords(batch, tagged, tagger.label_names, prefix, run)
          if out:
            out.append([p for p, ok in zip(batch, written) if ok], probabilities[written],
                       tagged[written])
            in_file += int(written.sum())
          else:
            printed.append(probabilities)
            shown += batch
          done += len(indices)
          bar.n = earlier + int(indices[-1]) + 1
          bar.refresh()
    except KeyboardInterrupt:
      if out:
        raise Interrupted(f'rerun to resume: {done} of {len(paths)} images done, in '
                          f'{_OUTPUT.value}') from None
      raise
  if out:
    print(f'{_OUTPUT.value}: {in_file} of {len(paths)} images ({earlier} from an earlier run)',
          file=sys.stderr)
  elif shown:
    cli.write_stdout(render(shown, np.concatenate(printed), tagger, _FORMAT.value) + '\n')
  run.finish(done - earlier)


def write_keywords(paths, tagged, label_names, prefix, run: LibraryRun) -> np.ndarray:
  """Writes each image's tags as keywords (--write); returns (b,) bool, whether they were. A
  photo whose keywords cannot be written is named in a warning and left as it was (one bad
  file does not stop a library's run)."""
  written = np.ones(len(paths), bool)
  for k, (path, on) in enumerate(zip(paths, tagged)):
    written[k] = False
    try:
      keywords.write(path, [n for n, t in zip(label_names, on) if t], prefix=prefix,
                     embed=_WRITE.value == 'embed')
      written[k] = True
    except UserError as e:
      run.keywords_not_written(str(e))
    except Exception as e:   # pylint: disable=broad-except
      # exiv2 (or what lies below it) failing on a file in a way not met before: the file is
      # still untouched (nothing is replaced before every check passed), and the library goes
      # on.
      run.keywords_not_written(f'{path}: cannot write its keywords ({type(e).__name__}: {e}); '
                               'left as it was')
  return written


REPORT_FORMAT = 'miml_jax.tag_evaluation/1'


def report_markdown_path(output: str) -> str:
  return os.path.splitext(output)[0] + '.md'


def review_page(argv):
  if not _MODEL.value or not _OUTPUT.value:
    raise UserError('review needs --model=MODEL and --output=PAGE.html')
  if (len(argv) < 3) == (not _PREDICTIONS.value):
    raise UserError('review needs images or folders, or --predictions=FILE (the rows of '
                    '`tag predict --output`), not both')
  if not _OUTPUT.value.endswith(('.html', '.htm')):
    raise UserError(f'{_OUTPUT.value}: the review page is written as .html')
  cli.at_least(_LIMIT, 1)
  tagger = tagger_lib.Tagger.load(_MODEL.value)
  from miml_jax import weights as weights_lib   # pylint: disable=g-import-not-at-top
  weights = input_flags.weights(tagger.backbone)
  params, info = weights_lib.load(weights)
  tagger.check_weights(info.checksum, weights)
  run = LibraryRun()
  if _PREDICTIONS.value:
    # No extraction: the probabilities of a predict run of this model.
    paths, probabilities = predictions.read(_PREDICTIONS.value, prediction_identity(tagger, info),
                                            tagger.label_names)
  else:
    paths = images.image_files(argv[2:], unreadable=run.unreadable)
  run.total = len(paths)
  inputs = outputs.Inputs([_MODEL.value, *paths, *filter(None, [_PREDICTIONS.value])])
  # A page is remade at will, but only over a page of ours (its generator line says so).
  outputs.check_file(_OUTPUT.value, inputs, kind=review.FORMAT,
                     overwrite=_OVERWRITE.value or review.made_here(_OUTPUT.value))
  if not _PREDICTIONS.value:
    probabilities = np.full((len(paths), len(tagger.label_names)), np.nan)
    with tqdm.tqdm(total=len(paths), unit='img', desc='review',
                   disable=not sys.stderr.isatty()) as bar:
      for indices, p in tagger_lib.iter_predictions(tagger, paths, (params, info),
                                                    batch_size=_BATCH_SIZE.value,
                                                    unreadable=run.unreadable):
        probabilities[indices] = p
        bar.n = int(indices[-1]) + 1
        bar.refresh()
    read = np.flatnonzero(~np.isnan(probabilities[:, 0]))
    paths, probabilities = [paths[i] for i in read], probabilities[read]
  cards = []
  for i in review.uncertainty_order(probabilities, tagger.thresholds):
    if len(cards) == _LIMIT.value:
      break
    try:
      cards.append((os.path.abspath(paths[i]), review.thumbnail(paths[i]), probabilities[i]))
    except UserError as e:   # moved, deleted or damaged since it was predicted
      run.unreadable(i, e)
  title = (f'{os.path.basename(_MODEL.value)}: the {len(cards)} least certain of '
           f'{len(paths)} images')
  atomic.write_text(_OUTPUT.value, review.page(cards, tagger.label_names, tagger.thresholds,
                                               title))
  print(f'{_OUTPUT.value}: {len(cards)} of {len(paths)} images, least certain first',
        file=sys.stderr)
  run.finish()


def evaluate(argv):
  if len(argv) > 2:
    raise UserError(f'evaluate takes no positional arguments: {" ".join(argv[2:])}')
  if not _MODEL.value or not input_flags.DATASET.value:
    raise UserError('evaluate needs --model=MODEL and --dataset=NAME_OR_FOLDER (a labelled '
                    'folder in the plain layout: images/ and labels.csv)')
  output = _OUTPUT.value
  if output and not output.endswith('.json'):
    raise UserError(f'{output}: the evaluation is written as .json (and .md beside it)')
  tagger = tagger_lib.Tagger.load(_MODEL.value)
  dataset = datasets.load(input_flags.one_dataset(), _DATA_DIR.value)
  if output:
    inputs = store.dataset_inputs(dataset)
    inputs.add(_MODEL.value)
    # The report's Markdown beside it is an output too: a stranger's R.md is never replaced.
    outputs.check_files([output, report_markdown_path(output)], inputs,
                        kind=REPORT_FORMAT.split('/')[0], overwrite=_OVERWRITE.value)
  missing = [n for n in tagger.label_names if n not in dataset.label_names]
  if missing:
    raise UserError(f'{dataset.root}/labels.csv: no column for the model\'s labels '
                    f'{", ".join(missing)}; it has {", ".join(dataset.label_names)}')
  columns = [dataset.label_names.index(n) for n in tagger.label_names]
  weights = input_flags.weights(tagger.backbone)
  feats = store.cached_features(dataset, weights, _CACHE_DIR.value,
                                image_size=tagger.image_size, augment=tagger.augment)
  tagger.check_weights(feats.attrs['weights_sha256'], weights)
  probabilities = tagger.predict_proba(feats.features)
  result = {'format': REPORT_FORMAT, 'model': _MODEL.value, 'model_sha256': tagger.sha256,
            'dataset': dataset.root,
            'ignored_labels': [n for n in dataset.label_names if n not in tagger.label_names],
            **report.tagging_report(feats.labels[:, columns], probabilities,
                                    tagger.tags(probabilities), tagger.label_names)}
  text = report.markdown(result, f'{os.path.basename(_MODEL.value)} on {dataset.name}')
  if os.path.abspath(tagger.info.get('dataset', '')) == os.path.abspath(dataset.root):
    # Scores on the training images say how well it fits, not how well it tags new photos.
    text += ('\nThese are the images the model was trained on: the scores are optimistic. '
             'Evaluate on a folder it has not seen.\n')
    result['trained_on_these_images'] = True
  if output:
    safefile.write_json(output, result)
    atomic.write_text(report_markdown_path(output), text)
  cli.write_stdout(text)


def main(argv):
  commands = {'train': train, 'predict': predict, 'evaluate': evaluate, 'review': review_page}
  if len(argv) < 2 or argv[1] not in commands:
    raise UserError('usage: python -m miml_jax.tag train|predict|evaluate|review [flags] '
                    '[images...]')
  extract.check_sizes(_BATCH_SIZE.value, _IMAGE_SIZE.value)
  runtime_flags.apply()
  commands[argv[1]](argv)


if __name__ == '__main__':
  cli.run(main)
