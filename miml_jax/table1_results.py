"""Table 1's results: the JSON-ready record of one dataset's run of the protocol (settings,
each method's summary, the check against liblinear), its Markdown table beside the paper's
numbers, and which methods beat the paper."""

import numpy as np

from miml_jax import evaluation
from miml_jax import paper

FORMAT = 'miml_jax.table1/1'
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


def table1(dataset: str, data, protocol, results: dict, masks, weights_file=None) -> dict:
  """The record of `evaluation.run(X, Y, masks, protocol)`'s `results` on `data` (a
  `features.store` dataset: features, labels, attrs) called `dataset`, its features extracted
  with `weights_file` (None: read from a feature file)."""
  from miml_jax.features import store   # pylint: disable=g-import-not-at-top
  X, Y = data.features, data.labels.astype(np.float64)
  result = {
      'format': FORMAT,
      'dataset': dataset, 'n_images': int(len(X)), 'n_labels': int(Y.shape[1]),
      'feature_dim': int(X.shape[1]),
      'views': dict(zip(('image_size', 'augment'), store.views_of(data.attrs))),
      'weights': {'file': weights_file,
                  'source': data.attrs['weights_source'],
                  'sha256': data.attrs['weights_sha256']},
      # The protocol's settings; its list of methods gives way to their results, in its order.
      **protocol.to_json(),
      'methods': {m: evaluation.summary(r) for m, r in results.items()},
      'solver_agreement': evaluation.agreement(results, Y, masks),
  }
  for name, row in result['solver_agreement'].items():
    result['methods'][name]['objective_gap_worst'] = row['objective_gap_worst']
  return result


def agreement_lines(result: dict) -> str:
  """One line per method checked against liblinear: objective gaps, metrics and time."""
  return '\n'.join(
      f'{name} vs liblinear on {row["problems"]} problems: objective gap worst '
      f'{row["objective_gap_worst"]:.1e}, median {row["objective_gap_median"]:.1e}; metrics '
      f'differ by at most {row["metric_difference_max"]:.4f}; liblinear took '
      f'{row["liblinear_seconds_over_ours"]:.2f}x our time'
      for name, row in result['solver_agreement'].items())
