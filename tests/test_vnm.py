"""Virtual network drivers (VN_MAD) on the core's side: the NetworkMad adapter
over the MAD line protocol, the order of pre/post/clean around the VMM actions
in the LifeCycleManager (fake drivers, a real SQLite database), what failures
leave behind, host VN_MAD validation, ``onehost create`` forms, network and
NIC attributes, and the deployment file's interfaces.

The real driver process (``drivers/vnm/exec``) is tested in
``tests/test_vnm_exec.py`` (over a real sshd) and ``tests/test_vnm_daemon.py``
(a whole daemon).
"""

import base64
import os

from lxml import etree
from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nebtwist import mad as madmod
from nebtwist import paths
from nebtwist.cli import onehost
from nebtwist.core.deployment import vm_domain_xml
from nebtwist.core.objects import (ACTIVE, BOOT, DONE, EPILOG, EPILOG_STOP, FAILED, LCM_INIT,
                                   MIGRATE, PROLOG_MIGRATE, RUNNING, SAVE_MIGRATE,
                                   SAVE_STOP, SHUTDOWN)
from nebtwist.core.vnm import NetworkManager
from nebtwist.errors import APIError, DriverCrashed, DriverError
from nebtwist.fakes import FakeNetworkDriver
from nebtwist.interfaces import IVirtualNetworkDriver
from nebtwist.mad import NetworkMad, build_driver
from nebtwist.testing import FakeProcessReactor
from tests.test_cli import SESSION, FakeServerMixin, ok
from tests.test_lcm import VM_TEMPLATE, Core
from tests.test_mad import MadTestMixin

VM_XML = "<VM><ID>7</ID><TEMPLATE><NIC><MAC>02:00:0a:00:00:01</MAC></NIC></TEMPLATE></VM>"


# ------------------------------------------------------------------ the adapter


class AdapterTests(MadTestMixin, unittest.SynchronousTestCase):
    """NetworkMad on a fake process reactor."""

    cls = NetworkMad
    tag = "VNM"

    def test_verify(self):
        verifyObject(IVirtualNetworkDriver, NetworkMad(FakeProcessReactor(), "fw", "/bin/true"))
        verifyObject(IVirtualNetworkDriver, FakeNetworkDriver("fw"))

    def test_messages_and_replies(self):
        """PRE/POST/CLEAN <vid> <host> <base64 VM XML>; SUCCESS fires None."""
        mad = self.start()
        results = [mad.pre(7, "node1", VM_XML), mad.post(7, "node1", VM_XML),
                   mad.clean(7, "node1", VM_XML)]
        b64 = base64.b64encode(VM_XML.encode()).decode()
        self.assertEqual(self.sent(), [f"PRE 7 node1 {b64}", f"POST 7 node1 {b64}",
                                       f"CLEAN 7 node1 {b64}"])
        self.child.child_says(b"POST SUCCESS 7\nCLEAN SUCCESS 7\nPRE SUCCESS 7\n")
        self.assertEqual([self.successResultOf(d) for d in results], [None, None, None])

    def test_failure_carries_the_message(self):
        mad = self.start()
        d = mad.pre(7, "node1", VM_XML)
        self.child.child_says(b"PRE FAILURE 7 cannot create bridge onebr3: no such device\n")
        f = self.failureResultOf(d, DriverError)
        self.assertEqual(f.value.message, "pre: cannot create bridge onebr3: no such device")

    def test_bad_host_is_refused_without_a_request(self):
        mad = self.start()
        for host in ("", "two words", "a\nb"):
            self.failureResultOf(mad.clean(7, host, VM_XML), DriverError)
        self.assertEqual(self.sent(), [])

    def test_crash_fails_in_flight_and_restarts(self):
        """A driver dying with requests in flight fails them (DriverCrashed) and
        is spawned again after the backoff, as every MAD."""
        mad = self.start(restart_delay=1.0)
        d = mad.post(3, "node1", VM_XML)
        self.child.killed()
        self.failureResultOf(d, DriverCrashed)
        self.failureResultOf(mad.pre(3, "node1", VM_XML), DriverCrashed)  # down meanwhile
        self.reactor.advance(1.0)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.child.child_says(b"INIT SUCCESS\n")
        d = mad.pre(3, "node1", VM_XML)
        self.child.child_says(b"PRE SUCCESS 3\n")
        self.assertIsNone(self.successResultOf(d))

    def test_hung_driver_times_out(self):
        mad = self.start()
        mad.request_timeout = 30
        d = mad.clean(4, "node1", VM_XML)
        self.reactor.advance(31)
        self.failureResultOf(d).trap(madmod.DriverTimeout)

    def test_build_driver(self):
        """VN_MAD vectors: ``vnm_exec`` is drivers/vnm/exec; the child learns
        its NAME as VNM_DRIVER."""
        drv = build_driver("vnm", FakeProcessReactor(),
                           {"name": "802.1Q", "executable": "vnm_exec", "arguments": "-t 4"},
                           env={"PATH": "/bin"})
        self.assertIsInstance(drv, NetworkMad)
        self.assertEqual(drv.executable, paths.shipped("drivers", "vnm", "exec"))
        self.assertTrue(os.access(drv.executable, os.X_OK))
        self.assertEqual(drv.env, {"PATH": "/bin", "VNM_DRIVER": "802.1Q"})
        self.assertEqual(drv.argv[1:], ["-t", "4"])


# ------------------------------------------------------------------ the life cycle


class NetCore:
    """A :class:`tests.test_lcm.Core` whose hosts use the VN_MAD ``ebtables``
    (a fake driver) through a NetworkManager."""

    @classmethod
    async def make(cls, testcase):
        core = await Core.make(testcase)
        core.vnmd = FakeNetworkDriver("ebtables")
        core.vnm = NetworkManager(core.nebula, {"ebtables": core.vnmd})
        core.lcm.vnm = core.vnm
        core.requests.vn_mads = core.vnm.names()
        await core.setup_net()
        return core


async def host(core, name, vn_mad="ebtables"):
    hid = await core.requests.host_allocate(core.admin, name, "im_fake", "vmm_fake", vn_mad)
    h = core.nebula.hostpool.get(hid)
    h.share.max_cpu = h.share.free_cpu = 800
    h.share.max_mem = h.share.free_mem = 8 * 1024 * 1024
    return h


async def booting(core, h):
    """Allocate a VM and deploy it on ``h``, its prolog answered: the VM in
    BOOT, its network's ``pre`` asked."""
    vm = await core.dm.allocate(core.admin, VM_TEMPLATE)
    await core.dm.deploy(vm, h)
    core.tmd.last("transfer").succeed()
    await core.settle()
    return vm


def vm_log(core, vm):
    with open(os.path.join(core.nebula.vm_dir(vm.oid), "vm.log"), encoding="utf-8") as f:
        return f.read()


class LifeCycleOrderTests(unittest.TestCase):
    """pre/post/clean in the order OpenNebula 3.4's exec driver ran them."""

    def steps(self, core):
        """Every VMM and VNM call so far as ``(method, host)``, in call order
        within each driver (the tests answer one at a time, so the whole order
        shows step by step)."""
        return [(c.method, c.args[0]) for c in core.vnmd.calls]

    async def boot(self, core, h):
        """Allocate a VM, deploy it on ``h``, answer prolog, pre, deploy, post."""
        vm = await booting(core, h)
        self.assertEqual(vm.lcm_state, BOOT)
        self.assertEqual(core.vmmd.pending("deploy"), [], "no deploy before pre")
        pre = core.vnmd.last("pre")
        self.assertEqual((pre.oid, pre.args[0]), (vm.oid, h.name))
        xml = etree.fromstring(pre.args[1])
        self.assertEqual(xml.findtext("TEMPLATE/NIC/TARGET"), f"one-{vm.oid}-0")
        self.assertEqual(xml.findtext("HISTORY_RECORDS/HISTORY/VNMMAD"), "ebtables")
        pre.succeed()
        await core.settle()
        core.vmmd.last("deploy").succeed(f"dep-{vm.oid}")
        await core.settle()
        self.assertEqual(vm.lcm_state, BOOT, "not RUNNING before post")
        core.vnmd.last("post").succeed()
        await core.settle()
        self.assertEqual((vm.state, vm.lcm_state), (ACTIVE, RUNNING))
        self.assertEqual(vm.deploy_id, f"dep-{vm.oid}")
        return vm

    async def test_deploy_and_shutdown(self):
        core = await NetCore.make(self)
        h0 = await host(core, "h0")
        vm = await self.boot(core, h0)
        self.assertEqual(vm.last_history.vnm_mad, "ebtables")
        await core.dm.action(vm, "shutdown")
        self.assertEqual(core.vnmd.pending("clean"), [], "no clean while the domain runs")
        core.vmmd.last("shutdown").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, SHUTDOWN, "EPILOG only after clean")
        core.vnmd.last("clean").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, EPILOG)
        self.assertEqual(self.steps(core), [("pre", "h0"), ("post", "h0"), ("clean", "h0")])
        self.assertIn("Network pre (ebtables) on h0", vm_log(core, vm))

    async def test_pre_failure_fails_the_boot_without_a_domain(self):
        core = await NetCore.make(self)
        h0 = await host(core, "h0")
        vm = await booting(core, h0)
        core.vnmd.last("pre").fail("ebtables: command not found")
        await core.settle()
        core.vnmd.last("clean").succeed()  # whatever pre made half-way goes
        await core.settle()
        self.assertEqual((vm.state, vm.lcm_state), (FAILED, LCM_INIT))
        self.assertEqual(core.vmmd.calls, [], "no domain was created")
        self.assertEqual(h0.share.running_vms, 0)
        self.assertIn("Error deploying VM: ebtables: command not found", vm_log(core, vm))

    async def test_post_failure_cancels_the_new_domain(self):
        core = await NetCore.make(self)
        h0 = await host(core, "h0")
        vm = await booting(core, h0)
        core.vnmd.last("pre").succeed()
        await core.settle()
        core.vmmd.last("deploy").succeed("dep-9")
        await core.settle()
        core.vnmd.last("post").fail("no tap one-0-0")
        await core.settle()
        cancel = core.vmmd.last("cancel")
        self.assertEqual(cancel.args[0].deploy_id, "dep-9")
        self.assertEqual(vm.lcm_state, BOOT, "FAILED once the domain is gone")
        cancel.succeed()
        await core.settle()
        core.vnmd.last("clean").succeed()
        await core.settle()
        self.assertEqual((vm.state, vm.lcm_state), (FAILED, LCM_INIT))
        self.assertEqual([c.method for c in core.vnmd.calls], ["pre", "post", "clean"])
        self.assertIn("no tap one-0-0", vm_log(core, vm))

    async def test_deploy_failure_cleans(self):
        core = await NetCore.make(self)
        h0 = await host(core, "h0")
        vm = await booting(core, h0)
        core.vnmd.last("pre").succeed()
        await core.settle()
        core.vmmd.last("deploy").fail("no hypervisor")
        await core.settle()
        self.assertEqual(vm.lcm_state, BOOT)
        core.vnmd.last("clean").succeed()
        await core.settle()
        self.assertEqual((vm.state, vm.lcm_state), (FAILED, LCM_INIT))
        self.assertEqual([c.method for c in core.vnmd.calls], ["pre", "clean"])

    async def test_clean_failure_is_logged_and_the_vm_moves_on(self):
        core = await NetCore.make(self)
        h0 = await host(core, "h0")
        vm = await self.boot(core, h0)
        await core.dm.action(vm, "cancel")
        core.vmmd.last("cancel").succeed()
        await core.settle()
        core.vnmd.last("clean").fail("rule vanished")
        await core.settle()
        self.assertEqual(vm.lcm_state, EPILOG)
        self.assertIn("[VNM][W]: Network clean failed: rule vanished", vm_log(core, vm))

    async def test_stop_and_resume(self):
        """stop: save, then clean; resume: pre, restore, post."""
        core = await NetCore.make(self)
        h0 = await host(core, "h0")
        vm = await self.boot(core, h0)
        await core.dm.action(vm, "stop")
        core.vmmd.last("save").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, SAVE_STOP)
        core.vnmd.last("clean").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, EPILOG_STOP)
        core.tmd.last("transfer").succeed()
        await core.settle()
        await core.dm.action(vm, "resume")
        await core.dm.deploy(vm, h0)
        core.tmd.last("transfer").succeed()
        await core.settle()
        self.assertEqual(core.vmmd.pending("restore"), [])
        core.vnmd.last("pre").succeed()
        await core.settle()
        core.vmmd.last("restore").succeed("dep-r")
        await core.settle()
        core.vnmd.last("post").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING)
        self.assertEqual([c.method for c in core.vnmd.calls],
                         ["pre", "post", "clean", "pre", "post"])

    async def test_live_migration(self):
        """pre on the new host, migrate, post on the new host, clean on the old."""
        core = await NetCore.make(self)
        h0, h1 = await host(core, "h0"), await host(core, "h1")
        vm = await self.boot(core, h0)
        await core.dm.migrate(vm, h1, live=True)
        self.assertEqual(vm.lcm_state, MIGRATE)
        self.assertEqual(core.vmmd.pending("migrate"), [], "no migration before pre")
        core.vnmd.last("pre").succeed()
        await core.settle()
        core.vmmd.last("migrate").succeed()
        await core.settle()
        core.vnmd.last("post").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, MIGRATE, "RUNNING once the old host is clean")
        core.vnmd.last("clean").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING)
        self.assertEqual(self.steps(core)[2:], [("pre", "h1"), ("post", "h1"), ("clean", "h0")])
        self.assertEqual([h.vnm_mad for h in vm.history], ["ebtables", "ebtables"])

    async def test_live_migration_pre_failure_stays(self):
        """pre failing on the new host: no migration, the new host cleaned, the
        VM back on its host."""
        core = await NetCore.make(self)
        h0, h1 = await host(core, "h0"), await host(core, "h1")
        vm = await self.boot(core, h0)
        await core.dm.migrate(vm, h1, live=True)
        core.vnmd.last("pre").fail("no PHYDEV eth9")
        await core.settle()
        core.vnmd.last("clean").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING)
        self.assertEqual(core.vmmd.pending("migrate"), [])
        self.assertEqual(vm.last_history.hostname, "h0")
        self.assertEqual(self.steps(core)[2:], [("pre", "h1"), ("clean", "h1")])

    async def test_cold_migration(self):
        """save and clean on the old host; pre, restore, post on the new one."""
        core = await NetCore.make(self)
        h0, h1 = await host(core, "h0"), await host(core, "h1")
        vm = await self.boot(core, h0)
        await core.dm.migrate(vm, h1, live=False)
        core.vmmd.last("save").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, SAVE_MIGRATE)
        core.vnmd.last("clean").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, PROLOG_MIGRATE)
        core.tmd.last("transfer").succeed()
        await core.settle()
        core.vnmd.last("pre").succeed()
        await core.settle()
        core.vmmd.last("restore").succeed("dep-y")
        await core.settle()
        core.vnmd.last("post").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING)
        self.assertEqual(self.steps(core)[2:], [("clean", "h0"), ("pre", "h1"), ("post", "h1")])

    async def test_delete_cleans_after_the_cancel(self):
        core = await NetCore.make(self)
        h0 = await host(core, "h0")
        vm = await self.boot(core, h0)
        await core.dm.action(vm, "delete")  # 3.4 finalize: CLEANUP, then DONE
        self.assertEqual(core.vnmd.pending("clean"), [])
        core.vmmd.last("cancel").succeed()
        await core.settle()
        self.assertEqual(core.tmd.pending(), [], "files deleted after the clean")
        core.vnmd.last("clean").succeed()
        await core.settle()
        for call in core.tmd.pending():
            call.succeed()
        await core.settle()
        self.assertEqual(vm.state, DONE)
        self.assertEqual(self.steps(core)[-1], ("clean", "h0"))

    async def test_network_redo_after_a_crash(self):
        """Recovery re-runs the network step a found reply would have followed."""
        core = await NetCore.make(self)
        h0 = await host(core, "h0")
        vm = await booting(core, h0)
        self.assertEqual(vm.lcm_state, BOOT)
        d = defer.ensureDeferred(core.lcm.network_redo(vm, "deploy_success"))
        core.vnmd.last("post").fail("tap busy")
        await d
        self.assertIn("Recovery: network post failed: tap busy", vm_log(core, vm))
        d = defer.ensureDeferred(core.lcm.network_redo(vm, "cancel_success"))
        core.vnmd.last("clean").succeed()
        await d
        self.assertEqual([c.method for c in core.vnmd.calls], ["pre", "post", "clean"])

    async def test_dummy_needs_no_driver_others_do(self):
        """A host whose VN_MAD is dummy boots without any VNM driver loaded; a
        VN_MAD that is not loaded fails the boot with its name."""
        core = await NetCore.make(self)
        h0 = await host(core, "h0", "dummy")
        vm = await booting(core, h0)
        core.vmmd.last("deploy").succeed("d")
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING)
        self.assertEqual(core.vnmd.calls, [])
        h1 = await host(core, "h1")
        core.vnm.drivers.clear()  # the ebtables driver unloaded
        vm = await core.dm.allocate(core.admin, VM_TEMPLATE)
        await core.dm.deploy(vm, h1)
        core.tmd.last("transfer").succeed()
        await core.settle()
        self.assertEqual(vm.state, FAILED)
        self.assertIn("VN_MAD driver 'ebtables' is not loaded", vm_log(core, vm))


# ------------------------------------------------------------------ hosts, networks, NICs


class HostTests(unittest.TestCase):

    async def test_vn_mad_validated(self):
        core = await NetCore.make(self)
        self.assertEqual(core.requests.vn_mads, ["dummy", "ebtables"])
        h = await host(core, "h0")
        self.assertEqual(h.vn_mad, "ebtables")
        self.assertIn("<VN_MAD>ebtables</VN_MAD>", h.info())
        h = await host(core, "h1", "")
        self.assertEqual(h.vn_mad, "dummy")
        with self.assertRaises(APIError) as caught:
            await host(core, "h2", "ovswitch")
        self.assertIn("Unknown VN_MAD driver 'ovswitch'", caught.exception.message)
        self.assertIsNone(core.nebula.hostpool.find("h2"), "nothing half made")


class CreateFormsTests(FakeServerMixin, unittest.TestCase):
    """``onehost create``'s forms and the one.host.allocate they send."""

    def setUp(self):
        super().setUp()
        self.fake.replies["one.host.allocate"] = ok(3)

    async def test_forms(self):
        for argv in (("n1", "im_kvm", "vmm_kvm", "ebtables", "100"),  # 3.4 positional
                     ("n2", "im_kvm", "vmm_kvm", "802.1Q"),  # 3.4 without a cluster
                     ("n3", "im_kvm", "vmm_kvm", "tm_ssh"),  # 1.4: a TM driver
                     ("n4", "--im", "im_kvm", "--vm", "vmm_kvm", "-n", "ovswitch"),
                     ("n5", "--im", "im_kvm", "--vm", "vmm_kvm")):
            status, out, err = await self.run_cli(onehost.main, "create", *argv)
            self.assertEqual((status, err), (0, ""), argv)
        self.assertEqual(self.calls("one.host.allocate"), [
            (SESSION, "n1", "im_kvm", "vmm_kvm", "ebtables", 100),
            (SESSION, "n2", "im_kvm", "vmm_kvm", "802.1Q", -1),
            (SESSION, "n3", "im_kvm", "vmm_kvm", "tm_ssh"),
            (SESSION, "n4", "im_kvm", "vmm_kvm", "ovswitch", -1),
            (SESSION, "n5", "im_kvm", "vmm_kvm", "dummy", -1)])

    async def test_bad_cluster(self):
        status, out, err = await self.run_cli(onehost.main, "create", "n1", "im", "vmm",
                                              "fw", "x")
        self.assertEqual(status, 1)
        self.assertIn("the cluster must be a number", err)
        self.assertEqual(self.fake.calls, [])


class NetworkAttributeTests(unittest.TestCase):

    async def test_vlan_network_and_nic(self):
        core = await NetCore.make(self)
        oid = await core.requests.vn_allocate(
            core.admin, 'NAME = red\nTYPE = RANGED\nPHYDEV = eth0\nVLAN_ID = 50\n'
                        'NETWORK_ADDRESS = 203.0.113.0\nNETWORK_SIZE = C\n')
        vnet = core.nebula.vnpool.get(oid)
        self.assertEqual((vnet.bridge, vnet.vlan, vnet.phydev, vnet.vlan_id),
                         (f"onebr{oid}", 1, "eth0", "50"))
        info = etree.fromstring(core.requests.vn_info(core.admin, oid))
        self.assertEqual([info.findtext(k) for k in ("BRIDGE", "VLAN", "PHYDEV", "VLAN_ID")],
                         [f"onebr{oid}", "1", "eth0", "50"])
        vm = await core.dm.allocate(core.admin, (
            'NAME = v\nMEMORY = 64\nCPU = 0.1\n'
            'NIC = [ NETWORK = "net" ]\n'
            'NIC = [ NETWORK = "red", WHITE_PORTS_TCP = "22,80:90", ICMP = drop ]\n'))
        nics = vm.template.get_all("NIC")
        self.assertEqual((nics[0]["NIC_ID"], nics[0]["TARGET"], nics[0]["VLAN"]),
                         ("0", f"one-{vm.oid}-0", "NO"))
        self.assertNotIn("VLAN_ID", nics[0])
        red = nics[1]
        self.assertEqual({k: red[k] for k in ("NIC_ID", "TARGET", "BRIDGE", "VLAN", "VLAN_ID",
                                               "PHYDEV", "WHITE_PORTS_TCP", "ICMP",
                                               "NETWORK_ADDRESS", "NETWORK_MASK", "IP")},
                         {"NIC_ID": "1", "TARGET": f"one-{vm.oid}-1", "BRIDGE": f"onebr{oid}",
                          "VLAN": "YES", "VLAN_ID": "50", "PHYDEV": "eth0",
                          "WHITE_PORTS_TCP": "22,80:90", "ICMP": "drop",
                          "NETWORK_ADDRESS": "203.0.113.0", "NETWORK_MASK": "255.255.255.0",
                          "IP": "203.0.113.1"})

    async def test_bad_network_attributes(self):
        core = await NetCore.make(self)
        for extra, word in (("BRIDGE = br0\nVLAN_ID = 5000\n", "VLAN_ID"),
                            ("BRIDGE = br0\nVLAN_ID = abc\n", "VLAN_ID"),
                            ('BRIDGE = "br0; reboot"\n', "BRIDGE"),
                            ("PHYDEV = -eth0\n", "PHYDEV"),
                            ("BRIDGE = averyveryverylongbridge\n", "BRIDGE")):
            with self.assertRaises(APIError) as caught:
                await core.requests.vn_allocate(
                    core.admin, "NAME = x\nTYPE = RANGED\nNETWORK_ADDRESS = 10.1.0.0\n" + extra)
            self.assertIn(word, caught.exception.message)
        self.assertEqual(len(core.nebula.vnpool), 1, "only the first network exists")


class DeploymentTests(unittest.TestCase):
    """The libvirt interfaces: bridge, MAC, tap name; OVS on ovswitch hosts."""

    async def deployed(self, vn_mad):
        core = await Core.make(self)
        core.requests.vn_mads = None
        await core.setup_net()
        hid = await core.requests.host_allocate(core.admin, "h0", "im_fake", "vmm_fake", vn_mad)
        vm = await core.dm.allocate(core.admin, (
            'NAME = vm\nCPU = 0.5\nMEMORY = 128\nOS = [ ARCH = "x86_64", BOOT = hd ]\n'
            'DISK = [ SOURCE = "/img/a.img", TARGET = hda ]\nNIC = [ NETWORK = "net" ]\n'))
        await core.dm.deploy(vm, core.nebula.hostpool.get(hid))
        domain = etree.fromstring(vm_domain_xml(vm, "kvm"))
        return vm, domain.find("devices/interface")

    async def test_bridge_interface(self):
        vm, iface = await self.deployed("ebtables")
        self.assertEqual(iface.get("type"), "bridge")
        self.assertEqual(iface.find("source").get("bridge"), "br0")
        self.assertEqual(iface.find("target").get("dev"), f"one-{vm.oid}-0")
        self.assertEqual(iface.find("mac").get("address"), "02:00:0a:00:00:01")
        self.assertIsNone(iface.find("virtualport"))

    async def test_ovswitch_interface(self):
        vm, iface = await self.deployed("ovswitch")
        self.assertEqual(iface.find("source").get("bridge"), "br0")
        self.assertEqual(iface.find("virtualport").get("type"), "openvswitch")
        self.assertEqual(iface.find("target").get("dev"), f"one-{vm.oid}-0")


class CleanupTests(unittest.TestCase):

    async def test_finalize_in_boot_cleans_without_a_domain(self):
        """A VM deleted in BOOT after its pre (no deploy id yet): the clean-up
        runs clean, though there is no domain to cancel."""
        core = await NetCore.make(self)
        h0 = await host(core, "h0")
        vm = await booting(core, h0)
        core.vnmd.last("pre").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, BOOT)
        await core.dm.action(vm, "delete")
        self.assertEqual(core.vmmd.pending("cancel"), [], "no domain to cancel")
        core.vnmd.last("clean").succeed()
        await core.settle()
        for call in core.tmd.pending():
            call.succeed()
        await core.settle()
        self.assertEqual(vm.state, DONE)
        self.assertEqual([c.method for c in core.vnmd.calls], ["pre", "clean"])
