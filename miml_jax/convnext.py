"""ConvNeXt-Tiny (Liu et al. 2022), torchvision's layout, as a flax module.

A 4x4 stride-4 patchify stem, then four stages (3, 3, 9, 3 blocks of 96, 192, 384, 768
channels), each after the first led by a LayerNorm and a 2x2 stride-2 convolution. A block: 7x7
depthwise convolution, LayerNorm, 1x1 expansion to 4x with exact GELU, 1x1 projection, a learned
per-channel scale (`layer_scale`), plus the input. LayerNorm epsilon 1e-6.

Parameter names follow torchvision's `features.{i}` indices: `stem_conv`, `stem_norm`,
`downsample{s}_norm`, `downsample{s}_conv`, `stage{s}_{j}` (`dwconv`, `norm`, `pwconv1`,
`pwconv2`, `layer_scale`), `head_norm`, `fc`.

Multi-level outputs, one per stage: `stage1` (96 channels at stride 4) .. `stage4` (768 at
stride 32); and `head`: stage4 averaged over positions then LayerNorm'd (768), the vector the
classifier reads (`logits`, with `num_classes`).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from miml_jax.depthwise_conv import DepthwiseConv

DEPTHS = (3, 3, 9, 3)
WIDTHS = (96, 192, 384, 768)
EPSILON = 1e-6
# The two-pass variance: activations here are large against their spread.
_norm = functools.partial(nn.LayerNorm, epsilon=EPSILON, use_fast_variance=False)
LEVELS = tuple((f'stage{s + 1}', w) for s, w in enumerate(WIDTHS))
HEAD_WIDTH = WIDTHS[-1]


class Block(nn.Module):
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    h = DepthwiseConv(7, 1, 3, use_bias=True, dtype=self.dtype, name='dwconv')(x)
    h = _norm(dtype=self.dtype, name='norm')(h)
    h = nn.Dense(4 * c, dtype=self.dtype, name='pwconv1')(h)
    h = jax.nn.gelu(h, approximate=False)
    h = nn.Dense(c, dtype=self.dtype, name='pwconv2')(h)
    gamma = self.param('layer_scale', nn.initializers.constant(1e-6), (c,))
    return x + h * gamma.astype(self.dtype)


class ConvNeXtTiny(nn.Module):
  """ConvNeXt-Tiny on preprocessed images (n, H, W, 3), any size from 32.

  Attributes:
    head: the `head` output (pooled, LayerNorm'd stage4).
    num_classes: also the classifier (`logits`); 0: without it.
  """
  head: bool = True
  num_classes: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    """Returns (last output, {stage: (n, h, w, c)} plus `head` (n, 768) and `logits`)."""
    out = {}
    for s, (depth, width) in enumerate(zip(DEPTHS, WIDTHS)):
      if s == 0:
        x = nn.Conv(width, (4, 4), (4, 4), padding=0, dtype=self.dtype, name='stem_conv')(x)
        x = _norm(dtype=self.dtype, name='stem_norm')(x)
      else:
        x = _norm(dtype=self.dtype, name=f'downsample{s + 1}_norm')(x)
        x = nn.Conv(width, (2, 2), (2, 2), padding=0, dtype=self.dtype,
                    name=f'downsample{s + 1}_conv')(x)
      for j in range(depth):
        x = Block(self.dtype, name=f'stage{s + 1}_{j}')(x)
      out[f'stage{s + 1}'] = x
    if self.head:
      x = _norm(dtype=self.dtype, name='head_norm')(x.mean(axis=(1, 2)))
      out['head'] = x
      if self.num_classes:
        x = nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x)
        out['logits'] = x
    return x, out
