"""ResNet-50 (He et al.), torchvision's layout (v1.5: the stride on the 3x3 convolution), as a
flax module.

Parameter names follow torchvision's state dict: `conv1`, `bn1`, `layer{1..4}_{i}` (`conv1`,
`bn1`, `conv2`, `bn2`, `conv3`, `bn3`, and `downsample_0`, `downsample_1` on each layer's first
block), `fc`. Batch norm epsilon 1e-5.

Multi-level outputs, one per stride: `conv1` (64 channels at stride 2, after its ReLU, before
the max pooling), `layer1` (256, stride 4), `layer2` (512), `layer3` (1024), `layer4` (2048,
stride 32); and `pool`: layer4 averaged over positions (2048), the vector the classifier reads
(`logits`, with `num_classes`).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from miml_jax.frozen_norms import FrozenBatchNorm

# (blocks, bottleneck width) of layer1..layer4; a block's output is 4 x its width.
LAYERS = ((3, 64), (4, 128), (6, 256), (3, 512))
EXPANSION = 4
LEVELS = (('conv1', 64),) + tuple((f'layer{i + 1}', w * EXPANSION) for i, (_, w) in
                                  enumerate(LAYERS))
HEAD_WIDTH = LAYERS[-1][1] * EXPANSION


class Bottleneck(nn.Module):
  width: int
  stride: int
  downsample: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda f, k, s, pad, name: nn.Conv(f, (k, k), (s, s), padding=pad, use_bias=False,
                                              dtype=self.dtype, name=name)
    bn = lambda name: FrozenBatchNorm(1e-5, self.dtype, name=name)
    h = nn.relu(bn('bn1')(conv(self.width, 1, 1, 0, 'conv1')(x)))
    h = nn.relu(bn('bn2')(conv(self.width, 3, self.stride, 1, 'conv2')(h)))
    h = bn('bn3')(conv(self.width * EXPANSION, 1, 1, 0, 'conv3')(h))
    if self.downsample:
      x = bn('downsample_1')(conv(self.width * EXPANSION, 1, self.stride, 0, 'downsample_0')(x))
    return nn.relu(h + x)


class ResNet50(nn.Module):
  """ResNet-50 on preprocessed images (n, H, W, 3), any size from 32.

  Attributes:
    head: the `pool` output (always cheap: an average of layer4).
    num_classes: also the classifier (`logits`); 0: without it.
  """
  head: bool = True
  num_classes: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    """Returns (last output, {level: (n, h, w, c)} plus `pool` (n, 2048) and `logits`)."""
    out = {}
    x = nn.Conv(64, (7, 7), (2, 2), padding=3, use_bias=False, dtype=self.dtype, name='conv1')(x)
    x = nn.relu(FrozenBatchNorm(1e-5, self.dtype, name='bn1')(x))
    out['conv1'] = x
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for layer, (blocks, width) in enumerate(LAYERS):
      for i in range(blocks):
        x = Bottleneck(width, 2 if i == 0 and layer > 0 else 1, i == 0, self.dtype,
                       name=f'layer{layer + 1}_{i}')(x)
      out[f'layer{layer + 1}'] = x
    if self.head:
      x = x.mean(axis=(1, 2))
      out['pool'] = x
      if self.num_classes:
        x = nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x)
        out['logits'] = x
    return x, out
