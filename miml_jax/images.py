"""Image decoding for the extractor: any file Pillow reads becomes uint8 RGB at a fixed size;
and the image files of the folders a command is given."""

import os

import numpy as np
from PIL import Image
from PIL import ImageOps

from miml_jax.plumbing import atomic
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
  except PermissionError as e:
    raise UserError(f'{path}: cannot read image: {e.strerror}') from None
  except (OSError, SyntaxError, ValueError) as e:
    # Pillow reports unreadable and truncated files as OSError (UnidentifiedImageError is one).
    if _apple_double(path):
      raise UserError(f'{path}: cannot read image: it is macOS\'s metadata of '
                      f'{os.path.basename(path)[2:]} (an AppleDouble file), not a photo'
                      ) from None
    raise UserError(f'{path}: cannot read image: {e}') from None
  except Exception as e:   # pylint: disable=broad-except
    # Pillow's decoders meet damaged files with whatever error the damage causes (struct.error,
    # IndexError, EOFError, ...): each is this file's problem, never the library's end.
    raise UserError(f'{path}: cannot read image ({type(e).__name__}: {e})') from None


# The first bytes of an AppleDouble file: what macOS writes as `._<name>` beside a file on a
# disk that cannot hold its extended attributes.
_APPLE_DOUBLE = b'\x00\x05\x16\x07'


def _apple_double(path) -> bool:
  try:
    with open(path, 'rb') as f:
      return os.path.basename(path).startswith('._') and f.read(4) == _APPLE_DOUBLE
  except (OSError, TypeError):
    return False


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp')


def image_files(args, unreadable=None) -> list[str]:
  """Image files named on the command line, folders expanded (sorted, recursively); miml_jax's
  own temporary files (`miml_jax.plumbing.atomic`) are never among them.

  unreadable: None to stop at a folder that cannot be listed (`UserError` naming it), or a
  function called with (None, UserError) for each, which is then passed over.
  """
  out = []
  for arg in args:
    if os.path.isdir(arg):
      def cannot_list(error, arg=arg):
        problem = UserError(f'{error.filename or arg}: cannot list this folder: '
                            f'{error.strerror or error}')
        if unreadable is None:
          raise problem
        unreadable(None, problem)
      found = []
      for path in sorted(os.path.join(d, f) for d, _, files in os.walk(arg, onerror=cannot_list)
                         for f in files
                         if f.lower().endswith(IMAGE_EXTENSIONS) and not atomic.is_temporary(f)):
        # A pipe or device named like a photo would block or never end a read; a link to
        # nowhere has nothing to read.
        if os.path.isfile(path):
          found.append(path)
          continue
        problem = UserError(f'{path}: ' + ('a symbolic link to nowhere' if os.path.islink(path)
                                           and not os.path.exists(path) else
                                           'not a regular file'))
        if unreadable is None:
          raise problem
        unreadable(None, problem)
      if not found:
        raise UserError(f'{arg}: no images ({", ".join(IMAGE_EXTENSIONS)}) in this folder')
      out += found
    elif os.path.isfile(arg):
      out.append(arg)
    else:
      raise UserError(f'{arg}: no such file or folder')
  return out
