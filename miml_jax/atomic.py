"""Atomic file writes: a file is either absent or complete, never half-written."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path, suffix=''):
  """Yields a temporary path beside `path`; on success renames it onto `path`, else deletes it.

  The temporary file lives in the same folder so the final `os.replace` is atomic, and it gets
  the permissions a normally created file would (mkstemp's are owner-only).
  """
  path = os.path.abspath(os.fspath(path))
  directory = os.path.dirname(path)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix=f'.tmp{suffix}',
                             dir=directory)
  os.close(fd)
  try:
    yield tmp
    # Writers may replace the file rather than reuse it, so set the mode after they are done.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
