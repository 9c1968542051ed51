"""Groups, users, ownership, permissions and ACLs through the XML-RPC API.

Every test runs a whole daemon (:func:`nebtwist.testing.start_nebula`, the
shipped dummy drivers, SQLite) and calls it over HTTP as a client would;
bodies are checked against the OpenNebula 3.4 schemas beside the checkout.
"""

import itertools

from twisted.trial.unittest import TestCase

from nebtwist.errors import (ACTION, AUTHENTICATION, AUTHORIZATION, NO_EXISTS, SUCCESS,
                             XML_RPC_API)
from nebtwist.testing import start_nebula
from tests.test_xmlrpc_api import (ADMIN, RANGED_NET, SMALL, UNPLACEABLE, add_user,
                                   assert_failure, ok, pool_ids, require_xsd, schema_errors,
                                   wait_for, wait_host_monitored, wait_vm, xml)

HELEN = "helen:helenpass"
BOB = "bob:bobpass"
EVE = "eve:evepass"
PENDING, ACTIVE, RUNNING = 1, 3, 3


def perms(body):
    """The nine permission bits of a body, in 3.4 order."""
    p = xml(body).find("PERMISSIONS")
    return [int(p.findtext(t)) for t in ("OWNER_U", "OWNER_M", "OWNER_A", "GROUP_U", "GROUP_M",
                                         "GROUP_A", "OTHER_U", "OTHER_M", "OTHER_A")]


def owner(body):
    """``(UID, GID, UNAME, GNAME)`` of a body."""
    root = xml(body)
    return (int(root.findtext("UID")), int(root.findtext("GID")), root.findtext("UNAME"),
            root.findtext("GNAME"))


def group_users(body):
    """The USERS/ID list of a ``<GROUP>`` body."""
    return [int(i.text) for i in xml(body).findall("USERS/ID")]


async def call_i8(neb, method, *args, session=ADMIN):
    """Call ``method`` sending ints as ``<i8>`` (64-bit, as OpenNebula's clients
    do for ACL masks; Python's xmlrpc.client cannot); the decoded response."""
    import xmlrpc.client

    from lxml import etree

    call = etree.Element("methodCall")
    etree.SubElement(call, "methodName").text = method
    params = etree.SubElement(call, "params")
    for arg in (session,) + args:
        value = etree.SubElement(etree.SubElement(params, "param"), "value")
        etree.SubElement(value, "string" if isinstance(arg, str) else "i8").text = str(arg)
    _, content = await neb.raw_post(etree.tostring(call, xml_declaration=True))
    (response,), _ = xmlrpc.client.loads(content.decode("utf-8"))
    return list(response)


class GroupTests(TestCase):
    """one.group.allocate/delete/info, one.grouppool.info, one.user.chgrp."""

    async def test_allocate_info_delete(self):
        """New groups count from 100; bodies validate; empty user groups can be deleted."""
        require_xsd(self)
        neb = await start_nebula(self)
        self.assertEqual(await ok(neb, "one.group.allocate", "new group"), 100)
        self.assertEqual(await ok(neb, "one.group.allocate", "dev"), 101)
        body = await ok(neb, "one.group.info", 100)
        self.assertEqual(schema_errors(body), [])
        self.assertEqual((xml(body).findtext("NAME"), group_users(body)), ("new group", []))
        pool = await ok(neb, "one.grouppool.info")
        self.assertEqual(schema_errors(pool), [])
        self.assertEqual(pool_ids(pool), [0, 1, 100, 101])
        self.assertEqual(await ok(neb, "one.group.delete", 100), 100)
        self.assertEqual(pool_ids(await ok(neb, "one.grouppool.info")), [0, 1, 101])
        assert_failure(self, await neb.call("one.group.info", 100), "GroupInfo", NO_EXISTS)
        # A deleted group's id is not given again.
        self.assertEqual(await ok(neb, "one.group.allocate", "qa"), 102)

    async def test_allocate_errors(self):
        """Taken or empty names, wrong types and non-admins create nothing."""
        neb = await start_nebula(self)
        await add_user(neb, HELEN)
        assert_failure(self, await neb.call("one.group.allocate", "users"), "GroupAllocate",
                       ACTION, "NAME is already taken by GROUP 1")
        for name in ("", "  ", " lead", "a:b", "x" * 129, "<g>"):
            assert_failure(self, await neb.call("one.group.allocate", name), "GroupAllocate",
                           XML_RPC_API)
        assert_failure(self, await neb.call("one.group.allocate", 5), "GroupAllocate",
                       XML_RPC_API)
        assert_failure(self, await neb.call("one.group.allocate", "mine", session=HELEN),
                       "GroupAllocate", AUTHORIZATION,
                       r"User \[1\] : Not authorized to perform CREATE GROUP")
        self.assertEqual(pool_ids(await ok(neb, "one.grouppool.info")), [0, 1])
        self.assertEqual(await ok(neb, "one.group.allocate", "first"), 100)

    async def test_delete_rules(self):
        """Built-in groups and groups with users stay (0x800); only oneadmin deletes (0x200)."""
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        gid = await ok(neb, "one.group.allocate", "dev")
        await ok(neb, "one.user.chgrp", helen, gid)
        for g in (0, 1):
            assert_failure(self, await neb.call("one.group.delete", g), "GroupDelete", ACTION,
                           r"system groups \(ID < 100\)")
        assert_failure(self, await neb.call("one.group.delete", gid), "GroupDelete", ACTION,
                       r"it has 1 user\(s\) \(1\)")
        assert_failure(self, await neb.call("one.group.delete", gid, session=HELEN),
                       "GroupDelete", AUTHORIZATION)
        assert_failure(self, await neb.call("one.group.delete", 555), "GroupDelete", NO_EXISTS)
        await ok(neb, "one.user.chgrp", helen, 1)
        self.assertEqual(await ok(neb, "one.group.delete", gid), gid)

    async def test_delete_drops_its_acl_rules(self):
        """Rules for or on a deleted group go with it, in the same transaction."""
        neb = await start_nebula(self)
        gid = await ok(neb, "one.group.allocate", "dev")
        r1 = await ok(neb, "one.acl.addrule", "%x" % (0x200000000 | gid), "2d400000000", "8")
        r2 = await ok(neb, "one.acl.addrule", "100000005", "%x" % (0x4200000000 | gid), "1")
        r3 = await ok(neb, "one.acl.addrule", "100000005", "4400000000", "1")
        await ok(neb, "one.group.delete", gid)
        ids = [int(a.findtext("ID")) for a in xml(await ok(neb, "one.acl.info"))]
        self.assertEqual(ids, [0, 1, r3])
        self.assertNotIn(r1, ids)
        self.assertNotIn(r2, ids)
        rows = await neb.nebula.db.select("SELECT oid FROM acl ORDER BY oid")
        self.assertEqual([r[0] for r in rows], [0, 1, r3])

    async def test_chgrp(self):
        """A user moves groups: GID/GNAME and both USERS lists change (and are stored)."""
        require_xsd(self)
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        bob = await add_user(neb, BOB)
        gid = await ok(neb, "one.group.allocate", "dev")
        self.assertEqual(await ok(neb, "one.user.chgrp", helen, gid), helen)
        user = await ok(neb, "one.user.info", helen)
        self.assertEqual(schema_errors(user), [])
        self.assertEqual((xml(user).findtext("GID"), xml(user).findtext("GNAME")),
                         (str(gid), "dev"))
        self.assertEqual(group_users(await ok(neb, "one.group.info", gid)), [helen])
        self.assertEqual(group_users(await ok(neb, "one.group.info", 1)), [bob])
        # The user sees its new group as its own (-1) and in the pool.
        self.assertEqual(xml(await ok(neb, "one.group.info", -1, session=HELEN)).findtext("ID"),
                         str(gid))
        self.assertEqual(pool_ids(await ok(neb, "one.grouppool.info", session=HELEN)), [gid])
        row = await neb.nebula.db.select("SELECT body FROM group_pool WHERE oid = ?", (1,))
        self.assertEqual(group_users(row[0][0]), [bob])
        # Same group: nothing changes. Errors change nothing.
        await ok(neb, "one.user.chgrp", helen, gid)
        assert_failure(self, await neb.call("one.user.chgrp", helen, 404), "UserChown", NO_EXISTS)
        assert_failure(self, await neb.call("one.user.chgrp", 404, gid), "UserChown", NO_EXISTS)
        assert_failure(self, await neb.call("one.user.chgrp", bob, gid, session=BOB),
                       "UserChown", AUTHORIZATION, "MANAGE USER")
        self.assertEqual(group_users(await ok(neb, "one.group.info", gid)), [helen])

    async def test_user_delete_drops_its_rules(self):
        """A deleted user's #uid rules are deleted with it."""
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        await ok(neb, "one.acl.addrule", "%x" % (0x100000000 | helen), "2400000000", "2")
        await ok(neb, "one.user.delete", helen)
        self.assertEqual([int(a.findtext("ID")) for a in xml(await ok(neb, "one.acl.info"))],
                         [0, 1])


class UserTests(TestCase):
    """one.user.enable, one.user.chauth, passwords and cached sessions."""

    async def test_enable_disable(self):
        """A disabled user cannot authenticate (0x100), even with a cached session."""
        require_xsd(self)
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        await ok(neb, "one.userpool.info", session=HELEN)
        self.assertIn(HELEN, neb.nebula.sessions)
        self.assertEqual(await ok(neb, "one.user.enable", helen, False), helen)
        body = await ok(neb, "one.user.info", helen)
        self.assertEqual((xml(body).findtext("ENABLED"), schema_errors(body)), ("0", []))
        assert_failure(self, await neb.call("one.userpool.info", session=HELEN),
                       "UserPoolInfo", AUTHENTICATION)
        await ok(neb, "one.user.enable", helen, True)
        self.assertEqual(xml(await ok(neb, "one.user.info", helen)).findtext("ENABLED"), "1")
        await ok(neb, "one.userpool.info", session=HELEN)
        # Stored: a restart-free check of the row.
        row = await neb.nebula.db.select("SELECT body FROM user_pool WHERE oid = ?", (helen,))
        self.assertEqual(xml(row[0][0]).findtext("ENABLED"), "1")

    async def test_enable_errors(self):
        """oneadmin stays enabled (0x800); only oneadmin enables (0x200); unknown users 0x400."""
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        assert_failure(self, await neb.call("one.user.enable", 0, False), "UserEnable", ACTION)
        assert_failure(self, await neb.call("one.user.enable", helen, False, session=HELEN),
                       "UserEnable", AUTHORIZATION)
        assert_failure(self, await neb.call("one.user.enable", 77, True), "UserEnable",
                       NO_EXISTS)
        assert_failure(self, await neb.call("one.user.enable", helen, "no"), "UserEnable",
                       XML_RPC_API)
        await ok(neb, "one.userpool.info", session=HELEN)

    async def test_passwd_ends_cached_session(self):
        """After one.user.passwd the old password fails at once, the new one works."""
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        await ok(neb, "one.user.info", -1, session=HELEN)
        await ok(neb, "one.user.passwd", helen, "second", session=HELEN)
        assert_failure(self, await neb.call("one.user.info", -1, session=HELEN),
                       "UserInfo", AUTHENTICATION)
        await ok(neb, "one.user.info", -1, session="helen:second")

    async def test_chauth(self):
        """chauth sets the driver (and hashes a core password); public users cannot log in."""
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        await ok(neb, "one.user.chauth", helen, "public", "")
        user = xml(await ok(neb, "one.user.info", helen))
        self.assertEqual(user.findtext("AUTH_DRIVER"), "public")
        assert_failure(self, await neb.call("one.user.info", -1, session=HELEN), "UserInfo",
                       AUTHENTICATION)
        await ok(neb, "one.user.chauth", helen, "core", "third")
        await ok(neb, "one.user.info", -1, session="helen:third")
        await ok(neb, "one.user.chauth", helen, "x509", "CN=helen")
        self.assertEqual(xml(await ok(neb, "one.user.info", helen)).findtext("PASSWORD"),
                         "CN=helen")
        assert_failure(self, await neb.call("one.user.chauth", helen, "bad driver", ""),
                       "UserChangeAuth", XML_RPC_API)
        await add_user(neb, BOB)
        assert_failure(self, await neb.call("one.user.chauth", helen, "core", "x",
                                            session=BOB), "UserChangeAuth", AUTHORIZATION)


class OwnershipTests(TestCase):
    """chown and chmod on VMs and networks (and images/templates), as 3.4 rules them."""

    async def _setup(self, overrides=()):
        neb = await start_nebula(self, overrides)
        self.helen = await add_user(neb, HELEN)
        self.bob = await add_user(neb, BOB)
        self.eve = await add_user(neb, EVE)
        self.dev = await ok(neb, "one.group.allocate", "dev")
        await ok(neb, "one.user.chgrp", self.eve, self.dev)
        return neb

    async def test_admin_chown(self):
        """oneadmin gives a VM and a network to another user and group; -1 keeps a field;
        bodies carry the new names and are stored."""
        require_xsd(self)
        neb = await self._setup()
        vid = await ok(neb, "one.vm.allocate", UNPLACEABLE, session=HELEN)
        net = await ok(neb, "one.vn.allocate", RANGED_NET, session=HELEN)
        self.assertEqual(await ok(neb, "one.vm.chown", vid, self.bob, -1), vid)
        self.assertEqual(owner(await ok(neb, "one.vm.info", vid)), (self.bob, 1, "bob", "users"))
        await ok(neb, "one.vm.chown", vid, -1, self.dev)
        body = await ok(neb, "one.vm.info", vid)
        self.assertEqual(owner(body), (self.bob, self.dev, "bob", "dev"))
        self.assertEqual(schema_errors(body), [])
        await ok(neb, "one.vn.chown", net, self.eve, self.dev)
        body = await ok(neb, "one.vn.info", net)
        self.assertEqual(owner(body), (self.eve, self.dev, "eve", "dev"))
        self.assertEqual(schema_errors(body), [])
        row = await neb.nebula.db.select("SELECT uid, gid, body FROM network_pool WHERE oid = ?",
                                         (net,))
        self.assertEqual((row[0][0], row[0][1], owner(row[0][2])[:2]),
                         (self.eve, self.dev, (self.eve, self.dev)))
        # The new owner sees and manages them; the old one no longer does.
        await ok(neb, "one.vm.info", vid, session=BOB)
        assert_failure(self, await neb.call("one.vm.info", vid, session=HELEN),
                       "VirtualMachineInfo", AUTHORIZATION)
        self.assertEqual(pool_ids(await ok(neb, "one.vnpool.info", -3, -1, -1, session=EVE)),
                         [net])

    async def test_chown_rules_and_errors(self):
        """Owners may change the group to their own, not the owner (0x200); unknown
        objects, users, groups 0x400; ids below -1 and wrong arity 0x1000; errors
        change nothing."""
        neb = await self._setup()
        vid = await ok(neb, "one.vm.allocate", UNPLACEABLE, session=HELEN)
        before = await ok(neb, "one.vm.info", vid)
        cases = [
            ((vid, self.bob, -1), HELEN, AUTHORIZATION, r"perform MANAGE USER \[%d\]" % self.bob),
            ((vid, self.helen, -1), HELEN, AUTHORIZATION, "MANAGE USER"),
            ((vid, -1, self.dev), HELEN, AUTHORIZATION, r"USE GROUP \[%d\]" % self.dev),
            ((vid, -1, 1), BOB, AUTHORIZATION, r"MANAGE VM \[%d\]" % vid),
            ((vid, -1, 1), EVE, AUTHORIZATION, "MANAGE VM"),
            ((999, -1, 1), ADMIN, NO_EXISTS, None),
            ((vid, 999, -1), ADMIN, NO_EXISTS, r"user \[999\]"),
            ((vid, -1, 999), ADMIN, NO_EXISTS, r"group \[999\]"),
            ((vid, -2, -1), ADMIN, XML_RPC_API, None),
            ((vid, -1, -7), ADMIN, XML_RPC_API, None),
            ((vid, -1), ADMIN, XML_RPC_API, None),
        ]
        for args, session, code, pattern in cases:
            assert_failure(self, await neb.call("one.vm.chown", *args, session=session),
                           "VirtualMachineChown", code, pattern)
        self.assertEqual(await ok(neb, "one.vm.info", vid), before)
        # Its own group: allowed to the owner.
        self.assertEqual(await ok(neb, "one.vm.chown", vid, -1, 1, session=HELEN), vid)
        # An owner in the dev group moves its network to dev.
        await ok(neb, "one.acl.addrule", "%x" % (0x200000000 | self.dev), "4400000000", "8")
        net = await ok(neb, "one.vn.allocate", RANGED_NET, session=EVE)
        await ok(neb, "one.vn.chown", net, -1, 1)
        await ok(neb, "one.vn.chown", net, -1, self.dev, session=EVE)
        self.assertEqual(owner(await ok(neb, "one.vn.info", net))[1], self.dev)

    async def test_chown_name_clash(self):
        """A network cannot go to a user who already has one of that name (0x800)."""
        neb = await self._setup()
        mine = await ok(neb, "one.vn.allocate", RANGED_NET, session=HELEN)
        await ok(neb, "one.vn.allocate", RANGED_NET, session=BOB)
        assert_failure(self, await neb.call("one.vn.chown", mine, self.bob, -1),
                       "VirtualNetworkChown", ACTION, "named 'public'")
        self.assertEqual(owner(await ok(neb, "one.vn.info", mine))[0], self.helen)

    async def test_chmod(self):
        """The owner sets U/M bits; GROUP_U shares with the group, OTHER_M lets anyone act;
        ADMIN bits need ADMIN (0x200) which oneadmin gives."""
        require_xsd(self)
        neb = await self._setup()
        vid = await ok(neb, "one.vm.allocate", UNPLACEABLE, session=HELEN)
        self.assertEqual(perms(await ok(neb, "one.vm.info", vid)), [1, 1, 0, 0, 0, 0, 0, 0, 0])
        assert_failure(self, await neb.call("one.vm.info", vid, session=BOB),
                       "VirtualMachineInfo", AUTHORIZATION)
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2, -1, -1, -1,
                                           session=BOB)), [])
        await ok(neb, "one.vm.chmod", vid, -1, -1, -1, 1, -1, -1, -1, -1, -1, session=HELEN)
        body = await ok(neb, "one.vm.info", vid, session=BOB)
        self.assertEqual(perms(body), [1, 1, 0, 1, 0, 0, 0, 0, 0])
        self.assertEqual(schema_errors(body), [])
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2, -1, -1, -1,
                                           session=BOB)), [vid])
        # eve (group dev) still cannot; bob (users) cannot manage.
        assert_failure(self, await neb.call("one.vm.info", vid, session=EVE),
                       "VirtualMachineInfo", AUTHORIZATION)
        assert_failure(self, await neb.call("one.vm.action", "hold", vid, session=BOB),
                       "VirtualMachineAction", AUTHORIZATION)
        await ok(neb, "one.vm.chmod", vid, -1, -1, -1, -1, -1, -1, 1, 1, -1, session=HELEN)
        await ok(neb, "one.vm.action", "hold", vid, session=EVE)
        # ADMIN bits: not for the owner; oneadmin may.
        assert_failure(self, await neb.call("one.vm.chmod", vid, -1, -1, 1, -1, -1, -1, -1, -1,
                                            -1, session=HELEN),
                       "VirtualMachineChmod", AUTHORIZATION, r"perform ADMIN VM \[%d\]" % vid)
        await ok(neb, "one.vm.chmod", vid, -1, -1, 1, -1, -1, -1, -1, -1, -1)
        # Now the owner holds ADMIN and may clear it itself.
        await ok(neb, "one.vm.chmod", vid, -1, -1, 0, -1, -1, -1, -1, -1, -1, session=HELEN)
        self.assertEqual(perms(await ok(neb, "one.vm.info", vid)), [1, 1, 0, 1, 0, 0, 1, 1, 0])
        row = await neb.nebula.db.select("SELECT owner_u, group_u, other_u, body FROM vm_pool "
                                         "WHERE oid = ?", (vid,))
        self.assertEqual(row[0][:3], (1, 1, 1))
        self.assertEqual(perms(row[0][3]), [1, 1, 0, 1, 0, 0, 1, 1, 0])

    async def test_chmod_errors(self):
        """Values other than -1/0/1 and wrong arity: 0x1000; strangers 0x200; unknown 0x400."""
        neb = await self._setup()
        net = await ok(neb, "one.vn.allocate", RANGED_NET, session=HELEN)
        before = await ok(neb, "one.vn.info", net)
        for bits in ([2] + [-1] * 8, [-1] * 8 + [-2]):
            assert_failure(self, await neb.call("one.vn.chmod", net, *bits),
                           "VirtualNetworkChmod", XML_RPC_API, "must be -1")
        assert_failure(self, await neb.call("one.vn.chmod", net, 1, 1, 1),
                       "VirtualNetworkChmod", XML_RPC_API)
        assert_failure(self, await neb.call("one.vn.chmod", net, *[1] * 9, session=BOB),
                       "VirtualNetworkChmod", AUTHORIZATION, "MANAGE NET")
        assert_failure(self, await neb.call("one.vn.chmod", 99, *[1] * 9),
                       "VirtualNetworkChmod", NO_EXISTS)
        self.assertEqual(await ok(neb, "one.vn.info", net), before)

    async def test_other_permissions_disabled(self):
        """ENABLE_OTHER_PERMISSIONS = NO: only the oneadmin group sets OTHER bits."""
        neb = await self._setup(["ENABLE_OTHER_PERMISSIONS=NO"])
        net = await ok(neb, "one.vn.allocate", RANGED_NET, session=HELEN)
        assert_failure(self, await neb.call("one.vn.chmod", net, -1, -1, -1, -1, -1, -1, 1, -1,
                                            -1, session=HELEN),
                       "VirtualNetworkChmod", AUTHORIZATION, "ENABLE_OTHER_PERMISSIONS")
        await ok(neb, "one.vn.chmod", net, -1, -1, -1, 1, -1, -1, -1, -1, -1, session=HELEN)
        await ok(neb, "one.vn.chmod", net, -1, -1, -1, -1, -1, -1, 1, -1, -1)
        self.assertEqual(perms(await ok(neb, "one.vn.info", net)), [1, 1, 0, 1, 0, 0, 1, 0, 0])

    async def test_images_and_templates(self):
        """The image and template pools get chown/chmod from the same table."""
        neb = await self._setup()
        tid = await ok(neb, "one.template.allocate", 'NAME = "t1"\nCPU = 1\nMEMORY = 64\n',
                       session=HELEN)
        await ok(neb, "one.template.chmod", tid, -1, -1, -1, 1, -1, -1, -1, -1, -1,
                 session=HELEN)
        await ok(neb, "one.template.chown", tid, self.bob, -1)
        body = await ok(neb, "one.template.info", tid, session=BOB)
        self.assertEqual((owner(body)[0], perms(body)[3]), (self.bob, 1))
        assert_failure(self, await neb.call("one.image.chown", 5, -1, 1), "ImageChown",
                       NO_EXISTS)
        assert_failure(self, await neb.call("one.image.chmod", 5, *[0] * 9), "ImageChmod",
                       NO_EXISTS)


class AclApiTests(TestCase):
    """one.acl.addrule/delrule/info, and what the rules decide."""

    async def test_rules(self):
        """Hex strings (3.4) and ints add rules; info lists them; delrule removes them."""
        neb = await start_nebula(self)
        pool = xml(await ok(neb, "one.acl.info"))
        self.assertEqual([a.findtext("STRING") for a in pool], [
            "@1 VM+NET+IMAGE+TEMPLATE/* CREATE", "@1 HOST/* MANAGE"])
        self.assertEqual(await ok(neb, "one.acl.addrule", "100000005", "4200000068", "1"), 2)
        self.assertEqual(await call_i8(neb, "one.acl.addrule", 0x400000000, 0x2400000000, 4),
                         [True, 3, SUCCESS])
        self.assertEqual(await ok(neb, "one.acl.addrule", "0x200000068", "2400000000", "3",
                                  "#0"), 4)
        pool = xml(await ok(neb, "one.acl.info"))
        self.assertEqual([(a.findtext("ID"), a.findtext("USER"), a.findtext("RESOURCE"),
                           a.findtext("RIGHTS"), a.findtext("STRING")) for a in pool][2:], [
            ("2", "100000005", "4200000068", "1", "#5 NET/@104 USE"),
            ("3", "400000000", "2400000000", "4", "* HOST/* ADMIN"),
            ("4", "200000068", "2400000000", "3", "@104 HOST/* USE+MANAGE")])
        self.assertEqual(await ok(neb, "one.acl.delrule", 3), 3)
        self.assertEqual([a.findtext("ID") for a in xml(await ok(neb, "one.acl.info"))],
                         ["0", "1", "2", "4"])

    async def test_errors(self):
        """Malformed 0x1000, duplicate 0x800, unknown 0x400, non-admins 0x200; nothing changes."""
        neb = await start_nebula(self)
        await add_user(neb, HELEN)
        cases = [
            (("one.acl.addrule", "zz", "2400000000", "2"), XML_RPC_API, "hexadecimal"),
            (("one.acl.addrule", "5", "2400000000", "2"), XML_RPC_API, r"\[user\] is missing"),
            (("one.acl.addrule", "400000000", "400000000", "2"), XML_RPC_API,
             r"\[resource\] type is missing"),
            (("one.acl.addrule", "400000000", "2400000000", "0"), XML_RPC_API, "cannot be 0"),
            (("one.acl.addrule", "200000001", "2400000000", "2"), ACTION, "exists already"),
            (("one.acl.addrule", "200000001", "2400000000"), XML_RPC_API, None),
            (("one.acl.delrule", 42), NO_EXISTS, r"ACL rule \[42\]"),
        ]
        for (method, *args), code, pattern in cases:
            name = {"one.acl.addrule": "AclAddRule", "one.acl.delrule": "AclDelRule"}[method]
            assert_failure(self, await neb.call(method, *args), name, code, pattern)
        for method, args, name in (("one.acl.addrule", ("400000000", "2400000000", "2"),
                                    "AclAddRule"),
                                   ("one.acl.delrule", (0,), "AclDelRule"),
                                   ("one.acl.info", (), "AclInfo")):
            assert_failure(self, await neb.call(method, *args, session=HELEN), name,
                           AUTHORIZATION, "MANAGE ACL")
        self.assertEqual(len(xml(await ok(neb, "one.acl.info"))), 2)

    async def test_create_needs_a_rule(self):
        """Users of a new group create nothing until a CREATE rule names them (3.4)."""
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        gid = await ok(neb, "one.group.allocate", "dev")
        await ok(neb, "one.user.chgrp", helen, gid)
        assert_failure(self, await neb.call("one.vm.allocate", SMALL, session=HELEN),
                       "VirtualMachineAllocate", AUTHORIZATION, "CREATE VM")
        assert_failure(self, await neb.call("one.vn.allocate", RANGED_NET, session=HELEN),
                       "VirtualNetworkAllocate", AUTHORIZATION, "CREATE NET")
        self.assertEqual(len(neb.nebula.vmpool), 0)
        await ok(neb, "one.acl.addrule", "%x" % (0x200000000 | gid), "2d400000000", "8")
        await ok(neb, "one.vm.allocate", UNPLACEABLE, session=HELEN)
        await ok(neb, "one.vn.allocate", RANGED_NET, session=HELEN)

    async def test_acl_grants_use_on_others_objects(self):
        """A rule lets a user see another user's network (listing and info)."""
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        bob = await add_user(neb, BOB)
        net = await ok(neb, "one.vn.allocate", RANGED_NET, session=HELEN)
        self.assertEqual(pool_ids(await ok(neb, "one.vnpool.info", -2, -1, -1, session=BOB)), [])
        await ok(neb, "one.acl.addrule", "%x" % (0x100000000 | bob),
                 "%x" % (0x4100000000 | net), "1")
        self.assertEqual(pool_ids(await ok(neb, "one.vnpool.info", -2, -1, -1, session=BOB)),
                         [net])
        await ok(neb, "one.vn.info", net, session=BOB)
        assert_failure(self, await neb.call("one.vn.delete", net, session=BOB),
                       "VirtualNetworkDelete", AUTHORIZATION)
        self.assertNotEqual(helen, bob)

    async def test_pyone_reads_the_acl_pool(self):
        """OpenNebula's own client parses <ACL_POOL>."""
        try:
            import pyone
        except ImportError:
            self.skipTest("pyone is not installed (pip install '.[test]')")
        from twisted.internet import threads

        neb = await start_nebula(self)

        def read():
            one = pyone.OneServer(neb.url, session=ADMIN)
            try:
                return [(a.ID, a.STRING) for a in one.acl.info().ACL]
            finally:
                close = getattr(one, "server_close", None)
                if close is not None:
                    close()

        self.assertEqual(await threads.deferToThread(read), [
            (0, "@1 VM+NET+IMAGE+TEMPLATE/* CREATE"), (1, "@1 HOST/* MANAGE")])


class HostRightsTests(TestCase):
    """MANAGE on a host (ACL) decides where users' VMs go, and who may deploy."""

    async def test_scheduler_honours_host_rights(self):
        """A user without MANAGE on any host is not scheduled; a rule for one host
        sends its VMs there only; the users group's default rule reaches every host."""
        neb = await start_nebula(self)
        h0 = await ok(neb, "one.host.allocate", "h0", "im_dummy", "vmm_dummy", -1)
        h1 = await ok(neb, "one.host.allocate", "h1", "im_dummy", "vmm_dummy", -1)
        await wait_host_monitored(neb, h0)
        await wait_host_monitored(neb, h1)
        helen = await add_user(neb, HELEN)
        gid = await ok(neb, "one.group.allocate", "dev")
        await ok(neb, "one.user.chgrp", helen, gid)
        await ok(neb, "one.acl.addrule", "%x" % (0x200000000 | gid), "2d400000000", "8")
        vid = await ok(neb, "one.vm.allocate", SMALL, session=HELEN)
        cycles = neb.service.managers["scheduler"].cycles
        await wait_for(self._cycles_after(neb, cycles + 3), "three scheduler cycles")
        body = xml(await ok(neb, "one.vm.info", vid))
        self.assertEqual(int(body.findtext("STATE")), PENDING)
        # MANAGE on h1 only: the VM goes there, whatever the rank says.
        await ok(neb, "one.acl.addrule", "%x" % (0x100000000 | helen),
                 "%x" % (0x2100000000 | h1), "2")
        await wait_vm(neb, vid, ACTIVE, RUNNING)
        body = xml(await ok(neb, "one.vm.info", vid))
        self.assertEqual(body.findtext("HISTORY_RECORDS/HISTORY/HID"), str(h1))
        # A users-group user gets a host through "@1 HOST/* MANAGE".
        bob = await add_user(neb, BOB)
        self.assertTrue(bob)
        vid2 = await ok(neb, "one.vm.allocate", SMALL, session=BOB)
        await wait_vm(neb, vid2, ACTIVE, RUNNING)

    def _cycles_after(self, neb, n):
        async def done():
            return neb.service.managers["scheduler"].cycles >= n
        return done

    async def test_deploy_needs_vm_admin_and_host_manage(self):
        """one.vm.deploy by a user: ADMIN on the VM (given by oneadmin) and MANAGE on the host."""
        neb = await start_nebula(self, ["SCHED_INTERVAL=1000"])
        hid = await ok(neb, "one.host.allocate", "h0", "im_dummy", "vmm_dummy", -1)
        await wait_host_monitored(neb, hid)
        helen = await add_user(neb, HELEN)
        vid = await ok(neb, "one.vm.allocate", SMALL, session=HELEN)
        assert_failure(self, await neb.call("one.vm.deploy", vid, hid, session=HELEN),
                       "VirtualMachineDeploy", AUTHORIZATION, r"ADMIN VM \[%d\]" % vid)
        assert_failure(self, await neb.call("one.vm.deploy", 99, hid, session=HELEN),
                       "VirtualMachineDeploy", NO_EXISTS)
        await ok(neb, "one.vm.chmod", vid, -1, -1, 1, -1, -1, -1, -1, -1, -1)
        # Without the users group's host rule, the host is out of reach.
        await ok(neb, "one.acl.delrule", 1)
        assert_failure(self, await neb.call("one.vm.deploy", vid, hid, session=HELEN),
                       "VirtualMachineDeploy", AUTHORIZATION, r"MANAGE HOST \[%d\]" % hid)
        await ok(neb, "one.acl.addrule", "%x" % (0x100000000 | helen), "2400000000", "2")
        self.assertEqual(await ok(neb, "one.vm.deploy", vid, hid, session=HELEN), vid)
        await wait_vm(neb, vid, ACTIVE, RUNNING)


class SignatureTests(TestCase):
    """The new methods answer wrong parameter lists with 0x1000 naming the signature."""

    async def test_wrong_parameters(self):
        neb = await start_nebula(self)
        cases = {
            "one.group.allocate": ((), "GroupAllocate"),
            "one.group.delete": (("x",), "GroupDelete"),
            "one.user.chgrp": ((1,), "UserChown"),
            "one.user.chauth": ((1,), "UserChangeAuth"),
            "one.vm.chown": ((1, 2, "3"), "VirtualMachineChown"),
            "one.vn.chmod": ((1,) * 9, "VirtualNetworkChmod"),
            "one.acl.delrule": (("1",), "AclDelRule"),
        }
        for method, (args, name) in cases.items():
            response = await neb.call(method, *args)
            assert_failure(self, response, name, XML_RPC_API, "Wrong parameters")
        # Every mix of hex strings and ints is a valid addrule call.
        for n, types in enumerate(itertools.product("si", repeat=3)):
            masks = [0x100000000 | (50 + n), 0x1400000000, 1]
            args = [("%x" % m) if t == "s" else m for t, m in zip(types, masks)]
            response = await call_i8(neb, "one.acl.addrule", *args)
            self.assertEqual((response[0], response[2]), (True, SUCCESS), response)
