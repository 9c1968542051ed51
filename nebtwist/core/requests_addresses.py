"""Elastic addresses: leases of one virtual network held for users, each
possibly associated with one of the user's VMs.

As OpenNebula 3.4's econe server did with ``:elasticips_vnet_id``, an
address is a lease of the elastic-IP network held with VID -1 (so no VM NIC
gets it), recorded in that network's template as ``EC2_ADDRESSES = [ IP,
UID, INSTANCE_ID ]`` vectors; lease and record are written in one
transaction. Which network it is is the front's configuration (econe.conf
``ELASTIC_IP_NETWORK``): every operation names it (an id, or a name:
oneadmin's network of that name first). Association runs site scripts
(econe.conf ``ASSOCIATE_SCRIPT``/``DISASSOCIATE_SCRIPT``) through a
:class:`AddressScripts` the front gives; the records follow what the scripts
did (AWS EC2 API reference, API_AssociateAddress etc., EC2-Classic).

Address changes run one at a time (a lock of the requests layer).

Errors: :class:`NoSuchAddress` (a :class:`~nebtwist.errors.NoSuchObject`),
:class:`NoAddressNetwork` (:class:`~nebtwist.errors.NoSuchObject`),
:class:`NoFreeAddress` (:class:`~nebtwist.errors.ActionError`),
:class:`~nebtwist.errors.AuthorizationError` (another user's address or VM),
:class:`~nebtwist.errors.ActionError` (a DONE VM), and what the scripts raise.
"""

from dataclasses import dataclass

from twisted.internet import defer

from nebtwist.core.objects import DONE, int_to_ip, ip_to_int
from nebtwist.core.requests_access import vectors
from nebtwist.errors import ActionError, AuthorizationError, NoSuchObject

#: The template attribute of the network holding the records.
ADDRESSES = "EC2_ADDRESSES"


class NoSuchAddress(NoSuchObject):
    """Nobody holds that address."""


class NoAddressNetwork(NoSuchObject):
    """The elastic-IP network does not exist."""


class NoFreeAddress(ActionError):
    """The elastic-IP network has no free lease."""


@dataclass(frozen=True)
class Address:
    """An elastic address: ``ip`` (dotted str), ``uid`` its holder, ``vid``
    the live (not DONE) VM it is associated with, or None."""

    ip: str
    uid: int
    vid: int = None


class AddressScripts:
    """What associating runs on the site (none by default). A front passes
    its own: two coroutines, ``associate(ip, vm)`` and ``disassociate(ip,
    vm)``; an exception they raise stops the operation (recorded state
    follows what was done)."""

    async def associate(self, ip, vm):
        pass

    async def disassociate(self, ip, vm):
        pass


class AddressRequests:
    """Mixin of :class:`nebtwist.core.requests.Requests` (``self.nebula``,
    ``self._store_attributes`` come from it)."""

    @property
    def _address_lock(self):
        lock = self.__dict__.get("_address_lock_")
        if lock is None:
            lock = self.__dict__["_address_lock_"] = defer.DeferredLock()
        return lock

    def address_network(self, network):
        """The elastic-IP :class:`~nebtwist.core.objects.VirtualNetwork`:
        ``network`` an id (int or digits) or a name (oneadmin's first, then
        by id).

        :raises NoAddressNetwork: none such.
        """
        pool = self.nebula.vnpool
        value = str(network).strip()
        if value.isdigit():
            vnet = pool.objects.get(int(value))
        else:
            named = sorted((v for v in pool.objects.values() if v.name == value),
                           key=lambda v: (v.uid != 0, v.oid))
            vnet = named[0] if named else None
        if vnet is None:
            raise NoAddressNetwork(f"The network {value!r} does not exist.")
        return vnet

    def _live_vm(self, entry):
        vid = entry.get("INSTANCE_ID", "")
        vm = self.nebula.vmpool.objects.get(int(vid)) if vid.isdigit() else None
        return vm if vm is not None and vm.state != DONE else None

    def _address(self, entry):
        vm = self._live_vm(entry)
        uid = entry.get("UID", "")
        return Address(entry.get("IP", ""), int(uid) if uid.lstrip("-").isdigit() else -1,
                       vm.oid if vm is not None else None)

    def _own_entry(self, actor, vnet, ip):
        entry = next((e for e in vectors(vnet, ADDRESSES) if e.get("IP") == ip), None)
        if entry is None:
            raise NoSuchAddress(f"Address '{ip}' not found.")
        if entry.get("UID") != str(actor.oid):
            raise AuthorizationError(
                f"You do not have permission to access the address '{ip}'.")
        return entry

    def address_list(self, actor, network):
        """The addresses ``actor`` holds on ``network``, in allocation order,
        as :class:`Address` objects.

        :raises NoAddressNetwork: no such network.
        """
        vnet = self.address_network(network)
        return [self._address(e) for e in vectors(vnet, ADDRESSES)
                if e.get("UID") == str(actor.oid)]

    def address_get(self, actor, network, ip):
        """The :class:`Address` ``ip``, which ``actor`` must hold.

        :raises NoSuchAddress: nobody holds it.
        :raises AuthorizationError: another user does.
        """
        return self._address(self._own_entry(actor, self.address_network(network), ip))

    async def address_allocate(self, actor, network):
        """Hold a free lease of ``network`` for ``actor`` and record it, in
        one write; returns the :class:`Address`.

        :raises NoFreeAddress: no free lease.
        """
        from nebtwist.core.vnet import acquire_lease, release_lease

        vnet = self.address_network(network)
        await self._address_lock.acquire()
        try:
            try:
                lease = acquire_lease(vnet, -1, self.nebula.config.get("MAC_PREFIX"))
            except ActionError as e:
                raise NoFreeAddress(str(e)) from None
            ip = int_to_ip(lease.ip)
            vector = {"IP": ip, "UID": str(actor.oid), "INSTANCE_ID": ""}
            try:
                await self._store_attributes([
                    ("vnet", vnet, ADDRESSES, vnet.template.get_all(ADDRESSES) + [vector],
                     self.nebula.vnpool.lease_ops(vnet, [lease]))])
            except BaseException:
                release_lease(vnet, lease.ip, -1)
                raise
        finally:
            self._address_lock.release()
        return Address(ip, actor.oid)

    async def address_release(self, actor, network, ip, scripts=None):
        """Give the lease back; an associated address is disassociated first
        (``scripts.disassociate``).

        :raises NoSuchAddress, AuthorizationError: as :meth:`address_get`.
        """
        from nebtwist.core.vnet import release_lease

        scripts = scripts or AddressScripts()
        vnet = self.address_network(network)
        await self._address_lock.acquire()
        try:
            entry = self._own_entry(actor, vnet, ip)
            vm = self._live_vm(entry)
            if vm is not None:
                await scripts.disassociate(ip, vm)
            number = ip_to_int(ip)
            lease = release_lease(vnet, number, -1)
            kept = [e for e in vnet.template.get_all(ADDRESSES)
                    if not (isinstance(e, dict) and e.get("IP") == ip)]
            try:
                await self._store_attributes([
                    ("vnet", vnet, ADDRESSES, kept,
                     self.nebula.vnpool.lease_ops(vnet, [lease]) if lease is not None else ())])
            except BaseException:
                if lease is not None:
                    lease.used, lease.vid = True, -1
                    vnet.leases[number] = lease
                    vnet.touch()
                raise
        finally:
            self._address_lock.release()

    async def address_associate(self, actor, network, ip, vid, scripts=None):
        """Associate address ``ip`` with VM ``vid`` (both the actor's): an
        address associated with another VM, or another address of this VM,
        is disassociated first, then ``scripts.associate`` runs and the
        association is recorded. A failing script is an error: what was
        undone on the site is undone in the records, nothing else changes.
        Already associated with that VM: nothing to do.

        :raises NoSuchAddress, AuthorizationError: as :meth:`address_get`;
            AuthorizationError too for a VM the actor does not own.
        :raises NoSuchObject: no VM ``vid``.
        :raises ActionError: a DONE VM.
        """
        scripts = scripts or AddressScripts()
        vnet = self.address_network(network)
        await self._address_lock.acquire()
        try:
            entry = self._own_entry(actor, vnet, ip)
            vm = self.nebula.vmpool.get(int(vid))
            if vm.uid != actor.oid:
                raise AuthorizationError(f"User [{actor.oid}] : Not authorized to perform "
                                         f"MANAGE VM [{vm.oid}].")
            if vm.state == DONE:
                raise ActionError(f"The VM {vm.oid} is done.")
            current = self._live_vm(entry)
            if current is not None and current.oid == vm.oid:
                return
            others = [e for e in vectors(vnet, ADDRESSES)
                      if e is not entry and e.get("INSTANCE_ID") == str(vm.oid)]
            cleared = []
            try:
                if current is not None:
                    await scripts.disassociate(ip, current)
                    cleared.append(entry)
                for other in others:
                    await scripts.disassociate(other.get("IP", ""), vm)
                    cleared.append(other)
                await scripts.associate(ip, vm)
            except BaseException:
                if cleared:
                    await self._set_instances(vnet, {id(e): "" for e in cleared})
                raise
            changes = {id(e): "" for e in others}
            changes[id(entry)] = str(vm.oid)
            await self._set_instances(vnet, changes)
        finally:
            self._address_lock.release()

    async def address_disassociate(self, actor, network, ip, scripts=None):
        """Run ``scripts.disassociate`` for ``ip`` and its VM and forget the
        association; an address associated with nothing is fine.

        :raises NoSuchAddress, AuthorizationError: as :meth:`address_get`.
        """
        scripts = scripts or AddressScripts()
        vnet = self.address_network(network)
        await self._address_lock.acquire()
        try:
            entry = self._own_entry(actor, vnet, ip)
            vm = self._live_vm(entry)
            if vm is not None:
                await scripts.disassociate(ip, vm)
            if entry.get("INSTANCE_ID"):
                await self._set_instances(vnet, {id(entry): ""})
        finally:
            self._address_lock.release()

    async def address_drop_vms(self, actor, network, vids, scripts=None):
        """Disassociate the addresses of ``actor``'s VMs ``vids`` (being
        terminated): ``scripts.disassociate`` runs for each, a failure does
        not stop the others (the caller logs it), and the associations are
        forgotten. A network that does not exist: nothing to do.
        """
        scripts = scripts or AddressScripts()
        try:
            vnet = self.address_network(network)
        except NoAddressNetwork:
            return
        by_id = {}
        for vid in vids:
            vm = self.nebula.vmpool.objects.get(int(vid))
            if vm is not None and vm.state != DONE and vm.uid == actor.oid:
                by_id[str(vm.oid)] = vm
        await self._address_lock.acquire()
        try:
            entries = [e for e in vectors(vnet, ADDRESSES) if e.get("INSTANCE_ID") in by_id]
            for entry in entries:
                try:
                    await scripts.disassociate(entry.get("IP", ""), by_id[entry["INSTANCE_ID"]])
                except Exception:  # noqa: BLE001 - the VM goes all the same
                    pass
            if entries:
                await self._set_instances(vnet, {id(e): "" for e in entries})
        finally:
            self._address_lock.release()

    async def _set_instances(self, vnet, changes):
        """Set INSTANCE_ID of address entries (``{id(entry): value}``) and store."""
        values = [dict(e, INSTANCE_ID=changes[id(e)]) if id(e) in changes else e
                  for e in vnet.template.get_all(ADDRESSES)]
        await self._store_attributes([("vnet", vnet, ADDRESSES, values, ())])
