"""Extraction speed: our jitted extractor against a PyTorch VGG16 computing the same features.

  python -m miml_jax.benchmarks.extract --batch_sizes=8,16 --dtypes=float32 \
      --data=msrc_v2 --data_dir=../shared/datasets --end_to_end_images=64 --output=speed.json

Compute-only figures feed random uint8 images already on the device; the end-to-end figure reads
and resizes real image files too. Random weights with the full fc6/fc7 shapes are used unless
--weights is given (the speed does not depend on the values). Compile time is reported apart.
"""

import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from miml_jax.plumbing import atomic
from miml_jax.plumbing import cli
from miml_jax.plumbing import common_flags
from miml_jax import datasets
from miml_jax.plumbing import input_flags
from miml_jax.plumbing import outputs
from miml_jax.plumbing import runtime_flags
from miml_jax import weights as weights_lib
from miml_jax.plumbing.errors import UserError
from miml_jax.features import extract
from miml_jax.weights import hub

_BATCH_SIZES = flags.DEFINE_list('batch_sizes', ['16'], 'Batch sizes to time.')
_DTYPES = flags.DEFINE_list('dtypes', ['float32'], 'Compute dtypes: float32, bfloat16.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls per setting (median reported).')
_NUM_FC = flags.DEFINE_enum('num_fc', '2', ['0', '2'], 'Random weights: conv only (0) or fc7 (2).')
# Here random weights unless --weights is given (the Flag itself: its holder refuses None).
flags.FLAGS.set_default('weights', None)
_WEIGHTS = flags.FLAGS[input_flags.WEIGHTS.name]
_TORCH = flags.DEFINE_boolean('torch_baseline', True, 'Time PyTorch too, when installed.')
_DATASET, _DATA_DIR = input_flags.DATASET, input_flags.DATA_DIR   # the end-to-end figure's
flags.adopt_module_key_flags(input_flags)
_E2E = flags.DEFINE_integer('end_to_end_images', 64, 'Images for the end-to-end figure.')
_PEAK = flags.DEFINE_float('peak_tflops', None, 'Arithmetic peak of the device, for the '
                           'fraction-of-limit column (e.g. 800 for bf16 on an H200).')
_OUTPUT = common_flags.output('a JSON file of the figures.')
_OVERWRITE = common_flags.overwrite()

FORMAT = 'miml_jax.benchmarks.extract/1'


def vgg16_gflops(image_size=224, num_fc=2):
  """Multiply-adds x 2 of the forward pass, per image."""
  flops, cin, size = 0, 3, image_size
  for width, depth in zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3)):
    for _ in range(depth):
      flops += 2 * size * size * 9 * cin * width
      cin = width
    size //= 2
  if num_fc:
    flops += 2 * (25088 * 4096 + 4096 * 4096)
  return flops / 1e9


def random_weights(num_fc):
  rng = np.random.default_rng(0)
  shapes = weights_lib.expected_shapes(num_fc)
  params = {layer: {k: (rng.standard_normal(s, dtype=np.float32) * 0.01) for k, s in p.items()}
            for layer, p in shapes.items()}
  info = weights_lib.WeightsInfo('random', weights_lib.TORCHVISION,
                                 tuple(shapes), 'random')
  return params, info


def time_calls(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def time_ours(params, info, batch_size, dtype):
  jdtype = extract.DTYPES[dtype]
  device_params = jax.device_put(jax.tree.map(lambda p: jnp.asarray(p, jdtype), params))
  batch = jax.device_put(np.random.default_rng(1).integers(
      0, 256, (batch_size, 224, 224, 3), dtype=np.uint8))
  call = lambda: extract.batch_features(device_params, batch, head=info.has_head,
                                        preprocessing=info.preprocessing, dtype=jdtype)
  start = time.perf_counter()
  jax.block_until_ready(call())
  compile_s = time.perf_counter() - start
  return batch_size / time_calls(call, _REPEATS.value), compile_s


def time_torch(params, num_fc, batch_size, dtype):
  """PyTorch VGG16 (NCHW) producing the same features: pool quadrants + fc7."""
  import torch  # pylint: disable=g-import-not-at-top
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  tdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16}[dtype]
  convs = [(torch.tensor(p['kernel']).permute(3, 2, 0, 1).to(device, tdtype),
            torch.tensor(p['bias']).to(device, tdtype))
           for name, p in params.items() if name.startswith('conv')]
  fcs = [(torch.tensor(params[n]['kernel']).to(device, tdtype),  # (in, out)
          torch.tensor(params[n]['bias']).to(device, tdtype)) for n in ('fc6', 'fc7')[:num_fc]]
  x = torch.randn(batch_size, 3, 224, 224, device=device, dtype=tdtype)
  if device == 'cuda':
    x = x.contiguous(memory_format=torch.channels_last)
  depths = (2, 2, 3, 3, 3)

  @torch.no_grad()
  def forward():
    h, k, blocks = x, 0, []
    for depth in depths:
      for _ in range(depth):
        h = torch.relu(torch.nn.functional.conv2d(h, *convs[k], padding=1))
        k += 1
      h = torch.nn.functional.max_pool2d(h, 2)
      blocks.append(torch.nn.functional.adaptive_max_pool2d(h, 2).flatten(1))
    if fcs:
      v = h.permute(0, 2, 3, 1).flatten(1)
      for w, b in fcs:
        v = torch.relu(v @ w + b)
      blocks.append(v)
    out = torch.cat(blocks, 1)
    if device == 'cuda':
      torch.cuda.synchronize()
    return out

  forward()
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    forward()
    times.append(time.perf_counter() - start)
  return batch_size / statistics.median(times)


def end_to_end(params, info, batch_size):
  dataset = datasets.load(input_flags.one_dataset(), _DATA_DIR.value)
  paths = dataset.image_paths[:_E2E.value]
  # Warm up the compile on the same shapes first; then files -> features.
  extract.extract_features(paths[:1], (params, info), batch_size=batch_size)
  start = time.perf_counter()
  extract.extract_features(paths, (params, info), batch_size=batch_size)
  return len(paths) / (time.perf_counter() - start)


def main(argv):
  cli.no_arguments(argv)
  cli.choices(_DTYPES, tuple(extract.DTYPES))
  for batch_size in _BATCH_SIZES.value:
    if not batch_size.isdigit():
      raise UserError(f'--batch_sizes must hold whole numbers, got {batch_size!r}')
    extract.check_sizes(int(batch_size), 224)
  cli.at_least(_REPEATS, 1)
  cli.at_least(_E2E, 1)
  if _PEAK.value is not None:
    cli.positive(_PEAK)
  if _OUTPUT.value:
    outputs.check_file(_OUTPUT.value,
                       outputs.Inputs([hub.path_of(_WEIGHTS.value)] if _WEIGHTS.value else []),
                       kind=FORMAT.split('/')[0], overwrite=_OVERWRITE.value)
  runtime_flags.apply()
  if _WEIGHTS.value:
    params, info = weights_lib.load(hub.resolve(_WEIGHTS.value))
  else:
    params, info = random_weights(int(_NUM_FC.value))
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    have_torch = _TORCH.value
  except ImportError:
    have_torch = False
  gflops = vgg16_gflops(224, info.num_fc)
  device = jax.devices()[0]
  print(f'device: {device.device_kind} ({jax.default_backend()}), {len(jax.devices())} device(s);'
        f' {gflops:.1f} GFLOP/image; matmul precision: XLA default')
  rows = []
  for dtype in _DTYPES.value:
    for batch_size in map(int, _BATCH_SIZES.value):
      ours, compile_s = time_ours(params, info, batch_size, dtype)
      row = {'dtype': dtype, 'batch_size': batch_size, 'images_per_s': ours,
             'compile_s': compile_s, 'tflops': ours * gflops / 1e3}
      if have_torch:
        row['torch_images_per_s'] = time_torch(params, info.num_fc, batch_size, dtype)
        row['ratio_to_torch'] = ours / row['torch_images_per_s']
      if _PEAK.value:
        row['fraction_of_limit'] = row['tflops'] / _PEAK.value
      rows.append(row)
      print(json.dumps(row))
  result = {'format': FORMAT, 'device': device.device_kind, 'backend': jax.default_backend(),
            'gflop_per_image': gflops, 'num_fc': info.num_fc, 'compute_only': rows}
  if _DATASET.value:
    bs = int(_BATCH_SIZES.value[-1])
    result['end_to_end'] = {'dataset': input_flags.one_dataset(), 'images': _E2E.value,
                            'batch_size': bs,
                            'images_per_s': end_to_end(params, info, bs)}
    print(json.dumps(result['end_to_end']))
  print('\n| dtype | batch | ours img/s | compile s | torch img/s | ratio | TFLOP/s |')
  print('|---|---|---|---|---|---|---|')
  for r in rows:
    print(f"| {r['dtype']} | {r['batch_size']} | {r['images_per_s']:.2f} | {r['compile_s']:.1f} "
          f"| {r.get('torch_images_per_s', float('nan')):.2f} "
          f"| {r.get('ratio_to_torch', float('nan')):.2f} | {r['tflops']:.3f} |")
  if _OUTPUT.value:
    atomic.write_json(_OUTPUT.value, result)


if __name__ == '__main__':
  cli.run(main)
