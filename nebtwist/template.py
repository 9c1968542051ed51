"""OpenNebula's template language: parser, XML reader and serializers.

One :class:`Template` type serves every place OpenNebula uses templates:
``oned.conf``, VM / network / image templates, host monitoring replies and
the ``<TEMPLATE>`` element of the XML bodies.

Text grammar (behaviour of OpenNebula 3.4 ``src/template/template_parser.l``
and ``src/template/template_syntax.y``; written anew here as a regex scanner
plus recursive descent)::

    template  := attribute*
    attribute := NAME '=' ( value | vector | <empty: end of line or input> )
    vector    := '[' [ pair ( ',' pair )* ] ']'
    pair      := NAME '=' [ value ]          # no value before ',' ']' or EOL
    NAME      := [A-Za-z0-9_]+               # uppercased
    value     := '"' quoted '"' | [^=#,[\\] \\t\\r\\n]+

* Blanks, newlines and ``#`` comments (``#`` to end of line) may appear
  wherever a name, ``,`` or ``]`` may appear: at the start of a line, after a
  complete attribute, inside ``[ ... ]``.  Newlines are allowed around ``[``,
  ``,`` and ``]`` but not between ``=`` and a value.
* Quoted values may span lines.  Inside them ``\\"`` stands for ``"``; other
  backslashes are literal.  Extension (so that every string can be written):
  a run of ``2k`` backslashes right before the closing quote, or ``2k+1``
  before an escaped quote, stands for ``k`` backslashes.  ``""`` is the empty
  string.  Single quotes are ordinary characters.
* Repeated attribute names are kept in order (multimap: several DISK/NIC);
  vector sub-keys are a map where the last duplicate wins.
* ``\\r`` counts as a blank, so CRLF files parse like LF files.

Syntax errors raise :class:`TemplateSyntaxError` with OpenNebula's
``"<msg> at line L, columns C:E"`` wording (``template__error``).

XML form (``src/common/Attribute.cc``): ``<TEMPLATE><NAME><![CDATA[v]]></NAME>
<DISK><SOURCE><![CDATA[..]]></SOURCE></DISK></TEMPLATE>``, empty values as
``<NAME/>``.
"""

import base64
import binascii
import re
import threading
from collections.abc import Mapping

from lxml import etree

__all__ = ["Template", "TemplateSyntaxError"]


class TemplateSyntaxError(ValueError):
    """A template (text or XML) could not be parsed.

    Attributes: ``message`` (what was wrong, e.g. ``"syntax error, unexpected
    end of input, expecting ',' or ']'"``), ``line`` (1-based), ``column``
    (1-based column where the offending token starts) and ``end_column``
    (1-based column of its last character; equal to ``column`` at end of
    input).  ``str(error)`` follows OpenNebula's ``template__error`` format
    (``src/template/template_syntax.y``):
    ``"<message> at line <line>, columns <column>:<end_column>"``.
    """

    def __init__(self, message, line, column, end_column=None):
        if end_column is None:
            end_column = column
        self.message = message
        self.line = line
        self.column = column
        self.end_column = end_column
        super().__init__(
            "%s at line %d, columns %d:%d" % (message, line, column, end_column))


# --------------------------------------------------------------------------
# Scanner pieces.  Each is applied with .match(text, pos); no per-character
# Python loops.
# --------------------------------------------------------------------------

#: blanks, newlines and '#' comments (between tokens, outside values)
_SKIP = re.compile(r"(?:[ \t\r\n]+|#[^\n]*)*")
#: blanks only (between '=' and its value)
_BLANKS = re.compile(r"[ \t\r]*")
_NAME = re.compile(r"[A-Za-z0-9_]+")
_NAME_FULL = re.compile(r"[A-Za-z0-9_]+\Z")
_UNQUOTED = re.compile(r"[^=#,\[\] \t\r\n]+")
#: a complete double-quoted string; group 1 is the raw content
_QUOTED = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.S)
#: backslash runs that precede a quote or the end (see module docstring)
_UNESCAPE = re.compile(r'(\\+)("|\Z)')
_ESCAPE = re.compile(r'(\\*)("|\Z)')
_NEEDS_QUOTES = re.compile(r'[ \t\r\n=#,\[\]"]')
#: text that may be base64 (OpenNebula 4.0+ monitoring replies)
_BASE64 = re.compile(r"[A-Za-z0-9+/\s]+={0,2}\s*\Z")


def _unescape_repl(m):
    return "\\" * (len(m.group(1)) // 2) + m.group(2)


def _escape_repl(m):
    return m.group(1) * 2 + ('\\"' if m.group(2) else "")


def _unescape(raw):
    if "\\" not in raw:
        return raw
    return _UNESCAPE.sub(_unescape_repl, raw)


def _quote(value):
    """Double-quote *value* so that the parser gives it back unchanged."""
    if "\\" in value or '"' in value:
        value = _ESCAPE.sub(_escape_repl, value)
    return '"' + value + '"'


def _format_value(value, always_quote=False):
    if always_quote or not value or _NEEDS_QUOTES.search(value):
        return _quote(value)
    return value


class _Parser:
    """Recursive descent over *text*; builds a list of (name, value)."""

    __slots__ = ("text", "n")

    def __init__(self, text):
        self.text = text
        self.n = len(text)

    # -- errors -----------------------------------------------------------

    def _describe(self, pos):
        """(description, length) of the token found at *pos*."""
        text = self.text
        if pos >= self.n:
            return "end of input", 0
        c = text[pos]
        if c == "\n":
            return "end of line", 1
        if c == '"':
            m = _QUOTED.match(text, pos)
            if m is None:
                return "unterminated quoted string", 1
            return "quoted string", m.end() - pos
        m = _NAME.match(text, pos) or _UNQUOTED.match(text, pos)
        if m is not None:
            tok = m.group()
            shown = tok if len(tok) <= 40 else tok[:37] + "..."
            return "'%s'" % shown, len(tok)
        return "'%s'" % c, 1

    def error(self, pos, expecting):
        what, length = self._describe(pos)
        if what == "unterminated quoted string":
            message = "syntax error, unterminated quoted string"
        else:
            message = "syntax error, unexpected %s, expecting %s" % (what, expecting)
        raise self.error_at(pos, length, message)

    def error_at(self, pos, length, message):
        text = self.text
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        end = column + max(length, 1) - 1
        eol = text.find("\n", pos)
        if eol != -1 and length > 1:
            end = min(end, column + (eol - pos) - 1)
            end = max(end, column)
        return TemplateSyntaxError(message, line, column, end)

    # -- grammar ----------------------------------------------------------

    def parse(self, replace=False):
        text, n = self.text, self.n
        skip = _SKIP.match
        name_match = _NAME.match
        items = []
        index = {} if replace else None
        pos = 0
        while True:
            pos = skip(text, pos).end()
            if pos >= n:
                return items
            m = name_match(text, pos)
            if m is None:
                self.error(pos, "an attribute name")
            name = m.group().upper()
            pos = skip(text, m.end()).end()
            if pos >= n or text[pos] != "=":
                self.error(pos, "'='")
            pos = _BLANKS.match(text, pos + 1).end()
            c = text[pos] if pos < n else "\n"
            if c == "\n":
                value = ""
            elif c == "[":
                value, pos = self.vector(pos + 1)
            else:
                value, pos = self.value(pos, "a value, '[' or end of line")
            if index is None:
                items.append((name, value))
            else:
                i = index.get(name)
                if i is None:
                    index[name] = len(items)
                    items.append((name, value))
                else:
                    items[i] = (name, value)

    def value(self, pos, expecting):
        text = self.text
        if text[pos] == '"':
            m = _QUOTED.match(text, pos)
            if m is None:
                self.error(pos, expecting)
            return _unescape(m.group(1)), m.end()
        m = _UNQUOTED.match(text, pos)
        if m is None:
            self.error(pos, expecting)
        return m.group(), m.end()

    def vector(self, pos):
        text, n = self.text, self.n
        skip = _SKIP.match
        vec = {}
        pos = skip(text, pos).end()
        if pos < n and text[pos] == "]":
            return vec, pos + 1
        while True:
            m = _NAME.match(text, pos)
            if m is None:
                self.error(pos, "a vector attribute name" if vec else
                           "a vector attribute name or ']'")
            key = m.group().upper()
            pos = skip(text, m.end()).end()
            if pos >= n or text[pos] != "=":
                self.error(pos, "'='")
            pos = _BLANKS.match(text, pos + 1).end()
            c = text[pos] if pos < n else "\n"
            if c == "," or c == "]" or c == "\n":
                value = ""
            else:
                value, pos = self.value(pos, "a value, ',' or ']'")
            vec[key] = value
            pos = skip(text, pos).end()
            c = text[pos] if pos < n else ""
            if c == ",":
                pos = skip(text, pos + 1).end()
            elif c == "]":
                return vec, pos + 1
            else:
                self.error(pos, "',' or ']'")


# --------------------------------------------------------------------------
# XML
# --------------------------------------------------------------------------

_parsers = threading.local()


def _xml_parser(from_text):
    """A hardened lxml parser (one per thread; lxml parsers are not shared)."""
    key = "text" if from_text else "bytes"
    parser = getattr(_parsers, key, None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False,
            dtd_validation=False, huge_tree=False, remove_comments=True,
            remove_pis=True, encoding="utf-8" if from_text else None)
        setattr(_parsers, key, parser)
    return parser


def _cdata(value):
    # CDATA cannot hold "]]>", XML parsers turn a CDATA "\r" into "\n", and
    # lxml writes non-ASCII characters inside CDATA as (literal!) "&#NNN;"
    # when serializing to ASCII (etree.tostring's default): such values go
    # out as ordinary, escaped text instead, which reads back the same.
    if not value.isascii() or "]]>" in value or "\r" in value:
        return value
    return etree.CDATA(value)


def _check_name(name):
    if not isinstance(name, str):
        raise TypeError("attribute names must be str, not %s" % type(name).__name__)
    if _NAME_FULL.match(name) is None:
        raise ValueError("invalid attribute name %r (allowed: A-Z, 0-9, _)" % (name,))
    return name.upper()


def _scalar(value):
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError("attribute values must be str (or a mapping for vectors), "
                    "not %s" % type(value).__name__)


def _normalize(value):
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {_check_name(k): _scalar(v) for k, v in value.items()}
    return _scalar(value)


class Template:
    """Ordered multimap of template attributes.

    Names are uppercased ``[A-Za-z0-9_]+`` strings.  A value is either a
    ``str`` (single attribute) or a ``dict[str, str]`` (vector attribute;
    sub-keys uppercased, insertion order kept, last duplicate sub-key wins).
    ``int``/``float`` values given to the constructor, :meth:`add` or
    :meth:`set` are stored as their ``str()``; other types raise
    ``TypeError``, invalid names ``ValueError``.

    Lookups are case-insensitive.  Iteration yields ``(name, value)`` pairs
    in order; vector dicts are live (mutating them changes the template).
    Equality is order-sensitive.  Mirrors OpenNebula's ``Template`` /
    ``SingleAttribute`` / ``VectorAttribute`` (``src/template/Template.cc``,
    ``include/Attribute.h``).
    """

    __slots__ = ("_items",)
    __hash__ = None

    def __init__(self, items=()):
        """*items*: iterable of ``(name, value)`` pairs, or a mapping."""
        if isinstance(items, Mapping):
            items = items.items()
        self._items = [(_check_name(k), _normalize(v)) for k, v in items]

    @classmethod
    def _from_items(cls, items):
        t = cls.__new__(cls)
        t._items = items
        return t

    # -- parsing ----------------------------------------------------------

    @classmethod
    def parse(cls, text):
        """Parse template syntax (see module docstring) into a Template.

        Empty or comment-only text gives an empty Template.  Raises
        :class:`TemplateSyntaxError` naming the line and columns of the
        offending token.  Follows 3.4 ``template_parser.l`` /
        ``template_syntax.y`` (``Template::parse``).
        """
        if not isinstance(text, str):
            raise TypeError("template text must be str, not %s" % type(text).__name__)
        return cls._from_items(_Parser(text).parse())

    @classmethod
    def parse_any(cls, text):
        """:meth:`from_xml` if *text* (after leading blanks) starts with
        ``<``, else :meth:`parse`.  Accepts ``str`` or UTF-8 ``bytes``.
        Raises :class:`TemplateSyntaxError` (OpenNebula's
        ``Template::parse_str_or_xml``)."""
        if isinstance(text, (bytes, bytearray)):
            if bytes(text).lstrip().startswith(b"<"):
                return cls.from_xml(bytes(text))
            text = bytes(text).decode("utf-8")
        if text.lstrip().startswith("<"):
            return cls.from_xml(text)
        return cls.parse(text)

    @classmethod
    def from_xml(cls, xml):
        """Read the children of a ``<TEMPLATE>`` element (any root tag).

        *xml* is ``str``/``bytes`` or an lxml element (or element tree).  A
        child with element children becomes a vector (``{SUB: text}``, empty
        text -> ``""``), any other child a single attribute (its text, ``""``
        if empty).  Comments and processing instructions are ignored.  The
        parser resolves no entities, loads no DTD and uses no network.
        Malformed XML and tag names outside ``[A-Za-z0-9_]`` raise
        :class:`TemplateSyntaxError` (line/column from lxml).  Follows
        ``Template::from_xml`` / ``rebuild_attributes``
        (``src/template/Template.cc``).
        """
        if isinstance(xml, (str, bytes, bytearray)):
            from_text = isinstance(xml, str)
            data = xml.encode("utf-8") if from_text else bytes(xml)
            try:
                root = etree.fromstring(data, _xml_parser(from_text))
            except etree.XMLSyntaxError as e:
                line, column = e.position if e.position else (1, 1)
                raise TemplateSyntaxError(
                    "XML syntax error: %s" % (e.msg or "malformed document"),
                    line or 1, column or 1) from None
            if root is None:
                raise TemplateSyntaxError("XML syntax error: empty document", 1, 1)
        elif hasattr(xml, "getroot"):
            root = xml.getroot()
        else:
            root = xml
        items = []
        append = items.append
        name_ok = _NAME_FULL.match
        for child in root:
            tag = child.tag
            if not isinstance(tag, str):
                continue            # comment, PI, unresolved entity
            if name_ok(tag) is None:
                raise _bad_tag(child)
            if len(child):
                vec = {}
                elements = False
                for sub in child:
                    stag = sub.tag
                    if not isinstance(stag, str):
                        continue
                    if name_ok(stag) is None:
                        raise _bad_tag(sub)
                    elements = True
                    vec[stag.upper()] = sub.text or ""
                if elements:
                    append((tag.upper(), vec))
                else:
                    append((tag.upper(), "".join(child.itertext())))
            else:
                append((tag.upper(), child.text or ""))
        return cls._from_items(items)

    @classmethod
    def parse_monitoring(cls, text):
        """Parse an information-manager reply (``MONITOR SUCCESS <hid> <info>``'s
        *info*).

        Every ``,`` becomes a newline and the result is parsed in replace
        mode: a repeated name keeps only its last value (at the place of its
        first occurrence).  Plain text as in 1.x-3.x
        (``src/im/InformationManagerDriver.cc``); base64 as sent from 4.0 is
        accepted too: text made only of base64 characters (``=`` only as
        trailing padding) that decodes to UTF-8 text containing ``=`` is
        replaced by the decoded text.  Raises :class:`TemplateSyntaxError`.
        """
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        text = _maybe_base64(text)
        return cls._from_items(_Parser(text.replace(",", "\n")).parse(replace=True))

    # -- access -----------------------------------------------------------

    def get(self, name, default=None):
        """First value (``str`` or vector ``dict``) named *name*, else *default*."""
        name = name.upper()
        for k, v in self._items:
            if k == name:
                return v
        return default

    def get_str(self, name, default=None):
        """First value named *name* if it is a single (``str``) attribute, else
        *default* (also when the first one is a vector)."""
        v = self.get(name)
        return v if isinstance(v, str) else default

    def get_int(self, name, default=None):
        """:meth:`get_str` converted with ``int()``; *default* when missing or
        not an integer (leading/trailing blanks allowed)."""
        v = self.get_str(name)
        if v is None:
            return default
        try:
            return int(v.strip())
        except ValueError:
            return default

    def get_float(self, name, default=None):
        """:meth:`get_str` converted with ``float()``; *default* when missing or
        not a number."""
        v = self.get_str(name)
        if v is None:
            return default
        try:
            return float(v.strip())
        except ValueError:
            return default

    def get_all(self, name):
        """List of all values named *name* (may be empty), in order."""
        name = name.upper()
        return [v for k, v in self._items if k == name]

    def get_vector(self, name):
        """First vector (``dict``, live) named *name*, or ``None``; single
        attributes of that name are skipped."""
        name = name.upper()
        for k, v in self._items:
            if k == name and isinstance(v, dict):
                return v
        return None

    def names(self):
        """Distinct attribute names, in order of first appearance."""
        return list(dict.fromkeys(k for k, _ in self._items))

    def __contains__(self, name):
        if not isinstance(name, str):
            return False
        name = name.upper()
        return any(k == name for k, _ in self._items)

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __eq__(self, other):
        if not isinstance(other, Template):
            return NotImplemented
        return self._items == other._items

    def __repr__(self):
        return "Template(%r)" % (self._items,)

    # -- modification -----------------------------------------------------

    def set(self, name, value):
        """Replace all attributes named *name* by one with *value*, placed
        where the first one was (or appended).  Vector values are copied."""
        name = _check_name(name)
        value = _normalize(value)
        items = self._items
        first = None
        kept = []
        for k, v in items:
            if k == name:
                if first is None:
                    first = len(kept)
                    kept.append((name, value))
            else:
                kept.append((k, v))
        if first is None:
            kept.append((name, value))
        self._items = kept

    def add(self, name, value):
        """Append an attribute (several may share a name).  Vector values are
        copied (with uppercased sub-keys)."""
        self._items.append((_check_name(name), _normalize(value)))

    def remove(self, name):
        """Remove every attribute named *name*; return how many were removed."""
        name = name.upper()
        before = len(self._items)
        self._items = [kv for kv in self._items if kv[0] != name]
        return before - len(self._items)

    def replace_from(self, other):
        """For every name in *other*, :meth:`set` its last value here (host
        monitoring update: new values replace old ones; vectors copied)."""
        last = {}
        for k, v in other:
            last[k] = v
        for k, v in last.items():
            self.set(k, v)

    def copy(self):
        """Deep copy (vector dicts are copied)."""
        return self._from_items(
            [(k, dict(v) if isinstance(v, dict) else v) for k, v in self._items])

    # -- serialization ----------------------------------------------------

    def to_text(self):
        """Template syntax, one attribute per line, each line ending in
        ``\\n`` (``""`` for an empty template).  Singles: ``NAME=value``,
        double-quoted when the value is empty or contains blanks, ``=``,
        ``#``, ``,``, ``[``, ``]``, ``"`` or line breaks.  Vectors:
        ``NAME=[\\n  A="1",\\n  B="2" ]`` (sub-values always quoted; an empty
        vector is ``NAME=[ ]``).  ``parse(t.to_text()) == t`` for every
        Template ``t``.  (Cf. ``Template::to_str`` / ``Attribute::marshall``.)
        """
        out = []
        for name, value in self._items:
            if isinstance(value, dict):
                if not value:
                    out.append("%s=[ ]\n" % name)
                    continue
                body = ",\n".join("  %s=%s" % (k, _format_value(v, True))
                                  for k, v in value.items())
                out.append("%s=[\n%s ]\n" % (name, body))
            else:
                out.append("%s=%s\n" % (name, _format_value(value)))
        return "".join(out)

    def to_xml(self, tag="TEMPLATE"):
        """An lxml element ``<tag>`` holding one child per attribute:
        ``<NAME><![CDATA[value]]></NAME>``, vectors as
        ``<DISK><SOURCE><![CDATA[..]]></SOURCE>...</DISK>``, empty values as
        ``<NAME/>`` (``src/common/Attribute.cc``).  Values containing ``]]>``
        or ``\\r`` or non-ASCII characters are written as escaped text
        instead of CDATA (same content once parsed).  Raises ``ValueError``
        (from lxml) for what XML cannot carry: characters such as ``\\x00``,
        and names starting with a digit.  An empty vector becomes
        ``<NAME/>`` and so reads back as an empty single attribute."""
        root = etree.Element(tag)
        sub = etree.SubElement
        for name, value in self._items:
            el = sub(root, name)
            if isinstance(value, dict):
                for k, v in value.items():
                    s = sub(el, k)
                    if v:
                        s.text = _cdata(v)
            elif value:
                el.text = _cdata(value)
        return root

    def to_xml_string(self, tag="TEMPLATE"):
        """:meth:`to_xml` serialized as a ``str`` (no XML declaration)."""
        return etree.tostring(self.to_xml(tag), encoding="unicode")


def _bad_tag(el):
    line = el.sourceline or 1
    return TemplateSyntaxError(
        "invalid attribute name %r (allowed: A-Z, 0-9, _)" % (el.tag,), line, 1)


def _maybe_base64(text):
    stripped = text.strip()
    if not stripped or "=" in stripped.rstrip("=") or not _BASE64.match(stripped):
        return text
    try:
        decoded = base64.b64decode("".join(stripped.split()), validate=True)
        decoded = decoded.decode("utf-8")
    except (binascii.Error, ValueError):
        return text
    return decoded if "=" in decoded else text
