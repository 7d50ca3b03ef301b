"""Small archives in the official datasets' formats, made by the tests (no network here)."""

import io
import struct
import zlib

import numpy as np
import scipy.io
from PIL import Image


def _rar_block(head_type: int, flags: int, body: bytes, data: bytes = b'') -> bytes:
  rest = struct.pack('<BHH', head_type, flags, 7 + len(body)) + body
  return struct.pack('<H', zlib.crc32(rest) & 0xFFFF) + rest + data


def rar(files: dict[str, bytes]) -> bytes:
  """A RAR 4 archive with uncompressed ('stored') entries, which `rarfile` reads by itself."""
  out = b'Rar!\x1a\x07\x00' + _rar_block(0x73, 0, struct.pack('<HI', 0, 0))
  dos_time = (40 << 25) | (1 << 21) | (1 << 16)   # 2020-01-01
  for name, data in files.items():
    raw = name.encode()
    body = struct.pack('<IIBIIBBHI', len(data), len(data), 3, zlib.crc32(data), dos_time, 20,
                       0x30, len(raw), 0o100644) + raw
    out += _rar_block(0x74, 0x8000, body, data)
  return out + _rar_block(0x7B, 0x4000, b'')


def image_bytes(rng, fmt: str, size=(40, 30)) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(buf, fmt)
  return buf.getvalue()


def scene_archive(rng, n: int = 4) -> tuple[bytes, np.ndarray]:
  """Scene's miml-image-data.rar in miniature: (archive bytes, (n, 5) expected labels)."""
  targets = np.where(rng.random((5, n)) < 0.4, 1, -1)
  mat = io.BytesIO()
  names = np.empty((5, 1), object)
  names[:, 0] = ['desert', 'mountains', 'sea', 'sunset', 'trees']
  scipy.io.savemat(mat, {'targets': targets.astype(float), 'class_name': names})
  original = rar({f'original/{i}.jpg': image_bytes(rng, 'JPEG') for i in range(1, n + 1)})
  processed = rar({'processed/miml data.mat': mat.getvalue()})
  return rar({'original.rar': original, 'processed.rar': processed}), (targets.T > 0)


def msrc_archive(rng, classes_per_image: list[list[int]]) -> bytes:
  """The MSRC v2 zip in miniature: BMP images and colour-coded _GT.bmp segmentations."""
  import zipfile   # pylint: disable=g-import-not-at-top
  from miml_jax.datasets import official   # pylint: disable=g-import-not-at-top
  colours = {k: c for c, k in official.MSRC_COLOURS.items()}
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, 'w') as z:
    for i, classes in enumerate(classes_per_image):
      stem = f'MSRC_ObjCategImageDatabase_v2/Images/1_{i + 1}_s'
      z.writestr(stem + '.bmp', image_bytes(rng, 'BMP'))
      seg = np.zeros((30, 40, 3), np.uint8)   # void
      for k, c in enumerate(classes):
        seg[k * 5:(k + 1) * 5] = colours[c]
      gt = io.BytesIO()
      Image.fromarray(seg).save(gt, 'BMP')
      z.writestr(stem.replace('/Images/', '/GroundTruth/') + '_GT.bmp', gt.getvalue())
  return buf.getvalue()
