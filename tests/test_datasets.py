"""The plain dataset layout: what loads, and the one clear message for what does not."""

import os

import numpy as np
import pytest

from miml_jax import datasets
from miml_jax.plumbing.errors import UserError


def make(root, csv_text, images=('a.png', 'b.png')):
  os.makedirs(root / 'images', exist_ok=True)
  for name in images:
    (root / 'images' / name).write_bytes(b'x')
  (root / 'labels.csv').write_text(csv_text)
  return str(root)


def test_loads_plain_layout(tmp_path):
  root = make(tmp_path / 'd', 'image,sky,sea\na.png,1,0\nb.png,0,1\n')
  ds = datasets.load(root)
  assert ds.image_names == ('a.png', 'b.png') and ds.label_names == ('sky', 'sea')
  np.testing.assert_array_equal(ds.labels, [[1, 0], [0, 1]])
  assert ds.image_paths[0] == os.path.join(root, 'images', 'a.png') and ds.name == 'd'


def test_finds_by_name_under_data_dir_and_env(tmp_path, monkeypatch):
  make(tmp_path / 'mine', 'image,x\na.png,1\nb.png,0\n')
  assert datasets.load('mine', str(tmp_path)).label_names == ('x',)
  monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path))
  assert datasets.load('mine').label_names == ('x',)
  with pytest.raises(UserError, match="dataset 'other' not found"):
    datasets.load('other')


@pytest.mark.parametrize('csv_text,message', [
    ('', 'empty'),
    ('name,x\na.png,1\n', 'header must be image'),
    ('image,x\n', 'no images listed'),
    ('image,x\na.png,1\na.png,0\n', "listed twice"),
    ('image,x\na.png,2\n', "labels must be 0 or 1"),
    ('image,x\na.png,1,0\n', '3 columns, expected 2'),
    ('image,x\nc.png,1\n', "'c.png' not found"),
    ('image,x\n../labels.csv,1\n', 'leaves the images/ folder'),
    ('image,x,x\na.png,1,0\n', 'distinct'),
])
def test_bad_labels_csv_gets_one_clear_message(tmp_path, csv_text, message):
  root = make(tmp_path / 'd', csv_text)
  with pytest.raises(UserError, match=message) as e:
    datasets.load(root)
  assert 'labels.csv' in str(e.value) or 'dataset' in str(e.value)


def test_missing_parts(tmp_path):
  os.makedirs(tmp_path / 'd' / 'images')
  with pytest.raises(UserError, match='labels.csv: missing'):
    datasets.load(str(tmp_path / 'd'))
  (tmp_path / 'e').mkdir()
  (tmp_path / 'e' / 'labels.csv').write_text('image,x\n')
  with pytest.raises(UserError, match='images/'):
    datasets.load(str(tmp_path / 'e'))


@pytest.mark.parametrize('second', ['./a.png', 'sub/../a.png', 'link.png'])
def test_one_image_one_row(tmp_path, second):
  root = make(tmp_path / 'd', f'image,x\na.png,1\nb.png,0\n{second},1\n')
  os.makedirs(tmp_path / 'd' / 'images' / 'sub')
  os.symlink('a.png', tmp_path / 'd' / 'images' / 'link.png')
  with pytest.raises(UserError, match=r'labels.csv:4: .* line 2') as e:
    datasets.load(root)
  assert repr(second) in str(e.value) and "'a.png'" in str(e.value)


def test_an_image_linked_from_outside_is_read(tmp_path):
  elsewhere = tmp_path / 'photos'
  elsewhere.mkdir()
  (elsewhere / 'c.png').write_bytes(b'y')
  root = make(tmp_path / 'd', 'image,x\na.png,1\nc.png,0\n')
  os.symlink(elsewhere / 'c.png', tmp_path / 'd' / 'images' / 'c.png')
  ds = datasets.load(root)
  assert ds.image_names == ('a.png', 'c.png')
  assert open(ds.image_paths[1], 'rb').read() == b'y'


@pytest.mark.parametrize('on_disk,listed,hint', [
    ('c.png ', 'c.png', "'c.png '"),                            # a trailing space on disk
    ('caf\u00e9.png', 'cafe\u0301.png', "'caf\u00e9.png'"),      # NFC on disk, NFD listed
    ('Photo.PNG', 'photo.png', "'Photo.PNG'"),                  # letter case
    ('c.png/', 'c.png', 'that is a folder'),                    # a folder of that name
])
def test_a_missing_image_names_the_similar_ones(tmp_path, on_disk, listed, hint):
  root = make(tmp_path / 'd', f'image,x\na.png,1\n{listed},0\n')
  if on_disk.endswith('/'):
    os.makedirs(tmp_path / 'd' / 'images' / on_disk)
  else:
    (tmp_path / 'd' / 'images' / on_disk).write_bytes(b'z')
  with pytest.raises(UserError, match='labels.csv:3: ') as e:
    datasets.load(root)
  assert 'not found' in str(e.value) and hint in str(e.value)


def test_spaces_around_a_name_are_tolerated(tmp_path):
  root = make(tmp_path / 'd', 'image,x\n a.png ,1\nb.png,0\n')
  assert datasets.load(root).image_names == ('a.png', 'b.png')
