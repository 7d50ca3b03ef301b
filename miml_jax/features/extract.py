"""The paper's multi-level VGG16 features: 4-quadrant max pooling of pool1..pool5, plus fc7.

For each pooling output (h, w, c) the image is split into 2x2 bins with the bounds of adaptive
max pooling (row bin i spans [floor(i*h/2), ceil((i+1)*h/2)), so an odd middle row or column is
shared) and each channel's maximum is taken per bin. A block is laid out `quadrant * c + channel`
with quadrants top-left, top-right, bottom-left, bottom-right. Blocks follow pool1..pool5, then
fc7 after its ReLU: 64·4 + 128·4 + 256·4 + 512·4 + 512·4 + 4096 = 9984 dimensions, or 5888 when
the weights hold only the convolutions.
"""

import concurrent.futures
import dataclasses
import functools
import os
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from miml_jax import images
from miml_jax import sharding
from miml_jax import vgg
from miml_jax import weights as weights_lib
from miml_jax.errors import UserError

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class FeatureLayout:
  """Names and sizes of the feature blocks, in order."""
  blocks: tuple[tuple[str, int], ...]

  @property
  def dim(self) -> int:
    return sum(size for _, size in self.blocks)

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(name for name, _ in self.blocks)

  def offsets(self) -> dict[str, tuple[int, int]]:
    """{block: (start, stop)} column ranges."""
    out, start = {}, 0
    for name, size in self.blocks:
      out[name] = (start, start + size)
      start += size
    return out


def layout(num_fc: int) -> FeatureLayout:
  """The feature layout for weights with `num_fc` fully connected layers (fc7 needs >= 2)."""
  blocks = [(f'pool{g + 1}', 4 * width) for g, width in enumerate(vgg.GROUP_WIDTHS)]
  if num_fc >= 2:
    blocks.append(('fc7', vgg.FC_WIDTHS[1]))
  return FeatureLayout(tuple(blocks))


def _bins(n: int) -> tuple[tuple[int, int], tuple[int, int]]:
  # Adaptive max pooling to 2: bin i spans [floor(i*n/2), ceil((i+1)*n/2)).
  return (0, -(-n // 2)), (n // 2, n)


def quadrant_max(x):
  """x: (h, w, c) -> (4 * c,): per-channel maxima of the 2x2 adaptive bins, quadrant-major."""
  h, w, _ = x.shape
  rows, cols = _bins(h), _bins(w)
  quads = [x[r0:r1, c0:c1].max(axis=(0, 1)) for r0, r1 in rows for c0, c1 in cols]
  return jnp.concatenate(quads)


def preprocess(image, preprocessing: weights_lib.Preprocessing, dtype):
  """image: (h, w, 3) uint8 RGB -> network input in the weights' convention."""
  x = image.astype(jnp.float32)
  if preprocessing.channel_order == 'BGR':
    x = x[..., ::-1]
  x = (x * preprocessing.scale - jnp.asarray(preprocessing.mean)) / jnp.asarray(preprocessing.std)
  return x.astype(dtype)


def image_features(params, image, *, num_fc, preprocessing, dtype):
  """One image (h, w, 3) uint8 -> (D,) float32 features."""
  x = preprocess(image, preprocessing, dtype)[None]
  _, out = vgg.VGG16(num_fc=num_fc, dtype=dtype).apply({'params': params}, x)
  blocks = [quadrant_max(out[f'pool{g + 1}'][0]) for g in range(len(vgg.GROUP_WIDTHS))]
  if num_fc >= 2:
    blocks.append(out['fc7'][0])
  return jnp.concatenate([b.astype(jnp.float32) for b in blocks])


@functools.partial(jax.jit, static_argnames=('num_fc', 'preprocessing', 'dtype'))
def batch_features(params, batch, *, num_fc, preprocessing, dtype=jnp.float32):
  """batch: (b, h, w, 3) uint8 -> (b, D) float32. One compile per (b, h, w, dtype)."""
  per_image = functools.partial(image_features, num_fc=num_fc, preprocessing=preprocessing,
                                dtype=dtype)
  return jax.vmap(per_image, in_axes=(None, 0))(params, batch)


def resolve_weights(weights):
  """`weights`: a weights file path, or a (params, WeightsInfo) pair as `weights.load` returns."""
  if isinstance(weights, (str, os.PathLike)):
    return weights_lib.load(weights)
  params, info = weights
  return params, info


def num_fc_for(info: weights_lib.WeightsInfo, image_size: int) -> int:
  """fc layers run only at the 224x224 input they were trained on; else conv features only."""
  return info.num_fc if image_size == 224 else 0


# Five 2x2 poolings need at least 32 pixels; above 2048 one image's first activations alone
# take over a gigabyte.
IMAGE_SIZES = (32, 2048)
BATCH_SIZES = (1, 4096)


def check_sizes(batch_size: int, image_size: int, dtype: str = 'float32') -> None:
  """`UserError` unless the extractor's settings are in range."""
  if dtype not in DTYPES:
    raise UserError(f'unknown dtype {dtype!r}; choose one of {", ".join(DTYPES)}')
  if not BATCH_SIZES[0] <= batch_size <= BATCH_SIZES[1]:
    raise UserError(f'batch size must be in {BATCH_SIZES[0]}..{BATCH_SIZES[1]}, got {batch_size}')
  if not IMAGE_SIZES[0] <= image_size <= IMAGE_SIZES[1]:
    raise UserError(f'image size must be in {IMAGE_SIZES[0]}..{IMAGE_SIZES[1]} (five 2x2 '
                    f'poolings need at least 32 pixels), got {image_size}')


def iter_feature_batches(image_paths: Sequence[str], weights, *, batch_size: int = 32,
                         dtype: str = 'float32', image_size: int = 224, threads: int = 4,
                         progress: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (indices (b,), features (b, D) float32) batch by batch, in order.

  Images are decoded on `threads` threads while the device computes the previous batch. Every
  batch has the same static shape (the last is padded), so the jitted forward compiles once.
  """
  check_sizes(batch_size, image_size, dtype)
  params, info = resolve_weights(weights)
  jdtype = DTYPES[dtype]
  # Several local devices: each takes a slice of every batch (padded to a multiple of them).
  mesh = sharding.local_mesh()
  batch_size = sharding.padded(batch_size, mesh)
  params = jax.tree.map(lambda p: jnp.asarray(p, jdtype), params)
  params = sharding.replicate(params, mesh) if mesh else jax.device_put(params)
  forward = functools.partial(batch_features, num_fc=num_fc_for(info, image_size),
                              preprocessing=info.preprocessing, dtype=jdtype)
  n = len(image_paths)
  starts = range(0, n, batch_size)

  def load_batch(start):
    batch = np.zeros((batch_size, image_size, image_size, 3), np.uint8)
    paths = image_paths[start:start + batch_size]
    for i, image in enumerate(pool.map(lambda p: images.load_image(p, image_size), paths)):
      batch[i] = image
    return batch

  with concurrent.futures.ThreadPoolExecutor(threads) as pool, \
       concurrent.futures.ThreadPoolExecutor(1) as loader, \
       tqdm.tqdm(total=n, unit='img', disable=not progress, desc='features') as bar:
    pending = loader.submit(load_batch, starts[0]) if n else None
    for k, start in enumerate(starts):
      batch = pending.result()
      if k + 1 < len(starts):
        pending = loader.submit(load_batch, starts[k + 1])
      stop = min(start + batch_size, n)
      feats = np.asarray(forward(params, sharding.shard_leading(batch, mesh)))[:stop - start]
      bar.update(stop - start)
      yield np.arange(start, stop), feats


def extract_features(image_paths: Sequence[str], weights, *, batch_size: int = 32,
                     dtype: str = 'float32', image_size: int = 224,
                     progress: bool = False) -> np.ndarray:
  """Multi-level VGG16 features of the images: (N, D) float32.

  Args:
    image_paths: N image files (any format Pillow reads), or uint8 image arrays ((h, w, 3) RGB
      or (h, w) grey, e.g. one (N, h, w, 3) array).
    weights: a weights name or file (`miml_jax.weights.load`), or (params, info).
    batch_size: images per device step.
    dtype: 'float32' or 'bfloat16' compute.
    image_size: images are resized to image_size x image_size; fc7 needs 224.
  """
  params, info = resolve_weights(weights)
  dim = layout(num_fc_for(info, image_size)).dim
  out = np.empty((len(image_paths), dim), np.float32)
  for idx, feats in iter_feature_batches(image_paths, (params, info), batch_size=batch_size,
                                         dtype=dtype, image_size=image_size, progress=progress):
    out[idx] = feats
  return out
