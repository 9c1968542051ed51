"""MAD adapters: driver subprocesses that speak OpenNebula's line protocol.

A MAD ("Middleware Access Driver") is an executable that the core spawns and
talks to over its stdin/stdout, one message per ``\\n``-terminated line
(OpenNebula 3.4 ``src/mad/Mad.cc``, ``src/mad/ruby/OpenNebulaDriver.rb``)::

    core   -> driver   INIT
    driver -> core     INIT SUCCESS            (or INIT FAILURE <message>)
    core   -> driver   <ACTION> <id> <arg> ...
    driver -> core     LOG <I|E|D|W> <id|-> <message>       (any number)
    driver -> core     <ACTION> SUCCESS <id> <info>          (or FAILURE)
    core   -> driver   FINALIZE

:class:`MadProcess` supervises one such subprocess: handshake, request/reply
correlation by ``(ACTION, id)``, per-request timeouts, oned.log logging of
``LOG`` lines, and restart with exponential backoff when the driver dies. The
adapters :class:`InformationMad`, :class:`VirtualMachineMad` and
:class:`TransferMad` (and :class:`HookMad`, :class:`NetworkMad`) put the driver interfaces of
:mod:`nebtwist.interfaces` on top of it, and :func:`build_driver` makes one
from an oned.conf ``IM_MAD`` / ``VM_MAD`` / ``TM_MAD`` / ``HM_MAD`` / ``VN_MAD``
vector.

The reactor is always passed in (it must provide ``IReactorProcess`` and
``IReactorTime``); tests use :class:`nebtwist.testing.FakeProcessReactor`.
"""

import base64
import os
import shlex
from collections import deque

from lxml import etree
from twisted.application.service import Service
from twisted.internet import defer, error
from twisted.internet.protocol import ProcessProtocol
from zope.interface import implementer

from nebtwist import paths
from nebtwist.errors import DriverCrashed, DriverError, DriverTimeout
from nebtwist.interfaces import (IHookDriver, IInformationDriver, ITransferDriver,
                                 IVirtualMachineDriver, IVirtualNetworkDriver)
from nebtwist.log import OneLogger

__all__ = [
    "MadProcess",
    "InformationMad",
    "VirtualMachineMad",
    "TransferMad",
    "HookMad",
    "NetworkMad",
    "build_driver",
    "resolve_executable",
    "executable_candidates",
    "not_found_message",
    "format_vmm_message",
]

#: Seconds stopService waits for the driver to exit after FINALIZE before SIGKILL.
STOP_TIMEOUT = 5.0

#: Drivers are started through ``/bin/sh -c 'trap "" INT; exec "$0" "$@"' DRIVER
#: ARGS...``: the shell ignores SIGINT and execs the driver in its place (same
#: pid), and an ignored signal stays ignored across exec, for the driver and
#: the programs it runs. So the SIGINT a terminal's Ctrl-C sends to the whole
#: foreground process group reaches only the daemon, which stops the drivers
#: itself (FINALIZE, as on SIGTERM), instead of every driver dying at once
#: with a KeyboardInterrupt traceback and in-flight work cut mid-way. The
#: drivers stay in the daemon's process group, so ``kill -- -PGID`` and
#: supervisors that signal the group still end them. (Twisted's spawnProcess
#: takes no ``preexec_fn`` and resets ignored signals in the child, hence the
#: shell: POSIX, about a millisecond.)
SPAWN_SHELL = "/bin/sh"
SPAWN_SCRIPT = 'trap "" INT; exec "$0" "$@"'


def spawn_argv(argv):
    """The command line that starts driver ``argv`` with SIGINT ignored
    (see :data:`SPAWN_SCRIPT`)."""
    return [SPAWN_SHELL, "-c", SPAWN_SCRIPT] + list(argv)

#: LOG line level letter -> twisted.logger method name.
_LOG_METHODS = {"I": "info", "E": "error", "D": "debug", "W": "warn"}

#: Driver families known to :func:`resolve_executable`.
FAMILIES = ("im", "vmm", "tm", "hm", "vnm")

# States of a MadProcess.
_STOPPED = "stopped"  # service not running
_STARTING = "starting"  # spawned, INIT sent, waiting for INIT SUCCESS
_READY = "ready"  # INIT SUCCESS received, requests flow
_DOWN = "down"  # dead or failed INIT, restart scheduled
_STOPPING = "stopping"  # FINALIZE sent, waiting for exit


#: OpenNebula's driver executables (``$ONE_LOCATION/lib/mads/one_*``, as an
#: OpenNebula 1.4-3.4 oned.conf names them) -> the nebtwist driver that does
#: their work: ``(family, executable)``. ``one_vmm_xen`` is the libvirt driver
#: too (the VM_MAD's TYPE gives the domain type).
ONE_EXECUTABLES = {
    "one_im_ssh": ("im", "ssh"),
    "one_im_sh": ("im", "ssh"),
    "one_im_dummy": ("im", "dummy"),
    "one_vmm_kvm": ("vmm", "kvm"),
    "one_vmm_xen": ("vmm", "kvm"),
    "one_vmm_qemu": ("vmm", "kvm"),
    "one_vmm_dummy": ("vmm", "dummy"),
    "one_tm": ("tm", "exec"),
    "one_tm_dummy": ("tm", "dummy"),
    "one_hm": ("hm", "exec"),
    "vnm_exec": ("vnm", "exec"),
    "one_vnm": ("vnm", "exec"),
}


def executable_candidates(executable, family):
    """Every path :func:`resolve_executable` tries for ``executable``, in order.

    :param executable: the oned.conf ``EXECUTABLE`` (str).
    :param family: ``"im"``, ``"vmm"``, ``"tm"``, ``"hm"`` or ``"vnm"``.
    :return: list of absolute paths (one for an absolute ``executable``).
    :raises ValueError: for an unknown family.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown driver family {family!r}")
    if os.path.isabs(executable):
        return [executable]
    names = [executable]
    alias = ONE_EXECUTABLES.get(os.path.basename(executable))
    if alias is not None and alias[0] == family:
        names.append(alias[1])
    found = []
    for name in names:
        for candidate in (paths.shipped("drivers", family, name), paths.shipped("drivers", name)):
            if candidate not in found:
                found.append(candidate)
    return found


def resolve_executable(executable, family):
    """Find a driver executable named in oned.conf.

    :param executable: the ``EXECUTABLE`` value (str). An absolute path is
        returned unchanged.
    :param family: ``"im"``, ``"vmm"``, ``"tm"`` or ``"hm"``.
    :return: the first existing path of :func:`executable_candidates`:
        ``shipped("drivers", family, executable)``, ``shipped("drivers",
        executable)``, then the same for the nebtwist driver an OpenNebula
        name stands for (:data:`ONE_EXECUTABLES`: ``one_vmm_kvm`` ->
        ``drivers/vmm/kvm``; OpenNebula 3.4 resolved relative names under
        ``<lib>/mads``). When none exists, the first candidate.
    :raises ValueError: for an unknown family.
    """
    candidates = executable_candidates(executable, family)
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    return candidates[0]


def available_drivers(family):
    """The executables shipped for ``family`` (sorted names in ``drivers/<family>``)."""
    folder = paths.shipped("drivers", family)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n for n in names if os.path.isfile(os.path.join(folder, n))
                  and os.access(os.path.join(folder, n), os.X_OK))


def not_found_message(executable, family):
    """The start-up error for a driver executable that is missing: every path
    tried and the drivers that exist, e.g. ``executable one_vmm_foo not found
    (tried /a/drivers/vmm/one_vmm_foo, /a/drivers/one_vmm_foo); drivers/vmm has:
    dummy, kvm``."""
    tried = ", ".join(executable_candidates(executable, family))
    have = ", ".join(available_drivers(family)) or "nothing"
    return (f"executable {executable} not found or not executable (tried {tried}); "
            f"drivers/{family} has: {have}")


class _Pending:
    """One request waiting for its reply."""

    __slots__ = ("key", "line", "deferred", "timer", "written")

    def __init__(self, key, line, deferred):
        self.key = key
        self.line = line
        self.deferred = deferred
        self.timer = None
        self.written = False


class _MadProtocol(ProcessProtocol):
    """Splits a driver's stdout into lines (no length limit) for its MadProcess.

    Lines end at ``\\n``; a trailing ``\\r`` is dropped; bytes are decoded as
    UTF-8 with replacement characters for invalid sequences.
    """

    def __init__(self, mad):
        self.mad = mad
        self.ended = defer.Deferred()
        self._buffers = {1: bytearray(), 2: bytearray()}
        self._scanned = {1: 0, 2: 0}

    def childDataReceived(self, childFD, data):
        if childFD not in self._buffers:
            return
        buf = self._buffers[childFD]
        buf += data
        start = 0
        search = self._scanned[childFD]
        while True:
            end = buf.find(b"\n", search)
            if end < 0:
                break
            self._deliver(childFD, bytes(buf[start:end]))
            start = search = end + 1
        if start:
            del buf[:start]
        self._scanned[childFD] = len(buf)

    def _deliver(self, childFD, raw):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        line = raw.decode("utf-8", errors="replace")
        if childFD == 1:
            self.mad._lineReceived(self, line)
        else:
            self.mad._stderrReceived(self, line)

    def processEnded(self, reason):
        for fd, buf in self._buffers.items():
            if buf:
                self._deliver(fd, bytes(buf))
                buf.clear()
        try:
            self.mad._processEnded(self, reason)
        finally:
            self.ended.callback(None)


class MadProcess(Service):
    """Supervises one driver subprocess and speaks the MAD line protocol.

    Follows OpenNebula 3.4 ``src/mad/Mad.cc`` (spawn, ``INIT``, ``FINALIZE``)
    and the per-family ``protocol()`` methods for reply parsing.

    :param reactor: provides ``IReactorProcess`` and ``IReactorTime``.
    :param name: the driver's name in oned.conf, e.g. ``"vmm_dummy"``.
    :param executable: absolute path of the driver executable (see
        :func:`resolve_executable`).
    :param arguments: the oned.conf ``ARGUMENTS`` string, split with
        :func:`shlex.split`.
    :param family_tag: oned.log module tag (``"InM"``, ``"VMM"``, ``"TM"``,
        ``"HKM"``).
    :param env: the child's complete environment (dict of str); default a
        copy of ``os.environ`` taken at construction.
    :param request_timeout: default seconds to wait for a reply; ``None`` or
        ``0`` waits forever.
    :param init_timeout: seconds to wait for ``INIT SUCCESS`` (3.4 waits 5).
    :param restart_delay: seconds before the first restart of a dead driver;
        doubles on each further failure up to ``max_restart_delay`` and is
        reset by a successful ``INIT``.
    :param max_restart_delay: upper bound of the restart delay, in seconds.
    :param on_log: optional callable ``on_log(level, oid, message)`` for each
        ``LOG`` line: ``level`` one of ``"I" "E" "D" "W"``, ``oid`` an int or
        None (for ``-``), ``message`` a str.

    Life cycle: ``startService`` spawns the driver and sends ``INIT``.
    Requests made during the handshake are held and written once the driver
    answers ``INIT SUCCESS`` (their timeouts run from the call). If the driver
    answers ``INIT FAILURE``, stays silent for ``init_timeout``, cannot be
    spawned, or exits, the error is logged, held and in-flight requests fail
    with :class:`~nebtwist.errors.DriverCrashed`, and the driver is spawned
    again after the backoff delay. While it is down, requests fail at once.
    """

    #: What the id of a ``LOG`` line names, for oned.log ("VM 3: ...").
    log_subject = "VM"

    def __init__(
        self,
        reactor,
        name,
        executable,
        arguments="",
        *,
        family_tag="MAD",
        env=None,
        request_timeout=300.0,
        init_timeout=5.0,
        restart_delay=1.0,
        max_restart_delay=60.0,
        on_log=None,
    ):
        self.setName(name)
        self._reactor = reactor
        self.executable = executable
        self.arguments = arguments or ""
        self.argv = [executable] + shlex.split(self.arguments)
        self.family_tag = family_tag
        self.env = dict(os.environ) if env is None else dict(env)
        self.request_timeout = request_timeout
        self.init_timeout = init_timeout
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self.on_log = on_log
        self.log = OneLogger(family_tag)

        self.state = _STOPPED
        self._proto = None  # the current process's protocol
        self._live = set()  # protocols whose process has not ended yet
        self._pending = {}  # (ACTION, id) -> deque of _Pending
        self._held = []  # requests waiting for INIT SUCCESS, in call order
        self._ready_waiters = []
        self._delay = restart_delay
        self._init_call = None
        self._restart_call = None

    # -- readiness ---------------------------------------------------------

    @property
    def ready(self):
        """A new Deferred that fires with this MadProcess once the driver has
        answered ``INIT SUCCESS`` (at once if it already has).

        It errbacks with :class:`~nebtwist.errors.DriverCrashed` if the service
        is stopped first. Same as :meth:`started`.
        """
        return self.started()

    def started(self):
        """Wait until the driver is initialised; see :attr:`ready`.

        :return: Deferred firing with ``self``; awaitable.
        """
        if self.state == _READY:
            return defer.succeed(self)
        d = defer.Deferred()
        self._ready_waiters.append(d)
        return d

    @property
    def pid(self):
        """The pid of the running driver process, or None."""
        proto = self._proto
        if proto is None or proto.transport is None:
            return None
        return getattr(proto.transport, "pid", None)

    # -- service -----------------------------------------------------------

    def startService(self):
        """Spawn the driver and send ``INIT``; see the class docstring."""
        super().startService()
        self._delay = self.restart_delay
        self.log.info("Loading driver: {driver}", driver=self.name)
        self._spawn()

    def stopService(self):
        """Send ``FINALIZE``, close the driver's stdin and wait for it to exit.

        After :data:`STOP_TIMEOUT` (5 s) without an exit the driver gets
        SIGKILL. In-flight and held requests fail at once with
        :class:`~nebtwist.errors.DriverCrashed`; no restart happens afterwards.

        :return: Deferred firing with None when every driver process this
            service spawned has ended.
        """
        super().stopService()
        self.state = _STOPPING if self._proto is not None else _STOPPED
        self._cancel_timer("_init_call")
        self._cancel_timer("_restart_call")
        self._fail_all(DriverCrashed(f"driver {self.name} stopped"))
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.errback(DriverCrashed(f"driver {self.name} stopped"))

        proto = self._proto
        if proto is not None:
            try:
                proto.transport.write(b"FINALIZE\n")
                proto.transport.closeStdin()
            except Exception:
                self.log.failure("Error finalizing driver {driver}", driver=self.name)
        live = list(self._live)
        if not live:
            self.state = _STOPPED
            self._proto = None
            return defer.succeed(None)

        def kill():
            for p in live:
                if p in self._live:
                    self.log.warn(
                        "Driver {driver} did not exit after FINALIZE, killing it",
                        driver=self.name,
                    )
                    self._kill(p)

        killer = self._reactor.callLater(STOP_TIMEOUT, kill)

        def done(_):
            if killer.active():
                killer.cancel()
            self.state = _STOPPED
            self._proto = None
            return None

        return defer.gatherResults([p.ended for p in live]).addCallback(done)

    # -- requests ----------------------------------------------------------

    def request(self, action, oid, *args, timeout=None):
        """Send ``ACTION oid arg1 arg2 ...`` and wait for its reply.

        Replies are matched by ``(ACTION, oid)``; several requests with the
        same key are answered first-in first-out, different keys in any
        order. A reply that arrives after its request timed out is logged at
        debug as ``Ignored: <line>`` (or, if a newer request with the same key
        is waiting, taken as that one's reply: the protocol has no request
        ids).

        :param action: the action word, e.g. ``"DEPLOY"`` (uppercased).
        :param oid: the object id (int; VM, host...).
        :param args: further arguments, each a str without newlines.
        :param timeout: seconds to wait; ``None`` means ``request_timeout``;
            ``0`` waits forever.
        :return: Deferred firing with the info of ``ACTION SUCCESS oid
            <info>`` (everything after the id, ``""`` if absent).
            Errbacks with :class:`~nebtwist.errors.DriverError` (the info, or
            ``"-"``) on ``FAILURE``, :class:`~nebtwist.errors.DriverTimeout`,
            or :class:`~nebtwist.errors.DriverCrashed` if the driver is not
            running or dies first. Cancelling the Deferred forgets the request.
        :raises ValueError: if the action or an argument contains a newline
            or the action is empty.
        """
        action = str(action).upper()
        parts = [action, str(oid)] + [str(a) for a in args]
        if not action or any(c in p for p in parts for c in "\r\n"):
            raise ValueError("MAD request parts must be non-empty and without newlines")
        if not action.split() or len(action.split()) != 1:
            raise ValueError(f"invalid MAD action {action!r}")
        key = (action, _norm_id(str(oid)))

        if self.state not in (_READY, _STARTING):
            return defer.fail(
                DriverCrashed(f"driver {self.name} is not running ({self.state})")
            )

        pending = _Pending(key, " ".join(parts) + "\n", None)

        def cancel(d):
            self._forget(pending)

        pending.deferred = defer.Deferred(cancel)
        self._pending.setdefault(key, deque()).append(pending)

        if timeout is None:
            timeout = self.request_timeout
        if timeout:
            pending.timer = self._reactor.callLater(timeout, self._timedOut, pending, timeout)

        if self.state == _READY:
            self._write(pending)
        else:
            self._held.append(pending)
        return pending.deferred

    def _write(self, pending):
        pending.written = True
        self._proto.transport.write(pending.line.encode("utf-8"))

    def _forget(self, pending):
        """Remove a pending request from every queue and stop its timer."""
        queue = self._pending.get(pending.key)
        if queue is not None:
            try:
                queue.remove(pending)
            except ValueError:
                pass
            if not queue:
                del self._pending[pending.key]
        if pending in self._held:
            self._held.remove(pending)
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None

    def _timedOut(self, pending, timeout):
        pending.timer = None
        self._forget(pending)
        action, oid = pending.key
        self.log.error(
            "Driver {driver}: no reply to {action} {oid} within {timeout} s",
            driver=self.name,
            action=action,
            oid=oid,
            timeout=timeout,
        )
        pending.deferred.errback(
            DriverTimeout(
                f"driver {self.name}: no reply to {action} {oid} within {timeout:g} s"
            )
        )

    def _fail_all(self, exc):
        """Fail every held and in-flight request with ``exc``."""
        everything = [p for q in self._pending.values() for p in q]
        self._pending = {}
        self._held = []
        for p in everything:
            if p.timer is not None and p.timer.active():
                p.timer.cancel()
            p.timer = None
            p.deferred.errback(type(exc)(exc.message))

    # -- process management ------------------------------------------------

    def _spawn(self):
        self._restart_call = None
        if not self.running:
            return
        proto = _MadProtocol(self)
        try:
            self._reactor.spawnProcess(
                proto,
                SPAWN_SHELL,
                spawn_argv(self.argv),
                env=self.env,
                childFDs={0: "w", 1: "r", 2: "r"},
            )
        except Exception as e:
            self.log.error(
                "Cannot start driver {driver} ({executable}): {err}",
                driver=self.name,
                executable=self.executable,
                err=str(e),
            )
            self._down()
            return
        self._proto = proto
        self._live.add(proto)
        self.state = _STARTING
        self._init_call = self._reactor.callLater(self.init_timeout, self._initTimedOut)
        proto.transport.write(b"INIT\n")

    def _kill(self, proto):
        try:
            proto.transport.signalProcess("KILL")
        except (error.ProcessExitedAlready, OSError):
            pass

    def _cancel_timer(self, attr):
        call = getattr(self, attr)
        setattr(self, attr, None)
        if call is not None and call.active():
            call.cancel()

    def _down(self, reason=None):
        """Abandon the current process (if any) and schedule a restart."""
        self._cancel_timer("_init_call")
        proto, self._proto = self._proto, None
        if proto is not None and proto in self._live:
            self._kill(proto)
        self.state = _DOWN
        self._fail_all(DriverCrashed(reason or f"driver {self.name} is not running"))
        if not self.running:
            self.state = _STOPPED
            return
        delay = self._delay
        self._delay = min(self._delay * 2, self.max_restart_delay)
        self.log.info(
            "Restarting driver {driver} in {delay} s", driver=self.name, delay=delay
        )
        self._restart_call = self._reactor.callLater(delay, self._spawn)

    def _initTimedOut(self):
        self._init_call = None
        self.log.error(
            "Driver {driver} did not answer INIT within {timeout} s",
            driver=self.name,
            timeout=self.init_timeout,
        )
        self._down(f"driver {self.name} did not answer INIT")

    def _initAnswered(self, ok, info):
        if self.state != _STARTING:
            self.log.debug("Ignored: INIT {ok}", ok="SUCCESS" if ok else "FAILURE")
            return
        if not ok:
            self.log.error(
                "Driver {driver} failed to start: {info}", driver=self.name, info=info
            )
            self._down(f"driver {self.name} INIT FAILURE: {info}")
            return
        self._cancel_timer("_init_call")
        self.state = _READY
        self._delay = self.restart_delay
        self.log.info("Driver {driver} loaded.", driver=self.name)
        held, self._held = self._held, []
        for p in held:
            self._write(p)
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(self)

    def _processEnded(self, proto, reason):
        self._live.discard(proto)
        if proto is not self._proto:
            return  # an abandoned process, or one ending on stopService
        if self.state == _STOPPING:
            return
        what = _exit_text(reason)
        self.log.error("Driver {driver} {what}", driver=self.name, what=what)
        self._proto = None
        self._down(f"driver {self.name} {what}")

    # -- incoming lines ----------------------------------------------------

    def _stderrReceived(self, proto, line):
        self.log.debug("Driver {driver} stderr: {line}", driver=self.name, line=line)

    def _lineReceived(self, proto, line):
        if proto is not self._proto:
            return
        words = line.split(None, 3)
        if not words:
            return
        head = words[0].upper()
        if head == "LOG":
            self._logLine(words)
            return
        if head == "INIT" and len(words) >= 2 and words[1] in ("SUCCESS", "FAILURE"):
            info = line.split(None, 2)[2] if len(words) > 2 else ""
            self._initAnswered(words[1] == "SUCCESS", info)
            return
        if len(words) < 3 or words[1] not in ("SUCCESS", "FAILURE"):
            self.log.debug("Ignored: {line}", line=line)
            return
        key = (head, _norm_id(words[2]))
        info = words[3] if len(words) > 3 else ""
        queue = self._pending.get(key)
        if not queue:
            self.log.debug("Ignored: {line}", line=line)
            return
        pending = queue[0]
        self._forget(pending)
        if words[1] == "SUCCESS":
            pending.deferred.callback(info)
        else:
            pending.deferred.errback(DriverError(info or "-"))

    def _logLine(self, words):
        level = words[1].upper() if len(words) > 1 else "I"
        if level not in _LOG_METHODS:
            level = "I"
        raw_id = words[2] if len(words) > 2 else "-"
        message = words[3] if len(words) > 3 else ""
        try:
            oid = int(raw_id)
        except ValueError:
            oid = None
        emit = getattr(self.log, _LOG_METHODS[level])
        if oid is None:
            emit("{message}", message=message)
        else:
            emit(
                "{subject} {oid}: {message}",
                subject=self.log_subject,
                oid=oid,
                message=message,
            )
        if self.on_log is not None:
            try:
                self.on_log(level, oid, message)
            except Exception:
                self.log.failure("on_log callback failed")


def _norm_id(text):
    """Normalise an id token so ``"007"`` and ``7`` correlate."""
    try:
        return str(int(text))
    except ValueError:
        return text


def _exit_text(reason):
    """Describe a processEnded reason: ``exited with code N`` / ``killed by signal N``."""
    value = getattr(reason, "value", reason)
    code = getattr(value, "exitCode", None)
    sig = getattr(value, "signal", None)
    if sig is not None:
        return f"killed by signal {sig}"
    if code is None:
        code = 0
    return f"exited with code {code}"


# -- adapters -------------------------------------------------------------


@implementer(IInformationDriver)
class InformationMad(MadProcess):
    """An IM_MAD driver (OpenNebula 3.4 ``src/im/InformationManagerDriver.cc``).

    ``name`` is the oned.conf NAME (e.g. ``"im_dummy"``). ``LOG`` lines carrying
    an id are written to oned.log as ``Host <id>: message``.
    """

    log_subject = "Host"

    def __init__(self, reactor, name, executable, arguments="", **kwargs):
        kwargs.setdefault("family_tag", "InM")
        super().__init__(reactor, name, executable, arguments, **kwargs)

    def monitor(self, host_id, hostname, update_remotes=False):
        """Send ``MONITOR <host_id> <hostname> <0|1>``.

        :return: Deferred firing with the raw info string (``KEY=VALUE``
            pairs); errors as :meth:`MadProcess.request`.
        """
        return self.request(
            "MONITOR", host_id, hostname, "1" if update_remotes else "0"
        )


#: VMMAction field -> element name, in 3.4 ``format_message`` order.
_VMM_FIELDS = (
    ("host", "HOST"),
    ("net_drv", "NET_DRV"),
    ("migr_host", "MIGR_HOST"),
    ("migr_net_drv", "MIGR_NET_DRV"),
    ("deploy_id", "DEPLOY_ID"),
    ("local_deployment_file", "LOCAL_DEPLOYMENT_FILE"),
    ("remote_deployment_file", "REMOTE_DEPLOYMENT_FILE"),
    ("checkpoint_file", "CHECKPOINT_FILE"),
    ("migr_shared", "MIGR_SHARED"),
)


def _safe_parser():
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False
    )


def format_vmm_message(action):
    """Build the 3.4 VMM driver message for one action.

    Follows ``src/vmm/VirtualMachineManager.cc`` ``format_message``:
    ``<VMM_DRIVER_ACTION_DATA>`` holding HOST, NET_DRV, MIGR_HOST,
    MIGR_NET_DRV, DEPLOY_ID, LOCAL_DEPLOYMENT_FILE, REMOTE_DEPLOYMENT_FILE,
    CHECKPOINT_FILE (empty elements when unused), then nebtwist's
    MIGR_SHARED (``YES``/``NO`` on a live migration: whether the VM's files
    are on storage both hosts share; other drivers ignore it), then the
    ``<VM>`` document, built with lxml and base64-encoded.

    :param action: a :class:`~nebtwist.interfaces.VMMAction`; ``vm_xml`` may
        be empty (no VM element then).
    :return: the base64 text (str, ASCII, no newlines).
    :raises ValueError: if ``vm_xml`` is not well-formed XML or carries a
        DOCTYPE (entities are never resolved, no network access).
    """
    root = etree.Element("VMM_DRIVER_ACTION_DATA")
    for attr, tag in _VMM_FIELDS:
        value = getattr(action, attr) or ""
        if attr == "migr_shared" and not value:
            continue  # only on MIGRATE: other actions keep 3.4's shape
        etree.SubElement(root, tag).text = str(value) if value else None
    vm_xml = action.vm_xml
    if vm_xml:
        try:
            try:
                vm = etree.fromstring(vm_xml, _safe_parser())
            except ValueError:
                # A str with an encoding declaration: parse its bytes.
                if not isinstance(vm_xml, str):
                    raise
                vm = etree.fromstring(vm_xml.encode("utf-8"), _safe_parser())
        except etree.XMLSyntaxError as e:
            raise ValueError(f"invalid VM XML: {e}") from e
        if vm.getroottree().docinfo.internalDTD is not None or vm.getroottree().docinfo.doctype:
            raise ValueError("invalid VM XML: a DOCTYPE is not allowed")
        root.append(vm)
    data = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    return base64.b64encode(data).decode("ascii")


@implementer(IVirtualMachineDriver)
class VirtualMachineMad(MadProcess):
    """A VM_MAD driver speaking the 3.4 VMM protocol.

    Every action sends ``<ACTION> <vm_id> <base64 drv_msg>`` (see
    :func:`format_vmm_message`; OpenNebula 3.4
    ``src/vmm/VirtualMachineManagerDriver.cc``). Each method takes a
    :class:`~nebtwist.interfaces.VMMAction` and returns a Deferred with the
    reply info; a VM XML that cannot be parsed errbacks with
    :class:`~nebtwist.errors.DriverError` without contacting the driver.
    """

    def __init__(self, reactor, name, executable, arguments="", **kwargs):
        kwargs.setdefault("family_tag", "VMM")
        super().__init__(reactor, name, executable, arguments, **kwargs)

    def _vmm(self, verb, vm_id, action):
        try:
            message = format_vmm_message(action)
        except ValueError as e:
            return defer.fail(DriverError(f"cannot format {verb} for VM {vm_id}: {e}"))
        return self.request(verb, vm_id, message)

    def deploy(self, vm_id, action):
        """``DEPLOY``: boot the VM; fires with the deploy id (info stripped)."""
        return self._vmm("DEPLOY", vm_id, action).addCallback(str.strip)

    def shutdown(self, vm_id, action):
        """``SHUTDOWN``: graceful shutdown; fires with the reply info."""
        return self._vmm("SHUTDOWN", vm_id, action)

    def cancel(self, vm_id, action):
        """``CANCEL``: destroy at once; fires with the reply info."""
        return self._vmm("CANCEL", vm_id, action)

    def save(self, vm_id, action):
        """``SAVE``: checkpoint to ``action.checkpoint_file`` and stop."""
        return self._vmm("SAVE", vm_id, action)

    def restore(self, vm_id, action):
        """``RESTORE`` from ``action.checkpoint_file``; fires with the deploy id."""
        return self._vmm("RESTORE", vm_id, action).addCallback(str.strip)

    def migrate(self, vm_id, action):
        """``MIGRATE`` from ``action.host`` to ``action.migr_host``."""
        return self._vmm("MIGRATE", vm_id, action)

    def reboot(self, vm_id, action):
        """``REBOOT`` the guest."""
        return self._vmm("REBOOT", vm_id, action)

    def poll(self, vm_id, action):
        """``POLL``; fires with ``STATE=.. USEDCPU=.. USEDMEMORY=..`` info."""
        return self._vmm("POLL", vm_id, action)

    def checkpoint(self, vm_id, action):
        """``CHECKPOINT`` to ``action.checkpoint_file`` (not in the interface)."""
        return self._vmm("CHECKPOINT", vm_id, action)


@implementer(ITransferDriver)
class TransferMad(MadProcess):
    """A TM_MAD driver (OpenNebula 3.4 ``src/tm/TransferManagerDriver.cc``)."""

    def __init__(self, reactor, name, executable, arguments="", **kwargs):
        kwargs.setdefault("family_tag", "TM")
        super().__init__(reactor, name, executable, arguments, **kwargs)

    def transfer(self, vm_id, script_path):
        """Send ``TRANSFER <vm_id> <script_path>``; fires with None."""
        return self.request("TRANSFER", vm_id, script_path).addCallback(lambda _: None)


@implementer(IHookDriver)
class HookMad(MadProcess):
    """An HM_MAD driver (OpenNebula 3.4 ``src/hm/HookManagerDriver.cc``).

    :meth:`execute` sends ``EXECUTE <oid> <hook_name> <LOCAL|host> <command>
    <arguments|->``. Replies carry the hook name (``EXECUTE SUCCESS <oid>
    <hook_name>: <output>``), so two hooks of one object running at once get
    their own replies whatever order the driver answers in.
    """

    log_subject = "Object"

    def __init__(self, reactor, name, executable, arguments="", **kwargs):
        kwargs.setdefault("family_tag", "HKM")
        super().__init__(reactor, name, executable, arguments, **kwargs)

    def execute(self, oid, hook_name, host, command, arguments=""):
        """Run a hook; see :meth:`nebtwist.interfaces.IHookDriver.execute`.

        :param host: None or ``"LOCAL"`` for the front-end, else a host name.
        :return: Deferred firing with the output (str); a ``FAILURE`` errbacks
            with :class:`~nebtwist.errors.DriverError` holding the error text
            (the ``<hook_name>:`` prefix removed). A ``hook_name``, ``host`` or
            ``command`` that is empty or not one word errbacks with DriverError
            without contacting the driver.
        """
        host = host or "LOCAL"
        for what, value in (("hook name", hook_name), ("host", host), ("command", command)):
            if not value or len(str(value).split()) != 1 or str(value) != str(value).strip():
                return defer.fail(DriverError(f"invalid {what} {value!r}: must be one word"))
        arguments = " ".join(str(arguments or "").splitlines()).strip() or "-"
        prefix = f"{hook_name}:"

        def strip(text):
            text = text or ""
            if text.startswith(prefix):
                text = text[len(prefix):]
            return text.strip()

        def failed(f):
            f.trap(DriverError)
            if type(f.value) is DriverError:
                raise DriverError(strip(f.value.message) or "-")
            return f

        d = self.request("EXECUTE", oid, hook_name, host, command, arguments)
        return d.addCallbacks(strip, failed)

    def _lineReceived(self, proto, line):
        words = line.split(None, 3)
        if (len(words) == 4 and words[0].upper() == "EXECUTE"
                and words[1] in ("SUCCESS", "FAILURE")):
            # Put the request of the named hook first in its (EXECUTE, oid) queue.
            name = words[3].split(None, 1)[0]
            if name.endswith(":"):
                name = name[:-1]
            queue = self._pending.get(("EXECUTE", _norm_id(words[2])))
            if queue and len(queue) > 1:
                for p in queue:
                    if p.line.split(None, 3)[2] == name:
                        queue.remove(p)
                        queue.appendleft(p)
                        break
        super()._lineReceived(proto, line)


@implementer(IVirtualNetworkDriver)
class NetworkMad(MadProcess):
    """A VN_MAD driver: ``PRE``/``POST``/``CLEAN <vid> <host> <base64 VM XML>``.

    OpenNebula 3.4 ran the VNM scripts from its VMM exec driver
    (``src/vmm_mad/exec/one_vmm_exec.rb``, ``VirtualNetworkDriver``); nebtwist
    gives them a driver process of their own (``drivers/vnm/exec``) so any
    VM_MAD works with any network driver. Replies: ``<ACTION> SUCCESS <vid>``
    or ``<ACTION> FAILURE <vid> <message>``; a failure errbacks with
    :class:`~nebtwist.errors.DriverError` whose message is ``<action>: <the
    driver's message>`` (``pre: ...``), a dead or hung driver as every MAD
    (:class:`~nebtwist.errors.DriverCrashed`, :class:`~nebtwist.errors.DriverTimeout`),
    and the driver is restarted as every MAD.
    """

    def __init__(self, reactor, name, executable, arguments="", **kwargs):
        kwargs.setdefault("family_tag", "VNM")
        super().__init__(reactor, name, executable, arguments, **kwargs)

    def _vnm(self, verb, vm_id, host, vm_xml):
        host = str(host or "")
        if not host or len(host.split()) != 1 or host != host.strip():
            return defer.fail(DriverError(f"{verb.lower()}: invalid host name {host!r}"))
        data = vm_xml.encode("utf-8") if isinstance(vm_xml, str) else bytes(vm_xml or b"")
        message = base64.b64encode(data).decode("ascii") or "-"

        def failed(f):
            f.trap(DriverError)
            if type(f.value) is DriverError:
                raise DriverError(f"{verb.lower()}: {f.value.message}")
            return f

        d = self.request(verb, vm_id, host, message)
        return d.addCallbacks(lambda _: None, failed)

    def pre(self, vm_id, host, vm_xml):
        """``PRE``: prepare ``host`` for the VM (before its domain exists)."""
        return self._vnm("PRE", vm_id, host, vm_xml)

    def post(self, vm_id, host, vm_xml):
        """``POST``: apply the VM's rules once its domain runs."""
        return self._vnm("POST", vm_id, host, vm_xml)

    def clean(self, vm_id, host, vm_xml):
        """``CLEAN``: remove what ``pre``/``post`` made (domain gone)."""
        return self._vnm("CLEAN", vm_id, host, vm_xml)



_KINDS = {
    "im": (InformationMad, "im"),
    "vmm": (VirtualMachineMad, "vmm"),
    "tm": (TransferMad, "tm"),
    "hm": (HookMad, "hm"),
    "vnm": (NetworkMad, "vnm"),
}


#: TM script sets whose VM directories are not on storage shared by the hosts
#: (a live migration must copy the disks); every other set is taken as shared.
UNSHARED_TM_SETS = ("ssh",)


def tm_script_set(arguments):
    """The script set a TM driver's ARGUMENTS name: the last word, with the
    1.4 form ``tm_nfs/tm_nfs.conf`` read as ``nfs`` and ``nfs`` as
    ``shared`` (3.4's name for it); "" when there is none."""
    words = str(arguments or "").split()
    if not words:
        return ""
    word = words[-1]
    if "/" in word or word.endswith(".conf"):
        word = os.path.basename(word.split("/")[0] if "/" in word else word)
        if word.endswith(".conf"):
            word = word[:-5]
    if word.startswith("tm_"):
        word = word[3:]
    return "shared" if word == "nfs" else word


def _yes_no(value, what):
    text = str(value).strip().lower()
    if text in ("yes", "y", "true", "1"):
        return True
    if text in ("no", "n", "false", "0"):
        return False
    raise ValueError(f"{what} must be YES or NO, not {value!r}")


def load_vmm_defaults(default, env=None):
    """Read a VM_MAD's DEFAULT file (OpenNebula template syntax, 3.4's
    ``vmm_kvm/vmm_kvm.conf``): the attributes a deployment file takes when the
    VM template lacks them.

    :param default: the DEFAULT value: an absolute path, or one relative to
        ``$ONE_LOCATION/etc`` (tried first, from ``env``) or the shipped ``conf/``.
    :return: a :class:`nebtwist.template.Template`.
    :raises ValueError: the file is missing (every path tried is named) or
        has a syntax error (line and column).
    """
    from nebtwist.template import Template, TemplateSyntaxError

    env = os.environ if env is None else env
    if os.path.isabs(default):
        candidates = [default]
    else:
        candidates = []
        one_location = env.get("ONE_LOCATION")
        if one_location:
            candidates.append(os.path.join(one_location, "etc", default))
        candidates.append(paths.shipped("conf", default))
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise ValueError(f"cannot read DEFAULT file {path}: {e.strerror}") from None
        try:
            return Template.parse(text)
        except TemplateSyntaxError as e:
            raise ValueError(f"DEFAULT file {path}: {e}") from None
    raise ValueError(f"DEFAULT file {default} not found (tried {', '.join(candidates)})")


_KINDS = {
    "im": (InformationMad, "im"),
    "vmm": (VirtualMachineMad, "vmm"),
    "tm": (TransferMad, "tm"),
    "hm": (HookMad, "hm"),
    "vnm": (NetworkMad, "vnm"),
}


def build_driver(kind, reactor, conf_vector, env=None):
    """Make a MAD adapter from an oned.conf driver vector.

    :param kind: ``"im"`` (IM_MAD), ``"vmm"`` (VM_MAD), ``"tm"`` (TM_MAD),
        ``"hm"`` (HM_MAD) or ``"vnm"`` (VN_MAD; the child's environment gets
        ``VNM_DRIVER=<NAME>``, the remotes folder ``drivers/vnm/exec`` runs
        when its ARGUMENTS name none).
    :param reactor: provides ``IReactorProcess`` and ``IReactorTime``.
    :param conf_vector: dict with keys NAME, EXECUTABLE, and optionally
        ARGUMENTS and TIMEOUT (seconds, str or number); keys are matched
        case-insensitively. Without NAME the executable's base name is used
        (3.4 TM_MAD had no name). A VM_MAD's TYPE (``kvm``, ``qemu``,
        ``xen``: the core writes libvirt domain XML of that type; ``xml``, the
        default: the VM template) becomes the adapter's ``hv_type``, its
        DEFAULT file (:func:`load_vmm_defaults`) its ``defaults`` (a Template,
        or None). A TM_MAD's SHARED (YES/NO; default NO for the ``ssh`` script
        set, else YES: OpenNebula 4.x's ``TM_MAD_CONF`` SHARED) becomes its
        ``shared``.
    :param env: the child's environment (default: a copy of ``os.environ``).
    :return: an :class:`InformationMad`, :class:`VirtualMachineMad`,
        :class:`TransferMad` or :class:`HookMad` (not started).
    :raises ValueError: for an unknown kind, a missing EXECUTABLE, a bad
        TIMEOUT, TYPE or SHARED, or a DEFAULT file that cannot be read.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown driver kind {kind!r} (expected im, vmm, tm, hm or vnm)")
    cls, family = _KINDS[kind]
    conf = {str(k).upper(): v for k, v in conf_vector.items()}
    executable = str(conf.get("EXECUTABLE") or "").strip()
    if not executable:
        raise ValueError(f"{kind.upper()} driver vector has no EXECUTABLE")
    name = str(conf.get("NAME") or "").strip() or os.path.basename(executable)
    kwargs = {"env": env}
    timeout = conf.get("TIMEOUT")
    if timeout not in (None, ""):
        try:
            kwargs["request_timeout"] = float(timeout)
        except (TypeError, ValueError):
            raise ValueError(
                f"driver {name}: TIMEOUT must be a number of seconds, not {timeout!r}"
            ) from None
    arguments = str(conf.get("ARGUMENTS") or "")
    if kind == "vnm":
        kwargs["env"] = dict(os.environ if env is None else env, VNM_DRIVER=name)
    drv = cls(reactor, name, resolve_executable(executable, family), arguments, **kwargs)
    if kind == "vmm":
        hv_type = str(conf.get("TYPE") or "xml").strip().lower()
        if hv_type not in ("xml", "kvm", "qemu", "xen"):
            raise ValueError(f"driver {name}: TYPE must be kvm, qemu, xen or xml, not {hv_type!r}")
        drv.hv_type = hv_type
        default = str(conf.get("DEFAULT") or "").strip()
        try:
            drv.defaults = load_vmm_defaults(default, env) if default else None
        except ValueError as e:
            raise ValueError(f"driver {name}: {e}") from None
    elif kind == "tm":
        drv.script_set = tm_script_set(arguments) if os.path.basename(
            drv.executable) == "exec" else os.path.basename(drv.executable)
        shared = conf.get("SHARED")
        if shared in (None, ""):
            drv.shared = drv.script_set not in UNSHARED_TM_SETS
        else:
            drv.shared = _yes_no(shared, f"driver {name}: SHARED")
    return drv
