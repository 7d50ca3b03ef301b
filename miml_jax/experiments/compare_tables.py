"""Two Table 1 results of the same splits side by side: for each method and metric, both means
and their difference (e.g. bf16 features against fp32).

  python -m miml_jax.experiments.compare_tables --baseline=fp32/table1_scene.json \
      --other=bf16/table1_scene.json --names=fp32,bf16 --tolerance=0.003 --output=scene.md
"""

import os

from absl import flags

from miml_jax.plumbing import atomic
from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax.plumbing import outputs
from miml_jax import paper
from miml_jax.plumbing import safefile
from miml_jax.plumbing.errors import UserError

_BASELINE = flags.DEFINE_string('baseline', None, 'table1_<dataset>.json to compare against.',
                                required=True)
_OTHER = flags.DEFINE_string('other', None, 'table1_<dataset>.json to compare.', required=True)
_NAMES = flags.DEFINE_list('names', ['baseline', 'other'], 'Column names of the two.')
_TOLERANCE = flags.DEFINE_float('tolerance', None, 'Largest |difference| of means allowed.')
_OUTPUT = common_flags.output('the Markdown comparison (and a JSON file of its rows beside '
                              'it, of the same name).')
_OVERWRITE = common_flags.overwrite()

FORMAT = 'miml_jax.compare_tables/1'

# Settings that must agree for the two tables to describe the same experiment.
SAME = ('dataset', 'n_images', 'n_labels', 'splits', 'train_fraction', 'seed', 'C', 'scaling')


def read_table(path: str) -> dict:
  try:
    # Tables written before results carried checksums are still compared.
    table = safefile.load_json(path, 'table1 result', required=False)
  except OSError as e:
    raise UserError(f'{path}: cannot read ({e.strerror})') from None
  if not isinstance(table, dict) or not isinstance(table.get('methods'), dict):
    raise UserError(f'{path}: not a table1 result (no "methods")')
  for method, row in table['methods'].items():
    for metric in paper.METRICS:
      mean = row.get(metric, {}).get('mean') if isinstance(row, dict) else None
      if not isinstance(mean, (int, float)):
        raise UserError(f'{path}: not a table1 result (method {method!r} has no mean '
                        f'{metric})')
  return table


def compare(baseline: dict, other: dict) -> list[dict]:
  """Rows {method, metric, baseline, other, difference} for the methods both tables hold."""
  differing = [k for k in SAME if baseline.get(k) != other.get(k)]
  if differing:
    raise UserError('the tables are of different experiments: ' + ', '.join(
        f'{k} {baseline.get(k)!r} vs {other.get(k)!r}' for k in differing))
  methods = [m for m in baseline['methods'] if m in other['methods']]
  if not methods:
    raise UserError('the tables share no method')
  return [{'method': m, 'metric': metric,
           'baseline': baseline['methods'][m][metric]['mean'],
           'other': other['methods'][m][metric]['mean'],
           'difference': other['methods'][m][metric]['mean']
                         - baseline['methods'][m][metric]['mean']}
          for m in methods for metric in paper.METRICS]


def markdown(rows: list[dict], names: list[str], tolerance: float | None) -> str:
  lines = [f'| method | metric | {names[0]} | {names[1]} | difference |', '|---|---|---|---|---|']
  lines += [f"| {r['method']} | {r['metric']} | {r['baseline']:.4f} | {r['other']:.4f} | "
            f"{r['difference']:+.4f} |" for r in rows]
  worst = max(rows, key=lambda r: abs(r['difference']))
  verdict = (f"largest difference {worst['difference']:+.4f} ({worst['method']}, "
             f"{worst['metric']})")
  if tolerance is not None:
    verdict += (f": within {tolerance:g}" if abs(worst['difference']) <= tolerance
                else f": OVER the tolerance {tolerance:g}")
  return '\n'.join(lines) + f'\n\n{verdict}\n'


def main(argv):
  cli.no_arguments(argv)
  if len(_NAMES.value) != 2:
    raise UserError('--names takes two names')
  if _TOLERANCE.value is not None:
    cli.positive(_TOLERANCE)
  stem = None
  if _OUTPUT.value:
    stem = os.path.splitext(_OUTPUT.value)[0]
    inputs = outputs.Inputs([_BASELINE.value, _OTHER.value])
    for path in (stem + '.json', _OUTPUT.value):
      outputs.check_file(path, inputs, kind=FORMAT.split('/')[0], overwrite=_OVERWRITE.value)
  rows = compare(read_table(_BASELINE.value), read_table(_OTHER.value))
  text = markdown(rows, _NAMES.value, _TOLERANCE.value)
  print(text)
  if stem is not None:
    safefile.write_json(stem + '.json', {'format': FORMAT, 'baseline': _BASELINE.value,
                                       'other': _OTHER.value, 'names': _NAMES.value,
                                       'rows': rows})
    atomic.write_text(_OUTPUT.value, f'```\n{_BASELINE.value} vs {_OTHER.value}\n```\n\n{text}')


if __name__ == '__main__':
  cli.run(main)
