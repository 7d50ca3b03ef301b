"""Tags as keywords where photo tools read them: XMP sidecars, or the image's own XMP and IPTC.

`write(image, tags)` merges a tagger's tags into `<image>.xmp` (digiKam's and darktable's sidecar
name), or with `embed=True` into the image file itself, as
  dc:subject              the label ('sea'): every tool reads it;
  lr:hierarchicalSubject  'prefix|sea' with a prefix, else 'sea' (Lightroom, darktable, digiKam,
                          Immich);
  digiKam:TagsList        'prefix/sea' (digiKam and Immich read it first);
  IPTC Keywords           the label, when embedding (older tools read only IPTC).
A separator inside a label stays inside its keyword: '|' becomes '¦' in the hierarchical list and
'/' becomes '∕' in the tags list, so 'a/b' never turns into a tag b under a tag a.

Nothing of the user's is lost, and what the user changed in a photo tool wins:
- every keyword of the user's stays, in every field: where we start a list the file did not have
  (a tags list, a hierarchical list), it starts with the user's keywords, so that a tool reading
  that list first still shows them; when embedding, dc:subject and IPTC Keywords both hold the
  union of what the two held (older tools write only IPTC), and a keyword the user deleted in one
  of them since our last write (`mimljax:keywords`, the list as we left it) stays deleted;
- the file records the tags we added (`mimljax:written`) and the prefix of their hierarchical
  forms (`mimljax:prefix`): a rerun replaces those with the new tags, so it is idempotent, removes
  a tag of ours that dropped below its threshold (a new model) and the old forms when the prefix
  changes, and never removes a keyword the user made;
- a tag of ours that the user deleted from any of these fields is remembered (`mimljax:rejected`),
  removed from the others and never written again.

A file is changed only if it can be read fully and checked after the change
(`miml_jax.tagging.photo_files` does the writing: through links, whole or not at all):
- a packet that exiv2 cannot parse (it reads one as empty, with only a log message) or that
  Python's XML parser cannot, a keyword field that is not a list of keywords (dc:subject as
  rdf:Alt, or as a struct), IPTC keywords in a declared character set that does not decode,
  or a JPEG with extended XMP (which exiv2 does not read) raise `UserError`: the file is left
  byte for byte as it was;
- after the change in memory, the new file is read again by exiv2 and by Python's XML parser
  (`miml_jax.tagging.xmp_items`): the keyword fields must hold exactly the merge, every other XMP
  property, IPTC dataset and Exif tag must still be there, or nothing is written.
exiv2 (python-exiv2, the binding of the library digiKam and darktable use) parses and serialises:
it keeps each field's XMP type and the fields this module does not touch.
"""

import collections
import contextlib
import dataclasses
import logging
import os
import warnings

from miml_jax.plumbing.errors import UserError
from miml_jax.tagging import photo_files
from miml_jax.tagging import xmp_items

NAMESPACE = 'https://github.com/miml-jax/miml_jax/ns/keywords/1.0/'
_OURS = 'mimljax'
SUBJECT = 'Xmp.dc.subject'
HIERARCHICAL = 'Xmp.lr.hierarchicalSubject'
DIGIKAM = 'Xmp.digiKam.TagsList'
IPTC_KEYWORDS = 'Iptc.Application2.Keywords'
WRITTEN = f'Xmp.{_OURS}.written'
REJECTED = f'Xmp.{_OURS}.rejected'
PREFIX = f'Xmp.{_OURS}.prefix'
SYNCED = f'Xmp.{_OURS}.keywords'
_LISTS = (SUBJECT, HIERARCHICAL, DIGIKAM, WRITTEN, REJECTED, SYNCED)
_NAMESPACES = {'dc': 'http://purl.org/dc/elements/1.1/',
               'lr': 'http://ns.adobe.com/lightroom/1.0/',
               'digiKam': 'http://www.digikam.org/ns/1.0/', _OURS: NAMESPACE}
# The separator of each hierarchical field, and what stands for it inside one keyword.
_SEPARATORS = {HIERARCHICAL: ('|', '\N{BROKEN BAR}'), DIGIKAM: ('/', '\N{DIVISION SLASH}')}
# IPTC IIM limits a keyword to 64 bytes.
_IPTC_BYTES = 64
# IPTC's CodedCharacterSet (1:90) for UTF-8: ESC % G.
_IPTC_CHARSET = 'Iptc.Envelope.CharacterSet'
_IPTC_UTF8 = b'\x1b%G'
# JPEG segments of extended XMP (packets over 64 kB), which exiv2 neither reads nor keeps whole.
_EXTENDED_XMP = b'http://ns.adobe.com/xmp/extension/'
# The Exif tags that hold a TIFF's XMP packet and IPTC record (and Photoshop's resources, where
# IPTC may sit too): they change with the keywords.
_EXIF_CONTAINERS = ('Exif.Image.XMLPacket', 'Exif.Image.IPTCNAA', 'Exif.Image.ImageResources')
# Whether the file has an IPTC record at all (a field of `_parse`'s, not of the file).
_IPTC_PRESENT = '_iptc_present'
_XPACKET_HEADER = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'


class _Messages(logging.Handler):
  """Collects what exiv2 logs (python-exiv2 sends its messages to the `exiv2` logger): a read it
  could not complete is a warning or an error message there, not an exception."""

  def __init__(self):
    super().__init__(logging.WARNING)
    self.records = []

  def emit(self, record):
    self.records.append(record)


def _exiv2():
  try:
    import exiv2   # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError('writing keywords needs python-exiv2: pip install exiv2') from None
  if not getattr(_exiv2, 'ready', False):
    exiv2.XmpProperties.registerNs(NAMESPACE, _OURS)
    exiv2.LogMsg.setLevel(exiv2.LogMsg.Level.warn)
    # Its messages are ours to report, one line per file, not for the console.
    logging.getLogger('exiv2').propagate = False
    _exiv2.ready = True
  return exiv2


@contextlib.contextmanager
def _exiv2_messages():
  """Yields the list of exiv2's warning and error messages logged within the block."""
  logger = logging.getLogger('exiv2')
  handler = _Messages()
  logger.addHandler(handler)
  try:
    yield handler.records
  finally:
    logger.removeHandler(handler)


def check_prefix(prefix: str) -> None:
  if not prefix or '|' in prefix or '/' in prefix or prefix != prefix.strip():
    raise UserError(f'the keyword prefix {prefix!r} must be a non-empty name without | or / '
                    'and without spaces around it')


def sidecar_path(image: str) -> str:
  return f'{image}.xmp'


def _hierarchical(key: str, prefix: str | None):
  """The form of a label in the hierarchical field `key` (under `prefix`, if any)."""
  separator, stand_in = _SEPARATORS[key]
  return lambda tag: ((f'{prefix}{separator}' if prefix else '')
                      + tag.replace(separator, stand_in))


def _iptc_form(tag: str) -> str:
  """`tag` cut to what an IPTC keyword holds (64 bytes of UTF-8, whole characters)."""
  return tag.encode('utf-8')[:_IPTC_BYTES].decode('utf-8', 'ignore')


def _forms(prefix: str | None) -> dict:
  return {SUBJECT: lambda t: t, IPTC_KEYWORDS: _iptc_form,
          HIERARCHICAL: _hierarchical(HIERARCHICAL, prefix),
          DIGIKAM: _hierarchical(DIGIKAM, prefix)}


def _dedupe(values) -> list:
  return list(dict.fromkeys(values))


def _leaf(key: str, entry: str) -> str:
  separator, stand_in = _SEPARATORS[key]
  return entry.split(separator)[-1].replace(stand_in, separator)


def _converted(entry: str, source: str, target: str) -> str:
  """A hierarchical keyword of field `source` in the form of field `target`."""
  parts = [p.replace(_SEPARATORS[source][1], _SEPARATORS[source][0])
           for p in entry.split(_SEPARATORS[source][0])]
  separator, stand_in = _SEPARATORS[target]
  return separator.join(p.replace(separator, stand_in) for p in parts)


def _started(key: str, current: dict, users: list, ours_old: dict) -> list:
  """The user's keywords in the form of the hierarchical field `key`, which the file does not
  have yet: the other hierarchical field's entries, then flat keywords no entry ends in."""
  other = DIGIKAM if key == HIERARCHICAL else HIERARCHICAL
  entries = [_converted(e, other, key) for e in current.get(other, [])
             if e not in ours_old[other]]
  leaves = {_leaf(key, e) for e in entries}
  return _dedupe(entries + [_hierarchical(key, None)(k) for k in users if k not in leaves])


def _users_flat(subject: list, iptc: list | None, synced: list | None, ours: list) -> list:
  """The user's flat keywords: dc:subject's, and when embedding, merged with IPTC Keywords'.

  Without a record of the list as we left it, the union; with one, a keyword in one field only
  was added there (kept) if the record lacks it, or deleted from the other (dropped) if the
  record has it."""
  ours_iptc = {_iptc_form(t) for t in ours}
  xmp = [k for k in subject if k not in ours]
  if iptc is None:
    return xmp
  iptc = [k for k in iptc if k not in ours_iptc]
  in_iptc = set(iptc)
  matched = {_iptc_form(k) for k in xmp}
  if synced is None:
    return _dedupe(xmp + [k for k in iptc if k not in matched])
  before, before_iptc = set(synced), {_iptc_form(k) for k in synced}
  kept = [k for k in xmp if _iptc_form(k) in in_iptc or k not in before]
  return _dedupe(kept + [k for k in iptc if k not in matched and k not in before_iptc])


def merged(current: dict, tags, prefix: str | None = None, *, iptc: bool = False) -> dict:
  """The fields after writing `tags`, from the fields `current` ({key: [items]}) of the file
  (module docstring); iptc: the file keeps IPTC Keywords too (a photo we embed into, of a
  format that has IPTC)."""
  recorded = current.get(WRITTEN, [])
  # Files written before the prefix was recorded: taken to have the prefix of this run.
  before = _forms(current[PREFIX][0] if current.get(PREFIX) else prefix)
  subject = current.get(SUBJECT, [])
  with_iptc = iptc
  iptc = current.get(IPTC_KEYWORDS, []) if with_iptc else None

  def deleted(tag) -> bool:
    """Whether the user deleted our `tag` from a field it was written to (a field the file no
    longer has at all says nothing: a tool that drops a whole list deleted no tag)."""
    if tag not in subject:
      return True
    fields = [k for k in (HIERARCHICAL, DIGIKAM) if k in current]
    if with_iptc and current.get(_IPTC_PRESENT):
      fields.append(IPTC_KEYWORDS)
    return any(before[k](tag) not in current.get(k, []) for k in fields)

  rejected = _dedupe(current.get(REJECTED, []) + [t for t in recorded if deleted(t)])
  users = _users_flat(subject, iptc, current.get(SYNCED), recorded)
  new = [t for t in _dedupe(tags) if t not in rejected and t not in users]
  after = _forms(prefix)
  out = {WRITTEN: new, REJECTED: rejected, SUBJECT: users + new}
  ours_old = {k: {before[k](t) for t in recorded} for k in _SEPARATORS}
  for key in _SEPARATORS:
    if key in current:
      kept = [v for v in current[key] if v not in ours_old[key]]
    else:
      kept = _started(key, current, users, ours_old)
    out[key] = kept + [f for f in map(after[key], new) if f not in kept]
  if with_iptc:
    out[IPTC_KEYWORDS] = _dedupe(map(_iptc_form, out[SUBJECT]))
    out[SYNCED] = list(out[SUBJECT])
  if prefix or PREFIX in current:
    out[PREFIX] = [prefix] if prefix else []
  return out


@dataclasses.dataclass
class _Parsed:
  """A file's metadata as read: the exiv2 image (in memory), the keyword fields ({key: [items]}),
  the XMP items as Python's XML parser reads them, and the IPTC datasets and Exif tags."""
  image: object
  fields: dict
  xmp: collections.Counter
  iptc: list
  exif: collections.Counter
  iptc_charset: str


def _refused(path: str, problem: str) -> UserError:
  return UserError(f'{path}: {problem}; left as it was')


def _xml_items(path: str, packet) -> collections.Counter:
  try:
    return xmp_items.items(packet)
  except xmp_items.ParseError as e:
    raise _refused(path, f'cannot read its metadata fully: its XMP is {e}') from None


def _list_field(path: str, xmp, key: str, exiv2) -> list | None:
  """The items of the XMP list `key`, None if absent; `UserError` for any other kind of value."""
  it = xmp.findKey(exiv2.XmpKey(key))
  nested = any(d.key().startswith((f'{key}[', f'{key}/')) for d in xmp)
  if it == xmp.end():
    if nested:
      raise _refused(path, f'{key} is not a list of keywords')
    return None
  if nested or it.typeId() not in (exiv2.TypeId.xmpBag, exiv2.TypeId.xmpSeq):
    raise _refused(path, f'{key} is not a list of keywords ({it.typeName()})')
  return [it.toString(i) for i in range(it.count())]


def _iptc_text(path: str, raw: bytes, charset: str) -> str:
  try:
    return raw.decode(charset)
  except UnicodeDecodeError:
    raise _refused(path, f'an IPTC keyword is not {charset} as its character set says') from None


def _parse(path: str, data: bytes, *, sidecar: bool) -> _Parsed:
  """Reads the metadata of a file's bytes (`UserError` if it cannot be read fully)."""
  exiv2 = _exiv2()
  if sidecar and data.strip(b' \t\r\n\0\xef\xbb\xbf') and not data.lstrip(
      b'\xef\xbb\xbf \t\r\n').startswith((b'<?xml', b'<?xpacket')):
    # exiv2 knows a sidecar by its XML declaration or packet header; a bare <x:xmpmeta> is
    # still XMP.
    data = _XPACKET_HEADER.encode() + data
  if not sidecar and _EXTENDED_XMP in data:
    raise _refused(path, 'it holds extended XMP, which exiv2 cannot keep')
  with _exiv2_messages() as messages:
    try:
      if sidecar and not data.strip(b' \t\r\n\0\xef\xbb\xbf'):
        image = exiv2.ImageFactory.create(exiv2.ImageType.xmp)
      else:
        image = exiv2.ImageFactory.open(data)
        image.readMetadata()
    except exiv2.Exiv2Error as e:
      raise _refused(path, f'cannot read its metadata: {e}') from None
  for record in messages:
    text = record.getMessage()
    if record.levelno >= logging.ERROR or any(w in text for w in ('XMP', 'IPTC', 'Photoshop')):
      raise _refused(path, f'cannot read its metadata fully (exiv2: {text.strip()})')
  xmp = image.xmpData()
  found = _xml_items(path, data if sidecar else image.xmpPacket())
  if found and not xmp.count():
    raise _refused(path, 'cannot read its metadata fully (exiv2 read nothing of its XMP)')
  fields = {}
  for key in _LISTS:
    values = _list_field(path, xmp, key, exiv2)
    if values is not None:
      fields[key] = values
  it = xmp.findKey(exiv2.XmpKey(PREFIX))
  if it != xmp.end():
    fields[PREFIX] = [it.toString()]
  iptc, charset = [], 'utf-8'
  if not sidecar:
    iptc = [(d.key(), bytes(d.value().data()) if hasattr(d.value(), 'data')
             else d.toString()) for d in image.iptcData()]
    declared = [raw for key, raw in iptc if key == _IPTC_CHARSET]
    raws = [raw for key, raw in iptc if key == IPTC_KEYWORDS]
    if declared and declared[0] != _IPTC_UTF8:
      # Another declared set than UTF-8 (ISO 2022 escapes): not decoded here.
      if any(any(b > 0x7f for b in raw) for raw in raws):
        raise _refused(path, 'its IPTC keywords are in a character set other than UTF-8')
      charset = 'ascii'
    elif not declared:
      # No declaration: UTF-8 where it decodes, else what older tools wrote, Latin-1.
      try:
        for raw in raws:
          raw.decode('utf-8')
      except UnicodeDecodeError:
        charset = 'latin-1'
    fields[IPTC_KEYWORDS] = [_iptc_text(path, raw, charset) for raw in raws]
    fields[_IPTC_PRESENT] = [True] if iptc else []
  exif = collections.Counter() if sidecar else collections.Counter(
      (d.key(), d.typeId(), d.count()) for d in image.exifData()
      if d.key() not in _EXIF_CONTAINERS)
  return _Parsed(image, fields, found, iptc, exif, charset)


def read(path: str, *, iptc: bool = True) -> dict:
  """{key: [items]} of the keyword fields of an image or sidecar file (IPTC Keywords too if
  `iptc`); `UserError` naming the file if it cannot be read fully."""
  data = photo_files.read(path).data
  sidecar = path.lower().endswith('.xmp')
  parsed = _parse(path, data, sidecar=sidecar)
  fields = {k: v for k, v in parsed.fields.items() if not k.startswith('_')}
  if not iptc or sidecar or not fields.get(IPTC_KEYWORDS):
    fields.pop(IPTC_KEYWORDS, None)
  return fields


def _set_list(xmp, key: str, values: list, exiv2) -> None:
  it = xmp.findKey(exiv2.XmpKey(key))
  if it != xmp.end():
    kind = it.typeId()
    xmp.erase(it)
  else:
    kind = exiv2.TypeId.xmpSeq if key == DIGIKAM else exiv2.TypeId.xmpBag
  if values:
    value = exiv2.XmpArrayValue(kind)
    for v in values:
      value.read(v)
    xmp[key] = value


def _set_iptc_keywords(image, parsed: _Parsed, values: list, exiv2) -> None:
  """IPTC Keywords as `values`, changing as little as possible: the user's datasets that stay
  are not touched (their bytes, whatever their encoding), the others go, new ones come last."""
  iptc = image.iptcData()
  charset = parsed.iptc_charset
  wanted, present = set(values), set()
  it = iptc.begin()
  while it != iptc.end():
    if it.key() == IPTC_KEYWORDS:
      text = bytes(it.value().data()).decode(charset)
      if text not in wanted or text in present:
        it = iptc.erase(it)
        continue
      present.add(text)
    next(it)
  added = [v for v in values if v not in present]
  if (charset == 'utf-8' and any(not v.isascii() for v in added)
      and iptc.findKey(exiv2.IptcKey(_IPTC_CHARSET)) == iptc.end()):
    # Without a declaration, readers take IPTC text for Latin-1: say that it is UTF-8.
    iptc[_IPTC_CHARSET] = exiv2.StringValue(_IPTC_UTF8.decode('ascii'))
  for v in added:
    try:
      raw = v.encode(charset)
    except UnicodeEncodeError:
      raise UserError(f'its IPTC keywords are in {charset}, which cannot hold {v!r}') from None
    value = exiv2.StringValue()
    if charset == 'utf-8':
      value.read(v)
    else:
      with warnings.catch_warnings():
        # Bytes in another encoding than UTF-8 can only be given as bytes, which
        # python-exiv2 warns of; they are what the file's other keywords are in.
        warnings.simplefilter('ignore', DeprecationWarning)
        value.read(raw)
    iptc.add(exiv2.IptcKey(IPTC_KEYWORDS), value)


def _changed(current: dict, new: dict) -> bool:
  return any(new[k] != current.get(k, []) for k in new)


def _check_written(path: str, parsed: _Parsed, after: _Parsed, new: dict, *, sidecar: bool):
  """`UserError` unless the file as written holds `new` in its keyword fields and everything
  else it held before (module docstring)."""
  for key, values in new.items():
    got = after.fields.get(key, [])
    if (sorted(got) != sorted(values)) if key == IPTC_KEYWORDS else got != values:
      raise _refused(path, f'writing {key} did not give the keywords meant (exiv2 wrote '
                     f'{after.fields.get(key, [])}, not {values})')
  # What the merge removes: items of the keyword lists, and our own records.
  removable = collections.Counter()
  for key in (SUBJECT, HIERARCHICAL, DIGIKAM):
    gone = collections.Counter(parsed.fields.get(key, [])) - collections.Counter(new[key])
    name = xmp_items.property_path(key, _NAMESPACES)
    removable.update({(name, v): n for v, n in gone.items()})
  lost = {(name, v): n for (name, v), n in (parsed.xmp - after.xmp).items()
          if not name[0].startswith(f'{{{NAMESPACE}}}')}
  lost = collections.Counter(lost) - removable
  if lost:
    (name, value), _ = next(iter(lost.items()))
    raise _refused(path, f'exiv2 would have dropped {"/".join(name)} = {value!r} from it')
  if not sidecar:
    iptc_before = collections.Counter(d for d in parsed.iptc
                                      if d[0] not in (IPTC_KEYWORDS, _IPTC_CHARSET))
    iptc_after = collections.Counter(d for d in after.iptc
                                     if d[0] not in (IPTC_KEYWORDS, _IPTC_CHARSET))
    if iptc_before != iptc_after or parsed.exif != after.exif:
      raise _refused(path, 'exiv2 would have changed IPTC or Exif data besides the keywords')


def _seeded_sidecar(image: str, empty: _Parsed) -> _Parsed:
  """A new sidecar, as the photo's own metadata has it: its XMP, with its IPTC keywords among
  dc:subject's. A tool that reads the sidecar instead of the photo (digiKam, darktable, Immich do
  when there is one) then still shows the user's keywords and titles. `UserError` if the photo's
  metadata cannot be read fully (no sidecar is made then)."""
  exiv2 = _exiv2()
  data = photo_files.read(image).data
  if exiv2.ImageFactory.getType(data) == exiv2.ImageType.none:
    return empty   # a format exiv2 does not know: no metadata of it to carry over
  photo = _parse(image, data, sidecar=False)
  if not photo.xmp and not photo.fields.get(IPTC_KEYWORDS):
    return empty
  empty.image.setXmpData(photo.image.xmpData())
  fields = {k: v for k, v in photo.fields.items() if not k.startswith('_')}
  fields.pop(IPTC_KEYWORDS, None)
  fields.pop(SYNCED, None)
  fields[SUBJECT] = _users_flat(photo.fields.get(SUBJECT, []), photo.fields.get(IPTC_KEYWORDS, []),
                                None, [])
  if not fields[SUBJECT]:
    del fields[SUBJECT]
  return dataclasses.replace(empty, fields=fields, xmp=photo.xmp)


def write(image: str, tags, *, prefix: str | None = None, embed: bool = False) -> bool:
  """Merges `tags` into the keywords of `image`'s sidecar (or, with `embed`, of the image file);
  returns whether the file changed (a rerun with the same tags changes nothing). `UserError`
  naming the file if it cannot be read fully or written safely: it is then left as it was."""
  exiv2 = _exiv2()
  if prefix is not None:
    check_prefix(prefix)
  sidecar = not embed
  target = sidecar_path(image) if sidecar else image
  if sidecar and not os.path.isfile(image):
    raise UserError(f'{image}: no such image')
  before = photo_files.read(target, missing_ok=sidecar)
  parsed = _parse(target, before.data, sidecar=sidecar)
  if sidecar and before.stat is None:
    parsed = _seeded_sidecar(image, parsed)
  current = parsed.fields
  # Formats without IPTC (WebP): XMP alone.
  iptc = embed and bool(exiv2.ImageFactory.checkMode(parsed.image.imageType(),
                                                      exiv2.MetadataId.Iptc)
                        & exiv2.AccessMode.Write)
  new = merged(current, tags, prefix, iptc=iptc)
  if not current.get(WRITTEN) and not new[WRITTEN] and new[REJECTED] == current.get(REJECTED,
                                                                                     []):
    return False   # nothing of ours, before or after: the file is none of our business
  if before.stat is not None and not _changed(current, new):
    return False
  file = parsed.image
  try:
    with _exiv2_messages() as messages:
      xmp = file.xmpData()
      for key, values in new.items():
        if key == PREFIX:
          it = xmp.findKey(exiv2.XmpKey(key))
          if it != xmp.end():
            xmp.erase(it)
          if values:
            xmp[key] = exiv2.XmpTextValue(values[0])
        elif key != IPTC_KEYWORDS:
          _set_list(xmp, key, values, exiv2)
      if iptc:
        _set_iptc_keywords(file, parsed, new[IPTC_KEYWORDS], exiv2)
      else:
        # exiv2 turns a sidecar's XMP into IPTC and Exif when it reads it and back when it
        # writes it: cleared, the XMP is written as it is (the removed keywords do not come
        # back).
        file.clearIptcData()
        file.clearExifData()
      file.writeMetadata()
      data = bytes(file.io().data())
    if any(r.levelno >= logging.ERROR for r in messages):
      raise _refused(target, f'exiv2 could not write it ({messages[0].getMessage().strip()})')
  except exiv2.Exiv2Error as e:
    raise _refused(target, f'cannot write its keywords: {e}') from None
  except UserError as e:
    raise _refused(target, str(e)) from None
  after = _parse(target, data, sidecar=sidecar)
  _check_written(target, parsed, after, new, sidecar=sidecar)
  photo_files.replace(target, data, before)
  return True
