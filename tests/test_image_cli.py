"""``oneimage`` and ``onetemplate`` against a real in-process daemon (the dummy
drivers; each command runs ``main()`` in a thread, blocking XML-RPC over TCP,
as a user's process would)."""

import io
import os

from twisted.internet import threads
from twisted.trial import unittest

from nebtwist.cli import oneimage, onetemplate, onevm
from nebtwist.testing import start_nebula
from tests.test_image import IMG_READY, image, payload, wait_image, write
from tests.test_xmlrpc_api import HELEN, add_user, ok, xml


class LiveCLI:
    """Runs the tools against ``self.neb`` as the user of ``self.auth``."""

    async def start(self):
        self.neb = await start_nebula(self)
        self.auth = os.path.join(self.neb.one_location, "cli_auth")
        with open(self.auth, "w") as f:
            f.write("oneadmin:onecloud\n")

    async def cli(self, main, *argv, auth=None):
        """``(status, stdout, stderr)`` of ``main(argv)``."""
        out, err = io.StringIO(), io.StringIO()
        env = dict(os.environ, ONE_XMLRPC=self.neb.url, ONE_AUTH=auth or self.auth)
        rc = await threads.deferToThread(main, list(argv), out, err, env)
        return rc, out.getvalue(), err.getvalue()

    async def good(self, main, *argv):
        rc, out, err = await self.cli(main, *argv)
        self.assertEqual((rc, err), (0, ""), argv)
        return out

    def template_file(self, text):
        return write(self, text.encode(), "template")


class OneImageTests(LiveCLI, unittest.TestCase):

    async def test_register_list_show(self):
        await self.start()
        src = write(self, payload(1024 * 1024 + 1))
        out = await self.good(oneimage.main, "-v", "register",
                              self.template_file(f'NAME = "tty"\nPATH = {src}\n'
                                                 'DESCRIPTION = "ttylinux"\n'))
        self.assertEqual(out, "ID: 0\n")
        await wait_image(self.neb, 0, IMG_READY)
        out = await self.good(oneimage.main, "create", self.template_file(
            "NAME = scratch\nTYPE = DATABLOCK\nSIZE = 8\nFSTYPE = ext3\n"))
        self.assertEqual(out, "")
        await wait_image(self.neb, 1, IMG_READY)
        lines = (await self.good(oneimage.main, "list")).splitlines()
        self.assertEqual(lines[0].split(), ["ID", "USER", "GROUP", "NAME", "DATASTORE", "SIZE",
                                            "TYPE", "PER", "STAT", "RVMS"])
        self.assertEqual([line.split() for line in lines[1:]], [
            ["0", "oneadmin", "oneadmin", "tty", "default", "2M", "OS", "No", "rdy", "0"],
            ["1", "oneadmin", "oneadmin", "scratch", "default", "8M", "DB", "No", "rdy", "0"]])
        out = await self.good(oneimage.main, "show", "tty")
        source = (await image(self.neb, 0)).findtext("SOURCE")
        self.assertIn("IMAGE 0 INFORMATION\n", out)
        for label, value in (("NAME", "tty"), ("TYPE", "OS"), ("PERSISTENT", "No"),
                             ("SOURCE", source), ("PATH", src), ("SIZE", "2M"),
                             ("STATE", "rdy"), ("RUNNING_VMS", "0"), ("DATASTORE", "default")):
            self.assertIn("%-22s: %s\n" % (label, value), out)
        self.assertIn("PERMISSIONS\nOWNER                 : um-\n", out)
        self.assertIn("IMAGE TEMPLATE\nDESCRIPTION=ttylinux\nDEV_PREFIX=hd\n", out)
        xml_out = await self.good(oneimage.main, "show", "-x", "0")
        self.assertEqual(xml(xml_out).findtext("SOURCE"), source)

    async def test_state_commands(self):
        await self.start()
        src = write(self, b"x" * 100)
        await self.good(oneimage.main, "register", self.template_file(
            f"NAME = base\nPATH = {src}\n"))
        await wait_image(self.neb, 0, IMG_READY)

        async def field(tag):
            return (await image(self.neb, 0)).findtext(tag)

        await self.good(oneimage.main, "disable", "base")
        self.assertEqual(await field("STATE"), "3")
        rc, out, err = await self.cli(onevm.main, "create", self.template_file(
            "CPU = 0.1\nMEMORY = 8\nDISK = [ IMAGE = base ]\n"))
        self.assertEqual(rc, 1)
        self.assertEqual(err, "[VirtualMachineAllocate] Cannot use image 0 (base): it is "
                              "disabled.\n")
        await self.good(oneimage.main, "enable", "0")
        self.assertEqual(await field("STATE"), "1")
        await self.good(oneimage.main, "persistent", "base")
        self.assertEqual(await field("PERSISTENT"), "1")
        await self.good(oneimage.main, "nonpersistent", "base")
        self.assertEqual(await field("PERSISTENT"), "0")
        await self.good(oneimage.main, "chtype", "base", "cdrom")
        self.assertEqual(await field("TYPE"), "1")
        await self.good(oneimage.main, "update", "base", self.template_file('NOTE = "hi"\n'))
        self.assertEqual((await image(self.neb, 0)).findtext("TEMPLATE/NOTE"), "hi")
        await self.good(oneimage.main, "delete", "base")
        rc, out, err = await self.cli(oneimage.main, "show", "base")
        self.assertEqual((rc, err), (1, "IMAGE named base not found.\n"))
        rc, out, err = await self.cli(oneimage.main, "show", "7")
        self.assertEqual((rc, err), (1, "[ImageInfo] Error getting image [7].\n"))

    async def test_errors(self):
        await self.start()
        rc, out, err = await self.cli(oneimage.main, "register",
                                      self.template_file("NAME = nopath\n"))
        self.assertEqual((rc, out, err), (1, "", "[ImageAllocate] No PATH in template.\n"))
        rc, out, err = await self.cli(oneimage.main, "register", "/nonexistent/template")
        self.assertEqual((rc, err), (1, "Template file /nonexistent/template not found\n"))
        rc, out, err = await self.cli(oneimage.main, "chtype", "0")
        self.assertEqual(rc, 1)
        self.assertIn("usage:", err)
        await add_user(self.neb, HELEN)
        helen_auth = write(self, (HELEN + "\n").encode(), "helen_auth")
        src = write(self, b"x")
        await ok(self.neb, "one.image.allocate", f"NAME = a\nPATH = {src}\n", 1)
        rc, out, err = await self.cli(oneimage.main, "delete", "0", auth=helen_auth)
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"^\[ImageDelete\] User \[\d+\] : Not authorized to perform "
                              r"MANAGE IMAGE \[0\]\.\n$")
        rc, out, err = await self.cli(oneimage.main, "list", auth=helen_auth)
        self.assertEqual((rc, out.splitlines()[1:]), (0, []))


class OneTemplateTests(LiveCLI, unittest.TestCase):

    async def test_create_show_update_instantiate(self):
        await self.start()
        src = write(self, b"x" * 10)
        await ok(self.neb, "one.image.allocate", f"NAME = base\nPATH = {src}\n", 1)
        await wait_image(self.neb, 0, IMG_READY)
        path = self.template_file('NAME = web\nCPU = 0.1\nMEMORY = 64\n'
                                  'REQUIREMENTS = "ID > 99"\nDISK = [ IMAGE = base ]\n')
        self.assertEqual(await self.good(onetemplate.main, "-v", "create", path), "ID: 0\n")
        lines = (await self.good(onetemplate.main, "list")).splitlines()
        self.assertEqual(lines[0].split(), ["ID", "USER", "GROUP", "NAME", "REGTIME"])
        self.assertEqual(lines[1].split()[:4], ["0", "oneadmin", "oneadmin", "web"])
        out = await self.good(onetemplate.main, "show", "web")
        self.assertIn("TEMPLATE 0 INFORMATION\n", out)
        self.assertIn("%-22s: %s\n" % ("NAME", "web"), out)
        self.assertIn("TEMPLATE CONTENTS\nCPU=0.1\nDISK=[\n  IMAGE=base ]\nMEMORY=64\nNAME=web\n",
                      out)
        out = await self.good(onetemplate.main, "instantiate", "web", "--name", "web-1")
        self.assertEqual(out, "VM ID: 0\n")
        vm = xml(await ok(self.neb, "one.vm.info", 0))
        self.assertEqual((vm.findtext("NAME"), vm.findtext("TEMPLATE/DISK/IMAGE_ID"),
                          vm.findtext("STATE")), ("web-1", "0", "1"))
        self.assertEqual(await self.good(onetemplate.main, "instantiate", "0", "--hold"),
                         "VM ID: 1\n")
        self.assertEqual(xml(await ok(self.neb, "one.vm.info", 1)).findtext("STATE"), "2")
        self.assertEqual((await image(self.neb, 0)).findtext("RUNNING_VMS"), "2")
        await self.good(onetemplate.main, "update", "web", self.template_file(
            "NAME = web\nCPU = 2\nMEMORY = 64\n"))
        self.assertEqual(xml(await ok(self.neb, "one.template.info", 0)).findtext(
            "TEMPLATE/CPU"), "2")
        await self.good(onetemplate.main, "delete", "web")
        rc, out, err = await self.cli(onetemplate.main, "instantiate", "0")
        self.assertEqual((rc, err), (1, "[VMTemplateInstantiate] Error getting virtual "
                                        "machine template [0].\n"))
        rc, out, err = await self.cli(onetemplate.main, "create", self.template_file("CPU = 1\n"))
        self.assertEqual((rc, err), (1, "[TemplateAllocate] No NAME in template.\n"))
