"""API tests of the XML-RPC front, against a whole daemon in the test process.

Every test starts nebtwist with :func:`nebtwist.testing.start_nebula` (trial's
real reactor, the shipped dummy drivers, a fresh ``ONE_LOCATION``, an
ephemeral port) and talks to it over HTTP with ``treq``, as a client would.
Bodies are checked against the OpenNebula 3.4 XML schemas, found beside the
checkout in ``../shared/reference/opennebula-3.4-xsd`` (tests needing them
are skipped when that folder is absent).
"""

import os
import xmlrpc.client

from lxml import etree
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from nebtwist import testing
from nebtwist.api.xmlrpc import RequestManager
from nebtwist.core.nebula import Nebula
from nebtwist.core.requests import Requests
from nebtwist.errors import (
    ACTION,
    AUTHENTICATION,
    AUTHORIZATION,
    NO_EXISTS,
    SUCCESS,
    XML_RPC_API,
)
from nebtwist.testing import start_nebula, without_sched_message

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The OpenNebula 3.4 schemas (``share/doc/xsd`` of release-3.4.1).
XSD_DIR = os.path.join(os.path.dirname(REPO), "shared", "reference", "opennebula-3.4-xsd")

#: Their target namespace; oned's bodies carry none, so tests add it.
ONE_NS = "http://opennebula.org/XMLSchema"

#: Root element -> schema file.
SCHEMA_FILES = {
    "USER": "user.xsd", "USER_POOL": "user_pool.xsd",
    "GROUP": "group.xsd", "GROUP_POOL": "group_pool.xsd",
    "HOST": "host.xsd", "HOST_POOL": "host_pool.xsd",
    "VNET": "vnet.xsd", "VNET_POOL": "vnet_pool.xsd",
    "VM": "vm.xsd", "VM_POOL": "vm_pool.xsd",
}

#: VM and host states used below (``include/VirtualMachine.h``, ``include/Host.h``).
PENDING, HOLD, ACTIVE, DONE, FAILED = 1, 2, 3, 6, 7
RUNNING = 3
HOST_MONITORED = 2

ADMIN = testing.ONEADMIN_SESSION
HELEN = "helen:helenpass"
BOB = "bob:bobpass"

#: A VM no host can take (REQUIREMENTS never true): it stays PENDING.
UNPLACEABLE = 'CPU = 0.1\nMEMORY = 64\nREQUIREMENTS = "ID > 1000"\n'

#: A small VM the dummy host takes at once.
SMALL = "CPU = 0.1\nMEMORY = 64\n"

RANGED_NET = """
NAME = "public"
TYPE = RANGED
BRIDGE = br0
NETWORK_ADDRESS = 192.168.0.0
NETWORK_SIZE = C
"""

FIXED_NET = """
NAME = "fixed"
TYPE = FIXED
BRIDGE = br1
LEASES = [ IP = 10.1.0.1 ]
LEASES = [ IP = 10.1.0.2, MAC = "02:00:0a:01:00:99" ]
"""

#: A FIXED network with a single lease.
TINY_NET = """
NAME = "tiny"
TYPE = FIXED
BRIDGE = br2
LEASES = [ IP = 10.2.0.1 ]
"""


# ------------------------------------------------------------------ helpers


def xml(body):
    """Parse an XML body (str)."""
    return etree.fromstring(body.encode("utf-8"))


def with_namespace(body):
    """Parse ``body`` and put every element in the OpenNebula namespace."""
    root = xml(body)
    for el in root.iter():
        if isinstance(el.tag, str):
            el.tag = f"{{{ONE_NS}}}{el.tag}"
    return root


_schemas = {}


def schema_for(root_name):
    """The compiled 3.4 schema for a root element (loaded from its folder,
    so that pool schemas find the object schema they include)."""
    if root_name not in _schemas:
        path = os.path.join(XSD_DIR, SCHEMA_FILES[root_name])
        _schemas[root_name] = etree.XMLSchema(etree.parse(path))
    return _schemas[root_name]


def schema_errors(body):
    """The 3.4 schema's complaints about ``body`` (empty list: valid).

    A VM's ``USER_TEMPLATE`` (OpenNebula 4.x, after ``TEMPLATE``: the
    scheduler's ``SCHED_MESSAGE``) is the one element newer than 3.4's
    vm.xsd; it is checked here (only SCHED_MESSAGE, right after TEMPLATE) and
    then left out of the 3.4 validation."""
    root = with_namespace(body)
    errors = []
    for user in root.iter(f"{{{ONE_NS}}}USER_TEMPLATE"):
        previous = user.getprevious()
        if previous is None or etree.QName(previous).localname != "TEMPLATE":
            errors.append("USER_TEMPLATE not right after TEMPLATE")
        if [etree.QName(c).localname for c in user] != ["SCHED_MESSAGE"]:
            errors.append(f"USER_TEMPLATE holds {[etree.QName(c).localname for c in user]}")
        user.getparent().remove(user)
    if errors:
        return errors
    schema = schema_for(etree.QName(root).localname)
    if schema.validate(root):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


def require_xsd(testcase):
    """Skip ``testcase`` when the 3.4 schemas are not beside the checkout."""
    if not os.path.isdir(XSD_DIR):
        testcase.skipTest(f"OpenNebula 3.4 XSDs not found at {XSD_DIR} "
                          "(CI runs with shared/ beside the checkout)")


async def wait_for(predicate, what, timeout=90.0, step=0.05):
    """Poll the async ``predicate`` on the real reactor's clock until it is true.

    :raises AssertionError: still false after ``timeout`` seconds.
    """
    deadline = reactor.seconds() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if reactor.seconds() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await deferLater(reactor, step, lambda: None)


async def ok(neb, method, *args, session=ADMIN):
    """Call ``method``; assert the 3.4 success shape and return the value."""
    response = await neb.call(method, *args, session=session)
    assert len(response) == 3 and response[0] is True and response[2] == SUCCESS, \
        f"{method}{args} failed: {response}"
    return response[1]


async def vm_state(neb, vid):
    """``(STATE, LCM_STATE)`` of a VM, read through the API."""
    root = xml(await ok(neb, "one.vm.info", vid))
    return int(root.findtext("STATE")), int(root.findtext("LCM_STATE"))


async def wait_vm(neb, vid, state, lcm=None, timeout=90.0):
    """Wait until VM ``vid`` is in ``state`` (and ``lcm``)."""
    async def reached():
        s, l = await vm_state(neb, vid)
        return s == state and (lcm is None or l == lcm)

    await wait_for(reached, f"VM {vid} to reach state {state}/{lcm}", timeout)


async def wait_host_monitored(neb, hid):
    """Wait until host ``hid`` has been monitored (it then has capacity)."""
    async def monitored():
        root = xml(await ok(neb, "one.host.info", hid))
        return int(root.findtext("STATE")) == HOST_MONITORED

    await wait_for(monitored, f"host {hid} to be MONITORED")


def leases(vnet_body):
    """``[(IP, MAC, USED, VID)]`` of a ``one.vn.info`` body."""
    return [(el.findtext("IP"), el.findtext("MAC"), int(el.findtext("USED")),
             int(el.findtext("VID")))
            for el in xml(vnet_body).findall("LEASES/LEASE")]


def nics(vm_body):
    """The NIC vectors of a VM body as dicts."""
    return [{c.tag: c.text or "" for c in nic}
            for nic in xml(vm_body).findall("TEMPLATE/NIC")]


def pool_ids(pool_body):
    """The object IDs listed in a pool body."""
    return [int(el.findtext("ID")) for el in xml(pool_body)]


def assert_failure(testcase, response, method_name, code, pattern=None):
    """``response`` is ``[False, "[MethodName] ...", code]`` (message matching ``pattern``)."""
    testcase.assertEqual(len(response), 3, response)
    testcase.assertIs(response[0], False, response)
    testcase.assertIsInstance(response[1], str)
    testcase.assertTrue(response[1].startswith(f"[{method_name}] "), response)
    testcase.assertEqual(response[2], code, response)
    if pattern is not None:
        testcase.assertRegex(response[1], pattern)


async def add_user(neb, session):
    """Create the user of ``name:password`` ``session``; returns its id."""
    name, password = session.split(":", 1)
    return await ok(neb, "one.user.allocate", name, password)


# ------------------------------------------------------------------ the fixture


class StartNebulaTests(TestCase):
    """:func:`nebtwist.testing.start_nebula`: a daemon and a client for a test."""

    async def test_started(self):
        """The daemon listens on an ephemeral port under a fresh ONE_LOCATION,
        with the fast timers, and oneadmin's password from the one_auth file."""
        neb = await start_nebula(self)
        self.assertNotEqual(neb.port, 0)
        self.assertEqual(neb.url, f"http://127.0.0.1:{neb.port}/RPC2")
        self.assertIs(neb.nebula, neb.service.nebula)
        self.assertTrue(os.path.isfile(os.path.join(neb.var_dir, "one.db")))
        self.assertEqual(os.path.dirname(neb.var_dir), neb.one_location)
        config = neb.nebula.config
        self.assertEqual(config.get("SCHED_INTERVAL"), "0.2")
        self.assertEqual(config.get("MANAGER_TIMER"), "0.2")
        self.assertEqual(config.get_int("HOST_MONITORING_INTERVAL"), 1)
        self.assertEqual(config.get_int("VM_POLLING_INTERVAL"), 1)
        self.assertEqual(neb.failures, [])
        user = xml(await ok(neb, "one.user.info", 0))
        self.assertEqual(user.findtext("NAME"), "oneadmin")
        response = await neb.call("one.user.info", 0, session="oneadmin:other")
        self.assertEqual(response[2], AUTHENTICATION)

    async def test_overrides(self):
        """The caller's overrides are applied, and replace a fast default of the same key."""
        neb = await start_nebula(self, ["MAC_PREFIX=\"0a:0b\"", "SCHED_INTERVAL=7"])
        config = neb.nebula.config
        self.assertEqual(config.get("MAC_PREFIX"), "0a:0b")
        self.assertEqual(config.template.get_all("SCHED_INTERVAL"), ["7"])
        self.assertEqual(config.get("MANAGER_TIMER"), "0.2")

    async def test_two_daemons(self):
        """Two daemons in one test are independent."""
        one = await start_nebula(self)
        two = await start_nebula(self)
        self.assertNotEqual(one.port, two.port)
        self.assertNotEqual(one.var_dir, two.var_dir)
        self.assertEqual(await ok(one, "one.host.allocate", "h", "im_dummy", "vmm_dummy", -1), 0)
        self.assertEqual(pool_ids(await ok(two, "one.hostpool.info")), [])

    async def test_raw_post(self):
        """raw_post answers the HTTP status and the raw body."""
        neb = await start_nebula(self)
        body = xmlrpc.client.dumps((ADMIN, 0), methodname="one.user.info").encode()
        status, content = await neb.raw_post(body)
        self.assertEqual(status, 200)
        (response,), _ = xmlrpc.client.loads(content)
        self.assertIs(response[0], True)

    async def test_large_values_as_cdata(self):
        """A large string value is sent as CDATA (with ']]>' inside split safely)
        and reads back exactly; small ones use the standard escaping."""
        neb = await start_nebula(self)
        text = 'NAME = big\nNOTE = "' + "x]]>y<&" * 400 + '"\n'
        ((ok_, vid, _),), _ = xmlrpc.client.loads(
            (await neb.raw_post(xmlrpc.client.dumps((ADMIN, text), "one.vm.allocate").encode()))[1])
        self.assertIs(ok_, True)
        status, content = await neb.raw_post(
            xmlrpc.client.dumps((ADMIN, vid), methodname="one.vm.info").encode())
        self.assertIn(b"<string><![CDATA[<VM>", content)
        (response,), _ = xmlrpc.client.loads(content)
        self.assertEqual(response, [True, neb.nebula.vmpool.get(vid).info(), 0])
        self.assertEqual(etree.fromstring(response[1]).findtext("TEMPLATE/NOTE"),
                         "x]]>y<&" * 400)
        _, small = await neb.raw_post(
            xmlrpc.client.dumps(("oneadmin:wrong", vid), methodname="one.vm.info").encode())
        self.assertNotIn(b"CDATA", small)

    async def test_start_failure(self):
        """A daemon that cannot start raises from start_nebula and records the failure
        (its drivers are still stopped by the cleanups)."""
        from nebtwist.tap import StartupError

        busy = reactor.listenTCP(0, server.Site(resource.Resource()), interface="127.0.0.1")
        self.addCleanup(busy.stopListening)
        port = busy.getHost().port
        with self.assertRaises(StartupError) as raised:
            await start_nebula(self, [f'LISTEN="tcp:{port}:interface=127.0.0.1"'])
        self.assertIn(f"XML-RPC API: Couldn't listen on 127.0.0.1:{port}", str(raised.exception))
        self.flushLoggedErrors(StartupError)


# ------------------------------------------------------------------ schemas


class SchemaTests(TestCase):
    """Every XML body kind validates against its OpenNebula 3.4 schema."""

    def setUp(self):
        require_xsd(self)

    async def build_state(self, neb):
        """Hosts (1.4 form with a TM, current form, one in ERROR, one DISABLED),
        users, a RANGED and a FIXED network, and VMs: PENDING, RUNNING after a
        live migration (two history records), DONE, FAILED."""
        down = os.path.join(neb.var_dir, "dummy", "down")
        os.makedirs(down)
        open(os.path.join(down, "hostdown"), "w").close()
        h14 = await ok(neb, "one.host.allocate", "host14", "im_dummy", "vmm_dummy", "tm_dummy")
        hnow = await ok(neb, "one.host.allocate", "hostnow", "im_dummy", "vmm_dummy", -1)
        hdown = await ok(neb, "one.host.allocate", "hostdown", "im_dummy", "vmm_dummy", -1)
        hoff = await ok(neb, "one.host.allocate", "hostoff", "im_dummy", "vmm_dummy", -1)
        await ok(neb, "one.host.enable", hoff, False)
        await add_user(neb, HELEN)
        ranged = await ok(neb, "one.vn.allocate", RANGED_NET)
        fixed = await ok(neb, "one.vn.allocate", FIXED_NET)
        await wait_host_monitored(neb, h14)
        await wait_host_monitored(neb, hnow)
        pending = await ok(neb, "one.vm.allocate", UNPLACEABLE + 'NAME = "pending"\n')
        running = await ok(neb, "one.vm.allocate", SMALL + f"""
            NAME = "running"
            REQUIREMENTS = "ID = {h14}"
            NIC = [ NETWORK_ID = {ranged} ]
            NIC = [ NETWORK = "fixed" ]
            DISK = [ SOURCE = "/srv/images/ttylinux.img", TARGET = hda ]
            CONTEXT = [ HOSTNAME = "vm-$VMID", EMPTY = "" ]
            """)
        done = await ok(neb, "one.vm.allocate", SMALL + f'NAME = "done"\n'
                                                        f'NIC = [ NETWORK_ID = {ranged} ]\n')
        failed = await ok(neb, "one.vm.allocate", SMALL + f"""
            NAME = "failed"
            REQUIREMENTS = "ID = {h14}"
            DUMMY = [ FAIL = "prolog" ]
            """)
        await wait_vm(neb, running, ACTIVE, RUNNING)
        await wait_vm(neb, done, ACTIVE, RUNNING)
        await ok(neb, "one.vm.migrate", running, hnow, True)
        await ok(neb, "one.vm.action", "shutdown", done)
        await wait_vm(neb, running, ACTIVE, RUNNING)
        await wait_vm(neb, done, DONE)
        await wait_vm(neb, failed, FAILED)

        async def host_in_error():
            return xml(await ok(neb, "one.host.info", hdown)).findtext("STATE") == "3"

        await wait_for(host_in_error, "the down host to be in ERROR")
        return {"h14": h14, "hnow": hnow, "hdown": hdown, "hoff": hoff, "ranged": ranged,
                "fixed": fixed, "pending": pending, "running": running, "done": done,
                "failed": failed}

    async def test_every_body_kind(self):
        """one.{user,group,host,vn,vm}.info and their pool infos validate."""
        neb = await start_nebula(self)
        ids = await self.build_state(neb)
        vm_info = await ok(neb, "one.vm.info", ids["running"])
        self.assertEqual(len(xml(vm_info).findall("HISTORY_RECORDS/HISTORY")), 2,
                         "the migrated VM should show both history records")
        vn_info = await ok(neb, "one.vn.info", ids["ranged"])
        self.assertEqual(len(xml(vn_info).findall("LEASES/LEASE")), 1)
        bodies = {
            "one.user.info 0": await ok(neb, "one.user.info", 0),
            "one.user.info 1": await ok(neb, "one.user.info", 1),
            "one.userpool.info": await ok(neb, "one.userpool.info"),
            "one.group.info 0": await ok(neb, "one.group.info", 0),
            "one.group.info 1": await ok(neb, "one.group.info", 1),
            "one.grouppool.info": await ok(neb, "one.grouppool.info"),
            "one.host.info 1.4 form": await ok(neb, "one.host.info", ids["h14"]),
            "one.host.info current form": await ok(neb, "one.host.info", ids["hnow"]),
            "one.host.info ERROR": await ok(neb, "one.host.info", ids["hdown"]),
            "one.host.info DISABLED": await ok(neb, "one.host.info", ids["hoff"]),
            "one.hostpool.info": await ok(neb, "one.hostpool.info"),
            "one.vn.info RANGED": vn_info,
            "one.vn.info FIXED": await ok(neb, "one.vn.info", ids["fixed"]),
            "one.vnpool.info": await ok(neb, "one.vnpool.info", -2, -1, -1),
            "one.vm.info PENDING": await ok(neb, "one.vm.info", ids["pending"]),
            "one.vm.info RUNNING": vm_info,
            "one.vm.info DONE": await ok(neb, "one.vm.info", ids["done"]),
            "one.vm.info FAILED": await ok(neb, "one.vm.info", ids["failed"]),
            "one.vmpool.info": await ok(neb, "one.vmpool.info", -2, -1, -1, -2),
        }
        pool = xml(bodies["one.vmpool.info"])
        self.assertEqual(len(pool), 4)
        self.assertEqual(
            xml(bodies["one.host.info ERROR"]).findtext("TEMPLATE/ERROR/MESSAGE"),
            "host hostdown is down")
        problems = []
        for what, body in bodies.items():
            for error in schema_errors(body):
                problems.append(f"{what}: {error}")
        self.assertEqual(problems, [], "\n".join(problems))

    async def test_empty_pools(self):
        """Pools with no object (and oneadmin's empty TEMPLATE) validate too."""
        neb = await start_nebula(self)
        for method, args in (("one.hostpool.info", ()), ("one.vnpool.info", (-2, -1, -1)),
                             ("one.vmpool.info", (-2, -1, -1, -2)),
                             ("one.userpool.info", ())):
            body = await ok(neb, method, *args)
            self.assertEqual(schema_errors(body), [], f"{method}: {body}")

    def test_validation_is_not_vacuous(self):
        """The checker reports a body that breaks its schema."""
        self.assertEqual(schema_errors("<GROUP><ID>3</ID><NAME>g</NAME><USERS/></GROUP>"), [])
        self.assertNotEqual(schema_errors("<GROUP><ID>x</ID><NAME>g</NAME><USERS/></GROUP>"), [])
        self.assertNotEqual(schema_errors("<GROUP><ID>3</ID><USERS/></GROUP>"), [])


# ------------------------------------------------------------------ return shapes


class ReturnShapeTests(TestCase):
    """``[True, value, 0]`` and ``[False, "[Method] message", code]`` with the 3.4 codes."""

    async def test_success_shapes(self):
        """Allocations return the new id, actions the object id, infos the XML."""
        neb = await start_nebula(self)
        response = await neb.call("one.vm.allocate", UNPLACEABLE)
        self.assertEqual(response, [True, 0, 0])
        response = await neb.call("one.vm.action", "hold", 0)
        self.assertEqual(response, [True, 0, 0])
        response = await neb.call("one.vm.info", 0)
        self.assertEqual(response[0::2], [True, 0])
        self.assertEqual(xml(response[1]).tag, "VM")
        self.assertEqual(await neb.call("one.host.allocate", "h", "im_dummy", "vmm_dummy", -1),
                         [True, 0, 0])

    async def test_authentication(self):
        """0x100: a wrong password, an unknown user, a session without ':'."""
        neb = await start_nebula(self)
        for session in ("oneadmin:wrong", "nobody:onecloud", "oneadmin", "", "oneadmin:"):
            response = await neb.call("one.vmpool.info", -2, session=session)
            assert_failure(self, response, "VirtualMachinePoolInfo", AUTHENTICATION,
                           "User couldn't be authenticated")
        # A password may contain ':' (split at the first one).
        await ok(neb, "one.user.allocate", "colon", "a:b:c")
        await ok(neb, "one.vmpool.info", -2, session="colon:a:b:c")

    async def test_authorization(self):
        """0x200: helen acting on oneadmin's VM, creating a host or a user."""
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        vid = await ok(neb, "one.vm.allocate", UNPLACEABLE)
        response = await neb.call("one.vm.action", "finalize", vid, session=HELEN)
        assert_failure(self, response, "VirtualMachineAction", AUTHORIZATION,
                       rf"User \[{helen}\] : Not authorized to perform MANAGE VM \[{vid}\]")
        self.assertEqual(await vm_state(neb, vid), (PENDING, 0))
        response = await neb.call("one.vm.info", vid, session=HELEN)
        assert_failure(self, response, "VirtualMachineInfo", AUTHORIZATION)
        response = await neb.call("one.host.allocate", "h", "im_dummy", "vmm_dummy", -1,
                                  session=HELEN)
        assert_failure(self, response, "HostAllocate", AUTHORIZATION,
                       r"Not authorized to perform CREATE HOST")
        self.assertEqual(pool_ids(await ok(neb, "one.hostpool.info")), [])
        response = await neb.call("one.user.allocate", "eve", "pw", session=HELEN)
        assert_failure(self, response, "UserAllocate", AUTHORIZATION)
        response = await neb.call("one.user.info", 0, session=HELEN)
        assert_failure(self, response, "UserInfo", AUTHORIZATION)

    async def test_no_such_object(self):
        """0x400: unknown VM, host, network and user ids."""
        neb = await start_nebula(self)
        cases = [
            ("one.vm.info", (42,), "VirtualMachineInfo", r"Error getting virtual machine \[42\]"),
            ("one.vm.action", ("shutdown", 42), "VirtualMachineAction", r"\[42\]"),
            ("one.host.info", (7,), "HostInfo", r"Error getting host \[7\]"),
            ("one.host.delete", (7,), "HostDelete", r"\[7\]"),
            ("one.vn.info", (9,), "VirtualNetworkInfo", r"Error getting virtual network \[9\]"),
            ("one.user.info", (5,), "UserInfo", r"Error getting user \[5\]"),
            ("one.user.delete", (5,), "UserDelete", r"\[5\]"),
            ("one.group.info", (8,), "GroupInfo", r"\[8\]"),
        ]
        for method, args, name, pattern in cases:
            assert_failure(self, await neb.call(method, *args), name, NO_EXISTS, pattern)

    async def test_action_errors(self):
        """0x800: shutdown of a PENDING VM (state unchanged), deleting a host with
        a running VM, a full network."""
        neb = await start_nebula(self)
        pending = await ok(neb, "one.vm.allocate", UNPLACEABLE)
        response = await neb.call("one.vm.action", "shutdown", pending)
        assert_failure(self, response, "VirtualMachineAction", ACTION,
                       r"Wrong state .*PENDING")
        self.assertEqual(await vm_state(neb, pending), (PENDING, 0))

        hid = await ok(neb, "one.host.allocate", "h", "im_dummy", "vmm_dummy", -1)
        await wait_host_monitored(neb, hid)
        running = await ok(neb, "one.vm.allocate", SMALL)
        await wait_vm(neb, running, ACTIVE, RUNNING)
        response = await neb.call("one.host.delete", hid)
        assert_failure(self, response, "HostDelete", ACTION, r"1 VMs")
        self.assertEqual(pool_ids(await ok(neb, "one.hostpool.info")), [hid])

        net = await ok(neb, "one.vn.allocate", TINY_NET)
        await ok(neb, "one.vm.allocate", UNPLACEABLE + f"NIC = [ NETWORK_ID = {net} ]\n")
        response = await neb.call("one.vm.allocate",
                                  UNPLACEABLE + f"NIC = [ NETWORK_ID = {net} ]\n")
        assert_failure(self, response, "VirtualMachineAllocate", ACTION, r"no free leases")

    async def test_api_errors(self):
        """0x1000: wrong arity, wrong types, a malformed template (line and
        column named), an unknown action, no session at all."""
        neb = await start_nebula(self)
        await ok(neb, "one.vm.allocate", UNPLACEABLE)
        cases = [
            ("one.vm.info", (), "VirtualMachineInfo", r"Wrong parameters: expected"),
            ("one.vm.info", (0, 1, 2), "VirtualMachineInfo", r"got \(session, int, int, int\)"),
            ("one.vm.info", ("0",), "VirtualMachineInfo", r"got \(session, str\)"),
            ("one.vm.action", (0, "hold"), "VirtualMachineAction", r"Wrong parameters"),
            ("one.host.info", (1.5,), "HostInfo", r"Wrong parameters"),
            ("one.host.allocate", ("h", "im_dummy"), "HostAllocate", r"Wrong parameters"),
            ("one.vm.allocate", ("CPU = 1\nMEMORY = [ SIZE = 1\n",), "VirtualMachineAllocate",
             r"line \d+, columns? \d+"),
            ("one.vm.allocate", ('NAME = "open\n',), "VirtualMachineAllocate",
             r"line \d+, columns? \d+"),
            ("one.vm.action", ("explode", 0), "VirtualMachineAction", r"Unknown action"),
            # Names the template grammar accepts but an XML body cannot hold.
            ("one.vm.allocate", ("CPU = 1\n1A = x\n",), "VirtualMachineAllocate", r"1A"),
            ("one.vm.allocate", ("CPU = 1\nNIC = [ 2B = x ]\n",), "VirtualMachineAllocate",
             r"2B"),
            ("one.vn.allocate", (FIXED_NET + "9X = 1\n",), "VirtualNetworkAllocate", r"9X"),
        ]
        for method, args, name, pattern in cases:
            assert_failure(self, await neb.call(method, *args), name, XML_RPC_API, pattern)
        self.assertEqual(await vm_state(neb, 0), (PENDING, 0))
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2, -1, -1, -2)), [0])
        self.assertEqual(pool_ids(await ok(neb, "one.vnpool.info", -2)), [])
        # No parameter at all: not even a session.
        status, content = await neb.raw_post(
            xmlrpc.client.dumps((), methodname="one.vm.info").encode())
        self.assertEqual(status, 200)
        (response,), _ = xmlrpc.client.loads(content)
        assert_failure(self, response, "VirtualMachineInfo", XML_RPC_API, r"session")

    async def test_unknown_method(self):
        """An unknown method gets an XML-RPC fault, not a 3.4 failure triple."""
        neb = await start_nebula(self)
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            await neb.call("one.nosuch.info", 0)
        self.assertIn("one.nosuch.info", caught.exception.faultString)


# ------------------------------------------------------------------ bad input


class BadInputTests(TestCase):
    """A failed allocation creates nothing: no VM, no lease, no used id."""

    async def snapshot(self, neb, nets):
        """The VM pool and networks' bodies, without the scheduler's
        SCHED_MESSAGE (it notes, whenever a cycle runs, why the pending VMs
        are not placed: not a trace of the failed allocations)."""
        vms = without_sched_message(await ok(neb, "one.vmpool.info", -2, -1, -1, -2))
        return vms, [await ok(neb, "one.vn.info", n) for n in nets]

    async def test_failed_allocations_leave_no_trace(self):
        """Malformed template, bad REQUIREMENTS, unknown network, full network,
        second NIC failing after a first succeeded: nothing changes, and the
        next VM gets the next id."""
        neb = await start_nebula(self)
        ranged = await ok(neb, "one.vn.allocate", RANGED_NET)
        fixed = await ok(neb, "one.vn.allocate", FIXED_NET)
        tiny = await ok(neb, "one.vn.allocate", TINY_NET)
        first = await ok(neb, "one.vm.allocate", UNPLACEABLE + f"""
            NIC = [ NETWORK_ID = {tiny} ]
            NIC = [ NETWORK_ID = {fixed} ]
            NIC = [ NETWORK_ID = {ranged} ]
            """)
        self.assertEqual(first, 0)
        before = await self.snapshot(neb, [ranged, fixed, tiny])
        self.assertEqual(leases(before[1][2]), [("10.2.0.1", "02:00:0a:02:00:01", 1, 0)])

        bad = [
            ("malformed template", "CPU = 0.1\nMEMORY = [ 64\n", XML_RPC_API),
            ("bad REQUIREMENTS", 'CPU = 0.1\nMEMORY = 64\nREQUIREMENTS = "CPU >"\n',
             XML_RPC_API),
            ("bad RANK", 'CPU = 0.1\nMEMORY = 64\nRANK = "FREECPU +"\n', XML_RPC_API),
            ("negative MEMORY", "CPU = 0.1\nMEMORY = -4\n", XML_RPC_API),
            ("attribute name XML cannot hold",
             UNPLACEABLE + f"NIC = [ NETWORK_ID = {ranged} ]\n1A = x\n", XML_RPC_API),
            ("unknown NETWORK_ID", UNPLACEABLE + "NIC = [ NETWORK_ID = 99 ]\n", NO_EXISTS),
            ("unknown NETWORK", UNPLACEABLE + 'NIC = [ NETWORK = "nosuch" ]\n', None),
            ("full FIXED network", UNPLACEABLE + f"NIC = [ NETWORK_ID = {tiny} ]\n", ACTION),
            ("second NIC on a full network",
             UNPLACEABLE + f"NIC = [ NETWORK_ID = {ranged} ]\nNIC = [ NETWORK_ID = {fixed} ]\n"
                           f"NIC = [ NETWORK_ID = {tiny} ]\n", ACTION),
            ("second NIC asks for a used IP",
             UNPLACEABLE + f"NIC = [ NETWORK_ID = {fixed} ]\n"
                           f"NIC = [ NETWORK_ID = {ranged}, IP = 192.168.0.1 ]\n", ACTION),
            ("IP outside the network",
             UNPLACEABLE + f"NIC = [ NETWORK_ID = {ranged}, IP = 10.9.9.9 ]\n", ACTION),
        ]
        for what, template, code in bad:
            response = await neb.call("one.vm.allocate", template)
            self.assertIs(response[0], False, f"{what}: {response}")
            self.assertTrue(response[1].startswith("[VirtualMachineAllocate] "), response)
            if code is not None:
                self.assertEqual(response[2], code, f"{what}: {response}")
            self.assertEqual(await self.snapshot(neb, [ranged, fixed, tiny]), before, what)

        second = await ok(neb, "one.vm.allocate", UNPLACEABLE + f"NIC = [ NETWORK_ID = {fixed} ]\n")
        self.assertEqual(second, first + 1)
        body = await ok(neb, "one.vm.info", second)
        self.assertEqual(xml(body).findtext("NAME"), f"one-{second}")
        self.assertEqual(nics(body)[0]["IP"], "10.1.0.2")
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2, -1, -1, -2)),
                         [first, second])

    async def test_failures_not_stored(self):
        """Nothing of a failed allocation reached the database either: a core
        loading the same database sees the pools as they were."""
        neb = await start_nebula(self)
        tiny = await ok(neb, "one.vn.allocate", TINY_NET)
        template = UNPLACEABLE + f"NIC = [ NETWORK_ID = {tiny} ]\n"
        await ok(neb, "one.vm.allocate", template)
        response = await neb.call("one.vm.allocate", template)
        self.assertEqual(response[2], ACTION)
        before = await self.snapshot(neb, [tiny])
        # A second core reading the same database (the daemon keeps running).

        reloaded = Nebula(neb.nebula.config, reactor, neb.var_dir)
        await reloaded.open()
        self.addCleanup(reloaded.close)
        self.assertEqual(sorted(reloaded.vmpool.objects), [0])
        self.assertEqual(reloaded.vmpool.last_oid, 0)
        self.assertEqual(reloaded.vnpool.get(tiny).info(), before[1][0])


# ------------------------------------------------------------------ malformed bodies


class MalformedBodyTests(TestCase):
    """Bodies that are not XML-RPC get a fault, and the server keeps serving."""

    async def test_not_xml(self):
        """A truncated body: HTTP 200 with an XML-RPC <fault>; then one.vm.info works."""
        neb = await start_nebula(self)
        await ok(neb, "one.vm.allocate", UNPLACEABLE)
        for body in (b"<methodCall><oops", b"", b"not xml at all",
                     b"<methodCall><params/></methodCall>"):
            status, content = await neb.raw_post(body)
            self.assertEqual(status, 200, body)
            self.assertIn(b"<fault>", content, body)
            with self.assertRaises(xmlrpc.client.Fault):
                xmlrpc.client.loads(content)
        self.assertEqual(xml(await ok(neb, "one.vm.info", 0)).findtext("ID"), "0")

    async def test_body_over_the_limit(self):
        """``max_body`` is not configurable from oned.conf, so a RequestManager
        with a 1 KiB limit is served on its own port beside the daemon's: a
        larger body gets a fault, a smaller one is served."""
        neb = await start_nebula(self)
        managers = neb.service.managers
        requests = Requests(neb.nebula, managers["dm"], managers["im"])
        root = resource.Resource()
        root.putChild(b"RPC2", RequestManager(requests, max_body=1024))
        site = server.Site(root)
        site.noisy = False
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        # raw_post and call go to neb.url: point it at the limited resource.
        neb.url = f"http://127.0.0.1:{port.getHost().port}/RPC2"

        template = UNPLACEABLE + "# " + "x" * 2000 + "\n"
        status, content = await neb.raw_post(
            xmlrpc.client.dumps((ADMIN, template), methodname="one.vm.allocate").encode())
        self.assertEqual(status, 200)
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            xmlrpc.client.loads(content)
        self.assertRegex(caught.exception.faultString, r"over the limit of 1024")
        self.assertEqual(await ok(neb, "one.vm.allocate", UNPLACEABLE), 0)
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2)), [0])


# ------------------------------------------------------------------ clients' variants


class ClientVariantTests(TestCase):
    """The argument lists of 1.4, 3.4 and current clients."""

    async def test_host_allocate_forms(self):
        """1.4 (name, im, vmm, tm), 3.4 (name, im, vmm, vnm, cluster) and current
        (name, im, vmm, cluster) forms; the VN_MAD must be configured."""
        neb = await start_nebula(self, overrides=[
            'VN_MAD=[name="dummy", executable="vnm_exec", arguments="-n"]',
            'VN_MAD=[name="802.1Q", executable="vnm_exec", arguments="-n"]'])
        h14 = await ok(neb, "one.host.allocate", "h14", "im_dummy", "vmm_dummy", "tm_dummy")
        h34 = await ok(neb, "one.host.allocate", "h34", "im_dummy", "vmm_dummy", "802.1Q", -1)
        hnow = await ok(neb, "one.host.allocate", "hnow", "im_dummy", "vmm_dummy", -1)
        self.assertEqual([h14, h34, hnow], [0, 1, 2])
        host = xml(await ok(neb, "one.host.info", h14))
        self.assertEqual((host.findtext("IM_MAD"), host.findtext("VM_MAD")),
                         ("im_dummy", "vmm_dummy"))
        self.assertEqual(host.findtext("TEMPLATE/TM_MAD"), "tm_dummy")
        host = xml(await ok(neb, "one.host.info", h34))
        self.assertEqual(host.findtext("VN_MAD"), "802.1Q")
        self.assertEqual(host.findtext("CLUSTER_ID"), "-1")
        self.assertIsNone(host.find("TEMPLATE/TM_MAD"))
        host = xml(await ok(neb, "one.host.info", hnow, False))
        self.assertEqual(host.findtext("VN_MAD"), "dummy")
        response = await neb.call("one.host.allocate", "h14", "im_dummy", "vmm_dummy", -1)
        assert_failure(self, response, "HostAllocate", ACTION, r"NAME is already taken")
        response = await neb.call("one.host.allocate", "hfw", "im_dummy", "vmm_dummy", "fw", -1)
        assert_failure(self, response, "HostAllocate", 0x1000,
                       r"Unknown VN_MAD driver 'fw'.*VN_MAD names: 802\.1Q, dummy")
        self.assertIsNone(neb.nebula.hostpool.find("hfw"))

    async def test_vm_actions(self):
        """3.4 names (hold, release, finalize, shutdown, cancel) and today's
        (terminate, terminate-hard, delete)."""
        neb = await start_nebula(self)
        waiting = [await ok(neb, "one.vm.allocate", UNPLACEABLE) for _ in range(3)]
        await ok(neb, "one.vm.action", "hold", waiting[0])
        self.assertEqual(await vm_state(neb, waiting[0]), (HOLD, 0))
        await ok(neb, "one.vm.action", "release", waiting[0])
        self.assertEqual(await vm_state(neb, waiting[0]), (PENDING, 0))
        await ok(neb, "one.vm.action", "finalize", waiting[1])
        self.assertEqual(await vm_state(neb, waiting[1]), (DONE, 0))
        await ok(neb, "one.vm.action", "delete", waiting[2])
        self.assertEqual(await vm_state(neb, waiting[2]), (DONE, 0))

        hid = await ok(neb, "one.host.allocate", "h", "im_dummy", "vmm_dummy", -1)
        await wait_host_monitored(neb, hid)
        names = ("shutdown", "cancel", "terminate", "terminate-hard")
        vms = [await ok(neb, "one.vm.allocate", SMALL) for _ in names]
        for vid in vms:
            await wait_vm(neb, vid, ACTIVE, RUNNING)
        for name, vid in zip(names, vms):
            self.assertEqual(await neb.call("one.vm.action", name, vid), [True, vid, 0])
        for vid in vms:
            await wait_vm(neb, vid, DONE)

    async def test_vmpool_info_forms(self):
        """1.4's single filter, 3.4's (filter, start, end, state) and no filter."""
        neb = await start_nebula(self)
        vms = [await ok(neb, "one.vm.allocate", UNPLACEABLE) for _ in range(4)]
        await ok(neb, "one.vm.action", "finalize", vms[3])
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2)), vms[:3])
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info")), vms[:3])
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2, -1, -1, -1)), vms[:3])
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2, -1, -1, -2)), vms)
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2, -1, -1, DONE)), vms[3:])
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2, 1, 2, -2)), vms[1:3])
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2, 2, -1)), vms[2:3])
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", 0)), vms[:3])
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", 5)), [])

    async def test_info_trailing_bool(self):
        """one.vm.info, one.host.info, one.vn.info and one.user.info accept a
        trailing bool (today's ``decrypt``) and ignore it."""
        neb = await start_nebula(self)
        vid = await ok(neb, "one.vm.allocate", UNPLACEABLE)
        hid = await ok(neb, "one.host.allocate", "h", "im_dummy", "vmm_dummy", -1)
        net = await ok(neb, "one.vn.allocate", FIXED_NET)
        for method, oid in (("one.vm.info", vid), ("one.host.info", hid),
                            ("one.vn.info", net), ("one.user.info", 0)):
            for flag in (True, False):
                body = await ok(neb, method, oid, flag)
                self.assertEqual(xml(body).findtext("ID"), str(oid))


# ------------------------------------------------------------------ ownership


class OwnershipTests(TestCase):
    """What each user sees and may use."""

    async def test_vmpool_by_owner(self):
        """helen's vmpool.info -2 lists her VMs only; oneadmin sees everyone's."""
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        bob = await add_user(neb, BOB)
        admin_vm = await ok(neb, "one.vm.allocate", UNPLACEABLE)
        helen_vms = [await ok(neb, "one.vm.allocate", UNPLACEABLE, session=HELEN)
                     for _ in range(2)]
        bob_vm = await ok(neb, "one.vm.allocate", UNPLACEABLE, session=BOB)
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2, session=HELEN)),
                         helen_vms)
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2, -1, -1, -1,
                                           session=HELEN)), helen_vms)
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -3, session=HELEN)),
                         helen_vms)
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", bob, session=HELEN)), [])
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -2)),
                         [admin_vm] + helen_vms + [bob_vm])
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", helen)), helen_vms)
        self.assertEqual(pool_ids(await ok(neb, "one.vmpool.info", -3)), [admin_vm])
        body = xml(await ok(neb, "one.vm.info", helen_vms[0], session=HELEN))
        self.assertEqual((body.findtext("UID"), body.findtext("UNAME"), body.findtext("GNAME")),
                         (str(helen), "helen", "users"))
        # helen manages her own VMs, not bob's.
        await ok(neb, "one.vm.action", "hold", helen_vms[0], session=HELEN)
        response = await neb.call("one.vm.action", "hold", bob_vm, session=HELEN)
        assert_failure(self, response, "VirtualMachineAction", AUTHORIZATION)

    async def test_networks(self):
        """helen may use oneadmin's (public) network, not bob's private one."""
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        await add_user(neb, BOB)
        public = await ok(neb, "one.vn.allocate", RANGED_NET)
        private = await ok(neb, "one.vn.allocate", FIXED_NET, session=BOB)
        self.assertEqual(pool_ids(await ok(neb, "one.vnpool.info", -2, session=HELEN)), [public])
        self.assertEqual(pool_ids(await ok(neb, "one.vnpool.info", -2)), [public, private])
        await ok(neb, "one.vn.info", public, session=HELEN)
        response = await neb.call("one.vn.info", private, session=HELEN)
        assert_failure(self, response, "VirtualNetworkInfo", AUTHORIZATION)

        vid = await ok(neb, "one.vm.allocate",
                       UNPLACEABLE + f"NIC = [ NETWORK_ID = {public} ]\n", session=HELEN)
        self.assertEqual(nics(await ok(neb, "one.vm.info", vid, session=HELEN))[0]["IP"],
                         "192.168.0.1")
        vid = await ok(neb, "one.vm.allocate",
                       UNPLACEABLE + 'NIC = [ NETWORK = "public" ]\n', session=HELEN)
        self.assertEqual(nics(await ok(neb, "one.vm.info", vid, session=HELEN))[0]["IP"],
                         "192.168.0.2")
        before = await ok(neb, "one.vn.info", private)
        for nic in (f"NETWORK_ID = {private}", 'NETWORK = "fixed"'):
            response = await neb.call("one.vm.allocate", UNPLACEABLE + f"NIC = [ {nic} ]\n",
                                      session=HELEN)
            assert_failure(self, response, "VirtualMachineAllocate", AUTHORIZATION,
                           rf"User \[{helen}\] : Not authorized to perform USE NET "
                           rf"\[{private}\]")
        self.assertEqual(await ok(neb, "one.vn.info", private), before)
        # bob may use his own.
        await ok(neb, "one.vm.allocate", UNPLACEABLE + f"NIC = [ NETWORK_ID = {private} ]\n",
                 session=BOB)

    async def test_userpool(self):
        """helen's userpool.info shows herself only; oneadmin sees everyone."""
        neb = await start_nebula(self)
        helen = await add_user(neb, HELEN)
        bob = await add_user(neb, BOB)
        self.assertEqual(pool_ids(await ok(neb, "one.userpool.info", session=HELEN)), [helen])
        self.assertEqual(pool_ids(await ok(neb, "one.userpool.info")), [0, helen, bob])
        await ok(neb, "one.user.info", helen, session=HELEN)
        await ok(neb, "one.user.info", -1, session=HELEN)
        response = await neb.call("one.user.info", bob, session=HELEN)
        assert_failure(self, response, "UserInfo", AUTHORIZATION)
        groups = xml(await ok(neb, "one.grouppool.info", session=HELEN))
        self.assertEqual([g.findtext("NAME") for g in groups], ["users"])


# ------------------------------------------------------------------ network leases


class NetworkLeaseTests(TestCase):
    """RANGED sizes, MACs from IPs, requested IPs, leases given back on DONE."""

    async def vnet(self, neb, template):
        vid = await ok(neb, "one.vn.allocate", template)
        return xml(await ok(neb, "one.vn.info", vid))

    async def test_ranged_sizes(self):
        """NETWORK_SIZE C, a number, and a CIDR address; the mask is written back."""
        neb = await start_nebula(self)
        cases = [
            ("NETWORK_ADDRESS = 192.168.0.0\nNETWORK_SIZE = C\n",
             "192.168.0.1", "192.168.0.254", "255.255.255.0"),
            ("NETWORK_ADDRESS = 10.0.0.0\nNETWORK_SIZE = 30\n",
             "10.0.0.1", "10.0.0.30", "255.255.255.224"),
            ("NETWORK_ADDRESS = 10.0.1.0\nNETWORK_SIZE = 6\n",
             "10.0.1.1", "10.0.1.6", "255.255.255.248"),
            ('NETWORK_ADDRESS = "172.16.0.0/28"\n', "172.16.0.1", "172.16.0.14",
             "255.255.255.240"),
            ("NETWORK_ADDRESS = 172.17.0.0\nNETWORK_SIZE = B\n",
             "172.17.0.1", "172.17.255.254", "255.255.0.0"),
            ("NETWORK_ADDRESS = 192.168.5.0\n", "192.168.5.1", "192.168.5.254",
             "255.255.255.0"),
        ]
        for n, (spec, start, end, mask) in enumerate(cases):
            root = await self.vnet(neb, f'NAME = "r{n}"\nTYPE = RANGED\nBRIDGE = br0\n{spec}')
            got = (root.findtext("RANGE/IP_START"), root.findtext("RANGE/IP_END"),
                   root.findtext("TEMPLATE/NETWORK_MASK"))
            self.assertEqual(got, (start, end, mask), spec)
            self.assertIsNone(root.find("TEMPLATE/NETWORK_SIZE"), spec)
            self.assertEqual(root.findtext("TYPE"), "0")
        bad = ["NETWORK_ADDRESS = 10.0.0.5/24\n",
               "NETWORK_ADDRESS = 10.0.0.0\nNETWORK_SIZE = Z\n",
               "NETWORK_ADDRESS = 300.0.0.0\n",
               ""]
        for spec in bad:
            response = await neb.call("one.vn.allocate",
                                      f'NAME = "bad"\nTYPE = RANGED\nBRIDGE = br0\n{spec}')
            assert_failure(self, response, "VirtualNetworkAllocate", XML_RPC_API)
        self.assertEqual(len(xml(await ok(neb, "one.vnpool.info", -2))), len(cases))

    async def test_mac_from_ip(self):
        """MAC = MAC_PREFIX + the IP's octets; leases round-robin; a requested IP."""
        neb = await start_nebula(self, ['MAC_PREFIX="0a:0b"'])
        net = await ok(neb, "one.vn.allocate", RANGED_NET)
        fixed = await ok(neb, "one.vn.allocate", FIXED_NET)
        a = await ok(neb, "one.vm.allocate", UNPLACEABLE + f"NIC = [ NETWORK_ID = {net} ]\n")
        b = await ok(neb, "one.vm.allocate",
                     UNPLACEABLE + f"NIC = [ NETWORK_ID = {net}, IP = 192.168.0.200 ]\n"
                                   f"NIC = [ NETWORK_ID = {fixed} ]\n"
                                   f"NIC = [ NETWORK_ID = {fixed} ]\n")
        c = await ok(neb, "one.vm.allocate", UNPLACEABLE + 'NIC = [ NETWORK = "public" ]\n')
        nic = nics(await ok(neb, "one.vm.info", a))[0]
        self.assertEqual((nic["IP"], nic["MAC"], nic["NETWORK"], nic["NETWORK_ID"],
                          nic["BRIDGE"], nic["VLAN"]),
                         ("192.168.0.1", "0a:0b:c0:a8:00:01", "public", str(net), "br0", "NO"))
        b_nics = nics(await ok(neb, "one.vm.info", b))
        self.assertEqual([(n["IP"], n["MAC"]) for n in b_nics],
                         [("192.168.0.200", "0a:0b:c0:a8:00:c8"),
                          ("10.1.0.1", "0a:0b:0a:01:00:01"),
                          ("10.1.0.2", "02:00:0a:01:00:99")])
        self.assertEqual(nics(await ok(neb, "one.vm.info", c))[0]["IP"], "192.168.0.2")
        body = await ok(neb, "one.vn.info", net)
        self.assertEqual(leases(body), [("192.168.0.1", "0a:0b:c0:a8:00:01", 1, a),
                                        ("192.168.0.2", "0a:0b:c0:a8:00:02", 1, c),
                                        ("192.168.0.200", "0a:0b:c0:a8:00:c8", 1, b)])
        self.assertEqual(xml(body).findtext("TOTAL_LEASES"), "3")
        # The same IP again is refused.
        response = await neb.call(
            "one.vm.allocate", UNPLACEABLE + f"NIC = [ NETWORK_ID = {net}, IP = 192.168.0.200 ]\n")
        assert_failure(self, response, "VirtualMachineAllocate", ACTION, r"already in use")

    async def test_leases_return_on_done(self):
        """A VM shut down to DONE gives its leases back (RANGED forgets them,
        FIXED marks them free); so does finalize of a PENDING VM."""
        neb = await start_nebula(self)
        hid = await ok(neb, "one.host.allocate", "h", "im_dummy", "vmm_dummy", -1)
        net = await ok(neb, "one.vn.allocate", RANGED_NET)
        fixed = await ok(neb, "one.vn.allocate", FIXED_NET)
        await wait_host_monitored(neb, hid)
        vid = await ok(neb, "one.vm.allocate", SMALL + f"NIC = [ NETWORK_ID = {net} ]\n"
                                                       f"NIC = [ NETWORK_ID = {fixed} ]\n")
        self.assertEqual(leases(await ok(neb, "one.vn.info", fixed))[0][2:], (1, vid))
        await wait_vm(neb, vid, ACTIVE, RUNNING)
        self.assertEqual(xml(await ok(neb, "one.host.info", hid)).findtext(
            "HOST_SHARE/RUNNING_VMS"), "1")
        await ok(neb, "one.vm.action", "shutdown", vid)
        await wait_vm(neb, vid, DONE)
        body = await ok(neb, "one.vn.info", net)
        self.assertEqual(leases(body), [])
        self.assertEqual(xml(body).findtext("TOTAL_LEASES"), "0")
        self.assertEqual(leases(await ok(neb, "one.vn.info", fixed)),
                         [("10.1.0.1", "02:00:0a:01:00:01", 0, -1),
                          ("10.1.0.2", "02:00:0a:01:00:99", 0, -1)])
        self.assertEqual(xml(await ok(neb, "one.host.info", hid)).findtext(
            "HOST_SHARE/RUNNING_VMS"), "0")
        # The DONE VM keeps its NIC attributes.
        self.assertEqual(nics(await ok(neb, "one.vm.info", vid))[1]["IP"], "10.1.0.1")

        pending = await ok(neb, "one.vm.allocate",
                           UNPLACEABLE + f"NIC = [ NETWORK_ID = {fixed} ]\n")
        self.assertEqual(leases(await ok(neb, "one.vn.info", fixed))[0][2:], (1, pending))
        await ok(neb, "one.vm.action", "finalize", pending)
        self.assertEqual(leases(await ok(neb, "one.vn.info", fixed))[0][2:], (0, -1))
        # The network can be deleted once no lease is used.
        await ok(neb, "one.vn.delete", fixed)


class SystemTests(TestCase):
    """``one.system.version`` for any user, ``one.system.config`` for oneadmin only."""

    async def test_version_and_config(self):
        neb = await start_nebula(self)
        await add_user(neb, HELEN)
        self.assertEqual(await ok(neb, "one.system.version", session=HELEN), "3.4.1")
        conf = xml(await ok(neb, "one.system.config"))
        self.assertEqual(conf.tag, "OPENNEBULA_CONFIGURATION")
        self.assertEqual(conf.findtext("PORT"), "0")
        self.assertEqual(conf.findtext("IM_MAD/NAME"), "im_dummy")
        response = await neb.call("one.system.config", session=HELEN)
        self.assertEqual(response[0::2], [False, AUTHORIZATION])
        self.assertTrue(response[1].startswith("[SystemConfig] "), response)
