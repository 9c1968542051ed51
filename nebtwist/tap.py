"""``twistd nebula``: options, ``makeService`` and ``build_service``.

``makeService(options)`` is a thin shell: it loads oned.conf, imports the
reactor and calls :func:`build_service`, which builds the whole front-end as
one :class:`NebulaService` in start order (logging, database and pools,
drivers, managers, fronts) and is testable with any reactor.

Embedded defaults: with no configuration at all, state lives in SQLite under
``$ONE_LOCATION/var`` (``./var`` when ONE_LOCATION is unset), the shipped
``conf/oned.conf`` loads the dummy drivers, and oneadmin is created from
``$ONE_AUTH`` (or ``~/.one/one_auth``; else a generated password written to
``<var>/.one/one_auth``).
"""

import atexit
import os
import sys

from twisted.application import service
from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.python import usage

from nebtwist import __version__
from nebtwist.api.limits import HTTPLimits, message_size
from nebtwist.api.plugin import FrontContext, FrontStartupError, enabled_vectors, find_fronts
from nebtwist.core import config as configmod
from nebtwist.core.db import DatabaseError
from nebtwist.core.dm import DispatchManager
from nebtwist.core.hm import HookConfigError, build_hook_manager
from nebtwist.core.im import InformationManager
from nebtwist.core.imagem import install as install_images
from nebtwist.core.lcm import LifeCycleManager
from nebtwist.core.nebula import Nebula, oneadmin_credentials
from nebtwist.core.recovery import Reconciler
from nebtwist.core.requests import Requests
from nebtwist.core.scheduler import Scheduler
from nebtwist.core.tm import TransferManager
from nebtwist.core.vmm import VirtualMachineManager
from nebtwist.core.vnm import NetworkManager
from nebtwist.log import OnedLogObserver, OneLogger
from nebtwist.mad import build_driver, not_found_message

log = OneLogger("ONE")


class Options(usage.Options):
    """``twistd nebula`` options."""

    synopsis = "[--config FILE] [--set KEY=VALUE ...]"
    optParameters = [
        ["config", "c", None, "oned.conf to read (default: $ONE_LOCATION/etc/oned.conf if "
                              "present, else the shipped conf/oned.conf)"],
    ]

    def __init__(self):
        super().__init__()
        self["set"] = []

    def opt_set(self, value):
        """Override a KEY of oned.conf (repeatable; VALUE in template syntax)."""
        self["set"].append(value)

    opt_s = opt_set

    def postOptions(self):
        self["one_location"] = os.environ.get("ONE_LOCATION") or os.getcwd()
        if self["config"] is None:
            self["config"] = configmod.default_path(self["one_location"])


def var_dir_for(one_location):
    """``$ONE_LOCATION/var``."""
    return os.path.join(os.path.abspath(one_location), "var")


#: Seconds start-up waits for each driver's ``INIT SUCCESS``.
DRIVER_START_TIMEOUT = 15.0


class StartupError(Exception):
    """nebtwist cannot start (a driver missing or failing its INIT, ...)."""


async def _within(reactor, d, seconds):
    """Await ``d``, cancelling it after ``seconds`` (raises defer.TimeoutError)."""
    d.addTimeout(seconds, reactor)
    return await d


class NebulaService(service.MultiService):
    """The whole front-end: starts asynchronously, in order.

    :attr:`ready` fires (with the service) once the API listens; its
    :attr:`ports` are the listening ports (useful with ``PORT = 0``).
    A start-up failure is logged, and ``on_failure`` (default: stop the
    reactor) is called.
    """

    def __init__(self, config, reactor, var_dir, environ=None, on_failure=None, overrides=()):
        super().__init__()
        self.overrides = list(overrides)  # --set values (econe.KEY=VALUE for econe.conf)
        self.ec2_ports = []  # the EC2 Query API's listening ports (nebtwist.api.ec2)
        self.config = config
        self.reactor = reactor
        self.var_dir = var_dir
        self.environ = dict(os.environ if environ is None else environ)
        self.on_failure = on_failure
        self.ready = defer.Deferred()
        self.ports = []
        #: The API fronts' services by NAME (nebtwist.api.plugin), in start order.
        self.fronts = {}
        self.requests = None  # the core's requests layer (nebtwist.core.requests)
        self.nebula = None
        self.hm = None  # the HookManager (nebtwist.core.hm), when HM_MAD is configured
        self.recovery = None  # the start-up Reconciler (nebtwist.core.recovery)
        self.drivers = {"im": {}, "vmm": {}, "tm": {}, "vnm": {}}
        self._log_file = None
        self._observer = None
        self._loops = []
        self._starting = None
        self._stopping = False

    def startService(self):
        service.Service.startService(self)
        self._starting = defer.ensureDeferred(self._start())

        def failed(f):
            if f.check(defer.CancelledError) and self._stopping:
                return None  # stopped while starting: not a failure
            if f.check(StartupError, DatabaseError):
                log.error("nebtwist could not start: {m}", m=f.getErrorMessage())
            else:
                log.failure("nebtwist could not start", f)
            if not self.ready.called:
                self.ready.errback(f)
            if self.on_failure is not None:
                self.on_failure(f)
            elif self.reactor.running:
                self.reactor.stop()

        self._starting.addErrback(failed)

    async def _start(self):
        os.makedirs(self.var_dir, exist_ok=True)
        self._log_file = open(os.path.join(self.var_dir, "oned.log"), "a", encoding="utf-8")
        self._observer = OnedLogObserver(self._log_file, self.config.get("DEBUG_LEVEL"))
        globalLogPublisher.addObserver(self._observer)
        log.info("Init OpenNebula Log system")
        log.info("Log Level: {n} [0=ERROR,1=WARNING,2=INFO,3=DEBUG]",
                 n=self.config.get("DEBUG_LEVEL"))
        log.info("nebtwist {v} starting, configuration {p}", v=__version__, p=self.config.path)
        for where, key in self.config.unknown_keys():  # a typo is not silently ignored
            log.warn("{w}: unknown key {k} (ignored)", w=where, k=key)

        nebula = self.nebula = Nebula(self.config, self.reactor, self.var_dir)
        user, password, path = oneadmin_credentials(self.var_dir, self.environ)
        await nebula.open((user, password))
        if nebula.userpool.get(0).name == user:
            log.info("{user}'s credentials: {path}", user=user, path=path)
        log.info("Database {b} opened; {n} VMs, {h} hosts", b=nebula.db.backend,
                 n=len(nebula.vmpool), h=len(nebula.hostpool))

        env = dict(self.environ)
        env["ONE_LOCATION"] = os.path.dirname(self.var_dir)
        env["SCRIPTS_REMOTE_DIR"] = self.config.get("SCRIPTS_REMOTE_DIR")  # drivers/im/ssh
        timeout = self.config.get("DRIVER_TIMEOUT")
        for kind, key in (("im", "IM_MAD"), ("vmm", "VM_MAD"), ("tm", "TM_MAD"),
                          ("vnm", "VN_MAD")):
            for vector in self.config.vectors(key):
                vector = dict(vector)
                vector.setdefault("TIMEOUT", timeout)
                try:
                    drv = build_driver(kind, self.reactor, vector, env)
                except ValueError as e:
                    raise StartupError(f"{key}: {e}") from None
                if not os.access(drv.executable, os.X_OK):
                    raise StartupError(f"{key} {drv.name}: " + not_found_message(
                        str(vector["EXECUTABLE"]).strip(), kind))
                if kind in ("vmm", "tm", "vnm"):
                    drv.on_log = _vm_log_writer(nebula, {"vmm": "VMM", "tm": "TM",
                                                         "vnm": "VNM"}[kind])
                drv.setServiceParent(self)
                self.drivers[kind][drv.name] = drv
        for kind in self.drivers.values():
            for drv in kind.values():
                try:
                    await defer.Deferred.fromCoroutine(_within(
                        self.reactor, drv.started(), DRIVER_START_TIMEOUT))
                except defer.TimeoutError:
                    raise StartupError(
                        f"driver {drv.name} ({drv.executable}) did not start within "
                        f"{DRIVER_START_TIMEOUT:g} s; see the log above") from None

        vmm = VirtualMachineManager(nebula, self.drivers["vmm"])
        default_tm = self.config.get("DEFAULT_TM_MAD") or None
        if default_tm is not None and default_tm not in self.drivers["tm"]:
            raise StartupError(f"DEFAULT_TM_MAD {default_tm!r} is not a TM_MAD (have: "
                               f"{', '.join(self.drivers['tm']) or 'none'})")
        tm = TransferManager(nebula, self.drivers["tm"], default_tm)
        vnm = NetworkManager(nebula, self.drivers["vnm"])
        lcm = LifeCycleManager(nebula, vmm, tm, vnm)
        vmm.lcm = lcm
        dm = DispatchManager(nebula, lcm)
        im = InformationManager(nebula, self.drivers["im"])
        sched = Scheduler(nebula, dm)
        self.managers = {"vmm": vmm, "tm": tm, "lcm": lcm, "dm": dm, "im": im,
                         "scheduler": sched, "vnm": vnm}
        requests = self.requests = Requests(nebula, dm, im)
        requests.vn_mads = vnm.names()  # one.host.allocate checks VN_MAD
        await install_images(self, nebula, lcm, requests, self.reactor)  # core/imagem.py
        try:  # hooks (HM_MAD): subscribed now, driver started once the API listens
            self.hm = build_hook_manager(nebula, self.reactor, env)
        except HookConfigError as e:
            raise StartupError(f"HM_MAD: {e}") from None
        if self.hm is not None:
            self.hm.attach(lcm=lcm, im=im, dm=dm, requests=requests)
        # Recovery (core/recovery.py): the VMs a crash left in driver-driven states
        # are noted before the loops or the API can move any VM, and reconciled once
        # the fronts listen (not awaited: the API serves meanwhile, within the
        # "serving again in under 5 s" of issue 9 even with ~1,000 such VMs).
        self.recovery = Reconciler(nebula, lcm)
        self.recovery.snapshot()
        for loop in (im, vmm, sched):
            loop.start()
            self._loops.append(loop)

        try:  # MESSAGE_SIZE, MAX_CONN, timeouts (nebtwist.api.limits)
            max_body = message_size(self.config)
            limits = HTTPLimits.from_config(self.config)
        except ValueError as e:
            raise StartupError(str(e)) from None
        # The API fronts (nebtwist.api.plugin): oned.conf API_FRONT vectors, each a
        # plug-in found with twisted.plugin.getPlugins, built into a child service.
        try:
            vectors = enabled_vectors(self.config)
            plugins = find_fronts()
        except FrontStartupError as e:
            raise StartupError(str(e)) from None
        for vector in vectors:
            front = plugins.get(vector["NAME"])
            if front is None:
                raise StartupError(f"API_FRONT {vector['NAME']!r}: no such front plug-in "
                                   f"(installed: {', '.join(sorted(plugins)) or 'none'})")
            ctx = FrontContext(reactor=self.reactor, requests=requests, config=self.config,
                               vector=vector, one_location=os.path.dirname(self.var_dir),
                               var_dir=self.var_dir, limits=limits, max_body=max_body,
                               overrides=self.overrides)
            svc = front.build(ctx)
            self.fronts[front.name] = svc
            svc.setServiceParent(self)
            try:
                await svc.listening
            except FrontStartupError as e:
                raise StartupError(str(e)) from None
        self.ports = list(getattr(self.fronts.get("xmlrpc"), "ports", []))
        self.ec2_ports = list(getattr(self.fronts.get("ec2"), "ports", []))
        if self.hm is not None:
            try:  # hooks reach the daemon's XML-RPC endpoint
                await self.hm.start_driver(self, self.ports[0] if self.ports else None,
                                           DRIVER_START_TIMEOUT)
            except HookConfigError as e:
                raise StartupError(f"HM_MAD: {e}") from None
        self.recovery.start()  # self.recovery.done fires with its summary
        self.ready.callback(self)

    async def _stop(self):
        self._stopping = True
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        if self.recovery is not None:
            self.recovery.stop()
        # A loop's stop may return a Deferred: the InformationManager's fires once
        # the hosts being monitored are stored back in their settled state.
        settling = [d for d in (loop.stop() for loop in self._loops)
                    if isinstance(d, defer.Deferred)]
        for front in reversed(list(self.fronts.values())):  # no new calls from here on
            await front.stopService()
        await defer.maybeDeferred(service.MultiService.stopService, self)
        if settling:
            await defer.DeferredList(settling, consumeErrors=True)
        if self.nebula is not None:
            await self.nebula.close()
        log.info("nebtwist stopped")
        if self._observer is not None:
            globalLogPublisher.removeObserver(self._observer)
            self._log_file.close()

    def stopService(self):
        return defer.ensureDeferred(self._stop())


def _vm_log_writer(nebula, module):
    """A MAD ``on_log`` callback that copies a VMM or TM driver's ``LOG`` lines about
    a VM into that VM's ``vm.log`` (OpenNebula 3.4 did; the MAD adapter has already
    written them to oned.log)."""
    def on_log(level, oid, message):
        vm = nebula.vmpool.objects.get(oid) if oid is not None else None
        if vm is not None:
            nebula.vm_log(vm, module, level, message, to_oned=False)
    return on_log


def build_service(config, reactor, var_dir, environ=None, on_failure=None, overrides=()):
    """The :class:`NebulaService` for ``config`` on ``reactor``; ``overrides``
    are the ``--set`` values (their ``econe.KEY=VALUE`` items apply to econe.conf)."""
    return NebulaService(config, reactor, var_dir, environ, on_failure, overrides)


def makeService(options):
    """twistd's entry point: load oned.conf and build the service."""
    try:
        config = configmod.load(options["config"], options["set"])
        config.get_int("PORT")
    except configmod.ConfigError as e:
        sys.stderr.write(f"nebula: {e}\n")
        raise SystemExit(1) from None
    from twisted.internet import reactor

    def failed(_failure):
        # twistd offers no exit status: end the process with 1 once twistd has
        # cleaned up (pid file, logs), so scripts and supervisors see the failure.
        atexit.register(_exit_status_1)
        if reactor.running:
            reactor.stop()
        else:  # failed before the reactor ran (e.g. an unknown DB backend)
            reactor.callWhenRunning(reactor.stop)

    return build_service(config, reactor, var_dir_for(options["one_location"]),
                         on_failure=failed, overrides=options["set"])


def _exit_status_1():
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
