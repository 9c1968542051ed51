"""The requests layer's elastic addresses (nebtwist.core.requests_addresses),
through an in-process daemon: allocate, describe, associate (with scripts,
a failing one undone), disassociate, drop with terminated VMs, release;
authorization (another user's address or VM) and errors."""

from twisted.internet import defer
from twisted.trial import unittest

from nebtwist.core.requests_addresses import (Address, AddressScripts, NoAddressNetwork,
                                              NoFreeAddress, NoSuchAddress)
from nebtwist.errors import ActionError, AuthorizationError, NoSuchObject
from nebtwist.testing import start_nebula

PUBLIC = ('NAME = "public"\nTYPE = FIXED\nBRIDGE = br1\n'
          'LEASES = [ IP = 203.0.113.10 ]\nLEASES = [ IP = 203.0.113.11 ]\n')
VM = 'NAME = v\nCPU = 0.1\nMEMORY = 64'


class Recorder(AddressScripts):
    """Scripts that record their calls; ``fail`` names one to fail."""

    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail

    async def associate(self, ip, vm):
        self.calls.append(("associate", ip, vm.oid))
        if self.fail == "associate":
            raise RuntimeError("associate failed")

    async def disassociate(self, ip, vm):
        self.calls.append(("disassociate", ip, vm.oid))
        if self.fail == "disassociate":
            raise RuntimeError("disassociate failed")


class AddressRequestsTests(unittest.TestCase):

    timeout = 120

    def test_addresses(self):
        async def run():
            neb = await start_nebula(self, ["SCHED_INTERVAL=3600"])
            requests = neb.service.requests
            admin = requests.authenticate("oneadmin", "onecloud")
            for name in ("alice", "bob"):
                ok, _, _ = await neb.call("one.user.allocate", name, "pw")
                self.assertTrue(ok)
            alice = requests.authenticate("alice", "pw")
            bob = requests.authenticate("bob", "pw")
            nid = await requests.vn_allocate(admin, PUBLIC)
            vnet = requests.address_network("public")
            self.assertIs(requests.address_network(str(nid)), vnet)
            self.assertIs(requests.address_network(nid), vnet)
            for missing in ("nope", "999"):
                with self.assertRaises(NoAddressNetwork) as caught:
                    requests.address_network(missing)
                self.assertIsInstance(caught.exception, NoSuchObject)
                with self.assertRaises(NoAddressNetwork):
                    requests.address_list(alice, missing)

            a1 = await requests.address_allocate(alice, "public")
            self.assertEqual(a1, Address("203.0.113.10", alice.oid, None))
            b1 = await requests.address_allocate(bob, "public")
            self.assertEqual(b1.ip, "203.0.113.11")
            with self.assertRaises(NoFreeAddress) as caught:
                await requests.address_allocate(alice, "public")
            self.assertIsInstance(caught.exception, ActionError)
            lease = vnet.leases[max(vnet.leases)]
            self.assertEqual((lease.used, lease.vid), (True, -1))  # held, no VM
            self.assertEqual(requests.address_list(alice, "public"), [a1])
            self.assertEqual(requests.address_list(bob, "public"), [b1])

            # Another user's address: AuthorizationError; nobody's: NoSuchAddress.
            with self.assertRaises(AuthorizationError):
                requests.address_get(bob, "public", a1.ip)
            with self.assertRaises(NoSuchAddress):
                requests.address_get(alice, "public", "203.0.113.99")
            scripts = Recorder()
            for call in (requests.address_release, requests.address_disassociate):
                with self.assertRaises(AuthorizationError):
                    await call(bob, "public", a1.ip, scripts)
            with self.assertRaises(AuthorizationError):
                await requests.address_associate(bob, "public", a1.ip, 0, scripts)

            v1 = await requests.vm_allocate(alice, VM)
            v2 = await requests.vm_allocate(alice, VM)
            vb = await requests.vm_allocate(bob, VM)
            # Only the address holder's own VMs.
            with self.assertRaises(AuthorizationError):
                await requests.address_associate(alice, "public", a1.ip, vb, scripts)
            with self.assertRaises(NoSuchObject):
                await requests.address_associate(alice, "public", a1.ip, 999, scripts)
            self.assertEqual(scripts.calls, [])

            await requests.address_associate(alice, "public", a1.ip, v1, scripts)
            self.assertEqual(scripts.calls, [("associate", a1.ip, v1)])
            self.assertEqual(requests.address_get(alice, "public", a1.ip).vid, v1)
            await requests.address_associate(alice, "public", a1.ip, v1, scripts)  # no-op
            self.assertEqual(len(scripts.calls), 1)
            # Moving it: disassociated from v1 first; a failing associate
            # leaves it associated with nothing (what the site did).
            failing = Recorder(fail="associate")
            with self.assertRaises(RuntimeError):
                await requests.address_associate(alice, "public", a1.ip, v2, failing)
            self.assertEqual(failing.calls, [("disassociate", a1.ip, v1),
                                             ("associate", a1.ip, v2)])
            self.assertIsNone(requests.address_get(alice, "public", a1.ip).vid)
            await requests.address_associate(alice, "public", a1.ip, v2)
            self.assertEqual(requests.address_list(alice, "public")[0].vid, v2)

            # Terminated VMs lose their addresses, a failing script or not.
            await requests.address_drop_vms(alice, "public", [v2], Recorder("disassociate"))
            self.assertIsNone(requests.address_get(alice, "public", a1.ip).vid)
            await requests.address_drop_vms(alice, "missing", [v2])  # no network: nothing
            # A DONE VM cannot take one.
            await requests.vm_action(alice, "finalize", v1)
            with self.assertRaises(ActionError):
                await requests.address_associate(alice, "public", a1.ip, v1)

            await requests.address_associate(alice, "public", a1.ip, v2)
            scripts = Recorder()
            await requests.address_disassociate(alice, "public", a1.ip, scripts)
            self.assertEqual(scripts.calls, [("disassociate", a1.ip, v2)])
            await requests.address_disassociate(alice, "public", a1.ip, scripts)  # fine
            self.assertEqual(len(scripts.calls), 1)

            await requests.address_associate(alice, "public", a1.ip, v2)
            scripts = Recorder()
            await requests.address_release(alice, "public", a1.ip, scripts)
            self.assertEqual(scripts.calls, [("disassociate", a1.ip, v2)])
            self.assertEqual(requests.address_list(alice, "public"), [])
            with self.assertRaises(NoSuchAddress):
                await requests.address_release(alice, "public", a1.ip)
            # The lease is free again, in memory and in the database.
            self.assertEqual(await requests.address_allocate(alice, "public"), a1)
            rows = await requests.nebula.db.select(
                f"SELECT body FROM network_pool WHERE oid = {nid}")
            self.assertIn("203.0.113.10", str(rows))
        return defer.ensureDeferred(run())
