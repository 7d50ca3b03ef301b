"""Solver cost against the number of images: synthetic features with planted sparse labels.

  python -m miml_jax.benchmarks.scale --sizes=1000,4000,16000,64000 --labels=20 \
      --split_counts=1,5 --penalties=l1,l2 --output=experiments/scale/scale.json

For every (n, splits, penalty) a child process makes the data, scales it as `tag train` does
(standardised with each split's training statistics) and fits every label of every split with
`fit_logistic` (C = 1, the solver chosen by the shapes), so its peak RSS is its own run's, data
included (taken before the reference below). Splits are random 2/3 training parts (one split: all images, as `tag train`). Up to
--reference_up_to images, liblinear (scikit-learn) solves the first --reference_labels labels of
the first split, and the relative objective gap (ours - liblinear) / liblinear is reported. The
log-log slope of solve seconds (fit less compile) against n over --slope_range is printed for each (splits, penalty).

Data: D standard normal features (or, with --replicate_features, a feature file's rows drawn with
replacement plus Gaussian noise of --noise times each feature's std, labels kept); each label
is 1 with probability sigmoid(xᵀw - 1), w with --support non-zero weights of size --amplitude.
"""

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from absl import flags

from miml_jax.plumbing import atomic
from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax.plumbing import outputs
from miml_jax.plumbing import runtime_flags
from miml_jax.plumbing.errors import UserError

_SIZES = flags.DEFINE_list('sizes', ['1000', '4000', '16000', '64000'], 'Numbers of images.')
_DIM = flags.DEFINE_integer('dim', 5888, 'Features per image (synthetic data).')
_LABELS = flags.DEFINE_integer('labels', 20, 'Labels (synthetic data).')
_SPLIT_COUNTS = flags.DEFINE_list('split_counts', ['1'],
                                   'Numbers of data splits to fit at once, a run each.')
_PENALTIES = common_flags.penalties()
_TOL = common_flags.tol(default=1e-4, default_help="1e-4, tag train's")
_SUPPORT = flags.DEFINE_integer('support', 20, 'Non-zero planted weights per label.')
_AMPLITUDE = flags.DEFINE_float('amplitude', 0.5, 'Scale of the planted weights.')
_REPLICATE_FEATURES = flags.DEFINE_string(
    'replicate_features', None, 'A feature file whose rows, with noise, replace the synthetic '
    'ones.')
_NOISE = flags.DEFINE_float('noise', 0.1, 'Noise added to replicated rows, in feature stds.')
_REFERENCE_UP_TO = flags.DEFINE_integer('reference_up_to', 16000,
                                        'Largest n at which liblinear gives the reference.')
_REFERENCE_LABELS = flags.DEFINE_integer('reference_labels', 2, 'Labels liblinear solves.')
_SLOPE_RANGE = flags.DEFINE_list('slope_range', ['4000', '64000'],
                                 'Smallest and largest n of the log-log slope.')
_SEED = common_flags.seed()   # of the synthetic data too
_OUTPUT = common_flags.output('a JSON file of the figures (and a .png beside).')
_OVERWRITE = common_flags.overwrite()
_WRITE_FEATURES = flags.DEFINE_string(
    'write_features', None, 'Instead of timing: write the data of the first --sizes as a feature '
    'file (for `tag train --features`).')
_CHILD = flags.DEFINE_string('child', None, 'Internal: n,splits,penalty of one run.')

FORMAT = 'miml_jax.benchmarks.scale/1'
_BLOCK = 8192


def make_data(n, dim, labels, *, support, amplitude, seed, features=None, noise=0.1):
  """(X (n, d) float32, Y (n, L) uint8): planted sparse labels on standard normal features, or a
  feature file's rows replicated with noise (its labels kept). Made a block of rows at a time."""
  rng = np.random.default_rng(seed)
  if features is not None:
    from miml_jax.features import read_feature_file
    source = read_feature_file(features)
    std = source.features.std(axis=0)
    pick = rng.integers(0, len(source.features), n)
    X = source.features[pick]
    for start in range(0, n, _BLOCK):
      block = X[start:start + _BLOCK]
      block += (noise * std * rng.standard_normal(block.shape)).astype(np.float32)
    return X, source.labels[pick]
  w = np.zeros((dim, labels), np.float32)
  for j in range(labels):
    w[rng.choice(dim, support, replace=False), j] = amplitude * rng.standard_normal(support)
  X = np.empty((n, dim), np.float32)
  Y = np.empty((n, labels), np.uint8)
  for start in range(0, n, _BLOCK):
    block = rng.standard_normal((min(_BLOCK, n - start), dim), dtype=np.float32)
    X[start:start + len(block)] = block
    p = 1.0 / (1.0 + np.exp(-(block @ w - 1.0)))
    Y[start:start + len(block)] = rng.random(p.shape) < p
  return X, Y


def write_features(path, n):
  """The benchmark's data as a feature file; its weights checksum says it came from no network."""
  from miml_jax.features import store
  X, Y = make_data(n, _DIM.value, _LABELS.value, support=_SUPPORT.value,
                   amplitude=_AMPLITUDE.value, seed=_SEED.value, features=_REPLICATE_FEATURES.value,
                   noise=_NOISE.value)
  names = tuple(f'synthetic_{i:07d}' for i in range(n))
  labels = tuple(f'label_{j:02d}' for j in range(Y.shape[1]))
  store.save_feature_file(store.FeatureFile(X, Y, names, labels, {
      'format': store.FORMAT, 'dataset': 'synthetic', 'weights_sha256': 'synthetic',
      'weights_source': 'miml_jax.benchmarks.scale', 'image_size': 224, 'dtype': 'float32',
      'layout': json.dumps([['synthetic', X.shape[1]]]), 'inputs_sha256': 'synthetic'}), path)


def _one_run(n, num_splits, penalty):
  """One (n, splits, penalty): data, scaling, fit, reference. Returns the figures."""
  import jax
  from miml_jax import evaluation
  from miml_jax import scaling
  from miml_jax.solvers import fit_logistic
  from miml_jax.solvers import objective
  t0 = time.perf_counter()
  X, Y = make_data(n, _DIM.value, _LABELS.value, support=_SUPPORT.value,
                   amplitude=_AMPLITUDE.value, seed=_SEED.value, features=_REPLICATE_FEATURES.value,
                   noise=_NOISE.value)
  rng = np.random.default_rng(_SEED.value + 1)
  if num_splits == 1:
    mask = np.ones((1, n), bool)
  else:
    mask = np.stack([rng.permutation(n) < round(2 * n / 3) for _ in range(num_splits)])
  shift, scale = scaling.fit_scaling(X, mask, 'standardize')
  data_seconds = time.perf_counter() - t0
  compile_before = evaluation._compile_seconds[0]
  t0 = time.perf_counter()
  fit = fit_logistic(X, Y, penalty=penalty, tol=_TOL.value, train_mask=mask, shift=shift,
                     scale=scale)
  jax.block_until_ready(fit.coef)
  fit_seconds = time.perf_counter() - t0
  result = {
      'n': n, 'splits': num_splits, 'penalty': penalty, 'dim': X.shape[1], 'labels': Y.shape[1],
      'positive_fraction': float(Y.mean()), 'data_seconds': data_seconds,
      'fit_seconds': fit_seconds,
      'compile_seconds': evaluation._compile_seconds[0] - compile_before,
      'newton_iterations_max': int(np.max(fit.n_iter)),
      'converged_fraction': float(np.mean(fit.converged)),
      'nonzero_weights_mean': float(np.mean(np.asarray(fit.coef) != 0) * X.shape[1]),
      # Before the reference, whose float64 copies are not ours. Linux: kilobytes.
      'peak_rss_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
  }
  if n <= _REFERENCE_UP_TO.value:
    from miml_jax.solvers.liblinear import fit_liblinear
    rows = mask[0]
    Xs = ((X[rows] - shift[0]) / scale[0]).astype(np.float32)
    labels = np.arange(min(_REFERENCE_LABELS.value, Y.shape[1]))
    t0 = time.perf_counter()
    reference = fit_liblinear(X[rows], Y[rows][:, labels], penalty=penalty, C=1.0, tol=1e-6,
                              shift=shift[0], scale=scale[0])
    result['reference_seconds_per_label'] = (time.perf_counter() - t0) / len(labels)

    def scaled_objective(coef, intercept):
      # The scaled problem's weights: z = coef·scale, its intercept that of the scaled features.
      return np.asarray(objective(Xs, Y[rows][:, labels], coef * scale[0][:, None],
                                  intercept + shift[0] @ coef, penalty=penalty))

    ref = scaled_objective(np.asarray(reference.coef, np.float64),
                           np.asarray(reference.intercept, np.float64))
    ours = scaled_objective(np.asarray(fit.coef, np.float64)[0][:, labels],
                            np.asarray(fit.intercept, np.float64)[0][labels])
    result['objective_gap_max'] = float(np.max((ours - ref) / ref))
  return result


def _spawn(n, num_splits, penalty, argv):
  """Runs one configuration in a child process; returns its figures with its peak RSS."""
  command = [sys.executable, '-m', 'miml_jax.benchmarks.scale', *argv[1:],
             f'--child={n},{num_splits},{penalty}']
  child = subprocess.run(command, stdout=subprocess.PIPE, check=False)
  if child.returncode != 0:
    return {'n': n, 'splits': num_splits, 'penalty': penalty,
            'error': f'exit {child.returncode}'}
  return json.loads(child.stdout.decode().strip().splitlines()[-1])


def slope(runs, low, high):
  """The least-squares slope of log solve seconds (fit less compile, which does not depend on n)
  against log n, for low <= n <= high."""
  pts = [(r['n'], r['fit_seconds'] - r['compile_seconds']) for r in runs
         if low <= r['n'] <= high and 'fit_seconds' in r]
  if len(pts) < 2:
    return None
  n, t = np.log(np.array(pts)).T
  return float(np.polyfit(n, t, 1)[0])


def plot(result, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
  for key, runs in result['series'].items():
    ok = [r for r in runs if 'fit_seconds' in r]
    n = [r['n'] for r in ok]
    axes[0].loglog(n, [r['fit_seconds'] for r in ok], 'o-', label=key)
    axes[1].loglog(n, [r['peak_rss_gb'] for r in ok], 'o-', label=key)
  axes[0].set(xlabel='images', ylabel='fit seconds')
  axes[1].set(xlabel='images', ylabel='peak RSS (GB)')
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  with atomic.atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=110, format='png')


def main(argv):
  cli.no_arguments(argv)
  if _CHILD.value:
    runtime_flags.apply()
    n, num_splits, penalty = _CHILD.value.split(',')
    print(json.dumps(_one_run(int(n), int(num_splits), penalty)))
    return
  sizes = cli.integers(_SIZES, 10)
  split_counts = cli.integers(_SPLIT_COUNTS, 1)
  penalties = _PENALTIES.value
  if not 1 <= _SUPPORT.value <= _DIM.value:
    raise UserError(f'--support must be in 1..--dim ({_DIM.value}), got {_SUPPORT.value}')
  bounds = cli.integers(_SLOPE_RANGE, 1)
  if len(bounds) != 2 or bounds[0] >= bounds[1]:
    raise UserError(f'--slope_range must be two sizes, smallest first, got '
                    f'{",".join(_SLOPE_RANGE.value)}')
  low, high = bounds
  replicated = [_REPLICATE_FEATURES.value] if _REPLICATE_FEATURES.value else []
  if _WRITE_FEATURES.value:
    from miml_jax.features import store
    outputs.check_file(_WRITE_FEATURES.value, outputs.Inputs(
        replicated), kind=store.KIND, overwrite=_OVERWRITE.value)
    write_features(_WRITE_FEATURES.value, sizes[0])
    print(f'{_WRITE_FEATURES.value}: {sizes[0]:,} images, {_LABELS.value} labels')
    return
  if _OUTPUT.value:
    outputs.check_files([_OUTPUT.value, os.path.splitext(_OUTPUT.value)[0] + '.png'],
                        outputs.Inputs(replicated), kind=FORMAT.split('/')[0],
                        overwrite=_OVERWRITE.value)
  series = {}
  for num_splits in split_counts:
    for penalty in penalties:
      key = f'{penalty}, {num_splits} split{"s" * (num_splits > 1)}'
      series[key] = []
      for n in sizes:
        run = _spawn(n, num_splits, penalty, sys.argv)
        series[key].append(run)
        print(json.dumps(run), flush=True)
  result = {'format': FORMAT, 'command': ' '.join(sys.argv), 'series': series,
            'slopes': {key: slope(runs, low, high) for key, runs in series.items()},
            'slope_range': [low, high]}
  for key, value in result['slopes'].items():
    print(f'{key}: slope of solve seconds against n over {low}-{high}: '
          + ('n/a' if value is None else f'{value:.2f}'))
  if _OUTPUT.value:
    atomic.write_json(_OUTPUT.value, result)
    plot(result, os.path.splitext(_OUTPUT.value)[0] + '.png')
  failed = [f'{key} n={r["n"]}' for key, runs in series.items() for r in runs if 'error' in r]
  if failed:
    raise UserError(f'runs failed (their messages are above): {", ".join(failed)}')


if __name__ == '__main__':
  cli.run(main)
