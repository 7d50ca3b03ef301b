"""Fetching the datasets: official formats, resumable checksummed downloads, from 127.0.0.1."""

import contextlib
import hashlib
import http.server
import os
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

from miml_jax import datasets
from miml_jax.datasets import download
from miml_jax.datasets import fetch
from miml_jax.datasets import official
from miml_jax.plumbing.errors import UserError
from tests import archives
from tests import conftest


@contextlib.contextmanager
def serve(files: dict[str, bytes], *, ranges=True, drip=None):
  """An HTTP server on 127.0.0.1 serving `files`; yields (base URL, list of Range headers).

  drip: seconds between bytes, for a server that sends one byte at a time (for at most 30 s).
  """
  seen = []

  class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # pylint: disable=invalid-name
      data = files.get(self.path.lstrip('/'))
      if data is None:
        self.send_error(404)
        return
      start, status = 0, 200
      header = self.headers.get('Range')
      seen.append(header)
      if header and ranges:
        start, status = int(header.split('=')[1].split('-')[0]), 206
      self.send_response(status)
      self.send_header('Content-Length', str(len(data) - start))
      self.end_headers()
      if drip is None:
        self.wfile.write(data[start:])
        return
      deadline = time.monotonic() + 30
      for i in range(start, len(data)):
        if time.monotonic() > deadline:
          break
        try:
          self.wfile.write(data[i:i + 1])
          self.wfile.flush()
        except OSError:   # the client gave up
          return
        time.sleep(drip)

    def log_message(self, *args):
      pass

  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f'http://127.0.0.1:{server.server_address[1]}', seen
  finally:
    server.shutdown()


def sha256(data: bytes):
  return ('sha256', hashlib.sha256(data).hexdigest())


def test_fetch_scene_from_a_local_server(tmp_path):
  data, expected = archives.scene_archive(np.random.default_rng(0), n=5)
  with serve({'miml-image-data.rar': data}) as (url, _):
    root = fetch.fetch('scene', str(tmp_path), url=f'{url}/miml-image-data.rar',
                       checksum=sha256(data), progress=False)
  loaded = datasets.load(root)
  assert loaded.image_names == tuple(f'{i}.jpg' for i in range(1, 6))
  assert loaded.label_names == official.SCENE_LABELS
  np.testing.assert_array_equal(loaded.labels, expected)
  # The archive is kept, with its digest; no unpacking leftovers.
  assert sorted(os.listdir(tmp_path)) == ['downloads', 'scene']
  assert os.path.exists(tmp_path / 'downloads' / 'miml-image-data.rar.sha256')
  # A second fetch finds it there and downloads nothing.
  assert fetch.fetch('scene', str(tmp_path), url='http://127.0.0.1:9/nothing') == root


def test_fetch_msrc_from_an_archive_file(tmp_path):
  classes = [[0, 6], [1], [3, 1, 22], []]
  data = archives.msrc_archive(np.random.default_rng(1), classes)
  path = tmp_path / 'msrc.zip'
  path.write_bytes(data)
  root = fetch.fetch('msrc_v2', str(tmp_path / 'home'), archive=str(path), checksum=None)
  loaded = datasets.load(root)
  assert loaded.label_names == official.MSRC_LABELS
  assert loaded.image_names == ('1_1_s.bmp', '1_2_s.bmp', '1_3_s.bmp', '1_4_s.bmp')
  expected = np.zeros((4, 23), np.uint8)
  for i, c in enumerate(classes):
    expected[i, c] = 1
  np.testing.assert_array_equal(loaded.labels, expected)


def test_cleaned_segmentations_give_the_benchmark_labels(datasets_dir):
  """The `_GT.mat` files of msrc_v2 reproduce its labels.csv."""
  data = datasets.load('msrc_v2', datasets_dir)
  for name, row in zip(data.image_names, data.labels):
    stem = os.path.splitext(name)[0]
    got = official.msrc_segmentation_labels(
        os.path.join(data.root, 'segmentations', f'{stem}_GT.mat'))
    np.testing.assert_array_equal(got, row, err_msg=name)


def test_interrupted_download_resumes(tmp_path):
  data = os.urandom(300_000)
  part = tmp_path / 'file.bin.part'
  part.write_bytes(data[:123_456])
  with serve({'file.bin': data}) as (url, seen):
    download.download(f'{url}/file.bin', str(tmp_path / 'file.bin'), sha256(data),
                      progress=False)
  assert seen == ['bytes=123456-']
  assert (tmp_path / 'file.bin').read_bytes() == data and not part.exists()


def test_server_without_ranges_starts_over(tmp_path):
  data = os.urandom(50_000)
  (tmp_path / 'f.part').write_bytes(b'junk' * 100)
  with serve({'f': data}, ranges=False) as (url, _):
    download.download(f'{url}/f', str(tmp_path / 'f'), sha256(data), progress=False)
  assert (tmp_path / 'f').read_bytes() == data


def test_bad_checksum_keeps_nothing(tmp_path):
  data, _ = archives.scene_archive(np.random.default_rng(2), n=2)
  with serve({'a.rar': data}) as (url, _):
    with pytest.raises(UserError, match='sha256 is .* expected'):
      fetch.fetch('scene', str(tmp_path), url=f'{url}/a.rar', checksum=('sha256', '0' * 64),
                  progress=False)
    with pytest.raises(UserError, match='HTTP 404'):
      fetch.fetch('scene', str(tmp_path), url=f'{url}/missing.rar', progress=False)
  assert os.listdir(tmp_path / 'downloads') == []
  assert not (tmp_path / 'scene').exists()


def test_archives_cannot_write_outside(tmp_path):
  evil = tmp_path / 'evil.zip'
  with zipfile.ZipFile(evil, 'w') as z:
    z.writestr('../../outside.txt', 'x')
  with pytest.raises(UserError, match='outside'):
    official.unpack(str(evil), str(tmp_path / 'out'))
  evil_rar = tmp_path / 'evil.rar'
  evil_rar.write_bytes(archives.rar({'../outside.txt': b'x'}))
  with pytest.raises(UserError, match='outside'):
    official.unpack(str(evil_rar), str(tmp_path / 'out'))
  assert not (tmp_path / 'outside.txt').exists()


def test_broken_archives_are_named(tmp_path):
  junk = tmp_path / 'junk.rar'
  junk.write_bytes(b'not an archive')
  with pytest.raises(UserError, match='junk.rar: neither a ZIP nor a RAR'):
    fetch.fetch('scene', str(tmp_path / 'home'), archive=str(junk), checksum=None)
  no_mat = tmp_path / 'nomat.rar'
  no_mat.write_bytes(archives.rar({'original.rar': archives.rar({'1.jpg': b'x'})}))
  with pytest.raises(UserError, match='miml data.mat'):
    fetch.fetch('scene', str(tmp_path / 'home'), archive=str(no_mat), checksum=None)
  assert not (tmp_path / 'home' / 'scene').exists()


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'miml_jax.datasets', 'fetch', 'imagenet',
                           f'--data_dir={tmp_path}'], capture_output=True, text=True,
                          cwd=conftest.REPO)
  assert result.returncode == 1
  assert result.stderr.strip() == "error: unknown dataset 'imagenet'; fetch knows scene, msrc_v2"


def test_a_dripping_server_is_given_up_with_the_bytes_kept(tmp_path):
  """A server that sends a byte at a time never trips a per-read timeout: the low-speed window
  ends it, the bytes received stay in the .part file and the rerun resumes from them."""
  data = os.urandom(20_000)
  target = tmp_path / 'slow.bin'
  with serve({'slow.bin': data}, drip=0.05) as (url, _):
    start = time.monotonic()
    with pytest.raises(UserError, match=r'slow.bin: download too slow .* bytes kept in .*'
                                        r'slow.bin.part, run again to resume'):
      download.download(f'{url}/slow.bin', str(target), sha256(data), progress=False,
                        low_speed=(1000, 1.5))
    assert time.monotonic() - start < 15
  kept = (tmp_path / 'slow.bin.part').read_bytes()
  assert 0 < len(kept) < len(data) and kept == data[:len(kept)]
  with serve({'slow.bin': data}) as (url, seen):
    download.download(f'{url}/slow.bin', str(target), sha256(data), progress=False)
  assert seen == [f'bytes={len(kept)}-'] and target.read_bytes() == data


def test_a_killed_fetch_leaves_nothing_for_good(tmp_path):
  """What a fetch killed with -9 left aside (an unpacked archive, a half-built dataset folder) is
  removed by the next fetch of that dataset, and only that."""
  data, _ = archives.scene_archive(np.random.default_rng(0), n=3)
  home = tmp_path / 'home'
  # Named as tempfile.mkdtemp names them (8 random characters).
  for stale in ('.scene-unpack.abc123_x', '.scene.def456gh'):
    os.makedirs(home / stale / 'images')
    (home / stale / 'images' / 'x.jpg').write_bytes(b'x' * 1000)
  os.makedirs(home / '.msrc_v2-unpack.keep')
  os.makedirs(home / '.scene.old')   # the user's own: kept
  path = tmp_path / 'scene.rar'
  path.write_bytes(data)
  fetch.fetch('scene', str(home), archive=str(path), checksum=None)
  assert sorted(os.listdir(home)) == ['.msrc_v2-unpack.keep', '.scene.old', 'scene']
