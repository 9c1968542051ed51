"""The VM state machine: every row of the table, and whole paths with their
side effects (history, HOST_SHARE, leases, persistence), on fake drivers and
a real SQLite database."""

import os

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nebtwist.core.config import Config
from nebtwist.core.db import Database
from nebtwist.core.dm import DispatchManager
from nebtwist.core.lcm import TABLE, TRANSITIONS, LifeCycleManager
from nebtwist.core.nebula import Nebula
from nebtwist.core.objects import (ACTIVE, BOOT, CLEANUP, DONE, EPILOG, EPILOG_STOP, FAILED,
                                   LCM_INIT, MIGRATE, PENDING, PROLOG, PROLOG_MIGRATE,
                                   PROLOG_RESUME, REASON_ERROR, REASON_NONE,
                                   REASON_STOP_RESUME, REASON_USER, RUNNING, SAVE_MIGRATE,
                                   SAVE_STOP, SAVE_SUSPEND, SHUTDOWN, STOPPED, SUSPENDED,
                                   UNKNOWN, History, ip_to_int)
from nebtwist.core.requests import Requests
from nebtwist.core.tm import TransferManager
from nebtwist.core.vmm import VirtualMachineManager
from nebtwist.errors import ActionError, DriverError
from nebtwist.fakes import FakeInformationDriver, FakeTransferDriver, FakeVirtualMachineDriver
from nebtwist.interfaces import IInformationDriver, ITransferDriver, IVirtualMachineDriver
from nebtwist.template import Template

VM_TEMPLATE = """NAME = vm
CPU = 0.5
MEMORY = 128
DISK = [ SOURCE = "/img/a.img", TARGET = hda ]
DISK = [ TYPE = swap, SIZE = 64 ]
NIC = [ NETWORK = "net" ]
"""

#: driver action in the table -> (fake, method) the action must call.
DRIVER_CALLS = {
    "vmm_deploy": ("vmm", "deploy"), "vmm_shutdown": ("vmm", "shutdown"),
    "vmm_cancel": ("vmm", "cancel"), "vmm_migrate": ("vmm", "migrate"),
    "vmm_save_migrate": ("vmm", "save"), "vmm_restore": ("vmm", "restore"),
    "tm_prolog": ("tm", "transfer"), "tm_epilog": ("tm", "transfer"),
    "tm_prolog_migrate": ("tm", "transfer"), "cleanup_finalize": ("vmm", "cancel"),
    "cleanup_resubmit": ("vmm", "cancel"), "cleanup_finalize_both": ("vmm", "cancel"),
    "cleanup_resubmit_both": ("vmm", "cancel"), "cleanup_quiet": ("vmm", "cancel"),
    "cleanup_quiet_both": ("vmm", "cancel"),
}


class FakesTests(unittest.TestCase):
    """The fake drivers provide their interfaces and record calls."""

    def test_verify(self):
        verifyObject(IVirtualMachineDriver, FakeVirtualMachineDriver("v"))
        verifyObject(ITransferDriver, FakeTransferDriver("t"))
        verifyObject(IInformationDriver, FakeInformationDriver("i"))

    def test_record_and_answer(self):
        drv = FakeVirtualMachineDriver("v")
        d = drv.deploy(3, "action")
        self.assertEqual(drv.pending("deploy")[0].oid, 3)
        drv.last("deploy").succeed("dep-3")
        self.assertEqual(self.successResultOf(d), "dep-3")
        self.assertEqual(drv.pending(), [])
        d = drv.shutdown(3, "a")
        drv.last("shutdown").fail("boom")
        self.assertEqual(self.failureResultOf(d, DriverError).value.message, "boom")

    def test_auto(self):
        drv = FakeTransferDriver("t", auto={"transfer": None})
        self.assertIsNone(self.successResultOf(drv.transfer(1, "/x")))
        with self.assertRaises(LookupError):
            FakeTransferDriver("t").last("transfer")


class Core:
    """A core on fake drivers, a Clock, and a real SQLite file."""

    @classmethod
    async def make(cls, testcase, path=None, database=None):
        """A core in ``path`` (default a new temp folder) on ``database``
        (default SQLite ``<path>/one.db``)."""
        self = cls()
        self.dir = path or os.path.abspath(testcase.mktemp())
        os.makedirs(self.dir, exist_ok=True)
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        config = Config(Template.parse('MAC_PREFIX = "02:00"\nNETWORK_SIZE = 254\n'))
        self.db = database or Database(reactor, "sqlite", path=os.path.join(self.dir, "one.db"))
        self.nebula = Nebula(config, self.clock, self.dir, self.db)
        await self.nebula.open(("oneadmin", "pw"))
        testcase.addCleanup(self.nebula.close)
        self.vmmd = FakeVirtualMachineDriver("vmm_fake")
        self.tmd = FakeTransferDriver("tm_fake")
        self.vmm = VirtualMachineManager(self.nebula, {"vmm_fake": self.vmmd})
        self.tm = TransferManager(self.nebula, {"tm_fake": self.tmd})
        self.lcm = LifeCycleManager(self.nebula, self.vmm, self.tm)
        self.vmm.lcm = self.lcm
        self.dm = DispatchManager(self.nebula, self.lcm)
        self.requests = Requests(self.nebula, self.dm)
        self.admin = self.nebula.userpool.get(0)
        return self

    async def host(self, name):
        hid = await self.requests.host_allocate(self.admin, name, "im_fake", "vmm_fake")
        host = self.nebula.hostpool.get(hid)
        host.share.max_cpu = host.share.free_cpu = 800
        host.share.max_mem = host.share.free_mem = 8 * 1024 * 1024
        return host

    async def setup_net(self):
        await self.requests.vn_allocate(
            self.admin, 'NAME = net\nTYPE = RANGED\nBRIDGE = br0\n'
                        'NETWORK_ADDRESS = 10.0.0.0\nNETWORK_SIZE = C\n')

    async def settle(self):
        """Wait until every write issued so far is committed (one database thread)."""
        await self.nebula.db.run([])

    async def poll(self, reply):
        """Let a polling round come due and answer its POLL with ``reply``."""
        self.clock.advance(20)
        self.vmm.tick()
        self.vmmd.last("poll").succeed(reply)
        await self.settle()

    def fakes(self, kind):
        return self.vmmd if kind == "vmm" else self.tmd


class TableTests(unittest.TestCase):
    """Every row of TRANSITIONS, from a VM put in the row's state."""

    def test_table_is_consistent(self):
        self.assertEqual(len(TABLE), len(TRANSITIONS), "duplicate (state, lcm, event) rows")
        for row in TRANSITIONS:
            for action in row.actions:
                self.assertTrue(hasattr(LifeCycleManager, "_a_" + action), action)

    async def _vm_in(self, core, hosts, state, lcm):
        vm = await core.dm.allocate(core.admin, VM_TEMPLATE)
        vm.state, vm.lcm_state = state, lcm
        if state in (ACTIVE, FAILED, SUSPENDED, STOPPED):
            hosts_needed = 2 if lcm in (MIGRATE, SAVE_MIGRATE, PROLOG_MIGRATE) else 1
            for i in range(hosts_needed):
                h = hosts[i]
                vm.history.append(History(seq=i, hostname=h.name, hid=h.oid,
                                          vm_dir=f"/ds/0/{vm.oid}", vmm_mad="vmm_fake",
                                          tm_mad="tm_fake", stime=1, rstime=1))
                if state in (ACTIVE, SUSPENDED):
                    h.share.add(*vm.capacity())
            vm.deploy_id = f"dep-{vm.oid}"
        await core.nebula.vmpool.update(vm)
        return vm

    async def test_every_row(self):
        core = await Core.make(self)
        await core.setup_net()
        hosts = [await core.host("h0"), await core.host("h1"), await core.host("h2")]
        for row in TRANSITIONS:
            vm = await self._vm_in(core, hosts, row.state, row.lcm)
            before = {kind: len(core.fakes(kind).calls) for kind in ("vmm", "tm")}
            kw = {"host": hosts[2], "info": {"STATE": "a", "USEDCPU": "7"}, "message": "x"}
            if row.event in ("deploy_success",):
                kw["info"] = "dep-new"
            await core.lcm.trigger(vm, row.event, **kw)
            where = f"{row.state}/{row.lcm} --{row.event}-->"
            self.assertEqual((vm.state, vm.lcm_state), (row.new_state, row.new_lcm), where)
            for action in row.actions:
                if action in DRIVER_CALLS:
                    kind, method = DRIVER_CALLS[action]
                    new = core.fakes(kind).calls[before[kind]:]
                    self.assertIn(method, [c.method for c in new], f"{where} {action}")
            stored = await core.db.select("SELECT state, lcm_state FROM vm_pool WHERE oid = ?",
                                          (vm.oid,))
            self.assertEqual(tuple(stored[0]), (row.new_state, row.new_lcm), where)
            if "release_leases" in row.actions:
                ip = ip_to_int(vm.template.get_vector("NIC")["IP"])
                self.assertNotIn(ip, core.nebula.vnpool.get(0).leases, where)

    async def test_leaving_a_migration_frees_both_hosts(self):
        """finalize, resubmit and delete in MIGRATE/SAVE_MIGRATE give both hosts
        their capacity back and cancel the VM on both (issue 9: the previous
        host kept it)."""
        core = await Core.make(self)
        await core.setup_net()
        hosts = [await core.host("h0"), await core.host("h1")]
        for lcm in (MIGRATE, SAVE_MIGRATE):
            for event in ("finalize", "resubmit", "delete"):
                vm = await self._vm_in(core, hosts, ACTIVE, lcm)
                before = len(core.vmmd.calls)
                await core.lcm.trigger(vm, event)
                self.assertEqual([h.share.running_vms for h in hosts], [0, 0], (lcm, event))
                self.assertTrue(all(h.etime for h in vm.history), (lcm, event))
                core.vmmd.last("cancel").succeed()  # on h1
                core.tmd.last("transfer").succeed()
                cancels = [c for c in core.vmmd.calls[before:] if c.method == "cancel"]
                self.assertEqual([c.args[0].host for c in cancels], ["h1", "h0"], (lcm, event))
                cancels[-1].succeed()
                core.tmd.last("transfer").succeed()
                await core.settle()
                want = {"finalize": DONE, "delete": DONE, "resubmit": PENDING}[event]
                self.assertEqual(vm.state, want, (lcm, event))

    async def test_refused_action_changes_nothing(self):
        core = await Core.make(self)
        vm = await core.dm.allocate(core.admin, "NAME = a\nCPU = 1\nMEMORY = 1\n")
        body = vm.info()
        for name in ("shutdown", "terminate", "cancel", "release"):
            with self.assertRaises(ActionError):
                await core.dm.action(vm, name)
        self.assertEqual(vm.info(), body)
        self.assertEqual(vm.state, PENDING)


class PathTests(unittest.TestCase):
    """Whole paths through the machine with their bookkeeping."""

    async def _running(self, core, host):
        vm = await core.dm.allocate(core.admin, VM_TEMPLATE)
        await core.dm.deploy(vm, host)
        self.assertEqual((vm.state, vm.lcm_state), (ACTIVE, PROLOG))
        prolog = core.tmd.last("transfer")
        script = open(prolog.args[0]).read().splitlines()
        self.assertEqual(script[0].split()[0:2], ["CLONE", "tm_fake"])
        self.assertTrue(script[0].endswith(f"h0:{core.nebula.remote_vm_dir(vm.oid)}/disk.0"))
        self.assertEqual(script[1].split()[:3], ["MKSWAP", "tm_fake", "64"])
        core.clock.advance(5)
        prolog.succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, BOOT)
        core.clock.advance(5)
        core.vmmd.last("deploy").succeed("dep-x")
        await core.settle()
        self.assertEqual((vm.state, vm.lcm_state), (ACTIVE, RUNNING))
        return vm

    async def test_happy_path(self):
        core = await Core.make(self)
        await core.setup_net()
        host = await core.host("h0")
        vm = await self._running(core, host)
        vnet = core.nebula.vnpool.get(0)
        nic = vm.template.get_vector("NIC")
        self.assertEqual(nic["IP"], "10.0.0.1")
        self.assertEqual(nic["MAC"], "02:00:0a:00:00:01")
        self.assertTrue(vnet.leases[0x0A000001].used)
        self.assertEqual((host.share.cpu_usage, host.share.mem_usage, host.share.running_vms),
                         (50, 128 * 1024, 1))
        h = vm.last_history
        self.assertEqual((h.pstime, h.petime, h.rstime), (1_700_000_000, 1_700_000_005,
                                                          1_700_000_010))
        self.assertEqual(vm.deploy_id, "dep-x")
        await core.dm.action(vm, "shutdown")
        self.assertEqual(vm.lcm_state, SHUTDOWN)
        core.vmmd.last("shutdown").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, EPILOG)
        epilog = open(core.tmd.last("transfer").args[0]).read()
        self.assertTrue(epilog.startswith("DELETE tm_fake h0:"))
        core.tmd.last("transfer").succeed()
        await core.settle()
        self.assertEqual((vm.state, vm.lcm_state), (DONE, LCM_INIT))
        self.assertEqual((host.share.cpu_usage, host.share.mem_usage, host.share.running_vms),
                         (0, 0, 0))
        self.assertNotIn(0x0A000001, vnet.leases)
        self.assertEqual((h.reason, bool(h.etime), bool(h.retime), bool(h.eetime)),
                         (REASON_NONE, True, True, True))
        # Everything survives a reload from the database.
        again = Nebula(core.nebula.config, core.clock, core.dir,
                       Database(reactor, "sqlite", path=os.path.join(core.dir, "one.db")))
        await again.open()
        self.addCleanup(again.close)
        self.assertEqual(again.vmpool.get(vm.oid).info(), vm.info())
        self.assertEqual(again.hostpool.get(host.oid).info(), host.info())
        self.assertEqual(again.vnpool.get(0).info(), vnet.info())

    async def test_deploy_failure(self):
        core = await Core.make(self)
        await core.setup_net()
        host = await core.host("h0")
        vm = await core.dm.allocate(core.admin, VM_TEMPLATE)
        await core.dm.deploy(vm, host)
        core.tmd.last("transfer").succeed()
        await core.settle()
        core.vmmd.last("deploy").fail("no hypervisor")
        await core.settle()
        self.assertEqual((vm.state, vm.lcm_state), (FAILED, LCM_INIT))
        self.assertEqual(vm.last_history.reason, REASON_ERROR)
        self.assertEqual(host.share.running_vms, 0)
        self.assertEqual(core.nebula.vnpool.get(0).used_leases, 1,
                         "a FAILED VM keeps its lease until it is finalized (3.4)")
        log = open(os.path.join(core.nebula.vm_dir(vm.oid), "vm.log")).read()
        self.assertIn("no hypervisor", log)
        await core.dm.action(vm, "delete")
        self.assertEqual(vm.state, DONE)
        self.assertEqual(core.nebula.vnpool.get(0).used_leases, 0)

    async def test_late_reply_is_ignored(self):
        core = await Core.make(self)
        host = await core.host("h0")
        vm = await core.dm.allocate(core.admin, "NAME = a\nCPU = 1\nMEMORY = 1\n")
        await core.dm.deploy(vm, host)
        await core.dm.action(vm, "finalize")
        self.assertEqual((vm.state, vm.lcm_state), (ACTIVE, CLEANUP))
        core.tmd.last("transfer").succeed()  # the clean-up's DELETE
        await core.settle()
        self.assertEqual(vm.state, DONE)
        core.tmd.calls[0].succeed()  # the prolog answers after the VM is gone
        await core.settle()
        self.assertEqual((vm.state, vm.lcm_state), (DONE, LCM_INIT))
        self.assertEqual(host.share.running_vms, 0)

    async def test_live_migration(self):
        core = await Core.make(self)
        await core.setup_net()
        h0, h1 = await core.host("h0"), await core.host("h1")
        vm = await self._running(core, h0)
        await core.dm.migrate(vm, h1, live=True)
        self.assertEqual(vm.lcm_state, MIGRATE)
        self.assertEqual((h0.share.running_vms, h1.share.running_vms), (1, 1))
        action = core.vmmd.last("migrate").args[0]
        self.assertEqual((action.host, action.migr_host), ("h0", "h1"))
        core.vmmd.last("migrate").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING)
        self.assertEqual((h0.share.running_vms, h1.share.running_vms), (0, 1))
        self.assertEqual([h.hostname for h in vm.history], ["h0", "h1"])
        self.assertEqual(vm.history[0].reason, REASON_USER)
        # a failed one goes back to h1 in a new record
        await core.dm.migrate(vm, h0, live=True)
        core.vmmd.last("migrate").fail("nope")
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING)
        self.assertEqual([h.hostname for h in vm.history], ["h0", "h1", "h0", "h1"])
        self.assertEqual(vm.history[2].reason, REASON_ERROR)
        self.assertEqual((h0.share.running_vms, h1.share.running_vms), (0, 1))

    async def test_live_migration_unshared(self):
        """Between hosts whose TM is not shared (tm_ssh): premigrate copies the
        VM directory, the driver is told MIGR_SHARED=NO, postmigrate removes
        the old copy; a failed migration deletes the new copy instead."""
        core = await Core.make(self)
        core.tmd.shared = False
        await core.setup_net()
        h0, h1 = await core.host("h0"), await core.host("h1")
        vm = await self._running(core, h0)
        vm_dir = core.nebula.remote_vm_dir(vm.oid)

        def script():
            return open(core.tmd.last("transfer").args[0]).read().split()

        await core.dm.migrate(vm, h1, live=True)
        self.assertEqual(vm.lcm_state, MIGRATE)
        self.assertEqual(script(), ["PREMIGRATE", "tm_fake", f"h0:{vm_dir}", f"h1:{vm_dir}"])
        self.assertEqual(core.vmmd.pending("migrate"), [])  # not before the copy
        core.tmd.last("transfer").succeed()
        await core.settle()
        action = core.vmmd.last("migrate").args[0]
        self.assertEqual((action.host, action.migr_host, action.migr_shared),
                         ("h0", "h1", "NO"))
        core.vmmd.last("migrate").succeed()
        self.assertEqual(script(), ["POSTMIGRATE", "tm_fake", f"h0:{vm_dir}", f"h1:{vm_dir}"])
        self.assertEqual(vm.lcm_state, MIGRATE)  # until the old copy is gone
        core.tmd.last("transfer").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING)
        self.assertEqual([h.hostname for h in vm.history], ["h0", "h1"])
        # failure: the copy on the target goes, the VM stays on h1
        await core.dm.migrate(vm, h0, live=True)
        core.tmd.last("transfer").succeed()
        await core.settle()
        core.vmmd.last("migrate").fail("Unsafe migration")
        self.assertEqual(script(), ["DELETE", "tm_fake", f"h0:{vm_dir}"])
        core.tmd.last("transfer").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING)
        self.assertEqual([h.hostname for h in vm.history], ["h0", "h1", "h0", "h1"])
        self.assertIn("Unsafe migration", open(os.path.join(core.nebula.vm_dir(vm.oid),
                                                            "vm.log")).read())
        # a failed copy never reaches the hypervisor
        await core.dm.migrate(vm, h0, live=True)
        migrations = len(core.vmmd.calls)
        core.tmd.last("transfer").fail("scp: No space left on device")
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING)
        self.assertEqual(len(core.vmmd.calls), migrations)
        # shared TMs (the default) migrate without a copy, MIGR_SHARED=YES
        core.tmd.shared = True
        transfers = len(core.tmd.pending())
        await core.dm.migrate(vm, h0, live=True)
        self.assertEqual(core.vmmd.last("migrate").args[0].migr_shared, "YES")
        self.assertEqual(len(core.tmd.pending()), transfers)

    async def test_cold_migration(self):
        core = await Core.make(self)
        await core.setup_net()
        h0, h1 = await core.host("h0"), await core.host("h1")
        vm = await self._running(core, h0)
        await core.dm.migrate(vm, h1, live=False)
        self.assertEqual(vm.lcm_state, SAVE_MIGRATE)
        self.assertEqual(core.vmmd.last("save").args[0].host, "h0")
        core.vmmd.last("save").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, PROLOG_MIGRATE)
        mv = open(core.tmd.last("transfer").args[0]).read().split()
        self.assertEqual(mv[0], "MV")
        self.assertTrue(mv[2].startswith("h0:") and mv[3].startswith("h1:"))
        core.tmd.last("transfer").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, BOOT)
        core.vmmd.last("restore").succeed("dep-y")
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING)
        self.assertEqual((h0.share.running_vms, h1.share.running_vms), (0, 1))
        with self.assertRaises(ActionError):
            await core.dm.migrate(vm, h1, live=False)

    async def test_poll(self):
        core = await Core.make(self)
        await core.setup_net()
        host = await core.host("h0")
        vm = await self._running(core, host)
        core.nebula.config.template.set("VM_POLLING_INTERVAL", "10")
        await core.poll("STATE=d USEDCPU=3 USEDMEMORY=1024 NETRX=5 NETTX=6 X=1")
        self.assertEqual(vm.lcm_state, 16)  # UNKNOWN
        self.assertEqual((vm.cpu, vm.memory, vm.net_rx, vm.net_tx), (3, 1024, 5, 6))
        self.assertEqual(vm.template.get_str("X"), "1")
        await core.poll("STATE=a")
        self.assertEqual(vm.lcm_state, RUNNING)


class MoreActionTests(unittest.TestCase):
    """stop/suspend/resume, resubmit, reboot, restart and polling results."""

    _running = PathTests._running

    async def test_stop_and_resume(self):
        core = await Core.make(self)
        await core.setup_net()
        h0, h1 = await core.host("h0"), await core.host("h1")
        vm = await self._running(core, h0)
        await core.dm.action(vm, "stop")
        self.assertEqual(vm.lcm_state, SAVE_STOP)
        self.assertEqual(core.vmmd.last("save").args[0].checkpoint_file,
                         f"{core.nebula.remote_vm_dir(vm.oid)}/checkpoint")
        core.vmmd.last("save").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, EPILOG_STOP)
        mv = open(core.tmd.last("transfer").args[0]).read().split()
        self.assertEqual(mv[0], "MV")
        self.assertTrue(mv[2].startswith("h0:") and mv[3].endswith(f"/{vm.oid}/images"))
        core.tmd.last("transfer").succeed()
        await core.settle()
        self.assertEqual((vm.state, h0.share.running_vms), (STOPPED, 0))
        self.assertEqual(vm.last_history.reason, REASON_STOP_RESUME)
        self.assertEqual(core.nebula.vnpool.get(0).used_leases, 1, "a stopped VM keeps its IP")
        await core.dm.action(vm, "resume")
        self.assertEqual(vm.state, PENDING)
        await core.dm.deploy(vm, h1)
        self.assertEqual(vm.lcm_state, PROLOG_RESUME)
        mv = open(core.tmd.last("transfer").args[0]).read().split()
        self.assertTrue(mv[2].endswith(f"/{vm.oid}/images") and mv[3].startswith("h1:"))
        core.tmd.last("transfer").succeed()
        await core.settle()
        self.assertEqual(vm.lcm_state, BOOT)
        core.vmmd.last("restore").succeed("dep-r")
        await core.settle()
        self.assertEqual((vm.state, vm.lcm_state, vm.deploy_id), (ACTIVE, RUNNING, "dep-r"))
        self.assertEqual([h.hostname for h in vm.history], ["h0", "h1"])

    async def test_suspend_and_resume(self):
        core = await Core.make(self)
        await core.setup_net()
        h0 = await core.host("h0")
        vm = await self._running(core, h0)
        await core.dm.action(vm, "suspend")
        self.assertEqual(vm.lcm_state, SAVE_SUSPEND)
        core.vmmd.last("save").succeed()
        await core.settle()
        self.assertEqual((vm.state, h0.share.running_vms), (SUSPENDED, 1),
                         "a suspended VM keeps its host")
        await core.dm.action(vm, "resume")
        self.assertEqual((vm.state, vm.lcm_state), (ACTIVE, BOOT))
        self.assertEqual(core.vmmd.last("restore").args[0].host, "h0")
        core.vmmd.last("restore").succeed("dep-s")
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING)
        await core.dm.action(vm, "suspend")
        core.vmmd.last("save").fail("disk full")
        await core.settle()
        self.assertEqual(vm.lcm_state, RUNNING, "a failed save leaves it running")

    async def test_resubmit_active_keeps_lease_and_ignores_stale_replies(self):
        core = await Core.make(self)
        await core.setup_net()
        h0 = await core.host("h0")
        vm = await core.dm.allocate(core.admin, VM_TEMPLATE)
        ip = vm.template.get_vector("NIC")["IP"]
        await core.dm.deploy(vm, h0)
        stale_prolog = core.tmd.last("transfer")
        await core.dm.action(vm, "resubmit")
        self.assertEqual((vm.state, vm.lcm_state), (ACTIVE, CLEANUP))
        self.assertEqual(h0.share.running_vms, 0)
        core.tmd.last("transfer").succeed()  # the clean-up's DELETE
        await core.settle()
        self.assertEqual(vm.state, PENDING)
        await core.dm.deploy(vm, h0)
        self.assertEqual(vm.lcm_state, PROLOG)
        stale_prolog.succeed()  # the first placement's prolog answers late
        await core.settle()
        self.assertEqual(vm.lcm_state, PROLOG, "a reply from an earlier placement is ignored")
        self.assertEqual(vm.template.get_vector("NIC")["IP"], ip)
        self.assertEqual(core.nebula.vnpool.get(0).used_leases, 1)
        self.assertEqual([h.reason for h in vm.history], [REASON_USER, REASON_NONE])

    async def test_resubmit_failed(self):
        core = await Core.make(self)
        await core.setup_net()
        h0 = await core.host("h0")
        vm = await core.dm.allocate(core.admin, VM_TEMPLATE)
        await core.dm.deploy(vm, h0)
        core.tmd.last("transfer").fail("no space")
        await core.settle()
        self.assertEqual(vm.state, FAILED)
        await core.dm.action(vm, "resubmit")
        self.assertEqual(vm.state, PENDING)
        # the domain is cancelled on the last host (nothing may be left there),
        # then the files are deleted, even when the cancel fails
        cancel = core.vmmd.last("cancel")
        self.assertEqual(cancel.args[0].host, "h0")
        self.assertEqual(len(core.tmd.calls), 1)
        cancel.fail("Domain not found")
        self.assertIn("DELETE", open(core.tmd.last("transfer").args[0]).read())
        self.assertIn("cancel: Domain not found",
                      open(os.path.join(core.nebula.vm_dir(vm.oid), "vm.log")).read())
        self.assertEqual(core.nebula.vnpool.get(0).used_leases, 1)
        with self.assertRaises(ActionError):
            await core.dm.action(vm, "suspend")

    async def test_reboot_restart_and_poll_paused(self):
        core = await Core.make(self)
        await core.setup_net()
        h0 = await core.host("h0")
        vm = await self._running(core, h0)
        await core.dm.action(vm, "reboot")
        self.assertEqual(vm.lcm_state, RUNNING)
        core.vmmd.last("reboot").succeed()
        with self.assertRaises(ActionError):
            await core.dm.action(vm, "restart")  # only from BOOT or UNKNOWN
        core.nebula.config.template.set("VM_POLLING_INTERVAL", "10")
        await core.poll("STATE=d")
        self.assertEqual(vm.lcm_state, UNKNOWN)
        deploys = len([c for c in core.vmmd.calls if c.method == "deploy"])
        await core.dm.action(vm, "restart")
        self.assertEqual(vm.lcm_state, BOOT)
        self.assertEqual(len([c for c in core.vmmd.calls if c.method == "deploy"]), deploys + 1)
        core.vmmd.last("deploy").succeed("dep-again")
        await core.settle()
        await core.poll("STATE=p")
        self.assertEqual((vm.state, h0.share.running_vms), (SUSPENDED, 1))
        await core.dm.action(vm, "delete")
        self.assertEqual((vm.state, h0.share.running_vms), (DONE, 0))
        self.assertEqual(core.nebula.vnpool.get(0).used_leases, 0)


class TransferScriptTests(unittest.TestCase):
    """The prolog and epilog scripts for every DISK type, in the 3.4 line format."""

    async def test_disk_types(self):
        core = await Core.make(self)
        h0 = await core.host("h0")
        vm = await core.dm.allocate(core.admin, """NAME = disks
CPU = 0.1
MEMORY = 16
DISK = [ SOURCE = "/img/os.img", TARGET = hda, BUS = virtio ]
DISK = [ SOURCE = "/img/shared.img", CLONE = no, READONLY = yes ]
DISK = [ TYPE = swap, SIZE = 512 ]
DISK = [ TYPE = fs, SIZE = 1024, FORMAT = ext3 ]
DISK = [ TYPE = block, SOURCE = /dev/sdb ]
DISK = [ TYPE = cdrom, SOURCE = "/img/boot.iso" ]
DISK = [ SOURCE = "/img/data.img", SAVE = yes ]
""")
        await core.dm.deploy(vm, h0)
        d = f"h0:{core.nebula.remote_vm_dir(vm.oid)}"
        fe = core.tm.frontend
        lines = [line for line in open(core.tmd.last("transfer").args[0]).read().splitlines()
                 if not line.startswith("CONTEXT")]
        self.assertEqual(lines, [
            f"CLONE tm_fake {fe}:/img/os.img {d}/disk.0",
            f"LN tm_fake {fe}:/img/shared.img {d}/disk.1",
            f"MKSWAP tm_fake 512 {d}/disk.2",
            f"MKIMAGE tm_fake 1024 ext3 {d}/disk.3",
            f"LN tm_fake {fe}:/dev/sdb {d}/disk.4",
            f"CLONE tm_fake {fe}:/img/boot.iso {d}/disk.5",
            f"CLONE tm_fake {fe}:/img/data.img {d}/disk.6",
        ])
        vm_dir = core.nebula.vm_dir(vm.oid)
        self.assertTrue(os.path.exists(os.path.join(vm_dir, "transfer.0.prolog")))
        self.assertIn("<TARGET><![CDATA[hda]]></TARGET>",
                      open(os.path.join(vm_dir, "vm.xml")).read())
        self.assertEqual(core.tm.epilog_lines(vm), [
            f"MVDS tm_fake {d}/disk.6 /img/data.img",
            f"DELETE tm_fake {d}",
        ])
