"""What an XMP packet holds, read with Python's XML parser: the second reader of every write.

exiv2 reads and writes the keywords (`miml_jax.tagging.keywords`), but a packet it cannot parse it
reads as empty (its error is a log message, not an exception), and a file written from that empty
reading would hold only our tags. So every packet is also read here, independently: a packet that
is not well-formed XML is refused, and after a write every property the packet held before must
still be there, but for the keyword items the merge meant to remove.

`items(packet)` is a multiset of (property path, value): the path is the qualified names of the
property and of the struct fields above it (RDF containers left out), the value a simple value's
text (with its xml:lang, if any) or a resource URI. Attribute and element forms of a property give
the same item, and whitespace around a value is not part of it, so a packet that exiv2 lays out
anew compares equal to the original.
"""

import collections
import xml.etree.ElementTree as ET

RDF = 'http://www.w3.org/1999/02/22-rdf-syntax-ns#'
_XML = 'http://www.w3.org/XML/1998/namespace'
_LANG = f'{{{_XML}}}lang'
_CONTAINERS = {f'{{{RDF}}}{kind}' for kind in ('Bag', 'Seq', 'Alt')}
_DESCRIPTION = f'{{{RDF}}}Description'
_LI = f'{{{RDF}}}li'
_RESOURCE = f'{{{RDF}}}resource'
_PARSE_TYPE = f'{{{RDF}}}parseType'


class ParseError(ValueError):
  """The packet is not well-formed XML, or not RDF."""


def _namespace(name: str) -> str:
  return name[1:].split('}', 1)[0] if name.startswith('{') else ''


def _is_property_attribute(name: str) -> bool:
  return _namespace(name) not in (RDF, _XML, '')


def items(packet) -> collections.Counter:
  """The (path, value) items of an XMP packet (str or bytes, with or without its <?xpacket?>
  wrapper); an empty packet has none. `ParseError` if it is not well-formed XML."""
  if isinstance(packet, str):
    packet = packet.encode('utf-8', 'surrogateescape')
  # The xpacket wrapper's padding is whitespace and, in files, sometimes NUL bytes.
  packet = packet.strip(b' \t\r\n\0')
  out = collections.Counter()
  if not packet:
    return out
  try:
    root = ET.fromstring(packet)
  except ET.ParseError as e:
    raise ParseError(f'not well-formed XML ({e})') from None
  rdf = root if root.tag == f'{{{RDF}}}RDF' else root.find(f'.//{{{RDF}}}RDF')
  if rdf is None:
    if root.tag.endswith('xmpmeta') and not len(root):
      return out
    raise ParseError('no rdf:RDF element in it')
  for description in rdf:
    _struct(description, (), out)
  return out


def _struct(node, path, out) -> None:
  """The fields of an rdf:Description (or a parseType="Resource" element) at `path`."""
  for name, value in node.attrib.items():
    if _is_property_attribute(name):
      out[(path + (name,), value.strip())] += 1
  for child in node:
    _value(child, path + (child.tag,), out)


def _value(node, path, out) -> None:
  """A property's (or an array item's) value at `path`."""
  if _RESOURCE in node.attrib:
    out[(path, node.attrib[_RESOURCE])] += 1
    return
  if node.get(_PARSE_TYPE) == 'Resource':
    _struct(node, path, out)
    return
  children = list(node)
  text = (node.text or '').strip()
  if not children and not text and any(map(_is_property_attribute, node.attrib)):
    # A struct written in the short form: its fields as attributes of an empty element.
    _struct(node, path, out)
    return
  if not children:
    lang = node.get(_LANG)
    out[(path, (lang, text) if lang else text)] += 1
    return
  for child in children:
    if child.tag in _CONTAINERS:
      for item in child:
        if item.tag == _LI:
          _value(item, path, out)
    elif child.tag == _DESCRIPTION:
      _struct(child, path, out)
    else:
      _value(child, path + (child.tag,), out)


def property_path(key: str, namespaces: dict) -> tuple:
  """The path of a top-level property given as an exiv2 key ('Xmp.dc.subject'), with the
  namespace URIs of its prefixes ({'dc': 'http://purl.org/dc/elements/1.1/', ...})."""
  _, prefix, name = key.split('.', 2)
  return (f'{{{namespaces[prefix]}}}{name}',)


def values(found: collections.Counter, path: tuple) -> list:
  """The values of the items at `path` (an array's items, a simple value), with repeats."""
  return [value for (p, value), n in found.items() if p == path for _ in range(n)]
