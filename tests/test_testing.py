"""Tests for the fakes in :mod:`nebtwist.testing`."""

import signal

from twisted.internet import error
from twisted.internet.interfaces import IProcessTransport, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from nebtwist.testing import FakeProcessReactor, FakeProcessTransport, SpawnedProcess


class RecordingProtocol(ProcessProtocol):
    """Records every callback a process protocol receives."""

    def __init__(self):
        self.events = []

    def connectionMade(self):
        self.events.append(("connectionMade",))

    def childDataReceived(self, fd, data):
        self.events.append(("data", fd, data))

    def childConnectionLost(self, fd):
        self.events.append(("lost", fd))

    def processExited(self, reason):
        self.events.append(("exited", reason))

    def processEnded(self, reason):
        self.events.append(("ended", reason))


class FakeProcessReactorTests(SynchronousTestCase):
    """FakeProcessReactor."""

    def test_interface(self):
        """FakeProcessReactor provides IReactorProcess and IReactorTime."""
        reactor = FakeProcessReactor()
        self.assertTrue(verifyObject(IReactorProcess, reactor))
        self.assertTrue(verifyObject(IReactorTime, reactor))

    def test_spawn_records(self):
        """spawnProcess records its arguments and connects the protocol."""
        reactor = FakeProcessReactor()
        proto = RecordingProtocol()
        transport = reactor.spawnProcess(
            proto, "/bin/drv", ["/bin/drv", "-t", "1"], env={"A": "1"}, path="/tmp",
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        self.assertEqual(len(reactor.spawned), 1)
        spawned = reactor.spawned[0]
        self.assertIsInstance(spawned, SpawnedProcess)
        self.assertIs(spawned.protocol, proto)
        self.assertIs(spawned.transport, transport)
        self.assertEqual(spawned.executable, "/bin/drv")
        self.assertEqual(spawned.args, ["/bin/drv", "-t", "1"])
        self.assertEqual(spawned.env, {"A": "1"})
        self.assertEqual(spawned.path, "/tmp")
        self.assertIs(proto.transport, transport)
        self.assertEqual(proto.events, [("connectionMade",)])

    def test_pids_differ(self):
        """Each spawned process gets its own pid."""
        reactor = FakeProcessReactor()
        a = reactor.spawnProcess(ProcessProtocol(), "/a", ["/a"])
        b = reactor.spawnProcess(ProcessProtocol(), "/b", ["/b"])
        self.assertNotEqual(a.pid, b.pid)

    def test_spawn_error(self):
        """spawn_error makes spawnProcess raise and record nothing."""
        reactor = FakeProcessReactor()
        reactor.spawn_error = OSError(2, "No such file")
        self.assertRaises(OSError, reactor.spawnProcess, ProcessProtocol(), "/x", ["/x"])
        self.assertEqual(reactor.spawned, [])

    def test_clock(self):
        """It is still a clock: callLater runs on advance."""
        reactor = FakeProcessReactor()
        called = []
        reactor.callLater(2, called.append, 1)
        reactor.advance(1)
        self.assertEqual(called, [])
        reactor.advance(1)
        self.assertEqual(called, [1])


class FakeProcessTransportTests(SynchronousTestCase):
    """FakeProcessTransport and its test controls."""

    def setUp(self):
        self.reactor = FakeProcessReactor()
        self.proto = RecordingProtocol()
        self.transport = self.reactor.spawnProcess(
            self.proto, "/bin/drv", ["/bin/drv"], childFDs={0: "w", 1: "r", 2: "r"}
        )

    def test_interface(self):
        """FakeProcessTransport provides IProcessTransport."""
        self.assertIsInstance(self.transport, FakeProcessTransport)
        self.assertTrue(verifyObject(IProcessTransport, self.transport))

    def test_written(self):
        """write, writeSequence and writeToChild(0) accumulate in written."""
        self.transport.write(b"INIT\n")
        self.transport.writeSequence([b"MON", b"ITOR 1 h 0\n"])
        self.transport.writeToChild(0, b"part")
        self.transport.writeToChild(3, b"other")
        self.assertEqual(self.transport.written, b"INIT\nMONITOR 1 h 0\npart")
        self.assertEqual(self.transport.written_lines, ["INIT", "MONITOR 1 h 0"])
        self.assertEqual(self.transport.writes_to, {3: b"other"})

    def test_close_stdin(self):
        """closeStdin is recorded; later writes land in late_writes."""
        self.transport.write(b"FINALIZE\n")
        self.transport.closeStdin()
        self.assertTrue(self.transport.stdin_closed)
        self.transport.write(b"late\n")
        self.assertEqual(self.transport.written, b"FINALIZE\n")
        self.assertEqual(self.transport.late_writes, [b"late\n"])

    def test_close_fds_and_lose_connection(self):
        """closeStdout/closeStderr/closeChildFD/loseConnection record closed fds."""
        self.transport.closeStdout()
        self.transport.closeChildFD(5)
        self.assertEqual(self.transport.closed_fds, {1, 5})
        self.transport.closeStderr()
        self.transport.loseConnection()
        self.assertTrue(self.transport.lost)
        self.assertEqual(self.transport.closed_fds, {0, 1, 2, 5})
        self.assertEqual(self.transport.signals, [])

    def test_signals(self):
        """signalProcess records signals without ending the child."""
        self.transport.signalProcess("TERM")
        self.transport.signalProcess("KILL")
        self.assertEqual(self.transport.signals, ["TERM", "KILL"])
        self.assertFalse(self.transport.ended)

    def test_child_says(self):
        """child_says delivers childDataReceived on stdout by default, or any fd."""
        self.transport.child_says(b"INIT SUCCESS\n")
        self.transport.child_says(b"oops\n", fd=2)
        self.assertEqual(
            self.proto.events[1:],
            [("data", 1, b"INIT SUCCESS\n"), ("data", 2, b"oops\n")],
        )

    def test_exit_zero(self):
        """exit(0) loses every fd, then processExited/processEnded with ProcessDone."""
        pid = self.transport.pid
        self.assertIsNotNone(pid)
        self.transport.exit(0)
        events = self.proto.events[1:]
        self.assertEqual(events[:3], [("lost", 0), ("lost", 1), ("lost", 2)])
        self.assertEqual([e[0] for e in events[3:]], ["exited", "ended"])
        events[4][1].trap(error.ProcessDone)
        self.assertEqual(events[4][1].value.exitCode, 0)
        self.assertIsNone(self.transport.pid)
        self.assertTrue(self.transport.ended)

    def test_exit_code(self):
        """exit(3) ends with ProcessTerminated(exitCode=3)."""
        self.transport.exit(3)
        reason = self.proto.events[-1][1]
        reason.trap(error.ProcessTerminated)
        self.assertEqual(reason.value.exitCode, 3)
        self.assertIsNone(reason.value.signal)

    def test_killed(self):
        """killed() ends with ProcessTerminated(signal=SIGKILL); names are accepted."""
        self.transport.killed()
        reason = self.proto.events[-1][1]
        reason.trap(error.ProcessTerminated)
        self.assertEqual(reason.value.signal, signal.SIGKILL)
        other = self.reactor.spawnProcess(RecordingProtocol(), "/b", ["/b"])
        other.killed("TERM")
        self.assertEqual(other.protocol.events[-1][1].value.signal, signal.SIGTERM)

    def test_after_end(self):
        """After the end: signalProcess raises ProcessExitedAlready; controls refuse."""
        self.transport.exit(0)
        self.assertRaises(error.ProcessExitedAlready, self.transport.signalProcess, "KILL")
        self.assertRaises(RuntimeError, self.transport.child_says, b"x\n")
        self.assertRaises(RuntimeError, self.transport.exit, 0)
        self.assertRaises(RuntimeError, self.transport.killed)
        self.transport.write(b"late\n")
        self.assertEqual(self.transport.late_writes, [b"late\n"])

    def test_addresses(self):
        """getHost/getPeer return process addresses, not errors."""
        self.assertIsNotNone(self.transport.getHost())
        self.assertIsNotNone(self.transport.getPeer())
