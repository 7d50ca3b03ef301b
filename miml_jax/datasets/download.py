"""Downloading a file: resumable, checksummed, and never left half-written under its name.

Bytes go to `<path>.part` (resumed with an HTTP Range request when a previous run was cut off)
and the file is renamed to `<path>` only once its checksum matches. A transfer that stays
slower than `LOW_SPEED` for its whole window (a stalled or dripping server, which a per-read
timeout never catches) is given up with the bytes received kept, as curl's
`--speed-limit/--speed-time` do.
"""

import collections
import hashlib
import os
import time
import urllib.error
import urllib.request

from absl import logging
import tqdm

from miml_jax.plumbing.errors import UserError

_CHUNK = 1 << 20
# (bytes per second, seconds): give up when fewer than 1 kB/s arrived over the last minute.
LOW_SPEED = (1024, 60.0)


def file_digest(path: str, algorithm: str) -> str:
  digest = hashlib.new(algorithm)
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(_CHUNK), b''):
      digest.update(block)
  return digest.hexdigest()


def verify(path: str, checksum: tuple[str, str] | None) -> None:
  if checksum is None:
    return
  algorithm, expected = checksum
  got = file_digest(path, algorithm)
  if got != expected.lower():
    raise UserError(f'{path}: {algorithm} is {got}, expected {expected}: the download is corrupt '
                    f'or the file changed on the server; it was removed, run again to retry')


class _SpeedCheck:
  """Fails once fewer than `rate` bytes per second arrived over the last `window` seconds."""

  def __init__(self, rate: float, window: float):
    self.rate, self.window = rate, window
    self.start = time.monotonic()
    self.recent = collections.deque()   # (time, bytes) of the reads within the window

  def too_slow(self, received: int) -> bool:
    now = time.monotonic()
    self.recent.append((now, received))
    while self.recent and self.recent[0][0] < now - self.window:
      self.recent.popleft()
    got = sum(n for _, n in self.recent)
    return now - self.start >= self.window and got < self.rate * self.window


def download(url: str, path: str, checksum: tuple[str, str] | None = None, *,
             timeout: float = 60.0, progress: bool = True, low_speed=LOW_SPEED,
             hint: str = 'download the file yourself and pass it with --archive') -> str:
  """Downloads `url` to `path` unless it is already there; returns `path`.

  checksum: optional (algorithm, hex digest), e.g. ('sha256', '...'), checked before the file
  gets its name. A partial `<path>.part` from an interrupted run is resumed. timeout: for the
  connection and each read. low_speed: (bytes per second, seconds), see the module docstring.
  hint: what to do instead when the network fails, for the message.
  """
  rate, window = low_speed
  timeout = min(timeout, window)
  if os.path.exists(path):
    return path
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  part = path + '.part'
  offset = os.path.getsize(part) if os.path.exists(part) else 0
  headers = {'User-Agent': 'miml_jax', **({'Range': f'bytes={offset}-'} if offset else {})}
  try:
    response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout)
  except urllib.error.HTTPError as e:
    if e.code == 416 and offset:   # the part already holds the whole file
      response = None
    else:
      raise UserError(f'{url}: download failed: HTTP {e.code} {e.reason}') from None
  except (urllib.error.URLError, OSError) as e:
    raise UserError(f'{url}: download failed: {getattr(e, "reason", e)}; check the network, '
                    f'or {hint}') from None
  if response is not None:
    with response:
      if offset and response.status != 206:
        logging.info('%s: the server does not resume downloads; starting over', url)
        offset = 0
      length = response.headers.get('Content-Length')
      total = offset + int(length) if length else None
      with open(part, 'ab' if offset else 'wb') as f, tqdm.tqdm(
          total=total, initial=offset, unit='B', unit_scale=True, disable=not progress,
          desc=os.path.basename(path)) as bar:
        speed = _SpeedCheck(rate, window)
        try:
          # read1: whatever one read of the socket brings, so that a dripping server is seen.
          for block in iter(lambda: response.read1(_CHUNK), b''):
            f.write(block)
            bar.update(len(block))
            if speed.too_slow(len(block)):
              f.flush()
              raise UserError(f'{url}: download too slow (under {rate:g} bytes/s for '
                              f'{window:g} s); {os.path.getsize(part):,} bytes kept in {part}, '
                              f'run again to resume')
        except OSError as e:
          raise UserError(f'{url}: download interrupted ({e}); {f.tell():,} bytes kept, run '
                          f'again to resume from {part}') from None
      if total is not None and os.path.getsize(part) != total:
        raise UserError(f'{url}: download cut short at {os.path.getsize(part)} of {total} '
                        f'bytes; run again to resume from {part}')
  try:
    verify(part, checksum)
  except UserError:
    os.remove(part)
    raise
  os.replace(part, path)
  return path
