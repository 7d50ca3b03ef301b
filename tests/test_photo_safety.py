"""A photographer's files are sacred: every case here ends with the user's file byte for byte as
it was, or holding every keyword and title it held, read back by exiftool (with MWG's rules too)
where it is installed as well as by our own reader; and a library run goes past one bad photo.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from miml_jax import images
from miml_jax.plumbing import atomic
from miml_jax.plumbing.errors import UserError
from miml_jax.tagging import corrections
from miml_jax.tagging import keywords
from miml_jax.tagging import review
from tests import conftest
from tests.test_keywords import USERS

pytest.importorskip('exiv2')
EXIFTOOL = shutil.which('exiftool')
needs_exiftool = pytest.mark.skipif(not EXIFTOOL, reason='exiftool is not installed')
XMP_HEADER = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<x:xmpmeta '
              'xmlns:x="adobe:ns:meta/"><rdf:RDF '
              'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n<rdf:Description '
              'rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
              'xmlns:ex="http://example.com/ns/">')
XMP_FOOTER = '</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>\n'


def _photo(folder, name='photo.jpg', seed=0):
  path = os.path.join(folder, name)
  pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), np.uint8)
  Image.fromarray(pixels).save(path)
  return path


def _exiftool(path, *args):
  out = subprocess.run([EXIFTOOL, '-j', '-struct', *args, path], capture_output=True,
                       text=True, check=True)
  return json.loads(out.stdout)[0]


def _set(path, *assignments):
  subprocess.run([EXIFTOOL, '-q', '-overwrite_original', *assignments, path], check=True)


def _listed(value):
  return [] if value is None else value if isinstance(value, list) else [value]


def _bytes(path):
  with open(path, 'rb') as f:
    return f.read()


# 3. Malformed XMP: never replaced by a sidecar holding only our tags.
@pytest.mark.parametrize('text', [
    USERS[:USERS.index('<dc:title>') + 30],                      # cut short mid-title
    USERS.replace('</rdf:Bag></dc:subject>', '</rdf:Bag>'),      # a closing tag missing
    USERS.replace('<rdf:li>holiday</rdf:li>', '<rdf:li>holiday &amp rest</rdf:li>'),
    'not xml at all',
], ids=['cut-short', 'unclosed', 'bad-entity', 'not-xml'])
def test_a_malformed_sidecar_is_left_byte_for_byte(tmp_path, text):
  image = _photo(tmp_path)
  sidecar = image + '.xmp'
  with open(sidecar, 'w', encoding='utf-8') as f:
    f.write(text)
  before = _bytes(sidecar)
  with pytest.raises(UserError, match='photo.jpg.xmp: .*left as it was'):
    keywords.write(image, ['sea'])
  assert _bytes(sidecar) == before
  assert not [n for n in os.listdir(tmp_path) if atomic.is_temporary(n)]


@needs_exiftool
def test_a_photos_malformed_xmp_packet_is_left_byte_for_byte(tmp_path):
  image = _photo(tmp_path)
  _set(image, '-XMP-dc:Subject=holiday', '-XMP-dc:Title=Beach')
  data = _bytes(image)
  end = data.index(b'</x:xmpmeta>')
  broken = data[:end] + b'<oops' + data[end + 5:]   # same length: the JPEG segment stays valid
  with open(image, 'wb') as f:
    f.write(broken)
  with pytest.raises(UserError, match='photo.jpg: cannot read its metadata fully.*left as it was'):
    keywords.write(image, ['sea'], embed=True)
  assert _bytes(image) == broken


@pytest.mark.parametrize('body', [
    '<dc:subject><rdf:Alt><rdf:li xml:lang="x-default">mine</rdf:li></rdf:Alt></dc:subject>',
    '<dc:subject rdf:parseType="Resource"><ex:a>mine</ex:a></dc:subject>',
], ids=['alt', 'struct'])
def test_keywords_that_are_not_a_list_are_left_as_they_are(tmp_path, body):
  image = _photo(tmp_path)
  sidecar = image + '.xmp'
  with open(sidecar, 'w', encoding='utf-8') as f:
    f.write(XMP_HEADER + body + XMP_FOOTER)
  before = _bytes(sidecar)
  with pytest.raises(UserError, match='dc.subject is not a list of keywords.*left as it was'):
    keywords.write(image, ['sea'])
  assert _bytes(sidecar) == before


def test_a_sidecar_without_an_xml_declaration_is_still_merged(tmp_path):
  image = _photo(tmp_path)
  body = USERS[USERS.index('<x:xmpmeta'):USERS.index('<?xpacket end')]
  with open(image + '.xmp', 'w', encoding='utf-8') as f:
    f.write(body)
  assert keywords.write(image, ['sky'])
  found = keywords.read(image + '.xmp')
  assert found[keywords.SUBJECT] == ['holiday', 'sea', 'sky']


@needs_exiftool
def test_a_rich_sidecar_keeps_every_property(tmp_path):
  """Titles in two languages, a description with markup characters, the edit history (a Seq of
  structs), face regions (nested structs), develop settings as attributes."""
  image = _photo(tmp_path)
  rich = os.path.join(os.path.dirname(__file__), 'data', 'rich.xmp')
  shutil.copy(rich, image + '.xmp')
  before = _exiftool(image + '.xmp', '-XMP:all')
  assert keywords.write(image, ['sea'], prefix='miml')
  after = _exiftool(image + '.xmp', '-XMP:all')
  for key, value in before.items():
    if key in ('Subject', 'TagsList', 'HierarchicalSubject'):
      assert set(_listed(value)) <= set(_listed(after[key]))
    elif key not in ('SourceFile', 'XMPToolkit'):   # the toolkit: who wrote it last
      assert after.get(key) == value, key
  assert 'sea' in after['Subject'] and 'miml|sea' in after['HierarchicalSubject']


# 4. IPTC-only keywords: a merge starts from what the photo has.
@needs_exiftool
def test_embedding_keeps_keywords_that_live_only_in_iptc(tmp_path):
  image = _photo(tmp_path)
  _set(image, '-IPTC:Keywords=family', '-IPTC:Keywords=dog', '-IPTC:Caption-Abstract=Our dog')
  keywords.write(image, ['sea'], embed=True)
  # Every reader sees the user's keywords: XMP-first (MWG's rules), IPTC, XMP.
  assert _exiftool(image, '-use', 'MWG', '-Keywords')['Keywords'] == ['family', 'dog', 'sea']
  got = _exiftool(image, '-IPTC:Keywords', '-XMP-dc:Subject', '-IPTC:Caption-Abstract')
  assert got['Keywords'] == ['family', 'dog', 'sea']
  assert got['Subject'] == ['family', 'dog', 'sea'] and got['Caption-Abstract'] == 'Our dog'
  assert keywords.read(image)[keywords.SUBJECT] == ['family', 'dog', 'sea']


@needs_exiftool
def test_latin1_iptc_keywords_are_kept_byte_for_byte(tmp_path):
  """Older tools wrote IPTC in Latin-1 without saying so: such a keyword stays as it was in
  IPTC, and reaches dc:subject as the text it is."""
  image = _photo(tmp_path)
  _set(image, '-charset', 'iptc=Latin', '-charset', 'Latin', '-IPTC:Keywords=caf\xe9'.encode(
      'latin-1'))
  keywords.write(image, ['sea'], embed=True)
  assert _exiftool(image, '-charset', 'iptc=Latin', '-IPTC:Keywords')['Keywords'] == [
      'caf\xe9', 'sea']
  assert _exiftool(image, '-XMP-dc:Subject')['Subject'] == ['caf\xe9', 'sea']
  assert b'caf\xe9' in _bytes(image)   # the IPTC dataset itself, untouched


@needs_exiftool
def test_a_tag_deleted_in_an_iptc_only_tool_is_not_written_back(tmp_path):
  image = _photo(tmp_path)
  keywords.write(image, ['sea', 'sky'], embed=True)
  _set(image, '-IPTC:Keywords-=sky')           # an older tool that edits IPTC alone
  keywords.write(image, ['sea', 'sky'], embed=True)
  got = _exiftool(image, '-IPTC:Keywords', '-XMP-dc:Subject', '-HierarchicalSubject')
  assert _listed(got['Keywords']) == ['sea'] and got['Subject'] == ['sea']
  assert _listed(got['HierarchicalSubject']) == ['sea']
  # A keyword the user added there is a keyword in XMP too.
  _set(image, '-IPTC:Keywords+=walk')
  keywords.write(image, ['sea', 'sky'], embed=True)
  assert _exiftool(image, '-use', 'MWG', '-Keywords')['Keywords'] == ['walk', 'sea']


@needs_exiftool
def test_a_users_keyword_deleted_in_an_xmp_only_tool_stays_deleted(tmp_path):
  image = _photo(tmp_path)
  _set(image, '-IPTC:Keywords=holiday', '-XMP-dc:Subject=holiday')
  keywords.write(image, ['sea'], embed=True)
  _set(image, '-XMP-dc:Subject-=holiday')
  keywords.write(image, ['sea'], embed=True)
  assert _listed(_exiftool(image, '-IPTC:Keywords')['Keywords']) == ['sea']


@needs_exiftool
@pytest.mark.parametrize('ext', ['jpg', 'png', 'tif', 'webp'])
def test_embedding_in_each_format_keeps_pixels_and_fields(tmp_path, ext):
  """TIFF keeps XMP and IPTC in Exif tags of its own, WebP has no IPTC: each is written, read
  back, and written again idempotently."""
  image = _photo(tmp_path, f'photo.{ext}')
  pixels = np.asarray(Image.open(image).convert('RGB'))
  _set(image, '-XMP-dc:Subject=holiday', '-XMP-dc:Title=Beach')
  assert keywords.write(image, ['sea'], embed=True)
  assert not keywords.write(image, ['sea'], embed=True)
  got = _exiftool(image, '-XMP-dc:Subject', '-XMP-dc:Title', '-IPTC:Keywords')
  assert got['Subject'] == ['holiday', 'sea'] and got['Title'] == 'Beach'
  assert _listed(got.get('Keywords')) == ([] if ext == 'webp' else ['holiday', 'sea'])
  np.testing.assert_array_equal(np.asarray(Image.open(image).convert('RGB')), pixels)


@pytest.mark.parametrize('ext', ['gif', 'bmp'])
def test_a_format_exiv2_cannot_write_is_refused_and_kept(tmp_path, ext):
  image = _photo(tmp_path, f'photo.{ext}')
  before = _bytes(image)
  with pytest.raises(UserError, match='not supported.*left as it was'):
    keywords.write(image, ['sea'], embed=True)
  assert _bytes(image) == before
  assert keywords.write(image, ['sea'])   # a sidecar serves instead


# 5. Links: written through to the file a symbolic link names; hard links refused.
@needs_exiftool
def test_embed_writes_through_a_symbolic_link(tmp_path):
  os.makedirs(tmp_path / 'library')
  real = _photo(tmp_path / 'library')
  link = tmp_path / 'album.jpg'
  os.symlink(real, link)
  assert keywords.write(str(link), ['sea'], embed=True)
  assert os.path.islink(link) and os.readlink(link) == real
  assert _listed(_exiftool(real, '-XMP-dc:Subject')['Subject']) == ['sea']


def test_a_photo_with_hard_links_is_refused_and_kept(tmp_path):
  image = _photo(tmp_path)
  os.link(image, tmp_path / 'other.jpg')
  before = _bytes(image)
  with pytest.raises(UserError, match='has 2 hard links.*left as it was'):
    keywords.write(image, ['sea'], embed=True)
  assert _bytes(image) == before and os.stat(image).st_nlink == 2


def test_a_read_only_photo_or_sidecar_is_left_as_it_is(tmp_path):
  image = _photo(tmp_path)
  keywords.write(image, ['sea'])
  for path in (image, image + '.xmp'):
    os.chmod(path, 0o444)
  before = {p: _bytes(p) for p in (image, image + '.xmp')}
  for embed in (True, False):
    with pytest.raises(UserError, match='is read-only; left as it was'):
      keywords.write(image, ['sky'], embed=embed)
  assert {p: _bytes(p) for p in before} == before


def test_a_symlinked_sidecar_stays_a_link_to_the_updated_file(tmp_path):
  image = _photo(tmp_path)
  os.makedirs(tmp_path / 'sidecars')
  target = tmp_path / 'sidecars' / 'photo.xmp'
  target.write_text(USERS, encoding='utf-8')
  os.symlink(target, image + '.xmp')
  assert keywords.write(image, ['sky'])
  assert os.path.islink(image + '.xmp')
  assert keywords.read(str(target))[keywords.SUBJECT] == ['holiday', 'sea', 'sky']


def test_a_sidecar_link_to_nowhere_is_refused(tmp_path):
  image = _photo(tmp_path)
  os.symlink(tmp_path / 'gone.xmp', image + '.xmp')
  with pytest.raises(UserError, match='a symbolic link to nowhere'):
    keywords.write(image, ['sea'])
  assert os.path.islink(image + '.xmp') and not os.path.exists(tmp_path / 'gone.xmp')


@pytest.mark.skipif(not hasattr(os, 'setxattr'), reason='no extended attributes here')
def test_mode_and_extended_attributes_are_kept(tmp_path):
  image = _photo(tmp_path)
  os.chmod(image, 0o640)
  try:
    os.setxattr(image, 'user.finder.tags', b'red')
  except OSError:
    pytest.skip('this file system keeps no user extended attributes')
  keywords.write(image, ['sea'], embed=True)
  assert os.stat(image).st_mode & 0o777 == 0o640
  assert os.getxattr(image, 'user.finder.tags') == b'red'


def test_a_file_name_that_is_not_utf8(tmp_path):
  name = os.fsdecode(b'caf\xe9.jpg')
  image = _photo(tmp_path, name)
  assert keywords.write(image, ['sea'], embed=True)
  assert keywords.write(image, ['sky'])
  assert keywords.read(image)[keywords.SUBJECT] == ['sea']
  assert keywords.read(image + '.xmp')[keywords.SUBJECT] == ['sky']


# The rest of the class: hierarchies, prefixes.
def test_a_new_prefix_replaces_the_old_hierarchical_keywords(tmp_path):
  image = _photo(tmp_path)
  keywords.write(image, ['sea'], prefix='old')
  keywords.write(image, ['sea'], prefix='new')
  found = keywords.read(image + '.xmp')
  assert found[keywords.HIERARCHICAL] == ['new|sea'] and found[keywords.DIGIKAM] == ['new/sea']
  keywords.write(image, ['sea'])
  found = keywords.read(image + '.xmp')
  assert found[keywords.HIERARCHICAL] == ['sea'] and found[keywords.DIGIKAM] == ['sea']


def test_a_separator_inside_a_label_stays_inside_its_keyword(tmp_path):
  image = _photo(tmp_path)
  keywords.write(image, ['a/b', 'c|d'], prefix='miml')
  found = keywords.read(image + '.xmp')
  assert found[keywords.SUBJECT] == ['a/b', 'c|d']
  assert found[keywords.HIERARCHICAL] == ['miml|a/b', 'miml|c\N{BROKEN BAR}d']
  assert found[keywords.DIGIKAM] == ['miml/a\N{DIVISION SLASH}b', 'miml/c|d']


@needs_exiftool
def test_every_tool_reads_our_tags_and_the_users(tmp_path):
  """The fields of the interoperability table in the docs, read back by exiftool."""
  image = _photo(tmp_path)
  sidecar = image + '.xmp'
  with open(sidecar, 'w', encoding='utf-8') as f:
    f.write(USERS.replace('<digiKam:TagsList><rdf:Seq><rdf:li>places/Norway</rdf:li></rdf:Seq>'
                          '</digiKam:TagsList>', ''))
  keywords.write(image, ['sky'], prefix='miml')
  got = _exiftool(sidecar, '-Subject', '-HierarchicalSubject', '-TagsList')
  assert got['Subject'] == ['holiday', 'sea', 'sky']
  assert got['HierarchicalSubject'] == ['places|Norway', 'miml|sky']
  # A tags list the file did not have starts with the user's keywords: digiKam and Immich read
  # it first, and still show them.
  assert got['TagsList'] == ['places/Norway', 'holiday', 'sea', 'miml/sky']
  embedded = _photo(tmp_path, 'embedded.jpg')
  keywords.write(embedded, ['sky'], prefix='miml', embed=True)
  got = _exiftool(embedded, '-XMP-dc:Subject', '-HierarchicalSubject', '-TagsList',
                  '-IPTC:Keywords')
  assert {k: _listed(v) for k, v in got.items() if k != 'SourceFile'} == {
      'Subject': ['sky'], 'HierarchicalSubject': ['miml|sky'], 'TagsList': ['miml/sky'],
      'Keywords': ['sky']}
  assert _listed(_exiftool(embedded, '-use', 'MWG', '-Keywords')['Keywords']) == ['sky']


@needs_exiftool
def test_a_new_sidecar_starts_from_the_photos_own_metadata(tmp_path):
  """Tools that read a photo's sidecar instead of the photo still show its keywords and title."""
  image = _photo(tmp_path)
  _set(image, '-XMP-dc:Subject=holiday', '-XMP-dc:Title=Beach', '-IPTC:Keywords=family',
       '-XMP:Rating=4')
  before = _bytes(image)
  keywords.write(image, ['sea'], prefix='miml')
  got = _exiftool(image + '.xmp', '-Subject', '-Title', '-Rating', '-HierarchicalSubject')
  assert got['Subject'] == ['holiday', 'family', 'sea'] and got['Title'] == 'Beach'
  assert got['Rating'] == 4 and got['HierarchicalSubject'][-1] == 'miml|sea'
  assert _bytes(image) == before   # --write=xmp never touches the photo


def test_a_sidecar_of_the_users_without_tags_of_ours_is_not_touched(tmp_path):
  image = _photo(tmp_path)
  with open(image + '.xmp', 'w', encoding='utf-8') as f:
    f.write(USERS)
  before = _bytes(image + '.xmp')
  assert not keywords.write(image, [])
  assert _bytes(image + '.xmp') == before


# 8. Temporaries never look like photos, and the next run removes them.
def test_temporaries_are_never_taken_for_photos(tmp_path):
  _photo(tmp_path)
  dead = atomic.temporary_name('photo.jpg').replace(f'-{os.getpid()}-', '-999999999-')
  older = '.photo.jpg.abcd_123.tmp.jpg'   # as releases before this one named them
  for name in (dead, older):
    shutil.copy(tmp_path / 'photo.jpg', tmp_path / name)
  os.utime(tmp_path / older, (time.time() - 7200,) * 2)
  assert images.image_files([str(tmp_path)]) == [str(tmp_path / 'photo.jpg')]
  assert atomic.remove_stale_temporaries(str(tmp_path)) == 2
  assert os.listdir(tmp_path) == ['photo.jpg']


def test_a_live_writers_temporary_is_kept(tmp_path):
  live = tmp_path / atomic.temporary_name('photo.jpg')   # this process: alive
  live.write_bytes(b'')
  assert atomic.remove_stale_temporaries(str(tmp_path)) == 0 and live.exists()


# 6. One photo is one image, however its path is spelled.
def test_corrections_find_a_datasets_photo_by_any_spelling(tmp_path, monkeypatch):
  root = conftest.tiny_dataset(tmp_path, n=4)
  names = [f'img{i}.{"png" if i % 2 else "jpg"}' for i in range(4)]
  paths = [str(root / 'images' / n) for n in names]
  os.symlink(paths[2], tmp_path / 'link.jpg')
  extra = _photo(tmp_path, 'extra.jpg')
  monkeypatch.chdir(tmp_path)
  fix = tmp_path / 'fix.csv'
  fix.write_text('image,label,value\n'
                 f'{paths[0]},a,1\n'                       # absolute: the review page's export
                 f'tiny/images/{names[1]},b,1\n'           # from the current folder
                 'link.jpg,a,0\n'                          # through a link
                 f'./{names[3]},b,0\n'                     # a name with ./
                 f'{extra},a,1\n{extra},b,0\n'
                 f'./extra.jpg,b,1\n'                      # the same added photo, again
                 f'{tmp_path}/./extra.jpg,a,1\n')
  Y = np.zeros((4, 2), np.uint8)
  Y[2, 0] = Y[3, 1] = 1
  fixed, added, added_labels, counts = corrections.apply(
      corrections.read_csv(str(fix), ('a', 'b')), names, paths, Y, ('a', 'b'))
  np.testing.assert_array_equal(fixed, [[1, 0], [0, 1], [0, 0], [0, 0]])
  assert added == [extra] and added_labels.tolist() == [[1, 1]]   # later rows win
  assert counts == {'changed': 4, 'added': 1}


def test_corrections_name_the_line_of_a_missing_photo(tmp_path):
  fix = tmp_path / 'fix.csv'
  fix.write_text('image,label,value\nimg0.jpg,a,1\ngone.jpg,a,1\n')
  with pytest.raises(UserError, match=r'fix.csv:3: gone.jpg: no such image'):
    corrections.apply(corrections.read_csv(str(fix), ('a',)), ['img0.jpg'], ['x'],
                      np.zeros((1, 1)), ('a',))


def test_keywords_match_labels_whatever_their_case_and_spaces(tmp_path):
  folder = tmp_path / 'photos'
  os.makedirs(folder)
  image = _photo(folder)
  with open(image + '.xmp', 'w', encoding='utf-8') as f:
    f.write(USERS.replace('<rdf:li>holiday</rdf:li><rdf:li>sea</rdf:li>',
                          '<rdf:li>Sunset</rdf:li><rdf:li>trees </rdf:li>'))
  found = corrections.from_xmp(str(folder), ('sunset', 'trees', 'sea'))
  assert found.labels == {image: {'sunset': 1, 'trees': 1, 'sea': 0}}


def test_from_xmp_passes_over_a_broken_sidecar_with_a_warning(tmp_path):
  folder = tmp_path / 'photos'
  os.makedirs(folder)
  good, bad = _photo(folder, 'a.jpg'), _photo(folder, 'b.jpg')
  keywords.write(good, ['x'])
  with open(good + '.xmp', encoding='utf-8') as f:
    text = f.read()
  start, end = text.index('<dc:subject>'), text.index('</dc:subject>')
  with open(good + '.xmp', 'w', encoding='utf-8') as f:   # x changed to y in a photo tool
    f.write(text[:start] + text[start:end].replace('>x<', '>y<') + text[end:])
  with open(bad + '.xmp', 'w', encoding='utf-8') as f:
    f.write(USERS[:300])
  passed = []
  found = corrections.from_xmp(str(folder), ('x', 'y'), unreadable=lambda i, e: passed.append(i))
  assert found.labels == {good: {'x': 0, 'y': 1}} and passed == [bad]
  assert bad + '.xmp' in found.read and good + '.xmp' in found.read


# 10. The review page works whatever the names hold.
def test_the_review_page_data_cannot_swallow_its_code():
  label = '<!--<script>'
  page = review.page([('/x/<!--<script>.jpg', 'data:,', [0.9])], [label], [0.5], 'title')
  data = page[page.index('<script id="data"'):]
  data = data[data.index('>') + 1:data.index('</script>')]
  assert '<' not in data and json.loads(data)['labels'] == [label]
  assert page.count('</script>') == 2


# A library run never stuck: the commands.
def _tagger(tmp_path, weights):
  from tests.test_predict_stream import _tagger as make
  return make(weights, tmp_path / 'm.tagger')


def _run(*args):
  return subprocess.run([sys.executable, '-m', 'miml_jax.tag', *map(str, args)],
                        capture_output=True, text=True, cwd=conftest.REPO, timeout=600)


@pytest.mark.slow
def test_a_library_run_goes_past_bad_files_and_counts_them(tmp_path, small_weights):
  folder = tmp_path / 'photos'
  paths = conftest.write_images(folder, 10, np.random.default_rng(0))
  (folder / 'truncated.jpg').write_bytes(_bytes(paths[0])[:200])
  (folder / '._img1.png').write_bytes(b'\x00\x05\x16\x07' + b'\x00' * 60)
  (folder / 'empty.png').write_bytes(b'')
  with open(paths[2] + '.xmp', 'w', encoding='utf-8') as f:
    f.write(USERS[:400])                      # a broken sidecar: left as it is
  broken = _bytes(paths[2] + '.xmp')
  stale = folder / atomic.temporary_name('img3.png').replace(f'-{os.getpid()}-', '-999999999-')
  stale.write_bytes(_bytes(paths[3])[:100])   # what a killed embed left
  model = _tagger(tmp_path, small_weights)
  out = tmp_path / 'tags.csv'
  result = _run('predict', f'--model={model}', f'--weights={small_weights}', '--write=xmp',
                f'--output={out}', '--batch_size=4', folder)
  assert result.returncode == 1, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  err = result.stderr
  assert 'truncated.jpg: cannot read image' in err and 'AppleDouble' in err
  assert 'empty.png: cannot read image' in err
  assert '3 of 13 images skipped' in err and 'keywords not written for 1 of 10 images' in err
  assert len(open(out).read().splitlines()) == 1 + 9   # no row for the refused sidecar's photo
  assert _bytes(paths[2] + '.xmp') == broken
  assert not stale.exists()
  # Rerun: the bad files are tried again (and skipped again), nothing is done twice.
  again = _run('predict', f'--model={model}', f'--weights={small_weights}', '--write=xmp',
               f'--output={out}', '--batch_size=4', folder)
  assert again.returncode == 1 and '3 of 4 images skipped' in again.stderr
  assert 'keywords not written for 1 of 1 images' in again.stderr
  assert len(open(out).read().splitlines()) == 1 + 9
  # The sidecar mended: the rerun tags that photo and ends well.
  os.unlink(paths[2] + '.xmp')
  for bad in ('truncated.jpg', '._img1.png', 'empty.png'):
    os.unlink(folder / bad)
  last = _run('predict', f'--model={model}', f'--weights={small_weights}', '--write=xmp',
              f'--output={out}', '--batch_size=4', folder)
  assert last.returncode == 0, last.stderr[-2000:]
  assert len(open(out).read().splitlines()) == 1 + 10


@pytest.mark.slow
def test_a_full_disk_during_embed_leaves_the_photo_and_no_temporary(tmp_path, small_weights):
  folder = tmp_path / 'photos'
  paths = conftest.write_images(folder, 3, np.random.default_rng(1), sizes=((200, 300),))
  before = {p: _bytes(p) for p in paths}
  model = _tagger(tmp_path, small_weights)
  limit = 8   # blocks of 512 bytes: less than each photo, so every write fails part-way
  result = subprocess.run(
      ['bash', '-c', f'ulimit -f {limit}; exec "$0" -m miml_jax.tag predict --model={model} '
       f'--weights={small_weights} --write=embed --batch_size=4 {folder}', sys.executable],
      capture_output=True, text=True, cwd=conftest.REPO)
  if result.returncode == 0:
    pytest.skip('no photo above the file size limit was tagged (no tags)')
  assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-2000:]
  assert 'left as it was' in result.stderr
  assert {p: _bytes(p) for p in paths} == before
  assert not [n for n in os.listdir(folder) if atomic.is_temporary(n)]


@pytest.mark.slow
def test_review_goes_past_photos_moved_since_the_prediction(tmp_path, small_weights):
  folder = tmp_path / 'photos'
  paths = conftest.write_images(folder, 4, np.random.default_rng(2))
  model = _tagger(tmp_path, small_weights)
  rows = tmp_path / 'tags.csv'
  assert _run('predict', f'--model={model}', f'--weights={small_weights}', f'--output={rows}',
              folder).returncode == 0
  os.unlink(paths[1])
  page = tmp_path / 'review.html'
  result = _run('review', f'--model={model}', f'--weights={small_weights}',
                f'--predictions={rows}', f'--output={page}')
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert f'{paths[1]}: cannot read the image' in result.stderr
  assert page.read_text().count('"thumb":') == 3


# 1, 2. Every file a command writes is checked; every file it reads is an input.
@pytest.mark.slow
def test_evaluate_never_replaces_a_strangers_markdown(tmp_path, small_weights):
  root = conftest.tiny_dataset(tmp_path)
  model = _tagger(tmp_path, tmp_path / 'w.safetensors')
  (tmp_path / 'R.md').write_text('my notes\n')
  result = _run('evaluate', f'--model={model}', f'--weights={tmp_path / "w.safetensors"}',
                f'--dataset={root}', f'--output={tmp_path / "R.json"}')
  conftest.assert_user_error(result, 'R.md: exists and is not a file miml_jax made')
  assert (tmp_path / 'R.md').read_text() == 'my notes\n'
  assert not (tmp_path / 'R.json').exists()


@pytest.mark.slow
@pytest.mark.parametrize('target', ['corrections', 'added'])
def test_train_never_writes_over_its_corrections(tmp_path, target):
  root = conftest.tiny_dataset(tmp_path)
  extra = _photo(tmp_path, 'extra.jpg')
  fix = tmp_path / 'fix.csv'
  fix.write_text(f'image,label,value\n{extra},a,1\n{extra},b,0\n')
  before = {p: _bytes(p) for p in (fix, extra)}
  output = fix if target == 'corrections' else extra
  result = _run('train', f'--dataset={root}', f'--weights={tmp_path / "w.safetensors"}',
                f'--corrections={fix}', f'--output={output}', '--overwrite', '--method=l1',
                '--image_size=64', '--augment=none')
  conftest.assert_user_error(result, 'is an input of this command')
  assert {p: _bytes(p) for p in (fix, extra)} == before


@pytest.mark.slow
@pytest.mark.parametrize('module,args,stranger', [
    ('miml_jax.experiments.table1', ['--output_dir={d}'], 'table1_random.md'),
    ('miml_jax.experiments.table1', ['--output_dir={d}'], 'table1_random.npz'),
    ('miml_jax.experiments.table1', ['--output_dir={d}', '--solvers=recipe'],
     'table1_random.parts/notes.txt'),
    ('miml_jax.experiments.figure3', ['--output_dir={d}'], 'figure3_random.png'),
    ('miml_jax.experiments.figure3', ['--output_dir={d}'], 'figure3_random.csv'),
    ('miml_jax.experiments.c_selection', ['--output_dir={d}'], 'c_selection_random_l1.md'),
])
def test_every_file_a_command_writes_is_checked(tmp_path, module, args, stranger):
  features = conftest.random_feature_file(tmp_path / 'f.h5', n=30)
  out = tmp_path / 'out'
  path = out / stranger
  os.makedirs(path.parent, exist_ok=True)
  path.write_text('mine\n')
  result = conftest.cli(module, f'--features={features}',
                        *[a.format(d=out) for a in args])
  conftest.assert_user_error(result, str(path.parent if stranger.count('/') else path))
  assert path.read_text() == 'mine\n'


@pytest.mark.slow
def test_predict_never_replaces_a_strangers_record_or_lock(tmp_path, small_weights):
  folder = tmp_path / 'photos'
  conftest.write_images(folder, 2, np.random.default_rng(4))
  model = _tagger(tmp_path, small_weights)
  out = tmp_path / 'tags.csv'
  for name in ('tags.csv.run.json', 'tags.csv.lock'):
    (tmp_path / name).write_text('mine\n')
    result = _run('predict', f'--model={model}', f'--weights={small_weights}',
                  f'--output={out}', folder)
    conftest.assert_user_error(result, name)
    assert (tmp_path / name).read_text() == 'mine\n'
    os.unlink(tmp_path / name)


def test_a_features_parts_folder_of_the_users_is_refused(tmp_path, small_weights):
  from miml_jax import datasets
  from miml_jax.features import store
  root = conftest.tiny_dataset(tmp_path, n=3)
  parts = tmp_path / 'f.h5.parts'
  os.makedirs(parts)
  (parts / 'mine.txt').write_text('mine\n')
  with pytest.raises(UserError, match='holds files miml_jax did not make'):
    store.write_feature_file(datasets.load(str(root)), small_weights, str(tmp_path / 'f.h5'))
  assert (parts / 'mine.txt').read_text() == 'mine\n'


# The rest of the classes: numbers in the dtype they are used in; several hosts.
@pytest.mark.slow
@pytest.mark.parametrize('args,message', [
    (['--C=1e300'], '--C must be a finite positive number'),
    (['--C=1e-300'], '--C must be a finite positive number'),
    (['--tol=1e-50'], '--tol must be a finite positive number'),
    (['--distributed', '--coordinator_address=garbage', '--num_processes=2',
      '--process_id=0'], '--coordinator_address must be host:port'),
    (['--distributed', '--coordinator_address=127.0.0.1:4567', '--num_processes=2',
      '--process_id=2'], '--process_id must be in 0..1'),
    (['--num_processes=2'], 'add --distributed'),
])
def test_numbers_and_hosts_are_checked_before_any_work(tmp_path, args, message):
  features = conftest.random_feature_file(tmp_path / 'f.h5', n=30)
  result = conftest.cli('miml_jax.experiments.table1', f'--features={features}',
                        f'--output_dir={tmp_path}', *args)
  conftest.assert_user_error(result, message)


@pytest.mark.slow
def test_a_worker_waiting_for_its_coordinator_answers_ctrl_c(tmp_path):
  import signal
  features = conftest.random_feature_file(tmp_path / 'f.h5', n=30)
  proc = subprocess.Popen(
      [sys.executable, '-m', 'miml_jax.experiments.table1', f'--features={features}',
       f'--output_dir={tmp_path}', '--distributed', '--coordinator_address=127.0.0.1:45981',
       '--num_processes=2', '--process_id=1'], stderr=subprocess.PIPE, text=True,
      cwd=conftest.REPO)
  time.sleep(6)
  proc.send_signal(signal.SIGINT)
  try:
    _, err = proc.communicate(timeout=20)
  finally:
    proc.kill()
  assert proc.returncode == 130 and 'interrupted while waiting' in err, err[-2000:]
  timeout = conftest.cli('miml_jax.experiments.table1', f'--features={features}',
                         f'--output_dir={tmp_path}', '--distributed',
                         '--coordinator_address=127.0.0.1:45982', '--num_processes=2',
                         '--process_id=1', '--distributed_timeout=5')
  conftest.assert_user_error(timeout, 'no multi-host run formed at 127.0.0.1:45982')
