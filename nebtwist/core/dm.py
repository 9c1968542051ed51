"""The DispatchManager: VM creation and the user-facing VM actions.

Follows OpenNebula 3.4 ``src/dm/DispatchManagerActions.cc`` and
``src/vm/VirtualMachinePool.cc`` (allocation): a new VM gets its oid, a
default NAME ``one-<oid>``, ``VMID`` in its template, its NICs' leases, and
goes to PENDING; everything is committed in one transaction, and a failure at
any step (a malformed template, a REQUIREMENTS expression that does not parse,
a full network) creates nothing.
"""

from nebtwist.core.disks import ImageClaim
from nebtwist.core.lcm import state_name
from nebtwist.core.objects import PENDING, REASON_STOP_RESUME, VirtualMachine, int_to_ip
from nebtwist.core.templates import (check_restricted, compile_expressions, max_template_size,
                                     parse_template)
from nebtwist.core.variables import expand_vm
from nebtwist.core.vnet import acquire_lease, release_lease
from nebtwist.errors import APIError, ActionError, AuthorizationError, NoSuchObject

#: ``one.vm.action`` names (3.4 and today's) -> state-machine events.
#: 3.4 names (``src/rm/RequestManagerVirtualMachine.cc``) map to themselves;
#: today's names (``src/vm/VMActions.cc``) to their nearest 3.4 action.
ACTIONS = {
    "shutdown": "shutdown", "terminate": "shutdown",
    "cancel": "cancel", "terminate-hard": "cancel",
    "hold": "hold", "release": "release",
    "stop": "stop", "undeploy": "stop",
    "suspend": "suspend", "poweroff": "suspend",
    "resume": "resume",
    "restart": "restart", "reboot": "reboot", "reboot-hard": "restart",
    "resubmit": "resubmit",
    "finalize": "finalize", "delete": "finalize",
}


def _check_number(template, key, integer=False):
    value = template.get(key)
    if value is None:
        return
    try:
        if not isinstance(value, str):
            raise ValueError
        n = int(value) if integer else float(value)
        if n < 0:
            raise ValueError
    except ValueError:
        raise APIError(f"{key} must be a non-negative {'integer' if integer else 'number'}, "
                       f"not {value!r}.") from None


def nic_attributes(nic, vnet, lease):
    """Fill a VM's NIC (a dict) from its network and lease, as 3.4
    ``VirtualNetwork::nic_attribute`` (``src/vnm/VirtualNetwork.cc``): NETWORK,
    NETWORK_ID, BRIDGE, MAC, IP, VLAN (``YES``/``NO``), and PHYDEV, VLAN_ID
    when the network has them; plus NETWORK_ADDRESS and NETWORK_MASK of a
    RANGED network (for the VNM drivers and the guest's context). The NIC's
    own attributes the network does not set (WHITE_PORTS_TCP, BLACK_PORTS_UDP,
    ICMP, MODEL...) are kept; PHYDEV and VLAN_ID of the network replace the
    NIC's (NIC/VLAN_ID is a restricted attribute: oneadmin's own stays when
    the network has none)."""
    nic.update(NETWORK=vnet.name, NETWORK_ID=str(vnet.oid), BRIDGE=vnet.bridge,
               MAC=lease.mac, IP=int_to_ip(lease.ip), VLAN="YES" if vnet.vlan else "NO")
    for key, value in (("PHYDEV", vnet.phydev), ("VLAN_ID", vnet.vlan_id)):
        if value:
            nic[key] = str(value)
    for key in ("NETWORK_ADDRESS", "NETWORK_MASK"):
        value = vnet.template.get_str(key) if vnet.template is not None else None
        if value:
            nic[key] = value
    return nic


class DispatchManager:
    """VM allocation and actions.

    :param nebula: the core (pools, authorization helpers, clock).
    :param lcm: the :class:`~nebtwist.core.lcm.LifeCycleManager`.
    """

    def __init__(self, nebula, lcm):
        self.nebula = nebula
        self.lcm = lcm
        self.hooks = []  # callables (vm) after each allocation (VM CREATE hooks, core/hm.py)

    def _find_network(self, user, nic):
        pool = self.nebula.vnpool
        if "NETWORK_ID" in nic:
            try:
                vnet = pool.get(int(nic["NETWORK_ID"]))
            except ValueError:
                raise APIError(f"Wrong NETWORK_ID {nic['NETWORK_ID']!r} in NIC.") from None
        else:
            name = nic["NETWORK"]
            owner = nic.get("NETWORK_UNAME")
            candidates = [v for v in pool if v.name == name
                          and (owner is None or v.uname == owner)]
            candidates.sort(key=lambda v: (v.uid != user.oid, v.uid != 0, v.oid))
            candidates = [v for v in candidates if self.nebula.can_use(user, v)] or candidates
            if not candidates:
                raise NoSuchObject(f"Error getting virtual network [{name}].")
            vnet = candidates[0]
        if not self.nebula.can_use(user, vnet):
            raise AuthorizationError(
                f"User [{user.oid}] : Not authorized to perform USE NET [{vnet.oid}].")
        return vnet

    async def allocate(self, user, text, check_restricted_attrs=True):
        """Create a VM from template ``text`` for ``user``; returns the VM.

        :param check_restricted_attrs: refuse oned.conf's ``VM_RESTRICTED_ATTR``
            from a user outside oneadmin's group (:func:`check_restricted`);
            False when the caller has checked (a template instantiated).
        :raises APIError: a malformed template or value.
        :raises AuthorizationError: a NIC on a network the user may not use;
            a restricted attribute.
        :raises ActionError: a NIC whose network is unknown or full.
        """
        template = parse_template(text, "VM template", max_template_size(self.nebula.config))
        if check_restricted_attrs:
            check_restricted(self.nebula, user, template)
        for key in ("CPU", "MEMORY"):
            _check_number(template, key)
        _check_number(template, "VCPU", integer=True)
        pool = self.nebula.vmpool
        now = int(self.nebula.clock.seconds())
        oid = pool.reserve_oid()
        taken = []
        claim = ImageClaim(self.nebula)
        try:
            name = template.get_str("NAME") or f"one-{oid}"
            template.set("NAME", name)
            template.set("VMID", str(oid))
            group = self.nebula.grouppool.objects.get(user.gid)
            vm = VirtualMachine(oid, name, user.oid, user.gid, user.name,
                                group.name if group else "", None, template,
                                state=PENDING, stime=now)
            ops = []
            prefix = self.nebula.config.get("MAC_PREFIX")
            for nic_id, nic in enumerate(template.get_all("NIC")):
                if not isinstance(nic, dict):
                    raise APIError("NIC must be a vector attribute: NIC = [ NETWORK = ... ].")
                # Every NIC: its index and its host-side device name (the tap the
                # VNM drivers find it by; OpenNebula 4.x's one-<vid>-<nic_id>).
                nic.update(NIC_ID=str(nic_id), TARGET=f"one-{oid}-{nic_id}")
                if "NETWORK" not in nic and "NETWORK_ID" not in nic:
                    continue
                vnet = self._find_network(user, nic)
                lease = acquire_lease(vnet, oid, prefix, nic.get("IP"))
                taken.append((vnet, lease))
                nic_attributes(nic, vnet, lease)
            for vnet in {v.oid: v for v, _ in taken}.values():
                ops += pool_lease_ops(self.nebula, vnet, [ls for v, ls in taken if v is vnet])
            ops += claim.take(user, vm)  # DISK=[IMAGE=..]/[IMAGE_ID=..] (core/disks.py)
            expand_vm(self.nebula, user, vm)  # $VARIABLES in CONTEXT and REQUIREMENTS
            compile_expressions(vm, template)
            await pool.insert(vm, ops)
        except BaseException:
            claim.undo()
            for vnet, lease in taken:
                release_lease(vnet, lease.ip, oid)
            pool.release_oid(oid)
            raise
        # oned.log only: creating <var>/<vid>/vm.log here would put a mkdir and a
        # file open on every allocation; the VM directory is made on deploy.
        self.nebula.vm_log(vm, "DiM", "I", "New VM state is PENDING", to_file=False)
        for hook in self.hooks:
            hook(vm)
        return vm

    async def deploy(self, vm, host):
        """Deploy a PENDING ``vm`` on ``host``.

        :raises ActionError: the VM is not PENDING.
        """
        h = vm.last_history
        event = "deploy_resume" if h is not None and h.reason == REASON_STOP_RESUME else "deploy"
        await self.lcm.trigger(vm, event, host=host)

    async def migrate(self, vm, host, live):
        """Migrate a RUNNING ``vm`` to ``host`` (``live``: without stopping it).

        :raises ActionError: the VM is not RUNNING, or already on ``host``.
        """
        h = vm.last_history
        if h is not None and h.hid == host.oid and self.lcm.allowed(vm, "migrate"):
            raise ActionError(f"VM {vm.oid} is already running on host {host.oid}.")
        await self.lcm.trigger(vm, "livemigrate" if live else "migrate", host=host)

    async def action(self, vm, name):
        """Run ``one.vm.action`` ``name`` (3.4 or current name) on ``vm``.

        :raises APIError: an unknown action name.
        :raises ActionError: not allowed in the VM's state (state unchanged).
        """
        event = ACTIONS.get(name)
        if event is None:
            raise APIError(f"Unknown action {name!r}; known: {', '.join(sorted(ACTIONS))}.")
        if not self.lcm.allowed(vm, event):
            raise ActionError(f"Wrong state to perform action {name!r}: VM {vm.oid} is "
                              f"{state_name(vm)}.")
        await self.lcm.trigger(vm, event)


def pool_lease_ops(nebula, vnet, leases):
    """Statements storing ``vnet`` and its changed ``leases``."""
    vnet.touch()
    return nebula.vnpool.lease_ops(vnet, leases) + nebula.vnpool.write_ops(vnet)

