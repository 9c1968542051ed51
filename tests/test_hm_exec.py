"""Integration tests: the real reactor spawning the shipped hook driver
``drivers/hm/exec`` through :class:`nebtwist.mad.HookMad`; remote hooks over a
real sshd on 127.0.0.1 (tests/sshd.py)."""

import os
import time

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from nebtwist import paths
from nebtwist.errors import DriverError
from nebtwist.mad import HookMad, resolve_executable
from tests.sshd import start_sshd

#: A hook that writes its arguments, one per line, to the file named first.
RECORD = """#!/bin/sh
out="$1"; shift
printf '%s\\n' "$@" > "$out.tmp" && mv "$out.tmp" "$out"
echo "recorded $#"
"""


class HookDriverTests(TestCase):
    """drivers/hm/exec: local and remote hooks, failures, timeouts."""

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.record = self.script("record", RECORD)

    def script(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
        return path

    async def driver(self, arguments="-t 10", env=None):
        executable = resolve_executable("exec", "hm")
        self.assertEqual(executable, paths.shipped("drivers", "hm", "exec"))
        mad = HookMad(reactor, "hm_exec", executable, arguments,
                      env=dict(os.environ, **(env or {})), request_timeout=60)
        mad.startService()
        self.addCleanup(mad.stopService)
        await mad.started()
        return mad

    async def test_local_hook(self):
        mad = await self.driver()
        out = os.path.join(self.dir, "out")
        result = await mad.execute(3, "rec", None, self.record, f"{out} 3 'two words' $HOME")
        self.assertEqual(result, "recorded 3")
        with open(out) as f:
            # A shell runs "<command> <args>" (as one_hm.rb does): quotes and $VARS work.
            self.assertEqual(f.read().splitlines(), ["3", "two words", os.environ["HOME"]])

    async def test_no_arguments(self):
        mad = await self.driver()
        result = await mad.execute(1, "echo", "LOCAL", "/bin/echo", "")
        self.assertEqual(result, "")

    async def test_environment_reaches_the_hook(self):
        mad = await self.driver(env={"ONE_XMLRPC": "http://127.0.0.1:9/RPC2"})
        self.assertEqual(await mad.execute(1, "env", None, "/bin/sh", "-c 'echo $ONE_XMLRPC'"),
                         "http://127.0.0.1:9/RPC2")

    async def test_multiline_output_is_one_line(self):
        mad = await self.driver()
        self.assertEqual(await mad.execute(1, "two", None, "/bin/sh",
                                           "-c 'echo a; echo b'"), "a b")

    async def test_failure(self):
        mad = await self.driver()
        bad = self.script("bad", "#!/bin/sh\necho some output\necho cannot do it >&2\nexit 3\n")
        with self.assertRaises(DriverError) as cm:
            await mad.execute(5, "bad", None, bad, "x")
        self.assertEqual(cm.exception.message, "cannot do it (exit code 3)")

    async def test_failure_with_opennebula_error_markers(self):
        mad = await self.driver()
        bad = self.script("bad", "#!/bin/sh\necho noise >&2\n"
                                 "echo 'ERROR MESSAGE --8<------' >&2\necho the reason >&2\n"
                                 "echo 'ERROR MESSAGE ------>8--' >&2\nexit 1\n")
        with self.assertRaises(DriverError) as cm:
            await mad.execute(5, "bad", None, bad)
        self.assertEqual(cm.exception.message, "the reason (exit code 1)")

    async def test_missing_command(self):
        mad = await self.driver()
        with self.assertRaises(DriverError) as cm:
            await mad.execute(5, "gone", None, os.path.join(self.dir, "nope"))
        self.assertIn("not found (exit code 127)", cm.exception.message)

    async def test_hanging_hook_is_killed(self):
        """-t: a hook that hangs is killed with its children and answered FAILURE."""
        mad = await self.driver("-t 0.5")
        pidfile = os.path.join(self.dir, "child.pid")
        hang = self.script("hang", f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\nwait\n")
        started = time.monotonic()
        with self.assertRaises(DriverError) as cm:
            await mad.execute(9, "hang", None, hang)
        self.assertEqual(cm.exception.message, "timed out after 0.5 s")
        self.assertLess(time.monotonic() - started, 10)
        with open(pidfile) as f:
            child = int(f.read())
        for _ in range(100):  # the grandchild goes with its process group
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            await deferLater(reactor, 0.05, lambda: None)
        else:
            self.fail(f"the hook's child {child} is still running")
        # The driver goes on answering.
        self.assertEqual(await mad.execute(9, "after", None, "/bin/echo", "ok"), "ok")

    async def test_concurrent_hooks_of_one_object(self):
        """A slow and a fast hook of one VM, answered out of order, each get theirs."""
        mad = await self.driver()
        slow = mad.execute(4, "slow", None, "/bin/sh", "-c 'sleep 0.5; echo slow'")
        fast = mad.execute(4, "fast", None, "/bin/echo", "fast")
        self.assertEqual(await fast, "fast")
        self.assertEqual(await slow, "slow")

    async def test_remote_hook_over_ssh(self):
        """remote: ``ssh <options> <host> '<command> <args>'`` on a real sshd."""
        server = start_sshd(self)
        options = " ".join(f"-o {o}" for o in server.ssh_options()[1::2])
        mad = await self.driver(f"-t 30 {options}")
        out = os.path.join(self.dir, "remote-out")
        result = await mad.execute(6, "rrec", "127.0.0.1", self.record, f"{out} 6 remote")
        self.assertEqual(result, "recorded 2")
        with open(out) as f:
            self.assertEqual(f.read().splitlines(), ["6", "remote"])
        with open(server.log_path) as f:
            self.assertIn("Accepted publickey", f.read())

    async def test_remote_failure_and_unreachable_host(self):
        server = start_sshd(self)
        options = " ".join(f"-o {o}" for o in server.ssh_options()[1::2])
        mad = await self.driver(f"-t 30 {options}")
        with self.assertRaises(DriverError) as cm:
            await mad.execute(6, "rfail", "127.0.0.1", "/bin/sh", "-c 'echo nope >&2; exit 4'")
        self.assertEqual(cm.exception.message, "nope (exit code 4)")
        # Nothing listens on 127.0.0.2 at that port: ssh itself fails (255).
        with self.assertRaises(DriverError) as cm:
            await mad.execute(6, "rdown", "127.0.0.2", "/bin/true")
        self.assertIn("(exit code 255)", cm.exception.message)

    async def test_ssh_config_file(self):
        """-F: ports and keys can come from an ssh config file instead."""
        server = start_sshd(self)
        config = os.path.join(self.dir, "ssh_config")
        with open(config, "w") as f:
            f.write("Host node1\n    HostName 127.0.0.1\n")
            for opt in server.ssh_options()[1::2]:
                f.write("    " + opt.replace("=", " ", 1) + "\n")
        mad = await self.driver(f"-t 30 -F {config}")
        self.assertEqual(await mad.execute(2, "h", "node1", "/bin/echo", "via config"),
                         "via config")
