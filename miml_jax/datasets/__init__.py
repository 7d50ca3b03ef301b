"""MIML datasets in the plain layout: `images/` plus `labels.csv`.

    <name>/
      images/        one image file per bag (jpg, png, bmp, ...)
      labels.csv     header: image,<label 1>,<label 2>,...; one row per image, 0/1 per label

A dataset is found by path, or by name in the data folders of `miml_jax.plumbing.home`: the `data_dir`
argument, `$MIML_JAX_DATA`, `~/miml_jax_data`, in that order.
"""

import csv
import dataclasses
import os
import unicodedata

import numpy as np

from miml_jax.plumbing import home
from miml_jax.plumbing.errors import UserError

DATA_ENV = home.DATA_ENV


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A loaded dataset.

  Attributes:
    root: the dataset folder.
    image_names: (n,) file names relative to `root/images`, in labels.csv order.
    label_names: (q,) label names, in column order.
    labels: (n, q) uint8 in {0, 1}.
  """
  root: str
  image_names: tuple[str, ...]
  label_names: tuple[str, ...]
  labels: np.ndarray

  @property
  def name(self) -> str:
    return os.path.basename(os.path.normpath(self.root))

  @property
  def image_paths(self) -> list[str]:
    return [os.path.join(self.root, 'images', n) for n in self.image_names]


def find(name_or_path: str, data_dir: str | None = None) -> str:
  """The folder of a dataset given by path, or by name in the data folders (module docstring)."""
  if os.path.isdir(name_or_path):
    return name_or_path
  looked = [os.path.abspath(name_or_path)]
  if not os.path.isabs(name_or_path):
    for base in home.data_dirs(data_dir):
      candidate = os.path.join(base, name_or_path)
      if os.path.isdir(candidate):
        return candidate
      looked.append(candidate)
  from miml_jax.datasets import fetch   # pylint: disable=g-import-not-at-top
  hint = (f'; get it with `python -m miml_jax.datasets fetch {name_or_path}`'
          if name_or_path in fetch.SOURCES else
          '; a dataset is a folder with images/ and labels.csv')
  raise UserError(f'dataset {name_or_path!r} not found (looked in {", ".join(looked)}){hint}')


def _parse_label(value: str, csv_path: str, line: int, column: str) -> int:
  value = value.strip()
  if value not in ('0', '1'):
    raise UserError(f'{csv_path}:{line}: label {column!r} is {value!r}; labels must be 0 or 1')
  return int(value)


def load(name_or_path: str, data_dir: str | None = None) -> Dataset:
  """Loads and checks a dataset in the plain layout; `UserError` names any problem."""
  root = find(name_or_path, data_dir)
  csv_path = os.path.join(root, 'labels.csv')
  images_dir = os.path.join(root, 'images')
  if not os.path.isfile(csv_path):
    raise UserError(f'{csv_path}: missing; a dataset needs labels.csv '
                    f'(header: image,<label 1>,...; one 0/1 row per image)')
  if not os.path.isdir(images_dir):
    raise UserError(f'{images_dir}: missing; a dataset keeps its images in images/')
  try:
    with open(csv_path, newline='', encoding='utf-8-sig') as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise UserError(f'{csv_path}: cannot read: {e}') from None
  rows = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
  if not rows:
    raise UserError(f'{csv_path}: empty; expected a header image,<label 1>,...')
  (_, header), body = rows[0], rows[1:]
  header = [h.strip() for h in header]
  if len(header) < 2 or header[0].lower() != 'image':
    raise UserError(f'{csv_path}:1: header must be image,<label 1>,<label 2>,...; '
                    f'got {",".join(header)!r}')
  label_names = header[1:]
  if len(set(label_names)) != len(label_names) or not all(label_names):
    raise UserError(f'{csv_path}:1: label names must be non-empty and distinct')
  if not body:
    raise UserError(f'{csv_path}: no images listed; the dataset is empty')
  names, labels, seen, seen_files = [], [], {}, {}
  for line, row in body:
    if len(row) != len(header):
      raise UserError(f'{csv_path}:{line}: {len(row)} columns, expected {len(header)}')
    name = _image_name(row[0], images_dir, csv_path, line)
    key = os.path.normpath(name)
    if key in seen:
      raise UserError(f'{csv_path}:{line}: image {name!r} is listed twice (also on line '
                      f'{seen[key][0]} as {seen[key][1]!r})')
    seen[key] = (line, name)
    # The same file under two names (through symbolic links): one image, one row.
    real = os.path.realpath(os.path.join(images_dir, name))
    if real in seen_files:
      first_line, first = seen_files[real]
      raise UserError(f'{csv_path}:{line}: image {name!r} is the same file as {first!r} on line '
                      f'{first_line} ({real})')
    seen_files[real] = (line, name)
    names.append(name)
    labels.append([_parse_label(v, csv_path, line, c) for v, c in zip(row[1:], label_names)])
  return Dataset(root=root, image_names=tuple(names), label_names=tuple(label_names),
                 labels=np.asarray(labels, dtype=np.uint8))


def _image_name(cell: str, images_dir: str, csv_path: str, line: int) -> str:
  """The image file a labels.csv cell names, relative to images/: as written, else without
  surrounding spaces. `UserError` if it leaves images/ (by its path: a symbolic link in images/
  may point anywhere) or names no file, with the similar names that do exist."""
  for name in dict.fromkeys((cell, cell.strip())):
    path = os.path.normpath(os.path.join(images_dir, name))
    inside = os.path.commonpath([path, os.path.normpath(images_dir)]) == os.path.normpath(
        images_dir)
    if not name.strip() or not inside or path == os.path.normpath(images_dir):
      raise UserError(f'{csv_path}:{line}: image path {cell!r} leaves the images/ folder')
    if os.path.isfile(path):
      return name
  path = os.path.join(images_dir, cell.strip())
  if os.path.isdir(path):
    hint = '; that is a folder, not an image file'
  else:
    similar = _similar_names(path)
    hint = (f'; similar names there: {", ".join(repr(n) for n in similar)} (spaces, Unicode '
            f'normalisation or letter case differ)') if similar else ''
  raise UserError(f'{csv_path}:{line}: image {cell.strip()!r} not found in {images_dir}{hint}')


def _similar_names(path: str, limit: int = 3) -> list[str]:
  """Names in `path`'s folder equal to its own but for spaces, Unicode form or case."""
  folder, base = os.path.split(path)
  key = lambda n: unicodedata.normalize('NFC', n).strip().casefold()
  try:
    entries = os.listdir(folder)
  except OSError:
    return []
  return sorted(n for n in entries if n != base and key(n) == key(base))[:limit]
