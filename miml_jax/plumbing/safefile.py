"""Files miml_jax reads back, each carrying one SHA-256 over everything in it that it trusts.

Two layouts:
- array files (weights, taggers, resumable parts): safetensors plus string metadata; loading
  never executes code (no pickle);
- JSON results that a later run resumes from or compares (Table 1, Figure 3, C selection).

The recorded `sha256` covers the whole content: every array (name, dtype, shape, bytes) *and*
every metadata field or JSON value — label names, preprocessing, input sizes, augmentation —
because a header edit changes results as surely as an edited weight does. A file of another
format, an older format whose checksum covered less, a damaged or truncated one, or one changed
after it was written is refused with one message naming it.
"""

import hashlib
import json
import os

import numpy as np
import safetensors
import safetensors.numpy

from miml_jax.plumbing import atomic
from miml_jax.plumbing.errors import UserError

KEY = 'sha256'


def _update_metadata(digest, metadata: dict) -> None:
  fields = {k: v for k, v in metadata.items() if k != KEY}
  digest.update(json.dumps(fields, sort_keys=True, ensure_ascii=True).encode())


def _update_arrays(digest, arrays: dict) -> None:
  for name in sorted(arrays):
    arr = np.ascontiguousarray(arrays[name])
    digest.update(f'{name}:{arr.dtype.str}:{arr.shape};'.encode())
    digest.update(arr.tobytes())


def checksum(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
  """SHA-256 over the metadata (every field but `sha256`, as canonical JSON) and the arrays'
  names, dtypes, shapes and bytes, in name order."""
  digest = hashlib.sha256()
  _update_metadata(digest, metadata)
  _update_arrays(digest, arrays)
  return digest.hexdigest()


def save(path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
  """Writes `arrays` and `metadata` (plus 'sha256') to `path` atomically; returns the checksum."""
  arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
  metadata = {k: str(v) for k, v in metadata.items() if k != KEY}
  digest = checksum(arrays, metadata)
  # Serialised here and written by us: safetensors' own save_file writes a temporary file of its
  # own naming (`.tmpXXXXXX`), which a kill -9 would leave where no clean-up can tell it apart.
  data = safetensors.numpy.save(arrays, metadata={**metadata, KEY: digest})
  with atomic.atomic_path(os.fspath(path)) as tmp, open(tmp, 'wb') as f:
    f.write(data)
  return digest


def check_format(path, found, expected: str, what: str, hint: str = '') -> None:
  """`UserError` unless the file's `format` field `found` is `expected` ('kind/version'): an
  older version of the same kind is named as such (its checksum did not cover its header)."""
  if found == expected:
    return
  kind = expected.split('/')[0]
  if isinstance(found, str) and found.split('/')[0] == kind:
    raise UserError(f'{path}: a {what} in an older format ({found}, expected {expected}) whose '
                    f'checksum does not cover its settings, so it cannot be trusted{hint}')
  raise UserError(f'{path}: not a miml_jax {what} (format {found!r}, expected {expected!r})'
                  f'{hint}')


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
  except (safetensors.SafetensorError, OSError, ValueError, TypeError) as e:
    raise UserError(f'{path}: not a readable safetensors {what} '
                    f'(truncated or another format?): {e}') from None
  check_format(path, metadata.get('format'), file_format, what, hint)
  if checksum(arrays, metadata) != metadata.get(KEY):
    raise UserError(f'{path}: checksum mismatch: the {what} was changed or damaged after it '
                    f'was written (its contents are not edited by hand){hint}')
  return arrays, metadata


def _canonical(value) -> bytes:
  return json.dumps(value, sort_keys=True, ensure_ascii=True, allow_nan=False).encode()


def with_checksum(value: dict) -> dict:
  """`value` (a JSON result) with its `sha256` added: the digest of its canonical JSON as it will
  read back (non-finite floats as null, keys as strings)."""
  plain = json.loads(_canonical(atomic.finite({k: v for k, v in value.items() if k != KEY})))
  return {**plain, KEY: hashlib.sha256(_canonical(plain)).hexdigest()}


def write_json(path, value: dict, indent: int = 2) -> str:
  """Writes the JSON result `value` with its checksum (`with_checksum`) atomically."""
  return atomic.write_json(path, with_checksum(value), indent=indent)


def load_json(path, what: str, *, required: bool = True) -> dict:
  """Reads a JSON result written by `write_json`, checked: `UserError` naming the file if it is
  not JSON, not an object, or not what was written (checksum). required=False accepts a result
  written before results carried checksums (no `sha256` at all)."""
  path = os.fspath(path)
  try:
    with open(path, encoding='utf-8') as f:
      value = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise UserError(f'{path}: not a readable JSON {what}: {e}') from None
  if not isinstance(value, dict):
    raise UserError(f'{path}: not a miml_jax {what} (JSON {type(value).__name__}, expected an '
                    f'object)')
  if KEY not in value and not required:
    return value
  recorded = value.get(KEY)
  if recorded is None:
    raise UserError(f'{path}: this {what} carries no checksum, so it cannot be trusted')
  if with_checksum(value)[KEY] != recorded:
    raise UserError(f'{path}: checksum mismatch: the {what} was changed or damaged after it was '
                    f'written')
  return value
