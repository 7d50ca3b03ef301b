"""Does choosing C by cross-validation beat the paper's C=1? On Table 1's splits.

  python -m miml_jax.experiments.c_selection --dataset=msrc_v2 --data_dir=../shared/datasets \
      --penalty=l2 --splits=30 --output_dir=experiments/c_selection

For each split, C is chosen per label (or globally) by k-fold cross-validation on the split's
training part only (`miml_jax.model_selection`: the whole grid x folds x labels in one call),
then the model refitted there with the chosen C, and with C=1, is scored on the test part.
Writes c_selection_<dataset>_<penalty>.json (per-split metrics of both, chosen Cs) and .md;
the JSON is rewritten after every split and a rerun continues where it stopped.
"""

import os

import numpy as np
from absl import flags

from miml_jax.plumbing import atomic
from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax.plumbing import input_flags
from miml_jax import metrics
from miml_jax import model_selection
from miml_jax.plumbing import runtime_flags
from miml_jax.plumbing import safefile
from miml_jax import scaling
from miml_jax import splits
from miml_jax.plumbing.errors import Interrupted
from miml_jax.experiments import data_flags
from miml_jax.solvers import fit_logistic

_SPLITS = common_flags.splits()
_PENALTY = flags.DEFINE_enum('penalty', 'l1', list(common_flags.PENALTIES), 'Regulariser.')
_CS = common_flags.Cs()
_FOLDS = common_flags.folds()
_SELECT = common_flags.select()
_SCALING = common_flags.scaling_kind()
_TOL = common_flags.tol(default=1e-4)
_MAX_ITER = common_flags.max_iter(default=5000)
_OUTPUT_DIR = common_flags.output_dir()
flags.adopt_module_key_flags(data_flags)
flags.adopt_module_key_flags(input_flags)
_TRAIN_FRACTION = 2 / 3   # Table 1's splits

FORMAT = 'miml_jax.c_selection/1'


def markdown(result: dict) -> str:
  lines = [f"| metric | C=1 | C by {result['folds']}-fold CV ({result['select']}) | "
           'CV - C=1 (paired) | splits where CV is better |', '|---|---|---|---|---|']
  for name in metrics.NAMES:
    base = np.array([s['C=1'][name] for s in result['per_split']])
    cv = np.array([s['cv'][name] for s in result['per_split']])
    sign = 1 if name == 'average_precision' else -1
    lines.append(f'| {name} | {base.mean():.4f} ± {base.std():.4f} | {cv.mean():.4f} ± '
                 f'{cv.std():.4f} | {(cv - base).mean():+.4f} ± {(cv - base).std():.4f} | '
                 f'{int(np.sum(sign * (cv - base) > 0))} / {len(cv)} |')
  return '\n'.join(lines) + '\n'


def main(argv):
  cli.no_arguments(argv)
  Cs = cli.positive_numbers(_CS)
  source = data_flags.one_source()
  # Each split's training part is cut into the folds.
  cli.at_least(_FOLDS, 2, int(round(_TRAIN_FRACTION * source.n_images)))
  out = data_flags.check_results(
      os.path.join(_OUTPUT_DIR.value, f'c_selection_{source.name}_{_PENALTY.value}'),
      ('.json', '.md'), source.inputs, FORMAT.split('/')[0])
  runtime_flags.apply()
  dataset_name, data = source.name, source.load()
  X, Y = data.features, data.labels.astype(np.float64)
  masks = splits.random_splits(len(X), _SPLITS.value, _TRAIN_FRACTION,
                               seed=data_flags.SEED.value)
  settings = {'format': FORMAT, 'dataset': dataset_name, 'penalty': _PENALTY.value, 'Cs': Cs,
              'folds': _FOLDS.value, 'select': _SELECT.value, 'scaling': _SCALING.value,
              'seed': data_flags.SEED.value, 'tol': _TOL.value,
              'weights_sha256': data.attrs['weights_sha256'],
              'labels': list(data.label_names)}
  result = {**settings, 'per_split': []}
  previous = data_flags.previous_results(out + '.json', 'C-selection result')
  if isinstance(previous, dict) and {k: previous.get(k, FORMAT if k == 'format' else None)
                                     for k in settings} == settings:
    result = {**previous, 'format': FORMAT}
  try:
    for s in range(len(result['per_split']), _SPLITS.value):
      result['per_split'].append(split_result(X, Y, masks[s], Cs, seed=s))
      safefile.write_json(out + '.json', result, indent=1)
      row = result['per_split'][-1]
      print(f"split {s}: a.p. C=1 {row['C=1']['average_precision']:.4f}, "
            f"cv {row['cv']['average_precision']:.4f}; C chosen {row['best_C']}", flush=True)
  except KeyboardInterrupt:
    raise Interrupted(f'rerun to resume: {len(result["per_split"])} of {_SPLITS.value} splits '
                      f'done, in {out}.json') from None
  table = markdown(result)
  atomic.write_text(out + '.md',
                    f"# C by cross-validation vs C=1: {dataset_name}, {_PENALTY.value}\n\n{table}")
  print(table)


def split_result(X, Y, train, Cs, *, seed: int) -> dict:
  """One split: C chosen by CV on its training part, then C=1 and the chosen Cs refitted there
  and scored on the rest."""
  test = ~train
  cv = model_selection.cross_validate(
      X[train], Y[train], Cs, folds=_FOLDS.value, select=_SELECT.value,
      penalty=_PENALTY.value, scaling_kind=_SCALING.value, seed=seed, tol=_TOL.value,
      max_iter=_MAX_ITER.value)
  shift, scale = scaling.fit_scaling(X, train[None], _SCALING.value)
  L = Y.shape[1]
  # C=1 and the chosen Cs, as one problem of 2L labels.
  fit = fit_logistic(X, np.tile(Y, (1, 2)), penalty=_PENALTY.value,
                     C=np.concatenate([np.ones(L), cv.best_C]), tol=_TOL.value,
                     max_iter=_MAX_ITER.value, train_mask=train[None], shift=shift,
                     scale=scale)
  decisions = X[test].astype(np.float64) @ np.asarray(fit.coef[0], np.float64) + np.asarray(
      fit.intercept[0], np.float64)
  row = {'split': seed, 'best_C': cv.best_C.tolist()}
  for name, cols in (('C=1', slice(0, L)), ('cv', slice(L, 2 * L))):
    scores = metrics.evaluate(Y[test], decisions[:, cols])
    row[name] = {k: float(v) for k, v in scores.items()}
  return row


if __name__ == '__main__':
  cli.run(main)
