"""Tags as keywords where photo tools read them: XMP sidecars, or the image's own XMP and IPTC.

`write(image, tags)` merges a tagger's tags into `<image>.xmp` (digiKam's and darktable's sidecar
name), or with `embed=True` into the image file itself, as
  dc:subject              the label ('sea'), which every tool reads;
  lr:hierarchicalSubject  'prefix|sea' with a prefix, else 'sea' (Lightroom, digiKam, darktable);
  digiKam:TagsList        'prefix/sea', only where the file has one already (digiKam reads it
                          first and would not see the others);
  IPTC Keywords           the label, when embedding (the field older tools read).
The user's own keywords and every other field stay as they are. The file records the tags it
added (`mimljax:written`): a rerun replaces those with the new tags, so it is idempotent and
removes a tag of its own that dropped below its threshold, never one the user made; a tag of ours
that the user deleted in a photo tool is remembered (`mimljax:rejected`) and not written again.
Files are changed through a copy that replaces them whole: an interrupted write leaves the old one.

exiv2 (python-exiv2, the binding of the library digiKam and darktable use themselves) does the
reading and writing: it keeps each field's XMP type (a Bag stays a Bag; pyexiv2 rewrote one as a
Seq) and the fields this module does not touch.
"""

import contextlib
import os
import shutil
import tempfile

from miml_jax.plumbing.errors import UserError

NAMESPACE = 'https://github.com/miml-jax/miml_jax/ns/keywords/1.0/'
_OURS = 'mimljax'
SUBJECT = 'Xmp.dc.subject'
HIERARCHICAL = 'Xmp.lr.hierarchicalSubject'
DIGIKAM = 'Xmp.digiKam.TagsList'
IPTC_KEYWORDS = 'Iptc.Application2.Keywords'
WRITTEN = f'Xmp.{_OURS}.written'
REJECTED = f'Xmp.{_OURS}.rejected'
# IPTC IIM limits a keyword to 64 bytes.
_IPTC_BYTES = 64


def _exiv2():
  try:
    import exiv2   # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError('writing keywords needs python-exiv2: pip install exiv2') from None
  if not getattr(_exiv2, 'ready', False):
    exiv2.XmpProperties.registerNs(NAMESPACE, _OURS)
    exiv2.LogMsg.setLevel(exiv2.LogMsg.Level.mute)   # its messages come back as exceptions
    _exiv2.ready = True
  return exiv2


def check_prefix(prefix: str) -> None:
  if not prefix or '|' in prefix or '/' in prefix:
    raise UserError(f'the keyword prefix {prefix!r} must be a non-empty name without | or /')


def sidecar_path(image: str) -> str:
  return f'{image}.xmp'


def _values(data, key: str) -> list[str]:
  """The items of an XMP array (or IPTC repeated) field, [] when absent."""
  exiv2 = _exiv2()
  if key.startswith('Iptc.'):
    return [d.toString() for d in data if d.key() == key]
  it = data.findKey(exiv2.XmpKey(key))
  if it == data.end():
    return []
  return [it.toString(i) for i in range(it.count())]


def _set_xmp(xmp, key: str, values: list[str]) -> None:
  exiv2 = _exiv2()
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


def _set_iptc(iptc, values: list[str]) -> None:
  exiv2 = _exiv2()
  while (it := iptc.findKey(exiv2.IptcKey(IPTC_KEYWORDS))) != iptc.end():
    iptc.erase(it)
  for v in values:
    iptc.add(exiv2.IptcKey(IPTC_KEYWORDS), exiv2.StringValue(v))


def merged(current: dict, tags, prefix: str | None = None) -> dict:
  """The fields after writing `tags`, from the fields `current` ({key: [items]}) of the file
  (module docstring): the user's items kept, ours replaced by `tags`, rejected ones left out."""
  recorded = current.get(WRITTEN, [])
  subject = current.get(SUBJECT, [])
  # Ours that the user has since deleted: their correction, kept.
  rejected = list(dict.fromkeys(current.get(REJECTED, []) +
                                [t for t in recorded if t not in subject]))
  written = [t for t in recorded if t in subject]
  forms = {HIERARCHICAL: lambda t: f'{prefix}|{t}' if prefix else t,
           DIGIKAM: lambda t: f'{prefix}/{t}' if prefix else t,
           SUBJECT: lambda t: t, IPTC_KEYWORDS: _iptc_safe}
  mine = [t for t in subject if t not in written]
  new = [t for t in dict.fromkeys(tags) if t not in rejected and t not in mine]
  out = {WRITTEN: new, REJECTED: rejected}
  for key, form in forms.items():
    if key not in current and key in (DIGIKAM, IPTC_KEYWORDS):
      continue   # only where the file keeps them already (or embedding asks for IPTC)
    # Every form of what we wrote, the deleted ones too: a tag the user removed from dc:subject
    # goes from the hierarchical fields as well.
    ours = {form(t) for t in recorded}
    kept = [v for v in current.get(key, []) if v not in ours]
    out[key] = kept + [form(t) for t in new if form(t) not in kept]
  return out


def _iptc_safe(tag: str) -> str:
  """`tag` cut to what an IPTC keyword holds (64 bytes of UTF-8, whole characters)."""
  return tag.encode('utf-8')[:_IPTC_BYTES].decode('utf-8', 'ignore')


def read(path: str, *, iptc: bool = True) -> dict:
  """{key: [items]} of the keyword fields of an image or sidecar file (IPTC Keywords too if
  `iptc`: exiv2 makes them up from a sidecar's dc:subject, which is not the file's own)."""
  exiv2 = _exiv2()
  try:
    image = exiv2.ImageFactory.open(path)
    image.readMetadata()
  except exiv2.Exiv2Error as e:
    raise UserError(f'{path}: cannot read its metadata: {e}') from None
  xmp = image.xmpData()
  out = {k: _values(xmp, k) for k in (SUBJECT, HIERARCHICAL, DIGIKAM, WRITTEN, REJECTED)
         if xmp.findKey(exiv2.XmpKey(k)) != xmp.end()}
  keywords = _values(image.iptcData(), IPTC_KEYWORDS) if iptc else []
  if keywords:
    out[IPTC_KEYWORDS] = keywords
  return out


@contextlib.contextmanager
def _replacing(path: str, *, copy: bool):
  """Yields a temporary path beside `path` (a copy of it if `copy`) that replaces it on success."""
  folder, name = os.path.split(os.path.abspath(path))
  try:
    fd, tmp = tempfile.mkstemp(prefix=f'.{name}.', suffix='.tmp' + os.path.splitext(name)[1],
                               dir=folder)
    os.close(fd)
    if copy:
      shutil.copy2(path, tmp)
    else:
      os.unlink(tmp)
  except OSError as e:
    raise UserError(f'{path}: cannot write beside it: {e.strerror or e}') from None
  try:
    yield tmp
    if copy:
      shutil.copymode(path, tmp)
    os.replace(tmp, path)
  except OSError as e:
    raise UserError(f'{path}: cannot write: {e.strerror or e}') from None
  finally:
    with contextlib.suppress(OSError):
      os.unlink(tmp)


def write(image: str, tags, *, prefix: str | None = None, embed: bool = False) -> bool:
  """Merges `tags` into the keywords of `image`'s sidecar (or, with `embed`, of the image file);
  returns whether the file changed (a rerun with the same tags changes nothing)."""
  exiv2 = _exiv2()
  if prefix is not None:
    check_prefix(prefix)
  target = image if embed else sidecar_path(image)
  exists = os.path.exists(target)
  if not embed and not os.path.exists(image):
    raise UserError(f'{image}: no such image')
  current = read(target, iptc=embed) if exists else {}
  if embed:
    current.setdefault(IPTC_KEYWORDS, [])
  new = merged(current, tags, prefix)
  if all(new.get(k, []) == current.get(k, []) for k in set(new) | set(current)):
    return False
  with _replacing(target, copy=exists) as tmp:
    try:
      if exists:
        file = exiv2.ImageFactory.open(tmp)
        file.readMetadata()
      else:
        file = exiv2.ImageFactory.create(exiv2.ImageType.xmp, tmp)
      xmp = file.xmpData()
      for key, values in new.items():
        if key != IPTC_KEYWORDS:
          _set_xmp(xmp, key, values)
      if embed:
        _set_iptc(file.iptcData(), new[IPTC_KEYWORDS])
      else:
        # exiv2 turns a sidecar's XMP into IPTC and Exif when it reads it and back when it writes
        # it: cleared, the XMP is written as it is (the removed keywords do not come back).
        file.clearIptcData()
        file.clearExifData()
      file.writeMetadata()
    except exiv2.Exiv2Error as e:
      raise UserError(f'{target}: cannot write its keywords: {e}') from None
  return True


