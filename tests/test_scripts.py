"""The console scripts: one per command, each the command `python -m` runs."""

import configparser
import os
import subprocess
import sys

import pytest

from miml_jax import scripts
from tests import conftest


def _entry_points() -> dict:
  config = configparser.ConfigParser()
  config.read(os.path.join(conftest.REPO, 'setup.cfg'))
  lines = config['options.entry_points']['console_scripts'].strip().splitlines()
  return dict(tuple(part.strip() for part in line.split('=')) for line in lines)


def test_every_script_runs_its_commands_main():
  entries = _entry_points()
  assert set(entries) == set(scripts.COMMANDS)
  for script, target in entries.items():
    module, name = target.split(':')
    assert module == 'miml_jax.scripts' and callable(getattr(scripts, name)), script
    assert scripts.COMMANDS[script].removesuffix('.__main__') in getattr(scripts, name).__doc__


@pytest.mark.slow
@pytest.mark.parametrize('script, own_flag', [('miml-table1', '--splits'),
                                              ('miml-figure3', '--train_sizes'),
                                              ('miml-tag', '--model'),
                                              ('miml-features', '--dataset')])
def test_an_installed_script_lists_its_own_flags_and_refuses_bad_ones(script, own_flag):
  path = os.path.join(os.path.dirname(sys.executable), script)
  assert os.path.exists(path), f'{script} is not installed: pip install -e . makes it'
  shown = subprocess.run([path, '--helpshort'], capture_output=True, text=True,
                         cwd=conftest.REPO)
  # (absl's --helpshort exits 1, as under python -m.)
  assert own_flag in shown.stdout and 'Traceback' not in shown.stderr, shown.stdout + shown.stderr
  bad = subprocess.run([path, '--no_such_flag=1'], capture_output=True, text=True,
                       cwd=conftest.REPO)
  assert bad.returncode != 0 and 'no_such_flag' in bad.stderr
  assert 'Traceback' not in bad.stderr
