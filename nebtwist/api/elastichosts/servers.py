"""ElasticHosts servers = nebtwist VMs.

``servers/create`` allocates a VM from the server's keys (and
``servers/create/stopped`` puts it on HOLD at once, as
``one.template.instantiate`` with hold does). Keys -> VM template:

=====================  ===========================================================
name                   NAME
cpu (MHz)              CPU = cpu / CPU_MHZ of elastichosts.conf (cores, >= 0.01;
                       default 1000 MHz = 1.0 CPU); rendered back as CPU x CPU_MHZ
mem (MB)               MEMORY (MB)
smp                    VCPU (``auto``: one per started CPU)
ide:B:U, scsi:0:U,     DISK = [ IMAGE_ID = <the drive's image>, TARGET = hd{a-d} /
block:N                sd{a-h} / vd{a-h} ]; the ``boot`` device's DISK comes first
nic:0:dhcp, nic:0:model  NIC = [ NETWORK_ID = <NETWORK of elastichosts.conf, else the
                       user's first usable network>, IP = <nic:0:dhcp when not
                       ``auto``>, MODEL = <nic:0:model> ]
vnc:password           GRAPHICS = [ TYPE = vnc, LISTEN = 0.0.0.0, PASSWD = ... ]
persistent             kept (default: PERSISTENT of elastichosts.conf)
=====================  ===========================================================

The keys given are kept in the VM's ``ELASTICHOSTS`` vector (``PERSISTENT``,
and ``KEYS``: the other keys URL-encoded) and shown again by ``info``, with the
runtime keys: ``server``, ``user``, ``status``, ``started`` (RUNNING since,
epoch seconds), ``rx``/``tx`` (bytes, from the VM's monitoring NET_RX/NET_TX),
``nic:0:dhcp`` and ``nic:0:dhcp:ip`` (the leased IP; libcloud's CloudSigma 1.0
driver reads the first, its ElasticHosts driver the second), ``nic:0:mac``.

Status (VM state / LCM state -> ``status``):

==============================================================  =========
PENDING; ACTIVE PROLOG, BOOT, RUNNING, MIGRATE, SAVE_MIGRATE,     active
PROLOG_MIGRATE, PROLOG_RESUME, SHUTDOWN (the guest still runs)
INIT, HOLD, STOPPED; ACTIVE SAVE_STOP, EPILOG_STOP, CANCEL,       stopped
EPILOG, CLEANUP (powered off, files being saved or removed)
SUSPENDED; ACTIVE SAVE_SUSPEND                                    paused
FAILED                                                            dumped
ACTIVE UNKNOWN, FAILURE (the hypervisor lost it)                  dead
DONE                                                              (gone: 404)
==============================================================  =========

Actions (3.4 ``one.vm.action`` names), as ElasticHosts describes them:

* ``start``: HOLD -> release, STOPPED/SUSPENDED -> resume, UNKNOWN ->
  restart, FAILED -> resubmit; a server already started is left as it is
  (CloudSigma 1.0 clients start what ``create`` started). 200 + info.
* ``stop`` (hard power-off; "reverts to stopped if persistent, destroyed
  otherwise"): a non-persistent server is cancelled (running) or finalized
  (not running) and gone; a persistent one is stopped with 3.4's ``stop``
  (the nearest 3.4 action that keeps the VM: its state is saved, and
  ``start`` resumes it). Answers 204 once the VM has left the transitional
  states (at most STOP_TIMEOUT seconds).
* ``shutdown`` (ACPI power-down): ``shutdown``; the VM ends in DONE when the
  guest has powered off (3.4 has no powered-off state, so even a persistent
  server is gone then). 204.
* ``reset``: ``reboot``. 204.
* ``destroy``: ``cancel`` when RUNNING (the epilog saves persistent drives),
  else ``finalize``; 204 once DONE (at most STOP_TIMEOUT seconds).
* ``set``: ``name`` (4.x ``one.vm.rename``, any state), ``cpu``, ``mem``,
  ``smp`` (4.x ``one.vm.resize``: only while the VM holds no host, i.e.
  PENDING, HOLD or FAILED; else 409). 200 + info.
"""

import urllib.parse

from twisted.internet import task

from nebtwist.api.elastichosts import drives
from nebtwist.api.elastichosts import settings as S
from nebtwist.api.elastichosts.settings import DEVICE, device_target, target_device
from nebtwist.api.elastichosts.wire import EHError, missing, usage
from nebtwist.core.objects import (ACTIVE, BOOT, CANCEL, CLEANUP, DONE, EPILOG, EPILOG_STOP,
                                   FAILED, HOLD, INIT, MIGRATE, PENDING,
                                   PROLOG, PROLOG_MIGRATE, PROLOG_RESUME, RUNNING,
                                   SAVE_MIGRATE, SAVE_STOP, SAVE_SUSPEND, SHUTDOWN, STOPPED,
                                   SUSPENDED, UNKNOWN)
from nebtwist.template import Template

_ACTIVE_LCM = {PROLOG, BOOT, RUNNING, MIGRATE, SAVE_MIGRATE, PROLOG_MIGRATE, PROLOG_RESUME,
               SHUTDOWN}
_STOPPED_LCM = {SAVE_STOP, EPILOG_STOP, CANCEL, EPILOG, CLEANUP}
#: Keys computed by ``info``, never stored.
_RUNTIME = {"server", "user", "status", "started", "rx", "tx", "nic:0:dhcp:ip", "nic:0:mac"}
#: Keys turned into VM template attributes (shown from the VM, not stored).
_MAPPED = {"name", "cpu", "mem", "smp", "persistent"}
#: Seconds between two looks at a VM an action waits for.
POLL_INTERVAL = 0.1


def status(vm):
    """The ElasticHosts ``status`` of a VM (see the module's table)."""
    if vm.state == ACTIVE:
        if vm.lcm_state in _ACTIVE_LCM:
            return "active"
        if vm.lcm_state in _STOPPED_LCM:
            return "stopped"
        if vm.lcm_state == SAVE_SUSPEND:
            return "paused"
        return "dead"  # UNKNOWN, FAILURE
    return {PENDING: "active", INIT: "stopped", HOLD: "stopped", STOPPED: "stopped",
            SUSPENDED: "paused", FAILED: "dumped"}.get(vm.state, "dead")


def _stored(vm):
    """(persistent bool or None, {key: value}) kept in the VM's ELASTICHOSTS vector."""
    vector = vm.template.get_vector("ELASTICHOSTS") or {}
    persistent = vector.get("PERSISTENT")
    keys = dict(urllib.parse.parse_qsl(vector.get("KEYS", ""), keep_blank_values=True))
    return (None if persistent is None else persistent == "true"), keys


def persistent(call, vm):
    """Whether the server is persistent (its key, else elastichosts.conf's default)."""
    value, _ = _stored(vm)
    return call.settings.persistent if value is None else value


def info(call, vm):
    """The server object (dict) of ``vm``."""
    _, keys = _stored(vm)
    data = dict(keys)
    template = vm.template
    cpu = float(template.get_str("CPU") or 0)
    vcpu = template.get_str("VCPU")
    data.update({
        "server": S.make_uuid("server", vm.oid),
        "name": vm.name,
        "user": S.make_uuid("user", vm.uid),
        "status": status(vm),
        "cpu": str(call.settings.cpu_mhz_of(cpu)),
        "mem": str(int(float(template.get_str("MEMORY") or 0))),
        "persistent": "true" if persistent(call, vm) else "false",
        "rx": str(vm.net_rx),
        "tx": str(vm.net_tx),
    })
    data["smp"] = vcpu or "1"
    devices = []
    for disk in template.get_all("DISK"):
        if not isinstance(disk, dict) or "IMAGE_ID" not in disk:
            continue
        device = target_device(disk.get("TARGET"))
        if device is None:
            continue
        devices.append(device)
        if device not in keys:
            data[device] = S.make_uuid("drive", int(disk["IMAGE_ID"]))
    if "boot" not in data and devices:
        data["boot"] = devices[0]
    nics = [n for n in template.get_all("NIC") if isinstance(n, dict)]
    if nics:
        ip = nics[0].get("IP")
        data["nic:0:dhcp"] = ip or data.get("nic:0:dhcp", "auto")
        if ip:
            data["nic:0:dhcp:ip"] = ip
        if nics[0].get("MAC"):
            data["nic:0:mac"] = nics[0]["MAC"]
        if nics[0].get("MODEL"):
            data.setdefault("nic:0:model", nics[0]["MODEL"])
    h = vm.last_history
    if vm.state == ACTIVE and h is not None and h.rstime and not h.retime:
        data["started"] = str(h.rstime)
    return data


def resolve(call, uuid):
    """The VM a server UUID names (not DONE).

    :raises EHError: 404 for an unknown UUID or a VM that is gone.
    """
    vid = S.parse_uuid("server", uuid)
    if vid is None:
        raise missing(f"Server {uuid} could not be found.")
    vm = call.requests.vm_get(call.actor, vid)
    if vm.state == DONE:
        raise missing(f"Server {uuid} could not be found (destroyed).")
    return vm


def _number(body, key, kind=int):
    try:
        value = kind(body[key])
    except (KeyError, ValueError):
        raise usage(f"Bad or missing {key} {body.get(key)!r}: a positive number.") from None
    if value <= 0:
        raise usage(f"Bad {key} {body[key]!r}: a positive number.")
    return value


def _smp(call, body, cores):
    smp = str(body.get("smp", "auto")).strip()
    if smp == "auto":
        return call.settings.vcpus_for(cores)
    if not smp.isdigit() or int(smp) <= 0:
        raise usage(f"Bad smp {smp!r}: a positive whole number or auto.")
    return int(smp)


def _network(call):
    vnets = call.requests.vnet_list(call.actor)
    wanted = call.settings.network
    if wanted is not None:
        for vnet in vnets:
            if vnet.name == wanted or str(vnet.oid) == wanted:
                return vnet
        raise EHError(409, "busy", f"The virtual network {wanted!r} (NETWORK of "
                                   f"elastichosts.conf) is not available to this user.")
    if not vnets:
        raise EHError(409, "busy", "No virtual network is available to this user for nic:0.")
    return vnets[0]


def build_template(call, body):
    """The VM template (a :class:`~nebtwist.template.Template`) of a
    ``servers/create`` body (dict of str).

    :raises EHError: 400 for a missing or malformed key, 404 for an unknown drive.
    """
    name = str(body.get("name", "")).strip()
    if not name or "\n" in name:
        raise usage("A server needs a name (one line).")
    cores = call.settings.cpu_cores(_number(body, "cpu"))
    template = Template()
    template.set("NAME", name)
    template.set("CPU", f"{cores:g}")
    template.set("MEMORY", str(_number(body, "mem")))
    template.set("VCPU", str(_smp(call, body, cores)))
    flag = str(body.get("persistent", "true" if call.settings.persistent else "false"))
    if flag.strip().lower() not in ("true", "false"):
        raise usage(f"Bad persistent {flag!r}: true or false.")
    boot = str(body.get("boot", "")).split()
    disks = []
    for key in sorted(body):
        if DEVICE.match(key):
            image = drives.resolve(call, str(body[key]).strip())
            disks.append((key not in boot, key, {"IMAGE_ID": str(image.oid),
                                                 "TARGET": device_target(key)}))
        elif key.startswith("nic:") and not key.startswith("nic:0:"):
            raise usage(f"{key}: only nic:0 (a NIC on the public network) is offered.")
    for device in boot:
        if not DEVICE.match(device) or device not in body:
            raise usage(f"Bad boot {device!r}: a device key given with a drive.")
    for _, _, disk in sorted(disks, key=lambda d: (d[0], d[1])):
        template.add("DISK", disk)
    if "nic:0:dhcp" in body or "nic:0:model" in body:
        nic = {"NETWORK_ID": str(_network(call).oid)}
        dhcp = str(body.get("nic:0:dhcp", "auto")).strip()
        if dhcp and dhcp != "auto":
            nic["IP"] = dhcp
        if body.get("nic:0:model"):
            nic["MODEL"] = str(body["nic:0:model"]).strip()
        template.add("NIC", nic)
    if body.get("vnc:password") or body.get("vnc") or body.get("vnc:ip"):
        graphics = {"TYPE": "vnc", "LISTEN": "0.0.0.0"}
        if body.get("vnc:password"):
            graphics["PASSWD"] = str(body["vnc:password"])
        template.add("GRAPHICS", graphics)
    kept = {k: str(v) for k, v in body.items()
            if k not in _RUNTIME and k not in _MAPPED}
    template.add("ELASTICHOSTS", {"PERSISTENT": flag.strip().lower(),
                                  "KEYS": urllib.parse.urlencode(sorted(kept.items()))})
    return template


async def do_list(call):
    """``servers/list``: the UUIDs of the user's servers (VMs not DONE)."""
    return 200, [S.make_uuid("server", vm.oid) for vm in call.requests.vm_list(call.actor)]


async def do_info_all(call):
    """``servers/info``: every server of the user."""
    return 200, [info(call, vm) for vm in call.requests.vm_list(call.actor)]


async def do_info(call, uuid):
    """``servers/<uuid>/info``."""
    return 200, info(call, resolve(call, uuid))


async def do_create(call, stopped=None):
    """``servers/create`` (started) and ``servers/create/stopped`` (HOLD)."""
    if stopped not in (None, "stopped"):
        raise missing(f"Unknown command servers/create/{stopped}.")
    template = build_template(call, call.body_object())
    vid = await call.requests.vm_allocate(call.actor, template.to_text())
    if stopped:
        # In the same turn of the reactor as the allocation: no scheduler
        # pass can deploy it in between (as one.template.instantiate's hold).
        try:
            await call.requests.vm_action(call.actor, "hold", vid)
        except BaseException:  # no server left running that was asked stopped
            await call.requests.vm_action(call.actor, "finalize", vid)
            raise
    return 200, info(call, call.requests.vm_get(call.actor, vid))


async def _wait(call, vid, settled):
    """Look at VM ``vid`` until ``settled(vm)`` or STOP_TIMEOUT seconds."""
    deadline = call.reactor.seconds() + call.settings.stop_timeout
    while True:
        vm = call.requests.vm_get(call.actor, vid)
        if settled(vm) or call.reactor.seconds() >= deadline:
            return vm
        await task.deferLater(call.reactor, POLL_INTERVAL, lambda: None)


def _running(vm):
    return vm.state == ACTIVE and vm.lcm_state == RUNNING


def _busy(vm, what):
    from nebtwist.core.objects import LCM_STATES, VM_STATES

    state = VM_STATES[vm.state] + (f"/{LCM_STATES[vm.lcm_state]}" if vm.state == ACTIVE else "")
    return EHError(409, "busy", f"Cannot {what} server {S.make_uuid('server', vm.oid)}: "
                                f"it is {status(vm)} ({state}).")


async def do_start(call, uuid):
    """``servers/<uuid>/start`` (see the module's actions)."""
    vm = resolve(call, uuid)
    action = {HOLD: "release", STOPPED: "resume", SUSPENDED: "resume",
              FAILED: "resubmit"}.get(vm.state)
    if vm.state == ACTIVE and vm.lcm_state == UNKNOWN:
        action = "restart"
    if action is None and status(vm) != "active":
        raise _busy(vm, "start")
    if action is not None:
        await call.requests.vm_action(call.actor, action, vm.oid)
    return 200, info(call, call.requests.vm_get(call.actor, vm.oid))


async def do_stop(call, uuid):
    """``servers/<uuid>/stop``: hard power-off (see the module's actions)."""
    vm = resolve(call, uuid)
    if persistent(call, vm):
        if vm.state in (HOLD, STOPPED, INIT):
            return 204, None
        if vm.state == PENDING:
            await call.requests.vm_action(call.actor, "hold", vm.oid)
            return 204, None
        if not _running(vm):
            raise _busy(vm, "stop")
        await call.requests.vm_action(call.actor, "stop", vm.oid)
        await _wait(call, vm.oid, lambda v: v.state != ACTIVE)
        return 204, None
    await call.requests.vm_action(call.actor, "cancel" if _running(vm) else "finalize", vm.oid)
    await _wait(call, vm.oid, lambda v: v.state in (DONE, FAILED))
    return 204, None


async def do_shutdown(call, uuid):
    """``servers/<uuid>/shutdown``: ACPI power-down (3.4 ``shutdown``)."""
    vm = resolve(call, uuid)
    if not _running(vm):
        raise _busy(vm, "shut down")
    await call.requests.vm_action(call.actor, "shutdown", vm.oid)
    return 204, None


async def do_reset(call, uuid):
    """``servers/<uuid>/reset``: 3.4 ``reboot`` of a RUNNING VM."""
    vm = resolve(call, uuid)
    if not _running(vm):
        raise _busy(vm, "reset")
    await call.requests.vm_action(call.actor, "reboot", vm.oid)
    return 204, None


async def do_destroy(call, uuid):
    """``servers/<uuid>/destroy``: cancel (RUNNING) or finalize; 204 once DONE."""
    vm = resolve(call, uuid)
    await call.requests.vm_action(call.actor, "cancel" if _running(vm) else "finalize", vm.oid)
    vm = await _wait(call, vm.oid, lambda v: v.state in (DONE, FAILED))
    if vm.state == FAILED:  # the epilog failed: end it now
        await call.requests.vm_action(call.actor, "finalize", vm.oid)
    return 204, None


async def do_set(call, uuid):
    """``servers/<uuid>/set``: ``name``, ``cpu``, ``mem``, ``smp``."""
    vm = resolve(call, uuid)
    body = call.body_object()
    other = sorted(set(body) - {"name", "cpu", "mem", "smp"})
    if other:
        raise usage(f"Only name, cpu, mem and smp can be set, not {', '.join(other)}.")
    if not body:
        raise usage("Nothing to set.")
    resize = {}
    if "cpu" in body:
        resize["cpu"] = call.settings.cpu_cores(_number(body, "cpu"))
    if "mem" in body:
        resize["memory"] = _number(body, "mem")
    if "smp" in body:
        cores = resize.get("cpu", float(vm.template.get_str("CPU") or 1))
        resize["vcpu"] = _smp(call, body, cores)
    if resize:
        await call.requests.vm_resize(call.actor, vm.oid, **resize)
    if "name" in body:
        name = str(body["name"]).strip()
        if not name:
            raise usage("A server needs a name.")
        await call.requests.vm_rename(call.actor, vm.oid, name)
    return 200, info(call, call.requests.vm_get(call.actor, vm.oid))


#: (methods, path pattern, handler) of the server commands (``*``: one segment).
ROUTES = [
    ("GET POST", ("servers", "list"), do_list),
    ("GET POST", ("servers", "info"), do_info_all),
    ("POST", ("servers", "create"), do_create),
    ("POST", ("servers", "create", "*"), do_create),
    ("GET POST", ("servers", "*", "info"), do_info),
    ("POST", ("servers", "*", "start"), do_start),
    ("POST", ("servers", "*", "stop"), do_stop),
    ("POST", ("servers", "*", "shutdown"), do_shutdown),
    ("POST", ("servers", "*", "reset"), do_reset),
    ("POST", ("servers", "*", "destroy"), do_destroy),
    ("POST", ("servers", "*", "set"), do_set),
]
