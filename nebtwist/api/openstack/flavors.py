"""Nova flavors: nebtwist's VM types, and the server status table.

**Flavors** are the VM types of openstack.conf (``VM_TYPE = [ NAME,
TEMPLATE ]``, the Mako templates of :mod:`nebtwist.core.vmtypes`, the same
files the EC2 front renders). A flavor's ``id`` and ``name`` are the type's
NAME (``m1.small``); ``vcpus``, ``ram`` and ``disk`` come from the type
rendered once at start-up: ``vcpus`` the template's ``VCPU``, else ``CPU``
rounded up (at least 1); ``ram`` its ``MEMORY`` (MB); ``disk`` (GB) the sum
of its DISKs' ``SIZE`` (MB, rounded up to GB), 0 when the disk is the
image's (Nova's "0: the image's size"). Flavors are public; ephemeral and
swap are 0. Nova API reference: "Flavors" (``GET /flavors``,
``/flavors/detail``, ``/flavors/{flavor_id}``).

**Server status** follows Nova's ``vm_state``/``power_state``/``task_state``
(``nova/compute/vm_states.py``, ``power_state.py``, and
``nova/api/openstack/common.py`` ``_STATE_MAP``):

===================================  ==========  ==========  ===========  ================
nebtwist STATE / LCM_STATE           status      vm_state    power_state  task_state
===================================  ==========  ==========  ===========  ================
INIT, PENDING, HOLD                  BUILD       building    0 NOSTATE    scheduling
ACTIVE PROLOG, BOOT, PROLOG_RESUME   BUILD       building    0 NOSTATE    spawning
ACTIVE RUNNING                       ACTIVE      active      1 RUNNING    -
ACTIVE MIGRATE, SAVE_MIGRATE,        MIGRATING   active      1 RUNNING    migrating
PROLOG_MIGRATE
ACTIVE SAVE_STOP, EPILOG_STOP        ACTIVE      active      1 RUNNING    powering-off
ACTIVE SAVE_SUSPEND                  ACTIVE      active      1 RUNNING    suspending
ACTIVE SHUTDOWN, CANCEL, EPILOG,     ACTIVE      active      1 RUNNING    deleting
CLEANUP
ACTIVE UNKNOWN                       UNKNOWN     active      0 NOSTATE    -
ACTIVE FAILURE (transient)           ERROR       error       0 NOSTATE    -
STOPPED                              SHUTOFF     stopped     4 SHUTDOWN   -
SUSPENDED                            SUSPENDED   suspended   7 SUSPENDED  -
FAILED                               ERROR       error       0 NOSTATE    -
DONE                                 DELETED     deleted     0 NOSTATE    -
===================================  ==========  ==========  ===========  ================
"""

import math

from nebtwist.core import objects as o
from nebtwist.template import Template

NOSTATE, RUNNING, SHUTDOWN, SUSPENDED = 0, 1, 4, 7

_BY_STATE = {
    o.INIT: ("BUILD", "building", NOSTATE, "scheduling"),
    o.PENDING: ("BUILD", "building", NOSTATE, "scheduling"),
    o.HOLD: ("BUILD", "building", NOSTATE, "scheduling"),
    o.STOPPED: ("SHUTOFF", "stopped", SHUTDOWN, None),
    o.SUSPENDED: ("SUSPENDED", "suspended", SUSPENDED, None),
    o.FAILED: ("ERROR", "error", NOSTATE, None),
    o.DONE: ("DELETED", "deleted", NOSTATE, None),
}
_BY_LCM = {
    o.PROLOG: ("BUILD", "building", NOSTATE, "spawning"),
    o.BOOT: ("BUILD", "building", NOSTATE, "spawning"),
    o.PROLOG_RESUME: ("BUILD", "building", NOSTATE, "spawning"),
    o.RUNNING: ("ACTIVE", "active", RUNNING, None),
    o.MIGRATE: ("MIGRATING", "active", RUNNING, "migrating"),
    o.SAVE_MIGRATE: ("MIGRATING", "active", RUNNING, "migrating"),
    o.PROLOG_MIGRATE: ("MIGRATING", "active", RUNNING, "migrating"),
    o.SAVE_STOP: ("ACTIVE", "active", RUNNING, "powering-off"),
    o.EPILOG_STOP: ("ACTIVE", "active", RUNNING, "powering-off"),
    o.SAVE_SUSPEND: ("ACTIVE", "active", RUNNING, "suspending"),
    o.SHUTDOWN: ("ACTIVE", "active", RUNNING, "deleting"),
    o.CANCEL: ("ACTIVE", "active", RUNNING, "deleting"),
    o.EPILOG: ("ACTIVE", "active", RUNNING, "deleting"),
    o.CLEANUP: ("ACTIVE", "active", RUNNING, "deleting"),
    o.UNKNOWN: ("UNKNOWN", "active", NOSTATE, None),
    o.FAILURE: ("ERROR", "error", NOSTATE, None),
}


def server_state(vm):
    """``(status, vm_state, power_state, task_state)`` of a VM (the module's
    table); task_state None when no task runs."""
    if vm.state == o.ACTIVE:
        return _BY_LCM.get(vm.lcm_state, ("BUILD", "building", NOSTATE, "scheduling"))
    return _BY_STATE.get(vm.state, ("UNKNOWN", "error", NOSTATE, None))


class Flavor:
    """One flavor: ``id``/``name`` (the VM type NAME), ``vcpus`` (int),
    ``ram`` (MB, int), ``disk`` (GB, int)."""

    __slots__ = ("id", "name", "vcpus", "ram", "disk")

    def __init__(self, name, vcpus, ram, disk):
        self.id = self.name = name
        self.vcpus, self.ram, self.disk = vcpus, ram, disk

    @classmethod
    def from_template(cls, name, template):
        """The flavor of type ``name`` rendered as ``template`` (a
        :class:`~nebtwist.template.Template`; see the module docstring)."""
        vcpu = template.get_int("VCPU")
        if vcpu is None:
            vcpu = max(1, math.ceil(template.get_float("CPU", 1.0) or 1.0))
        ram = int(template.get_float("MEMORY", 0) or 0)
        disk_mb = 0
        for disk in template.get_all("DISK"):
            if isinstance(disk, dict):
                try:
                    disk_mb += max(0, int(float(disk.get("SIZE", 0) or 0)))
                except ValueError:
                    pass
        return cls(name, int(vcpu), ram, math.ceil(disk_mb / 1024))

    def summary(self, base):
        """``GET /flavors`` entry: id, name, links."""
        return {"id": self.id, "name": self.name, "links": links(base, "flavors", self.id)}

    def detail(self, base, microversion):
        """``GET /flavors/detail`` entry (fields by microversion: swap is
        ``""`` below 2.75, 0 from it; description from 2.55; extra_specs
        from 2.61)."""
        out = self.summary(base)
        out.update({"vcpus": self.vcpus, "ram": self.ram, "disk": self.disk,
                    "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False,
                    "swap": 0 if microversion >= (2, 75) else "", "rxtx_factor": 1.0,
                    "os-flavor-access:is_public": True})
        if microversion >= (2, 55):
            out["description"] = None
        if microversion >= (2, 61):
            out["extra_specs"] = {}
        return out

    def embedded(self):
        """A server's ``flavor`` from 2.47 on."""
        return {"vcpus": self.vcpus, "ram": self.ram, "disk": self.disk, "ephemeral": 0,
                "swap": 0, "original_name": self.name, "extra_specs": {}}


def load_flavors(vmtypes, user="oneadmin"):
    """``{name: Flavor}`` of every type of ``vmtypes`` (a
    :class:`~nebtwist.core.vmtypes.VMTypes`), each rendered with image 0.

    :raises nebtwist.core.vmtypes.VMTypeError: a type fails to render.
    """
    out = {}
    for name in vmtypes.names():
        text = vmtypes.render(name, image_id=0, user=user, network=None)
        out[name] = Flavor.from_template(name, Template.parse(text))
    return out


def links(base, collection, oid):
    """Nova's ``links``: self (versioned) and bookmark (unversioned)."""
    return [{"rel": "self", "href": f"{base}/compute/v2.1/{collection}/{oid}"},
            {"rel": "bookmark", "href": f"{base}/compute/{collection}/{oid}"}]
