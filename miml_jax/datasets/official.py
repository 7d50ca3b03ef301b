"""The benchmark datasets in their official formats, converted to the plain layout.

Scene (Zhou & Zhang, NIPS 2006; the LAMDA group's `miml-image-data.rar`): a RAR holding
`original.rar` (1.jpg ... 2000.jpg) and `processed.rar` (`miml data.mat`, whose `targets` is a
5 x 2000 matrix of +1/-1). MSRC v2 (Microsoft Research Cambridge's
`msrc_objcategimagedatabase_v2.zip`): `Images/*.bmp` and `GroundTruth/*_GT.bmp`, colour-coded
segmentations; a label is present when its colour occurs. The cleaned-up segmentations of
Malisiewicz & Efros (`<image>_GT.mat` with `newlabels`, the classes present, 1-based) are read
too.

RAR archives are read with `rarfile` (a well-kept pure-Python reader): stored entries it reads by
itself, compressed ones through an unpacker on the PATH (`unrar`, `unar`, `7z` or `bsdtar`).
"""

import csv
import os
import re
import shutil
import tempfile
import zipfile

import numpy as np
from PIL import Image

from miml_jax.plumbing.errors import UserError

SCENE_LABELS = ('desert', 'mountains', 'sea', 'sunset', 'trees')
MSRC_LABELS = ('building', 'grass', 'tree', 'cow', 'horse', 'sheep', 'sky', 'mountain',
               'aeroplane', 'water', 'face', 'car', 'bicycle', 'flower', 'sign', 'bird', 'book',
               'chair', 'road', 'cat', 'dog', 'body', 'boat')
# The segmentations' class colours (RGB); black is void, and colours not listed are ignored.
MSRC_COLOURS = {
    (128, 0, 0): 0, (0, 128, 0): 1, (128, 128, 0): 2, (0, 0, 128): 3, (128, 0, 128): 4,
    (0, 128, 128): 5, (128, 128, 128): 6, (64, 0, 0): 7, (192, 0, 0): 8, (64, 128, 0): 9,
    (192, 128, 0): 10, (64, 0, 128): 11, (192, 0, 128): 12, (64, 128, 128): 13,
    (192, 128, 128): 14, (0, 64, 0): 15, (128, 64, 0): 16, (0, 192, 0): 17, (128, 64, 128): 18,
    (0, 192, 128): 19, (128, 192, 128): 20, (64, 64, 0): 21, (192, 64, 0): 22,
}


def _natural_key(name: str):
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


def _safe_member(dest: str, name: str, archive: str) -> str:
  target = os.path.realpath(os.path.join(dest, name))
  if os.path.isabs(name) or os.path.commonpath([target, os.path.realpath(dest)]) != \
      os.path.realpath(dest):
    raise UserError(f'{archive}: member {name!r} would be written outside the folder it is '
                    f'unpacked into; refusing this archive')
  return target


def unpack(archive: str, dest: str) -> None:
  """Unpacks a .zip or .rar archive into `dest`, refusing members that would leave it."""
  try:
    if zipfile.is_zipfile(archive):
      with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
          _safe_member(dest, name, archive)
        z.extractall(dest)
      return
    import rarfile   # pylint: disable=g-import-not-at-top
    if not rarfile.is_rarfile(archive):
      raise UserError(f'{archive}: neither a ZIP nor a RAR archive')
    with rarfile.RarFile(archive) as r:
      for info in r.infolist():
        _safe_member(dest, info.filename, archive)
      r.extractall(dest)
  except (zipfile.BadZipFile, OSError, EOFError) as e:
    raise UserError(f'{archive}: cannot unpack: {e}') from None
  except Exception as e:  # rarfile's own errors, e.g. no unpacker for compressed entries
    if type(e).__module__ == 'rarfile':
      raise UserError(f'{archive}: cannot unpack: {e} (compressed RAR entries need one of '
                      f'unrar, unar, 7z or bsdtar on the PATH, e.g. `apt install '
                      f'libarchive-tools`)') from None
    raise


def _find(root: str, pattern: str) -> list[str]:
  found = []
  for folder, _, files in os.walk(root):
    found += [os.path.join(folder, f) for f in files if re.fullmatch(pattern, f, re.IGNORECASE)]
  return sorted(found, key=lambda p: _natural_key(os.path.basename(p)))


def scene_targets(mat_path: str) -> tuple[tuple[str, ...], np.ndarray]:
  """Label names and (n, 5) 0/1 labels from Scene's `miml data.mat` (`targets`: 5 x n, ±1)."""
  import scipy.io   # pylint: disable=g-import-not-at-top
  try:
    mat = scipy.io.loadmat(mat_path)
  except (OSError, ValueError, TypeError, NotImplementedError) as e:
    raise UserError(f'{mat_path}: not a readable MATLAB file: {e}') from None
  targets = mat.get('targets')
  if targets is None or targets.ndim != 2 or targets.shape[0] != len(SCENE_LABELS):
    raise UserError(f'{mat_path}: expected a variable targets of shape (5, n) with +1/-1; got '
                    f'{None if targets is None else targets.shape}')
  targets = np.asarray(targets)
  if not np.isin(targets, (-1, 0, 1)).all():
    raise UserError(f'{mat_path}: targets must hold +1 and -1')
  names = SCENE_LABELS
  if 'class_name' in mat:
    try:
      found = tuple(str(np.squeeze(c)) for c in np.ravel(mat['class_name']))
      if len(found) == len(SCENE_LABELS):
        names = found
    except (TypeError, ValueError):
      pass
  return names, (targets.T > 0).astype(np.uint8)


def msrc_segmentation_labels(path: str) -> np.ndarray:
  """(23,) 0/1: the classes present in one segmentation, `_GT.bmp` (colours) or `_GT.mat`."""
  out = np.zeros(len(MSRC_LABELS), np.uint8)
  if path.lower().endswith('.mat'):
    import scipy.io   # pylint: disable=g-import-not-at-top
    try:
      present = np.ravel(scipy.io.loadmat(path)['newlabels']).astype(int)
    except (OSError, ValueError, KeyError, TypeError, NotImplementedError) as e:
      raise UserError(f'{path}: expected a MATLAB file with newlabels: {e}') from None
    if np.any((present < 1) | (present > len(MSRC_LABELS))):
      raise UserError(f'{path}: newlabels must be in 1..{len(MSRC_LABELS)}')
    out[present - 1] = 1
    return out
  try:
    with Image.open(path) as im:
      pixels = np.asarray(im.convert('RGB')).reshape(-1, 3)
  except OSError as e:
    raise UserError(f'{path}: not a readable segmentation image: {e}') from None
  for colour in np.unique(pixels, axis=0):
    k = MSRC_COLOURS.get(tuple(int(c) for c in colour))
    if k is not None:
      out[k] = 1
  return out


def write_plain(root: str, images: list[tuple[str, str]], label_names, labels,
                marker: str | None = None) -> str:
  """Writes a dataset in the plain layout at `root`, all at once (built aside, then renamed).

  images: (source file, name in images/) pairs, in row order; labels: (n, q) 0/1; marker: the
  name of an empty file to put beside labels.csv (says who made the folder).
  """
  parent = os.path.dirname(os.path.abspath(root))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(root)}.', dir=parent)
  try:
    os.makedirs(os.path.join(tmp, 'images'))
    for src, name in images:
      shutil.copyfile(src, os.path.join(tmp, 'images', name))
    with open(os.path.join(tmp, 'labels.csv'), 'w', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(['image', *label_names])
      for (_, name), row in zip(images, labels):
        writer.writerow([name, *map(int, row)])
    if marker is not None:
      open(os.path.join(tmp, marker), 'w').close()
    os.chmod(tmp, 0o755)
    os.replace(tmp, root)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return root


def convert_scene(unpacked: str, root: str) -> str:
  """Scene from its unpacked official archive (nested RARs are unpacked here) to `root`."""
  for inner in _find(unpacked, r'.*\.rar'):
    unpack(inner, os.path.join(os.path.dirname(inner), os.path.basename(inner)[:-4]))
  mats = _find(unpacked, r'miml data\.mat')
  if not mats:
    raise UserError(f'{unpacked}: no "miml data.mat" in the Scene archive')
  names, labels = scene_targets(mats[0])
  jpgs = {os.path.basename(p): p for p in _find(unpacked, r'\d+\.jpg')}
  missing = [f'{i}.jpg' for i in range(1, len(labels) + 1) if f'{i}.jpg' not in jpgs]
  if missing:
    raise UserError(f'{unpacked}: {len(missing)} of the {len(labels)} Scene images are missing '
                    f'(e.g. {missing[0]})')
  images = [(jpgs[f'{i}.jpg'], f'{i}.jpg') for i in range(1, len(labels) + 1)]
  return write_plain(root, images, names, labels)


def convert_msrc(unpacked: str, root: str) -> str:
  """MSRC v2 from its unpacked official archive to `root`: images kept as they are (BMP)."""
  segmentations = {}
  for path in _find(unpacked, r'.*_GT\.(bmp|mat)'):
    stem = os.path.basename(path).rsplit('_GT.', 1)[0]
    # The cleaned-up .mat segmentations win over the original colour maps when both are there.
    if stem not in segmentations or path.lower().endswith('.mat'):
      segmentations[stem] = path
  images = [p for p in _find(unpacked, r'.*\.bmp') if not p.lower().endswith('_gt.bmp')]
  if not images:
    raise UserError(f'{unpacked}: no images (Images/*.bmp) in the MSRC v2 archive')
  rows, labels = [], []
  for path in images:
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem not in segmentations:
      raise UserError(f'{path}: no segmentation {stem}_GT.bmp for this image')
    rows.append((path, os.path.basename(path)))
    labels.append(msrc_segmentation_labels(segmentations[stem]))
  return write_plain(root, rows, MSRC_LABELS, np.stack(labels))
