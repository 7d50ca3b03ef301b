"""Process-wide set-up of the commands: compilation cache and multi-host flags."""

import os
import subprocess
import sys

import jax
import pytest

from miml_jax.plumbing import runtime
from miml_jax.plumbing.errors import UserError
from tests import conftest


def test_compilation_cache_folder_is_made_and_used(tmp_path):
  before = jax.config.jax_compilation_cache_dir
  try:
    runtime.enable_compilation_cache(str(tmp_path / 'xla'))
    assert os.path.isdir(tmp_path / 'xla')
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'xla')
  finally:
    jax.config.update('jax_compilation_cache_dir', before)
  runtime.enable_compilation_cache('')     # off: nothing changes
  assert jax.config.jax_compilation_cache_dir == before


def test_compilation_cache_in_a_file_is_a_clear_error(tmp_path):
  (tmp_path / 'file').write_text('x')
  with pytest.raises(UserError, match='compilation cache'):
    runtime.enable_compilation_cache(str(tmp_path / 'file' / 'xla'))


@pytest.mark.slow
def test_partial_multi_host_flags_are_refused():
  with pytest.raises(UserError, match='together'):
    runtime.initialize_distributed('127.0.0.1:1234', None, None)
  # From a command: one line, exit status 1, before any work.
  proc = subprocess.run([sys.executable, '-m', 'miml_jax.tag', 'predict', '--model=x',
                         '--distributed', '--num_processes=2', 'a.jpg'], cwd=conftest.REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith('error: a hand-started multi-host run')
