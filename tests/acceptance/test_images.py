"""Acceptance: the image repository and VM templates through a real ``twistd
nebula``, with ``oneimage``/``onetemplate``/``onevm`` run as commands and with
pyone (OpenNebula's own client, unmodified).

A user registers a file, builds a template whose DISK names the image,
instantiates it, and the VM runs on the dummy drivers: the image is USED,
the prolog clones its repository file, and once the VM is deleted the image
is READY again. The registration survives a restart of the daemon.
"""

import os
import re

import pyone
from twisted.trial import unittest

from tests.acceptance.test_seed000 import ADMIN_SESSION, FAST, NebulaDaemon

#: 3.4 states.
HOST_MONITORED = 2
VM_ACTIVE, VM_DONE = 3, 6
LCM_RUNNING = 3
IMG_READY, IMG_USED = 1, 2


class ImagesTest(unittest.TestCase):

    def setUp(self):
        self.daemon = NebulaDaemon(self.mktemp(), FAST)
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.one = pyone.OneServer(self.daemon.endpoint, session=ADMIN_SESSION)

    def cli(self, tool, *args):
        rc, out, err = self.daemon.cli(tool, *args)
        self.assertEqual((rc, err), (0, ""), f"{tool} {args}")
        return out

    def wait_for(self, predicate, message):
        return self.daemon.wait_for(
            predicate, message=lambda: f"{message}\n{self.daemon.diagnostics(25)}")

    def test_register_instantiate_run(self):
        disk = self.daemon.write_file("ttylinux.img", "boot sector" * 1000)
        tmpl = self.daemon.write_file("image.one", f'NAME = "ttylinux"\nPATH = {disk}\n'
                                                   'DESCRIPTION = "a small linux"\n')
        self.assertEqual(self.cli("oneimage", "-v", "register", tmpl), "ID: 0\n")
        self.wait_for(lambda: self.one.image.info(0).STATE == IMG_READY, "image 0 READY")
        img = self.one.image.info(0)
        self.assertEqual((img.ID, img.NAME, img.TYPE, img.PERSISTENT, img.SIZE, img.PATH),
                         (0, "ttylinux", 0, 0, 1, disk))
        self.assertEqual(img.TEMPLATE["DESCRIPTION"], "a small linux")
        source = img.SOURCE
        self.assertRegex(source, re.escape(os.path.join(self.daemon.var, "datastores", "1"))
                         + r"/[0-9a-f]{32}$")
        with open(source) as f:
            self.assertEqual(f.read(), "boot sector" * 1000)
        self.assertEqual([i.NAME for i in self.one.imagepool.info(-2, -1, -1).IMAGE],
                         ["ttylinux"])
        lines = self.cli("oneimage", "list").splitlines()
        self.assertEqual(lines[1].split(), ["0", "oneadmin", "oneadmin", "ttylinux", "default",
                                            "1M", "OS", "No", "rdy", "0"])

        self.one.host.allocate("h1", "im_dummy", "vmm_dummy", -1)
        self.wait_for(lambda: self.one.hostpool.info().HOST[0].STATE == HOST_MONITORED,
                      "host h1 MONITORED")
        vm_tmpl = self.daemon.write_file("vm.one", 'NAME = web\nCPU = 0.1\nMEMORY = 64\n'
                                                   'DISK = [ IMAGE = "ttylinux" ]\n')
        self.cli("onetemplate", "create", vm_tmpl)
        self.assertEqual(self.one.templatepool.info(-2, -1, -1).VMTEMPLATE[0].NAME, "web")
        self.assertEqual(self.cli("onetemplate", "instantiate", "web", "--name", "web-1"),
                         "VM ID: 0\n")
        self.wait_for(lambda: (self.one.vm.info(0).STATE, self.one.vm.info(0).LCM_STATE)
                      == (VM_ACTIVE, LCM_RUNNING), "VM 0 RUNNING")
        vm = self.one.vm.info(0)
        self.assertEqual(vm.NAME, "web-1")
        self.assertEqual((vm.TEMPLATE["DISK"]["SOURCE"], vm.TEMPLATE["DISK"]["TARGET"],
                          vm.TEMPLATE["DISK"]["IMAGE_ID"]), (source, "hda", "0"))
        self.assertEqual((self.one.image.info(0).STATE, self.one.image.info(0).RUNNING_VMS),
                         (IMG_USED, 1))
        with open(os.path.join(self.daemon.var, "0", "transfer.0.prolog")) as f:
            self.assertRegex(f.read(), r"(?m)^CLONE tm_dummy \S+:" + re.escape(source)
                             + r" h1:\S+/disk\.0$")

        # An image in use cannot be disabled; once free it can, and a disabled
        # image makes instantiation fail with pyone's action error (0x800).
        rc, out, err = self.daemon.cli("oneimage", "disable", "ttylinux")
        self.assertEqual((rc, err), (1, "[ImageEnable] Image 0 cannot be disabled in state "
                                        "USED.\n"))
        self.assertEqual(self.one.image.info(0).STATE, IMG_USED)
        self.cli("onevm", "delete", "0")
        self.wait_for(lambda: self.one.vm.info(0).STATE == VM_DONE, "VM 0 DONE")
        self.wait_for(lambda: self.one.image.info(0).STATE == IMG_READY, "image 0 READY")
        self.cli("oneimage", "disable", "ttylinux")
        with self.assertRaises(pyone.OneActionException):
            self.one.template.instantiate(0, "web-2")

        self.daemon.restart()
        one = pyone.OneServer(self.daemon.endpoint, session=ADMIN_SESSION)
        img = one.image.info(0)
        self.assertEqual((img.STATE, img.SOURCE, img.RUNNING_VMS), (3, source, 0))
        self.assertIn("TEMPLATE 0 INFORMATION", self.cli("onetemplate", "show", "0"))
