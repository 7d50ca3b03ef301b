"""The command-line reference, docs/cli.md, written from the commands' own flags so that it cannot
drift from them.

  python -m miml_jax.plumbing.flag_reference            # rewrites docs/cli.md
  python -m miml_jax.plumbing.flag_reference --check    # exit status 1 if docs/cli.md is stale

absl keeps every flag in one global `FLAGS`, and what a command's flags are (and their defaults)
depends on what that command imports, so each command is imported in a process of its own
(`describe`, which prints its flags as JSON). `render` turns the descriptions into Markdown:
each flag that several commands take alike once, then each command's usage and its own flags.
tests/test_docs.py fails when the committed file differs from what this writes.
"""

import importlib
import json
import os
import re
import subprocess
import sys

from absl import flags

# Every command, as `python -m` runs it; `miml_jax.scripts` names the ones with a console script.
COMMANDS = (
    'miml_jax.tag',
    'miml_jax.experiments.table1',
    'miml_jax.experiments.figure3',
    'miml_jax.experiments.c_selection',
    'miml_jax.experiments.selected_features',
    'miml_jax.experiments.compare_tables',
    'miml_jax.features.__main__',
    'miml_jax.datasets.__main__',
    'miml_jax.weights.convert',
    'miml_jax.benchmarks.solve',
    'miml_jax.benchmarks.scale',
    'miml_jax.benchmarks.extract',
    'miml_jax.benchmarks.gpu_kit',
    'miml_jax.benchmarks.backbones',
)

REFERENCE = os.path.join('docs', 'cli.md')

_HEADER = """\
# Command-line reference

Generated from the commands' own flags by `python -m miml_jax.plumbing.flag_reference`; do not
edit by hand (the test suite fails when this page and the flags differ). Every command also
takes absl's own flags: `--helpshort` lists the command's flags, `--helpfull` all of them,
`--flagfile=FILE` reads flags from a file, and `--verbosity=0` shows the INFO log.
"""


def describe(module_name: str) -> dict:
  """The flags a command takes once its module is imported: every flag that a miml_jax module
  defined, an alias folded into the flag it names. Meant for a fresh process (`collect`)."""
  module = importlib.import_module(module_name)
  records, aliases = {}, {}
  for defined_in, flag_list in flags.FLAGS.flags_by_module_dict().items():
    if not defined_in.startswith('miml_jax'):
      continue          # absl's own flags (--verbosity, --pdb, ...)
    for flag in flag_list:
      if type(flag).__name__ == '_FlagAlias':
        aliases[flag.name] = flag.help.removeprefix('Alias for --').removesuffix('.')
      else:
        records[flag.name] = _record(flag)
  for alias, name in aliases.items():
    records[name]['aliases'].append(alias)
  return {'module': module_name, 'doc': module.__doc__ or '',
          'flags': [records[name] for name in sorted(records, key=str.lower)]}


def _record(flag) -> dict:
  parser = flag.parser
  if hasattr(parser, 'enum_values'):
    kind = 'one of: ' + ', '.join(parser.enum_values)
  elif isinstance(parser, flags.ListParser):
    kind = 'list'
  elif type(parser).__module__.startswith('absl'):
    kind = parser.flag_type()
  else:                 # a parser of our own says what it reads
    kind = getattr(parser, 'syntactic_help', '') or parser.flag_type()
  for bound, word in (('lower_bound', '≥'), ('upper_bound', '≤')):
    if getattr(parser, bound, None) is not None:
      kind += f', {word} {getattr(parser, bound)}'
  required = any('must have a value other than None' in getattr(v, 'message', '')
                 for v in flag.validators)
  text = ' '.join((flag.help or '').split())
  if hasattr(parser, 'enum_values'):   # absl starts an enum's help with <a|b|c>: ('takes' says it)
    text = text.removeprefix('<' + '|'.join(parser.enum_values) + '>: ')
  return {'name': flag.name, 'aliases': [], 'kind': kind, 'default': _text(flag.default),
          'required': required, 'help': text}


def _text(value) -> str:
  if value is None:
    return ''
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, (list, tuple)):
    return ','.join(str(v) for v in value)
  return str(value)


def collect(modules=COMMANDS) -> list[dict]:
  """`describe` of each command, each in a fresh Python process (absl's FLAGS is global)."""
  env = {k: v for k, v in os.environ.items() if not k.startswith('MIML_JAX')}
  # Run beside this very package, so that the children import it and not another copy.
  here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  described = []
  for module_name in modules:
    result = subprocess.run(
        [sys.executable, '-m', 'miml_jax.plumbing.flag_reference', '--describe', module_name],
        capture_output=True, text=True, env=env, cwd=here, check=False)
    if result.returncode != 0:
      raise RuntimeError(f'{module_name}: {result.stderr.strip()[-2000:]}')
    described.append(json.loads(result.stdout.strip().splitlines()[-1]))
  return described


def render(described: list[dict], scripts: dict[str, str] | None = None) -> str:
  """docs/cli.md from `collect`'s descriptions; `scripts`: console script -> module."""
  script_of = {module.removesuffix('.__main__'): script
               for script, module in (scripts or {}).items()}
  # A flag that several commands take with the same type, default and help is listed once; one
  # whose default or help differs between commands is listed under each of them.
  rows = [{flag['name']: _row(flag) for flag in command['flags']} for command in described]
  seen = {}
  for command_rows in rows:
    for name, row in command_rows.items():
      seen.setdefault(name, []).append(row)
  shared = {name for name, found in seen.items() if len(found) > 1 and len(set(found)) == 1}
  lines = [_HEADER]
  if shared:
    lines += ['## Flags that several commands share', '',
              'Each means the same, with the same default, in every command that takes it.', '',
              *_table(seen[name][0] for name in sorted(shared, key=str.lower)), '']
  for command, command_rows in zip(described, rows):
    name = command['module'].removesuffix('.__main__')
    lines += [f'## {name.removeprefix("miml_jax.")}', '']
    summary, usage = _summary(command['doc'])
    summary = f'`python -m {name}`: {summary}'
    if name in script_of:
      summary += f' Installed as `{script_of[name]}`.'
    lines += [summary, '']
    if usage:
      lines += ['```', *usage, '```', '']
    own = [row for flag, row in command_rows.items() if flag not in shared]
    lines += [*_table(own), ''] if own else ['No flags of its own.', '']
    also = [flag for flag in command_rows if flag in shared]
    if also:
      lines += ['Shared flags it takes: ' + ', '.join(f'`--{f}`' for f in also) + '.', '']
  return '\n'.join(lines).rstrip('\n') + '\n'


def _row(flag: dict) -> str:
  name = f'`--{flag["name"]}`'
  if flag['aliases']:
    name += ' (also ' + ', '.join(f'`--{a}`' for a in sorted(flag['aliases'])) + ')'
  default = 'required' if flag['required'] else (f'`{flag["default"]}`' if flag['default'] else '')
  cells = (name, _cell(flag['kind']), default.replace('|', '\\|'), _cell(flag['help']))
  return '| ' + ' | '.join(cells) + ' |'


def _table(rows) -> list[str]:
  return ['| flag | takes | default | what it does |', '|---|---|---|---|', *rows]


def _cell(text: str) -> str:
  """Text for a Markdown table cell: a bare | would end the cell, and outside code spans
  <name> would be read as an HTML tag."""
  parts = text.replace('|', '\\|').split('`')
  for i in range(0, len(parts), 2):
    parts[i] = parts[i].replace('<', '&lt;').replace('>', '&gt;')
  return '`'.join(parts)


def _summary(doc: str) -> tuple[str, list[str]]:
  """The docstring's first paragraph that is prose, and its block of `python -m` lines."""
  paragraphs = [p for p in doc.strip().split('\n\n') if p.strip()]
  prose = next((p for p in paragraphs if not p.strip().startswith('python -m')), '')
  usage = next((p for p in paragraphs if p.strip().startswith('python -m')), '')
  lines = usage.splitlines()
  indent = min((len(l) - len(l.lstrip()) for l in lines if l.strip()), default=0)
  # (A backslash at a line's end in the docstring leaves a run of spaces inside the line.)
  usage_lines = [re.sub(r'(?<=\S) {2,}', ' ', l[indent:].rstrip()) for l in lines]
  return ' '.join(prose.split()), usage_lines


def main(argv: list[str]) -> int:
  if argv[:1] == ['--describe']:
    print(json.dumps(describe(argv[1])))
    return 0
  from miml_jax import scripts    # pylint: disable=import-outside-toplevel
  text = render(collect(), scripts.COMMANDS)
  if argv[:1] == ['--check']:
    with open(REFERENCE, encoding='utf-8') as f:
      if f.read() == text:
        return 0
    print(f'{REFERENCE} is stale: python -m miml_jax.plumbing.flag_reference rewrites it',
          file=sys.stderr)
    return 1
  with open(REFERENCE, 'w', encoding='utf-8') as f:
    f.write(text)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
