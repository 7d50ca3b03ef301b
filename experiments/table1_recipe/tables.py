"""Prints the tables of experiments/table1_recipe/README.md from the Table 1 files here.

  python experiments/table1_recipe/tables.py

Where an ablation row was run on fewer splits than 30 (the first S of the same seed), every row
of that dataset is scored on those S splits too, from the decision values in the runs' .npz files
(written by run.sh; not kept in git) and the labels of the feature file in cache/ (the same images
in the same order).
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
import numpy as np   # pylint: disable=g-import-not-at-top,wrong-import-position
from miml_jax import metrics   # pylint: disable=g-import-not-at-top,wrong-import-position
from miml_jax import paper   # pylint: disable=g-import-not-at-top,wrong-import-position
from miml_jax.features import read_feature_file   # pylint: disable=g-import-not-at-top,wrong-import-position

HERE = os.path.dirname(os.path.abspath(__file__))
SHORT = ('a.p. ↑', 'coverage ↓', 'Hamming ↓', 'one error ↓', 'ranking loss ↓')
# (row name, folder, method): each row adds one part to the one above.
ABLATION = (('paper setting: L1, C = 1', 'ablation/no_flip', 'newton_l1'),
             ('+ flip', '.', 'newton_l1'),
             ('+ flip, calibrated', 'ablation/flip_calibrate', 'recipe'),
             ('+ flip, calibrated, L1/L2 mix (the recipe)', '.', 'recipe'),
             ('recipe without flip', 'ablation/no_flip', 'recipe'),
             ('recipe + C per label by CV', 'ablation/flip_cv_c', 'recipe'),
             ('recipe, two scales (224, 320)', 'ablation/scales_flip', 'recipe'))


def load(folder, dataset):
  path = os.path.join(HERE, folder, f'table1_{dataset}.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def row(name, table, method, splits_note=''):
  r = table['methods'][method]
  cells = [f"{r[m]['mean']:.4f}" for m in paper.METRICS]
  return f"| {name}{splits_note} | " + ' | '.join(cells) + f" | {r['fit_seconds']:.0f} |"


def row_on_first(name, folder, dataset, method, S, labels):
  """A row scored on the first S splits, from the run's decision values."""
  with np.load(os.path.join(HERE, folder, f'table1_{dataset}.npz')) as f:
    test, decisions = f['test_indices'][:S], f[f'decisions_{method}'][:S]
  scores = metrics.evaluate(labels[test], decisions)
  return f'| {name} | ' + ' | '.join(f'{float(scores[m].mean()):.4f}'
                                    for m in paper.METRICS) + ' | |'


def main():
  header = '| | ' + ' | '.join(SHORT) + ' | fit s |\n|---|' + '---|' * 6
  for dataset in ('msrc_v2', 'scene'):
    published = paper.TABLE1[dataset]['VGG+L1LR']
    print(f'\n### {dataset}\n')
    found = [(name, folder, method, load(folder, dataset)) for name, folder, method in ABLATION]
    found = [(n, f, m, t) for n, f, m, t in found if t and m in t['methods']]
    fewest = min(t['splits'] for *_, t in found)
    if fewest < 30:
      labels = read_feature_file(os.path.join(HERE, '..', '..', 'cache',
                                              f'{dataset}_vgg16_lpips.h5')).labels
      print(f'All rows on the first {fewest} splits (fit seconds: of runs on different '
            f'numbers of splits, left out).\n')
    print(header)
    for name, folder, method, table in found:
      if fewest < 30:
        print(row_on_first(name, folder, dataset, method, fewest, labels))
      else:
        print(row(name, table, method))
    print("| paper's VGG+L1LR (with fc7) | " + ' | '.join(f'{m:.3f}' for m, _ in published)
          + ' | |')
  print(f'\n### Second seed (another 30 splits)\n\n{header}')
  for dataset in ('msrc_v2', 'scene'):
    table = load('seed1', dataset)
    if table:
      for method, name in (('newton_l1', 'L1, C = 1, flip'), ('newton_l2', 'L2, C = 1, flip'),
                           ('recipe', 'recipe')):
        if method in table['methods']:
          print(row(f'{dataset}: {name}', table, method))
      published = paper.TABLE1[dataset]['VGG+L1LR']
      print(f"| {dataset}: paper's VGG+L1LR | " + ' | '.join(f'{m:.3f}' for m, _ in published)
            + ' | |')


if __name__ == '__main__':
  main()
