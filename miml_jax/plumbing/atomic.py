"""Atomic file writes: a file is either absent or complete, never half-written."""

import contextlib
import json
import math
import os
import tempfile

from miml_jax.plumbing.errors import UserError


@contextlib.contextmanager
def atomic_path(path, suffix=''):
  """Yields a temporary path beside `path`; on success renames it onto `path`, else deletes it.

  The temporary file lives in the same folder so the final `os.replace` is atomic, and it gets
  the permissions a normally created file would (mkstemp's are owner-only). An `OSError` while
  writing (a full disk, a folder that cannot be written) becomes a `UserError` naming `path`;
  whatever stood at `path` before is left as it was.
  """
  path = os.path.abspath(os.fspath(path))
  directory = os.path.dirname(path)
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix=f'.tmp{suffix}',
                               dir=directory)
    os.close(fd)
  except OSError as e:
    raise UserError(f'{path}: cannot write: {e.strerror or e}') from None
  try:
    yield tmp
    # Writers may replace the file rather than reuse it, so set the mode after they are done.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except OSError as e:
    raise UserError(f'{path}: cannot write: {e.strerror or e}') from None
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def remove_stale_temporaries(path) -> None:
  """Deletes the temporary files that `atomic_path(path)` writers killed with -9 (or by a power
  cut) left beside `path`. Call it only while holding `exclusive` for `path`: then no live writer
  owns one of them."""
  folder, base = os.path.split(os.path.abspath(os.fspath(path)))
  try:
    names = os.listdir(folder)
  except OSError:
    return
  for name in names:
    if name.startswith(f'.{base}.') and '.tmp' in name:
      with contextlib.suppress(OSError):
        os.unlink(os.path.join(folder, name))


@contextlib.contextmanager
def exclusive(path):
  """Holds an exclusive advisory lock on the file `path`, created for it and removed on release:
  one writer at a time (a second process waits), and no lock file left behind."""
  try:
    import fcntl   # pylint: disable=g-import-not-at-top
  except ImportError:   # not POSIX: no lock, concurrent writers are on their own
    yield
    return
  while True:
    fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT, 0o666)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
      held = os.fstat(fd)
      try:
        now = os.stat(path)
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
