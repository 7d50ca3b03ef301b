"""`fetch`: the benchmark datasets from their official sources into a data folder, in the style
of scikit-learn's `fetch_*` (a data home, downloads kept, nothing done twice).

    <data_home>/downloads/<archive>   the official archive, kept (resumable, checksummed)
    <data_home>/<name>/               the dataset in the plain layout, created in one rename

The data home is `data_dir`, else `$MIML_JAX_DATA`, else `~/miml_jax_data` (`miml_jax.plumbing.home`):
where `datasets.load` looks for datasets by name.
"""

import dataclasses
import os
import re
import shutil
import tempfile
from typing import Callable

from absl import logging

from miml_jax.plumbing import atomic
from miml_jax.plumbing import home as home_lib
from miml_jax.datasets import download as download_lib
from miml_jax.datasets import official
from miml_jax.plumbing.errors import UserError


@dataclasses.dataclass(frozen=True)
class Source:
  url: str
  filename: str
  # (algorithm, hex digest) when published; without one, the digest of the first download is
  # kept beside the archive and later runs check against it.
  checksum: tuple[str, str] | None
  convert: Callable[[str, str], str]


SOURCES = {
    'scene': Source('http://www.lamda.nju.edu.cn/files/miml-image-data.rar',
                    'miml-image-data.rar', None, official.convert_scene),
    'msrc_v2': Source('http://download.microsoft.com/download/3/3/9/'
                      '339D8A24-47D7-412F-A1E8-1A415BC48A15/msrc_objcategimagedatabase_v2.zip',
                      'msrc_objcategimagedatabase_v2.zip',
                      ('md5', '8fcd292c7f1e69f91a2ef513746bd52c'), official.convert_msrc),
}


def _known_digest(path: str) -> tuple[str, str] | None:
  record = path + '.sha256'
  if os.path.exists(record):
    with open(record) as f:
      return ('sha256', f.read().split()[0])
  return None


def fetch(name: str, data_dir: str | None = None, *, url: str | None = None,
          archive: str | None = None, checksum: tuple[str, str] | None | str = 'default',
          progress: bool = True) -> str:
  """Downloads (or takes `archive`), unpacks and converts dataset `name`; returns its folder.

  url: another address for the official archive (a mirror). checksum: 'default' (the published
  one), None (no check) or (algorithm, digest).
  """
  if name not in SOURCES:
    raise UserError(f'unknown dataset {name!r}; fetch knows {", ".join(SOURCES)}')
  home = home_lib.data_home(data_dir)
  os.makedirs(home, exist_ok=True)
  # One fetch of a dataset at a time; holding the lock, what a killed one left aside is ours.
  with atomic.exclusive(os.path.join(home, f'.{name}-fetch.lock')):
    _remove_stale_work(home, name)
    return _fetch_locked(name, home, url=url, archive=archive, checksum=checksum,
                         progress=progress)


def _remove_stale_work(home: str, name: str) -> None:
  """The folders that a fetch of `name` killed with -9 left in `home` (unpacked archive, the
  dataset being built)."""
  # Exactly the names tempfile.mkdtemp gives them (8 random characters after the prefix): a
  # hidden folder of the user's (`.scene.old`) is never taken for one.
  ours = re.compile(rf'^\.{re.escape(name)}(-unpack)?\.[a-z0-9_]{{8}}$')
  for entry in os.listdir(home):
    if ours.match(entry) and os.path.isdir(os.path.join(home, entry)):
      logging.info('%s: removing what an interrupted fetch left', os.path.join(home, entry))
      shutil.rmtree(os.path.join(home, entry), ignore_errors=True)


def _fetch_locked(name, home, *, url, archive, checksum, progress) -> str:
  source = SOURCES[name]
  root = os.path.join(home, name)
  if os.path.isfile(os.path.join(root, 'labels.csv')):
    logging.info('%s: already there', root)
    return root
  if os.path.exists(root):
    raise UserError(f'{root}: exists but holds no labels.csv; move it away and fetch again')
  if checksum == 'default':
    checksum = source.checksum
  if archive is None:
    archive = os.path.join(home, 'downloads', source.filename)
    if checksum is None:
      checksum = _known_digest(archive)
    download_lib.download(url or source.url, archive, checksum, progress=progress)
  elif not os.path.isfile(archive):
    raise UserError(f'{archive}: no such file')
  else:
    download_lib.verify(archive, checksum)
  if not os.path.exists(archive + '.sha256'):
    digest = download_lib.file_digest(archive, 'sha256')
    logging.info('%s: sha256 %s', archive, digest)
    if os.path.dirname(os.path.abspath(archive)) == os.path.join(os.path.abspath(home),
                                                                  'downloads'):
      with open(archive + '.sha256', 'w') as f:
        f.write(f'{digest}  {os.path.basename(archive)}\n')
  os.makedirs(home, exist_ok=True)
  work = tempfile.mkdtemp(prefix=f'.{name}-unpack.', dir=home)
  try:
    logging.info('unpacking %s', archive)
    official.unpack(archive, work)
    logging.info('converting to %s', root)
    return source.convert(work, root)
  finally:
    shutil.rmtree(work, ignore_errors=True)
