"""Output paths, checked before any long work: never onto an input, never over a stranger's file.

A command collects the files it reads in `Inputs` and checks each file it will write with
`check_file` (or a folder of results with `check_folder`) before it starts. Refused, each with one
`UserError` naming the path:
- an output that is, or resolves to (a symbolic link, a hard link, `..`), one of the inputs;
- an existing file that miml_jax did not make as that kind of output (a feature file, weights, a
  tagger, a result), unless `overwrite`: a user's own file is never replaced by accident;
- a folder where a file should be, a file where a folder should be, a folder that cannot be
  created or written in.
Every file a command writes goes through the check, not only the one it is given: the
companions of a result (`R.md` beside `R.json`: `check_files`), the record beside a prediction
file, and the folder of finished parts beside a long job's output (`check_parts_folder`: only a
folder holding nothing but parts of ours is ever used, and `remove_parts_folder` removes those
parts alone). Lock files are `miml_jax.plumbing.atomic.exclusive`'s, which refuses a file that is
not a lock of ours.
The files themselves are then written with `miml_jax.plumbing.atomic`: complete, or not there at all.

What miml_jax makes carries its kind: HDF5 attributes and safetensors metadata (`format`), and a
`format` key in JSON results; the other files of a result set (`table1_scene.md`, `.npz`, ...)
belong to the JSON of the same stem.
"""

import json
import os
import re
import struct
import tempfile

from miml_jax.plumbing import atomic
from miml_jax.plumbing.errors import UserError

HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'
# A safetensors header larger than this is not one of ours (ours are a few kilobytes).
_MAX_SAFETENSORS_HEADER = 1 << 24


class Inputs:
  """The files a command reads, by real path and by file identity (device, inode)."""

  def __init__(self, paths=()):
    self._by_path = {}
    self._by_id = {}
    for path in paths:
      self.add(path)

  def add(self, path) -> None:
    path = os.fspath(path)
    self._by_path.setdefault(os.path.realpath(path), path)
    try:
      st = os.stat(path)
    except OSError:
      return
    self._by_id.setdefault((st.st_dev, st.st_ino), path)

  def update(self, other: 'Inputs') -> None:
    for real, path in other._by_path.items():   # pylint: disable=protected-access
      self._by_path.setdefault(real, path)
    for key, path in other._by_id.items():   # pylint: disable=protected-access
      self._by_id.setdefault(key, path)

  def match(self, path) -> str | None:
    """The input that `path` is, or resolves to; None if it is none of them."""
    hit = self._by_path.get(os.path.realpath(path))
    if hit is not None:
      return hit
    try:
      st = os.stat(path)
    except OSError:
      return None
    return self._by_id.get((st.st_dev, st.st_ino))


def file_format(path) -> str | None:
  """The `format` a miml_jax file records (e.g. 'miml_jax.features/1'), or None for any other
  file (or one that cannot be read)."""
  try:
    with open(path, 'rb') as f:
      head = f.read(8)
      if head == HDF5_SIGNATURE:
        import h5py   # pylint: disable=g-import-not-at-top
        with h5py.File(path, 'r') as h5:
          value = h5.attrs.get('format')
        return value.decode() if isinstance(value, bytes) else value
      if len(head) == 8 and 2 <= struct.unpack('<Q', head)[0] <= _MAX_SAFETENSORS_HEADER:
        header = json.loads(f.read(struct.unpack('<Q', head)[0]))
        return header.get('__metadata__', {}).get('format')
      if path.endswith('.json'):
        f.seek(0)
        value = json.loads(f.read())
        return value.get('format') if isinstance(value, dict) else None
  except (OSError, ValueError, AttributeError, UnicodeDecodeError):
    return None
  return None


def made_as(path, kind: str) -> bool:
  """Whether the file at `path` was made by miml_jax as an output of `kind` (a format prefix such
  as 'miml_jax.features'); a result's .md/.npz/.csv/.png go with the JSON of the same stem."""
  fmt = file_format(path)
  if fmt is None and not path.endswith('.json'):
    fmt = file_format(os.path.splitext(path)[0] + '.json')
  return isinstance(fmt, str) and fmt.split('/')[0] == kind


def check_folder(folder, output=None) -> str:
  """Creates `folder` if needed and checks that files can be written in it; returns it.

  output: the file to be written there, named in messages instead of the folder.
  """
  folder = os.path.abspath(os.fspath(folder))
  name = folder if output is None else os.fspath(output)
  existing = folder
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    if existing == os.path.abspath(name):
      raise UserError(f'{name}: is a file, not a folder')
    raise UserError(f'{name}: {existing} is a file, not a folder')
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise UserError(f'{name}: cannot create the folder {folder} ({e.strerror or e})') from None
  try:
    fd, probe = tempfile.mkstemp(prefix='.miml_jax-write-check.', dir=folder)
    os.close(fd)
    os.unlink(probe)
  except OSError as e:
    raise UserError(f'{name}: cannot write in the folder {folder} ({e.strerror or e})') from None
  return folder


def check_file(path, inputs: Inputs | None = None, *, kind: str, overwrite: bool = False) -> str:
  """Checks that the output file `path` of `kind` may be written (module docstring); creates
  its folder. Returns `path`."""
  path = os.fspath(path)
  if not path:
    raise UserError('an output path is empty')
  hit = inputs.match(path) if inputs is not None else None
  if hit is not None:
    same = '' if os.path.abspath(hit) == os.path.abspath(path) else f' ({hit})'
    raise UserError(f'{path}: is an input of this command{same}; writing there would destroy '
                    f'it, choose another output')
  if os.path.isdir(path) or path.endswith(os.sep):
    raise UserError(f'{path}: is a folder; the output is a file, give its name')
  check_folder(os.path.dirname(os.path.abspath(path)), path)
  if os.path.lexists(path) and not overwrite and not made_as(path, kind):
    raise UserError(f'{path}: exists and is not a file miml_jax made as this kind of output '
                    f'({kind}); pass --overwrite to replace it, or choose another output')
  return path


def check_files(paths, inputs: Inputs | None = None, *, kind: str,
                overwrite: bool = False) -> list[str]:
  """`check_file` for each of the files one command writes together (a result and its
  companions); returns them."""
  return [check_file(path, inputs, kind=kind, overwrite=overwrite) for path in paths]


# What miml_jax writes in a folder of finished parts: a feature extraction's batches and the
# digest of its inputs, a recipe run's splits.
_PART = re.compile(r'^(part-[0-9]{7}\.safetensors|inputs_sha256|'
                   r'split-[0-9]{3}-[0-9a-f]+\.safetensors)$')


def check_parts_folder(path, output=None) -> str:
  """`UserError` unless `path` is absent or a folder holding only parts miml_jax writes there
  (a folder of the user's own is never written in nor removed); returns `path`."""
  path = os.fspath(path)
  name = path if output is None else f'{output} (its parts folder {path})'
  if not os.path.lexists(path):
    return path
  if os.path.islink(path) or not os.path.isdir(path):
    raise UserError(f'{name}: exists and is not a folder of finished parts that miml_jax made; '
                    'move it away, or choose another output')
  try:
    foreign = [n for n in os.listdir(path) if not (_PART.match(n) or atomic.is_temporary(n))]
  except OSError as e:
    raise UserError(f'{name}: cannot list it: {e.strerror or e}') from None
  if foreign:
    raise UserError(f'{name}: holds files miml_jax did not make ({foreign[0]}, ...); move it '
                    'away, or choose another output')
  return path


def remove_parts_folder(path) -> None:
  """Removes the parts miml_jax wrote in `path`, then the folder if nothing else is left."""
  try:
    names = os.listdir(path)
  except OSError:
    return
  for name in names:
    if _PART.match(name) or atomic.is_temporary(name):
      try:
        os.unlink(os.path.join(path, name))
      except OSError:
        pass
  try:
    os.rmdir(path)
  except OSError:
    pass
