"""Groups, ownership, permissions, ACL rules and user accounts (OpenNebula 3.4).

:class:`PermissionRequests` is a mixin of
:class:`nebtwist.core.requests.Requests`: one coroutine per API operation,
each checking what the caller may do (:mod:`nebtwist.core.acl`) and raising
:mod:`nebtwist.errors` exceptions whose messages follow 3.4's
(``src/rm/RequestManagerChown.cc``, ``RequestManagerChmod.cc``,
``RequestManagerAcl.cc``, ``RequestManagerUser.cc``,
``RequestManagerAllocate.cc``, ``RequestManagerDelete.cc``,
``src/group/GroupPool.cc``). The XML-RPC front lists their ``one.*``
methods in :func:`nebtwist.api.xmlrpc.methods.group_methods`.

Rules (3.4, oneadmin and the oneadmin group pass every check):

* ``chown(id, uid, gid)`` (-1 = unchanged): MANAGE on the object; a new
  owner needs MANAGE on that USER (nobody but admins has it unless an ACL
  rule grants it, so only oneadmin gives objects to another user); a new
  group needs USE on that GROUP, which its members have (so an owner may
  move an object to a group they belong to). Unknown object, user or group:
  0x400; not allowed: 0x200; an id below -1: 0x1000.
* ``chmod(id, 9 x -1/0/1)`` (OWNER_U/M/A, GROUP_U/M/A, OTHER_U/M/A; -1 =
  unchanged): MANAGE on the object; changing an ``*_A`` bit needs ADMIN on
  it (by default only oneadmin); with ``ENABLE_OTHER_PERMISSIONS = NO`` only
  the oneadmin group may change the OTHER bits. A value other than -1/0/1:
  0x1000.
* Groups: ids 0 (oneadmin) and 1 (users) are built in; new groups count
  from 100 (3.4 ``GroupPool``). A group with users cannot be deleted, nor a
  built-in one (0x800). Deleting a group drops the ACL rules for or on it;
  deleting a user drops the rules for it (3.4 ``AclManager::del_gid_rules``,
  ``del_uid_rules``).
* Users: ``one.user.chgrp`` moves a user (both groups' USERS lists change in
  the same transaction); ``one.user.chauth`` sets the auth driver (and
  password); ``one.user.enable`` (OpenNebula HEAD's call; 3.4 had none)
  enables or disables a user -- a disabled user cannot authenticate (0x100).
  oneadmin (user 0) cannot be disabled.

The chown/chmod pair is generic over every :class:`~nebtwist.core.objects.Owned`
pool: :data:`OWNED_KINDS` has one line per kind, and a kind whose pool the
core does not have (yet) is simply not served.
"""


from nebtwist.core import acl as aclm
from nebtwist.core.nebula import sha1_hex
from nebtwist.core.objects import ONEADMIN_GROUP, USERS_GROUP, Group, PERMISSION_NAMES
from nebtwist.errors import ActionError, APIError, AuthorizationError, NoSuchObject

#: First id of a user-made group (3.4 ``GroupPool``: ids below 100 are the system's).
FIRST_USER_GROUP = 100

#: ``one.<prefix>.chown/chmod`` kinds: prefix -> (names of the pool attribute
#: on :class:`~nebtwist.core.nebula.Nebula` to try, ACL type, 3.4 request
#: name stem, whether names are unique per owner as in the 3.4 table's
#: ``UNIQUE(name, uid)``).
OWNED_KINDS = {
    "vm": (("vmpool",), "VM", "VirtualMachine", False),
    "vn": (("vnpool",), "NET", "VirtualNetwork", True),
    "image": (("imagepool", "ipool"), "IMAGE", "Image", True),
    "template": (("tplpool", "templatepool"), "TEMPLATE", "Template", False),
}


def owned_pool(nebula, prefix):
    """The pool behind ``one.<prefix>.*`` on ``nebula``, or None if it has none."""
    for attr in OWNED_KINDS[prefix][0]:
        pool = getattr(nebula, attr, None)
        if pool is not None:
            return pool
    return None


def _denied(actor, op, kind, oid=None):
    target = f"{op} {kind}" + (f" [{oid}]" if oid is not None else "")
    return AuthorizationError(f"User [{actor.oid}] : Not authorized to perform {target}.")


def _group_name_ok(name):
    if not isinstance(name, str) or not name.strip():
        raise APIError("The group name cannot be empty.")
    if name != name.strip():
        raise APIError(f"The group name {name!r} cannot start or end with blanks.")
    if len(name) > 128:
        raise APIError("The group name cannot be longer than 128 characters.")
    if any(ord(c) < 32 or c in ":<>&\"'" for c in name):
        raise APIError(f"The group name {name!r} cannot contain control characters, "
                       f"':' or XML markup characters.")


class PermissionRequests:
    """The group, user, ownership, permission and ACL operations.

    Expects ``self.nebula`` (a :class:`~nebtwist.core.nebula.Nebula`), as
    :class:`~nebtwist.core.requests.Requests` has.
    """

    def owned_kinds(self):
        """The ``<prefix>`` of each owned kind (``vm``, ``image``, ...;
        :data:`OWNED_KINDS`) whose pool this core has, in
        :data:`OWNED_KINDS` order: the kinds ``one.<prefix>.chown/chmod`` act on."""
        return [p for p in OWNED_KINDS if owned_pool(self.nebula, p) is not None]

    # -- helpers ---------------------------------------------------------------------------

    def _check_create(self, actor, kind):
        """Raise 0x200 unless ``actor`` may create objects of ``kind`` (``"VM"``...)."""
        if not self.nebula.can_create(actor, kind):
            raise _denied(actor, "CREATE", kind)

    def _check(self, actor, op, obj, kind):
        if not self.nebula.authorize(actor, op, obj):
            raise _denied(actor, op, kind, obj.oid)

    def _vm_to_host(self, actor, vid, hid):
        """``(vm, host)`` for deploy/migrate: ADMIN on the VM and MANAGE on the
        host (3.4 ``RequestManagerVirtualMachine::vm_authorization``).

        :raises NoSuchObject: no such VM or host.
        :raises AuthorizationError: either right is missing.
        """
        vm = self.nebula.vmpool.get(vid)
        self._check(actor, "ADMIN", vm, "VM")
        host = self.nebula.hostpool.get(hid)
        self._check(actor, "MANAGE", host, "HOST")
        return vm, host

    def _acl_cleanup(self, uid=None, gid=None):
        """``(ops, done)``: statements deleting the ACL rules of a deleted user
        or group, and the callable dropping them from memory once committed."""
        acl = self.nebula.acl
        rules = acl.rules_naming(uid=uid, gid=gid)
        return acl.delete_ops(rules), (lambda: acl.forget(rules))

    # -- groups ----------------------------------------------------------------------------

    async def group_allocate(self, actor, name):
        """Create a group (CREATE GROUP: oneadmin by default); returns its id (100 on).

        Only the group is made: 3.4's ``onegroup create`` then adds the
        group's default ACL rules from the client side.

        :raises APIError: an empty or unusable name.
        :raises ActionError: the name is taken.
        """
        if not self.nebula.can_create(actor, "GROUP"):
            raise _denied(actor, "CREATE", "GROUP")
        _group_name_ok(name)
        pool = self.nebula.grouppool
        other = pool.find(name)
        if other is not None:
            raise ActionError(f"Error allocating a new group. NAME is already taken by "
                              f"GROUP {other.oid}.")
        if pool.last_oid < FIRST_USER_GROUP - 1:
            pool.last_oid = FIRST_USER_GROUP - 1
        oid = pool.reserve_oid()
        try:
            await pool.insert(Group(oid, name))
        except BaseException:
            pool.release_oid(oid)
            raise
        return oid

    async def group_delete(self, actor, gid):
        """Delete an empty user-made group (ADMIN on the group: oneadmin by default).

        :raises NoSuchObject: no such group.
        :raises ActionError: a built-in group (id < 100) or one with users.
        """
        group = self.nebula.grouppool.get(gid)
        self._check(actor, "ADMIN", group, "GROUP")
        if gid < FIRST_USER_GROUP:
            raise ActionError(f"Cannot delete group {gid}: system groups (ID < "
                              f"{FIRST_USER_GROUP}) cannot be deleted.")
        if group.users:
            raise ActionError(f"Cannot delete group {gid}: it has {len(group.users)} "
                              f"user(s) ({', '.join(map(str, group.users))}).")
        ops, done = self._acl_cleanup(gid=gid)
        await self.nebula.grouppool.remove(group, ops)
        done()
        return gid

    # -- users -----------------------------------------------------------------------------

    async def user_chgrp(self, actor, uid, gid):
        """Move user ``uid`` to group ``gid`` (MANAGE on the user and USE on the
        group: oneadmin by default); the groups' USERS lists follow.

        :raises NoSuchObject: no such user or group.
        """
        users, groups = self.nebula.userpool, self.nebula.grouppool
        user = users.get(uid)
        new = groups.get(gid)
        self._check(actor, "MANAGE", user, "USER")
        if not (actor.gid == gid or self.nebula.authorize(actor, "USE", new)):
            raise _denied(actor, "USE", "GROUP", gid)
        if user.gid == gid:
            return uid
        old = groups.objects.get(user.gid)
        saved = (user.gid, user.gname, list(new.users), list(old.users) if old else None)
        try:
            user.gid, user.gname = gid, new.name
            new.users = sorted(set(new.users) | {uid})
            new.touch()
            ops = groups.write_ops(new)
            if old is not None:
                old.users = [u for u in old.users if u != uid]
                old.touch()
                ops += groups.write_ops(old)
            await users.update(user, ops)
        except BaseException:
            user.gid, user.gname, new.users = saved[0], saved[1], saved[2]
            user.touch()
            new.touch()
            if old is not None:
                old.users = saved[3]
                old.touch()
            raise
        return uid

    async def user_chauth(self, actor, uid, driver, password=""):
        """Set a user's auth driver and, if ``password`` is not empty, its
        secret (SHA1 hex for ``core``, as given for others); ADMIN on the
        user (oneadmin by default). Open sessions of the user end.

        :raises APIError: an empty driver name or one with blanks.
        """
        user = self.nebula.userpool.get(uid)
        self._check(actor, "ADMIN", user, "USER")
        if not isinstance(driver, str) or not driver.strip() or any(
                c.isspace() for c in driver):
            raise APIError(f"Wrong auth driver name {driver!r}.")
        saved = (user.auth_driver, user.password)
        try:
            user.auth_driver = driver
            if password:
                user.password = sha1_hex(password) if driver == "core" else password
            await self.nebula.userpool.update(user)
        except BaseException:
            user.auth_driver, user.password = saved
            user.touch()
            raise
        self.nebula.sessions.forget_user(uid)
        return uid

    async def user_enable(self, actor, uid, enable):
        """Enable or disable a user (ADMIN on the user: oneadmin by default).

        A disabled user's sessions fail with 0x100 at once.

        :raises ActionError: disabling oneadmin (user 0).
        """
        user = self.nebula.userpool.get(uid)
        self._check(actor, "ADMIN", user, "USER")
        if uid == 0 and not enable:
            raise ActionError("User 0 (oneadmin) cannot be disabled.")
        if user.enabled != bool(enable):
            user.enabled = bool(enable)
            try:
                await self.nebula.userpool.update(user)
            except BaseException:
                user.enabled = not user.enabled
                user.touch()
                raise
        if not enable:
            self.nebula.sessions.forget_user(uid)
        return uid

    # -- ownership and permissions ---------------------------------------------------------

    def _owned(self, prefix, oid):
        pool = owned_pool(self.nebula, prefix)
        if pool is None:
            raise NoSuchObject(f"There are no {OWNED_KINDS[prefix][1]} objects here.")
        return pool, pool.get(oid)

    async def chown(self, actor, prefix, oid, uid=-1, gid=-1):
        """``one.<prefix>.chown``: give object ``oid`` a new owner and/or group.

        :param prefix: a key of :data:`OWNED_KINDS` (``"vm"``, ``"vn"``...).
        :param uid: new owner, -1 to keep it.
        :param gid: new group, -1 to keep it.
        :raises APIError: an id below -1.
        :raises NoSuchObject: no such object, user or group.
        :raises AuthorizationError: see the module docstring.
        :raises ActionError: the new owner already has an object of that name
            (networks, images).
        """
        _, kind, _, unique = OWNED_KINDS[prefix]
        for what, value in (("user", uid), ("group", gid)):
            if value < -1:
                raise APIError(f"Wrong new {what} id {value}: -1 (unchanged) or an id.")
        pool, obj = self._owned(prefix, oid)
        user = self.nebula.userpool.get(uid) if uid > -1 else None
        group = self.nebula.grouppool.get(gid) if gid > -1 else None
        if not self.nebula.is_admin(actor):
            self._check(actor, "MANAGE", obj, kind)
            if user is not None and not self.nebula.authorize(actor, "MANAGE", user):
                raise _denied(actor, "MANAGE", "USER", uid)
            if group is not None and not (
                    actor.gid == gid or self.nebula.authorize(actor, "USE", group)):
                raise _denied(actor, "USE", "GROUP", gid)
        if unique and user is not None:
            other = pool.find(obj.name, uid)
            if other is not None and other is not obj:
                raise ActionError(f"Cannot change the owner of {kind} [{oid}]: user "
                                  f"[{uid}] already owns {kind} [{other.oid}] named "
                                  f"{obj.name!r}.")
        saved = (obj.uid, obj.uname, obj.gid, obj.gname)
        try:
            if user is not None:
                obj.uid, obj.uname = user.oid, user.name
            if group is not None:
                obj.gid, obj.gname = group.oid, group.name
            await pool.update(obj)
        except BaseException:
            obj.uid, obj.uname, obj.gid, obj.gname = saved
            obj.touch()
            raise
        return oid

    async def chmod(self, actor, prefix, oid, *bits):
        """``one.<prefix>.chmod``: set the nine permission bits of ``oid``.

        :param bits: OWNER_U, OWNER_M, OWNER_A, GROUP_U, GROUP_M, GROUP_A,
            OTHER_U, OTHER_M, OTHER_A; each 1, 0 or -1 (unchanged).
        :raises APIError: not nine values, or one not in -1/0/1.
        :raises NoSuchObject: no such object.
        :raises AuthorizationError: see the module docstring.
        """
        _, kind, _, _ = OWNED_KINDS[prefix]
        if len(bits) != 9:
            raise APIError(f"chmod needs 9 permission values, got {len(bits)}.")
        for name, value in zip(PERMISSION_NAMES, bits):
            if value not in (-1, 0, 1):
                raise APIError(f"Wrong value {value} for {name}: permission values must be "
                               f"-1 (unchanged), 0 or 1.")
        pool, obj = self._owned(prefix, oid)
        old = list(obj.permissions)
        new = [o if b == -1 else b for o, b in zip(old, bits)]
        changed = {name for name, o, n in zip(PERMISSION_NAMES, old, new) if o != n}
        if not self.nebula.is_admin(actor):
            self._check(actor, "MANAGE", obj, kind)
            if any(name.endswith("_A") for name in changed):
                self._check(actor, "ADMIN", obj, kind)
            other_off = str(self.nebula.config.get("ENABLE_OTHER_PERMISSIONS", "YES")
                            ).strip().upper() in ("NO", "FALSE", "0")
            if other_off and any(name.startswith("OTHER") for name in changed):
                raise AuthorizationError(
                    f"User [{actor.oid}] : Not authorized to change the OTHER permissions "
                    f"of {kind} [{oid}] (ENABLE_OTHER_PERMISSIONS = NO).")
        if not changed:
            return oid
        try:
            obj.permissions = new
            await pool.update(obj)
        except BaseException:
            obj.permissions = old
            obj.touch()
            raise
        return oid

    # -- ACL rules -------------------------------------------------------------------------

    def _check_acl(self, actor):
        if not self.nebula.authorize(actor, "MANAGE", "ACL"):
            raise _denied(actor, "MANAGE", "ACL")

    async def acl_addrule(self, actor, user, resource, rights, zone=None):
        """Add an ACL rule from its three masks (hex strings or ints); returns its id.

        ``zone`` (the 4th parameter of today's clients) is accepted and
        ignored. MANAGE on ACL (oneadmin by default).

        :raises APIError: not hex, or masks that do not make a rule.
        :raises ActionError: the rule exists already.
        """
        self._check_acl(actor)
        masks = (aclm.from_hex(user, "user"), aclm.from_hex(resource, "resource"),
                 aclm.from_hex(rights, "rights"))
        rule = await self.nebula.acl.add_rule(*masks)
        return rule.oid

    async def acl_delrule(self, actor, oid):
        """Delete ACL rule ``oid`` (MANAGE on ACL); returns ``oid``.

        :raises NoSuchObject: no such rule.
        """
        self._check_acl(actor)
        await self.nebula.acl.del_rule(oid)
        return oid

    def acl_info(self, actor):
        """``<ACL_POOL>`` of every rule (MANAGE on ACL)."""
        self._check_acl(actor)
        return self.nebula.acl.dump()


__all__ = ["PermissionRequests", "OWNED_KINDS", "FIRST_USER_GROUP",
           "ONEADMIN_GROUP", "USERS_GROUP"]
