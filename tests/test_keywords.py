"""Keywords in XMP sidecars and embedded XMP/IPTC, read back by readers other than ours: Python's
XML parser always, and exiftool (Debian's libimage-exiftool-perl) where it is installed."""

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from miml_jax.tagging import keywords
from miml_jax.plumbing.errors import UserError
from tests import conftest

pytest.importorskip('exiv2')
EXIFTOOL = shutil.which('exiftool')
NS = {'rdf': 'http://www.w3.org/1999/02/22-rdf-syntax-ns#',
      'dc': 'http://purl.org/dc/elements/1.1/', 'lr': 'http://ns.adobe.com/lightroom/1.0/',
      'digiKam': 'http://www.digikam.org/ns/1.0/', 'xmp': 'http://ns.adobe.com/xap/1.0/'}
# A sidecar as a photo tool leaves it: the user's keywords, a rating, a title, a place.
USERS = '''<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 5.6">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/" xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmp:Rating="4" photoshop:City="Oslo">
   <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li><rdf:li>sea</rdf:li></rdf:Bag></dc:subject>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Beach</rdf:li></rdf:Alt></dc:title>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>places|Norway</rdf:li></rdf:Bag></lr:hierarchicalSubject>
   <digiKam:TagsList><rdf:Seq><rdf:li>places/Norway</rdf:li></rdf:Seq></digiKam:TagsList>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
'''


def _photo(tmp_path, name='photo.jpg'):
  path = tmp_path / name
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), np.uint8)).save(path)
  return str(path)


def _xml_items(path, field):
  """The items of an XMP array field, and its array kind ('Bag' or 'Seq'), parsed as XML."""
  with open(path, 'rb') as f:
    data = f.read()
  start, end = data.find(b'<x:xmpmeta'), data.find(b'</x:xmpmeta>') + len('</x:xmpmeta>')
  root = ET.fromstring(data[start:end])
  found = root.findall(f'.//{field}/*', NS)
  if not found:
    return [], None
  kind = found[0].tag.rsplit('}', 1)[1]
  return [li.text for li in found[0].findall('rdf:li', NS)], kind


def _exiftool(path, *tags):
  out = subprocess.run([EXIFTOOL, '-j', '-struct', *(f'-{t}' for t in tags), path],
                       capture_output=True, text=True, check=True)
  row = json.loads(out.stdout)[0]
  return {t: row.get(t) for t in tags}


def _as_list(v):
  return [] if v is None else v if isinstance(v, list) else [v]


@pytest.mark.slow
def test_a_new_sidecar_holds_the_tags_and_the_image_is_untouched(tmp_path):
  image = _photo(tmp_path)
  before = open(image, 'rb').read()
  assert keywords.write(image, ['sea', 'sky'], prefix='miml')
  sidecar = image + '.xmp'
  assert _xml_items(sidecar, 'dc:subject') == (['sea', 'sky'], 'Bag')
  assert _xml_items(sidecar, 'lr:hierarchicalSubject') == (['miml|sea', 'miml|sky'], 'Bag')
  assert open(image, 'rb').read() == before
  if EXIFTOOL:
    got = _exiftool(sidecar, 'Subject', 'HierarchicalSubject')
    assert _as_list(got['Subject']) == ['sea', 'sky']
    assert _as_list(got['HierarchicalSubject']) == ['miml|sea', 'miml|sky']
  # The same tags again: nothing to change, the file is not rewritten.
  stat = os.stat(sidecar)
  assert not keywords.write(image, ['sea', 'sky'], prefix='miml')
  assert os.stat(sidecar).st_mtime_ns == stat.st_mtime_ns
  assert not [n for n in os.listdir(tmp_path) if n.startswith('.')]   # no temporaries left


@pytest.mark.slow
def test_the_users_keywords_and_fields_are_kept_and_only_ours_are_removed(tmp_path):
  image = _photo(tmp_path)
  sidecar = image + '.xmp'
  with open(sidecar, 'w', encoding='utf-8') as f:
    f.write(USERS)
  # 'sea' is the user's already: kept as theirs; 'sky' is added as ours.
  keywords.write(image, ['sea', 'sky'], prefix='miml')
  assert _xml_items(sidecar, 'dc:subject') == (['holiday', 'sea', 'sky'], 'Bag')
  assert _xml_items(sidecar, 'lr:hierarchicalSubject')[0] == ['places|Norway', 'miml|sky']
  assert _xml_items(sidecar, 'digiKam:TagsList') == (['places/Norway', 'miml/sky'], 'Seq')
  # A new model no longer tags sky (nor sea): sky goes, the user's sea and holiday stay.
  keywords.write(image, [], prefix='miml')
  assert _xml_items(sidecar, 'dc:subject')[0] == ['holiday', 'sea']
  assert _xml_items(sidecar, 'lr:hierarchicalSubject')[0] == ['places|Norway']
  assert _xml_items(sidecar, 'digiKam:TagsList')[0] == ['places/Norway']
  if EXIFTOOL:
    got = _exiftool(sidecar, 'Subject', 'Rating', 'City', 'Title', 'HierarchicalSubject')
    assert got == {'Subject': ['holiday', 'sea'], 'Rating': 4, 'City': 'Oslo',
                   'Title': 'Beach', 'HierarchicalSubject': ['places|Norway']}


def test_a_tag_the_user_deleted_is_not_written_again(tmp_path):
  image = _photo(tmp_path)
  keywords.write(image, ['sea', 'sky'], prefix='miml')
  sidecar = image + '.xmp'
  # The user deletes 'sky' in their photo tool (here: by editing the XMP text of dc:subject).
  text = open(sidecar, encoding='utf-8').read()
  subject = text[text.index('<dc:subject>'):text.index('</dc:subject>')]
  with open(sidecar, 'w', encoding='utf-8') as f:
    f.write(text.replace(subject, subject.replace('<rdf:li>sky</rdf:li>', '')))
  keywords.write(image, ['sea', 'sky'], prefix='miml')
  assert _xml_items(sidecar, 'dc:subject')[0] == ['sea']
  # Gone from the hierarchical keywords too, where other tools would still show it.
  assert _xml_items(sidecar, 'lr:hierarchicalSubject')[0] == ['miml|sea']
  assert keywords.read(sidecar)[keywords.REJECTED] == ['sky']


@pytest.mark.slow
def test_embed_writes_xmp_and_iptc_and_keeps_the_pixels(tmp_path):
  image = _photo(tmp_path)
  pixels = np.asarray(Image.open(image))
  if EXIFTOOL:   # the user's own IPTC keyword, set by another tool
    subprocess.run([EXIFTOOL, '-overwrite_original', '-Keywords=family', image], check=True,
                   capture_output=True)
  keywords.write(image, ['sea', 'a' * 70], embed=True)
  assert not os.path.exists(image + '.xmp')
  mine = ['family'] if EXIFTOOL else []
  # The user's IPTC-only keyword is in dc:subject too: XMP-first readers still show it.
  assert _xml_items(image, 'dc:subject')[0] == mine + ['sea', 'a' * 70]
  np.testing.assert_array_equal(np.asarray(Image.open(image)), pixels)
  read = keywords.read(image)
  assert read[keywords.IPTC_KEYWORDS] == mine + ['sea', 'a' * 64]   # IPTC holds 64 bytes
  if EXIFTOOL:
    got = _exiftool(image, 'Keywords', 'Subject')
    assert got == {'Keywords': ['family', 'sea', 'a' * 64],
                   'Subject': ['family', 'sea', 'a' * 70]}
  keywords.write(image, [], embed=True)
  assert keywords.read(image).get(keywords.IPTC_KEYWORDS, []) == mine


def test_bad_sidecars_and_prefixes_are_named(tmp_path):
  image = _photo(tmp_path)
  with open(image + '.xmp', 'w') as f:
    f.write('not xml at all')
  with pytest.raises(UserError, match='photo.jpg.xmp: cannot read its metadata'):
    keywords.write(image, ['sea'])
  assert open(image + '.xmp').read() == 'not xml at all'
  with pytest.raises(UserError, match="prefix 'a|b' must be"):
    keywords.write(image, ['sea'], prefix='a|b')
  with pytest.raises(UserError, match='no such image'):
    keywords.write(str(tmp_path / 'gone.jpg'), ['sea'])


@pytest.mark.slow
def test_predict_writes_sidecars_and_names_the_ones_it_could_not(tmp_path, small_weights):
  from tests.test_predict_stream import LABELS, _tagger
  folder = tmp_path / 'photos'
  paths = conftest.write_images(folder, 6, np.random.default_rng(2))
  model = _tagger(small_weights, tmp_path / 'm.tagger')
  bad = paths[3] + '.xmp'
  with open(bad, 'w') as f:
    f.write('garbage')
  out = tmp_path / 'tags.csv'
  result = subprocess.run([sys.executable, '-m', 'miml_jax.tag', 'predict', f'--model={model}',
                           f'--weights={small_weights}', '--write=xmp', '--keyword_prefix=miml',
                           f'--output={out}', str(folder)], capture_output=True, text=True,
                          cwd=conftest.REPO)
  assert result.returncode == 1
  assert f'{bad}: cannot read its metadata' in result.stderr
  assert 'keywords not written for 1 of 6 images' in result.stderr
  # The photo whose sidecar was refused gets no row: a rerun tries it again.
  rows = {row.split(',')[0]: row for row in open(out).read().splitlines()[1:]}
  assert sorted(rows) == sorted(p for p in paths if p + '.xmp' != bad)
  assert open(bad).read() == 'garbage'
  for path, row in rows.items():
    probabilities = [float(v) for v in row.split(',')[1:]]
    want = [n for n, p in zip(LABELS, probabilities) if p > 0.5]
    if not want:   # nothing to say: no sidecar made
      assert not os.path.exists(path + '.xmp')
      continue
    assert _xml_items(path + '.xmp', 'dc:subject')[0] == want
    assert _xml_items(path + '.xmp', 'lr:hierarchicalSubject')[0] == [f'miml|{t}' for t in want]
