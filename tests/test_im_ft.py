"""Host monitoring's fault-tolerance states (issue 9 section 2), on a Clock with
a fake IM driver and the real pools: OpenNebula 4.x's MONITORING_ERROR and
MONITORING_INIT keep a host whose last monitoring failed, or that was never
monitored, out of the scheduler until a monitoring succeeds; the reason of an
ERROR is in the host TEMPLATE; stopping the InformationManager, and starting
it on hosts left being monitored by a killed daemon, change no host's state
and fire no hook."""

from twisted.trial import unittest

from nebtwist.core.im import InformationManager
from nebtwist.core.objects import (HOST_ERROR, HOST_INIT, HOST_MONITORED, HOST_MONITORING,
                                   HOST_MONITORING_ERROR, HOST_MONITORING_INIT)
from nebtwist.core.scheduler import Scheduler
from nebtwist.errors import DriverCrashed
from nebtwist.fakes import FakeInformationDriver

from tests.test_lcm import Core

GOOD = "HOSTNAME=h TOTALCPU=800 FREECPU=800 TOTALMEMORY=16777216 FREEMEMORY=16777216"


class MonitoringStateTests(unittest.TestCase):

    async def setup(self, hosts=("h0",)):
        self.core = core = await Core.make(self)
        core.nebula.config.template.set("HOST_MONITORING_INTERVAL", "60")
        core.nebula.config.template.set("MANAGER_TIMER", "15")
        self.drv = FakeInformationDriver("im_fake")
        self.im = InformationManager(core.nebula, {"im_fake": self.drv})
        self.changes = []
        self.im.hooks.append(lambda h, old, new: self.changes.append((h.oid, old, new)))
        self.hosts = [await core.host(name) for name in hosts]
        return self.hosts

    def reply(self, host, ok=True, message="host is down"):
        call = [c for c in self.drv.calls if c.oid == host.oid][-1]
        if ok:
            call.succeed(GOOD)
        else:
            call.fail(message)

    async def settle(self):
        await self.core.nebula.db.run([])

    async def stored_state(self, host):
        rows = await self.core.nebula.db.select(
            f"SELECT state, body FROM host_pool WHERE oid = {host.oid}")
        [(state, body)] = rows
        return state, body

    async def test_states_while_monitored(self):
        """INIT -> MONITORING_INIT; MONITORED -> MONITORING; ERROR -> MONITORING_ERROR."""
        [h] = await self.setup()
        self.im.start()
        self.addCleanup(self.im.stop)
        self.assertEqual(h.state, HOST_MONITORING_INIT)
        self.reply(h)
        await self.settle()
        self.assertEqual(h.state, HOST_MONITORED)
        self.core.clock.advance(60)
        self.assertEqual(h.state, HOST_MONITORING)
        self.reply(h, ok=False)
        await self.settle()
        self.assertEqual(h.state, HOST_ERROR)
        self.core.clock.advance(60)
        self.assertEqual(h.state, HOST_MONITORING_ERROR)
        self.assertEqual(self.drv.calls[-1].args[1], True, "update remotes after an ERROR")
        self.reply(h)
        await self.settle()
        self.assertEqual(h.state, HOST_MONITORED)

    async def test_error_reason_in_template_cleared_on_success(self):
        """4.x ``ERROR = [ MESSAGE, TIMESTAMP ]``, stored; removed by a good monitoring."""
        [h] = await self.setup()
        self.core.clock.advance(1_733_000_000)  # a plausible epoch for the TIMESTAMP
        self.im.start()
        self.addCleanup(self.im.stop)
        self.reply(h, ok=False, message="cannot reach h0 over ssh")
        await self.settle()
        error = h.template.get_vector("ERROR")
        self.assertEqual(error["MESSAGE"], "cannot reach h0 over ssh")
        self.assertRegex(error["TIMESTAMP"], r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$")
        _state, body = await self.stored_state(h)
        self.assertIn("<MESSAGE><![CDATA[cannot reach h0 over ssh]]></MESSAGE>", body)
        self.core.clock.advance(60)
        self.reply(h)
        await self.settle()
        self.assertIsNone(h.template.get("ERROR"))
        _state, body = await self.stored_state(h)
        self.assertNotIn("<ERROR>", body)

    async def test_missing_driver_says_why(self):
        [h] = await self.setup()
        h.im_mad = "im_gone"
        self.im.start()
        self.addCleanup(self.im.stop)
        await self.settle()
        self.assertEqual(h.state, HOST_ERROR)
        self.assertEqual(h.template.get_vector("ERROR")["MESSAGE"],
                         "IM driver im_gone is not loaded")

    async def test_scheduler_skips_hosts_being_monitored_after_error(self):
        """A VM pending while its only candidate is retried after an ERROR stays
        PENDING; it is placed once that monitoring succeeds."""
        [h] = await self.setup()
        self.im.start()
        self.addCleanup(self.im.stop)
        self.reply(h)
        await self.settle()
        self.core.clock.advance(60)
        self.reply(h, ok=False)
        await self.settle()
        self.core.clock.advance(60)
        self.assertEqual(h.state, HOST_MONITORING_ERROR)
        vm = await self.core.dm.allocate(self.core.admin, "CPU = 1\nMEMORY = 64\n")
        sched = Scheduler(self.core.nebula, self.core.dm)
        self.assertEqual(await sched.cycle(), 0)
        self.assertIsNone(vm.last_history)
        self.reply(h)
        await self.settle()
        self.assertEqual(await sched.cycle(), 1)
        self.assertEqual(vm.last_history.hostname, "h0")

    async def test_stop_mid_monitoring_changes_nothing(self):
        """The driver's end fails the requests in flight after stop(): dropped;
        each host is stored back in the state it was monitored from; no hook."""
        hosts = await self.setup(("h0", "h1", "h2"))
        self.im.start()
        for h in hosts:
            self.reply(h)
        await self.settle()
        self.core.clock.advance(60)
        self.reply(hosts[1], ok=False)
        await self.settle()
        self.core.clock.advance(60)
        hosts[2].state = HOST_INIT  # as after `onehost enable`
        self.im.monitor(hosts[2])
        self.assertEqual([h.state for h in hosts],
                         [HOST_MONITORING, HOST_MONITORING_ERROR, HOST_MONITORING_INIT])
        self.changes.clear()
        await self.im.stop()
        for call in self.drv.calls[-3:]:
            call.deferred.errback(DriverCrashed("driver im_fake stopped"))
        await self.settle()
        self.assertEqual([h.state for h in hosts], [HOST_MONITORED, HOST_ERROR, HOST_INIT])
        self.assertEqual([(await self.stored_state(h))[0] for h in hosts],
                         [HOST_MONITORED, HOST_ERROR, HOST_INIT])
        self.assertEqual(self.changes, [], "no host hook at shutdown")
        self.assertIsNone(hosts[0].template.get("ERROR"))

    async def test_start_settles_hosts_left_being_monitored(self):
        """A daemon killed mid-monitoring left MONITORING_* in the database: the
        next start puts each host back in the state it was monitored from (no
        hook), then monitors it as usual."""
        core = self.core = await Core.make(self)
        states = [HOST_MONITORING, HOST_MONITORING_ERROR, HOST_MONITORING_INIT]
        hosts = [await core.host(f"k{i}") for i in range(3)]
        for h, state in zip(hosts, states):
            h.state = state
            await core.nebula.hostpool.update(h)
        core.nebula.config.template.set("HOST_PER_INTERVAL", "0")
        drv = FakeInformationDriver("im_fake")
        im = InformationManager(core.nebula, {"im_fake": drv})
        changes = []
        im.hooks.append(lambda h, old, new: changes.append((h.oid, old, new)))
        im.start()
        self.addCleanup(im.stop)
        await core.nebula.db.run([])
        self.assertEqual([h.state for h in hosts], [HOST_MONITORED, HOST_ERROR, HOST_INIT])
        self.assertEqual([(await self.stored_state(h))[0] for h in hosts],
                         [HOST_MONITORED, HOST_ERROR, HOST_INIT])
        self.assertEqual(changes, [])
