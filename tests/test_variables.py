"""VM template variables (nebtwist.core.variables): the parser, the expander
with a plain lookup, VMLookup over real pool objects, and expansion at
allocation through the DispatchManager (real SQLite core, fake drivers)."""

import base64
import os

from lxml import etree
from twisted.trial import unittest

from nebtwist.core.objects import (HOST_MONITORED, PENDING, User, VirtualMachine,
                                   VirtualNetwork)
from nebtwist.core.scheduler import Scheduler
from nebtwist.core.variables import (USER_FIELDS, Variable, VariableSyntaxError, VMLookup,
                                     expand, parse)
from nebtwist.errors import APIError, AuthorizationError
from nebtwist.template import Template

from tests.test_lcm import Core


class DictLookup:
    """A lookup answering from dicts, recording what it was asked."""

    def __init__(self, singles=None, vectors=None):
        self.singles = singles or {}
        self.vectors = vectors or {}
        self.asked = []

    def single(self, name):
        self.asked.append((name,))
        return self.singles.get(name)

    def vector(self, name, attribute, key, value):
        self.asked.append((name, attribute, key, value))
        return self.vectors.get((name, attribute, key, value))


class ParseTests(unittest.TestCase):
    """The grammar of 3.4 vm_var_parser.l / vm_var_syntax.y."""

    def test_literal_only(self):
        self.assertEqual(parse(""), [])
        self.assertEqual(parse("no variables, [brackets] = fine"),
                         ["no variables, [brackets] = fine"])

    def test_forms(self):
        self.assertEqual(parse("$name"), [Variable("NAME", text="$name")])
        self.assertEqual(parse("$nic[ip]"), [Variable("NIC", "IP", text="$nic[ip]")])
        self.assertEqual(parse('$Nic[Ip, Network="Public Net"]'),
                         [Variable("NIC", "IP", "NETWORK", "Public Net",
                                   '$Nic[Ip, Network="Public Net"]')])
        self.assertEqual(parse("$NIC[IP,NETWORK_ID=12]"),
                         [Variable("NIC", "IP", "NETWORK_ID", "12", "$NIC[IP,NETWORK_ID=12]")])
        self.assertEqual(parse("$1_A"), [Variable("1_A", text="$1_A")])

    def test_blanks_inside_brackets(self):
        text = '$NIC[ \tIP \t, \tNETWORK \t= \t"x" \t]'
        self.assertEqual(parse(text), [Variable("NIC", "IP", "NETWORK", "x", text)])

    def test_quoted_value_keeps_everything(self):
        (var,) = parse('$NIC[IP, NETWORK="a $b ], c=d\nE"]')
        self.assertEqual(var.value, "a $b ], c=d\nE")
        (var,) = parse('$NIC[IP, NETWORK=""]')
        self.assertEqual(var.value, "")

    def test_where_a_variable_ends(self):
        """Any character after a complete variable is literal text; ``[``
        right after the name starts the bracket part, ``$`` the next variable."""
        self.assertEqual(parse("a$X.b"), ["a", Variable("X", text="$X"), ".b"])
        self.assertEqual(parse("$A$B"), [Variable("A", text="$A"), Variable("B", text="$B")])
        self.assertEqual(parse("$A [x]"), [Variable("A", text="$A"), " [x]"])
        self.assertEqual(parse("$NIC[IP]x]"), [Variable("NIC", "IP", text="$NIC[IP]"), "x]"])
        # 3.4 made these syntax errors; here the text after the variable is kept.
        for text, rest in (("$NAME, hi", ", hi"), ("$NAME = 1", " = 1"), ("$NAME ]", " ]")):
            self.assertEqual(parse(text), [Variable("NAME", text="$NAME"), rest])

    def test_round_trip(self):
        text = 'ip=$NIC[IP, NETWORK="public"] name=$NAME$VMID [$USER[ NAME ]]\n'
        self.assertEqual("".join(p if isinstance(p, str) else p.text for p in parse(text)),
                         text)

    def test_errors(self):
        """Each malformed form is refused, naming what was expected and where."""
        cases = [
            ("$", "a variable name after '$'", 1, 2),
            ("$$", "a variable name after '$'", 1, 2),
            ("price 5$ each", "a variable name after '$'", 1, 9),
            ("$ NAME", "a variable name after '$'", 1, 2),
            ("$NIC[", "an attribute name after '['", 1, 6),
            ("$NIC[]", "an attribute name after '['", 1, 6),
            ("$NIC[IP", "',' or ']' after IP", 1, 8),
            ("$NIC[IP IP]", "',' or ']' after IP", 1, 9),
            ("$NIC[IP,]", "KEY=VALUE after ','", 1, 9),
            ("$NIC[IP, NETWORK]", "'=' after NETWORK", 1, 17),
            ("$NIC[IP, NETWORK=]", "a value after '='", 1, 18),
            ("$NIC[IP, NETWORK=a-b]", "']' after the value", 1, 19),
            ("$NIC[IP, NETWORK=my_net]", "']' after the value", 1, 20),
            ("$NIC[IP, NETWORK=-x]", "a value after '='", 1, 18),
            ('$NIC[IP, NETWORK="x]', "a closing '\"'", 1, 18),
            ('$NIC[IP, NETWORK="x" y]', "']' after the value", 1, 22),
            ("ok\n  $NIC[IP\n]", "',' or ']' after IP", 2, 10),
        ]
        for text, expecting, line, column in cases:
            with self.assertRaises(VariableSyntaxError, msg=text) as e:
                parse(text)
            self.assertIn(f"expecting {expecting}", e.exception.message, text)
            self.assertEqual((e.exception.line, e.exception.column), (line, column), text)
            self.assertIn(f"at line {line}, columns {column}:", str(e.exception), text)

    def test_error_names_what_was_found(self):
        with self.assertRaises(VariableSyntaxError) as e:
            parse("$NIC[IP")
        self.assertEqual(e.exception.message,
                         'syntax error in variable "$NIC[IP": expecting \',\' or \']\' after '
                         "IP, found end of text")
        with self.assertRaises(VariableSyntaxError) as e:
            parse("$NIC[IP foo]")
        self.assertIn("found 'foo'", e.exception.message)
        self.assertEqual((e.exception.column, e.exception.end_column), (9, 11))

    def test_not_a_string(self):
        with self.assertRaises(TypeError):
            parse(b"$NAME")


class ExpandTests(unittest.TestCase):
    """expand() with a plain lookup."""

    def test_expansion(self):
        lookup = DictLookup({"NAME": "vm1", "VMID": "7"},
                            {("NIC", "IP", "NETWORK", "Public"): "192.168.0.5",
                             ("NIC", "MAC", None, None): "02:00:c0:a8:00:05"})
        text = 'host=$name-$VMID ip=$NIC[IP, NETWORK="Public"] mac=$NIC[mac] x=$MISSING.'
        self.assertEqual(expand(text, lookup),
                         "host=vm1-7 ip=192.168.0.5 mac=02:00:c0:a8:00:05 x=.")
        self.assertEqual(lookup.asked, [("NAME",), ("VMID",), ("NIC", "IP", "NETWORK", "Public"),
                                        ("NIC", "MAC", None, None), ("MISSING",)])

    def test_selector_value_case_is_kept(self):
        lookup = DictLookup(vectors={("NIC", "IP", "NETWORK", "Public"): "1.2.3.4"})
        self.assertEqual(expand('$NIC[IP, NETWORK="public"]', lookup), "")
        self.assertEqual(expand("$NIC[IP, NETWORK=Public]", lookup), "1.2.3.4")

    def test_syntax_error_looks_nothing_up(self):
        lookup = DictLookup({"NAME": "x"})
        with self.assertRaises(VariableSyntaxError):
            expand("$NAME $NIC[IP", lookup)
        self.assertEqual(lookup.asked, [])


def _vm(template_text, oid=7, uid=3):
    return VirtualMachine(oid, "vm7", uid, 1, "helen", "users", None,
                          Template.parse(template_text), state=PENDING)


def _vnet(oid, name, template_text):
    vnet = VirtualNetwork(oid, name, 0, 0, "oneadmin", "oneadmin",
                          template=Template.parse(template_text), bridge="br0")
    return vnet


def _decode(b64):
    return etree.fromstring(base64.b64decode(b64))


class FakeImage:
    """An image as the image pool will hold it: a template and an info body."""

    def __init__(self, oid, template_text):
        self.oid = oid
        self.template = Template.parse(template_text)

    def info(self):
        return f"<IMAGE><ID>{self.oid}</ID>{self.template.to_xml_string()}</IMAGE>"


VM_TEXT = """
NAME = vm7
VMID = 7
CPU = 1
NIC = [ NETWORK = "private", NETWORK_ID = 1, IP = "10.0.0.9" ]
NIC = [ NETWORK = "public", NETWORK_ID = 4, IP = "192.168.0.5" ]
DISK = [ IMAGE = "ttylinux", IMAGE_ID = 12, TARGET = hda ]
DISK = [ SOURCE = "/srv/raw.img" ]
GRAPHICS = [ TYPE = vnc ]
"""


class VMLookupTests(unittest.TestCase):
    """What each variable means for a VM (3.4 insert_single/insert_vector)."""

    def setUp(self):
        self.helen = User(3, "helen", "secret-sha1", 1, "users",
                          template=Template.parse('SSH_KEY = "ssh-rsa AAA helen"\nNAME = nick'))
        self.vnets = {1: _vnet(1, "private", "NAME = private\nDNS = 10.0.0.1"),
                      4: _vnet(4, "public", "NAME = public\nGATEWAY = 192.168.0.1"),
                      9: _vnet(9, "other", "NAME = other\nGATEWAY = 9.9.9.9")}
        self.images = {12: FakeImage(12, 'NAME = ttylinux\nDESCRIPTION = "tiny linux"')}
        self.vm = _vm(VM_TEXT)
        self.lookup = VMLookup(self.vm, {3: self.helen}, self.vnets, self.images)

    def x(self, text):
        return expand(text, self.lookup)

    def test_singles(self):
        self.assertEqual(self.x("$NAME/$VMID/$cpu/$UID"), "vm7/7/1/3")
        self.assertEqual(self.x("[$MISSING]"), "[]")
        self.assertEqual(self.x("[$NIC]"), "[]", "a vector asked as a single")

    def test_template_is_the_vm_xml(self):
        root = _decode(self.x("$TEMPLATE"))
        self.assertEqual(root.tag, "VM")
        self.assertEqual(root.findtext("ID"), "7")
        self.assertEqual(root.findtext("TEMPLATE/NIC/IP"), "10.0.0.9")

    def test_vectors(self):
        self.assertEqual(self.x("$NIC[IP]"), "10.0.0.9", "the first NIC")
        self.assertEqual(self.x('$NIC[IP, NETWORK="public"]'), "192.168.0.5")
        self.assertEqual(self.x("$nic[ip, network_id=4]"), "192.168.0.5")
        self.assertEqual(self.x('$NIC[IP, NETWORK="nosuch"]'), "")
        self.assertEqual(self.x("$NIC[NOSUCH]"), "")
        self.assertEqual(self.x("$GRAPHICS[TYPE]"), "vnc")
        self.assertEqual(self.x("$NAME[X]"), "", "a single asked as a vector")
        self.assertEqual(self.x('$DISK[SOURCE, IMAGE=""]'), "/srv/raw.img",
                         'a missing key equals ""')

    def test_network(self):
        self.assertEqual(self.x('$NETWORK[GATEWAY, NETWORK="public"]'), "192.168.0.1")
        self.assertEqual(self.x("$NETWORK[DNS, NETWORK_ID=1]"), "10.0.0.1")
        self.assertEqual(self.x('$NETWORK[GATEWAY, NETWORK="other"]'), "",
                         "only networks of the VM's NICs")
        self.assertEqual(self.x("$NETWORK[GATEWAY, NETWORK_ID=9]"), "")
        self.assertEqual(self.x("$NETWORK[GATEWAY]"), "", "a selector is needed")
        self.assertEqual(self.x('$NETWORK[GATEWAY, BRIDGE="br0"]'), "",
                         "only NETWORK and NETWORK_ID select")
        root = _decode(self.x('$NETWORK[TEMPLATE, NETWORK="public"]'))
        self.assertEqual((root.tag, root.findtext("ID"), root.findtext("TEMPLATE/GATEWAY")),
                         ("VNET", "4", "192.168.0.1"))
        self.assertIsNotNone(root.find("LEASES"), "with its leases, as 3.4's extended XML")

    def test_network_gone(self):
        del self.vnets[4]
        self.assertEqual(self.x('$NETWORK[GATEWAY, NETWORK="public"]'), "")

    def test_image(self):
        self.assertEqual(self.x('$IMAGE[DESCRIPTION, IMAGE="ttylinux"]'), "tiny linux")
        self.assertEqual(self.x("$IMAGE[NAME, IMAGE_ID=12]"), "ttylinux")
        self.assertEqual(self.x('$IMAGE[NAME, IMAGE="nosuch"]'), "")
        root = _decode(self.x("$IMAGE[TEMPLATE, IMAGE_ID=12]"))
        self.assertEqual(root.findtext("TEMPLATE/NAME"), "ttylinux")

    def test_image_without_image_pool(self):
        lookup = VMLookup(self.vm, {3: self.helen}, self.vnets, None)
        self.assertEqual(expand('$IMAGE[NAME, IMAGE="ttylinux"]', lookup), "")

    def test_user(self):
        self.assertEqual(self.x("$USER[SSH_KEY]"), "ssh-rsa AAA helen")
        self.assertEqual(self.x("$USER[NAME]"), "nick", "the template comes first")
        self.helen.template.remove("NAME")
        self.assertEqual(self.x("$USER[NAME]/$USER[ID]/$USER[GNAME]/$USER[GID]"),
                         "helen/3/users/1")
        self.assertEqual(self.x("$USER[AUTH_DRIVER]/$USER[ENABLED]/$USER[NOSUCH]"), "core/1/")
        self.assertEqual(set(USER_FIELDS),
                         {"ID", "NAME", "GID", "GNAME", "AUTH_DRIVER", "ENABLED"})

    def test_user_password_never_shown(self):
        self.assertEqual(self.x("$USER[PASSWORD]"), "")
        root = _decode(self.x("$USER[TEMPLATE]"))
        self.assertEqual(root.findtext("NAME"), "helen")
        self.assertIsNone(root.find("PASSWORD"))
        self.assertNotIn(b"secret-sha1", etree.tostring(root))
        self.assertEqual(self.helen.password, "secret-sha1", "the user is not changed")

    def test_user_gone(self):
        lookup = VMLookup(self.vm, {}, self.vnets)
        self.assertEqual(expand("$USER[NAME]", lookup), "")


# ---------------------------------------------------------------------------
# At allocation


NET = ('NAME = "{name}"\nTYPE = RANGED\nBRIDGE = br0\nNETWORK_ADDRESS = {addr}\n'
       'NETWORK_SIZE = C\nGATEWAY = {gw}\n')


class AllocationTests(unittest.TestCase):
    """expand_vm as DispatchManager.allocate runs it."""

    async def _core(self):
        core = await Core.make(self)
        await core.requests.vn_allocate(core.admin, NET.format(name="private", addr="10.0.0.0",
                                                               gw="10.0.0.1"))
        await core.requests.vn_allocate(core.admin, NET.format(name="public",
                                                               addr="192.168.0.0",
                                                               gw="192.168.0.1"))
        return core

    async def test_context_expanded(self):
        core = await self._core()
        vm = await core.dm.allocate(core.admin, """
            NAME = web
            NIC = [ NETWORK = "private" ]
            NIC = [ NETWORK = "public" ]
            CONTEXT = [ ip_public = "$NIC[IP, NETWORK=\\"public\\"]", hostname = "$NAME-$VMID",
                        gateway = "$NETWORK[GATEWAY, NETWORK=\\"public\\"]",
                        user = "$USER[NAME]", owner = "$UID", files = "/srv/a /srv/b" ]
            GRAPHICS = [ TYPE = vnc ]
            """)
        ctx = vm.template.get("CONTEXT")
        self.assertEqual(ctx, {"IP_PUBLIC": "192.168.0.1", "HOSTNAME": f"web-{vm.oid}",
                               "GATEWAY": "192.168.0.1", "USER": "oneadmin", "OWNER": "0",
                               "FILES": "/srv/a /srv/b", "TARGET": "hdb"})
        self.assertEqual(vm.template.names()[-1], "CONTEXT", "taken out and put back, as 3.4")
        stored = core.nebula.vmpool.get(vm.oid)
        self.assertIn("<IP_PUBLIC><![CDATA[192.168.0.1]]></IP_PUBLIC>", stored.body())

    async def test_target(self):
        core = await self._core()
        vm = await core.dm.allocate(core.admin, 'CONTEXT = [ TARGET = "sdc", A = "$NAME" ]')
        self.assertEqual(vm.template.get("CONTEXT")["TARGET"], "sdc")
        core.nebula.config.template.set("DEFAULT_DEVICE_PREFIX", "vd")
        vm = await core.dm.allocate(core.admin, 'CONTEXT = [ TARGET = "", A = "$NAME" ]')
        self.assertEqual(vm.template.get("CONTEXT")["TARGET"], "vdb")

    async def test_template_in_context_is_the_vm_without_context(self):
        core = await self._core()
        vm = await core.dm.allocate(core.admin, 'CONTEXT = [ T = "$TEMPLATE" ]\nX = y')
        root = _decode(vm.template.get("CONTEXT")["T"])
        self.assertEqual(root.findtext("ID"), str(vm.oid))
        self.assertEqual(root.findtext("TEMPLATE/X"), "y")
        self.assertIsNone(root.find("TEMPLATE/CONTEXT"))

    async def test_requirements_expanded_before_scheduling(self):
        """REQUIREMENTS = NAME = "$WANTED" puts the VM on host02, and what is
        stored and compiled is the expanded expression."""
        core = await self._core()
        for i in range(3):
            h = await core.host(f"host0{i}")
            h.state = HOST_MONITORED
        vm = await core.dm.allocate(core.admin, 'CPU = 0.1\nMEMORY = 8\nWANTED = host02\n'
                                                'REQUIREMENTS = "NAME = \\"$WANTED\\""\n')
        self.assertEqual(vm.template.get("REQUIREMENTS"), 'NAME = "host02"')
        await Scheduler(core.nebula, core.dm).cycle()
        self.assertEqual(vm.last_history.hostname, "host02")
        ip = await core.dm.allocate(core.admin, 'CPU = 0.1\nMEMORY = 8\nNIC = [ NETWORK = '
                                                '"public" ]\nREQUIREMENTS = "NAME = \\"$NIC[IP]\\""\n')
        self.assertEqual(ip.template.get("REQUIREMENTS"), 'NAME = "192.168.0.1"')

    async def test_refused_and_nothing_created(self):
        """Malformed variables and misplaced CONTEXT/REQUIREMENTS: APIError,
        no VM, the NIC's lease given back, the VM id reused."""
        core = await self._core()
        public = [v for v in core.nebula.vnpool if v.name == "public"][0]
        nic = 'NIC = [ NETWORK = "public" ]\n'
        cases = [
            ('CONTEXT = [ IP = "$NIC[IP" ]', "Error parsing CONTEXT/IP: syntax error"),
            ('CONTEXT = [ A = "ok", B = "5$" ]', "Error parsing CONTEXT/B"),
            ('REQUIREMENTS = "ID = $$"', "Error parsing REQUIREMENTS"),
            ('CONTEXT = [ A = 1 ]\nCONTEXT = [ B = 2 ]', "Only one CONTEXT"),
            ("CONTEXT = 1", "Wrong format for CONTEXT"),
            ('REQUIREMENTS = "ID = 1"\nREQUIREMENTS = "ID = 2"', "Only one REQUIREMENTS"),
            ("REQUIREMENTS = [ A = 1 ]", "Wrong format for REQUIREMENTS"),
            ('REQUIREMENTS = "ID = $NAME["', "Error parsing REQUIREMENTS"),
            ('WANT = "ID >"\nREQUIREMENTS = "$WANT"', "Wrong expression"),
        ]
        first = await core.dm.allocate(core.admin, nic)
        leases_before = dict(public.leases)
        for text, words in cases:
            with self.assertRaises(APIError, msg=text) as e:
                await core.dm.allocate(core.admin, nic + text)
            self.assertIn(words, e.exception.message, text)
            self.assertEqual([v.oid for v in core.nebula.vmpool], [first.oid], text)
            self.assertEqual(public.leases.keys(), leases_before.keys(), text)
        second = await core.dm.allocate(core.admin, nic)
        self.assertEqual(second.oid, first.oid + 1)
        self.assertFalse(os.path.exists(core.nebula.vm_dir(first.oid + 2)))

    async def test_files_restricted_to_admins(self):
        """CONTEXT/FILES reads front-end files: 3.4's VM_RESTRICTED_ATTR."""
        core = await self._core()
        uid = await core.requests.user_allocate(core.admin, "helen", "pw")
        helen = core.nebula.userpool.get(uid)
        with self.assertRaises(AuthorizationError) as e:
            await core.dm.allocate(helen, 'CONTEXT = [ FILES = "/etc/shadow" ]')
        self.assertIn("restricted attribute CONTEXT/FILES", e.exception.message)
        self.assertEqual(len(core.nebula.vmpool), 0)
        vm = await core.dm.allocate(helen, 'CONTEXT = [ FILES = "", U = "$USER[NAME]" ]')
        self.assertEqual(vm.template.get("CONTEXT")["U"], "helen")
        vm = await core.dm.allocate(core.admin, 'CONTEXT = [ FILES = "/etc/hostname" ]')
        self.assertEqual(vm.template.get("CONTEXT")["FILES"], "/etc/hostname")
