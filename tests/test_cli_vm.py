"""``onevm`` actions, ``history`` and ``top`` against a real in-process daemon
with the dummy drivers (the CLI runs in a thread, as a user's process would)."""

import io
import os

from lxml import etree
from twisted.internet import reactor, threads
from twisted.internet.task import deferLater
from twisted.trial import unittest

from nebtwist.cli import onevm
from nebtwist.testing import start_nebula


class OneVMLiveTests(unittest.TestCase):
    """Walk a VM through stop/resume, suspend/resume and delete with ``onevm``."""

    async def cli(self, neb, *argv):
        out, err = io.StringIO(), io.StringIO()
        env = dict(os.environ, ONE_XMLRPC=neb.url, ONE_AUTH=self.auth)
        rc = await threads.deferToThread(onevm.main, list(argv), out, err, env)
        return rc, out.getvalue(), err.getvalue()

    async def vm_state(self, neb, vid):
        (_ok, body, _) = await neb.call("one.vm.info", vid)
        root = etree.fromstring(body.encode())
        return root.findtext("STATE") + "/" + root.findtext("LCM_STATE")

    async def wait_state(self, neb, vid, want, timeout=90):
        deadline = reactor.seconds() + timeout
        while True:
            state = await self.vm_state(neb, vid)
            if state == want:
                return
            if reactor.seconds() > deadline:
                self.fail(f"VM {vid} is {state}, not {want}")
            await deferLater(reactor, 0.1, lambda: None)

    async def test_actions_history_and_top(self):
        neb = await start_nebula(self)
        self.auth = os.path.join(neb.one_location, "cli_auth")
        with open(self.auth, "w") as f:
            f.write("oneadmin:onecloud\n")
        await neb.call("one.host.allocate", "h0", "im_dummy", "vmm_dummy", -1)
        await neb.call("one.host.allocate", "h1", "im_dummy", "vmm_dummy", -1)
        (_, vid, _) = await neb.call("one.vm.allocate", "NAME = t\nCPU = 0.1\nMEMORY = 32\n")
        await self.wait_state(neb, vid, "3/3")
        for action, want in (("stop", "4/0"), ("resume", "3/3"), ("suspend", "5/0"),
                             ("resume", "3/3"), ("reboot", "3/3")):
            rc, out, err = await self.cli(neb, action, str(vid))
            self.assertEqual((rc, err), (0, ""), action)
            await self.wait_state(neb, vid, want)
        rc, out, err = await self.cli(neb, "history", str(vid))
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["SEQ", "HOSTNAME", "REASON", "START", "TIME",
                                            "PTIME"])
        self.assertEqual([line.split()[2] for line in lines[1:]], ["stop", "none"])
        rc, out, err = await self.cli(neb, "top", "-n", "2", "-d", "0")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.count("STAT"), 2)
        self.assertEqual(out.count(" runn "), 2)
        rc, out, err = await self.cli(neb, "hold", str(vid))
        self.assertEqual(rc, 1)
        self.assertIn("[VirtualMachineAction] Wrong state", err)
        rc, out, err = await self.cli(neb, "delete", str(vid))
        self.assertEqual(rc, 0, err)
        await self.wait_state(neb, vid, "6/0")
        rc, out, err = await self.cli(neb, "history", str(vid))
        self.assertEqual([line.split()[2] for line in out.splitlines()[1:]], ["stop", "user"])
