"""OCCI create requests translated into nebtwist templates (the core decides).

``POST /compute/`` (GFD.185 "Operations on Resource Instances": creating;
GFD.184 Compute and its os_tpl/resource_tpl Mixins) becomes a VM template
for :meth:`Requests.vm_allocate <nebtwist.core.requests.Requests.vm_allocate>`:

* a **resource_tpl** Mixin (an econe.conf VM type) renders that type's
  template as the EC2 front does (:meth:`nebtwist.core.vmtypes.VMTypes.render`,
  ``image_id`` the os_tpl's image: a resource_tpl needs an os_tpl);
* without one: ``NAME``, ``CPU`` and ``VCPU`` = ``occi.compute.cores``
  (default 1), ``MEMORY`` = ``occi.compute.memory`` GiB x 1024 MB (default
  0.5 GiB), and ``DISK = [ IMAGE_ID ]`` of the os_tpl (``image_<ID>``);
* on top of either: ``occi.core.title`` -> NAME, cores and memory when given,
  ``occi.compute.architecture`` x64/x86 -> ``OS = [ ARCH ]``,
  ``occi.compute.hostname`` -> ``CONTEXT = [ HOSTNAME ]``; each Link to
  ``/network/<N>`` -> ``NIC = [ NETWORK_ID = N ]`` (``IP`` from
  ``occi.networkinterface.address``), each Link to ``/storage/<N>`` ->
  ``DISK = [ IMAGE_ID = N ]`` (``TARGET`` from ``occi.storagelink.deviceid``
  without ``/dev/``). ``occi.compute.speed`` and attributes nebtwist does not
  know are ignored (as rOCCI-server does; pOCCI's ``http-ok-ignore-unknown``).

``POST /network/`` (GFD.184 Network and its IPNetworking Mixin): ``NAME`` from the title,
``TYPE = RANGED``, ``NETWORK_ADDRESS`` = ``occi.network.address`` (CIDR,
required), ``GATEWAY``, ``VLAN_ID`` (``VLAN = YES``), ``BRIDGE`` from
``org.opennebula.network.bridge`` (3.4 needs one).

``POST /storage/`` (GFD.184 Storage): a DATABLOCK image, ``SIZE`` =
``occi.storage.size`` GiB x 1024 MB (rounded up), ``FSTYPE`` =
``org.opennebula.storage.fstype`` (default ``raw``).
"""

import math
from urllib.parse import urlsplit

from nebtwist.api.occi import model
from nebtwist.api.occi.rendering import BadRendering
from nebtwist.template import Template

#: Defaults of a compute created without a resource_tpl.
DEFAULT_CORES = 1
DEFAULT_MEMORY_GIB = 0.5


def entity_id(uri, collection):
    """The id in ``/collection/<id>`` (a path, or an absolute URI's path).

    :raises BadRendering: any other URI.
    """
    path = urlsplit(uri).path if "://" in uri else uri
    prefix = f"/{collection}/"
    rest = path[len(prefix):] if path.startswith(prefix) else ""
    if not rest.isdigit():
        raise BadRendering(f"{uri!r} is not a /{collection}/<id> location")
    return int(rest)


def check_categories(structures, kind, mixins=()):
    """Check the request names exactly one Kind, ``kind``, and only the
    Mixins ``mixins`` accepts (GFD.185 "Operations on Resource Instances": one and only one Kind).

    :param mixins: a callable ``(term, scheme) -> bool``, or a collection of
        acceptable Category objects.
    :return: the list of ``(term, scheme)`` Mixins given.
    :raises BadRendering: no Kind, several, another Kind, an Action, or an
        unknown Mixin.
    """
    kinds = [(t, s) for t, s, c in structures.categories if c == "kind"]
    if len(kinds) != 1:
        raise BadRendering(f"exactly one Kind Category is needed, {len(kinds)} given")
    if kinds[0] != (kind.term, kind.scheme):
        raise BadRendering(f"the Kind must be {kind.identifier}, not {''.join(reversed(kinds[0]))}")
    if any(c == "action" for _, _, c in structures.categories):
        raise BadRendering("an Action Category cannot create an entity")
    accept = mixins if callable(mixins) else (
        lambda t, s: any((m.term, m.scheme) == (t, s) for m in mixins))
    given = [(t, s) for t, s, c in structures.categories if c == "mixin"]
    for term, scheme in given:
        if not accept(term, scheme):
            raise BadRendering(f"unknown Mixin {scheme}{term}")
    return given


def _positive(attrs, name, kind=float):
    value = attrs.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BadRendering(f"{name} must be a positive number, not {value!r}")
    if kind is int and int(value) != value:
        raise BadRendering(f"{name} must be a whole number, not {value!r}")
    return kind(value)


def _string(attrs, name):
    value = attrs.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRendering(f"{name} must be a string, not {value!r}")
    return value


def _os_tpl_image(term):
    if term.startswith("image_") and term[6:].isdigit():
        return int(term[6:])
    return None


def compute_template(structures, actor, vmtypes=None):
    """The VM template text of a ``POST /compute/`` (module docstring).

    :param structures: the request's :class:`~nebtwist.api.occi.rendering.Structures`.
    :param actor: the authenticated :class:`~nebtwist.core.objects.User`
        (its name and id go to a VM type's template).
    :param vmtypes: the :class:`~nebtwist.core.vmtypes.VMTypes` (or None).
    :return: str, template text.
    :raises BadRendering: wrong Categories, several os_tpl or resource_tpl,
        a resource_tpl without an os_tpl, a bad attribute or Link.
    """
    types = {model.resource_tpl_term(n): n for n in (vmtypes.names() if vmtypes else ())}

    def known(term, scheme):
        if scheme == model.OS_TPL_SCHEME:
            return _os_tpl_image(term) is not None
        if scheme == model.RESOURCE_TPL_SCHEME:
            return term in types
        return (term, scheme) in (("compute", model.ONE_SCHEME),)

    given = check_categories(structures, model.COMPUTE, known)
    images = [_os_tpl_image(t) for t, s in given if s == model.OS_TPL_SCHEME]
    rtpls = [types[t] for t, s in given if s == model.RESOURCE_TPL_SCHEME]
    if len(images) > 1 or len(rtpls) > 1:
        raise BadRendering("at most one os_tpl and one resource_tpl Mixin")
    attrs = structures.attributes
    title = _string(attrs, "occi.core.title")
    cores = _positive(attrs, "occi.compute.cores", int)
    memory = _positive(attrs, "occi.compute.memory")
    if rtpls:
        if not images:
            raise BadRendering(f"the resource_tpl {rtpls[0]} needs an os_tpl Mixin (the "
                               f"image its template boots)")
        text = vmtypes.render(rtpls[0], image_id=images[0], user=actor.name,
                              user_id=actor.oid, vm_name=title or "occi-vm")
        template = Template.parse(text)
    else:
        template = Template()
        template.set("NAME", title or "occi-vm")
        cores = cores or DEFAULT_CORES
        memory = memory or DEFAULT_MEMORY_GIB
        if images:
            template.add("DISK", {"IMAGE_ID": str(images[0])})
    if title:
        template.set("NAME", title)
    if cores:
        template.set("CPU", str(cores))
        template.set("VCPU", str(cores))
    if memory:
        template.set("MEMORY", str(int(math.ceil(memory * 1024))))
    arch = _string(attrs, "occi.compute.architecture")
    if arch is not None:
        if arch not in ("x64", "x86"):
            raise BadRendering(f"occi.compute.architecture must be x86 or x64, not {arch!r}")
        template.set("OS", {"ARCH": "x86_64" if arch == "x64" else "i686"})
    hostname = _string(attrs, "occi.compute.hostname")
    if hostname:
        template.set("CONTEXT", {"HOSTNAME": hostname})
    for link in structures.links:
        _add_link(template, link)
    return template.to_text()


def _add_link(template, link):
    path = urlsplit(link.target).path
    if link.rel == model.INFRA + "network" or path.startswith("/network/"):
        nic = {"NETWORK_ID": str(entity_id(link.target, "network"))}
        address = link.attributes.get("occi.networkinterface.address")
        if address is not None:
            if not isinstance(address, str):
                raise BadRendering("occi.networkinterface.address must be a string")
            nic["IP"] = address
        template.add("NIC", nic)
    elif link.rel == model.INFRA + "storage" or path.startswith("/storage/"):
        disk = {"IMAGE_ID": str(entity_id(link.target, "storage"))}
        device = link.attributes.get("occi.storagelink.deviceid")
        if device is not None:
            if not isinstance(device, str) or not device.removeprefix("/dev/").isalnum():
                raise BadRendering(f"occi.storagelink.deviceid must be a device name such "
                                   f"as /dev/hdb, not {device!r}")
            disk["TARGET"] = device.removeprefix("/dev/")
        template.add("DISK", disk)
    else:
        raise BadRendering(f"a compute links only to /network/<id> or /storage/<id>, not "
                           f"{link.target!r}")


def network_template(structures):
    """The virtual network template of a ``POST /network/`` (module docstring).

    :raises BadRendering: wrong Categories, no ``occi.network.address``, a
        bad attribute.
    """
    check_categories(structures, model.NETWORK, (model.IPNETWORK, model.ONE_NETWORK))
    attrs = structures.attributes
    address = _string(attrs, "occi.network.address")
    if not address:
        raise BadRendering("occi.network.address (the ipnetwork Mixin's CIDR, e.g. "
                           "192.168.0.0/24) is required")
    template = Template()
    template.set("NAME", _string(attrs, "occi.core.title") or "occi-network")
    template.set("TYPE", "RANGED")
    template.set("NETWORK_ADDRESS", address)
    for name, key in (("occi.network.gateway", "GATEWAY"),
                      ("org.opennebula.network.bridge", "BRIDGE"),
                      ("occi.network.label", "DESCRIPTION")):
        value = _string(attrs, name)
        if value:
            template.set(key, value)
    vlan = attrs.get("occi.network.vlan")
    if vlan is not None:
        if isinstance(vlan, bool) or not isinstance(vlan, int) or not 0 <= vlan <= 4095:
            raise BadRendering(f"occi.network.vlan must be an integer 0-4095, not {vlan!r}")
        template.set("VLAN", "YES")
        template.set("VLAN_ID", str(vlan))
    return template.to_text()


def storage_template(structures):
    """The image template of a ``POST /storage/`` (module docstring).

    :raises BadRendering: wrong Categories, no or a bad ``occi.storage.size``.
    """
    check_categories(structures, model.STORAGE, (model.ONE_STORAGE,))
    attrs = structures.attributes
    size = _positive(attrs, "occi.storage.size")
    if size is None:
        raise BadRendering("occi.storage.size (GiB) is required")
    template = Template()
    template.set("NAME", _string(attrs, "occi.core.title") or "occi-storage")
    template.set("TYPE", "DATABLOCK")
    template.set("SIZE", str(int(math.ceil(size * 1024))))
    template.set("FSTYPE", _string(attrs, "org.opennebula.storage.fstype") or "raw")
    return template.to_text()
