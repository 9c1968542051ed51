"""The OpenStack front (nebtwist.api.openstack) in memory: its resource driven
with ``DummyRequest`` over an in-process core with the shipped dummy drivers."""

import io
import json
import os

from twisted.internet import reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.test.requesthelper import DummyRequest

from nebtwist import paths
from nebtwist.api.openstack import common
from nebtwist.api.openstack.config import build_settings
from nebtwist.api.openstack.resource import OpenStackResource
from nebtwist.core.config import ConfigError
from nebtwist.testing import start_nebula
from tests.test_image import register, write
from tests.test_xmlrpc_api import HELEN, RANGED_NET, add_user, ok, wait_for, wait_host_monitored

SHIPPED_CONF = paths.shipped("conf", "openstack.conf")
BOB = "bob:bobpass"


async def call(resource, method, path, body=None, headers=None, host="cloud.test:5000"):
    """Render ``method path`` on ``resource``; returns (status, JSON or None,
    response headers as {lower name: str})."""
    request = DummyRequest([])
    request.method = method.encode()
    request.isSecure = lambda: False
    request.uri = path.encode()
    request.path = path.split("?")[0].encode()
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    request.content = io.BytesIO((body or "").encode())
    if host:
        request.requestHeaders.setRawHeaders(b"host", [host.encode()])
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name.encode(), [value.encode()])
    done = request.notifyFinish()
    request.render(resource)
    await done
    data = b"".join(request.written)
    out = {k.decode().lower(): v[-1].decode() for k, v in request.responseHeaders.getAllRawHeaders()}
    return request.responseCode, (json.loads(data) if data else None), out


def password_body(name, password, project=None):
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": name, "password": password, "domain": {"name": "Default"}}}}}}
    if project is not None:
        body["auth"]["scope"] = {"project": {"name": project, "domain": {"name": "Default"}}}
    return body


class PluginObjectTests(SynchronousTestCase):
    """The dropin's front object."""

    def test_verify(self):
        from zope.interface.verify import verifyObject

        from nebtwist.api.plugin import find_fronts
        from nebtwist.interfaces import IAPIFront
        from nebtwist.plugins.openstack import openstack

        self.assertTrue(verifyObject(IAPIFront, openstack))
        self.assertIs(find_fronts()["openstack"], openstack)
        self.assertEqual(openstack.default_endpoints, ("tcp:5000:interface=127.0.0.1",))


class IdsTests(SynchronousTestCase):
    """The stable UUID mapping of nebtwist ids."""

    def test_round_trip(self):
        uuid = common.to_uuid("server", 42)
        self.assertEqual(uuid, "00000000-0000-4000-8000-000000000042")
        self.assertEqual(common.from_uuid("server", uuid), 42)
        self.assertEqual(common.from_uuid("server", uuid.upper()), 42)
        self.assertEqual(common.from_uuid("server", "42"), 42)

    def test_other_kinds_and_junk(self):
        image = common.to_uuid("image", 7)
        self.assertEqual(common.from_uuid("image", image), 7)
        self.assertIsNone(common.from_uuid("server", image))
        for junk in ("", "web-1", "-1", "4.2", None, "00000000-0000-4000-8000-00000000004x",
                     "\u0664\u0662"):
            self.assertIsNone(common.from_uuid("server", junk), junk)


class ConfigTests(TestCase):
    """openstack.conf: the shipped one loads; bad ones name the problem."""

    def conf(self, text):
        path = os.path.join(os.path.abspath(self.mktemp()))
        os.makedirs(path)
        path = os.path.join(path, "openstack.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_shipped(self):
        settings = build_settings(SHIPPED_CONF, None, task.Clock())
        self.assertEqual(sorted(settings.flavors), ["m1.large", "m1.small"])
        small = settings.flavors["m1.small"]
        self.assertEqual((small.vcpus, small.ram, small.disk), (1, 256, 0))
        self.assertEqual((settings.region, settings.tokens.lifetime), ("RegionOne", 3600))

    def test_errors(self):
        cases = [("TOKEN_LIFETIME = soon\n", "TOKEN_LIFETIME must be a positive integer"),
                 ("COLOUR = blue\n", "unknown key COLOUR"),
                 ('PUBLIC_URL = "ftp://x"\n', "PUBLIC_URL must be an http"),
                 ('VM_TYPE = [ NAME = "x", TEMPLATE = "missing.mako" ]\n', "not found"),
                 ("REGION = [\n", "syntax error")]
        for text, message in cases:
            e = self.assertRaises(ConfigError, build_settings, self.conf(text), None,
                                  task.Clock())
            self.assertIn(message, str(e))


class OpenStackFrontTests(TestCase):
    """Routes and errors against a daemon with one dummy host and one image."""

    timeout = 240

    async def setUp(self):
        self.neb = neb = await start_nebula(self)
        hid = await ok(neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy", "tm_dummy")
        await wait_host_monitored(neb, hid)
        self.helen_id = await add_user(neb, HELEN)
        await add_user(neb, BOB)
        path = write(self, b"\0" * 4096)
        self.image_id, _ = await register(
            neb, f'NAME = "ttylinux"\nPATH = "{path}"\nTYPE = OS\n')
        await ok(neb, "one.image.chown", self.image_id, self.helen_id, 1)
        self.requests = neb.service.requests
        self.settings = build_settings(SHIPPED_CONF, self.requests, reactor)
        self.resource = OpenStackResource(self.settings)

    async def token(self, name="helen", password="helenpass", project="users"):
        status, body, headers = await call(self.resource, "POST", "/identity/v3/auth/tokens",
                                           password_body(name, password, project))
        self.assertEqual(status, 201, body)
        return headers["x-subject-token"], body

    async def nova(self, method, path, body=None, token=None, version="2.79"):
        token = token or self.helen_token
        return await call(self.resource, method, "/compute/v2.1" + path, body,
                          {"X-Auth-Token": token, "OpenStack-API-Version": f"compute {version}"})

    async def glance(self, path, token=None):
        return await call(self.resource, "GET", "/image/v2" + path, None,
                          {"X-Auth-Token": token or self.helen_token})

    # -- Keystone ---------------------------------------------------------------------

    async def test_identity_versions(self):
        status, body, _ = await call(self.resource, "GET", "/identity")
        self.assertEqual(status, 300)
        self.assertEqual(body["versions"]["values"][0]["links"][0]["href"],
                         "http://cloud.test:5000/identity/v3/")
        status, body, _ = await call(self.resource, "GET", "/identity/v3")
        self.assertEqual((status, body["version"]["id"]), (200, "v3.14"))

    async def test_token_and_catalog(self):
        token, body = await self.token()
        tok = body["token"]
        self.assertEqual(tok["user"]["name"], "helen")
        self.assertEqual(tok["user"]["id"], str(self.helen_id))
        self.assertEqual(tok["project"], {"id": "1", "name": "users",
                                          "domain": {"id": "default", "name": "Default"}})
        self.assertEqual([r["name"] for r in tok["roles"]], ["member", "reader"])
        urls = {s["type"]: s["endpoints"][0]["url"] for s in tok["catalog"]}
        self.assertEqual(urls, {"compute": "http://cloud.test:5000/compute/v2.1",
                                "image": "http://cloud.test:5000/image",
                                "identity": "http://cloud.test:5000/identity"})
        self.assertGreaterEqual(len(token), 40)
        # Validation: GET with the subject token; DELETE revokes it.
        status, body, headers = await call(self.resource, "GET", "/identity/v3/auth/tokens",
                                           headers={"X-Auth-Token": token,
                                                    "X-Subject-Token": token})
        self.assertEqual((status, body["token"]["user"]["name"]), (200, "helen"))
        status, _, _ = await call(self.resource, "DELETE", "/identity/v3/auth/tokens",
                                  headers={"X-Auth-Token": token, "X-Subject-Token": token})
        self.assertEqual(status, 204)
        status, body, _ = await self.nova("GET", "/servers", token=token)
        self.assertEqual(status, 401)
        self.assertEqual(body["unauthorized"]["code"], 401)

    async def test_unscoped_token_is_the_group(self):
        status, body, _ = await call(self.resource, "POST", "/identity/v3/auth/tokens",
                                     password_body("oneadmin", "onecloud"))
        self.assertEqual(status, 201, body)
        self.assertEqual(body["token"]["project"]["name"], "oneadmin")
        self.assertIn("admin", [r["name"] for r in body["token"]["roles"]])

    async def test_public_url(self):
        self.settings.public_url = "https://cloud.example.org:5000"
        _, body = await self.token()
        urls = [s["endpoints"][0]["url"] for s in body["token"]["catalog"]]
        self.assertTrue(all(u.startswith("https://cloud.example.org:5000/") for u in urls), urls)

    async def test_token_errors(self):
        path = "/identity/v3/auth/tokens"
        cases = [
            (password_body("helen", "wrong", "users"), 401),
            (password_body("nobody", "x", "users"), 401),
            (password_body("helen", "helenpass", "oneadmin"), 401),  # not her group
            ({"auth": {}}, 400),
            ({"auth": {"identity": {"methods": ["token"], "token": {"id": "x"}}}}, 401),
            ("not json", 400),
        ]
        for body, code in cases:
            status, reply, _ = await call(self.resource, "POST", path, body)
            self.assertEqual(status, code, (body, reply))
            self.assertEqual(reply["error"]["code"], code)
            self.assertIn("title", reply["error"])
        self.assertEqual(len(self.settings.tokens), 0)

    async def test_token_expires(self):
        clock = task.Clock()
        clock.advance(1000)
        self.settings.tokens.clock = clock
        token, body = await self.token()
        self.assertEqual(body["token"]["expires_at"], "1970-01-01T01:16:40.000000Z")
        status, _, _ = await self.nova("GET", "/flavors", token=token)
        self.assertEqual(status, 200)
        clock.advance(3600)
        status, body, headers = await self.nova("GET", "/flavors", token=token)
        self.assertEqual(status, 401)
        self.assertIn("Keystone uri=", headers["www-authenticate"])

    # -- Nova -------------------------------------------------------------------------

    async def test_compute_versions_and_microversions(self):
        status, body, _ = await call(self.resource, "GET", "/compute/v2.1")
        self.assertEqual(status, 200)
        self.assertEqual((body["version"]["version"], body["version"]["min_version"]),
                         ("2.79", "2.1"))
        self.helen_token, _ = await self.token()
        status, _, headers = await self.nova("GET", "/flavors", version="2.61")
        self.assertEqual((status, headers["openstack-api-version"]), (200, "compute 2.61"))
        status, body, _ = await self.nova("GET", "/flavors", version="2.99")
        self.assertEqual(status, 406)
        self.assertIn("maximum is 2.79", body["notAcceptable"]["message"])
        status, body, _ = await self.nova("GET", "/servers", token="forged")
        self.assertEqual((status, body["unauthorized"]["code"]), (401, 401))

    async def test_flavors(self):
        self.helen_token, _ = await self.token()
        status, body, _ = await self.nova("GET", "/flavors")
        self.assertEqual([f["id"] for f in body["flavors"]], ["m1.large", "m1.small"])
        status, body, _ = await self.nova("GET", "/flavors/detail?minRam=512")
        self.assertEqual([(f["id"], f["vcpus"], f["ram"], f["disk"]) for f in body["flavors"]],
                         [("m1.large", 1, 1024, 0)])
        status, body, _ = await self.nova("GET", "/flavors/m1.small")
        self.assertEqual((status, body["flavor"]["ram"], body["flavor"]["extra_specs"]),
                         (200, 256, {}))
        status, body, _ = await self.nova("GET", "/flavors/tiny")
        self.assertEqual(status, 404)
        self.assertEqual(body, {"itemNotFound": {"code": 404,
                                                 "message": "Flavor tiny could not be found."}})

    async def test_routes_and_methods(self):
        self.helen_token, _ = await self.token()
        status, body, _ = await self.nova("GET", "/hypervisors")
        self.assertEqual((status, body["itemNotFound"]["code"]), (404, 404))
        status, body, headers = await self.nova("PUT", "/flavors")
        self.assertEqual((status, body["badMethod"]["code"]), (405, 405))
        status, body, _ = await call(self.resource, "GET", "/nowhere")
        self.assertEqual(status, 404)
        status, body, _ = await self.nova("POST", "/servers", body="{broken")
        self.assertEqual((status, list(body)), (400, ["badRequest"]))

    # -- Glance -----------------------------------------------------------------------

    async def test_images(self):
        self.helen_token, _ = await self.token()
        status, body, _ = await call(self.resource, "GET", "/image")
        self.assertEqual(status, 300)
        uuid = common.to_uuid("image", self.image_id)
        status, body, _ = await self.glance("/images")
        self.assertEqual(status, 200)
        self.assertEqual([(i["id"], i["name"], i["status"]) for i in body["images"]],
                         [(uuid, "ttylinux", "active")])
        status, body, _ = await self.glance("/images?name=ttylinux")
        self.assertEqual(len(body["images"]), 1)
        status, body, _ = await self.glance("/images?name=other")
        self.assertEqual(body["images"], [])
        status, body, _ = await self.glance(f'/images?id=in:"{uuid}",junk')
        self.assertEqual([i["id"] for i in body["images"]], [uuid])
        for ref in (uuid, str(self.image_id)):
            status, body, _ = await self.glance(f"/images/{ref}")
            self.assertEqual((status, body["id"], body["owner"]), (200, uuid, "1"))
        status, body, _ = await self.glance("/images/ttylinux")
        self.assertEqual((status, list(body)), (404, ["itemNotFound"]))
        # Bob (another user of the same group) does not see Helen's private image.
        bob, _ = await self.token("bob", "bobpass")
        status, body, _ = await self.glance(f"/images/{uuid}", token=bob)
        self.assertEqual(status, 404)

    # -- servers ----------------------------------------------------------------------

    async def wait_status(self, sid, wanted):
        async def reached():
            status, body, _ = await self.nova("GET", f"/servers/{sid}")
            self.assertEqual(status, 200, body)
            return body["server"]["status"] == wanted and body["server"]

        return await wait_for(reached, f"server {sid} to be {wanted}", timeout=120)

    def create_body(self, name="web", **more):
        server = {"name": name, "flavorRef": "m1.small",
                  "imageRef": common.to_uuid("image", self.image_id), "networks": "auto"}
        server.update(more)
        return {"server": server}

    async def test_server_life_cycle(self):
        self.helen_token, _ = await self.token()
        status, body, headers = await self.nova("POST", "/servers", self.create_body())
        self.assertEqual(status, 202, body)
        sid = body["server"]["id"]
        self.assertEqual(headers["location"], f"http://cloud.test:5000/compute/v2.1/servers/{sid}")
        vid = common.from_uuid("server", sid)
        vm = self.neb.nebula.vmpool.get(vid)
        self.assertEqual((vm.name, vm.uid, vm.template.get_str("INSTANCE_TYPE")),
                         ("web", self.helen_id, "m1.small"))
        server = await self.wait_status(sid, "ACTIVE")
        self.assertEqual(server["image"]["id"], common.to_uuid("image", self.image_id))
        self.assertEqual(server["flavor"]["original_name"], "m1.small")
        self.assertEqual((server["OS-EXT-STS:vm_state"], server["OS-EXT-STS:power_state"]),
                         ("active", 1))
        self.assertEqual((server["tenant_id"], server["user_id"]), ("1", str(self.helen_id)))
        status, body, _ = await self.nova("GET", f"/servers/{sid}", version="2.1")
        self.assertEqual(body["server"]["flavor"]["id"], "m1.small")
        # Lists: by name (a regular expression, as Nova), details.
        status, body, _ = await self.nova("GET", "/servers?name=^we")
        self.assertEqual([s["id"] for s in body["servers"]], [sid])
        status, body, _ = await self.nova("GET", "/servers/detail?name=nothing")
        self.assertEqual(body["servers"], [])
        status, body, _ = await self.nova("GET", "/servers?name=" + "a" * 300)
        self.assertEqual((status, list(body)), (400, ["badRequest"]))
        status, body, _ = await self.nova("GET", "/servers/detail?deleted=False")
        self.assertEqual([s["status"] for s in body["servers"]], ["ACTIVE"])
        # Another user does not see it.
        bob, _ = await self.token("bob", "bobpass")
        status, body, _ = await self.nova("GET", f"/servers/{sid}", token=bob)
        self.assertEqual((status, list(body)), (404, ["itemNotFound"]))
        status, body, _ = await self.nova("GET", "/servers", token=bob)
        self.assertEqual(body["servers"], [])
        # reboot (state unchanged), stop, a refused start/stop, start.
        status, _, _ = await self.nova("POST", f"/servers/{sid}/action",
                                       {"reboot": {"type": "SOFT"}})
        self.assertEqual(status, 202)
        status, _, _ = await self.nova("POST", f"/servers/{sid}/action", {"os-stop": None})
        self.assertEqual(status, 202)
        server = await self.wait_status(sid, "SHUTOFF")
        self.assertEqual(server["OS-EXT-STS:power_state"], 4)
        status, body, _ = await self.nova("POST", f"/servers/{sid}/action", {"os-stop": None})
        self.assertEqual(status, 409)
        self.assertIn("vm_state stopped", body["conflictingRequest"]["message"])
        status, body, _ = await self.nova("POST", f"/servers/{sid}/action",
                                          {"reboot": {"type": "HARD"}})
        self.assertEqual(status, 409)
        status, _, _ = await self.nova("POST", f"/servers/{sid}/action", {"os-start": None})
        self.assertEqual(status, 202)
        await self.wait_status(sid, "ACTIVE")
        status, body, _ = await self.nova("POST", f"/servers/{sid}/action", {"pause": None})
        self.assertEqual((status, body["badRequest"]["message"]),
                         (400, "There is no such action: pause"))
        # delete: 204, then gone.
        status, body, _ = await self.nova("DELETE", f"/servers/{sid}")
        self.assertEqual((status, body), (204, None))

        async def gone():
            status, _, _ = await self.nova("GET", f"/servers/{sid}")
            return status == 404

        await wait_for(gone, "the server to be deleted", timeout=120)
        self.assertEqual(self.neb.nebula.vmpool.get(vid).state, 6)  # DONE
        status, body, _ = await self.nova("GET", "/servers")
        self.assertEqual(body["servers"], [])

    async def test_group_may_see_not_delete(self):
        """The core's permissions decide: a group member with USE sees the
        server, without MANAGE cannot delete it (403 forbidden)."""
        self.helen_token, _ = await self.token()
        status, body, _ = await self.nova("POST", "/servers", self.create_body(networks="none"))
        self.assertEqual(status, 202, body)
        sid = body["server"]["id"]
        vid = common.from_uuid("server", sid)
        await ok(self.neb, "one.vm.chmod", vid, 1, 1, 0, 1, 0, 0, 0, 0, 0)  # um- u-- ---
        bob, _ = await self.token("bob", "bobpass")
        status, body, _ = await self.nova("GET", f"/servers/{sid}", token=bob)
        self.assertEqual((status, body["server"]["name"]), (200, "web"))
        status, body, _ = await self.nova("DELETE", f"/servers/{sid}", token=bob)
        self.assertEqual((status, list(body)), (403, ["forbidden"]))
        self.assertNotEqual(self.neb.nebula.vmpool.get(vid).state, 6)

    async def test_create_refusals_make_nothing(self):
        self.helen_token, _ = await self.token()
        image = common.to_uuid("image", self.image_id)
        cases = [
            ({}, "server"),
            (self.create_body(name=""), "name"),
            (self.create_body(flavorRef="m9.huge"), "Flavor m9.huge could not be found."),
            (self.create_body(imageRef=common.to_uuid("image", 999)), "could not be found"),
            (self.create_body(imageRef="ttylinux"), "Image ttylinux could not be found."),
            (self.create_body(imageRef=""), "Missing imageRef"),
            (self.create_body(networks=[{"port": "p1"}]), "ports are not supported"),
            (self.create_body(networks=[{"uuid": common.to_uuid("network", 77)}]),
             "could not be found"),
            (self.create_body(networks="everything"), "networks"),
            (self.create_body(key_name="mykey"), "key_name"),
            (self.create_body(max_count=0), "max_count"),
            (self.create_body(user_data="!!!"), "user_data"),
            (self.create_body(user_data="QUJD" * 20000), "at most 65535"),
            (self.create_body(block_device_mapping_v2=[{"source_type": "volume",
                                                        "uuid": image}]), "not supported"),
        ]
        for body, message in cases:
            status, reply, _ = await self.nova("POST", "/servers", body)
            self.assertEqual(status, 400, (body, reply))
            self.assertIn(message, reply["badRequest"]["message"])
        self.assertEqual(len(self.neb.nebula.vmpool.objects), 0)

    async def test_create_on_a_network_and_several(self):
        nid = await ok(self.neb, "one.vn.allocate", RANGED_NET, session=HELEN)
        self.helen_token, _ = await self.token()
        body = self.create_body(name="pair", max_count=2,
                                networks=[{"uuid": common.to_uuid("network", nid)}])
        status, reply, _ = await self.nova("POST", "/servers", body)
        self.assertEqual(status, 202, reply)
        status, reply, _ = await self.nova("GET", "/servers/detail")
        servers = reply["servers"]
        self.assertEqual(sorted(s["name"] for s in servers), ["pair-1", "pair-2"])
        for server in servers:
            (net, addresses), = server["addresses"].items()
            self.assertEqual(net, "public")
            self.assertTrue(addresses[0]["addr"].startswith("192.168.0."), addresses)
        # Paging: limit and marker.
        status, reply, _ = await self.nova("GET", "/servers?limit=1")
        self.assertEqual(len(reply["servers"]), 1)
        self.assertIn("marker=", reply["servers_links"][0]["href"])
        marker = reply["servers"][0]["id"]
        status, reply, _ = await self.nova("GET", f"/servers?limit=1&marker={marker}")
        self.assertEqual(len(reply["servers"]), 1)
        self.assertNotEqual(reply["servers"][0]["id"], marker)


class PluginTests(TestCase):
    """The front enabled in oned.conf (API_FRONT) of an in-process daemon."""

    timeout = 120

    async def test_enabled_front_serves_over_http(self):
        import treq

        neb = await start_nebula(self, [
            'API_FRONT=[NAME="xmlrpc"]',
            'API_FRONT=[NAME="openstack",ENDPOINT="tcp:0:interface=127.0.0.1"]'])
        self.assertEqual(list(neb.service.fronts), ["xmlrpc", "openstack"])
        port = neb.service.fronts["openstack"].ports[0].getHost().port
        url = f"http://127.0.0.1:{port}"
        response = await treq.post(url + "/identity/v3/auth/tokens",
                                   json.dumps(password_body("oneadmin", "onecloud")).encode(),
                                   headers={"Content-Type": "application/json"},
                                   persistent=False)
        body = json.loads(await treq.content(response))
        self.assertEqual(response.code, 201, body)
        token = response.headers.getRawHeaders(b"x-subject-token")[0]
        compute = [s for s in body["token"]["catalog"] if s["type"] == "compute"][0]
        self.assertEqual(compute["endpoints"][0]["url"], f"{url}/compute/v2.1")
        response = await treq.get(url + "/compute/v2.1/flavors", persistent=False,
                                  headers={b"X-Auth-Token": token})
        body = json.loads(await treq.content(response))
        self.assertEqual(sorted(f["id"] for f in body["flavors"]), ["m1.large", "m1.small"])
        with open(os.path.join(neb.var_dir, "oned.log"), encoding="utf-8") as f:
            self.assertIn("openstack front listening on tcp:0:interface=127.0.0.1", f.read())

    async def test_body_over_message_size(self):
        import treq

        neb = await start_nebula(self, [
            "MESSAGE_SIZE=1000", 'API_FRONT=[NAME="xmlrpc"]',
            'API_FRONT=[NAME="openstack",ENDPOINT="tcp:0:interface=127.0.0.1"]'])
        port = neb.service.fronts["openstack"].ports[0].getHost().port
        response = await treq.post(f"http://127.0.0.1:{port}/identity/v3/auth/tokens",
                                   b"z" * 5000, persistent=False)
        body = json.loads(await treq.content(response))
        self.assertEqual((response.code, body["overLimit"]["code"]), (413, 413))

    async def test_bad_conf_stops_startup(self):
        conf = os.path.abspath(self.mktemp())
        with open(conf, "w") as f:
            f.write("TOKEN_LIFETIME = -5\n")
        with self.assertRaises(Exception) as raised:
            await start_nebula(self, [
                'API_FRONT=[NAME="xmlrpc"]',
                f'API_FRONT=[NAME="openstack",ENDPOINT="tcp:0",CONF="{conf}"]'])
        self.assertIn("openstack front", str(raised.exception))
        self.assertIn("TOKEN_LIFETIME must be a positive integer", str(raised.exception))

