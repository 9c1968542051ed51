"""Tests of the image repository and VM templates (:mod:`nebtwist.core.images`,
:mod:`~nebtwist.core.imagem`, :mod:`~nebtwist.core.disks`, :mod:`~nebtwist.core.vmtemplates`,
:mod:`~nebtwist.core.requests_images`, :mod:`~nebtwist.core.requests_templates`).

Bodies are checked against OpenNebula 3.4's ``image.xsd`` and
``vmtemplate.xsd``. Everything else runs against a whole daemon
(:func:`nebtwist.testing.start_nebula`: trial's reactor, the shipped dummy
drivers) over XML-RPC: registration copies real files into
``<DATASTORE_LOCATION>/1`` or downloads them from a twisted.web server on
127.0.0.1, and VMs using images go through the dummy drivers from PENDING to
DONE, with the transfer scripts the TransferManager writes checked.
"""

import os
import re

from lxml import etree
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from twisted.web import resource, server, static

from nebtwist import paths
from nebtwist.core import config as configmod
from nebtwist.core.imagem import ImageManager
from nebtwist.core.images import (CDROM, DATABLOCK, IMG_ERROR, IMG_LOCKED, IMG_READY, IMG_USED,
                                  Image)
from nebtwist.core.nebula import Nebula
from nebtwist.core.objects import ACTIVE, DONE, PENDING, RUNNING, VirtualMachine
from nebtwist.core.vmtemplates import VMTemplate
from nebtwist.errors import ACTION, AUTHORIZATION, NO_EXISTS, XML_RPC_API
from nebtwist.template import Template
from nebtwist.testing import start_nebula as _start_nebula
from tests.test_xmlrpc_api import (ADMIN, BOB, HELEN, UNPLACEABLE, XSD_DIR, add_user,
                                   assert_failure, ok, require_xsd, wait_for,
                                   wait_host_monitored, wait_vm, with_namespace, xml)


async def start_nebula(testcase, overrides=(), **kwargs):
    """The daemon fixture, with trial's working folder as ``IMAGE_SAFE_DIRS`` so
    that users outside oneadmin's group may register the files tests make."""
    return await _start_nebula(
        testcase, [f'IMAGE_SAFE_DIRS="{os.getcwd()}"'] + list(overrides), **kwargs)

HOLD = 2

#: Root element -> 3.4 schema file.
SCHEMAS = {"IMAGE": "image.xsd", "IMAGE_POOL": "image_pool.xsd",
           "VMTEMPLATE": "vmtemplate.xsd", "VMTEMPLATE_POOL": "vmtemplate_pool.xsd"}
_compiled = {}


def schema_errors(body):
    """The 3.4 schema's complaints about an IMAGE/VMTEMPLATE(_POOL) body."""
    root = with_namespace(body)
    name = etree.QName(root).localname
    if name not in _compiled:
        _compiled[name] = etree.XMLSchema(etree.parse(os.path.join(XSD_DIR, SCHEMAS[name])))
    schema = _compiled[name]
    if schema.validate(root):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


def write(testcase, data, name="disk.img"):
    """A file holding ``data`` (bytes) in a fresh directory; returns its path."""
    folder = os.path.abspath(testcase.mktemp())
    os.makedirs(folder)
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def payload(size):
    """``size`` bytes that are not all alike (so a wrong offset shows)."""
    block = bytes(range(256)) * 4096
    return (block * (size // len(block) + 1))[:size]


async def image(neb, iid, session=ADMIN):
    """The ``<IMAGE>`` element of image ``iid``."""
    return xml(await ok(neb, "one.image.info", iid, session=session))


async def wait_image(neb, iid, state, timeout=90.0):
    """Wait until image ``iid`` is in ``state``; returns its element."""
    async def reached():
        el = await image(neb, iid)
        return el if int(el.findtext("STATE")) == state else None

    return await wait_for(reached, f"image {iid} to reach state {state}", timeout)


async def register(neb, text, session=ADMIN, state=IMG_READY):
    """Register an image and wait for ``state``; returns (id, element)."""
    iid = await ok(neb, "one.image.allocate", text, 1, session=session)
    return iid, await wait_image(neb, iid, state)


def disks(vm_body):
    """The DISK vectors of a VM body, as dicts."""
    return [{c.tag: c.text or "" for c in d} for d in xml(vm_body).findall("TEMPLATE/DISK")]


def oned_log(neb):
    with open(os.path.join(neb.var_dir, "oned.log"), encoding="utf-8") as f:
        return f.read()


def repository(neb):
    """Files in the image datastore directory."""
    folder = os.path.join(neb.var_dir, "datastores", "1")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def serve(testcase, root):
    """Serve the twisted.web resource ``root`` on 127.0.0.1; returns the base URL."""
    site = server.Site(root)
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    testcase.addCleanup(port.stopListening)
    return f"http://127.0.0.1:{port.getHost().port}"


class _Stalling(resource.Resource):
    """Sends a few bytes of a promised megabyte, then nothing."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.requests = []

    def render_GET(self, request):
        request.setHeader(b"content-length", b"1048576")
        request.write(b"x" * 1000)
        self.requests.append(request)
        return server.NOT_DONE_YET


# ---------------------------------------------------------------------------


class BodyTests(TestCase):
    """IMAGE and VMTEMPLATE bodies against the 3.4 schemas."""

    def setUp(self):
        require_xsd(self)

    def test_image_body(self):
        """A full and an empty image validate, alone and in a pool, and read back."""
        full = Image(3, "ttylinux", 2, 1, "helen", "users",
                     template=Template.parse('DESCRIPTION="a b"\nDEV_PREFIX=sd\n'),
                     itype=DATABLOCK, persistent=True, regtime=1334567890,
                     source="/var/datastores/1/abc", path="http://x/y.img", fstype="ext3",
                     size=40, state=IMG_USED, running_vms=1)
        empty = Image(0, "e", 0, 0, "oneadmin", "oneadmin")
        for img in (full, empty):
            self.assertEqual(schema_errors(img.body()), [], img.body())
        self.assertEqual(schema_errors(f"<IMAGE_POOL>{full.body()}{empty.body()}</IMAGE_POOL>"),
                         [])
        back = Image.from_xml(xml(full.body()))
        self.assertEqual(back.body(), full.body())
        self.assertEqual((back.type, back.persistent, back.size, back.state, back.running_vms,
                          back.datastore_id, back.datastore),
                         (DATABLOCK, True, 40, IMG_USED, 1, 1, "default"))
        self.assertEqual(back.template.get_str("DESCRIPTION"), "a b")

    def test_vmtemplate_body(self):
        tmpl = VMTemplate(1, "small", 0, 0, "oneadmin", "oneadmin",
                          template=Template.parse("NAME=small\nCPU=1\nDISK=[IMAGE=a]\n"),
                          regtime=1334567890)
        self.assertEqual(schema_errors(tmpl.body()), [])
        self.assertEqual(schema_errors(f"<VMTEMPLATE_POOL>{tmpl.body()}</VMTEMPLATE_POOL>"), [])
        self.assertEqual(VMTemplate.from_xml(xml(tmpl.body())).body(), tmpl.body())

    def test_validation_is_not_vacuous(self):
        """The schemas do reject broken bodies."""
        body = Image(0, "e", 0, 0, "oneadmin", "oneadmin").body()
        self.assertNotEqual(schema_errors(body.replace("<STATE>0</STATE>", "<STATE>x</STATE>")),
                            [])
        self.assertNotEqual(schema_errors(body.replace("<DATASTORE_ID>1</DATASTORE_ID>", "")),
                            [])
        self.assertNotEqual(schema_errors("<VMTEMPLATE><ID>1</ID></VMTEMPLATE>"), [])


class RegisterTests(TestCase):
    """one.image.allocate: files copied or downloaded into the repository."""

    async def test_register_from_path(self):
        """A local file is copied to <DATASTORE_LOCATION>/1/<md5 hex>, LOCKED
        then READY, with SIZE in MB and progress lines in oned.log."""
        require_xsd(self)
        data = payload(2 * 1024 * 1024 + 5)
        src = write(self, data)
        neb = await start_nebula(self)
        iid = await ok(neb, "one.image.allocate",
                       f'NAME = "tty linux"\nPATH = {src}\nDESCRIPTION = "small"\n', 1)
        first = await image(neb, iid)
        self.assertIn(int(first.findtext("STATE")), (IMG_LOCKED, IMG_READY))
        el = await wait_image(neb, iid, IMG_READY)
        source = el.findtext("SOURCE")
        self.assertEqual(os.path.dirname(source), os.path.join(neb.var_dir, "datastores", "1"))
        self.assertRegex(os.path.basename(source), r"^[0-9a-f]{32}$")
        with open(source, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(os.path.getsize(src), len(data), "the original is left alone")
        fields = {t: el.findtext(t) for t in ("NAME", "TYPE", "PERSISTENT", "PATH", "SIZE",
                                              "RUNNING_VMS", "DATASTORE_ID", "DATASTORE",
                                              "UNAME", "GNAME")}
        self.assertEqual(fields, {"NAME": "tty linux", "TYPE": "0", "PERSISTENT": "0",
                                  "PATH": src, "SIZE": "3", "RUNNING_VMS": "0",
                                  "DATASTORE_ID": "1", "DATASTORE": "default",
                                  "UNAME": "oneadmin", "GNAME": "oneadmin"})
        self.assertEqual(el.findtext("TEMPLATE/DESCRIPTION"), "small")
        self.assertEqual(el.findtext("TEMPLATE/DEV_PREFIX"), "hd")
        self.assertIsNone(el.find("TEMPLATE/ERROR"))
        self.assertGreater(int(el.findtext("REGTIME")), 0)
        self.assertEqual(schema_errors(await ok(neb, "one.image.info", iid)), [])
        self.assertEqual(schema_errors(await ok(neb, "one.imagepool.info", -2, -1, -1)), [])
        log = oned_log(neb)
        self.assertIn(f"[ImM][I]: Image {iid}: copying {src} to {source}", log)
        progress = re.findall(rf"\[ImM\]\[I\]: Image {iid}: (\d+)% copied", log)
        self.assertEqual(progress[-1], "100")
        self.assertGreaterEqual(len(progress), 2)
        self.assertIn(f"Image {iid} (tty linux) is READY: 3 MB in {source}", log)

    async def test_register_from_url(self):
        """An http URL is streamed into the repository; a 404 is an ERROR
        that leaves no file behind."""
        data = payload(3 * 1024 * 1024 + 17)
        folder = os.path.dirname(write(self, data, "ttylinux.img"))
        base = serve(self, static.File(folder))
        neb = await start_nebula(self)
        iid, el = await register(neb, f'NAME = net\nPATH = "{base}/ttylinux.img"\nTYPE = os\n')
        with open(el.findtext("SOURCE"), "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(el.findtext("SIZE"), "4")
        self.assertEqual(el.findtext("PATH"), f"{base}/ttylinux.img")
        log = oned_log(neb)
        self.assertIn(f"Image {iid}: downloading {base}/ttylinux.img", log)
        self.assertIn(f"Image {iid}: 100% copied ({len(data)} of {len(data)} bytes)", log)

        bad, el = await register(neb, f'NAME = missing\nPATH = "{base}/nothing.img"\n',
                                 state=IMG_ERROR)
        self.assertIn("HTTP 404", el.findtext("TEMPLATE/ERROR"))
        self.assertEqual(el.findtext("SOURCE"), "")
        self.assertEqual(repository(neb), [os.path.basename(
            (await image(neb, iid)).findtext("SOURCE"))])
        self.assertIn(f"[ImM][E]: Image {bad}: cannot register", oned_log(neb))

    async def test_empty_datablock(self):
        """A DATABLOCK with SIZE and FSTYPE and no PATH is an empty file of SIZE MB."""
        neb = await start_nebula(self)
        iid, el = await register(neb, "NAME = scratch\nTYPE = DATABLOCK\nSIZE = 16\n"
                                      "FSTYPE = ext3\nPERSISTENT = yes\n")
        self.assertEqual(os.path.getsize(el.findtext("SOURCE")), 16 * 1024 * 1024)
        self.assertEqual((el.findtext("TYPE"), el.findtext("SIZE"), el.findtext("FSTYPE"),
                          el.findtext("PERSISTENT"), el.findtext("PATH")),
                         ("2", "16", "ext3", "1", ""))
        # Field attributes are not repeated in the TEMPLATE.
        for tag in ("TYPE", "SIZE", "FSTYPE", "PERSISTENT"):
            self.assertIsNone(el.find(f"TEMPLATE/{tag}"), tag)

    async def test_configured_defaults(self):
        """DEFAULT_IMAGE_TYPE and DEFAULT_DEVICE_PREFIX of oned.conf apply to
        images registered without TYPE or DEV_PREFIX, and so to VM disks."""
        src = write(self, b"x")
        neb = await start_nebula(self, ["DEFAULT_IMAGE_TYPE=DATABLOCK",
                                        "DEFAULT_DEVICE_PREFIX=vd"])
        iid, el = await register(neb, f"NAME = d\nPATH = {src}\n")
        self.assertEqual((el.findtext("TYPE"), el.findtext("TEMPLATE/DEV_PREFIX")),
                         (str(DATABLOCK), "vd"))
        vid = await ok(neb, "one.vm.allocate", UNPLACEABLE + "DISK = [ IMAGE = d ]\n")
        self.assertEqual(disks(await ok(neb, "one.vm.info", vid))[0]["TARGET"], "vde")

    async def test_bad_templates_create_nothing(self):
        """Incomplete or malformed registrations are refused in the API's
        shape, and no image, file or id is used up."""
        src = write(self, b"data")
        neb = await start_nebula(self)
        await add_user(neb, HELEN)
        cases = [
            ("NAME = a\n", XML_RPC_API, r"No PATH in template"),
            ("NAME = a\nTYPE = DATABLOCK\nSIZE = 10\n", XML_RPC_API, r"SIZE \(MB\) and an FSTYPE"),
            ("NAME = a\nTYPE = DATABLOCK\nFSTYPE = ext3\n", XML_RPC_API, r"SIZE"),
            ("NAME = a\nTYPE = DATABLOCK\nFSTYPE = ext3\nSIZE = -4\n", XML_RPC_API,
             r"SIZE must be a positive number"),
            (f"PATH = {src}\n", XML_RPC_API, r"No NAME"),
            ("NAME = a\nPATH = disk.img\n", XML_RPC_API, r"absolute file path or an http"),
            ("NAME = a\nPATH = ftp://x/y\n", XML_RPC_API, r"absolute file path or an http"),
            (f"NAME = a\nPATH = {src}\nTYPE = FLOPPY\n", XML_RPC_API, r"Unknown image TYPE"),
            (f"NAME = a\nPATH = {src}\nPERSISTENT = maybe\n", XML_RPC_API, r"YES or NO"),
            (f"NAME = a\nPATH = {src}\nSOURCE = /x\n", XML_RPC_API, r"mutually exclusive"),
            ("NAME = a\nPATH = [ A = b ]\n", XML_RPC_API, r"single value"),
            ("NAME = [ A = b ]\n", XML_RPC_API, r"No NAME"),
            ('NAME = "unterminated\n', XML_RPC_API, r"Parse error in image template"),
        ]
        for text, code, pattern in cases:
            assert_failure(self, await neb.call("one.image.allocate", text, 1), "ImageAllocate",
                           code, pattern)
        text = f"NAME = a\nPATH = {src}\n"
        assert_failure(self, await neb.call("one.image.allocate", text, 0), "ImageAllocate",
                       ACTION, r"system datastore")
        assert_failure(self, await neb.call("one.image.allocate", text, 7), "ImageAllocate",
                       NO_EXISTS, r"datastore \[7\]")
        assert_failure(self, await neb.call("one.image.allocate", "NAME = a\nSOURCE = /x\n", 1,
                                            session=HELEN),
                       "ImageAllocate", AUTHORIZATION, r"restricted attribute SOURCE")
        assert_failure(self, await neb.call("one.image.allocate", 5, 1), "ImageAllocate",
                       XML_RPC_API, r"Wrong parameters")
        # A user outside oneadmin's group reads no file outside IMAGE_SAFE_DIRS,
        # not even through a symbolic link made inside one.
        link = os.path.join(os.path.dirname(src), "passwd-link")
        os.symlink("/etc/passwd", link)
        for path in ("/etc/passwd", link):
            assert_failure(self, await neb.call("one.image.allocate",
                                                f"NAME = p\nPATH = {path}\n", 1, session=HELEN),
                           "ImageAllocate", AUTHORIZATION, r"IMAGE_SAFE_DIRS")
        self.assertEqual(xml(await ok(neb, "one.imagepool.info", -2, -1, -1)).findall("IMAGE"),
                         [])
        self.assertEqual(repository(neb), [])
        first, _ = await register(neb, text)
        self.assertEqual(first, 0, "no id was used up by the failures")
        assert_failure(self, await neb.call("one.image.allocate", text, 1), "ImageAllocate",
                       ACTION, r"NAME is already taken by IMAGE 0")
        # Another user may use the same name; 2.x's form (no datastore) works too.
        self.assertEqual(await ok(neb, "one.image.allocate", text, session=HELEN), 1)

    async def test_unreadable_path_is_error(self):
        """A path that cannot be read gives an image in ERROR with the reason in
        TEMPLATE/ERROR; such an image cannot be used, enabled, only deleted."""
        neb = await start_nebula(self)
        missing = os.path.abspath(self.mktemp())
        folder = os.path.dirname(write(self, b"x"))
        iid, el = await register(neb, f"NAME = gone\nPATH = {missing}\n", state=IMG_ERROR)
        self.assertIn(f"cannot read {missing}: No such file or directory",
                      el.findtext("TEMPLATE/ERROR"))
        _, el = await register(neb, f"NAME = dir\nPATH = {folder}\n", state=IMG_ERROR)
        self.assertIn("is not a regular file", el.findtext("TEMPLATE/ERROR"))
        self.assertEqual(repository(neb), [])
        vms = await ok(neb, "one.vmpool.info", -2, -1, -1, -2)
        assert_failure(self, await neb.call("one.vm.allocate",
                                            UNPLACEABLE + f"DISK = [ IMAGE_ID = {iid} ]\n"),
                       "VirtualMachineAllocate", ACTION,
                       rf"Cannot use image {iid} \(gone\): it is in the ERROR state")
        self.assertEqual(await ok(neb, "one.vmpool.info", -2, -1, -1, -2), vms)
        assert_failure(self, await neb.call("one.image.enable", iid, True), "ImageEnable",
                       ACTION, r"has no file")
        await ok(neb, "one.image.delete", iid)
        assert_failure(self, await neb.call("one.image.info", iid), "ImageInfo", NO_EXISTS,
                       rf"Error getting image \[{iid}\]")

    async def test_source_by_oneadmin(self):
        """oneadmin may register an existing file as SOURCE: READY at once, and
        deleting the image leaves a file outside the repository alone."""
        src = write(self, b"abc")
        neb = await start_nebula(self)
        iid = await ok(neb, "one.image.allocate", f"NAME = ext\nSOURCE = {src}\nSIZE = 1\n", 1)
        el = await image(neb, iid)
        self.assertEqual((int(el.findtext("STATE")), el.findtext("SOURCE"), el.findtext("SIZE")),
                         (IMG_READY, src, "1"))
        await ok(neb, "one.image.delete", iid)
        self.assertTrue(os.path.exists(src))

    async def test_stalled_download(self):
        """A server that stops sending fails the registration after the idle
        timeout: ERROR, and no partial file is left."""
        from nebtwist.core import imagem

        self.patch(imagem, "DOWNLOAD_IDLE_TIMEOUT", 0.5)
        stall = _Stalling()
        base = serve(self, stall)
        neb = await start_nebula(self)
        iid, el = await register(neb, f"NAME = slow\nPATH = {base}/x\n", state=IMG_ERROR)
        self.assertEqual(el.findtext("TEMPLATE/ERROR"), f"no data from {base}/x for 0.5 s")
        self.assertEqual(repository(neb), [])
        for request in stall.requests:
            if not request._disconnected:
                request.finish()

    async def test_stop_during_download(self):
        """Stopping the daemon abandons a download: the image is ERROR and the
        partial file is gone; after a restart it stays ERROR."""
        stall = _Stalling()
        base = serve(self, stall)
        neb = await start_nebula(self)
        iid = await ok(neb, "one.image.allocate", f"NAME = slow\nPATH = {base}/x\n", 1)
        await wait_for(lambda: defer.succeed(bool(stall.requests and repository(neb))),
                       "the download to start")
        self.assertEqual(int((await image(neb, iid)).findtext("STATE")), IMG_LOCKED)
        assert_failure(self, await neb.call("one.image.delete", iid), "ImageDelete", ACTION,
                       r"LOCKED")
        await neb.stop()
        self.assertIn(f"[ImM][E]: Image {iid}: cannot register", oned_log(neb))
        for request in stall.requests:
            if not request._disconnected:
                request.finish()
        again = await start_nebula(self, one_location=neb.one_location)
        el = await image(again, iid)
        self.assertEqual(int(el.findtext("STATE")), IMG_ERROR)
        self.assertIn("interrupted", el.findtext("TEMPLATE/ERROR"))
        self.assertEqual(repository(again), [])


class VMDiskTests(TestCase):
    """DISK = [ IMAGE = ... ] in VMs: resolution, USED/READY, transfer scripts."""

    async def test_lifecycle(self):
        """Images used by a VM are USED while it lives and READY once it is
        DONE; its disks get SOURCE, TARGET, CLONE... and the prolog clones them."""
        neb = await start_nebula(self)
        hid = await ok(neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy", -1)
        os_src = write(self, b"os" * 1000)
        os_id, os_el = await register(neb, f'NAME = "tty linux"\nPATH = {os_src}\nBUS = virtio\n')
        cd_id, cd_el = await register(neb, f"NAME = iso\nTYPE = CDROM\nPATH = {os_src}\n")
        db_id, db_el = await register(neb, "NAME = data\nTYPE = DATABLOCK\nSIZE = 1\n"
                                           "FSTYPE = raw\nDEV_PREFIX = sd\n")
        db2_id, _ = await register(neb, "NAME = data2\nTYPE = DATABLOCK\nSIZE = 1\nFSTYPE = raw\n")
        await wait_host_monitored(neb, hid)
        vid = await ok(neb, "one.vm.allocate",
                       'CPU = 0.1\nMEMORY = 64\nDISK = [ IMAGE = "tty linux" ]\n'
                       f"DISK = [ IMAGE_ID = {cd_id} ]\nDISK = [ IMAGE = data ]\n"
                       f"DISK = [ IMAGE_ID = {db2_id}, TARGET = vdz ]\n"
                       "DISK = [ TYPE = swap, SIZE = 64 ]\n")
        got = disks(await ok(neb, "one.vm.info", vid))
        self.assertEqual(got[0], {
            "IMAGE": "tty linux", "IMAGE_ID": str(os_id), "SOURCE": os_el.findtext("SOURCE"),
            "CLONE": "YES", "SAVE": "NO", "TYPE": "DISK", "READONLY": "NO", "BUS": "virtio",
            "TARGET": "hda"})
        self.assertEqual((got[1]["TYPE"], got[1]["READONLY"], got[1]["TARGET"],
                          got[1]["IMAGE"], got[1]["SOURCE"]),
                         ("CDROM", "YES", "hdc", "iso", cd_el.findtext("SOURCE")))
        self.assertEqual(got[2]["TARGET"], "sde")
        self.assertEqual(got[3]["TARGET"], "vdz")
        self.assertEqual(got[4], {"TYPE": "swap", "SIZE": "64"})
        for iid in (os_id, cd_id, db_id, db2_id):
            el = await image(neb, iid)
            self.assertEqual((int(el.findtext("STATE")), el.findtext("RUNNING_VMS")),
                             (IMG_USED, "1"), iid)
        await wait_vm(neb, vid, ACTIVE, RUNNING)
        h = xml(await ok(neb, "one.vm.info", vid)).find("HISTORY_RECORDS/HISTORY")
        vm_dir = h.findtext("VM_DIR")
        with open(os.path.join(neb.var_dir, str(vid), "transfer.0.prolog")) as f:
            prolog = f.read().splitlines()
        self.assertEqual(len(prolog), 5, prolog)
        self.assertRegex(prolog[0], rf"^CLONE tm_dummy \S+:{re.escape(os_el.findtext('SOURCE'))}"
                                    rf" host01:{re.escape(vm_dir)}/disk\.0$")
        self.assertTrue(prolog[1].startswith("CLONE tm_dummy "), prolog)
        self.assertTrue(prolog[4].startswith("MKSWAP tm_dummy 64 "), prolog)
        await ok(neb, "one.vm.action", "shutdown", vid)
        await wait_vm(neb, vid, DONE)
        for iid in (os_id, cd_id, db_id, db2_id):
            el = await image(neb, iid)
            self.assertEqual((int(el.findtext("STATE")), el.findtext("RUNNING_VMS")),
                             (IMG_READY, "0"), iid)
        with open(os.path.join(neb.var_dir, str(vid), "transfer.0.epilog")) as f:
            self.assertNotIn("MVDS", f.read())
        self.assertIn(f"Image {os_id} released by VM {vid}", oned_log(neb))

    async def test_persistent(self):
        """A persistent image serves one VM at a time, is linked (not cloned)
        and saved back with MVDS; a non-persistent one serves many."""
        neb = await start_nebula(self)
        src = write(self, b"p" * 5000)
        pers, pers_el = await register(neb, f"NAME = mine\nPATH = {src}\nPERSISTENT = YES\n")
        shared, _ = await register(neb, f"NAME = shared\nPATH = {src}\nTYPE = DATABLOCK\n")
        one = await ok(neb, "one.vm.allocate", UNPLACEABLE + f"DISK = [ IMAGE_ID = {pers} ]\n"
                                                             f"DISK = [ IMAGE_ID = {shared} ]\n")
        d = disks(await ok(neb, "one.vm.info", one))[0]
        self.assertEqual((d["CLONE"], d["SAVE"], d["PERSISTENT"]), ("NO", "YES", "YES"))
        before = await ok(neb, "one.vmpool.info", -2, -1, -1, -2)
        assert_failure(self, await neb.call("one.vm.allocate",
                                            UNPLACEABLE + f"DISK = [ IMAGE_ID = {shared} ]\n"
                                                          f"DISK = [ IMAGE = mine ]\n"),
                       "VirtualMachineAllocate", ACTION,
                       rf"Cannot use image {pers} \(mine\): it is persistent and already used")
        self.assertEqual(await ok(neb, "one.vmpool.info", -2, -1, -1, -2), before)
        self.assertEqual((await image(neb, shared)).findtext("RUNNING_VMS"), "1",
                         "the failed VM gave back what it took")
        two = await ok(neb, "one.vm.allocate", UNPLACEABLE + f"DISK = [ IMAGE_ID = {shared} ]\n")
        self.assertEqual(two, one + 1, "the failed VM used no id")
        self.assertEqual((await image(neb, shared)).findtext("RUNNING_VMS"), "2")
        assert_failure(self, await neb.call("one.image.persistent", shared, True),
                       "ImagePersistent", ACTION, r"used by 2 VM")
        await ok(neb, "one.vm.action", "finalize", one)
        self.assertEqual(int((await image(neb, pers)).findtext("STATE")), IMG_READY)
        self.assertEqual((await image(neb, shared)).findtext("RUNNING_VMS"), "1")

        # Through a host: LN in the prolog, MVDS back to the SOURCE in the epilog.
        hid = await ok(neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy", -1)
        await wait_host_monitored(neb, hid)
        vid = await ok(neb, "one.vm.allocate", "CPU = 0.1\nMEMORY = 64\nDISK = [ IMAGE = mine ]\n")
        await wait_vm(neb, vid, ACTIVE, RUNNING)
        await ok(neb, "one.vm.action", "shutdown", vid)
        await wait_vm(neb, vid, DONE)
        folder = os.path.join(neb.var_dir, str(vid))
        with open(os.path.join(folder, "transfer.0.prolog")) as f:
            self.assertRegex(f.read(), r"^LN tm_dummy \S+:" + re.escape(pers_el.findtext("SOURCE")))
        with open(os.path.join(folder, "transfer.0.epilog")) as f:
            self.assertRegex(f.read(), r"(?m)^MVDS tm_dummy host01:\S+/disk\.0 "
                             + re.escape(pers_el.findtext("SOURCE")) + "$")
        self.assertEqual(int((await image(neb, pers)).findtext("STATE")), IMG_READY)

    async def test_bad_disks_create_nothing(self):
        """Unknown, disabled, foreign and doubled images are refused with the
        3.4 codes; no VM, id or image use is left behind."""
        neb = await start_nebula(self)
        await add_user(neb, HELEN)
        src = write(self, b"x" * 100)
        os_id, _ = await register(neb, f"NAME = base\nPATH = {src}\n")
        os2, _ = await register(neb, f"NAME = other\nPATH = {src}\n")
        off, _ = await register(neb, f"NAME = off\nPATH = {src}\n")
        await ok(neb, "one.image.enable", off, False)
        helens, _ = await register(neb, f"NAME = hers\nPATH = {src}\n", session=HELEN)
        cases = [
            ("DISK = [ IMAGE = nothing ]", NO_EXISTS, r"Error getting image \[nothing\]", ADMIN),
            ("DISK = [ IMAGE_ID = 99 ]", NO_EXISTS, r"Error getting image \[99\]", ADMIN),
            ("DISK = [ IMAGE_ID = x ]", XML_RPC_API, r"Wrong IMAGE_ID", ADMIN),
            ("DISK = [ IMAGE = off ]", ACTION, rf"Cannot use image {off} \(off\): it is disabled",
             ADMIN),
            (f"DISK = [ IMAGE_ID = {os_id} ]", AUTHORIZATION,
             rf"Not authorized to perform USE IMAGE \[{os_id}\]", HELEN),
            ("DISK = [ IMAGE = base ]", AUTHORIZATION, r"USE IMAGE", HELEN),
            (f"DISK = [ IMAGE_ID = {os_id} ]\nDISK = [ IMAGE_ID = {os2} ]", XML_RPC_API,
             r"more than one OS image", ADMIN),
            ("DISK = [ IMAGE = hers, IMAGE_UNAME = oneadmin ]", NO_EXISTS, r"\[hers\]", ADMIN),
        ]
        for disk, code, pattern, session in cases:
            response = await neb.call("one.vm.allocate", UNPLACEABLE + disk + "\n",
                                      session=session)
            assert_failure(self, response, "VirtualMachineAllocate", code, pattern)
        self.assertEqual(xml(await ok(neb, "one.vmpool.info", -2, -1, -1, -2)).findall("VM"), [])
        for iid in (os_id, os2, helens):
            el = await image(neb, iid)
            self.assertEqual((int(el.findtext("STATE")), el.findtext("RUNNING_VMS")),
                             (IMG_READY, "0"))
        # IMAGE_UNAME picks the owner; oneadmin may use helen's image.
        vid = await ok(neb, "one.vm.allocate",
                       UNPLACEABLE + "DISK = [ IMAGE = hers, IMAGE_UNAME = helen ]\n")
        self.assertEqual(vid, 0)
        self.assertEqual(disks(await ok(neb, "one.vm.info", vid))[0]["IMAGE_ID"], str(helens))

    async def test_own_image_first(self):
        """IMAGE = name picks the user's own image before someone else's."""
        neb = await start_nebula(self)
        await add_user(neb, HELEN)
        src = write(self, b"x")
        admins, _ = await register(neb, f"NAME = base\nPATH = {src}\n")
        hers, _ = await register(neb, f"NAME = base\nPATH = {src}\n", session=HELEN)
        for session, expected in ((ADMIN, admins), (HELEN, hers)):
            vid = await ok(neb, "one.vm.allocate", UNPLACEABLE + "DISK = [ IMAGE = base ]\n",
                           session=session)
            self.assertEqual(disks(await ok(neb, "one.vm.info", vid, session=session))[0][
                "IMAGE_ID"], str(expected))


class ImageOperationTests(TestCase):
    """enable, persistent, chtype, update, delete, info and pool filters."""

    async def test_operations(self):
        neb = await start_nebula(self)
        src = write(self, b"x" * 10)
        iid, el = await register(neb, f"NAME = a\nPATH = {src}\nDESCRIPTION = one\n")
        source = el.findtext("SOURCE")
        await ok(neb, "one.image.enable", iid, False)
        self.assertEqual(int((await image(neb, iid)).findtext("STATE")), 3)
        await ok(neb, "one.image.enable", iid, False)  # twice is fine
        await ok(neb, "one.image.enable", iid, True)
        self.assertEqual(int((await image(neb, iid)).findtext("STATE")), IMG_READY)
        await ok(neb, "one.image.persistent", iid, True)
        self.assertEqual((await image(neb, iid)).findtext("PERSISTENT"), "1")
        await ok(neb, "one.image.persistent", iid, 0)
        self.assertEqual((await image(neb, iid)).findtext("PERSISTENT"), "0")
        await ok(neb, "one.image.chtype", iid, "cdrom")
        self.assertEqual((await image(neb, iid)).findtext("TYPE"), str(CDROM))
        assert_failure(self, await neb.call("one.image.chtype", iid, "TAPE"), "ImageChangeType",
                       XML_RPC_API, r"Unknown image TYPE")
        await ok(neb, "one.image.update", iid, 'DESCRIPTION = "two"\nOWNER_NOTE = x\n')
        el = await image(neb, iid)
        self.assertEqual((el.findtext("TEMPLATE/DESCRIPTION"), el.findtext("TEMPLATE/OWNER_NOTE"),
                          el.findtext("SOURCE"), el.findtext("NAME")), ("two", "x", source, "a"))
        assert_failure(self, await neb.call("one.image.update", iid, 'A = "'),
                       "ImageUpdateTemplate", XML_RPC_API, r"Parse error")
        self.assertEqual((await image(neb, iid)).findtext("TEMPLATE/DESCRIPTION"), "two")
        # In use: no disable, no type change, no delete.
        await ok(neb, "one.image.chtype", iid, "OS")
        vid = await ok(neb, "one.vm.allocate", UNPLACEABLE + f"DISK = [ IMAGE_ID = {iid} ]\n")
        assert_failure(self, await neb.call("one.image.enable", iid, False), "ImageEnable",
                       ACTION, r"cannot be disabled in state USED")
        assert_failure(self, await neb.call("one.image.chtype", iid, "CDROM"), "ImageChangeType",
                       ACTION, r"state USED")
        assert_failure(self, await neb.call("one.image.delete", iid), "ImageDelete", ACTION,
                       r"used by 1 VM")
        await ok(neb, "one.vm.action", "finalize", vid)
        await ok(neb, "one.image.delete", iid)
        self.assertFalse(os.path.exists(source), "the repository file is removed")
        self.assertTrue(os.path.exists(src))
        self.assertIn(f"Image {iid} deleted, {source} removed", oned_log(neb))
        assert_failure(self, await neb.call("one.image.delete", iid), "ImageDelete", NO_EXISTS)

    async def test_ownership(self):
        """Users see and change their own images only; oneadmin sees all."""
        neb = await start_nebula(self)
        await add_user(neb, HELEN)
        await add_user(neb, BOB)
        src = write(self, b"x")
        admins, _ = await register(neb, f"NAME = a\nPATH = {src}\n")
        hers, _ = await register(neb, f"NAME = h\nPATH = {src}\n", session=HELEN)
        bobs, _ = await register(neb, f"NAME = b\nPATH = {src}\n", session=BOB)

        def ids(body):
            return [int(e.findtext("ID")) for e in xml(body).findall("IMAGE")]

        self.assertEqual(ids(await ok(neb, "one.imagepool.info", -2, -1, -1)),
                         [admins, hers, bobs])
        self.assertEqual(ids(await ok(neb, "one.imagepool.info", -2, -1, -1, session=HELEN)),
                         [hers])
        self.assertEqual(ids(await ok(neb, "one.imagepool.info", -3, -1, -1)), [admins])
        self.assertEqual(ids(await ok(neb, "one.imagepool.info", -2, 1, 1)), [hers])
        self.assertEqual(ids(await ok(neb, "one.imagepool.info")), [admins, hers, bobs])
        for method, args, name in (("one.image.info", (hers,), "ImageInfo"),
                                   ("one.image.delete", (hers,), "ImageDelete"),
                                   ("one.image.enable", (hers, False), "ImageEnable"),
                                   ("one.image.persistent", (hers, True), "ImagePersistent"),
                                   ("one.image.update", (hers, "A=1"), "ImageUpdateTemplate")):
            assert_failure(self, await neb.call(method, *args, session=BOB), name, AUTHORIZATION,
                           rf"User \[\d+\] : Not authorized to perform \w+ IMAGE \[{hers}\]")
        self.assertEqual(int((await image(neb, hers)).findtext("STATE")), IMG_READY)


class TemplateTests(TestCase):
    """one.template.*: stored VM templates and their instantiation."""

    SMALL = 'NAME = small\nCPU = 0.1\nMEMORY = 64\nREQUIREMENTS = "ID > 1000"\nFOO = bar\n'

    async def test_allocate_info_update_delete(self):
        require_xsd(self)
        neb = await start_nebula(self)
        tid = await ok(neb, "one.template.allocate", self.SMALL)
        body = await ok(neb, "one.template.info", tid)
        self.assertEqual(schema_errors(body), [])
        el = xml(body)
        self.assertEqual((el.findtext("NAME"), el.findtext("UNAME"), el.findtext("TEMPLATE/CPU"),
                          el.findtext("TEMPLATE/NAME")), ("small", "oneadmin", "0.1", "small"))
        self.assertGreater(int(el.findtext("REGTIME")), 0)
        await ok(neb, "one.template.update", tid, "CPU = 1\nMEMORY = 128\n")
        el = xml(await ok(neb, "one.template.info", tid))
        self.assertEqual((el.findtext("NAME"), el.findtext("TEMPLATE/MEMORY"),
                          el.find("TEMPLATE/FOO")), ("small", "128", None))
        pool = await ok(neb, "one.templatepool.info", -2, -1, -1)
        self.assertEqual(schema_errors(pool), [])
        self.assertEqual([e.findtext("ID") for e in xml(pool)], [str(tid)])
        await ok(neb, "one.template.delete", tid)
        assert_failure(self, await neb.call("one.template.info", tid), "TemplateInfo", NO_EXISTS,
                       rf"Error getting virtual machine template \[{tid}\]")

    async def test_bad_templates(self):
        neb = await start_nebula(self)
        await add_user(neb, HELEN)
        for text, code, pattern in (("CPU = 1\n", XML_RPC_API, r"No NAME"),
                                    ('NAME = "x\n', XML_RPC_API, r"Parse error in VM template"),
                                    ("NAME = a\n1X = 2\n", XML_RPC_API, r"Wrong attribute name")):
            assert_failure(self, await neb.call("one.template.allocate", text),
                           "TemplateAllocate", code, pattern)
        self.assertEqual(await ok(neb, "one.template.allocate", self.SMALL), 0)
        assert_failure(self, await neb.call("one.template.allocate", self.SMALL),
                       "TemplateAllocate", ACTION, r"NAME is already taken by TEMPLATE 0")
        self.assertEqual(await ok(neb, "one.template.allocate", self.SMALL, session=HELEN), 1)
        for method, args, name in (("one.template.info", (0,), "TemplateInfo"),
                                   ("one.template.instantiate", (0, "x"), "VMTemplateInstantiate"),
                                   ("one.template.update", (0, "A=1"), "TemplateUpdateTemplate"),
                                   ("one.template.delete", (0,), "TemplateDelete")):
            assert_failure(self, await neb.call(method, *args, session=HELEN), name,
                           AUTHORIZATION, r"TEMPLATE \[0\]")
        self.assertEqual([e.findtext("ID") for e in xml(await ok(
            neb, "one.templatepool.info", -2, -1, -1, session=HELEN))], ["1"])

    async def test_instantiate(self):
        """A VM made from a template has its attributes, the given NAME (else
        the template's) and TEMPLATE_ID; image disks are resolved; a template
        that is no valid VM creates nothing."""
        neb = await start_nebula(self)
        src = write(self, b"i" * 99)
        iid, _ = await register(neb, f"NAME = base\nPATH = {src}\n")
        tid = await ok(neb, "one.template.allocate", self.SMALL + "DISK = [ IMAGE = base ]\n")
        vid = await ok(neb, "one.template.instantiate", tid, "web-1")
        vm = xml(await ok(neb, "one.vm.info", vid))
        self.assertEqual((vm.findtext("NAME"), vm.findtext("TEMPLATE/NAME"),
                          vm.findtext("TEMPLATE/FOO"), vm.findtext("TEMPLATE/CPU"),
                          vm.findtext("TEMPLATE/TEMPLATE_ID"), vm.findtext("TEMPLATE/VMID"),
                          vm.findtext("TEMPLATE/DISK/IMAGE_ID"),
                          vm.findtext("TEMPLATE/DISK/TARGET"),
                          int(vm.findtext("STATE"))),
                         ("web-1", "web-1", "bar", "0.1", str(tid), str(vid), str(iid), "hda",
                          PENDING))
        self.assertEqual((await image(neb, iid)).findtext("RUNNING_VMS"), "1")
        second = await ok(neb, "one.template.instantiate", tid, "")
        self.assertEqual(xml(await ok(neb, "one.vm.info", second)).findtext("NAME"), "small")
        held = await ok(neb, "one.template.instantiate", tid, "held", True, "FOO = baz\n")
        vm = xml(await ok(neb, "one.vm.info", held))
        self.assertEqual((int(vm.findtext("STATE")), vm.findtext("TEMPLATE/FOO")), (HOLD, "baz"))
        # The stored template is unchanged by instantiation.
        self.assertIsNone(xml(await ok(neb, "one.template.info", tid)).find("TEMPLATE/VMID"))
        self.assertEqual(xml(await ok(neb, "one.template.info", tid)).findtext(
            "TEMPLATE/DISK/IMAGE"), "base")
        self.assertEqual((await image(neb, iid)).findtext("RUNNING_VMS"), "3")

        bad = await ok(neb, "one.template.allocate", "NAME = bad\nCPU = lots\n")
        vms = await ok(neb, "one.vmpool.info", -2, -1, -1, -2)
        assert_failure(self, await neb.call("one.template.instantiate", bad, "x"),
                       "VMTemplateInstantiate", XML_RPC_API, r"CPU must be a non-negative")
        gone = await ok(neb, "one.template.allocate", "NAME = gone\nDISK = [ IMAGE = nope ]\n")
        assert_failure(self, await neb.call("one.template.instantiate", gone, "x"),
                       "VMTemplateInstantiate", NO_EXISTS, r"image \[nope\]")
        self.assertEqual(await ok(neb, "one.vmpool.info", -2, -1, -1, -2), vms)
        assert_failure(self, await neb.call("one.template.instantiate", 77, "x"),
                       "VMTemplateInstantiate", NO_EXISTS)


class RestartTests(TestCase):
    """Images and templates survive a restart; states are fixed at start-up."""

    async def test_restart(self):
        neb = await start_nebula(self)
        src = write(self, b"r" * 10)
        iid, el = await register(neb, f"NAME = keep\nPATH = {src}\n")
        tid = await ok(neb, "one.template.allocate", "NAME = t\nCPU = 1\n")
        vid = await ok(neb, "one.vm.allocate", UNPLACEABLE + f"DISK = [ IMAGE_ID = {iid} ]\n")
        before = (await ok(neb, "one.image.info", iid), await ok(neb, "one.template.info", tid))
        await neb.stop()
        again = await start_nebula(self, one_location=neb.one_location)
        self.assertEqual((await ok(again, "one.image.info", iid),
                          await ok(again, "one.template.info", tid)), before)
        await ok(again, "one.vm.action", "finalize", vid)
        self.assertEqual(int((await image(again, iid)).findtext("STATE")), IMG_READY)
        self.assertEqual(await ok(again, "one.template.allocate", "NAME = u\n"), tid + 1)

    async def test_reconcile(self):
        """At start-up LOCKED images become ERROR and USED/READY follow the
        VMs that use them (VMs in DONE do not count; FAILED ones do)."""
        var = os.path.abspath(self.mktemp())
        config = configmod.load(paths.shipped("conf", "oned.conf"))
        nebula = Nebula(config, reactor, var)
        await nebula.open(("oneadmin", "x"))
        self.addCleanup(nebula.close)
        images = [Image(i, f"i{i}", 0, 0, "oneadmin", "oneadmin", state=state,
                        running_vms=running, source="/s")
                  for i, (state, running) in enumerate([(IMG_LOCKED, 0), (IMG_USED, 3),
                                                        (IMG_READY, 0), (IMG_USED, 1)])]
        for img in images:
            nebula.imagepool.reserve_oid()
            await nebula.imagepool.insert(img)
        for vid, (state, iid) in enumerate([(DONE, 1), (PENDING, 2), (7, 3)]):
            vm = VirtualMachine(vid, f"v{vid}", 0, 0, "oneadmin", "oneadmin",
                                template=Template.parse(f"DISK = [ IMAGE_ID = {iid} ]"),
                                state=state)
            nebula.vmpool.reserve_oid()
            await nebula.vmpool.insert(vm)
        await ImageManager(nebula, reactor).reconcile()
        got = [(i.state, i.running_vms) for i in nebula.imagepool]
        self.assertEqual(got, [(IMG_ERROR, 0), (IMG_READY, 0), (IMG_USED, 1), (IMG_USED, 1)])
        self.assertIn("interrupted", images[0].template.get_str("ERROR"))
        # ... and stored.
        rows = await nebula.db.select("SELECT oid, body FROM image_pool ORDER BY oid")
        self.assertEqual([int(xml(b).findtext("STATE")) for _, b in rows],
                         [IMG_ERROR, IMG_READY, IMG_USED, IMG_USED])
