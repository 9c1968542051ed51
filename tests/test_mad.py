"""Unit tests for :mod:`nebtwist.mad`, on the fake process reactor."""

import base64
import os

from lxml import etree
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from nebtwist import paths
from nebtwist.errors import DriverCrashed, DriverError, DriverTimeout
from nebtwist.interfaces import (
    IInformationDriver,
    ITransferDriver,
    IVirtualMachineDriver,
    VMMAction,
)
from nebtwist.log import OneLogger
from nebtwist.mad import (
    STOP_TIMEOUT,
    InformationMad,
    MadProcess,
    TransferMad,
    VirtualMachineMad,
    build_driver,
    executable_candidates,
    not_found_message,
    format_vmm_message,
    resolve_executable,
)
from nebtwist.testing import FakeProcessReactor

VM_XML = """<VM><ID>7</ID><UID>0</UID><NAME>web &amp; db</NAME>
<TEMPLATE><MEMORY>512</MEMORY><CPU>0.5</CPU></TEMPLATE></VM>"""


class AdapterInterfaceTests(SynchronousTestCase):
    """Each adapter provides its driver interface (checked first)."""

    def test_information(self):
        mad = InformationMad(FakeProcessReactor(), "im_dummy", "/bin/true")
        self.assertTrue(verifyObject(IInformationDriver, mad))
        self.assertEqual(mad.name, "im_dummy")

    def test_virtual_machine(self):
        mad = VirtualMachineMad(FakeProcessReactor(), "vmm_dummy", "/bin/true")
        self.assertTrue(verifyObject(IVirtualMachineDriver, mad))
        self.assertEqual(mad.name, "vmm_dummy")

    def test_transfer(self):
        mad = TransferMad(FakeProcessReactor(), "tm_dummy", "/bin/true")
        self.assertTrue(verifyObject(ITransferDriver, mad))
        self.assertEqual(mad.name, "tm_dummy")

    def test_fake_reactor_is_enough(self):
        """What MadProcess needs from its reactor is what the fake provides."""
        reactor = FakeProcessReactor()
        self.assertTrue(verifyObject(IReactorProcess, reactor))
        self.assertTrue(verifyObject(IReactorTime, reactor))


class MadTestMixin:
    """Builds a MadProcess on a FakeProcessReactor, capturing its log events."""

    cls = MadProcess
    tag = "VMM"

    def make(self, **kwargs):
        self.reactor = FakeProcessReactor()
        self.events = []
        self.logs = []
        kwargs.setdefault("family_tag", self.tag)
        kwargs.setdefault("on_log", lambda *a: self.logs.append(a))
        kwargs.setdefault("env", {"PATH": "/usr/bin", "ONE_LOCATION": "/one"})
        self.mad = self.cls(self.reactor, "drv", "/opt/drv", "-t 15 kvm", **kwargs)
        self.mad.log = OneLogger(self.tag, observer=self.events.append)
        return self.mad

    def start(self, **kwargs):
        """Start a MadProcess and complete its INIT handshake."""
        mad = self.make(**kwargs)
        mad.startService()
        self.child.child_says(b"INIT SUCCESS\n")
        self.addCleanup(self._stop)
        return mad

    def _stop(self):
        if self.mad.running:
            d = self.mad.stopService()
            if not self.child.ended:
                self.child.exit(0)
            self.successResultOf(d)

    @property
    def child(self):
        return self.reactor.spawned[-1].transport

    def sent(self):
        """Lines written to the current child after INIT."""
        return [l for l in self.child.written_lines if l != "INIT"]

    def texts(self, level=None):
        return [
            formatEvent(e)
            for e in self.events
            if level is None or e["log_level"] == level
        ]


class StartupTests(MadTestMixin, SynchronousTestCase):
    """Spawning, the INIT handshake, and restarts around it."""

    def test_spawn(self):
        """startService spawns the executable with split arguments, env and pipes."""
        mad = self.make()
        mad.startService()
        spawned = self.reactor.spawned[0]
        # through /bin/sh with SIGINT ignored, exec'd in its place (mad.SPAWN_SCRIPT)
        self.assertEqual(spawned.executable, "/bin/sh")
        self.assertEqual(spawned.args, ["/bin/sh", "-c", 'trap "" INT; exec "$0" "$@"',
                                        "/opt/drv", "-t", "15", "kvm"])
        self.assertEqual(spawned.env, {"PATH": "/usr/bin", "ONE_LOCATION": "/one"})
        self.assertEqual(spawned.childFDs, {0: "w", 1: "r", 2: "r"})
        self.assertEqual(self.child.written, b"INIT\n")
        mad.stopService()
        self.child.exit(0)

    def test_shlex_arguments(self):
        """Arguments are split like a shell would, quotes included."""
        mad = MadProcess(FakeProcessReactor(), "d", "/d", '-c 400 "two words"')
        self.assertEqual(mad.argv, ["/d", "-c", "400", "two words"])

    def test_default_env(self):
        """Without env the child gets a copy of os.environ."""
        mad = MadProcess(FakeProcessReactor(), "d", "/d")
        self.assertEqual(mad.env, dict(os.environ))
        self.assertIsNot(mad.env, os.environ)

    def test_init_success(self):
        """INIT SUCCESS fires ready/started and logs the driver as loaded."""
        mad = self.make()
        mad.startService()
        d1, d2 = mad.ready, mad.started()
        self.assertNoResult(d1)
        self.child.child_says(b"INIT SUCCESS\n")
        self.assertIs(self.successResultOf(d1), mad)
        self.assertIs(self.successResultOf(d2), mad)
        self.assertIs(self.successResultOf(mad.started()), mad)
        self.assertIn("Driver drv loaded.", self.texts(LogLevel.info))
        self.assertIn("Loading driver: drv", self.texts(LogLevel.info))
        self.addCleanup(self._stop)

    def test_init_failure(self):
        """INIT FAILURE: error logged, child killed, restarted after the delay."""
        mad = self.make(restart_delay=2)
        mad.startService()
        ready = mad.started()
        first = self.child
        first.child_says(b"INIT FAILURE missing hypervisor\n")
        self.assertEqual(first.signals, ["KILL"])
        self.assertTrue(any("missing hypervisor" in t for t in self.texts(LogLevel.error)))
        self.assertNoResult(ready)
        first.killed()
        self.reactor.advance(1.9)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(self.child.written, b"INIT\n")
        self.child.child_says(b"INIT SUCCESS\n")
        self.assertIs(self.successResultOf(ready), mad)
        self.addCleanup(self._stop)

    def test_init_timeout(self):
        """No answer to INIT within init_timeout: error, kill, restart."""
        mad = self.make(init_timeout=5, restart_delay=1)
        mad.startService()
        first = self.child
        self.reactor.advance(4.9)
        self.assertEqual(first.signals, [])
        self.reactor.advance(0.1)
        self.assertEqual(first.signals, ["KILL"])
        self.assertTrue(any("did not answer INIT" in t for t in self.texts(LogLevel.error)))
        self.reactor.advance(1)
        self.assertEqual(len(self.reactor.spawned), 2)
        # The abandoned child's late words and end change nothing.
        first.child_says(b"INIT SUCCESS\n")
        first.killed()
        self.assertEqual(mad.state, "starting")
        self.child.child_says(b"INIT SUCCESS\n")
        self.assertEqual(mad.state, "ready")
        self.addCleanup(self._stop)

    def test_backoff(self):
        """Restart delays double up to max_restart_delay; INIT SUCCESS resets them."""
        mad = self.make(restart_delay=1, max_restart_delay=4, init_timeout=100)
        mad.startService()
        delays = []
        for _ in range(5):
            self.child.child_says(b"INIT FAILURE no\n")
            self.child.killed()
            before = len(self.reactor.spawned)
            waited = 0
            while len(self.reactor.spawned) == before:
                self.reactor.advance(0.5)
                waited += 0.5
            delays.append(waited)
        self.assertEqual(delays, [1, 2, 4, 4, 4])
        self.child.child_says(b"INIT SUCCESS\n")
        self.child.exit(1)
        self.reactor.advance(1)
        self.assertEqual(len(self.reactor.spawned), 7)
        self.addCleanup(self._stop)

    def test_spawn_error(self):
        """A spawn that raises is logged and retried with backoff."""
        mad = self.make(restart_delay=1)
        self.reactor.spawn_error = OSError(2, "No such file or directory")
        mad.startService()
        self.assertEqual(self.reactor.spawned, [])
        self.assertTrue(any("Cannot start driver drv" in t for t in self.texts(LogLevel.error)))
        self.failureResultOf(mad.request("POLL", 1), DriverCrashed)
        self.reactor.spawn_error = None
        self.reactor.advance(1)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.child.child_says(b"INIT SUCCESS\n")
        self.assertEqual(mad.state, "ready")
        self.addCleanup(self._stop)

    def test_requests_held_during_init(self):
        """Requests made during the handshake are written after INIT SUCCESS."""
        mad = self.make()
        mad.startService()
        d = mad.request("MONITOR", 1, "h1", "0")
        self.assertEqual(self.child.written, b"INIT\n")
        self.child.child_says(b"INIT SUCCESS\n")
        self.assertEqual(self.sent(), ["MONITOR 1 h1 0"])
        self.child.child_says(b"MONITOR SUCCESS 1 A=1\n")
        self.assertEqual(self.successResultOf(d), "A=1")
        self.addCleanup(self._stop)

    def test_held_requests_fail_on_init_failure(self):
        """Held requests fail with DriverCrashed if INIT fails."""
        mad = self.make()
        mad.startService()
        d = mad.request("MONITOR", 1, "h1", "0")
        self.child.child_says(b"INIT FAILURE bad\n")
        self.failureResultOf(d, DriverCrashed)
        self.child.killed()

    def test_not_started(self):
        """A request before startService fails at once with DriverCrashed."""
        mad = self.make()
        self.failureResultOf(mad.request("POLL", 1), DriverCrashed)


class RequestTests(MadTestMixin, SynchronousTestCase):
    """Requests, replies, LOG lines, timeouts and crashes."""

    def test_request_line(self):
        """request writes 'ACTION oid args...'; SUCCESS fires with the info."""
        mad = self.start()
        d = mad.request("deploy", 12, "a", "b")
        self.assertEqual(self.sent(), ["DEPLOY 12 a b"])
        self.assertNoResult(d)
        self.child.child_says(b"DEPLOY SUCCESS 12 one two  three\n")
        self.assertEqual(self.successResultOf(d), "one two  three")

    def test_success_without_info(self):
        """A SUCCESS without info fires with ''."""
        mad = self.start()
        d = mad.request("TRANSFER", 3, "/x")
        self.child.child_says(b"TRANSFER SUCCESS 3\n")
        self.assertEqual(self.successResultOf(d), "")

    def test_failure(self):
        """FAILURE errbacks with DriverError carrying the info as is."""
        mad = self.start()
        d = mad.request("DEPLOY", 4, "x")
        info = "ERROR MESSAGE --8<------ boom ERROR MESSAGE ------>8--"
        self.child.child_says(f"DEPLOY FAILURE 4 {info}\n".encode())
        f = self.failureResultOf(d, DriverError)
        self.assertEqual(f.value.message, info)
        self.assertNotIsInstance(f.value, (DriverTimeout, DriverCrashed))

    def test_failure_without_info(self):
        """A FAILURE without info carries '-'."""
        mad = self.start()
        d = mad.request("DEPLOY", 4, "x")
        self.child.child_says(b"DEPLOY FAILURE 4\n")
        self.assertEqual(self.failureResultOf(d, DriverError).value.message, "-")

    def test_interleaved(self):
        """Replies for several ids arrive in any order and reach their callers."""
        mad = self.start()
        ds = {i: mad.request("POLL", i, "msg") for i in (1, 2, 3)}
        other = mad.request("DEPLOY", 2, "msg")
        self.child.child_says(b"POLL SUCCESS 3 c\nDEPLOY SUCCESS 2 dep\n")
        self.child.child_says(b"POLL FAILURE 1 a\nPOLL SUCCESS 2 b\n")
        self.assertEqual(self.successResultOf(ds[3]), "c")
        self.assertEqual(self.successResultOf(ds[2]), "b")
        self.assertEqual(self.successResultOf(other), "dep")
        self.assertEqual(self.failureResultOf(ds[1], DriverError).value.message, "a")

    def test_fifo_same_key(self):
        """Two requests with the same (ACTION, id) are answered in call order."""
        mad = self.start()
        first = mad.request("POLL", 5, "x")
        second = mad.request("POLL", 5, "y")
        self.child.child_says(b"POLL SUCCESS 5 one\n")
        self.assertEqual(self.successResultOf(first), "one")
        self.assertNoResult(second)
        self.child.child_says(b"POLL SUCCESS 5 two\n")
        self.assertEqual(self.successResultOf(second), "two")

    def test_long_lines(self):
        """200 KB requests and replies pass whole, in one chunk or many."""
        mad = self.start()
        big = "QUJD" * 50000  # 200 KB of base64
        d = mad.request("DEPLOY", 1, big)
        self.assertEqual(self.sent(), ["DEPLOY 1 " + big])
        self.child.child_says(f"DEPLOY SUCCESS 1 {big}\n".encode())
        self.assertEqual(self.successResultOf(d), big)

        d = mad.request("POLL", 2, "x")
        data = f"POLL SUCCESS 2 {big}\n".encode()
        for i in range(0, len(data), 1000):
            self.child.child_says(data[i : i + 1000])
        self.assertEqual(self.successResultOf(d), big)

    def test_split_reads(self):
        """A reply delivered byte by byte (with \\r\\n) is one line."""
        mad = self.start()
        d = mad.request("MONITOR", 9, "h", "0")
        for b in b"MONITOR SUCCESS 9 CPU=1 MEM=2\r\n":
            self.assertNoResult(d)
            self.child.child_says(bytes([b]))
        self.assertEqual(self.successResultOf(d), "CPU=1 MEM=2")

    def test_several_lines_one_chunk(self):
        """Several lines in one chunk, the last one incomplete."""
        mad = self.start()
        a, b = mad.request("POLL", 1, "x"), mad.request("POLL", 2, "x")
        self.child.child_says(b"POLL SUCCESS 1 a\nPOLL SUCC")
        self.assertEqual(self.successResultOf(a), "a")
        self.assertNoResult(b)
        self.child.child_says(b"ESS 2 b\n")
        self.assertEqual(self.successResultOf(b), "b")

    def test_log_lines(self):
        """LOG lines reach on_log and oned.log at the mapped level."""
        self.start()
        self.child.child_says(
            b"LOG I 5 Successfully execute network driver operation: pre.\n"
            b"LOG E - global {trouble}\n"
            b"LOG D 6 debug text\n"
            b"LOG W 7 warning text\n"
        )
        self.assertEqual(
            self.logs,
            [
                ("I", 5, "Successfully execute network driver operation: pre."),
                ("E", None, "global {trouble}"),
                ("D", 6, "debug text"),
                ("W", 7, "warning text"),
            ],
        )
        self.assertIn(
            "VM 5: Successfully execute network driver operation: pre.",
            self.texts(LogLevel.info),
        )
        self.assertIn("global {trouble}", self.texts(LogLevel.error))
        self.assertIn("VM 6: debug text", self.texts(LogLevel.debug))
        self.assertIn("VM 7: warning text", self.texts(LogLevel.warn))
        self.assertTrue(all(e["one_module"] == "VMM" for e in self.events))

    def test_log_without_on_log(self):
        """Without on_log, LOG lines still reach oned.log; a failing on_log is contained."""
        self.start(on_log=None)
        self.child.child_says(b"LOG I 5 hello\n")
        self.assertIn("VM 5: hello", self.texts(LogLevel.info))

        def boom(*args):
            raise RuntimeError("on_log bug")

        self.mad.on_log = boom
        d = self.mad.request("POLL", 1, "x")
        self.child.child_says(b"LOG I 1 again\nPOLL SUCCESS 1 ok\n")
        self.assertEqual(self.successResultOf(d), "ok")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 0)
        self.assertTrue(any(e.get("log_failure") for e in self.events))

    def test_stderr_logged_at_debug(self):
        """Child stderr lines are logged at debug."""
        self.start()
        self.child.child_says(b"Traceback (most recent call last):\n", fd=2)
        self.assertTrue(
            any("Traceback" in t for t in self.texts(LogLevel.debug))
        )

    def test_unexpected_reply_ignored(self):
        """A reply nobody waits for, or a malformed line, is logged as Ignored at debug."""
        self.start()
        self.child.child_says(b"DEPLOY SUCCESS 99 x\ngarbage\n")
        self.assertIn("Ignored: DEPLOY SUCCESS 99 x", self.texts(LogLevel.debug))
        self.assertIn("Ignored: garbage", self.texts(LogLevel.debug))

    def test_timeout(self):
        """No reply within the timeout: DriverTimeout; a late reply is ignored."""
        mad = self.start()
        d = mad.request("DEPLOY", 3, "x", timeout=10)
        self.reactor.advance(9.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        f = self.failureResultOf(d, DriverTimeout)
        self.assertIn("DEPLOY 3", f.value.message)
        self.child.child_says(b"DEPLOY SUCCESS 3 late\n")
        self.assertIn("Ignored: DEPLOY SUCCESS 3 late", self.texts(LogLevel.debug))

    def test_default_timeout(self):
        """request_timeout applies when no timeout is given; 0 waits forever."""
        mad = self.start(request_timeout=30)
        d = mad.request("POLL", 1, "x")
        forever = mad.request("POLL", 2, "x", timeout=0)
        self.reactor.advance(30)
        self.failureResultOf(d, DriverTimeout)
        self.reactor.advance(10000)
        self.assertNoResult(forever)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        mad.stopService()
        self.failureResultOf(forever, DriverCrashed)

    def test_reply_cancels_timer(self):
        """A reply cancels the request's timer."""
        mad = self.start()
        d = mad.request("POLL", 1, "x")
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.child.child_says(b"POLL SUCCESS 1 ok\n")
        self.successResultOf(d)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancel(self):
        """Cancelling a request forgets it; its reply is then ignored."""
        mad = self.start()
        d = mad.request("POLL", 1, "x")
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.child.child_says(b"POLL SUCCESS 1 ok\n")
        self.assertIn("Ignored: POLL SUCCESS 1 ok", self.texts(LogLevel.debug))

    def test_bad_arguments(self):
        """Newlines in any part, or a blank action, raise ValueError."""
        mad = self.start()
        self.assertRaises(ValueError, mad.request, "POLL", 1, "a\nb")
        self.assertRaises(ValueError, mad.request, "PO LL", 1)
        self.assertRaises(ValueError, mad.request, "", 1)
        self.assertEqual(self.sent(), [])

    def test_crash(self):
        """A crash fails in-flight requests, logs an error, restarts and re-INITs."""
        mad = self.start(restart_delay=2)
        a = mad.request("DEPLOY", 1, "x")
        b = mad.request("POLL", 2, "x")
        self.child.exit(3)
        for d in (a, b):
            f = self.failureResultOf(d, DriverCrashed)
            self.assertIn("driver drv exited with code 3", f.value.message)
        self.assertIn("Driver drv exited with code 3", self.texts(LogLevel.error))
        # Down: requests fail at once.
        self.failureResultOf(mad.request("POLL", 3, "x"), DriverCrashed)
        ready = mad.started()
        self.reactor.advance(1.9)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(self.child.written, b"INIT\n")
        self.child.child_says(b"INIT SUCCESS\n")
        self.assertIs(self.successResultOf(ready), mad)
        d = mad.request("POLL", 3, "x")
        self.child.child_says(b"POLL SUCCESS 3 ok\n")
        self.assertEqual(self.successResultOf(d), "ok")

    def test_killed_by_signal(self):
        """A child killed by a signal is reported as such."""
        mad = self.start()
        d = mad.request("DEPLOY", 1, "x")
        self.child.killed(9)
        f = self.failureResultOf(d, DriverCrashed)
        self.assertIn("killed by signal 9", f.value.message)

    def test_last_line_without_newline(self):
        """A reply the child wrote without a newline before dying still counts."""
        mad = self.start()
        d = mad.request("POLL", 1, "x")
        self.child.child_says(b"POLL SUCCESS 1 final")
        self.child.exit(0)
        self.assertEqual(self.successResultOf(d), "final")


class StopTests(MadTestMixin, SynchronousTestCase):
    """stopService: FINALIZE, the 5 s kill, no restart."""

    def test_stop_finalize(self):
        """stopService writes FINALIZE, closes stdin and waits for the exit."""
        mad = self.start()
        d = mad.stopService()
        self.assertEqual(self.sent(), ["FINALIZE"])
        self.assertTrue(self.child.stdin_closed)
        self.assertNoResult(d)
        self.child.exit(0)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.child.signals, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_kills_after_timeout(self):
        """A driver that ignores FINALIZE gets SIGKILL after 5 s; no restart follows."""
        mad = self.start()
        d = mad.stopService()
        self.reactor.advance(STOP_TIMEOUT - 0.1)
        self.assertEqual(self.child.signals, [])
        self.reactor.advance(0.1)
        self.assertEqual(self.child.signals, ["KILL"])
        self.assertNoResult(d)
        self.child.killed()
        self.successResultOf(d)
        self.reactor.advance(1000)
        self.assertEqual(len(self.reactor.spawned), 1)

    def test_stop_fails_in_flight(self):
        """In-flight requests fail with DriverCrashed on stop; later ones at once."""
        mad = self.start()
        a = mad.request("DEPLOY", 1, "x")
        d = mad.stopService()
        self.failureResultOf(a, DriverCrashed)
        self.failureResultOf(mad.request("POLL", 1), DriverCrashed)
        self.child.exit(0)
        self.successResultOf(d)

    def test_stop_waiters(self):
        """started() waiters errback with DriverCrashed if stopped before INIT."""
        mad = self.make()
        mad.startService()
        ready = mad.started()
        d = mad.stopService()
        self.failureResultOf(ready, DriverCrashed)
        self.child.exit(0)
        self.successResultOf(d)

    def test_stop_while_down(self):
        """Stopping during the restart delay cancels the restart."""
        mad = self.start(restart_delay=5)
        self.child.exit(1)
        d = mad.stopService()
        self.successResultOf(d)
        self.reactor.advance(100)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_waits_for_abandoned(self):
        """stopService also waits for a killed child that has not ended yet."""
        mad = self.start()
        first = self.child
        first.exit(1)
        self.reactor.advance(1)
        second = self.child
        second.child_says(b"INIT FAILURE x\n")  # killed, not yet ended
        d = mad.stopService()
        self.assertNoResult(d)
        second.killed()
        self.successResultOf(d)


class InformationMadTests(MadTestMixin, SynchronousTestCase):
    """The IM adapter's MONITOR requests."""

    cls = InformationMad
    tag = "InM"

    def test_monitor(self):
        """monitor sends MONITOR hid hostname 0|1 and fires with the info."""
        mad = self.start()
        d = mad.monitor(3, "host01", update_remotes=True)
        e = mad.monitor(4, "host02")
        self.assertEqual(self.sent(), ["MONITOR 3 host01 1", "MONITOR 4 host02 0"])
        self.child.child_says(b"MONITOR SUCCESS 4 TOTALCPU=800 FREECPU=800\n")
        self.child.child_says(b"MONITOR FAILURE 3 host host01 is down\n")
        self.assertEqual(self.successResultOf(e), "TOTALCPU=800 FREECPU=800")
        f = self.failureResultOf(d, DriverError)
        self.assertEqual(f.value.message, "host host01 is down")

    def test_family_tag_and_subject(self):
        """IM logs go under InM, with 'Host <id>:'."""
        self.start()
        self.child.child_says(b"LOG D 3 Monitoring host host01\n")
        self.assertIn("Host 3: Monitoring host host01", self.texts(LogLevel.debug))
        self.assertEqual(self.mad.family_tag, "InM")


class VirtualMachineMadTests(MadTestMixin, SynchronousTestCase):
    """The VMM adapter's 3.4 base64 VMM_DRIVER_ACTION_DATA messages."""

    cls = VirtualMachineMad

    def decode(self, line):
        action, vid, msg = line.split(" ")
        return action, vid, etree.fromstring(base64.b64decode(msg))

    def test_message_shape(self):
        """The message is VMM_DRIVER_ACTION_DATA with the fields in 3.4 order, then VM."""
        action = VMMAction(
            host="h1",
            net_drv="dummy",
            deploy_id="one-7",
            local_deployment_file="/var/7/deployment.0",
            remote_deployment_file="/ds/0/7/deployment.0",
            vm_xml=VM_XML,
        )
        root = etree.fromstring(base64.b64decode(format_vmm_message(action)))
        self.assertEqual(root.tag, "VMM_DRIVER_ACTION_DATA")
        self.assertEqual(
            [c.tag for c in root],
            [
                "HOST", "NET_DRV", "MIGR_HOST", "MIGR_NET_DRV", "DEPLOY_ID",
                "LOCAL_DEPLOYMENT_FILE", "REMOTE_DEPLOYMENT_FILE", "CHECKPOINT_FILE",
                "VM",
            ],
        )
        self.assertEqual(root.findtext("HOST"), "h1")
        self.assertEqual(root.findtext("MIGR_HOST"), "")
        self.assertEqual(root.findtext("VM/NAME"), "web & db")
        self.assertEqual(root.findtext("VM/TEMPLATE/MEMORY"), "512")
        self.assertNotIn(b"<?xml", base64.b64decode(format_vmm_message(action)))

    def test_values_are_escaped(self):
        """Field values with XML specials survive (no string concatenation)."""
        action = VMMAction(host="a<b>&c", checkpoint_file="/x/'\"")
        root = etree.fromstring(base64.b64decode(format_vmm_message(action)))
        self.assertEqual(root.findtext("HOST"), "a<b>&c")
        self.assertEqual(root.findtext("CHECKPOINT_FILE"), "/x/'\"")
        self.assertIsNone(root.find("VM"))

    def test_vm_xml_with_declaration(self):
        """A VM document with an XML declaration is accepted."""
        action = VMMAction(vm_xml='<?xml version="1.0" encoding="UTF-8"?>\n<VM><ID>1</ID></VM>')
        root = etree.fromstring(base64.b64decode(format_vmm_message(action)))
        self.assertEqual(root.findtext("VM/ID"), "1")

    def test_doctype_refused(self):
        """A VM XML with a DOCTYPE (entity tricks) is refused, nothing resolved."""
        evil = (
            '<!DOCTYPE VM [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            "<VM><NAME>&x;</NAME></VM>"
        )
        self.assertRaises(ValueError, format_vmm_message, VMMAction(vm_xml=evil))

    def test_actions(self):
        """Each method sends its action word with the VM id and the message."""
        mad = self.start()
        action = VMMAction(host="h1", vm_xml=VM_XML)
        calls = [
            ("DEPLOY", mad.deploy), ("SHUTDOWN", mad.shutdown), ("CANCEL", mad.cancel),
            ("SAVE", mad.save), ("RESTORE", mad.restore), ("MIGRATE", mad.migrate),
            ("REBOOT", mad.reboot), ("POLL", mad.poll), ("CHECKPOINT", mad.checkpoint),
        ]
        ds = [m(7, action) for _, m in calls]
        lines = self.sent()
        self.assertEqual(len(lines), len(calls))
        for (verb, _), line in zip(calls, lines):
            got_verb, vid, root = self.decode(line)
            self.assertEqual((got_verb, vid), (verb, "7"))
            self.assertEqual(root.findtext("HOST"), "h1")
            self.assertEqual(root.findtext("VM/ID"), "7")
        for (verb, _), d in zip(calls, ds):
            self.child.child_says(f"{verb} SUCCESS 7 info-{verb} \n".encode())
        results = [self.successResultOf(d) for d in ds]
        self.assertEqual(results[0], "info-DEPLOY")  # stripped deploy id
        self.assertEqual(results[4], "info-RESTORE")
        self.assertEqual(results[1], "info-SHUTDOWN ")  # others as they came

    def test_bad_vm_xml(self):
        """An unparsable VM XML errbacks with DriverError and sends nothing."""
        mad = self.start()
        d = mad.deploy(7, VMMAction(vm_xml="<VM><ID>"))
        f = self.failureResultOf(d, DriverError)
        self.assertIn("invalid VM XML", f.value.message)
        self.assertEqual(self.sent(), [])


class TransferMadTests(MadTestMixin, SynchronousTestCase):
    """The TM adapter's TRANSFER requests."""

    cls = TransferMad
    tag = "TM"

    def test_transfer(self):
        """transfer sends TRANSFER vid path and fires with None."""
        mad = self.start()
        d = mad.transfer(5, "/var/5/transfer.0.prolog")
        self.assertEqual(self.sent(), ["TRANSFER 5 /var/5/transfer.0.prolog"])
        self.child.child_says(b"TRANSFER SUCCESS 5\n")
        self.assertIsNone(self.successResultOf(d))

    def test_transfer_failure(self):
        mad = self.start()
        d = mad.transfer(5, "/s")
        self.child.child_says(b"TRANSFER FAILURE 5 clone failed\n")
        self.assertEqual(self.failureResultOf(d, DriverError).value.message, "clone failed")


class ResolveAndBuildTests(SynchronousTestCase):
    """resolve_executable and build_driver."""

    def test_absolute(self):
        self.assertEqual(resolve_executable("/usr/lib/one/mads/x", "im"), "/usr/lib/one/mads/x")

    def test_family_folder(self):
        """A relative name found in drivers/<family>/ resolves there."""
        self.assertEqual(
            resolve_executable("dummy", "vmm"), paths.shipped("drivers", "vmm", "dummy")
        )
        self.assertTrue(os.path.isabs(resolve_executable("dummy", "tm")))

    def test_fallback(self):
        """Otherwise it resolves under drivers/ (the first candidate when nothing exists)."""
        self.assertEqual(
            resolve_executable("one_im_nothing", "im"), paths.shipped("drivers", "im",
                                                                      "one_im_nothing")
        )

    def test_opennebula_names(self):
        """The seed's oned.conf executables (OpenNebula 1.4/3.4 mads) resolve to
        the nebtwist drivers doing their work."""
        for name, family, ours in (("one_im_ssh", "im", "ssh"), ("one_vmm_kvm", "vmm", "kvm"),
                                   ("one_vmm_xen", "vmm", "kvm"), ("one_tm", "tm", "exec"),
                                   ("one_hm", "hm", "exec")):
            self.assertEqual(resolve_executable(name, family),
                             paths.shipped("drivers", family, ours), name)
        # an alias of another family is not taken
        self.assertNotEqual(resolve_executable("one_tm", "vmm"),
                            paths.shipped("drivers", "tm", "exec"))

    def test_not_found_message(self):
        """A missing driver is reported with every path tried and what exists."""
        message = not_found_message("one_vmm_nothing", "vmm")
        for path in executable_candidates("one_vmm_nothing", "vmm"):
            self.assertIn(path, message)
        self.assertIn(paths.shipped("drivers", "vmm", "one_vmm_nothing"), message)
        self.assertIn("drivers/vmm has: ", message)
        self.assertIn("dummy", message.split("has: ")[1])

    def test_vmm_type_and_defaults(self):
        """A VM_MAD's TYPE and DEFAULT file become hv_type and defaults."""
        reactor = FakeProcessReactor()
        drv = build_driver("vmm", reactor, {"NAME": "vmm_qemu", "EXECUTABLE": "dummy",
                                            "TYPE": "QEMU"}, {})
        self.assertEqual((drv.hv_type, drv.defaults), ("qemu", None))
        self.assertEqual(build_driver("vmm", reactor, {"EXECUTABLE": "dummy"}, {}).hv_type,
                         "xml")
        with self.assertRaises(ValueError) as e:
            build_driver("vmm", reactor, {"EXECUTABLE": "dummy", "TYPE": "vbox"}, {})
        self.assertIn("TYPE must be", str(e.exception))
        etc = self.mktemp()
        os.makedirs(os.path.join(etc, "etc", "vmm_x"))
        with open(os.path.join(etc, "etc", "vmm_x", "x.conf"), "w") as f:
            f.write('OS = [ ARCH = "x86_64" ]\n')
        drv = build_driver("vmm", reactor, {"EXECUTABLE": "dummy", "TYPE": "kvm",
                                            "DEFAULT": "vmm_x/x.conf"}, {"ONE_LOCATION": etc})
        self.assertEqual(drv.defaults.get("OS"), {"ARCH": "x86_64"})
        with self.assertRaises(ValueError) as e:
            build_driver("vmm", reactor, {"EXECUTABLE": "dummy", "TYPE": "kvm",
                                          "DEFAULT": "vmm_x/missing.conf"}, {"ONE_LOCATION": etc})
        self.assertIn(os.path.join(etc, "etc", "vmm_x", "missing.conf"), str(e.exception))
        with open(os.path.join(etc, "etc", "vmm_x", "bad.conf"), "w") as f:
            f.write('OS = [ ARCH = \n')
        with self.assertRaises(ValueError):
            build_driver("vmm", reactor, {"EXECUTABLE": "dummy", "TYPE": "kvm",
                                          "DEFAULT": "vmm_x/bad.conf"}, {"ONE_LOCATION": etc})

    def test_tm_script_set_and_shared(self):
        """A TM_MAD's script set comes from its ARGUMENTS (1.4 form too); ssh is
        not shared unless SHARED says so."""
        reactor = FakeProcessReactor()

        def tm(arguments, **extra):
            return build_driver("tm", reactor, dict(EXECUTABLE="one_tm", ARGUMENTS=arguments,
                                                    **extra), {})

        self.assertEqual((tm("ssh").script_set, tm("ssh").shared), ("ssh", False))
        self.assertEqual((tm("tm_nfs/tm_nfs.conf").script_set, tm("nfs").shared),
                         ("shared", True))
        self.assertEqual(tm("-w 60 tm_ssh/tm_ssh.conf").script_set, "ssh")
        self.assertEqual(tm("qcow2").shared, True)
        self.assertEqual(tm("ssh", SHARED="yes").shared, True)
        self.assertEqual(tm("qcow2", SHARED="NO").shared, False)
        self.assertRaises(ValueError, tm, "ssh", SHARED="maybe")
        dummy = build_driver("tm", reactor, {"EXECUTABLE": "dummy"}, {})
        self.assertEqual((dummy.script_set, dummy.shared), ("dummy", True))

    def test_bad_family(self):
        self.assertRaises(ValueError, resolve_executable, "x", "zz")

    def test_build(self):
        """build_driver makes the adapter of each kind from an oned.conf vector."""
        reactor = FakeProcessReactor()
        im = build_driver(
            "im", reactor,
            {"NAME": "im_dummy", "EXECUTABLE": "dummy", "ARGUMENTS": "-c 400"}, {"A": "1"},
        )
        self.assertIsInstance(im, InformationMad)
        self.assertEqual(im.name, "im_dummy")
        self.assertEqual(im.executable, paths.shipped("drivers", "im", "dummy"))
        self.assertEqual(im.argv[1:], ["-c", "400"])
        self.assertEqual(im.env, {"A": "1"})
        self.assertEqual(im.family_tag, "InM")

        vmm = build_driver(
            "vmm", reactor,
            {"name": "vmm_dummy", "executable": "/opt/v", "timeout": "12.5"}, None,
        )
        self.assertIsInstance(vmm, VirtualMachineMad)
        self.assertEqual(vmm.request_timeout, 12.5)
        self.assertEqual(vmm.executable, "/opt/v")
        self.assertEqual(vmm.family_tag, "VMM")

        tm = build_driver("tm", reactor, {"EXECUTABLE": "dummy"}, None)
        self.assertIsInstance(tm, TransferMad)
        self.assertEqual(tm.name, "dummy")
        self.assertEqual(tm.family_tag, "TM")

    def test_build_errors(self):
        reactor = FakeProcessReactor()
        self.assertRaises(ValueError, build_driver, "xx", reactor, {"EXECUTABLE": "d"}, None)
        self.assertRaises(ValueError, build_driver, "im", reactor, {"NAME": "a"}, None)
        self.assertRaises(
            ValueError, build_driver, "im", reactor,
            {"NAME": "a", "EXECUTABLE": "d", "TIMEOUT": "soon"}, None,
        )


class DefaultTransferDriverTests(TestCase):
    """DEFAULT_TM_MAD: the TM driver of hosts created without one (3.4 form)."""

    async def test_host_without_tm_takes_the_default(self):
        from lxml import etree as et

        from nebtwist.testing import start_nebula

        neb = await start_nebula(self, [
            'TM_MAD=[name="tm_dummy", executable="dummy"]',
            'TM_MAD=[name="tm_other", executable="dummy"]',
            "DEFAULT_TM_MAD=tm_other",
        ])
        ok, hid, *_ = await neb.call("one.host.allocate", "h34", "im_dummy", "vmm_dummy",
                                     "dummy", -1)
        self.assertTrue(ok, hid)
        ok, vid, *_ = await neb.call("one.vm.allocate", "NAME = a\nCPU = 0.1\nMEMORY = 8\n")
        self.assertTrue(ok, vid)
        ok, err, *_ = await neb.call("one.vm.deploy", vid, hid)
        self.assertTrue(ok, err)
        ok, body, *_ = await neb.call("one.vm.info", vid)
        self.assertEqual(et.fromstring(body.encode()).findtext(".//HISTORY/TMMAD"), "tm_other")

    async def test_unknown_default_is_a_startup_error(self):
        from nebtwist.testing import start_nebula

        with self.assertRaises(Exception) as e:
            await start_nebula(self, ["DEFAULT_TM_MAD=tm_nothing"])
        self.assertIn("DEFAULT_TM_MAD 'tm_nothing' is not a TM_MAD (have: tm_dummy)",
                      str(e.exception))
