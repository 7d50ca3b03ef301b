"""Reads a state dict saved in PyTorch's legacy (pre-1.6, non-zip) format without PyTorch and
without running the pickle: only numpy arrays and plain containers come out.

The legacy file is five pickles in a row — a magic number, the protocol version, system info,
the object itself (whose tensors refer to storages by persistent id), the list of storage keys —
then each storage's raw bytes in that order, each after its element count (int64). The object
pickle is read with an unpickler that knows three globals, as data: `OrderedDict`, the storage
classes (each just a dtype here) and `torch._utils._rebuild_tensor_v2` (a view: offset, shape,
strides into a storage); every other global is refused. The arrays are cut from the storages
once their bytes are read.
"""

import collections
import pickle
import struct

import numpy as np

MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
PROTOCOL_VERSION = 1001
_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}


class _StorageType:
  def __init__(self, dtype):
    self.dtype = np.dtype(dtype)


class _TensorView:
  """A tensor as the pickle describes it: a strided view of one storage."""

  def __init__(self, storage, offset, shape, strides, *_):
    self.key, self.dtype = storage
    self.offset, self.shape, self.strides = int(offset), tuple(shape), tuple(strides)


class _Unpickler(pickle.Unpickler):

  def find_class(self, module, name):
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(_STORAGE_DTYPES[name])
    if (module, name) == ('torch._utils', '_rebuild_tensor_v2'):
      return _TensorView
    raise pickle.UnpicklingError(f'refusing to load {module}.{name}')

  def persistent_load(self, pid):
    # ('storage', storage type, key, location, element count, view metadata)
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != 'storage':
      raise pickle.UnpicklingError(f'unexpected persistent id {pid!r}')
    storage_type, key = pid[1], str(pid[2])
    if not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(f'unexpected storage type {storage_type!r}')
    if len(pid) > 5 and pid[5] is not None:
      raise pickle.UnpicklingError('storage views are not supported')
    return key, storage_type.dtype


def _materialise(value, storages):
  if isinstance(value, _TensorView):
    data = storages[value.key]
    item = value.dtype.itemsize
    end = value.offset + sum((n - 1) * s for n, s in zip(value.shape, value.strides)) + 1
    if min(value.shape, default=1) > 0 and (value.offset < 0 or end > len(data)):
      raise ValueError(f'a tensor reaches past its storage ({end} > {len(data)} elements)')
    view = np.lib.stride_tricks.as_strided(
        data[value.offset:], value.shape, tuple(s * item for s in value.strides), writeable=False)
    return np.array(view)
  if isinstance(value, dict):
    return type(value)((k, _materialise(v, storages)) for k, v in value.items())
  if isinstance(value, (list, tuple)):
    return type(value)(_materialise(v, storages) for v in value)
  return value


def load(path) -> dict:
  """The state dict (name -> numpy array) of a legacy-format PyTorch file. Raises
  `pickle.UnpicklingError` or `ValueError` for anything else (a zip-format file: use
  `torch.load(weights_only=True)`)."""
  with open(path, 'rb') as f:
    safe = lambda: _Unpickler(f).load()
    if safe() != MAGIC_NUMBER:
      raise ValueError('not a legacy PyTorch file (no magic number)')
    if safe() != PROTOCOL_VERSION:
      raise ValueError('unknown legacy PyTorch protocol version')
    safe()   # system info: a dict of plain values
    unpickler = _Unpickler(f)
    result = unpickler.load()
    keys = _Unpickler(f).load()
    if not isinstance(keys, list):
      raise ValueError('no storage key list')
    dtypes = {}
    _collect_dtypes(result, dtypes)
    storages = {}
    for key in keys:
      key = str(key)
      if key not in dtypes:
        raise ValueError(f'storage {key} is used by no tensor')
      (count,) = struct.unpack('<q', f.read(8))
      dtype = dtypes[key]
      raw = f.read(count * dtype.itemsize)
      if count < 0 or len(raw) != count * dtype.itemsize:
        raise ValueError('truncated file: a storage is shorter than its length says')
      storages[key] = np.frombuffer(raw, dtype.newbyteorder('<'))
  missing = set(dtypes) - set(storages)
  if missing:
    raise ValueError(f'storages {sorted(missing)} are missing')
  if not isinstance(result, dict):
    raise ValueError(f'holds a {type(result).__name__}, expected a state dict')
  return dict(_materialise(result, storages))


def _collect_dtypes(value, out):
  if isinstance(value, _TensorView):
    out[value.key] = value.dtype
  elif isinstance(value, dict):
    for v in value.values():
      _collect_dtypes(v, out)
  elif isinstance(value, (list, tuple)):
    for v in value:
      _collect_dtypes(v, out)
