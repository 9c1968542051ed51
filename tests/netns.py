"""Network namespaces for tests of the VNM host scripts: :class:`NetnsLab`;
:func:`vm_xml` builds a script's base64 VM XML argument, :func:`run_script`
runs one of ``drivers/vnm/remotes/<driver>/<action>`` (in a netns).

A lab is a "host" netns (bridges, taps, iptables/ebtables, an Open vSwitch
userspace instance) and "VM" netns, each VM a veth pair: ``eth0`` (its MAC
and IP) in the VM's netns, the host end named as the VM's tap
(``one-<vid>-<nic_id>``) in the host netns. Names carry a per-lab prefix
(``nbt<pid>x<n>``), so labs of parallel test runs do not meet; everything
is removed by name (netns) or pid (OVS daemons) in :meth:`NetnsLab.destroy`.
Needs root and ``ip``; :func:`unavailable` says why not (for ``SkipTest``).

Usage::

    lab = NetnsLab(); self.addCleanup(lab.destroy)
    lab.add_vm("a", "one-7-0", "02:00:cb:00:71:01", "203.0.113.1")
    lab.host("ip", "link", "add", "onebr0", "type", "bridge")
    lab.wait_ping("a", "203.0.113.2")          # AssertionError after 90 s
    assert not lab.ping("a", "203.0.113.3")    # a few tries, all lost
"""

import base64
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time

_counter = itertools.count()

#: Seconds a "reaches" check polls before failing (busy machines).
DEADLINE = 90.0


def unavailable(*commands):
    """Why these tests cannot run here (str), or ``None``: not root, or a
    command missing from PATH."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for c in ("ip",) + commands:
        if not shutil.which(c):
            return f"{c} is not installed"
    return None


def run(argv, check=True, env=None, timeout=60):
    """``subprocess.run`` of argv with text output; ``check`` raises
    ``AssertionError`` with the output."""
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"{argv} failed ({p.returncode}): {p.stderr}{p.stdout}")
    return p


class NetnsLab:
    """One host netns and its VMs; see the module docstring."""

    def __init__(self):
        self.prefix = f"nbt{os.getpid()}x{next(_counter)}"
        self.host_ns = f"{self.prefix}-h"
        self.vms = {}            # name -> (netns, tap, mac, ip)
        self.netns = []
        self.ovs = None          # dict: dir, env, pids
        self.tmp = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        self._add_ns(self.host_ns)

    def _add_ns(self, ns):
        run(["ip", "netns", "add", ns])
        self.netns.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])

    # -- commands ------------------------------------------------------------

    def host(self, *argv, check=True, env=None):
        """Run argv in the host netns."""
        return run(["ip", "netns", "exec", self.host_ns, *argv], check=check, env=env)

    def vm(self, name, *argv, check=True):
        """Run argv in VM ``name``'s netns."""
        return run(["ip", "netns", "exec", self.vms[name][0], *argv], check=check)

    def popen_vm(self, name, argv):
        """A background process in VM ``name``'s netns (caller kills it)."""
        return subprocess.Popen(["ip", "netns", "exec", self.vms[name][0], *argv],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    # -- VMs -----------------------------------------------------------------

    def add_vm(self, name, tap, mac, ip, prefix_len=24):
        """A VM netns with ``eth0`` (mac, ip/prefix_len) whose peer is
        ``tap`` (up, not attached) in the host netns."""
        ns = f"{self.prefix}-{name}"
        self._add_ns(ns)
        run(["ip", "-n", self.host_ns, "link", "add", tap, "type", "veth",
             "peer", "name", "eth0", "netns", ns])
        run(["ip", "-n", ns, "link", "set", "eth0", "address", mac])
        run(["ip", "-n", ns, "addr", "add", f"{ip}/{prefix_len}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", self.host_ns, "link", "set", tap, "up"])
        self.vms[name] = (ns, tap, mac, ip)

    def set_mac(self, name, mac):
        """Change VM ``name``'s eth0 MAC and forget its neighbours."""
        ns = self.vms[name][0]
        run(["ip", "-n", ns, "link", "set", "eth0", "address", mac])
        run(["ip", "-n", ns, "neigh", "flush", "all"])

    def ping(self, name, ip, tries=3):
        """True when one of ``tries`` pings (1 s wait each) from VM
        ``name`` to ``ip`` is answered."""
        for _ in range(tries):
            if self.vm(name, "ping", "-c1", "-W1", "-q", ip, check=False).returncode == 0:
                return True
        return False

    def wait_ping(self, name, ip, deadline=DEADLINE):
        """Poll pings from ``name`` to ``ip`` until one is answered;
        ``AssertionError`` after ``deadline`` seconds."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.ping(name, ip, tries=1):
                return
            time.sleep(0.2)
        raise AssertionError(f"{name} never reached {ip} in {deadline} s")

    def links(self):
        """Names of the host netns' links."""
        out = self.host("ip", "-o", "link", "show").stdout
        return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}

    # -- Open vSwitch (userspace datapath) -----------------------------------

    def start_ovs(self):
        """ovsdb-server and ovs-vswitchd in the host netns with a private
        db/run dir; returns the env (``OVS_*`` dirs, ``VNM_OVS_DB``,
        ``VNM_OVS_DATAPATH=netdev``) for ovs-* commands and the scripts."""
        d = os.path.join(self.tmp, "ovs")
        os.makedirs(d)
        env = dict(os.environ, OVS_RUNDIR=d, OVS_LOGDIR=d, OVS_DBDIR=d, OVS_SYSCONFDIR=d,
                   VNM_OVS_DB=f"unix:{d}/db.sock", VNM_OVS_DATAPATH="netdev")
        self.ovs = {"dir": d, "env": env, "pids": []}
        schema = "/usr/share/openvswitch/vswitch.ovsschema"
        run(["ovsdb-tool", "create", f"{d}/conf.db", schema], env=env)
        self.host("ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock",
                  f"--pidfile={d}/ovsdb-server.pid", "--detach",
                  f"--log-file={d}/ovsdb-server.log", env=env)
        self._note_pid(f"{d}/ovsdb-server.pid")
        self.host("ovs-vsctl", f"--db=unix:{d}/db.sock", "--no-wait", "init", env=env)
        self.host("ovs-vswitchd", f"unix:{d}/db.sock", f"--pidfile={d}/ovs-vswitchd.pid",
                  "--detach", f"--log-file={d}/ovs-vswitchd.log", env=env)
        self._note_pid(f"{d}/ovs-vswitchd.pid")
        return env

    def _note_pid(self, path):
        with open(path) as f:
            self.ovs["pids"].append(int(f.read().strip()))

    def vsctl(self, *args, check=True):
        d = self.ovs["dir"]
        return self.host("ovs-vsctl", f"--db=unix:{d}/db.sock", "--timeout=20", *args,
                         check=check, env=self.ovs["env"])

    def ofctl(self, command, bridge, *args, check=True):
        return self.host("ovs-ofctl", command, f"unix:{self.ovs['dir']}/{bridge}.mgmt",
                         *args, check=check, env=self.ovs["env"])

    # -- cleanup ---------------------------------------------------------------

    def destroy(self):
        """Stop the OVS daemons (by pid) and delete every netns and the
        temporary folder of this lab; safe to call twice."""
        if self.ovs:
            for pid in reversed(self.ovs["pids"]):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                end = time.monotonic() + 10
                while time.monotonic() < end:
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.05)
            self.ovs["pids"] = []
        for ns in reversed(self.netns):
            run(["ip", "netns", "del", ns], check=False)
        self.netns = []
        shutil.rmtree(self.tmp, ignore_errors=True)


# -- the VNM scripts ----------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REMOTES = os.path.join(ROOT, "drivers", "vnm", "remotes")


def vm_xml(vid, *nics):
    """Base64 (str) of a ``<VM>`` with ``ID`` vid and one ``TEMPLATE/NIC``
    per dict of NIC attributes (``NIC_ID`` defaults to its position,
    ``TARGET`` to ``one-<vid>-<nic_id>``)."""
    parts = [f"<VM><ID>{vid}</ID><NAME>vm{vid}</NAME><TEMPLATE>"]
    for i, nic in enumerate(nics):
        nic = dict(nic)
        nic.setdefault("NIC_ID", str(i))
        nic.setdefault("TARGET", f"one-{vid}-{nic['NIC_ID']}")
        body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in nic.items())
        parts.append(f"<NIC>{body}</NIC>")
    parts.append("</TEMPLATE></VM>")
    return base64.b64encode("".join(parts).encode()).decode()


def run_script(driver, action, argument, env, netns=None, check=True):
    """Run ``<REMOTES>/<driver>/<action> <argument>`` with ``env`` (dict,
    merged over os.environ), inside ``netns`` when given; returns the
    CompletedProcess (text). ``check``: AssertionError on a non-zero exit."""
    argv = [os.path.join(REMOTES, driver, action)]
    if argument is not None:
        argv.append(argument)
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    p = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, **env),
                       stdin=subprocess.DEVNULL, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"{driver}/{action} of {(argument or '')[:40]} exited "
                             f"{p.returncode}: {p.stderr}{p.stdout}")
    return p
