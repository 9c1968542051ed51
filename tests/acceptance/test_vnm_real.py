"""Acceptance: VNM drivers (VN_MAD) with real guests on the lab's hosts.

A real daemon runs ``drivers/vnm/exec`` (oned.conf ``VN_MAD``), which runs the host
scripts ``drivers/vnm/remotes/<driver>/{pre,post,clean}`` over ssh on the VM's host
around each deploy, migration and shutdown. Hosts are made with OpenNebula 3.4's form
``onehost create <host> im_kvm vmm_qemu <vnm>``. Each host script records what it made in
``VNM_STATE_DIR``, given per host and test here (``$NEBTWIST_LAB/local/vnm-<tag>``: the
hosts share every other folder of the file system).

* ``EbtablesLiveMigration``: the ebtables driver's rules follow a live-migrated guest
  (the source host keeps no rule and no record of it): it still reaches Red, its forged
  MAC is still dropped, and a Blue guest on the host it moved to still cannot reach it.
* ``OvswitchUserspace``: the ovswitch driver on each lab host's own Open vSwitch
  (userspace datapath, ``datapath_type=netdev``): the bridge it makes, the guests' ports
  tagged with the network's VLAN_ID, anti-spoofing flows; another tag cuts them apart;
  after shutdown no port, flow or bridge of theirs is left.

Two guests per class, three for the migration (TCG boots are slow), reused across checks; they ping each other
from their CONTEXT (``tests/hv/build-guest.sh``). Skips, saying why, without the lab (or
without Open vSwitch in it).
"""

import os
import shutil
import uuid

from tests.acceptance.test_real_vms import OP_TIMEOUT
from tests.acceptance.test_seed001_net import BLUE, RED, LabNetTestCase, hook_rules, mac_of
from tests.hvlab import lab_dir, wait_console

SPOOF = "02:00:cb:00:71:99"


class VNMTestCase(LabNetTestCase):
    """Hosts with a VN_MAD; the VN_MAD entries given here (they replace the shipped
    ones) pass the per-host state folder."""

    vnm = "dummy"

    def setUp(self):
        # VNM_STATE_DIR on every host: under the host's private $NEBTWIST_LAB/local
        self.state_dir = STATE_DIR = os.path.join(lab_dir(), "local",
                                                  f"vnm-{uuid.uuid4().hex[:8]}")
        self.extra_settings = (
            'DEFAULT_TM_MAD="tm_shared"',
            'VN_MAD=[ name = "dummy", executable = "vnm_exec", arguments = "-n" ]',
            'VN_MAD=[ name = "ebtables", executable = "vnm_exec", '
            f'arguments = "-t 15 -e VNM_STATE_DIR={STATE_DIR} ebtables" ]',
            'VN_MAD=[ name = "ovswitch", executable = "vnm_exec", '
            f'arguments = "-t 15 -e VNM_STATE_DIR={STATE_DIR} -e VNM_OVS_DATAPATH=netdev '
            'ovswitch" ]',
        )
        super().setUp()
        self.addCleanup(self._drop_state)

    def _drop_state(self):
        for host in self.lab.hosts:
            shutil.rmtree(self.lab.host_path(host, self.state_dir), ignore_errors=True)

    def add_vnm_hosts(self):
        """``onehost create nt-hN im_kvm vmm_qemu <vnm>`` (3.4's form) for both hosts;
        wait until they are monitored."""
        for host in self.lab.hosts:
            self.ok("onehost", "create", host, "im_kvm", "vmm_qemu", self.vnm)
        self.wait_for(lambda: len(self.hosts()) == 2 and all(
            r["STAT"] == "on" for r in self.hosts().values()), "both hosts monitored",
            timeout=OP_TIMEOUT)
        for host in self.lab.hosts:
            self.assertIn(f"VN_MAD                : {self.vnm}",
                          self.ok("onehost", "show", host))

    def shut_down(self, *vids):
        """``onevm shutdown`` each VM, wait until each is DONE and nothing of it
        is left on the hosts (``assert_gone``)."""
        for vid in vids:
            self.ok("onevm", "shutdown", vid)
        for vid in vids:
            self.wait_for(lambda vid=vid: vid not in self.vms(), f"VM {vid} DONE",
                          timeout=OP_TIMEOUT)
            self.assert_gone(vid)

    def state(self, host):
        """The text of every file in ``host``'s VNM_STATE_DIR (str)."""
        texts = []
        for name in self.lab.files_under(host, self.state_dir):
            with open(os.path.join(self.lab.host_path(host, self.state_dir), name)) as f:
                texts.append(f.read())
        return "\n".join(texts)


class EbtablesLiveMigration(VNMTestCase):

    vnm = "ebtables"

    def test_isolation_moves_with_the_guest(self):
        h1, h2 = self.lab.hosts[:2]
        self.add_vnm_hosts()
        self.register_image()
        self.network("Red", RED, extra='VLAN = "YES"\n')
        red1, c_red1 = self.net_guest("red1", "Red", RED[0], h1, [RED[1]], spoof=SPOOF)
        red2, c_red2 = self.net_guest("red2", "Red", RED[1], h2, [RED[0]])
        # Blue, on the host red1 migrates to, pings red1 with the mask widened (one IP
        # subnet: only red1's rules keep them apart; test_seed001_net shows the control)
        self.network("Blue", BLUE, extra='VLAN = "YES"\n')
        blue, c_blue = self.net_guest("blue", "Blue", BLUE[0], h2, [RED[0]])
        tap1, tap2 = f"one-{red1}-0", f"one-{red2}-0"
        self.assertEqual(self.wait_stat(red1, "runn")["HOSTNAME"], h1)
        self.assertEqual(self.wait_stat(red2, "runn")["HOSTNAME"], h2)
        self.assertEqual(self.wait_stat(blue, "runn")["HOSTNAME"], h2)
        for rule in hook_rules(tap1, mac_of(RED[0])):
            self.assertIn(rule, self.rules(h1))
        for rule in hook_rules(tap2, mac_of(RED[1])):
            self.assertIn(rule, self.rules(h2))
        self.assertIn(tap1, self.state(h1))
        wait_console(c_red1, "NEBTWIST-NET eth0")
        self.reaches(c_red1, "PING", RED[1])
        self.reaches(c_red2, "PING", RED[0])
        self.blocked(c_red1, "SPOOF", RED[1])
        wait_console(c_blue, "NEBTWIST-NET eth0")
        self.blocked(c_blue, "MASK2", RED[0])

        # live migration: the rules go with the guest, h1 keeps nothing of it
        self.ok("onevm", "livemigrate", red1, h2)
        self.wait_moved(red1, h2, "red1 live-migrated to h2")
        self.wait_for(lambda: not [r for r in self.rules(h1) if f" {tap1} " in r],
                      lambda: f"h1 without red1's rules: {self.rules(h1)}",
                      timeout=OP_TIMEOUT)
        self.assertNotIn(tap1, self.state(h1))
        for rule in hook_rules(tap1, mac_of(RED[0])):
            self.assertIn(rule, self.rules(h2))
        self.assertIn(tap1, self.state(h2))
        self.reaches(c_red1, "PING", RED[1])
        self.blocked(c_red1, "SPOOF", RED[1])
        self.blocked(c_blue, "MASK2", RED[0])  # same host now: still apart

        # shutdown: nothing of theirs left on either host
        self.shut_down(red1, red2, blue)
        for host in self.lab.hosts:
            self.assertEqual([r for r in self.rules(host) if f" {tap1} " in r
                              or f" {tap2} " in r], [], host)
            self.assertNotIn(tap1, self.state(host))
            self.assertNotIn(tap2, self.state(host))


class OvswitchUserspace(VNMTestCase):

    vnm = "ovswitch"
    ovs_bridge = "ntovs0"

    def setUp(self):
        super().setUp()
        for host in self.lab.hosts:
            if not self.lab.ovs(host):
                self.skipTest(f"no Open vSwitch running on {host} (install "
                              "openvswitch-switch and restart the lab)")
        self.addCleanup(self._drop_ovs)

    def _drop_ovs(self):
        """A bridge a failed test left (the driver deletes the one it made)."""
        for host in self.lab.hosts:
            self.lab.ssh(host, f"ovs-vsctl --timeout=20 --if-exists del-br {self.ovs_bridge}")

    def vsctl(self, host, *args):
        r = self.lab.ssh(host, ["ovs-vsctl", "--timeout=20", *args])
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def flows(self, host):
        r = self.lab.ssh(host, ["ovs-ofctl", "dump-flows", self.ovs_bridge])
        return r.stdout if r.returncode == 0 else ""

    def test_vlan_tags_and_antispoofing_flows(self):
        h1 = self.lab.hosts[0]
        self.add_vnm_hosts()
        self.register_image()
        # OVS bridge made by the driver (BRIDGE names it); VLAN_ID tags the ports
        self.one.write_file("red.net", f'NAME = "Red"\nTYPE = FIXED\nBRIDGE = '
                                       f'"{self.ovs_bridge}"\nVLAN = "YES"\nVLAN_ID = 100\n'
                            + "".join(f'LEASES = [ IP = "{ip}" ]\n' for ip in RED))
        self.ok("onevnet", "create", "red.net")
        red1, c_red1 = self.net_guest("red1", "Red", RED[0], h1, [RED[1]], spoof=SPOOF)
        red2, c_red2 = self.net_guest("red2", "Red", RED[1], h1, [RED[0]])
        tap1, tap2 = f"one-{red1}-0", f"one-{red2}-0"
        for vid in (red1, red2):
            self.assertEqual(self.wait_stat(vid, "runn")["HOSTNAME"], h1)
        self.assertEqual(self.vsctl(h1, "get", "bridge", self.ovs_bridge, "datapath_type"),
                         "netdev")
        ports = self.vsctl(h1, "list-ports", self.ovs_bridge).split()
        self.assertEqual(sorted(ports), sorted([tap1, tap2]))
        for tap in (tap1, tap2):
            self.assertEqual(self.vsctl(h1, "get", "port", tap, "tag"), "100")
        flows = self.flows(h1)
        self.assertIn(f"dl_src={mac_of(RED[0])}", flows)
        self.assertIn(f"dl_src={mac_of(RED[1])}", flows)

        wait_console(c_red1, "NEBTWIST-NET eth0")
        self.reaches(c_red1, "PING", RED[1])
        self.reaches(c_red2, "PING", RED[0])
        self.blocked(c_red1, "SPOOF", RED[1])
        # another VLAN tag on red2's port: cut off; its own tag back: reached again
        self.vsctl(h1, "set", "port", tap2, "tag=200")
        self.blocked(c_red1, "PING", RED[1])
        self.vsctl(h1, "set", "port", tap2, "tag=100")
        self.reaches(c_red1, "PING", RED[1], timeout=OP_TIMEOUT)

        self.shut_down(red1, red2)
        # the driver made the bridge: with its last port gone, so is the bridge
        r = self.lab.ssh(h1, ["ovs-vsctl", "--timeout=20", "br-exists", self.ovs_bridge])
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertNotIn(tap1, self.state(h1))
        self.assertNotIn(tap2, self.state(h1))
