"""ACL rules, permission bits and sessions: units on a real SQLite file and a Clock.

* rule encoding: strings <-> masks <-> hex, 3.4's values for the default rules;
* every permission bit: which users it gives USE/MANAGE/ADMIN (table-driven);
* ACL matching: ``#uid``/``@gid``/``*`` users on ``#oid``/``@gid``/``*`` resources;
* the :class:`AclManager` store: bootstrap, persistence, ids never reused;
* the session cache (SESSION_EXPIRATION_TIME) on a Clock.
"""

import os

from lxml import etree
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from nebtwist.core import acl as aclm
from nebtwist.core.acl import (ALL_ID, DEFAULT_RULES, GROUP_ID, INDIVIDUAL_ID, TYPES,
                               AclManager, AclSyntaxError, authorize, from_hex, malformed,
                               parse_rule, rule_string, to_hex)
from nebtwist.core.config import Config
from nebtwist.core.db import Database
from nebtwist.core.nebula import Nebula
from nebtwist.core.objects import Host, User, VirtualNetwork
from nebtwist.core.sessions import SessionCache
from nebtwist.errors import ActionError, APIError, AuthenticationError, NoSuchObject
from nebtwist.template import Template


def user(uid, gid):
    """A user of group ``gid``."""
    return User(uid, f"u{uid}", "x", gid, f"g{gid}")


def vnet(perms, uid=5, gid=101, oid=7):
    """A network owned by ``uid`` in group ``gid`` with the nine bits ``perms``."""
    return VirtualNetwork(oid, "net", uid, gid, f"u{uid}", f"g{gid}", list(perms))


async def open_database(testcase, path=None):
    """A real SQLite database (closed at cleanup)."""
    path = path or os.path.join(os.path.abspath(testcase.mktemp()), "one.db")
    db = Database(reactor, "sqlite", path=path)
    await db.open()
    testcase.addCleanup(db.close)
    return db, path


class EncodingTests(unittest.TestCase):
    """Rules as 3.4 writes them: strings, masks, lowercase hex."""

    def test_default_rules_masks(self):
        """The two bootstrap rules have 3.4's masks and strings."""
        self.assertEqual([(to_hex(u), to_hex(r), to_hex(o)) for u, r, o in DEFAULT_RULES], [
            ("200000001", "2d400000000", "8"),
            ("200000001", "2400000000", "2"),
        ])
        self.assertEqual([rule_string(*r) for r in DEFAULT_RULES], [
            "@1 VM+NET+IMAGE+TEMPLATE/* CREATE",
            "@1 HOST/* MANAGE",
        ])

    def test_string_round_trips(self):
        """parse_rule then rule_string gives the canonical text back, and the
        masks through hex give the same masks."""
        cases = {
            "#5 IMAGE+NET/@103 USE+MANAGE": ("#5 NET+IMAGE/@103 USE+MANAGE",
                                             INDIVIDUAL_ID | 5,
                                             TYPES["NET"] | TYPES["IMAGE"] | GROUP_ID | 103,
                                             0x3),
            "@105 VM+NET+IMAGE+TEMPLATE/* CREATE": (
                "@105 VM+NET+IMAGE+TEMPLATE/* CREATE", GROUP_ID | 105,
                0x2d000000000 | ALL_ID, 0x8),
            "* NET/#47 USE": ("* NET/#47 USE", ALL_ID, TYPES["NET"] | INDIVIDUAL_ID | 47, 1),
            "@106 host/* manage+admin": ("@106 HOST/* MANAGE+ADMIN", GROUP_ID | 106,
                                         TYPES["HOST"] | ALL_ID, 0x6),
            "#0 USER+GROUP+DATASTORE+CLUSTER/#4294967295 USE+MANAGE+ADMIN+CREATE": (
                "#0 USER+GROUP+DATASTORE+CLUSTER/#4294967295 USE+MANAGE+ADMIN+CREATE",
                INDIVIDUAL_ID, 0x350000000000 | INDIVIDUAL_ID | 0xFFFFFFFF, 0xF),
        }
        for text, (canonical, u, r, o) in cases.items():
            masks = parse_rule(text)
            self.assertEqual(masks, (u, r, o), text)
            self.assertEqual(rule_string(*masks), canonical)
            self.assertEqual(parse_rule(canonical), masks)
            self.assertEqual(tuple(from_hex(to_hex(m), "x") for m in masks), masks)
            self.assertIsNone(malformed(*masks), text)

    def test_hex_forms(self):
        """Hex strings with or without 0x, in any case, and ints are masks;
        anything else is a 0x1000 error."""
        self.assertEqual(from_hex("2D400000000", "r"), 0x2d400000000)
        self.assertEqual(from_hex("0x200000001", "u"), 0x200000001)
        self.assertEqual(from_hex(0x400000000, "u"), ALL_ID)
        for bad in ("", "xyz", "12 3", "-1", True, -5, 1 << 63):
            with self.assertRaises(APIError, msg=repr(bad)):
                from_hex(bad, "user")

    def test_syntax_errors(self):
        """Bad rule strings name what is wrong."""
        cases = {
            "@1 VM/*": "three components",
            "@1 VM/* USE extra": "three components",
            "1 VM/* USE": "User must be",
            "@x VM/* USE": "User must be",
            "@1 VM USE": "Resource must be",
            "@1 VM/*/* USE": "Resource must be",
            "@1 DISK/* USE": "Unknown resource type 'DISK'",
            "@1 VM/% USE": "Resource ID must be",
            "@1 VM/* READ": "Unknown right 'READ'",
            "#99999999999 VM/* USE": "too big",
        }
        for text, message in cases.items():
            with self.assertRaises(AclSyntaxError, msg=text) as e:
                parse_rule(text)
            self.assertIn(message, str(e.exception), text)

    def test_malformed_masks(self):
        """3.4's AclRule::malformed checks, joined with '; '."""
        vm_all = TYPES["VM"] | ALL_ID
        cases = [
            ((5, vm_all, 1), "[user] is missing one of the INDIVIDUAL, GROUP or ALL bits"),
            ((INDIVIDUAL_ID | GROUP_ID | 1, vm_all, 1), "[user] INDIVIDUAL (#), GROUP (@)"),
            ((ALL_ID | 3, vm_all, 1), "when using the ALL bit, [user] ID must be 0"),
            ((ALL_ID, TYPES["VM"] | 3, 1), "[resource] is missing one of"),
            ((ALL_ID, vm_all | 3, 1), "when using the ALL bit, [resource] ID must be 0"),
            ((ALL_ID, ALL_ID, 1), "[resource] type is missing"),
            ((ALL_ID, ALL_ID | (1 << 50), 1), "wrong [resource] type"),
            ((ALL_ID, vm_all, 0), "wrong [rights], it cannot be 0"),
            ((ALL_ID, vm_all, 0x10), "wrong [rights], it cannot be bigger than 0xF"),
        ]
        for masks, message in cases:
            problem = malformed(*masks)
            self.assertIsNotNone(problem, masks)
            self.assertIn(message, problem)
        self.assertEqual(malformed(5, ALL_ID, 0).count("; "), 2)

    def test_rule_xml(self):
        """<ACL> carries ID, USER, RESOURCE, RIGHTS in hex and STRING."""
        rule = aclm.AclRule(3, *parse_rule("#5 NET/@104 USE"))
        el = rule.to_xml()
        self.assertEqual([(c.tag, c.text) for c in el], [
            ("ID", "3"), ("USER", "100000005"), ("RESOURCE", "4200000068"), ("RIGHTS", "1"),
            ("STRING", "#5 NET/@104 USE")])


#: Users for the permission table: the network is owned by uid 5 (group 100)
#: and belongs to group 101.
OWNER = user(5, 100)
OWNER_IN_GROUP = user(5, 101)
MEMBER = user(6, 101)
STRANGER = user(7, 1)
WHO = {"owner": OWNER, "owner_in_group": OWNER_IN_GROUP, "member": MEMBER,
       "stranger": STRANGER}

#: Which users each class of bit reaches (3.4 PoolObjectAuth::get_acl_rules).
HOLDERS = {"OWNER": {"owner", "owner_in_group"}, "GROUP": {"member", "owner_in_group"},
           "OTHER": {"owner", "owner_in_group", "member", "stranger"}}
OPS = {"U": "USE", "M": "MANAGE", "A": "ADMIN"}


class PermissionBitTests(unittest.TestCase):
    """Each of the nine bits grants exactly one right to exactly its users."""

    def _decide(self, acl):
        for index, name in enumerate(("OWNER_U", "OWNER_M", "OWNER_A", "GROUP_U", "GROUP_M",
                                      "GROUP_A", "OTHER_U", "OTHER_M", "OTHER_A")):
            perms = [0] * 9
            perms[index] = 1
            net = vnet(perms)
            who_class, op_letter = name.split("_")
            for who, u in WHO.items():
                for letter, op in OPS.items():
                    expected = who in HOLDERS[who_class] and letter == op_letter
                    self.assertEqual(authorize(acl, u, op, net), expected,
                                     f"{name}: {who} {op}")
                # Only the default "@1 VM+NET+IMAGE+TEMPLATE/* CREATE" rule gives CREATE.
                self.assertEqual(authorize(acl, u, "CREATE", net), acl is not None and u.gid == 1,
                                 f"{name}: {who} CREATE")

    def test_each_bit_alone(self):
        """Without ACL rules."""
        self._decide(None)

    async def test_each_bit_alone_with_default_rules(self):
        """The default rules (CREATE, HOST) change nothing for networks' USE/MANAGE/ADMIN."""
        db, _ = await open_database(self)
        acl = AclManager(db)
        await acl.load()
        self._decide(acl)

    def test_no_bits(self):
        """With every bit off only administrators pass, the owner included."""
        net = vnet([0] * 9)
        for u in WHO.values():
            for op in OPS.values():
                self.assertFalse(authorize(None, u, op, net))
        for admin in (user(0, 1), user(9, 0)):
            for op in ("USE", "MANAGE", "ADMIN", "CREATE"):
                self.assertTrue(authorize(None, admin, op, net))
                self.assertTrue(authorize(None, admin, op, "VM"))

    def test_default_owner_bits(self):
        """The 3.4 default (um- --- ---): the owner uses and manages, never administers."""
        net = VirtualNetwork(1, "n", 5, 100, "u5", "g100")
        self.assertEqual([authorize(None, OWNER, op, net) for op in ("USE", "MANAGE", "ADMIN")],
                         [True, True, False])
        self.assertFalse(authorize(None, user(6, 100), "USE", net))

    def test_hosts_users_groups_have_no_bits(self):
        """Objects without permission bits are only for administrators (or ACLs)."""
        host = Host(0, "h", "im", "vmm")
        for op in ("USE", "MANAGE", "ADMIN"):
            self.assertFalse(authorize(None, STRANGER, op, host))
            self.assertFalse(authorize(None, STRANGER, op, STRANGER))
        self.assertEqual(aclm.object_auth(STRANGER), aclm.ObjectAuth("USER", 7, -1, 1, None))
        self.assertEqual(aclm.object_auth(host), aclm.ObjectAuth("HOST", 0, -1, -1, None))


class MatchingTests(unittest.TestCase):
    """Stored rules: who they are for and what they cover."""

    async def _acl(self, *rules):
        db, _ = await open_database(self)
        acl = AclManager(db)
        await acl.load()
        for rule in list(acl):
            await acl.del_rule(rule.oid)
        for text in rules:
            await acl.add_rule(*parse_rule(text))
        return acl

    async def test_user_selectors(self):
        """#uid is one user, @gid the users of a group, * everyone."""
        host = Host(3, "h3", "im", "vmm")
        cases = {"#7 HOST/* MANAGE": {7}, "@1 HOST/* MANAGE": {7, 8}, "* HOST/* MANAGE": {7, 8, 9}}
        users = [user(7, 1), user(8, 1), user(9, 100)]
        for text, allowed in cases.items():
            acl = await self._acl(text)
            for u in users:
                self.assertEqual(acl.allows(u, "HOST", host, "MANAGE"), u.oid in allowed,
                                 f"{text}: user {u.oid}")
                self.assertEqual(authorize(acl, u, "MANAGE", host), u.oid in allowed)
            self.assertFalse(acl.allows(users[0], "HOST", host, "ADMIN"), text)

    async def test_resource_selectors(self):
        """#oid is one object, @gid the objects of a group, * all of that type."""
        nets = [vnet([0] * 9, uid=5, gid=101, oid=1), vnet([0] * 9, uid=5, gid=102, oid=2)]
        stranger = user(7, 1)
        cases = {"#7 NET/#1 USE": [True, False], "#7 NET/@102 USE": [False, True],
                 "#7 NET/* USE": [True, True], "#7 VM+IMAGE/* USE": [False, False],
                 "#7 VM+NET/#2 USE+MANAGE": [False, True]}
        for text, expected in cases.items():
            acl = await self._acl(text)
            self.assertEqual([authorize(acl, stranger, "USE", n) for n in nets], expected, text)

    async def test_rights_are_separate(self):
        """A MANAGE rule does not give USE or ADMIN; USE+ADMIN gives both, not MANAGE."""
        acl = await self._acl("* NET/* MANAGE", "#8 NET/* USE+ADMIN")
        net = vnet([0] * 9)
        ops = ("USE", "MANAGE", "ADMIN")
        self.assertEqual([authorize(acl, user(7, 1), op, net) for op in ops],
                         [False, True, False])
        self.assertEqual([authorize(acl, user(8, 1), op, net) for op in ops],
                         [True, True, True])

    async def test_create(self):
        """CREATE needs a rule on all objects of the type (there is no object yet)."""
        acl = await self._acl("@1 VM+NET/* CREATE", "#9 IMAGE/#3 CREATE")
        self.assertTrue(authorize(acl, user(7, 1), "CREATE", "VM"))
        self.assertTrue(authorize(acl, user(7, 1), "CREATE", "NET"))
        self.assertFalse(authorize(acl, user(7, 1), "CREATE", "IMAGE"))
        self.assertFalse(authorize(acl, user(7, 100), "CREATE", "VM"))
        self.assertFalse(authorize(acl, user(9, 100), "CREATE", "IMAGE"))

    async def test_decisions_follow_rule_changes(self):
        """The per-user cache of applicable rules is dropped on every change."""
        acl = await self._acl()
        host = Host(0, "h", "im", "vmm")
        u = user(7, 1)
        self.assertFalse(acl.allows(u, "HOST", host, "MANAGE"))
        rule = await acl.add_rule(*parse_rule("@1 HOST/#0 MANAGE"))
        self.assertTrue(acl.allows(u, "HOST", host, "MANAGE"))
        self.assertTrue(acl.allows((7, 1), "HOST", host, "MANAGE"))
        self.assertFalse(acl.allows((7, 2), "HOST", host, "MANAGE"))
        await acl.del_rule(rule.oid)
        self.assertFalse(acl.allows(u, "HOST", host, "MANAGE"))


class AclStoreTests(unittest.TestCase):
    """AclManager on a real SQLite file."""

    async def test_bootstrap_and_reload(self):
        """A new database gets the two default rules once; rules survive a reopen;
        a deleted rule's id is not given again."""
        db, path = await open_database(self)
        acl = AclManager(db)
        await acl.load()
        self.assertEqual([(r.oid, r.string) for r in acl], [
            (0, "@1 VM+NET+IMAGE+TEMPLATE/* CREATE"), (1, "@1 HOST/* MANAGE")])
        added = await acl.add_rule(*parse_rule("#5 NET/@104 USE"))
        self.assertEqual(added.oid, 2)
        await acl.del_rule(2)
        await acl.del_rule(0)
        await db.close()

        db2, _ = await open_database(self, path)
        again = AclManager(db2)
        await again.load()
        self.assertEqual([(r.oid, r.string) for r in again], [(1, "@1 HOST/* MANAGE")])
        self.assertEqual((await again.add_rule(*parse_rule("* VM/* USE"))).oid, 3)
        rows = await db2.select("SELECT oid, usr, resource, rights FROM acl ORDER BY oid")
        self.assertEqual(rows, [(1, 0x200000001, 0x2400000000, 2),
                                (3, ALL_ID, TYPES["VM"] | ALL_ID, 1)])

    async def test_errors_create_nothing(self):
        """Malformed (0x1000) and duplicate (0x800) rules are refused; unknown ids 0x400."""
        db, _ = await open_database(self)
        acl = AclManager(db)
        await acl.load()
        with self.assertRaises(APIError) as e:
            await acl.add_rule(5, TYPES["VM"], 0)
        self.assertIn("[user] is missing", e.exception.message)
        with self.assertRaises(ActionError) as e:
            await acl.add_rule(*DEFAULT_RULES[1])
        self.assertIn("exists already as rule 1", e.exception.message)
        with self.assertRaises(NoSuchObject):
            await acl.del_rule(42)
        self.assertEqual(len(acl), 2)
        self.assertEqual(len(await db.select("SELECT oid FROM acl")), 2)

    async def test_dump(self):
        """<ACL_POOL> lists every rule by id."""
        db, _ = await open_database(self)
        acl = AclManager(db)
        await acl.load()
        root = etree.fromstring(acl.dump())
        self.assertEqual(root.tag, "ACL_POOL")
        self.assertEqual([(a.findtext("ID"), a.findtext("USER"), a.findtext("RESOURCE"),
                           a.findtext("RIGHTS"), a.findtext("STRING")) for a in root], [
            ("0", "200000001", "2d400000000", "8", "@1 VM+NET+IMAGE+TEMPLATE/* CREATE"),
            ("1", "200000001", "2400000000", "2", "@1 HOST/* MANAGE")])

    async def test_rules_naming(self):
        """The rules a deleted user or group takes with it."""
        db, _ = await open_database(self)
        acl = AclManager(db)
        await acl.load()
        for text in ("#5 NET/* USE", "@100 VM/* CREATE", "#6 NET/@100 USE", "* NET/#5 USE"):
            await acl.add_rule(*parse_rule(text))
        self.assertEqual([r.string for r in acl.rules_naming(uid=5)], ["#5 NET/* USE"])
        self.assertEqual([r.string for r in acl.rules_naming(gid=100)],
                         ["@100 VM/* CREATE", "#6 NET/@100 USE"])


class SessionTests(unittest.TestCase):
    """SESSION_EXPIRATION_TIME: a checked session is trusted for that long."""

    async def _nebula(self, ttl):
        clock = Clock()
        clock.advance(1000)
        directory = os.path.abspath(self.mktemp())
        config = Config(Template.parse(f"SESSION_EXPIRATION_TIME = {ttl}\n"))
        db = Database(reactor, "sqlite", path=os.path.join(directory, "one.db"))
        nebula = Nebula(config, clock, directory, db)
        await nebula.open(("oneadmin", "pw"))
        self.addCleanup(nebula.close)
        return nebula, clock

    async def test_expiry(self):
        """Within the time the password is not checked again; after it, it is."""
        nebula, clock = await self._nebula(900)
        admin = nebula.authenticate("oneadmin:pw")
        self.assertEqual((admin.oid, nebula.sessions.checks), (0, 1))
        clock.advance(899)
        self.assertIs(nebula.authenticate("oneadmin:pw"), admin)
        self.assertEqual(nebula.sessions.checks, 1)
        clock.advance(1)
        self.assertIs(nebula.authenticate("oneadmin:pw"), admin)
        self.assertEqual(nebula.sessions.checks, 2)
        self.assertIn("oneadmin:pw", nebula.sessions)

    async def test_failures_not_cached(self):
        """A wrong password fails every time and is never remembered."""
        nebula, clock = await self._nebula(900)
        for _ in range(2):
            with self.assertRaises(AuthenticationError):
                nebula.authenticate("oneadmin:wrong")
        self.assertEqual((len(nebula.sessions), nebula.sessions.checks), (0, 2))

    async def test_zero_disables(self):
        """SESSION_EXPIRATION_TIME = 0 (3.4's built-in default) checks every time."""
        nebula, clock = await self._nebula(0)
        nebula.authenticate("oneadmin:pw")
        nebula.authenticate("oneadmin:pw")
        self.assertEqual((len(nebula.sessions), nebula.sessions.checks), (0, 2))

    async def test_invalidation(self):
        """A new password or a disabled user ends a cached session at once."""
        nebula, clock = await self._nebula(900)
        admin = nebula.authenticate("oneadmin:pw")
        admin.password = nebula_sha1("new")
        with self.assertRaises(AuthenticationError):
            nebula.authenticate("oneadmin:pw")
        self.assertIs(nebula.authenticate("oneadmin:new"), admin)
        admin.enabled = False
        with self.assertRaises(AuthenticationError):
            nebula.authenticate("oneadmin:new")
        self.assertEqual(len(nebula.sessions), 0)

    def test_limit(self):
        """The cache keeps at most ``limit`` sessions, dropping expired ones first."""
        clock = Clock()
        cache = SessionCache(clock, 10, limit=3)
        users = {i: user(i, 1) for i in range(5)}
        cache.remember("a:1", users[0])
        clock.advance(20)
        for i, s in enumerate(("b:1", "c:1", "d:1"), 1):
            cache.remember(s, users[i])
        self.assertEqual(len(cache), 3)
        self.assertNotIn("a:1", cache)
        cache.remember("e:1", users[4])
        self.assertEqual(len(cache), 3)
        self.assertNotIn("b:1", cache)
        self.assertIs(cache.lookup("e:1", users), users[4])
        cache.forget_user(4)
        self.assertIsNone(cache.lookup("e:1", users))


def nebula_sha1(text):
    from nebtwist.core.nebula import sha1_hex

    return sha1_hex(text)
