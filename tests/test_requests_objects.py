"""The requests layer's object operations for fronts (nebtwist.core.requests_objects)."""

from twisted.internet import defer
from twisted.trial import unittest

from nebtwist.core.objects import DONE
from nebtwist.errors import AuthenticationError, AuthorizationError, NoSuchObject
from nebtwist.testing import start_nebula


class ObjectRequestsTests(unittest.TestCase):
    """Two users: what each may see and get, as ``one.*`` would allow."""

    def test_objects_and_authorization(self):
        async def run():
            neb = await start_nebula(self, ["SCHED_INTERVAL=3600"])
            requests = neb.service.requests
            admin = requests.authenticate("oneadmin", "onecloud")
            self.assertEqual(admin.oid, 0)
            for name, password in [("oneadmin", "wrong"), ("nobody", "x"), ("", "")]:
                with self.assertRaises(AuthenticationError):
                    requests.authenticate(name, password)
            ok, alice_id, _ = await neb.call("one.user.allocate", "alice", "pw")
            ok2, bob_id, _ = await neb.call("one.user.allocate", "bob", "pw")
            self.assertTrue(ok and ok2)
            alice = requests.authenticate("alice", "pw")
            bob = requests.authenticate("bob", "pw")
            self.assertEqual(alice.oid, alice_id)

            vid = await requests.vm_allocate(alice, 'NAME = a1\nCPU = 0.1\nMEMORY = 64')
            vm = requests.vm_get(alice, vid)
            self.assertEqual((vm.oid, vm.name, vm.uid), (vid, "a1", alice_id))
            self.assertIs(requests.vm_get(admin, str(vid)), vm)
            with self.assertRaises(AuthorizationError):
                requests.vm_get(bob, vid)
            with self.assertRaises(NoSuchObject):
                requests.vm_get(alice, vid + 100)
            self.assertEqual([v.oid for v in requests.vm_list(alice)], [vid])
            self.assertEqual(requests.vm_list(bob), [])
            self.assertIn(vid, [v.oid for v in requests.vm_list(admin)])

            await requests.vm_action(alice, "finalize", vid)
            self.assertEqual(requests.vm_get(alice, vid).state, DONE)
            self.assertEqual(requests.vm_list(alice), [])
            self.assertEqual([v.oid for v in requests.vm_list(alice, include_done=True)], [vid])

            nid = await requests.vn_allocate(
                admin, 'NAME = priv\nTYPE = FIXED\nBRIDGE = br0\nLEASES = [ IP = 198.51.100.5 ]')
            self.assertEqual(requests.vnet_get(admin, nid).name, "priv")
            self.assertEqual([v.oid for v in requests.vnet_list(admin)], [nid])
            # Private to oneadmin (chmod 600): alice neither sees nor gets it,
            # and once shared (604) she does, as one.vn.info says.
            for mode, visible in [((1, 1, 0, 0, 0, 0, 0, 0, 0), False),
                                  ((1, 1, 0, 0, 0, 0, 1, 0, 0), True)]:
                ok, _, _ = await neb.call("one.vn.chmod", nid, *mode)
                self.assertTrue(ok)
                ok, _, _ = await neb.call("one.vn.info", nid, session="alice:pw")
                self.assertEqual(ok, visible)
                self.assertEqual([v.oid for v in requests.vnet_list(alice)],
                                 [nid] if visible else [])
                if visible:
                    self.assertEqual(requests.vnet_get(alice, nid).oid, nid)
                else:
                    with self.assertRaises(AuthorizationError):
                        requests.vnet_get(alice, nid)
            self.assertEqual(requests.host_list(alice), [])
            self.assertEqual(requests.image_list(alice), [])
            self.assertEqual(requests.template_list(alice), [])
            with self.assertRaises(NoSuchObject):
                requests.image_get(alice, 7)
            with self.assertRaises(NoSuchObject):
                requests.template_get(alice, 7)
        return defer.ensureDeferred(run())
