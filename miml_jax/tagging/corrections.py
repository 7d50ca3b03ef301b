"""Corrected labels for retraining: a corrections CSV, or keywords edited in a photo tool.

A corrections CSV has the header `image,label,value` and one row per (image, label), value 1 (the
image shows it) or 0 (it does not); `tag review`'s page exports one. An image of the training
dataset (its name as in labels.csv) gets those labels changed; any other image (a path, absolute or
from the current folder) is added to the training images, and then needs a row for every label.
Later rows win over earlier ones.

`from_xmp(folder, label_names)` reads the keywords of every image in a folder that has them (its
`.xmp` sidecar, else its own XMP): a label is 1 where dc:subject names it, else 0, so keywords
added or deleted in digiKam, darktable or Lightroom are corrections. Only photos whose label
keywords differ from what `tag predict --write` put there are taken (one of its tags deleted, a
label added, or labels of the user's own); the others hold the model's guesses, not corrections.
"""

import csv
import dataclasses
import os

import numpy as np

from miml_jax.plumbing.errors import UserError


@dataclasses.dataclass
class Corrections:
  """labels: {image: {label: 0 or 1}}, in the order first seen; source: where they came from."""
  labels: dict
  source: str


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
  labels = {}
  for line, row in rows[1:]:
    if len(row) != 3:
      raise UserError(f'{path}:{line}: expected image,label,value, got {len(row)} fields')
    image, label, value = row[0], row[1].strip(), row[2].strip()
    if label not in label_names:
      raise UserError(f'{path}:{line}: unknown label {label!r}; the labels are '
                      f'{", ".join(label_names)}')
    if value not in ('0', '1'):
      raise UserError(f'{path}:{line}: value must be 0 or 1, got {value!r}')
    labels.setdefault(image, {})[label] = int(value)
  if not labels:
    raise UserError(f'{path}: no corrections in it')
  return Corrections(labels, path)


def from_xmp(folder: str, label_names) -> Corrections:
  """The keywords of the images of `folder` (and its subfolders) as 0/1 labels."""
  from miml_jax import images   # pylint: disable=g-import-not-at-top
  from miml_jax.tagging import keywords   # pylint: disable=g-import-not-at-top
  labels = {}
  for image in images.image_files([folder]):
    sidecar = keywords.sidecar_path(image)
    found = keywords.read(sidecar if os.path.exists(sidecar) else image,
                          iptc=not os.path.exists(sidecar))
    subject = set(found.get(keywords.SUBJECT, [])) | set(found.get(keywords.IPTC_KEYWORDS, []))
    written = set(found.get(keywords.WRITTEN, []))
    # Only photos someone changed: a label keyword we did not write, or one of ours deleted. A
    # sidecar as `tag predict` left it holds the model's guesses, not corrections.
    labelled = subject & set(label_names)
    if labelled == written and keywords.REJECTED not in found:
      continue
    labels[image] = {n: int(n in subject) for n in label_names}
  if not labels:
    raise UserError(f'{folder}: no image in it has corrected keywords (sidecars from `tag '
                    'predict --write=xmp`, edited in a photo tool)')
  return Corrections(labels, folder)


def apply(corrections: Corrections, image_names, Y, label_names):
  """(Y with the corrections of the dataset's images (n, q), the other images' paths (m,),
  their labels (m, q), and {'changed': labels changed, 'added': images added})."""
  label_names = tuple(label_names)
  index = {n: i for i, n in enumerate(image_names)}
  Y = np.array(Y, copy=True)
  added, added_labels, changed = [], [], 0
  for image, row in corrections.labels.items():
    columns = [label_names.index(n) for n in row]
    values = list(row.values())
    if image in index:
      i = index[image]
      changed += int(np.sum(Y[i, columns] != values))
      Y[i, columns] = values
      continue
    if not os.path.isfile(image):
      raise UserError(f'{corrections.source}: {image}: no such image (neither in the training '
                      'dataset nor a file)')
    missing = [n for n in label_names if n not in row]
    if missing:
      raise UserError(f'{corrections.source}: {image} is not an image of the training dataset, '
                      f'so it is added to it and needs every label; no value for '
                      f'{", ".join(missing)}')
    added.append(image)
    added_labels.append([row[n] for n in label_names])
  new = np.asarray(added_labels, Y.dtype).reshape(len(added), len(label_names))
  return Y, added, new, {'changed': changed, 'added': len(added)}
