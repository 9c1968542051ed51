"""Hooks: configuration, matching, argument substitution and failure isolation
(nebtwist.core.hm) on fake drivers and a real SQLite core; the HM_MAD adapter
(nebtwist.mad.HookMad) on the fake process reactor."""

import base64
import os
import sys

from lxml import etree
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nebtwist import paths
from nebtwist.core.config import Config
from nebtwist.core.hm import (HOST_EVENTS, VM_EVENTS, Hook, HookConfigError, HookManager,
                              hook_environment, hooks_from_config, parse_hook,
                              resolve_command)
from nebtwist.core.im import InformationManager
from nebtwist.core.objects import (ACTIVE, DONE, EPILOG, FAILED, HOST_DISABLED, HOST_ERROR,
                                   HOST_MONITORED, LCM_INIT, PROLOG, RUNNING, STOPPED)
from nebtwist.errors import DriverCrashed, DriverError
from nebtwist.fakes import FakeHookDriver, FakeInformationDriver
from nebtwist.interfaces import IHookDriver
from nebtwist.mad import HookMad, build_driver
from nebtwist.template import Template
from nebtwist.testing import FakeProcessReactor
from tests.test_lcm import Core

SMALL_VM = "NAME = small\nCPU = 0.5\nMEMORY = 128\n"


def config(text):
    return Config(Template.parse(text))


def stop_fake_mad(mad, reactor):
    """Stop a MadProcess on a FakeProcessReactor, its fake children exiting at once."""
    d = mad.stopService()
    for spawned in reactor.spawned:
        if not spawned.transport.ended:
            spawned.transport.exit(0)
    return d


class CapturedLog:
    """oned.log-style events of the HKM module, captured for a test."""

    def __init__(self, testcase):
        self.events = []
        globalLogPublisher.addObserver(self._observe)
        testcase.addCleanup(globalLogPublisher.removeObserver, self._observe)

    def _observe(self, event):
        if event.get("one_module") == "HKM":
            self.events.append(event)

    def texts(self, level=None):
        return [formatEvent(e) for e in self.events
                if level is None or e["log_level"].name == level]


class InterfaceTests(unittest.TestCase):
    """The fake and the MAD adapter provide IHookDriver (checked first)."""

    def test_fake(self):
        self.assertTrue(verifyObject(IHookDriver, FakeHookDriver("hm")))

    def test_mad(self):
        mad = HookMad(FakeProcessReactor(), "hm_exec", "/bin/true")
        self.assertTrue(verifyObject(IHookDriver, mad))
        self.assertEqual(mad.family_tag, "HKM")

    def test_build_driver(self):
        mad = build_driver("hm", FakeProcessReactor(), {"executable": "exec",
                                                        "arguments": "-t 5"})
        self.assertIsInstance(mad, HookMad)
        self.assertEqual(mad.executable, paths.shipped("drivers", "hm", "exec"))
        self.assertEqual(mad.argv[1:], ["-t", "5"])
        self.assertEqual(mad.name, "exec")

    def test_fake_records(self):
        drv = FakeHookDriver("hm")
        d = drv.execute(3, "h", None, "/bin/x", "a b")
        call = drv.last("execute")
        self.assertEqual((call.oid, call.args), (3, ("h", None, "/bin/x", "a b")))
        call.fail("boom")
        self.assertEqual(self.failureResultOf(d, DriverError).value.message, "boom")


class ParseTests(unittest.TestCase):
    """VM_HOOK / HOST_HOOK vectors -> Hook."""

    def test_vm_hook(self):
        hook = parse_hook("VM", {"NAME": "dump", "ON": "running", "COMMAND": "/bin/dump",
                                 "ARGUMENTS": "$VMID  $TEMPLATE", "REMOTE": "no"})
        self.assertEqual(hook, Hook("VM", "dump", "RUNNING", "/bin/dump", "$VMID $TEMPLATE",
                                    False))

    def test_every_on(self):
        for on in VM_EVENTS:
            self.assertEqual(parse_hook("VM", {"ON": on.lower(), "COMMAND": "/x"}).on, on)
        for on in HOST_EVENTS:
            self.assertEqual(parse_hook("HOST", {"ON": on, "COMMAND": "/x"}).on, on)

    def test_failure_is_failed(self):
        """The OSDC 2012 slides write on = "FAILURE"."""
        self.assertEqual(parse_hook("VM", {"ON": "FAILURE", "COMMAND": "/x"}).on, "FAILED")
        with self.assertRaises(HookConfigError):
            parse_hook("HOST", {"ON": "FAILURE", "COMMAND": "/x"})

    def test_bad_hooks(self):
        cases = [
            ("VM", {"ON": "EXPLODE", "COMMAND": "/x"}, "unknown ON 'EXPLODE'"),
            ("VM", {"ON": "", "COMMAND": "/x"}, "unknown ON"),
            ("HOST", {"ON": "RUNNING", "COMMAND": "/x"}, "unknown ON 'RUNNING'"),
            ("VM", {"ON": "DONE"}, "COMMAND is missing"),
            ("VM", {"ON": "DONE", "COMMAND": "  "}, "COMMAND is missing"),
            ("VM", {"NAME": "two words", "ON": "DONE", "COMMAND": "/x"}, "one word"),
            ("VM", {"NAME": "colon:", "ON": "DONE", "COMMAND": "/x"}, "one word"),
            ("NET", {"ON": "DONE", "COMMAND": "/x"}, "unknown hook kind"),
        ]
        for kind, vector, message in cases:
            with self.assertRaises(HookConfigError) as cm:
                parse_hook(kind, vector)
            self.assertIn(message, str(cm.exception), vector)

    def test_default_name(self):
        self.assertEqual(parse_hook("VM", {"ON": "DONE", "COMMAND": "/x"}, 4).name, "hook4")

    def test_command_words_come_before_arguments(self):
        hook = parse_hook("VM", {"NAME": "on_failure_resubmit", "ON": "FAILURE",
                                 "COMMAND": "onevm resubmit", "ARGUMENTS": "$VMID"})
        self.assertEqual((hook.command, hook.arguments), ("onevm", "resubmit $VMID"))

    def test_resolve_local(self):
        shipped = paths.shipped("hooks", "ft", "host_error")
        self.assertTrue(os.access(shipped, os.X_OK))
        self.assertEqual(resolve_command("ft/host_error", False, "/var/tmp/one"), shipped)
        # The name the slides use resolves too.
        self.assertEqual(resolve_command("host_error.rb", False, "/r"),
                         paths.shipped("hooks", "host_error.rb"))
        self.assertEqual(resolve_command("onevm", False, "/r"), "onevm")  # left to PATH
        self.assertEqual(resolve_command("/usr/bin/env", False, "/r"), "/usr/bin/env")

    def test_resolve_remote(self):
        self.assertEqual(resolve_command("ft/host_error", True, "/var/tmp/one/"),
                         "/var/tmp/one/hooks/ft/host_error")
        self.assertEqual(resolve_command("/opt/h", True, "/var/tmp/one"), "/opt/h")
        hook = parse_hook("VM", {"ON": "RUNNING", "COMMAND": "vlan", "REMOTE": "YES"}, 0,
                          "/srv/one")
        self.assertEqual((hook.command, hook.remote), ("/srv/one/hooks/vlan", True))

    def test_from_config_skips_bad_hooks(self):
        log = CapturedLog(self)
        hooks = hooks_from_config(config(
            'SCRIPTS_REMOTE_DIR = "/srv/one"\n'
            'VM_HOOK = [ name = "a", on = "CREATE", command = "/a" ]\n'
            'VM_HOOK = [ name = "b", on = "NEVER", command = "/b" ]\n'
            'VM_HOOK = "not a vector"\n'
            'HOST_HOOK = [ name = "error", on = "ERROR", command = "ft/host_error", '
            'arguments = "$HID -r n", remote = "no" ]\n'
            'HOST_HOOK = [ name = "r", on = "CREATE", command = "probe", remote = "yes" ]\n'))
        self.assertEqual([(h.kind, h.name) for h in hooks],
                         [("VM", "a"), ("HOST", "error"), ("HOST", "r")])
        self.assertEqual(hooks[1].command, paths.shipped("hooks", "ft", "host_error"))
        self.assertEqual(hooks[2].command, "/srv/one/hooks/probe")
        errors = log.texts("error")
        self.assertEqual(len(errors), 2, errors)
        self.assertIn("VM_HOOK b: unknown ON 'NEVER'", errors[0])
        self.assertIn("must be a vector", errors[1])

    def test_shipped_conf_has_the_samples_commented(self):
        """HM_MAD is on; the hooks are shown commented, and parse once uncommented."""
        with open(paths.shipped("conf", "oned.conf")) as f:
            text = f.read()
        conf = config(text)
        self.assertEqual(conf.vector("HM_MAD")["EXECUTABLE"], "exec")
        self.assertEqual(conf.template.get_all("VM_HOOK") + conf.template.get_all("HOST_HOOK"),
                         [])
        lines, in_hook = [], False
        for line in text.splitlines():
            in_hook = in_hook or line.startswith(("#HOST_HOOK", "#VM_HOOK"))
            lines.append(line[1:] if in_hook else line)
            in_hook = in_hook and "]" not in line
        uncommented = "\n".join(lines)
        hooks = hooks_from_config(config(uncommented))
        self.assertEqual([(h.kind, h.name, h.on) for h in hooks],
                         [("VM", "on_failure_delete", "FAILED"),
                          ("VM", "on_failure_resubmit", "FAILED"), ("HOST", "error", "ERROR")])
        self.assertEqual((hooks[2].command, hooks[2].arguments),
                         (paths.shipped("hooks", "ft", "host_error"), "$HID -r n"))
        self.assertEqual((hooks[1].command, hooks[1].arguments), ("onevm", "resubmit $VMID"))


class ExpandTests(unittest.TestCase):
    """$VMID, $HID and $TEMPLATE in ARGUMENTS."""

    async def test_vm(self):
        core = await Core.make(self)
        vm = await core.dm.allocate(core.admin, SMALL_VM)
        hook = Hook("VM", "h", "CREATE", "/x", "$VMID one-$VMID $TEMPLATE $HID $TEMPLATE")
        args = hook.expand(vm).split()
        self.assertEqual(args[:2], [str(vm.oid), f"one-{vm.oid}"])
        self.assertEqual(args[3], "$HID")  # not a VM hook variable
        self.assertEqual(args[2], args[4])  # every occurrence
        xml = etree.fromstring(base64.b64decode(args[2]))
        self.assertEqual((xml.tag, xml.findtext("ID"), xml.findtext("NAME")),
                         ("VM", str(vm.oid), "small"))
        self.assertEqual(xml.findtext("TEMPLATE/MEMORY"), "128")

    async def test_host(self):
        core = await Core.make(self)
        host = await core.host("node7")
        args = Hook("HOST", "h", "ERROR", "/x", "$HID $TEMPLATE $VMID").expand(host).split()
        self.assertEqual((args[0], args[2]), (str(host.oid), "$VMID"))
        xml = etree.fromstring(base64.b64decode(args[1]))
        self.assertEqual((xml.tag, xml.findtext("NAME")), ("HOST", "node7"))

    def test_no_arguments(self):
        class Thing:
            oid = 5

        self.assertEqual(Hook("VM", "h", "DONE", "/x").expand(Thing()), "")
        self.assertEqual(Hook("HOST", "h", "ERROR", "/x", "$HID").expand(Thing()), "5")


class ManagerTests(unittest.TestCase):
    """HookManager on a real core with fake VMM/TM/IM/HM drivers."""

    async def make(self, hooks, auto="ok"):
        self.core = core = await Core.make(self)
        self.hm_driver = FakeHookDriver("hm", auto=None if auto is None else {"execute": auto})
        self.im_driver = FakeInformationDriver("im_fake")
        self.im = InformationManager(core.nebula, {"im_fake": self.im_driver})
        core.requests.im = None
        self.hm = HookManager(core.nebula, self.hm_driver,
                              [parse_hook(kind, v, i) for i, (kind, v) in enumerate(hooks)])
        self.hm.attach(lcm=core.lcm, im=self.im, dm=core.dm, requests=core.requests)
        self.log = CapturedLog(self)
        return core

    def fired(self):
        return [(c.args[0], c.oid, c.args[1], c.args[3]) for c in self.hm_driver.calls]

    async def settle(self):
        await self.core.nebula.db.run([])
        await self.hm.idle()

    async def running(self, host):
        core = self.core
        vm = await core.dm.allocate(core.admin, SMALL_VM)
        await core.dm.deploy(vm, host)
        core.tmd.last("transfer").succeed()
        await self.settle()
        core.vmmd.last("deploy").succeed("dep")
        await self.settle()
        self.assertEqual((vm.state, vm.lcm_state), (ACTIVE, RUNNING))
        return vm

    async def test_vm_life(self):
        hooks = [("VM", {"NAME": on.lower(), "ON": on, "COMMAND": "/bin/rec",
                         "ARGUMENTS": f"{on} $VMID"}) for on in VM_EVENTS]
        core = await self.make(hooks)
        host = await core.host("h0")
        vm = await core.dm.allocate(core.admin, SMALL_VM)
        self.assertEqual(self.fired(), [("create", vm.oid, None, f"CREATE {vm.oid}")])
        await core.dm.deploy(vm, host)
        core.tmd.last("transfer").succeed()
        await self.settle()
        core.vmmd.last("deploy").succeed("dep")
        await self.settle()
        self.assertEqual([f[0] for f in self.fired()], ["create", "prolog", "running"])
        # A poll that keeps the VM RUNNING is no change: no second RUNNING hook.
        await core.lcm.trigger(vm, "poll_active", info={"STATE": "a"})
        await core.dm.action(vm, "shutdown")
        core.vmmd.last("shutdown").succeed()
        await self.settle()
        self.assertEqual(vm.lcm_state, EPILOG)
        core.tmd.last("transfer").succeed()
        await self.settle()
        self.assertEqual((vm.state, vm.lcm_state), (DONE, LCM_INIT))
        self.assertEqual(self.fired(), [
            ("create", vm.oid, None, f"CREATE {vm.oid}"),
            ("prolog", vm.oid, None, f"PROLOG {vm.oid}"),
            ("running", vm.oid, None, f"RUNNING {vm.oid}"),
            ("shutdown", vm.oid, None, f"SHUTDOWN {vm.oid}"),
            ("done", vm.oid, None, f"DONE {vm.oid}"),
        ])
        self.assertEqual(self.hm_driver.calls[0].args[2], "/bin/rec")
        ok = self.log.texts("info")
        self.assertIn(f"VM {vm.oid}: Success executing Hook: done: ok", ok)
        with open(os.path.join(core.nebula.vm_dir(vm.oid), "vm.log")) as f:
            self.assertIn("[HKM][I]: Success executing Hook: running: ok", f.read())

    async def test_stop(self):
        """STOP fires on STOPPED; EPILOG_STOP is not EPILOG, so no SHUTDOWN hook."""
        core = await self.make([("VM", {"NAME": on.lower(), "ON": on, "COMMAND": "/r",
                                        "ARGUMENTS": "$VMID"})
                                for on in ("STOP", "SHUTDOWN", "DONE")])
        vm = await self.running(await core.host("h0"))
        await core.dm.action(vm, "stop")
        core.vmmd.last("save").succeed()
        await self.settle()
        core.tmd.last("transfer").succeed()
        await self.settle()
        self.assertEqual((vm.state, vm.lcm_state), (STOPPED, LCM_INIT))
        self.assertEqual(self.fired(), [("stop", vm.oid, None, str(vm.oid))])

    async def test_failed(self):
        core = await self.make([("VM", {"NAME": "f", "ON": "FAILED", "COMMAND": "/f",
                                        "ARGUMENTS": "$VMID"})])
        host = await core.host("h0")
        vm = await core.dm.allocate(core.admin, SMALL_VM)
        await core.dm.deploy(vm, host)
        core.tmd.last("transfer").fail("no space")
        await self.settle()
        self.assertEqual((vm.state, vm.lcm_state), (FAILED, LCM_INIT))
        self.assertEqual(self.fired(), [("f", vm.oid, None, str(vm.oid))])

    async def test_remote_vm_hook_runs_on_the_vms_host(self):
        core = await self.make([
            ("VM", {"NAME": "c", "ON": "CREATE", "COMMAND": "/c", "REMOTE": "yes"}),
            ("VM", {"NAME": "r", "ON": "RUNNING", "COMMAND": "/r", "REMOTE": "yes",
                    "ARGUMENTS": "$VMID"}),
        ])
        host = await core.host("node1")
        vm = await self.running(host)
        # CREATE: the VM has no host yet, so the remote hook is skipped (3.4).
        self.assertEqual(self.fired(), [("r", vm.oid, "node1", str(vm.oid))])

    async def test_host_hooks(self):
        core = await self.make([
            ("HOST", {"NAME": "c", "ON": "CREATE", "COMMAND": "/c", "ARGUMENTS": "$HID"}),
            ("HOST", {"NAME": "e", "ON": "ERROR", "COMMAND": "/e", "ARGUMENTS": "$HID -r n"}),
            ("HOST", {"NAME": "d", "ON": "DISABLE", "COMMAND": "/d", "REMOTE": "yes"}),
        ])
        host = await core.host("h0")
        hid = host.oid
        self.assertEqual(self.fired(), [("c", hid, None, str(hid))])

        async def monitor(ok):
            d = self.im.monitor(host)
            call = self.im_driver.last("monitor")
            if ok:
                call.succeed("TOTALCPU=100 FREECPU=100")
            else:
                call.fail("host is down")
            await d
            await self.settle()

        await monitor(False)
        self.assertEqual(host.state, HOST_ERROR)
        self.assertEqual(self.fired()[1:], [("e", hid, None, f"{hid} -r n")])
        # Still down at the next rounds (ERROR -> MONITORING -> ERROR): once per failure.
        await monitor(False)
        await monitor(False)
        self.assertEqual(len(self.fired()), 2)
        await monitor(True)
        self.assertEqual(host.state, HOST_MONITORED)
        await monitor(False)
        self.assertEqual(self.fired()[2:], [("e", hid, None, f"{hid} -r n")])
        await core.requests.host_enable(core.admin, hid, False)
        await core.requests.host_enable(core.admin, hid, False)  # already disabled
        self.assertEqual(host.state, HOST_DISABLED)
        self.assertEqual(self.fired()[3:], [("d", hid, "h0", "")])

    async def test_error_state_at_start_is_not_a_change(self):
        core = await Core.make(self)
        host = await core.host("h0")
        host.state = HOST_ERROR
        drv = FakeHookDriver("hm", auto={"execute": "ok"})
        hm = HookManager(core.nebula, drv, [parse_hook("HOST", {"ON": "ERROR",
                                                                "COMMAND": "/e"})])
        hm.host_state_changed(host, 1, HOST_ERROR)  # MONITORING -> ERROR, as before
        self.assertEqual(drv.calls, [])

    async def test_failing_hook_changes_nothing(self):
        core = await self.make([("VM", {"NAME": "bad", "ON": "RUNNING", "COMMAND": "/bad"}),
                                ("VM", {"NAME": "good", "ON": "RUNNING", "COMMAND": "/ok"})],
                               auto=None)
        host = await core.host("h0")
        vm = await core.dm.allocate(core.admin, SMALL_VM)
        await core.dm.deploy(vm, host)
        core.tmd.last("transfer").succeed()
        await self.settle()
        core.vmmd.last("deploy").succeed("dep")
        await core.nebula.db.run([])
        bad, good = self.hm_driver.calls
        bad.fail("bad: exit code 3")
        good.deferred.errback(DriverCrashed("driver hm exited with code 1"))
        await self.settle()
        self.assertEqual((vm.state, vm.lcm_state), (ACTIVE, RUNNING))
        self.assertIsNone(vm.template.get_str("ERROR"))
        errors = self.log.texts("error")
        self.assertIn(f"VM {vm.oid}: Error executing Hook: bad: bad: exit code 3", errors)
        self.assertIn(f"VM {vm.oid}: Error executing Hook: good: driver hm exited with "
                      f"code 1", errors)
        with open(os.path.join(core.nebula.vm_dir(vm.oid), "vm.log")) as f:
            self.assertIn("[HKM][E]: Error executing Hook: bad:", f.read())

    async def test_a_raising_driver_does_not_break_the_transition(self):
        core = await self.make([("VM", {"ON": "CREATE", "COMMAND": "/x"}),
                                ("HOST", {"ON": "CREATE", "COMMAND": "/y"})])

        def boom(*args):
            raise RuntimeError("driver bug")

        self.hm_driver.execute = boom
        host = await core.host("h0")  # no exception
        vm = await core.dm.allocate(core.admin, SMALL_VM)
        self.assertEqual(vm.state, 1)
        self.assertEqual(host.state, 0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    async def test_held_hooks_run_once_released(self):
        """hold=True: hooks fired before the HM driver started are sent after release()."""
        core = await Core.make(self)
        reactor = FakeProcessReactor()
        mad = HookMad(reactor, "hm", "/opt/hm")
        hm = HookManager(core.nebula, mad, [parse_hook("VM", {"ON": "CREATE",
                                                              "COMMAND": "/c"})], hold=True)
        hm.attach(dm=core.dm)
        vm = await core.dm.allocate(core.admin, SMALL_VM)
        mad.startService()
        self.addCleanup(stop_fake_mad, mad, reactor)
        child = reactor.spawned[0].transport
        child.child_says(b"INIT SUCCESS\n")
        self.assertEqual(child.written_lines, ["INIT"])
        hm.release()
        self.assertEqual(child.written_lines[-1], f"EXECUTE {vm.oid} hook0 LOCAL /c -")
        child.child_says(f"EXECUTE SUCCESS {vm.oid} hook0: done\n".encode())
        await hm.idle()
        vm2 = await core.dm.allocate(core.admin, SMALL_VM)  # now at once
        self.assertEqual(child.written_lines[-1], f"EXECUTE {vm2.oid} hook0 LOCAL /c -")
        child.child_says(f"EXECUTE SUCCESS {vm2.oid} hook0: done\n".encode())

    async def test_driver_down_fails_at_once(self):
        core = await Core.make(self)
        mad = HookMad(FakeProcessReactor(), "hm", "/opt/hm")  # never started
        hm = HookManager(core.nebula, mad, [parse_hook("VM", {"ON": "CREATE",
                                                              "COMMAND": "/c"})])
        log = CapturedLog(self)
        hm.attach(dm=core.dm)
        vm = await core.dm.allocate(core.admin, SMALL_VM)
        await hm.idle()
        self.assertEqual(log.texts("error"), [
            f"VM {vm.oid}: Error executing Hook: hook0: driver hm is not running (stopped)"])


class EnvironmentTests(unittest.TestCase):

    def test_environment(self):
        var = os.path.abspath(self.mktemp())
        auth = os.path.join(var, "auth")
        os.makedirs(var)
        with open(auth, "w") as f:
            f.write("oneadmin:pw\n")
        given = {"PATH": "/usr/bin:/bin", "ONE_AUTH": auth, "ONE_XMLRPC": "http://x/RPC2",
                 "KEEP": "1"}
        env = hook_environment(given, var, "http://127.0.0.1:4242/RPC2")
        self.assertEqual(env["ONE_XMLRPC"], "http://127.0.0.1:4242/RPC2")
        self.assertEqual(env["ONE_AUTH"], auth)
        self.assertEqual(env["KEEP"], "1")
        bindir = os.path.dirname(os.path.abspath(sys.executable))
        self.assertEqual(env["PATH"].split(os.pathsep), [bindir, "/usr/bin", "/bin"])
        self.assertEqual(given["ONE_XMLRPC"], "http://x/RPC2")  # not changed
        again = hook_environment(env, var, "http://127.0.0.1:1/RPC2")
        self.assertEqual(again["PATH"], env["PATH"])

    def test_generated_credentials(self):
        var = os.path.abspath(self.mktemp())
        env = hook_environment({"HOME": var, "PATH": "/bin"}, var, "http://h/RPC2")
        self.assertEqual(env["ONE_AUTH"], os.path.join(var, ".one", "one_auth"))
        self.assertTrue(os.path.exists(env["ONE_AUTH"]))


class HookMadTests(unittest.TestCase):
    """The EXECUTE protocol on the fake process reactor."""

    def start(self):
        self.reactor = FakeProcessReactor()
        self.mad = HookMad(self.reactor, "hm_exec", "/opt/exec", "-t 5")
        self.mad.startService()
        self.addCleanup(stop_fake_mad, self.mad, self.reactor)
        self.child = self.reactor.spawned[-1].transport
        self.child.child_says(b"INIT SUCCESS\n")

    def test_local_and_remote(self):
        self.start()
        d1 = self.mad.execute(3, "dump", None, "/bin/dump", "3 PFZNPg==")
        d2 = self.mad.execute(4, "vlan", "node1", "/var/tmp/one/hooks/vlan", "")
        self.assertEqual(self.child.written_lines[-2:], [
            "EXECUTE 3 dump LOCAL /bin/dump 3 PFZNPg==",
            "EXECUTE 4 vlan node1 /var/tmp/one/hooks/vlan -"])
        self.child.child_says(b"EXECUTE SUCCESS 3 dump: dumped it\n")
        self.child.child_says(b"EXECUTE FAILURE 4 vlan: no bridge br9 (exit code 1)\n")
        self.assertEqual(self.successResultOf(d1), "dumped it")
        self.assertEqual(self.failureResultOf(d2, DriverError).value.message,
                         "no bridge br9 (exit code 1)")

    def test_empty_output(self):
        self.start()
        d = self.mad.execute(3, "quiet", "LOCAL", "/bin/true")
        self.child.child_says(b"EXECUTE SUCCESS 3 quiet:\n")
        self.assertEqual(self.successResultOf(d), "")

    def test_replies_matched_by_hook_name(self):
        """Two hooks of one VM: the driver may answer in any order."""
        self.start()
        first = self.mad.execute(7, "slow", None, "/slow")
        second = self.mad.execute(7, "fast", None, "/fast")
        self.child.child_says(b"EXECUTE SUCCESS 7 fast: f\n")
        self.assertNoResult(first)
        self.assertEqual(self.successResultOf(second), "f")
        self.child.child_says(b"EXECUTE FAILURE 7 slow: s\n")
        self.assertEqual(self.failureResultOf(first, DriverError).value.message, "s")

    def test_newlines_in_arguments(self):
        self.start()
        d = self.mad.execute(1, "h", None, "/h", "a\nb\r\nc")
        self.assertEqual(self.child.written_lines[-1], "EXECUTE 1 h LOCAL /h a b c")
        self.child.child_says(b"EXECUTE SUCCESS 1 h: done\n")
        self.assertEqual(self.successResultOf(d), "done")

    def test_bad_words(self):
        self.start()
        before = list(self.child.written_lines)
        for args in [(1, "two words", None, "/h"), (1, "", None, "/h"),
                     (1, "h", "bad host", "/h"), (1, "h", None, "/a b"), (1, "h", None, "")]:
            f = self.failureResultOf(self.mad.execute(*args), DriverError)
            self.assertIn("must be one word", f.value.message)
        self.assertEqual(self.child.written_lines, before)

    def test_timeout_and_crash_pass_through(self):
        self.start()
        d = self.mad.execute(1, "h", None, "/h")
        self.child.exit(1)
        self.failureResultOf(d, DriverCrashed)


class EventTableTests(unittest.TestCase):
    """The ON table is 3.4's (reference section 8)."""

    def test_targets(self):
        self.assertEqual(VM_EVENTS, {
            "CREATE": None, "PROLOG": (ACTIVE, PROLOG), "RUNNING": (ACTIVE, RUNNING),
            "SHUTDOWN": (ACTIVE, EPILOG), "STOP": (4, LCM_INIT), "DONE": (DONE, LCM_INIT),
            "FAILED": (FAILED, LCM_INIT)})
        self.assertEqual(HOST_EVENTS, {"CREATE": None, "ERROR": HOST_ERROR,
                                       "DISABLE": HOST_DISABLED})



def load_host_error():
    """The shipped hooks/ft/host_error program, loaded as a module."""
    from importlib.machinery import SourceFileLoader
    from importlib.util import module_from_spec, spec_from_loader

    path = paths.shipped("hooks", "ft", "host_error")
    loader = SourceFileLoader("host_error_hook", path)
    module = module_from_spec(spec_from_loader("host_error_hook", loader))
    loader.exec_module(module)
    return module


class HostErrorScriptTests(unittest.TestCase):
    """hooks/ft/host_error: arguments and which VMs it picks (the API calls are
    tested end to end in tests/test_hooks.py)."""

    POOL = """<VM_POOL>
      <VM><ID>1</ID><STATE>3</STATE><HISTORY_RECORDS><HISTORY><HOSTNAME>a</HOSTNAME>
        </HISTORY></HISTORY_RECORDS></VM>
      <VM><ID>2</ID><STATE>5</STATE><HISTORY_RECORDS><HISTORY><HOSTNAME>a</HOSTNAME>
        </HISTORY></HISTORY_RECORDS></VM>
      <VM><ID>3</ID><STATE>3</STATE><HISTORY_RECORDS><HISTORY><HOSTNAME>b</HOSTNAME>
        </HISTORY></HISTORY_RECORDS></VM>
      <VM><ID>4</ID><STATE>3</STATE><HISTORY_RECORDS>
        <HISTORY><HOSTNAME>a</HOSTNAME></HISTORY><HISTORY><HOSTNAME>b</HOSTNAME></HISTORY>
        </HISTORY_RECORDS></VM>
      <VM><ID>5</ID><STATE>1</STATE><HISTORY_RECORDS><HISTORY><HOSTNAME>a</HOSTNAME>
        </HISTORY></HISTORY_RECORDS></VM>
      <VM><ID>6</ID><STATE>7</STATE><HISTORY_RECORDS><HISTORY><HOSTNAME>a</HOSTNAME>
        </HISTORY></HISTORY_RECORDS></VM>
      <VM><ID>7</ID><STATE>1</STATE><HISTORY_RECORDS/></VM>
      <VM><ID>0</ID><STATE>3</STATE><HISTORY_RECORDS><HISTORY><HOSTNAME>a</HOSTNAME>
        </HISTORY></HISTORY_RECORDS></VM>
    </VM_POOL>"""

    def setUp(self):
        self.hook = load_host_error()

    def test_selection(self):
        """ACTIVE VMs whose last history names the host; SUSPENDED ones with y."""
        self.assertEqual(self.hook.vms_on(self.POOL, "a", False), [0, 1])
        self.assertEqual(self.hook.vms_on(self.POOL, "a", True), [0, 1, 2])
        self.assertEqual(self.hook.vms_on(self.POOL, "b", False), [3, 4])
        self.assertEqual(self.hook.vms_on(self.POOL, "c", True), [])

    def test_arguments(self):
        self.assertEqual(self.hook.parse_args(["3"]), (3, "-r", False))
        self.assertEqual(self.hook.parse_args(["3", "-d", "y"]), (3, "-d", True))
        self.assertEqual(self.hook.parse_args(["3", "-r", "N"]), (3, "-r", False))
        for bad, message in [([], "usage"), (["x"], "host id must be a number"),
                             (["3", "-x"], "mode must be -r or -d"),
                             (["3", "-r", "maybe"], "must be y or n"),
                             (["1", "-r", "n", "extra"], "usage")]:
            with self.assertRaises(ValueError) as cm:
                self.hook.parse_args(bad)
            self.assertIn(message, str(cm.exception))

    def test_bad_arguments_exit_2(self):
        import io

        err = io.StringIO()
        self.assertEqual(self.hook.main(["nope"], out=io.StringIO(), err=err), 2)
        self.assertIn("host id must be a number", err.getvalue())

    def test_unreachable_daemon_exit_2(self):
        import io

        auth = os.path.abspath(self.mktemp())
        with open(auth, "w") as f:
            f.write("oneadmin:pw\n")
        err = io.StringIO()
        old = dict(os.environ)
        self.addCleanup(lambda: (os.environ.clear(), os.environ.update(old)))
        os.environ.update(ONE_AUTH=auth, ONE_XMLRPC="http://127.0.0.1:1/RPC2")
        self.assertEqual(self.hook.main(["0", "-r", "n"], out=io.StringIO(), err=err), 2)
        self.assertIn("host 0: Cannot connect to http://127.0.0.1:1/RPC2", err.getvalue())
