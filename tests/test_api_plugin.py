"""API fronts as plug-ins (nebtwist.api.plugin): discovery, oned.conf API_FRONT, start-up.

A "third-party" front here is a real dropin in a folder of its own
(``<tmp>/nebtwist/plugins/<mod>.py``, no ``__init__.py``), found the way an
installed distribution's would be: through ``nebtwist.plugins.__path__``
(``pluginPackagePaths``) in a fresh interpreter, and by the daemon.
"""

import os
import subprocess
import sys
import textwrap

import treq
from twisted.internet import defer, reactor
from twisted.trial import unittest
from zope.interface.verify import verifyObject

import nebtwist.plugins
from nebtwist.api.plugin import (DEFAULT_FRONTS, FrontContext, FrontStartupError,
                                 enabled_vectors, endpoints_of, find_fronts)
from nebtwist.core.config import Config
from nebtwist.interfaces import IAPIFront
from nebtwist.template import Template
from nebtwist.testing import start_nebula

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: A third party's front: answers GET / with the name of the user the core
#: authenticates from HTTP Basic, through the requests layer only.
THIRD_PARTY = '''
from twisted.plugin import IPlugin
from twisted.web import resource
from zope.interface import implementer

from nebtwist.api.plugin import HTTPFront
from nebtwist.errors import AuthenticationError
from nebtwist.interfaces import IAPIFront


class _Hello(resource.Resource):
    isLeaf = True

    def __init__(self, requests):
        super().__init__()
        self.requests = requests

    def render_GET(self, request):
        try:
            user = self.requests.authenticate(request.getUser().decode(),
                                              request.getPassword().decode())
        except AuthenticationError:
            request.setResponseCode(401)
            return b"no"
        return f"hello {user.name} from ".encode() + b"{NAME}"


@implementer(IPlugin, IAPIFront)
class HelloFront(HTTPFront):
    name = "{NAME}"
    description = "a third party's front"
    default_endpoints = ("tcp:0:interface=127.0.0.1",)

    def resource(self, ctx):
        return _Hello(ctx.requests)


front = HelloFront()
'''


def write_dropin(base, name="hello", module="thirdparty_hello"):
    """A dropin ``<base>/nebtwist/plugins/<module>.py`` serving front ``name``;
    returns its plug-in folder."""
    folder = os.path.join(base, "nebtwist", "plugins")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, module + ".py"), "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(THIRD_PARTY).replace("{NAME}", name))
    return folder


def config_of(text):
    return Config(Template.parse(text), None)


class DiscoveryTests(unittest.TestCase):
    """getPlugins finds nebtwist's fronts, and a front another package installs."""

    def test_shipped_fronts_provide_the_interface(self):
        fronts = find_fronts()
        self.assertIn("xmlrpc", fronts)
        self.assertIn("ec2", fronts)
        for name, front in fronts.items():
            self.assertTrue(verifyObject(IAPIFront, front))
            self.assertEqual(front.name, name)

    def test_third_party_dropin_found_in_a_fresh_interpreter(self):
        """A folder on PYTHONPATH with ``nebtwist/plugins/<mod>.py`` and no
        ``__init__.py`` (what ``pip install`` of another distribution leaves)."""
        base = os.path.abspath(self.mktemp())
        write_dropin(base)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, base]))
        out = subprocess.run(
            [sys.executable, "-c", "from nebtwist.api.plugin import find_fronts; "
                                   "print(' '.join(sorted(find_fronts())))"],
            env=env, cwd=base, capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        names = out.stdout.split()
        self.assertIn("hello", names)
        self.assertIn("xmlrpc", names)
        self.assertIn("ec2", names)

    def test_two_plugins_with_one_name_refused(self):
        base = os.path.abspath(self.mktemp())
        folder = write_dropin(base, name="ec2", module="thirdparty_ec2")
        nebtwist.plugins.__path__.append(folder)
        self.addCleanup(nebtwist.plugins.__path__.remove, folder)
        with self.assertRaises(FrontStartupError) as raised:
            find_fronts()
        self.assertIn("two API front plug-ins are named 'ec2'", str(raised.exception))


class ConfigurationTests(unittest.TestCase):
    """oned.conf API_FRONT vectors."""

    def test_no_api_front_means_the_defaults(self):
        self.assertEqual([v["NAME"] for v in enabled_vectors(config_of("PORT = 2633"))],
                         list(DEFAULT_FRONTS))

    def test_vectors_in_order(self):
        config = config_of('API_FRONT = [ NAME = "ec2", CONF = "e.conf" ]\n'
                           'API_FRONT = [ NAME = "occi", ENDPOINT = "tcp:1 tcp:2" ]\n')
        vectors = enabled_vectors(config)
        self.assertEqual([v["NAME"] for v in vectors], ["ec2", "occi"])
        self.assertEqual(vectors[0]["CONF"], "e.conf")
        self.assertEqual(endpoints_of(vectors[1], ("tcp:9",)), ["tcp:1", "tcp:2"])
        self.assertEqual(endpoints_of(vectors[0], ("tcp:9",)), ["tcp:9"])

    def test_bad_vectors(self):
        for text, message in [('API_FRONT = [ CONF = "x" ]', "API_FRONT needs a NAME"),
                              ('API_FRONT = [ NAME = "ec2" ]\nAPI_FRONT = [ NAME = "ec2" ]',
                               "API_FRONT 'ec2' is given twice")]:
            with self.assertRaises(FrontStartupError) as raised:
                enabled_vectors(config_of(text))
            self.assertEqual(str(raised.exception), message)

    def test_conf_path(self):
        base = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(base, "etc"))
        with open(os.path.join(base, "etc", "mine.conf"), "w") as f:
            f.write("X = 1\n")
        ctx = FrontContext.for_tests(None, reactor, one_location=base,
                                     vector={"NAME": "x", "CONF": "mine.conf"})
        self.assertEqual(ctx.conf_path("other.conf"), os.path.join(base, "etc", "mine.conf"))
        ctx = FrontContext.for_tests(None, reactor, one_location=base, vector={"NAME": "x"})
        self.assertTrue(ctx.conf_path("econe.conf").endswith(os.path.join("conf",
                                                                          "econe.conf")))


class DaemonTests(unittest.TestCase):
    """A daemon starts the fronts oned.conf names, and only those."""

    def test_defaults_start_xmlrpc_and_ec2(self):
        async def run():
            neb = await start_nebula(self)
            self.assertEqual(list(neb.service.fronts), ["xmlrpc", "ec2"])
            self.assertEqual(neb.service.ports, neb.service.fronts["xmlrpc"].ports)
            ok, version, _ = await neb.call("one.system.version")
            self.assertTrue(ok, version)
        return defer.ensureDeferred(run())

    def test_disabled_front_does_not_listen(self):
        """Only XML-RPC enabled: no EC2 port, nothing in oned.log about it."""
        async def run():
            neb = await start_nebula(self, ['API_FRONT=[NAME="xmlrpc"]'])
            self.assertEqual(list(neb.service.fronts), ["xmlrpc"])
            self.assertEqual(neb.service.ec2_ports, [])
            self.assertIsNone(neb.ec2_url)
            with open(os.path.join(neb.var_dir, "oned.log"), encoding="utf-8") as f:
                log = f.read()
            self.assertIn("XML-RPC API listening on", log)
            self.assertNotIn("EC2 Query API and S3 listening", log)
        return defer.ensureDeferred(run())

    def test_ec2_endpoint_from_api_front(self):
        """ENDPOINT replaces econe.conf's PORT: the EC2 front answers there."""
        async def run():
            neb = await start_nebula(self, [
                'API_FRONT=[NAME="xmlrpc"]',
                'API_FRONT=[NAME="ec2",ENDPOINT="tcp:0:interface=127.0.0.1"]'])
            ports = neb.service.fronts["ec2"].ports
            self.assertEqual(len(ports), 1)
            self.assertEqual(ports[0].getHost().host, "127.0.0.1")
            response = await treq.get(neb.front_url("ec2") + "?Action=DescribeRegions",
                                      persistent=False)
            body = await treq.content(response)
            self.assertEqual(response.code, 401, body)  # unsigned: EC2's AuthFailure
            self.assertIn(b"<Code>AuthFailure</Code>", body)
        return defer.ensureDeferred(run())

    def test_third_party_front_served_beside_xmlrpc(self):
        base = os.path.abspath(self.mktemp())
        folder = write_dropin(base)
        nebtwist.plugins.__path__.append(folder)
        self.addCleanup(nebtwist.plugins.__path__.remove, folder)

        async def run():
            neb = await start_nebula(self, ['API_FRONT=[NAME="xmlrpc"]',
                                            'API_FRONT=[NAME="hello"]'])
            self.assertEqual(list(neb.service.fronts), ["xmlrpc", "hello"])
            url = neb.front_url("hello")
            response = await treq.get(url, auth=("oneadmin", "onecloud"), persistent=False)
            self.assertEqual(await treq.content(response), b"hello oneadmin from hello")
            response = await treq.get(url, auth=("oneadmin", "wrong"), persistent=False)
            self.assertEqual(response.code, 401)
            await treq.content(response)
            with open(os.path.join(neb.var_dir, "oned.log"), encoding="utf-8") as f:
                self.assertIn("hello front listening on tcp:0:interface=127.0.0.1", f.read())
        return defer.ensureDeferred(run())

    def test_unknown_front_stops_startup(self):
        async def run():
            with self.assertRaises(Exception) as raised:
                await start_nebula(self, ['API_FRONT=[NAME="nosuch"]'])
            self.assertIn("API_FRONT 'nosuch': no such front plug-in (installed: ",
                          str(raised.exception))
            self.assertIn("xmlrpc", str(raised.exception))
        return defer.ensureDeferred(run())
