"""The OCCI 1.1 front (nebtwist.api.occi) in memory: treq's StubTreq over
:class:`~nebtwist.api.occi.OCCIResource`, on the core of an in-process daemon
with the shipped dummy drivers (:func:`nebtwist.testing.start_nebula`).

Requests follow the examples of OGF GFD.185 (OCCI HTTP Rendering, 1.1);
renderings are checked against the shapes of the reference renderings of
CESNET/pOCCI (``tests/category-collection/text-ok-opennebula.txt``,
``tests/resource/text-ok-opennebula-compute.txt``).
"""

import base64
import hashlib
import os
from xml.etree import ElementTree

import treq
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from zope.interface.verify import verifyObject

from nebtwist.api.occi.front import OCCIFront
from nebtwist.api.occi.rendering import parse_structures
from nebtwist.api.plugin import FrontContext, find_fronts
from nebtwist.interfaces import IAPIFront
from nebtwist.tap import StartupError
from nebtwist.testing import start_nebula
from tests.test_xmlrpc_api import ok, wait_for, wait_host_monitored

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
ACTION = "http://schemas.ogf.org/occi/infrastructure/compute/action#"
OS_TPL = "http://nebtwist.org/occi/infrastructure/os_tpl#"
RES_TPL = "http://nebtwist.org/occi/infrastructure/resource_tpl#"
KIND = f'compute; scheme="{INFRA}"; class="kind"'


def basic(user, password):
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


class Reply:
    """An answer: ``code``, ``headers`` (twisted Headers), ``text`` (body)."""

    def __init__(self, code, headers, text):
        self.code, self.headers, self.text = code, headers, text

    def header(self, name):
        return [v.decode() for v in self.headers.getRawHeaders(name.encode(), [])]

    def structures(self):
        """The OCCI structures of a text/plain body or text/occi headers."""
        pairs = [(k.decode(), v.decode()) for k, vs in self.headers.getAllRawHeaders()
                 for v in vs]
        ctype = self.header("content-type")[0].split(";")[0]
        body = self.text.encode() if ctype == "text/plain" else b""
        return parse_structures(pairs, body, ctype)

    def lines(self, prefix):
        return [line[len(prefix):].strip() for line in self.text.splitlines()
                if line.startswith(prefix)]


class PluginTests(TestCase):
    """The front as a plug-in (nebtwist.api.plugin)."""

    def test_interface(self):
        """OCCIFront provides IAPIFront; the dropin registers it as ``occi``
        with OpenNebula's OCCI port on the loopback by default."""
        front = OCCIFront()
        self.assertTrue(verifyObject(IAPIFront, front))
        found = find_fronts()["occi"]
        self.assertIsInstance(found, OCCIFront)
        self.assertEqual((found.name, found.default_endpoints),
                         ("occi", ("tcp:4567:interface=127.0.0.1",)))


    async def test_served_by_the_daemon(self):
        """oned.conf ``API_FRONT = [ NAME = "occi", ENDPOINT = ... ]``: the
        daemon serves the front (oned.log names it); the query interface
        answers over TCP."""
        neb = await start_nebula(self, [
            'API_FRONT=[NAME="xmlrpc"]',
            'API_FRONT=[NAME="occi",ENDPOINT="tcp:0:interface=127.0.0.1"]'])
        self.assertEqual([p.getHost().host for p in neb.service.fronts["occi"].ports],
                         ["127.0.0.1"])
        response = await treq.get(neb.front_url("occi") + "-/", persistent=False,
                                  headers={b"Authorization": basic("oneadmin", "onecloud")})
        body = (await treq.content(response)).decode()
        self.assertEqual(response.code, 200, body)
        self.assertIn(f"Category: {KIND}", body)
        with open(os.path.join(neb.var_dir, "oned.log"), encoding="utf-8") as f:
            self.assertIn("occi front listening on", f.read())

    async def test_bad_econe_conf_stops_start_up(self):
        """The VM types cannot load (ECONE_CONF names no file): the daemon
        does not start, and says why in one line."""
        with self.assertRaises(StartupError) as raised:
            await start_nebula(self, ['ECONE_CONF="/nonexistent/econe.conf"',
                                      'API_FRONT=[NAME="xmlrpc"]', 'API_FRONT=[NAME="occi",'
                                      'ENDPOINT="tcp:0:interface=127.0.0.1"]'])
        self.assertIn("occi front: econe.conf: cannot read /nonexistent/econe.conf",
                      str(raised.exception))


class OCCIFrontTests(TestCase):
    """The front over a daemon with one monitored dummy host, an OS image
    ``ttylinux`` and a virtual network ``pub``."""

    timeout = 180

    async def setUp(self):
        self.neb = neb = await start_nebula(self)
        hid = await ok(neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy", "tm_dummy")
        src = os.path.abspath(self.mktemp())
        with open(src, "wb") as f:
            f.write(b"disk" * 256)
        self.image = await ok(neb, "one.image.allocate",
                              f'NAME = "ttylinux"\nPATH = "{src}"\nTYPE = OS\n', 1)
        self.vnet = await ok(neb, "one.vn.allocate", 'NAME = "pub"\nTYPE = RANGED\n'
                             'BRIDGE = br0\nNETWORK_ADDRESS = 192.168.7.0/24\n')
        await wait_host_monitored(neb, hid)

        async def image_ready():
            body = await ok(neb, "one.image.info", self.image)
            return ElementTree.fromstring(body).findtext("STATE") == "1"

        await wait_for(image_ready, "the image to be READY")
        front = OCCIFront()
        ctx = FrontContext.for_tests(neb.service.requests, reactor, config=neb.nebula.config,
                                     one_location=neb.one_location, max_body=64 * 1024)
        await front.prepare(ctx)
        self.stub = StubTreq(front.resource(ctx))

    async def occi(self, method, path, headers=None, body=b"", auth=("oneadmin", "onecloud")):
        """Send a request through the stub and wait for its answer."""
        headers = dict(headers or {})
        if auth is not None:
            headers.setdefault(b"Authorization", basic(*auth))
        deadline = reactor.seconds() + 60

        async def settle(d, what):
            # d.called is not enough: a Deferred may be waiting on another.
            done = []
            d.addBoth(lambda r: done.append(r))
            while not done:
                self.stub.flush()
                if reactor.seconds() > deadline:
                    self.fail(f"no {what} for {method} {path}")
                await deferLater(reactor, 0.01, lambda: None)
            if isinstance(done[0], Failure):
                done[0].raiseException()
            return done[0]

        response = await settle(self.stub.request(
            method, "http://occi.example.com" + path, headers=headers, data=body or None),
            "answer")
        text = await settle(self.stub.content(response), "body")
        return Reply(response.code, response.headers, text.decode("utf-8"))

    async def create_compute(self, body, headers=None):
        reply = await self.occi("POST", "/compute/", dict(
            {b"Content-Type": b"text/plain"}, **(headers or {})), body)
        self.assertEqual(reply.code, 201, reply.text)
        location = reply.header("location")[0]
        self.assertTrue(location.startswith("http://occi.example.com/compute/"), location)
        return int(location.rsplit("/", 1)[1])

    async def wait_attr(self, vid, name, value):
        last = []

        async def reached():
            reply = await self.occi("GET", f"/compute/{vid}")
            last[:] = [reply.code, reply.text]
            return reply.structures().attributes.get(name) == value

        try:
            await wait_for(reached, f"compute {vid} {name}={value}")
        except AssertionError as e:
            self.fail(f"{e}; last answer: {last}")

    async def vm_state(self, vid):
        body = await ok(self.neb, "one.vm.info", vid)
        root = ElementTree.fromstring(body)
        return int(root.findtext("STATE")), int(root.findtext("LCM_STATE"))

    async def vm_count(self):
        body = await ok(self.neb, "one.vmpool.info", -2, -1, -1, -2)
        return len(ElementTree.fromstring(body).findall("VM"))

    # -- the query interface --------------------------------------------------------------

    async def test_query_interface_text_plain(self):
        """GFD.185 "Handling the Query Interface": ``GET /-/`` (no Accept:
        text/plain, "Content-type and Accept headers")
        lists every Kind, Mixin and Action as ``Category:`` lines of the body,
        in the shape of pOCCI's ``text-ok-opennebula.txt``: the compute Kind
        with its location, attributes and actions; the Link Kinds; the
        ipnetwork Mixins; the Actions; an os_tpl per OS image and a
        resource_tpl per econe.conf VM type."""
        reply = await self.occi("GET", "/-/")
        self.assertEqual(reply.code, 200, reply.text)
        self.assertEqual(reply.header("content-type"), ["text/plain; charset=utf-8"])
        lines = reply.text.splitlines()
        self.assertTrue(lines and all(line.startswith("Category: ") for line in lines), lines)
        cats = {(t, s, c) for t, s, c in reply.structures().categories}
        for term, scheme, cls in [
                ("entity", "http://schemas.ogf.org/occi/core#", "kind"),
                ("resource", "http://schemas.ogf.org/occi/core#", "kind"),
                ("link", "http://schemas.ogf.org/occi/core#", "kind"),
                ("compute", INFRA, "kind"), ("network", INFRA, "kind"),
                ("storage", INFRA, "kind"), ("networkinterface", INFRA, "kind"),
                ("storagelink", INFRA, "kind"), ("os_tpl", INFRA, "mixin"),
                ("resource_tpl", INFRA, "mixin"),
                ("ipnetwork", "http://schemas.ogf.org/occi/infrastructure/network#", "mixin"),
                ("ipnetworkinterface",
                 "http://schemas.ogf.org/occi/infrastructure/networkinterface#", "mixin"),
                ("start", ACTION, "action"), ("stop", ACTION, "action"),
                ("restart", ACTION, "action"), ("suspend", ACTION, "action"),
                ("up", "http://schemas.ogf.org/occi/infrastructure/network/action#", "action"),
                ("down", "http://schemas.ogf.org/occi/infrastructure/network/action#",
                 "action"),
                ("online", "http://schemas.ogf.org/occi/infrastructure/storage/action#",
                 "action"),
                ("offline", "http://schemas.ogf.org/occi/infrastructure/storage/action#",
                 "action"),
                (f"image_{self.image}", OS_TPL, "mixin"),
                ("m1_small", RES_TPL, "mixin"), ("m1_large", RES_TPL, "mixin")]:
            self.assertIn((term, scheme, cls), cats)
        compute = [line for line in lines if line.startswith(f"Category: {KIND}")]
        self.assertEqual(len(compute), 1, lines)
        for part in ('location="/compute/"', 'rel="http://schemas.ogf.org/occi/core#resource"',
                     "occi.compute.cores", "occi.compute.memory",
                     "occi.compute.state{immutable}", f"{ACTION}start", f"{ACTION}suspend"):
            self.assertIn(part, compute[0])
        os_tpl = [line for line in lines if f"image_{self.image};" in line]
        self.assertIn('title="ttylinux"', os_tpl[0])
        self.assertIn(f'rel="{INFRA}os_tpl"', os_tpl[0])
        small = [line for line in lines if line.startswith("Category: m1_small;")]
        self.assertIn('title="m1.small: CPU 0.2, 256 MB memory"', small[0])
        self.assertIn(f'rel="{INFRA}resource_tpl"', small[0])

    async def test_query_text_occi_and_filter(self):
        """GFD.185 "Handling the Query Interface": also at
        ``/.well-known/org/ogf/occi/-/``; Categories in the request filter it.
        "The Content-type text/occi": the structures are HTTP headers, the
        body ``OK``."""
        reply = await self.occi("GET", "/.well-known/org/ogf/occi/-/", {
            b"Accept": b"text/occi", b"Category": KIND.encode()})
        self.assertEqual(reply.code, 200, reply.text)
        self.assertEqual(reply.header("content-type"), ["text/occi"])
        self.assertEqual(reply.text, "OK\n")
        self.assertEqual(len(reply.header("category")), 1)
        self.assertEqual(reply.structures().categories, [("compute", INFRA, "kind")])

    async def test_content_negotiation(self):
        """GFD.185 "Content-type and Accept headers": ``*/*`` is text/plain;
        text/uri-list only for listings (400 on the query interface); a type
        the front cannot render is 406. "Versioning": every answer says
        ``Server: ... OCCI/1.1``; a client asking for a later OCCI gets 501."""
        anything = await self.occi("GET", "/-/", {b"Accept": b"*/*"})
        self.assertEqual(anything.code, 200)
        self.assertEqual(anything.header("server"), ["nebtwist OCCI/1.1"])
        self.assertEqual((await self.occi("GET", "/-/", {b"Accept": b"text/uri-list"})).code,
                         400)
        later = await self.occi("GET", "/-/", {b"User-Agent": b"client/2 OCCI/1.2"})
        self.assertEqual(later.code, 501, later.text)  # GFD.185 "Versioning"
        self.assertEqual(later.header("server"), ["nebtwist OCCI/1.1"])
        refused = await self.occi("GET", "/-/", {b"Accept": b"application/json"})
        self.assertEqual(refused.code, 406)
        self.assertEqual(refused.header("content-type"), ["text/plain; charset=utf-8"])
        self.assertIn("text/plain", refused.text)

    # -- authentication -------------------------------------------------------------------

    async def test_authentication(self):
        """HTTP Basic: no credentials or a wrong password is 401 with a
        Basic challenge; OpenNebula 3.x OCCI's SHA1-hex password is accepted;
        another user cannot see oneadmin's VM (403)."""
        none = await self.occi("GET", "/compute/", auth=None)
        self.assertEqual(none.code, 401)
        self.assertEqual(none.header("www-authenticate"), ['Basic realm="nebtwist OCCI"'])
        self.assertEqual((await self.occi("GET", "/compute/", auth=("oneadmin", "x"))).code,
                         401)
        digest = hashlib.sha1(b"onecloud").hexdigest()
        self.assertEqual((await self.occi("GET", "/-/", auth=("oneadmin", digest))).code, 200)
        await ok(self.neb, "one.user.allocate", "helen", "helenpass")
        vid = await self.create_compute(f"Category: {KIND}\n".encode())
        other = await self.occi("GET", f"/compute/{vid}", auth=("helen", "helenpass"))
        self.assertEqual(other.code, 403, other.text)
        self.assertEqual((await self.occi("GET", "/compute/", auth=("helen", "helenpass"))
                          ).code, 204)

    # -- compute --------------------------------------------------------------------------

    async def test_create_show_list_text_plain(self):
        """GFD.185 "Operations on Resource Instances", creating (text/plain): a
        compute Kind, an os_tpl Mixin, attributes and a Link to a network ->
        201 + Location; the Kind's location lists it ("Operations on Mixins or
        Kinds"); retrieving the entity
        renders its attributes, its networkinterface and storagelink Links
        (pOCCI ``text-ok-opennebula-compute.txt``'s shape) and, once RUNNING,
        the stop/restart/suspend action Links; one.vm.info shows the same VM."""
        body = (f"Category: {KIND}\n"
                f'Category: image_{self.image}; scheme="{OS_TPL}"; class="mixin"\n'
                'X-OCCI-Attribute: occi.core.title="web-1"\n'
                "X-OCCI-Attribute: occi.compute.cores=2\n"
                "X-OCCI-Attribute: occi.compute.memory=0.25\n"
                f'Link: </network/{self.vnet}>; rel="{INFRA}network"; '
                f'category="{INFRA}networkinterface"\n').encode()
        vid = await self.create_compute(body)
        vm = ElementTree.fromstring(await ok(self.neb, "one.vm.info", vid))
        self.assertEqual(vm.findtext("NAME"), "web-1")
        self.assertEqual(vm.findtext("TEMPLATE/VCPU"), "2")
        self.assertEqual(vm.findtext("TEMPLATE/MEMORY"), "256")
        self.assertEqual(vm.findtext("TEMPLATE/NIC/NETWORK_ID"), str(self.vnet))
        self.assertEqual(vm.findtext("TEMPLATE/DISK/IMAGE_ID"), str(self.image))

        listing = await self.occi("GET", "/compute/")
        self.assertEqual(listing.code, 200)
        self.assertEqual(listing.lines("X-OCCI-Location:"),
                         [f"http://occi.example.com/compute/{vid}"])
        uris = await self.occi("GET", "/compute/", {b"Accept": b"text/uri-list"})
        self.assertEqual((uris.code, uris.text), (200, f"http://occi.example.com/compute/{vid}\n"))
        # "Operations on Mixins or Kinds": Categories filter a listing; a
        # Mixin's location lists the entities that have it.
        os_tpl = f'image_{self.image}; scheme="{OS_TPL}"; class="mixin"'.encode()
        mine = await self.occi("GET", "/compute/", {b"Category": os_tpl})
        self.assertEqual(mine.lines("X-OCCI-Location:"), [f"http://occi.example.com/compute/{vid}"])
        small = f'm1_small; scheme="{RES_TPL}"; class="mixin"'.encode()
        self.assertEqual((await self.occi("GET", "/compute/", {b"Category": small})).code, 204)
        tagged = await self.occi("GET", f"/mixin/os_tpl/image_{self.image}/")
        self.assertEqual(tagged.lines("X-OCCI-Location:"),
                         [f"http://occi.example.com/compute/{vid}"])
        self.assertEqual((await self.occi("GET", "/mixin/os_tpl/image_99/")).code, 404)
        self.assertEqual((await self.occi("PUT", f"/mixin/os_tpl/image_{self.image}/")).code,
                         405)

        await self.wait_attr(vid, "org.opennebula.compute.lcm_state", "RUNNING")
        reply = await self.occi("GET", f"/compute/{vid}")
        st = reply.structures()
        self.assertIn(("compute", INFRA, "kind"), st.categories)
        self.assertIn((f"image_{self.image}", OS_TPL, "mixin"), st.categories)
        attrs = st.attributes
        self.assertEqual((attrs["occi.core.id"], attrs["occi.core.title"],
                          attrs["occi.compute.cores"], attrs["occi.compute.memory"],
                          attrs["occi.compute.state"], attrs["occi.compute.hostname"]),
                         (str(vid), "web-1", 2, 0.25, "active", "web-1"))
        links = {link.rel: link for link in st.links}
        nic = links[INFRA + "network"]
        self.assertEqual(nic.target, f"/network/{self.vnet}")
        self.assertEqual(nic.self_uri, f"/link/networkinterface/compute_{vid}_nic_0")
        self.assertIn(INFRA + "networkinterface", nic.category)
        self.assertTrue(nic.attributes["occi.networkinterface.address"].startswith("192.168.7."))
        self.assertEqual(nic.attributes["occi.networkinterface.interface"], "eth0")
        disk = links[INFRA + "storage"]
        self.assertEqual((disk.target, disk.self_uri),
                         (f"/storage/{self.image}", f"/link/storagelink/compute_{vid}_disk_0"))
        self.assertEqual(disk.attributes["occi.storagelink.deviceid"], "/dev/hda")
        actions = sorted(link.target for link in st.links if link.rel.startswith(ACTION))
        self.assertEqual(actions, [f"/compute/{vid}?action={a}"
                                   for a in ("restart", "stop", "suspend")])
        for line in reply.lines("Link:"):  # the rendering's own spelling
            self.assertTrue(line.startswith("</"), line)

        core = await self.occi("GET", "/resource/", {b"Accept": b"text/uri-list"})
        self.assertEqual(core.text.split(), [
            f"http://occi.example.com/compute/{vid}",
            f"http://occi.example.com/network/{self.vnet}",
            f"http://occi.example.com/storage/{self.image}"])
        links = await self.occi("GET", "/link/", {b"Accept": b"text/uri-list"})
        self.assertEqual(links.text.split(), [
            f"http://occi.example.com/link/networkinterface/compute_{vid}_nic_0",
            f"http://occi.example.com/link/storagelink/compute_{vid}_disk_0"])
        everything = await self.occi("GET", "/entity/", {b"Accept": b"text/uri-list"})
        self.assertEqual(everything.text.split(), core.text.split() + links.text.split())
        nics = await self.occi("GET", "/link/networkinterface/")
        self.assertEqual(nics.lines("X-OCCI-Location:"), [
            f"http://occi.example.com/link/networkinterface/compute_{vid}_nic_0"])
        one = await self.occi("GET", f"/link/networkinterface/compute_{vid}_nic_0")
        self.assertEqual(one.code, 200)
        self.assertEqual(one.structures().attributes["occi.core.source"], f"/compute/{vid}")
        self.assertEqual((await self.occi("GET", f"/link/storagelink/compute_{vid}_disk_0")
                          ).structures().attributes["occi.core.target"],
                         f"/storage/{self.image}")
        self.assertEqual((await self.occi("GET", f"/link/storagelink/compute_{vid}_disk_9")
                          ).code, 404)

    async def test_create_text_occi_resource_tpl(self):
        """GFD.185 "The Content-type text/occi" (structures as headers, several
        values comma separated in one header) and GFD.184's templates
        (resource_tpl + os_tpl):
        the m1.small VM type's template (CPU 0.2, MEMORY 256) with the image."""
        cats = (f'{KIND}, image_{self.image}; scheme="{OS_TPL}"; class="mixin", '
                f'm1_small; scheme="{RES_TPL}"; class="mixin"')
        reply = await self.occi("POST", "/compute/", {
            b"Content-Type": b"text/occi", b"Accept": b"text/occi",
            b"Category": cats.encode(),
            b"X-OCCI-Attribute": b'occi.core.title="small-1"'})
        self.assertEqual(reply.code, 201, reply.text)
        self.assertEqual(reply.text, "OK\n")
        vid = int(reply.header("location")[0].rsplit("/", 1)[1])
        self.assertEqual(reply.header("x-occi-location"), [reply.header("location")[0]])
        vm = ElementTree.fromstring(await ok(self.neb, "one.vm.info", vid))
        self.assertEqual((vm.findtext("NAME"), vm.findtext("TEMPLATE/CPU"),
                          vm.findtext("TEMPLATE/MEMORY"), vm.findtext("TEMPLATE/INSTANCE_TYPE")),
                         ("small-1", "0.2", "256", "m1.small"))
        shown = await self.occi("GET", f"/compute/{vid}", {b"Accept": b"text/occi"})
        self.assertEqual(shown.text, "OK\n")
        st = shown.structures()
        self.assertIn(("m1_small", RES_TPL, "mixin"), st.categories)
        self.assertEqual(st.attributes["occi.compute.memory"], 0.25)

    async def test_actions(self):
        """GFD.185 "Operations on Resource Instances", triggering an Action:
        ``POST /compute/N?action=suspend``
        with the Action's Category; suspend -> SUSPENDED, start -> resume,
        restart -> reboot, stop with ``method="poweroff"`` -> cancel (DONE,
        then 410); an Action the state does not allow ("If an action is not
        available a Bad Request should be returned"), an unknown method or a
        missing Action Category are 400; GFD.185's own bare-token example
        ``method=poweroff`` is read."""
        vid = await self.create_compute(f"Category: {KIND}\n".encode())
        await self.wait_attr(vid, "org.opennebula.compute.lcm_state", "RUNNING")

        async def act(term, method=None, category=True):
            body = f'Category: {term}; scheme="{ACTION}"; class="action"\n' if category else ""
            if method:  # as given: quoted, or GFD.185's bare token
                body += f'X-OCCI-Attribute: method={method}\n'
            return await self.occi("POST", f"/compute/{vid}?action={term}",
                                   {b"Content-Type": b"text/plain"}, body.encode())

        self.assertEqual((await act("stop", category=False)).code, 400)
        self.assertEqual((await act("stop", method='"sideways"')).code, 400)
        self.assertEqual((await act("start")).code, 400)  # RUNNING: nothing to resume
        self.assertEqual((await act("suspend")).code, 200)
        await self.wait_attr(vid, "occi.compute.state", "suspended")
        links = (await self.occi("GET", f"/compute/{vid}")).structures().links
        self.assertEqual([link.target for link in links], [f"/compute/{vid}?action=start"])
        self.assertEqual((await act("start")).code, 200)
        await self.wait_attr(vid, "org.opennebula.compute.lcm_state", "RUNNING")
        restarted = await act("restart", method='"warm"')
        self.assertEqual(restarted.code, 200, restarted.text)
        await self.wait_attr(vid, "org.opennebula.compute.lcm_state", "RUNNING")
        self.assertEqual((await act("stop", method="poweroff")).code, 200)

        async def gone():
            return (await self.occi("GET", f"/compute/{vid}")).code == 410

        await wait_for(gone, "the VM to be DONE")
        self.assertEqual((await self.vm_state(vid))[0], 6)  # DONE

    async def test_delete(self):
        """GFD.185 "Operations on Resource Instances", deleting: ``DELETE /compute/N``
        -> 200, the VM DONE (3.4 finalize); an unknown id is 404."""
        vid = await self.create_compute(f"Category: {KIND}\n".encode())
        reply = await self.occi("DELETE", f"/compute/{vid}")
        self.assertEqual(reply.code, 200, reply.text)
        self.assertEqual((await self.vm_state(vid))[0], 6)
        self.assertEqual((await self.occi("GET", "/compute/")).code, 204)
        self.assertEqual((await self.occi("DELETE", "/compute/999")).code, 404)

    async def test_bad_requests(self):
        """Bad input gets a 4xx with a text/plain message, and no VM: two
        Kinds, a wrong Kind, an unknown Mixin, a resource_tpl without an
        os_tpl, a malformed Category, an unquoted string value, a line that
        is not an OCCI structure, a Link to a missing network (the core's
        refusal), a body over the front's limit (413) or of another type (400);
        PUT is 405, unknown paths 404."""
        before = await self.vm_count()
        storage_kind = f'storage; scheme="{INFRA}"; class="kind"'
        for body in [f"Category: {KIND}\nCategory: {storage_kind}\n",
                     f"Category: {storage_kind}\n",
                     f'Category: {KIND}\nCategory: nope; scheme="{OS_TPL}"; class="mixin"\n',
                     f'Category: {KIND}\nCategory: m1_small; scheme="{RES_TPL}"; '
                     f'class="mixin"\n',
                     f'Category: compute; scheme="{INFRA}; class="kind"\n',
                     f"Category: {KIND}\nX-OCCI-Attribute: occi.core.title=two words\n",
                     f"Category: {KIND}\nHello: world\n",
                     f"Category: {KIND}\nX-OCCI-Attribute: occi.compute.cores=-1\n",
                     f'Category: {KIND}\nLink: </network/77>; rel="{INFRA}network"\n']:
            reply = await self.occi("POST", "/compute/", {b"Content-Type": b"text/plain"},
                                    body.encode())
            self.assertIn(reply.code, (400, 404), (body, reply.text))
            self.assertEqual(reply.header("content-type"), ["text/plain; charset=utf-8"])
            self.assertTrue(reply.text.strip() and "Traceback" not in reply.text, reply.text)
        big = await self.occi("POST", "/compute/", {b"Content-Type": b"text/plain"},
                              f"Category: {KIND}\n".encode() + b"#" * (65 * 1024))
        self.assertEqual(big.code, 413, big.text)
        json = await self.occi("POST", "/compute/", {b"Content-Type": b"application/json"},
                               b'{"kind": "compute"}')
        self.assertEqual(json.code, 400, json.text)
        self.assertEqual(await self.vm_count(), before)
        self.assertEqual((await self.occi("PUT", "/compute/1")).code, 405)
        self.assertEqual((await self.occi("GET", "/nothing/")).code, 404)
        self.assertEqual((await self.occi("GET", "/compute/abc")).code, 404)

    # -- network and storage --------------------------------------------------------------

    async def test_network(self):
        """GFD.184 Network + IPNetworking Mixin: ``POST /network/`` with the ipnetwork Mixin and
        ``occi.network.address`` -> a RANGED network; GET renders the address
        as CIDR; ``down`` is refused (400); DELETE removes it. Without an
        address: 400, no network."""
        ipnet = 'ipnetwork; scheme="http://schemas.ogf.org/occi/infrastructure/network#"; ' \
                'class="mixin"'
        kind = f'network; scheme="{INFRA}"; class="kind"'
        missing = await self.occi("POST", "/network/", {b"Content-Type": b"text/plain"},
                                  f"Category: {kind}\n".encode())
        self.assertEqual(missing.code, 400)
        body = (f"Category: {kind}\nCategory: {ipnet}\n"
                'X-OCCI-Attribute: occi.core.title="priv"\n'
                'X-OCCI-Attribute: occi.network.address="10.1.0.0/24"\n'
                'X-OCCI-Attribute: occi.network.gateway="10.1.0.1"\n'
                'X-OCCI-Attribute: org.opennebula.network.bridge="br1"\n').encode()
        reply = await self.occi("POST", "/network/", {b"Content-Type": b"text/plain"}, body)
        self.assertEqual(reply.code, 201, reply.text)
        nid = int(reply.header("location")[0].rsplit("/", 1)[1])
        shown = (await self.occi("GET", f"/network/{nid}")).structures()
        self.assertIn(("ipnetwork", "http://schemas.ogf.org/occi/infrastructure/network#",
                       "mixin"), shown.categories)
        self.assertEqual((shown.attributes["occi.core.title"],
                          shown.attributes["occi.network.address"],
                          shown.attributes["occi.network.gateway"],
                          shown.attributes["occi.network.state"]),
                         ("priv", "10.1.0.0/24", "10.1.0.1", "active"))
        listing = await self.occi("GET", "/network/")
        self.assertEqual(listing.lines("X-OCCI-Location:"), [
            f"http://occi.example.com/network/{self.vnet}",
            f"http://occi.example.com/network/{nid}"])
        down = await self.occi(
            "POST", f"/network/{nid}?action=down", {b"Content-Type": b"text/plain"},
            b'Category: down; scheme="http://schemas.ogf.org/occi/infrastructure/network/'
            b'action#"; class="action"\n')
        self.assertEqual(down.code, 400)
        self.assertEqual((await self.occi("DELETE", f"/network/{nid}")).code, 200)
        self.assertEqual((await self.occi("GET", f"/network/{nid}")).code, 404)

    async def test_storage(self):
        """GFD.184 Storage: ``POST /storage/`` with ``occi.storage.size`` (GiB) -> a
        DATABLOCK image of SIZE MB; it goes online; ``offline`` disables it
        (``online`` enables it again); DELETE removes it. Without a size: 400."""
        kind = f'storage; scheme="{INFRA}"; class="kind"'
        missing = await self.occi("POST", "/storage/", {b"Content-Type": b"text/plain"},
                                  f"Category: {kind}\n".encode())
        self.assertEqual(missing.code, 400)
        body = (f"Category: {kind}\n"
                'X-OCCI-Attribute: occi.core.title="scratch"\n'
                "X-OCCI-Attribute: occi.storage.size=0.5\n").encode()
        reply = await self.occi("POST", "/storage/", {b"Content-Type": b"text/plain"}, body)
        self.assertEqual(reply.code, 201, reply.text)
        sid = int(reply.header("location")[0].rsplit("/", 1)[1])
        image = ElementTree.fromstring(await ok(self.neb, "one.image.info", sid))
        self.assertEqual((image.findtext("TYPE"), image.findtext("SIZE")), ("2", "512"))

        async def state(wanted):
            attrs = (await self.occi("GET", f"/storage/{sid}")).structures().attributes
            return attrs.get("occi.storage.state") == wanted and attrs

        attrs = await wait_for(lambda: state("online"), "the storage online")
        self.assertEqual(attrs["occi.storage.size"], 0.5)
        scheme = b"http://schemas.ogf.org/occi/infrastructure/storage/action#"
        for term, wanted in ((b"offline", "offline"), (b"online", "online")):
            acted = await self.occi(
                "POST", f"/storage/{sid}?action={term.decode()}",
                {b"Content-Type": b"text/plain"},
                b"Category: " + term + b'; scheme="' + scheme + b'"; class="action"\n')
            self.assertEqual(acted.code, 200, acted.text)
            self.assertTrue(await state(wanted))
        self.assertEqual((await self.occi("DELETE", f"/storage/{sid}")).code, 200)
        self.assertEqual((await self.occi("GET", f"/storage/{sid}")).code, 404)
