"""Extraction speed of each backbone, side by side: image files to features, the same views.

  python -m miml_jax.benchmarks.backbones --dataset=msrc_v2 --data_dir=../shared/datasets \
      --backbones=vgg16,efficientnet_lite0 --images=64 --augment=flip --output=speed.json

Each backbone extracts the same image files (read, resized, forward, 4-quadrant pooling) with
its default weights, or random weights of the real shapes where those cannot be had offline
(`--random_weights`; the speed does not depend on the values), after a warm-up batch that
compiles. Reports images/s, the ratio to the first backbone measured in the same run, the
feature dimension and the forward's operations per view from XLA's own cost analysis.
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from miml_jax import backbones
from miml_jax import datasets
from miml_jax import weights as weights_lib
from miml_jax.features import extract
from miml_jax.plumbing import atomic
from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax.plumbing import input_flags
from miml_jax.plumbing import outputs
from miml_jax.plumbing import runtime_flags

_BACKBONES = flags.DEFINE_list('backbones', ['vgg16', 'efficientnet_lite0'],
                               'Backbones to time, the first one the baseline of the ratios.')
_RANDOM = flags.DEFINE_list('random_weights', ['resnet50', 'convnext_tiny'],
                            'Backbones timed on random weights of the real shapes (their '
                            'pretrained files are not on this machine).')
_IMAGES = flags.DEFINE_integer('images', 64, 'Image files each backbone extracts.')
_BATCH_SIZE = common_flags.batch_size()
_AUGMENT = common_flags.augment()
_OUTPUT = common_flags.output('a JSON file of the figures.')
_OVERWRITE = common_flags.overwrite()
flags.adopt_module_key_flags(input_flags)

FORMAT = 'miml_jax.benchmarks.backbones/1'


def random_weights(backbone: str):
  """(params, WeightsInfo) of random values in the backbone's real shapes, with its head."""
  rng = np.random.default_rng(0)
  shapes = weights_lib.module_shapes(backbone, True)
  flat = {k: (rng.standard_normal(s).astype(np.float32) * 0.02 if not k.endswith('var')
              else np.ones(s, np.float32)) for k, s in shapes.items()}
  params = {}
  for name, value in flat.items():
    node = params
    *groups, leaf = name.split('.')
    for g in groups:
      node = node.setdefault(g, {})
    node[leaf] = value
  layers = tuple(sorted({k.split('.')[0] for k in flat}))
  return params, weights_lib.WeightsInfo('random', weights_lib.TORCHVISION, layers, 'random',
                                         backbone)


def gflop_per_view(params, info) -> float:
  """XLA's count of floating-point operations of one 224x224 view's features, in GFLOP."""
  batch = jnp.zeros((1, 224, 224, 3), jnp.uint8)
  compiled = extract.batch_features.lower(
      params, batch, head=extract.head_for(info, 224), preprocessing=info.preprocessing,
      backbone=info.backbone).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', float('nan'))) / 1e9


def time_backbone(name: str, paths, batch_size: int, augment: str) -> dict:
  if name in _RANDOM.value:
    params, info = random_weights(name)
  else:
    params, info = weights_lib.load(backbones.get(name).default_weights)
  # Compiling, on the batch shape the run uses, is not timed.
  extract.extract_features(paths[:batch_size], (params, info), batch_size=batch_size,
                           augment=augment)
  start = time.perf_counter()
  feats = extract.extract_features(paths, (params, info), batch_size=batch_size,
                                   augment=augment)
  seconds = time.perf_counter() - start
  return {'backbone': name, 'weights': 'random' if name in _RANDOM.value else
          backbones.get(name).default_weights, 'images': len(paths), 'seconds': seconds,
          'images_per_s': len(paths) / seconds, 'dim': int(feats.shape[1]),
          'gflop_per_view': gflop_per_view(jax.device_put(params), info)}


def main(argv):
  cli.no_arguments(argv)
  cli.choices(_BACKBONES, backbones.NAMES)
  cli.at_least(_IMAGES, 1)
  extract.check_sizes(_BATCH_SIZE.value, 224, augment=_AUGMENT.value)
  if _OUTPUT.value:
    outputs.check_file(_OUTPUT.value, outputs.Inputs([]), kind=FORMAT.split('/')[0],
                       overwrite=_OVERWRITE.value)
  runtime_flags.apply()
  dataset = datasets.load(input_flags.one_dataset(), input_flags.DATA_DIR.value)
  paths = dataset.image_paths[:_IMAGES.value]
  rows = []
  for name in _BACKBONES.value:
    rows.append(time_backbone(name, paths, _BATCH_SIZE.value, _AUGMENT.value))
    rows[-1]['ratio'] = rows[-1]['images_per_s'] / rows[0]['images_per_s']
    print(json.dumps(rows[-1]), flush=True)
  device = jax.devices()[0]
  print(f'\n{device.device_kind} ({jax.default_backend()}); {len(paths)} {dataset.name} images, '
        f'batch {_BATCH_SIZE.value}, augment={_AUGMENT.value}')
  print('| backbone | weights | images/s | ratio | features | GFLOP/view |')
  print('|---|---|---|---|---|---|')
  for r in rows:
    print(f"| {r['backbone']} | {r['weights']} | {r['images_per_s']:.2f} | {r['ratio']:.2f} "
          f"| {r['dim']} | {r['gflop_per_view']:.2f} |")
  if _OUTPUT.value:
    atomic.write_json(_OUTPUT.value, {'format': FORMAT, 'device': device.device_kind,
                                      'dataset': dataset.name, 'augment': _AUGMENT.value,
                                      'batch_size': _BATCH_SIZE.value, 'rows': rows})


if __name__ == '__main__':
  cli.run(main)
