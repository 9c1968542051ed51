"""A whole daemon with the real VN_MAD driver (``drivers/vnm/exec -l``) and
action scripts that record their calls: the order of pre, boot, post and
clean through deploy, live migration and shutdown, a refused ``pre`` failing
the boot with its reason, and HISTORY's VNMMAD.

The scripts run on the front-end (``-l``: the daemon's own machine stands in
for the hosts; ``VNM_HOST`` names the host the core asked for), so this needs
no lab; the ssh path is ``tests/test_vnm_exec.py``'s, and real bridges and
rules are the network drivers' own tests.
"""

import os

from twisted.trial.unittest import TestCase

from nebtwist.core.objects import ACTIVE, DONE, FAILED, RUNNING
from nebtwist.testing import start_nebula
from tests.test_xmlrpc_api import ok, wait_for, wait_host_monitored, wait_vm, xml

#: The recording action script (Python 3, as the shipped ones).
RECORDER = '''#!/usr/bin/env python3
import base64, os, sys
import xml.etree.ElementTree as ET
vm = ET.fromstring(base64.b64decode(sys.argv[1]))
action = os.path.basename(sys.argv[0])
nic = vm.find("TEMPLATE/NIC")
with open(os.path.join(os.environ["VNM_STATE_DIR"], "calls"), "a") as f:
    f.write(" ".join([action, vm.findtext("ID"), os.environ["VNM_HOST"],
                      vm.findtext("LCM_STATE"), nic.findtext("TARGET"),
                      nic.findtext("BRIDGE"), nic.findtext("MAC")]) + "\\n")
if vm.findtext("TEMPLATE/FAILME") == action:
    print("refused by the test's " + action, file=sys.stderr)
    sys.exit(2)
'''

NET = 'NAME = "red"\nTYPE = RANGED\nBRIDGE = onebr0\nNETWORK_ADDRESS = 203.0.113.0/24\n'


class DaemonTests(TestCase):

    async def start(self):
        base = os.path.abspath(self.mktemp())
        remotes = os.path.join(base, "remotes")
        self.state = os.path.join(base, "state")
        os.makedirs(os.path.join(remotes, "rec"))
        os.makedirs(self.state)
        for action in ("pre", "post", "clean"):
            path = os.path.join(remotes, "rec", action)
            with open(path, "w") as f:
                f.write(RECORDER)
            os.chmod(path, 0o755)
        env = dict(os.environ, VNM_STATE_DIR=self.state)
        return await start_nebula(self, overrides=[
            'VN_MAD=[name="dummy", executable="vnm_exec", arguments="-n"]',
            f'VN_MAD=[name="rec", executable="vnm_exec", arguments="-l -r {remotes}"]',
        ], environ=env)

    def calls(self):
        try:
            with open(os.path.join(self.state, "calls")) as f:
                return [line.split() for line in f]
        except FileNotFoundError:
            return []

    def vm_log(self, neb, vid):
        try:
            with open(os.path.join(neb.var_dir, str(vid), "vm.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    async def logged_in_order(self, neb, vid, *needles):
        """Wait until the VM's log holds every needle, then check their order."""
        async def all_there():
            return all(n in self.vm_log(neb, vid) for n in needles)
        await wait_for(all_there, f"VM {vid}'s log to hold {needles}")
        text = self.vm_log(neb, vid)
        where = [text.index(n) for n in needles]
        self.assertEqual(where, sorted(where), f"out of order in:\n{text}")

    async def test_deploy_migrate_shutdown(self):
        neb = await self.start()
        h0 = await ok(neb, "one.host.allocate", "h0", "im_dummy", "vmm_dummy", "rec", -1)
        h1 = await ok(neb, "one.host.allocate", "h1", "im_dummy", "vmm_dummy", "rec", -1)
        await ok(neb, "one.vn.allocate", NET)
        await wait_host_monitored(neb, h0)
        await wait_host_monitored(neb, h1)
        vid = await ok(neb, "one.vm.allocate", 'NAME = a\nCPU = 0.1\nMEMORY = 64\n'
                                               f'REQUIREMENTS = "ID = {h0}"\n'
                                               'NIC = [ NETWORK = "red" ]\n')
        await wait_vm(neb, vid, ACTIVE, RUNNING)
        tap, mac = f"one-{vid}-0", "02:00:cb:00:71:01"
        # pre and post both while the VM is in BOOT (LCM_STATE 2), with the NIC's tap.
        self.assertEqual(self.calls(), [["pre", str(vid), "h0", "2", tap, "onebr0", mac],
                                        ["post", str(vid), "h0", "2", tap, "onebr0", mac]])
        await self.logged_in_order(neb, vid, "[VNM][I]: Network pre (rec) on h0",
                                   "[VMM][I]: Deploying on h0",
                                   "[VNM][I]: Network post (rec) on h0",
                                   "New VM state is ACTIVE/RUNNING")
        body = xml(await ok(neb, "one.vm.info", vid))
        self.assertEqual(body.findtext("HISTORY_RECORDS/HISTORY/VNMMAD"), "rec")

        await ok(neb, "one.vm.migrate", vid, h1, True)
        await wait_vm(neb, vid, ACTIVE, RUNNING)
        self.assertEqual([c[:3] for c in self.calls()[2:]],
                         [["pre", str(vid), "h1"], ["post", str(vid), "h1"],
                          ["clean", str(vid), "h0"]])
        body = xml(await ok(neb, "one.vm.info", vid))
        self.assertEqual([h.findtext("HOSTNAME") for h in body.findall("HISTORY_RECORDS/HISTORY")],
                         ["h0", "h1"])

        await ok(neb, "one.vm.action", "shutdown", vid)
        await wait_vm(neb, vid, DONE)
        self.assertEqual([c[:4] for c in self.calls()[5:]], [["clean", str(vid), "h1", "12"]],
                         "clean after the domain is gone, still in SHUTDOWN (12)")

    async def test_refused_pre_fails_the_boot(self):
        neb = await self.start()
        h0 = await ok(neb, "one.host.allocate", "h0", "im_dummy", "vmm_dummy", "rec", -1)
        await ok(neb, "one.vn.allocate", NET)
        await wait_host_monitored(neb, h0)
        vid = await ok(neb, "one.vm.allocate", 'NAME = b\nCPU = 0.1\nMEMORY = 64\n'
                                               'FAILME = pre\nNIC = [ NETWORK = "red" ]\n')
        await wait_vm(neb, vid, FAILED)
        await self.logged_in_order(neb, vid, "[VNM][I]: Network pre (rec) on h0",
                                   "Error deploying VM: pre: refused by the test's pre",
                                   "New VM state is FAILED")
        self.assertNotIn("Deploying on", self.vm_log(neb, vid), "no domain was created")
        self.assertEqual([c[0] for c in self.calls()], ["pre", "clean"])
        host = xml(await ok(neb, "one.host.info", h0))
        self.assertEqual(host.findtext("HOST_SHARE/RUNNING_VMS"), "0")
        self.assertEqual(host.findtext("VN_MAD"), "rec")
