"""Atomic file writes: a file is either absent or complete, never half-written.

Every temporary file miml_jax writes beside a file is named by `temporary_name`: hidden, marked
with the host and process that write it, ending in `.tmp` (never a photo's or a result's
extension, so no command takes one for an input), and `remove_stale_temporaries` removes those
whose writer is gone (killed with -9, or by a power cut).
"""

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import socket
import stat
import time

from miml_jax.plumbing.errors import UserError

_MARK = 'miml_jax'
# A file name is at most 255 bytes: a temporary keeps this much of the name it stands beside.
_NAME_BYTES = 120
# Temporaries of another host (a shared folder) are removed once this old: its writer is
# surely gone; on this host a writer's process id says so at once.
_FOREIGN_AGE_SECONDS = 24 * 3600
# Older releases named temporaries `.<name>.<8 random characters>.tmp[.<extension>]`.
_OLDER = re.compile(r'^\..+\.[0-9a-z_]{8}\.tmp(\.[0-9A-Za-z]+)?$')
_OLDER_AGE_SECONDS = 3600


def _host() -> str:
  return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


_PATTERN = re.compile(rf'^\..*\.{_MARK}-([0-9a-f]{{6}})-([0-9]+)-[0-9a-z]+\.tmp$', re.S)


def temporary_name(name: str) -> str:
  """The name of a temporary file to stand beside (then replace) the file `name`."""
  kept = os.fsdecode(os.fsencode(name)[:_NAME_BYTES])
  return f'.{kept}.{_MARK}-{_host()}-{os.getpid()}-{secrets.token_hex(4)}.tmp'


def is_temporary(name: str) -> bool:
  """Whether the file `name` is a temporary file of miml_jax's (of this release or an older)."""
  return bool(_PATTERN.match(name) or _OLDER.match(name))


def _writer_gone(name: str, mtime: float) -> bool:
  match = _PATTERN.match(name)
  age = time.time() - mtime
  if match is None:
    return age > _OLDER_AGE_SECONDS
  host, pid = match.group(1), int(match.group(2))
  if host != _host():
    return age > _FOREIGN_AGE_SECONDS
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except OSError:   # a process of another user's: alive
    return False
  return False


def remove_stale_temporaries(folder, base: str | None = None, *, locked: bool = False) -> int:
  """Deletes the temporary files in `folder` that writers killed with -9 (or by a power cut)
  left (only those beside `base`, if given); returns how many. locked: the caller holds
  `exclusive` for `base`, so no live writer owns one of them."""
  try:
    names = os.listdir(folder)
  except OSError:
    return 0
  removed = 0
  for name in names:
    if not is_temporary(name) or (base is not None and not name.startswith(f'.{base}.')):
      continue
    path = os.path.join(folder, name)
    try:
      if locked or _writer_gone(name, os.lstat(path).st_mtime):
        os.unlink(path)
        removed += 1
    except OSError:
      continue
  return removed


def umask() -> int:
  """The process's umask (reading it means setting it: set back at once)."""
  mask = os.umask(0)
  os.umask(mask)
  return mask


def sync_folder(folder) -> None:
  """Forces a rename in `folder` to disk (where the system allows opening a folder)."""
  with contextlib.suppress(OSError):
    fd = os.open(folder, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path beside `path`; on success renames it onto `path`, else deletes it.

  The temporary file lives in the same folder so the final `os.replace` is atomic, and it gets
  the permissions a normally created file would. An `OSError` while writing (a full disk, a
  folder that cannot be written) becomes a `UserError` naming `path`; whatever stood at `path`
  before is left as it was.
  """
  path = os.path.abspath(os.fspath(path))
  directory, name = os.path.split(path)
  tmp = os.path.join(directory, temporary_name(name))
  try:
    os.makedirs(directory, exist_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
  except OSError as e:
    raise UserError(f'{path}: cannot write: {e.strerror or e}') from None
  try:
    yield tmp
    # Writers may replace the file rather than reuse it, so set the mode after they are done.
    os.chmod(tmp, 0o666 & ~umask())
    os.replace(tmp, path)
  except OSError as e:
    raise UserError(f'{path}: cannot write: {e.strerror or e}') from None
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


# What a lock file of ours holds: a file at a lock's path holding anything else is the user's.
_LOCK = b'miml_jax lock\n'


@contextlib.contextmanager
def exclusive(path):
  """Holds an exclusive advisory lock on the file `path`, created for it and removed on release:
  one writer at a time (a second process waits), and no lock file left behind. A file at `path`
  that is not a lock of ours (`UserError`) is left as it is: it is never opened for writing,
  followed as a link, or removed."""
  try:
    import fcntl   # pylint: disable=g-import-not-at-top
  except ImportError:   # not POSIX: no lock, concurrent writers are on their own
    yield
    return
  path = os.fspath(path)
  while True:
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0), 0o666)
    except OSError as e:
      raise UserError(f'{path}: cannot make a lock file here ({e.strerror or e}); if it is a '
                      'file of yours, move it away') from None
    try:
      st = os.fstat(fd)
      contents = os.pread(fd, len(_LOCK) + 1, 0) if stat.S_ISREG(st.st_mode) else None
      if contents not in (b'', _LOCK):
        raise UserError(f'{path}: exists and is not a lock file of miml_jax\'s; it is left as '
                        'it is: move it away and run again')
      fcntl.flock(fd, fcntl.LOCK_EX)
      held = os.fstat(fd)
      try:
        now = os.stat(path, follow_symlinks=False)
      except FileNotFoundError:
        now = None
    except BaseException:
      os.close(fd)
      raise
    # The holder before us removed the file we waited on: lock the one at `path` now.
    if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
      break
    os.close(fd)
  try:
    if held.st_size == 0:
      with contextlib.suppress(OSError):
        os.pwrite(fd, _LOCK, 0)
    yield
  finally:
    with contextlib.suppress(OSError):
      os.unlink(path)
    os.close(fd)


def write_text(path, text: str) -> str:
  """Writes `text` to `path` atomically (UTF-8); returns `path`."""
  with atomic_path(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
  return os.fspath(path)


def finite(value):
  """`value` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite(v) for v in value]
  return value


def write_json(path, value, indent: int = 2) -> str:
  """Writes `value` as strict JSON (NaN and infinities become null) to `path` atomically."""
  return write_text(path, json.dumps(finite(value), indent=indent, allow_nan=False) + '\n')
