"""The extractor: quadrant pooling, batching, compilation, real images, and feature files."""

import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from miml_jax import datasets
from miml_jax import features
from miml_jax import images
from miml_jax import weights
from miml_jax.plumbing.errors import UserError
from miml_jax.features import store
from tests import conftest
from tests import reference


@pytest.mark.parametrize('h,w', [(1, 1), (2, 2), (3, 5), (7, 7), (14, 9), (112, 112)])
def test_quadrant_max_equals_loop(h, w):
  x = np.random.default_rng(h * w).standard_normal((h, w, 6)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(features.quadrant_max(x)),
                                reference.quadrant_max_loop(x))


def test_layout_dims_and_offsets():
  assert features.layout(2).dim == 9984 and features.layout(0).dim == 5888
  offsets = features.layout(2).offsets()
  assert offsets['pool1'] == (0, 256) and offsets['pool5'] == (3840, 5888)
  assert offsets['fc7'] == (5888, 9984)


def test_features_do_not_depend_on_batch_size_and_compile_once(tmp_path, small_weights):
  paths = conftest.write_images(tmp_path, 7, np.random.default_rng(0))
  by_batch = {}
  for batch_size in (1, 3, 7):
    before = features.batch_features._cache_size()
    by_batch[batch_size] = features.extract_features(paths, small_weights, image_size=32,
                                                     batch_size=batch_size)
    # 7 images in batches of 3 are three calls (the last padded) and one compilation.
    assert features.batch_features._cache_size() - before == 1
  # Equal up to float32 rounding: XLA may pick other convolution algorithms per batch size.
  scale = np.abs(by_batch[1]).max()
  for batch_size in (3, 7):
    np.testing.assert_allclose(by_batch[batch_size], by_batch[1], rtol=1e-5, atol=1e-5 * scale)


def test_bfloat16_close_to_float32(tmp_path, small_weights):
  paths = conftest.write_images(tmp_path, 2, np.random.default_rng(1))
  f32 = features.extract_features(paths, small_weights, image_size=32)
  bf16 = features.extract_features(paths, small_weights, image_size=32, dtype='bfloat16')
  assert bf16.dtype == np.float32
  assert np.linalg.norm(bf16 - f32) / np.linalg.norm(f32) < 0.05


def test_lpips_features_on_real_images(lpips_weights, datasets_dir):
  scene = datasets.load('scene', datasets_dir)
  msrc = datasets.load('msrc_v2', datasets_dir)
  paths = scene.image_paths[:2] + msrc.image_paths[:2]
  x = features.extract_features(paths, lpips_weights, batch_size=2)
  assert x.shape == (4, 5888)
  assert np.all(np.isfinite(x)) and x.min() >= 0
  # ImageNet conv features of real photos: most blocks have active units in every image.
  pool5 = slice(*features.layout(0).offsets()['pool5'])
  assert np.all((x[:, pool5] > 0).mean(axis=1) > 0.2)


def make_dataset(root, n, rng):
  paths = conftest.write_images(os.path.join(root, 'images'), n, rng)
  with open(os.path.join(root, 'labels.csv'), 'w') as f:
    f.write('image,a,b\n')
    for i, p in enumerate(paths):
      f.write(f'{os.path.basename(p)},{i % 2},{int(i % 3 == 0)}\n')
  return datasets.load(str(root))


def test_feature_file_roundtrip_reuse_and_resume(tmp_path, small_weights, monkeypatch):
  ds = make_dataset(tmp_path / 'ds', 7, np.random.default_rng(2))
  out = str(tmp_path / 'f.h5')
  store.write_feature_file(ds, small_weights, out, batch_size=2, image_size=32, progress=False)
  full = store.read_feature_file(out)
  assert full.features.shape == (7, 5888) and full.labels.shape == (7, 2)
  assert full.image_names == ds.image_names and full.label_names == ('a', 'b')
  np.testing.assert_array_equal(full.labels, ds.labels)
  assert full.attrs['weights_sha256'] == weights.load(small_weights)[1].checksum
  assert not os.path.exists(out + '.parts')

  # Same inputs: reused without computing anything.
  mtime = os.stat(out).st_mtime_ns
  monkeypatch.setattr(features.extract, 'batch_features', None)
  store.write_feature_file(ds, small_weights, out, batch_size=2, image_size=32, progress=False)
  assert os.stat(out).st_mtime_ns == mtime
  monkeypatch.undo()

  # Interrupted after two batches: nothing at `out`, and a rerun computes only the rest.
  out2 = str(tmp_path / 'g.h5')
  real = features.extract.iter_feature_batches
  calls = []

  def dying(paths, *args, **kwargs):
    calls.append(len(paths))
    for k, batch in enumerate(real(paths, *args, **kwargs)):
      if k == 2 and len(calls) == 1:
        raise KeyboardInterrupt
      yield batch

  monkeypatch.setattr(features.extract, 'iter_feature_batches', dying)
  with pytest.raises(KeyboardInterrupt):
    store.write_feature_file(ds, small_weights, out2, batch_size=2, image_size=32,
                             progress=False)
  assert not os.path.exists(out2)
  store.write_feature_file(ds, small_weights, out2, batch_size=3, image_size=32, progress=False)
  assert calls == [7, 3]
  np.testing.assert_allclose(store.read_feature_file(out2).features, full.features,
                             rtol=1e-5, atol=1e-5 * np.abs(full.features).max())


def test_compact_copy_reads_back_as_float32_within_float16_precision(tmp_path, small_weights):
  ds = make_dataset(tmp_path / 'ds', 4, np.random.default_rng(5))
  out = store.write_feature_file(ds, small_weights, str(tmp_path / 'f.h5'), image_size=32,
                                 progress=False)
  full = store.read_feature_file(out)
  half = store.save_feature_file(full, tmp_path / 'half.h5', 'float16')
  with h5py.File(half) as f:
    assert f['features'].dtype == np.float16
  copy = store.read_feature_file(half)
  assert copy.features.dtype == np.float32
  # The same attributes but its storage, under a checksum of its own.
  assert {k: v for k, v in copy.attrs.items() if k != 'sha256'} == {
      **{k: v for k, v in full.attrs.items() if k != 'sha256'}, 'storage_dtype': 'float16'}
  assert copy.image_names == full.image_names and copy.label_names == full.label_names
  np.testing.assert_array_equal(copy.labels, full.labels)
  np.testing.assert_allclose(copy.features, full.features, rtol=2**-11, atol=2**-24)
  # Values float16 cannot hold are refused, and nothing is left at the output.
  big = store.FeatureFile(full.features * 1e6, full.labels, full.image_names,
                          full.label_names, full.attrs)
  with pytest.raises(UserError, match='big.h5: features exceed the range of float16'):
    store.save_feature_file(big, tmp_path / 'big.h5', 'float16')
  assert not [n for n in os.listdir(tmp_path) if n.startswith(('big.h5', '.big.h5'))]
  # Same inputs, rounded values: a compact copy (or a float32 copy of it) put where the cache
  # keeps the file is recomputed, not reused.
  for rounded in (half, store.save_feature_file(copy, tmp_path / 'again.h5')):
    shutil.copy(rounded, out)
    store.write_feature_file(ds, small_weights, out, image_size=32, progress=False)
    with h5py.File(out) as f:
      assert f.attrs['storage_dtype'] == 'float32'
    np.testing.assert_array_equal(store.read_feature_file(out).features, full.features)


def test_feature_file_recomputed_when_inputs_change(tmp_path, small_weights):
  ds = make_dataset(tmp_path / 'ds', 3, np.random.default_rng(3))
  out = str(tmp_path / 'f.h5')
  store.write_feature_file(ds, small_weights, out, image_size=32, progress=False)
  key = store.read_feature_file(out).attrs['inputs_sha256']
  # Change one image's bytes: the digest and so the file must change.
  conftest.write_images(os.path.join(ds.root, 'images'), 1, np.random.default_rng(99))
  store.write_feature_file(datasets.load(ds.root), small_weights, out, image_size=32,
                           progress=False)
  assert store.read_feature_file(out).attrs['inputs_sha256'] != key


def test_damaged_feature_files_are_refused(tmp_path, small_weights):
  ds = make_dataset(tmp_path / 'ds', 2, np.random.default_rng(4))
  out = tmp_path / 'f.h5'
  store.write_feature_file(ds, small_weights, str(out), image_size=32, progress=False)
  data = out.read_bytes()
  (tmp_path / 'cut.h5').write_bytes(data[:len(data) // 3])
  with pytest.raises(UserError, match='cut.h5'):
    store.read_feature_file(tmp_path / 'cut.h5')
  # A NaN written into the file is an edit: the checksum catches it before the values are used.
  with h5py.File(out, 'a') as f:
    f['features'][0, 0] = np.nan
  with pytest.raises(UserError, match='f.h5: checksum mismatch'):
    store.read_feature_file(out)


@pytest.mark.slow
def test_cli_writes_file_and_reports_errors_without_traceback(tmp_path, small_weights):
  ds = make_dataset(tmp_path / 'ds', 2, np.random.default_rng(5))
  run = lambda *args: subprocess.run([sys.executable, '-m', 'miml_jax.features', *args],
                                     capture_output=True, text=True, cwd=conftest.REPO)
  ok = run(f'--data={ds.root}', f'--weights={small_weights}', f'--output={tmp_path}/o.h5',
           '--image_size=32')
  assert ok.returncode == 0, ok.stderr
  assert '2 images x 5888 features, 2 labels' in ok.stdout
  bad = run(f'--data={tmp_path}/nowhere', f'--weights={small_weights}', f'--output={tmp_path}/x.h5')
  assert bad.returncode == 1
  assert 'error: dataset' in bad.stderr and 'Traceback' not in bad.stderr
  bad = run(f'--data={ds.root}', f'--weights={tmp_path}/none.safetensors',
            f'--output={tmp_path}/x.h5')
  assert bad.returncode == 1 and 'none.safetensors: no such VGG16 weights file' in bad.stderr


@pytest.mark.slow
def test_views_match_numpy_reference(small_weights):
  """flip: the mean of the image's and its mirror's features; several sizes: the mean of each
  size's features; checked against the plain numpy forward pass."""
  params, info = weights.load(small_weights)
  rng = np.random.default_rng(11)
  raw = rng.integers(0, 256, (2, 40, 36, 3), dtype=np.uint8)

  def reference_at(size, flip=False):
    out = []
    for image in raw:
      x = images.load_image(image, size)
      views = [x, x[:, ::-1]] if flip else [x]
      out.append(np.mean([reference.features(v, params, 'torchvision') for v in views], 0))
    return np.array(out)

  def check(got, want):
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()

  check(features.extract_features(raw, small_weights, image_size=32, augment='flip'),
        reference_at(32, flip=True))
  check(features.extract_features(raw, small_weights, image_size=(32, 48)),
        (reference_at(32) + reference_at(48)) / 2)
  both = features.extract_features(raw, small_weights, image_size=(48, 32), augment='flip',
                                   batch_size=1)
  check(both, (reference_at(32, True) + reference_at(48, True)) / 2)
  # The mirror changes the features (the views are not one and the same).
  assert np.abs(reference_at(32, True) - reference_at(32)).max() > 1e-3
  for bad, match in [(dict(augment='rotate'), 'unknown augment'),
                     (dict(image_size=(32, 32)), 'different sizes'),
                     (dict(image_size=(32, 16)), 'at least 32 pixels')]:
    with pytest.raises(UserError, match=match):
      features.extract_features(raw, small_weights, **{'image_size': 32, **bad})


@pytest.mark.slow
def test_feature_file_records_views_and_caches_each_apart(tmp_path, small_weights):
  ds = make_dataset(tmp_path / 'ds', 3, np.random.default_rng(4))
  plain = store.cache_path(ds, small_weights, tmp_path, image_size=32)
  views = dict(image_size=(32, 40), augment='flip')
  viewed = store.cache_path(ds, small_weights, tmp_path, **views)
  assert os.path.basename(viewed) == 'ds_random_32-40_flip.h5' and viewed != plain
  a = store.cached_features(ds, small_weights, tmp_path, image_size=32)
  b = store.cached_features(ds, small_weights, tmp_path, **views)
  assert store.views_of(a.attrs) == (32, 'none')
  assert store.views_of(b.attrs) == ((32, 40), 'flip')
  assert a.attrs['inputs_sha256'] != b.attrs['inputs_sha256']
  np.testing.assert_allclose(
      b.features, features.extract_features(ds.image_paths, small_weights, **views),
      rtol=1e-5, atol=1e-5 * np.abs(b.features).max())
  # A file written before views were recorded reads as one size, no augmentation.
  assert store.views_of({'image_size': 224}) == (224, 'none')
