"""ACL rules and the authorization decision (OpenNebula 3.4).

An ACL rule says *who* (a user ``#uid``, the users of a group ``@gid``, or
everyone ``*``) may do *what* (``USE``, ``MANAGE``, ``ADMIN``, ``CREATE``)
to *which* objects (one or more types, then one object ``#oid``, the objects
of a group ``@gid``, or all of them ``*``). OpenNebula 3.4 stores each part
as a 64-bit mask (``src/acl/AclRule.cc``, ``include/AclRule.h``):

* user: ``INDIVIDUAL_ID`` (``0x100000000``), ``GROUP_ID`` (``0x200000000``)
  or ``ALL_ID`` (``0x400000000``) or'ed with the id in the low 32 bits;
* resource: the same selector bits and id, or'ed with one bit per object
  type (``PoolObjectSQL::ObjectType``: VM ``0x1000000000``, HOST
  ``0x2000000000``, NET ``0x4000000000``, IMAGE ``0x8000000000``, USER
  ``0x10000000000``, TEMPLATE ``0x20000000000``, GROUP ``0x40000000000``,
  ACL ``0x80000000000``, DATASTORE ``0x100000000000``, CLUSTER
  ``0x200000000000``);
* rights: USE ``0x1``, MANAGE ``0x2``, ADMIN ``0x4``, CREATE ``0x8``
  (``AuthRequest::Operation``).

``one.acl.addrule`` takes the three masks as hex strings (``"200000001"``);
the ``oneacl`` command turns ``"@1 VM+NET/* CREATE"`` into them, as 3.4's
Ruby ``OpenNebula::Acl.parse_rule`` did (:func:`parse_rule`).
``<ACL_POOL>`` lists each rule as ``<ACL><ID/><USER/><RESOURCE/><RIGHTS/>
<STRING/></ACL>``, masks in lowercase hex without ``0x``.

The decision (:func:`authorize`) follows 3.4 ``AuthRequest`` and
``AclManager::authorize``: oneadmin (uid 0) and the oneadmin group (gid 0)
may do everything; otherwise the object's nine permission bits act as three
implicit rules (``#owner TYPE/#oid`` owner bits, ``@group TYPE/#oid`` group
bits, ``* TYPE/#oid`` other bits, ``PoolObjectAuth::get_acl_rules``), then
the stored rules for ``*``, ``#uid`` and ``@gid`` are searched. A rule
grants a request when its rights include the requested one and its resource
names the type with ``*``, with the object's group ``@gid`` or with the
object's id ``#oid``. Requests for ADMIN are not satisfied by MANAGE, nor
MANAGE by USE: each right is checked on its own, as in 3.4.

At bootstrap (no ``acl`` row in ``pool_control``) the two 3.4 default rules
are created (``src/acl/AclManager.cc``)::

    0: @1 VM+NET+IMAGE+TEMPLATE/* CREATE   (users may create virtual resources)
    1: @1 HOST/* MANAGE                    (users' VMs may be deployed on any host)

The table is ``acl(oid, usr, resource, rights)``; 3.4 names the first mask
column ``user``, a reserved word in PostgreSQL, so nebtwist calls it ``usr``.
"""

from collections import namedtuple

from lxml import etree

from nebtwist.errors import ActionError, APIError, NoSuchObject


def _dbm():
    # Imported on use: the ``oneacl`` command needs the encoding, not the database.
    from nebtwist.core import db

    return db

INDIVIDUAL_ID = 0x100000000
GROUP_ID = 0x200000000
ALL_ID = 0x400000000
#: The selector bits (``#``, ``@``, ``*``) of a user or resource mask.
SELECTORS = INDIVIDUAL_ID | GROUP_ID | ALL_ID
#: The id part of a user or resource mask.
ID_MASK = 0xFFFFFFFF

#: Object types and their bits, in the order 3.4 prints them (``AclRule::build_str``).
TYPES = {
    "VM": 0x1000000000,
    "HOST": 0x2000000000,
    "NET": 0x4000000000,
    "IMAGE": 0x8000000000,
    "USER": 0x10000000000,
    "TEMPLATE": 0x20000000000,
    "GROUP": 0x40000000000,
    "ACL": 0x80000000000,
    "DATASTORE": 0x100000000000,
    "CLUSTER": 0x200000000000,
}
#: Every valid type bit.
TYPE_MASK = sum(TYPES.values())

#: Rights (``AuthRequest::Operation``), in print order.
RIGHTS = {"USE": 0x1, "MANAGE": 0x2, "ADMIN": 0x4, "CREATE": 0x8}

#: Letters of ``oneacl list``'s RES_VHNIUTGDC and OPE_UMAC columns (3.4 ``one_acl_helper.rb``).
RESOURCE_LETTERS = (("VM", "V"), ("HOST", "H"), ("NET", "N"), ("IMAGE", "I"), ("USER", "U"),
                    ("TEMPLATE", "T"), ("GROUP", "G"), ("DATASTORE", "D"), ("CLUSTER", "C"))
RIGHT_LETTERS = (("USE", "u"), ("MANAGE", "m"), ("ADMIN", "a"), ("CREATE", "c"))

#: The object types of pool objects, by their XML root element.
ROOT_TYPES = {"VM": "VM", "VNET": "NET", "HOST": "HOST", "USER": "USER", "GROUP": "GROUP",
              "IMAGE": "IMAGE", "VMTEMPLATE": "TEMPLATE", "TEMPLATE": "TEMPLATE",
              "DATASTORE": "DATASTORE", "CLUSTER": "CLUSTER"}

ONEADMIN_ID = 0
ONEADMIN_GROUP = 0
USERS_GROUP = 1

#: The rules 3.4 creates on first start: (user, resource, rights).
DEFAULT_RULES = (
    (GROUP_ID | USERS_GROUP,
     ALL_ID | TYPES["VM"] | TYPES["NET"] | TYPES["IMAGE"] | TYPES["TEMPLATE"], RIGHTS["CREATE"]),
    (GROUP_ID | USERS_GROUP, ALL_ID | TYPES["HOST"], RIGHTS["MANAGE"]),
)


class AclSyntaxError(ValueError):
    """A rule string (``"@1 VM/* USE"``) or hex mask that cannot be read."""


#: What an authorization decision needs to know of an object
#: (3.4 ``PoolObjectAuth``): type name, id, owner uid, group gid and the
#: nine permission bits (None for objects without them: hosts, users, groups).
ObjectAuth = namedtuple("ObjectAuth", "type oid uid gid perms")


def object_auth(obj):
    """The :class:`ObjectAuth` of a pool object.

    Objects with an owner (VMs, networks, images, templates) give their
    uid, gid and permission bits. Users are owned by nobody and belong to
    their group (3.4 ``User`` is built with uid -1); hosts and groups have
    neither owner nor group, so only ACL rules (or being an administrator)
    grant rights on them.

    :raises ValueError: an object whose type ACLs do not know.
    """
    kind = ROOT_TYPES.get(getattr(obj, "ROOT", None))
    if kind is None:
        raise ValueError(f"no ACL type for {type(obj).__name__}")
    perms = getattr(obj, "permissions", None)
    if perms is not None and hasattr(obj, "uid"):
        return ObjectAuth(kind, obj.oid, obj.uid, obj.gid, tuple(perms))
    if kind == "USER":
        return ObjectAuth(kind, obj.oid, -1, obj.gid, None)
    return ObjectAuth(kind, obj.oid, -1, -1, None)


# ---------------------------------------------------------------------------
# Rules and their two spellings


def _id_spec(mask, allow_all=True):
    sel = mask & SELECTORS
    oid = mask & ID_MASK
    if sel == GROUP_ID:
        return f"@{oid}"
    if sel == INDIVIDUAL_ID:
        return f"#{oid}"
    if sel == ALL_ID and allow_all:
        return "*"
    return "??"


def rule_string(user, resource, rights):
    """The 3.4 text of a rule: ``"@1 VM+NET+IMAGE+TEMPLATE/* CREATE"``."""
    types = "+".join(name for name, bit in TYPES.items() if resource & bit)
    ops = "+".join(name for name, bit in RIGHTS.items() if rights & bit)
    return f"{_id_spec(user)} {types}/{_id_spec(resource)} {ops}"


def malformed(user, resource, rights):
    """Why the masks do not make a rule (3.4 ``AclRule::malformed``), or None.

    Problems are joined with ``"; "``.
    """
    errors = []
    usel = user & SELECTORS
    if user < 0 or user >> 35:
        errors.append("wrong [user] value")
    elif usel not in (INDIVIDUAL_ID, GROUP_ID, ALL_ID):
        if usel == 0:
            errors.append("[user] is missing one of the INDIVIDUAL, GROUP or ALL bits")
        else:
            errors.append("[user] INDIVIDUAL (#), GROUP (@) and ALL (*) bits are exclusive")
    elif usel == ALL_ID and user & ID_MASK:
        errors.append("when using the ALL bit, [user] ID must be 0")
    rsel = resource & SELECTORS
    if resource < 0:
        errors.append("wrong [resource] value")
    else:
        if rsel not in (INDIVIDUAL_ID, GROUP_ID, ALL_ID):
            if rsel == 0:
                errors.append("[resource] is missing one of the INDIVIDUAL, GROUP or ALL bits")
            else:
                errors.append("[resource] INDIVIDUAL (#), GROUP (@) and ALL (*) bits are "
                              "exclusive")
        elif rsel == ALL_ID and resource & ID_MASK:
            errors.append("when using the ALL bit, [resource] ID must be 0")
        if resource & 0x800000000:
            errors.append("wrong [resource] selector bit 0x800000000")
        types = resource & ~(SELECTORS | ID_MASK | 0x800000000)
        if types == 0:
            errors.append("[resource] type is missing")
        elif types & ~TYPE_MASK:
            errors.append("wrong [resource] type")
    if rights <= 0:
        errors.append("wrong [rights], it cannot be 0")
    elif rights > 0xF:
        errors.append("wrong [rights], it cannot be bigger than 0xF")
    return "; ".join(errors) or None


def _parse_id(text, what, allow_all=True):
    if text == "*" and allow_all:
        return ALL_ID
    if len(text) >= 2 and text[0] in "#@" and text[1:].isdigit():
        oid = int(text[1:])
        if oid > ID_MASK:
            raise AclSyntaxError(f"{what} ID {text[1:]} is too big")
        return (INDIVIDUAL_ID if text[0] == "#" else GROUP_ID) | oid
    raise AclSyntaxError(f"{what} must be #<id>, @<id> or *, not {text!r}")


def parse_user(text):
    """``"#5"``, ``"@1"`` or ``"*"`` -> the user mask.

    :raises AclSyntaxError: anything else.
    """
    return _parse_id(text.strip(), "User")


def parse_resource(text):
    """``"VM+NET/@104"`` -> the resource mask (type names in any case).

    :raises AclSyntaxError: no ``/``, an unknown type, or a bad id part.
    """
    text = text.strip()
    if text.count("/") != 1:
        raise AclSyntaxError(f"Resource must be TYPE[+TYPE...]/<#id|@id|*>, not {text!r}")
    types, spec = text.split("/")
    mask = 0
    for name in types.split("+"):
        bit = TYPES.get(name.strip().upper())
        if bit is None:
            raise AclSyntaxError(f"Unknown resource type {name!r} (known: "
                                 f"{', '.join(TYPES)})")
        mask |= bit
    return mask | _parse_id(spec, "Resource ID")


def parse_rights(text):
    """``"USE+MANAGE"`` -> the rights mask (names in any case).

    :raises AclSyntaxError: an unknown right.
    """
    mask = 0
    for name in text.strip().split("+"):
        bit = RIGHTS.get(name.strip().upper())
        if bit is None:
            raise AclSyntaxError(f"Unknown right {name!r} (known: {', '.join(RIGHTS)})")
        mask |= bit
    return mask


def parse_rule(text):
    """``"<user> <resource> <rights>"`` -> ``(user, resource, rights)`` masks.

    :raises AclSyntaxError: not three blank-separated parts, or a bad part.
    """
    parts = text.split()
    if len(parts) != 3:
        raise AclSyntaxError("An ACL rule needs three components: User, Resource, Rights "
                             f"(e.g. \"@1 VM+NET/* USE\"), not {text!r}")
    return parse_user(parts[0]), parse_resource(parts[1]), parse_rights(parts[2])


def to_hex(mask):
    """A mask as 3.4 writes it: lowercase hex, no ``0x``."""
    return format(mask, "x")


def from_hex(value, what):
    """A mask from ``one.acl.addrule``: a hex string (optional ``0x``) or an int.

    :raises APIError: not a non-negative hex number.
    """
    if isinstance(value, bool):
        raise APIError(f"Wrong {what} mask {value!r}.")
    if isinstance(value, int):
        mask = value
    else:
        text = str(value).strip().lower()
        if text.startswith("0x"):
            text = text[2:]
        try:
            if not text or any(c not in "0123456789abcdef" for c in text):
                raise ValueError
            mask = int(text, 16)
        except ValueError:
            raise APIError(f"Wrong {what} mask {value!r}: it must be a hexadecimal "
                           f"number.") from None
    if mask < 0 or mask >= 1 << 63:
        raise APIError(f"Wrong {what} mask {value!r}: out of range.")
    return mask


class AclRule:
    """One stored rule: ``oid`` and the three masks."""

    __slots__ = ("oid", "user", "resource", "rights", "string")

    def __init__(self, oid, user, resource, rights):
        self.oid = oid
        self.user = user
        self.resource = resource
        self.rights = rights
        self.string = rule_string(user, resource, rights)

    def key(self):
        """``(user, resource, rights)``: two rules with the same key are the same rule."""
        return self.user, self.resource, self.rights

    def to_xml(self, parent=None):
        """``<ACL>`` with ID, USER, RESOURCE, RIGHTS (hex) and STRING."""
        el = etree.Element("ACL") if parent is None else etree.SubElement(parent, "ACL")
        for tag, value in (("ID", str(self.oid)), ("USER", to_hex(self.user)),
                           ("RESOURCE", to_hex(self.resource)),
                           ("RIGHTS", to_hex(self.rights)), ("STRING", self.string)):
            etree.SubElement(el, tag).text = value
        return el

    def __repr__(self):
        return f"AclRule({self.oid}, {self.string!r})"


def _rights_bits(bits):
    """Rights mask of three (U, M, A) permission ints."""
    u, m, a = bits
    return (RIGHTS["USE"] if u == 1 else 0) | (RIGHTS["MANAGE"] if m == 1 else 0) | (
        RIGHTS["ADMIN"] if a == 1 else 0)


def implicit_allows(auth, uid, gid, right):
    """Do the object's permission bits grant ``right`` (a mask) to ``uid``/``gid``?

    The owner bits apply to the owner, the group bits to the users of the
    object's group, the other bits to everyone (3.4
    ``PoolObjectAuth::get_acl_rules``).
    """
    p = auth.perms
    if p is None:
        return False
    if auth.uid >= 0 and auth.uid == uid and _rights_bits(p[0:3]) & right == right:
        return True
    if auth.gid >= 0 and auth.gid == gid and _rights_bits(p[3:6]) & right == right:
        return True
    return _rights_bits(p[6:9]) & right == right


class AclManager:
    """The stored rules, indexed for fast decisions, written through to ``acl``.

    :param database: the :class:`~nebtwist.core.db.Database`.
    """

    TABLE = "acl"

    def __init__(self, database):
        self.db = database
        self.rules = {}
        self.last_oid = -1
        self._by_user = {}
        self._cache = {}

    def __len__(self):
        return len(self.rules)

    def __iter__(self):
        return iter(sorted(self.rules.values(), key=lambda r: r.oid))

    # -- storage -----------------------------------------------------------------------------

    async def load(self):
        """Read the rules; on first start create :data:`DEFAULT_RULES`.

        The first start is told by a missing ``acl`` row in ``pool_control``
        (3.4 ``AclManager`` checks ``lastOID == -1`` the same way).
        """
        rows = await self.db.select("SELECT oid, usr, resource, rights FROM acl ORDER BY oid")
        for oid, user, resource, rights in rows:
            self._add(AclRule(int(oid), int(user), int(resource), int(rights)))
        ctl = await self.db.select("SELECT last_oid FROM pool_control WHERE tablename = ?",
                                   (self.TABLE,))
        self.last_oid = max([-1] + list(self.rules))
        if ctl:
            self.last_oid = max(self.last_oid, int(ctl[0][0]))
            return
        for user, resource, rights in DEFAULT_RULES:
            await self.add_rule(user, resource, rights)
        from nebtwist.log import OneLogger

        OneLogger("ACL").info("Bootstrapped the default ACL rules")

    def _row_ops(self, rule):
        return [_dbm().upsert(self.TABLE, {"oid": rule.oid},
                           {"usr": rule.user, "resource": rule.resource, "rights": rule.rights})]

    def _add(self, rule):
        self.rules[rule.oid] = rule
        self._by_user.setdefault(rule.user, []).append(rule)
        self._cache.clear()

    def _forget(self, rule):
        self.rules.pop(rule.oid, None)
        same = self._by_user.get(rule.user, [])
        if rule in same:
            same.remove(rule)
        if not same:
            self._by_user.pop(rule.user, None)
        self._cache.clear()

    def find(self, user, resource, rights):
        """The stored rule with these masks, or None."""
        for rule in self._by_user.get(user, ()):
            if rule.resource == resource and rule.rights == rights:
                return rule
        return None

    async def add_rule(self, user, resource, rights):
        """Store a new rule; returns it.

        :raises APIError: the masks do not make a rule (:func:`malformed`).
        :raises ActionError: the same rule exists already.
        """
        problem = malformed(user, resource, rights)
        if problem:
            raise APIError(f"Error adding rule: {problem}.")
        same = self.find(user, resource, rights)
        if same is not None:
            raise ActionError(f"Error adding rule: it exists already as rule {same.oid} "
                              f"({same.string}).")
        oid = self.last_oid + 1
        rule = AclRule(oid, user, resource, rights)
        await self.db.run(self._row_ops(rule) + [
            _dbm().upsert("pool_control", {"tablename": self.TABLE}, {"last_oid": oid})])
        self.last_oid = max(self.last_oid, oid)
        self._add(rule)
        return rule

    def get(self, oid):
        """The rule ``oid``; raises :class:`NoSuchObject`."""
        try:
            return self.rules[oid]
        except KeyError:
            raise NoSuchObject(f"Error getting ACL rule [{oid}].") from None

    async def del_rule(self, oid):
        """Delete rule ``oid``.

        :raises NoSuchObject: no such rule.
        """
        rule = self.get(oid)
        await self.db.run([_dbm().delete(self.TABLE, oid=oid)])
        self._forget(rule)
        return rule

    def rules_naming(self, uid=None, gid=None):
        """Rules for user ``#uid``, and rules for or on group ``@gid``.

        What 3.4 drops with a deleted user (``AclManager::del_uid_rules``)
        or group (``del_gid_rules``).
        """
        out = []
        for rule in self.rules.values():
            if uid is not None and rule.user == INDIVIDUAL_ID | uid:
                out.append(rule)
            elif gid is not None and (rule.user == GROUP_ID | gid or rule.resource & (
                    SELECTORS | ID_MASK) == GROUP_ID | gid):
                out.append(rule)
        return sorted(out, key=lambda r: r.oid)

    def delete_ops(self, rules):
        """Statements deleting ``rules`` (run them, then call :meth:`forget`)."""
        return [_dbm().delete(self.TABLE, oid=r.oid) for r in rules]

    def forget(self, rules):
        """Drop ``rules`` from memory once their deletion is committed."""
        for rule in rules:
            self._forget(rule)

    def dump(self):
        """``<ACL_POOL>`` with every rule, by id."""
        root = etree.Element("ACL_POOL")
        for rule in self:
            rule.to_xml(root)
        return etree.tostring(root, encoding="unicode")

    # -- decisions ---------------------------------------------------------------------------

    def rules_for(self, uid, gid):
        """Rules that apply to a user: those for ``*``, ``#uid`` and ``@gid`` (cached)."""
        key = (uid, gid)
        rules = self._cache.get(key)
        if rules is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            rules = tuple(self._by_user.get(ALL_ID, ())) + tuple(
                self._by_user.get(INDIVIDUAL_ID | uid, ())) + tuple(
                self._by_user.get(GROUP_ID | gid, ()) if gid >= 0 else ())
            self._cache[key] = rules
        return rules

    def match(self, uid, gid, kind, oid, ogid, right):
        """Does a stored rule grant ``right`` (mask) on object ``oid`` of group
        ``ogid`` of type ``kind`` to user ``uid`` of group ``gid``?

        ``oid``/``ogid`` -1 when there is no object (CREATE) or no group.
        """
        type_bit = TYPES[kind]
        key = (uid, gid, type_bit, right)
        rules = self._cache.get(key)
        if rules is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            # The user's rules that grant this right on this type, once per change.
            rules = self._cache[key] = tuple(
                r for r in self.rules_for(uid, gid)
                if r.rights & right == right and r.resource & type_bit)
        if not rules:
            return False
        all_req = type_bit | ALL_ID
        oid_mask = type_bit | INDIVIDUAL_ID | ID_MASK
        gid_mask = type_bit | GROUP_ID | ID_MASK
        oid_req = type_bit | INDIVIDUAL_ID | oid if oid >= 0 else -1
        gid_req = type_bit | GROUP_ID | ogid if ogid >= 0 else -1
        for rule in rules:
            res = rule.resource
            if (res & all_req == all_req or res & gid_mask == gid_req
                    or res & oid_mask == oid_req):
                return True
        return False

    def allows(self, who, kind, obj, op):
        """May ``who`` do ``op`` to ``obj`` (of type ``kind``)?

        The fast question the scheduler asks for every (VM, host) pair:
        ``acl.allows((vm.uid, vm.gid), "HOST", host, "MANAGE")``.

        :param who: a :class:`~nebtwist.core.objects.User` or ``(uid, gid)``.
        :param kind: ``"HOST"``, ``"VM"``, ``"NET"``, ...
        :param obj: the object (its id, group and permission bits count), or
            None for CREATE.
        :param op: ``"USE"``, ``"MANAGE"``, ``"ADMIN"`` or ``"CREATE"``.
        """
        uid, gid = who if isinstance(who, tuple) else (who.oid, who.gid)
        if uid == ONEADMIN_ID or gid == ONEADMIN_GROUP:
            return True
        right = RIGHTS[op]
        if obj is None:
            return self.match(uid, gid, kind, -1, -1, right)
        auth = object_auth(obj)
        if implicit_allows(auth, uid, gid, right):
            return True
        return self.match(uid, gid, kind, auth.oid, auth.gid, right)


def is_admin(user):
    """oneadmin (uid 0) or a member of the oneadmin group (gid 0)."""
    return user.oid == ONEADMIN_ID or user.gid == ONEADMIN_GROUP


def authorize(acl, user, op, obj):
    """May ``user`` do ``op`` (``"USE"``, ``"MANAGE"``, ``"ADMIN"``, ``"CREATE"``)
    to ``obj`` (a pool object, or a type name such as ``"VM"`` for CREATE)?

    :param acl: the :class:`AclManager` (None: permission bits only).
    :raises KeyError: an unknown right or type name.
    """
    if is_admin(user):
        return True
    right = RIGHTS[op]
    if isinstance(obj, str):
        return acl is not None and acl.match(user.oid, user.gid, obj, -1, -1, right)
    perms = getattr(obj, "permissions", None)
    if perms is not None:
        # The common case (pool listings): owner, group, other bits inline.
        if obj.uid == user.oid and _rights_bits(perms[0:3]) & right == right:
            return True
        if obj.gid == user.gid and _rights_bits(perms[3:6]) & right == right:
            return True
        if _rights_bits(perms[6:9]) & right == right:
            return True
        if acl is None or not acl.rules:
            return False
        return acl.match(user.oid, user.gid, ROOT_TYPES[obj.ROOT], obj.oid, obj.gid, right)
    if acl is None:
        return False
    auth = object_auth(obj)
    return acl.match(user.oid, user.gid, auth.type, auth.oid, auth.gid, right)
