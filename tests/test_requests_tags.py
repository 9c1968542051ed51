"""The requests layer's tags (nebtwist.core.requests_tags) and its small
front helpers (nebtwist.core.requests_access), through an in-process daemon:
authorization (only the owner changes tags; who may not use an object does
not read them), limits, errors, persistence."""

import os

from twisted.internet import defer
from twisted.trial import unittest

from nebtwist.core.requests_tags import Tag, TagLimitExceeded
from nebtwist.errors import ActionError, APIError, AuthorizationError, NoSuchObject
from nebtwist.testing import start_nebula

VM = 'NAME = v\nCPU = 0.1\nMEMORY = 64'


class TagRequestsTests(unittest.TestCase):

    timeout = 120

    async def users(self):
        neb = await start_nebula(self, ["SCHED_INTERVAL=3600"])
        requests = neb.service.requests
        for name in ("alice", "bob"):
            ok, _, _ = await neb.call("one.user.allocate", name, "pw")
            self.assertTrue(ok)
        return (neb, requests, requests.authenticate("oneadmin", "onecloud"),
                requests.authenticate("alice", "pw"), requests.authenticate("bob", "pw"))

    def test_tags(self):
        async def run():
            neb, requests, admin, alice, bob = await self.users()
            src = os.path.abspath(self.mktemp())
            with open(src, "wb") as f:
                f.write(b"disk" * 256)
            iid = await requests.image_allocate(alice, f'NAME = "img"\nPATH = "{src}"\n',
                                                trusted_dirs=[os.path.dirname(src)])
            # The copy into the datastore: its end can be waited for (USE).
            with self.assertRaises(AuthorizationError):
                requests.image_copy_ended(bob, iid)
            ended = requests.image_copy_ended(alice, iid)
            if ended is not None:
                self.assertIsNone(await ended)
            self.assertIsNone(requests.image_copy_ended(alice, iid))
            self.assertEqual(requests.image_get(alice, iid).state_name, "READY")
            vid = await requests.vm_allocate(alice, VM)
            vb = await requests.vm_allocate(bob, VM)

            await requests.tag_create(alice, [("vm", vid), ("image", iid), ("vm", vid)],
                                      [("Name", "web"), ("empty", None)])
            self.assertEqual(requests.tag_get(alice, "vm", vid), [("Name", "web"), ("empty", "")])
            self.assertEqual(requests.tag_get(admin, "image", iid),
                             [("Name", "web"), ("empty", "")])
            await requests.tag_create(alice, [("vm", vid)], [("Name", "db")])  # overwrite
            self.assertEqual(requests.tag_list(alice), [
                Tag("vm", vid, "Name", "db"), Tag("vm", vid, "empty", ""),
                Tag("image", iid, "Name", "web"), Tag("image", iid, "empty", "")])

            # Another user: cannot change them, nor read those of an object
            # it may not use; its own listing holds only its own.
            for call in (lambda: requests.tag_create(bob, [("vm", vid)], [("k", "v")]),
                         lambda: requests.tag_delete(bob, [("image", iid)])):
                with self.assertRaises(AuthorizationError):
                    await call()
            with self.assertRaises(AuthorizationError):
                requests.tag_get(bob, "vm", vid)
            self.assertEqual(requests.tag_list(bob), [])
            # A failing target changes nothing, the others included.
            with self.assertRaises(AuthorizationError):
                await requests.tag_create(alice, [("vm", vid), ("vm", vb)], [("x", "1")])
            self.assertNotIn("x", dict(requests.tag_get(alice, "vm", vid)))
            with self.assertRaises(NoSuchObject):
                await requests.tag_create(alice, [("vm", 999)], [("x", "1")])
            with self.assertRaises(APIError):
                requests.tag_get(alice, "host", 0)
            # oneadmin may change anyone's.
            await requests.tag_create(admin, [("vm", vb)], [("by", "admin")])
            self.assertEqual(requests.tag_get(bob, "vm", vb), [("by", "admin")])

            # The limit: all or nothing.
            with self.assertRaises(TagLimitExceeded) as caught:
                await requests.tag_create(alice, [("image", iid)],
                                          [(f"k{n}", "v") for n in range(3)], limit=4)
            self.assertIsInstance(caught.exception, ActionError)
            self.assertEqual(len(requests.tag_get(alice, "image", iid)), 2)

            # Delete by key, by key and value ("" included), or all.
            await requests.tag_delete(alice, [("vm", vid)], [("Name", "web")])  # not its value
            self.assertEqual(len(requests.tag_get(alice, "vm", vid)), 2)
            await requests.tag_delete(alice, [("vm", vid)], [("Name", None), ("empty", "")])
            self.assertEqual(requests.tag_get(alice, "vm", vid), [])
            await requests.tag_delete(alice, [("image", iid)])
            self.assertEqual(requests.tag_get(alice, "image", iid), [])

            # Written through: in the database, DONE VMs listed on demand.
            await requests.tag_create(alice, [("vm", vid)], [("kept", "yes")])
            rows = await requests.nebula.db.select(f"SELECT body FROM vm_pool WHERE oid = {vid}")
            self.assertIn("kept", str(rows))
            await requests.vm_action(alice, "finalize", vid)
            self.assertEqual(requests.tag_list(alice), [])
            self.assertEqual(requests.tag_list(alice, include_done=True),
                             [Tag("vm", vid, "kept", "yes")])
        return defer.ensureDeferred(run())

    def test_access(self):
        """The may-I questions, look-ups and signature secrets fronts use."""
        async def run():
            neb, requests, admin, alice, bob = await self.users()
            self.assertIs(requests.user_by_name("alice"), alice)
            self.assertIsNone(requests.user_by_name("nobody"))
            self.assertEqual(requests.user_secret("alice"), alice.password)
            self.assertIsNone(requests.user_secret("nobody"))
            bob.enabled = False
            try:
                self.assertIsNone(requests.user_secret("bob"))
            finally:
                bob.enabled = True
            self.assertTrue(requests.may_create(alice, "VM"))
            vid = await requests.vm_allocate(alice, VM)
            vm = requests.vm_get(alice, vid)
            self.assertTrue(requests.may_use(alice, vm) and requests.may_manage(alice, vm))
            self.assertFalse(requests.may_use(bob, vm) or requests.may_manage(bob, vm))
            self.assertTrue(requests.may_manage(admin, vm))
            self.assertFalse(requests.vm_action_allowed(alice, vm, "resume"))  # PENDING
            self.assertTrue(requests.vm_action_allowed(alice, vm, "finalize"))
            with self.assertRaises(NoSuchObject):
                requests.vm_action_allowed(alice, vm, "explode")
            self.assertIsNone(requests.image_find(alice, "img"))
            self.assertLess(abs(requests.now() - neb.service.nebula.clock.seconds()), 1)
            self.assertTrue(requests.work_dir("econe-uploads").endswith("/econe-uploads"))
        return defer.ensureDeferred(run())
