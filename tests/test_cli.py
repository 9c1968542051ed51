"""Tests for the XML-RPC client and the ``one*`` command-line tools.

The tools run for real (``main()`` in a worker thread, blocking stdlib
XML-RPC over TCP) against a fake oned: a ``twisted.web.xmlrpc.XMLRPC``
resource served by the trial reactor on 127.0.0.1, which records every
call and answers with canned OpenNebula 3.4 replies.  The canned XML
bodies are checked against the 3.4 XSDs (after putting every element in
the ``http://opennebula.org/XMLSchema`` namespace, as real bodies carry
none).
"""

import io
import os
import time

from lxml import etree
from twisted.internet import defer, reactor, threads
from twisted.python.filepath import FilePath
from twisted.trial import unittest
from twisted.web import resource, server, xmlrpc

from nebtwist import client as client_module
from nebtwist.cli import common, onehost, oneuser, onevm, onevnet
from nebtwist.client import OneClient, OneError

#: Where the OpenNebula 3.4 XML schemas live (override with $NEBTWIST_XSD_DIR).
XSD_DIR = os.environ.get(
    "NEBTWIST_XSD_DIR",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir,
                 "shared", "reference", "opennebula-3.4-xsd"))

#: Namespace of the OpenNebula schemas.
ONE_NS = "http://opennebula.org/XMLSchema"

#: Schema file for each root element.
SCHEMA_FILES = {
    "HOST": "host.xsd", "HOST_POOL": "host_pool.xsd",
    "VM": "vm.xsd", "VM_POOL": "vm_pool.xsd",
    "VNET": "vnet.xsd", "VNET_POOL": "vnet_pool.xsd",
    "USER": "user.xsd", "USER_POOL": "user_pool.xsd",
}

SESSION = "oneadmin:onecloud"

#: The fake clock used for VM running times.
NOW = 1279386945


# ------------------------------------------------------------------ XSD


def with_namespace(body):
    """Parse ``body`` and put every element in the OpenNebula namespace."""
    root = etree.fromstring(body.encode("utf-8"))
    for el in root.iter():
        if isinstance(el.tag, str):
            el.tag = "{%s}%s" % (ONE_NS, el.tag)
    return root


_schemas = {}


def validate(body):
    """Raise AssertionError unless ``body`` validates against its 3.4 XSD."""
    root = etree.fromstring(body.encode("utf-8"))
    name = SCHEMA_FILES[root.tag]
    if name not in _schemas:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        _schemas[name] = etree.XMLSchema(etree.parse(os.path.join(XSD_DIR, name), parser))
    schema = _schemas[name]
    if not schema.validate(with_namespace(body)):
        raise AssertionError("%s does not validate: %s" % (root.tag, schema.error_log))


# ------------------------------------------------------------------ canned bodies


def _elements(pairs):
    return "".join("<%s>%s</%s>" % (k, v, k) for k, v in pairs)


def _cdata_template(pairs):
    """``<TEMPLATE>`` with single (str) and vector (list of pairs) attributes."""
    out = []
    for key, value in pairs:
        if isinstance(value, list):
            out.append("<%s>%s</%s>" % (
                key, "".join("<%s><![CDATA[%s]]></%s>" % (k, v, k) for k, v in value), key))
        else:
            out.append("<%s><![CDATA[%s]]></%s>" % (key, value, key))
    return "<TEMPLATE>%s</TEMPLATE>" % "".join(out)


PERMS = ("<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>"
         "<GROUP_U>%d</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A>"
         "<OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>")


def host_xml(hid, name, state, max_cpu, cpu_usage, free_cpu, max_mem, free_mem,
             running, template=(), last_mon=0, im="im_xen", vmm="vmm_xen"):
    """A 3.4 ``<HOST>`` body."""
    share = _elements([
        ("DISK_USAGE", 0), ("MEM_USAGE", running * 65536), ("CPU_USAGE", cpu_usage),
        ("MAX_DISK", 0), ("MAX_MEM", max_mem), ("MAX_CPU", max_cpu),
        ("FREE_DISK", 0), ("FREE_MEM", free_mem), ("FREE_CPU", free_cpu),
        ("USED_DISK", 0), ("USED_MEM", max_mem - free_mem), ("USED_CPU", max_cpu - free_cpu),
        ("RUNNING_VMS", running),
    ])
    return ("<HOST>" + _elements([
        ("ID", hid), ("NAME", name), ("STATE", state), ("IM_MAD", im), ("VM_MAD", vmm),
        ("VN_MAD", "dummy"), ("LAST_MON_TIME", last_mon), ("CLUSTER_ID", -1),
        ("CLUSTER", ""), ("HOST_SHARE", share),
    ]) + _cdata_template(template) + "</HOST>")


HOST0 = host_xml(0, "host01", 2, 200, 16, 184, 2017004, 1848172, 0,
                 template=[("HYPERVISOR", "xen"), ("TOTALCPU", "200"),
                           ("FREECPU", "184"), ("ARCH", "x86_64"), ("TM_MAD", "tm_nfs"),
                           ("MODELNAME", "Intel(R) Xeon(R) CPU E5420 @ 2.50GHz")],
                 last_mon=1279386917)
HOST1 = host_xml(1, "host02", 4, 200, 0, 200, 2017004, 1857172, 1)
HOST2 = host_xml(2, "ec2", 3, 500, 0, 500, 8912896, 8912896, 12,
                 im="im_ec2", vmm="vmm_ec2")
HOST_POOL = "<HOST_POOL>%s%s%s</HOST_POOL>" % (HOST0, HOST1, HOST2)


def user_xml(uid, name, password, enabled, gid=0, gname="oneadmin"):
    """A 3.4 ``<USER>`` body."""
    return ("<USER>" + _elements([
        ("ID", uid), ("GID", gid), ("GNAME", gname), ("NAME", name),
        ("PASSWORD", password), ("AUTH_DRIVER", "core"), ("ENABLED", enabled),
    ]) + "<TEMPLATE/></USER>")


USER0 = user_xml(0, "oneadmin", "c24783ba96a35464632a624d9f829136edc0175e", 1)
USER2 = user_xml(2, "helen", "34a91f713808846ade4a71577dc7963631ebae14", 1, 1, "users")
USER3 = user_xml(3, "bob", "8be3c943b1609fffbfc51aad666d0a04adf83c9d", 0, 1, "users")
USER_POOL = "<USER_POOL>%s%s%s</USER_POOL>" % (USER0, USER2, USER3)


def vnet_xml(nid, name, vtype, bridge, total, uname="oneadmin", uid=0, public=1,
             vrange=None, template=(), leases=None):
    """A 3.4 ``<VNET>`` body (``leases`` only in vn.info bodies)."""
    body = "<VNET>" + _elements([
        ("ID", nid), ("UID", uid), ("GID", 0), ("UNAME", uname), ("GNAME", "oneadmin"),
        ("NAME", name)]) + PERMS % public + _elements([
        ("CLUSTER_ID", -1), ("CLUSTER", ""), ("TYPE", vtype), ("BRIDGE", bridge),
        ("VLAN", 0)]) + "<PHYDEV/><VLAN_ID/>"
    if vrange:
        body += "<RANGE><IP_START>%s</IP_START><IP_END>%s</IP_END></RANGE>" % vrange
    body += "<TOTAL_LEASES>%d</TOTAL_LEASES>" % total + _cdata_template(template)
    if leases is not None:
        body += "<LEASES>%s</LEASES>" % "".join(
            "<LEASE>%s</LEASE>" % _elements([("IP", ip), ("MAC", mac), ("USED", used),
                                             ("VID", vid)])
            for ip, mac, used, vid in leases)
    return body + "</VNET>"


VNET0_TEMPLATE = [("BRIDGE", "xenbr0"), ("NAME", "One-TD"),
                  ("NETWORK_ADDRESS", "192.168.1.128"), ("NETWORK_MASK", "255.255.255.128"),
                  ("TYPE", "RANGED")]
VNET0 = vnet_xml(0, "One-TD", 0, "xenbr0", 3, vrange=("192.168.1.129", "192.168.1.254"),
                 template=VNET0_TEMPLATE)
VNET1 = vnet_xml(1, "One-TD-Invisible", 1, "xenbr0", 1, uname="helen", uid=2, public=0)
VNET_POOL = "<VNET_POOL>%s%s</VNET_POOL>" % (VNET0, VNET1)
VNET0_INFO = vnet_xml(
    0, "One-TD", 0, "xenbr0", 2, vrange=("192.168.1.129", "192.168.1.254"),
    template=VNET0_TEMPLATE,
    leases=[("192.168.1.129", "02:00:c0:a8:01:81", 1, 16),
            ("192.168.1.140", "02:00:c0:a8:01:8c", 1, 19)])


def vm_xml(vid, name, state, lcm, stime, etime=0, uname="oneadmin", cpu=0, memory=0,
           hosts=(), template=(), deploy_id="", net=(0, 0)):
    """A 3.4 ``<VM>`` body; ``hosts`` gives one history record per host name."""
    history = "".join(
        "<HISTORY>" + _elements([
            ("SEQ", seq), ("HOSTNAME", host), ("VM_DIR", "/var/lib/one"), ("HID", seq),
            ("STIME", stime), ("ETIME", 0), ("VMMMAD", "vmm_xen"), ("VNMMAD", "dummy"),
            ("TMMAD", "tm_nfs"), ("PSTIME", stime), ("PETIME", stime), ("RSTIME", stime),
            ("RETIME", 0), ("ESTIME", 0), ("EETIME", 0), ("REASON", 0)]) + "</HISTORY>"
        for seq, host in enumerate(hosts))
    return ("<VM>" + _elements([
        ("ID", vid), ("UID", 0), ("GID", 0), ("UNAME", uname), ("GNAME", "oneadmin"),
        ("NAME", name)]) + PERMS % 0 + _elements([
        ("LAST_POLL", 0), ("STATE", state), ("LCM_STATE", lcm), ("STIME", stime),
        ("ETIME", etime), ("DEPLOY_ID", deploy_id), ("MEMORY", memory), ("CPU", cpu),
        ("NET_TX", net[0]), ("NET_RX", net[1])]) + _cdata_template(template)
        + "<HISTORY_RECORDS>%s</HISTORY_RECORDS></VM>" % history)


VM1 = vm_xml(1, "ttylinux", 1, 0, NOW - 28)
VM16 = vm_xml(16, "one-16", 3, 3, NOW - 35, hosts=["host01", "ec2"], deploy_id="i-bac3f0d2")
VM19 = vm_xml(19, "eco-vm", 3, 3, NOW - (2 * 86400 + 3 * 3600 + 4 * 60 + 5), uname="helen",
              cpu=12, memory=65536, hosts=["host01"])
VM20 = vm_xml(20, "broken", 7, 0, 1000, etime=1094, hosts=["host02"])
VM_POOL = "<VM_POOL>%s%s%s%s</VM_POOL>" % (VM1, VM16, VM19, VM20)
VM17_INFO = vm_xml(
    17, "one-17", 3, 3, 1279386900, cpu=5, memory=65536, net=(1200, 3400),
    hosts=["host01", "ec2"], deploy_id="i-53ad943a",
    template=[("CPU", "0.5"), ("MEMORY", "64"),
              ("EC2", [("AMI", "ami-ccf615a5"), ("KEYPAIR", "keypair"),
                       ("INSTANCETYPE", "m1.small"), ("AUTHORIZED_PORTS", "22")]),
              ("REQUIREMENTS", 'HOSTNAME = "ec2"'), ("VMID", "17"),
              ("NIC", [("NETWORK", "One-TD"), ("IP", "192.168.1.140"),
                       ("MAC", "02:00:c0:a8:01:8c")]),
              ("IP", "ec2-72-44-62-194.compute-1.amazonaws.com")])

ALL_BODIES = {
    "HOST0": HOST0, "HOST_POOL": HOST_POOL, "USER0": USER0, "USER_POOL": USER_POOL,
    "VNET0": VNET0, "VNET_POOL": VNET_POOL, "VNET0_INFO": VNET0_INFO, "VM1": VM1,
    "VM_POOL": VM_POOL, "VM17_INFO": VM17_INFO,
}


def ok(value):
    """A 3.4 success reply."""
    return [True, value, 0]


# ------------------------------------------------------------------ fake oned


class FakeOned(xmlrpc.XMLRPC):
    """An XML-RPC resource answering any method from ``replies``; records calls.

    ``replies[method]`` is the reply list, or a callable taking the call's
    arguments.  Unknown methods answer an XML_RPC_API error.
    """

    def __init__(self):
        super().__init__(allowNone=False)
        self.calls = []
        self.replies = {}

    def lookupProcedure(self, procedurePath):
        """Return a procedure for any method name."""
        def procedure(*args):
            self.calls.append((procedurePath,) + args)
            reply = self.replies.get(procedurePath)
            if reply is None:
                return [False, "[%s] not faked" % procedurePath, 0x1000]
            if callable(reply):
                return reply(*args)
            return reply
        return procedure


class TrackingSite(server.Site):
    """A Site that remembers its connections so tests can close them all."""

    def __init__(self, root):
        super().__init__(root)
        self.channels = []

    def buildProtocol(self, addr):
        """Build the channel and hook its connectionLost."""
        channel = super().buildProtocol(addr)
        channel.lost = defer.Deferred()
        original = channel.connectionLost
        original_make = channel.makeConnection

        def makeConnection(transport):
            channel.tracked_transport = transport
            original_make(transport)

        def connectionLost(reason):
            try:
                original(reason)
            finally:
                channel.lost.callback(None)

        channel.makeConnection = makeConnection
        channel.connectionLost = connectionLost
        self.channels.append(channel)
        return channel


def serve(test, root):
    """Serve ``root`` on 127.0.0.1 for the duration of ``test``; return the endpoint."""
    site = TrackingSite(root)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")

    def shutdown():
        """Stop listening and drop any connection still open."""
        waits = [defer.maybeDeferred(port.stopListening)]
        for channel in site.channels:
            if not channel.lost.called:
                channel.tracked_transport.abortConnection()
                waits.append(channel.lost)
        return defer.gatherResults(waits)

    test.addCleanup(shutdown)
    return "http://127.0.0.1:%d/RPC2" % port.getHost().port


class FakeServerMixin:
    """Starts a :class:`FakeOned` and writes a ONE_AUTH file."""

    def setUp(self):
        """Serve a fresh fake oned, write ONE_AUTH, freeze the CLI clock."""
        self.fake = FakeOned()
        self.endpoint = serve(self, self.fake)
        auth = FilePath(self.mktemp())
        auth.setContent(SESSION.encode() + b"\nignored second line\n")
        self.environ = {"ONE_XMLRPC": self.endpoint, "ONE_AUTH": auth.path}
        self.patch(common, "now", lambda: NOW)

    def run_cli(self, main, *argv, environ=None):
        """Run ``main(argv)`` in a thread; fires with (status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        env = self.environ if environ is None else environ
        d = threads.deferToThread(main, list(argv), stdout=out, stderr=err, environ=env)
        d.addCallback(lambda status: (status, out.getvalue(), err.getvalue()))
        return d

    def calls(self, method=None):
        """Recorded calls (optionally only those of ``method``), without the method name."""
        return [c[1:] for c in self.fake.calls if method is None or c[0] == method]

    def methods(self):
        """Names of the recorded calls, in order."""
        return [c[0] for c in self.fake.calls]

    def write_file(self, content):
        """A temporary file holding ``content``; returns its path."""
        path = FilePath(self.mktemp())
        path.setContent(content.encode("utf-8"))
        return path.path

    def assertSuccess(self, result, stdout=""):
        """Exit status 0, nothing on stderr, and ``stdout`` exactly."""
        status, out, err = result
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, stdout)

    def assertFailure_(self, result, message):
        """Exit status 1, nothing on stdout, exactly ``message`` on stderr."""
        status, out, err = result
        self.assertEqual((status, out, err), (1, "", message + "\n"))


# ------------------------------------------------------------------ tests


class CannedBodiesTests(unittest.TestCase):
    """The fake's replies have the shapes oned 3.4 produces."""

    def test_bodies_validate_against_xsd(self):
        """Every canned body validates against the 3.4 XSD once namespaced."""
        if not os.path.isdir(XSD_DIR):
            raise unittest.SkipTest("3.4 XSDs not found in %s" % XSD_DIR)
        for name, body in ALL_BODIES.items():
            try:
                validate(body)
            except AssertionError as e:
                self.fail("%s: %s" % (name, e))

    def test_validation_catches_wrong_shapes(self):
        """The validator is not a no-op: a HOST without HOST_SHARE fails."""
        if not os.path.isdir(XSD_DIR):
            raise unittest.SkipTest("3.4 XSDs not found in %s" % XSD_DIR)
        bad = "<HOST><ID>0</ID><NAME>x</NAME></HOST>"
        self.assertRaises(AssertionError, validate, bad)


class ClientTests(FakeServerMixin, unittest.TestCase):
    """nebtwist.client.OneClient against the fake server."""

    def call(self, method, *args, **kw):
        """Call through a fresh client in a thread; fires with the value or the OneError."""
        def work():
            with OneClient(**kw) as c:
                try:
                    return c.call(method, *args)
                except OneError as e:
                    return e
        return threads.deferToThread(work)

    @defer.inlineCallbacks
    def test_value_and_session(self):
        """The value of [true, value, 0] is returned; the session comes first."""
        self.fake.replies["one.vm.allocate"] = ok(7)
        value = yield self.call("one.vm.allocate", "NAME=x",
                                endpoint=self.endpoint, session="u:p:w")
        self.assertEqual(value, 7)
        self.assertEqual(self.calls(), [("u:p:w", "NAME=x")])

    @defer.inlineCallbacks
    def test_environment(self):
        """Endpoint from ONE_XMLRPC, session = first line of the ONE_AUTH file."""
        self.fake.replies["one.hostpool.info"] = ok("<HOST_POOL/>")
        value = yield self.call("one.hostpool.info", environ=self.environ)
        self.assertEqual(value, "<HOST_POOL/>")
        self.assertEqual(self.calls(), [(SESSION,)])

    @defer.inlineCallbacks
    def test_default_auth_file(self):
        """Without ONE_AUTH the session is read from ~/.one/one_auth."""
        home = FilePath(self.mktemp())
        home.child(".one").makedirs()
        home.child(".one").child("one_auth").setContent(b"  helen:mypass  \n")
        self.fake.replies["one.userpool.info"] = ok("<USER_POOL/>")
        yield self.call("one.userpool.info",
                        environ={"ONE_XMLRPC": self.endpoint, "HOME": home.path})
        self.assertEqual(self.calls(), [("helen:mypass",)])

    def test_defaults(self):
        """Endpoint defaults to localhost:2633; auth file to ~/.one/one_auth."""
        self.assertEqual(client_module.default_endpoint({}), "http://localhost:2633/RPC2")
        self.assertEqual(client_module.auth_file_path({"HOME": "/h"}), "/h/.one/one_auth")
        self.assertEqual(client_module.auth_file_path({"ONE_AUTH": "/a"}), "/a")

    def test_missing_auth_file(self):
        """A missing auth file raises OneError naming it."""
        e = self.assertRaises(OneError, OneClient, environ={"ONE_AUTH": "/nonexistent/auth"})
        self.assertEqual(str(e), "ONE_AUTH file /nonexistent/auth not found")

    def test_malformed_auth_file(self):
        """An auth file without user:password raises OneError."""
        path = self.write_file("justaname\n")
        e = self.assertRaises(OneError, OneClient, environ={"ONE_AUTH": path})
        self.assertIn("malformed", str(e))

    @defer.inlineCallbacks
    def test_server_error(self):
        """[false, message, code] raises OneError(message, code)."""
        self.fake.replies["one.host.info"] = [False, "[HostInfo] Error getting host [9].", 0x400]
        e = yield self.call("one.host.info", 9, environ=self.environ)
        self.assertIsInstance(e, OneError)
        self.assertEqual((e.message, e.code), ("[HostInfo] Error getting host [9].", 0x400))

    @defer.inlineCallbacks
    def test_old_reply_shapes(self):
        """1.4 replies: [true] gives None; [false, msg] gives code -1."""
        self.fake.replies["one.host.enable"] = [True]
        value = yield self.call("one.host.enable", 0, True, environ=self.environ)
        self.assertIsNone(value)
        self.fake.replies["one.host.delete"] = [False, "nope"]
        e = yield self.call("one.host.delete", 0, environ=self.environ)
        self.assertEqual((e.message, e.code), ("nope", -1))

    @defer.inlineCallbacks
    def test_unexpected_reply(self):
        """A reply that is not [bool, ...] is an error."""
        self.fake.replies["one.vm.info"] = "surprise"
        e = yield self.call("one.vm.info", 1, environ=self.environ)
        self.assertIsInstance(e, OneError)
        self.assertTrue(e.message.startswith("Unexpected reply from "))

    @defer.inlineCallbacks
    def test_fault(self):
        """An XML-RPC fault becomes a one-line OneError."""
        def boom(*args):
            raise xmlrpc.Fault(42, "it\nbroke")
        self.fake.replies["one.vm.info"] = boom
        e = yield self.call("one.vm.info", 1, environ=self.environ)
        self.assertEqual(e.code, -1)
        self.assertEqual(e.message, "XML-RPC fault from %s: it broke (fault code 42)"
                         % self.endpoint)

    @defer.inlineCallbacks
    def test_http_error(self):
        """An HTTP error status becomes a one-line OneError."""
        endpoint = serve(self, resource.ErrorPage(500, "Broken", "broken"))
        e = yield self.call("one.vm.info", 1, endpoint=endpoint, session=SESSION)
        self.assertEqual(e.code, -1)
        self.assertTrue(e.message.startswith("HTTP error from %s: 500" % endpoint), e.message)
        self.assertNotIn("\n", e.message)

    @defer.inlineCallbacks
    def test_keep_alive(self):
        """Several calls share one HTTP connection."""
        self.fake.replies["one.hostpool.info"] = ok("<HOST_POOL/>")

        def work():
            with OneClient(environ=self.environ) as c:
                return [c.call("one.hostpool.info") for _ in range(3)]

        values = yield threads.deferToThread(work)
        self.assertEqual(values, ["<HOST_POOL/>"] * 3)
        self.assertEqual(len(self.calls()), 3)


class CommonTests(unittest.TestCase):
    """Formatting helpers."""

    def test_elapsed(self):
        """DD HH:MM:SS with two-digit days."""
        self.assertEqual(common.format_elapsed(28), "00 00:00:28")
        self.assertEqual(common.format_elapsed(2 * 86400 + 3 * 3600 + 4 * 60 + 5),
                         "02 03:04:05")
        self.assertEqual(common.format_elapsed(-5), "00 00:00:00")

    def test_time(self):
        """Local MM/DD HH:MM:SS, '-' for 0."""
        self.assertEqual(common.format_time(0), "-")
        self.assertEqual(common.format_time(1279386917),
                         time.strftime("%m/%d %H:%M:%S", time.localtime(1279386917)))

    def test_table_grows_with_content(self):
        """Columns widen to their widest cell; all rows keep the same positions."""
        cols = [common.Column("ID", 2, lambda r: r[0], "right"),
                common.Column("NAME", 4, lambda r: r[1]),
                common.Column("N", 3, lambda r: r[2], "right")]
        lines = common.render_table(cols, [(1, "a", 5), (123, "abcdef", 10000)])
        self.assertEqual(lines, [
            " ID NAME       N",
            "  1 a          5",
            "123 abcdef 10000",
        ])

    def test_parse_xml_is_hardened(self):
        """External entities are not resolved; namespaces are stripped."""
        evil = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                '<HOST><NAME>&e;</NAME></HOST>')
        root = common.parse_xml(evil)
        self.assertNotIn("root:", etree.tostring(root).decode())
        root = common.parse_xml('<HOST xmlns="%s"><NAME>n</NAME></HOST>' % ONE_NS)
        self.assertEqual(common.text(root, "NAME"), "n")

    def test_template_lines(self):
        """Sorted KEY=VALUE lines, vectors spread over lines."""
        root = common.parse_xml(_cdata_template(
            [("NIC", [("NETWORK", "One-TD"), ("IP", "10.0.0.1")]), ("CPU", "1"),
             ("DISK", [("SOURCE", "/a")]), ("EMPTY", "")]))
        self.assertEqual(common.template_lines(root), [
            "CPU=1",
            "DISK=[",
            "  SOURCE=/a ]",
            "EMPTY=",
            "NIC=[",
            "  IP=10.0.0.1,",
            "  NETWORK=One-TD ]",
        ])


class OneHostTests(FakeServerMixin, unittest.TestCase):
    """onehost."""

    def setUp(self):
        """Install the canned replies these commands need."""
        super().setUp()
        self.fake.replies.update({
            "one.hostpool.info": ok(HOST_POOL),
            "one.host.info": ok(HOST0),
            "one.host.allocate": ok(3),
            "one.host.delete": ok(1),
            "one.host.enable": ok(1),
        })

    @defer.inlineCallbacks
    def test_create_14_form(self):
        """create with four drivers sends the 1.4 form; silent without -v."""
        result = yield self.run_cli(onehost.main, "create", "host01", "im_xen", "vmm_xen", "tm_nfs")
        self.assertSuccess(result, "")
        self.assertEqual(self.fake.calls, [
            ("one.host.allocate", SESSION, "host01", "im_xen", "vmm_xen", "tm_nfs")])

    @defer.inlineCallbacks
    def test_create_three_args_verbose(self):
        """create with three drivers sends cluster -1; -v prints the id."""
        result = yield self.run_cli(onehost.main, "-v", "create", "host02", "im_kvm", "vmm_kvm")
        self.assertSuccess(result, "ID: 3\n")
        self.assertEqual(self.fake.calls, [
            ("one.host.allocate", SESSION, "host02", "im_kvm", "vmm_kvm", -1)])

    @defer.inlineCallbacks
    def test_create_34_form(self):
        """--im/--vm[/--net/--cluster] send 3.4's (name, im, vmm, vnm, cluster)."""
        result = yield self.run_cli(onehost.main, "create", "host03", "--im", "im_kvm",
                                    "--vm", "vmm_kvm", "--net", "ebtables", "--cluster", "2")
        self.assertSuccess(result, "")
        result = yield self.run_cli(onehost.main, "create", "host04", "--im", "im_kvm",
                                    "--vm", "vmm_qemu")
        self.assertSuccess(result, "")
        self.assertEqual(self.fake.calls, [
            ("one.host.allocate", SESSION, "host03", "im_kvm", "vmm_kvm", "ebtables", 2),
            ("one.host.allocate", SESSION, "host04", "im_kvm", "vmm_qemu", "dummy", -1)])

    @defer.inlineCallbacks
    def test_create_forms_not_mixed(self):
        """Options and positional drivers together, or half the options, are
        refused before anything is sent."""
        for argv, message in (
                (("host05", "im_kvm", "vmm_kvm", "--net", "fw"), "not both"),
                (("host05", "--im", "im_kvm"), "--im and --vm are both needed"),
                (("host05", "im_kvm"), "the information and virtualization drivers")):
            status, out, err = yield self.run_cli(onehost.main, "create", *argv)
            self.assertEqual((status, out), (1, ""))
            self.assertIn(message, err)
        self.assertEqual(self.fake.calls, [])

    @defer.inlineCallbacks
    def test_list(self):
        """The seed's columns, numbers right-aligned, short states."""
        result = yield self.run_cli(onehost.main, "list")
        self.assertSuccess(result, "\n".join([
            "ID NAME         RVM   TCPU   FCPU   ACPU    TMEM    FMEM STAT",
            " 0 host01         0    200    184    184 2017004 1848172 on",
            " 1 host02         1    200    200    200 2017004 1857172 off",
            " 2 ec2           12    500    500    500 8912896 8912896 err",
        ]) + "\n")
        self.assertEqual(self.fake.calls, [("one.hostpool.info", SESSION)])

    @defer.inlineCallbacks
    def test_list_xml(self):
        """-x prints the reply as received (before or after the subcommand)."""
        result = yield self.run_cli(onehost.main, "list", "-x")
        self.assertSuccess(result, HOST_POOL + "\n")
        result = yield self.run_cli(onehost.main, "--xml", "list")
        self.assertSuccess(result, HOST_POOL + "\n")

    @defer.inlineCallbacks
    def test_show(self):
        """show prints information, shares and monitoring sections."""
        result = yield self.run_cli(onehost.main, "show", "0")
        status, out, err = result
        self.assertEqual((status, err), (0, ""))
        mon = common.format_time(1279386917)
        self.assertEqual(out.splitlines(), [
            "HOST 0 INFORMATION",
            "ID                    : 0",
            "NAME                  : host01",
            "STATE                 : MONITORED",
            "IM_MAD                : im_xen",
            "VM_MAD                : vmm_xen",
            "VN_MAD                : dummy",
            "TM_MAD                : tm_nfs",
            "LAST MONITORING TIME  : " + mon,
            "",
            "HOST SHARES",
            "MAX MEM               : 2017004",
            "USED MEM (REAL)       : 168832",
            "USED MEM (ALLOCATED)  : 0",
            "FREE MEM              : 1848172",
            "MAX CPU               : 200",
            "USED CPU (REAL)       : 16",
            "USED CPU (ALLOCATED)  : 16",
            "FREE CPU              : 184",
            "RUNNING VMS           : 0",
            "",
            "MONITORING INFORMATION",
            "ARCH=x86_64",
            "FREECPU=184",
            "HYPERVISOR=xen",
            "MODELNAME=Intel(R) Xeon(R) CPU E5420 @ 2.50GHz",
            "TM_MAD=tm_nfs",
            "TOTALCPU=200",
        ])
        self.assertEqual(self.fake.calls, [("one.host.info", SESSION, 0)])

    @defer.inlineCallbacks
    def test_show_by_name_xml(self):
        """Names resolve through one.hostpool.info; -x prints the raw body."""
        self.fake.replies["one.host.info"] = ok(HOST2)
        result = yield self.run_cli(onehost.main, "show", "-x", "ec2")
        self.assertSuccess(result, HOST2 + "\n")
        self.assertEqual(self.fake.calls, [
            ("one.hostpool.info", SESSION), ("one.host.info", SESSION, 2)])

    @defer.inlineCallbacks
    def test_enable_disable_delete(self):
        """enable/disable send booleans; delete sends the id."""
        for argv in (["enable", "1"], ["disable", "ec2"], ["delete", "host01"]):
            result = yield self.run_cli(onehost.main, *argv)
            self.assertSuccess(result, "")
        self.assertEqual(self.fake.calls, [
            ("one.host.enable", SESSION, 1, True),
            ("one.hostpool.info", SESSION),
            ("one.host.enable", SESSION, 2, False),
            ("one.hostpool.info", SESSION),
            ("one.host.delete", SESSION, 0),
        ])

    @defer.inlineCallbacks
    def test_server_error(self):
        """A server error is printed exactly, exit status 1."""
        self.fake.replies["one.host.info"] = [False, "[HostInfo] Error getting host [9].", 0x400]
        result = yield self.run_cli(onehost.main, "show", "9")
        self.assertFailure_(result, "[HostInfo] Error getting host [9].")

    @defer.inlineCallbacks
    def test_unknown_name(self):
        """An unknown host name is an error, and nothing is changed."""
        result = yield self.run_cli(onehost.main, "delete", "nohost")
        self.assertFailure_(result, "HOST named nohost not found.")
        self.assertEqual(self.methods(), ["one.hostpool.info"])

    @defer.inlineCallbacks
    def test_connection_refused(self):
        """No server: one line on stderr, status 1."""
        port = reactor.listenTCP(0, server.Site(resource.Resource()), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        endpoint = "http://127.0.0.1:%d/RPC2" % number
        env = dict(self.environ, ONE_XMLRPC=endpoint)
        result = yield self.run_cli(onehost.main, "list", environ=env)
        self.assertFailure_(result, "Cannot connect to %s: connection refused" % endpoint)

    @defer.inlineCallbacks
    def test_missing_auth(self):
        """No ONE_AUTH file: status 1, nothing sent."""
        env = dict(self.environ, ONE_AUTH="/nonexistent/one_auth")
        result = yield self.run_cli(onehost.main, "list", environ=env)
        self.assertFailure_(result, "ONE_AUTH file /nonexistent/one_auth not found")
        self.assertEqual(self.fake.calls, [])

    @defer.inlineCallbacks
    def test_usage_error(self):
        """Bad arguments: usage on stderr, status 1, nothing sent."""
        status, out, err = yield self.run_cli(onehost.main, "create")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("usage: onehost create", err)
        self.assertIn("error:", err)
        status, out, err = yield self.run_cli(onehost.main)
        self.assertEqual(status, 1)
        self.assertEqual(self.fake.calls, [])

    @defer.inlineCallbacks
    def test_help(self):
        """--help goes to the given stdout, status 0."""
        status, out, err = yield self.run_cli(onehost.main, "--help")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("usage: onehost", out)

    @defer.inlineCallbacks
    def test_garbled_xml(self):
        """A reply that is not XML is reported, not a traceback."""
        self.fake.replies["one.hostpool.info"] = ok("<HOST_POOL><HOST>")
        status, out, err = yield self.run_cli(onehost.main, "list")
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.startswith("Cannot parse the server's XML reply: "), err)
        self.assertEqual(err.count("\n"), 1)


class OneUserTests(FakeServerMixin, unittest.TestCase):
    """oneuser."""

    def setUp(self):
        """Install the canned replies these commands need."""
        super().setUp()
        self.fake.replies.update({
            "one.userpool.info": ok(USER_POOL),
            "one.user.info": ok(USER2),
            "one.user.allocate": ok(2),
            "one.user.delete": ok(2),
            "one.user.passwd": ok(2),
        })

    @defer.inlineCallbacks
    def test_create(self):
        """create sends name, plain password and the core driver."""
        result = yield self.run_cli(oneuser.main, "create", "helen", "mypass")
        self.assertSuccess(result, "")
        result = yield self.run_cli(oneuser.main, "create", "-v", "helen", "mypass")
        self.assertSuccess(result, "ID: 2\n")
        self.assertEqual(self.calls("one.user.allocate"),
                         [(SESSION, "helen", "mypass", "core")] * 2)

    @defer.inlineCallbacks
    def test_list(self):
        """UID NAME PASSWORD ENABLE with True/False."""
        result = yield self.run_cli(oneuser.main, "list")
        pad = " " * 32
        self.assertSuccess(result, "\n".join([
            "UID NAME         PASSWORD" + pad + " ENABLE",
            "  0 oneadmin     c24783ba96a35464632a624d9f829136edc0175e True",
            "  2 helen        34a91f713808846ade4a71577dc7963631ebae14 True",
            "  3 bob          8be3c943b1609fffbfc51aad666d0a04adf83c9d False",
        ]) + "\n")

    @defer.inlineCallbacks
    def test_delete_and_passwd_by_name(self):
        """Names resolve through one.userpool.info."""
        result = yield self.run_cli(oneuser.main, "delete", "helen")
        self.assertSuccess(result)
        result = yield self.run_cli(oneuser.main, "passwd", "3", "newpass")
        self.assertSuccess(result)
        self.assertEqual(self.fake.calls, [
            ("one.userpool.info", SESSION),
            ("one.user.delete", SESSION, 2),
            ("one.user.passwd", SESSION, 3, "newpass"),
        ])

    @defer.inlineCallbacks
    def test_show(self):
        """show prints the user's information."""
        result = yield self.run_cli(oneuser.main, "show", "2")
        self.assertSuccess(result, "\n".join([
            "USER 2 INFORMATION",
            "ID                    : 2",
            "NAME                  : helen",
            "GROUP                 : users",
            "PASSWORD              : 34a91f713808846ade4a71577dc7963631ebae14",
            "AUTH_DRIVER           : core",
            "ENABLED               : Yes",
            "",
            "USER TEMPLATE",
        ]) + "\n")
        self.assertEqual(self.fake.calls, [("one.user.info", SESSION, 2)])

    @defer.inlineCallbacks
    def test_authentication_error(self):
        """The server's authentication message is printed exactly."""
        msg = "[UserPoolInfo] User couldn't be authenticated, aborting call."
        self.fake.replies["one.userpool.info"] = [False, msg, 0x100]
        result = yield self.run_cli(oneuser.main, "list")
        self.assertFailure_(result, msg)


class OneVNetTests(FakeServerMixin, unittest.TestCase):
    """onevnet."""

    def setUp(self):
        """Install the canned replies these commands need."""
        super().setUp()
        self.fake.replies.update({
            "one.vnpool.info": ok(VNET_POOL),
            "one.vn.info": ok(VNET0_INFO),
            "one.vn.allocate": ok(0),
            "one.vn.delete": ok(1),
            "one.userpool.info": ok(USER_POOL),
        })

    @defer.inlineCallbacks
    def test_create(self):
        """create sends the file's text and cluster -1; -v before or after."""
        text = ('NAME = "One-TD"\nTYPE = RANGED\nBRIDGE = xenbr0\n'
                'NETWORK_SIZE = 125\nNETWORK_ADDRESS = 192.168.1.128\n')
        path = self.write_file(text)
        result = yield self.run_cli(onevnet.main, "-v", "create", path)
        self.assertSuccess(result, "ID: 0\n")
        result = yield self.run_cli(onevnet.main, "create", path, "--verbose")
        self.assertSuccess(result, "ID: 0\n")
        result = yield self.run_cli(onevnet.main, "create", path)
        self.assertSuccess(result, "")
        self.assertEqual(self.fake.calls, [("one.vn.allocate", SESSION, text, -1)] * 3)

    @defer.inlineCallbacks
    def test_create_missing_file(self):
        """A missing template file is an error; nothing is sent."""
        result = yield self.run_cli(onevnet.main, "create", "/nonexistent/real.net")
        self.assertFailure_(result, "Template file /nonexistent/real.net not found")
        self.assertEqual(self.fake.calls, [])

    @defer.inlineCallbacks
    def test_list(self):
        """ID USER NAME TYPE BRIDGE #LEASES."""
        result = yield self.run_cli(onevnet.main, "list")
        self.assertSuccess(result, "\n".join([
            "  ID USER     NAME             TYPE   BRIDGE #LEASES",
            "   0 oneadmin One-TD           Ranged xenbr0       3",
            "   1 helen    One-TD-Invisible Fixed  xenbr0       1",
        ]) + "\n")
        self.assertEqual(self.fake.calls, [("one.vnpool.info", SESSION, -2, -1, -1)])

    @defer.inlineCallbacks
    def test_list_filters(self):
        """a/all -2, m/mine -3, g -1, uid, user name."""
        for arg in ("a", "all", "m", "mine", "g", "7", "helen"):
            result = yield self.run_cli(onevnet.main, "list", arg)
            self.assertEqual(result[0], 0, result)
        self.assertEqual(self.calls("one.vnpool.info"), [
            (SESSION, -2, -1, -1), (SESSION, -2, -1, -1), (SESSION, -3, -1, -1),
            (SESSION, -3, -1, -1), (SESSION, -1, -1, -1), (SESSION, 7, -1, -1),
            (SESSION, 2, -1, -1)])

    @defer.inlineCallbacks
    def test_show(self):
        """Information, permissions, template and leases."""
        result = yield self.run_cli(onevnet.main, "show", "One-TD")
        self.assertSuccess(result, "\n".join([
            "VIRTUAL NETWORK 0 INFORMATION",
            "ID                    : 0",
            "UID                   : 0",
            "USER                  : oneadmin",
            "GROUP                 : oneadmin",
            "NAME                  : One-TD",
            "TYPE                  : RANGED",
            "BRIDGE                : xenbr0",
            "VLAN                  : No",
            "IP START              : 192.168.1.129",
            "IP END                : 192.168.1.254",
            "USED LEASES           : 2",
            "PUBLIC                : Yes",
            "",
            "PERMISSIONS",
            "OWNER                 : um-",
            "GROUP                 : u--",
            "OTHER                 : ---",
            "",
            "VIRTUAL NETWORK TEMPLATE",
            "BRIDGE=xenbr0",
            "NAME=One-TD",
            "NETWORK_ADDRESS=192.168.1.128",
            "NETWORK_MASK=255.255.255.128",
            "TYPE=RANGED",
            "",
            "LEASES",
            "IP              MAC               USED  VID",
            "192.168.1.129   02:00:c0:a8:01:81    1   16",
            "192.168.1.140   02:00:c0:a8:01:8c    1   19",
        ]) + "\n")
        self.assertEqual(self.fake.calls, [
            ("one.vnpool.info", SESSION, -2, -1, -1), ("one.vn.info", SESSION, 0)])

    @defer.inlineCallbacks
    def test_delete(self):
        """delete by id."""
        result = yield self.run_cli(onevnet.main, "delete", "1")
        self.assertSuccess(result)
        self.assertEqual(self.fake.calls, [("one.vn.delete", SESSION, 1)])


class OneVMTests(FakeServerMixin, unittest.TestCase):
    """onevm."""

    def setUp(self):
        """Install the canned replies these commands need."""
        super().setUp()
        self.fake.replies.update({
            "one.vmpool.info": ok(VM_POOL),
            "one.vm.info": ok(VM17_INFO),
            "one.vm.allocate": ok(1),
            "one.vm.deploy": ok(1),
            "one.vm.action": ok(1),
            "one.vm.migrate": ok(1),
            "one.hostpool.info": ok(HOST_POOL),
            "one.userpool.info": ok(USER_POOL),
        })

    @defer.inlineCallbacks
    def test_create(self):
        """create sends the template text."""
        text = 'NAME = ttylinux\nCPU = 0.1\nMEMORY = 64\nNIC = [ NETWORK = "One-TD" ]\n'
        path = self.write_file(text)
        result = yield self.run_cli(onevm.main, "create", path)
        self.assertSuccess(result, "")
        result = yield self.run_cli(onevm.main, "create", "-v", path)
        self.assertSuccess(result, "ID: 1\n")
        self.assertEqual(self.fake.calls, [("one.vm.allocate", SESSION, text)] * 2)

    @defer.inlineCallbacks
    def test_create_error(self):
        """The server's allocate error is printed exactly."""
        msg = "[VirtualMachineAllocate] Error allocating a new virtual machine. Bad NIC."
        self.fake.replies["one.vm.allocate"] = [False, msg, 0x2000]
        path = self.write_file("NAME=x\n")
        result = yield self.run_cli(onevm.main, "create", path)
        self.assertFailure_(result, msg)

    @defer.inlineCallbacks
    def test_list(self):
        """Seed columns; short states; last history host; DD HH:MM:SS times."""
        result = yield self.run_cli(onevm.main, "list")
        self.assertSuccess(result, "\n".join([
            "  ID USER     NAME     STAT CPU     MEM HOSTNAME               TIME",
            "   1 oneadmin ttylinux pend   0       0                 00 00:00:28",
            "  16 oneadmin one-16   runn   0       0 ec2             00 00:00:35",
            "  19 helen    eco-vm   runn  12   65536 host01          02 03:04:05",
            "  20 oneadmin broken   fail   0       0 host02          00 00:01:34",
        ]) + "\n")
        self.assertEqual(self.fake.calls, [("one.vmpool.info", SESSION, -2, -1, -1, -1)])

    @defer.inlineCallbacks
    def test_list_filter_and_xml(self):
        """A user-name filter resolves to its uid; -x prints the raw pool."""
        result = yield self.run_cli(onevm.main, "list", "bob", "-x")
        self.assertSuccess(result, VM_POOL + "\n")
        self.assertEqual(self.fake.calls, [
            ("one.userpool.info", SESSION), ("one.vmpool.info", SESSION, 3, -1, -1, -1)])

    def test_short_states(self):
        """STATE short names; the LCM short name when ACTIVE."""
        def short(state, lcm):
            return onevm.short_state(common.parse_xml(vm_xml(0, "x", state, lcm, 0)))
        self.assertEqual([short(s, 0) for s in range(8)],
                         ["init", "pend", "hold", "actv", "stop", "susp", "done", "fail"])
        self.assertEqual([short(3, lcm) for lcm in range(17)],
                         ["actv", "prol", "boot", "runn", "migr", "save", "save", "save",
                          "migr", "prol", "epil", "epil", "shut", "shut", "fail", "clea",
                          "unkn"])

    @defer.inlineCallbacks
    def test_show(self):
        """Information, monitoring and template (vectors on several lines)."""
        result = yield self.run_cli(onevm.main, "show", "17")
        self.assertSuccess(result, "\n".join([
            "VIRTUAL MACHINE 17 INFORMATION",
            "ID                    : 17",
            "NAME                  : one-17",
            "USER                  : oneadmin",
            "GROUP                 : oneadmin",
            "STATE                 : ACTIVE",
            "LCM_STATE             : RUNNING",
            "HOSTNAME              : ec2",
            "START TIME            : " + common.format_time(1279386900),
            "END TIME              : -",
            "DEPLOY ID             : i-53ad943a",
            "",
            "VIRTUAL MACHINE MONITORING",
            "NET_TX                : 1200",
            "NET_RX                : 3400",
            "USED MEMORY           : 65536",
            "USED CPU              : 5",
            "",
            "VIRTUAL MACHINE TEMPLATE",
            "CPU=0.5",
            "EC2=[",
            "  AMI=ami-ccf615a5,",
            "  AUTHORIZED_PORTS=22,",
            "  INSTANCETYPE=m1.small,",
            "  KEYPAIR=keypair ]",
            "IP=ec2-72-44-62-194.compute-1.amazonaws.com",
            "MEMORY=64",
            "NIC=[",
            "  IP=192.168.1.140,",
            "  MAC=02:00:c0:a8:01:8c,",
            "  NETWORK=One-TD ]",
            'REQUIREMENTS=HOSTNAME = "ec2"',
            "VMID=17",
        ]) + "\n")
        self.assertEqual(self.fake.calls, [("one.vm.info", SESSION, 17)])

    @defer.inlineCallbacks
    def test_deploy_by_host_name(self):
        """deploy resolves the host name and sends (vm id, host id)."""
        result = yield self.run_cli(onevm.main, "deploy", "1", "host02")
        self.assertSuccess(result)
        self.assertEqual(self.fake.calls, [
            ("one.hostpool.info", SESSION), ("one.vm.deploy", SESSION, 1, 1)])

    @defer.inlineCallbacks
    def test_actions(self):
        """Action subcommands send (action, id), action first; delete is finalize."""
        names = [name for name, _, _ in onevm.SIMPLE_ACTIONS]
        for name in names:
            result = yield self.run_cli(onevm.main, name, "16")
            self.assertSuccess(result)
        self.assertEqual(self.calls("one.vm.action"), [
            (SESSION, "shutdown", 16), (SESSION, "finalize", 16), (SESSION, "hold", 16),
            (SESSION, "release", 16), (SESSION, "stop", 16), (SESSION, "cancel", 16),
            (SESSION, "suspend", 16), (SESSION, "resume", 16), (SESSION, "restart", 16),
            (SESSION, "resubmit", 16), (SESSION, "reboot", 16)])

    @defer.inlineCallbacks
    def test_action_by_vm_name(self):
        """A VM name resolves through one.vmpool.info (non-DONE VMs)."""
        result = yield self.run_cli(onevm.main, "shutdown", "eco-vm")
        self.assertSuccess(result)
        self.assertEqual(self.fake.calls, [
            ("one.vmpool.info", SESSION, -2, -1, -1, -1),
            ("one.vm.action", SESSION, "shutdown", 19)])

    @defer.inlineCallbacks
    def test_migrate(self):
        """migrate and livemigrate send (vm, host, live)."""
        result = yield self.run_cli(onevm.main, "migrate", "16", "0")
        self.assertSuccess(result)
        result = yield self.run_cli(onevm.main, "livemigrate", "16", "host02")
        self.assertSuccess(result)
        self.assertEqual(self.calls("one.vm.migrate"), [
            (SESSION, 16, 0, False), (SESSION, 16, 1, True)])

    @defer.inlineCallbacks
    def test_action_error(self):
        """A refused action prints the server's message, status 1."""
        msg = "[VirtualMachineAction] Wrong state to perform action"
        self.fake.replies["one.vm.action"] = [False, msg, 0x800]
        result = yield self.run_cli(onevm.main, "suspend", "1")
        self.assertFailure_(result, msg)
