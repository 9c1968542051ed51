"""Unit tests of the core pieces: networks and leases, oned.conf loading and
--set, the oned.log format, host monitoring and the scheduler."""

import io
import os

from twisted.logger import LogLevel
from twisted.trial import unittest

from nebtwist.core import config as configmod
from nebtwist.core.objects import (FIXED, HOST_DISABLED, HOST_ERROR, HOST_MONITORED,
                                   HOST_MONITORING_INIT, PENDING, RANGED, User, ip_to_int)
from nebtwist.core.im import InformationManager
from nebtwist.core.scheduler import Scheduler
from nebtwist.core.vnet import acquire_lease, build_vnet, release_lease
from nebtwist.errors import ActionError, APIError
from nebtwist.fakes import FakeInformationDriver
from nebtwist.log import OnedLogObserver, OneLogger, format_oned_line
from nebtwist.template import Template

from tests.test_lcm import Core

ADMIN = User(0, "oneadmin", "x", 0, "oneadmin")
HELEN = User(2, "helen", "x", 1, "users")


def vnet(text, owner=ADMIN, oid=0):
    return build_vnet(Template.parse(text), oid, owner, owner.gname)


class VirtualNetworkTests(unittest.TestCase):
    """RANGED/FIXED networks as OpenNebula 3.4 builds them."""

    def test_seed_real_net(self):
        v = vnet('NAME = "One-TD"\nTYPE = RANGED\nBRIDGE = xenbr0\nNETWORK_SIZE = 125\n'
                 'NETWORK_ADDRESS = 192.168.5.128\n')
        self.assertEqual(v.type, RANGED)
        self.assertEqual((v.ip_start, v.ip_end),
                         (ip_to_int("192.168.5.129"), ip_to_int("192.168.5.254")))
        self.assertEqual(v.template.get_str("NETWORK_MASK"), "255.255.255.128")
        self.assertNotIn("NETWORK_SIZE", v.template)
        self.assertEqual(v.permissions[6], 1, "oneadmin's networks are public")

    def test_sizes_and_cidr(self):
        for spec, first, last in (
                ("NETWORK_SIZE = C\nNETWORK_ADDRESS = 10.1.2.0", "10.1.2.1", "10.1.2.254"),
                ("NETWORK_SIZE = B\nNETWORK_ADDRESS = 10.1.0.0", "10.1.0.1", "10.1.255.254"),
                ("NETWORK_ADDRESS = 10.1.2.0/28", "10.1.2.1", "10.1.2.14"),
                ("NETWORK_ADDRESS = 10.1.2.0\nNETWORK_MASK = 255.255.255.0", "10.1.2.1",
                 "10.1.2.254"),
                ("NETWORK_ADDRESS = 10.1.2.0\nNETWORK_SIZE = 6", "10.1.2.1", "10.1.2.6"),
                ("IP_START = 10.1.2.10\nIP_END = 10.1.2.20", "10.1.2.10", "10.1.2.20")):
            v = vnet(f"NAME = n\nTYPE = RANGED\nBRIDGE = b\n{spec}\n")
            self.assertEqual((v.ip_start, v.ip_end), (ip_to_int(first), ip_to_int(last)), spec)

    def test_bad_networks(self):
        for text, words in (
                ("TYPE = RANGED\nBRIDGE = b\nNETWORK_ADDRESS = 10.0.0.0", "NAME"),
                ("NAME = n\nBRIDGE = b\nNETWORK_ADDRESS = 10.0.0.0", "TYPE"),
                ("NAME = n\nTYPE = RANGED\nNETWORK_ADDRESS = 10.0.0.0", "BRIDGE"),
                ("NAME = n\nTYPE = RANGED\nBRIDGE = b\nNETWORK_ADDRESS = 10.0.0.300", "address"),
                ("NAME = n\nTYPE = RANGED\nBRIDGE = b\nNETWORK_ADDRESS = 10.0.0.5\n"
                 "NETWORK_SIZE = C", "base address"),
                ("NAME = n\nTYPE = RANGED\nBRIDGE = b\nNETWORK_ADDRESS = 10.0.0.0\n"
                 "NETWORK_SIZE = many", "NETWORK_SIZE"),
                ("NAME = n\nTYPE = FIXED\nBRIDGE = b\n", "LEASES"),
                ("NAME = n\nTYPE = FIXED\nBRIDGE = b\nLEASES = [ MAC = 1 ]", "IP")):
            with self.assertRaises(APIError) as e:
                vnet(text)
            self.assertIn(words, e.exception.message)

    def test_ranged_leases(self):
        v = vnet("NAME = n\nTYPE = RANGED\nBRIDGE = b\nNETWORK_ADDRESS = 10.0.0.0/29\n")
        got = [acquire_lease(v, i, "02:00").ip for i in range(6)]
        self.assertEqual(got, [ip_to_int(f"10.0.0.{n}") for n in range(1, 7)])
        with self.assertRaises(ActionError) as e:
            acquire_lease(v, 9, "02:00")
        self.assertIn("no free leases", e.exception.message)
        self.assertIsNone(release_lease(v, ip_to_int("10.0.0.3"), 99), "only its holder frees")
        release_lease(v, ip_to_int("10.0.0.3"), 2)
        lease = acquire_lease(v, 7, "02:00")
        self.assertEqual((lease.ip, lease.mac), (ip_to_int("10.0.0.3"), "02:00:0a:00:00:03"))
        with self.assertRaises(ActionError):
            acquire_lease(v, 8, "02:00", "10.0.0.1")  # taken
        with self.assertRaises(ActionError):
            acquire_lease(v, 8, "02:00", "10.0.1.1")  # outside

    def test_fixed_leases(self):
        v = vnet("NAME = n\nTYPE = FIXED\nBRIDGE = b\nLEASES = [ IP = 192.168.105.5 ]\n"
                 "LEASES = [ IP = 192.168.105.10, MAC = 00:11:22:33:44:55 ]\n")
        self.assertEqual(v.type, FIXED)
        self.assertEqual(v.leases[ip_to_int("192.168.105.5")].mac, "02:00:c0:a8:69:05")
        self.assertEqual(acquire_lease(v, 1, "02:00", "192.168.105.10").mac,
                         "00:11:22:33:44:55")
        self.assertEqual(acquire_lease(v, 2, "02:00").ip, ip_to_int("192.168.105.5"))
        with self.assertRaises(ActionError):
            acquire_lease(v, 3, "02:00")
        release_lease(v, ip_to_int("192.168.105.5"), 2)
        self.assertIn(ip_to_int("192.168.105.5"), v.leases, "FIXED leases stay listed")
        self.assertFalse(v.leases[ip_to_int("192.168.105.5")].used)


class ConfigTests(unittest.TestCase):
    """oned.conf loading and --set overrides."""

    def _file(self, text):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_shipped_conf_loads(self):
        from nebtwist.paths import shipped

        c = configmod.load(shipped("conf", "oned.conf"))
        self.assertEqual(c.get_int("PORT"), 2633)
        self.assertEqual([v["NAME"] for v in c.vectors("IM_MAD")], ["im_dummy", "im_kvm"])
        self.assertEqual([v["NAME"] for v in c.vectors("VM_MAD")],
                         ["vmm_dummy", "vmm_kvm", "vmm_qemu", "vmm_xen"])
        self.assertEqual([(v["NAME"], v.get("TYPE")) for v in c.vectors("VM_MAD")][1:],
                         [("vmm_kvm", "kvm"), ("vmm_qemu", "qemu"), ("vmm_xen", "xen")])
        self.assertEqual([v["NAME"] for v in c.vectors("TM_MAD")],
                         ["tm_dummy", "tm_ssh", "tm_shared", "tm_qcow2"])

    def test_set_replaces_every_attribute_of_a_key(self):
        path = self._file('PORT = 1\nVM_HOOK = [ name = "a" ]\nVM_HOOK = [ name = "b" ]\n')
        c = configmod.load(path, ["PORT=2700", 'VM_HOOK=[name="x", on="RUNNING"]',
                                  'VM_HOOK=[name="y", on="DONE"]', "econe.PORT=1"])
        self.assertEqual(c.get_int("PORT"), 2700)
        self.assertEqual([v["NAME"] for v in c.vectors("VM_HOOK")], ["x", "y"])
        self.assertEqual(c.vectors("VM_HOOK")[0]["ON"], "RUNNING")

    def test_last_single_value_wins(self):
        c = configmod.load(self._file("PORT = 1\n"), ["PORT=2", "PORT=3"])
        self.assertEqual(c.get_int("PORT"), 3)

    def test_defaults_and_errors(self):
        c = configmod.load(self._file("# nothing\n"))
        self.assertEqual(c.get_int("HOST_MONITORING_INTERVAL"), 600)
        self.assertEqual(c.get("MAC_PREFIX"), "02:00")
        with self.assertRaises(configmod.ConfigError) as e:
            configmod.load(self._file("PORT = [ a = 1\n"))
        self.assertIn("line", str(e.exception))
        for bad in ("PORT", "PORT=[", "=3"):
            self.assertRaises(configmod.ConfigError, configmod.load, self._file(""), [bad])
        self.assertRaises(configmod.ConfigError,
                          configmod.load(self._file("PORT = x\n")).get_int, "PORT")
        self.assertRaises(configmod.ConfigError, configmod.load, "/nonexistent/oned.conf")


class LogTests(unittest.TestCase):
    """oned.log lines in OpenNebula's style, filtered by DEBUG_LEVEL."""

    def test_format(self):
        line = format_oned_line({"log_format": "Host {n} monitored", "n": 3,
                                 "log_level": LogLevel.debug, "one_module": "InM"}, when=0)
        self.assertRegex(line, r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} \[InM\]\[D\]: "
                               r"Host 3 monitored$")

    def test_message_key_survives_legacy_observers(self):
        """A ``message=`` argument is not replaced by Twisted's legacy wrapper."""
        from twisted.logger import LogPublisher
        from twisted.logger._legacy import LegacyLogObserverWrapper

        seen = []
        publisher = LogPublisher()
        publisher.addObserver(LegacyLogObserverWrapper(lambda event: None))  # as twistd has
        publisher.addObserver(lambda e: seen.append(format_oned_line(e)))
        OneLogger("VM", observer=publisher).info("VM {vid}: {message}", vid=3, message="hello")
        self.assertTrue(seen[0].endswith("[VM][I]: VM 3: hello"), seen)

    def test_level(self):
        out = io.StringIO()
        obs = OnedLogObserver(out, debug_level=1)
        obs({"log_format": "x", "log_level": LogLevel.info, "one_module": "ONE"})
        obs({"log_format": "y", "log_level": LogLevel.warn, "one_module": "ONE"})
        self.assertEqual([line[-len("[ONE][W]: y"):] for line in out.getvalue().splitlines()],
                         ["[ONE][W]: y"])


class MonitoringTests(unittest.TestCase):
    """InformationManager on a Clock and a fake IM driver."""

    async def test_monitoring(self):
        core = await Core.make(self)
        core.nebula.config.template.set("HOST_MONITORING_INTERVAL", "60")
        core.nebula.config.template.set("MANAGER_TIMER", "15")
        drv = FakeInformationDriver("im_fake")
        im = InformationManager(core.nebula, {"im_fake": drv})
        host = await core.host("h0")
        other = await core.host("h1")
        other.im_mad = "missing"
        im.start()
        self.addCleanup(im.stop)
        self.assertEqual(host.state, HOST_MONITORING_INIT)  # never monitored yet (4.x)
        self.assertEqual(other.state, HOST_ERROR, "no such IM driver")
        drv.last("monitor").succeed("HOSTNAME=h0,TOTALCPU=400,FREECPU=350 TOTALMEMORY=1000 "
                                    "FREEMEMORY=900 USEDCPU=50 MODELNAME=\"Xeon E5\"")
        await core.nebula.db.run([])
        self.assertEqual(host.state, HOST_MONITORED)
        s = host.share
        self.assertEqual((s.max_cpu, s.free_cpu, s.used_cpu, s.max_mem, s.free_mem),
                         (400, 350, 50, 1000, 900))
        self.assertEqual(host.template.get_str("MODELNAME"), "Xeon E5")
        n = len(drv.calls)
        core.clock.advance(15)
        self.assertEqual(len(drv.calls), n, "not due yet")
        core.clock.advance(60)
        self.assertEqual(len(drv.calls), n + 1)
        drv.last("monitor").fail("host h0 is down")
        await core.nebula.db.run([])
        self.assertEqual(host.state, HOST_ERROR)
        self.assertEqual(host.template.get_vector("ERROR")["MESSAGE"], "host h0 is down")
        host.state = HOST_DISABLED
        core.clock.advance(120)
        self.assertEqual(len(drv.calls), n + 1, "disabled hosts are not monitored")


class SchedulerTests(unittest.TestCase):
    """Placement: REQUIREMENTS, RANK, capacity, MAX_HOST, MAX_DISPATCH."""

    async def _core(self, hosts=3):
        core = await Core.make(self)
        hs = []
        for i in range(hosts):
            h = await core.host(f"host0{i}")
            h.state = HOST_MONITORED
            h.template.set("HYPERVISOR", "kvm" if i else "xen")
            hs.append(h)
        return core, hs

    async def test_requirements_rank_and_capacity(self):
        core, (h0, h1, h2) = await self._core()
        h2.share.free_cpu = 40  # too busy for CPU=0.5
        vm = await core.dm.allocate(core.admin, 'CPU = 0.5\nMEMORY = 64\n'
                                                'REQUIREMENTS = "HYPERVISOR = \\"kvm\\""\n')
        sched = Scheduler(core.nebula, core.dm)
        await sched.cycle()
        self.assertEqual(vm.last_history.hostname, "host01")
        big = await core.dm.allocate(core.admin, "CPU = 9\nMEMORY = 64\n")
        ranked = await core.dm.allocate(core.admin, 'CPU = 0.1\nMEMORY = 1\nRANK = "- ID"\n')
        await sched.cycle()
        self.assertEqual(big.state, PENDING, "fits nowhere")
        self.assertEqual(ranked.last_history.hostname, "host00")

    async def test_limits(self):
        core, hosts = await self._core(2)
        core.nebula.config.template.set("MAX_DISPATCH", "3")
        vms = [await core.dm.allocate(core.admin, "CPU = 0.1\nMEMORY = 1\n") for _ in range(5)]
        sched = Scheduler(core.nebula, core.dm)
        self.assertEqual(await sched.cycle(), 2, "MAX_HOST = 1 per host per cycle")
        core.nebula.config.template.set("MAX_HOST", "5")
        self.assertEqual(await sched.cycle(), 3, "MAX_DISPATCH")
        self.assertTrue(all(vm.state != PENDING for vm in vms))

    async def test_policies(self):
        core, (h0, h1, h2) = await self._core()
        h1.share.running_vms = 5
        core.nebula.config.template.set("DEFAULT_SCHED", {"POLICY": "0"})
        vm = await core.dm.allocate(core.admin, "CPU = 0.1\nMEMORY = 1\n")
        await Scheduler(core.nebula, core.dm).cycle()
        self.assertEqual(vm.last_history.hostname, "host01", "packing: most RUNNING_VMS")
        core.nebula.config.template.set("DEFAULT_SCHED", {"POLICY": "1"})
        vm = await core.dm.allocate(core.admin, "CPU = 0.1\nMEMORY = 1\n")
        await Scheduler(core.nebula, core.dm).cycle()
        self.assertNotEqual(vm.last_history.hostname, "host01", "striping: fewest")
        # host02: most FREE_CPU but also most RUNNING_VMS, so packing, striping
        # and load-aware each choose differently
        h2.share.free_cpu, h2.share.running_vms = 790, 9
        h0.share.free_cpu = 100
        h1.share.free_cpu = 100
        core.nebula.config.template.set("DEFAULT_SCHED", {"POLICY": "2"})
        vm = await core.dm.allocate(core.admin, "CPU = 0.1\nMEMORY = 1\n")
        await Scheduler(core.nebula, core.dm).cycle()
        self.assertEqual(vm.last_history.hostname, "host02", "load-aware: most FREE_CPU")
        core.nebula.config.template.set("DEFAULT_SCHED", {"POLICY": "3", "RANK": "- FREE_CPU"})
        vm = await core.dm.allocate(core.admin, "CPU = 0.1\nMEMORY = 1\n")
        await Scheduler(core.nebula, core.dm).cycle()
        self.assertIn(vm.last_history.hostname, ("host00", "host01"), "custom RANK")
        vm = await core.dm.allocate(core.admin, 'CPU = 0.1\nMEMORY = 1\nRANK = "FREE_CPU"\n')
        await Scheduler(core.nebula, core.dm).cycle()
        self.assertEqual(vm.last_history.hostname, "host02", "a VM's own RANK overrides")

    async def test_bad_requirements_refused_at_create(self):
        core, _ = await self._core(1)
        n = len(core.nebula.vmpool)
        with self.assertRaises(APIError):
            await core.dm.allocate(core.admin, 'REQUIREMENTS = "CPU >"\n')
        self.assertEqual(len(core.nebula.vmpool), n)
        self.assertFalse(os.path.exists(core.nebula.vm_dir(n)))
