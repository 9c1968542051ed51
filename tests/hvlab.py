"""The real-hypervisor test lab, for tests: :func:`load_lab` and :func:`mark_ran`.

The lab is started outside the tests, as root, by ``tests/hv/lab-up.sh`` (``.ci/run``
does it) and stopped by ``tests/hv/lab-down.sh``; its state lives in ``$NEBTWIST_LAB``
(default ``/var/tmp/nebtwist-lab``) and is described by ``$NEBTWIST_LAB/lab.json``.

What is in it (the front-end is this, the root, network namespace)::

    root ns  nt-fe 198.51.100.254/24 --veth--> netns nt-sw, bridge "mgmt"
    nt-h1    198.51.100.1   netns + mount + UTS namespace, hostname nt-h1
    nt-h2    198.51.100.2   the same
    each host: its own virtlogd, libvirtd (QEMU TCG only: use <domain type='qemu'>; QEMU
    runs as root, no security driver, no dynamic ownership), sshd on its IP, a guest
    bridge onebr0 203.0.113.254/24, a second NIC eth1 (up, no address; ``Lab.phydev``)
    into bridge "vmnet" of netns nt-sw that links the hosts' VM traffic (a PHYDEV for
    the VNM drivers), when Open vSwitch is installed its own ovsdb-server and
    ovs-vswitchd (userspace datapath: ``datapath_type=netdev``; ``Lab.ovs(host)``) with
    their run dir at /run/openvswitch in the host, private /etc/libvirt (host_uuid
    00000000-0000-4000-8000-00000000000N, migration_host = its IP), /run/libvirt,
    /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt, and a private
    $NEBTWIST_LAB/local (on the root file system: $NEBTWIST_LAB/hosts/nt-hN/local; the
    front-end's own is $NEBTWIST_LAB/local). $NEBTWIST_LAB/shared is seen by everyone.

Host names resolve only through the lab's ssh config: put ``lab.bin_dir`` first on PATH
(:meth:`Lab.env`) and ``ssh nt-h1``, ``scp``, ``virsh -c qemu+ssh://nt-h1/system`` and
libvirt's ``qemu+ssh`` transport work, as root, without touching ``~/.ssh``. The hosts'
libvirtd and ssh sessions have the same wrappers first on PATH (peer-to-peer migration,
host-to-host scp).

The guest (``tests/hv/build-guest.sh``): ``lab.guest.kernel``, ``.initrd`` (direct kernel
boot, ``console=ttyS0``) and ``.disk`` (qcow2 base with /hello.txt). Its console markers:
``NEBTWIST-GUEST-BOOTED``, ``NEBTWIST-CONTEXT-BEGIN`` .. ``NEBTWIST-CONTEXT-END``,
``NEBTWIST-DISK <text>``, ``NEBTWIST-NET eth0 <mac> <ip>``, ``NEBTWIST-TICK <n>`` every
2 s, ``NEBTWIST-ACPI-POWEROFF``. A TCG boot takes 5-35 s depending on the machine's load:
boot one guest per test module where possible, and never more than two at once.

Usage::

    from tests.hvlab import load_lab, mark_ran, wait_console

    class DeployTests(unittest.TestCase):
        def setUp(self):
            self.lab = load_lab()      # SkipTest, with the reason, when there is no lab
            mark_ran(self)             # CI counts the real-hypervisor tests that ran

Run by hand (as root)::

    tests/hv/lab-up.sh && python -m twisted.trial tests.test_hvlab

Serial consoles written by libvirt are root-owned, mode 0600: the tests must run as root.
"""

import json
import os
import shlex
import subprocess
import time
from typing import NamedTuple

from twisted.internet import defer, task
from twisted.trial.unittest import SkipTest

__all__ = [
    "DEFAULT_LAB", "lab_dir", "Lab", "GuestFiles", "ConsoleTimeout", "load_lab", "mark_ran",
    "RealHypervisorMixin", "read_console", "wait_console", "wait_console_async", "ticks",
]

DEFAULT_LAB = "/var/tmp/nebtwist-lab"

#: Folders each lab host has to itself (bind mounts in its mount namespace), mapped to
#: their place under ``$NEBTWIST_LAB/hosts/<host>/`` on the root file system.
_PRIVATE = {
    "/etc/libvirt": "etc-libvirt",
    "/run/libvirt": "run",
    "/var/lib/libvirt": "lib",
    "/var/log/libvirt": "log",
    "/var/cache/libvirt": "cache",
}


def lab_dir():
    """The lab folder (str): ``$NEBTWIST_LAB``, else :data:`DEFAULT_LAB`."""
    return os.environ.get("NEBTWIST_LAB") or DEFAULT_LAB


class GuestFiles(NamedTuple):
    """Absolute paths of the test guest built by ``tests/hv/build-guest.sh``."""

    kernel: str
    initrd: str
    disk: str


class ConsoleTimeout(AssertionError):
    """A console marker did not show up in time; the message ends with the console's tail."""


class Lab:
    """A running lab, from its ``lab.json`` (see the module docstring).

    Attributes: ``path`` (the lab folder), ``hosts`` (list of host names, ``["nt-h1",
    "nt-h2"]``), ``bin_dir`` (the ssh/scp wrappers), ``ssh_config``, ``local_dir``,
    ``shared_dir``, ``guest`` (:class:`GuestFiles`), ``bridge`` (the guest bridge's name on
    every host, ``"onebr0"``), ``bridge_ip`` (``"203.0.113.254"``), ``frontend_ip``
    (``"198.51.100.254"``), ``phydev`` (the hosts' second NIC, linked to each other
    through bridge "vmnet" of netns nt-sw: ``"eth1"``; None for a lab.json from before
    it), ``info`` (the parsed lab.json).
    Unknown host names raise ``KeyError``.
    """

    def __init__(self, info):
        self.info = info
        self.path = info["lab"]
        self._hosts = {h["name"]: h for h in info["hosts"]}
        self.hosts = [h["name"] for h in info["hosts"]]
        self.bin_dir = info["ssh"]["bin_dir"]
        self.ssh_config = info["ssh"]["config"]
        self.local_dir = info["local_dir"]
        self.shared_dir = info["shared_dir"]
        g = info["guest"]
        self.guest = GuestFiles(g["kernel"], g["initrd"], g["disk"])
        self.bridge = info["bridge"]["name"]
        self.bridge_ip = info["bridge"]["ip"]
        self.frontend_ip = info["frontend"]["ip"]
        self.phydev = (info.get("phydev") or {}).get("name")

    def __repr__(self):
        return f"<Lab {self.path} hosts={self.hosts}>"

    def host(self, host):
        """The lab.json entry (dict) of ``host``: name, ip, netns, uri, host_uuid, dir,
        local, pid_files."""
        return self._hosts[host]

    def ovs(self, host):
        """``host``'s Open vSwitch (dict), or None when the lab has none (not installed)
        or its daemons are not running. Keys: ``datapath_type`` (``"netdev"``: the kernel
        datapath does not exist here), ``db`` (``"unix:/run/openvswitch/db.sock"``, the
        ``ovs-vsctl --db`` as the host sees it, also its default), ``rundir``
        (``/run/openvswitch``, where ``ovs-ofctl`` finds ``<bridge>.mgmt``),
        ``db_outside`` / ``rundir_outside`` (the same from the front-end's root
        namespace), ``pid_files`` (``ovsdb-server``, ``ovs-vswitchd``)."""
        info = self.host(host).get("ovs")
        if not info or not all(_alive(p) for p in info["pid_files"].values()):
            return None
        return info

    def ip(self, host):
        """The management IPv4 address (str) of ``host``, e.g. ``"198.51.100.1"``."""
        return self.host(host)["ip"]

    def uri(self, host):
        """The libvirt URI the drivers use: ``qemu+ssh://<host>/system`` (needs
        :meth:`env`'s PATH)."""
        self.host(host)
        return f"qemu+ssh://{host}/system"

    def env(self, base=None):
        """A copy of ``base`` (default ``os.environ``) with ``bin_dir`` first on PATH and
        ``NEBTWIST_LAB`` set: the environment for a daemon or driver that must reach the
        hosts by name."""
        env = dict(os.environ if base is None else base)
        rest = [p for p in env.get("PATH", os.defpath).split(os.pathsep)
                if p and p != self.bin_dir]
        env["PATH"] = os.pathsep.join([self.bin_dir] + rest)
        env["NEBTWIST_LAB"] = self.path
        return env

    def ssh(self, host, command, timeout=120, check=False, input=None):
        """Run ``command`` on ``host`` as root over the lab's ssh.

        ``command`` is a shell command line (str) or an argv list (quoted for the remote
        shell). Returns ``subprocess.CompletedProcess`` with str ``stdout``/``stderr``;
        ``check=True`` raises ``CalledProcessError`` on a non-zero exit, ``timeout`` (s)
        raises ``TimeoutExpired``.
        """
        self.host(host)
        if not isinstance(command, str):
            command = shlex.join(command)
        return subprocess.run(
            [os.path.join(self.bin_dir, "ssh"), host, "--", command],
            input=input, capture_output=True, text=True, timeout=timeout, check=check,
            env=self.env(), stdin=None if input is not None else subprocess.DEVNULL)

    def netns_exec(self, host, argv, timeout=120, check=False):
        """Run ``argv`` (list) in ``host``'s network namespace only (``ip netns exec``):
        its interfaces, addresses and bridge, but the root file system's view of
        ``$NEBTWIST_LAB/local`` and /run/libvirt (use :meth:`ssh` for the host's own
        view). Returns ``subprocess.CompletedProcess`` with str output."""
        ns = self.host(host)["netns"]
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True,
                              text=True, timeout=timeout, check=check,
                              stdin=subprocess.DEVNULL)

    def host_path(self, host, path):
        """Where ``host``'s file ``path`` (absolute) is on the root file system.

        Paths under ``local_dir`` and the host's private libvirt folders (/etc/libvirt,
        /run/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt) map into
        ``$NEBTWIST_LAB/hosts/<host>/``; any other path (``shared_dir`` included) is the
        same for every host and comes back unchanged. ``ValueError`` for a relative path.
        """
        d = self.host(host)["dir"]
        if not os.path.isabs(path):
            raise ValueError(f"host_path needs an absolute path, not {path!r}")
        path = os.path.normpath(path)
        for inside, outside in [(self.local_dir, self.host(host)["local"])] + [
                (k, os.path.join(d, v)) for k, v in _PRIVATE.items()]:
            if path == inside or path.startswith(inside + "/"):
                return outside + path[len(inside):]
        return path

    def files_under(self, host, path):
        """Sorted relative paths (list of str) of the files and symlinks below ``path``
        as ``host`` sees it (through :meth:`host_path`, no ssh); ``[]`` when ``path`` does
        not exist there."""
        top = self.host_path(host, path)
        found = []
        for root, dirs, files in os.walk(top):
            for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                found.append(os.path.relpath(os.path.join(root, name), top))
        return sorted(found)

    def libvirt_open(self, host):
        """A read-write ``libvirt.virConnect`` to ``host`` over qemu+ssh (the caller
        closes it). The lab's ssh wrapper is named in the URI (``command=``), so this
        works whatever this process's PATH is."""
        import libvirt
        return libvirt.open(
            f"{self.uri(host)}?command={os.path.join(self.bin_dir, 'ssh')}")

    def domains(self, host):
        """Sorted names (list of str) of the domains defined or running on ``host``."""
        conn = self.libvirt_open(host)
        try:
            return sorted(d.name() for d in conn.listAllDomains(0))
        finally:
            conn.close()

    def destroy_domain(self, host, name):
        """Destroy (and undefine, if persistent) domain ``name`` on ``host``; no error
        when it does not exist. For test cleanups."""
        import libvirt
        conn = self.libvirt_open(host)
        try:
            # no lookupByName: libvirt's default error handler would print a miss on stderr
            found = [d for d in conn.listAllDomains(0) if d.name() == name]
            if not found:
                return
            dom = found[0]
            persistent = dom.isPersistent()
            try:
                if dom.isActive():
                    dom.destroy()
                if persistent:
                    dom.undefine()
            except libvirt.libvirtError:
                if name in [d.name() for d in conn.listAllDomains(0)]:
                    raise
        finally:
            conn.close()


_checked = {}


def load_lab(check_hosts=True):
    """The running lab as a :class:`Lab`, or raise ``twisted.trial.unittest.SkipTest``
    saying why not: no ``$NEBTWIST_LAB/lab.json``, not root, libvirt-python missing, the
    guest not built, a host's daemons not running, or a host not answering ssh (checked
    once per process and lab.json)."""
    path = os.path.join(lab_dir(), "lab.json")
    if not os.path.exists(path):
        raise SkipTest(f"no real-hypervisor lab: {path} is missing "
                       "(start one as root with tests/hv/lab-up.sh)")
    if os.geteuid() != 0:
        raise SkipTest("the real-hypervisor lab needs root (consoles and lab files are root's)")
    try:
        import libvirt  # noqa: F401
    except ImportError as e:
        raise SkipTest(f"libvirt-python is missing ({e}): pip install libvirt-python")
    try:
        with open(path) as f:
            info = json.load(f)
        st = os.stat(path)
        lab = Lab(info)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SkipTest(f"unreadable lab description {path}: {e!r}")
    for p in lab.guest:
        if not os.path.exists(p):
            raise SkipTest(f"lab guest missing: {p} (build it with tests/hv/build-guest.sh)")
    for h in lab.hosts:
        for daemon, pid_file in lab.host(h)["pid_files"].items():
            if not _alive(pid_file):
                raise SkipTest(f"lab host {h}: {daemon} is not running ({pid_file}); "
                               "restart the lab with tests/hv/lab-up.sh")
    key = (path, st.st_ino, st.st_mtime_ns)
    if check_hosts and not _checked.get(key):
        for h in lab.hosts:
            try:
                r = lab.ssh(h, "hostname", timeout=60)
            except subprocess.TimeoutExpired:
                raise SkipTest(f"lab host {h} does not answer ssh within 60 s")
            if r.returncode != 0 or r.stdout.strip() != h:
                raise SkipTest(f"lab host {h} does not answer ssh: exit {r.returncode}, "
                               f"{(r.stdout + r.stderr).strip()[-300:]!r}")
        _checked[key] = True
    return lab


def _alive(pid_file):
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return False
    return state not in ("Z", "X")


def mark_ran(testcase):
    """Record that real-hypervisor test ``testcase`` ran: append ``testcase.id()`` as a
    line to ``$NEBTWIST_LAB/ran-tests.txt`` (``.ci/run`` counts the lines and fails when
    there are none)."""
    with open(os.path.join(lab_dir(), "ran-tests.txt"), "a") as f:
        f.write(testcase.id() + "\n")


class RealHypervisorMixin:
    """Mix into a ``TestCase``: ``setUp`` sets ``self.lab`` (:func:`load_lab`, so the test
    skips without a lab) and calls :func:`mark_ran`."""

    def setUp(self):
        parent = super().setUp()
        self.lab = load_lab()
        mark_ran(self)
        return parent


def read_console(path):
    """The text (str) of a serial console file so far; ``""`` when it does not exist yet.
    Undecodable bytes become U+FFFD."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _tail(text, lines=25):
    return "\n".join(text.splitlines()[-lines:])


def _console_check(path, marker, count, timeout, t0):
    """Seconds since ``t0`` when ``path`` holds ``marker`` ``count`` times, None
    while waiting; :class:`ConsoleTimeout` past ``timeout``."""
    text = read_console(path)
    if text.count(marker) >= count:
        return time.monotonic() - t0
    if time.monotonic() - t0 > timeout:
        raise ConsoleTimeout(
            f"{marker!r} x{count} not seen in {path} within {timeout} s "
            f"(seen {text.count(marker)}); console tail:\n{_tail(text)}")
    return None


def wait_console(path, marker, count=1, timeout=240, poll=0.5):
    """Block until console file ``path`` holds ``marker`` (str) at least ``count`` times;
    return the seconds waited (float). Raises :class:`ConsoleTimeout` (an
    ``AssertionError``, with the console's last lines) after ``timeout`` seconds.
    For code that runs the reactor, use :func:`wait_console_async`."""
    t0 = time.monotonic()
    while (waited := _console_check(path, marker, count, timeout, t0)) is None:
        time.sleep(poll)
    return waited


def wait_console_async(path, marker, count=1, timeout=240, poll=0.5, clock=None):
    """:func:`wait_console` without blocking the reactor: a ``Deferred`` that fires with the
    seconds waited, or fails with :class:`ConsoleTimeout`. ``clock`` defaults to the global
    reactor (the deadline is real time either way)."""
    if clock is None:
        from twisted.internet import reactor as clock
    t0 = time.monotonic()

    @defer.inlineCallbacks
    def loop():
        while (waited := _console_check(path, marker, count, timeout, t0)) is None:
            yield task.deferLater(clock, poll, lambda: None)
        return waited

    return loop()


def ticks(path):
    """The ``NEBTWIST-TICK <n>`` numbers (list of int, in order) in console file ``path``.
    They restart from 1 at every boot; a paused guest adds none."""
    out = []
    for line in read_console(path).splitlines():
        parts = line.strip().split()
        if len(parts) == 2 and parts[0] == "NEBTWIST-TICK" and parts[1].isdigit():
            out.append(int(parts[1]))
    return out
