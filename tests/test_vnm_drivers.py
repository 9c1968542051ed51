"""The VNM host scripts (drivers/vnm/remotes) on real kernel objects: bridges,
veth "VMs" in their own network namespaces, iptables, ebtables and an Open
vSwitch userspace datapath in a "host" namespace (tests/netns.py).

Each driver: VMs of the Red network reach each other, a Blue VM does not reach
them (where the driver isolates networks), a spoofed MAC is dropped (ebtables,
ovswitch), fw drops black-listed ports and ICMP; after clean nothing of the VM
is left and what an operator made by hand survives. The 802.1Q driver is in
tests/test_vnm_drivers_fake_ip.py (this kernel has no VLAN devices)."""

import base64
import json
import os
import re
import time

from twisted.trial.unittest import SkipTest, TestCase

from tests.netns import NetnsLab, run_script, unavailable, vm_xml

RED = "02:00:cb:00:71:%02x"      # 3.4 MACs: prefix 02:00 + the IP 203.0.113.x
BLUE = "02:00:c6:33:64:%02x"     # a Blue network 198.51.100.0/24's MACs


def red(n):
    return RED % n, f"203.0.113.{n}"


class ScriptCase(TestCase):
    """A NetnsLab per test, a state dir, helpers running the scripts in
    the host netns."""

    needs = ()

    def setUp(self):
        why = unavailable(*self.needs)
        if why:
            raise SkipTest(why)
        self.lab = NetnsLab()
        self.addCleanup(self.lab.destroy)
        self.state_dir = os.path.join(self.lab.tmp, "state")
        self.env = {"VNM_STATE_DIR": self.state_dir}

    def script(self, driver, action, vid, *nics, check=True):
        return run_script(driver, action, vm_xml(vid, *nics), self.env,
                          netns=self.lab.host_ns, check=check)

    def all_actions(self, driver, vid, *nics):
        for action in ("pre", "post"):
            self.script(driver, action, vid, *nics)

    def bridge(self, name="onebr0"):
        self.lab.host("ip", "link", "add", name, "type", "bridge")
        self.lab.host("ip", "link", "set", name, "up")

    def attach(self, tap, bridge="onebr0"):
        """What libvirt does between pre and post: the tap joins the bridge."""
        self.lab.host("ip", "link", "set", tap, "master", bridge)

    def state(self, driver):
        with open(os.path.join(self.state_dir, os.uname().nodename, f"{driver}.json")) as f:
            return json.load(f)

    def snapshot(self):
        """What the host netns has: iptables, ebtables, links."""
        return (self.lab.host("iptables-save").stdout.splitlines()[1:-1],
                self.lab.host("ebtables", "-L").stdout, sorted(self.lab.links()))


class ArgumentTests(ScriptCase):
    """A malformed argument exits non-zero with a message and changes
    nothing, for every driver and action."""

    needs = ("iptables", "ebtables")

    def test_malformed_arguments(self):
        self.bridge()
        self.lab.add_vm("a", "one-7-0", *red(1))
        self.attach("one-7-0")
        before = self.snapshot()
        good_nic = {"MAC": RED % 1, "IP": "203.0.113.1", "BRIDGE": "onebr0", "VLAN": "YES",
                    "VLAN_ID": "100", "PHYDEV": "eth0", "BLACK_PORTS_TCP": "22"}
        bad = {
            "not base64": "this is not base64!",
            "not XML": base64.b64encode(b"<VM><ID>7</ID>").decode(),
            "wrong root": base64.b64encode(b"<HOST><ID>7</ID></HOST>").decode(),
            "no ID": base64.b64encode(b"<VM><TEMPLATE/></VM>").decode(),
            "bad TARGET": vm_xml(7, dict(good_nic, TARGET="one-7-0;reboot")),
            "bad MAC": vm_xml(7, dict(good_nic, MAC="02:00:cb:00:71")),
            "bad ports": vm_xml(7, dict(good_nic, BLACK_PORTS_TCP="22;echo")),
            "bad VLAN_ID": vm_xml(7, dict(good_nic, VLAN_ID="5000")),
            "bad BRIDGE": vm_xml(7, dict(good_nic, BRIDGE="a bridge")),
        }
        for driver in ("dummy", "fw", "ebtables", "802.1Q", "ovswitch"):
            for action in ("pre", "post", "clean"):
                for what, arg in bad.items():
                    p = run_script(driver, action, arg, self.env, netns=self.lab.host_ns,
                                   check=False)
                    self.assertEqual(p.returncode, 1, (driver, action, what, p.stderr))
                    self.assertIn(f"vnm/{driver}/{action}: ", p.stderr, (driver, what))
                    self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
                p = run_script(driver, action, None, self.env, netns=self.lab.host_ns,
                               check=False)
                self.assertEqual(p.returncode, 2)
                self.assertIn("usage:", p.stderr)
        self.assertEqual(self.snapshot(), before)
        self.assertFalse(os.path.exists(self.state_dir))


class DummyTests(ScriptCase):
    needs = ("iptables", "ebtables")

    def test_dummy_does_nothing(self):
        self.bridge()
        for n, name in ((1, "a"), (2, "b")):
            self.lab.add_vm(name, f"one-{n}-0", *red(n))
            self.attach(f"one-{n}-0")
        before = self.snapshot()
        nic = {"MAC": RED % 1, "IP": "203.0.113.1", "BRIDGE": "onebr0", "VLAN": "YES",
               "VLAN_ID": "100", "PHYDEV": "eth0", "ICMP": "drop"}
        for action in ("pre", "post", "clean"):
            self.script("dummy", action, 1, nic)
        self.assertEqual(self.snapshot(), before)
        self.lab.wait_ping("a", "203.0.113.2")


class FirewallTests(ScriptCase):
    """fw: per-NIC iptables chains (3.4 fw/Firewall.rb)."""

    needs = ("iptables", "python3")

    def listen(self, vm, *ports):
        code = ("import socket,select\n"
                "ss=[socket.create_server(('0.0.0.0',p)) for p in %r]\n"
                "while True:\n"
                "  r,_,_=select.select(ss,[],[])\n"
                "  for s in r: s.accept()[0].close()\n" % (list(ports),))
        p = self.lab.popen_vm(vm, ["python3", "-c", code])
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)

    def connects(self, vm, ip, port, timeout=2):
        code = (f"import socket; socket.create_connection(('{ip}', {port}), "
                f"timeout={timeout}).close()")
        return self.lab.vm(vm, "python3", "-c", code, check=False).returncode == 0

    def wait_connects(self, vm, ip, port):
        end = time.monotonic() + 90
        while time.monotonic() < end:
            if self.connects(vm, ip, port):
                return
            time.sleep(0.2)
        self.fail(f"{vm} never connected to {ip}:{port}")

    def test_ports_icmp_and_clean(self):
        lab = self.lab
        self.bridge()
        for n, name in ((1, "a"), (2, "b"), (3, "c")):
            lab.add_vm(name, f"one-{n}-0", *red(n))
            self.attach(f"one-{n}-0")
        # by hand: a chain and its jump, and a chain named as the driver would
        lab.host("iptables", "-w", "-N", "opsnote")
        lab.host("iptables", "-w", "-A", "FORWARD", "-p", "udp", "--dport", "9",
                 "-j", "opsnote")
        lab.host("iptables", "-w", "-N", "one-4-0")
        self.listen("b", 2222, 3005, 8080)
        self.listen("c", 2222, 8080)
        lab.wait_ping("a", "203.0.113.2")
        self.wait_connects("a", "203.0.113.2", 2222)
        self.wait_connects("a", "203.0.113.3", 2222)
        hand = self.snapshot()[0]

        nic = {"BRIDGE": "onebr0", "NETWORK_ID": "0"}
        self.all_actions("fw", 1, dict(nic, MAC=RED % 1, IP="203.0.113.1"))
        self.all_actions("fw", 2, dict(nic, MAC=RED % 2, IP="203.0.113.2",
                                       BLACK_PORTS_TCP="2222,3000:3010", ICMP="drop"))
        self.all_actions("fw", 3, dict(nic, MAC=RED % 3, IP="203.0.113.3",
                                       WHITE_PORTS_TCP="22, 8080", WHITE_PORTS_UDP="53"))
        rules = lab.host("iptables-save").stdout
        self.assertNotIn("one-1-0", rules)          # no firewall attributes: no chain
        self.assertIn("-A FORWARD -m physdev --physdev-out one-2-0 --physdev-is-bridged "
                      "-j one-2-0", rules)
        self.assertIn("-A one-2-0 -p tcp -m multiport --dports 2222,3000:3010 -j DROP", rules)

        # ICMP=drop on b: nobody pings b, b still pings out (replies are established)
        self.assertFalse(lab.ping("a", "203.0.113.2"))
        self.assertTrue(lab.ping("b", "203.0.113.1"))
        # black list on b, white list on c
        self.assertFalse(self.connects("a", "203.0.113.2", 2222))
        self.assertFalse(self.connects("a", "203.0.113.2", 3005))
        self.assertTrue(self.connects("a", "203.0.113.2", 8080))
        self.assertTrue(self.connects("a", "203.0.113.3", 8080))
        self.assertFalse(self.connects("a", "203.0.113.3", 2222))
        self.assertTrue(lab.ping("a", "203.0.113.3"))
        self.assertTrue(self.connects("c", "203.0.113.2", 8080))   # c's replies pass

        # a chain the driver did not make is not taken over
        p = self.script("fw", "post", 4, dict(nic, MAC=RED % 4, ICMP="drop"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("one-4-0 exists and was not made by this driver", p.stderr)

        # post again (e.g. after a failed deploy) renews, without a second jump
        self.script("fw", "post", 2, dict(nic, MAC=RED % 2, BLACK_PORTS_TCP="2222",
                                          ICMP="drop"))
        self.assertEqual(lab.host("iptables-save").stdout.count("-j one-2-0"), 1)

        for vid in (1, 2, 3, 4):
            self.script("fw", "clean", vid, dict(nic, MAC=RED % vid))
        self.assertEqual(self.snapshot()[0], hand)
        self.assertEqual(self.state("fw")["chains"], {})
        lab.wait_ping("a", "203.0.113.2")
        self.assertTrue(self.connects("a", "203.0.113.2", 2222))
        self.assertTrue(self.connects("a", "203.0.113.3", 2222))


class EbtablesTests(ScriptCase):
    """ebtables: MAC anti-spoofing and isolation by MAC prefix (3.4
    ebtables/Ebtables.rb)."""

    needs = ("ebtables",)

    def test_isolation_spoofing_and_clean(self):
        lab = self.lab
        self.bridge()
        lab.add_vm("a", "one-1-0", *red(1))
        lab.add_vm("b", "one-2-0", *red(2))
        # a Blue VM (MAC of 198.51.100.10) that configured itself a Red address
        lab.add_vm("c", "one-3-0", BLUE % 10, "203.0.113.10")
        for vid in (1, 2, 3):
            self.attach(f"one-{vid}-0")
        lab.host("ebtables", "-A", "FORWARD", "-p", "0x88cc", "-j", "DROP")   # by hand
        lab.wait_ping("c", "203.0.113.1")      # without the driver Blue reaches Red
        hand = self.snapshot()[1]

        def nic(vid, mac, ip, net):
            return {"NETWORK_ID": net, "BRIDGE": "onebr0", "VLAN": "YES", "MAC": mac,
                    "IP": ip}
        vms = {1: nic(1, RED % 1, "203.0.113.1", "0"), 2: nic(2, RED % 2, "203.0.113.2", "0"),
               3: nic(3, BLUE % 10, "198.51.100.10", "1")}
        for vid, n in vms.items():
            self.all_actions("ebtables", vid, n)
        self.script("ebtables", "post", 1, vms[1])        # twice: no duplicate rules
        listing = lab.host("ebtables", "-L", "FORWARD").stdout
        self.assertEqual(listing.count("-o one-1-0"), 1)
        self.assertIn("-s ! 02:00:cb:00:71:00/ff:ff:ff:ff:ff:00 -o one-1-0 -j DROP", listing)
        self.assertIn("-s ! 02:00:cb:00:71:1 -i one-1-0 -j DROP".replace(":1 ", ":01 "),
                      listing)

        lab.wait_ping("a", "203.0.113.2")
        lab.wait_ping("b", "203.0.113.1")
        self.assertFalse(lab.ping("c", "203.0.113.1"))
        self.assertFalse(lab.ping("a", "203.0.113.10"))
        lab.set_mac("a", RED % 99)                         # spoofed, even of Red's prefix
        self.assertFalse(lab.ping("a", "203.0.113.2"))
        lab.set_mac("a", RED % 1)
        lab.wait_ping("a", "203.0.113.2")

        self.script("ebtables", "clean", 1, vms[1])
        listing = lab.host("ebtables", "-L", "FORWARD").stdout
        self.assertNotIn("one-1-0", listing)
        self.assertIn("-o one-2-0", listing)
        for vid in (2, 3):
            self.script("ebtables", "clean", vid, vms[vid])
        self.assertEqual(self.snapshot()[1], hand)
        self.assertEqual(self.state("ebtables")["rules"], [])
        lab.wait_ping("c", "203.0.113.1")


class OpenvSwitchTests(ScriptCase):
    """ovswitch on OVS's userspace datapath (3.4 ovswitch/OpenvSwitch.rb)."""

    needs = ("ovs-vsctl", "ovs-ofctl", "ovsdb-server", "ovs-vswitchd", "ovsdb-tool")

    def setUp(self):
        super().setUp()
        if not os.path.exists("/usr/share/openvswitch/vswitch.ovsschema"):
            raise SkipTest("no /usr/share/openvswitch/vswitch.ovsschema")
        ovs_env = self.lab.start_ovs()
        self.env.update({k: ovs_env[k] for k in ("VNM_OVS_DB", "VNM_OVS_DATAPATH")})

    def flows(self, bridge):
        out = self.lab.ofctl("dump-flows", bridge).stdout
        return [line for line in out.splitlines() if "actions=" in line]

    def add_port(self, bridge, tap):
        """What libvirt does between pre and post (<virtualport type='openvswitch'/>)."""
        self.lab.vsctl("add-port", bridge, tap)

    def set_ip(self, vm, old, new):
        self.lab.vm(vm, "ip", "addr", "del", f"{old}/24", "dev", "eth0")
        self.lab.vm(vm, "ip", "addr", "add", f"{new}/24", "dev", "eth0")
        self.lab.vm(vm, "ip", "neigh", "flush", "all")

    def test_vlans_spoofing_and_clean(self):
        lab = self.lab
        lab.add_vm("a", "one-1-0", *red(1))
        lab.add_vm("b", "one-2-0", *red(2))
        lab.add_vm("c", "one-3-0", *red(3))
        vms = {vid: {"NETWORK_ID": str(net), "BRIDGE": "ovsbr0", "VLAN": "YES",
                     "VLAN_ID": str(tag), "MAC": RED % vid, "IP": f"203.0.113.{vid}"}
               for vid, net, tag in ((1, 0, 100), (2, 0, 100), (3, 1, 200))}
        for vid, nic in vms.items():
            self.script("ovswitch", "pre", vid, nic)
            self.add_port("ovsbr0", f"one-{vid}-0")
            self.script("ovswitch", "post", vid, nic)
        self.assertEqual(lab.vsctl("get", "bridge", "ovsbr0", "datapath_type").stdout.strip(),
                         "netdev")
        self.assertEqual(lab.vsctl("get", "port", "one-3-0", "tag").stdout.strip(), "200")
        lab.ofctl("add-flow", "ovsbr0", "priority=10,dl_type=0x88cc,actions=drop")  # by hand
        self.script("ovswitch", "post", 2, vms[2])          # again: flows renewed, not doubled
        flows = self.flows("ovsbr0")
        self.assertEqual(len(flows), 4 * 3 + 1 + 1, flows)      # + hand + OVS's NORMAL

        lab.wait_ping("a", "203.0.113.2")
        lab.wait_ping("b", "203.0.113.1")
        self.assertFalse(lab.ping("c", "203.0.113.1"))           # other VLAN
        lab.set_mac("a", RED % 99)
        self.assertFalse(lab.ping("a", "203.0.113.2"))
        lab.set_mac("a", RED % 1)
        lab.wait_ping("a", "203.0.113.2")
        self.set_ip("a", "203.0.113.1", "203.0.113.99")    # ARP of another IP: dropped
        self.assertFalse(lab.ping("a", "203.0.113.2"))
        port = lab.vsctl("get", "Interface", "one-1-0", "ofport").stdout.strip()
        arp_drop = [f for f in self.flows("ovsbr0")
                    if re.search(rf"priority=40001,arp,in_port={port}\b", f)]
        self.assertEqual(len(arp_drop), 1, arp_drop)
        self.assertNotIn("n_packets=0,", arp_drop[0])
        self.set_ip("a", "203.0.113.99", "203.0.113.1")
        lab.wait_ping("a", "203.0.113.2")

        ofport = lab.vsctl("get", "Interface", "one-1-0", "ofport").stdout.strip()
        self.script("ovswitch", "clean", 1, vms[1])
        flows = self.flows("ovsbr0")
        self.assertFalse([f for f in flows if re.search(rf"in_port={ofport}\b", f)], flows)
        self.assertNotIn("one-1-0", lab.vsctl("list-ports", "ovsbr0").stdout)
        for vid in (2, 3):
            lab.vsctl("del-port", "ovsbr0", f"one-{vid}-0")   # libvirt, at shutdown
            self.script("ovswitch", "clean", vid, vms[vid])
        self.assertEqual(lab.vsctl("list-br").stdout.strip(), "")   # made here, now empty
        self.assertEqual(self.state("ovswitch"), {"bridges": {}, "ports": {}})

    def test_hand_made_bridge_survives(self):
        lab = self.lab
        lab.vsctl("add-br", "ovsman", "--", "set", "bridge", "ovsman", "datapath_type=netdev")
        lab.vsctl("add-port", "ovsman", "opsport", "--", "set", "interface", "opsport",
                  "type=internal")
        lab.ofctl("add-flow", "ovsman", "priority=10,dl_type=0x88cc,actions=drop")
        lab.add_vm("a", "one-1-0", *red(1))
        lab.add_vm("b", "one-2-0", *red(2))
        nics = {vid: {"BRIDGE": "ovsman", "MAC": RED % vid} for vid in (1, 2)}
        for vid, nic in nics.items():
            self.script("ovswitch", "pre", vid, nic)
            self.add_port("ovsman", f"one-{vid}-0")
            self.script("ovswitch", "post", vid, nic)
        lab.wait_ping("a", "203.0.113.2")
        for vid, nic in nics.items():
            self.script("ovswitch", "clean", vid, nic)
        self.assertEqual(lab.vsctl("list-br").stdout.split(), ["ovsman"])
        self.assertEqual(lab.vsctl("list-ports", "ovsman").stdout.split(), ["opsport"])
        flows = self.flows("ovsman")
        self.assertTrue([f for f in flows if "dl_type=0x88cc" in f or "lldp" in f], flows)
        self.assertEqual(len(flows), 2, flows)          # the hand flow + NORMAL


class LibraryTests(TestCase):
    """vnmlib's pure parts (no root): argument parsing and rule building."""

    def setUp(self):
        import importlib.util
        from tests.netns import REMOTES
        spec = importlib.util.spec_from_file_location(
            "vnmlib_under_test", os.path.join(REMOTES, "vnmlib.py"))
        self.lib = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.lib)

    def nic(self, **attrs):
        vm = self.lib.parse_vm(vm_xml(7, attrs))
        self.assertEqual(vm.vid, "7")
        return vm.nics[0]

    def test_multiport_chunks_of_15(self):
        ports = ",".join(str(p) for p in range(1000, 1014)) + ",2000:2010,3000"
        nic = self.nic(BLACK_PORTS_TCP=ports)
        rules = self.lib.Firewall.rules(nic)
        self.assertEqual([r[5] for r in rules], [
            ",".join(str(p) for p in range(1000, 1014)), "2000:2010,3000"])

    def test_white_list_and_icmp(self):
        nic = self.nic(WHITE_PORTS_UDP="53", ICMP="DROP")
        rules = [" ".join(r) for r in self.lib.Firewall.rules(nic)]
        self.assertEqual(rules, [
            "-p udp -m state --state ESTABLISHED,RELATED -j ACCEPT",
            "-p udp -m multiport --dports 53 -j ACCEPT",
            "-p udp -j DROP",
            "-p icmp -m state --state ESTABLISHED,RELATED -j ACCEPT",
            "-p icmp -j DROP"])
        self.assertEqual(self.lib.Firewall.rules(self.nic(ICMP="accept")), [])

    def test_ebtables_rules_as_34(self):
        nic = self.nic(MAC="02:00:CB:00:71:0A", VLAN="YES")
        self.assertEqual([" ".join(r) for r in self.lib.Ebtables.rules(nic)], [
            "FORWARD -s ! 02:00:cb:00:71:00/ff:ff:ff:ff:ff:00 -o one-7-0 -j DROP",
            "FORWARD -s ! 02:00:cb:00:71:0a -i one-7-0 -j DROP"])

    def test_vlan_id_default_and_tap(self):
        conf = self.lib.load_conf()
        nic = self.nic(NETWORK_ID="5", VLAN="YES", NIC_ID="3", TARGET="")
        self.assertEqual(nic.vlan_id(conf), 7)           # START_VLAN 2 + NETWORK_ID
        self.assertEqual(nic.tap, "one-7-3")
        self.assertEqual(self.nic(VLAN_ID="42", NETWORK_ID="5").vlan_id(conf), 42)
        with self.assertRaises(self.lib.VNMError):
            self.nic(VLAN="YES").vlan_id(conf)

    def test_rejected_values(self):
        for attrs in ({"TARGET": "x" * 16}, {"MAC": "02:00:cb:00:71:zz"},
                      {"IP": "203.0.113.300"}, {"WHITE_PORTS_TCP": "1:70000"},
                      {"PHYDEV": "-eth0"}, {"NIC_ID": "a"}, {"VLAN_ID": "0"}):
            with self.assertRaises(self.lib.VNMError, msg=attrs):
                self.nic(**attrs)
