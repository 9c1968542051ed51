"""The save-as of a VM's disk in the requests layer
(:mod:`nebtwist.core.requests_savedisk`, 3.4 ``one.vm.savedisk``), in
memory on tests.test_lcm's core (fake drivers, a Clock, SQLite): what it
refuses, that a failed write leaves nothing half made, how the image
settles when its VM ends, and the epilog's MVDS to the new SOURCE."""

from twisted.internet import defer
from twisted.trial import unittest

from nebtwist.core.db import DatabaseError
from nebtwist.core.images import IMG_ERROR, IMG_LOCKED, IMG_READY, Image
from nebtwist.core.objects import ACTIVE, DONE, EPILOG, FAILED, LCM_INIT, PENDING, History
from nebtwist.errors import ActionError, APIError, AuthorizationError
from tests.test_lcm import Core

VM = 'CPU = 0.1\nMEMORY = 64\nDISK = [ IMAGE_ID = {iid} ]\n'


class SaveDiskTests(unittest.TestCase):

    async def core(self):
        core = await Core.make(self)
        core.image = await self.image(core, "base", "/repo/base")
        return core

    async def image(self, core, name, source, persistent=False):
        pool = core.nebula.imagepool
        oid = pool.reserve_oid()
        image = Image(oid, name, 0, 0, "oneadmin", "oneadmin", source=source, size=40,
                      persistent=persistent, state=IMG_READY)
        image.template.set("DEV_PREFIX", "hd")
        await pool.insert(image)
        return image

    async def vm(self, core, image=None):
        vid = await core.requests.vm_allocate(
            core.admin, VM.format(iid=(image or core.image).oid))
        return core.nebula.vmpool.get(vid)

    async def test_marks_disk_and_makes_locked_image(self):
        core = await self.core()
        vm = await self.vm(core)
        oid = await core.requests.vm_savedisk(core.admin, vm.oid, 0, "saved",
                                              description="mine")
        image = core.nebula.imagepool.get(oid)
        self.assertEqual((image.state, image.name, image.type, image.size, image.uid),
                         (IMG_LOCKED, "saved", core.image.type, 40, 0))
        self.assertEqual([image.template.get_str(k) for k in (
            "SAVED_IMAGE_ID", "SAVED_DISK_ID", "SAVED_VM_ID", "DESCRIPTION")],
            [str(core.image.oid), "0", str(vm.oid), "mine"])
        self.assertTrue(image.source and image.source != core.image.source)
        disk = vm.template.get_vector("DISK")
        self.assertEqual((disk["SAVE"], disk["SAVE_AS"], disk["SAVE_AS_SOURCE"], disk["SOURCE"]),
                         ("YES", str(oid), image.source, core.image.source))
        # Both are in the database.
        body, = (await core.nebula.db.select("SELECT body FROM image_pool WHERE oid = ?",
                                             (oid,)))[0]
        self.assertIn("<STATE>4</STATE>", body)
        body, = (await core.nebula.db.select("SELECT body FROM vm_pool WHERE oid = ?",
                                             (vm.oid,)))[0]
        self.assertIn(f"<SAVE_AS><![CDATA[{oid}]]></SAVE_AS>", body)

    async def test_refusals_change_nothing(self):
        core = await self.core()
        vm = await self.vm(core)
        persistent = await self.image(core, "pers", "/repo/pers", persistent=True)
        pvm = await self.vm(core, persistent)
        uid = await core.requests.user_allocate(core.admin, "helen", "pw")
        helen = core.nebula.userpool.get(uid)
        before = len(core.nebula.imagepool)
        for args, error in (
                ((core.admin, vm.oid, 1, "x"), ActionError),      # no DISK 1
                ((core.admin, vm.oid, -1, "x"), ActionError),
                ((core.admin, pvm.oid, 0, "x"), ActionError),     # persistent
                ((core.admin, vm.oid, 0, "base"), ActionError),   # name taken
                ((core.admin, vm.oid, 0, ""), APIError),
                ((core.admin, vm.oid, 0, "x", "FLOPPY"), APIError),
                ((helen, vm.oid, 0, "x"), AuthorizationError)):
            with self.assertRaises(error, msg=str(args[1:])):
                await core.requests.vm_savedisk(*args)
        self.assertEqual(len(core.nebula.imagepool), before)
        self.assertNotIn("SAVE_AS", vm.template.get_vector("DISK"))
        await core.requests.vm_savedisk(core.admin, vm.oid, 0, "first")
        with self.assertRaises(ActionError):  # already being saved
            await core.requests.vm_savedisk(core.admin, vm.oid, 0, "second")
        await core.requests.vm_action(core.admin, "finalize", vm.oid)
        with self.assertRaises(ActionError):  # DONE
            await core.requests.vm_savedisk(core.admin, vm.oid, 0, "third")

    async def test_failed_write_leaves_nothing(self):
        core = await self.core()
        vm = await self.vm(core)
        disk_before = dict(vm.template.get_vector("DISK"))
        images_before = set(core.nebula.imagepool.objects)
        real_run = core.nebula.db.run
        core.nebula.db.run = lambda ops: defer.fail(DatabaseError("disk full"))
        try:
            with self.assertRaises(DatabaseError):
                await core.requests.vm_savedisk(core.admin, vm.oid, 0, "saved")
        finally:
            core.nebula.db.run = real_run
        self.assertEqual(dict(vm.template.get_vector("DISK")), disk_before)
        self.assertEqual(set(core.nebula.imagepool.objects), images_before)
        oid = await core.requests.vm_savedisk(core.admin, vm.oid, 0, "saved")
        self.assertEqual(oid, max(images_before) + 1, "the id was given back")

    async def test_settles_when_the_vm_ends(self):
        """READY when the VM reaches DONE from EPILOG (its disk moved);
        ERROR when it ends any other way; other changes leave it LOCKED."""
        core = await self.core()
        saved, finalized, failed = [await self.vm(core) for _ in range(3)]
        ids = [await core.requests.vm_savedisk(core.admin, vm.oid, 0, f"img{vm.oid}")
               for vm in (saved, finalized, failed)]
        self.assertIn(core.requests._settle_saved_disks, core.lcm.hooks)
        core.requests.watch_saved_disks()
        self.assertEqual(core.lcm.hooks.count(core.requests._settle_saved_disks), 1)
        hook = core.requests._settle_saved_disks
        hook(saved, (PENDING, LCM_INIT), (ACTIVE, EPILOG))
        self.assertEqual(core.nebula.imagepool.get(ids[0]).state, IMG_LOCKED)
        hook(saved, (ACTIVE, EPILOG), (DONE, LCM_INIT))
        hook(failed, (ACTIVE, EPILOG), (FAILED, LCM_INIT))
        await core.requests.vm_action(core.admin, "finalize", finalized.oid)  # the real LCM
        await core.settle()
        states = [core.nebula.imagepool.get(i).state for i in ids]
        self.assertEqual(states, [IMG_READY, IMG_ERROR, IMG_ERROR])
        self.assertIn("without saving", core.nebula.imagepool.get(ids[1]).template.get_str(
            "ERROR"))
        # Stored: the database has the settled states.
        await core.settle()
        for oid, state in zip(ids, states):
            body, = (await core.nebula.db.select("SELECT body FROM image_pool WHERE oid = ?",
                                                 (oid,)))[0]
            self.assertIn(f"<STATE>{state}</STATE>", body)

    async def test_epilog_moves_to_the_new_source(self):
        core = await self.core()
        vm = await self.vm(core)
        oid = await core.requests.vm_savedisk(core.admin, vm.oid, 0, "saved")
        vm.history.append(History(seq=0, hid=0, hostname="host01", vm_dir="/vms/0",
                                  vmm_mad="vmm_fake", tm_mad="tm_fake"))
        lines = core.tm.epilog_lines(vm)
        self.assertEqual(lines[0], f"MVDS tm_fake host01:/vms/0/disk.0 "
                                   f"{core.nebula.imagepool.get(oid).source}")
