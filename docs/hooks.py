"""mkdocs hooks: the site also carries the repository's recorded results (experiments/) and
CHANGELOG.md, so that pages and results link to each other as they do in the repository, and
`mkdocs build --strict` fails on a broken link among them as on any other.

In the repository docs/x.md links to `../experiments/...`, and experiments/y.md to
`../docs/x.md`; in the site docs/ is the root and experiments/ sits inside it, so those links
lose their `docs/` level."""

import os
import posixpath
import re

from mkdocs.structure.files import File

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CARRIED = ('experiments', 'CHANGELOG.md')
_LINK = re.compile(r'(\]\(|src=")([^)"#\s]+)')
_ESCAPED_PIPE_IN_CODE = re.compile(r'`([^`\n]*\\\|[^`\n]*)`')


def on_files(files, config):
  for entry in _CARRIED:
    path = os.path.join(_ROOT, entry)
    found = [path] if os.path.isfile(path) else [
        os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names]
    for found_path in sorted(found):
      files.append(File(os.path.relpath(found_path, _ROOT), _ROOT, config['site_dir'],
                        config['use_directory_urls']))
  return files


def on_page_markdown(markdown, page, config, files):
  carried = page.file.src_uri.startswith(_CARRIED)
  here = posixpath.dirname(page.file.src_uri)
  # Where the page is in the repository: docs/ for the site's own pages.
  in_repo = here if carried else posixpath.join('docs', here)

  def site_link(match):
    target = match.group(2)
    if '://' in target or target.startswith(('/', 'mailto:')):
      return match.group(0)
    resolved = posixpath.normpath(posixpath.join(in_repo, target))
    site_path = resolved[len('docs/'):] if resolved.startswith('docs/') else resolved
    return match.group(1) + posixpath.relpath(site_path, here or '.')
  return _pipes_in_table_code(_LINK.sub(site_link, markdown))


def _pipes_in_table_code(markdown: str) -> str:
  """In a table row a | inside a code span is written `\\|` (else GitHub ends the cell there);
  Python-Markdown would show the backslash, so such a span becomes <code> with the bare |."""
  def code(match):
    text = match.group(1).replace('\\|', '|')
    text = text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
    return '<code>' + text.replace('|', '&#124;') + '</code>'
  return '\n'.join(_ESCAPED_PIPE_IN_CODE.sub(code, line) if line.startswith('|') else line
                   for line in markdown.split('\n'))
