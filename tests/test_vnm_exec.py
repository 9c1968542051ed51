"""``drivers/vnm/exec`` as a real process, reaching "hosts" over a real sshd.

Actions reach a host through a small agent the driver starts there over the
shared ssh connection (``-A``: one ssh session per action); both paths, and
an agent that dies, are tested.

``hosta`` and ``hostb`` are aliases of the test sshd on 127.0.0.1
(``tests/sshd.py``), named in an ssh config file the driver gets with ``-F``.
The remotes are a throwaway folder of tiny scripts (``rec/{pre,post,clean}``)
that record their calls, so this tests the driver, not the network drivers
(``drivers/vnm/remotes``, tested on real bridges elsewhere). Each "host"
shares the test's file system, so SCRIPTS_REMOTE_DIR is a temporary folder.
"""

import base64
import glob
import os
import shutil
import tempfile
import time

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from nebtwist.errors import DriverError
from nebtwist.mad import build_driver
from tests.sshd import start_sshd

VM_XML = ("<VM><ID>{vid}</ID><TEMPLATE><NIC><BRIDGE>onebr0</BRIDGE><MAC>02:00:cb:00:71:0a"
          "</MAC><TARGET>one-{vid}-0</TARGET></NIC></TEMPLATE></VM>")

#: A recording action script: one line per call in $VNM_STATE_DIR/calls.
RECORDER = """#!/bin/sh
xml=$(printf %s "$1" | base64 -d)
echo "{action} $VMID $(hostname -s 2>/dev/null || echo h) ovs=${{VNM_OVS_DATAPATH:-}} $xml" \\
    >> "$VNM_STATE_DIR/calls"
case "$xml" in
*"<ID>13</ID>"*) echo "ERROR: chain one-13-0 is in use" >&2; exit 3 ;;
*"<ID>14</ID>"*) sleep 1 ;;
*"<ID>21</ID>"*) # the first time, kill whoever runs this script (the host agent)
    if [ ! -e "$VNM_STATE_DIR/killed" ]; then : > "$VNM_STATE_DIR/killed"; kill -9 $PPID; fi ;;
esac
echo "{action} done"
"""


class VnmExecTests(TestCase):
    """The driver over ssh: copy, shared connection, failures, concurrency."""

    def setUp(self):
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.sshd = start_sshd(self)
        port, key, user = self.sshd
        self.config = os.path.join(self.base, "ssh_config")
        with open(self.config, "w") as f:
            f.write(f"Host hosta hostb\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
                    f"  IdentityFile {key}\n  IdentitiesOnly yes\n"
                    f"  UserKnownHostsFile {self.sshd.known_hosts}\n"
                    "  StrictHostKeyChecking yes\n  ConnectTimeout 20\n  LogLevel ERROR\n"
                    "Host hostz\n  HostName 127.0.0.1\n  Port 1\n  ConnectTimeout 5\n")
        self.remotes = os.path.join(self.base, "remotes")
        for action in ("pre", "post", "clean"):
            self.script("rec", action, RECORDER.format(action=action))
        with open(os.path.join(self.remotes, "vnmlib.py"), "w") as f:
            f.write("# shared library\n")
        self.state = os.path.join(self.base, "state")
        os.makedirs(self.state)
        self.remote_dir = os.path.join(self.base, "remote")
        # A short TMPDIR: the driver's ssh control sockets live under it.
        self.tmpdir = tempfile.mkdtemp(prefix="nt-vnm-")
        self.addCleanup(shutil.rmtree, self.tmpdir, True)
        self.env = dict(os.environ, TMPDIR=self.tmpdir, SCRIPTS_REMOTE_DIR=self.remote_dir,
                        VNM_STATE_DIR=self.state)
        self.env.pop("VNM_OVS_DATAPATH", None)
        self.logs = []

    def script(self, driver, action, text):
        folder = os.path.join(self.remotes, driver)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, action)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)

    async def start(self, arguments, name="rec"):
        mad = build_driver("vnm", reactor, {"NAME": name, "EXECUTABLE": "vnm_exec",
                                            "ARGUMENTS": arguments, "TIMEOUT": 120},
                           env=self.env)
        mad.on_log = lambda *a: self.logs.append(a)
        mad.init_timeout = 30
        mad.startService()
        self.addCleanup(self.stop, mad)
        await mad.started()
        return mad

    async def stop(self, mad):
        if mad.running:
            await mad.stopService()

    def calls(self):
        try:
            with open(os.path.join(self.state, "calls")) as f:
                return [line.split()[:2] for line in f]
        except FileNotFoundError:
            return []

    def connections(self):
        with open(self.sshd.log_path, errors="replace") as f:
            return sum(1 for line in f if "Accepted publickey" in line)

    def masters(self):
        return glob.glob(os.path.join(self.tmpdir, "nebtwist-vnm-*", "*"))

    async def test_remote_actions_share_one_connection(self):
        """The remotes are copied to SCRIPTS_REMOTE_DIR/vnm once; every action
        after goes over the same ssh master; FINALIZE closes it."""
        before = self.connections()
        mad = await self.start(f"-F {self.config} -e VNM_OVS_DATAPATH=netdev -r {self.remotes}")
        start = time.monotonic()
        for vid in range(1, 6):
            for action in (mad.pre, mad.post, mad.clean):
                self.assertIsNone(await action(vid, "hosta", VM_XML.format(vid=vid)))
        elapsed = time.monotonic() - start
        self.assertEqual(self.calls(), [[a, str(v)] for v in range(1, 6)
                                        for a in ("pre", "post", "clean")])
        with open(os.path.join(self.state, "calls")) as f:
            first = f.readline()
        self.assertIn("ovs=netdev <VM><ID>1</ID>", first)
        self.assertTrue(os.access(os.path.join(self.remote_dir, "vnm", "rec", "pre"), os.X_OK))
        self.assertTrue(os.path.isfile(os.path.join(self.remote_dir, "vnm", "vnmlib.py")))
        self.assertEqual(self.connections() - before, 1, "one ssh connection for 15 actions")
        self.assertEqual(len(self.masters()), 1)
        self.assertIn(("I", 1, f"Copying the network drivers to hosta:{self.remote_dir}/vnm"),
                      self.logs)
        self.assertIn(("I", 1, "pre done"), self.logs)
        print(f"\n15 actions over one shared connection: {elapsed:.3f} s "
              f"({elapsed / 15 * 1000:.1f} ms each)")
        await mad.stopService()
        self.assertEqual(glob.glob(os.path.join(self.tmpdir, "nebtwist-vnm-*")), [],
                         "the master closed and its folder removed at FINALIZE")

    async def test_failure_message_and_concurrency(self):
        """A failing script's stderr is the failure message; actions of different
        VMs run at once."""
        mad = await self.start(f"-F {self.config} -r {self.remotes}")
        await mad.pre(1, "hosta", VM_XML.format(vid=1))  # the copy and the master
        with self.assertRaises(DriverError) as caught:
            await mad.clean(13, "hosta", VM_XML.format(vid=13))
        self.assertEqual(caught.exception.message, "clean: chain one-13-0 is in use")
        start = time.monotonic()
        await defer.gatherResults([mad.post(14, "hosta", VM_XML.format(vid=14)),
                                   mad.pre(15, "hostb", VM_XML.format(vid=15)),
                                   mad.pre(16, "hosta", VM_XML.format(vid=16))])
        # 14 sleeps 1 s; the others do not wait for it.
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(sorted(self.calls()[2:]), [["post", "14"], ["pre", "15"], ["pre", "16"]])

    async def test_changed_or_lost_remotes_are_copied_again(self):
        mad = await self.start(f"-F {self.config} -r {self.remotes}")
        await mad.pre(1, "hosta", VM_XML.format(vid=1))
        self.script("rec", "post", "#!/bin/sh\necho changed >> \"$VNM_STATE_DIR/calls\"\n")
        await mad.post(1, "hosta", VM_XML.format(vid=1))
        self.assertEqual(self.calls()[-1], ["changed"])
        shutil.rmtree(os.path.join(self.remote_dir, "vnm"))  # the host lost its copy
        await mad.clean(1, "hosta", VM_XML.format(vid=1))
        self.assertEqual(self.calls()[-1], ["clean", "1"])
        self.assertTrue(any("copying them again" in m for _l, _o, m in self.logs))

    async def test_unreachable_host_and_missing_script(self):
        mad = await self.start(f"-F {self.config} -r {self.remotes} -w 20")
        with self.assertRaises(DriverError) as caught:
            await mad.pre(2, "hostz", VM_XML.format(vid=2))
        self.assertRegex(caught.exception.message, r"^pre: cannot reach hostz over ssh: ")
        other = await self.start(f"-F {self.config} -r {self.remotes} nosuch", name="x")
        with self.assertRaises(DriverError) as caught:
            await other.pre(2, "hosta", VM_XML.format(vid=2))
        self.assertIn("no script nosuch/pre", caught.exception.message)

    async def test_local_and_noop_modes(self):
        """-l runs the scripts here (VNM_HOST names the host); -n runs nothing."""
        self.script("loc", "pre", "#!/bin/sh\necho \"pre $VMID $VNM_HOST\" >> "
                                  "\"$VNM_STATE_DIR/calls\"\n")
        before = self.connections()
        mad = await self.start(f"-l -r {self.remotes}", name="loc")
        await mad.pre(5, "nt-h1", VM_XML.format(vid=5))
        noop = await self.start("-n", name="dummy")
        for action in (noop.pre, noop.post, noop.clean):
            await action(6, "anywhere", VM_XML.format(vid=6))
        self.assertEqual(self.calls(), [["pre", "5"]])
        with open(os.path.join(self.state, "calls")) as f:
            self.assertEqual(f.read(), "pre 5 nt-h1\n")
        self.assertEqual(self.connections(), before, "no ssh in -l or -n mode")
        self.assertFalse(os.path.exists(os.path.join(self.remote_dir, "vnm")))

    async def test_bad_arguments_fail_init(self):
        mad = build_driver("vnm", reactor, {"NAME": "bad", "EXECUTABLE": "vnm_exec",
                                            "ARGUMENTS": "-e NOTVNM=1"}, env=self.env)
        mad.init_timeout = 30
        mad.restart_delay = 600  # no restart during the test
        mad.startService()
        self.addCleanup(self.stop, mad)
        with self.assertRaises(DriverError) as caught:
            await mad.pre(1, "hosta", VM_XML.format(vid=1))
        self.assertIn("INIT FAILURE: bad arguments: -e takes VNM_NAME=VALUE",
                      caught.exception.message)

    async def test_plain_ssh_mode(self):
        """-A: one ssh session per action, still over the one shared connection."""
        before = self.connections()
        mad = await self.start(f"-A -F {self.config} -r {self.remotes}")
        for vid in (1, 2):
            await mad.pre(vid, "hosta", VM_XML.format(vid=vid))
            await mad.post(vid, "hosta", VM_XML.format(vid=vid))
        with self.assertRaises(DriverError) as caught:
            await mad.clean(13, "hosta", VM_XML.format(vid=13))
        self.assertEqual(caught.exception.message, "clean: chain one-13-0 is in use")
        self.assertEqual(self.calls(), [["pre", "1"], ["post", "1"], ["pre", "2"], ["post", "2"],
                                        ["clean", "13"]])
        self.assertEqual(self.connections() - before, 1)

    async def test_agent_that_dies(self):
        """An agent killed with a request in flight: that request runs again in
        a plain ssh session, and the next one starts a new agent."""
        mad = await self.start(f"-F {self.config} -r {self.remotes}")
        await mad.pre(21, "hosta", VM_XML.format(vid=21))  # kills the agent, runs again
        await mad.post(21, "hosta", VM_XML.format(vid=21))  # a new agent
        await mad.clean(21, "hosta", VM_XML.format(vid=21))
        self.assertEqual(self.calls(), [["pre", "21"], ["pre", "21"], ["post", "21"],
                                        ["clean", "21"]])
        self.assertTrue(os.path.exists(os.path.join(self.state, "killed")))

    async def test_one_vm_in_order_others_at_once(self):
        """A VM's actions run in the order they arrived, each after the one
        before ends (a slow pre does not let its post overtake it)."""
        for action in ("pre", "post", "clean"):
            self.script("ord", action, "#!/bin/sh\n"
                        f"[ {action} = pre ] && sleep 0.5\n"
                        f"echo \"{action} $VMID\" >> \"$VNM_STATE_DIR/calls\"\n")
        mad = await self.start(f"-l -r {self.remotes}", name="ord")
        start = time.monotonic()
        await defer.gatherResults([mad.pre(7, "h", VM_XML.format(vid=7)),
                                   mad.post(7, "h", VM_XML.format(vid=7)),
                                   mad.pre(8, "h", VM_XML.format(vid=8)),
                                   mad.clean(7, "h", VM_XML.format(vid=7))])
        self.assertLess(time.monotonic() - start, 5)
        seven = [c for c in self.calls() if c[1] == "7"]
        self.assertEqual(seven, [["pre", "7"], ["post", "7"], ["clean", "7"]])
        self.assertIn(["pre", "8"], self.calls())
