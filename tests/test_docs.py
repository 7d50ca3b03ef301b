"""The documentation: the site builds with `mkdocs build --strict` (a broken link or anchor, a
missing page fails it), and the command-line reference, docs/cli.md, is what the commands' flags
say today."""

import ast
import difflib
import os
import re

import pytest
from absl import flags

from miml_jax import scripts
from miml_jax.plumbing import flag_reference
from tests import conftest


def _build(site_dir):
  pytest.importorskip('mkdocs', reason='mkdocs is not installed: pip install -e ".[docs]" '
                      '(.ci/run installs it)')
  from mkdocs.commands import build    # pylint: disable=import-outside-toplevel
  from mkdocs.config import load_config    # pylint: disable=import-outside-toplevel
  config = load_config(os.path.join(conftest.REPO, 'mkdocs.yml'), strict=True,
                       site_dir=str(site_dir))
  build.build(config)      # in strict mode any warning aborts (mkdocs.exceptions.Abort)


def test_the_site_builds_strict_and_carries_the_results(tmp_path):
  _build(tmp_path / 'site')
  for page in ('index.html', 'cli/index.html', 'robustness/index.html',
               'experiments/index.html', 'CHANGELOG/index.html'):
    assert (tmp_path / 'site' / page).is_file(), page


def test_a_broken_link_fails_the_build(tmp_path, monkeypatch):
  pytest.importorskip('mkdocs')
  from mkdocs import exceptions    # pylint: disable=import-outside-toplevel
  from mkdocs.structure.pages import Page    # pylint: disable=import-outside-toplevel
  read = Page.read_source

  def with_a_broken_link(self, config):
    read(self, config)
    if self.file.src_uri == 'index.md':
      self.markdown += '\n[gone](../experiments/no_such_result.md)\n'
  monkeypatch.setattr(Page, 'read_source', with_a_broken_link)
  with pytest.raises(exceptions.Abort):
    _build(tmp_path / 'site')


def test_the_readme_links_to_files_that_exist():
  """README.md is outside the site, so its links are checked here."""
  text = open(os.path.join(conftest.REPO, 'README.md'), encoding='utf-8').read()
  targets = [t.split('#')[0] for t in re.findall(r'\]\(([^)\s]+)\)', text)
             if '://' not in t and not t.startswith('#')]
  assert len(targets) > 10
  missing = [t for t in targets if not os.path.exists(os.path.join(conftest.REPO, t))]
  assert not missing, missing


def test_the_readme_is_a_front_page():
  lines = open(os.path.join(conftest.REPO, 'README.md'), encoding='utf-8').read().splitlines()
  assert len(lines) <= 150, len(lines)
  first_screen = '\n'.join(lines[:40])
  assert 'pip install -e . && python -m miml_jax.experiments.table1' in first_screen
  assert 'bash .ci/run' in first_screen


def _commands_in_the_package() -> set[str]:
  """Every module that runs as a command: `cli.run(...)` under `if __name__ == '__main__'`."""
  found = set()
  package = os.path.join(conftest.REPO, 'miml_jax')
  for folder, _, names in os.walk(package):
    for name in names:
      if not name.endswith('.py'):
        continue
      path = os.path.join(folder, name)
      tree = ast.parse(open(path, encoding='utf-8').read())
      for node in tree.body:
        if (isinstance(node, ast.If) and 'cli.run' in ast.unparse(node)
            and "__name__ == '__main__'" in ast.unparse(node.test)):
          module = os.path.relpath(path, conftest.REPO)[:-len('.py')].replace(os.sep, '.')
          found.add(module)
  return found


def test_every_command_is_in_the_reference():
  commands = _commands_in_the_package()
  assert 'miml_jax.tag' in commands and 'miml_jax.features.__main__' in commands
  assert commands == set(flag_reference.COMMANDS)
  assert set(scripts.COMMANDS.values()) <= set(flag_reference.COMMANDS)


def test_a_flag_is_described_by_its_type_default_help_and_whether_required():
  values = flags.FlagValues()
  flags.DEFINE_enum('augment', 'none', ['none', 'flip'], 'flip: <image> and its mirror.',
                    flag_values=values)
  flags.DEFINE_integer('splits', 30, 'Random splits.', lower_bound=1, flag_values=values)
  flags.DEFINE_string('output', None, 'The file.', flag_values=values)
  flags.mark_flag_as_required('output', flag_values=values)
  flags.DEFINE_list('sizes', ['224', '320'], 'Sizes.', flag_values=values)
  record = flag_reference._record    # pylint: disable=protected-access
  augment = record(values['augment'])
  assert augment['kind'] == 'one of: none, flip' and augment['default'] == 'none'
  assert augment['help'] == 'flip: <image> and its mirror.'   # absl's <none|flip>: prefix gone
  assert record(values['splits'])['kind'] == 'int, ≥ 1'
  assert record(values['output'])['required'] and not record(values['splits'])['required']
  assert record(values['sizes'])['default'] == '224,320'


def _flag(name, default='', help_text='', aliases=()):
  return {'name': name, 'aliases': list(aliases), 'kind': 'string', 'default': default,
          'required': False, 'help': help_text}


def test_the_reference_lists_a_flag_shared_alike_once_and_a_differing_one_per_command():
  described = [
      {'module': 'miml_jax.one', 'doc': 'One thing.\n\n  python -m miml_jax.one --a=1\n',
       'flags': [_flag('a', 'x', 'Same.', aliases=['old_a']), _flag('b', 'flip', 'Views.'),
                 _flag('c', '', 'Pipes | and <tags>, `<kept in code>`.')]},
      {'module': 'miml_jax.two.__main__', 'doc': 'Two things.',
       'flags': [_flag('a', 'x', 'Same.', aliases=['old_a']), _flag('b', 'none', 'Views.')]},
  ]
  text = flag_reference.render(described, {'miml-two': 'miml_jax.two.__main__'})
  assert text.count('`--a` (also `--old_a`)') == 1
  assert text.index('`--a`') < text.index('## one\n\n`python -m miml_jax.one`: One thing.')
  assert text.count('| `--b` |') == 2 and '`flip`' in text and '`none`' in text
  assert 'Pipes \\| and &lt;tags&gt;, `<kept in code>`.' in text
  assert '## two\n\n`python -m miml_jax.two`: Two things. Installed as `miml-two`.' in text
  assert '```\npython -m miml_jax.one --a=1\n```' in text
  assert 'Shared flags it takes: `--a`.' in text


@pytest.mark.slow
def test_the_committed_cli_reference_is_current():
  """A flag added, renamed or changed without `python -m miml_jax.plumbing.flag_reference`
  fails here."""
  expected = flag_reference.render(flag_reference.collect(), scripts.COMMANDS)
  with open(os.path.join(conftest.REPO, flag_reference.REFERENCE), encoding='utf-8') as f:
    committed = f.read()
  diff = ''.join(difflib.unified_diff(committed.splitlines(True), expected.splitlines(True),
                                      'docs/cli.md (committed)', 'from the flags', n=1))
  assert committed == expected, ('docs/cli.md is stale: run python -m '
                                 f'miml_jax.plumbing.flag_reference\n{diff[:4000]}')
