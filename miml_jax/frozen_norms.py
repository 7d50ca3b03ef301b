"""Normalisation layers of pretrained backbones, at inference: their statistics are weights.

Batch norm with its running statistics (`mean`, `var`) kept in the `params` collection beside
`scale` and `bias`: a converted backbone is one parameter tree, with nothing that training
would update. LayerNorm is flax's own.
"""

import flax.linen as nn
import jax.numpy as jnp


class FrozenBatchNorm(nn.Module):
  """y = (x - mean) / sqrt(var + eps) * scale + bias over the last (channel) axis."""
  epsilon: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,))
    bias = self.param('bias', nn.initializers.zeros, (c,))
    mean = self.param('mean', nn.initializers.zeros, (c,))
    var = self.param('var', nn.initializers.ones, (c,))
    # Folded into one multiply-add, as inference frameworks do (torch's eval-mode batch norm
    # computes the same in float32 to ~1e-7 relative).
    mul = scale * (1.0 / jnp.sqrt(var + self.epsilon))
    return x * mul.astype(self.dtype) + (bias - mean * mul).astype(self.dtype)
