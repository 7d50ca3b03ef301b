"""`tag predict --output`: rows written as batches finish; a run killed with -9 and rerun ends
with the file an uninterrupted run writes; other models' files are refused."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from miml_jax.tagging import predictions
from miml_jax import Tagger
from miml_jax import weights
from miml_jax.plumbing.errors import UserError
from miml_jax.features import extract
from tests import conftest

LABELS = ('sea', 'sky', 'tree')


def _tagger(weights_path, path, seed=0):
  """A tagger for 64-pixel conv features of these weights, with random weights of its own: what
  is checked here is the file, not the tags."""
  rng = np.random.default_rng(seed)
  dim = extract.layout(0).dim
  info = weights.load(weights_path)[1]
  tagger = Tagger(LABELS, rng.standard_normal((dim, 3)) * 1e-3, rng.standard_normal(3),
                  np.ones(3), np.full(3, 0.5), info.checksum, image_size=64, augment='none')
  tagger.save(path)
  return str(path)


def _predict(model, weights_path, output, *images, extra=()):
  return [sys.executable, '-m', 'miml_jax.tag', 'predict', f'--model={model}',
          f'--weights={weights_path}', f'--output={output}', '--batch_size=8', *extra,
          *map(str, images)]


def _lines(path):
  with open(path, 'rb') as f:
    return f.read().count(b'\n')


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_file(tmp_path, small_weights):
  folder = tmp_path / 'photos'
  conftest.write_images(folder, 200, np.random.default_rng(0))
  model = _tagger(small_weights, tmp_path / 'm.tagger')
  whole = tmp_path / 'whole.csv'
  done = subprocess.run(_predict(model, small_weights, whole, folder), capture_output=True,
                        text=True, cwd=conftest.REPO)
  assert done.returncode == 0, done.stderr[-2000:]
  assert _lines(whole) == 201
  killed = tmp_path / 'killed.csv'
  proc = subprocess.Popen(_predict(model, small_weights, killed, folder), cwd=conftest.REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    while proc.poll() is None and not (os.path.exists(killed) and _lines(killed) > 100):
      time.sleep(0.02)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  rows = _lines(killed) - 1
  assert 0 < rows < 200, f'the run was not stopped halfway ({rows} rows)'
  again = subprocess.run(_predict(model, small_weights, killed, folder), capture_output=True,
                         text=True, cwd=conftest.REPO)
  assert again.returncode == 0, again.stderr[-2000:]
  assert f'({rows} from an earlier run)' in again.stderr
  with open(whole, 'rb') as a, open(killed, 'rb') as b:
    assert a.read() == b.read()
  # Nothing left to do: a third run adds nothing.
  third = subprocess.run(_predict(model, small_weights, killed, folder), capture_output=True,
                         text=True, cwd=conftest.REPO)
  assert third.returncode == 0 and '(200 from an earlier run)' in third.stderr
  assert _lines(killed) == 201


@pytest.mark.slow
def test_sigterm_says_how_far_it_got(tmp_path, small_weights):
  folder = tmp_path / 'photos'
  conftest.write_images(folder, 120, np.random.default_rng(1))
  model = _tagger(small_weights, tmp_path / 'm.tagger')
  out = tmp_path / 'tags.jsonl'
  proc = subprocess.Popen(_predict(model, small_weights, out, folder), cwd=conftest.REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  while proc.poll() is None and not (os.path.exists(out) and _lines(out) >= 8):
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate()
  if proc.returncode == 0:
    pytest.skip('the run finished before the signal')
  assert proc.returncode == 143
  assert 'interrupted; rerun to resume:' in err and f'of 120 images done, in {out}' in err
  rows = [json.loads(line) for line in open(out, encoding='utf-8')]
  assert 8 <= len(rows) < 120 and len(rows) % 8 == 0   # whole batches only


def _file(tmp_path, name='tags.csv', identity=None, **kwargs):
  return predictions.PredictionFile(str(tmp_path / name), identity or {'model_sha256': 'a'},
                                    LABELS, **kwargs)


def test_resume_keeps_rows_and_cuts_a_partial_one(tmp_path):
  out = _file(tmp_path)
  probs = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
  out.append(['x/a.jpg', 'x/b,c.jpg'], probs, probs > 0.5)
  with open(out.path, 'a', encoding='utf-8') as f:
    f.write('x/d.jpg,0.1')   # a kill -9 in the middle of a row
  again = _file(tmp_path)
  assert again.done == ['x/a.jpg', 'x/b,c.jpg']
  assert again.todo(['x/a.jpg', 'x/d.jpg', 'x/b,c.jpg']) == ['x/d.jpg']
  with open(out.path, encoding='utf-8') as f:
    assert f.read() == 'image,sea,sky,tree\nx/a.jpg,0.1000,0.9000,0.5000\n' \
                       '"x/b,c.jpg",0.7000,0.2000,0.3000\n'


def test_jsonl_rows_round_trip_names_that_are_not_utf8(tmp_path):
  out = _file(tmp_path, 'tags.jsonl')
  odd = os.fsdecode(b'photos/caf\xe9.jpg')
  probs = np.array([[0.1, 0.9, 0.6]])
  out.append([odd], probs, probs > 0.5)
  row = json.loads(open(out.path, encoding='utf-8').read())
  assert row['tags'] == ['sky', 'tree'] and row['image'] == 'photos/caf\\xe9.jpg'
  assert _file(tmp_path, 'tags.jsonl').done == [odd]


def test_other_models_and_foreign_files_are_refused(tmp_path):
  _file(tmp_path).append(['a.jpg'], np.zeros((1, 3)), np.zeros((1, 3), bool))
  with pytest.raises(UserError, match='written by another model or weights .model_sha256'):
    _file(tmp_path, identity={'model_sha256': 'b'})
  # --overwrite starts over.
  assert _file(tmp_path, identity={'model_sha256': 'b'}, overwrite=True).done == []
  mine = tmp_path / 'mine.csv'
  mine.write_text('my,own,spreadsheet\n')
  with pytest.raises(UserError, match='mine.csv exists and was not written by `tag predict`'):
    _file(tmp_path, 'mine.csv')
  assert mine.read_text() == 'my,own,spreadsheet\n'
  record = tmp_path / 'tags.csv.run.json'
  record.write_text(record.read_text().replace('"b"', '"c"'))
  with pytest.raises(UserError, match='checksum mismatch'):
    _file(tmp_path, identity={'model_sha256': 'c'})
  with pytest.raises(UserError, match=r'must end in \.csv or \.jsonl'):
    _file(tmp_path, 'tags.txt')
