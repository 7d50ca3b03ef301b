"""The paper's multi-level features: 4-quadrant max pooling of each resolution group of a
pretrained network (VGG16's pool1..pool5), plus its pre-classifier vector (VGG16's fc7).

Any registered backbone (`miml_jax.backbones`) will do; the weights say which one
(`WeightsInfo.backbone`). For each level output (h, w, c) the image is split into 2x2 bins with
the bounds of adaptive
max pooling (row bin i spans [floor(i*h/2), ceil((i+1)*h/2)), so an odd middle row or column is
shared) and each channel's maximum is taken per bin. A block is laid out `quadrant * c + channel`
with quadrants top-left, top-right, bottom-left, bottom-right. Blocks follow the levels, then
the head: for VGG16 pool1..pool5 and fc7 after its ReLU, 64·4 + 128·4 + 256·4 + 512·4 + 512·4 +
4096 = 9984 dimensions, or 5888 when the weights hold only the convolutions; for
EfficientNet-Lite0 the five stride levels and the pooled 1280-d head, 3328.

Views: features may be averaged over several views of each image, its mirror image
(`augment='flip'`) and several input sizes (`image_size=(224, 320)`). The convolutions and the
quadrant pooling work at any size, so the level blocks are averaged over every view; VGG16's fc7
exists only at 224 and comes from the 224 views (the other heads pool over positions, so they
exist at every size and are averaged over every view). The mirror's top-left quadrant holds the
image's top-right one, mirrored: averaging with the mirror makes the descriptor invariant to
left-right flips.
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

from miml_jax import backbones
from miml_jax import images
from miml_jax import sharding
from miml_jax import weights as weights_lib
from miml_jax.plumbing.errors import UserError

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
AUGMENTS = ('none', 'flip')


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


def layout(head, backbone: str = backbones.DEFAULT) -> FeatureLayout:
  """The feature layout of `backbone`, with its head (VGG16's fc7) or without. head: a bool (or,
  for VGG16 as before backbones, a number of fc layers: fc7 needs >= 2)."""
  net = backbones.get(backbone)
  blocks = [(name, 4 * width) for name, width in net.levels]
  if head and (head is True or head >= 2):
    blocks.append(net.head)
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


def image_features(params, image, *, head, preprocessing, dtype, backbone=backbones.DEFAULT):
  """One image (h, w, 3) uint8 -> (D,) float32 features (`layout(head, backbone)`)."""
  net = backbones.get(backbone)
  x = preprocess(image, preprocessing, dtype)[None]
  _, out = net.build(head, dtype).apply({'params': params}, x)
  blocks = [quadrant_max(out[name][0]) for name, _ in net.levels]
  if head:
    blocks.append(out[net.head[0]][0])
  return jnp.concatenate([b.astype(jnp.float32) for b in blocks])


@functools.partial(jax.jit,
                   static_argnames=('head', 'preprocessing', 'dtype', 'flip', 'backbone'))
def batch_features(params, batch, *, head, preprocessing, dtype=jnp.float32, flip=False,
                   backbone=backbones.DEFAULT):
  """batch: (b, h, w, 3) uint8 -> (b, D) float32. One compile per (b, h, w, dtype, flip).

  head: with the backbone's head (VGG16's fc7; `head_for`). flip: the average of the features of
  each image and of its mirror image.
  """
  per_image = functools.partial(image_features, head=head, preprocessing=preprocessing,
                                dtype=dtype, backbone=backbone)
  if flip:
    batch = jnp.concatenate([batch, batch[:, :, ::-1]])
  feats = jax.vmap(per_image, in_axes=(None, 0))(params, batch)
  return feats.reshape(2, -1, feats.shape[-1]).mean(0) if flip else feats


def resolve_weights(weights):
  """`weights`: a weights file path, or a (params, WeightsInfo) pair as `weights.load` returns."""
  if isinstance(weights, (str, os.PathLike)):
    return weights_lib.load(weights)
  params, info = weights
  return params, info


def image_sizes(image_size) -> tuple[int, ...]:
  """An input size, or several (views at each size): as a tuple of ints."""
  sizes = (image_size,) if np.ndim(image_size) == 0 else tuple(image_size)
  if not sizes or len(set(sizes)) != len(sizes):
    raise UserError(f'image sizes must be one or more different sizes, got {list(sizes)}')
  return tuple(int(s) for s in sizes)


def head_for(info: weights_lib.WeightsInfo, image_size) -> bool:
  """Whether the features have the head: the weights hold it, and it exists at one of the sizes
  (VGG16's fc layers run only at the 224x224 input they were trained on)."""
  net = backbones.get(info.backbone)
  return info.has_head and any(net.head_at(s) for s in image_sizes(image_size))


def feature_layout(info: weights_lib.WeightsInfo, image_size) -> FeatureLayout:
  """The layout of the features of weights `info` at the views of `image_size`."""
  return layout(head_for(info, image_size), info.backbone)


# Five 2x2 poolings need at least 32 pixels; above 2048 one image's first activations alone
# take over a gigabyte.
IMAGE_SIZES = (32, 2048)
BATCH_SIZES = (1, 4096)


def check_sizes(batch_size: int, image_size, dtype: str = 'float32',
                augment: str = 'none') -> None:
  """`UserError` unless the extractor's settings are in range (image_size: one size or several)."""
  if augment not in AUGMENTS:
    raise UserError(f'unknown augment {augment!r}; choose one of {", ".join(AUGMENTS)}')
  if dtype not in DTYPES:
    raise UserError(f'unknown dtype {dtype!r}; choose one of {", ".join(DTYPES)}')
  if not BATCH_SIZES[0] <= batch_size <= BATCH_SIZES[1]:
    raise UserError(f'batch size must be in {BATCH_SIZES[0]}..{BATCH_SIZES[1]}, got {batch_size}')
  for size in image_sizes(image_size):
    if not IMAGE_SIZES[0] <= size <= IMAGE_SIZES[1]:
      raise UserError(f'image size must be in {IMAGE_SIZES[0]}..{IMAGE_SIZES[1]} (five 2x2 '
                      f'poolings need at least 32 pixels), got {size}')


def iter_feature_batches(image_paths: Sequence[str], weights, *, batch_size: int = 32,
                         dtype: str = 'float32', image_size=224, augment: str = 'none',
                         threads: int = 4, progress: bool = False,
                         unreadable=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (indices (b,), features (b, D) float32) batch by batch, in order.

  Images are decoded on `threads` threads while the device computes the previous batch. Every
  batch has the same static shape (the last is padded), so the jitted forward compiles once per
  size. image_size, augment: the views averaged (module docstring).
  unreadable: None to stop at the first image that cannot be read (`UserError` naming it), or
  a function called with (index, UserError) for each such image, which is then left out of the
  batches (a photo library goes on past a bad file).
  """
  check_sizes(batch_size, image_size, dtype, augment)
  sizes = image_sizes(image_size)
  params, info = resolve_weights(weights)
  jdtype = DTYPES[dtype]
  # Several local devices: each takes a slice of every batch (padded to a multiple of them).
  mesh = sharding.local_mesh()
  batch_size = sharding.padded(batch_size, mesh)
  params = jax.tree.map(lambda p: jnp.asarray(p, jdtype), params)
  params = sharding.replicate(params, mesh) if mesh else jax.device_put(params)
  net = backbones.get(info.backbone)
  head = head_for(info, sizes)
  conv_dim = layout(False, info.backbone).dim
  forward = {size: functools.partial(batch_features, head=head and net.head_at(size),
                                     preprocessing=info.preprocessing, dtype=jdtype,
                                     flip=augment == 'flip', backbone=info.backbone)
             for size in sizes}
  n = len(image_paths)
  starts = range(0, n, batch_size)

  def load(path, size):
    try:
      return images.load_image(path, size)
    except UserError as e:
      if unreadable is None:
        raise
      return e

  def load_batch(start):
    paths = image_paths[start:start + batch_size]
    batch, failed = {}, {}
    for size in sizes:
      batch[size] = np.zeros((batch_size, size, size, 3), np.uint8)
      for i, image in enumerate(pool.map(lambda p, s=size: load(p, s), paths)):
        if isinstance(image, UserError):
          failed.setdefault(i, image)
        else:
          batch[size][i] = image
    return batch, failed

  def features_of(batch):
    views = {size: np.asarray(forward[size](params, sharding.shard_leading(batch[size], mesh)))
             for size in sizes}
    if len(sizes) == 1:
      return views[sizes[0]]
    # Level blocks averaged over the sizes; the head over the sizes it exists at (VGG16's fc7:
    # 224 alone).
    heads = [v[:, conv_dim:] for v in views.values() if v.shape[1] > conv_dim]
    out = np.empty((batch_size, conv_dim + (heads[0].shape[1] if heads else 0)), np.float32)
    out[:, :conv_dim] = np.mean([v[:, :conv_dim] for v in views.values()], axis=0)
    if heads:
      out[:, conv_dim:] = np.mean(heads, axis=0)
    return out

  with concurrent.futures.ThreadPoolExecutor(threads) as pool, \
       concurrent.futures.ThreadPoolExecutor(1) as loader, \
       tqdm.tqdm(total=n, unit='img', disable=not progress, desc='features') as bar:
    pending = loader.submit(load_batch, starts[0]) if n else None
    for k, start in enumerate(starts):
      batch, failed = pending.result()
      if k + 1 < len(starts):
        pending = loader.submit(load_batch, starts[k + 1])
      stop = min(start + batch_size, n)
      for i, error in sorted(failed.items()):
        unreadable(start + i, error)
      read = np.array([i for i in range(stop - start) if i not in failed], np.int64)
      feats = features_of(batch)[read] if len(read) else np.empty((0, 0), np.float32)
      bar.update(stop - start)
      if len(read):
        yield start + read, feats


def extract_features(image_paths: Sequence[str], weights, *, batch_size: int = 32,
                     dtype: str = 'float32', image_size=224, augment: str = 'none',
                     progress: bool = False) -> np.ndarray:
  """Multi-level features of the images: (N, D) float32, D as `feature_layout`.

  Args:
    image_paths: N image files (any format Pillow reads), or uint8 image arrays ((h, w, 3) RGB
      or (h, w) grey, e.g. one (N, h, w, 3) array).
    weights: a weights name or file (`miml_jax.weights.load`), or (params, info); they name the
      backbone.
    batch_size: images per device step.
    dtype: 'float32' or 'bfloat16' compute.
    image_size: images are resized to image_size x image_size; VGG16's fc7 needs 224. Several
      sizes (a tuple): features averaged over the sizes (module docstring).
    augment: 'flip' averages each view with its mirror image; 'none'.
  """
  params, info = resolve_weights(weights)
  dim = feature_layout(info, image_size).dim
  out = np.empty((len(image_paths), dim), np.float32)
  for idx, feats in iter_feature_batches(image_paths, (params, info), batch_size=batch_size,
                                         dtype=dtype, image_size=image_size, augment=augment,
                                         progress=progress):
    out[idx] = feats
  return out
