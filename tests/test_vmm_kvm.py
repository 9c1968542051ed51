"""Tests of drivers/vmm/kvm, the libvirt VMM driver, as a real subprocess.

The driver is spawned through the core's adapter (``nebtwist.mad.build_driver``)
and talks to real libvirt: libvirt's in-process ``test:///default`` driver for
the protocol (its state lives in the driver process), the root libvirtd
(``qemu:///system``) for a real tiny QEMU domain, and ``qemu+ssh`` through a
fake ``ssh`` command for connection failures and per-host isolation.

Every domain a test creates on ``qemu:///system`` is named ``one-<vid>`` with
vid 9xxxxx (from this process's pid) and is destroyed and undefined by name
in a cleanup; every process started is stopped.
"""

import base64
import os
import shutil
import signal
import socket
import stat
import tempfile
import textwrap
import time

from twisted.internet import defer, protocol
from twisted.internet import reactor as real_reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from nebtwist.errors import DriverError
from nebtwist.interfaces import VMMAction
from nebtwist.mad import build_driver, resolve_executable

try:
    import libvirt
except ImportError:  # pragma: no cover
    libvirt = None

KVM = resolve_executable("kvm", "vmm")

#: A test-driver domain with one interface.
TEST_DOMAIN = """\
<domain type='test'>
  <name>{name}</name>
  <memory unit='KiB'>65536</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
  <devices>
    <interface type='network'><source network='default'/><target dev='vnet{vid}'/></interface>
  </devices>
</domain>
"""

#: A tiny real QEMU (TCG) domain: no disk, SeaBIOS finds nothing to boot and idles.
QEMU_DOMAIN = """\
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices></devices>
</domain>
"""

VM_XML = "<VM><ID>{vid}</ID><NAME>kvm-test-{vid}</NAME><TEMPLATE><MEMORY>32</MEMORY></TEMPLATE></VM>"


def wait_for(predicate, timeout=90.0, step=0.1):
    """Poll ``predicate()`` (in the reactor, non-blocking) until true or ``timeout`` s."""
    deadline = time.monotonic() + timeout

    async def loop():
        while not predicate():
            if time.monotonic() > deadline:
                return False
            await deferLater(step)
        return True

    return defer.ensureDeferred(loop())


def deferLater(seconds):
    d = defer.Deferred()
    real_reactor.callLater(seconds, d.callback, None)
    return d


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class KvmDriverMixin:
    """Starts drivers/vmm/kvm through build_driver; stops it in a cleanup."""

    def setUp(self):
        self.tmp = os.path.abspath(self.mktemp())
        os.makedirs(self.tmp)
        self.logs = []

    async def start(self, arguments, timeout=60):
        mad = build_driver("vmm", real_reactor, {
            "NAME": "vmm_qemu", "EXECUTABLE": KVM, "ARGUMENTS": arguments,
            "TIMEOUT": str(timeout),
        })
        mad.init_timeout = 30
        mad.on_log = lambda *a: self.logs.append(a)
        mad.startService()
        self.addCleanup(mad.stopService)
        await mad.started()
        return mad

    def deployment(self, vid, xml):
        path = os.path.join(self.tmp, f"deployment.{vid}")
        with open(path, "w") as f:
            f.write(xml)
        return path

    def action(self, vid, host="localhost", **kwargs):
        kwargs.setdefault("vm_xml", VM_XML.format(vid=vid))
        return VMMAction(host=host, net_drv="dummy", **kwargs)

    def logged(self, vid, text):
        return [m for (_, oid, m) in self.logs if oid == vid and text in m]


class TestDriverProtocolTests(KvmDriverMixin, TestCase):
    """The protocol against libvirt's test:///default driver."""

    ARGS = "-u test:///default -l test:///default -s 5"

    def setUp(self):
        if libvirt is None:
            raise SkipTest("libvirt-python is not installed")
        super().setUp()

    async def deploy(self, mad, vid, host="localhost"):
        path = self.deployment(vid, TEST_DOMAIN.format(name=f"one-{vid}", vid=vid))
        return await mad.deploy(vid, self.action(vid, host, local_deployment_file=path))

    async def test_lifecycle(self):
        """DEPLOY, POLL, REBOOT, SAVE, POLL d, RESTORE, SHUTDOWN, then gone."""
        mad = await self.start(self.ARGS)
        self.assertEqual(await self.deploy(mad, 5), "one-5")
        self.assertTrue(self.logged(5, "DEPLOY one-5 on localhost (test:///default)"))
        a = self.action(5, deploy_id="one-5")
        info = dict(kv.split("=") for kv in (await mad.poll(5, a)).split())
        self.assertEqual(sorted(info), ["NETRX", "NETTX", "STATE", "USEDCPU", "USEDMEMORY"])
        self.assertEqual(info["STATE"], "a")
        self.assertEqual(info["USEDMEMORY"], "65536")
        self.assertGreaterEqual(float(info["USEDCPU"]), 0.0)
        self.assertEqual(await mad.reboot(5, a), "-")
        ck = os.path.join(self.tmp, "checkpoint")
        a_ck = self.action(5, deploy_id="one-5", checkpoint_file=ck)
        self.assertEqual(await mad.save(5, a_ck), "-")
        self.assertTrue(os.path.exists(ck))
        self.assertEqual(await mad.poll(5, a),
                         "STATE=d USEDCPU=0 USEDMEMORY=0 NETRX=0 NETTX=0")
        self.assertEqual(await mad.restore(5, a_ck), "one-5")
        self.assertIn("STATE=a", await mad.poll(5, a))
        self.assertEqual(await mad.shutdown(5, a), "-")
        self.assertIn("STATE=d", await mad.poll(5, a))
        # Redeploy works: SHUTDOWN undefined it (a second SHUTDOWN is a no-op).
        self.assertEqual(await mad.shutdown(5, a), "-")
        self.assertTrue(self.logged(5, "domain one-5 is already gone"))
        self.assertEqual(await self.deploy(mad, 5), "one-5")
        self.assertEqual(await mad.cancel(5, a), "-")
        self.assertEqual(await mad.cancel(5, a), "-")

    async def test_deploy_running_fails(self):
        """A second DEPLOY of a running domain fails clearly; the first keeps running."""
        mad = await self.start(self.ARGS)
        self.assertEqual(await self.deploy(mad, 6), "one-6")
        e = await self.assertFailure(defer.ensureDeferred(self.deploy(mad, 6)), DriverError)
        self.assertEqual(e.message, "domain one-6 is already running on localhost")
        self.assertIn("STATE=a", await mad.poll(6, self.action(6, deploy_id="one-6")))
        await mad.cancel(6, self.action(6, deploy_id="one-6"))

    async def test_deploy_id_defaults_to_one_vid(self):
        """Without DEPLOY_ID the domain is one-<vid>."""
        mad = await self.start(self.ARGS)
        await self.deploy(mad, 11)
        self.assertIn("STATE=a", await mad.poll(11, self.action(11)))
        self.assertEqual(await mad.cancel(11, self.action(11)), "-")
        self.assertIn("STATE=d", await mad.poll(11, self.action(11)))

    async def test_unknown_domain(self):
        """POLL says d, CANCEL/SHUTDOWN succeed, SAVE/REBOOT fail with libvirt's text."""
        mad = await self.start(self.ARGS)
        a = self.action(7, deploy_id="one-7", checkpoint_file=os.path.join(self.tmp, "ck"))
        self.assertEqual(await mad.poll(7, a), "STATE=d USEDCPU=0 USEDMEMORY=0 NETRX=0 NETTX=0")
        self.assertEqual(await mad.cancel(7, a), "-")
        self.assertEqual(await mad.shutdown(7, a), "-")
        for call in (mad.save, mad.reboot):
            e = await self.assertFailure(call(7, a), DriverError)
            self.assertEqual(e.message, "domain one-7 on localhost: Domain not found")
        e = await self.assertFailure(mad.restore(7, a), DriverError)
        self.assertTrue(e.message.startswith(f"Could not restore from {self.tmp}/ck: "), e.message)

    async def test_migrate_failure_carries_libvirt_text(self):
        """The test driver cannot migrate: FAILURE names the hosts and libvirt's reason."""
        mad = await self.start(self.ARGS)
        await self.deploy(mad, 8)
        a = self.action(8, deploy_id="one-8", migr_host="otherhost", migr_shared="NO")
        e = await self.assertFailure(mad.migrate(8, a), DriverError)
        self.assertIn("Could not migrate one-8 from localhost to otherhost: ", e.message)
        self.assertIn("migration", e.message)
        self.assertTrue(self.logged(8, "copying disks"))
        await mad.cancel(8, self.action(8, deploy_id="one-8"))

    async def test_bad_requests(self):
        """Bad base64, bad XML, a DOCTYPE, no HOST, CHECKPOINT, unknown action."""
        mad = await self.start(self.ARGS)
        e = await self.assertFailure(mad.request("DEPLOY", 3, "%%%not-base64"), DriverError)
        self.assertIn("cannot decode driver message (base64)", e.message)
        junk = base64.b64encode(b"<VMM_DRIVER_ACTION_DATA><HOST>").decode()
        e = await self.assertFailure(mad.request("DEPLOY", 3, junk), DriverError)
        self.assertIn("cannot parse driver message XML", e.message)
        evil = base64.b64encode(
            b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b"<VMM_DRIVER_ACTION_DATA><HOST>&e;</HOST></VMM_DRIVER_ACTION_DATA>").decode()
        e = await self.assertFailure(mad.request("POLL", 3, evil), DriverError)
        self.assertIn("DOCTYPE is not allowed", e.message)
        e = await self.assertFailure(mad.deploy(3, self.action(3, host="")), DriverError)
        self.assertEqual(e.message, "no HOST in driver message")
        e = await self.assertFailure(mad.poll(3, self.action(3, host="a b;c")), DriverError)
        self.assertIn("invalid host name", e.message)
        e = await self.assertFailure(mad.checkpoint(3, self.action(3)), DriverError)
        self.assertIn("not supported", e.message)
        e = await self.assertFailure(mad.request("FROB", 3, junk), DriverError)
        self.assertEqual(e.message, "unknown action")
        e = await self.assertFailure(mad.request("POLL", 3), DriverError)
        self.assertEqual(e.message, "missing driver message")

    async def test_bad_deployment_file(self):
        """Missing file, not XML, DOCTYPE, not a domain: FAILURE, nothing defined."""
        mad = await self.start(self.ARGS)
        missing = os.path.join(self.tmp, "nope")
        e = await self.assertFailure(
            mad.deploy(4, self.action(4, local_deployment_file=missing)), DriverError)
        self.assertEqual(e.message,
                         f"cannot read deployment file {missing}: No such file or directory")
        e = await self.assertFailure(mad.deploy(4, self.action(4)), DriverError)
        self.assertEqual(e.message, "no LOCAL_DEPLOYMENT_FILE in driver message")
        for body, text in (("<domain><name>one-4</name>", "cannot parse deployment file"),
                           ('<!DOCTYPE domain [<!ENTITY n "one-4">]><domain><name>&n;</name>'
                            "</domain>", "cannot parse deployment file"),
                           ("<vm><name>one-4</name></vm>", "is not a libvirt domain"),
                           ("<domain type='test'><name>one-4</name><memory>-5</memory></domain>",
                            "Could not define domain one-4: ")):
            path = self.deployment(4, body)
            e = await self.assertFailure(
                mad.deploy(4, self.action(4, local_deployment_file=path)), DriverError)
            self.assertIn(text, e.message)
            self.assertNotIn("\n", e.message)
        self.assertIn("STATE=d", await mad.poll(4, self.action(4)))

    async def test_parallel_polls(self):
        """Several VMs on several hosts, polled at once, each answers its own state."""
        mad = await self.start(self.ARGS)
        for vid in (21, 22, 23):
            await self.deploy(mad, vid, host=f"h{vid}")
        results = await defer.gatherResults(
            [mad.poll(vid, self.action(vid, host="h21")) for vid in (21, 22, 23, 24)])
        self.assertEqual([r.split()[0] for r in results], ["STATE=a"] * 3 + ["STATE=d"])
        for vid in (21, 22, 23):
            await mad.cancel(vid, self.action(vid))

    async def test_bad_arguments(self):
        """Bad options answer INIT FAILURE with the reason (no traceback)."""
        out = await deferToThread(self._run_raw, ["-m", "frobnicate"], "INIT\nFINALIZE\n")
        self.assertEqual(out, "INIT FAILURE bad arguments: argument -m: "
                              "unknown migration flag 'frobnicate'\n")
        out = await deferToThread(self._run_raw, ["-t", "0"], "INIT\nPOLL 1 x\n")
        self.assertEqual(out.splitlines(),
                         ["INIT FAILURE bad arguments: -t must be at least 1",
                          "POLL FAILURE 1 bad arguments: -t must be at least 1"])

    @staticmethod
    def _run_raw(args, stdin):
        import subprocess
        return subprocess.run([KVM] + args, input=stdin, capture_output=True, text=True,
                              timeout=60).stdout


def fake_ssh(folder, pidfile):
    """A fake ssh command for qemu+ssh URIs: host 'hung' never answers, others fail.

    For 'hung' it records its pid in ``pidfile`` and swallows its input until
    its stdin closes (when the driver exits), so it never outlives the driver.
    """
    path = os.path.join(folder, "fake-ssh")
    with open(path, "w") as f:
        f.write(textwrap.dedent(f"""\
            #!/bin/sh
            for a in "$@"; do
              if [ "$a" = hung ]; then echo $$ > {pidfile}; exec cat >/dev/null; fi
            done
            echo "ssh: connect to host: Connection refused" >&2
            exit 255
            """))
    os.chmod(path, stat.S_IRWXU)
    return path


class ConnectionTests(KvmDriverMixin, TestCase):
    """Connection failures, per-host isolation, reconnect-and-retry."""

    def setUp(self):
        if libvirt is None:
            raise SkipTest("libvirt-python is not installed")
        super().setUp()

    async def test_connection_refused(self):
        """A host whose connection cannot be opened fails with libvirt's message."""
        ssh = fake_ssh(self.tmp, os.path.join(self.tmp, "pid"))
        mad = await self.start(f"-u qemu+ssh://$HOST/system?command={ssh} -l test:///default")
        e = await self.assertFailure(mad.poll(1, self.action(1, host="down01")), DriverError)
        self.assertTrue(e.message.startswith(
            f"cannot connect to qemu+ssh://down01/system?command={ssh}: "), e.message)
        self.assertIn("Connection refused", e.message)
        self.assertNotIn("\n", e.message)

    async def test_hung_host_does_not_delay_others(self):
        """DEPLOY to a host whose ssh never answers waits; other hosts answer at once.

        OpenNebula issue #1702: one slow host must not stall the driver.
        """
        pidfile = os.path.join(self.tmp, "hung.pid")
        ssh = fake_ssh(self.tmp, pidfile)
        # Cleanups run last-in first-out: this one runs after the driver stopped.
        self.addCleanup(self._kill_pidfile, pidfile)
        mad = await self.start(
            f"-u qemu+ssh://$HOST/system?command={ssh} -l test:///default -U good=test:///default")
        path = self.deployment(2, TEST_DOMAIN.format(name="one-2", vid=2))
        hung = mad.deploy(2, self.action(2, host="hung", local_deployment_file=path))
        done = []
        hung.addBoth(done.append)
        self.assertTrue(await wait_for(lambda: os.path.exists(pidfile), 20))
        # The hung host's DEPLOY is stuck in connection set-up; others proceed.
        self.assertEqual(await mad.deploy(3, self.action(3, host="good",
                                          local_deployment_file=self.deployment(
                                              3, TEST_DOMAIN.format(name="one-3", vid=3)))),
                         "one-3")
        self.assertIn("STATE=a", await mad.poll(3, self.action(3, host="good")))
        self.assertIn("STATE=d", await mad.poll(4, self.action(4, host="localhost")))
        e = await self.assertFailure(mad.poll(5, self.action(5, host="down02")), DriverError)
        # libvirt reports ssh's refusal, or (when ssh exited first, on a busy
        # machine) only that its socket closed
        self.assertTrue(e.message.startswith(
            f"cannot connect to qemu+ssh://down02/system?command={ssh}: "), e.message)
        # every answer above came while the hung host's DEPLOY still waits: no
        # time bound is needed to show it did not hold them up
        await deferLater(0.5)
        self.assertEqual(done, [])
        hung.cancel()
        self.flushLoggedErrors()

    async def _kill_pidfile(self, pidfile):
        """The fake ssh ends with the driver (stdin closed); kill it if it lingers."""
        try:
            pid = int(open(pidfile).read())
        except (OSError, ValueError):
            return
        if not await wait_for(lambda: not pid_alive(pid), 10):
            os.kill(pid, signal.SIGKILL)
            self.fail(f"fake ssh {pid} outlived the driver")

    async def test_reconnect_and_retry(self):
        """A connection cut under the driver is reopened; POLL is retried once.

        The driver reaches the root libvirtd through a unix-socket proxy
        (``qemu+unix:///system?socket=<proxy>``) that the test cuts.
        """
        real = "/var/run/libvirt/libvirt-sock"
        if not os.path.exists(real):
            raise SkipTest(f"no root libvirtd socket at {real}")
        proxy = UnixProxy(real)
        # A short path: a unix socket's path is limited to 107 bytes.
        folder = tempfile.mkdtemp(prefix="nt-kvm-")
        self.addCleanup(shutil.rmtree, folder, True)
        sock = os.path.join(folder, "proxy.sock")
        port = real_reactor.listenUNIX(sock, proxy)
        self.addCleanup(port.stopListening)
        self.addCleanup(proxy.cut)
        mad = await self.start(f"-l qemu+unix:///system?socket={sock}")
        a = self.action(990, deploy_id="nebtwist-no-such-domain")
        self.assertIn("STATE=d", await mad.poll(990, a))
        self.assertEqual(proxy.opened, 1)
        # Cut between actions: the close callback / isAlive() notice it; a new connection.
        proxy.cut()
        self.assertIn("STATE=d", await mad.poll(990, a))
        self.assertEqual(proxy.opened, 2)
        # Cut in the middle of a POLL (request held, then the link dropped): retried once.
        proxy.hold = True
        polled = mad.poll(990, a)
        self.assertTrue(await wait_for(lambda: proxy.held, 20))
        proxy.cut()
        self.assertIn("STATE=d", await polled)
        self.assertEqual(proxy.opened, 3)
        self.assertTrue(self.logged(990, "POLL on localhost: connection lost"))
        self.assertTrue(self.logged(990, "retrying on a new connection"))
        # A REBOOT cut the same way is not repeated: it fails with libvirt's text.
        proxy.hold = True
        rebooted = mad.reboot(990, a)
        self.assertTrue(await wait_for(lambda: proxy.held, 20))
        proxy.cut()
        e = await self.assertFailure(rebooted, DriverError)
        self.assertTrue(e.message.startswith("domain nebtwist-no-such-domain on localhost: "),
                        e.message)
        self.assertNotIn("Domain not found", e.message)
        self.assertEqual(proxy.opened, 3)
        self.assertIn("STATE=d", await mad.poll(990, a))
        self.assertEqual(proxy.opened, 4)


class _Pipe(protocol.Protocol):
    """One side of a proxied link; holds client data while its factory's ``hold`` is set."""

    def __init__(self, factory, peer=None, front=False):
        self.factory = factory
        self.peer = peer
        self.front = front
        self.buffer = []

    def dataReceived(self, data):
        if self.front and self.factory.hold:
            self.factory.held.append(data)
        elif self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.buffer.append(data)

    def connectionLost(self, reason):
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.loseConnection()


class UnixProxy(protocol.Factory):
    """Forwards each accepted unix connection to ``target``.

    :meth:`cut` aborts every link; while ``hold`` is true, data from the
    client is kept in ``held`` instead of being forwarded (a hung peer).
    """

    def __init__(self, target):
        self.target = target
        self.opened = 0
        self.links = []
        self.hold = False
        self.held = []

    def buildProtocol(self, addr):
        self.opened += 1
        front = _Pipe(self, front=True)
        back = _Pipe(self, front)
        front.peer = back
        factory = protocol.ClientFactory()
        factory.protocol = lambda: back
        real_reactor.connectUNIX(self.target, factory)
        self.links.append((front, back))

        orig = back.connectionMade

        def made():
            orig()
            for chunk in front.buffer:
                back.transport.write(chunk)
            front.buffer = []
        back.connectionMade = made
        return front

    def cut(self):
        self.hold = False
        self.held = []
        for front, back in self.links:
            for p in (front, back):
                if p.transport is not None:
                    p.transport.abortConnection()
        self.links = []


def _system_libvirt():
    """An open qemu:///system connection, or raise SkipTest with the reason."""
    if libvirt is None:
        raise SkipTest("libvirt-python is not installed")
    libvirt.registerErrorHandler(lambda *a: None, None)
    try:
        conn = libvirt.open("qemu:///system")
        conn.getVersion()
    except libvirt.libvirtError as e:
        raise SkipTest(f"qemu:///system does not answer: {e}")
    return conn


class SystemLibvirtTests(KvmDriverMixin, TestCase):
    """A real tiny QEMU domain on the root libvirtd (qemu:///system)."""

    timeout = 300

    def setUp(self):
        super().setUp()
        self.conn = _system_libvirt()
        self.addCleanup(self.conn.close)
        self.base = 900000 + (os.getpid() % 1000) * 10

    def cleanup_domain(self, name):
        """Destroy and undefine ``name`` on qemu:///system if it exists."""
        def clean():
            try:
                dom = self.conn.lookupByName(name)
            except libvirt.libvirtError:
                return
            try:
                if dom.isActive():
                    dom.destroy()
            except libvirt.libvirtError:
                pass
            try:
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
            except libvirt.libvirtError:
                pass
        self.addCleanup(clean)

    def exists(self, name):
        try:
            self.conn.lookupByName(name)
            return True
        except libvirt.libvirtError:
            return False

    async def test_lifecycle(self):
        """DEPLOY, POLL (a, numeric CPU), SAVE, RESTORE, POLL, CANCEL: gone after."""
        vid = self.base + 1
        name = f"one-{vid}"
        self.cleanup_domain(name)
        mad = await self.start("-s 3")
        path = self.deployment(vid, QEMU_DOMAIN.format(name=name))
        local = socket.gethostname()
        t = time.monotonic()
        self.assertEqual(await mad.deploy(vid, self.action(vid, host=local,
                                                         local_deployment_file=path)), name)
        figures = {"deploy": time.monotonic() - t}
        dom = self.conn.lookupByName(name)
        self.assertTrue(dom.isActive() and dom.isPersistent())
        a = self.action(vid, host=local, deploy_id=name,
                        checkpoint_file=os.path.join(self.tmp, "checkpoint"))
        t = time.monotonic()
        first = await mad.poll(vid, a)
        figures["first poll"] = time.monotonic() - t
        await deferLater(1.0)
        t = time.monotonic()
        info = dict(kv.split("=") for kv in (await mad.poll(vid, a)).split())
        figures["poll"] = time.monotonic() - t
        self.assertIn("STATE=a", first)
        self.assertEqual(info["STATE"], "a")
        self.assertGreaterEqual(float(info["USEDCPU"]), 0.0)
        self.assertLessEqual(float(info["USEDCPU"]), 400.0)
        self.assertGreater(int(info["USEDMEMORY"]), 0)
        t = time.monotonic()
        self.assertEqual(await mad.save(vid, a), "-")
        figures["save"] = time.monotonic() - t
        self.assertFalse(self.exists(name))
        self.assertGreater(os.path.getsize(a.checkpoint_file), 0)
        self.assertIn("STATE=d", await mad.poll(vid, a))
        t = time.monotonic()
        self.assertEqual(await mad.restore(vid, a), name)
        figures["restore"] = time.monotonic() - t
        dom = self.conn.lookupByName(name)
        self.assertTrue(dom.isActive() and dom.isPersistent())
        self.assertIn("STATE=a", await mad.poll(vid, a))
        t = time.monotonic()
        self.assertEqual(await mad.cancel(vid, a), "-")
        figures["cancel"] = time.monotonic() - t
        self.assertFalse(self.exists(name))
        print("\n    qemu:///system figures: " + ", ".join(
            f"{k} {v:.2f} s" for k, v in figures.items()))

    async def test_shutdown_timeout_then_cancel(self):
        """A guest that ignores ACPI: SHUTDOWN fails after -s seconds (3.4 message)."""
        vid = self.base + 2
        name = f"one-{vid}"
        self.cleanup_domain(name)
        mad = await self.start("-s 2")
        path = self.deployment(vid, QEMU_DOMAIN.format(name=name))
        await mad.deploy(vid, self.action(vid, local_deployment_file=path))
        a = self.action(vid, deploy_id=name)
        e = await self.assertFailure(mad.shutdown(vid, a), DriverError)
        self.assertEqual(e.message, f"Timeout reached and VM {name} is still alive")
        self.assertTrue(self.conn.lookupByName(name).isActive())
        self.assertEqual(await mad.reboot(vid, a), "-")
        self.assertEqual(await mad.cancel(vid, a), "-")
        self.assertFalse(self.exists(name))

    async def test_deploy_replaces_inactive_definition(self):
        """An inactive definition of the same name is replaced, then runs."""
        vid = self.base + 3
        name = f"one-{vid}"
        self.cleanup_domain(name)
        old = QEMU_DOMAIN.format(name=name).replace("<vcpu>1</vcpu>", "<vcpu>2</vcpu>")
        self.conn.defineXML(old)
        mad = await self.start("")
        path = self.deployment(vid, QEMU_DOMAIN.format(name=name))
        self.assertEqual(await mad.deploy(vid, self.action(vid, local_deployment_file=path)),
                         name)
        dom = self.conn.lookupByName(name)
        self.assertEqual(dom.info()[3], 1)
        await mad.cancel(vid, self.action(vid, deploy_id=name))
        self.assertFalse(self.exists(name))

    async def test_create_failure_undefines(self):
        """A domain that defines but cannot start is undefined again; libvirt's text."""
        vid = self.base + 4
        name = f"one-{vid}"
        self.cleanup_domain(name)
        missing = os.path.join(self.tmp, "no-such-disk.qcow2")
        xml = QEMU_DOMAIN.format(name=name).replace(
            "<devices>", "<devices><disk type='file' device='disk'><driver name='qemu' "
            f"type='qcow2'/><source file='{missing}'/><target dev='vda' bus='virtio'/></disk>")
        mad = await self.start("")
        e = await self.assertFailure(
            mad.deploy(vid, self.action(vid, local_deployment_file=self.deployment(vid, xml))),
            DriverError)
        self.assertTrue(e.message.startswith(f"Could not create domain {name}: "), e.message)
        self.assertIn("no-such-disk.qcow2", e.message)
        self.assertFalse(self.exists(name))


class MissingLibraryTests(TestCase):
    """Without libvirt-python (and lxml) the driver still starts, so a daemon whose
    oned.conf ships vmm_kvm starts too; each action then fails with the reason."""

    def test_actions_fail_with_the_reason(self):
        import subprocess
        import sys

        # -S: no site-packages, so neither libvirt nor lxml can be imported
        done = subprocess.run([sys.executable, "-S", KVM], input="INIT\nPOLL 3 AAAA\nFINALIZE\n",
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = done.stdout.splitlines()
        self.assertTrue(lines[0].startswith("LOG E - "), lines)
        self.assertIn("is not available", lines[0])
        self.assertIn("pip install 'nebtwist[libvirt]'", lines[0])
        self.assertEqual(lines[1], "INIT SUCCESS")
        self.assertTrue(lines[2].startswith("POLL FAILURE 3 "), lines)
        self.assertIn("is not available: No module named", lines[2])
        self.assertEqual(len(lines), 3, lines)
