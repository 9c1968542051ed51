"""Acceptance: seed 000 Part III ("Building a Private Cloud") replayed with the CLI.

Every test starts a real ``twistd -n --pidfile= nebula`` process in a fresh
ONE_LOCATION on a free port, with the seed's own driver names (``im_xen``,
``vmm_xen``, ``tm_nfs``) mapped onto the shipped dummy drivers, and drives it
with the real ``onehost``/``oneuser``/``onevnet``/``onevm`` commands as
subprocesses, asserting what a user of the tutorial sees.  The tests block
(they poll the daemon with :meth:`NebulaDaemon.wait_for`); every process
they start is stopped in a cleanup.

:class:`NebulaDaemon` is also used by ``test_pyone``.
"""

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time

from twisted.trial import unittest

#: The seed's oneadmin credentials (``$ONE_AUTH``).
ADMIN_SESSION = "oneadmin:onecloud"

#: Short timers so that monitoring, scheduling and polling happen within seconds.
FAST = [
    "SCHED_INTERVAL=1",
    "MANAGER_TIMER=1",
    "HOST_MONITORING_INTERVAL=2",
    "VM_POLLING_INTERVAL=2",
]

#: The seed's driver names, served by the shipped dummy drivers.
SEED_DRIVERS = [
    'IM_MAD=[name="im_xen", executable="dummy"]',
    'VM_MAD=[name="vmm_xen", executable="dummy"]',
    'TM_MAD=[name="tm_nfs", executable="dummy"]',
]

#: How long a state change may take before a test fails (generous: the
#: daemon ticks every second, but test machines may be busy).
STATE_TIMEOUT = 30


def free_port():
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _script_command(name, module):
    """Command line running console script ``name`` (or ``python -m module``)."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(path):
        return [sys.executable, path]
    return [sys.executable, "-m", module]


def _twistd_command():
    """Command line running ``twistd`` with this interpreter."""
    path = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.isfile(path):
        return [sys.executable, path]
    code = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
    return [sys.executable, "-c", code]


def _live_group_members(pgid):
    """Pids of the non-zombie processes of process group ``pgid``."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold blanks and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 3 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


class NebulaDaemon:
    """A real ``twistd -n --pidfile= nebula`` process for acceptance tests.

    State lives in ``<location>/var`` (oned.log, the database, dummy driver
    markers); oneadmin's credentials are written to ``<location>/one_auth``
    and passed as ``$ONE_AUTH``, so oneadmin is created on first start.
    twistd's own output goes to ``<location>/twistd.out``.

    :meth:`start` waits until the API port answers (failing with the tail of
    oned.log and of twistd's output otherwise); :meth:`stop` sends SIGTERM,
    waits, and SIGKILLs the whole process group (twistd and its driver
    children) after ``stop_timeout`` seconds; :meth:`restart` does both on
    the same ONE_LOCATION and port.  :meth:`cli` runs a ``one*`` command
    against the daemon and returns ``(rc, stdout, stderr)``.

    :param location: the ONE_LOCATION directory (created if missing).
    :param settings: ``KEY=VALUE`` strings, each passed as ``--set``.
    :param session: oneadmin's ``user:password``.
    """

    def __init__(self, location, settings=(), session=ADMIN_SESSION):
        self.location = os.path.abspath(location)
        os.makedirs(self.location, exist_ok=True)
        self.var = os.path.join(self.location, "var")
        self.settings = list(settings)
        self.session = session
        self.auth_file = self.write_auth("one_auth", session)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}/RPC2"
        self.output_path = os.path.join(self.location, "twistd.out")
        self.process = None
        self.starts = 0

    # -- files -----------------------------------------------------------------------------

    def path(self, *parts):
        """A path inside ONE_LOCATION."""
        return os.path.join(self.location, *parts)

    def write_file(self, name, text):
        """Write ``text`` to ``<location>/name``; returns the path."""
        path = self.path(name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def write_auth(self, name, session):
        """Write a ONE_AUTH file holding ``session``; returns its path."""
        return self.write_file(name, session + "\n")

    def oned_log(self):
        """The whole of ``$ONE_LOCATION/var/oned.log`` ("" before it exists)."""
        try:
            with open(os.path.join(self.var, "oned.log"), encoding="utf-8",
                      errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def diagnostics(self, lines=40):
        """The tails of oned.log and of twistd's output, for failure messages."""
        try:
            with open(self.output_path, encoding="utf-8", errors="replace") as f:
                output = f.read()
        except FileNotFoundError:
            output = ""

        def tail(text):
            return "\n".join(text.splitlines()[-lines:]) or "(empty)"

        return (f"--- tail of {self.var}/oned.log ---\n{tail(self.oned_log())}\n"
                f"--- tail of twistd output ({self.output_path}) ---\n{tail(output)}")

    # -- process ---------------------------------------------------------------------------

    def environ(self, auth_file=None):
        """The environment for the daemon and the CLI."""
        env = dict(os.environ)
        env.update(ONE_LOCATION=self.location, ONE_AUTH=auth_file or self.auth_file,
                   ONE_XMLRPC=self.endpoint)
        return env

    def command(self):
        """The twistd command line."""
        args = _twistd_command() + ["-n", "--pidfile=", "nebula", "--set", f"PORT={self.port}",
                                         "--set", "econe.PORT=0"]  # EC2 front: any free port
        for setting in self.settings:
            args += ["--set", setting]
        return args

    def start(self, timeout=20):
        """Start twistd and wait (up to ``timeout`` s) until the port answers."""
        if self.process is not None:
            raise RuntimeError("the daemon is already running")
        self.starts += 1
        with open(self.output_path, "ab") as out:
            out.write(f"=== start #{self.starts}: {' '.join(self.command())}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.command(), cwd=self.location, env=self.environ(),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            rc = self.process.poll()
            if rc is not None:
                self.stop()
                raise AssertionError(f"twistd exited with status {rc} before listening on "
                                     f"port {self.port}\n{self.diagnostics()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"twistd did not listen on port {self.port} within "
                                     f"{timeout} s\n{self.diagnostics()}")
            time.sleep(0.1)

    def stop(self, stop_timeout=10):
        """SIGTERM twistd, wait; SIGKILL its process group after ``stop_timeout`` s.

        Idempotent.  Driver processes left in the group after twistd ended
        get a few seconds to exit on their own, then SIGKILL.
        """
        process, self.process = self.process, None
        if process is None:
            return
        pgid = process.pid  # start_new_session: the group is named after twistd
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                self._kill_group(pgid)
                process.wait()
        deadline = time.monotonic() + 5
        while _live_group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _live_group_members(pgid):
            self._kill_group(pgid)

    @staticmethod
    def _kill_group(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def restart(self):
        """Stop the daemon and start it again on the same ONE_LOCATION and port."""
        self.stop()
        self.start()

    # -- clients ---------------------------------------------------------------------------

    def cli(self, tool, *args, auth_file=None, timeout=60):
        """Run ``tool args...`` (e.g. ``onevm list``); returns ``(rc, stdout, stderr)``.

        :param auth_file: the ONE_AUTH file to use (default: oneadmin's).
        """
        command = _script_command(tool, f"nebtwist.cli.{tool}") + [str(a) for a in args]
        done = subprocess.run(command, cwd=self.location, env=self.environ(auth_file),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
        return done.returncode, done.stdout, done.stderr

    @staticmethod
    def wait_for(predicate, timeout=STATE_TIMEOUT, interval=0.2, message=None):
        """Poll ``predicate()`` until it returns something true; return that.

        :raises AssertionError: after ``timeout`` seconds, with ``message``
            (a string or a callable returning one) and the last value seen.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                text = message() if callable(message) else (message or "condition")
                raise AssertionError(f"timed out after {timeout} s waiting for {text}; "
                                     f"last value: {value!r}")
            time.sleep(interval)


# ------------------------------------------------------------------ parsing CLI output


def parse_table(stdout):
    """Rows of a ``one* list`` table as dicts keyed by the header words.

    Cells hold no blanks except ``onevm list``'s TIME (``DD HH:MM:SS``) and
    an empty HOSTNAME for VMs that never ran, both handled here.
    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        cells = line.split()
        if header[-1] == "TIME" and len(cells) >= 2:
            cells[-2:] = [" ".join(cells[-2:])]
        if "HOSTNAME" in header and len(cells) == len(header) - 1:
            cells.insert(header.index("HOSTNAME"), "")
        if len(cells) != len(header):
            raise AssertionError(f"cannot parse table line {line!r} under {lines[0]!r}")
        rows.append(dict(zip(header, cells)))
    return rows


def parse_show(stdout):
    """``LABEL : value`` pairs of a ``one* show`` output (first occurrence wins)."""
    pairs = {}
    for line in stdout.splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_ ()]*?)\s*: (.*)$", line)
        if m and m.group(1) not in pairs:
            pairs[m.group(1)] = m.group(2)
    return pairs


def template_vectors(stdout, name):
    """The ``NAME=[ ... ]`` vectors of a template dump, as dicts."""
    vectors = []
    current = None
    for line in stdout.splitlines():
        if line == f"{name}=[":
            current = {}
            continue
        if current is not None:
            m = re.match(r"^  ([A-Z0-9_]+)=(.*?)(,| \])$", line)
            if not m:
                raise AssertionError(f"cannot parse template line {line!r}")
            current[m.group(1)] = m.group(2)
            if m.group(3) == " ]":
                vectors.append(current)
                current = None
    return vectors


def ip_to_mac(ip, prefix="02:00"):
    """The MAC OpenNebula derives from an IP: MAC_PREFIX + the IP's octets in hex."""
    return prefix + "".join(f":{int(octet):02x}" for octet in ip.split("."))


# ------------------------------------------------------------------ the seed's files

#: ``$CN``, the student's number in the tutorial.
CN = 5


def seed_text(text):
    """A seed file with ``$CN`` (and ``($CN+100)``) replaced by :data:`CN`."""
    return text.replace("($CN+100)", str(CN + 100)).replace("$CN", str(CN))


REAL_NET = seed_text("""\
NAME = "One-TD"
TYPE = RANGED
BRIDGE = xenbr0
NETWORK_SIZE      = 125
NETWORK_ADDRESS = 192.168.$CN.128
""")

FAKE_NET = seed_text("""\
NAME = "One-TD-Invisible"
TYPE = FIXED
BRIDGE = xenbr0
LEASES = [IP=192.168.($CN+100).5]
LEASES = [IP=192.168.($CN+100).10]
LEASES = [IP=192.168.($CN+100).15]
LEASES = [IP=192.168.($CN+100).20]
LEASES = [IP=192.168.($CN+100).25]
""")

#: The fixed leases of fake.net.
FAKE_IPS = [f"192.168.{CN + 100}.{n}" for n in (5, 10, 15, 20, 25)]

#: The seed's NIC line of ttylinux.one.
TTYLINUX_NIC = 'NIC       = [ NETWORK = "One-TD" ]'

TTYLINUX = """\
NAME      = ttylinux
CPU       = 0.1
MEMORY   = 64

DISK      = [
    source    = "/srv/cloud/images/ttylinux/ttylinux.img",
    target    = "hda",
    readonly  = "no" ]

NIC       = [ NETWORK = "One-TD" ]

FEATURES = [ acpi="no" ]

#This may be useful to debug your VMs (can use also console)

GRAPHICS = [
    type = "vnc",
    listen = "loclahost",
    port = "5902",
    keymap="es"]
"""


def ttylinux_with_nics(*nic_lines):
    """ttylinux.one with its NIC line replaced by ``nic_lines``."""
    return TTYLINUX.replace(TTYLINUX_NIC, "\n".join(nic_lines))


def in_real_range(ip):
    """True if ``ip`` is a lease of real.net (192.168.$CN.129-254)."""
    prefix = f"192.168.{CN}."
    return ip.startswith(prefix) and 129 <= int(ip[len(prefix):]) <= 254


# ------------------------------------------------------------------ the tests


class SeedCloudTestCase(unittest.TestCase):
    """Base class: a fresh daemon with the seed's drivers and the tutorial's steps.

    Each step helper runs the seed's commands through the CLI and asserts
    what the tutorial shows; tests combine the steps they need.
    """

    settings = SEED_DRIVERS + FAST

    def setUp(self):
        self.one = NebulaDaemon(self.mktemp(), self.settings)
        self.addCleanup(self.one.stop)
        self.one.start()
        self.helen_auth = None

    # -- running commands --------------------------------------------------------------

    def run_cli(self, tool, *args, auth=None):
        """``(rc, stdout, stderr)`` of a command (``auth``: a ONE_AUTH file)."""
        return self.one.cli(tool, *args, auth_file=auth)

    def ok(self, tool, *args, auth=None):
        """Run a command that must succeed silently on stderr; returns stdout."""
        rc, out, err = self.run_cli(tool, *args, auth=auth)
        if rc != 0 or err:
            self.fail(f"{tool} {' '.join(map(str, args))} -> rc {rc}\nstdout: {out}\n"
                      f"stderr: {err}\n{self.one.diagnostics()}")
        return out

    def wait_for(self, predicate, message=None, timeout=STATE_TIMEOUT):
        """:meth:`NebulaDaemon.wait_for`, with the daemon's logs on failure."""
        def full_message():
            text = message() if callable(message) else (message or "condition")
            return f"{text}\n{self.one.diagnostics(25)}"
        return self.one.wait_for(predicate, timeout=timeout, message=full_message)

    def table(self, tool, *args, auth=None):
        """The rows of ``tool list ...``."""
        return parse_table(self.ok(tool, "list", *args, auth=auth))

    def hosts(self):
        """``onehost list`` rows by host name."""
        return {row["NAME"]: row for row in self.table("onehost")}

    def vms(self, auth=None):
        """``onevm list`` rows by VM id."""
        return {int(row["ID"]): row for row in self.table("onevm", auth=auth)}

    def vm_show(self, vid, auth=None):
        """``onevm show <vid>``: (LABEL pairs, NIC vectors, raw output)."""
        out = self.ok("onevm", "show", vid, auth=auth)
        return parse_show(out), template_vectors(out, "NIC"), out

    def vnet_leases(self, name):
        """Leases listed by ``onevnet show <name>``, by IP."""
        out = self.ok("onevnet", "show", name)
        section = out.split("\nLEASES\n", 1)[1]
        return {row["IP"]: row for row in parse_table(section)}

    # -- the tutorial's steps ------------------------------------------------------------

    def create_hosts(self):
        """``onehost create host01|host02 im_xen vmm_xen tm_nfs``; wait until monitored."""
        for name in ("host01", "host02"):
            self.assertEqual(self.ok("onehost", "create", name, "im_xen", "vmm_xen", "tm_nfs"),
                             "")
        self.wait_for(lambda: all(h["TCPU"] == "800" and h["STAT"] == "on"
                                  for h in self.hosts().values()) and len(self.hosts()) == 2,
                      "both hosts monitored (TCPU 800, STAT on)")

    def create_helen(self):
        """``oneuser create helen mypass``; her ONE_AUTH file holds ``helen:mypass``."""
        self.assertEqual(self.ok("oneuser", "create", "helen", "mypass"), "")
        self.helen_auth = self.one.write_auth("helen_auth", "helen:mypass")
        return self.helen_auth

    def create_networks(self):
        """``onevnet -v create real.net`` and ``fake.net``; returns their ids."""
        ids = []
        for name, text in (("real.net", REAL_NET), ("fake.net", FAKE_NET)):
            self.one.write_file(name, text)
            out = self.ok("onevnet", "-v", "create", name)
            m = re.fullmatch(r"ID: (\d+)\n", out)
            self.assertTrue(m, f"onevnet -v create {name} printed {out!r}")
            ids.append(int(m.group(1)))
        return ids

    def create_vm(self, text=TTYLINUX, auth=None, filename="ttylinux.one"):
        """Write ``filename`` and ``onevm -v create`` it; returns the VM id."""
        self.one.write_file(filename, text)
        out = self.ok("onevm", "-v", "create", filename, auth=auth)
        m = re.fullmatch(r"ID: (\d+)\n", out)
        self.assertTrue(m, f"onevm -v create printed {out!r}")
        return int(m.group(1))

    def wait_vm_stat(self, vid, stat, auth=None):
        """Wait until ``onevm list`` shows ``stat`` for ``vid``; returns its row."""
        def row():
            r = self.vms(auth).get(vid)
            return r if r is not None and r["STAT"] == stat else None
        return self.wait_for(row, lambda: f"VM {vid} in {stat!r}; onevm list:\n"
                                          + self.ok("onevm", "list"))

    def wait_vm_state(self, vid, state):
        """Wait until ``onevm show`` says ``STATE : state``; returns the show pairs."""
        def pairs():
            info = self.vm_show(vid)[0]
            return info if info["STATE"] == state else None
        return self.wait_for(pairs, lambda: f"VM {vid} in STATE {state}; onevm show:\n"
                                            + self.ok("onevm", "show", vid))

    def running_vm_ip(self, vid, auth=None):
        """The IP and MAC of the single NIC of running VM ``vid``."""
        info, nics, out = self.vm_show(vid, auth=auth)
        self.assertEqual((info["STATE"], info["LCM_STATE"]), ("ACTIVE", "RUNNING"), out)
        self.assertEqual(len(nics), 1, out)
        return nics[0]["IP"], nics[0]["MAC"]

    def build_cloud(self):
        """Hosts, helen and both networks, as in the tutorial."""
        self.create_hosts()
        self.create_helen()
        self.create_networks()


class HostsTest(SeedCloudTestCase):
    """"Configuring OpenNebula: Hosts": onehost create/list/show and oned.log."""

    def test_create_and_monitor(self):
        """Both hosts are listed at once, then monitored by the dummy IM driver."""
        for name in ("host01", "host02"):
            self.assertEqual(self.ok("onehost", "create", name, "im_xen", "vmm_xen", "tm_nfs"),
                             "")
        rows = self.table("onehost")
        self.assertEqual([(r["ID"], r["NAME"], r["RVM"]) for r in rows],
                         [("0", "host01", "0"), ("1", "host02", "0")])
        self.assertEqual(list(rows[0]),
                         ["ID", "NAME", "RVM", "TCPU", "FCPU", "ACPU", "TMEM", "FMEM", "STAT"])
        self.wait_for(lambda: [(h["TCPU"], h["STAT"]) for h in self.hosts().values()]
                      == [("800", "on")] * 2, "both hosts monitored")
        for row in self.hosts().values():
            self.assertEqual((row["RVM"], row["FCPU"], row["ACPU"]), ("0", "800", "800"))
            self.assertEqual(row["TMEM"], "16777216")

        out = self.ok("onehost", "show", "0")
        info = parse_show(out)
        self.assertEqual((info["ID"], info["NAME"], info["STATE"]), ("0", "host01", "MONITORED"))
        self.assertEqual((info["IM_MAD"], info["VM_MAD"], info["TM_MAD"]),
                         ("im_xen", "vmm_xen", "tm_nfs"))
        self.assertIn("MONITORING INFORMATION", out)
        monitoring = out.split("MONITORING INFORMATION\n", 1)[1].splitlines()
        for line in ("HYPERVISOR=dummy", "TM_MAD=tm_nfs", "TOTALCPU=800", "HOSTNAME=host01"):
            self.assertIn(line, monitoring)
        self.assertEqual(parse_show(self.ok("onehost", "show", "host02"))["ID"], "1")

        # "tail -f $ONE_LOCATION/var/oned.log"
        log = self.one.oned_log()
        self.assertRegex(log, r"\[InM\]\[I\]: Monitoring host host01 \(0\)")
        self.assertRegex(log, r"\[InM\]\[D\]: Host 1 successfully monitored\.")

    def test_duplicate_and_unknown_host(self):
        """A second host01 and an unknown host fail with one line on stderr."""
        self.ok("onehost", "create", "host01", "im_xen", "vmm_xen", "tm_nfs")
        rc, out, err = self.run_cli("onehost", "create", "host01", "im_xen", "vmm_xen", "tm_nfs")
        self.assertNotEqual(rc, 0)
        self.assertEqual(out, "")
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("NAME is already taken", err)
        rc, _out, err = self.run_cli("onehost", "show", "7")
        self.assertNotEqual(rc, 0)
        self.assertEqual(len(err.splitlines()), 1, err)

    def test_host_down(self):
        """A host whose dummy "down" marker exists goes to err, and back to on without it."""
        self.create_hosts()
        marker_dir = os.path.join(self.one.var, "dummy", "down")
        os.makedirs(marker_dir, exist_ok=True)
        marker = os.path.join(marker_dir, "host02")
        open(marker, "w").close()
        self.wait_for(lambda: self.hosts()["host02"]["STAT"] == "err", "host02 in err")
        self.assertEqual(self.hosts()["host01"]["STAT"], "on")
        # Between two lists a new monitoring round may have begun: the host is then
        # MONITORING_ERROR (OpenNebula 4.x), still a host whose last monitoring failed.
        self.assertIn(parse_show(self.ok("onehost", "show", "host02"))["STATE"],
                      ("ERROR", "MONITORING_ERROR"))
        self.assertIn("host host02 is down", self.one.oned_log())
        os.unlink(marker)
        self.wait_for(lambda: self.hosts()["host02"]["STAT"] == "on", "host02 back on")


class UsersTest(SeedCloudTestCase):
    """"Configuring OpenNebula: Users": oneuser create/list/delete."""

    def test_create_list_delete(self):
        """helen is listed with the SHA1 of her password, and can log in."""
        self.create_helen()
        rows = {r["NAME"]: r for r in self.table("oneuser")}
        self.assertEqual(rows["oneadmin"], {
            "UID": "0", "NAME": "oneadmin", "ENABLE": "True",
            "PASSWORD": hashlib.sha1(b"onecloud").hexdigest()})
        # The seed prints 34a91f71...; that is not sha1("mypass") (the slide's
        # value came from another password), so the real digest is expected.
        self.assertEqual(rows["helen"]["PASSWORD"], hashlib.sha1(b"mypass").hexdigest())
        self.assertEqual(rows["helen"]["PASSWORD"], "e727d1464ae12436e899a726da5b2f11d8381b26")
        self.assertEqual(rows["helen"]["ENABLE"], "True")
        self.assertNotEqual(rows["helen"]["UID"], "0")

        # helen works with her own ONE_AUTH file, sees herself only.
        self.assertEqual(self.table("onevm", auth=self.helen_auth), [])
        self.assertEqual([r["NAME"] for r in self.table("oneuser", auth=self.helen_auth)],
                         ["helen"])
        rc, out, err = self.run_cli("oneuser", "create", "eve", "x", auth=self.helen_auth)
        self.assertNotEqual(rc, 0)
        self.assertIn("Not authorized", err)

        wrong = self.one.write_auth("wrong_auth", "helen:notmypass")
        rc, out, err = self.run_cli("onevm", "list", auth=wrong)
        self.assertNotEqual(rc, 0)
        self.assertEqual(out, "")
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("authenticated", err)

        self.assertEqual(self.ok("oneuser", "delete", "helen"), "")
        self.assertEqual([r["NAME"] for r in self.table("oneuser")], ["oneadmin"])
        rc, _out, err = self.run_cli("onevm", "list", auth=self.helen_auth)
        self.assertNotEqual(rc, 0)


class NetworksTest(SeedCloudTestCase):
    """"Using the Private Cloud: Virtual Networks": onevnet create/list/show."""

    def test_create_list_show(self):
        """real.net and fake.net as written in the seed."""
        self.assertEqual(self.create_networks(), [0, 1])
        rows = self.table("onevnet")
        self.assertEqual([(r["ID"], r["USER"], r["NAME"], r["TYPE"], r["BRIDGE"], r["#LEASES"])
                          for r in rows],
                         [("0", "oneadmin", "One-TD", "Ranged", "xenbr0", "0"),
                          ("1", "oneadmin", "One-TD-Invisible", "Fixed", "xenbr0", "0")])

        real = parse_show(self.ok("onevnet", "show", "One-TD"))
        self.assertEqual((real["TYPE"], real["BRIDGE"], real["PUBLIC"]),
                         ("RANGED", "xenbr0", "Yes"))
        self.assertEqual((real["IP START"], real["IP END"]),
                         (f"192.168.{CN}.129", f"192.168.{CN}.254"))
        self.assertEqual(self.vnet_leases("One-TD"), {})

        fake = self.vnet_leases("One-TD-Invisible")
        self.assertEqual(sorted(fake), sorted(FAKE_IPS))
        for ip, row in fake.items():
            self.assertEqual((row["MAC"], row["USED"]), (ip_to_mac(ip), "0"))

        # helen may use oneadmin's (public) networks.
        self.create_helen()
        self.assertEqual(len(self.table("onevnet", auth=self.helen_auth)), 2)


class VirtualMachinesTest(SeedCloudTestCase):
    """"Using the Private Cloud: Virtual Machines": the ttylinux VM and its NICs."""

    def setUp(self):
        super().setUp()
        self.build_cloud()

    def test_ttylinux_by_helen_and_oneadmin(self):
        """Both ttylinux VMs run, each with its own lease of One-TD; helen sees hers only."""
        helen_vm = self.create_vm(auth=self.helen_auth)
        admin_vm = self.create_vm()
        self.assertNotEqual(helen_vm, admin_vm)
        listed = self.vms()
        self.assertEqual((listed[helen_vm]["USER"], listed[helen_vm]["NAME"]),
                         ("helen", "ttylinux"))
        self.assertEqual(listed[admin_vm]["USER"], "oneadmin")
        self.assertIn(listed[admin_vm]["STAT"], ("pend", "prol", "boot", "runn"))

        rows = [self.wait_vm_stat(vid, "runn") for vid in (helen_vm, admin_vm)]
        for row in rows:
            self.assertIn(row["HOSTNAME"], ("host01", "host02"))
        # MEM is what the dummy VMM's POLL reports (64 MB in KB).
        self.wait_for(lambda: [self.vms()[vid]["MEM"] for vid in (helen_vm, admin_vm)]
                      == ["65536"] * 2, "both VMs polled (MEM 65536)")

        ips = {}
        for vid in (helen_vm, admin_vm):
            ip, mac = self.running_vm_ip(vid)
            self.assertTrue(in_real_range(ip), ip)
            self.assertEqual(mac, ip_to_mac(ip))
            self.assertTrue(mac.startswith(f"02:00:c0:a8:{CN:02x}:"), mac)
            ips[vid] = ip
            _info, nics, out = self.vm_show(vid)
            self.assertEqual((nics[0]["NETWORK"], nics[0]["BRIDGE"]), ("One-TD", "xenbr0"))
            for line in ("CPU=0.1", "MEMORY=64", "NAME=ttylinux", "  ACPI=no ]",
                         "  SOURCE=/srv/cloud/images/ttylinux/ttylinux.img,",
                         "  TARGET=hda", "  READONLY=no,", "  KEYMAP=es,", "  PORT=5902,",
                         "  TYPE=vnc ]"):
                self.assertTrue(any(l.startswith(line) for l in out.splitlines()),
                                f"{line!r} not in:\n{out}")
        self.assertNotEqual(ips[helen_vm], ips[admin_vm])

        leases = self.vnet_leases("One-TD")
        self.assertEqual({ip: (row["USED"], row["VID"]) for ip, row in leases.items()},
                         {ips[helen_vm]: ("1", str(helen_vm)),
                          ips[admin_vm]: ("1", str(admin_vm))})
        self.assertEqual({r["NAME"]: r["#LEASES"] for r in self.table("onevnet")},
                         {"One-TD": "2", "One-TD-Invisible": "0"})

        # helen sees her VM only, and may not look at oneadmin's.
        self.assertEqual(list(self.vms(auth=self.helen_auth)), [helen_vm])
        self.assertEqual(self.vm_show(helen_vm, auth=self.helen_auth)[0]["USER"], "helen")
        rc, out, err = self.run_cli("onevm", "show", admin_vm, auth=self.helen_auth)
        self.assertNotEqual(rc, 0)
        self.assertEqual(out, "")
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("Not authorized", err)
        rc, out, err = self.run_cli("onevm", "shutdown", admin_vm, auth=self.helen_auth)
        self.assertNotEqual(rc, 0)
        self.assertIn("Not authorized", err)
        self.assertEqual(self.vms()[admin_vm]["STAT"], "runn")

        self.assertEqual(sum(int(h["RVM"]) for h in self.hosts().values()), 2)

    def test_requested_ip_and_fixed_network(self):
        """``IP=192.168.$CN.140`` is honoured; fake.net hands out its fixed leases."""
        fixed = self.create_vm(ttylinux_with_nics(
            seed_text('NIC=[NETWORK="One-TD", IP=192.168.$CN.140]')), filename="fixed.one")
        fake = self.create_vm(ttylinux_with_nics('NIC=[NETWORK="One-TD-Invisible"]'),
                              filename="fake.one")
        # "A VM with two interfaces each one in a different vlan"
        both = self.create_vm(ttylinux_with_nics('NIC=[NETWORK="One-TD"]',
                                                 'NIC=[NETWORK="One-TD-Invisible"]'),
                              filename="both.one")
        for vid in (fixed, fake, both):
            self.wait_vm_stat(vid, "runn")

        self.assertEqual(self.running_vm_ip(fixed),
                         (f"192.168.{CN}.140", f"02:00:c0:a8:{CN:02x}:8c"))
        fake_ip, fake_mac = self.running_vm_ip(fake)
        self.assertIn(fake_ip, FAKE_IPS)
        self.assertEqual(fake_mac, ip_to_mac(fake_ip))

        nics = self.vm_show(both)[1]
        self.assertEqual([n["NETWORK"] for n in nics], ["One-TD", "One-TD-Invisible"])
        self.assertTrue(in_real_range(nics[0]["IP"]), nics[0])
        self.assertNotEqual(nics[0]["IP"], f"192.168.{CN}.140")
        self.assertIn(nics[1]["IP"], FAKE_IPS)
        self.assertNotEqual(nics[1]["IP"], fake_ip)

        fake_leases = self.vnet_leases("One-TD-Invisible")
        self.assertEqual(sorted(ip for ip, r in fake_leases.items() if r["USED"] == "1"),
                         sorted([fake_ip, nics[1]["IP"]]))

        # The same IP twice is refused, and nothing is created.
        before = set(self.vms())
        self.one.write_file("again.one", ttylinux_with_nics(
            seed_text('NIC=[NETWORK="One-TD", IP=192.168.$CN.140]')))
        rc, _out, err = self.run_cli("onevm", "create", "again.one")
        self.assertNotEqual(rc, 0)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertEqual(set(self.vms()), before)

    def test_shutdown(self):
        """``onevm shutdown`` ends in DONE, frees the lease and the host's capacity."""
        vid = self.create_vm()
        other = self.create_vm()
        row = self.wait_vm_stat(vid, "runn")
        self.wait_vm_stat(other, "runn")
        ip, _ = self.running_vm_ip(vid)
        self.assertNotEqual(self.hosts()[row["HOSTNAME"]]["RVM"], "0")

        self.assertEqual(self.ok("onevm", "shutdown", vid), "")
        info = self.wait_vm_state(vid, "DONE")
        self.assertEqual(info["LCM_STATE"], "LCM_INIT")
        self.assertNotEqual(info["END TIME"], "-")
        self.assertNotIn(vid, self.vms())          # onevm list hides DONE VMs
        self.assertIn(other, self.vms())
        self.assertNotIn(ip, self.vnet_leases("One-TD"))
        self.assertEqual(sum(int(h["RVM"]) for h in self.hosts().values()), 1)
        self.assertEqual({r["NAME"]: r["#LEASES"] for r in self.table("onevnet")}["One-TD"],
                         "1")

        # A DONE VM accepts no more actions; the running one shuts down too.
        rc, _out, err = self.run_cli("onevm", "shutdown", vid)
        self.assertNotEqual(rc, 0)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.ok("onevm", "shutdown", other)
        self.wait_vm_state(other, "DONE")
        self.assertEqual([h["RVM"] for h in self.hosts().values()], ["0", "0"])
        self.assertEqual(self.vnet_leases("One-TD"), {})
        self.assertEqual(self.vms(), {})

    def test_dummy_deploy_failure(self):
        """``DUMMY = [ FAIL = "deploy" ]``: the VM fails and its host's capacity comes
        back; its lease stays with it (3.4) until ``onevm delete``."""
        vid = self.create_vm(ttylinux_with_nics(TTYLINUX_NIC, 'DUMMY = [ FAIL = "deploy" ]'),
                             filename="failer.one")
        row = self.wait_vm_stat(vid, "fail")
        self.assertIn(row["HOSTNAME"], ("host01", "host02"))
        info = self.vm_show(vid)[0]
        self.assertEqual(info["STATE"], "FAILED")
        self.assertEqual([h["RVM"] for h in self.hosts().values()], ["0", "0"])
        for h in self.hosts().values():
            self.assertEqual(h["ACPU"], "800")
        _info, nics, _out = self.vm_show(vid)
        self.assertEqual(list(self.vnet_leases("One-TD")), [nics[0]["IP"]])
        self.assertIn("dummy failure of deploy", self.one.oned_log())
        self.ok("onevm", "delete", vid)
        self.wait_vm_state(vid, "DONE")
        self.assertEqual(self.vnet_leases("One-TD"), {})

        # The network still hands out leases.
        again = self.create_vm()
        self.wait_vm_stat(again, "runn")
        self.assertTrue(in_real_range(self.running_vm_ip(again)[0]))


class RestartTest(SeedCloudTestCase):
    """Everything the tutorial created survives a daemon restart."""

    def test_restart(self):
        """Hosts, users, networks, leases, VMs and history are reloaded; ids are not reused."""
        self.build_cloud()
        helen_vm = self.create_vm(auth=self.helen_auth)
        fixed = self.create_vm(ttylinux_with_nics(
            seed_text('NIC=[NETWORK="One-TD", IP=192.168.$CN.140]')), filename="fixed.one")
        failed = self.create_vm(ttylinux_with_nics(TTYLINUX_NIC, 'DUMMY = [ FAIL = "deploy" ]'),
                                filename="failer.one")
        done = self.create_vm(ttylinux_with_nics('NIC=[NETWORK="One-TD-Invisible"]'),
                              filename="fake.one")
        for vid in (helen_vm, fixed, done):
            self.wait_vm_stat(vid, "runn")
        self.wait_vm_stat(failed, "fail")
        self.ok("onevm", "shutdown", done)      # the newest VM ends DONE
        self.wait_vm_state(done, "DONE")

        before = {
            "hosts": self.ok("onehost", "list"),
            "users": self.ok("oneuser", "list"),
            "vnets": self.ok("onevnet", "list"),
            "leases": self.vnet_leases("One-TD"),
            "fake leases": self.vnet_leases("One-TD-Invisible"),
            "vms": {vid: (r["USER"], r["NAME"], r["STAT"], r["HOSTNAME"])
                    for vid, r in self.vms().items()},
            "shows": {vid: self.vm_show(vid)[0] for vid in (helen_vm, fixed, failed, done)},
        }
        self.assertEqual(set(before["vms"]), {helen_vm, fixed, failed})

        self.one.restart()

        self.assertEqual(self.hosts().keys(), {"host01", "host02"})
        self.wait_for(lambda: self.ok("onehost", "list") == before["hosts"],
                      lambda: f"onehost list as before:\n{before['hosts']}")
        self.assertEqual(self.ok("oneuser", "list"), before["users"])
        self.assertEqual(self.ok("onevnet", "list"), before["vnets"])
        self.assertEqual(self.vnet_leases("One-TD"), before["leases"])
        self.assertEqual(self.vnet_leases("One-TD-Invisible"), before["fake leases"])
        self.assertEqual({vid: (r["USER"], r["NAME"], r["STAT"], r["HOSTNAME"])
                          for vid, r in self.vms().items()}, before["vms"])
        for vid, info in before["shows"].items():
            self.assertEqual(self.vm_show(vid)[0], info)
        self.assertEqual(list(self.vms(auth=self.helen_auth)), [helen_vm])

        xml = self.ok("onevm", "show", "-x", done)
        for tag in ("HISTORY_RECORDS", "HISTORY", "HOSTNAME", "RSTIME", "ETIME"):
            self.assertIn(f"<{tag}>", xml)
        rstime = int(re.search(r"<HISTORY>.*?<RSTIME>(\d+)</RSTIME>", xml, re.DOTALL).group(1))
        etime = int(re.search(r"<HISTORY>.*?<ETIME>(\d+)</ETIME>", xml, re.DOTALL).group(1))
        self.assertGreater(rstime, 0)
        self.assertGreaterEqual(etime, rstime)
        self.assertRegex(xml, r"<HISTORY>.*?<HOSTNAME>host0[12]</HOSTNAME>")

        # Running VMs keep running (polled again), and a new VM gets a fresh id.
        new = self.create_vm()
        self.assertEqual(new, done + 1)
        self.wait_vm_stat(new, "runn")
        new_ip = self.running_vm_ip(new)[0]
        self.assertNotIn(new_ip, before["leases"])
        self.assertEqual(self.vms()[helen_vm]["STAT"], "runn")
        self.assertEqual(sum(int(h["RVM"]) for h in self.hosts().values()), 3)

        # The hosts are monitored again after the restart.
        self.assertRegex(self.one.oned_log().split("Init OpenNebula Log system")[-1],
                         r"Host \d successfully monitored\.")
