"""Feature files: an HDF5 cache of a dataset's features that survives interruption.

A finished file holds `features` (n, D) float32 (float16 in compact copies for moving them
elsewhere), `labels` (n, q) uint8, `image_names` (n,) and `label_names` (q,), with attributes
naming the backbone (`backbone`; files from before backbones lack it: VGG16), the weights'
checksum, the views (input size or sizes, augmentation), the compute dtype,
the block layout and a digest of what the features depend on (weights, settings, image names
and bytes). Labels are not in that digest: they are read fresh from labels.csv, and a file whose
features are current gets the current labels without extracting anything again. A second
SHA-256 (`sha256`) covers everything the file holds, arrays and attributes: a file changed after
it was written is refused (a cache of ours is extracted again instead).

While extracting, each finished batch is written atomically to `<output>.parts/` as a small
checked file (`miml_jax.plumbing.safefile`); a killed run resumes from those parts and recomputes only
what is missing (and any part that is damaged or from other inputs). The HDF5
file is assembled last, under a temporary name, and renamed into place: a file at `output` is
always complete. A rerun whose inputs digest matches the existing file returns it untouched.
The output is checked first (`miml_jax.plumbing.outputs`): never one of the dataset's files or the
weights, never another program's file unless asked to overwrite it. Ctrl-C or a failed write
ends with the finished batches kept and a message saying how far it got.
"""

import contextlib
import dataclasses
import hashlib
import json
import os

import h5py
import numpy as np
from absl import logging

from miml_jax.plumbing import atomic
from miml_jax import datasets
from miml_jax.plumbing import home
from miml_jax.plumbing import outputs
from miml_jax.plumbing import safefile
from miml_jax.plumbing.errors import Interrupted
from miml_jax.plumbing.errors import UserError
from miml_jax.features import extract
from miml_jax.weights import hub

# /2: the file's checksum covers its arrays and attributes; /1 files are extracted again.
FORMAT = 'miml_jax.features/2'
_PART_FORMAT = 'miml_jax.features_part/1'
KIND = FORMAT.split('/')[0]


@dataclasses.dataclass(frozen=True)
class FeatureFile:
  """A feature file's contents. features: (n, D); labels: (n, q)."""
  features: np.ndarray
  labels: np.ndarray
  image_names: tuple[str, ...]
  label_names: tuple[str, ...]
  attrs: dict

  @property
  def layout(self) -> extract.FeatureLayout:
    return extract.FeatureLayout(tuple((n, int(s)) for n, s in json.loads(self.attrs['layout'])))

  @property
  def backbone(self) -> str:
    """The network the features come from (files from before backbones: VGG16's)."""
    return str(self.attrs.get('backbone', 'vgg16'))


def _inputs_digest(dataset: datasets.Dataset, weights_checksum: str, settings: dict) -> str:
  """What the features depend on: weights, settings, and each image's name and bytes."""
  digest = hashlib.sha256()
  digest.update(json.dumps([FORMAT, weights_checksum, settings], sort_keys=True).encode())
  for name, path in zip(dataset.image_names, dataset.image_paths):
    digest.update(name.encode() + b'\0')
    with open(path, 'rb') as f:
      digest.update(hashlib.sha256(f.read()).digest())
  return digest.hexdigest()


def _read_attrs(path, *keys) -> tuple:
  """The attributes `keys` of the HDF5 file `path` (None for each one missing, or all if the file
  is unreadable)."""
  try:
    with h5py.File(path, 'r') as f:
      return tuple(f.attrs.get(k) for k in keys)
  except OSError:
    return (None,) * len(keys)


def _load_parts(parts_dir: str, n: int, dim: int, key: str):
  """Features already computed by an earlier run on the inputs `key`: (features (n, D), done
  mask (n,)). A part that is damaged, changed or from other inputs is removed and recomputed."""
  feats = np.zeros((n, dim), np.float32)
  done = np.zeros(n, bool)
  for name in sorted(os.listdir(parts_dir)):
    if not name.startswith('part-'):
      continue
    path = os.path.join(parts_dir, name)
    try:
      arrays, meta = safefile.load(path, _PART_FORMAT, 'feature part')
      idx, x = arrays['indices'], arrays['features']
      if (meta.get('inputs_sha256') != key or idx.ndim != 1 or x.shape != (len(idx), dim)
          or x.dtype != np.float32 or idx.min() < 0 or idx.max() >= n
          or not np.all(np.isfinite(x))):
        raise UserError('other inputs, or inconsistent shapes or values')
    except (UserError, KeyError, ValueError) as e:
      logging.warning('%s: damaged part, recomputing its images (%s)', path, e)
      with contextlib.suppress(OSError):
        os.unlink(path)
      continue
    feats[idx] = x
    done[idx] = True
  return feats, done


def views(image_size=224, augment: str = 'none') -> dict:
  """The views a feature file averages, as its settings and attributes record them: image_size
  an int for one size (as files before views had it), else a list; augment only if not 'none'
  (so that earlier files keep their digests)."""
  sizes = extract.image_sizes(image_size)
  out = {'image_size': sizes[0] if len(sizes) == 1 else list(sizes)}
  if augment != 'none':
    out['augment'] = augment
  return out


def views_of(attrs: dict) -> tuple:
  """(image_size, augment) of a feature file's attributes (`views`)."""
  size = attrs.get('image_size', 224)
  if isinstance(size, str):
    size = json.loads(size)
  size = int(size) if np.ndim(size) == 0 else tuple(int(s) for s in size)
  return size, str(attrs.get('augment', 'none'))


def write_feature_file(dataset: datasets.Dataset, weights, output: str, *,
                       batch_size: int = 32, dtype: str = 'float32', image_size=224,
                       augment: str = 'none', progress: bool = True,
                       overwrite: bool = False) -> str:
  """Extracts `dataset`'s features into the HDF5 file `output`, resuming or reusing; returns it.

  weights: a converted weights file path, or (params, WeightsInfo). image_size, augment: the
  views averaged (`extract`). overwrite: replace a file at `output` that is not a feature file
  (by default that is refused, as is an output that is one of the dataset's files or the
  weights).
  """
  output = os.fspath(output)
  extract.check_sizes(batch_size, image_size, dtype, augment)
  inputs = dataset_inputs(dataset)
  if not isinstance(weights, tuple):
    inputs.add(hub.path_of(weights))
  outputs.check_file(output, inputs, kind=KIND, overwrite=overwrite)
  outputs.check_parts_folder(output + '.parts', output)
  params, info = extract.resolve_weights(weights)
  feature_layout = extract.feature_layout(info, image_size)
  # batch_size is left out: features do not depend on it (checked by the tests).
  settings = {**views(image_size, augment), 'dtype': dtype, 'layout': feature_layout.blocks}
  key = _inputs_digest(dataset, info.checksum, settings)
  # A second run on the same output waits here, then finds the first one's file up to date.
  with atomic.exclusive(output + '.lock'):
    atomic.remove_stale_temporaries(*os.path.split(os.path.abspath(output)), locked=True)
    return _write_locked(dataset, params, info, output, key, feature_layout,
                         batch_size=batch_size, dtype=dtype, image_size=image_size,
                         augment=augment, progress=progress)


def dataset_inputs(dataset: datasets.Dataset) -> outputs.Inputs:
  """The files of a dataset, as inputs no output may overwrite."""
  return outputs.Inputs([os.path.join(dataset.root, 'labels.csv'), *dataset.image_paths])


def _with_current_labels(output: str, dataset: datasets.Dataset) -> None:
  """Rewrites the labels of the feature file `output` if labels.csv has changed since."""
  with h5py.File(output, 'r') as f:
    labels = np.asarray(f['labels'])
    names = tuple(s.decode() if isinstance(s, bytes) else s for s in f['label_names'][()])
  if names == tuple(dataset.label_names) and np.array_equal(labels, dataset.labels):
    return
  logging.info('%s: labels.csv changed, labels updated (features reused)', output)
  data = read_feature_file(output)
  save_feature_file(dataclasses.replace(data, labels=dataset.labels,
                                        label_names=tuple(dataset.label_names)), output)


def _write_locked(dataset, params, info, output, key, feature_layout, *, batch_size, dtype,
                  image_size, augment, progress):
  if os.path.exists(output):
    # A compact (float16) copy has the same inputs but not the same values: it is not reused.
    inputs, storage = _read_attrs(output, 'inputs_sha256', 'storage_dtype')
    if inputs == key and storage in (None, 'float32') and _sound(output):
      logging.info('%s: up to date, reused', output)
      _with_current_labels(output, dataset)
      return output
    logging.info('%s: made from other inputs, stored in reduced precision, unreadable or '
                 'changed since it was written; recomputing', output)

  parts_dir = output + '.parts'
  manifest = os.path.join(parts_dir, 'inputs_sha256')
  if os.path.isdir(parts_dir):
    try:
      with open(manifest) as f:
        same = f.read().strip() == key
    except OSError:
      same = False
    if not same:
      outputs.remove_parts_folder(parts_dir)
  if not os.path.isdir(parts_dir):
    os.makedirs(parts_dir)
    with atomic.atomic_path(manifest) as tmp, open(tmp, 'w') as f:
      f.write(key)

  n = len(dataset.image_names)
  feats, done = _load_parts(parts_dir, n, feature_layout.dim, key)
  todo = np.flatnonzero(~done)
  if done.any():
    logging.info('%s: resuming, %d of %d images already done', output, done.sum(), n)
  paths = dataset.image_paths
  batches = extract.iter_feature_batches([paths[i] for i in todo], (params, info),
                                         batch_size=batch_size, dtype=dtype,
                                         image_size=image_size, augment=augment,
                                         progress=progress)
  kept = lambda: f'{int(done.sum())} of {n} images done, kept in {parts_dir}'

  try:
    # Closed on any exit, so that the progress bar ends its line before a message is printed.
    with contextlib.closing(batches):
      for local, x in batches:
        idx = todo[local]
        feats[idx] = x
        safefile.save(os.path.join(parts_dir, f'part-{idx[0]:07d}.safetensors'),
                      {'indices': idx.astype(np.int64), 'features': x.astype(np.float32)},
                      {'format': _PART_FORMAT, 'inputs_sha256': key})
        done[idx] = True
  except KeyboardInterrupt:
    raise Interrupted(f'rerun to resume: {kept()}') from None
  except UserError as e:
    raise UserError(f'{e} ({kept()}; a rerun resumes from them)') from None

  if not np.all(np.isfinite(feats)):
    raise UserError(f'{output}: extraction produced NaN or infinite features; '
                    f'check the weights file')
  try:
    save_feature_file(FeatureFile(feats, dataset.labels, tuple(dataset.image_names),
                                  tuple(dataset.label_names), {
                                      'format': FORMAT,
                                      'dataset': dataset.name,
                                      'weights_sha256': info.checksum,
                                      'weights_source': info.source,
                                      'backbone': info.backbone,
                                      **{k: v if np.ndim(v) == 0 else json.dumps(v)
                                         for k, v in views(image_size, augment).items()},
                                      'dtype': dtype,
                                      'layout': json.dumps(feature_layout.blocks),
                                      'inputs_sha256': key,
                                  }), output)
  except UserError as e:
    raise UserError(f'{e} ({kept()}; a rerun resumes from them)') from None
  outputs.remove_parts_folder(parts_dir)
  return output


# Rows hashed at a time: a checksum of a large file never holds a second copy of it.
_DIGEST_ROWS = 4096
_REMAKE = '; make it again with `python -m miml_jax.features`'
_ARRAYS = ('features', 'labels', 'image_names', 'label_names')


def _plain(value):
  """An HDF5 attribute as the JSON value it hashes as, written or read back alike."""
  if isinstance(value, bytes):
    return value.decode('utf-8', 'surrogateescape')
  if isinstance(value, np.ndarray):
    return [_plain(v) for v in value.tolist()]
  if isinstance(value, np.generic):
    return value.item()
  return value


def _names(values) -> list[str]:
  return [v.decode('utf-8') if isinstance(v, bytes) else str(v) for v in values]


def _file_digest(features, labels, image_names, label_names, attrs: dict) -> str:
  """SHA-256 over everything a feature file holds but its own checksum: the attributes, the names
  and the stored bytes of labels and features (numpy arrays or h5py datasets, read in blocks)."""
  digest = hashlib.sha256()
  fields = {k: _plain(v) for k, v in attrs.items() if k != safefile.KEY}
  digest.update(json.dumps([fields, _names(image_names), _names(label_names)], sort_keys=True,
                           ensure_ascii=True).encode())
  for name, arr in (('labels', labels), ('features', features)):
    digest.update(f'{name}:{arr.dtype.str}:{arr.shape};'.encode())
    for start in range(0, arr.shape[0], _DIGEST_ROWS):
      digest.update(np.ascontiguousarray(arr[start:start + _DIGEST_ROWS]).tobytes())
  return digest.hexdigest()


def save_feature_file(data: FeatureFile, output, storage_dtype: str = 'float32') -> str:
  """Writes `data` to the HDF5 file `output` atomically, with its checksum; returns it.

  storage_dtype='float16' halves the file (for moving features to another machine); readers
  get float32 back, and the file's `storage_dtype` attribute says what it holds (a feature cache
  never takes such a copy for its own file). Values that float16 cannot hold are refused rather
  than stored as inf.
  """
  output = os.fspath(output)
  if not np.all(np.isfinite(data.features)):
    raise UserError(f'{output}: features hold NaN or infinite values')
  with np.errstate(over='ignore'):   # overflow is checked for just below, with a clear error
    features = np.ascontiguousarray(np.asarray(data.features).astype(storage_dtype))
  if not np.all(np.isfinite(features)):
    raise UserError(f'{output}: features exceed the range of {storage_dtype}; store them as '
                    f'float32')
  labels = np.ascontiguousarray(data.labels, np.uint8)
  attrs = {k: v for k, v in data.attrs.items() if k != safefile.KEY}
  # Values once rounded to float16 stay so in a float32 copy of that copy.
  if attrs.get('storage_dtype', 'float32') == 'float32':
    attrs['storage_dtype'] = storage_dtype
  attrs[safefile.KEY] = _file_digest(features, labels, data.image_names, data.label_names, attrs)
  with atomic.atomic_path(output) as tmp:
    with h5py.File(tmp, 'w') as f:
      f.create_dataset('features', data=features)
      f.create_dataset('labels', data=labels)
      f.create_dataset('image_names', data=list(data.image_names), dtype=h5py.string_dtype())
      f.create_dataset('label_names', data=list(data.label_names), dtype=h5py.string_dtype())
      f.attrs.update(attrs)
  return output


def _is_hdf5(path: str) -> bool:
  with open(path, 'rb') as f:
    return f.read(len(outputs.HDF5_SIGNATURE)) == outputs.HDF5_SIGNATURE


def _what(dtype: np.dtype) -> str:
  """A dtype in words, for messages."""
  kinds = {'c': 'complex numbers', 'S': 'byte strings', 'U': 'strings', 'O': 'strings',
           'V': 'compound records', 'b': 'booleans', 'i': 'integers', 'u': 'integers',
           'f': 'floating-point numbers', 'M': 'dates', 'm': 'time spans'}
  return f'{kinds.get(dtype.kind, "values")} ({dtype})'


def _array(f, name: str, path: str, kinds: str, expected: str):
  """The HDF5 dataset `name` of `f`, its dtype's kind checked to be one of `kinds`."""
  node = f.get(name)
  if not isinstance(node, h5py.Dataset):
    raise UserError(f'{path}: holds no {name!r} array (a feature file has '
                    f'{", ".join(_ARRAYS)}){_REMAKE}')
  if node.dtype.kind not in kinds:
    raise UserError(f'{path}: its {name} are {_what(node.dtype)}; a feature file holds '
                    f'{expected}{_REMAKE}')
  if node.ndim != (1 if name.endswith('_names') else 2):
    raise UserError(f'{path}: its {name} have {node.ndim} dimensions, expected '
                    f'{1 if name.endswith("_names") else 2}')
  return node


def read_feature_file(path) -> FeatureFile:
  """Reads and checks a feature file written by `save_feature_file` (`write_feature_file`):
  `UserError` naming the file and what is wrong with it."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise UserError(f'{path}: no such feature file')
  if not _is_hdf5(path):
    raise UserError(f'{path}: not an HDF5 file, so not a feature file{_REMAKE}')
  try:
    with h5py.File(path, 'r') as f:
      attrs = {k: _plain(v) for k, v in f.attrs.items()}
      safefile.check_format(path, attrs.get('format'), FORMAT, 'feature file', _REMAKE)
      stored = _array(f, 'features', path, 'f', 'float32 numbers (float16 in compact copies)')
      features = np.asarray(stored)
      labels = np.asarray(_array(f, 'labels', path, 'iub', '0/1 integers'))
      image_names = _names(_array(f, 'image_names', path, 'SUO', 'strings')[()])
      label_names = _names(_array(f, 'label_names', path, 'SUO', 'strings')[()])
  except OSError as e:
    raise UserError(f'{path}: damaged or truncated feature file ({e}){_REMAKE}') from None
  except UnicodeDecodeError as e:
    raise UserError(f'{path}: names that are not UTF-8 text ({e})') from None
  n = len(image_names)
  if features.shape[0] != n or labels.shape != (n, len(label_names)):
    raise UserError(f'{path}: inconsistent shapes: features {features.shape}, labels '
                    f'{labels.shape}, {n} image names, {len(label_names)} label names')
  if not np.isin(labels, (0, 1)).all():
    raise UserError(f'{path}: labels hold values other than 0 and 1')
  if safefile.KEY not in attrs:
    raise UserError(f'{path}: this feature file carries no checksum, so it cannot be '
                    f'trusted{_REMAKE}')
  if _file_digest(features, labels, image_names, label_names, attrs) != attrs[safefile.KEY]:
    raise UserError(f'{path}: checksum mismatch: the feature file was changed or damaged after '
                    f'it was written (its contents are not edited by hand){_REMAKE}')
  features = features.astype(np.float32, copy=False)
  if not np.all(np.isfinite(features)):
    raise UserError(f'{path}: features hold NaN or infinite values')
  result = FeatureFile(features, labels.astype(np.uint8, copy=False), tuple(image_names),
                       tuple(label_names), attrs)
  try:
    dim = result.layout.dim
  except (KeyError, TypeError, ValueError) as e:
    raise UserError(f'{path}: no readable feature layout ({e!r})') from None
  if dim != features.shape[1]:
    raise UserError(f'{path}: layout says {dim} dimensions, features have {features.shape[1]}')
  return result


def _sound(path: str) -> bool:
  """Whether the feature file at `path` is what was written (its checksum), read in blocks."""
  try:
    with h5py.File(path, 'r') as f:
      attrs = dict(f.attrs.items())
      recorded = _plain(attrs.get(safefile.KEY))
      if _plain(attrs.get('format')) != FORMAT or not all(
          isinstance(f.get(k), h5py.Dataset) for k in _ARRAYS):
        return False
      return recorded == _file_digest(f['features'], f['labels'], f['image_names'][()],
                                      f['label_names'][()], attrs)
  except (OSError, UnicodeDecodeError, ValueError, TypeError):
    return False


def cache_path(dataset: datasets.Dataset, weights, cache_dir=None, *,
               image_size=224, augment: str = 'none') -> str:
  """Where `cached_features` keeps a dataset's features:
  `<cache_dir>/<dataset>_<weights file stem>[_<sizes>][_<augment>].h5` (e.g.
  `scene_vgg16_lpips_224-320_flip.h5`, `scene_efficientnet_lite0_imagenet_flip.h5`); cache_dir
  None: the user cache's `features/`
  (`miml_jax.plumbing.home`). A weights name and its converted file share one feature file."""
  stem = os.path.splitext(os.path.basename(hub.path_of(weights)))[0]
  sizes = extract.image_sizes(image_size)
  size = '' if sizes == (224,) else '_' + '-'.join(map(str, sizes))
  view = '' if augment == 'none' else f'_{augment}'
  folder = home.cache_dir('features') if cache_dir is None else os.fspath(cache_dir)
  return os.path.join(folder, f'{dataset.name}_{stem}{size}{view}.h5')


def cached_features(dataset: datasets.Dataset, weights, cache_dir=None, *,
                    image_size=224, augment: str = 'none') -> FeatureFile:
  """The dataset's features, kept at `cache_path`, extracted only when missing or stale (a
  damaged file there is replaced: the cache folder's files are ours)."""
  path = cache_path(dataset, weights, cache_dir, image_size=image_size, augment=augment)
  return read_feature_file(write_feature_file(dataset, weights, path, image_size=image_size,
                                              augment=augment, overwrite=True))
