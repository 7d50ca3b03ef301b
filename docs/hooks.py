"""mkdocs hooks: the site also carries the repository's recorded results (experiments/) and
CHANGELOG.md, so the pages can link to them as they do in the repository (`../experiments/...`),
and `mkdocs build --strict` fails on a broken link to them as on any other."""

import os
import re

from mkdocs.structure.files import File

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CARRIED = ('experiments', 'CHANGELOG.md')
# From a page at the top of docs/, `../experiments/x` in the repository is `experiments/x` in the
# site, where both sit under one root.
_OUT_OF_DOCS = re.compile(r'(\]\(|src=")\.\./(' + '|'.join(map(re.escape, _CARRIED)) + ')')


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
  if '/' in page.file.src_uri:     # a carried file: its links are the repository's as they stand
    return markdown
  return _OUT_OF_DOCS.sub(r'\1\2', markdown)
