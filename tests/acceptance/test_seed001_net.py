"""Acceptance: seed 001's "Network Isolation" hands-on, with real guests on the lab's hosts.

The OSDC 2012 slides (seed 001) configure two VM hooks on the hosts::

    VM_HOOK = [ name = "ebtables-start", on = "running",
                command = "/srv/cloud/one/share/hooks/ebtables-kvm",
                arguments = "one-$VMID", remote = "yes" ]
    VM_HOOK = [ name = "ebtables-flush", on = "done",
                command = "/srv/cloud/one/share/hooks/ebtables-flush",
                arguments = "", remote = "yes" ]

and then: start a couple of VMs in networks Red and Blue, check the ebtables rules on
the hosts, check connectivity between the VMs, change the network mask of the VMs and
check again, shut down and check the rules. Here the hooks are nebtwist's shipped ones
(``hooks/``, by absolute path: the lab's hosts share the front-end's file system), run
by a real daemon over ssh on the lab's namespaced libvirt hosts (``tests/hvlab.py``).

The VMs' NICs are on a bridge this test makes on each host, ``ntiso0``, holding the
hosts' ``eth1`` (linked through the lab's switch), so Red on nt-h1 and Red on nt-h2 share
a segment, and so does Blue. OpenNebula's isolation goes by MAC prefix (MAC = 02:00 +
IP, one /24 = one prefix): Red is 203.0.113.0/24, Blue 198.51.100.0/24 (on this isolated
segment only). The guests (``tests/hv/build-guest.sh``) ping each other every ~2 s as
their CONTEXT asks and print ``PING-OK|FAIL <ip>``; with ``NEBTWIST_MASK2 = 240.0.0.0``
each round also pings with the network mask widened so Red and Blue are one IP subnet
(the slides' "change the network mask"): only the ebtables rules keep them apart then;
``NEBTWIST_SPOOF`` pings with a forged MAC (dropped by the anti-spoofing rule).

Three guests (TCG boots are slow), reused for every check. Skips, saying why, without
the lab; records itself in ``$NEBTWIST_LAB/ran-tests.txt``.
"""

import re

from nebtwist import paths
from tests.acceptance.test_real_vms import BOOT_TIMEOUT, OP_TIMEOUT, RealVMTestCase
from tests.hvlab import read_console, wait_console

KVM_HOOK = paths.shipped("hooks", "ebtables-kvm")
FLUSH_HOOK = paths.shipped("hooks", "ebtables-flush")

#: The bridge this test makes on every lab host, with the host's eth1 in it.
TEST_BRIDGE = "ntiso0"
RED = ("203.0.113.20", "203.0.113.21")
BLUE = ("198.51.100.30",)
#: A mask wide enough for Red and Blue to be one IP subnet (203/8 and 198/8 share 4 bits).
WIDE_MASK = "240.0.0.0"


def mac_of(ip):
    """OpenNebula's MAC of a lease: 02:00 and the IP's four bytes."""
    return "02:00:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


def hook_rules(tap, mac):
    """The two rules ebtables-kvm adds for ``tap`` (as ``ebtables -L`` prints them)."""
    prefix = mac[:-2] + "00"
    return [f"-s ! {prefix}/ff:ff:ff:ff:ff:00 -o {tap} -j DROP",
            f"-s ! {mac} -i {tap} -j DROP"]


class LabNetTestCase(RealVMTestCase):
    """A :class:`RealVMTestCase` whose guests sit on a test-made bridge with the hosts'
    eth1; helpers to make networks and guests, read rules and watch ping results."""

    tm = "tm_shared"
    shared_storage = True

    def setUp(self):
        super().setUp()
        if not self.lab.phydev:
            self.skipTest("this lab has no eth1 between its hosts (an older lab-up.sh)")
        for host in self.lab.hosts:
            self.addCleanup(self._drop_bridge, host)
            for cmd in (["ip", "link", "add", TEST_BRIDGE, "type", "bridge"],
                        ["ip", "link", "set", self.lab.phydev, "master", TEST_BRIDGE],
                        ["ip", "link", "set", TEST_BRIDGE, "up"]):
                r = self.lab.netns_exec(host, cmd)
                self.assertEqual(r.returncode, 0, f"{host}: {cmd}: {r.stderr}")
        self.addCleanup(self._drop_rules)

    def _drop_bridge(self, host):
        self.lab.netns_exec(host, ["ip", "link", "set", self.lab.phydev, "nomaster"])
        self.lab.netns_exec(host, ["ip", "link", "del", TEST_BRIDGE])

    def _drop_rules(self):
        """Rules of this test's taps that a failed test left behind."""
        for host in self.lab.hosts:
            for rule in self.rules(host):
                if any(f" one-{vid}-" in rule for vid in self.vids):
                    self.lab.netns_exec(host, ["ebtables", "-D", "FORWARD", *rule.split()])

    def rules(self, host):
        """The ebtables FORWARD rules (list of str) of ``host``."""
        r = self.lab.netns_exec(host, ["ebtables", "-L", "FORWARD"])
        self.assertEqual(r.returncode, 0, r.stderr)
        return [" ".join(line.split()) for line in r.stdout.splitlines()
                if line.startswith("-")]

    def network(self, name, ips, extra=""):
        leases = "\n".join(f'LEASES = [ IP = "{ip}" ]' for ip in ips)
        self.one.write_file(f"{name}.net", f'NAME = "{name}"\nTYPE = FIXED\n'
                                           f'BRIDGE = "{TEST_BRIDGE}"\n{extra}{leases}\n')
        self.ok("onevnet", "create", f"{name}.net")

    def net_guest(self, name, network, ip, host, ping, spoof=None, mask2=WIDE_MASK):
        """A guest on ``network`` with lease ``ip``, placed on ``host``, pinging ``ping``
        (list of IPs) from its CONTEXT; returns ``(vid, console path)``. No CPU, as
        ``guest_template`` in test_real_vms: a busy machine leaves the lab hosts no
        FREECPU, and placement is not what this test checks."""
        console = self.console_path(name)
        context = (f'HOSTNAME = "$NAME", ETH0_IP = "$NIC[IP]", ETH0_MASK = "255.255.255.0", '
                   f'NEBTWIST_PING = "{" ".join(ping)}", NEBTWIST_MASK2 = "{mask2}"'
                   + (f', NEBTWIST_SPOOF = "{spoof}"' if spoof else ""))
        template = (
            f'NAME = "{name}"\nVCPU = 1\nMEMORY = 128\n'
            f'OS = [ KERNEL = "{self.lab.guest.kernel}", INITRD = "{self.lab.guest.initrd}", '
            'KERNEL_CMD = "console=ttyS0 quiet" ]\n'
            'DISK = [ IMAGE = "guest-disk" ]\n'
            f'NIC = [ NETWORK = "{network}", IP = "{ip}", MODEL = "virtio" ]\n'
            f'CONTEXT = [ {context} ]\n'
            f'REQUIREMENTS = "HOSTNAME = \\"{host}\\""\n'
            'RAW = [ TYPE = "kvm", DATA = "<devices><serial type=\'file\'>'
            f'<source path=\'{console}\' append=\'on\'/><target port=\'0\'/></serial>'
            '</devices>" ]\n')
        vid = self.create_vm(template, filename=f"{name}.one")
        self.vids.append(vid)
        return vid, console

    # -- what the guests see ------------------------------------------------------------

    @staticmethod
    def results(console, label, ip, since=0):
        """``[True|False, ...]``: the guest's ``<label>-OK|FAIL <ip>`` lines after
        character ``since`` of its console, in order."""
        text = read_console(console)[since:]
        return [m.group(1) == "OK" for m in
                re.finditer(rf"^{label}-(OK|FAIL) {re.escape(ip)}\r?$", text, re.M)]

    def reaches(self, console, label, ip, timeout=BOOT_TIMEOUT):
        """Wait for a ``<label>-OK <ip>`` line after now."""
        since = len(read_console(console))
        self.wait_for(lambda: True in self.results(console, label, ip, since),
                      lambda: f"{label}-OK {ip} in {console}:\n"
                      + read_console(console)[-1500:], timeout=timeout)

    def blocked(self, console, label, ip, rounds=3):
        """The guest's ``<label>`` pings to ``ip`` fail: after one failed round (a round
        in flight may be older than the current rules), ``rounds`` more fail and none
        answers."""
        start = len(read_console(console))
        self.wait_for(lambda: False in self.results(console, label, ip, start),
                      lambda: f"a {label}-FAIL {ip} in {console}:\n"
                      + read_console(console)[-1500:], timeout=OP_TIMEOUT)
        text = read_console(console)
        since = text.rfind(f"{label}-FAIL {ip}") + 1
        self.wait_for(lambda: len(self.results(console, label, ip, since)) >= rounds,
                      lambda: f"{rounds} {label} rounds to {ip} in {console}",
                      timeout=OP_TIMEOUT)
        self.assertNotIn(True, self.results(console, label, ip, since),
                         f"{label} to {ip} answered:\n{read_console(console)[-1500:]}")


class SeedNetworkIsolation(LabNetTestCase):
    """The hands-on as the slides run it: the ebtables hooks, Red and Blue."""

    extra_settings = (
        f'VM_HOOK = [ name = "ebtables-start", on = "running", command = "{KVM_HOOK}", '
        'arguments = "one-$VMID", remote = "yes" ]',
        f'VM_HOOK = [ name = "ebtables-flush", on = "done", command = "{FLUSH_HOOK}", '
        'arguments = "", remote = "yes" ]',
    )

    def test_hands_on(self):
        h1, h2 = self.lab.hosts[:2]
        self.add_hosts()
        self.register_image()
        self.network("Red", RED)
        self.network("Blue", BLUE)
        # "Start a couple of VMs in networks Red and Blue"
        red1, c_red1 = self.net_guest("red1", "Red", RED[0], h1, [RED[1]] + list(BLUE),
                                      spoof="02:00:cb:00:71:99")
        red2, c_red2 = self.net_guest("red2", "Red", RED[1], h2, [RED[0]])
        blue, c_blue = self.net_guest("blue", "Blue", BLUE[0], h1, list(RED))
        placed = {red1: h1, red2: h2, blue: h1}
        taps = {vid: f"one-{vid}-0" for vid in placed}
        macs = {red1: mac_of(RED[0]), red2: mac_of(RED[1]), blue: mac_of(BLUE[0])}
        for vid, host in placed.items():
            self.assertEqual(self.wait_stat(vid, "runn")["HOSTNAME"], host)
        for vid in placed:
            self.wait_for(lambda vid=vid: "Success executing Hook: ebtables-start"
                          in self.vm_log(vid), lambda vid=vid: f"the start hook of VM {vid}:\n"
                          + self.vm_log(vid))
            self.assertIn(f"one-{vid}: {taps[vid]} {macs[vid]}: 2 rule(s) added",
                          self.vm_log(vid))

        # "Check the ebtables rules in the hosts"
        for vid, host in placed.items():
            for rule in hook_rules(taps[vid], macs[vid]):
                self.assertIn(rule, self.rules(host))
        self.assertFalse([r for r in self.rules(h2) if f" {taps[red1]} " in r])

        # "Check connectivity between VMs": Red reaches Red across the hosts
        for c in (c_red1, c_red2, c_blue):
            wait_console(c, "NEBTWIST-NET eth0", timeout=BOOT_TIMEOUT)
        self.assertRegex(read_console(c_blue), rf"NEBTWIST-NET eth0 {macs[blue]} {BLUE[0]}")
        self.reaches(c_red1, "PING", RED[1])
        self.reaches(c_red2, "PING", RED[0])
        # Blue and Red are different /24s: no route between them at all yet
        self.blocked(c_blue, "PING", RED[0])
        # a forged MAC does not leave red1's tap
        self.blocked(c_red1, "SPOOF", RED[1])

        # "Change the network mask of the VMs and check connectivity": one subnet now,
        # Red still reaches Red, Blue and Red stay apart
        self.reaches(c_red1, "MASK2", RED[1])
        self.reaches(c_red2, "MASK2", RED[0])
        self.blocked(c_blue, "MASK2", RED[0])
        self.blocked(c_blue, "MASK2", RED[1])
        self.blocked(c_red1, "MASK2", BLUE[0])
        # ... because of the rules: without the two isolation rules on h1, Blue reaches
        # red1; the hook run again puts back just those and they are apart again
        for vid in (red1, blue):
            rule = hook_rules(taps[vid], macs[vid])[0]
            r = self.lab.netns_exec(h1, ["ebtables", "-D", "FORWARD", *rule.split()])
            self.assertEqual(r.returncode, 0, r.stderr)
        self.reaches(c_blue, "MASK2", RED[0], timeout=OP_TIMEOUT)
        for vid in (red1, blue):
            r = self.lab.ssh(h1, [KVM_HOOK, f"one-{vid}"])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("1 rule(s) added", r.stdout)
        self.blocked(c_blue, "MASK2", RED[0])
        self.reaches(c_red1, "MASK2", RED[1])

        # "Shutdown and check the ebtables rules": the flush hook leaves none of theirs
        for vid in placed:
            self.ok("onevm", "shutdown", vid)
        for vid in placed:
            self.wait_for(lambda vid=vid: vid not in self.vms(), f"VM {vid} DONE",
                          timeout=OP_TIMEOUT)
            self.wait_for(lambda vid=vid: "Success executing Hook: ebtables-flush"
                          in self.vm_log(vid), lambda vid=vid: f"the flush hook of VM {vid}:\n"
                          + self.vm_log(vid))
            self.assert_gone(vid)
        for host in self.lab.hosts:
            left = [r for r in self.rules(host) if any(f" {t} " in r for t in taps.values())]
            self.assertEqual(left, [], host)
