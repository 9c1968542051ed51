"""nebtwist's objects as OCCI entities, and OCCI requests as nebtwist templates.

Renderings (GFD.185 "Syntax and Semantics of the Rendering"; shapes as
rOCCI-server's OpenNebula backend, the fixture
``CESNET/pOCCI:tests/resource/text-ok-opennebula-compute.txt``):

* a VM is a **compute** (``/compute/<vid>``): ``occi.core.id`` (the id as a
  string), ``occi.core.title`` (NAME), ``occi.compute.cores`` (VCPU, else
  CPU rounded up, else 1), ``occi.compute.memory`` (MEMORY MB / 1024: GiB,
  GFD.184 Compute), ``occi.compute.hostname`` (CONTEXT HOSTNAME, else NAME),
  ``occi.compute.architecture`` (OS ARCH x86_64 -> ``x64``, i686 -> ``x86``)
  and ``occi.compute.state`` from the 3.4 state (:func:`compute_state`); the
  OpenNebula Mixin adds ``org.opennebula.compute.id``, ``.cpu``, ``.state``
  and ``.lcm_state`` (3.4 names: ``ACTIVE``, ``RUNNING``).
* its NICs are **networkinterface** Links ``/link/networkinterface/
  compute_<vid>_nic_<n>`` to ``/network/<NETWORK_ID>`` (interface ``eth<n>``,
  MAC, and the ipnetworkinterface address); its DISKs made from images are
  **storagelink** Links ``/link/storagelink/compute_<vid>_disk_<n>`` to
  ``/storage/<IMAGE_ID>`` (deviceid ``/dev/<TARGET>``).
* a virtual network is a **network** (always ``active``: 3.4 networks have
  no state) with the **ipnetwork** Mixin for a RANGED network
  (``occi.network.address`` NETWORK_ADDRESS/mask bits, ``.gateway``
  GATEWAY, ``.allocation`` ``dynamic``); VLAN_ID is ``occi.network.vlan``.
* an image is a **storage**: ``occi.storage.size`` (SIZE MB / 1024: GiB),
  ``occi.storage.state`` (READY, USED -> ``online``; DISABLED, LOCKED,
  INIT -> ``offline``; ERROR -> ``degraded``).
"""

import ipaddress
import math
from dataclasses import dataclass, field

from nebtwist.api.occi import model
from nebtwist.api.occi.rendering import render_value
from nebtwist.core.objects import (ACTIVE, BOOT, HOLD, LCM_STATES, RUNNING, STOPPED, SUSPENDED,
                                   UNKNOWN, VM_STATES)

#: 3.4 image states (``include/Image.h``) -> GFD.184 Storage states.
_STORAGE_STATES = {0: "offline", 1: "online", 2: "online", 3: "offline", 4: "offline",
                   5: "degraded"}
_IMAGE_TYPES = ("OS", "CDROM", "DATABLOCK")


@dataclass
class Rendering:
    """An entity (or listing) ready to render: Category values, Link values,
    ``(name, value)`` attributes and locations (strings, unrendered values)."""

    categories: list = field(default_factory=list)
    links: list = field(default_factory=list)
    attributes: list = field(default_factory=list)
    locations: list = field(default_factory=list)
    #: the query interface (Categories rendered whole)
    query: bool = False


def _link(target, rel, self_uri, categories, attributes):
    parts = [f"<{target}>", f'rel="{rel}"', f'self="{self_uri}"',
             'category="' + " ".join(c.identifier for c in categories) + '"']
    parts += [f"{k}={render_value(v)}" for k, v in attributes]
    return "; ".join(parts)


def action_link(location, action):
    """``Link: <location?action=term>; rel="<action id>"`` (GFD.185 "Rendering of
    references to OCCI Action instances")."""
    return f'<{location}?action={action.term}>; rel="{action.identifier}"'


def compute_state(vm):
    """GFD.184 Compute state of a VM: ``active`` (ACTIVE, any LCM state),
    ``suspended`` (SUSPENDED), else ``inactive`` (INIT, PENDING, HOLD,
    STOPPED, DONE, FAILED)."""
    if vm.state == ACTIVE:
        return "active"
    if vm.state == SUSPENDED:
        return "suspended"
    return "inactive"


def compute_actions(vm):
    """The compute Actions the VM's 3.4 state allows (rendered as action
    Links): RUNNING -> stop, restart, suspend; BOOT, UNKNOWN -> restart;
    HOLD, STOPPED, SUSPENDED -> start (release or resume)."""
    if vm.state == ACTIVE and vm.lcm_state == RUNNING:
        return [model.STOP, model.RESTART, model.SUSPEND]
    if vm.state == ACTIVE and vm.lcm_state in (BOOT, UNKNOWN):
        return [model.RESTART]
    if vm.state in (HOLD, STOPPED, SUSPENDED):
        return [model.START]
    return []


def _number(value, default=None):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _vectors(template, name):
    return [v for v in template.get_all(name) if isinstance(v, dict)]


def nic_links(vm):
    """``[(link id, NIC vector, index)]`` of a VM's NICs on a network."""
    return [(f"compute_{vm.oid}_nic_{n}", nic, n)
            for n, nic in enumerate(_vectors(vm.template, "NIC")) if "NETWORK_ID" in nic]


def disk_links(vm):
    """``[(link id, DISK vector, index)]`` of a VM's DISKs made from images."""
    return [(f"compute_{vm.oid}_disk_{n}", disk, n)
            for n, disk in enumerate(_vectors(vm.template, "DISK")) if "IMAGE_ID" in disk]


def _nic_attributes(vm, link_id, nic, n):
    active = "active" if vm.state == ACTIVE else "inactive"
    attrs = [("occi.core.id", link_id), ("occi.core.title", nic.get("NETWORK", "")),
             ("occi.core.target", f"/network/{nic['NETWORK_ID']}"),
             ("occi.core.source", f"/compute/{vm.oid}"),
             ("occi.networkinterface.interface", f"eth{n}"),
             ("occi.networkinterface.mac", nic.get("MAC", "")),
             ("occi.networkinterface.state", active)]
    if nic.get("IP"):
        attrs += [("occi.networkinterface.address", nic["IP"]),
                  ("occi.networkinterface.allocation", "dynamic")]
    return attrs


def _disk_attributes(vm, link_id, disk):
    active = "active" if vm.state == ACTIVE else "inactive"
    attrs = [("occi.core.id", link_id), ("occi.core.title", disk.get("IMAGE", "")),
             ("occi.core.target", f"/storage/{disk['IMAGE_ID']}"),
             ("occi.core.source", f"/compute/{vm.oid}")]
    if disk.get("TARGET"):
        attrs.append(("occi.storagelink.deviceid", "/dev/" + disk["TARGET"]))
    attrs.append(("occi.storagelink.state", active))
    return attrs


def compute(vm):
    """The :class:`Rendering` of a VM (``GET /compute/<vid>``; module
    docstring)."""
    location = f"/compute/{vm.oid}"
    t = vm.template
    out = Rendering(categories=[model.COMPUTE, model.ONE_COMPUTE])
    disks = _vectors(t, "DISK")
    if disks and "IMAGE_ID" in disks[0]:
        out.categories.append(model.Category(
            model.os_tpl_term(disks[0]["IMAGE_ID"]), model.OS_TPL_SCHEME, "mixin"))
    itype = t.get_str("INSTANCE_TYPE")
    if itype:
        out.categories.append(model.Category(model.resource_tpl_term(itype),
                                             model.RESOURCE_TPL_SCHEME, "mixin"))
    cpu = _number(t.get_str("CPU"))
    vcpu = _number(t.get_str("VCPU"))
    cores = int(vcpu) if vcpu else (max(1, math.ceil(cpu)) if cpu else 1)
    memory = _number(t.get_str("MEMORY"), 0.0) / 1024
    context = t.get_vector("CONTEXT") if isinstance(t.get("CONTEXT"), dict) else {}
    os_vec = t.get_vector("OS") if isinstance(t.get("OS"), dict) else {}
    attrs = [("occi.core.id", str(vm.oid)), ("occi.core.title", vm.name)]
    arch = {"x86_64": "x64", "i686": "x86", "i386": "x86"}.get(os_vec.get("ARCH", ""))
    if arch:
        attrs.append(("occi.compute.architecture", arch))
    attrs += [("occi.compute.cores", cores), ("occi.compute.memory", memory),
              ("occi.compute.hostname", context.get("HOSTNAME") or vm.name),
              ("occi.compute.state", compute_state(vm)),
              ("org.opennebula.compute.id", str(vm.oid))]
    if cpu is not None:
        attrs.append(("org.opennebula.compute.cpu", cpu))
    attrs += [("org.opennebula.compute.state", VM_STATES[vm.state]),
              ("org.opennebula.compute.lcm_state", LCM_STATES[vm.lcm_state])]
    out.attributes = attrs
    for link_id, nic, n in nic_links(vm):
        out.links.append(_link(f"/network/{nic['NETWORK_ID']}", model.INFRA + "network",
                               f"/link/networkinterface/{link_id}",
                               [model.NETWORKINTERFACE, model.IPNETWORKINTERFACE],
                               _nic_attributes(vm, link_id, nic, n)))
    for link_id, disk, _n in disk_links(vm):
        out.links.append(_link(f"/storage/{disk['IMAGE_ID']}", model.INFRA + "storage",
                               f"/link/storagelink/{link_id}", [model.STORAGELINK],
                               _disk_attributes(vm, link_id, disk)))
    out.links += [action_link(location, a) for a in compute_actions(vm)]
    return out


def networkinterface(vm, link_id):
    """The :class:`Rendering` of a VM's NIC link, or None if it has none of
    that id (GFD.185 "Handling Link resource instances": retrieval)."""
    for lid, nic, n in nic_links(vm):
        if lid == link_id:
            return Rendering(categories=[model.NETWORKINTERFACE, model.IPNETWORKINTERFACE],
                             attributes=_nic_attributes(vm, lid, nic, n))
    return None


def storagelink(vm, link_id):
    """The :class:`Rendering` of a VM's image DISK link, or None."""
    for lid, disk, _n in disk_links(vm):
        if lid == link_id:
            return Rendering(categories=[model.STORAGELINK],
                             attributes=_disk_attributes(vm, lid, disk))
    return None


def _cidr(vnet):
    address = vnet.template.get_str("NETWORK_ADDRESS")
    mask = vnet.template.get_str("NETWORK_MASK")
    if not address or not mask:
        return None
    try:
        return str(ipaddress.IPv4Network(f"{address}/{mask}", strict=False))
    except ValueError:
        return None


def network(vnet):
    """The :class:`Rendering` of a virtual network (module docstring)."""
    from nebtwist.core.objects import RANGED, int_to_ip

    out = Rendering(categories=[model.NETWORK, model.ONE_NETWORK])
    attrs = [("occi.core.id", str(vnet.oid)), ("occi.core.title", vnet.name)]
    if str(vnet.vlan_id).isdigit():
        attrs.append(("occi.network.vlan", int(vnet.vlan_id)))
    attrs.append(("occi.network.state", "active"))
    cidr = _cidr(vnet) if vnet.type == RANGED else None
    if cidr:
        out.categories.append(model.IPNETWORK)
        attrs.append(("occi.network.address", cidr))
        if vnet.template.get_str("GATEWAY"):
            attrs.append(("occi.network.gateway", vnet.template.get_str("GATEWAY")))
        attrs.append(("occi.network.allocation", "dynamic"))
    attrs += [("org.opennebula.network.id", str(vnet.oid)),
              ("org.opennebula.network.bridge", vnet.bridge)]
    if vnet.type == RANGED:
        attrs += [("org.opennebula.network.ip_start", int_to_ip(vnet.ip_start)),
                  ("org.opennebula.network.ip_end", int_to_ip(vnet.ip_end))]
    out.attributes = attrs  # no action Link: always active, and down is refused
    return out


def storage(image):
    """The :class:`Rendering` of an image (module docstring)."""
    out = Rendering(categories=[model.STORAGE, model.ONE_STORAGE])
    state = _STORAGE_STATES.get(image.state, "offline")
    out.attributes = [
        ("occi.core.id", str(image.oid)), ("occi.core.title", image.name),
        ("occi.storage.size", image.size / 1024), ("occi.storage.state", state),
        ("org.opennebula.storage.id", str(image.oid)),
        ("org.opennebula.storage.type", _IMAGE_TYPES[image.type]),
        ("org.opennebula.storage.persistent", bool(image.persistent)),
        ("org.opennebula.storage.state", image.state_name)]
    if image.fstype:
        out.attributes.append(("org.opennebula.storage.fstype", image.fstype))
    location = f"/storage/{image.oid}"
    if state == "online":
        out.links.append(action_link(location, model.OFFLINE))
    elif image.state == 3:  # DISABLED
        out.links.append(action_link(location, model.ONLINE))
    return out
