"""Public test helpers: a fake reactor that "spawns" processes.

Twisted's ``MemoryReactorClock`` fakes time and sockets but not processes.
:class:`FakeProcessReactor` adds ``IReactorProcess``: ``spawnProcess``
records a :class:`SpawnedProcess` and hands the protocol a
:class:`FakeProcessTransport`, through which a test plays the child: it reads
what the parent wrote (``transport.written``), makes the child speak
(``child_says``) and end (``exit`` / ``killed``)::

    reactor = FakeProcessReactor()
    mad = MadProcess(reactor, "im_dummy", "/bin/im")
    mad.startService()
    child = reactor.spawned[-1].transport
    assert child.written == b"INIT\\n"
    child.child_says(b"INIT SUCCESS\\n")
    reactor.advance(5)          # drive time as with task.Clock
    child.exit(0)
"""

import re
import signal as _signal
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, error
from twisted.internet.address import _ProcessAddress
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["FakeProcessReactor", "FakeProcessTransport", "SpawnedProcess"]


@dataclass
class SpawnedProcess:
    """What one ``spawnProcess`` call was given, and the transport it returned."""

    protocol: Any
    executable: Any
    args: Any
    env: Any
    path: Any
    transport: "FakeProcessTransport"
    uid: Any = None
    gid: Any = None
    usePTY: Any = False
    childFDs: Any = field(default=None)


def _signal_number(sig):
    """``"KILL"`` / ``"SIGKILL"`` / ``9`` -> 9."""
    if isinstance(sig, int):
        return sig
    name = str(sig).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    return int(getattr(_signal, name))


@implementer(IProcessTransport)
class FakeProcessTransport:
    """The parent's side of a fake child process (``IProcessTransport``).

    Records what the parent does:

    * ``written`` -- all bytes written to the child's stdin (bytes);
      ``written_lines`` the same decoded and split into lines;
      ``writes_to`` -- dict fd -> bytes for writes to other fds;
      ``late_writes`` -- list of stdin writes made after stdin was closed
      (a real pipe drops them);
    * ``closed_fds`` -- set of child fds the parent closed (0 = stdin);
    * ``signals`` -- signals sent, as given (``"KILL"``, ``15``...);
    * ``lost`` -- True once ``loseConnection`` was called.

    Test controls play the child: :meth:`child_says`, :meth:`exit`,
    :meth:`killed`. After the child has ended, ``pid`` is None and
    ``signalProcess`` raises ``ProcessExitedAlready``, as Twisted's does.
    """

    def __init__(self, protocol, pid, childFDs=None):
        self.protocol = protocol
        self.pid = pid
        self.childFDs = childFDs or {0: "w", 1: "r", 2: "r"}
        self._stdin = []
        self.writes_to = {}
        self.late_writes = []
        self.closed_fds = set()
        self.signals = []
        self.lost = False
        self.ended = False
        self.reason = None

    # -- IProcessTransport -------------------------------------------------

    @property
    def written(self):
        """Bytes written to the child's stdin so far."""
        return b"".join(self._stdin)

    @property
    def written_lines(self):
        """``written`` decoded as UTF-8 and split at ``\\n`` (complete lines only)."""
        text = self.written.decode("utf-8", errors="replace")
        return text.split("\n")[:-1]

    @property
    def stdin_closed(self):
        """True once the parent closed the child's stdin."""
        return 0 in self.closed_fds

    def writeToChild(self, childFD, data):
        """Record ``data`` written to child fd ``childFD``."""
        if childFD == 0:
            if self.stdin_closed or self.ended:
                self.late_writes.append(data)
            else:
                self._stdin.append(bytes(data))
        else:
            self.writes_to[childFD] = self.writes_to.get(childFD, b"") + bytes(data)

    def write(self, data):
        """Write to the child's stdin."""
        self.writeToChild(0, data)

    def writeSequence(self, data):
        """Write each chunk of ``data`` to the child's stdin."""
        for chunk in data:
            self.write(chunk)

    def closeChildFD(self, descriptor):
        """Record that the parent closed child fd ``descriptor``."""
        self.closed_fds.add(descriptor)

    def closeStdin(self):
        """Close the child's stdin (fd 0)."""
        self.closeChildFD(0)

    def closeStdout(self):
        """Close the pipe from the child's stdout (fd 1)."""
        self.closeChildFD(1)

    def closeStderr(self):
        """Close the pipe from the child's stderr (fd 2)."""
        self.closeChildFD(2)

    def loseConnection(self):
        """Close stdin, stdout and stderr (does not signal the child)."""
        self.lost = True
        for fd in (0, 1, 2):
            self.closeChildFD(fd)

    def signalProcess(self, signalID):
        """Record a signal (``"KILL"``, ``"TERM"``, ``"INT"`` or a number).

        :raises twisted.internet.error.ProcessExitedAlready: if the child has
            ended. The signal is not delivered: call :meth:`killed` for that.
        """
        if self.ended:
            raise error.ProcessExitedAlready()
        self.signals.append(signalID)

    def getPeer(self):
        """A process address, as for Twisted's process endpoints."""
        return _ProcessAddress()

    def getHost(self):
        """A process address, as for Twisted's process endpoints."""
        return _ProcessAddress()

    # -- test controls -----------------------------------------------------

    def child_says(self, data, fd=1):
        """Deliver ``data`` (bytes) as output of the child on ``fd`` (1 stdout, 2 stderr).

        :raises RuntimeError: if the child has already ended.
        """
        if self.ended:
            raise RuntimeError("the fake child has already ended")
        self.protocol.childDataReceived(fd, data)

    def exit(self, code=0):
        """End the child with exit status ``code``.

        Delivers ``childConnectionLost`` for each fd, then ``processExited``
        and ``processEnded`` with ``ProcessDone`` (code 0) or
        ``ProcessTerminated(exitCode=code)``.
        """
        if code == 0:
            reason = Failure(error.ProcessDone(0))
        else:
            reason = Failure(error.ProcessTerminated(exitCode=code))
        self._end(reason)

    def killed(self, signal=_signal.SIGKILL):
        """End the child as killed by ``signal`` (number or name, default SIGKILL).

        Delivers the same callbacks as :meth:`exit`, with
        ``ProcessTerminated(signal=N)``.
        """
        number = _signal_number(signal)
        self._end(Failure(error.ProcessTerminated(exitCode=None, signal=number)))

    def _end(self, reason):
        if self.ended:
            raise RuntimeError("the fake child has already ended")
        self.ended = True
        self.reason = reason
        self.pid = None
        for fd in sorted(self.childFDs):
            self.protocol.childConnectionLost(fd)
        self.protocol.processExited(reason)
        self.protocol.processEnded(reason)


@implementer(IReactorProcess)
class FakeProcessReactor(MemoryReactorClock):
    """A ``MemoryReactorClock`` that also fakes ``IReactorProcess``.

    ``spawnProcess`` appends a :class:`SpawnedProcess` to ``spawned``,
    connects the protocol to a new :class:`FakeProcessTransport` (pids count
    up from 1000) and returns the transport. Set ``spawn_error`` to an
    exception instance to make every following ``spawnProcess`` raise it
    (as a real spawn of a missing executable can).
    """

    def __init__(self):
        super().__init__()
        self.spawned = []
        self.spawn_error = None
        self._next_pid = 1000

    def spawnProcess(
        self,
        processProtocol,
        executable,
        args=(),
        env=None,
        path=None,
        uid=None,
        gid=None,
        usePTY=0,
        childFDs=None,
    ):
        """Record the spawn and return a :class:`FakeProcessTransport`."""
        if self.spawn_error is not None:
            raise self.spawn_error
        transport = FakeProcessTransport(processProtocol, self._next_pid, childFDs)
        self._next_pid += 1
        self.spawned.append(
            SpawnedProcess(
                protocol=processProtocol,
                executable=executable,
                args=list(args),
                env=env,
                path=path,
                transport=transport,
                uid=uid,
                gid=gid,
                usePTY=usePTY,
                childFDs=childFDs,
            )
        )
        processProtocol.makeConnection(transport)
        return transport


# ---------------------------------------------------------------------------
# A whole daemon in the test process, on trial's real reactor.

#: Session string of the oneadmin that :func:`start_nebula` creates.
ONEADMIN_SESSION = "oneadmin:onecloud"

#: oned.conf overrides that make a test daemon quick: any free port, and
#: timers short enough for a VM to reach RUNNING in well under a second.
FAST_OVERRIDES = (
    "PORT=0",
    "SCHED_INTERVAL=0.2",
    "MANAGER_TIMER=0.2",
    "HOST_MONITORING_INTERVAL=1",
    "VM_POLLING_INTERVAL=1",
    # Only the dummy drivers (the shipped oned.conf also starts the libvirt,
    # ssh-probe and script TM drivers, and five VN_MADs); a test that gives
    # IM_MAD, VM_MAD, TM_MAD or VN_MAD replaces these.
    'IM_MAD=[name="im_dummy", executable="dummy"]',
    'VM_MAD=[name="vmm_dummy", executable="dummy", type="xml"]',
    'TM_MAD=[name="tm_dummy", executable="dummy"]',
    'VN_MAD=[name="dummy", executable="vnm_exec", arguments="-n"]',
)


_SCHED_MESSAGE = re.compile(
    r"<USER_TEMPLATE><SCHED_MESSAGE><!\[CDATA\[[^]]*\]\]></SCHED_MESSAGE></USER_TEMPLATE>")


def without_sched_message(body):
    """*body* (a VM or VM pool XML string) without the scheduler's note.

    The scheduler writes ``USER_TEMPLATE/SCHED_MESSAGE`` (OpenNebula 4.x,
    ``src/scheduler/src/sched/Scheduler.cc``) on every cycle that leaves a
    pending VM unplaced, stamped with the time; a test comparing bodies
    before and after requests that must change nothing drops it with this.
    Returns a ``str``.
    """
    return _SCHED_MESSAGE.sub("", body)


class RunningNebula:
    """A started :class:`~nebtwist.tap.NebulaService` and an XML-RPC client for it.

    Attributes: ``service``, ``port`` (the API's TCP port), ``url``
    (``http://127.0.0.1:PORT/RPC2``), ``var_dir``, ``one_location``,
    ``nebula`` (the core, for white-box checks) and ``failures`` (start-up
    failures passed to ``on_failure``); from :func:`start_nebula` also
    ``stop()`` (stop the service now, once; the test's clean-up does it
    otherwise) and ``testcase_cleanup`` (the test's ``addCleanup``).
    """

    def __init__(self, service, var_dir, one_location, failures, pool, reactor):
        self.service = service
        # The XML-RPC front's port (None when oned.conf API_FRONT leaves it out).
        self.port = service.ports[0].getHost().port if service.ports else None
        self.url = f"http://127.0.0.1:{self.port}/RPC2"
        ec2_ports = getattr(service, "ec2_ports", [])  # the EC2 Query API (nebtwist.api.ec2)
        self.ec2_url = (f"http://127.0.0.1:{ec2_ports[0].getHost().port}/" if ec2_ports
                        else None)
        self.var_dir = var_dir
        self.one_location = one_location
        self.nebula = service.nebula
        self.failures = failures
        self._pool = pool
        self._reactor = reactor

    def front_url(self, name, index=0):
        """``http://127.0.0.1:PORT/`` of an enabled API front (``API_FRONT`` NAME),
        its ``index``-th endpoint (:mod:`nebtwist.api.plugin`)."""
        port = self.service.fronts[name].ports[index].getHost().port
        return f"http://127.0.0.1:{port}/"

    async def raw_post(self, body):
        """POST ``body`` (bytes) to ``/RPC2``; returns ``(HTTP status, response bytes)``."""
        import treq
        from twisted.web.client import Agent

        client = treq.client.HTTPClient(Agent(self._reactor, pool=self._pool))
        response = await client.post(self.url, data=body,
                                     headers={b"Content-Type": [b"text/xml"]})
        content = await treq.content(response)
        return response.code, content

    async def call(self, method, *args, session=ONEADMIN_SESSION):
        """Call ``method(session, *args)``; returns the decoded response list.

        An XML-RPC fault raises :class:`xmlrpc.client.Fault`.
        """
        import xmlrpc.client

        body = xmlrpc.client.dumps((session,) + tuple(args), methodname=method,
                                   allow_none=False).encode("utf-8")
        _status, content = await self.raw_post(body)
        params, _ = xmlrpc.client.loads(content.decode("utf-8"))
        return list(params[0])


async def start_nebula(testcase, overrides=(), environ=None, one_location=None):
    """Start a whole nebtwist daemon in-process for ``testcase``.

    Uses the global (real) reactor, so it suits trial's ``TestCase``: a fresh
    ``ONE_LOCATION`` from ``testcase.mktemp()``, a one_auth file
    ``oneadmin:onecloud``, the shipped ``conf/oned.conf`` with
    :data:`FAST_OVERRIDES` then ``overrides`` (``KEY=VALUE`` strings; a key
    given here replaces the fast default), and the shipped dummy drivers.
    The service is stopped (drivers waited for) and the client's connection
    pool closed in the test's cleanups.

    :param environ: environment for the service and drivers (default
        ``os.environ``); ``ONE_AUTH`` is set to the one_auth file.
    :param one_location: an existing ``ONE_LOCATION`` (with its one_auth) to
        start on again, for tests that restart the daemon on the same files
        (stop the first one with ``RunningNebula.stop()``); None: a fresh one.
    :return: a :class:`RunningNebula` once the API listens.
    :raises: the start-up failure, if the daemon could not start.
    """
    import os

    from twisted.internet import reactor
    from twisted.web.client import HTTPConnectionPool

    from nebtwist import paths
    from nebtwist.core import config as configmod
    from nebtwist.tap import build_service

    if one_location is None:
        one_location = os.path.abspath(testcase.mktemp())
        os.makedirs(one_location)
        with open(os.path.join(one_location, "one_auth"), "w", encoding="utf-8") as f:
            f.write(ONEADMIN_SESSION + "\n")
    auth_path = os.path.join(one_location, "one_auth")
    overrides = list(overrides)
    given = {o.split("=", 1)[0].strip().upper() for o in overrides}
    settings = [o for o in FAST_OVERRIDES if o.split("=", 1)[0] not in given] + overrides
    if "ECONE.PORT" not in given:  # the EC2 front on any free port (RunningNebula.ec2_url)
        settings.append("econe.PORT=0")
    config = configmod.load(paths.shipped("conf", "oned.conf"), settings)
    var_dir = os.path.join(one_location, "var")
    env = dict(os.environ if environ is None else environ)
    env["ONE_AUTH"] = auth_path
    failures = []
    svc = build_service(config, reactor, var_dir, environ=env, on_failure=failures.append,
                        overrides=settings)
    stopped = []

    def stop():
        if stopped:
            return defer.succeed(None)
        stopped.append(True)
        return svc.stopService()

    svc.startService()
    # Registered before waiting, so drivers started by a failed start are stopped too.
    testcase.addCleanup(stop)
    await svc.ready
    pool = HTTPConnectionPool(reactor, persistent=False)
    testcase.addCleanup(pool.closeCachedConnections)
    neb = RunningNebula(svc, var_dir, one_location, failures, pool, reactor)
    neb.stop = stop
    neb.testcase_cleanup = testcase.addCleanup
    return neb
