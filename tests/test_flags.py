"""Every flag is defined once (miml_jax.plumbing.common_flags for those several commands take), and a
shared flag's check stops a command before its main."""

import collections
import os
import re
import subprocess
import sys

import pytest

from miml_jax.plumbing import common_flags
from tests import conftest

_DEFINITION = re.compile(r"DEFINE(?:_\w+)?\(\s*(?:[\w.()]+,\s*)?'(\w+)'")


def test_each_flag_is_defined_in_one_module():
  where = collections.defaultdict(set)
  package = os.path.join(conftest.REPO, 'miml_jax')
  for folder, _, files in os.walk(package):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        for flag in _DEFINITION.findall(open(path, encoding='utf-8').read()):
          where[flag].add(os.path.relpath(path, package))
  assert {'splits', 'tol', 'C', 'output', 'features', 'overwrite'} <= set(where)
  twice = {flag: sorted(paths) for flag, paths in where.items() if len(paths) > 1}
  assert not twice, twice


def test_C_reads_a_number_or_cv():
  parse = common_flags._NumberOrCV().parse    # pylint: disable=protected-access
  assert parse('cv') == 'cv' and parse('0.5') == 0.5 and parse(2) == 2
  with pytest.raises(ValueError, match="a number or 'cv'"):
    parse('auto')


@pytest.mark.slow
@pytest.mark.parametrize('args,message', [(['--tol=-1'], '--tol must be a finite positive'),
                                          (['--splits=0'], '--splits must be at least 1'),
                                          (['--penalties=l3'], 'unknown l3')])
def test_a_shared_flags_check_stops_the_command_before_main(tmp_path, args, message):
  marker = tmp_path / 'main_ran'
  code = ('import sys\n'
          'from miml_jax.plumbing import cli, common_flags\n'
          'common_flags.tol(default=1e-4); common_flags.splits(); common_flags.penalties()\n'
          f'cli.run(lambda argv: open({str(marker)!r}, "w").close())\n')
  result = subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True,
                          cwd=conftest.REPO, timeout=300)
  assert result.returncode == 1 and message in result.stderr, result.stderr
  assert not marker.exists()
  ok = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                      cwd=conftest.REPO, timeout=300)
  assert ok.returncode == 0 and marker.exists(), ok.stderr
