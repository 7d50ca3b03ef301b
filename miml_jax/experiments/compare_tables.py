"""Two Table 1 results of the same splits side by side: for each method and metric, both means
and their difference (e.g. bf16 features against fp32).

  python -m miml_jax.experiments.compare_tables --baseline=fp32/table1_scene.json \
      --other=bf16/table1_scene.json --names=fp32,bf16 --tolerance=0.003 --output=scene.md
"""

import json

from absl import app
from absl import flags

from miml_jax import atomic
from miml_jax import paper
from miml_jax.errors import exit_on_user_error
from miml_jax.errors import UserError

_BASELINE = flags.DEFINE_string('baseline', None, 'table1_<dataset>.json to compare against.',
                                required=True)
_OTHER = flags.DEFINE_string('other', None, 'table1_<dataset>.json to compare.', required=True)
_NAMES = flags.DEFINE_list('names', ['baseline', 'other'], 'Column names of the two.')
_TOLERANCE = flags.DEFINE_float('tolerance', None, 'Largest |difference| of means allowed.')
_OUTPUT = flags.DEFINE_string('output', None, 'Markdown file for the comparison.')

# Settings that must agree for the two tables to describe the same experiment.
SAME = ('dataset', 'n_images', 'n_labels', 'splits', 'train_fraction', 'seed', 'C', 'scaling')


def read_table(path: str) -> dict:
  try:
    with open(path) as f:
      table = json.load(f)
  except OSError as e:
    raise UserError(f'{path}: cannot read ({e.strerror})') from None
  except json.JSONDecodeError as e:
    raise UserError(f'{path}: not JSON ({e})') from None
  if not isinstance(table, dict) or not isinstance(table.get('methods'), dict):
    raise UserError(f'{path}: not a table1 result (no "methods")')
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
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if len(_NAMES.value) != 2:
    raise app.UsageError('--names takes two names')
  with exit_on_user_error():
    rows = compare(read_table(_BASELINE.value), read_table(_OTHER.value))
  text = markdown(rows, _NAMES.value, _TOLERANCE.value)
  print(text)
  if _OUTPUT.value:
    with atomic.atomic_path(_OUTPUT.value) as tmp, open(tmp, 'w') as f:
      f.write(f'```\n{_BASELINE.value} vs {_OTHER.value}\n```\n\n{text}')


if __name__ == '__main__':
  app.run(main)
