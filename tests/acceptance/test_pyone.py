"""Acceptance: OpenNebula's own Python client, pyone (from PyPI, unmodified).

A real ``twistd nebula`` daemon (:class:`~tests.acceptance.test_seed000.NebulaDaemon`,
shipped configuration and dummy drivers) is driven through
``pyone.OneServer``: pyone sends the session first in every call, parses
XML answers into objects (integers where the schema says so; TEMPLATE as a
dict) and maps error codes onto its exception classes.
"""

import pyone
from twisted.trial import unittest

from tests.acceptance.test_seed000 import ADMIN_SESSION, FAST, NebulaDaemon

#: 3.4 states (pyone's own enums follow the current API, whose host states differ).
HOST_MONITORED = 2
VM_PENDING, VM_ACTIVE, VM_DONE = 1, 3, 6
LCM_RUNNING = 3

NETWORK = """\
NAME = "pyone-net"
TYPE = RANGED
BRIDGE = br0
NETWORK_ADDRESS = 10.11.0.0
NETWORK_SIZE = C
"""

VM_TEXT = """\
NAME = "from-string"
CPU = 0.5
MEMORY = 128
NIC = [ NETWORK = "pyone-net" ]
"""

#: What pyone turns into ``<TEMPLATE>`` XML with CDATA values.
VM_DICT = {
    "TEMPLATE": {
        "NAME": "from-dict",
        "CPU": "0.25",
        "MEMORY": "64",
        "NIC": {"NETWORK": "pyone-net"},
        "DISK": {"SOURCE": "/images/a b & <c>.img", "TARGET": "hda"},
    }
}


class PyoneTest(unittest.TestCase):
    """pyone against a real daemon: pools, allocation, VM actions and errors."""

    def setUp(self):
        self.daemon = NebulaDaemon(self.mktemp(), FAST)
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.one = self.client(ADMIN_SESSION)

    def client(self, session):
        """A pyone client for ``session`` on the daemon."""
        return pyone.OneServer(self.daemon.endpoint, session=session)

    def wait_for(self, predicate, message):
        """Poll ``predicate`` (see :meth:`NebulaDaemon.wait_for`), logs on failure."""
        return self.daemon.wait_for(
            predicate, message=lambda: f"{message}\n{self.daemon.diagnostics(25)}")

    def monitored_host(self):
        """Allocate host h1 with the shipped driver names; wait until MONITORED."""
        hid = self.one.host.allocate("h1", "im_dummy", "vmm_dummy", -1)
        self.assertEqual(hid, 0)
        self.wait_for(lambda: self.one.hostpool.info().HOST[0].STATE == HOST_MONITORED,
                      "host h1 MONITORED")
        return hid

    def network(self):
        """Allocate the ranged test network; returns its id."""
        vid = self.one.vn.allocate(NETWORK, -1)
        self.assertIsInstance(vid, int)
        return vid

    def running_vm(self, template):
        """Allocate a VM and wait until it is RUNNING; returns its id."""
        vid = self.one.vm.allocate(template)
        self.assertIsInstance(vid, int)
        self.wait_for(lambda: (self.one.vm.info(vid).STATE, self.one.vm.info(vid).LCM_STATE)
                      == (VM_ACTIVE, LCM_RUNNING), f"VM {vid} RUNNING")
        return vid

    def test_hostpool(self):
        """HOST_POOL parses: NAME, STATE, HOST_SHARE integers, monitoring TEMPLATE."""
        hid = self.monitored_host()
        pool = self.one.hostpool.info()
        self.assertEqual(len(pool.HOST), 1)
        host = pool.HOST[0]
        self.assertEqual((host.ID, host.NAME, host.STATE), (hid, "h1", HOST_MONITORED))
        self.assertEqual((host.IM_MAD, host.VM_MAD), ("im_dummy", "vmm_dummy"))
        # pyone's bindings follow today's schema: it keeps the HOST_SHARE
        # elements 3.4 and today share and ignores the others (FREE_CPU ...).
        share = host.HOST_SHARE
        for name, value in (("MAX_CPU", 800), ("CPU_USAGE", 0), ("MAX_MEM", 16777216),
                            ("MEM_USAGE", 0), ("RUNNING_VMS", 0)):
            self.assertEqual(getattr(share, name), value, name)
            self.assertIsInstance(getattr(share, name), int, name)
        self.assertEqual(host.TEMPLATE["HYPERVISOR"], "dummy")
        self.assertEqual(host.TEMPLATE["TOTALCPU"], "800")

        info = self.one.host.info(hid)
        self.assertEqual((info.ID, info.NAME, info.HOST_SHARE.MAX_CPU), (hid, "h1", 800))

    def test_userpool(self):
        """USER_POOL lists oneadmin, then a new user; a user sees herself only."""
        self.assertEqual([u.NAME for u in self.one.userpool.info().USER], ["oneadmin"])
        uid = self.one.user.allocate("helen", "mypass", "core")
        self.assertIsInstance(uid, int)
        users = {u.NAME: u for u in self.one.userpool.info().USER}
        self.assertEqual(set(users), {"oneadmin", "helen"})
        self.assertEqual((users["helen"].ID, users["helen"].GNAME), (uid, "users"))
        self.assertEqual(users["oneadmin"].ID, 0)
        self.assertEqual(users["helen"].PASSWORD, "e727d1464ae12436e899a726da5b2f11d8381b26")
        self.assertEqual(users["helen"].ENABLED, 1)
        helen = self.client("helen:mypass")
        self.assertEqual([u.NAME for u in helen.userpool.info().USER], ["helen"])
        self.assertEqual(helen.user.info(uid).NAME, "helen")

    def test_vnet(self):
        """``vn.allocate(template, -1)``, ``vnpool.info(-2, -1, -1)`` and ``vn.info``."""
        vid = self.network()
        pool = self.one.vnpool.info(-2, -1, -1)
        self.assertEqual([(v.ID, v.NAME, v.BRIDGE) for v in pool.VNET],
                         [(vid, "pyone-net", "br0")])
        info = self.one.vn.info(vid)
        self.assertEqual((info.ID, info.NAME, info.UNAME, info.BRIDGE),
                         (vid, "pyone-net", "oneadmin", "br0"))
        self.assertEqual(info.TEMPLATE["NETWORK_ADDRESS"], "10.11.0.0")
        self.assertEqual(info.TEMPLATE["TYPE"], "RANGED")

    def test_vm_lifecycle(self):
        """String and dict templates; vm.info, vmpool.info; terminate leads to DONE."""
        self.monitored_host()
        self.network()
        from_string = self.one.vm.allocate(VM_TEXT)
        from_dict = self.one.vm.allocate(VM_DICT)
        self.assertEqual((from_string, from_dict), (0, 1))

        vm = self.one.vm.info(from_dict)
        self.assertEqual((vm.ID, vm.NAME, vm.UNAME), (from_dict, "from-dict", "oneadmin"))
        self.assertIn(vm.STATE, (VM_PENDING, VM_ACTIVE))
        template = vm.TEMPLATE
        self.assertEqual((template["NAME"], template["CPU"], template["MEMORY"]),
                         ("from-dict", "0.25", "64"))
        self.assertEqual(template["DISK"]["SOURCE"], "/images/a b & <c>.img")
        self.assertEqual(template["NIC"]["NETWORK"], "pyone-net")
        self.assertTrue(template["NIC"]["IP"].startswith("10.11.0."), template["NIC"])
        self.assertEqual(template["VMID"], str(from_dict))

        for vid in (from_string, from_dict):
            self.wait_for(lambda vid=vid: (self.one.vm.info(vid).STATE,
                                           self.one.vm.info(vid).LCM_STATE)
                          == (VM_ACTIVE, LCM_RUNNING), f"VM {vid} RUNNING")
        vm = self.one.vm.info(from_string)
        self.assertEqual((vm.NAME, vm.TEMPLATE["CPU"], vm.TEMPLATE["MEMORY"]),
                         ("from-string", "0.5", "128"))
        self.assertEqual(vm.HISTORY_RECORDS.HISTORY[0].HOSTNAME, "h1")
        self.assertEqual(self.one.hostpool.info().HOST[0].HOST_SHARE.RUNNING_VMS, 2)

        pool = self.one.vmpool.info(-2, -1, -1, -1)
        self.assertEqual(sorted(v.ID for v in pool.VM), [from_string, from_dict])
        self.assertEqual({v.ID: v.NAME for v in pool.VM},
                         {from_string: "from-string", from_dict: "from-dict"})

        self.assertEqual(self.one.vm.action("terminate", from_string), from_string)
        self.wait_for(lambda: self.one.vm.info(from_string).STATE == VM_DONE,
                      f"VM {from_string} DONE")
        self.assertEqual([v.ID for v in self.one.vmpool.info(-2, -1, -1, -1).VM], [from_dict])
        self.assertEqual([v.ID for v in self.one.vmpool.info(-2, -1, -1, VM_DONE).VM],
                         [from_string])
        self.assertEqual(sorted(v.ID for v in self.one.vmpool.info(-2, -1, -1, -2).VM),
                         [from_string, from_dict])
        self.assertGreater(self.one.vm.info(from_string).ETIME, 0)
        self.wait_for(lambda: self.one.hostpool.info().HOST[0].HOST_SHARE.RUNNING_VMS == 1,
                      "RUNNING_VMS back to 1")

    def test_errors(self):
        """Error codes become pyone's exception classes."""
        with self.assertRaises(pyone.OneAuthenticationException):
            self.client("oneadmin:wrong").hostpool.info()
        with self.assertRaises(pyone.OneAuthenticationException):
            self.client("nobody:onecloud").vmpool.info(-2, -1, -1, -1)
        with self.assertRaises(pyone.OneNoExistsException):
            self.one.vm.info(9999)
        with self.assertRaises(pyone.OneNoExistsException):
            self.one.host.info(42)

        self.monitored_host()
        self.network()
        vid = self.running_vm(VM_TEXT)
        # "release" is only for HOLD VMs: the state must not change.
        with self.assertRaises(pyone.OneActionException):
            self.one.vm.action("release", vid)
        vm = self.one.vm.info(vid)
        self.assertEqual((vm.STATE, vm.LCM_STATE), (VM_ACTIVE, LCM_RUNNING))
        with self.assertRaises(pyone.OneActionException):
            self.one.host.allocate("h1", "im_dummy", "vmm_dummy", -1)

        self.one.user.allocate("helen", "mypass", "core")
        helen = self.client("helen:mypass")
        with self.assertRaises(pyone.OneAuthorizationException):
            helen.vm.info(vid)
        with self.assertRaises(pyone.OneAuthorizationException):
            helen.host.allocate("h2", "im_dummy", "vmm_dummy", -1)
        with self.assertRaises(pyone.OneApiException):
            self.one.vm.allocate("NAME = [ unterminated")
