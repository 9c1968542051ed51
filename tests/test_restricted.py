"""OpenNebula's restricted attributes (oned.conf ``VM_RESTRICTED_ATTR`` and
``IMAGE_RESTRICTED_ATTR``), over XML-RPC against a whole daemon.

A user outside oneadmin's group may not give ``DISK/SOURCE`` (the prolog
would copy that front-end file into the VM's disk), ``CONTEXT/FILES``,
``NIC/MAC``, ``NIC/VLAN_ID`` or ``RANK`` to a VM, nor ``SOURCE`` to an
image: OpenNebula 3.4 ``VirtualMachineAllocate``/``ImageAllocate`` and
``VMTemplateInstantiate``; template allocate and update, as later versions.
The refusal is 3.4's: ``[false, "[VirtualMachineAllocate] VM Template
includes a restricted attribute DISK/SOURCE.", 0x200]`` and nothing is made.
"""

from twisted.trial.unittest import TestCase

from nebtwist.errors import AUTHORIZATION
from nebtwist.testing import start_nebula
from tests.test_xmlrpc_api import ADMIN, HELEN, add_user, assert_failure, ok

#: A VM no host takes: it stays PENDING, no driver runs.
PENDING_VM = 'CPU = 0.1\nMEMORY = 64\nREQUIREMENTS = "ID > 1000"\n'


class RestrictedVMAttributeTests(TestCase):
    """``VM_RESTRICTED_ATTR`` on one.vm.allocate and the VM templates."""

    async def _neb(self, overrides=()):
        neb = await start_nebula(self, overrides)
        await add_user(neb, HELEN)
        return neb

    async def test_disk_source_refused_outside_oneadmin_group(self):
        """The attack of issue 9: DISK = [ SOURCE = "/etc/shadow" ] from a user."""
        neb = await self._neb()
        text = PENDING_VM + 'DISK = [ SOURCE = "/etc/shadow", TARGET = "hdb" ]\n'
        assert_failure(self, await neb.call("one.vm.allocate", text, session=HELEN),
                       "VirtualMachineAllocate", AUTHORIZATION,
                       r"^\[VirtualMachineAllocate\] VM Template includes a restricted "
                       r"attribute DISK/SOURCE\.$")
        self.assertEqual(len(neb.nebula.vmpool), 0)
        self.assertEqual(await ok(neb, "one.vm.allocate", text, session=ADMIN), 0)

    async def test_every_shipped_attribute(self):
        """Each attribute oned.conf ships is refused to a user and allowed to
        oneadmin; an empty vector value is not giving it (3.4 Template::check)."""
        neb = await self._neb()
        cases = {
            "CONTEXT/FILES": 'CONTEXT = [ FILES = "/etc/passwd" ]',
            "DISK/SOURCE": 'DISK = [ SOURCE = "/var/lib/one/x" ]',
            "NIC/MAC": 'NIC = [ MAC = "02:00:01:02:03:04" ]',
            "NIC/VLAN_ID": 'NIC = [ VLAN_ID = "7" ]',
            "RANK": 'RANK = "FREECPU"',
        }
        for name, attr in cases.items():
            assert_failure(self, await neb.call("one.vm.allocate", PENDING_VM + attr,
                                                session=HELEN),
                           "VirtualMachineAllocate", AUTHORIZATION,
                           f"restricted attribute {name}\\.$")
        self.assertEqual(len(neb.nebula.vmpool), 0)
        await ok(neb, "one.vm.allocate", PENDING_VM + 'CONTEXT = [ FILES = "", A = "b" ]',
                 session=HELEN)
        for attr in cases.values():
            await ok(neb, "one.vm.allocate", PENDING_VM + attr, session=ADMIN)
        self.assertEqual(len(neb.nebula.vmpool), 1 + len(cases))

    async def test_disk_source_under_image_safe_dirs(self):
        """A DISK SOURCE under IMAGE_SAFE_DIRS is the user's to name (the 1.4
        tutorial's ttylinux.one); a symbolic link or ``..`` out of the folder is
        not, nor a relative path."""
        import os
        safe = os.path.abspath(self.mktemp())
        os.makedirs(safe)
        with open(os.path.join(safe, "ttylinux.img"), "wb") as f:
            f.write(b"disk")
        os.symlink("/etc/shadow", os.path.join(safe, "shadow"))
        neb = await self._neb([f'IMAGE_SAFE_DIRS = "/nonexistent {safe}"'])
        await ok(neb, "one.vm.allocate",
                 PENDING_VM + f'DISK = [ SOURCE = "{safe}/ttylinux.img" ]', session=HELEN)
        for source in (f"{safe}/shadow", f"{safe}/../{os.path.basename(safe)}x/a",
                       f"{safe}/../../etc/shadow", "ttylinux.img", "/etc/shadow"):
            assert_failure(self, await neb.call(
                "one.vm.allocate", PENDING_VM + f'DISK = [ SOURCE = "{source}" ]',
                session=HELEN), "VirtualMachineAllocate", AUTHORIZATION,
                r"restricted attribute DISK/SOURCE\.$")
        self.assertEqual(len(neb.nebula.vmpool), 1)

    async def test_oneadmin_group_member_may(self):
        """The oneadmin group is trusted, as oneadmin (3.4: gid 0)."""
        neb = await self._neb()
        uid = neb.nebula.userpool.find("helen").oid
        await ok(neb, "one.user.chgrp", uid, 0)
        await ok(neb, "one.vm.allocate", PENDING_VM + 'DISK = [ SOURCE = "/x" ]',
                 session=HELEN)

    async def test_templates(self):
        """Template allocate and update refuse a user's restricted attribute;
        a template of oneadmin's holding one may be instantiated by a user,
        but not with a restricted attribute among the extra ones."""
        neb = await self._neb()
        bad = "NAME = t\n" + PENDING_VM + 'DISK = [ SOURCE = "/etc/shadow" ]\n'
        assert_failure(self, await neb.call("one.template.allocate", bad, session=HELEN),
                       "TemplateAllocate", AUTHORIZATION, r"restricted attribute DISK/SOURCE")
        self.assertEqual(len(neb.nebula.tplpool), 0)
        mine = await ok(neb, "one.template.allocate", "NAME = t\n" + PENDING_VM, session=HELEN)
        assert_failure(self, await neb.call("one.template.update", mine,
                                            PENDING_VM + 'RANK = "- RUNNING_VMS"',
                                            session=HELEN),
                       "TemplateUpdateTemplate", AUTHORIZATION, r"restricted attribute RANK")
        self.assertIsNone(neb.nebula.tplpool.get(mine).template.get("RANK"))

        admins = await ok(neb, "one.template.allocate",
                          "NAME = a\n" + PENDING_VM + 'RANK = "FREECPU"\n', session=ADMIN)
        await ok(neb, "one.template.chmod", admins, -1, -1, -1, -1, -1, -1, 1, -1, -1)
        vid = await ok(neb, "one.template.instantiate", admins, "", session=HELEN)
        self.assertEqual(neb.nebula.vmpool.get(vid).template.get("RANK"), "FREECPU")
        before = len(neb.nebula.vmpool)
        assert_failure(self, await neb.call("one.template.instantiate", admins, "", False,
                                            'NIC = [ MAC = "02:00:00:00:00:09" ]',
                                            session=HELEN),
                       "VMTemplateInstantiate", AUTHORIZATION, r"restricted attribute NIC/MAC")
        self.assertEqual(len(neb.nebula.vmpool), before)

    async def test_configured_list(self):
        """oned.conf's list is the one applied (here: MEMORY only)."""
        neb = await self._neb(['VM_RESTRICTED_ATTR="MEMORY"'])
        assert_failure(self, await neb.call("one.vm.allocate", PENDING_VM, session=HELEN),
                       "VirtualMachineAllocate", AUTHORIZATION, r"restricted attribute MEMORY")
        await ok(neb, "one.vm.allocate", 'CPU = 0.1\nDISK = [ SOURCE = "/x" ]',
                 session=HELEN)


class RestrictedImageAttributeTests(TestCase):
    """``IMAGE_RESTRICTED_ATTR`` on one.image.allocate and one.image.update."""

    async def test_source(self):
        neb = await start_nebula(self)
        await add_user(neb, HELEN)
        assert_failure(self, await neb.call("one.image.allocate",
                                            'NAME = i\nSOURCE = "/etc/shadow"', 1,
                                            session=HELEN),
                       "ImageAllocate", AUTHORIZATION,
                       r"Image Template includes a restricted attribute SOURCE\.$")
        self.assertEqual(len(neb.nebula.imagepool), 0)
        iid = await ok(neb, "one.image.allocate",
                       'NAME = d\nTYPE = DATABLOCK\nSIZE = 1\nFSTYPE = raw', 1, session=HELEN)
        assert_failure(self, await neb.call("one.image.update", iid, 'SOURCE = "/etc/shadow"',
                                            session=HELEN),
                       "ImageUpdateTemplate", AUTHORIZATION, r"restricted attribute SOURCE")
        self.assertIsNone(neb.nebula.imagepool.get(iid).template.get("SOURCE"))
        await ok(neb, "one.image.update", iid, 'DESCRIPTION = "fine"', session=HELEN)
