"""Host monitoring by probes: ``drivers/im/run_probes``, the probe folders,
the ssh IM driver (``drivers/im/ssh``) against a real sshd on 127.0.0.1, the
InformationManager's update-remotes flag, and a whole daemon placing VMs by
an admin-added probe's metric (``MY_RVMS``, seed 001's hands-on).

The ssh tests start their own OpenSSH server (:func:`tests.sshd.start_sshd`;
skipped with the reason where ``/usr/sbin/sshd`` is missing). Every test
works on copies of the shipped remotes in its temporary directory, so adding
probes never touches the checkout, and the "host" side
(``SCRIPTS_REMOTE_DIR``) is a temporary directory too.
"""

import os
import platform
import shlex
import shutil
import subprocess
import sys
import uuid

from lxml import etree
from twisted.internet import defer
from twisted.internet import reactor as real_reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from nebtwist import paths
from nebtwist.core.im import InformationManager
from nebtwist.core.objects import HOST_ERROR, HOST_MONITORED
from nebtwist.errors import DriverError
from nebtwist.fakes import FakeInformationDriver
from nebtwist.mad import InformationMad, resolve_executable
from nebtwist.template import Template
from nebtwist.testing import start_nebula

from tests.sshd import free_port, start_sshd
from tests.test_lcm import Core

IM_DIR = paths.shipped("drivers", "im")
RUN_PROBES = os.path.join(IM_DIR, "run_probes")
MY_RVMS_EXAMPLE = os.path.join(IM_DIR, "examples", "my_rvms.sh")

#: The keys every Linux host reports through the shipped kvm.d / xen.d probes
#: (reference 3.2).
PROBE_KEYS = {"HYPERVISOR", "TOTALCPU", "CPUSPEED", "USEDCPU", "FREECPU", "TOTALMEMORY",
              "USEDMEMORY", "FREEMEMORY", "NETRX", "NETTX", "ARCH", "MODELNAME", "HOSTNAME"}

#: The top-level remotes the ssh driver copies.
REMOTES = ("run_probes", "common.d", "kvm.d", "xen.d")


def meminfo_kb(key):
    """A ``/proc/meminfo`` value in KB (int)."""
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name == key:
                return int(rest.split()[0])
    raise KeyError(key)


def parse(info):
    """The monitoring info as the core reads it: ``{KEY: value}``."""
    return {k: v for k, v in Template.parse_monitoring(info)}


def copy_remotes(testcase):
    """A private copy of the shipped remotes (links kept); its path."""
    target = os.path.abspath(testcase.mktemp())
    os.makedirs(target)
    for name in REMOTES:
        src = os.path.join(IM_DIR, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(target, name), symlinks=True)
        else:
            shutil.copy2(src, os.path.join(target, name))
    return target


def add_probe(remotes, hypervisor, name, body):
    """Write an executable ``<hypervisor>.d/<name>`` shell probe."""
    path = os.path.join(remotes, f"{hypervisor}.d", name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def run_probes(*args, base=IM_DIR, env=None):
    """Run ``<base>/run_probes args``; the CompletedProcess (text)."""
    return subprocess.run([os.path.join(base, "run_probes"), *args], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, env=env)


def start_fake_vms(testcase, count, marker):
    """Start ``count`` idle processes whose command line carries ``marker``
    (this test's stand-ins for running VMs); they are killed in cleanups."""
    procs = []
    for _ in range(count):
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker],
                             stdin=subprocess.DEVNULL)
        procs.append(p)
        testcase.addCleanup(_end, p)
    return procs


def _end(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def my_rvms_probe(marker):
    """Seed 001's MY_RVMS probe, counting this test's fake VMs (the shipped
    example counts every QEMU process on the machine, which a shared test
    machine cannot pin down)."""
    return (f"# MY_RVMS: running VMs on this host (fake ones: {marker})\n"
            # "[n]ebtwist...": the pattern does not match grep's own command line.
            f"n=$(grep -l -e '[n]{marker[1:]}' /proc/[0-9]*/cmdline 2>/dev/null | wc -l)\n"
            "echo \"MY_RVMS=$((n))\"\n")


class RunProbesTests(TestCase):
    """drivers/im/run_probes and the shipped probes, run on this machine."""

    def test_kvm_values(self):
        """run_probes kvm prints every metric on one line, with sane values."""
        out = run_probes("kvm", "7", "host07")
        self.assertEqual((out.returncode, out.stderr), (0, ""))
        self.assertEqual(out.stdout.count("\n"), 1, "one line")
        info = parse(out.stdout)
        self.assertEqual(set(info), PROBE_KEYS)
        self.assertEqual(info["HYPERVISOR"], "kvm")
        self.assertEqual(int(info["TOTALCPU"]), os.cpu_count() * 100)
        used, free = int(info["USEDCPU"]), int(info["FREECPU"])
        self.assertTrue(0 <= used <= os.cpu_count() * 100, info)
        self.assertEqual(used + free, int(info["TOTALCPU"]))
        self.assertEqual(int(info["TOTALMEMORY"]), meminfo_kb("MemTotal"))
        self.assertEqual(int(info["USEDMEMORY"]) + int(info["FREEMEMORY"]),
                         int(info["TOTALMEMORY"]))
        self.assertTrue(0 < int(info["FREEMEMORY"]) <= meminfo_kb("MemTotal"))
        self.assertEqual(info["ARCH"], platform.machine())
        self.assertEqual(info["HOSTNAME"], os.uname().nodename)
        self.assertGreaterEqual(int(info["CPUSPEED"]), 0)
        self.assertGreaterEqual(int(info["NETRX"]), 0)
        self.assertGreaterEqual(int(info["NETTX"]), 0)
        self.assertTrue(info["MODELNAME"] and "," not in info["MODELNAME"])

    def test_xen(self):
        """xen.d reports HYPERVISOR=xen and the same metric names."""
        out = run_probes("xen")
        self.assertEqual(out.returncode, 0, out.stderr)
        info = parse(out.stdout)
        self.assertEqual(set(info), PROBE_KEYS)
        self.assertEqual(info["HYPERVISOR"], "xen")

    def test_xen_dom0_totals(self):
        """On a Xen dom0, xen.sh's totals from ``xl info`` (the machine's, not
        dom0's /proc view) win, as the core keeps a repeated name's last value."""
        bin_dir = os.path.abspath(self.mktemp())
        os.makedirs(bin_dir)
        xl = os.path.join(bin_dir, "xl")
        with open(xl, "w") as f:
            f.write("#!/bin/sh\n[ \"$1\" = info ] || exit 1\ncat <<'END'\n"
                    "host                   : xen01\n"
                    "nr_cpus                : 16\n"
                    "cpu_mhz                : 2400\n"
                    "total_memory           : 65442\n"
                    "free_memory            : 40000\n"
                    "xen_major              : 4\n"
                    "END\n")
        os.chmod(xl, 0o755)
        out = subprocess.run([RUN_PROBES, "xen"], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"]))
        self.assertEqual(out.returncode, 0, out.stderr)
        info = Template.parse_monitoring(out.stdout)
        self.assertEqual(
            [info.get_str(k) for k in ("TOTALCPU", "CPUSPEED", "TOTALMEMORY", "FREEMEMORY",
                                       "USEDMEMORY", "HYPERVISOR")],
            ["1600", "2400", str(65442 * 1024), str(40000 * 1024), str(25442 * 1024), "xen"])

    def test_core_fills_host_share(self):
        """The output, read as the core reads it, fills HOST_SHARE's fields."""
        info = Template.parse_monitoring(run_probes("kvm").stdout)
        for key in ("TOTALCPU", "FREECPU", "USEDCPU", "TOTALMEMORY", "FREEMEMORY",
                    "USEDMEMORY"):
            self.assertTrue(info.get_str(key).isdigit(), (key, info.get_str(key)))

    def test_arguments_and_folder(self):
        """Probes get run_probes' arguments and run inside their folder;
        files that are not executable are skipped."""
        remotes = copy_remotes(self)
        add_probe(remotes, "kvm", "zz_args.sh",
                  'echo "ARGS=\\"$*\\""; echo "HERE=\\"$(basename "$PWD")\\""\n')
        with open(os.path.join(remotes, "kvm.d", "README"), "w") as f:
            f.write("not a probe\n")
        out = run_probes("kvm", "3", "node-3", base=remotes)
        self.assertEqual(out.returncode, 0, out.stderr)
        info = parse(out.stdout)
        self.assertEqual((info["ARGS"], info["HERE"]), ("kvm 3 node-3", "kvm.d"))

    def test_failing_probe(self):
        """A probe exiting non-zero fails the run with its exit code, and
        names it, with its stderr, in an ERROR MESSAGE block."""
        remotes = copy_remotes(self)
        add_probe(remotes, "kvm", "broken.sh", 'echo "disk probe broken" >&2\nexit 3\n')
        out = run_probes("kvm", base=remotes)
        self.assertEqual(out.returncode, 3)
        self.assertEqual(out.stdout, "")
        self.assertEqual(out.stderr.splitlines(), [
            "ERROR MESSAGE --8<------",
            "Error executing broken.sh (exit 3): disk probe broken",
            "ERROR MESSAGE ------>8--",
        ])

    def test_kvm_needs_libvirt(self):
        """kvm.d fails when libvirtd does not answer (LIBVIRT_URI, default
        qemu:///system), naming the URI and libvirt's own message, so the
        host goes to ERROR with the reason."""
        if not shutil.which("virsh"):
            raise SkipTest("virsh (libvirt-clients) is not installed")
        env = dict(os.environ, LIBVIRT_URI="qemu+unix:///system?socket=/nonexistent/sock")
        out = run_probes("kvm", env=env)
        self.assertEqual(out.returncode, 1)
        self.assertIn("Error executing kvm.sh (exit 1): libvirtd does not answer at "
                      "qemu+unix:///system?socket=/nonexistent/sock: error: failed to connect",
                      out.stderr)
        self.assertIn("/nonexistent/sock", out.stderr.split("answer at")[1].split(":", 3)[-1])
        # libvirt's test driver answers without a daemon
        ok = run_probes("kvm", env=dict(os.environ, LIBVIRT_URI="test:///default"))
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertEqual(parse(ok.stdout)["HYPERVISOR"], "kvm")

    def test_unknown_hypervisor(self):
        """A hypervisor without a probe folder is an error (exit 2)."""
        out = run_probes("vmware")
        self.assertEqual(out.returncode, 2)
        self.assertIn("no probes for hypervisor vmware", out.stderr)
        for bad in ("", "../kvm"):
            out = run_probes(bad)
            self.assertEqual(out.returncode, 2, bad)
            self.assertIn("ERROR MESSAGE --8<------", out.stderr)

    def test_values_with_blanks_and_globs(self):
        """Quoted values keep their words; a '*' is not expanded."""
        remotes = copy_remotes(self)
        add_probe(remotes, "kvm", "zz_odd.sh", "echo 'NOTE=\"a  b\"'; echo 'PAT=*'\n")
        info = parse(run_probes("kvm", base=remotes).stdout)
        self.assertEqual((info["NOTE"], info["PAT"]), ("a b", "*"))

    def test_my_rvms_example(self):
        """The shipped MY_RVMS example prints the count of QEMU processes
        (at least the fake ones this test starts, when virsh is absent)."""
        out = subprocess.run([MY_RVMS_EXAMPLE], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r"^MY_RVMS=\d+\n$")
        if shutil.which("virsh"):
            raise SkipTest("virsh is installed: the example counts libvirt's domains")
        fake = os.path.join(os.path.abspath(self.mktemp()), "qemu-system-x86_64")
        os.makedirs(os.path.dirname(fake))
        shutil.copy(shutil.which("sleep"), fake)
        procs = [subprocess.Popen([fake, "600"]) for _ in range(2)]
        for p in procs:
            self.addCleanup(_end, p)
        out = subprocess.run([MY_RVMS_EXAMPLE], capture_output=True, text=True, timeout=30)
        self.assertGreaterEqual(int(out.stdout.split("=")[1]), 2)


class DriverMixin:
    """Starts drivers/im/ssh through InformationMad on the real reactor."""

    def setUp(self):
        self.remotes = copy_remotes(self)
        self.remote_dir = os.path.abspath(self.mktemp())  # the host's SCRIPTS_REMOTE_DIR
        self.logs = []

    async def start_driver(self, *arguments, hypervisor="kvm"):
        env = dict(os.environ, SCRIPTS_REMOTE_DIR=self.remote_dir)
        args = shlex.join(["-d", self.remotes, *arguments, hypervisor])
        mad = InformationMad(real_reactor, "im_kvm", resolve_executable("ssh", "im"), args,
                             env=env, request_timeout=60, init_timeout=10,
                             on_log=lambda *a: self.logs.append(a))
        mad.startService()
        self.addCleanup(mad.stopService)
        await mad.started()
        return mad

    def copies(self):
        """How many times the driver said it copied the probes."""
        return sum(1 for _level, _oid, m in self.logs if m.startswith("Copying probes to "))

    def remote(self, *parts):
        return os.path.join(self.remote_dir, "im", *parts)


class SshDriverTests(DriverMixin, TestCase):
    """drivers/im/ssh against a real sshd on 127.0.0.1."""

    def setUp(self):
        super().setUp()
        self.sshd = start_sshd(self)

    async def start(self, *extra):
        return await self.start_driver(*self.sshd.ssh_options(), *extra)

    async def test_first_monitoring_copies_and_reports(self):
        """The first MONITOR copies run_probes and the probe folders into
        SCRIPTS_REMOTE_DIR/im (links kept) and answers the host's metrics."""
        mad = await self.start()
        info = parse(await mad.monitor(4, "127.0.0.1", False))
        self.assertEqual(set(info), PROBE_KEYS)
        self.assertEqual(int(info["TOTALCPU"]), os.cpu_count() * 100)
        self.assertEqual(int(info["TOTALMEMORY"]), meminfo_kb("MemTotal"))
        self.assertEqual(info["HYPERVISOR"], "kvm")
        self.assertEqual(sorted(os.listdir(self.remote())), sorted(REMOTES))
        self.assertTrue(os.access(self.remote("run_probes"), os.X_OK))
        self.assertEqual(os.readlink(self.remote("kvm.d", "cpu.sh")), "../common.d/cpu.sh")
        self.assertEqual(self.copies(), 1)
        self.assertIn(("I", 4, f"Copying probes to 127.0.0.1:{self.remote_dir}/im"),
                      self.logs)

    async def test_other_remotes_on_update(self):
        """With OpenNebula's layout (probes in <remotes>/im), flag 1 also copies
        the other host-side folders (remote hooks...) to SCRIPTS_REMOTE_DIR,
        never tm/ (front-end scripts); flag 0 leaves them alone."""
        root = os.path.abspath(self.mktemp())
        shutil.copytree(self.remotes, os.path.join(root, "im"), symlinks=True)
        self.remotes = os.path.join(root, "im")
        os.makedirs(os.path.join(root, "hooks"))
        os.makedirs(os.path.join(root, "tm", "ssh"))
        with open(os.path.join(root, "hooks", "notify.sh"), "w") as f:
            f.write("#!/bin/sh\necho v1\n")
        os.chmod(os.path.join(root, "hooks", "notify.sh"), 0o755)
        mad = await self.start()
        await mad.monitor(1, "127.0.0.1", True)
        hook = os.path.join(self.remote_dir, "hooks", "notify.sh")
        with open(hook) as f:
            self.assertEqual(f.read(), "#!/bin/sh\necho v1\n")
        self.assertTrue(os.access(hook, os.X_OK))
        self.assertFalse(os.path.exists(os.path.join(self.remote_dir, "tm")))
        self.assertIn(("I", 1, f"Copying remotes hooks to 127.0.0.1:{self.remote_dir}"),
                      self.logs)
        with open(os.path.join(root, "hooks", "notify.sh"), "w") as f:
            f.write("#!/bin/sh\necho v2\n")
        await mad.monitor(1, "127.0.0.1", False)
        with open(hook) as f:
            self.assertIn("v1", f.read())  # only on an update (onehost sync)
        await mad.monitor(1, "127.0.0.1", True)
        with open(hook) as f:
            self.assertIn("v2", f.read())

    async def test_copied_only_when_changed(self):
        """Unchanged remotes are not copied again; an added probe is copied
        at the next MONITOR and its metric reported; flag 1 forces a copy;
        a probe removed locally disappears from the host."""
        mad = await self.start()
        await mad.monitor(1, "127.0.0.1", False)
        inode = os.stat(self.remote("run_probes")).st_ino
        await mad.monitor(1, "127.0.0.1", False)
        self.assertEqual(self.copies(), 1)
        self.assertEqual(os.stat(self.remote("run_probes")).st_ino, inode, "not rewritten")

        add_probe(self.remotes, "kvm", "my_rvms.sh", "echo MY_RVMS=3\n")
        info = parse(await mad.monitor(1, "127.0.0.1", False))
        self.assertEqual(info["MY_RVMS"], "3")
        self.assertEqual(self.copies(), 2)
        self.assertTrue(os.path.exists(self.remote("kvm.d", "my_rvms.sh")))

        await mad.monitor(1, "127.0.0.1", True)
        self.assertEqual(self.copies(), 3, "flag 1 copies even when unchanged")
        await mad.monitor(1, "127.0.0.1", False)
        self.assertEqual(self.copies(), 3)

        os.chmod(os.path.join(self.remotes, "kvm.d", "my_rvms.sh"), 0o644)
        info = parse(await mad.monitor(1, "127.0.0.1", False))
        self.assertEqual(self.copies(), 4, "a mode change is a change")
        self.assertNotIn("MY_RVMS", info)
        os.remove(os.path.join(self.remotes, "kvm.d", "my_rvms.sh"))
        await mad.monitor(1, "127.0.0.1", False)
        self.assertEqual(self.copies(), 5)
        self.assertFalse(os.path.exists(self.remote("kvm.d", "my_rvms.sh")))

    async def test_other_remote_entries_kept(self):
        """Copying replaces only the entries it copies under im/."""
        os.makedirs(self.remote("ganglia.d"))
        mad = await self.start()
        await mad.monitor(1, "127.0.0.1", True)
        self.assertTrue(os.path.isdir(self.remote("ganglia.d")))
        self.assertEqual([n for n in os.listdir(self.remote()) if n.startswith(".")], [],
                         "no staging folder left behind")

    async def test_concurrent_requests(self):
        """Concurrent MONITORs of one host all succeed, with one copy."""
        mad = await self.start()
        infos = await defer.gatherResults(
            [mad.monitor(hid, "127.0.0.1", False) for hid in range(3)], consumeErrors=True)
        self.assertEqual([parse(i)["HYPERVISOR"] for i in infos], ["kvm"] * 3)
        self.assertEqual(self.copies(), 1)

    async def test_failing_probe(self):
        """A failing probe makes MONITOR fail with the probe's name and error."""
        add_probe(self.remotes, "kvm", "broken.sh", 'echo "sensor unreadable" >&2\nexit 4\n')
        mad = await self.start()
        e = await self.assertFailure(mad.monitor(2, "127.0.0.1", False), DriverError)
        self.assertEqual(e.message, "Error executing broken.sh (exit 4): sensor unreadable")

    async def test_lost_remotes_copied_again(self):
        """When the host lost its copy, the driver copies again and succeeds."""
        mad = await self.start()
        await mad.monitor(1, "127.0.0.1", False)
        shutil.rmtree(self.remote())
        info = parse(await mad.monitor(1, "127.0.0.1", False))
        self.assertEqual(info["HYPERVISOR"], "kvm")
        self.assertEqual(self.copies(), 2)
        self.assertIn(("W", 1, "Probes missing on 127.0.0.1, copying them again"), self.logs)

    async def test_unknown_hypervisor(self):
        """A hypervisor with no probe folder fails clearly."""
        mad = await self.start_driver(*self.sshd.ssh_options(), hypervisor="vmware")
        e = await self.assertFailure(mad.monitor(1, "127.0.0.1", False), DriverError)
        self.assertEqual(e.message, "no probes for hypervisor vmware "
                                    f"(missing {self.remote_dir}/im/vmware.d)")

    async def test_invalid_host_name(self):
        """A host name ssh would read as an option is refused, not run."""
        mad = await self.start()
        e = await self.assertFailure(mad.monitor(1, "-oProxyCommand=touch x", False),
                                     DriverError)
        self.assertEqual(e.message, "invalid host name '-oProxyCommand=touch'")
        self.assertFalse(os.path.exists(self.remote()))

    async def test_refused_key(self):
        """A key the host does not accept: FAILURE naming ssh's complaint."""
        other = os.path.abspath(self.mktemp())
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other],
                       check=True, capture_output=True)
        mad = await self.start_driver(*self.sshd.ssh_options(identity=other))
        e = await self.assertFailure(mad.monitor(1, "127.0.0.1", False), DriverError)
        self.assertRegex(e.message, r"^cannot reach 127\.0\.0\.1 over ssh: .*Permission denied")


class SshUnreachableTests(DriverMixin, TestCase):
    """drivers/im/ssh towards a port nothing listens on (no sshd needed)."""

    async def test_closed_port(self):
        """ssh to a closed port: FAILURE with ssh's 'Connection refused'."""
        if not shutil.which("ssh"):
            raise SkipTest("ssh is missing (apt-get install openssh-client)")
        port = free_port()
        mad = await self.start_driver("-p", str(port), "-r", "1",
                                      "-o", "StrictHostKeyChecking=no",
                                      "-o", "UserKnownHostsFile=/dev/null")
        e = await self.assertFailure(mad.monitor(5, "127.0.0.1", True), DriverError)
        self.assertEqual(e.message, f"cannot reach 127.0.0.1 over ssh: ssh: connect to host "
                                    f"127.0.0.1 port {port}: Connection refused")


class LocalModeTests(DriverMixin, TestCase):
    """drivers/im/ssh -l: probes run on the front-end, nothing is copied."""

    async def test_local(self):
        add_probe(self.remotes, "kvm", "zz_args.sh", 'echo "ARGS=\\"$*\\""\n')
        mad = await self.start_driver("-l")
        info = parse(await mad.monitor(8, "host08", True))
        self.assertEqual(info["ARGS"], "kvm 8 host08")
        self.assertEqual(int(info["TOTALCPU"]), os.cpu_count() * 100)
        self.assertFalse(os.path.exists(self.remote_dir))
        self.assertEqual(self.copies(), 0)

    async def test_local_failure(self):
        add_probe(self.remotes, "kvm", "broken.sh", "exit 9\n")
        mad = await self.start_driver("-l")
        e = await self.assertFailure(mad.monitor(8, "host08", False), DriverError)
        self.assertEqual(e.message, "Error executing broken.sh (exit 9)")

    async def test_missing_run_probes(self):
        os.remove(os.path.join(self.remotes, "run_probes"))
        mad = await self.start_driver("-l")
        e = await self.assertFailure(mad.monitor(8, "host08", False), DriverError)
        self.assertRegex(e.message, r"^cannot run .*/run_probes: No such file or directory$")

    def test_bad_arguments(self):
        """Without a hypervisor argument the driver answers INIT FAILURE."""
        out = subprocess.run([resolve_executable("ssh", "im"), "-l"], input="INIT\n",
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 2)
        self.assertTrue(out.stdout.startswith("INIT FAILURE bad arguments: -l (usage: ssh "),
                        out.stdout)


class UpdateRemotesFlagTests(TestCase):
    """InformationManager asks for the remotes on a host's first monitoring
    and after it was in ERROR (MONITOR's last argument)."""

    async def _monitoring(self, core, before_start=None):
        """An InformationManager on a fake driver (monitoring every 60 s) and
        one host; ``(driver, host, flag)``, ``flag()`` the last MONITOR's
        update-remotes argument. ``before_start()`` runs before the loop."""
        core.nebula.config.template.set("HOST_MONITORING_INTERVAL", "60")
        core.nebula.config.template.set("MANAGER_TIMER", "15")
        drv = FakeInformationDriver("im_fake")
        im = InformationManager(core.nebula, {"im_fake": drv})
        host = await core.host("h0")
        if before_start is not None:
            before_start()
        im.start()
        self.addCleanup(im.stop)
        return drv, host, lambda: drv.last("monitor").args[-1]

    async def test_flag(self):
        core = await Core.make(self)
        # LAST_MON_TIME stays 0 until monitored
        drv, host, flag = await self._monitoring(core, lambda: core.clock.advance(1000))
        self.assertIs(flag(), True, "first monitoring")
        drv.last("monitor").succeed("TOTALCPU=100")
        await core.nebula.db.run([])
        core.clock.advance(60)
        self.assertIs(flag(), False, "monitored before")
        drv.last("monitor").fail("ssh: connect to host h0 port 22: Connection refused")
        await core.nebula.db.run([])
        self.assertEqual(host.state, HOST_ERROR)
        core.clock.advance(60)
        self.assertIs(flag(), True, "after ERROR")
        drv.last("monitor").succeed("TOTALCPU=100")
        await core.nebula.db.run([])
        self.assertEqual(host.state, HOST_MONITORED)
        core.clock.advance(60)
        self.assertIs(flag(), False)

    async def test_onehost_sync(self):
        """``onehost sync`` touches $ONE_LOCATION/var/remotes; each host
        monitored after that asks for the remotes again, once (3.4)."""
        import io
        import time

        from nebtwist.cli import onehost

        core = await Core.make(self)
        one_location = os.path.abspath(self.mktemp())
        os.makedirs(one_location)
        core.nebula.var_dir = os.path.join(one_location, "var")  # as twistd nebula's
        start = int(time.time()) - 1000  # the daemon's clock, in the real past
        core.clock.advance(start - core.clock.seconds())
        drv, _, flag = await self._monitoring(core)
        self.assertIs(flag(), True, "first monitoring")
        drv.last("monitor").succeed("TOTALCPU=100")
        await core.nebula.db.run([])
        core.clock.advance(60)
        self.assertIs(flag(), False, "no remotes folder, monitored before")
        drv.last("monitor").succeed("TOTALCPU=100")
        await core.nebula.db.run([])
        out, err = io.StringIO(), io.StringIO()
        environ = dict(os.environ, ONE_LOCATION=one_location)
        self.assertEqual(onehost.main(["sync"], stdout=out, stderr=err, environ=environ), 0,
                         err.getvalue())
        remotes = os.path.join(core.nebula.var_dir, "remotes")
        self.assertTrue(os.path.isdir(remotes))
        core.clock.advance(2000)  # past the touch
        self.assertIs(flag(), True, "after onehost sync")
        drv.last("monitor").succeed("TOTALCPU=100")
        await core.nebula.db.run([])
        core.clock.advance(60)
        self.assertIs(flag(), False, "copied once")
        # a folder that cannot be made is a clear error
        blocker = os.path.join(self.mktemp())
        with open(blocker, "w") as f:
            f.write("")
        err = io.StringIO()
        self.assertEqual(onehost.main(["sync"], stdout=io.StringIO(), stderr=err,
                                      environ=dict(os.environ, ONE_LOCATION=blocker)), 1)
        self.assertIn(f"cannot touch {blocker}/var/remotes", err.getvalue())


# ---------------------------------------------------------------------------
# A whole daemon: hosts monitored over ssh, VMs placed by MY_RVMS.

ADMIN = "oneadmin:onecloud"
PENDING, ACTIVE = 1, 3


def xml(text):
    return etree.fromstring(text.encode("utf-8"),
                            etree.XMLParser(resolve_entities=False, no_network=True))


async def ok(neb, method, *args):
    response = await neb.call(method, *args)
    assert response[0] is True, f"{method}{args} failed: {response}"
    return response[1]


async def wait_for(predicate, what, timeout=90.0, step=0.1):
    """Poll the async ``predicate`` until it returns a true value (returned)."""
    deadline = real_reactor.seconds() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if real_reactor.seconds() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await deferLater(real_reactor, step, lambda: None)


class MonitoringIntegrationTests(TestCase):
    """start_nebula with an ssh IM_MAD: seed 001's "customize the monitor
    information" hands-on, end to end."""

    async def test_my_rvms_placement(self):
        sshd = start_sshd(self)
        remotes = copy_remotes(self)
        remote_dir = os.path.abspath(self.mktemp())
        arguments = shlex.join(["-d", remotes, *sshd.ssh_options(), "kvm"])
        neb = await start_nebula(self, [
            'IM_MAD=[name="im_dummy", executable="dummy"]',
            f'IM_MAD=[name="im_kvm", executable="ssh", arguments="{arguments}"]',
            f"SCRIPTS_REMOTE_DIR={remote_dir}",
        ])
        kvm = await ok(neb, "one.host.allocate", "127.0.0.1", "im_kvm", "vmm_dummy", -1)
        other = await ok(neb, "one.host.allocate", "dummyhost", "im_dummy", "vmm_dummy", -1)

        async def template(hid):
            root = xml(await ok(neb, "one.host.info", hid))
            if int(root.findtext("STATE")) != HOST_MONITORED:
                return None
            return {el.tag: el.text for el in root.find("TEMPLATE")}

        t = await wait_for(lambda: template(kvm), "the ssh host to be monitored")
        self.assertEqual((t["HYPERVISOR"], int(t["TOTALCPU"])), ("kvm", os.cpu_count() * 100))
        self.assertNotIn("MY_RVMS", t)
        self.assertTrue(os.access(os.path.join(remote_dir, "im", "run_probes"), os.X_OK))
        self.assertEqual((await wait_for(lambda: template(other), "dummyhost"))["HYPERVISOR"],
                         "dummy")

        # The admin adds the probe; 6 "VMs" run on the host.
        marker = f"nebtwist-fake-vm-{uuid.uuid4().hex}"
        fake_vms = start_fake_vms(self, 6, marker)
        add_probe(remotes, "kvm", "my_rvms.sh", my_rvms_probe(marker))

        async def my_rvms(value):
            t = await template(kvm)
            return t is not None and t.get("MY_RVMS") == value

        await wait_for(lambda: my_rvms("6"), "MY_RVMS=6 on the ssh host")
        self.assertTrue(os.path.exists(os.path.join(remote_dir, "im", "kvm.d", "my_rvms.sh")))

        async def placed(vid):
            root = xml(await ok(neb, "one.vm.info", vid))
            if int(root.findtext("STATE")) != ACTIVE:
                return None
            return root.findall("HISTORY_RECORDS/HISTORY")[-1].findtext("HOSTNAME")

        # CPU 0: the machine running the tests may be busy, and its measured
        # FREECPU (real, from /proc/stat) must not decide these placements.
        small = "CPU = 0\nMEMORY = 64\n"
        # RANK alone would prefer the ssh host (6 > 0): REQUIREMENTS keep it out.
        vm1 = await ok(neb, "one.vm.allocate",
                       small + 'REQUIREMENTS = "MY_RVMS < 5"\nRANK = "MY_RVMS"\n')
        self.assertEqual(await wait_for(lambda: placed(vm1), "vm1 placed"), "dummyhost")

        for p in fake_vms[:4]:
            _end(p)
        await wait_for(lambda: my_rvms("2"), "MY_RVMS=2 on the ssh host")
        vm2 = await ok(neb, "one.vm.allocate",
                       small + 'REQUIREMENTS = "MY_RVMS < 5"\nRANK = "MY_RVMS"\n')
        self.assertEqual(await wait_for(lambda: placed(vm2), "vm2 placed"), "127.0.0.1")
        vm3 = await ok(neb, "one.vm.allocate",
                       small + 'REQUIREMENTS = "MY_RVMS < 5"\nRANK = "- MY_RVMS"\n')
        self.assertEqual(await wait_for(lambda: placed(vm3), "vm3 placed"), "dummyhost")

    async def test_unreachable_host_in_error(self):
        """A host whose sshd is down goes to ERROR with ssh's message."""
        if not shutil.which("ssh"):
            raise SkipTest("ssh is missing (apt-get install openssh-client)")
        port = free_port()
        arguments = shlex.join(["-p", str(port), "-o", "StrictHostKeyChecking=no",
                                "-o", "UserKnownHostsFile=/dev/null", "kvm"])
        neb = await start_nebula(self, [
            f'IM_MAD=[name="im_kvm", executable="ssh", arguments="{arguments}"]',
            f"SCRIPTS_REMOTE_DIR={os.path.abspath(self.mktemp())}",
        ])
        hid = await ok(neb, "one.host.allocate", "127.0.0.1", "im_kvm", "vmm_dummy", -1)

        async def error():
            root = xml(await ok(neb, "one.host.info", hid))
            return (int(root.findtext("STATE")) == HOST_ERROR
                    and root.findtext("TEMPLATE/ERROR/MESSAGE"))

        message = await wait_for(error, "the host to be in ERROR")
        # OpenNebula 4.x's ERROR = [ MESSAGE, TIMESTAMP ] in the host's TEMPLATE.
        self.assertEqual(message, f"cannot reach 127.0.0.1 over ssh: ssh: connect to host "
                                  f"127.0.0.1 port {port}: Connection refused")
