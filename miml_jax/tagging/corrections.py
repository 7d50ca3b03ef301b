"""Corrected labels for retraining: a corrections CSV, or keywords edited in a photo tool.

A corrections CSV has the header `image,label,value` and one row per (image, label), value 1 (the
image shows it) or 0 (it does not); `tag review`'s page exports one. An image of the training
dataset gets those labels changed; any other image is added to the training images, and then
needs a row for every label. Later rows win over earlier ones.

One photo is one image however its path is spelled: its name as in labels.csv, a path from the
current folder or an absolute one (the review page exports those), through a symbolic link or
another hard link: each is found by the file it is, so a correction to a dataset's own image
changes its labels (it is never added a second time), and a photo named three ways is added once.

`from_xmp(folder, label_names)` reads the keywords of every image in a folder that has them (its
`.xmp` sidecar, else its own XMP and IPTC): a label is 1 where dc:subject (or an IPTC keyword)
names it, else 0, so keywords added or deleted in digiKam, darktable or Lightroom are
corrections. Keywords are matched to label names whatever their letter case and the spaces
around them ('Sunset ' is the label sunset). Only photos whose label keywords differ from what
`tag predict --write` put there are taken (one of its tags deleted, a label added, or labels of
the user's own); the others hold the model's guesses, not corrections. A photo whose keywords
cannot be read fully is passed over, named in a warning: its labels are not guessed.
"""

import csv
import dataclasses
import os
import unicodedata

import numpy as np

from miml_jax.plumbing.errors import UserError


@dataclasses.dataclass
class Corrections:
  """labels: {image: {label: 0 or 1}}, in the order first seen; source: where they came from;
  lines: {image: the line of its first row} (CSV only); read: every file read to make them."""
  labels: dict
  source: str
  lines: dict = dataclasses.field(default_factory=dict)
  read: list = dataclasses.field(default_factory=list)

  def where(self, image) -> str:
    line = self.lines.get(image)
    return f'{self.source}:{line}' if line else self.source


def read_csv(path: str, label_names) -> Corrections:
  label_names = tuple(label_names)
  try:
    with open(path, newline='', encoding='utf-8-sig', errors='surrogateescape') as f:
      rows = list(csv.reader(f))
  except (OSError, csv.Error) as e:
    raise UserError(f'{path}: cannot read: {e}') from None
  rows = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
  if not rows or [c.strip().lower() for c in rows[0][1]] != ['image', 'label', 'value']:
    raise UserError(f'{path}:1: a corrections file starts with the header image,label,value')
  labels, lines = {}, {}
  for line, row in rows[1:]:
    if len(row) != 3:
      raise UserError(f'{path}:{line}: expected image,label,value, got {len(row)} fields')
    image, label, value = row[0], row[1].strip(), row[2].strip()
    if not image.strip():
      raise UserError(f'{path}:{line}: no image named')
    if label not in label_names:
      raise UserError(f'{path}:{line}: unknown label {label!r}; the labels are '
                      f'{", ".join(label_names)}')
    if value not in ('0', '1'):
      raise UserError(f'{path}:{line}: value must be 0 or 1, got {value!r}')
    labels.setdefault(image, {})[label] = int(value)
    lines.setdefault(image, line)
  if not labels:
    raise UserError(f'{path}: no corrections in it')
  return Corrections(labels, path, lines, [path, *filter(os.path.isfile, labels)])


def _normal(text: str) -> str:
  return unicodedata.normalize('NFC', text).strip().casefold()


def label_matcher(label_names):
  """A function from a keyword to the label it names (None for none): exact, else whatever
  the letter case, spaces around it and Unicode normalisation, where that names one label."""
  exact = set(label_names)
  by_normal = {}
  for name in label_names:
    by_normal.setdefault(_normal(name), []).append(name)

  def match(keyword: str):
    if keyword in exact:
      return keyword
    found = by_normal.get(_normal(keyword), [])
    return found[0] if len(found) == 1 else None
  return match


def from_xmp(folder: str, label_names, unreadable=None) -> Corrections:
  """The keywords of the images of `folder` (and its subfolders) as 0/1 labels. unreadable: a
  function called with (image, UserError) for each image whose keywords cannot be read fully
  (None: raise it)."""
  from miml_jax import images   # pylint: disable=g-import-not-at-top
  from miml_jax.tagging import keywords   # pylint: disable=g-import-not-at-top
  match = label_matcher(label_names)
  labels, read = {}, []
  for image in images.image_files([folder], unreadable=unreadable):
    sidecar = keywords.sidecar_path(image)
    has_sidecar = os.path.exists(sidecar)
    read += [image, sidecar] if has_sidecar else [image]
    try:
      found = keywords.read(sidecar if has_sidecar else image, iptc=not has_sidecar)
    except UserError as e:
      if unreadable is None:
        raise
      unreadable(image, e)
      continue
    named = found.get(keywords.SUBJECT, []) + found.get(keywords.IPTC_KEYWORDS, [])
    subject = {match(k) for k in named} - {None}
    written = set(found.get(keywords.WRITTEN, []))
    # Only photos someone changed: a label keyword we did not write, or one of ours deleted. A
    # sidecar as `tag predict` left it holds the model's guesses, not corrections.
    if subject == written and keywords.REJECTED not in found:
      continue
    labels[image] = {n: int(n in subject) for n in label_names}
  if not labels:
    raise UserError(f'{folder}: no image in it has corrected keywords (sidecars from `tag '
                    'predict --write=xmp`, edited in a photo tool)')
  return Corrections(labels, folder, read=read)


def _identity(path: str):
  try:
    st = os.stat(path)
  except (OSError, ValueError):
    return None
  return (st.st_dev, st.st_ino)


def resolve(corrections: Corrections, image_names, image_paths) -> dict:
  """{key: (labels, image, where)}: key the index of a dataset image, or the identity of a file
  to add (image: its path as first written; where: the file and line that first named it).
  Each correction's image is found by the file it is (module docstring); rows naming one photo
  are merged, later rows winning. `UserError` with the line for an image that is no file."""
  by_name = {n: i for i, n in enumerate(image_names)}
  by_file = {}
  for i, path in enumerate(image_paths):
    by_file.setdefault(_identity(path), i)
  by_file.pop(None, None)
  merged, first = {}, {}
  for image, row in corrections.labels.items():
    key = by_name.get(image, by_name.get(os.path.normpath(image)))
    if key is None:
      if not os.path.isfile(image):
        raise UserError(f'{corrections.where(image)}: {image}: no such image (neither in the '
                        'training dataset nor a file)')
      identity = _identity(image)
      key = by_file.get(identity, identity)
    merged.setdefault(key, {}).update(row)
    first.setdefault(key, (image, corrections.where(image)))
  return {key: (labels, *first[key]) for key, labels in merged.items()}


def apply(corrections: Corrections, image_names, image_paths, Y, label_names):
  """(Y with the corrections of the dataset's images (n, q), the other images' paths (m,),
  their labels (m, q), and {'changed': labels changed, 'added': images added})."""
  label_names = tuple(label_names)
  Y = np.array(Y, copy=True)
  added, added_labels, changed = [], [], 0
  for key, (row, image, where) in resolve(corrections, image_names, image_paths).items():
    columns = [label_names.index(n) for n in row]
    values = list(row.values())
    if isinstance(key, int):
      changed += int(np.sum(Y[key, columns] != values))
      Y[key, columns] = values
      continue
    missing = [n for n in label_names if n not in row]
    if missing:
      raise UserError(f'{where}: {image} is not an image of the training dataset, so it is '
                      f'added to it and needs every label; no value for {", ".join(missing)}')
    added.append(image)
    added_labels.append([row[n] for n in label_names])
  new = np.asarray(added_labels, Y.dtype).reshape(len(added), len(label_names))
  return Y, added, new, {'changed': changed, 'added': len(added)}
