"""Extraction speed of each backbone, side by side: image files to features, the same views.

  python -m miml_jax.benchmarks.backbones --dataset=msrc_v2 --data_dir=../shared/datasets \
      --backbones=vgg16,efficientnet_lite0 --images=64 --augment=flip --output=speed.json

Each backbone extracts the same image files (read, resized, forward, 4-quadrant pooling) with
its default weights, or random weights of the real shapes where those cannot be had offline
(`--random_weights`; the speed does not depend on the values), after a warm-up batch that
compiles. The backbones take turns, --rounds times (a machine shared with other work slows
them alike), and each one's median is reported: images/s, the ratio to the first backbone, the
feature dimension and the forward's operations per view from XLA's own cost analysis.
"""

import json
import statistics
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
_IMAGES = flags.DEFINE_integer('images', 64, 'Image files each backbone extracts per round.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Turns each backbone takes (median reported).')
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


def load(name: str):
  if name in _RANDOM.value:
    return random_weights(name)
  return weights_lib.load(backbones.get(name).default_weights)


def seconds_to_extract(weights, paths, batch_size: int, augment: str) -> tuple[float, int]:
  """(seconds, feature dimension) of one extraction of `paths`."""
  start = time.perf_counter()
  feats = extract.extract_features(paths, weights, batch_size=batch_size, augment=augment)
  return time.perf_counter() - start, int(feats.shape[1])


def main(argv):
  cli.no_arguments(argv)
  cli.choices(_BACKBONES, backbones.NAMES)
  cli.at_least(_IMAGES, 1)
  cli.at_least(_ROUNDS, 1)
  extract.check_sizes(_BATCH_SIZE.value, 224, augment=_AUGMENT.value)
  if _OUTPUT.value:
    outputs.check_file(_OUTPUT.value, outputs.Inputs([]), kind=FORMAT.split('/')[0],
                       overwrite=_OVERWRITE.value)
  runtime_flags.apply()
  dataset = datasets.load(input_flags.one_dataset(), input_flags.DATA_DIR.value)
  paths = dataset.image_paths[:_IMAGES.value]
  loaded = {name: load(name) for name in _BACKBONES.value}
  for name, weights in loaded.items():
    # Compiling, on the batch shape the run uses, is not timed.
    seconds_to_extract(weights, paths[:_BATCH_SIZE.value], _BATCH_SIZE.value, _AUGMENT.value)
  times = {name: [] for name in loaded}
  dims = {}
  for _ in range(_ROUNDS.value):
    for name, weights in loaded.items():
      seconds, dims[name] = seconds_to_extract(weights, paths, _BATCH_SIZE.value, _AUGMENT.value)
      times[name].append(seconds)
      print(f'{name}: {len(paths) / seconds:.2f} images/s', flush=True)
  rows = []
  for name, (params, info) in loaded.items():
    seconds = statistics.median(times[name])
    rows.append({'backbone': name, 'weights': 'random' if name in _RANDOM.value else
                 backbones.get(name).default_weights, 'images': len(paths),
                 'seconds': times[name], 'images_per_s': len(paths) / seconds,
                 'dim': dims[name], 'gflop_per_view': gflop_per_view(jax.device_put(params), info)})
    rows[-1]['ratio'] = rows[-1]['images_per_s'] / rows[0]['images_per_s']
    print(json.dumps(rows[-1]), flush=True)
  device = jax.devices()[0]
  print(f'\n{device.device_kind} ({jax.default_backend()}); {len(paths)} {dataset.name} images, '
        f'batch {_BATCH_SIZE.value}, augment={_AUGMENT.value}, median of {_ROUNDS.value} turns')
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
