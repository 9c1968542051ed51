"""OCCI 1.1 HTTP rendering (OGF GFD.185): parsing and writing the four
structures -- ``Category``, ``Link``, ``X-OCCI-Attribute``, ``X-OCCI-Location``.

Shapes (GFD.185 "Syntax and Semantics of the Rendering"):

* ``Category: compute; scheme="http://schemas.ogf.org/occi/infrastructure#";
  class="kind"; title="..."; rel="..."; location="/compute/";
  attributes="occi.compute.cores occi.compute.state{immutable}";
  actions="... ..."`` ("Rendering of the OCCI Category, Kind and Mixin types")
* ``Link: </network/3>; rel="...#network"; self="/link/networkinterface/x";
  category="...#networkinterface"; occi.networkinterface.mac="..."``
  ("... Link instance references"); an action link is ``Link: </compute/3?action=stop>;
  rel="http://schemas.ogf.org/occi/infrastructure/compute/action#stop"``
  ("... references to OCCI Action instances")
* ``X-OCCI-Attribute: occi.compute.cores=2`` ("Rendering of OCCI Entity
  attributes": ``name=(token | quoted-string)``; nebtwist writes strings
  quoted, numbers and booleans bare, and reads a bare token as a string)
* ``X-OCCI-Location: http://host/compute/3`` ("Rendering of Location-URIs")

Several values may come as repeated headers or lines, or comma separated in
one (both MUST be supported). ``text/occi`` carries them as HTTP headers
(body ``OK``); ``text/plain`` as ``Name: value`` lines of the body;
``text/uri-list`` is for listings only ("Content-type and Accept headers").

Everything a client may get wrong raises :class:`BadRendering` (the front
answers ``400 Bad Request`` with its message).
"""

import re
from dataclasses import dataclass, field

__all__ = ["OCCIError", "BadRendering", "Category", "LinkValue", "Structures", "parse_structures",
           "parse_attribute_value", "render_value", "quote", "choose_type",
           "TEXT_PLAIN", "TEXT_OCCI", "URI_LIST"]

TEXT_PLAIN = "text/plain"
TEXT_OCCI = "text/occi"
URI_LIST = "text/uri-list"

#: GFD.183/GFD.185 Category term: LOALPHA *( LOALPHA / DIGIT / "-" / "_" ). Upper
#: case is accepted on input (pOCCI's capitalisation fixtures) and folded.
_TERM = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
#: GFD.185: attribute-name = attr-component *( "." attr-component ).
_ATTR_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_-]*)*$")
#: RFC 2616 token: no separators, no blanks.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")

#: The headers (lower case) that carry OCCI structures.
STRUCTURE_HEADERS = ("category", "link", "x-occi-attribute", "x-occi-location")


class OCCIError(Exception):
    """A request the front refuses: ``status`` (GFD.185 "Return codes")
    and a one-line ``message`` (answered as ``text/plain``)."""

    status = 400

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRendering(OCCIError, ValueError):
    """The request's OCCI rendering cannot be parsed or used (HTTP 400)."""


@dataclass
class Category:
    """An OCCI Category: a Kind, Mixin or Action (GFD.183 Category).

    :ivar term: the term (``compute``).
    :ivar scheme: the scheme, ending ``#``.
    :ivar cls: ``"kind"``, ``"mixin"`` or ``"action"``.
    :ivar attributes: attribute names, each optionally with ``{immutable}``
        or ``{required}`` (as rendered in the query interface).
    :ivar actions: action identifiers (``scheme + term``).
    """

    term: str
    scheme: str
    cls: str
    title: str = ""
    rel: str = ""
    location: str = ""
    attributes: tuple = ()
    actions: tuple = ()

    @property
    def identifier(self):
        """``scheme + term``, the Category's identity (GFD.183)."""
        return self.scheme + self.term

    def render(self, full=True):
        """The Category header value; ``full`` adds title, rel, location,
        attributes and actions (GFD.185 "Handling the Query Interface")."""
        parts = [self.term, f'scheme="{self.scheme}"', f'class="{self.cls}"']
        if full:
            if self.title:
                parts.append(f"title={quote(self.title)}")
            if self.rel:
                parts.append(f'rel="{self.rel}"')
            if self.location:
                parts.append(f'location="{self.location}"')
            if self.attributes:
                parts.append(f'attributes="{" ".join(self.attributes)}"')
            if self.actions:
                parts.append(f'actions="{" ".join(self.actions)}"')
        return "; ".join(parts)


@dataclass
class LinkValue:
    """A parsed ``Link`` value of a request: ``target`` (the URI between
    ``<>``), ``rel``, ``self``, ``category`` (identifiers, list) and its
    attributes (dict name -> value)."""

    target: str
    rel: str = ""
    self_uri: str = ""
    category: list = field(default_factory=list)
    attributes: dict = field(default_factory=dict)


@dataclass
class Structures:
    """What a request rendered: its Categories (as ``(term, scheme, class)``
    tuples), attributes (name -> value), links and locations."""

    categories: list = field(default_factory=list)
    attributes: dict = field(default_factory=dict)
    links: list = field(default_factory=list)
    locations: list = field(default_factory=list)


def quote(text):
    """``text`` as a GFD.185 quoted-string (``"`` and ``\\`` escaped)."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_value(value):
    """An attribute value as nebtwist writes it (GFD.185 "Rendering of OCCI
    Entity attributes"): ``bool`` ``true``/
    ``false``, numbers bare (floats without a needless exponent), anything
    else a quoted string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(round(value, 6))
    return quote(value)


def _split(text, sep):
    """Split ``text`` at ``sep`` outside double quotes and ``<...>``.

    :raises BadRendering: an unterminated quoted string.
    """
    out, cur, in_quote, in_angle, i = [], [], False, False, 0
    while i < len(text):
        c = text[i]
        if in_quote:
            cur.append(c)
            if c == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
            cur.append(c)
        elif c == "<" and not "".join(cur).strip():
            in_angle = True
            cur.append(c)
        elif c == ">" and in_angle:
            in_angle = False
            cur.append(c)
        elif c == sep and not in_angle:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    if in_quote:
        raise BadRendering(f"unterminated quoted string in {text!r}")
    out.append("".join(cur))
    return out


def _unquote(value, what):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    if '"' in value:
        raise BadRendering(f"badly quoted {what}: {value!r}")
    return value


def parse_attribute_value(raw, name="attribute"):
    """One attribute value (GFD.185 "Rendering of OCCI Entity attributes": token or
    quoted-string): a quoted string -> str, ``true``/
    ``false`` -> bool, a number -> int or float, another token -> str.

    :raises BadRendering: anything else (unquoted blanks or separators).
    """
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return _unquote(raw, name)
    if raw in ("true", "false"):
        return raw == "true"
    if _NUMBER.match(raw):
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    if _TOKEN.match(raw):  # GFD.185's own examples: method=poweroff
        return raw
    raise BadRendering(f"attribute {name}: value {raw!r} is neither a quoted string, a "
                       f"token, a number nor a boolean")


def _params(parts, what):
    params = {}
    for part in parts:
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise BadRendering(f"malformed {what} parameter {part.strip()!r}")
        params[key] = value
    return params


def _parse_category(value):
    parts = _split(value, ";")
    term = parts[0].strip()
    if not _TERM.match(term):
        raise BadRendering(f"malformed Category term {term!r}")
    params = _params(parts[1:], "Category")
    scheme = _unquote(params.get("scheme", ""), "scheme")
    cls = _unquote(params.get("class", ""), "class")
    if not scheme:
        raise BadRendering(f"Category {term}: no scheme")
    if cls not in ("kind", "mixin", "action"):
        raise BadRendering(f"Category {term}: class must be kind, mixin or action, not "
                           f"{cls!r}")
    return term.lower(), scheme, cls


def _parse_attribute(value, into):
    name, eq, raw = value.partition("=")
    name = name.strip()
    if not eq or not _ATTR_NAME.match(name):
        raise BadRendering(f"malformed X-OCCI-Attribute {value.strip()!r}")
    into[name] = parse_attribute_value(raw, name)


def _parse_link(value):
    parts = _split(value, ";")
    target = parts[0].strip()
    if not (target.startswith("<") and target.endswith(">")) or len(target) < 3:
        raise BadRendering(f"malformed Link target {target!r}")
    link = LinkValue(target[1:-1].strip())
    for key, raw in _params(parts[1:], "Link").items():
        if key == "rel":
            link.rel = _unquote(raw, "rel")
        elif key == "self":
            link.self_uri = _unquote(raw, "self")
        elif key == "category":
            link.category = _unquote(raw, "category").split()
        elif _ATTR_NAME.match(key):
            link.attributes[key] = parse_attribute_value(raw, key)
        else:
            raise BadRendering(f"malformed Link parameter {key!r}")
    if not link.rel:
        raise BadRendering(f"Link <{link.target}>: no rel")
    return link


def _add(structures, name, value):
    name = name.strip().lower()
    for item in _split(value, ","):
        if not item.strip():
            continue
        if name == "category":
            structures.categories.append(_parse_category(item))
        elif name == "x-occi-attribute":
            _parse_attribute(item, structures.attributes)
        elif name == "link":
            structures.links.append(_parse_link(item))
        elif name == "x-occi-location":
            structures.locations.append(item.strip())


def parse_structures(headers, body, content_type):
    """The OCCI structures of a request.

    :param headers: the request's ``(name, value)`` pairs (str), every header.
    :param body: the body (bytes).
    :param content_type: the body's media type, lower case without
        parameters (``""`` when absent).
    :return: a :class:`Structures`. Structures in headers are read whatever
        the type (``text/occi``); a ``text/plain`` (or untyped) body
        adds its ``Name: value`` lines; a ``text/uri-list`` body adds
        locations (GFD.185 "Content-type and Accept headers").
    :raises BadRendering: a malformed structure, a body line that is not
        one of the four, a body that is not UTF-8, or a body of another type.
    """
    out = Structures()
    for name, value in headers:
        if name.lower() in STRUCTURE_HEADERS:
            _add(out, name, value)
    if not body.strip():
        return out
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRendering("the body is not UTF-8") from None
    if content_type in ("", TEXT_PLAIN):
        for line in text.splitlines():
            if not line.strip():
                continue
            name, colon, value = line.partition(":")
            if not colon or name.strip().lower() not in STRUCTURE_HEADERS:
                raise BadRendering(f"unexpected line in a text/plain body: {line.strip()!r}")
            _add(out, name, value)
    elif content_type == URI_LIST:
        out.locations.extend(line.strip() for line in text.splitlines()
                             if line.strip() and not line.startswith("#"))
    elif content_type != TEXT_OCCI or text.strip() != "OK":
        raise BadRendering(f"a body of type {content_type!r} cannot be read: send "
                           f"text/plain or text/occi")
    return out


def _accept_items(value):
    items = []
    for n, part in enumerate(value.split(",")):
        bits = [b.strip() for b in part.split(";")]
        mtype, q = bits[0].lower(), 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        if mtype:
            items.append((-q, n, mtype))
    return [m for negq, _, m in sorted(items) if negq < 0]


def choose_type(accept):
    """The media type to answer in (GFD.185 "Content-type and Accept
    headers": ``text/plain`` by default,
    and for ``*/*`` or ``text/*``). Only a listing may be answered in
    ``text/uri-list``; the caller answers 400 otherwise.

    :param accept: the ``Accept`` header (str or None).
    :return: ``text/plain``, ``text/occi`` or ``text/uri-list``, or None
        when nothing acceptable can be rendered (406).
    """
    if not accept or not accept.strip():
        return TEXT_PLAIN
    for mtype in _accept_items(accept):
        if mtype in ("*/*", "text/*", TEXT_PLAIN, "text/occi+plain"):
            return TEXT_PLAIN
        if mtype == TEXT_OCCI:
            return TEXT_OCCI
        if mtype == URI_LIST:
            return URI_LIST
    return None
