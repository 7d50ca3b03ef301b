"""Figure 3 of the paper: each metric against the number of training images.

  python -m miml_jax.experiments.figure3 --dataset=msrc_v2 --data_dir=../shared/datasets \
      --train_sizes=25,50,100,200,300,394 --output_dir=experiments/figure3

Repetition r trains on the first k images of Table 1's split r (same seed) and is scored on that
split's test third, so every point shares Table 1's test sets and the last size is Table 1
itself. Writes figure3_<dataset>.png (five panels, mean ± std over the repetitions, the best of
the paper's six baselines with 2/3 training images as a red line), .csv and .json. Results are
saved after every training size, and a rerun skips the sizes already in the JSON.
"""

import csv
import os

import numpy as np
from absl import flags
from absl import logging

from miml_jax.plumbing import atomic
from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax import evaluation
from miml_jax.plumbing import input_flags
from miml_jax.plumbing import outputs
from miml_jax import metrics
from miml_jax import paper
from miml_jax.plumbing import runtime_flags
from miml_jax.plumbing import safefile
from miml_jax import splits
from miml_jax.plumbing.errors import Interrupted
from miml_jax.plumbing.errors import UserError
from miml_jax.experiments import data_flags
from miml_jax.experiments import protocol_flags

_TRAIN_SIZES = flags.DEFINE_list('train_sizes', None, 'Training images per repetition '
                                 '(default: from 25 up to Table 1\'s 2/3).')
_OUTPUT_DIR = common_flags.output_dir()
flags.adopt_module_key_flags(data_flags)
flags.adopt_module_key_flags(protocol_flags)
flags.adopt_module_key_flags(input_flags)

FORMAT = 'miml_jax.figure3/1'
EXTENSIONS = ('.json', '.csv', '.png')
LABELS = {'average_precision': 'average precision ↑', 'coverage': 'coverage ↓',
          'hamming_loss': 'Hamming loss ↓', 'one_error': 'one error ↓',
          'ranking_loss': 'ranking loss ↓'}
NAMES = {'newton_l1': 'VGG+L1LR (ours, Newton)', 'newton_l2': 'VGG+LR (ours, Newton)',
         'fista_l1': 'VGG+L1LR (ours, FISTA)', 'fista_l2': 'VGG+LR (ours, FISTA)',
         'jax_l1': 'VGG+L1LR (ours)', 'jax_l2': 'VGG+LR (ours)',
         'liblinear_l1': 'VGG+L1LR (liblinear)', 'liblinear_l2': 'VGG+LR (liblinear)',
         'liblinear_paper': 'VGG+L1LR (paper setting)', 'recipe': 'recipe (ours)'}


def default_sizes(n_train: int) -> list[int]:
  return sorted({k for k in (25, 50, 100, 200, 500, 1000) if k < n_train} | {n_train})


def plot(result: dict, path: str) -> None:
  """Five panels and a legend in a 2 x 3 grid, at the width of a README page: each metric
  against the training images, the paper's VGG+L1LR (Table 1, 2/3 of the images) as a star,
  and the best of its six baselines at that size as a red line named in the panel."""
  import matplotlib   # pylint: disable=g-import-not-at-top
  import matplotlib.ticker   # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt   # pylint: disable=g-import-not-at-top
  fig, grid = plt.subplots(2, 3, figsize=(10, 6.4))
  axes = grid.ravel()
  best = result.get('best_baseline') or {}
  published = paper.TABLE1.get(result['dataset'])
  sizes = sorted({p['train_images'] for ps in result['points'].values() for p in ps})
  table1_size = int(round(result['train_fraction'] * result['n_images']))
  for ax, metric in zip(axes, metrics.NAMES):
    for method in result['methods']:
      points = result['points'][method]
      ax.errorbar([p['train_images'] for p in points], [p[metric]['mean'] for p in points],
                  yerr=[p[metric]['std'] for p in points], marker='o', ms=3, capsize=2,
                  lw=2 if method == 'recipe' else 1, label=NAMES.get(method, method))
    if metric in best:
      method, value = best[metric]
      ax.axhline(value, color='red', lw=1, label='best paper baseline, 2/3 train')
      ax.annotate(method, (0.02, value), xycoords=('axes fraction', 'data'), color='red',
                  fontsize=7, va='bottom')
    if published:
      mean, _ = published['VGG+L1LR'][paper.METRICS.index(metric)]
      ax.plot([table1_size], [mean], marker='*', ms=13, mfc='none', mec='black', ls='none',
              label="paper's VGG+L1LR (Table 1)")
    ax.set_xscale('log')
    ax.set_xticks(sizes, [str(k) for k in sizes], fontsize=7)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.tick_params(axis='y', labelsize=7)
    ax.set_xlabel('training images', fontsize=8)
    ax.set_title(LABELS[metric], fontsize=9)
    ax.grid(alpha=0.3)
  handles, labels = axes[0].get_legend_handles_labels()
  axes[-1].axis('off')
  axes[-1].legend(handles, labels, fontsize=8, loc='center')
  fig.suptitle(f"{result['dataset']}: {result['splits']} repetitions per size, mean ± std",
               fontsize=10)
  fig.tight_layout()
  with atomic.atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=100, format='png')
  plt.close(fig)


def write(result: dict, out: str) -> None:
  safefile.write_json(out + '.json', result)
  with atomic.atomic_path(out + '.csv') as tmp, open(tmp, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['method', 'train_images', 'metric', 'mean', 'std'])
    for method, points in result['points'].items():
      for p in points:
        for metric in metrics.NAMES:
          w.writerow([method, p['train_images'], metric, p[metric]['mean'], p[metric]['std']])
  plot(result, out + '.png')


def train_sizes(n_train: int) -> list[int]:
  """--train_sizes checked against a split's n_train training images (default: `default_sizes`)."""
  if _TRAIN_SIZES.value is None:
    return default_sizes(n_train)
  try:
    sizes = sorted({int(k) for k in _TRAIN_SIZES.value})
  except ValueError:
    raise UserError(f'--train_sizes must be whole numbers, got {",".join(_TRAIN_SIZES.value)}'
                    ) from None
  if not sizes or sizes[0] < 2 or sizes[-1] > n_train:
    raise UserError(f'--train_sizes must lie in 2..{n_train} (the training part of a split)')
  return sizes


def main(argv):
  cli.no_arguments(argv)
  protocol = protocol_flags.protocol()
  solvers = list(protocol.methods)
  source = data_flags.one_source()
  n_splits, fraction = protocol.splits, protocol.train_fraction
  data_flags.check_split_flags(protocol_flags.SPLITS, protocol_flags.TRAIN_FRACTION, [source])
  sizes = train_sizes(int(round(fraction * source.n_images)))
  out = data_flags.check_results(os.path.join(_OUTPUT_DIR.value, f'figure3_{source.name}'),
                                 EXTENSIONS, source.inputs, FORMAT.split('/')[0], parts=True)
  runtime_flags.apply()
  dataset_name, data = source.name, source.load()
  X, Y = data.features, data.labels.astype(np.float64)
  full = protocol.masks(len(X))
  # The whole protocol (tolerance, iteration cap and the recipe's settings too): a rerun with
  # other settings starts over rather than mixing their points.
  settings = {'format': FORMAT, 'dataset': dataset_name, 'n_images': int(len(X)),
              'weights_sha256': data.attrs['weights_sha256'], **protocol.to_json()}
  result = {**settings, 'points': {m: [] for m in solvers},
            'best_baseline': paper.best_baseline(dataset_name)
            if dataset_name in paper.TABLE1 else None}
  previous = data_flags.previous_results(out + '.json', 'Figure 3 result')
  # Results of the same settings continue (earlier files, before results recorded their format,
  # too).
  if previous and {k: previous.get(k, FORMAT if k == 'format' else None)
                   for k in settings} == settings:
    result = {**previous, 'format': FORMAT}
    logging.info('%s.json: resuming, %s done', out,
                 sorted({p['train_images'] for ps in previous['points'].values() for p in ps}))
  done = lambda k: all(any(p['train_images'] == k for p in result['points'][m])
                       for m in solvers)
  try:
    for k in sizes:
      if done(k):
        continue
      # The first k rows of each Table 1 split's own permutation: nested in its training part.
      masks = splits.random_splits(len(X), n_splits, seed=protocol.seed, n_train=k)
      runs = evaluation.run(X, Y, masks, protocol, test_masks=~full, parts_dir=out + '.parts',
                            n_jobs=protocol_flags.N_JOBS.value, progress=True)
      for method, r in runs.items():
        result['points'][method] = sorted(
            [p for p in result['points'][method] if p['train_images'] != k]
            + [{'train_images': k, **evaluation.summary(r)}], key=lambda p: p['train_images'])
      write(result, out)
      print(f'{k} training images: ' + ', '.join(
          f"{m} a.p. {runs[m].metrics['average_precision'].mean():.3f}" for m in runs),
            flush=True)
  except KeyboardInterrupt:
    raise Interrupted(f'rerun to resume: {sum(map(done, sizes))} of {len(sizes)} training '
                      f'sizes done, in {out}.json') from None
  write(result, out)
  outputs.remove_parts_folder(out + '.parts')
  print(f'wrote {out}.png, .csv, .json')


if __name__ == '__main__':
  cli.run(main)
