"""Changing a user's photo or sidecar: whole or not at all, through links, keeping what the file is.

`replace(path, data, read)` puts `data` in place of the file at `path`:
- through symbolic links: the file the link names is changed, the link stays a link;
- never for a read-only file (the user's protection, which a rename would not respect), nor for
  a file with several hard links (replacing it would leave the other names with the old
  contents, a silent split): refused, the file left as it was;
- never over a file changed since it was read (`read`, its stat then): another program's edit is
  not overwritten;
- through a temporary file beside it, renamed over it, so a crash, kill -9 or full disk leaves the
  old file or the new one, never a mix; the new file keeps the mode, owner (where permitted) and
  extended attributes (macOS Finder tags, ACLs) of the old one.
Temporaries are named by `miml_jax.plumbing.atomic.temporary_name`: hidden, ending in `.tmp`, never
taken for a photo, and removed by the next run over the folder (`atomic.remove_stale_temporaries`).
"""

import contextlib
import dataclasses
import os
import stat as stat_lib

from miml_jax.plumbing import atomic
from miml_jax.plumbing.errors import UserError


@dataclasses.dataclass(frozen=True)
class Read:
  """A file's bytes and its identity when read (None for a file that did not exist)."""
  data: bytes
  stat: os.stat_result | None


def read(path: str, *, missing_ok: bool = False) -> Read:
  """The bytes of the file at `path` (through links); `UserError` naming it if unreadable."""
  try:
    with open(path, 'rb') as f:
      st = os.fstat(f.fileno())
      if not stat_lib.S_ISREG(st.st_mode):
        raise UserError(f'{path}: not a regular file')
      return Read(f.read(), st)
  except FileNotFoundError:
    if missing_ok and not os.path.islink(path):
      return Read(b'', None)
    raise UserError(f'{path}: no such file' + (' (a symbolic link to nowhere)'
                                               if os.path.islink(path) else '')) from None
  except OSError as e:
    raise UserError(f'{path}: cannot read it: {e.strerror or e}') from None


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
  return ((a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) ==
          (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns))


def _copy_extended_attributes(source: str, fd: int) -> None:
  if not hasattr(os, 'listxattr'):
    return
  try:
    names = os.listxattr(source)
  except OSError:
    return
  for name in names:
    # Some need privileges (security.*, trusted.*) or are the file system's own: kept where
    # the system lets us, as a copy with `cp -a` would.
    with contextlib.suppress(OSError):
      os.setxattr(fd, name, os.getxattr(source, name))


def replace(path: str, data: bytes, before: Read) -> None:
  """Writes `data` as the new contents of the file at `path` (module docstring). before: what
  `read(path)` gave; a file that did not exist (before.stat None) is created."""
  target = os.path.realpath(path)
  if before.stat is not None and not before.stat.st_mode & stat_lib.S_IWUSR:
    # A rename would replace it all the same: the user's protection is kept instead.
    raise UserError(f'{path}: is read-only; left as it was (make it writable to tag it)')
  if before.stat is not None and before.stat.st_nlink > 1:
    raise UserError(f'{path}: has {before.stat.st_nlink} hard links, and writing a new file '
                    'would split them; left as it was')
  folder, name = os.path.split(target)
  tmp = os.path.join(folder, atomic.temporary_name(name))
  try:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
  except OSError as e:
    raise UserError(f'{path}: cannot write beside it in {folder}: {e.strerror or e}') from None
  try:
    try:
      view = memoryview(data)
      while view:
        view = view[os.write(fd, view):]
      if before.stat is not None:
        os.fchmod(fd, stat_lib.S_IMODE(before.stat.st_mode))
        if (before.stat.st_uid, before.stat.st_gid) != (os.getuid(), os.getgid()):
          with contextlib.suppress(OSError):
            os.fchown(fd, before.stat.st_uid, before.stat.st_gid)
        _copy_extended_attributes(target, fd)
      else:
        os.fchmod(fd, 0o666 & ~atomic.umask())
      os.fsync(fd)
    finally:
      os.close(fd)
    try:
      now = os.stat(target)
    except FileNotFoundError:
      now = None
    if (now is None) != (before.stat is None) or (now is not None and
                                                   not _same_file(now, before.stat)):
      raise UserError(f'{path}: changed by another program while its keywords were written; '
                      'left as that program made it (rerun to tag it)')
    os.replace(tmp, target)
  except OSError as e:
    raise UserError(f'{path}: cannot write: {e.strerror or e}; left as it was') from None
  finally:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
  atomic.sync_folder(folder)


def remove_stale_temporaries(paths) -> int:
  """Removes the temporaries that writes killed with -9 (or by a power cut, a full disk) left in
  the folders of `paths` and of the files their links name; returns how many."""
  folders = set()
  for path in paths:
    folders.add(os.path.dirname(os.path.abspath(path)))
    folders.add(os.path.dirname(os.path.realpath(path)))
  return sum(atomic.remove_stale_temporaries(folder) for folder in sorted(folders))
