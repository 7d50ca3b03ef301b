"""VGG16 (Simonyan & Zisserman, configuration D) as a flax.linen module.

Parameter names follow the original Caffe model: `conv{group}_{index}` for the 13 convolutions
(five groups of 2, 2, 3, 3, 3), then `fc6`, `fc7` and optionally `fc8`. Every convolution is 3x3
with padding 1 and a ReLU; each group ends in a 2x2 max pooling with stride 2 (odd sizes floor, as
in Caffe's and torchvision's pooling at the sizes used here).

`fc6` takes pool5 flattened in (H, W, C) order, so it exists only for 224x224 inputs (pool5 7x7).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

GROUP_WIDTHS = (64, 128, 256, 512, 512)
GROUP_DEPTHS = (2, 2, 3, 3, 3)
CONV_NAMES = tuple(f'conv{g + 1}_{i + 1}' for g, depth in enumerate(GROUP_DEPTHS)
                   for i in range(depth))
FC_NAMES = ('fc6', 'fc7', 'fc8')
FC_WIDTHS = (4096, 4096, 1000)
POOL5_GRID = 7  # pool5 is 7x7 at the 224x224 input the fc layers were trained on.


class VGG16(nn.Module):
  """VGG16 forward pass on preprocessed images.

  Attributes:
    num_fc: how many fully connected layers to run: 0 (convolutions only), 2 (up to fc7) or 3.
    dtype: the compute dtype (parameters are cast to it); float32 or bfloat16.
  """
  num_fc: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    """x: (n, H, W, 3) preprocessed images. Returns (last output, dict of named intermediates).

    The dict holds `pool1`..`pool5` (n, h, w, c) and, with fully connected layers, `fc6`, `fc7`
    (after their ReLU) and `fc8` (logits).
    """
    if self.num_fc not in (0, 2, 3):
      raise ValueError(f'num_fc must be 0, 2 or 3, got {self.num_fc}')
    out = {}
    names = iter(CONV_NAMES)
    for group, (width, depth) in enumerate(zip(GROUP_WIDTHS, GROUP_DEPTHS)):
      for _ in range(depth):
        x = nn.Conv(width, (3, 3), padding=1, dtype=self.dtype, name=next(names))(x)
        x = nn.relu(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
      out[f'pool{group + 1}'] = x
    if self.num_fc:
      if x.shape[1:3] != (POOL5_GRID, POOL5_GRID):
        raise ValueError(f'fully connected layers need 224x224 inputs (pool5 7x7), '
                         f'got pool5 {x.shape[1]}x{x.shape[2]}')
      x = x.reshape(x.shape[0], -1)
      for name, width in zip(FC_NAMES[:self.num_fc], FC_WIDTHS):
        x = nn.Dense(width, dtype=self.dtype, name=name)(x)
        if name != 'fc8':
          x = nn.relu(x)
        out[name] = x
    return x, out
