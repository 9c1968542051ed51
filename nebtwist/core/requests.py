"""The requests layer: one coroutine per user operation, with authorization.

Every front (:mod:`nebtwist.api.plugin`) calls these with an authenticated
:class:`~nebtwist.core.objects.User`; they check what the user may do, call
the managers, and return plain values (ids, XML strings for the XML-RPC
front) or core objects (:mod:`nebtwist.core.requests_objects`). They raise
:mod:`nebtwist.errors` exceptions whose messages follow OpenNebula 3.4's
(``src/rm/Request*.cc``); the front adds the ``[Method]`` prefix and code.
"""

from nebtwist.core.objects import (DONE, HOST_DISABLED, HOST_INIT, ONEADMIN_GROUP, RANGED,
                                   USERS_GROUP, Host, User)
from nebtwist.core.templates import max_template_size, parse_template
from nebtwist.core.groups import PermissionRequests
from nebtwist.core.requests_images import ImageRequests
from nebtwist.core.requests_templates import TemplateRequests
from nebtwist.core.nebula import sha1_hex
from nebtwist.core.requests_objects import ObjectRequests
from nebtwist.core.requests_drives import DriveRequests
from nebtwist.core.requests_savedisk import SaveDiskRequests
from nebtwist.core.requests_access import AccessRequests
from nebtwist.core.requests_keypairs import KeyPairRequests
from nebtwist.core.requests_addresses import AddressRequests
from nebtwist.core.requests_tags import TagRequests
from nebtwist.core.requests_occi import OCCIRequests
from nebtwist.core.vnet import build_vnet
from nebtwist.errors import ActionError, APIError, AuthorizationError

#: Pool filter flags (``src/rm/RequestManagerPoolInfoFilter.cc``).
MINE, ALL, MINE_GROUP = -3, -2, -1


def _denied(user, op, kind, oid):
    return AuthorizationError(
        f"User [{user.oid}] : Not authorized to perform {op} {kind} [{oid}].")


def _name_ok(name, what):
    if not isinstance(name, str) or not name.strip():
        raise APIError(f"The {what} name cannot be empty.")
    if any(c.isspace() for c in name) or ":" in name:
        raise APIError(f"The {what} name {name!r} cannot contain blanks or ':'.")


class Requests(ImageRequests, TemplateRequests, PermissionRequests, ObjectRequests,
               DriveRequests, SaveDiskRequests, AccessRequests, KeyPairRequests,
               AddressRequests, TagRequests, OCCIRequests):
    """The operations behind the API.

    :param nebula: the :class:`~nebtwist.core.nebula.Nebula`.
    :param dm: the :class:`~nebtwist.core.dm.DispatchManager`.
    :param im: the :class:`~nebtwist.core.im.InformationManager` (hosts are
        monitored as soon as they are created or enabled; may be None).
    """

    def __init__(self, nebula, dm, im=None, version="3.4.1"):
        self.nebula = nebula
        self.dm = dm
        self.im = im
        self.version = version
        #: callables (host, old_state, new_state) on host creation (old None) and
        #: disable (HOST CREATE/DISABLE hooks, core/hm.py).
        self.host_hooks = []
        #: The VN_MAD names a new host may take (oned.conf VN_MAD NAMEs and
        #: ``dummy``; :meth:`nebtwist.core.vnm.NetworkManager.names`), or None
        #: to take any name.
        self.vn_mads = None

    # -- helpers ---------------------------------------------------------------------------

    def _admin(self, user, op, kind, oid=-1):
        if not self.nebula.is_admin(user):
            raise _denied(user, op, kind, oid)

    def _filter(self, user, objects, flag, start=-1, end=-1):
        flag = int(flag)
        out = []
        for obj in objects:
            if start >= 0 and obj.oid < start:
                continue
            if end >= 0 and obj.oid > end:
                continue
            if not self.nebula.can_use(user, obj):
                continue
            if flag == MINE and obj.uid != user.oid:
                continue
            if flag == MINE_GROUP and obj.uid != user.oid and obj.gid != user.gid:
                continue
            if flag >= 0 and obj.uid != flag:
                continue
            out.append(obj)
        return out

    # -- users and groups ------------------------------------------------------------------

    async def user_allocate(self, actor, name, password, driver="core"):
        """Create a user (oneadmin only); returns its id.

        The stored password is the SHA1 hex of ``password`` (3.4 ``core``).
        """
        self._admin(actor, "CREATE", "USER")
        _name_ok(name, "user")
        if not isinstance(password, str) or not password:
            raise APIError("The password cannot be empty.")
        if self.nebula.userpool.find(name) is not None:
            raise ActionError(f"Error allocating a new user. NAME is already taken by user "
                              f"{self.nebula.userpool.find(name).oid}.")
        pool = self.nebula.userpool
        oid = pool.reserve_oid()
        group = self.nebula.grouppool.get(USERS_GROUP)
        try:
            user = User(oid, name, sha1_hex(password), USERS_GROUP, group.name,
                        auth_driver=driver or "core")
            group.users = sorted(set(group.users) | {oid})
            group.touch()
            await pool.insert(user, self.nebula.grouppool.write_ops(group))
        except BaseException:
            group.users = [u for u in group.users if u != oid]
            group.touch()
            pool.release_oid(oid)
            raise
        self.nebula.reindex_users()
        return oid

    async def user_delete(self, actor, uid):
        """Delete a user (oneadmin only; never user 0)."""
        self._admin(actor, "DELETE", "USER", uid)
        user = self.nebula.userpool.get(uid)
        if user.oid == 0:
            raise ActionError("oneadmin cannot be deleted.")
        group = self.nebula.grouppool.objects.get(user.gid)
        ops = []
        if group is not None:
            group.users = [u for u in group.users if u != uid]
            group.touch()
            ops = self.nebula.grouppool.write_ops(group)
        acl_ops, acl_done = self._acl_cleanup(uid=uid)
        await self.nebula.userpool.remove(user, ops + acl_ops)
        acl_done()
        self.nebula.sessions.forget_user(uid)
        self.nebula.reindex_users()
        return uid

    def user_info(self, actor, uid):
        """``<USER>`` of ``uid`` (-1: the caller); self or oneadmin."""
        if uid == -1:
            uid = actor.oid
        user = self.nebula.userpool.get(uid)
        if user.oid != actor.oid and not self.nebula.is_admin(actor):
            raise _denied(actor, "INFO", "USER", uid)
        return user.info()

    async def user_passwd(self, actor, uid, password):
        """Change a password (self or oneadmin)."""
        user = self.nebula.userpool.get(uid)
        if user.oid != actor.oid and not self.nebula.is_admin(actor):
            raise _denied(actor, "MANAGE", "USER", uid)
        if not isinstance(password, str) or not password:
            raise APIError("The password cannot be empty.")
        user.password = sha1_hex(password)
        await self.nebula.userpool.update(user)
        return uid

    def userpool_info(self, actor):
        """``<USER_POOL>``: every user for oneadmin, else the caller only."""
        pool = self.nebula.userpool
        users = list(pool) if self.nebula.is_admin(actor) else [actor]
        return pool.dump(users)

    def group_info(self, actor, gid):
        """``<GROUP>`` (members of the group or oneadmin; -1: the caller's group)."""
        if gid == -1:
            gid = actor.gid
        group = self.nebula.grouppool.get(gid)
        if not self.nebula.is_admin(actor) and actor.gid != gid:
            raise _denied(actor, "INFO", "GROUP", gid)
        return group.info()

    def grouppool_info(self, actor):
        """``<GROUP_POOL>``: all groups for oneadmin, else the caller's group."""
        pool = self.nebula.grouppool
        groups = list(pool) if self.nebula.is_admin(actor) else [pool.get(actor.gid)]
        return pool.dump(groups)

    # -- hosts -----------------------------------------------------------------------------

    async def host_allocate(self, actor, name, im_mad, vmm_mad, vnm_mad="dummy", tm_mad=None,
                            cluster_id=-1):
        """Create a host (oneadmin only); returns its id.

        ``tm_mad`` is the 1.4 form's TM driver, kept in the host TEMPLATE.
        ``vnm_mad`` (3.4's VN_MAD; empty: ``dummy``) must be one of
        :attr:`vn_mads` when that is set.

        :raises APIError: an empty IM or VMM name, an unknown VN_MAD.
        """
        self._admin(actor, "CREATE", "HOST")
        _name_ok(name, "host")
        for what, value in (("IM", im_mad), ("VMM", vmm_mad)):
            if not isinstance(value, str) or not value:
                raise APIError(f"The {what} driver name cannot be empty.")
        vnm_mad = vnm_mad or "dummy"
        if not isinstance(vnm_mad, str) or len(vnm_mad.split()) != 1 or (
                self.vn_mads is not None and vnm_mad not in self.vn_mads):
            have = ", ".join(self.vn_mads or ())
            raise APIError(f"Unknown VN_MAD driver {vnm_mad!r}: not configured in oned.conf "
                           f"(VN_MAD names: {have or 'dummy'}).")
        pool = self.nebula.hostpool
        other = pool.find(name)
        if other is not None:
            raise ActionError(f"Error allocating a new host. NAME is already taken by "
                              f"HOST {other.oid}.")
        oid = pool.reserve_oid()
        host = Host(oid, name, im_mad, vmm_mad, vnm_mad or "dummy", state=HOST_INIT,
                    cluster_id=cluster_id)
        if tm_mad:
            host.template.set("TM_MAD", tm_mad)
        try:
            await pool.insert(host)
        except BaseException:
            pool.release_oid(oid)
            raise
        for hook in self.host_hooks:
            hook(host, None, host.state)
        if self.im is not None:
            self.im.monitor(host)
        return oid

    async def host_delete(self, actor, hid):
        """Delete a host with no VMs (oneadmin only)."""
        self._admin(actor, "DELETE", "HOST", hid)
        host = self.nebula.hostpool.get(hid)
        if host.share.running_vms > 0:
            raise ActionError(f"Can not remove host {hid}: it has "
                              f"{host.share.running_vms} VMs.")
        await self.nebula.hostpool.remove(host)
        return hid

    def host_info(self, actor, hid):
        """``<HOST>`` (any user)."""
        return self.nebula.hostpool.get(hid).info()

    async def host_enable(self, actor, hid, enable):
        """Enable (INIT, monitored at once) or disable (DISABLED) a host."""
        self._admin(actor, "MANAGE", "HOST", hid)
        host = self.nebula.hostpool.get(hid)
        if enable:
            if host.state == HOST_DISABLED:
                host.state = HOST_INIT
                await self.nebula.hostpool.update(host)
                if self.im is not None:
                    self.im.monitor(host)
        elif host.state != HOST_DISABLED:
            old = host.state
            host.state = HOST_DISABLED
            await self.nebula.hostpool.update(host)
            for hook in self.host_hooks:
                hook(host, old, HOST_DISABLED)
        return hid

    def hostpool_info(self, actor):
        """``<HOST_POOL>`` (any user), as a :class:`~nebtwist.core.pool.PoolXML`
        (Deferred; see :meth:`Pool.listing <nebtwist.core.pool.Pool.listing>`)."""
        pool = self.nebula.hostpool
        return pool.listing(("hosts",), lambda: sorted(pool, key=lambda h: h.oid),
                            self.nebula.clock)

    # -- virtual networks ------------------------------------------------------------------

    async def vn_allocate(self, actor, text, cluster_id=-1):
        """Create a virtual network from a template (CREATE NET); returns its id."""
        self._check_create(actor, "NET")
        template = parse_template(text, "virtual network template",
                                  max_template_size(self.nebula.config))
        pool = self.nebula.vnpool
        oid = pool.reserve_oid()
        try:
            group = self.nebula.grouppool.objects.get(actor.gid)
            vnet = build_vnet(template, oid, actor, group.name if group else "",
                              self.nebula.config.get("MAC_PREFIX"),
                              self.nebula.config.get("NETWORK_SIZE"))
            vnet.cluster_id = cluster_id
            other = pool.find(vnet.name, actor.oid)
            if other is not None:
                raise ActionError(f"Error allocating a new virtual network. NAME is already "
                                  f"taken by NET {other.oid}.")
            ops = pool.lease_ops(vnet, list(vnet.leases.values())) if vnet.type != RANGED else []
            await pool.insert(vnet, ops)
        except BaseException:
            pool.release_oid(oid)
            raise
        return oid

    async def vn_delete(self, actor, vid):
        """Delete a network with no leases in use (owner or oneadmin)."""
        vnet = self.nebula.vnpool.get(vid)
        if not self.nebula.can_manage(actor, vnet):
            raise _denied(actor, "MANAGE", "NET", vid)
        if vnet.used_leases:
            raise ActionError(f"Can not remove virtual network {vid}: "
                              f"{vnet.used_leases} leases are in use.")
        await self.nebula.vnpool.remove(vnet)
        return vid

    def vn_info(self, actor, vid):
        """``<VNET>`` with ``<LEASES>`` (users who may use it)."""
        vnet = self.nebula.vnpool.get(vid)
        if not self.nebula.can_use(actor, vnet):
            raise _denied(actor, "USE", "NET", vid)
        return vnet.info()

    def vnpool_info(self, actor, flag=ALL, start=-1, end=-1):
        """``<VNET_POOL>`` filtered by the 3.4 flags."""
        pool = self.nebula.vnpool
        return pool.dump(self._filter(actor, sorted(pool, key=lambda v: v.oid), flag, start, end))

    # -- virtual machines ------------------------------------------------------------------

    async def vm_allocate(self, actor, text):
        """Create a VM from a template (CREATE VM); returns its id."""
        self._check_create(actor, "VM")
        vm = await self.dm.allocate(actor, text)
        return vm.oid

    def _vm(self, actor, vid, op="MANAGE"):
        vm = self.nebula.vmpool.get(vid)
        allowed = (self.nebula.can_use if op == "USE" else self.nebula.can_manage)(actor, vm)
        if not allowed:
            raise _denied(actor, op, "VM", vid)
        return vm

    async def vm_deploy(self, actor, vid, hid):
        """Deploy a PENDING VM on a host (ADMIN on the VM, MANAGE on the host:
        oneadmin by default)."""
        vm, host = self._vm_to_host(actor, vid, hid)
        await self.dm.deploy(vm, host)
        return vid

    async def vm_action(self, actor, action, vid):
        """Run a ``one.vm.action`` on a VM the user may manage."""
        vm = self._vm(actor, vid)
        await self.dm.action(vm, action)
        return vid

    async def vm_recover(self, actor, vid, op):
        """``one.vm.recover``: settle by hand a VM whose driver operation never
        ended (OpenNebula 5.x ``VirtualMachineRecover``, ``src/rm/
        RequestManagerVirtualMachine.cc``): ``op`` 0 failure, 1 success, 2 retry,
        3 delete; 4.2's boolean (True success, False failure) is accepted too.
        An admin operation (5.x VM_ADMIN_OPERATIONS: recover, retry, delete):
        ADMIN on the VM. See :meth:`nebtwist.core.lcm.LifeCycleManager.recover`.

        :raises AuthorizationError: no ADMIN right on the VM.
        :raises ActionError: a wrong code, or the VM's state does not allow it.
        """
        vm = self.nebula.vmpool.get(vid)
        self._check(actor, "ADMIN", vm, "VM")
        if isinstance(op, bool):
            op = int(op)
        await self.dm.lcm.recover(vm, op)
        return vid

    async def vm_migrate(self, actor, vid, hid, live):
        """Migrate a RUNNING VM to another host (ADMIN on the VM, MANAGE on
        the host: oneadmin by default)."""
        vm, host = self._vm_to_host(actor, vid, hid)
        await self.dm.migrate(vm, host, bool(live))
        return vid

    def vm_info(self, actor, vid):
        """``<VM>`` with every history record."""
        return self._vm(actor, vid, "USE").info()

    def vmpool_info(self, actor, flag=ALL, start=-1, end=-1, state=-1):
        """``<VM_POOL>``: ``state`` -2 any, -1 any but DONE, 0..7 that STATE.

        A :class:`~nebtwist.core.pool.PoolXML` (Deferred): joined from the
        VMs' cached bodies, identical concurrent requests sharing one build
        (:meth:`Pool.listing <nebtwist.core.pool.Pool.listing>`), so a large
        pool answers without holding the reactor.
        """
        pool = self.nebula.vmpool

        def select():
            vms = self._filter(actor, pool.objects.values(), flag, start, end)
            if state == -1:
                return [vm for vm in vms if vm.state != DONE]
            if state >= 0:
                return [vm for vm in vms if vm.state == state]
            return vms

        # What the filter depends on: the user, its group, the ACL rules.
        acl = self.nebula.acl
        rules = () if self.nebula.is_admin(actor) or acl is None else tuple(acl.rules)
        key = ("vms", actor.oid, actor.gid, rules, flag, start, end, state)
        return pool.listing(key, select, self.nebula.clock)

    # -- system ----------------------------------------------------------------------------

    def system_version(self, actor):
        """The OpenNebula version whose API this follows."""
        return self.version

    def system_config(self, actor):
        """oned.conf as ``<OPENNEBULA_CONFIGURATION>`` XML (oneadmin group only)."""
        if actor.gid != ONEADMIN_GROUP and actor.oid != 0:
            raise _denied(actor, "ADMIN", "SYSTEM", -1)
        from lxml import etree

        return etree.tostring(self.nebula.config.template.to_xml("OPENNEBULA_CONFIGURATION"),
                              encoding="unicode")

