"""The seed-001 network-isolation hooks (``hooks/ebtables-kvm``, ``hooks/ebtables-flush``)
on real bridges, veths and ebtables rules in network namespaces made here.

A "host" is a network namespace with a Linux bridge; a "VM NIC" is a veth whose host end
(named as OpenNebula names taps, ``one-<vid>-<nic>``) is a port of that bridge and whose
other end sits in a namespace of its own with the VM's MAC and IP. The hooks read the
domain's XML from ``virsh -c qemu:///system dumpxml``: here a ``virsh`` stand-in first on
PATH prints it (the hook's input, not what is tested; the lab's acceptance test
tests/acceptance/test_seed001_net.py runs them against real libvirt domains). The
rules are real, and so is the traffic they drop.

``SeedHookLines`` runs the seed's oned.conf lines through a whole daemon whose HM driver
reaches the "host" over ssh: a real ``sshd -i`` started inside the host's namespace by
the ssh client's ProxyCommand (keys and config from tests/sshd.py).

Needs root, ``ip``, ``ebtables`` and ``ping``; skips, saying which is missing, otherwise.
"""

import os
import shutil
import subprocess
import uuid

from twisted.trial.unittest import SkipTest, TestCase

from nebtwist import paths
from tests.sshd import start_sshd
from tests.test_hooks import ACTIVE, DONE, RUNNING, HookTestCase, wait_for

KVM_HOOK = paths.shipped("hooks", "ebtables-kvm")
FLUSH_HOOK = paths.shipped("hooks", "ebtables-flush")

#: A ``virsh`` stand-in: ``virsh -c URI dumpxml NAME`` prints ``<dir>/<NAME>.xml`` (exit 1
#: with libvirt's message when missing); every call is appended to ``<dir>/calls``.
VIRSH = """#!/usr/bin/env python3
import os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "calls"), "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if len(args) == 4 and args[0] == "-c" and args[2] == "dumpxml":
    try:
        with open(os.path.join(here, args[3] + ".xml")) as f:
            sys.stdout.write(f.read())
        sys.exit(0)
    except FileNotFoundError:
        pass
print(f"error: failed to get domain '{args[-1]}'", file=sys.stderr)
sys.exit(1)
"""


def domain_xml(name, nics):
    """libvirt domain XML (str) of a running domain ``name`` with bridged ``nics``
    (list of ``(bridge, mac, tap)``), as ``virsh dumpxml`` prints it."""
    ifaces = "".join(
        f"<interface type='bridge'><mac address='{mac}'/><source bridge='{br}'/>"
        f"<target dev='{tap}'/><model type='virtio'/></interface>"
        for br, mac, tap in nics)
    return (f"<domain type='qemu' id='3'><name>{name}</name><memory unit='KiB'>131072"
            f"</memory><devices>{ifaces}</devices></domain>")


def run(argv, check=True, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, check=check,
                          stdin=subprocess.DEVNULL, **kwargs)


def need_tools():
    if os.geteuid() != 0:
        raise SkipTest("network namespaces and ebtables need root")
    for tool in ("ip", "ebtables", "ping"):
        if shutil.which(tool) is None:
            raise SkipTest(f"{tool} is missing")


class NetnsHost:
    """A namespaced "host" with bridge ``br0`` and veth "VM NICs"; everything it makes is
    removed by :meth:`cleanup` (registered by the test)."""

    def __init__(self, testcase):
        self.tag = uuid.uuid4().hex[:6]
        self.ns = f"hc-eb-{self.tag}"
        self.vms = []
        testcase.addCleanup(self.cleanup)
        run(["ip", "netns", "add", self.ns])
        self.sh("ip link set lo up; ip link add br0 type bridge; ip link set br0 up")

    def sh(self, script, check=True):
        return run(["ip", "netns", "exec", self.ns, "sh", "-ec", script], check=check)

    def add_nic(self, tap, mac, ip, bridge="br0"):
        """A VM NIC: veth ``tap`` (a port of ``bridge``) to ``eth0`` in netns ``<ns>-<tap>``."""
        vm = f"{self.ns}-{tap}"
        run(["ip", "netns", "add", vm])
        self.vms.append(vm)
        run(["ip", "-n", self.ns, "link", "add", tap, "type", "veth", "peer", "name", "eth0",
             "netns", vm])
        if bridge:
            run(["ip", "-n", self.ns, "link", "set", tap, "master", bridge])
        run(["ip", "-n", self.ns, "link", "set", tap, "up"])
        for cmd in (["link", "set", "lo", "up"], ["link", "set", "eth0", "address", mac],
                    ["addr", "add", f"{ip}/24", "dev", "eth0"], ["link", "set", "eth0", "up"]):
            run(["ip", "-n", vm] + cmd)
        return vm

    def remove_nic(self, tap):
        """The domain is gone: its tap disappears (the VM end with it)."""
        vm = f"{self.ns}-{tap}"
        run(["ip", "netns", "del", vm])
        self.vms.remove(vm)

    def set_mac(self, tap, mac):
        """Change the VM's MAC; every VM forgets its neighbours (so a peer answers to
        the MAC now in use, as after the guest's unsolicited ARP)."""
        run(["ip", "-n", f"{self.ns}-{tap}", "link", "set", "eth0", "address", mac])
        for vm in self.vms:
            run(["ip", "-n", vm, "neigh", "flush", "all"])

    def reaches(self, tap, ip):
        """True when the VM behind ``tap`` gets an answer to ping ``ip`` (3 tries)."""
        r = run(["ip", "netns", "exec", f"{self.ns}-{tap}", "ping", "-c", "3", "-i", "0.2",
                 "-W", "1", ip], check=False)
        return r.returncode == 0

    def rules(self):
        """The FORWARD rules (list of str) as ``ebtables -L`` prints them."""
        out = run(["ip", "netns", "exec", self.ns, "ebtables", "-L", "FORWARD"]).stdout
        return [" ".join(line.split()) for line in out.splitlines() if line.startswith("-")]

    def cleanup(self):
        for vm in self.vms:
            run(["ip", "netns", "del", vm], check=False)
        run(["ip", "netns", "del", self.ns], check=False)


RED_A = ("one-1-0", "02:00:cb:00:71:0a", "203.0.113.10")
RED_B = ("one-2-0", "02:00:cb:00:71:0b", "203.0.113.11")
# Blue's MAC prefix (from 198.51.100.0/24) with an IP in Red's subnet: only the layer-2
# isolation stands between it and Red.
BLUE_C = ("one-3-0", "02:00:c6:33:64:0c", "203.0.113.12")


class EbtablesHooks(TestCase):
    """The two hooks run on a host (namespace) as the HM driver runs them there."""

    def setUp(self):
        need_tools()
        self.host = NetnsHost(self)
        self.shim = os.path.abspath(self.mktemp())
        os.makedirs(self.shim)
        with open(os.path.join(self.shim, "virsh"), "w") as f:
            f.write(VIRSH)
        os.chmod(os.path.join(self.shim, "virsh"), 0o755)

    def define(self, name, nics):
        with open(os.path.join(self.shim, f"{name}.xml"), "w") as f:
            f.write(domain_xml(name, nics))

    def hook(self, program, *args):
        env = dict(os.environ, PATH=f"{self.shim}:{os.environ.get('PATH', os.defpath)}")
        return run(["ip", "netns", "exec", self.host.ns, program, *args], check=False,
                   env=env)

    def calls(self):
        with open(os.path.join(self.shim, "calls")) as f:
            return f.read().splitlines()

    def test_isolation_antispoofing_and_flush(self):
        for tap, mac, ip in (RED_A, RED_B, BLUE_C):
            self.host.add_nic(tap, mac, ip)
            vid = tap.split("-")[1]
            self.define(f"one-{vid}", [("br0", mac, tap)])
        # before the hooks: plain bridging, Blue reaches Red
        self.assertTrue(self.host.reaches("one-3-0", "203.0.113.10"))
        for vid in ("1", "2", "3"):
            r = self.hook(KVM_HOOK, f"one-{vid}")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"one-{vid}-0", r.stdout)
            self.assertIn("2 rule(s) added", r.stdout)
        self.assertEqual(self.calls(), [f"-c qemu:///system dumpxml one-{v}" for v in "123"])
        expected = [
            "-s ! 02:00:cb:00:71:00/ff:ff:ff:ff:ff:00 -o one-1-0 -j DROP",
            "-s ! 02:00:cb:00:71:0a -i one-1-0 -j DROP",
            "-s ! 02:00:cb:00:71:00/ff:ff:ff:ff:ff:00 -o one-2-0 -j DROP",
            "-s ! 02:00:cb:00:71:0b -i one-2-0 -j DROP",
            "-s ! 02:00:c6:33:64:00/ff:ff:ff:ff:ff:00 -o one-3-0 -j DROP",
            "-s ! 02:00:c6:33:64:0c -i one-3-0 -j DROP",
        ]
        self.assertEqual(self.host.rules(), expected)
        # running it again adds nothing
        r = self.hook(KVM_HOOK, "one-1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("0 rule(s) added", r.stdout)
        self.assertEqual(self.host.rules(), expected)

        # Red <-> Red; Blue -> Red and Red -> Blue dropped
        self.assertTrue(self.host.reaches("one-1-0", "203.0.113.11"))
        self.assertTrue(self.host.reaches("one-2-0", "203.0.113.10"))
        self.assertFalse(self.host.reaches("one-3-0", "203.0.113.10"))
        self.assertFalse(self.host.reaches("one-1-0", "203.0.113.12"))
        # a spoofed MAC, even one of Red's prefix, does not leave the tap...
        self.host.set_mac("one-1-0", "02:00:cb:00:71:99")
        self.assertFalse(self.host.reaches("one-1-0", "203.0.113.11"))
        # ... because of the anti-spoofing rule: without it, it does; the hook puts back
        # just that rule
        self.host.sh(f"ebtables -D FORWARD {expected[1]}")
        self.assertTrue(self.host.reaches("one-1-0", "203.0.113.11"))
        r = self.hook(KVM_HOOK, "one-1")
        self.assertIn("1 rule(s) added", r.stdout)
        self.assertEqual(sorted(self.host.rules()), sorted(expected))
        self.assertFalse(self.host.reaches("one-1-0", "203.0.113.11"))
        self.host.set_mac("one-1-0", RED_A[1])
        self.assertTrue(self.host.reaches("one-1-0", "203.0.113.11"))

        # Blue's domain is gone: flush removes its rules only, and keeps the operator's
        hand = "-p ARP -i one-3-0 -j ACCEPT"
        self.host.sh(f"ebtables -A FORWARD {hand}")
        self.host.remove_nic("one-3-0")
        r = self.hook(FLUSH_HOOK)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 rule(s) removed", r.stdout)
        self.assertEqual(sorted(self.host.rules()), sorted(expected[:4] + [hand]))
        r = self.hook(FLUSH_HOOK, "ignored")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("0 rule(s) removed", r.stdout)
        self.assertTrue(self.host.reaches("one-2-0", "203.0.113.10"))

    def test_only_bridge_ports_and_errors(self):
        self.host.add_nic("one-4-0", "02:00:cb:00:71:0d", "203.0.113.13")
        self.host.add_nic("one-4-1", "02:00:cb:00:72:0d", "203.0.113.14", bridge=None)
        self.define("one-4", [("br0", "02:00:CB:00:71:0D", "one-4-0"),
                              ("other", "02:00:cb:00:72:0d", "one-4-1")])
        r = self.hook(KVM_HOOK, "one-4")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("one-4-1 is not on a bridge, skipped", r.stdout)
        self.assertEqual(self.host.rules(), [
            "-s ! 02:00:cb:00:71:00/ff:ff:ff:ff:ff:00 -o one-4-0 -j DROP",
            "-s ! 02:00:cb:00:71:0d -i one-4-0 -j DROP"])
        # no such domain: virsh's message, exit 1, nothing changed
        r = self.hook(KVM_HOOK, "one-99")
        self.assertEqual(r.returncode, 1)
        self.assertIn("virsh dumpxml one-99 failed: error: failed to get domain 'one-99'",
                      r.stderr)
        self.assertEqual(len(self.host.rules()), 2)
        r = self.hook(KVM_HOOK)
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage: ebtables-kvm <domain>", r.stderr)


class SeedHookLines(HookTestCase):
    """Seed 001's VM_HOOK lines, as written (the hooks' absolute paths standing for
    /srv/cloud/one/share/hooks), in a whole daemon with the dummy drivers: the hooks run
    over ssh on the VM's host, with ``one-$VMID``, add the rules at RUNNING and remove
    them at DONE once the domain's tap is gone."""

    async def test_seed_hooks_run_remotely(self):
        need_tools()
        host = NetnsHost(self)
        server = start_sshd(self)
        shim = os.path.join(server.directory, "shim")
        os.makedirs(shim)
        with open(os.path.join(shim, "virsh"), "w") as f:
            f.write(VIRSH)
        os.chmod(os.path.join(shim, "virsh"), 0o755)
        # sshd for one connection (-i) inside the host's network namespace, with the
        # test sshd's keys; the stand-in virsh first on the session's PATH
        with open(os.path.join(server.directory, "sshd_config")) as f:
            base = f.read()
        inetd = os.path.join(server.directory, "sshd_inetd_config")
        with open(inetd, "w") as f:
            f.write(base + f"SetEnv PATH={shim}:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                           "/usr/bin:/sbin:/bin\n")
        ssh_config = os.path.join(server.directory, "ssh_config")
        with open(ssh_config, "w") as f:
            f.write(f"Host hc-host\n"
                    f"  HostName 127.0.0.1\n"
                    f"  User {server.user}\n"
                    f"  IdentityFile {server.key_path}\n"
                    f"  IdentitiesOnly yes\n"
                    f"  UserKnownHostsFile {server.known_hosts}\n"
                    f"  HostKeyAlias [127.0.0.1]:{server.port}\n"
                    f"  StrictHostKeyChecking yes\n"
                    f"  ProxyCommand ip netns exec {host.ns} /usr/sbin/sshd -i -f {inetd} "
                    f"-E {server.directory}/sshd-inetd.log\n")
        await self.start(
            f'HM_MAD=[ executable = "exec", arguments = "-t 60 -F {ssh_config}" ]',
            f'VM_HOOK = [ name = "ebtables-start", on = "running", command = "{KVM_HOOK}", '
            'arguments = "one-$VMID", remote = "yes" ]',
            f'VM_HOOK = [ name = "ebtables-flush", on = "done", command = "{FLUSH_HOOK}", '
            'arguments = "", remote = "yes" ]')
        vid = await self.ok("one.vm.allocate", "NAME = red\nCPU = 0.1\nMEMORY = 64\n")
        tap, mac = f"one-{vid}-0", "02:00:cb:00:71:0a"
        host.add_nic(tap, mac, "203.0.113.10")
        with open(os.path.join(shim, f"one-{vid}.xml"), "w") as f:
            f.write(domain_xml(f"one-{vid}", [("br0", mac, tap)]))
        await self.host("hc-host")
        await self.wait_vm(vid, ACTIVE, RUNNING)
        await self.logged("Success executing Hook: ebtables-start", vid=vid)
        self.assertIn(f"one-{vid}: {tap} {mac}: 2 rule(s) added", self.vm_log(vid))
        with open(os.path.join(shim, "calls")) as f:
            self.assertEqual(f.read().splitlines(), [f"-c qemu:///system dumpxml one-{vid}"])
        rules = [f"-s ! 02:00:cb:00:71:00/ff:ff:ff:ff:ff:00 -o {tap} -j DROP",
                 f"-s ! {mac} -i {tap} -j DROP"]
        self.assertEqual(host.rules(), rules)

        # shutdown (the dummy VMM's domain and its tap go), then the DONE hook flushes
        host.remove_nic(tap)
        await self.ok("one.vm.action", "shutdown", vid)
        await self.wait_vm(vid, DONE)
        await self.logged("Success executing Hook: ebtables-flush", vid=vid)
        await wait_for(lambda: host.rules() == [], "the rules of the gone tap removed")
        self.assertIn("2 rule(s) removed", self.vm_log(vid))
