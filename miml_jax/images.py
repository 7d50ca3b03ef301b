"""Image decoding for the extractor: any file Pillow reads becomes uint8 RGB at a fixed size;
and the image files of the folders a command is given."""

import os

import numpy as np
from PIL import Image
from PIL import ImageOps

from miml_jax.plumbing.errors import UserError


def _to_rgb(image: Image.Image) -> Image.Image:
  if image.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
    # 16/32-bit greyscale: Pillow's convert('RGB') clips at 255; scale the range down instead.
    values = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith('I;16') else max(float(values.max()), 1.0)
    grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode='L').convert('RGB')
  return image.convert('RGB')


def from_array(image, size: int = 224) -> np.ndarray:
  """An image given as an array — (h, w, 3) RGB or (h, w) grey, uint8 — resized as files are:
  (size, size, 3) uint8. `UserError` for any other shape or type."""
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
      image.ndim == 3 and image.shape[-1] != 3) or min(image.shape[:2]) < 1:
    raise UserError(f'an image array must be uint8 of shape (h, w, 3) or (h, w), got '
                    f'{image.dtype} {image.shape}')
  pil = Image.fromarray(image).convert('RGB')
  return np.asarray(pil.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def load_image(path, size: int = 224) -> np.ndarray:
  """Decodes `path` to a (size, size, 3) uint8 RGB array (an array instead of a path is resized
  by `from_array`).

  Greyscale, palette, CMYK, RGBA (alpha dropped) and 16-bit images are converted to RGB; EXIF
  orientation is applied; the image is resized with PIL's bilinear filter, as the paper's
  pipeline did. A file that is missing, truncated or not an image raises `UserError` naming it.
  A JPEG at least four times larger than `size` is decoded at a reduced scale (1/2 to 1/8, by
  the decoder's DCT scaling) that keeps it at least 2 x `size`, so memory stays bounded for
  photos of any size; images of the benchmark datasets are never reduced.
  """
  if isinstance(path, np.ndarray):
    return from_array(path, size)
  try:
    with Image.open(path) as image:
      image.draft('RGB', (2 * size, 2 * size))
      image.load()
      image = ImageOps.exif_transpose(image)
      image = _to_rgb(image)
      image = image.resize((size, size), Image.BILINEAR)
      return np.asarray(image, dtype=np.uint8)
  except FileNotFoundError:
    raise UserError(f'{path}: image file not found') from None
  except Image.DecompressionBombError as e:
    raise UserError(f'{path}: image too large to decode safely: {e}') from None
  except (OSError, SyntaxError, ValueError) as e:
    # Pillow reports unreadable and truncated files as OSError (UnidentifiedImageError is one).
    raise UserError(f'{path}: cannot read image: {e}') from None


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp')


def image_files(args) -> list[str]:
  """Image files named on the command line, folders expanded (sorted, recursively)."""
  out = []
  for arg in args:
    if os.path.isdir(arg):
      found = sorted(os.path.join(d, f) for d, _, files in os.walk(arg) for f in files
                     if f.lower().endswith(IMAGE_EXTENSIONS))
      if not found:
        raise UserError(f'{arg}: no images ({", ".join(IMAGE_EXTENSIONS)}) in this folder')
      out += found
    elif os.path.isfile(arg):
      out.append(arg)
    else:
      raise UserError(f'{arg}: no such file or folder')
  return out
