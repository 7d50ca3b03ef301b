"""A prediction file written as batches finish, which a rerun continues instead of redoing.

`tag predict --output=FILE.csv|FILE.jsonl` writes the rows of `--format=csv` (a header, then
`image,<probability per label>`) or of `--format=json` (one object per line) for every image,
appending each finished batch and forcing it to disk, so Ctrl-C, SIGTERM, a kill -9 or a power
cut loses at most the batch in flight. Beside it, `FILE.run.json` records the model and weights
the rows came from (with a checksum): a rerun with the same model skips the images already in the
file and appends the rest in the same order, so an interrupted run ends with the file an
uninterrupted one writes; images added to a folder since are tagged on the next run; another
model, or a file whose record is missing or edited, is refused unless `--overwrite`.
"""

import base64
import csv
import io
import json
import os

import numpy as np

from miml_jax.plumbing import cli
from miml_jax.plumbing import safefile
from miml_jax.plumbing.errors import UserError

FORMAT = 'miml_jax.predictions/1'
FORMATS = {'.csv': 'csv', '.jsonl': 'jsonl'}
# File names are kept byte for byte: names that are not UTF-8 round-trip as lone surrogates.
_ENCODING = dict(encoding='utf-8', errors='surrogateescape', newline='')


def format_of(path: str) -> str:
  kind = FORMATS.get(os.path.splitext(path)[1].lower())
  if kind is None:
    raise UserError(f'{path}: the output must end in {" or ".join(FORMATS)} (the format is taken '
                    'from its name)')
  return kind


def record_path(path: str) -> str:
  return f'{path}.run.json'


def rows(paths, probabilities, label_names, tagged, kind: str) -> str:
  """The lines of `kind` ('csv' or 'jsonl') for these images, each ending in a newline."""
  if kind == 'csv':
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    for p, row in zip(paths, probabilities):
      writer.writerow([p, *(f'{v:.4f}' for v in row)])
    return buf.getvalue()
  return ''.join(json.dumps({**cli.json_path(p),
                             'tags': [n for n, t in zip(label_names, on) if t],
                             'probabilities': {n: round(float(v), 4)
                                               for n, v in zip(label_names, row)}},
                            ensure_ascii=False) + '\n'
                 for p, row, on in zip(paths, probabilities, tagged))


def header(label_names, kind: str) -> str:
  """The CSV's header line (as `--format=csv` prints it); JSON lines have none."""
  if kind == 'jsonl':
    return ''
  buf = io.StringIO()
  csv.writer(buf, lineterminator='\n').writerow(['image', *label_names])
  return buf.getvalue()


def _complete_lines(path: str) -> str:
  """The file's text up to its last newline; a partial last row (the run was killed while
  writing it) is cut off the file."""
  with open(path, 'rb') as f:
    data = f.read()
  end = data.rfind(b'\n') + 1
  if end != len(data):
    with open(path, 'r+b') as f:
      f.truncate(end)
  return data[:end].decode('utf-8', 'surrogateescape')


def _done_images(path: str, label_names, kind: str) -> list[str]:
  """The images the file at `path` already holds a row for, checked row by row."""
  return [name for name, _ in _read_rows(path, label_names, kind)]


def _read_rows(path: str, label_names, kind: str, *, cut: bool = True):
  """[(image, probabilities (q,) or None)] of the file's rows (probabilities only for rows that
  hold them all as numbers); cut: drop a partial last row from the file."""
  if cut:
    text = _complete_lines(path)
  else:
    with open(path, 'rb') as f:
      data = f.read()
    text = data[:data.rfind(b'\n') + 1].decode('utf-8', 'surrogateescape')
  if kind == 'csv':
    lines = list(csv.reader(io.StringIO(text, newline='')))
    if not lines:
      return []
    if lines[0] != ['image', *label_names]:
      raise UserError(f'{path}: its header is not this model\'s labels; give another --output '
                      'or --overwrite')
    out = []
    for number, line in enumerate(lines[1:], 2):
      if len(line) != len(label_names) + 1:
        raise UserError(f'{path}: row {number} has {len(line)} fields, expected '
                        f'{len(label_names) + 1}; give another --output or --overwrite')
      out.append((line[0], _numbers(line[1:])))
    return out
  done = []
  for number, line in enumerate(text.splitlines(), 1):
    try:
      row = json.loads(line)
      name = (os.fsdecode(base64.b64decode(row['image_bytes'], validate=True))
              if 'image_bytes' in row else row['image'])
    except (ValueError, KeyError, TypeError):
      raise UserError(f'{path}: line {number} is not a row of predictions; give another '
                      '--output or --overwrite') from None
    given = row.get('probabilities')
    done.append((name, _numbers([given.get(n) for n in label_names])
                 if isinstance(given, dict) else None))
  return done


def _numbers(values):
  try:
    out = np.array([float(v) for v in values])
  except (TypeError, ValueError):
    return None
  return out if np.all((out >= 0) & (out <= 1)) else None


def _check_record(path: str, record: dict, hint: str = '') -> None:
  """`UserError` unless the checked record beside `path` is `record` (its keys that differ named)."""
  found = safefile.load_json(record_path(path), 'prediction record')
  want = json.loads(json.dumps(record))
  changed = sorted(k for k in set(found) | set(want)
                   if k != safefile.KEY and found.get(k) != want.get(k))
  if changed:
    raise UserError(f'{path}: written by another model or weights ({", ".join(changed)} '
                    f'differ){hint}')


def read(path: str, identity: dict, label_names) -> tuple[list[str], np.ndarray]:
  """(images, probabilities (n, q)) of a prediction file written with `identity` (the same
  model and weights), for `tag review --predictions`."""
  path = os.fspath(path)
  kind = format_of(path)
  if not os.path.isfile(path):
    raise UserError(f'{path}: no such prediction file (`tag predict --output` writes one)')
  if not os.path.isfile(record_path(path)):
    raise UserError(f'{path}: not written by `tag predict --output` (no '
                    f'{os.path.basename(record_path(path))} beside it)')
  _check_record(path, {'format': FORMAT, 'kind': kind, **identity})
  rows = _read_rows(path, label_names, kind, cut=False)
  bad = [(number, name) for number, (name, p) in enumerate(rows, 2 if kind == 'csv' else 1)
         if p is None]
  if bad:
    raise UserError(f'{path}:{bad[0][0]}: the row of {bad[0][1]} does not hold a probability '
                    'between 0 and 1 for every label (edited by hand?)')
  if not rows:
    raise UserError(f'{path}: no rows yet')
  return [name for name, _ in rows], np.stack([p for _, p in rows])


class PredictionFile:
  """The output of one model's predictions at `path` (module docstring), opened for appending.

  identity: what the rows depend on (model and weights checksums, label names); a file made
  with another identity is refused. `done`: the images it holds already."""

  def __init__(self, path: str, identity: dict, label_names, *, overwrite: bool = False):
    self.path = os.fspath(path)
    self.kind = format_of(self.path)
    self.label_names = tuple(label_names)
    record = {'format': FORMAT, 'kind': self.kind, **identity}
    exists = os.path.exists(self.path)
    if exists and not overwrite:
      if not os.path.exists(record_path(self.path)):
        raise UserError(f'{self.path} exists and was not written by `tag predict` (no '
                        f'{os.path.basename(record_path(self.path))} beside it); give another '
                        '--output, or --overwrite to replace it')
      _check_record(self.path, record, '; give another --output, or --overwrite to start over')
      self.done = _done_images(self.path, self.label_names, self.kind)
    else:
      self.done = []
    if not exists or overwrite:
      safefile.write_json(record_path(self.path), record)
      try:
        with open(self.path, 'w', **_ENCODING) as f:
          f.write(header(self.label_names, self.kind))
          f.flush()
          os.fsync(f.fileno())
      except OSError as e:
        raise UserError(f'{self.path}: cannot write: {e.strerror or e}') from None
    elif self.kind == 'csv' and os.path.getsize(self.path) == 0:
      with open(self.path, 'w', **_ENCODING) as f:
        f.write(header(self.label_names, self.kind))

  def todo(self, paths) -> list[str]:
    """`paths` without the images already in the file, in their order."""
    done = set(self.done)
    return [p for p in paths if p not in done]

  def append(self, paths, probabilities, tagged) -> None:
    """Appends the rows of one batch and forces them to disk."""
    text = rows(paths, np.asarray(probabilities), self.label_names, tagged, self.kind)
    try:
      with open(self.path, 'a', **_ENCODING) as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
      raise UserError(f'{self.path}: cannot write: {e.strerror or e}') from None
    self.done += list(paths)
