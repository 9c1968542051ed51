"""The HookManager: ``VM_HOOK`` and ``HOST_HOOK`` from oned.conf, run by HM_MAD.

Follows OpenNebula 3.4 (reference section 8): ``src/vm/VirtualMachinePool.cc``
and ``src/host/HostPool.cc`` read the hooks, ``src/vm/VirtualMachineHook.cc``
and ``src/host/HostHook.cc`` decide when they fire and build their
arguments, ``src/hm/HookManagerDriver.cc`` sends them to the driver::

    VM_HOOK   = [ name = "dump", on = "RUNNING", command = "/bin/dump.sh",
                  arguments = "$VMID $TEMPLATE", remote = "no" ]
    HOST_HOOK = [ name = "error", on = "ERROR", command = "ft/host_error",
                  arguments = "$HID -r n", remote = "no" ]

``ON`` (case-insensitive) for VM hooks: ``CREATE`` (at allocation),
``PROLOG`` (ACTIVE/PROLOG), ``RUNNING`` (ACTIVE/RUNNING), ``SHUTDOWN``
(entering ACTIVE/EPILOG), ``STOP`` (STOPPED), ``DONE``, ``FAILED`` (also
spelt ``FAILURE``, as the OSDC 2012 slides do). A state hook fires when the
VM's (STATE, LCM_STATE) pair changes into its target pair, after the change is
committed. For host hooks: ``CREATE`` (at allocation), ``ERROR`` (monitoring
failed), ``DISABLE`` (``onehost disable``). An unknown ``ON``, a missing
``COMMAND`` or a ``NAME`` that is not one word is logged as an error in
oned.log and that hook is skipped.

Choices where 3.4 is rough, documented here:

* ``ARGUMENTS``: every ``$VMID`` (VM hooks) or ``$HID`` (host hooks) is
  replaced by the object's id and every ``$TEMPLATE`` by the base64 of the
  object's XML (3.4 replaced only the first occurrence of each).
* A host fails again at every monitoring round while it is down (3.4 went
  ERROR -> MONITORING -> ERROR each time and ran ERROR hooks each time); here
  an ERROR hook fires once per failure: when a host enters ERROR and its last
  monitoring result (or its state when the daemon started) was not ERROR.
  The states of a host being monitored (MONITORING, and 4.x's
  MONITORING_ERROR and MONITORING_INIT) fire nothing, and a daemon stopping
  fires no host hook (:class:`~nebtwist.core.im.InformationManager` drops the
  results of a monitoring cut short by the shutdown).
* ``COMMAND`` may hold several words (``command = "onevm resubmit"``, as in
  the slides): the first is the program, the others come before
  ``ARGUMENTS``. A relative program of a local hook is looked up in the
  shipped ``hooks/`` folder (3.4: ``<remotes>/hooks``), and when not found
  there is left to the hook's ``PATH`` (so ``onevm`` works); a relative
  program of a remote hook becomes ``<SCRIPTS_REMOTE_DIR>/hooks/<program>``
  as in 3.4.
* ``remote = "yes"`` runs the hook over ssh on the VM's host (the host of its
  last history record; skipped for a VM without one, as 3.4 does) or, for a
  host hook, on that host.
* A hook that fails, times out or cannot be sent is logged (oned.log
  ``[HKM]``, and the VM's log for VM hooks) and changes nothing else (3.4 also
  wrote the error into the VM's template).

Hooks run in the environment the daemon gives its HM driver
(:func:`hook_environment`): ``ONE_XMLRPC`` naming the daemon's own API,
``ONE_AUTH`` oneadmin's credentials file and a ``PATH`` starting with the
daemon's Python and console scripts, so the shipped ``ft/host_error`` and
``onevm`` reach this daemon.
"""

import base64
import os
import sys
from dataclasses import dataclass

from lxml import etree
from twisted.internet import defer

from nebtwist import paths
from nebtwist.core.nebula import oneadmin_credentials
from nebtwist.core.objects import (ACTIVE, DONE, EPILOG, FAILED, HOST_DISABLED, HOST_ERROR,
                                   HOST_MONITORING_FROM, LCM_INIT, PROLOG, RUNNING, STOPPED)
from nebtwist.errors import DriverError
from nebtwist.log import OneLogger

log = OneLogger("HKM")

__all__ = ["Hook", "HookConfigError", "HookManager", "VM_EVENTS", "HOST_EVENTS",
           "build_hook_manager", "hook_environment", "hooks_from_config", "parse_hook",
           "resolve_command"]

#: VM hook ON -> the (STATE, LCM_STATE) pair it fires on entering (None: at allocation).
VM_EVENTS = {
    "CREATE": None,
    "PROLOG": (ACTIVE, PROLOG),
    "RUNNING": (ACTIVE, RUNNING),
    "SHUTDOWN": (ACTIVE, EPILOG),
    "STOP": (STOPPED, LCM_INIT),
    "DONE": (DONE, LCM_INIT),
    "FAILED": (FAILED, LCM_INIT),
}

#: Other spellings of VM hook ONs.
VM_EVENT_ALIASES = {"FAILURE": "FAILED"}

#: Host hook ON -> the host state it fires on entering (None: at allocation).
HOST_EVENTS = {"CREATE": None, "ERROR": HOST_ERROR, "DISABLE": HOST_DISABLED}


class HookConfigError(ValueError):
    """A VM_HOOK or HOST_HOOK vector that cannot be used (the message says why)."""


@dataclass(frozen=True)
class Hook:
    """One configured hook.

    :ivar kind: ``"VM"`` or ``"HOST"``.
    :ivar name: the hook's NAME (one word; sent to the driver).
    :ivar on: the canonical ON (a key of :data:`VM_EVENTS` or :data:`HOST_EVENTS`).
    :ivar command: the program to run (resolved, one word).
    :ivar arguments: its arguments before substitution (the words of COMMAND
        after the first, then ARGUMENTS).
    :ivar remote: True to run it over ssh on the object's host.
    """

    kind: str
    name: str
    on: str
    command: str
    arguments: str = ""
    remote: bool = False

    def expand(self, obj):
        """The arguments for ``obj`` (a VirtualMachine or Host): every ``$VMID``
        (VM hooks) or ``$HID`` (host hooks) replaced by ``obj.oid`` and every
        ``$TEMPLATE`` by the base64 of the object's XML (str)."""
        args = self.arguments
        variable = "$VMID" if self.kind == "VM" else "$HID"
        args = args.replace(variable, str(obj.oid))
        if "$TEMPLATE" in args:
            xml = etree.tostring(obj.to_xml(), encoding="unicode").encode("utf-8")
            args = args.replace("$TEMPLATE", base64.b64encode(xml).decode("ascii"))
        return args


def resolve_command(program, remote, scripts_remote_dir):
    """Where a hook's program is.

    :param program: the first word of COMMAND.
    :param remote: True for a hook run on a host over ssh.
    :param scripts_remote_dir: oned.conf SCRIPTS_REMOTE_DIR.
    :return: ``program`` if absolute; for a remote hook
        ``<scripts_remote_dir>/hooks/<program>``; for a local one the shipped
        ``hooks/<program>`` if that exists, else ``program`` unchanged (found
        on PATH when the hook runs).
    """
    if os.path.isabs(program):
        return program
    if remote:
        return f"{scripts_remote_dir.rstrip('/')}/hooks/{program}"
    candidate = paths.shipped("hooks", program)
    return candidate if os.path.isfile(candidate) else program


def _truthy(value):
    return str(value or "").strip().upper() in ("YES", "Y", "TRUE", "1")


def parse_hook(kind, vector, index=0, scripts_remote_dir="/var/tmp/one"):
    """Make a :class:`Hook` from one oned.conf vector.

    :param kind: ``"VM"`` (VM_HOOK) or ``"HOST"`` (HOST_HOOK).
    :param vector: dict with NAME, ON, COMMAND, ARGUMENTS, REMOTE (keys
        matched case-insensitively; values str).
    :param index: the hook's position, for the default name ``hook<index>``.
    :raises HookConfigError: unknown kind or ON, no COMMAND, a NAME that is
        not one word (or ends with ``:``), a program whose path has blanks.
    """
    conf = {str(k).upper(): str(v) for k, v in vector.items()}
    kind = kind.upper()
    if kind not in ("VM", "HOST"):
        raise HookConfigError(f"unknown hook kind {kind!r}")
    key = f"{kind}_HOOK"
    name = conf.get("NAME", "").strip() or f"hook{index}"
    if len(name.split()) != 1 or name.endswith(":"):
        raise HookConfigError(f"{key} NAME {name!r} must be one word (no blanks, no "
                              f"trailing ':')")
    on = conf.get("ON", "").strip().upper()
    events = VM_EVENTS if kind == "VM" else HOST_EVENTS
    if kind == "VM":
        on = VM_EVENT_ALIASES.get(on, on)
    if on not in events:
        raise HookConfigError(f"{key} {name}: unknown ON {conf.get('ON', '')!r} (expected "
                              f"one of {', '.join(events)})")
    words = conf.get("COMMAND", "").split()
    if not words:
        raise HookConfigError(f"{key} {name}: COMMAND is missing")
    remote = _truthy(conf.get("REMOTE"))
    program = resolve_command(words[0], remote, scripts_remote_dir)
    if len(program.split()) != 1:
        raise HookConfigError(f"{key} {name}: the path of {words[0]!r} ({program}) "
                              f"has blanks")
    arguments = " ".join(words[1:] + conf.get("ARGUMENTS", "").split())
    return Hook(kind, name, on, program, arguments, remote)


def hooks_from_config(config):
    """Every usable VM_HOOK, then every usable HOST_HOOK, of ``config`` (each
    kind in file order).

    A hook that cannot be used is logged as an error and skipped (3.4 warned
    about an unknown ON and went on).

    :param config: a :class:`nebtwist.core.config.Config`.
    :return: list of :class:`Hook`.
    """
    remote_dir = config.get("SCRIPTS_REMOTE_DIR") or "/var/tmp/one"
    hooks = []
    for kind in ("VM", "HOST"):
        for i, value in enumerate(config.template.get_all(f"{kind}_HOOK")):
            if not isinstance(value, dict):
                log.error("{kind}_HOOK must be a vector ([ name = ..., on = ... ]), "
                          "skipped: {value!r}", kind=kind, value=value)
                continue
            try:
                hooks.append(parse_hook(kind, value, i, remote_dir))
            except HookConfigError as e:
                log.error("Hook skipped: {m}", m=str(e))
    return hooks


def hook_environment(environ, var_dir, url):
    """The environment of the HM driver and so of every hook.

    :param environ: the daemon's environment (dict; not changed).
    :param var_dir: the daemon's var directory (oneadmin's generated
        credentials live in ``<var>/.one/one_auth`` when no other exists).
    :param url: the daemon's own XML-RPC endpoint, e.g.
        ``http://127.0.0.1:2633/RPC2``, or None (no XML-RPC front enabled).
    :return: a new dict: ``environ`` with ``ONE_XMLRPC = url``, ``ONE_AUTH``
        the oneadmin credentials file the daemon started with
        (:func:`~nebtwist.core.nebula.oneadmin_credentials`), and ``PATH``
        starting with the directory of the daemon's Python (where ``python3``
        and the ``one*`` console scripts are) unless it already holds it.
    """
    env = dict(environ)
    if url is not None:  # None: no XML-RPC front enabled (the hooks get none)
        env["ONE_XMLRPC"] = url
    env["ONE_AUTH"] = oneadmin_credentials(var_dir, environ)[2]
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    parts = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p]
    if bindir not in parts:
        parts.insert(0, bindir)
    env["PATH"] = os.pathsep.join(parts)
    return env


def _url_of(port):
    """``http://<host>:<port>/RPC2`` for a listening TCP port (wildcards -> 127.0.0.1);
    None when the XML-RPC front is not enabled (no port)."""
    if port is None:
        return None
    addr = port.getHost()
    host = getattr(addr, "host", "") or ""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{addr.port}/RPC2"


class HookManager:
    """Runs the configured hooks on VM and host events.

    :param nebula: the :class:`~nebtwist.core.nebula.Nebula` (config, clock,
        host pool, VM logs).
    :param driver: an :class:`~nebtwist.interfaces.IHookDriver`
        (:class:`~nebtwist.mad.HookMad`, or a fake in tests).
    :param hooks: list of :class:`Hook` (default: :func:`hooks_from_config`
        of ``nebula.config``).
    :param hold: True to keep the hooks fired until :meth:`release` is
        called (the daemon's HM driver starts after the API listens).

    Subscribe it with :meth:`attach`. Its callbacks never raise: a failing
    hook is only logged.
    """

    def __init__(self, nebula, driver, hooks=None, hold=False):
        self.nebula = nebula
        self.driver = driver
        self.hooks = hooks_from_config(nebula.config) if hooks is None else list(hooks)
        # Last settled state of each host (a host being monitored counts as in the
        # state it is monitored from: MONITORING_ERROR as ERROR, ...), for ERROR hooks.
        self._settled = {h.oid: HOST_MONITORING_FROM.get(h.state, h.state)
                         for h in nebula.hostpool}
        self._running = set()
        self._held = [] if hold else None
        for hook in self.hooks:
            log.info("Hook {name} on {kind} {on}: {command} {args}", name=hook.name,
                     kind=hook.kind, on=hook.on, command=hook.command, args=hook.arguments)

    def attach(self, lcm=None, im=None, dm=None, requests=None):
        """Subscribe to the managers' events.

        :param lcm: its ``hooks`` get :meth:`vm_state_changed`.
        :param im: its ``hooks`` get :meth:`host_state_changed`.
        :param dm: its ``hooks`` get :meth:`vm_created`.
        :param requests: its ``host_hooks`` get :meth:`host_state_changed`
            (host creation and ``onehost disable``).
        """
        if lcm is not None:
            lcm.hooks.append(self.vm_state_changed)
        if im is not None:
            im.hooks.append(self.host_state_changed)
        if dm is not None:
            dm.hooks.append(self.vm_created)
        if requests is not None:
            requests.host_hooks.append(self.host_state_changed)

    # -- events ------------------------------------------------------------------------

    def vm_created(self, vm):
        """A VM was allocated: run the VM CREATE hooks."""
        self._vm_event(vm, lambda hook: hook.on == "CREATE")

    def vm_state_changed(self, vm, old, new):
        """A VM's (STATE, LCM_STATE) went from ``old`` to ``new`` (tuples of int)."""
        old, new = tuple(old), tuple(new)
        if old == new:
            return
        self._vm_event(vm, lambda hook: VM_EVENTS[hook.on] == new)

    def host_state_changed(self, host, old, new):
        """A host's state went from ``old`` (None: just created) to ``new``."""
        try:
            if old is None:
                self._settled[host.oid] = new
                matching = [h for h in self._host_hooks() if h.on == "CREATE"]
            else:
                if new in HOST_MONITORING_FROM:
                    return  # MONITORING, MONITORING_ERROR, MONITORING_INIT
                previous = self._settled.get(host.oid, old)
                self._settled[host.oid] = new
                if previous == new:
                    return
                matching = [h for h in self._host_hooks() if HOST_EVENTS[h.on] == new]
            for hook in matching:
                self._start(hook, host, host.name if hook.remote else None, None)
        except Exception:
            log.failure("Host {hid}: hooks not run", hid=getattr(host, "oid", "?"))

    def _host_hooks(self):
        return [h for h in self.hooks if h.kind == "HOST"]

    def _vm_event(self, vm, wanted):
        try:
            for hook in self.hooks:
                if hook.kind != "VM" or not wanted(hook):
                    continue
                host = None
                if hook.remote:
                    last = vm.last_history
                    if last is None:
                        log.debug("VM {vid}: remote hook {name} skipped, the VM has no host",
                                  vid=vm.oid, name=hook.name)
                        continue
                    host = last.hostname
                self._start(hook, vm, host, vm)
        except Exception:
            log.failure("VM {vid}: hooks not run", vid=getattr(vm, "oid", "?"))

    # -- running -----------------------------------------------------------------------

    def _start(self, hook, obj, host, vm):
        args = hook.expand(obj)
        if self._held is not None:
            self._held.append((hook, obj.oid, host, args, vm))
        else:
            self._launch(hook, obj.oid, host, args, vm)

    def _launch(self, *request):
        d = defer.ensureDeferred(self._run(*request))
        self._running.add(d)
        d.addBoth(lambda _: self._running.discard(d))

    def release(self):
        """Run the hooks held so far (see ``hold``), and from now on at once."""
        held, self._held = self._held or [], None
        for request in held:
            self._launch(*request)

    async def _run(self, hook, oid, host, args, vm):
        what = f"{'VM' if vm is not None else 'Host'} {oid}"
        where = host or "LOCAL"
        log.debug("{what}: executing hook {name} on {where}", what=what, name=hook.name,
                  where=where)
        try:
            output = await self.driver.execute(oid, hook.name, host, hook.command, args)
        except DriverError as e:
            message = e.message or e.__class__.__name__
            text = f"Error executing Hook: {hook.name}: {message}"
            log.error("{what}: {text}", what=what, text=text)
            if vm is not None:
                self._vm_log(vm, "E", text)
            return False
        except Exception:
            log.failure("{what}: error executing hook {name}", what=what, name=hook.name)
            return False
        text = f"Success executing Hook: {hook.name}: {output}".rstrip()
        log.info("{what}: {text}", what=what, text=text)
        if vm is not None:
            self._vm_log(vm, "I", text)
        return True

    def _vm_log(self, vm, level, text):
        try:
            self.nebula.vm_log(vm, "HKM", level, text, to_file=True)
        except Exception:
            pass

    def idle(self):
        """A Deferred firing when every hook started so far has finished."""
        return defer.DeferredList(list(self._running)).addCallback(lambda _: None)

    # -- the driver ------------------------------------------------------------------

    async def start_driver(self, parent, port, timeout):
        """Start the HM driver once the API listens on ``port``.

        The driver (and every hook) gets :func:`hook_environment` for the
        daemon's own endpoint, so it must start after the API is up.

        :param parent: the ``MultiService`` that owns (and stops) the driver.
        :param port: the API's listening TCP port (``IListeningPort``).
        :param timeout: seconds to wait for ``INIT SUCCESS``.
        Hooks fired before (held) run once it has started.

        :raises HookConfigError: the driver did not start in time.
        """
        drv = self.driver
        drv.env = hook_environment(drv.env, self.nebula.var_dir, _url_of(port))
        drv.setServiceParent(parent)
        d = drv.started()
        d.addTimeout(timeout, self.nebula.clock)
        try:
            await d
        except defer.TimeoutError:
            raise HookConfigError(f"driver {drv.name} ({drv.executable}) did not start "
                                  f"within {timeout:g} s; see the log above") from None
        self.release()


def build_hook_manager(nebula, reactor, env):
    """The HookManager for ``nebula.config``'s HM_MAD, or None without one.

    :param nebula: the core (its config names HM_MAD, the hooks, and
        DRIVER_TIMEOUT, the default TIMEOUT of the driver's requests).
    :param reactor: ``IReactorProcess`` and ``IReactorTime``.
    :param env: the drivers' environment (dict); :meth:`HookManager.start_driver`
        adds the hook variables to it.
    :return: a :class:`HookManager` whose driver is a
        :class:`~nebtwist.mad.HookMad`, not started yet; None (with a warning
        if hooks are configured) when oned.conf has no HM_MAD.
    :raises HookConfigError: a bad HM_MAD vector or a missing executable.
    """
    from nebtwist.mad import build_driver

    config = nebula.config
    vectors = config.vectors("HM_MAD")
    if not vectors:
        if config.template.get_all("VM_HOOK") or config.template.get_all("HOST_HOOK"):
            log.warn("Hooks are configured but there is no HM_MAD: they will not run")
        return None
    vector = dict(vectors[0])
    vector.setdefault("TIMEOUT", config.get("DRIVER_TIMEOUT"))
    vector.setdefault("NAME", "hm_" + os.path.basename(str(vector.get("EXECUTABLE", ""))))
    try:
        drv = build_driver("hm", reactor, vector, env)
    except ValueError as e:
        raise HookConfigError(str(e)) from None
    if not os.access(drv.executable, os.X_OK):
        raise HookConfigError(f"executable {drv.executable} not found or not executable")
    return HookManager(nebula, drv, hold=True)
