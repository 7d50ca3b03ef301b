"""What the L1 models select: non-zero weights per label in each feature block.

  python -m miml_jax.experiments.selected_features --dataset=msrc_v2 \
      --data_dir=../shared/datasets --output_dir=experiments/selected_features

Fits the L1 model (as `jax_l1` of Table 1) on each of the first --splits Table 1 training
splits and counts, per label and block (pool1..pool5, fc7 when present), the weights that are
non-zero, averaged over the splits. Writes selected_<dataset>.csv, .json and .png (counts and
the fraction of each block kept).
"""

import csv
import os

import jax
import numpy as np
from absl import flags

from miml_jax.plumbing import atomic
from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax.plumbing import input_flags
from miml_jax.plumbing import runtime_flags
from miml_jax.plumbing import safefile
from miml_jax import scaling
from miml_jax import splits
from miml_jax.experiments import data_flags
from miml_jax.solvers import fit_logistic

_SPLITS = common_flags.splits(default=5)
_C = common_flags.C()
_SCALING = common_flags.scaling_kind()
_TOL = common_flags.tol(default=1e-6)
_MAX_ITER = common_flags.max_iter()
_OUTPUT_DIR = common_flags.output_dir()
flags.adopt_module_key_flags(data_flags)
flags.adopt_module_key_flags(input_flags)


FORMAT = 'miml_jax.selected_features/1'


def block_counts(coef, layout) -> dict:
  """{block: (..., q) non-zero weights in that block}; coef: (..., D, q)."""
  return {name: (coef[..., a:b, :] != 0).sum(axis=-2)
          for name, (a, b) in layout.offsets().items()}


def plot(result: dict, path: str) -> None:
  import matplotlib   # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt   # pylint: disable=g-import-not-at-top
  labels, blocks = result['labels'], list(result['block_sizes'])
  counts = np.array([[result['counts'][lab][b] for b in blocks] for lab in labels])
  fractions = counts / np.array([result['block_sizes'][b] for b in blocks])
  fig, axes = plt.subplots(1, 2, figsize=(12, 0.32 * len(labels) + 1.8))
  for ax, values, title, fmt in ((axes[0], counts, 'non-zero weights', '.0f'),
                                 (axes[1], 100 * fractions, '% of the block kept', '.1f')):
    im = ax.imshow(values, aspect='auto', cmap='viridis')
    ax.set_xticks(range(len(blocks)), blocks)
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
      for j in range(len(blocks)):
        ax.text(j, i, format(values[i, j], fmt), ha='center', va='center', fontsize=7,
                color='white' if values[i, j] < values.max() / 2 else 'black')
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
  fig.suptitle(f"{result['dataset']}: L1-LR (C={result['C']}, {result['scaling']}) weights "
               f"per block, mean over {result['splits']} training splits")
  fig.tight_layout()
  with atomic.atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=120, format='png')
  plt.close(fig)


def main(argv):
  cli.no_arguments(argv)
  source = data_flags.one_source()
  out = data_flags.check_results(os.path.join(_OUTPUT_DIR.value, f'selected_{source.name}'),
                                 ('.json', '.csv', '.png'), source.inputs,
                                 FORMAT.split('/')[0])
  runtime_flags.apply()
  data = source.load()
  X, Y = data.features, data.labels.astype(np.float64)
  masks = splits.random_splits(len(X), _SPLITS.value, seed=data_flags.SEED.value)
  shift, scale = scaling.fit_scaling(X, masks, _SCALING.value)
  fit = jax.block_until_ready(fit_logistic(X, Y, penalty='l1', C=_C.value, tol=_TOL.value,
                                           max_iter=_MAX_ITER.value, train_mask=masks,
                                           shift=shift, scale=scale))
  counts = block_counts(np.asarray(fit.coef), data.layout)          # {block: (S, q)}
  result = {
      'format': FORMAT,
      'dataset': source.name, 'splits': _SPLITS.value, 'C': _C.value,
      'scaling': _SCALING.value, 'labels': list(data.label_names),
      'block_sizes': dict(data.layout.blocks),
      'converged_fraction': float(np.mean(fit.converged)),
      'counts': {lab: {b: float(c[:, j].mean()) for b, c in counts.items()}
                 for j, lab in enumerate(data.label_names)},
  }
  safefile.write_json(out + '.json', result)
  with atomic.atomic_path(out + '.csv') as tmp, open(tmp, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['label', *result['block_sizes'], 'total'])
    for lab in result['labels']:
      row = [result['counts'][lab][b] for b in result['block_sizes']]
      w.writerow([lab, *(f'{v:.1f}' for v in row), f'{sum(row):.1f}'])
  plot(result, out + '.png')
  print(open(out + '.csv').read())
  print(f'wrote {out}.csv, .json, .png')


if __name__ == '__main__':
  cli.run(main)
