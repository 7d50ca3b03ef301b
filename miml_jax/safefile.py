"""Array files in one safe format: safetensors plus string metadata and a SHA-256 of the arrays.

Loading never executes code (no pickle); a file of another format, a damaged or truncated one,
or one whose arrays were changed since it was written is refused with a message naming it.
Weight files (`miml_jax.weights`) and tagger models (`miml_jax.tagger`) are written this way.
"""

import hashlib
import os

import numpy as np
import safetensors
import safetensors.numpy

from miml_jax import atomic
from miml_jax.errors import UserError


def checksum(arrays: dict[str, np.ndarray]) -> str:
  """SHA-256 over names, dtypes, shapes and bytes of the arrays, in name order."""
  digest = hashlib.sha256()
  for name in sorted(arrays):
    arr = np.ascontiguousarray(arrays[name])
    digest.update(f'{name}:{arr.dtype.str}:{arr.shape};'.encode())
    digest.update(arr.tobytes())
  return digest.hexdigest()


def save(path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
  """Writes `arrays` and `metadata` (plus 'sha256') to `path` atomically; returns the checksum."""
  arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
  digest = checksum(arrays)
  with atomic.atomic_path(os.fspath(path), '.safetensors') as tmp:
    safetensors.numpy.save_file(arrays, tmp, metadata={**metadata, 'sha256': digest})
  return digest


def load(path, file_format: str, what: str, hint: str = '') -> tuple[dict, dict]:
  """Reads a file written by `save` with metadata format `file_format`: (arrays, metadata).

  what: names the kind of file in messages ('VGG16 weights file'); hint: how to make a right one.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise UserError(f'{path}: no such {what}{hint}')
  try:
    with safetensors.safe_open(path, framework='numpy') as f:
      metadata = f.metadata() or {}
      arrays = {name: f.get_tensor(name) for name in f.keys()}
  except (safetensors.SafetensorError, OSError, ValueError) as e:
    raise UserError(f'{path}: not a readable safetensors {what} '
                    f'(truncated or another format?): {e}') from None
  if metadata.get('format') != file_format:
    raise UserError(f'{path}: not a miml_jax {what} (format {metadata.get("format")!r}, '
                    f'expected {file_format!r}){hint}')
  if checksum(arrays) != metadata.get('sha256'):
    raise UserError(f'{path}: checksum mismatch: the arrays were changed or damaged after the '
                    f'file was written')
  return arrays, metadata
