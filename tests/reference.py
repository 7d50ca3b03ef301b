"""An independent VGG16 feature reference in plain numpy (float64), for tests only.

Written without flax or jax: convolutions as nine shifted matrix products, pooling by reshape,
quadrant maxima by explicit bin bounds from the adaptive-pooling formula.
"""

import math

import numpy as np

CONVS = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]


def random_params(rng, num_fc=0, fc_in=512 * 7 * 7):
  """He-initialised VGG16 params {name: {'kernel', 'bias'}} (HWIO), float32."""
  params, cin = {}, 3
  for g, (width, depth) in enumerate(CONVS):
    for i in range(depth):
      params[f'conv{g + 1}_{i + 1}'] = {
          'kernel': (rng.standard_normal((3, 3, cin, width)) * math.sqrt(2 / (9 * cin))
                     ).astype(np.float32),
          'bias': (rng.standard_normal(width) * 0.1).astype(np.float32)}
      cin = width
  for name, (fin, fout) in list(zip(['fc6', 'fc7', 'fc8'],
                                    [(fc_in, 4096), (4096, 4096), (4096, 1000)]))[:num_fc]:
    params[name] = {
        'kernel': (rng.standard_normal((fin, fout), dtype=np.float32) * math.sqrt(2 / fin)),
        'bias': (rng.standard_normal(fout) * 0.1).astype(np.float32)}
  return params


def conv3x3_relu(x, kernel, bias):
  h, w, _ = x.shape
  xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
  out = np.zeros((h, w, kernel.shape[-1]))
  for dy in range(3):
    for dx in range(3):
      out += xp[dy:dy + h, dx:dx + w] @ kernel[dy, dx].astype(np.float64)
  return np.maximum(out + bias, 0)


def maxpool2(x):
  h, w, c = x.shape
  h2, w2 = h // 2, w // 2
  return x[:2 * h2, :2 * w2].reshape(h2, 2, w2, 2, c).max(axis=(1, 3))


def quadrant_max_loop(x):
  """(h, w, c) -> (4c,) by explicit loops over the adaptive 2x2 bins."""
  h, w, c = x.shape
  out = np.empty(4 * c, x.dtype)
  for qi in range(2):
    for qj in range(2):
      r0, r1 = math.floor(qi * h / 2), math.ceil((qi + 1) * h / 2)
      c0, c1 = math.floor(qj * w / 2), math.ceil((qj + 1) * w / 2)
      q = 2 * qi + qj
      for ch in range(c):
        out[q * c + ch] = max(x[r, s, ch] for r in range(r0, r1) for s in range(c0, c1))
  return out


def preprocess(image_uint8, convention):
  x = image_uint8.astype(np.float64)
  if convention == 'torchvision':
    return (x / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  if convention == 'caffe':
    return x[..., ::-1] - np.array([103.939, 116.779, 123.68])
  raise ValueError(convention)


def features(image_uint8, params, convention, fc_flatten='hwc'):
  """The paper's features of one image, float64. fc_flatten: pool5 order fc6 expects."""
  x = preprocess(image_uint8, convention)
  blocks = []
  for g, (_, depth) in enumerate(CONVS):
    for i in range(depth):
      p = params[f'conv{g + 1}_{i + 1}']
      x = conv3x3_relu(x, p['kernel'], p['bias'])
    x = maxpool2(x)
    blocks.append(np.concatenate([
        x[math.floor(qi * x.shape[0] / 2):math.ceil((qi + 1) * x.shape[0] / 2),
          math.floor(qj * x.shape[1] / 2):math.ceil((qj + 1) * x.shape[1] / 2)].max(axis=(0, 1))
        for qi in range(2) for qj in range(2)]))
  if 'fc6' in params:
    v = x.reshape(-1) if fc_flatten == 'hwc' else x.transpose(2, 0, 1).reshape(-1)
    for name in ('fc6', 'fc7'):
      v = np.maximum(v @ params[name]['kernel'].astype(np.float64) + params[name]['bias'], 0)
    blocks.append(v)
  return np.concatenate(blocks)
