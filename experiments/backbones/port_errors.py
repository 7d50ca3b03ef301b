"""Max relative errors of our backbone ports against independent PyTorch forwards (float32):
EfficientNet-Lite0 on its ImageNet weights and two msrc_v2 images (efficientnet-lite-pytorch);
ResNet-50 and ConvNeXt-Tiny on random weights of the real shapes, through their .pth converters
(torchvision-shaped torch modules of tests/torch_backbones.py) on random inputs.

  python experiments/backbones/port_errors.py DATA_DIR     (from the repository root)
"""
import os
import sys
import tempfile

import jax.numpy as jnp
import numpy as np
import torch

from miml_jax import backbones
from miml_jax import datasets
from miml_jax import images
from miml_jax import weights
from miml_jax.features import extract
from miml_jax.weights import sources
from tests import torch_backbones


def rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.abs(a - b).max() / np.abs(b).max()


def lite0(data_dir):
  from efficientnet_lite_pytorch import EfficientNet   # pylint: disable=g-import-not-at-top
  params, info = weights.load('efficientnet_lite0')
  x = np.stack([images.load_image(p) for p in datasets.load('msrc_v2', data_dir).image_paths[:2]])
  pre = np.asarray(extract.preprocess(jnp.asarray(x), info.preprocessing, jnp.float32))
  _, out = backbones.get('efficientnet_lite0').build(True, jnp.float32, 1000).apply(
      {'params': params}, pre)
  model = EfficientNet.from_name('efficientnet-lite0')
  model.load_state_dict(torch.load(sources.lite0_checkpoint(), weights_only=True))
  with torch.no_grad():
    t = torch.tensor(pre).permute(0, 3, 1, 2)
    head = model.eval().extract_features(t).mean((2, 3)).numpy()
    logits = model(t).numpy()
  return {'head': rel(out['head'], head), 'logits': rel(out['logits'], logits)}


def torchvision_shaped(name, source, module):
  torch.manual_seed(0)
  model = torch_backbones.randomise(module())
  with tempfile.TemporaryDirectory() as tmp:
    torch.save(model.state_dict(), os.path.join(tmp, 'w.pth'))
    sources.convert(source, os.path.join(tmp, 'w.pth'), os.path.join(tmp, 'w.safetensors'))
    params, _ = weights.load(os.path.join(tmp, 'w.safetensors'))
  net = backbones.get(name)
  x = np.random.default_rng(1).standard_normal((2, 224, 224, 3)).astype(np.float32)
  _, out = net.build(True, jnp.float32, 1000).apply({'params': params}, x)
  with torch.no_grad():
    levels, head, logits = model(torch.tensor(x).permute(0, 3, 1, 2))
  errors = {level: rel(out[level], levels[level].permute(0, 2, 3, 1).numpy())
            for level, _ in net.levels}
  return {'levels (worst)': max(errors.values()), net.head[0]: rel(out[net.head[0]], head),
          'logits': rel(out['logits'], logits)}


def main():
  rows = {'efficientnet_lite0 (ImageNet weights)': lite0(sys.argv[1]),
          'resnet50 (random weights)': torchvision_shaped('resnet50', 'torchvision_resnet50',
                                                          torch_backbones.ResNet50),
          'convnext_tiny (random weights)': torchvision_shaped(
              'convnext_tiny', 'torchvision_convnext_tiny', torch_backbones.ConvNeXtTiny)}
  print('| port | max relative error against PyTorch (float32) |')
  print('|---|---|')
  for name, errors in rows.items():
    print(f'| {name} | ' + ', '.join(f'{k} {v:.1e}' for k, v in errors.items()) + ' |')


if __name__ == '__main__':
  main()
