"""Bad input, interrupted runs and untrusted files: each case works as documented
(docs/robustness.md) or stops with one message naming the file, exit status 1, no traceback.
"""

import io
import os
import random
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from PIL import Image

from miml_jax import datasets
from miml_jax import images
from miml_jax import weights
from miml_jax.plumbing.errors import UserError
from miml_jax.features import store
from tests import conftest
from tests import reference


cli = conftest.cli
assert_user_error = conftest.assert_user_error


def rgb(rng, h=20, w=30):
  return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def write(path, make):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  make(path)
  return path


# name -> a function writing the file at a path. Every one of these must be converted and give
# finite features.
CONVERTED_IMAGES = {
    'grey.png': lambda p, rng: Image.fromarray(rgb(rng)[..., 0]).save(p),
    'rgba.png': lambda p, rng: Image.fromarray(rgb(rng)).convert('RGBA').save(p),
    'cmyk.jpg': lambda p, rng: Image.fromarray(rgb(rng)).convert('CMYK').save(p),
    'palette.png': lambda p, rng: Image.fromarray(rgb(rng)).convert('P').save(p),
    'grey16.png': lambda p, rng: Image.fromarray(
        rng.integers(0, 65536, (20, 30), dtype=np.uint16)).save(p),
    'one_pixel.png': lambda p, rng: Image.fromarray(rgb(rng, 1, 1)).save(p),
    'rotated_exif.jpg': lambda p, rng: _exif_rotated(p, rng),
    'large.jpg': lambda p, rng: Image.new('RGB', (8000, 6000), (90, 120, 200)).save(p),
}


def _exif_rotated(path, rng):
  image = Image.fromarray(rgb(rng))
  exif = image.getexif()
  exif[0x0112] = 6   # orientation: rotate 90°
  image.save(path, exif=exif)


def _truncated_jpeg(path, rng):
  buf = io.BytesIO()
  Image.fromarray(rgb(rng, 64, 64)).save(buf, 'JPEG')
  with open(path, 'wb') as f:
    f.write(buf.getvalue()[:300])


REFUSED_IMAGES = {
    'truncated.jpg': (_truncated_jpeg, 'cannot read image'),
    'text.jpg': (lambda p, rng: open(p, 'w').write('not an image\n'), 'cannot read image'),
    'empty.png': (lambda p, rng: open(p, 'wb').close(), 'cannot read image'),
}


@pytest.mark.parametrize('name', sorted(CONVERTED_IMAGES))
def test_image_kinds_are_converted(tmp_path, name):
  path = write(str(tmp_path / name), lambda p: CONVERTED_IMAGES[name](p, np.random.default_rng(0)))
  x = images.load_image(path, 32)
  assert x.shape == (32, 32, 3) and x.dtype == np.uint8


@pytest.mark.parametrize('name', sorted(REFUSED_IMAGES))
def test_unreadable_images_are_named(tmp_path, name):
  make, message = REFUSED_IMAGES[name]
  path = write(str(tmp_path / name), lambda p: make(p, np.random.default_rng(0)))
  with pytest.raises(UserError, match=f'{name}: {message}'):
    images.load_image(path, 32)


@pytest.mark.slow
def test_large_image_memory_stays_bounded(tmp_path):
  """A 48-megapixel JPEG (144 MB decoded) is read at reduced scale: peak memory stays low."""
  path = str(tmp_path / 'large.jpg')
  Image.new('RGB', (8000, 6000), (90, 120, 200)).save(path)
  code = ('import resource, sys; from miml_jax import images; '
          f'before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; '
          f'images.load_image({path!r}, 224); '
          'print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       cwd=conftest.REPO, check=True)
  grown_mb = int(out.stdout) / 1024
  assert grown_mb < 40, f'decoding grew memory by {grown_mb:.0f} MB'


def dataset_with(root, rng, n=6, rows=None, extra_files=()):
  """A dataset folder of n small images; rows: labels.csv lines after the header."""
  paths = conftest.write_images(os.path.join(root, 'images'), n, rng)
  names = [os.path.basename(p) for p in paths]
  if rows is None:
    rows = [f'{name},{i % 2},{int(i % 3 == 0)}' for i, name in enumerate(names)]
  for name in extra_files:
    Image.fromarray(rgb(rng)).save(os.path.join(root, 'images', name))
  with open(os.path.join(root, 'labels.csv'), 'w') as f:
    f.write('\n'.join(['image,a,b', *rows]) + '\n')
  return str(root), names


@pytest.mark.slow
def test_the_whole_pipeline_on_awkward_images(tmp_path, small_weights):
  """Every converted kind, through the feature CLI and table1: works, finite features."""
  rng = np.random.default_rng(1)
  root = tmp_path / 'odd'
  for name, make in CONVERTED_IMAGES.items():
    write(str(root / 'images' / name), lambda p, make=make: make(p, rng))
  names = sorted(CONVERTED_IMAGES)
  with open(root / 'labels.csv', 'w') as f:
    f.write('image,a,b\n' + ''.join(f'{n},{i % 2},{int(i < 4)}\n' for i, n in enumerate(names)))
  result = cli('miml_jax.features', f'--data={root}', f'--weights={small_weights}',
               f'--output={tmp_path}/odd.h5', '--image_size=32')
  assert result.returncode == 0, result.stderr
  data = store.read_feature_file(tmp_path / 'odd.h5')
  assert data.image_names == tuple(names) and np.all(np.isfinite(data.features))


@pytest.mark.slow
@pytest.mark.parametrize('case,message', [
    ('truncated', 'truncated.jpg: cannot read image'),
    ('not_an_image', 'text.jpg: cannot read image'),
])
def test_feature_cli_names_the_bad_image(tmp_path, small_weights, case, message):
  rng = np.random.default_rng(2)
  root, names = dataset_with(tmp_path / case, rng)
  bad = 'truncated.jpg' if case == 'truncated' else 'text.jpg'
  make = REFUSED_IMAGES[bad][0]
  make(os.path.join(root, 'images', bad), rng)
  with open(os.path.join(root, 'labels.csv'), 'a') as f:
    f.write(f'{bad},1,0\n')
  result = cli('miml_jax.features', f'--data={root}', f'--weights={small_weights}',
               f'--output={tmp_path}/out.h5', '--image_size=32')
  assert_user_error(result, message)
  assert not os.path.exists(tmp_path / 'out.h5')


# More labels.csv cases, in-process, are in test_datasets.py.
@pytest.mark.slow
@pytest.mark.parametrize('rows,message', [
    (['img0.jpg,1,0', 'missing.png,0,1'], "image 'missing.png' not found"),
    (['img0.jpg,1,yes'], "label 'b' is 'yes'"),
    (['/etc/passwd,1,0'], 'leaves the images/ folder'),
])
def test_bad_labels_csv_through_table1(tmp_path, small_weights, rows, message):
  root, _ = dataset_with(tmp_path / 'd', np.random.default_rng(3), n=2, rows=rows)
  result = cli('miml_jax.experiments.table1', f'--dataset={root}', f'--weights={small_weights}',
               f'--cache_dir={tmp_path}/c', f'--output_dir={tmp_path}/o', '--splits=2')
  assert_user_error(result, 'labels.csv', message)
  assert not os.path.exists(tmp_path / 'o')


def test_unlisted_images_are_ignored_and_empty_labels_work(tmp_path):
  rng = np.random.default_rng(4)
  root, names = dataset_with(tmp_path / 'd', rng, n=4, extra_files=('stray.png',),
                             rows=None)
  data = datasets.load(root)
  assert 'stray.png' not in data.image_names and len(data.image_names) == 4


@pytest.mark.slow
def test_label_without_positives_runs_through_table1(tmp_path, small_weights):
  rng = np.random.default_rng(5)
  paths = conftest.write_images(tmp_path / 'd' / 'images', 12, rng)
  with open(tmp_path / 'd' / 'labels.csv', 'w') as f:
    f.write('image,a,never\n' + ''.join(f'{os.path.basename(p)},{i % 2},0\n'
                                        for i, p in enumerate(paths)))
  result = cli('miml_jax.experiments.table1', f'--dataset={tmp_path}/d',
               f'--weights={small_weights}', f'--cache_dir={tmp_path}/c',
               f'--output_dir={tmp_path}/o', '--splits=2', '--solvers=newton_l1,liblinear_l1',
               '--n_jobs=1')
  assert result.returncode == 0, result.stderr
  assert 'nan' not in (tmp_path / 'o' / 'table1_d.json').read_text().lower()


@pytest.mark.slow
def test_missing_or_empty_dataset_folders(tmp_path):
  os.makedirs(tmp_path / 'empty' / 'images')
  for folder, message in ((tmp_path / 'empty', 'labels.csv: missing'),
                          (tmp_path / 'nowhere', 'not found')):
    result = cli('miml_jax.tag', 'train', f'--data={folder}', f'--output={tmp_path}/m')
    assert_user_error(result, message)
  (tmp_path / 'empty' / 'labels.csv').write_text('')
  with pytest.raises(UserError, match='labels.csv: empty'):
    datasets.load(str(tmp_path / 'empty'))


def test_nan_in_a_feature_file_and_a_truncated_cache(tmp_path, small_weights):
  rng = np.random.default_rng(6)
  root, _ = dataset_with(tmp_path / 'd', rng, n=4)
  ds = datasets.load(root)
  out = str(tmp_path / 'f.h5')
  store.write_feature_file(ds, small_weights, out, image_size=32, progress=False)
  good = store.read_feature_file(out).features
  # A NaN written into the file is an edit (checksum); one our own writer is handed is refused.
  with h5py.File(out, 'r+') as f:
    f['features'][1, 3] = np.nan
  with pytest.raises(UserError, match='f.h5: checksum mismatch'):
    store.read_feature_file(out)
  bad = good.copy()
  bad[1, 3] = np.nan
  with pytest.raises(UserError, match='nan.h5: features hold NaN or infinite values'):
    store.save_feature_file(store.FeatureFile(bad, ds.labels, tuple(ds.image_names),
                                              tuple(ds.label_names), {'format': store.FORMAT}),
                            str(tmp_path / 'nan.h5'))
  # A truncated cache is not taken as complete: it is recomputed, to the same features.
  data = open(out, 'rb').read()
  with open(out, 'wb') as f:
    f.write(data[:len(data) // 3])
  with pytest.raises(UserError, match='f.h5: damaged or truncated feature file'):
    store.read_feature_file(out)
  # Unreadable, it is not known to be a feature file: replaced only when asked to (the feature
  # cache of the experiment commands always is).
  with pytest.raises(UserError, match='f.h5: exists and is not a file miml_jax made'):
    store.write_feature_file(ds, small_weights, out, image_size=32, progress=False)
  store.write_feature_file(ds, small_weights, out, image_size=32, progress=False, overwrite=True)
  np.testing.assert_array_equal(store.read_feature_file(out).features, good)


@pytest.mark.slow
def test_bad_weights_files_through_the_cli(tmp_path, small_weights):
  root, _ = dataset_with(tmp_path / 'd', np.random.default_rng(7), n=2)
  data = open(small_weights, 'rb').read()
  (tmp_path / 'truncated.safetensors').write_bytes(data[:len(data) // 2])
  params = reference.random_params(np.random.default_rng(0))
  params['conv3_1']['kernel'] = params['conv3_1']['kernel'][..., :7]
  flat = {f'{layer}.{k}': v for layer, p in params.items() for k, v in p.items()}
  from miml_jax.plumbing import safefile
  safefile.save(tmp_path / 'shapes.safetensors', flat, {
      'format': weights.FORMAT, 'source': 'test', 'layers': ','.join(params),
      'preprocessing': '{"channel_order": "RGB", "scale": 1, "mean": [0, 0, 0], '
                       '"std": [1, 1, 1]}'})
  (tmp_path / 'pickle.safetensors').write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR.")
  for name, message in (('truncated', 'not a readable'), ('shapes', 'conv3_1.kernel has shape'),
                        ('pickle', 'not a readable')):
    result = cli('miml_jax.features', f'--data={root}',
                 f'--weights={tmp_path}/{name}.safetensors', f'--output={tmp_path}/o.h5',
                 cwd=tmp_path)
    assert_user_error(result, f'{name}.safetensors', message)
  assert not (tmp_path / 'pwned').exists()


def test_feature_file_from_untrusted_source_is_refused(tmp_path):
  (tmp_path / 'evil.h5').write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR.")
  with pytest.raises(UserError, match='evil.h5: not an HDF5 file'):
    store.read_feature_file(tmp_path / 'evil.h5')
  with h5py.File(tmp_path / 'other.h5', 'w') as f:
    f['features'] = np.zeros((2, 3))
  with pytest.raises(UserError, match='other.h5: not a miml_jax feature file'):
    store.read_feature_file(tmp_path / 'other.h5')


def _extract_command(root, weights_path, out):
  # Without the compilation cache every run compiles, as on a fresh machine: with it, later runs
  # can finish before the random kill, and fewer kills would test less.
  return [sys.executable, '-m', 'miml_jax.features', f'--data={root}',
          f'--weights={weights_path}', f'--output={out}', '--image_size=32', '--batch_size=2',
          '--compilation_cache=']


def _count_parts(out):
  parts = f'{out}.parts'
  return len(os.listdir(parts)) if os.path.isdir(parts) else 0


def _kill_when(proc, ready, delay, timeout=120.0):
  """SIGKILLs proc `delay` seconds after ready() holds; True if it was still running then."""
  deadline = time.monotonic() + timeout
  while not ready() and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.005)
  time.sleep(delay)
  killed = proc.poll() is None
  if killed:
    proc.send_signal(signal.SIGKILL)
  proc.wait()
  return killed


@pytest.mark.slow
def test_killed_extractions_resume_to_the_same_features(tmp_path, small_weights):
  """kill -9 while starting, between batches and while assembling, then let it finish: the
  same features as one uninterrupted run, and a file at the output is only ever a complete one.

  The kills follow the run's progress (its batch files) rather than a clock, so they land
  inside the run however fast the machine is.
  """
  rng = np.random.default_rng(8)
  n, batch = 40, 2
  root, _ = dataset_with(tmp_path / 'd', rng, n=n)
  reference_out = tmp_path / 'reference.h5'
  subprocess.run(_extract_command(root, small_weights, reference_out), check=True,
                 capture_output=True, cwd=conftest.REPO)
  expected = store.read_feature_file(reference_out).features
  out = tmp_path / 'killed.h5'
  chooser = random.Random(0)
  kills = 0
  for moment in ['starting', 'batch'] * 4 + ['assembling']:
    before = _count_parts(out)
    ready = {'starting': lambda: True,
             'batch': lambda: _count_parts(out) > before,
             'assembling': lambda: _count_parts(out) >= n // batch}[moment]
    delay = chooser.uniform(0.1, 1.0) if moment == 'starting' else chooser.uniform(0.0, 0.1)
    proc = subprocess.Popen(_extract_command(root, small_weights, out), cwd=conftest.REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kills += _kill_when(proc, ready, delay)
    if out.exists():   # only ever complete
      np.testing.assert_array_equal(store.read_feature_file(out).features, expected)
  assert kills >= 7, kills
  subprocess.run(_extract_command(root, small_weights, out), check=True, capture_output=True,
                 cwd=conftest.REPO)
  np.testing.assert_array_equal(store.read_feature_file(out).features, expected)
  leftovers = [n for n in os.listdir(tmp_path) if n.startswith('.killed.h5.')]
  assert not leftovers and not (tmp_path / 'killed.h5.parts').exists()


@pytest.mark.slow
def test_two_runs_on_the_same_cache(tmp_path, small_weights):
  rng = np.random.default_rng(9)
  root, _ = dataset_with(tmp_path / 'd', rng, n=12)
  out = tmp_path / 'shared.h5'
  procs = [subprocess.Popen(_extract_command(root, small_weights, out), cwd=conftest.REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
  ds = datasets.load(root)
  again = store.write_feature_file(ds, small_weights, str(tmp_path / 'alone.h5'),
                                   batch_size=2, image_size=32, progress=False)
  np.testing.assert_array_equal(store.read_feature_file(out).features,
                                store.read_feature_file(again).features)
