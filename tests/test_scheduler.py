"""The scheduler at scale (nebtwist.core.scheduler): grouped matching places
VMs exactly as the plain per-VM scan of OpenNebula 3.4's algorithm does,
capacity is counted once from the cycle's snapshot, a cycle yields to the
reactor and skips what changed meanwhile, and it reports its figures.

The placements run on the fake drivers and a real SQLite database
(``tests.test_lcm.Core``)."""

import itertools
import math
import random

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from nebtwist.core.acl import parse_rule
from nebtwist.core.objects import (HOLD, HOST_DISABLED, HOST_ERROR, HOST_INIT, HOST_MONITORED,
                                   HOST_MONITORING, PENDING, parse_xml)
from nebtwist.core.scheduler import Scheduler, host_lookup
from nebtwist.expr import compile_rank
from nebtwist.log import format_oned_line

from tests.test_lcm import Core

GB = 1024 * 1024  # KB

POLICY_RANKS = {0: "RUNNING_VMS", 1: "- RUNNING_VMS", 2: "FREE_CPU"}


def plain_placements(nebula):
    """``{vid: hid}`` the plain algorithm gives for the pools as they are now.

    Reference 5.4, written as directly as possible: every considered VM (id
    order, at most MAX_VM, until MAX_DISPATCH) scans every host (STATE < 3,
    pool order) and takes the best-ranked one (first on ties) that passes
    REQUIREMENTS, the monitored FREE_CPU (rounded up to a whole 100 at >= 90%
    of MAX_CPU) and FREE_MEM, MAX - USAGE less what this cycle placed there,
    and MAX_HOST. Nothing is grouped or cached.
    """
    config = nebula.config
    max_vm, max_dispatch, max_host = (config.get_int(k) for k in
                                      ("MAX_VM", "MAX_DISPATCH", "MAX_HOST"))
    policy = int(config.vector("DEFAULT_SCHED").get("POLICY", 1))
    default_rank = compile_rank(POLICY_RANKS[policy])
    hosts = [h for h in nebula.hostpool.objects.values() if h.state < HOST_ERROR]
    lookups = {h.oid: host_lookup(h) for h in hosts}
    used_cpu = {h.oid: h.share.cpu_usage for h in hosts}
    used_mem = {h.oid: h.share.mem_usage for h in hosts}
    count = dict.fromkeys(lookups, 0)
    vms = sorted((vm for vm in nebula.vmpool.objects.values() if vm.state == PENDING),
                 key=lambda vm: vm.oid)[:max_vm]
    placed = {}
    for vm in vms:
        if len(placed) >= max_dispatch:
            break
        cpu, mem, _ = vm.capacity()
        rank = vm.rank or default_rank
        best = best_rank = None
        for h in hosts:
            share = h.share
            free_cpu = share.free_cpu
            if share.max_cpu and free_cpu >= 0.9 * share.max_cpu:
                free_cpu = math.ceil(free_cpu / 100) * 100
            if count[h.oid] >= max_host or cpu > free_cpu or mem > share.free_mem:
                continue
            if share.max_cpu - used_cpu[h.oid] < cpu or share.max_mem - used_mem[h.oid] < mem:
                continue
            if vm.requirements is not None and not vm.requirements(lookups[h.oid]):
                continue
            r = int(rank(lookups[h.oid]))
            if best is None or r > best_rank:
                best, best_rank = h, r
        if best is not None:
            placed[vm.oid] = best.oid
            used_cpu[best.oid] += cpu
            used_mem[best.oid] += mem
            count[best.oid] += 1
    return placed


def placements(vms):
    return {vm.oid: vm.last_history.hid for vm in vms if vm.history}


def counting_timer():
    """A timer that moves one second per reading: with any slice below 1 s
    the cycle yields at every point where it may."""
    ticks = iter(range(10 ** 9))
    return lambda: float(next(ticks))


class TurnClock(Clock):
    """A Clock whose :meth:`turn` runs only the calls already due, as one turn
    of a reactor does: a zero-delay call made meanwhile waits for the next
    turn (``Clock.advance(0)`` would run it at once)."""

    def turn(self):
        due = [c for c in self.calls if c.getTime() <= self.seconds()]
        for call in due:
            self.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


def turn_clock(core):
    """Give the core a :class:`TurnClock` at the same time; returns it."""
    clock = TurnClock()
    clock.advance(core.clock.seconds())
    core.nebula.clock = clock
    return clock


async def run_to_end(clock, d, limit=1000):
    """Turn ``clock`` until the cycle ``d`` has done its work; its result."""
    for _ in range(limit):
        if d.called or not clock.calls:
            break
        clock.turn()
    return await d


class GroupedMatchingTests(unittest.TestCase):
    """Groups of equal VMs share one ranked host list, with the plain scan's result."""

    async def _random_case(self, seed):
        rng = random.Random(seed)
        core = await Core.make(self)
        config = core.nebula.config.template
        config.set("MAX_VM", str(rng.choice([4, 100])))
        config.set("MAX_DISPATCH", str(rng.choice([3, 100])))
        config.set("MAX_HOST", str(rng.choice([1, 2, 3, 100])))
        config.set("DEFAULT_SCHED", {"POLICY": str(rng.choice([0, 1, 2]))})
        for i in range(rng.randint(1, 7)):
            h = await core.host(f"host{i}")
            s = h.share
            s.max_cpu = rng.choice([400, 800])
            s.free_cpu = rng.choice([s.max_cpu, int(s.max_cpu * 0.93), 300, 0])
            s.max_mem = rng.choice([2 * GB, 8 * GB])
            s.free_mem = rng.choice([s.max_mem, GB])
            s.cpu_usage = rng.choice([0, 100, 350])
            s.mem_usage = rng.choice([0, GB])
            s.running_vms = rng.randint(0, 5)
            h.template.set("HYPERVISOR", rng.choice(["kvm", "xen"]))
            h.template.set("RACK", str(rng.randint(1, 3)))
            h.state = rng.choice([HOST_MONITORED] * 4 + [HOST_INIT, HOST_MONITORING,
                                                         HOST_ERROR, HOST_DISABLED])
        vms = []
        for _ in range(rng.randint(5, 30)):
            text = (f"CPU = {rng.choice(['0.1', '0.5', '1', '2.5'])}\n"
                    f"MEMORY = {rng.choice([64, 512, 1024])}\n")
            req = rng.choice([None, 'HYPERVISOR = \\"kvm\\"', "RACK > 1",
                              'FREE_CPU > 250 | HYPERVISOR = \\"xen\\"'])
            if req:
                text += f'REQUIREMENTS = "{req}"\n'
            rank = rng.choice([None, None, "FREE_CPU", "- RUNNING_VMS", "RACK * 10 - ID",
                               "FREE_MEM / 3"])
            if rank:
                text += f'RANK = "{rank}"\n'
            vms.append(await core.dm.allocate(core.admin, text))
        held = rng.sample(vms, 2)
        for vm in held:
            await core.dm.action(vm, "hold")
        return core, vms, held

    async def test_same_placements_as_the_plain_scan(self):
        groups_seen = 0
        for seed in range(16):
            core, vms, held = await self._random_case(seed)
            expected = plain_placements(core.nebula)
            sched = Scheduler(core.nebula, core.dm)
            n = await sched.cycle()
            self.assertEqual(placements(vms), expected, f"seed {seed}")
            self.assertEqual(n, len(expected), f"seed {seed}")
            groups_seen += sched.last_cycle["groups"] if n else 0
            self.assertEqual([vm.state for vm in held], [HOLD, HOLD], f"seed {seed}")
        self.assertGreater(groups_seen, 16, "the cases must mix several groups")

    async def test_one_group_for_equal_vms(self):
        core = await Core.make(self)
        for i in range(3):
            (await core.host(f"host{i}")).state = HOST_MONITORED
        core.nebula.config.template.set("MAX_HOST", "10")
        core.nebula.config.template.set("MAX_DISPATCH", "100")
        for text in ["CPU = 0.1\nMEMORY = 64\n"] * 5 + ["CPU = 0.5\nMEMORY = 64\n"] * 2 + [
                'CPU = 0.1\nMEMORY = 64\nREQUIREMENTS = "ID > 0"\n'] * 2:
            await core.dm.allocate(core.admin, text)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        sched = Scheduler(core.nebula, core.dm)
        self.assertEqual(await sched.cycle(), 9)
        figures = sched.last_cycle
        self.assertEqual((figures["pending"], figures["considered"], figures["hosts"],
                          figures["groups"], figures["dispatched"]), (9, 9, 3, 3, 9))
        for key in ("decide", "deploy", "wall", "slice"):
            self.assertGreaterEqual(figures[key], 0.0, key)
        self.assertGreaterEqual(figures["wall"], figures["decide"])
        lines = [format_oned_line(e) for e in events if e.get("one_module") == "SCHED"]
        cycle = [line for line in lines if "Cycle 1:" in line]
        self.assertEqual(len(cycle), 1, lines)
        self.assertIn("[SCHED][I]: Cycle 1: 9 pending VMs (9 considered), 3 hosts, 3 groups: "
                      "9 dispatched; decisions ", cycle[0])
        self.assertEqual(sum("dispatched to host" in line for line in lines), 9)
        self.assertEqual(await sched.cycle(), 0)
        self.assertEqual(sched.last_cycle["n"], 1, "a cycle with nothing pending is not logged")


class CapacityTests(unittest.TestCase):
    """What a cycle counts: its own placements once, the monitored FREE_* as read."""

    async def _one_host(self, free_cpu=800):
        core = await Core.make(self)
        host = await core.host("host0")
        host.state = HOST_MONITORED
        host.share.free_cpu = free_cpu
        core.nebula.config.template.set("MAX_HOST", "20")
        core.nebula.config.template.set("MAX_DISPATCH", "100")
        return core, host

    async def test_placements_counted_once(self):
        # The LifeCycleManager adds each deployed VM to HOST_SHARE at once;
        # the cycle counts from its snapshot, so 8 x CPU=1 fill an 800 host.
        core, host = await self._one_host()
        vms = [await core.dm.allocate(core.admin, "CPU = 1\nMEMORY = 64\n") for _ in range(10)]
        sched = Scheduler(core.nebula, core.dm)
        self.assertEqual(await sched.cycle(), 8)
        self.assertEqual(host.share.cpu_usage, 800)
        self.assertEqual(host.share.running_vms, 8)
        self.assertEqual([vm.state for vm in vms[8:]], [PENDING, PENDING])
        self.assertEqual(await sched.cycle(), 0, "the host is full")

    async def test_free_cpu_is_the_monitored_value(self):
        # 3.4 matches against FREE_CPU as monitored; placing VMs in the
        # cycle changes only the usage (HostXML::add_capacity).
        core, _ = await self._one_host(free_cpu=250)
        for _ in range(4):
            await core.dm.allocate(core.admin, "CPU = 1\nMEMORY = 64\n")
        big = await core.dm.allocate(core.admin, "CPU = 3\nMEMORY = 64\n")
        self.assertEqual(await Scheduler(core.nebula, core.dm).cycle(), 4)
        self.assertEqual(big.state, PENDING, "300 > FREE_CPU 250")

    async def test_free_cpu_rounded_up_near_max(self):
        core, host = await self._one_host(free_cpu=725)  # >= 90% of 800: counts as 800
        vm = await core.dm.allocate(core.admin, "CPU = 7.5\nMEMORY = 64\n")
        await Scheduler(core.nebula, core.dm).cycle()
        self.assertEqual(vm.last_history.hid, host.oid)
        host.share.free_cpu = 700  # below 90%: as monitored
        host.share.cpu_usage = 0
        vm2 = await core.dm.allocate(core.admin, "CPU = 7.5\nMEMORY = 64\n")
        await Scheduler(core.nebula, core.dm).cycle()
        self.assertEqual(vm2.state, PENDING)


class YieldTests(unittest.TestCase):
    """A cycle lets the reactor run between slices of work."""

    async def _core(self, hosts=2, vms=6):
        core = await Core.make(self)
        hs = []
        for i in range(hosts):
            h = await core.host(f"host{i}")
            h.state = HOST_MONITORED
            hs.append(h)
        core.nebula.config.template.set("MAX_HOST", "10")
        core.nebula.config.template.set("MAX_DISPATCH", "100")
        vs = [await core.dm.allocate(core.admin, "CPU = 0.1\nMEMORY = 64\n")
              for _ in range(vms)]
        return core, hs, vs

    async def test_cycle_yields_between_slices(self):
        core, _, vms = await self._core()
        clock = turn_clock(core)
        sched = Scheduler(core.nebula, core.dm, slice=0.5, timer=counting_timer())
        d = sched.cycle()

        def placed():
            return sum(vm.state != PENDING for vm in vms)

        steps = [placed()]
        self.assertFalse(d.called, "the cycle waits for the reactor")
        for _ in range(20):
            clock.turn()  # the reactor runs the cycle's next slice
            steps.append(placed())
            if steps[-1] == len(vms):
                break
        self.assertEqual(steps[-1], len(vms))
        self.assertTrue(all(b - a <= 1 for a, b in itertools.pairwise(steps)),
                        f"one deploy per slice here: {steps}")
        self.assertEqual(await run_to_end(clock, d), len(vms))
        self.assertGreaterEqual(sched.last_cycle["yields"], len(vms))

    async def test_slow_work_on_a_test_clock_does_not_pause(self):
        """Slices are measured on the clock the pause waits on: with a Clock
        nobody advances, slow work (in wall time) must not pause the cycle
        forever (it did when slices were measured with time.perf_counter)."""
        import time as wall

        core, _, vms = await self._core()
        deploy = core.dm.deploy

        async def slow_deploy(vm, host):
            wall.sleep(0.03)  # longer than the 0.02 s slice, in wall time
            await deploy(vm, host)

        core.dm.deploy = slow_deploy
        sched = Scheduler(core.nebula, core.dm)
        self.assertEqual(await sched.cycle(), len(vms))

    test_slow_work_on_a_test_clock_does_not_pause.timeout = 20

    async def test_no_yield_within_a_slice(self):
        core, _, vms = await self._core()
        d = Scheduler(core.nebula, core.dm, slice=3600).cycle()
        self.assertTrue(all(vm.state != PENDING for vm in vms), "all in one slice")
        self.assertEqual(await d, len(vms))

    async def test_changes_during_a_yield(self):
        core, (h0, h1), vms = await self._core(vms=3)
        clock = turn_clock(core)
        sched = Scheduler(core.nebula, core.dm, slice=0.5, timer=counting_timer())
        d = sched.cycle()
        self.assertEqual([vm.state for vm in vms], [PENDING] * 3, "yields before the first")
        held = defer.ensureDeferred(core.dm.action(vms[1], "hold"))
        h0.state = HOST_DISABLED  # the best host (lowest id) goes away
        self.assertEqual(await run_to_end(clock, d), 2)
        await held
        self.assertEqual(placements(vms), {vms[0].oid: h1.oid, vms[2].oid: h1.oid})
        self.assertEqual(vms[1].state, HOLD)

    async def test_stop_ends_a_running_cycle(self):
        core, _, vms = await self._core()
        clock = turn_clock(core)
        sched = Scheduler(core.nebula, core.dm, slice=0.5, timer=counting_timer())
        d = sched.cycle()
        clock.turn()
        clock.turn()
        sched.stop()
        n = await run_to_end(clock, d)
        self.assertEqual(n, sum(vm.state != PENDING for vm in vms))
        self.assertLess(n, len(vms))


class InflightTests(unittest.TestCase):
    """Deploys waiting for their commit are bounded (``max_inflight``)."""

    async def test_waits_for_commits(self):
        core = await Core.make(self)
        (await core.host("host0")).state = HOST_MONITORED
        core.nebula.config.template.set("MAX_HOST", "100")
        core.nebula.config.template.set("MAX_DISPATCH", "100")
        vms = [await core.dm.allocate(core.admin, "CPU = 0.1\nMEMORY = 64\n")
               for _ in range(7)]
        commits = []
        real = core.nebula.vmpool.update

        def update(vm, ops=()):
            d = real(vm, ops)
            commits.append(d)
            return d

        core.nebula.vmpool.update = update
        sched = Scheduler(core.nebula, core.dm, slice=3600, max_inflight=3)
        d = sched.cycle()
        self.assertEqual(sum(vm.state != PENDING for vm in vms), 3,
                         "three deploys wait for their commit, the fourth waits for room")
        self.assertEqual(await d, 7)
        self.assertTrue(all(c.called for c in commits))
        self.assertGreaterEqual(sched.last_cycle["yields"], 2)


class AclTests(unittest.TestCase):
    """An owner outside the oneadmin user and group needs MANAGE on the host
    (3.4 ``Scheduler::match``; the bootstrap rule ``@1 HOST/* MANAGE`` gives
    it to the users group)."""

    async def _core(self):
        core = await Core.make(self)
        hosts = []
        for i in range(2):
            h = await core.host(f"host{i}")
            h.state = HOST_MONITORED
            hosts.append(h)
        core.nebula.config.template.set("MAX_HOST", "10")
        uid = await core.requests.user_allocate(core.admin, "helen", "pw")
        return core, hosts, core.nebula.userpool.get(uid)

    async def test_default_rule_lets_users_deploy(self):
        core, (h0, _), helen = await self._core()
        vm = await core.dm.allocate(helen, "CPU = 0.1\nMEMORY = 64\n")
        await Scheduler(core.nebula, core.dm).cycle()
        self.assertEqual(vm.last_history.hid, h0.oid)

    async def test_hosts_the_owner_may_not_manage_are_skipped(self):
        core, (h0, h1), helen = await self._core()
        await core.nebula.acl.del_rule(1)  # @1 HOST/* MANAGE
        await core.nebula.acl.add_rule(*parse_rule(f"#{helen.oid} HOST/#{h1.oid} MANAGE"))
        text = "CPU = 0.1\nMEMORY = 64\n"
        mine = [await core.dm.allocate(helen, text) for _ in range(2)]
        admins = await core.dm.allocate(core.admin, text)
        sched = Scheduler(core.nebula, core.dm)
        self.assertEqual(await sched.cycle(), 3)
        self.assertEqual([vm.last_history.hid for vm in mine], [h1.oid, h1.oid])
        self.assertEqual(admins.last_history.hid, h0.oid, "oneadmin's VMs go anywhere")
        self.assertEqual(sched.last_cycle["groups"], 2, "same template, other rules")

    async def test_no_rule_no_placement(self):
        core, _, helen = await self._core()
        await core.nebula.acl.del_rule(1)
        vm = await core.dm.allocate(helen, "CPU = 0.1\nMEMORY = 64\n")
        self.assertEqual(await Scheduler(core.nebula, core.dm).cycle(), 0)
        self.assertEqual(vm.state, PENDING)


class SchedMessageTests(unittest.TestCase):
    """Why a VM waits: OpenNebula 4.x's SCHED_MESSAGE in the VM's USER_TEMPLATE,
    written through the pool only when the reason changes, removed when the VM
    is placed."""

    async def _core(self, hosts=1):
        core = await Core.make(self)
        hs = []
        for i in range(hosts):
            h = await core.host(f"host{i}")
            h.state = HOST_MONITORED
            h.template.set("HYPERVISOR", "kvm")
            hs.append(h)
        self.writes = []
        real = core.nebula.vmpool.update

        def update(vm, ops=()):
            self.writes.append(vm.oid)
            return real(vm, ops)

        core.nebula.vmpool.update = update
        return core, hs

    async def stored(self, core, vm):
        """The VM's stored body, parsed (what a restart reads)."""
        await core.settle()
        [(body,)] = await core.nebula.db.select(f"SELECT body FROM vm_pool WHERE oid = {vm.oid}")
        return parse_xml(body)

    def message(self, vm):
        return vm.user_template.get_str("SCHED_MESSAGE")

    async def test_requirements_then_placed(self):
        core, [h0] = await self._core()
        vm = await core.dm.allocate(core.admin, 'CPU = 0.1\nMEMORY = 64\n'
                                                'REQUIREMENTS = "HYPERVISOR = \\"xen\\""\n')
        sched = Scheduler(core.nebula, core.dm)
        self.assertEqual(await sched.cycle(), 0)
        self.assertRegex(self.message(vm), r"^\w{3} \w{3} \d\d \d\d:\d\d:\d\d \d{4} : No host "
                                           r"meets the REQUIREMENTS expression$")
        body = await self.stored(core, vm)
        self.assertEqual(body.findtext("USER_TEMPLATE/SCHED_MESSAGE"), self.message(vm))
        # Unchanged: not written again, even later (the timestamp would change).
        first, n = self.message(vm), len(self.writes)
        core.clock.advance(3600)
        for _ in range(3):
            await sched.cycle()
        self.assertEqual((self.message(vm), len(self.writes)), (first, n))
        # A host that fits appears: placed, and the message goes in the deploy's commit.
        h0.template.set("HYPERVISOR", "xen")
        self.assertEqual(await sched.cycle(), 1)
        self.assertIsNone(self.message(vm))
        body = await self.stored(core, vm)
        self.assertIsNone(body.find("USER_TEMPLATE"))
        self.assertEqual(vm.last_history.hid, h0.oid)

    async def test_capacity_and_no_host(self):
        core, [h0] = await self._core()
        big = await core.dm.allocate(core.admin, "CPU = 9\nMEMORY = 64\n")
        small = await core.dm.allocate(core.admin, "CPU = 0.1\nMEMORY = 64\n")
        sched = Scheduler(core.nebula, core.dm)
        self.assertEqual(await sched.cycle(), 1)
        self.assertTrue(self.message(big).endswith(
            " : No host with enough capacity to deploy the VM"), self.message(big))
        self.assertIsNone(self.message(small))
        # Its only host fails: the reason changes, and is written once.
        h0.state = HOST_ERROR
        n = len(self.writes)
        await sched.cycle()
        await sched.cycle()
        self.assertTrue(self.message(big).endswith(
            " : No host is enabled and monitored to deploy the VM"), self.message(big))
        self.assertEqual(len(self.writes), n + 1)
        body = await self.stored(core, big)
        self.assertEqual(body.findtext("USER_TEMPLATE/SCHED_MESSAGE"), self.message(big))

    async def test_not_authorized(self):
        core, _ = await self._core()
        uid = await core.requests.user_allocate(core.admin, "helen", "pw")
        await core.nebula.acl.del_rule(1)  # @1 HOST/* MANAGE
        vm = await core.dm.allocate(core.nebula.userpool.get(uid), "CPU = 0.1\nMEMORY = 64\n")
        await Scheduler(core.nebula, core.dm).cycle()
        self.assertTrue(self.message(vm).endswith(" : User is not authorized to use any host"))

    async def test_many_waiting_vms_written_once(self):
        """2,000 VMs no host can take: one write each on the first cycle, none
        on the next ones, none after a restart of the scheduler (the reasons are
        read back from the VMs)."""
        core, _ = await self._core()
        vms = [await core.dm.allocate(core.admin, "CPU = 64\nMEMORY = 64\n")
               for _ in range(2000)]
        core.nebula.config.template.set("MAX_VM", "5000")
        sched = Scheduler(core.nebula, core.dm, max_inflight=16)
        n = len(self.writes)
        await sched.cycle()
        self.assertEqual(len(self.writes) - n, 2000)
        self.assertTrue(all(self.message(vm) for vm in vms))
        n = len(self.writes)
        await sched.cycle()
        await Scheduler(core.nebula, core.dm).cycle()
        self.assertEqual(len(self.writes), n)
