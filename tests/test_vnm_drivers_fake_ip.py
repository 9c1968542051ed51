"""The 802.1Q VNM host scripts (3.4 802.1Q/HostManaged.rb).

This kernel has no VLAN devices (``ip link add ... type vlan``: ``Error:
Unknown device type.``), so: the exact ``ip`` commands are checked on a fake
``ip`` first on PATH that records its argv and emulates links; the real-kernel
test runs the script and skips, with the reason it detected, when the kernel
lacks 802.1Q (after checking the failure left nothing behind); and the
bridge-per-VLAN half runs on real bridges and veth "VMs" with only the
tagging step faked (a veth stands for ``<PHYDEV>.<VLAN_ID>``; the kernel has
no ``dummy`` devices either)."""

import json
import os
import shutil
import stat
import tempfile

from twisted.trial.unittest import SkipTest, TestCase

from tests.netns import NetnsLab, run_script, unavailable, vm_xml

FAKE_IP = r'''#!/usr/bin/env python3
# Fake "ip" for the 802.1Q tests: logs argv (JSON lines) to $FAKE_IP_LOG.
# FAKE_IP_REAL set: runs the real ip, but "link add link P name D type vlan id N"
# becomes "link add D type veth peer name Dp" (this kernel has no dummy devices).
# Else emulates links in $FAKE_IP_STATE;
# FAKE_IP_NOVLAN=1: "type vlan" fails as on a kernel without 802.1Q.
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_IP_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
real = os.environ.get("FAKE_IP_REAL")
if real:
    if args[:2] == ["link", "add"] and "vlan" in args:
        name = args[args.index("name") + 1]
        args = ["link", "add", name, "type", "veth", "peer", "name", name + "p"]
    os.execv(real, [real] + args)
path = os.environ["FAKE_IP_STATE"]
links = json.load(open(path))
def save():
    json.dump(links, open(path, "w"))
def line(n):
    l = links[n]
    master = f" master {l['master']}" if l.get("master") else ""
    return (f"{list(links).index(n) + 1}: {n}: <BROADCAST{',UP' if l['up'] else ''}> "
            f"mtu 1500{master} state {'UP' if l['up'] else 'DOWN'}")
def missing(n):
    print(f'Device "{n}" does not exist.', file=sys.stderr); sys.exit(1)
if args[0] == "-o":
    args = args[1:]
if args[:2] == ["link", "show"]:
    if args[2] == "dev":
        if args[3] not in links: missing(args[3])
        print(line(args[3]))
    elif args[2] == "master":
        if args[3] not in links: missing(args[3])
        for n, l in links.items():
            if l.get("master") == args[3]: print(line(n))
elif args[:2] == ["link", "add"]:
    if args[-4:-2] == ["type", "vlan"] or args[-3:-1] == ["vlan", "id"]:
        if os.environ.get("FAKE_IP_NOVLAN"):
            print("Error: Unknown device type.", file=sys.stderr); sys.exit(2)
        if args[args.index("link", 1) + 1] not in links: missing(args[3])
    name = args[args.index("name") + 1]
    if name in links:
        print("RTNETLINK answers: File exists", file=sys.stderr); sys.exit(2)
    links[name] = {"up": False, "master": None, "type": args[args.index("type") + 1]}
    save()
elif args[:3] == ["link", "set", "dev"]:
    if args[3] not in links: missing(args[3])
    if args[4] == "up": links[args[3]]["up"] = True
    elif args[4] == "master":
        if args[5] not in links: missing(args[5])
        links[args[3]]["master"] = args[5]
    save()
elif args[:3] == ["link", "del", "dev"]:
    if args[3] not in links: missing(args[3])
    del links[args[3]]
    for l in links.values():
        if l.get("master") == args[3]: l["master"] = None
    save()
else:
    print(f"fake ip: unsupported {args}", file=sys.stderr); sys.exit(255)
'''

RED = "02:00:cb:00:71:%02x"


def nic(vlan_id, bridge, mac_n, **extra):
    d = {"NETWORK_ID": "0", "BRIDGE": bridge, "VLAN": "YES", "PHYDEV": "eth9",
         "MAC": RED % mac_n, "IP": f"203.0.113.{mac_n}"}
    if vlan_id:
        d["VLAN_ID"] = str(vlan_id)
    d.update(extra)
    return d


class FakeIpCase(TestCase):
    """A temporary folder with the fake ``ip`` first on PATH."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="nbt-fakeip-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        bindir = os.path.join(self.tmp, "bin")
        os.makedirs(bindir)
        ip = os.path.join(bindir, "ip")
        with open(ip, "w") as f:
            f.write(FAKE_IP)
        os.chmod(ip, os.stat(ip).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.log = os.path.join(self.tmp, "ip.log")
        self.links = os.path.join(self.tmp, "links.json")
        self.env = {"PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
                    "FAKE_IP_LOG": self.log, "FAKE_IP_STATE": self.links,
                    "VNM_STATE_DIR": os.path.join(self.tmp, "state")}
        open(self.log, "w").close()

    def state(self):
        """The driver's state file (dict)."""
        path = os.path.join(self.env["VNM_STATE_DIR"], os.uname().nodename, "802.1Q.json")
        with open(path) as f:
            return json.load(f)

    def calls(self, mutating=True):
        """The argv lists logged since the last call; only add/set/del
        with ``mutating``."""
        with open(self.log) as f:
            argvs = [json.loads(line) for line in f]
        open(self.log, "w").close()
        if mutating:
            argvs = [a for a in argvs if a[:2] != ["link", "show"] and a[0] != "-o"]
        return argvs

    def script(self, action, vid, *nics, check=True, netns=None):
        return run_script("802.1Q", action, vm_xml(vid, *nics), self.env, netns=netns,
                          check=check)


class CommandTests(FakeIpCase):
    """The exact ``ip`` commands, on a fake ``ip`` (no root needed)."""

    def set_links(self, *names):
        with open(self.links, "w") as f:
            json.dump({n: {"up": True, "master": None, "type": "x"} for n in names}, f)

    def current_links(self):
        with open(self.links) as f:
            return json.load(f)

    def test_bridge_and_vlan_per_network(self):
        self.set_links("lo", "eth9", "handbr")
        red7, red8 = nic(100, "onebr100", 7), nic(100, "onebr100", 8)
        blue9 = nic(None, "onebr1", 9, NETWORK_ID="1")     # VLAN_ID = START_VLAN 2 + 1
        hand10 = nic(300, "handbr", 10)
        plain = {"BRIDGE": "br0", "VLAN": "NO", "PHYDEV": "eth9", "VLAN_ID": "5"}

        self.script("pre", 7, red7, dict(plain, NIC_ID="1"))
        self.assertEqual(self.calls(), [
            ["link", "add", "name", "onebr100", "type", "bridge"],
            ["link", "set", "dev", "onebr100", "up"],
            ["link", "add", "link", "eth9", "name", "eth9.100", "type", "vlan", "id", "100"],
            ["link", "set", "dev", "eth9.100", "up"],
            ["link", "set", "dev", "eth9.100", "master", "onebr100"]])
        self.script("pre", 8, red8)
        self.script("pre", 7, red7)                        # again: nothing to do
        self.assertEqual(self.calls(), [])
        self.script("pre", 9, blue9)
        self.assertEqual(self.calls(), [
            ["link", "add", "name", "onebr1", "type", "bridge"],
            ["link", "set", "dev", "onebr1", "up"],
            ["link", "add", "link", "eth9", "name", "eth9.3", "type", "vlan", "id", "3"],
            ["link", "set", "dev", "eth9.3", "up"],
            ["link", "set", "dev", "eth9.3", "master", "onebr1"]])
        self.script("pre", 10, hand10)                     # the operator's bridge
        self.assertEqual(self.calls(), [
            ["link", "add", "link", "eth9", "name", "eth9.300", "type", "vlan", "id", "300"],
            ["link", "set", "dev", "eth9.300", "up"],
            ["link", "set", "dev", "eth9.300", "master", "handbr"]])
        for vid, n in ((7, red7), (8, red8), (9, blue9), (10, hand10)):
            self.script("post", vid, n)
        self.assertEqual(self.calls(mutating=False), [])  # post: nothing

        self.script("clean", 7, red7)                      # VM 8 still uses onebr100
        self.assertEqual(self.calls(), [])
        self.script("clean", 8, red8)
        self.assertEqual(self.calls(), [["link", "del", "dev", "eth9.100"],
                                        ["link", "del", "dev", "onebr100"]])
        self.script("clean", 9, blue9)
        self.assertEqual(self.calls(), [["link", "del", "dev", "eth9.3"],
                                        ["link", "del", "dev", "onebr1"]])
        self.script("clean", 10, hand10)
        self.assertEqual(self.calls(), [["link", "del", "dev", "eth9.300"]])
        self.assertEqual(sorted(self.current_links()), ["eth9", "handbr", "lo"])
        self.assertEqual(self.state(), {"bridges": {}, "vlan_devs": {}})

    def test_kernel_without_vlan(self):
        """``Unknown device type``: a clear message, the bridge made for it
        removed again, nothing recorded."""
        self.set_links("lo", "eth9")
        self.env["FAKE_IP_NOVLAN"] = "1"
        p = self.script("pre", 7, nic(100, "onebr100", 7), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot create eth9.100: this host's kernel has no 802.1Q VLAN "
                      "support", p.stderr)
        self.assertEqual(self.calls()[-1], ["link", "del", "dev", "onebr100"])
        self.assertEqual(sorted(self.current_links()), ["eth9", "lo"])
        self.assertEqual(self.state(), {"bridges": {}, "vlan_devs": {}})

    def test_missing_phydev_and_foreign_port(self):
        self.set_links("lo")
        p = self.script("pre", 7, nic(100, "onebr100", 7), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("PHYDEV eth9 does not exist", p.stderr)
        self.assertEqual(sorted(self.current_links()), ["lo"])
        # a port an operator put on the driver's bridge keeps the bridge at clean
        self.set_links("lo", "eth9", "opsport")
        self.script("pre", 7, nic(100, "onebr100", 7))
        links = self.current_links()
        links["opsport"]["master"] = "onebr100"
        with open(self.links, "w") as f:
            json.dump(links, f)
        self.calls()
        self.script("clean", 7, nic(100, "onebr100", 7))
        self.assertEqual(self.calls(), [["link", "del", "dev", "eth9.100"]])
        self.assertIn("onebr100", self.current_links())


class RealKernelTests(FakeIpCase):
    """802.1Q in a network namespace with the real ``ip``."""

    def setUp(self):
        super().setUp()
        why = unavailable("python3")
        if why:
            raise SkipTest(why)
        self.lab = NetnsLab()
        self.addCleanup(self.lab.destroy)
        self.lab.host("ip", "link", "add", "eth9", "type", "veth", "peer", "name", "eth9p")
        self.lab.host("ip", "link", "set", "eth9", "up")

    def test_real_vlan_device(self):
        """The real ``ip``: works where the kernel has 802.1Q; here it
        must fail cleanly, and the test skips with the reason detected."""
        env = dict(self.env, PATH=os.environ["PATH"])
        before = self.lab.links()
        p = run_script("802.1Q", "pre", vm_xml(7, nic(100, "onebr100", 7)), env,
                       netns=self.lab.host_ns, check=False)
        if p.returncode != 0:
            self.assertIn("no 802.1Q VLAN support", p.stderr)
            self.assertEqual(self.lab.links(), before)
            raise SkipTest(f"this kernel lacks 802.1Q VLAN devices: {p.stderr.strip()}")
        self.assertIn("eth9.100", self.lab.links())
        out = self.lab.host("ip", "-d", "link", "show", "dev", "eth9.100").stdout
        self.assertIn("vlan protocol 802.1Q id 100", out)
        self.assertIn("master onebr100", out)
        run_script("802.1Q", "clean", vm_xml(7, nic(100, "onebr100", 7)), env,
                   netns=self.lab.host_ns)
        self.assertEqual(self.lab.links(), before)

    def test_bridges_per_vlan_with_tagging_faked(self):
        """Real bridges, taps and VMs; ``<PHYDEV>.<VLAN_ID>`` is a veth:
        Red VMs reach each other, the Blue VM (another VLAN, so another
        bridge) does not; clean removes the bridges made, keeps the
        hand-made one."""
        lab = self.lab
        self.env["FAKE_IP_REAL"] = shutil.which("ip")
        lab.host("ip", "link", "add", "handbr", "type", "bridge")
        for n, name in ((1, "a"), (2, "b"), (3, "c"), (4, "d")):
            lab.add_vm(name, f"one-{n}-0", RED % n, f"203.0.113.{n}")
        vms = {1: nic(100, "onebr100", 1), 2: nic(100, "onebr100", 2),
               3: nic(200, "onebr200", 3, NETWORK_ID="1"), 4: nic(300, "handbr", 4)}
        before = lab.links()
        ns = lab.host_ns
        for vid, n in vms.items():
            self.script("pre", vid, n, netns=ns)
            lab.host("ip", "link", "set", f"one-{vid}-0", "master", n["BRIDGE"])  # libvirt
            self.script("post", vid, n, netns=ns)
        self.assertTrue({"onebr100", "onebr200", "eth9.100", "eth9.200", "eth9.300"}
                        <= lab.links())
        out = lab.host("ip", "-o", "link", "show", "master", "onebr100").stdout
        self.assertIn("eth9.100", out)
        lab.wait_ping("a", "203.0.113.2")
        self.assertFalse(lab.ping("c", "203.0.113.1"))
        self.assertFalse(lab.ping("a", "203.0.113.3"))

        for vid, n in vms.items():
            lab.host("ip", "link", "del", f"one-{vid}-0")          # the domain is gone
            self.script("clean", vid, n, netns=ns)
            if vid == 1:
                self.assertIn("onebr100", lab.links())            # VM 2 still there
        after = lab.links()
        self.assertEqual(after, before - {f"one-{v}-0" for v in vms})
        self.assertIn("handbr", after)
        argvs = [" ".join(a) for a in self.calls()]
        self.assertIn("link add link eth9 name eth9.200 type vlan id 200", argvs)
        # the logs of the real run hold no add of a bridge that existed
        self.assertNotIn("link add name handbr type bridge", argvs)
