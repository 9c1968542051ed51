"""The ElasticHosts front (nebtwist.api.elastichosts) in memory: its resource
served by ``treq.testing.StubTreq`` over an in-process daemon's core with the
shipped dummy drivers; and its pure parts (UUIDs, sizes, bodies, conf)."""

import base64
import gzip
import json
import os
import zlib

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from nebtwist.api.elastichosts import settings as S
from nebtwist.api.elastichosts import wire
from nebtwist.api.elastichosts.drives import parse_size
from nebtwist.api.elastichosts.front import ElasticHostsFront
from nebtwist.api.elastichosts.resource import ElasticHostsResource
from nebtwist.interfaces import IAPIFront
from nebtwist.testing import start_nebula
from tests.test_xmlrpc_api import HELEN, add_user, ok, wait_for, wait_host_monitored

try:
    from treq.testing import StubTreq
except ImportError:  # pragma: no cover - treq is a dependency
    StubTreq = None

MB = 1024 * 1024
CENTOS = "38df0986-4d85-4b76-b502-3878ffc80161"

NET = """NAME = "public"
TYPE = RANGED
BRIDGE = br0
NETWORK_ADDRESS = 192.168.7.0
NETWORK_SIZE = C
"""


class PureTests(TestCase):
    """UUIDs, sizes, bodies and the conf file, without a core."""

    def test_front_provides_interface(self):
        front = ElasticHostsFront()
        verifyObject(IAPIFront, front)
        self.assertEqual(front.name, "elastichosts")

    def test_uuid_round_trip(self):
        uuid = S.make_uuid("drive", 42)
        self.assertTrue(S.is_uuid(uuid))
        self.assertEqual(S.parse_uuid("drive", uuid), 42)
        self.assertEqual(S.parse_uuid("drive", uuid.upper()), 42)
        self.assertIsNone(S.parse_uuid("server", uuid))  # another kind
        self.assertIsNone(S.parse_uuid("drive", CENTOS))
        self.assertIsNone(S.parse_uuid("drive", "42"))
        self.assertEqual(S.parse_uuid("server", S.make_uuid("server", 2 ** 40)), 2 ** 40)

    def test_sizes(self):
        self.assertEqual(parse_size("10000000"), 10000000)
        self.assertEqual(parse_size("160G"), 160 * 1024 * MB)
        self.assertEqual(parse_size("5M"), 5 * MB)
        self.assertEqual(parse_size(" 2gb "), 2 * 1024 * MB)
        for bad in ("", "0", "-5", "10X", "1.5G", "G"):
            with self.assertRaises(wire.EHError) as c:
                parse_size(bad)
            self.assertEqual((c.exception.status, c.exception.kind), (400, "usage"))

    def _request(self, headers):
        from twisted.web.test.requesthelper import DummyRequest

        request = DummyRequest([b""])
        for k, v in headers.items():
            request.requestHeaders.setRawHeaders(k, [v])
        return request

    def test_parse_text_json_and_text_under_json(self):
        text = b"name n1\nsize 50G\nnic:0:block tcp/21 tcp/22\n"
        expect = {"name": "n1", "size": "50G", "nic:0:block": "tcp/21 tcp/22"}
        self.assertEqual(wire.parse_body(self._request({}), text), expect)
        # libcloud's CloudSigma 1.0 driver: text under a JSON content type
        as_json = self._request({b"content-type": b"application/json"})
        self.assertEqual(wire.parse_body(as_json, text), expect)
        body = json.dumps({"name": "n1", "cpu": 2000, "nic:0:dhcp:ip": ["a", "b"]}).encode()
        self.assertEqual(wire.parse_body(as_json, body),
                         {"name": "n1", "cpu": "2000", "nic:0:dhcp:ip": "a b"})
        self.assertEqual(wire.parse_body(as_json, b""), {})
        for bad in (b"{nope", b'[{"a": "1"}, {"b": "2"}]', b'{"a": {"b": 1}}'):
            with self.assertRaises(wire.EHError) as c:
                wire.parse_body(as_json, bad)
            self.assertEqual(c.exception.status, 400)
        with self.assertRaises(wire.EHError):
            wire.parse_body(self._request({}), b"a 1\n\nb 2\n")  # two objects
        with self.assertRaises(wire.EHError):
            wire.parse_body(self._request({}), b"\xff\xfe")

    def test_render(self):
        plain = self._request({})
        self.assertEqual(wire.render(plain, [{"b": "2", "a": "x y"}, {"c": "3"}]),
                         b"a x y\nb 2\n\nc 3\n")
        self.assertEqual(wire.render(plain, ["u1", "u2"]), b"u1\nu2\n")
        js = self._request({b"accept": b"application/json"})
        self.assertEqual(json.loads(wire.render(js, {"size": "10", "name": "7"})),
                         {"size": 10, "name": "7"})
        self.assertIn(b"application/json", js.responseHeaders.getRawHeaders(b"content-type")[0])
        # JSON_REPLIES = false (CloudSigma 1.0): text whatever Accept says
        js = self._request({b"accept": b"application/json"})
        self.assertEqual(wire.render(js, {"size": "10"}, json_replies=False), b"size 10\n")

    def test_conf(self):
        settings = S.load(S.shipped_path())
        self.assertEqual(settings.standard[CENTOS], "centos-5.5")
        self.assertEqual(settings.cpu_cores(2000), 2.0)
        self.assertEqual(settings.cpu_cores(1), 0.01)
        self.assertEqual(settings.cpu_mhz_of(1.7), 1700)
        self.assertFalse(settings.persistent)
        self.assertTrue(settings.json_replies)
        bad = self.mktemp()
        for text, word in (("CPU_MHZ = abc\n", "CPU_MHZ"), ("PERSISTENT = maybe\n", "PERSISTENT"),
                           ("JSON_REPLIES = 1\n", "JSON_REPLIES"), ("STOP_TIMEOUT = -1\n", "STOP"),
                           ('STANDARD_DRIVE = [ UUID = "x", IMAGE = "y" ]\n', "STANDARD_DRIVE"),
                           ("A = [\n", bad)):
            with open(bad, "w") as f:
                f.write(text)
            with self.assertRaises(S.ConfError) as c:
                S.load(bad)
            self.assertIn(word, str(c.exception))


class CopyTests(TestCase):
    """nebtwist.core.requests_drives._copy, the thread side of image_copy."""

    def _files(self, content, size):
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        src, dst = os.path.join(folder, "src"), os.path.join(folder, "dst")
        with open(src, "wb") as f:
            f.write(content)
        with open(dst, "wb") as f:
            f.write(b"\xee" * size)
        return src, dst

    def test_modes_limit_and_stop(self):
        from nebtwist.core.requests_drives import CopyProgress, _copy

        raw = os.urandom(100_000)
        src, dst = self._files(gzip.compress(raw), 200_000)
        progress = CopyProgress()
        self.assertEqual(_copy(src, dst, 200_000, "gunzip", progress), len(raw))
        self.assertEqual(progress.done, progress.total)
        with open(dst, "rb") as f:
            self.assertEqual(f.read(), raw + b"\xee" * 100_000)  # the rest kept, same size
        with self.assertRaises(ValueError):  # the content does not fit
            _copy(src, dst, 50_000, "gunzip", CopyProgress())
        with self.assertRaises(ValueError):
            _copy(src, dst, 200_000, None, CopyProgress(), stopping=lambda: True)


def _auth(user, password):
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


class EHClient:
    """Calls the front's resource in memory (StubTreq), pumping the
    in-memory connection while the core works on the real reactor."""

    def __init__(self, resource, user="oneadmin", password="onecloud"):
        self.stub = StubTreq(resource)
        self.user, self.password = user, password

    async def _settle(self, d):
        done = []
        d.addBoth(done.append)
        deadline = reactor.seconds() + 60
        while not done:
            self.stub.flush()
            if reactor.seconds() > deadline:
                raise AssertionError("no answer from the front within 60 s")
            await deferLater(reactor, 0.005, lambda: None)
        result = done[0]
        if hasattr(result, "raiseException"):
            result.raiseException()
        return result

    async def call(self, path, body=b"", method="POST", json_reply=False, headers=None,
                   auth=True):
        """``(status, {header: value}, body bytes)``."""
        h = dict(headers or {})
        if auth:
            h[b"authorization"] = _auth(self.user, self.password)
        if json_reply:
            h[b"accept"] = b"application/json"
        if isinstance(body, dict):
            body = "".join(f"{k} {v}\n" for k, v in body.items()).encode()
        response = await self._settle(self.stub.request(
            method, "http://eh.test/" + path.lstrip("/"), data=body or None,
            headers={k: [v] for k, v in h.items()}))
        content = await self._settle(self.stub.content(response))
        heads = {k.lower(): v[0] for k, v in response.headers.getAllRawHeaders()}
        return response.code, heads, content

    async def obj(self, path, body=b"", method="POST", status=200):
        """One text object (dict) of a call that must answer ``status``."""
        code, heads, content = await self.call(path, body, method)
        assert code == status, (path, code, content)
        objects = [dict(line.split(" ", 1) if " " in line else (line, "")
                        for line in block.splitlines())
                   for block in content.decode().split("\n\n") if block.strip()]
        return objects[0] if len(objects) == 1 else objects


class FrontTests(TestCase):
    """Drives and servers over the daemon's core with the dummy drivers."""

    timeout = 240

    async def _start(self, **settings):
        if StubTreq is None:  # pragma: no cover
            self.skipTest("treq.testing is not available")
        self.neb = await start_nebula(self)
        requests = self.requests = self.neb.service.requests
        self.settings = S.load(S.shipped_path())
        for key, value in settings.items():
            setattr(self.settings, key, value)
        self.resource = ElasticHostsResource(requests, self.settings, reactor)
        self.eh = EHClient(self.resource)

    async def _image(self, name, data, **extra):
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(data)
        attrs = "".join(f"{k} = {v}\n" for k, v in extra.items())
        iid = await ok(self.neb, "one.image.allocate",
                       f'NAME = "{name}"\nPATH = "{path}"\n{attrs}', 1)
        await wait_for(lambda: self._image_ready(iid), f"image {iid} READY")
        return iid

    async def _image_ready(self, iid):
        return self.neb.nebula.imagepool.get(iid).state == 1

    async def _host_and_net(self):
        hid = await ok(self.neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy",
                       "tm_dummy")
        await wait_host_monitored(self.neb, hid)
        return await ok(self.neb, "one.vn.allocate", NET)

    async def _drive(self, name="d1", size="4M"):
        drive = await self.eh.obj("drives/create", {"name": name, "size": size})
        return drive["drive"]

    def _file(self, uuid):
        return self.neb.nebula.imagepool.get(S.parse_uuid("drive", uuid)).source

    # -- protocol -----------------------------------------------------------------

    async def test_errors_shape(self):
        await self._start()
        code, heads, body = await self.eh.call("drives/list", auth=False)
        self.assertEqual((code, heads.get(b"x-elastic-error")), (401, b"auth"))
        self.assertIn(b"Basic", heads.get(b"www-authenticate"))
        self.eh.password = "wrong"
        code, heads, body = await self.eh.call("servers/list")
        self.assertEqual((code, heads.get(b"x-elastic-error")), (401, b"auth"))
        self.eh.password = "onecloud"
        code, heads, body = await self.eh.call("nothing/here")
        self.assertEqual((code, heads.get(b"x-elastic-error")), (404, b"missing"))
        self.assertIn(b"Unknown command", body)
        code, heads, _ = await self.eh.call("drives/create", method="GET")
        self.assertEqual((code, heads.get(b"x-elastic-error")), (405, b"method"))
        code, heads, body = await self.eh.call("drives/create", {"name": "x", "size": "lots"})
        self.assertEqual((code, heads.get(b"x-elastic-error")), (400, b"usage"))
        self.assertEqual(len(self.neb.nebula.imagepool), 0)  # nothing half-made
        code, heads, _ = await self.eh.call(f"drives/{S.make_uuid('drive', 99)}/info")
        self.assertEqual((code, heads.get(b"x-elastic-error")), (404, b"missing"))
        code, heads, _ = await self.eh.call(f"servers/{CENTOS}/info", method="GET")
        self.assertEqual(code, 404)
        self.assertNotIn(b"Traceback", body)

    # -- drives -------------------------------------------------------------------

    async def test_drive_create_write_read_destroy(self):
        await self._start()
        drive = await self.eh.obj("drives/create", {"name": "data disk", "size": "3M"})
        uuid = drive["drive"]
        self.assertEqual(S.parse_uuid("drive", uuid), min(self.neb.nebula.imagepool.objects))
        self.assertEqual((drive["name"], drive["size"], drive["status"], drive["claim:type"]),
                         ("data disk", str(3 * MB), "active", "exclusive"))
        self.assertNotIn("imaging", drive)
        image = self.neb.nebula.imagepool.get(S.parse_uuid("drive", uuid))
        self.assertEqual((image.type_name, image.persistent, image.size), ("DATABLOCK", True, 3))
        self.assertEqual(os.path.getsize(image.source), 3 * MB)
        code, _, body = await self.eh.call("drives/list", method="GET")
        self.assertEqual((code, body), (200, (uuid + "\n").encode()))
        code, heads, body = await self.eh.call(f"drives/{uuid}/info", method="GET",
                                               json_reply=True)
        self.assertEqual(json.loads(body)["size"], 3 * MB)
        self.assertIn(b"json", heads[b"content-type"])
        # raw bytes at an offset, then gzip data at another
        code, _, _ = await self.eh.call(f"drives/{uuid}/write/1000", b"hello",
                                        headers={b"content-type": b"application/octet-stream"})
        self.assertEqual(code, 204)
        code, _, _ = await self.eh.call(f"drives/{uuid}/write/2000", gzip.compress(b"x" * 500),
                                        headers={b"content-encoding": b"gzip"})
        self.assertEqual(code, 204)
        with open(image.source, "rb") as f:
            content = f.read()
        self.assertEqual(content[1000:1005], b"hello")
        self.assertEqual(content[2000:2500], b"x" * 500)
        self.assertEqual(len(content), 3 * MB)
        code, heads, body = await self.eh.call(f"drives/{uuid}/read/998/9")
        self.assertEqual((code, body), (200, b"\0\0hello\0\0"))
        # past the end: refused, nothing written
        code, heads, _ = await self.eh.call(f"drives/{uuid}/write/{3 * MB - 2}", b"abc")
        self.assertEqual((code, heads.get(b"x-elastic-error")), (400, b"usage"))
        with open(image.source, "rb") as f:
            self.assertEqual(f.read(), content)
        code, heads, _ = await self.eh.call(f"drives/{uuid}/write", b"not gzip",
                                            headers={b"content-encoding": b"gzip"})
        self.assertEqual(code, 400)
        # gzip data that expands past the drive: refused, nothing written
        code, heads, body = await self.eh.call(f"drives/{uuid}/write",
                                               gzip.compress(b"\1" * (4 * MB)),
                                               headers={b"content-encoding": b"gzip"})
        self.assertEqual((code, heads.get(b"x-elastic-error")), (400, b"usage"), body)
        with open(image.source, "rb") as f:
            self.assertEqual(f.read(), content)
        # the same name again: the user's image names are unique in nebtwist
        code, heads, _ = await self.eh.call("drives/create", {"name": "data disk", "size": "1M"})
        self.assertEqual((code, heads.get(b"x-elastic-error")), (409, b"busy"))
        shared = await self.eh.obj("drives/create", {"name": "s", "size": "1M",
                                                     "claim:type": "shared"})
        self.assertEqual(shared["claim:type"], "shared")
        self.assertFalse(self.neb.nebula.imagepool.get(
            S.parse_uuid("drive", shared["drive"])).persistent)
        code, heads, _ = await self.eh.call("drives/create", {"name": "t", "size": "1M",
                                                              "claim:type": "mine"})
        self.assertEqual((code, heads.get(b"x-elastic-error")), (400, b"usage"))
        code, _, body = await self.eh.call(f"drives/{uuid}/destroy")
        self.assertEqual((code, body), (204, b""))
        self.assertFalse(os.path.exists(image.source))
        code, _, _ = await self.eh.call(f"drives/{uuid}/info")
        self.assertEqual(code, 404)

    async def test_image_from_standard_drive(self):
        """``drives/<dst>/image/<standard uuid>/gunzip`` as libcloud's
        ElasticHosts driver calls it: a gzipped source is gunzipped, a raw one
        copied; the ``imaging`` key shows until the copy has ended."""
        await self._start()
        raw = os.urandom(64 * 1024) * 24  # 1.5 MB
        await self._image("centos-5.5", gzip.compress(raw))
        standard = await self.eh.obj("drives/standard/info")
        standard = standard if isinstance(standard, list) else [standard]
        self.assertEqual([(d["drive"], d["name"], d["type"]) for d in standard],
                         [(CENTOS, "centos-5.5", "disk")])
        code, _, body = await self.eh.call("drives/standard/list")
        self.assertEqual(body, (CENTOS + "\n").encode())
        uuid = await self._drive(size="2M")
        code, _, _ = await self.eh.call(f"drives/{uuid}/image/{CENTOS}/gunzip")
        self.assertEqual(code, 204)
        seen = []

        async def imaged():
            info = await self.eh.obj(f"drives/{uuid}/info")
            seen.append(info.get("imaging"))
            return "imaging" not in info

        await wait_for(imaged, "the imaging to end")
        with open(self._file(uuid), "rb") as f:
            content = f.read()
        self.assertEqual(content[:len(raw)], raw)
        self.assertEqual(content[len(raw):], b"\0" * (2 * MB - len(raw)))
        self.assertEqual(self.neb.nebula.imagepool.get(S.parse_uuid("drive", uuid)).state, 1)
        # a source larger than the destination: refused at once
        small = await self._drive("small", "1M")
        code, heads, _ = await self.eh.call(f"drives/{small}/image/{uuid}")
        self.assertEqual((code, heads.get(b"x-elastic-error")), (400, b"usage"))
        # unknown source
        code, _, _ = await self.eh.call(f"drives/{small}/image/{S.make_uuid('drive', 77)}")
        self.assertEqual(code, 404)

    async def test_image_modes_and_failure(self):
        """``/gunzip`` of a source that is not gzip data copies it as it is;
        ``/gzip`` compresses; gzip content larger than the destination ends
        the copy in ERROR (no ``imaging`` key, status inactive, the reason)."""
        await self._start()
        raw = b"plain bytes " * 1000
        src = S.make_uuid("drive", await self._image("raw", raw))
        dst = await self._drive("dst", "1M")

        async def imaged(uuid):
            info = await self.eh.obj(f"drives/{uuid}/info")
            return info if "imaging" not in info else None

        code, _, _ = await self.eh.call(f"drives/{dst}/image/{src}/gunzip")
        self.assertEqual(code, 204)
        await wait_for(lambda: imaged(dst), "the copy")
        with open(self._file(dst), "rb") as f:
            self.assertEqual(f.read(len(raw)), raw)
        code, _, _ = await self.eh.call(f"drives/{dst}/image/{src}/gzip")
        self.assertEqual(code, 204)
        await wait_for(lambda: imaged(dst), "the gzip copy")
        with open(self._file(dst), "rb") as f:
            stream = zlib.decompressobj(16 + zlib.MAX_WBITS)  # stops at the stream's end
            self.assertEqual(stream.decompress(f.read(len(raw))), raw)
            self.assertTrue(stream.eof)
        code, heads, _ = await self.eh.call(f"drives/{dst}/image/{src}/zip")
        self.assertEqual((code, heads.get(b"x-elastic-error")), (404, b"missing"))
        bomb = S.make_uuid("drive", await self._image("big", gzip.compress(b"\0" * 3 * MB)))
        code, _, _ = await self.eh.call(f"drives/{dst}/image/{bomb}/gunzip")
        self.assertEqual(code, 204)
        info = await wait_for(lambda: imaged(dst), "the failed copy")
        self.assertEqual(info["status"], "inactive")
        self.assertIn("larger than the destination", info["error"])
        # a drive in ERROR takes a new copy, which makes it ready again
        code, _, _ = await self.eh.call(f"drives/{dst}/image/{src}")
        self.assertEqual(code, 204)
        info = await wait_for(lambda: imaged(dst), "the copy after the failure")
        self.assertEqual((info["status"], info.get("error")), ("active", None))

    async def test_clone_cloudsigma_text_under_json(self):
        await self._start()
        iid = await self._image("base", b"B" * (MB + 10))
        src = S.make_uuid("drive", iid)
        code, _, body = await self.eh.call(
            f"drives/{src}/clone", b"name n1\nsize 3M\ndriveType hdd\n",
            headers={b"content-type": b"application/json", b"accept": b"application/json"})
        self.assertEqual(code, 200, body)
        clone = json.loads(body)
        self.assertEqual((clone["name"], clone["size"]), ("n1", 3 * MB))

        async def imaged():
            return "imaging" not in await self.eh.obj(f"drives/{clone['drive']}/info")

        await wait_for(imaged, "the clone's imaging to end")
        with open(self._file(clone["drive"]), "rb") as f:
            self.assertEqual(f.read(MB + 11), b"B" * (MB + 10) + b"\0")

    async def test_drive_set_and_clone_of_a_bad_source(self):
        await self._start()
        uuid = await self._drive("first")
        await self._drive("second")
        renamed = await self.eh.obj(f"drives/{uuid}/set", {"name": "renamed disk"})
        self.assertEqual(renamed["name"], "renamed disk")
        self.assertEqual(self.neb.nebula.imagepool.get(S.parse_uuid("drive", uuid)).name,
                         "renamed disk")
        code, heads, _ = await self.eh.call(f"drives/{uuid}/set", {"name": "second"})
        self.assertEqual((code, heads.get(b"x-elastic-error")), (409, b"busy"))
        code, heads, _ = await self.eh.call(f"drives/{uuid}/set", {"size": "5M"})
        self.assertEqual((code, heads.get(b"x-elastic-error")), (400, b"usage"))
        # a source whose registration failed (ERROR): the clone is refused and
        # no new drive is left behind
        missing_file = os.path.abspath(self.mktemp())
        bad = await ok(self.neb, "one.image.allocate",
                       f'NAME = "broken"\nPATH = "{missing_file}"\n', 1)
        await wait_for(lambda: self._state_is(bad, 5), "the image in ERROR")
        before = sorted(self.neb.nebula.imagepool.objects)
        code, heads, _ = await self.eh.call(f"drives/{S.make_uuid('drive', bad)}/clone",
                                            {"name": "c"})
        self.assertEqual((code, heads.get(b"x-elastic-error")), (409, b"busy"))
        self.assertEqual(sorted(self.neb.nebula.imagepool.objects), before)

    async def _state_is(self, iid, state):
        return self.neb.nebula.imagepool.get(iid).state == state

    # -- servers ------------------------------------------------------------------

    async def test_server_life(self):
        await self._start()
        nid = await self._host_and_net()
        uuid = await self._drive()
        body = {"name": "web", "cpu": "2000", "mem": "256", "ide:0:0": uuid,
                "boot": "ide:0:0", "smp": "auto", "nic:0:model": "e1000",
                "nic:0:dhcp": "auto", "persistent": "false"}
        server = await self.eh.obj("servers/create", body)
        sid = server["server"]
        vm = self.neb.nebula.vmpool.get(S.parse_uuid("server", sid))
        self.assertEqual((vm.template.get_str("CPU"), vm.template.get_str("MEMORY"),
                          vm.template.get_str("VCPU")), ("2", "256", "2"))
        disk = vm.template.get_all("DISK")[0]
        self.assertEqual((disk["IMAGE_ID"], disk["TARGET"]),
                         (str(S.parse_uuid("drive", uuid)), "hda"))
        nic = vm.template.get_all("NIC")[0]
        self.assertEqual((nic["NETWORK_ID"], nic["MODEL"]), (str(nid), "e1000"))
        self.assertEqual((server["cpu"], server["mem"], server["ide:0:0"], server["boot"],
                          server["status"], server["nic:0:dhcp"], server["nic:0:dhcp:ip"]),
                         ("2000", "256", uuid, "ide:0:0", "active", nic["IP"], nic["IP"]))

        async def running():
            v = self.neb.nebula.vmpool.get(vm.oid)
            return v.state == 3 and v.lcm_state == 3

        await wait_for(running, "the VM to be RUNNING")
        info = await self.eh.obj(f"servers/{sid}/info", method="GET")
        self.assertEqual(info["status"], "active")
        self.assertIn("started", info)
        # rx and tx are the VM's monitored NET_RX and NET_TX (bytes)
        live = self.neb.nebula.vmpool.get(vm.oid)
        live.net_rx, live.net_tx = 679560, 21271
        info = await self.eh.obj(f"servers/{sid}/info", method="GET")
        self.assertEqual((info["rx"], info["tx"]), ("679560", "21271"))
        drive = await self.eh.obj(f"drives/{uuid}/info")
        self.assertEqual(drive["claimed"], f"{sid}:ide:0:0")
        code, _, _ = await self.eh.call(f"drives/{uuid}/destroy")  # in use
        self.assertEqual(code, 409)
        code, _, body = await self.eh.call("servers/list")
        self.assertEqual(body, (sid + "\n").encode())
        code, _, _ = await self.eh.call(f"servers/{sid}/reset")
        self.assertEqual(code, 204)
        code, heads, _ = await self.eh.call(f"servers/{sid}/set", {"cpu": "1000"})
        self.assertEqual((code, heads.get(b"x-elastic-error")), (409, b"busy"))
        code, _, _ = await self.eh.call(f"servers/{sid}/set", {"name": "web2"})
        self.assertEqual(code, 200)
        self.assertEqual(self.neb.nebula.vmpool.get(vm.oid).name, "web2")
        # stop, non-persistent: destroyed
        code, _, _ = await self.eh.call(f"servers/{sid}/stop")
        self.assertEqual(code, 204)
        self.assertEqual(self.neb.nebula.vmpool.get(vm.oid).state, 6)  # DONE
        code, heads, _ = await self.eh.call(f"servers/{sid}/info")
        self.assertEqual((code, heads.get(b"x-elastic-error")), (404, b"missing"))
        code, _, body = await self.eh.call("servers/info")
        self.assertEqual((code, body), (200, b""))
        await wait_for(lambda: self._image_ready(S.parse_uuid("drive", uuid)),
                       "the drive to be free")

    async def test_stopped_then_set_start_and_persistent_stop(self):
        await self._start()
        await self._host_and_net()
        uuid = await self._drive()
        body = {"name": "db", "cpu": "1000", "mem": "128", "block:0": uuid,
                "persistent": "true", "vnc:password": "pw", "tags": "a b"}
        server = await self.eh.obj("servers/create/stopped", body)
        sid = server["server"]
        vid = S.parse_uuid("server", sid)
        self.assertEqual(self.neb.nebula.vmpool.get(vid).state, 2)  # HOLD
        self.assertEqual((server["status"], server["persistent"], server["block:0"],
                          server["tags"]), ("stopped", "true", uuid, "a b"))
        self.assertNotIn("nic:0:dhcp", server)
        self.assertEqual(self.neb.nebula.vmpool.get(vid).template.get_all("DISK")[0]["TARGET"],
                         "vda")
        changed = await self.eh.obj(f"servers/{sid}/set", {"cpu": "1500", "mem": "512",
                                                           "smp": "3"})
        self.assertEqual((changed["cpu"], changed["mem"], changed["smp"]), ("1500", "512", "3"))
        template = self.neb.nebula.vmpool.get(vid).template
        self.assertEqual((template.get_str("CPU"), template.get_str("MEMORY"),
                          template.get_str("VCPU")), ("1.5", "512", "3"))
        code, heads, _ = await self.eh.call(f"servers/{sid}/set", {"boot": "ide:0:0"})
        self.assertEqual((code, heads.get(b"x-elastic-error")), (400, b"usage"))
        code, heads, _ = await self.eh.call(f"servers/{sid}/shutdown")
        self.assertEqual((code, heads.get(b"x-elastic-error")), (409, b"busy"))
        started = await self.eh.obj(f"servers/{sid}/start")
        self.assertEqual(started["status"], "active")

        async def running():
            v = self.neb.nebula.vmpool.get(vid)
            return v.state == 3 and v.lcm_state == 3

        await wait_for(running, "the VM to be RUNNING")
        code, _, _ = await self.eh.call(f"servers/{sid}/stop")
        self.assertEqual(code, 204)
        self.assertEqual(self.neb.nebula.vmpool.get(vid).state, 4)  # STOPPED: kept
        self.assertEqual((await self.eh.obj(f"servers/{sid}/info"))["status"], "stopped")
        await self.eh.obj(f"servers/{sid}/start")
        await wait_for(running, "the VM to be RUNNING again")
        code, _, _ = await self.eh.call(f"servers/{sid}/destroy")
        self.assertEqual(code, 204)
        self.assertEqual(self.neb.nebula.vmpool.get(vid).state, 6)
        code, _, _ = await self.eh.call(f"servers/{sid}/destroy")
        self.assertEqual(code, 404)

    async def test_shutdown(self):
        """ACPI ``shutdown`` of a RUNNING server: 204 at once; the VM ends DONE
        once the guest has powered off (3.4 has no powered-off state)."""
        await self._start()
        await self._host_and_net()
        sid = (await self.eh.obj("servers/create", {"name": "s", "cpu": "500",
                                                    "mem": "64"}))["server"]
        vid = S.parse_uuid("server", sid)

        async def state(wanted):
            v = self.neb.nebula.vmpool.get(vid)
            return (v.state, v.lcm_state if v.state == 3 else 0) == wanted

        await wait_for(lambda: state((3, 3)), "RUNNING")
        code, _, _ = await self.eh.call(f"servers/{sid}/shutdown")
        self.assertEqual(code, 204)
        await wait_for(lambda: state((6, 0)), "DONE")
        code, _, _ = await self.eh.call(f"servers/{sid}/info")
        self.assertEqual(code, 404)

    async def test_core_operations_refuse_bad_values(self):
        """The requests layer's own checks (DriveRequests), below the front's."""
        from nebtwist.errors import ActionError, APIError

        await self._start()
        admin = self.neb.nebula.userpool.get(0)
        uuid = await self._drive()
        iid = S.parse_uuid("drive", uuid)
        with self.assertRaises(APIError):
            await self.requests.image_write(admin, iid, -1, b"x")
        with self.assertRaises(APIError):
            await self.requests.image_copy(admin, iid, iid)
        with self.assertRaises(APIError):
            await self.requests.image_copy(admin, iid, iid, mode="bzip2")
        with self.assertRaises(APIError):
            await self.requests.image_read(admin, iid, 0, -5)
        vid = await self.requests.vm_allocate(admin, "NAME = v\nCPU = 1\nMEMORY = 64\n")
        for bad in ({"cpu": -1}, {"memory": 1.5}, {"vcpu": True}, {"memory": "64"}):
            with self.assertRaises(APIError):
                await self.requests.vm_resize(admin, vid, **bad)
        with self.assertRaises(APIError):
            await self.requests.vm_rename(admin, vid, "  ")
        vm = self.neb.nebula.vmpool.get(vid)
        self.assertEqual((vm.name, vm.template.get_str("CPU"), vm.template.get_str("MEMORY")),
                         ("v", "1", "64"))
        await self.requests.vm_action(admin, "hold", vid)
        await self.requests.vm_resize(admin, vid, cpu=0.25, memory=96, vcpu=2)
        self.assertEqual((vm.template.get_str("CPU"), vm.template.get_str("MEMORY"),
                          vm.template.get_str("VCPU")), ("0.25", "96", "2"))
        await self.requests.vm_action(admin, "finalize", vid)
        with self.assertRaises(ActionError):
            await self.requests.vm_resize(admin, vid, cpu=1)

    async def test_bad_servers_make_nothing(self):
        await self._start()
        await self._host_and_net()
        uuid = await self._drive()
        bad = [({"name": "x", "mem": "128"}, 400),                       # no cpu
               ({"name": "x", "cpu": "1000", "mem": "lots"}, 400),
               ({"cpu": "1000", "mem": "128"}, 400),                       # no name
               ({"name": "x", "cpu": "1000", "mem": "128",
                 "ide:0:0": S.make_uuid("drive", 55)}, 404),
               ({"name": "x", "cpu": "1000", "mem": "128", "ide:0:0": uuid,
                 "boot": "ide:1:0"}, 400),
               ({"name": "x", "cpu": "1000", "mem": "128", "nic:1:vlan": "v"}, 400),
               ({"name": "x", "cpu": "1000", "mem": "128", "smp": "many"}, 400),
               ({"name": "x", "cpu": "1000", "mem": "128", "persistent": "yes"}, 400)]
        for body, status in bad:
            code, heads, content = await self.eh.call("servers/create", body)
            self.assertEqual(code, status, (body, content))
            self.assertTrue(heads.get(b"x-elastic-error"))
        self.assertEqual(len(self.neb.nebula.vmpool), 0)
        self.assertEqual(self.neb.nebula.imagepool.get(S.parse_uuid("drive", uuid)).running_vms,
                         0)

    async def test_other_users_objects(self):
        await self._start()
        await self._host_and_net()
        uuid = await self._drive()
        sid = (await self.eh.obj("servers/create/stopped",
                                 {"name": "a", "cpu": "500", "mem": "64"}))["server"]
        await add_user(self.neb, HELEN)
        helen = EHClient(self.resource, *HELEN.split(":"))
        code, _, body = await helen.call("servers/list")
        self.assertEqual((code, body), (200, b""))
        code, heads, _ = await helen.call(f"servers/{sid}/destroy")
        self.assertEqual((code, heads.get(b"x-elastic-error")), (403, b"auth"))
        code, heads, _ = await helen.call(f"drives/{uuid}/destroy")
        self.assertEqual((code, heads.get(b"x-elastic-error")), (403, b"auth"))
        # the conf's NETWORK is not one helen may use: a clear refusal, nothing made
        self.settings.network = "private"
        code, heads, body = await helen.call("servers/create", {
            "name": "h", "cpu": "500", "mem": "64", "nic:0:dhcp": "auto"})
        self.assertEqual((code, heads.get(b"x-elastic-error")), (409, b"busy"))
        self.assertIn(b"network", body)
        self.assertEqual(len(self.neb.nebula.vmpool), 1)


class PluginTests(TestCase):
    """The front enabled in oned.conf (API_FRONT) of an in-process daemon."""

    timeout = 120

    async def test_enabled_front_serves_over_http(self):
        import treq

        neb = await start_nebula(self, [
            'API_FRONT=[NAME="xmlrpc"]',
            'API_FRONT=[NAME="elastichosts",ENDPOINT="tcp:0:interface=127.0.0.1"]'])
        self.assertEqual(list(neb.service.fronts), ["xmlrpc", "elastichosts"])
        url = neb.front_url("elastichosts")
        response = await treq.post(url + "drives/create", b"name d\nsize 1M\n",
                                   auth=("oneadmin", "onecloud"), persistent=False)
        body = await treq.content(response)
        self.assertEqual(response.code, 200, body)
        self.assertIn(b"drive 4e656274-6472-4000-8000-", body)
        response = await treq.get(url + "drives/list", auth=("oneadmin", "x"), persistent=False)
        self.assertEqual((response.code, response.headers.getRawHeaders(b"x-elastic-error")),
                         (401, [b"auth"]))
        await treq.content(response)
        with open(os.path.join(neb.var_dir, "oned.log"), encoding="utf-8") as f:
            self.assertIn("elastichosts front listening on tcp:0:interface=127.0.0.1", f.read())

    async def test_body_over_message_size(self):
        import treq

        neb = await start_nebula(self, [
            "MESSAGE_SIZE=1000", 'API_FRONT=[NAME="xmlrpc"]',
            'API_FRONT=[NAME="elastichosts",ENDPOINT="tcp:0:interface=127.0.0.1"]'])
        response = await treq.post(neb.front_url("elastichosts") + "drives/x/write",
                                   b"z" * 5000, auth=("oneadmin", "onecloud"),
                                   persistent=False)
        await treq.content(response)
        self.assertEqual((response.code, response.headers.getRawHeaders(b"x-elastic-error")),
                         (413, [b"usage"]))

    async def test_bad_conf_stops_startup(self):
        conf = os.path.abspath(self.mktemp())
        with open(conf, "w") as f:
            f.write("CPU_MHZ = fast\n")
        with self.assertRaises(Exception) as raised:
            await start_nebula(self, [
                'API_FRONT=[NAME="xmlrpc"]',
                f'API_FRONT=[NAME="elastichosts",ENDPOINT="tcp:0",CONF="{conf}"]'])
        self.assertIn("elastichosts front", str(raised.exception))
        self.assertIn("CPU_MHZ must be a number", str(raised.exception))
