"""The cached XML bodies and pool listings (issue 9, section 5).

Every pool object keeps its serialised body (``PoolObject.body`` /
``body_bytes``) until :meth:`~nebtwist.core.objects.PoolObject.touch`; pool
listings (``one.vmpool.info``, ``one.hostpool.info``) are joined from those
cached pieces, built in batches that give the reactor back, shared by
identical requests while nothing changed, and written in slices. These tests
check that the cache never shows an object other than it is: after each kind
of change (state change, history record added, monitoring of a host and a
VM, chown/chmod, template update) and after a restart, every object's cached
body equals one serialised afresh, and the listings equal a fresh dump.
"""

from lxml import etree
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from nebtwist.api.xmlrpc import resource as xmlrpc_resource
from nebtwist.core import objects as objm
from nebtwist.core import pool as poolm
from nebtwist.core.objects import VirtualMachine
from nebtwist.core.pool import Pool, PoolXML
from nebtwist.template import Template
from nebtwist.testing import start_nebula

#: VM states (include/VirtualMachine.h).
ACTIVE, RUNNING = 3, 3

VM_TEMPLATE = ('NAME = cached\nCPU = "0.1"\nMEMORY = "64"\n'
               'DESCRIPTION = "ends a CDATA section: ]]> and <b>&amp;</b>"\n'
               'DISK = [ SOURCE = "/srv/images/ttylinux.img", TARGET = "hda" ]\n')


async def ok(neb, method, *args):
    response = await neb.call(method, *args)
    assert response[0] is True, f"{method}{args} failed: {response}"
    return response[1]


async def wait_for(predicate, what, timeout=90.0, step=0.05):
    """Poll ``predicate`` (sync) on the reactor until true (generous deadline)."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await deferLater(reactor, step, lambda: None)


def pools(nebula):
    """Every pool of the core that holds pool objects."""
    found = []
    for name in dir(nebula):
        value = getattr(nebula, name, None)
        if isinstance(value, Pool) and value not in found:
            found.append(value)
    return found


def fresh_dump(pool, objects):
    root = pool.cls.ROOT + "_POOL"
    return f"<{root}>" + "".join(o.fresh_body() for o in objects) + f"</{root}>"


class CachedBodiesTests(TestCase):
    """The cache against a fresh serialisation, through a whole daemon."""

    def assert_cache_exact(self, nebula, step):
        stale = []
        for pool in pools(nebula):
            for obj in pool:
                if obj._body is not None and obj._body != obj.fresh_body():
                    stale.append(f"{pool.table} {obj.oid} (body)")
                if obj._body_bytes is not None and \
                        obj._body_bytes != objm.cdata_bytes(obj.fresh_body()):
                    stale.append(f"{pool.table} {obj.oid} (bytes)")
        self.assertEqual(stale, [], f"after {step}: cached bodies differ from a fresh build")

    async def assert_listings_exact(self, neb, step):
        """The replies equal a fresh build. A reply is the state when it was
        built; monitoring (every second here) may change an object before
        the test builds its own, so a difference is asked again, within a
        generous deadline."""
        nebula = neb.nebula

        async def differences():
            found = []
            got = await ok(neb, "one.vmpool.info", -2, -1, -1, -2)
            if got != fresh_dump(nebula.vmpool, list(nebula.vmpool.objects.values())):
                found.append("one.vmpool.info")
            got = await ok(neb, "one.hostpool.info")
            if got != fresh_dump(nebula.hostpool, sorted(nebula.hostpool, key=lambda h: h.oid)):
                found.append("one.hostpool.info")
            for vm in list(nebula.vmpool):
                got = await ok(neb, "one.vm.info", vm.oid)
                if got != etree.tostring(vm._xml(True), encoding="unicode"):
                    found.append(f"one.vm.info {vm.oid}")
            return found

        deadline = reactor.seconds() + 90
        while True:
            found = await differences()
            if not found or reactor.seconds() > deadline:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(found, [], f"replies differ from a fresh build after {step}")
        self.assert_cache_exact(nebula, step)

    async def test_cache_equals_fresh_build_after_every_kind_of_change(self):
        # Small slices: the listings go out in many pieces even with a few VMs.
        self.patch(xmlrpc_resource, "SLICE", 512)
        # The test deploys the VMs itself: the scheduler stays out of the way.
        neb = await start_nebula(self, ["SCHED_INTERVAL=3600"])
        nebula = neb.nebula
        hid = await ok(neb, "one.host.allocate", "cachehost", "im_dummy", "vmm_dummy", -1)
        hid2 = await ok(neb, "one.host.allocate", "cachehost2", "im_dummy", "vmm_dummy", -1)
        await wait_for(lambda: all(nebula.hostpool.get(h).last_mon_time > 0 for h in (hid, hid2)),
                       "the hosts' first monitoring")
        await self.assert_listings_exact(neb, "host monitoring")

        vids = [await ok(neb, "one.vm.allocate", VM_TEMPLATE) for _ in range(3)]
        await self.assert_listings_exact(neb, "allocate")
        for vid in vids:
            await ok(neb, "one.vm.deploy", vid, hid)
        await wait_for(lambda: all(nebula.vmpool.get(v).lcm_state == RUNNING for v in vids),
                       "the VMs RUNNING")
        await self.assert_listings_exact(neb, "deploy (state changes, history record)")

        # VM monitoring (POLL every VM_POLLING_INTERVAL = 1 s): LAST_POLL changes.
        polled = {v: nebula.vmpool.get(v).last_poll for v in vids}
        await wait_for(lambda: all(nebula.vmpool.get(v).last_poll > polled[v] for v in vids),
                       "a VM poll")
        await self.assert_listings_exact(neb, "VM poll")

        await ok(neb, "one.vm.chown", vids[0], -1, 1)
        await ok(neb, "one.vm.chmod", vids[0], 1, 1, 0, 1, 0, 0, 1, 0, 0)
        await self.assert_listings_exact(neb, "chown/chmod")

        await ok(neb, "one.vm.migrate", vids[1], hid2, True)
        await wait_for(lambda: len(nebula.vmpool.get(vids[1]).history) == 2
                       and nebula.vmpool.get(vids[1]).lcm_state == RUNNING, "the live migration")
        await self.assert_listings_exact(neb, "live migration (second history record)")

        tid = await ok(neb, "one.template.allocate", "NAME = cachetpl\nCPU = 1\n")
        await ok(neb, "one.template.update", tid, "NAME = cachetpl\nCPU = 2\nMEMORY = 128\n")
        await ok(neb, "one.vm.action", "shutdown", vids[2])
        await wait_for(lambda: nebula.vmpool.get(vids[2]).state == 6, "the shutdown to DONE")
        await self.assert_listings_exact(neb, "template update, shutdown")

        # Template values are CDATA sections in the bodies: the listing's own
        # CDATA splits each "]]>", and the client reads them back whole.
        listing = await ok(neb, "one.vmpool.info", -2, -1, -1, -2)
        self.assertIn("<NAME><![CDATA[cached]]></NAME>", listing)

        await neb.stop()
        neb = await start_nebula(self, ["SCHED_INTERVAL=3600"], one_location=neb.one_location)
        await self.assert_listings_exact(neb, "a restart")


class PollingTouchTests(TestCase):
    """The VM polling loop marks a VM polled (LAST_POLL) before asking the
    driver: that change must drop the cached body like any other."""

    async def test_poll_tick_drops_cached_body(self):
        neb = await start_nebula(self, ["VM_POLLING_INTERVAL=1", "MANAGER_TIMER=3600",
                                          "SCHED_INTERVAL=3600"])
        nebula = neb.nebula
        hid = await ok(neb, "one.host.allocate", "pollhost", "im_dummy", "vmm_dummy", -1)
        await wait_for(lambda: nebula.hostpool.get(hid).last_mon_time > 0, "monitoring")
        vid = await ok(neb, "one.vm.allocate", VM_TEMPLATE)
        await ok(neb, "one.vm.deploy", vid, hid)
        vm = nebula.vmpool.get(vid)
        await wait_for(lambda: vm.lcm_state == RUNNING, "RUNNING")
        await wait_for(lambda: reactor.seconds() - vm.last_poll >= 1.5, "the VM due a poll")
        vm.body(), vm.body_bytes()  # cached now
        neb.service.managers["vmm"].tick()
        self.assertEqual(vm.body(), vm.fresh_body())
        self.assertEqual(vm.body_bytes(), objm.cdata_bytes(vm.fresh_body()))


def _vm(oid):
    return VirtualMachine(oid, f"vm{oid}", 0, 0, "oneadmin", "oneadmin",
                          template=Template.parse(f'CPU = "0.1"\nMEMORY = "{oid}"\n'))


class ListingTests(TestCase):
    """Pool.listing on an in-memory pool (no database needed to list)."""

    def make_pool(self, n):
        pool = Pool(None, VirtualMachine, "virtual machine")
        for oid in range(n):
            pool.objects[oid] = _vm(oid)
        return pool

    async def test_large_rebuild_gives_the_reactor_back(self):
        n = 3 * poolm.REBUILD_BATCH
        pool = self.make_pool(n)
        ran = []
        reactor.callLater(0, ran.append, True)
        d = pool.listing(("t",), lambda: list(pool), reactor)
        self.assertFalse(d.called, "the whole listing was built in one reactor turn")
        listing = await d
        self.assertEqual(ran, [True])
        self.assertIsInstance(listing, PoolXML)
        self.assertEqual(str(listing), fresh_dump(pool, list(pool)))

    async def test_object_removed_during_the_build_is_left_out(self):
        n = 3 * poolm.REBUILD_BATCH
        pool = self.make_pool(n)
        d = pool.listing(("t",), lambda: list(pool), reactor)
        gone = n - 10
        del pool.objects[gone]
        listing = await d
        self.assertEqual(str(listing), fresh_dump(pool, list(pool)))
        self.assertNotIn(f"<ID>{gone}</ID>", str(listing))

    async def test_identical_requests_share_one_build_until_a_change(self):
        pool = self.make_pool(10)
        first = await pool.listing(("same",), lambda: list(pool), reactor)
        again = await pool.listing(("same",), lambda: list(pool), reactor)
        self.assertIs(again, first)
        other = await pool.listing(("other",), lambda: list(pool)[:2], reactor)
        self.assertIsNot(other, first)
        vm = pool.get(3)
        vm.name = "renamed"
        vm.touch()
        await pool.listing(("third",), lambda: list(pool)[:1], reactor)
        # listings of an earlier generation are not kept (nor their bytes)
        self.assertNotIn(("same",), pool._listings)
        self.assertNotIn(("other",), pool._listings)
        after = await pool.listing(("same",), lambda: list(pool), reactor)
        self.assertIsNot(after, first)
        self.assertIn("<NAME>renamed</NAME>", str(after))
        self.assertEqual(str(after), fresh_dump(pool, list(pool)))

    async def test_concurrent_requests_join_the_build_in_flight(self):
        n = 3 * poolm.REBUILD_BATCH
        pool = self.make_pool(n)
        builds = []

        def select():
            builds.append(1)
            return list(pool)

        ds = [pool.listing(("k",), select, reactor) for _ in range(5)]
        results = await defer.gatherResults(ds)
        self.assertEqual(len(builds), 1)
        self.assertTrue(all(r is results[0] for r in results))

    async def test_a_change_during_a_build_is_not_served_from_it(self):
        n = 3 * poolm.REBUILD_BATCH
        pool = self.make_pool(n)
        d1 = pool.listing(("k",), lambda: list(pool), reactor)
        vm = pool.get(0)  # already taken by the first batch
        vm.name = "changed"
        vm.touch()
        d2 = pool.listing(("k",), lambda: list(pool), reactor)
        first, second = await defer.gatherResults([d1, d2])
        self.assertNotIn("<NAME>changed</NAME>", str(first))
        self.assertIn("<NAME>changed</NAME>", str(second))
        self.assertEqual(str(second), fresh_dump(pool, list(pool)))


class TextSerialiserTests(TestCase):
    """VM and history bodies are written as text; lxml writes them the same."""

    def test_same_as_lxml_for_awkward_values(self):
        import random

        from nebtwist.core.objects import History

        rng = random.Random(9)
        alphabet = "ab &<>\r\n\t\"'é€]]>"
        for i in range(500):
            name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
            vm = VirtualMachine(i, name, 0, 1, "one<admin>", "g&g",
                                template=Template.parse(f'NAME = "x"\nMEMORY = "{i}"\n'),
                                deploy_id=rng.choice(["", "dummy-1", "a\rb"]))
            for k in range(rng.randint(0, 3)):
                vm.history.append(History(seq=k, hostname=name, vm_dir="/v/" + name, hid=k))
            self.assertEqual(vm.body(), etree.tostring(vm._xml(False), encoding="unicode"))
            self.assertEqual(vm.info(), etree.tostring(vm._xml(True), encoding="unicode"))
            for h in vm.history:
                self.assertEqual(h.body(), etree.tostring(h.to_xml(), encoding="unicode"))

    def test_values_lxml_refuses_still_refused(self):
        vm = _vm(1)
        vm.name = "bad\x01name"
        vm.touch()
        self.assertRaises(ValueError, vm.body)
