"""VM template variables: ``$VAR``, ``$VAR[ATTR]``, ``$VAR[ATTR, KEY=VALUE]``.

OpenNebula expands these in a VM's ``CONTEXT`` values and its
``REQUIREMENTS`` when the VM is created (3.4 ``src/vm/vm_var_parser.l``,
``src/vm/vm_var_syntax.y``, ``VirtualMachine::parse_context`` and
``parse_requirements``; reference section 5.2). The grammar::

    text      := ( literal | variable )*
    literal   := [^$]+
    variable  := '$' NAME [ '[' NAME [ ',' NAME '=' VALUE ] ']' ]
    NAME      := [A-Za-z0-9_]+                  # uppercased
    VALUE     := '"' [^"]* '"' | [A-Za-z0-9]+   # case kept

Blanks (space, tab) may stand after ``[``, before ``]`` and around ``,`` and
``=``. Names are case-insensitive; selector values are compared exactly.

What a variable expands to (missing anything -> the empty string):

* ``$UID``: the owner's id; ``$TEMPLATE``: base64 of the VM's XML; any other
  ``$VAR``: the VM template's first ``VAR`` if it is a single attribute (so
  ``$NAME`` and ``$VMID`` work, both being in the template).
* ``$VAR[ATTR]``: ``ATTR`` of the VM template's first ``VAR`` if it is a
  vector; ``$VAR[ATTR, KEY=VALUE]``: ``ATTR`` of the first ``VAR`` vector
  whose ``KEY`` equals ``VALUE`` (``$NIC[IP, NETWORK="public"]``).
* ``$NETWORK[ATTR, NETWORK="name"]`` or ``NETWORK_ID=n``: ``ATTR`` of that
  virtual network's template, for a network one of the VM's NICs is on;
  ``ATTR`` = ``TEMPLATE`` gives base64 of the network's XML (with leases).
* ``$IMAGE[ATTR, IMAGE="name"]`` or ``IMAGE_ID=n``: the same through the VM's
  DISKs and the image pool (``nebula.imagepool``, when there is one).
* ``$USER[ATTR]``: ``ATTR`` of the owner's template, else the owner's field
  of that name (``ID``, ``NAME``, ``GID``, ``GNAME``, ``AUTH_DRIVER``,
  ``ENABLED``); ``TEMPLATE`` gives base64 of the owner's XML.

Where nebtwist differs from 3.4, on purpose:

* After a complete variable, any character ends it and is kept: 3.4's lexer
  made ``"Hi $NAME, bye"`` (and ``$NAME ]``, ``$NAME =``) a syntax error.
* The owner's ``PASSWORD`` (its SHA1, which is also the EC2 secret key) is
  never expanded: not as ``$USER[PASSWORD]``, not inside ``$USER[TEMPLATE]``.

As in 3.4 there is no escape for a literal ``$``: a ``$`` not followed by a
name (``$$``, ``5$``) is a syntax error, as is a malformed bracket part.
Errors raise :class:`VariableSyntaxError`.

The parser and :func:`expand` are pure; what a variable means is asked of a
*lookup* object with two methods, ``single(name)`` and
``vector(name, attribute, key, value)``, each returning a str.
:class:`VMLookup` answers them for a VM; :func:`expand_vm` is the hook the
DispatchManager calls at allocation.
"""

import base64
import re
from dataclasses import dataclass

from lxml import etree

from nebtwist.errors import APIError

__all__ = ["Variable", "VariableSyntaxError", "VMLookup", "expand", "expand_vm", "parse"]

_NAME = re.compile(r"[A-Za-z0-9_]+")
_BLANKS = re.compile(r"[ \t]*")
_ALNUM = re.compile(r"[A-Za-z0-9]+")
_QUOTED = re.compile(r'"([^"]*)"')


class VariableSyntaxError(ValueError):
    """A malformed variable.

    Attributes: ``message`` (what was expected and what was found),
    ``line`` (1-based), ``column`` and ``end_column`` (1-based, the span of
    the offending text). ``str(error)`` follows 3.4's ``vm_var__error``
    format: ``"<message> at line L, columns C:E"``.
    """

    def __init__(self, message, line, column, end_column=None):
        self.message = message
        self.line = line
        self.column = column
        self.end_column = column if end_column is None else end_column
        super().__init__(f"{message} at line {line}, columns {column}:{self.end_column}")


@dataclass(frozen=True)
class Variable:
    """One parsed variable.

    ``name``, ``attribute`` and ``key`` are uppercased; ``attribute`` is
    None for ``$NAME``; ``key`` and ``value`` are None without a selector.
    ``text`` is the variable as written.
    """

    name: str
    attribute: str = None
    key: str = None
    value: str = None
    text: str = ""


def _position(text, pos):
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _found(text, pos):
    if pos >= len(text):
        return "end of text"
    if text[pos] == "\n":
        return "end of line"
    m = _NAME.match(text, pos)
    token = m.group() if m else text[pos]
    return repr(token[:20])


def _error(text, start, pos, expecting):
    shown = text[start:pos]
    if len(shown) > 40:
        shown = shown[:37] + "..."
    line, column = _position(text, pos)
    m = _NAME.match(text, pos)
    length = len(m.group()) if m else (1 if pos < len(text) else 0)
    return VariableSyntaxError(
        f'syntax error in variable "{shown}": expecting {expecting}, found '
        f"{_found(text, pos)}", line, column, column + max(length - 1, 0))


def _blanks(text, pos):
    return _BLANKS.match(text, pos).end()


def _variable(text, start):
    """Parse the variable at ``text[start] == "$"``; (Variable, end)."""
    m = _NAME.match(text, start + 1)
    if m is None:
        raise _error(text, start, start + 1,
                     "a variable name after '$' (a literal '$' cannot be written)")
    name = m.group().upper()
    pos = m.end()
    if pos >= len(text) or text[pos] != "[":
        return Variable(name, text=text[start:pos]), pos
    pos = _blanks(text, pos + 1)
    m = _NAME.match(text, pos)
    if m is None:
        raise _error(text, start, pos, "an attribute name after '['")
    attribute = m.group().upper()
    pos = _blanks(text, m.end())
    key = value = None
    if pos < len(text) and text[pos] == ",":
        pos = _blanks(text, pos + 1)
        m = _NAME.match(text, pos)
        if m is None:
            raise _error(text, start, pos, "KEY=VALUE after ','")
        key = m.group().upper()
        pos = _blanks(text, m.end())
        if pos >= len(text) or text[pos] != "=":
            raise _error(text, start, pos, f"'=' after {key}")
        pos = _blanks(text, pos + 1)
        if pos < len(text) and text[pos] == '"':
            m = _QUOTED.match(text, pos)
            if m is None:
                raise _error(text, start, pos, 'a closing \'"\' for the quoted value')
            value = m.group(1)
        else:
            m = _ALNUM.match(text, pos)
            if m is None:
                raise _error(text, start, pos,
                             'a value after \'=\': "quoted" or letters and digits only')
            value = m.group()
        pos = _blanks(text, m.end())
        if pos >= len(text) or text[pos] != "]":
            raise _error(text, start, pos, "']' after the value")
    elif pos >= len(text) or text[pos] != "]":
        raise _error(text, start, pos, f"',' or ']' after {attribute}")
    pos += 1
    return Variable(name, attribute, key, value, text[start:pos]), pos


def parse(text):
    """Split ``text`` into literal strings and :class:`Variable` objects, in order.

    Empty literals are left out, so ``"".join`` of the literals with each
    variable's ``text`` gives ``text`` back.

    :raises VariableSyntaxError: a ``$`` without a name, or a malformed
        ``[ATTR, KEY=VALUE]`` part.
    :raises TypeError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"variable text must be str, not {type(text).__name__}")
    pieces = []
    pos = 0
    while True:
        i = text.find("$", pos)
        if i < 0:
            if pos < len(text):
                pieces.append(text[pos:])
            return pieces
        if i > pos:
            pieces.append(text[pos:i])
        var, pos = _variable(text, i)
        pieces.append(var)


def expand(text, lookup):
    """``text`` with every variable replaced by what ``lookup`` says.

    :param lookup: has ``single(name) -> str`` and
        ``vector(name, attribute, key, value) -> str`` (names uppercased;
        ``key``/``value`` None without a selector). ``None`` counts as "".
    :raises VariableSyntaxError: as :func:`parse`; nothing is looked up then.
    """
    out = []
    for piece in parse(text):
        if isinstance(piece, str):
            out.append(piece)
        elif piece.attribute is None:
            out.append(lookup.single(piece.name) or "")
        else:
            out.append(lookup.vector(piece.name, piece.attribute, piece.key, piece.value) or "")
    return "".join(out)


# ---------------------------------------------------------------------------
# What variables mean for a VM


def _b64_xml(element):
    return base64.b64encode(etree.tostring(element, encoding="utf-8")).decode("ascii")


def _b64_text(xml_text):
    return base64.b64encode(xml_text.encode("utf-8")).decode("ascii")


def _from_pool(pool, oid):
    if pool is None:
        return None
    objects = getattr(pool, "objects", pool)
    try:
        return objects.get(oid)
    except Exception:  # noqa: BLE001 - a pool that raises for a missing id
        return None


def _id_of(vectors, key, value, id_key):
    """The int ``id_key`` of the first vector whose ``key`` equals ``value``."""
    for vec in vectors:
        if isinstance(vec, dict) and vec.get(key, "") == value:
            try:
                return int(vec.get(id_key, ""))
            except ValueError:
                return None
    return None


#: Owner fields ``$USER[ATTR]`` falls back to (never PASSWORD).
USER_FIELDS = {
    "ID": lambda u: str(u.oid), "NAME": lambda u: u.name, "GID": lambda u: str(u.gid),
    "GNAME": lambda u: u.gname, "AUTH_DRIVER": lambda u: u.auth_driver,
    "ENABLED": lambda u: "1" if u.enabled else "0",
}


class VMLookup:
    """Answers variables for one VM (the lookup :func:`expand` wants).

    :param vm: a :class:`~nebtwist.core.objects.VirtualMachine`.
    :param users: the user pool, or any ``oid -> User`` mapping (``.get``).
    :param vnets: the virtual network pool, or an ``oid -> VirtualNetwork`` mapping.
    :param images: the image pool (``oid -> image`` with ``template`` and
        ``info()``), or None where there are no images: ``$IMAGE[...]``
        then expands to "".
    """

    def __init__(self, vm, users=None, vnets=None, images=None):
        self.vm = vm
        self.users = users
        self.vnets = vnets
        self.images = images

    @classmethod
    def for_vm(cls, nebula, vm):
        """A lookup over ``nebula``'s pools (``imagepool`` if it has one)."""
        return cls(vm, nebula.userpool, nebula.vnpool, getattr(nebula, "imagepool", None))

    def single(self, name):
        """``$NAME``: ``UID``, ``TEMPLATE``, else the VM template's single attribute."""
        if name == "TEMPLATE":
            return _b64_xml(self.vm.to_xml())
        if name == "UID":
            return str(self.vm.uid)
        return self.vm.template.get_str(name) or ""

    def vector(self, name, attribute, key, value):
        """``$NAME[ATTR]`` / ``$NAME[ATTR, KEY=VALUE]`` (see the module docstring)."""
        if name == "NETWORK":
            return self._network(attribute, key, value)
        if name == "IMAGE":
            return self._image(attribute, key, value)
        if name == "USER":
            return self._user(attribute)
        vectors = self.vm.template.get_all(name)
        if key is None:
            first = vectors[0] if vectors else None
            return first.get(attribute, "") if isinstance(first, dict) else ""
        for vec in vectors:
            if isinstance(vec, dict) and vec.get(key, "") == value:
                return vec.get(attribute, "")
        return ""

    def _network(self, attribute, key, value):
        if key not in ("NETWORK", "NETWORK_ID"):
            return ""
        vid = _id_of(self.vm.template.get_all("NIC"), key, value, "NETWORK_ID")
        vnet = _from_pool(self.vnets, vid) if vid is not None else None
        if vnet is None:
            return ""
        if attribute == "TEMPLATE":
            return _b64_text(vnet.info())
        return vnet.template.get_str(attribute) or ""

    def _image(self, attribute, key, value):
        if key not in ("IMAGE", "IMAGE_ID") or self.images is None:
            return ""
        iid = _id_of(self.vm.template.get_all("DISK"), key, value, "IMAGE_ID")
        image = _from_pool(self.images, iid) if iid is not None else None
        if image is None:
            return ""
        if attribute == "TEMPLATE":
            info = image.info() if hasattr(image, "info") else image.body()
            return _b64_text(info)
        return image.template.get_str(attribute) or ""

    def _user(self, attribute):
        user = _from_pool(self.users, self.vm.uid)
        if user is None:
            return ""
        if attribute == "TEMPLATE":
            root = user.to_xml()
            for el in root.findall("PASSWORD"):
                root.remove(el)
            return _b64_xml(root)
        found = user.template.get_str(attribute)
        if found:
            return found
        field = USER_FIELDS.get(attribute)
        return field(user) if field is not None else ""


# ---------------------------------------------------------------------------
# The allocation hook


def expand_attribute(where, text, lookup):
    """:func:`expand`, turning a syntax error into an :class:`APIError`.

    :param where: what is expanded, for the message (``"CONTEXT/HOSTNAME"``).
    :raises APIError: ``"Error parsing <where>: <syntax error>"``.
    """
    try:
        return expand(text, lookup)
    except VariableSyntaxError as e:
        raise APIError(f"Error parsing {where}: {e}") from None


def expand_vm(nebula, user, vm):
    """Expand ``vm``'s CONTEXT values and REQUIREMENTS in place (at allocation).

    Call once the VM has its oid, NAME, VMID and NIC leases (so
    ``$NIC[IP, NETWORK="x"]`` has an IP to give). As 3.4
    ``VirtualMachine::parse_context``: CONTEXT is taken out of the template,
    its values are expanded (so ``$TEMPLATE`` there shows the VM without it)
    and it goes back, last, with ``TARGET`` defaulting to oned.conf's
    ``DEFAULT_DEVICE_PREFIX`` (``hd``) + ``b``; then REQUIREMENTS is expanded
    (``parse_requirements``). RANK is left as written, as in 3.4.

    ``CONTEXT/FILES`` names front-end files that the prolog copies into the
    VM's context image, so only oneadmin and the oneadmin group may give it:
    3.4 ships it in ``VM_RESTRICTED_ATTR``, which the DispatchManager checks
    before this runs (:func:`nebtwist.core.templates.check_restricted`).

    :param user: the :class:`~nebtwist.core.objects.User` creating the VM.
    :raises APIError: more than one CONTEXT or REQUIREMENTS, a CONTEXT that
        is not a vector or a REQUIREMENTS that is, or a malformed variable.
    """
    template = vm.template
    contexts = template.get_all("CONTEXT")
    requirements = template.get_all("REQUIREMENTS")
    if len(contexts) > 1:
        raise APIError("Only one CONTEXT attribute can be defined.")
    if len(requirements) > 1:
        raise APIError("Only one REQUIREMENTS attribute can be defined.")
    if contexts and not isinstance(contexts[0], dict):
        raise APIError("Wrong format for CONTEXT attribute: it must be a vector, "
                       "CONTEXT = [ KEY = value, ... ].")
    if requirements and not isinstance(requirements[0], str):
        raise APIError("Wrong format for REQUIREMENTS attribute: it must be a single "
                       'value, REQUIREMENTS = "expression".')
    lookup = VMLookup.for_vm(nebula, vm)
    if contexts:
        template.remove("CONTEXT")
        parsed = {k: expand_attribute(f"CONTEXT/{k}", v, lookup) for k, v in contexts[0].items()}
        if not parsed.get("TARGET"):
            parsed["TARGET"] = nebula.config.get("DEFAULT_DEVICE_PREFIX", "hd") + "b"
        template.add("CONTEXT", parsed)
    if requirements:
        template.set("REQUIREMENTS", expand_attribute("REQUIREMENTS", requirements[0], lookup))
    vm.touch()
