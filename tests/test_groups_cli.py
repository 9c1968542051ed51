"""``onegroup``, ``oneacl``, ``oneuser chgrp/chauth/enable/disable`` and the
``chown``/``chgrp``/``chmod`` subcommands, run for real against a whole daemon.

Each tool's ``main()`` runs in a worker thread (blocking XML-RPC over TCP)
while trial's reactor serves :func:`nebtwist.testing.start_nebula`.
"""

import io
import os

from lxml import etree
from twisted.internet import threads
from twisted.trial import unittest

from nebtwist.cli import oneacl, onegroup, oneimage, onetemplate, oneuser, onevm, onevnet
from nebtwist.cli.ownership import octet_bits
from nebtwist.testing import ONEADMIN_SESSION, start_nebula
from tests.test_xmlrpc_api import RANGED_NET, UNPLACEABLE, add_user, ok

HELEN = "helen:helenpass"


def xml(body):
    return etree.fromstring(body.encode("utf-8"))


def perms(body):
    p = xml(body).find("PERMISSIONS")
    return [int(c.text) for c in p]


class CliCase(unittest.TestCase):
    """A daemon, a ONE_AUTH file per session, and a runner for the tools."""

    async def start(self):
        self.neb = await start_nebula(self)
        self.auth = {}
        return self.neb

    def environ(self, session=ONEADMIN_SESSION):
        if session not in self.auth:
            path = os.path.abspath(self.mktemp())
            with open(path, "w", encoding="utf-8") as f:
                f.write(session + "\n")
            self.auth[session] = path
        return {"ONE_XMLRPC": self.neb.url, "ONE_AUTH": self.auth[session]}

    async def run_cli(self, main, *argv, session=ONEADMIN_SESSION):
        """``(status, stdout, stderr)`` of ``main(argv)``."""
        out, err = io.StringIO(), io.StringIO()
        status = await threads.deferToThread(main, list(argv), stdout=out, stderr=err,
                                             environ=self.environ(session))
        return status, out.getvalue(), err.getvalue()

    async def success(self, main, *argv, session=ONEADMIN_SESSION):
        """Run a command that must succeed; its stdout."""
        status, out, err = await self.run_cli(main, *argv, session=session)
        self.assertEqual((status, err), (0, ""), (argv, out))
        return out

    async def failure(self, main, *argv, session=ONEADMIN_SESSION):
        """Run a command that must fail with nothing on stdout; its stderr."""
        status, out, err = await self.run_cli(main, *argv, session=session)
        self.assertEqual((status, out), (1, ""), (argv, err))
        return err


class OneGroupTests(CliCase):
    """onegroup create/list/show/delete."""

    async def test_create_list_show_delete(self):
        neb = await self.start()
        out = await self.success(onegroup.main, "create", "dev")
        self.assertEqual(out, "ID: 100\nACL_ID: 2\nACL_ID: 3\n")
        rules = [a.findtext("STRING") for a in xml(await ok(neb, "one.acl.info"))]
        self.assertEqual(rules[2:], ["@100 VM+NET+IMAGE+TEMPLATE/* CREATE", "@100 HOST/* MANAGE"])
        self.assertEqual(await self.success(onegroup.main, "list"),
                         "  ID NAME\n   0 oneadmin\n   1 users\n 100 dev\n")
        helen = await add_user(neb, HELEN)
        await self.success(oneuser.main, "chgrp", "helen", "dev")
        self.assertEqual(await self.success(onegroup.main, "show", "dev"), "\n".join([
            "GROUP 100 INFORMATION",
            "ID                    : 100",
            "NAME                  : dev",
            "",
            "USERS",
            "ID NAME",
            f" {helen} helen",
        ]) + "\n")
        # A user sees its own group (no argument: -1).
        out = await self.success(onegroup.main, "show", session=HELEN)
        self.assertTrue(out.startswith("GROUP 100 INFORMATION\n"), out)
        # The group's default rules let helen create VMs.
        vms = await self.success(onevm.main, "create", "-v", self._file(UNPLACEABLE),
                                 session=HELEN)
        self.assertEqual(vms, "ID: 0\n")
        err = await self.failure(onegroup.main, "delete", "dev")
        self.assertIn("[GroupDelete] Cannot delete group 100: it has 1 user(s)", err)
        await self.success(oneuser.main, "chgrp", str(helen), "1")
        await self.success(onegroup.main, "delete", "dev")
        self.assertEqual(await self.success(onegroup.main, "list"),
                         "  ID NAME\n   0 oneadmin\n   1 users\n")

    async def test_errors(self):
        await self.start()
        await add_user(self.neb, HELEN)
        err = await self.failure(onegroup.main, "create", "users")
        self.assertEqual(err, "[GroupAllocate] Error allocating a new group. NAME is already "
                              "taken by GROUP 1.\n")
        err = await self.failure(onegroup.main, "create", "mine", session=HELEN)
        self.assertIn("Not authorized to perform CREATE GROUP", err)
        err = await self.failure(onegroup.main, "delete", "nosuch")
        self.assertEqual(err, "GROUP named nosuch not found.\n")
        err = await self.failure(onegroup.main, "delete", "0")
        self.assertIn("system groups (ID < 100) cannot be deleted", err)

    def _file(self, content):
        path = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
        return path


class OneAclTests(CliCase):
    """oneacl create/list/delete."""

    async def test_create_list_delete(self):
        neb = await self.start()
        self.assertEqual(await self.success(oneacl.main, "create", "#5 NET/@104 USE"), "ID: 2\n")
        self.assertEqual(await self.success(oneacl.main, "create", "@106", "image+template/#31",
                                            "use+manage"), "ID: 3\n")
        self.assertEqual(await self.success(oneacl.main, "list"), "\n".join([
            "   ID     USER RES_VHNIUTGDC   RID OPE_UMAC",
            "    0       @1     V-NI-T---     *     ---c",
            "    1       @1     -H-------     *     -m--",
            "    2       #5     --N------  @104     u---",
            "    3     @106     ---I-T---   #31     um--",
        ]) + "\n")
        pool = xml(await ok(neb, "one.acl.info"))
        self.assertEqual(pool[3].findtext("STRING"), "@106 IMAGE+TEMPLATE/#31 USE+MANAGE")
        await self.success(oneacl.main, "delete", "2")
        out = await self.success(oneacl.main, "list", "-x")
        self.assertEqual([a.findtext("ID") for a in xml(out)], ["0", "1", "3"])

    async def test_errors(self):
        """Bad rule text is refused by the client with the reason; server errors verbatim."""
        neb = await self.start()
        await add_user(neb, HELEN)
        err = await self.failure(oneacl.main, "create", "@1 VM/* FLY")
        self.assertEqual(err, "Unknown right 'FLY' (known: USE, MANAGE, ADMIN, CREATE)\n")
        err = await self.failure(oneacl.main, "create", "@1", "VM/*")
        self.assertIn("three components", err)
        err = await self.failure(oneacl.main, "create", "@1 HOST/* MANAGE")
        self.assertIn("[AclAddRule] Error adding rule: it exists already as rule 1", err)
        err = await self.failure(oneacl.main, "delete", "x")
        self.assertIn("must be a number", err)
        err = await self.failure(oneacl.main, "delete", "99")
        self.assertEqual(err, "[AclDelRule] Error getting ACL rule [99].\n")
        err = await self.failure(oneacl.main, "list", session=HELEN)
        self.assertIn("Not authorized to perform MANAGE ACL", err)
        self.assertEqual(len(xml(await ok(neb, "one.acl.info"))), 2)


class OneUserTests(CliCase):
    """oneuser chgrp, chauth, enable, disable."""

    async def test_enable_disable(self):
        neb = await self.start()
        await add_user(neb, HELEN)
        await self.success(oneuser.main, "show", "helen", session=HELEN)
        await self.success(oneuser.main, "disable", "helen")
        out = await self.success(oneuser.main, "list")
        self.assertIn("helen", out)
        self.assertTrue(out.splitlines()[2].endswith("False"), out)
        err = await self.failure(oneuser.main, "show", "helen", session=HELEN)
        self.assertIn("User couldn't be authenticated", err)
        await self.success(oneuser.main, "enable", "helen")
        await self.success(oneuser.main, "show", "helen", session=HELEN)
        err = await self.failure(oneuser.main, "disable", "oneadmin")
        self.assertIn("cannot be disabled", err)

    async def test_chgrp_and_chauth(self):
        neb = await self.start()
        helen = await add_user(neb, HELEN)
        await ok(neb, "one.group.allocate", "dev")
        await self.success(oneuser.main, "chgrp", "helen", "dev")
        user = xml(await ok(neb, "one.user.info", helen))
        self.assertEqual(user.findtext("GNAME"), "dev")
        err = await self.failure(oneuser.main, "chgrp", "helen", "nosuch")
        self.assertEqual(err, "GROUP named nosuch not found.\n")
        await self.success(oneuser.main, "chauth", "helen", "core", "newpass")
        await self.success(oneuser.main, "show", "helen", session="helen:newpass")
        await self.success(oneuser.main, "chauth", "helen", "public")
        self.assertEqual(xml(await ok(neb, "one.user.info", helen)).findtext("AUTH_DRIVER"),
                         "public")


class OwnershipCommandTests(CliCase):
    """chown, chgrp and chmod on onevm, onevnet, oneimage, onetemplate."""

    def test_octets(self):
        self.assertEqual(octet_bits("640"), [1, 1, 0, 1, 0, 0, 0, 0, 0])
        self.assertEqual(octet_bits("751"), [1, 1, 1, 1, 0, 1, 0, 0, 1])
        self.assertEqual(octet_bits("000"), [0] * 9)
        for bad in ("64", "6400", "800", "abc", "-10"):
            with self.assertRaises(Exception):
                octet_bits(bad)

    async def test_vm(self):
        neb = await self.start()
        helen = await add_user(neb, HELEN)
        await ok(neb, "one.group.allocate", "dev")
        vid = await ok(neb, "one.vm.allocate", UNPLACEABLE + 'NAME = "web"\n')
        await self.success(onevm.main, "chown", "web", "helen")
        self.assertEqual(xml(await ok(neb, "one.vm.info", vid)).findtext("UNAME"), "helen")
        await self.success(onevm.main, "chgrp", str(vid), "dev")
        self.assertEqual(xml(await ok(neb, "one.vm.info", vid)).findtext("GNAME"), "dev")
        await self.success(onevm.main, "chown", str(vid), "oneadmin", "users")
        body = xml(await ok(neb, "one.vm.info", vid))
        self.assertEqual((body.findtext("UNAME"), body.findtext("GNAME")), ("oneadmin", "users"))
        await self.success(onevm.main, "chmod", str(vid), "644")
        self.assertEqual(perms(await ok(neb, "one.vm.info", vid)), [1, 1, 0, 1, 0, 0, 1, 0, 0])
        err = await self.failure(onevm.main, "chmod", str(vid), "9")
        self.assertIn("octet of three digits", err)
        err = await self.failure(onevm.main, "chown", str(vid), str(helen), session=HELEN)
        self.assertIn("[VirtualMachineChown] User [%d] : Not authorized" % helen, err)

    async def test_vnet_image_template(self):
        neb = await self.start()
        await add_user(neb, HELEN)
        net = await ok(neb, "one.vn.allocate", RANGED_NET, session=HELEN)
        await self.success(onevnet.main, "chmod", "public", "604", session=HELEN)
        self.assertEqual(perms(await ok(neb, "one.vn.info", net)), [1, 1, 0, 0, 0, 0, 1, 0, 0])
        out = await self.success(onevnet.main, "show", str(net))
        self.assertIn("OWNER                 : um-", out)
        self.assertIn("OTHER                 : u--", out)
        tid = await ok(neb, "one.template.allocate", 'NAME = "t"\nCPU = 1\nMEMORY = 64\n')
        await self.success(onetemplate.main, "chown", str(tid), "helen")
        self.assertEqual(xml(await ok(neb, "one.template.info", tid)).findtext("UNAME"), "helen")
        err = await self.failure(oneimage.main, "chmod", "7", "600")
        self.assertIn("[ImageChmod]", err)
