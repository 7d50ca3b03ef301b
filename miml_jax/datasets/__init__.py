"""MIML datasets in the plain layout: `images/` plus `labels.csv`.

    <name>/
      images/        one image file per bag (jpg, png, bmp, ...)
      labels.csv     header: image,<label 1>,<label 2>,...; one row per image, 0/1 per label

A dataset is found by path, or by name under a data folder: the `data_dir` argument, else the
environment variable `MIML_JAX_DATA` (the one variable the library reads).
"""

import csv
import dataclasses
import os

import numpy as np

from miml_jax.errors import UserError

DATA_ENV = 'MIML_JAX_DATA'


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
  """The folder of a dataset given by path or by name under `data_dir` / `$MIML_JAX_DATA`."""
  if os.path.isdir(name_or_path):
    return name_or_path
  base = data_dir or os.environ.get(DATA_ENV)
  if base and os.path.isdir(os.path.join(base, name_or_path)):
    return os.path.join(base, name_or_path)
  where = f'{base!r}' if base else f'nowhere: pass --data_dir or set ${DATA_ENV}'
  raise UserError(f'dataset {name_or_path!r} not found (looked for a folder of that path, and '
                  f'under the data folder {where}); a dataset is a folder with images/ and '
                  f'labels.csv')


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
  names, labels, seen = [], [], {}
  images_real = os.path.realpath(images_dir)
  for line, row in body:
    if len(row) != len(header):
      raise UserError(f'{csv_path}:{line}: {len(row)} columns, expected {len(header)}')
    name = row[0].strip()
    if name in seen:
      raise UserError(f'{csv_path}:{line}: image {name!r} listed twice (first on line '
                      f'{seen[name]})')
    seen[name] = line
    path = os.path.realpath(os.path.join(images_dir, name))
    if os.path.commonpath([path, images_real]) != images_real or not name:
      raise UserError(f'{csv_path}:{line}: image path {name!r} leaves the images/ folder')
    if not os.path.isfile(path):
      raise UserError(f'{csv_path}:{line}: image {name!r} not found in {images_dir}')
    names.append(name)
    labels.append([_parse_label(v, csv_path, line, c) for v, c in zip(row[1:], label_names)])
  return Dataset(root=root, image_names=tuple(names), label_names=tuple(label_names),
                 labels=np.asarray(labels, dtype=np.uint8))
