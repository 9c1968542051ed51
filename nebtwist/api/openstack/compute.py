"""Nova v2.1: servers (nebtwist VMs) and flavors (VM types).

Routes (Compute API reference, https://docs.openstack.org/api-ref/compute/):

* ``GET /compute`` (versions) and ``GET /compute/v2.1`` (the version,
  microversions 2.1 to :data:`MAX_MICROVERSION`).
* ``GET /servers`` and ``/servers/detail``: the caller's visible VMs that
  are not DONE (``deleted=true``: the DONE ones too); filters ``name`` (a
  regular expression searched in the name, as Nova), ``status``; paging
  ``limit``/``marker``.
* ``GET /servers/{id}``: one VM (404 ``itemNotFound`` unknown, not visible,
  or DONE).
* ``POST /servers``: 202, creates VMs from a flavor and an image (see
  :func:`create_server`).
* ``POST /servers/{id}/action``: ``os-stop``, ``os-start``, ``reboot``,
  ``suspend``, ``resume`` (see :data:`ACTIONS`); 202, or 409
  ``conflictingRequest`` when the VM's state does not allow it.
* ``DELETE /servers/{id}``: 204 (see :func:`delete_server`).
* ``GET /flavors``, ``/flavors/detail``, ``/flavors/{id}``.

A server's JSON is built by :func:`server_view` (status table in
:mod:`nebtwist.api.openstack.flavors`); ids are the UUIDs of
:mod:`nebtwist.api.openstack.common`.
"""

import base64
import binascii
import hashlib
import inspect
import re

from nebtwist.api.openstack.common import (bad_request, conflict, forbidden, from_uuid, iso8601,
                                           not_found, to_uuid)
from nebtwist.api.openstack.flavors import Flavor, links, server_state
from nebtwist.core import objects as o
from nebtwist.core.vmtypes import UnknownVMType
from nebtwist.errors import ActionError, AuthorizationError, NoSuchObject
from nebtwist.template import Template, _quote

#: The highest compute microversion served (as devstack's Train, which
#: python-openstackclient's commands were checked against).
MAX_MICROVERSION = (2, 79)
MIN_MICROVERSION = (2, 1)
_VERSION_UPDATED = "2013-07-23T11:33:21Z"
#: Most VMs one ``POST /servers`` may create (``max_count``).
MAX_COUNT = 100
#: Longest ``user_data`` (base64 characters; Nova's limit, 65535).
MAX_USER_DATA = 65535


async def maybe_await(value):
    """``value``, awaited if it is awaitable (core operations may be either)."""
    if inspect.isawaitable(value):
        return await value
    return value


def version_doc(base):
    """The v2.1 version entry of the compute versions documents."""
    top = ".".join(map(str, MAX_MICROVERSION))
    return {"id": "v2.1", "status": "CURRENT", "version": top,
            "min_version": ".".join(map(str, MIN_MICROVERSION)), "updated": _VERSION_UPDATED,
            "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"},
                      {"rel": "describedby", "type": "text/html",
                       "href": "http://docs.openstack.org/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.compute+json;version=2.1"}]}


def parse_microversion(headers):
    """The requested compute microversion ``(2, n)`` from
    ``OpenStack-API-Version: compute 2.n`` or ``X-OpenStack-Nova-API-Version:
    2.n`` (``latest``: the highest); absent: 2.1.

    :param headers: a callable ``name -> str or None``.
    :raises OpenStackError: 400 malformed; 406 outside 2.1..max.
    """
    from nebtwist.api.openstack.common import OpenStackError

    value = None
    generic = headers("openstack-api-version")
    if generic:
        for item in generic.split(","):
            parts = item.strip().split()
            if len(parts) == 2 and parts[0].lower() == "compute":
                value = parts[1]
    if value is None:
        value = headers("x-openstack-nova-api-version")
    if not value:
        return MIN_MICROVERSION
    value = value.strip().lower()
    if value == "latest":
        return MAX_MICROVERSION
    m = re.fullmatch(r"(\d+)\.(\d+)", value)
    if not m:
        raise bad_request(f"Invalid API version request string {value!r}.")
    wanted = (int(m.group(1)), int(m.group(2)))
    if not MIN_MICROVERSION <= wanted <= MAX_MICROVERSION:
        raise OpenStackError(406, "notAcceptable",
                             f"Version {value} is not supported by the API. Minimum is "
                             f"{'.'.join(map(str, MIN_MICROVERSION))} and maximum is "
                             f"{'.'.join(map(str, MAX_MICROVERSION))}.")
    return wanted


# -- server views -----------------------------------------------------------------------------

def vm_image_id(vm):
    """The image a VM was created from: its ``IMAGE_ID`` (the VM types set
    it), else its first DISK's ``IMAGE_ID``; None."""
    value = vm.template.get_int("IMAGE_ID")
    if value is None:
        for disk in vm.template.get_all("DISK"):
            if isinstance(disk, dict) and str(disk.get("IMAGE_ID", "")).isdigit():
                return int(disk["IMAGE_ID"])
    return value


def _addresses(vm):
    out = {}
    for nic in vm.template.get_all("NIC"):
        if not isinstance(nic, dict) or not nic.get("IP"):
            continue
        out.setdefault(nic.get("NETWORK") or str(nic.get("NETWORK_ID", "")), []).append(
            {"version": 4, "addr": nic["IP"], "OS-EXT-IPS:type": "fixed",
             "OS-EXT-IPS-MAC:mac_addr": nic.get("MAC", "")})
    return out


def _flavor_of(vm, flavors):
    name = vm.template.get_str("INSTANCE_TYPE") or ""
    flavor = flavors.get(name)
    if flavor is None:  # a VM made elsewhere: its own capacity
        flavor = Flavor.from_template(name, vm.template)
    return flavor


def server_view(call, vm, detail=True):
    """A server's JSON (dict) as the caller's microversion shows it:
    without ``detail`` only id, name and links."""
    base, mv = call.base, call.microversion
    sid = to_uuid("server", vm.oid)
    out = {"id": sid, "name": vm.name, "links": links(base, "servers", sid)}
    if not detail:
        return out
    status, vm_state, power, task = server_state(vm)
    image = vm_image_id(vm)
    flavor = _flavor_of(vm, call.front.flavors)
    record = vm.last_history
    host = record.hostname if record is not None and vm.state == o.ACTIVE else ""
    project = str(vm.gid)
    updated = max([vm.stime, vm.etime] + ([record.stime, record.etime, record.rstime,
                                           record.retime] if record else []))
    out.update({
        "status": status,
        "tenant_id": project,
        "user_id": str(vm.uid),
        "created": iso8601(vm.stime),
        "updated": iso8601(updated),
        "hostId": hashlib.sha224((project + host).encode()).hexdigest() if host else "",
        "image": ({"id": to_uuid("image", image),
                   "links": [{"rel": "bookmark",
                              "href": f"{base}/compute/images/{to_uuid('image', image)}"}]}
                  if image is not None else ""),
        "flavor": (flavor.embedded() if mv >= (2, 47) else
                   {"id": flavor.id, "links": [{"rel": "bookmark",
                                                "href": f"{base}/compute/flavors/{flavor.id}"}]}),
        "addresses": _addresses(vm),
        "metadata": {},
        "key_name": None,
        "accessIPv4": "", "accessIPv6": "",
        "progress": 100 if status == "ACTIVE" else 0,
        "config_drive": "",
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": "nova",
        "OS-EXT-STS:vm_state": vm_state,
        "OS-EXT-STS:power_state": power,
        "OS-EXT-STS:task_state": task,
        "OS-SRV-USG:launched_at": (iso8601(record.rstime).replace("Z", ".000000")
                                   if record is not None and record.rstime else None),
        "OS-SRV-USG:terminated_at": (iso8601(vm.etime).replace("Z", ".000000")
                                     if vm.state == o.DONE and vm.etime else None),
        "os-extended-volumes:volumes_attached": [],
        "security_groups": [{"name": "default"}],
    })
    if status == "ERROR":
        out["fault"] = {"code": 500, "created": iso8601(updated),
                        "message": f"VM {vm.oid} failed ({o.VM_STATES[vm.state]}); see its "
                                   f"vm.log"}
    if mv >= (2, 9):
        out["locked"] = False
    if mv >= (2, 19):
        out["description"] = None
    if mv >= (2, 26):
        out["tags"] = []
    if mv >= (2, 63):
        out["trusted_image_certificates"] = None
    if mv >= (2, 73):
        out["locked_reason"] = None
    return out


# -- lookups --------------------------------------------------------------------------------

async def get_server(call, sid):
    """The visible, not DONE VM a client's server id names.

    :raises OpenStackError: 404 ``itemNotFound``.
    """
    vid = from_uuid("server", sid)
    missing = not_found(f"Instance {sid} could not be found.")
    if vid is None:
        raise missing
    try:
        vm = await maybe_await(call.requests.vm_get(call.actor, vid))
    except (NoSuchObject, AuthorizationError):
        raise missing from None
    if vm.state == o.DONE:
        raise missing
    return vm


def _flavor(call, ref):
    if isinstance(ref, int) and not isinstance(ref, bool):
        ref = str(ref)
    if not isinstance(ref, str) or not ref:
        raise bad_request("Invalid flavorRef provided.")
    name = ref.rstrip("/").rsplit("/", 1)[-1]  # a flavor's URL names it too
    flavor = call.front.flavors.get(name)
    if flavor is None:
        raise bad_request(f"Flavor {ref} could not be found.")
    return flavor


async def _referred(call, kind, ref, get):
    """The object a request body names by UUID (or plain id), read with
    ``get(actor, id)``; unknown or not usable: 400 "<Kind> <ref> could not be found."."""
    oid = from_uuid(kind, ref)
    missing = bad_request(f"{kind.capitalize()} {ref} could not be found.")
    if oid is None:
        raise missing
    try:
        return await maybe_await(get(call.actor, oid))
    except (NoSuchObject, AuthorizationError):
        raise missing from None


async def _image(call, ref):
    if isinstance(ref, str):  # an image link's last path segment
        ref = ref.rstrip("/").rsplit("/", 1)[-1]
    return await _referred(call, "image", ref, call.requests.image_get)


async def _network(call, ref):
    return await _referred(call, "network", ref, call.requests.vnet_get)


# -- routes ---------------------------------------------------------------------------------

async def list_servers(call, detail):
    """``GET /servers[/detail]``: (200, ``{"servers": [...]}``)."""
    args = call.args
    deleted = args.get("deleted", "").lower() in ("true", "1", "yes")
    vms = await maybe_await(call.requests.vm_list(call.actor, include_done=deleted))
    vms = sorted((vm for vm in vms if deleted or vm.state != o.DONE), key=lambda v: v.oid)
    if deleted:
        vms = [vm for vm in vms if vm.state == o.DONE]
    name = args.get("name")
    if name and len(name) > 255:
        raise bad_request("Invalid filter name: at most 255 characters.")
    if name:
        try:
            pattern = re.compile(name)
        except re.error:
            pattern = re.compile(re.escape(name))
        vms = [vm for vm in vms if pattern.search(vm.name)]
    status = args.get("status")
    if status:
        vms = [vm for vm in vms if server_state(vm)[0] == status.upper()]
    vms, next_link = _page(call, vms, lambda vm: to_uuid("server", vm.oid), "servers", detail)
    body = {"servers": [server_view(call, vm, detail) for vm in vms]}
    if next_link:
        body["servers_links"] = [{"rel": "next", "href": next_link}]
    return 200, body


def _page(call, items, key, collection, detail):
    """``(page, next href or None)`` of ``items`` after ``marker``, at most
    ``limit`` of them."""
    args = call.args
    marker = args.get("marker")
    if marker:
        keys = [key(item) for item in items]
        if marker not in keys:
            raise bad_request(f"marker [{marker}] not found")
        items = items[keys.index(marker) + 1:]
    limit = args.get("limit")
    if limit is None:
        return items, None
    try:
        limit = int(limit)
        if limit < 0:
            raise ValueError
    except ValueError:
        raise bad_request("limit param must be a non-negative integer") from None
    if len(items) <= limit or limit == 0:
        return items[:limit] if limit else items, None
    page = items[:limit]
    path = f"{collection}/detail" if detail else collection
    return page, f"{call.base}/compute/v2.1/{path}?limit={limit}&marker={key(page[-1])}"


async def show_server(call, sid):
    """``GET /servers/{id}``: (200, ``{"server": ...}``)."""
    return 200, {"server": server_view(call, await get_server(call, sid))}


async def create_server(call, body):
    """``POST /servers``: create ``max_count`` VMs (default 1; names
    ``name-1``... when more than one, as Nova) of a flavor and an image.

    * ``flavorRef``: a flavor id (the VM type NAME) or its URL.
    * ``imageRef``: an image UUID or decimal id (or URL); when empty, the
      ``block_device_mapping_v2`` entry with ``boot_index`` 0 and
      ``source_type`` ``image``. Other mappings are refused.
    * ``networks``: ``"none"`` -> no NIC; ``"auto"`` (or absent) -> a NIC on
      openstack.conf ``NETWORK`` if set, else no NIC; a list of
      ``{"uuid": network, "fixed_ip": address?}`` -> one NIC per entry
      (``NIC = [ NETWORK_ID, IP ]``); ``port`` entries are refused.
    * ``user_data`` (base64) reaches the type's template as ``user_data``.
    * ``key_name`` and ``metadata`` are refused (no Nova key pairs or
      server metadata here).

    The type's Mako template renders the VM template (``vm_name`` = name,
    ``network`` None), the NICs and ``INSTANCE_TYPE`` are appended. All or
    nothing: a failure finalizes the VMs made so far.

    :return: (202, ``{"server": {"id", "links", "OS-DCF:diskConfig",
        "security_groups"}}``), the first server (Nova's answer).
    :raises OpenStackError: 400 ``badRequest`` bad input; 403 not allowed.
    """
    server = body.get("server") if isinstance(body, dict) else None
    if not isinstance(server, dict):
        raise bad_request("Invalid input: the body needs a 'server' object.")
    name = server.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise bad_request("Invalid input for field/attribute name: a string of 1 to 255 "
                          "characters.")
    flavor = _flavor(call, server.get("flavorRef"))
    image_ref = server.get("imageRef") or None
    bdms = server.get("block_device_mapping_v2") or []
    if not isinstance(bdms, list) or not all(isinstance(b, dict) for b in bdms):
        raise bad_request("Invalid input for field/attribute block_device_mapping_v2.")
    for bdm in bdms:
        if bdm.get("source_type") != "image" or bdm.get("destination_type", "local") != "local":
            raise bad_request("Block device mappings other than the boot image "
                              "(source_type image, destination_type local) are not supported.")
        if image_ref is None and str(bdm.get("boot_index", "")) == "0":
            image_ref = bdm.get("uuid")
        elif from_uuid("image", bdm.get("uuid")) != from_uuid("image", image_ref):
            raise bad_request("Only one image per server is supported.")
    if image_ref is None:
        raise bad_request("Missing imageRef attribute.")
    image = await _image(call, image_ref)
    nics = await _nics(call, server.get("networks", "auto"))
    for key in ("key_name", "metadata"):
        if server.get(key):
            raise bad_request(f"{key} is not supported by this cloud.")
    zone = server.get("availability_zone")
    if zone not in (None, "", "nova"):
        raise bad_request(f"The requested availability zone {zone!r} is not available.")
    user_data = server.get("user_data") or None
    if user_data is not None:
        if not isinstance(user_data, str) or len(user_data) > MAX_USER_DATA:
            raise bad_request(f"Invalid input for field/attribute user_data: base64 text of "
                              f"at most {MAX_USER_DATA} characters.")
        try:
            base64.b64decode(user_data, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise bad_request("Invalid input for field/attribute user_data: not base64.") \
                from None
    counts = [server.get("min_count", 1), server.get("max_count", server.get("min_count", 1))]
    if not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= MAX_COUNT
               for c in counts) or counts[0] > counts[1]:
        raise bad_request(f"min_count and max_count must be integers 1 to {MAX_COUNT}, "
                          f"min_count <= max_count.")
    count = counts[1]
    texts = []
    for index in range(count):
        vm_name = name if count == 1 else f"{name}-{index + 1}"
        try:
            text = call.front.vmtypes.render(
                flavor.name, image_id=image.oid, image_path=image.source, user_data=user_data,
                user=call.actor.name, user_id=call.actor.oid, network=None, vm_name=vm_name)
        except UnknownVMType:
            raise bad_request(f"Flavor {flavor.id} could not be found.") from None
        extra = [f"NIC = [ {nic} ]" for nic in nics]
        if Template.parse(text).get_str("INSTANCE_TYPE") is None:
            extra.append(f"INSTANCE_TYPE = {_quote(flavor.name)}")
        texts.append("\n".join([text] + extra))
    created = []
    try:
        for text in texts:
            created.append(await call.requests.vm_allocate(call.actor, text))
    except BaseException:
        for vid in created:  # all or nothing
            try:
                await call.requests.vm_action(call.actor, "finalize", vid)
            except Exception:
                call.front.log.failure("OpenStack POST /servers: cleaning up VM {vid}", vid=vid)
        raise
    sid = to_uuid("server", created[0])
    return 202, {"server": {"id": sid, "links": links(call.base, "servers", sid),
                            "OS-DCF:diskConfig": "MANUAL",
                            "security_groups": [{"name": "default"}]}}, {
        "Location": f"{call.base}/compute/v2.1/servers/{sid}"}


async def _nics(call, networks):
    """The NIC attribute texts (``NETWORK_ID = n, IP = a``) of ``networks``."""
    if networks == "none":
        return []
    if networks == "auto" or networks is None:
        name = call.front.network
        return [f"NETWORK = {_quote(name)}"] if name else []
    if not isinstance(networks, list):
        raise bad_request("Invalid input for field/attribute networks: 'auto', 'none' or "
                          "a list of {\"uuid\": ...}.")
    out = []
    for entry in networks:
        if not isinstance(entry, dict) or entry.get("port"):
            raise bad_request("Each network needs a 'uuid'; ports are not supported.")
        if "uuid" not in entry:
            raise bad_request("Each network needs a 'uuid'.")
        vnet = await _network(call, entry["uuid"])
        nic = f"NETWORK_ID = {vnet.oid}"
        ip = entry.get("fixed_ip")
        if ip:
            if not isinstance(ip, str) or not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", ip):
                raise bad_request(f"Invalid fixed IP address {ip!r}.")
            nic += f", IP = {_quote(ip)}"
        out.append(nic)
    return out


#: ``POST /servers/{id}/action`` name -> ((STATE, LCM_STATE or None) it is
#: allowed from, core action), in order; Nova's action reference.
#: ``os-stop`` is the core ``stop`` (checkpoint, host freed: SHUTOFF);
#: ``os-start`` the core ``resume``; ``reboot`` SOFT and HARD the core
#: ``reboot`` of a RUNNING VM, HARD also ``restart`` (boot again) of one
#: stuck in BOOT or lost in UNKNOWN; ``suspend``/``resume`` the core ones.
ACTIONS = {
    "os-stop": (((o.ACTIVE, o.RUNNING), "stop"),),
    "os-start": (((o.STOPPED, None), "resume"), ((o.SUSPENDED, None), "resume")),
    "reboot": (((o.ACTIVE, o.RUNNING), "reboot"),),
    "reboot-hard": (((o.ACTIVE, o.RUNNING), "reboot"), ((o.ACTIVE, o.BOOT), "restart"),
                    ((o.ACTIVE, o.UNKNOWN), "restart")),
    "suspend": (((o.ACTIVE, o.RUNNING), "suspend"),),
    "resume": (((o.SUSPENDED, None), "resume"),),
}
_NOVA_NAMES = {"os-stop": "stop", "os-start": "start", "reboot": "reboot",
               "reboot-hard": "reboot", "suspend": "suspend", "resume": "resume"}


def _core_action(vm, name):
    for (state, lcm), action in ACTIONS[name]:
        if vm.state == state and (lcm is None or vm.lcm_state == lcm):
            return action
    return None


async def server_action(call, sid, body):
    """``POST /servers/{id}/action``: one action (the body's only key).

    :return: (202, None).
    :raises OpenStackError: 400 unknown action or bad reboot type; 404
        unknown server; 409 the VM's state refuses it; 403 not allowed.
    """
    if not isinstance(body, dict) or len(body) != 1:
        raise bad_request("The body must name exactly one action.")
    (name, arg), = body.items()
    if name == "reboot":
        kind = arg.get("type") if isinstance(arg, dict) else None
        if kind not in ("SOFT", "HARD"):
            raise bad_request("Invalid input for field/attribute type: SOFT or HARD.")
        if kind == "HARD":
            name = "reboot-hard"
    if name not in ACTIONS:
        raise bad_request(f"There is no such action: {name}")
    vm = await get_server(call, sid)
    action = _core_action(vm, name)
    if action is None:
        _status, vm_state, _power, task = server_state(vm)
        raise conflict(f"Cannot '{_NOVA_NAMES[name]}' instance {sid} while it is in "
                       f"vm_state {vm_state}" + (f", task_state {task}" if task else ""))
    try:
        await call.requests.vm_action(call.actor, action, vm.oid)
    except ActionError as e:
        raise conflict(str(e)) from None
    except AuthorizationError as e:
        raise forbidden(str(e)) from None
    return 202, None


async def delete_server(call, sid):
    """``DELETE /servers/{id}``: a RUNNING VM is cancelled (destroyed on its
    host, epilog, DONE; Nova's delete does not shut the guest down), any
    other is finalized (``onevm delete``). The server is gone (404) once DONE.

    :return: (204, None).
    """
    vm = await get_server(call, sid)
    action = "cancel" if (vm.state, vm.lcm_state) == (o.ACTIVE, o.RUNNING) else "finalize"
    try:
        await call.requests.vm_action(call.actor, action, vm.oid)
    except ActionError as e:
        raise conflict(str(e)) from None
    except AuthorizationError as e:
        raise forbidden(str(e)) from None
    return 204, None


def list_flavors(call, detail):
    """``GET /flavors[/detail]`` (filters ``minRam`` MB, ``minDisk`` GB;
    ``is_public`` accepted: every flavor is public)."""
    flavors = sorted(call.front.flavors.values(), key=lambda f: f.name)
    for arg, attr in (("minRam", "ram"), ("minDisk", "disk")):
        if call.args.get(arg):
            try:
                least = int(call.args[arg])
            except ValueError:
                raise bad_request(f"Invalid {arg} filter [{call.args[arg]}]") from None
            flavors = [f for f in flavors if getattr(f, attr) >= least]
    if call.args.get("is_public", "").lower() in ("false", "0", "no"):
        flavors = []
    flavors, next_link = _page(call, flavors, lambda f: f.id, "flavors", detail)
    body = {"flavors": [f.detail(call.base, call.microversion) if detail
                        else f.summary(call.base) for f in flavors]}
    if next_link:
        body["flavors_links"] = [{"rel": "next", "href": next_link}]
    return 200, body


def show_flavor(call, fid):
    """``GET /flavors/{id}``: 404 ``itemNotFound`` for an unknown one."""
    flavor = call.front.flavors.get(fid)
    if flavor is None:
        raise not_found(f"Flavor {fid} could not be found.")
    return 200, {"flavor": flavor.detail(call.base, call.microversion)}
