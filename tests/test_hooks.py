"""Hooks end to end: a whole daemon (nebtwist.testing.start_nebula) with the
shipped HM driver (drivers/hm/exec) running real hook programs that write
files; host failures through the dummy IM's ``var/dummy/down/<host>`` file;
remote hooks over a real sshd on 127.0.0.1 (tests/sshd.py); the shipped
fault-tolerance hook ``ft/host_error`` resubmitting a failed host's VMs."""

import base64
import io
import os

from lxml import etree
from twisted.internet import reactor, threads
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from nebtwist import paths
from nebtwist.testing import start_nebula
from tests.sshd import start_sshd

# States (reference 2.1, 3.1).
PENDING, ACTIVE, DONE, FAILED = 1, 3, 6, 7
RUNNING = 3
HOST_MONITORED, HOST_ERROR, HOST_DISABLED = 2, 3, 4
HOST_MONITORING, HOST_MONITORING_ERROR = 1, 5

SMALL_VM = "NAME = small\nCPU = 0.1\nMEMORY = 64\n"

#: A hook program appending its arguments after the first, as one line, to
#: the file named by the first.
RECORD = """#!/bin/sh
out="$1"; shift
echo "$*" >> "$out"
echo "recorded $#"
"""


#: An IM driver (OpenNebula 3.4's MAD protocol) for fault-tolerance tests, run from
#: its folder: a host answers as the dummy IM does, unless a marker file
#: ``<folder>/<mode>/<hostname>`` exists for it: ``hang``: MONITOR requests get
#: no reply, so the host stays being monitored (a slow or unreachable host under a
#: long timeout); ``fail``: the next MONITOR fails and the later ones hang (the
#: driver swaps the marker). Each MONITOR's hostname is appended to ``requests``;
#: ``hung/<hostname>`` is created when a request is left unanswered.
HANGING_IM = """#!/usr/bin/env python3
import os, sys
here = os.path.dirname(os.path.abspath(__file__))
def send(line):
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()
for raw in sys.stdin:
    words = raw.split()
    if not words:
        continue
    if words[0] == "INIT":
        send("INIT SUCCESS")
    elif words[0] == "FINALIZE":
        break
    elif words[0] == "MONITOR":
        hid, name = words[1], words[2]
        with open(os.path.join(here, "requests"), "a") as f:
            f.write(name + "\\n")
        fail = os.path.join(here, "fail", name)
        if os.path.exists(os.path.join(here, "hang", name)):
            open(os.path.join(here, "hung", name), "w").close()
            continue
        if os.path.exists(fail):
            open(os.path.join(here, "hang", name), "w").close()
            os.remove(fail)
            send(f"MONITOR FAILURE {hid} host {name} is down")
            continue
        send(f"MONITOR SUCCESS {hid} HYPERVISOR=dummy HOSTNAME={name} TOTALCPU=800 "
             "TOTALMEMORY=16777216 FREEMEMORY=16777216 FREECPU=800 USEDCPU=0 USEDMEMORY=0")
"""


async def wait_for(predicate, what, timeout=90.0, step=0.05):
    """Poll ``predicate`` (sync or async) until it is true; AssertionError after ``timeout`` s."""
    deadline = reactor.seconds() + timeout
    while True:
        value = predicate()
        if hasattr(value, "__await__"):
            value = await value
        if value:
            return value
        if reactor.seconds() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await deferLater(reactor, step, lambda: None)


def parse(text):
    return etree.fromstring(text.encode("utf-8"),
                            etree.XMLParser(resolve_entities=False, no_network=True))


class HookTestCase(TestCase):

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.record = os.path.join(self.dir, "record")
        with open(self.record, "w") as f:
            f.write(RECORD)
        os.chmod(self.record, 0o755)

    def out(self, name):
        return os.path.join(self.dir, name)

    def lines(self, name):
        try:
            with open(self.out(name)) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def recorder(self, kind, on, args, name=None, remote="no"):
        """A ``VM_HOOK=[...]`` / ``HOST_HOOK=[...]`` override recording into ``<on>``."""
        name = name or on.lower()
        return (f'{kind}_HOOK=[ name = "{name}", on = "{on}", command = "{self.record}", '
                f'arguments = "{self.out(name)} {args}", remote = "{remote}" ]')

    async def start(self, *overrides):
        self.neb = await start_nebula(self, overrides)
        return self.neb

    async def ok(self, method, *args):
        reply = await self.neb.call(method, *args)
        self.assertTrue(reply[0], f"{method}{args}: {reply}")
        return reply[1]

    async def host(self, name, monitored=True):
        hid = await self.ok("one.host.allocate", name, "im_dummy", "vmm_dummy", "tm_dummy")
        if monitored:
            await self.wait_host(hid, HOST_MONITORED)
        return hid

    async def host_state(self, hid):
        return int(parse(await self.ok("one.host.info", hid)).findtext("STATE"))

    async def wait_host(self, hid, state, timeout=90.0):
        async def reached():
            return await self.host_state(hid) == state
        await wait_for(reached, f"host {hid} in state {state}", timeout)

    async def vm(self, vid):
        return parse(await self.ok("one.vm.info", vid))

    async def wait_vm(self, vid, state, lcm=None, timeout=90.0):
        async def reached():
            vm = await self.vm(vid)
            if int(vm.findtext("STATE")) == state and (
                    lcm is None or int(vm.findtext("LCM_STATE")) == lcm):
                return [vm]
            return None
        return (await wait_for(reached, f"VM {vid} in state {state}/{lcm}", timeout))[0]

    def down(self, hostname, down=True):
        """Make the dummy IM report ``hostname`` down (or up again)."""
        folder = os.path.join(self.neb.one_location, "var", "dummy", "down")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, hostname)
        if down:
            open(path, "w").close()
        else:
            os.remove(path)

    def oned_log(self):
        with open(os.path.join(self.neb.var_dir, "oned.log")) as f:
            return f.read()

    def vm_log(self, vid):
        try:
            with open(os.path.join(self.neb.var_dir, str(vid), "vm.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    async def logged(self, text, vid=None, timeout=90.0):
        """Wait until ``text`` is in oned.log (or VM ``vid``'s vm.log)."""
        read = self.oned_log if vid is None else (lambda: self.vm_log(vid))
        await wait_for(lambda: text in read(), f"{text!r} in the log", timeout)

    def hanging_im(self):
        """The ``IM_MAD`` override of :data:`HANGING_IM` (named im_dummy, so
        :meth:`host` uses it), written to a folder of its own."""
        folder = self.out("im")
        for sub in ("fail", "hang", "hung"):
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
        path = os.path.join(folder, "im_hang")
        with open(path, "w") as f:
            f.write(HANGING_IM)
        os.chmod(path, 0o755)
        self.im_folder = folder
        return f'IM_MAD=[ name = "im_dummy", executable = "{path}" ]'

    def hook_after_hang(self, hostname):
        """A HOST_HOOK program running the shipped ``ft/host_error`` with its
        arguments once ``hostname`` is being monitored again after its failure
        (its request left unanswered: ``hung/<hostname>``; at most 60 s), so the
        VMs are resubmitted while the failed host is being monitored."""
        path = self.out("host_error_after_hang")
        hung = os.path.join(self.im_folder, "hung", hostname)
        with open(path, "w") as f:
            f.write(f"""#!/bin/sh
n=0
while [ ! -e '{hung}' ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
exec '{paths.shipped("hooks", "ft", "host_error")}' "$@"
""")
        os.chmod(path, 0o755)
        return path

    def mark(self, mode, hostname, on=True):
        path = os.path.join(self.im_folder, mode, hostname)
        if on:
            open(path, "w").close()
        elif os.path.exists(path):
            os.remove(path)

    def monitor_requests(self, hostname):
        try:
            with open(os.path.join(self.im_folder, "requests")) as f:
                return f.read().split().count(hostname)
        except FileNotFoundError:
            return 0

    def assert_template(self, encoded, vid, state):
        """``encoded`` is base64 of the VM's XML, taken in ``state``."""
        vm = parse(base64.b64decode(encoded).decode("utf-8"))
        self.assertEqual((vm.tag, vm.findtext("ID"), vm.findtext("NAME")),
                         ("VM", str(vid), "small"))
        self.assertEqual(int(vm.findtext("STATE")), state)
        return vm


class VMHookTests(HookTestCase):

    async def test_create_running_done(self):
        await self.start(self.recorder("VM", "CREATE", "$VMID $TEMPLATE"),
                         self.recorder("VM", "RUNNING", "$VMID $TEMPLATE"),
                         self.recorder("VM", "DONE", "$VMID $TEMPLATE"),
                         self.recorder("VM", "SHUTDOWN", "$VMID"))
        await self.host("node1")
        vid = await self.ok("one.vm.allocate", SMALL_VM)
        await wait_for(lambda: self.lines("create"), "the CREATE hook")
        await self.wait_vm(vid, ACTIVE, RUNNING)
        await wait_for(lambda: self.lines("running"), "the RUNNING hook")
        await self.ok("one.vm.action", "shutdown", vid)
        await self.wait_vm(vid, DONE)
        await wait_for(lambda: self.lines("done"), "the DONE hook")

        [create] = self.lines("create")
        arg_vid, encoded = create.split()
        self.assertEqual(arg_vid, str(vid))
        self.assert_template(encoded, vid, PENDING)
        [running] = self.lines("running")
        arg_vid, encoded = running.split()
        self.assertEqual(arg_vid, str(vid))
        vm = self.assert_template(encoded, vid, ACTIVE)
        self.assertEqual(vm.findtext("LCM_STATE"), str(RUNNING))
        self.assertEqual(vm.findtext("HISTORY_RECORDS/HISTORY/HOSTNAME"), "node1")
        [done] = self.lines("done")
        self.assert_template(done.split()[1], vid, DONE)
        self.assertEqual(self.lines("shutdown"), [str(vid)])
        await self.logged(f"[HKM][I]: VM {vid}: Success executing Hook: running: recorded 2")
        await self.logged("[HKM][I]: Success executing Hook: done: recorded 2", vid)

    async def test_failed(self):
        await self.start(self.recorder("VM", "FAILED", "$VMID"),
                         self.recorder("VM", "RUNNING", "$VMID"))
        await self.host("node1")
        vid = await self.ok("one.vm.allocate", SMALL_VM + 'DUMMY = [ FAIL = "deploy" ]\n')
        await self.wait_vm(vid, FAILED)
        await wait_for(lambda: self.lines("failed"), "the FAILED hook")
        self.assertEqual(self.lines("failed"), [str(vid)])
        self.assertEqual(self.lines("running"), [])

    async def test_prolog_failing_at_once_fires_failed_once(self):
        """A prolog that fails before reaching the TM driver (a CONTEXT FILES entry
        missing on the front-end) fires PROLOG once and FAILED once, each with the
        VM's XML in the state that hook names (issue 9: FAILED ran twice)."""
        await self.start(self.recorder("VM", "FAILED", "$VMID $TEMPLATE"),
                         self.recorder("VM", "PROLOG", "$VMID $TEMPLATE"),
                         self.recorder("VM", "DONE", "$VMID"))
        await self.host("node1")
        missing = self.out("no-such-file.sh")
        vid = await self.ok("one.vm.allocate", SMALL_VM + f'CONTEXT = [ FILES = "{missing}" ]\n')
        await self.wait_vm(vid, FAILED)
        await wait_for(lambda: self.lines("failed"), "the FAILED hook")
        # A later event proves the hooks of the failure have all been run: the
        # VM is deleted and its DONE hook waited for.
        await self.ok("one.vm.action", "finalize", vid)
        await wait_for(lambda: self.lines("done"), "the DONE hook")
        await self.neb.service.hm.idle()
        failed = self.lines("failed")
        self.assertEqual([line.split()[0] for line in failed], [str(vid)])
        self.assert_template(failed[0].split()[1], vid, FAILED)
        prolog = self.lines("prolog")
        self.assertEqual([line.split()[0] for line in prolog], [str(vid)])
        vm = self.assert_template(prolog[0].split()[1], vid, ACTIVE)
        self.assertEqual(vm.findtext("LCM_STATE"), "1")  # PROLOG
        self.assertIn("no-such-file.sh", self.vm_log(vid))

    async def test_failing_and_hanging_hooks_change_nothing(self):
        """A hook exiting non-zero and one hanging past -t are logged; nothing else moves."""
        await self.start(
            'HM_MAD=[ executable = "exec", arguments = "-t 1" ]',
            'VM_HOOK=[ name = "broken", on = "RUNNING", command = "/bin/sh", '
            "arguments = \"-c 'echo it broke >&2; exit 3'\" ]",
            'VM_HOOK=[ name = "hang", on = "RUNNING", command = "/bin/sleep", '
            'arguments = "30" ]',
            self.recorder("VM", "RUNNING", "$VMID"))
        await self.host("node1")
        vid = await self.ok("one.vm.allocate", SMALL_VM)
        await self.wait_vm(vid, ACTIVE, RUNNING)
        await self.logged(f"[HKM][E]: VM {vid}: Error executing Hook: hang: timed out after "
                          f"1 s", timeout=90)
        await self.logged(f"[HKM][E]: VM {vid}: Error executing Hook: broken: it broke "
                          f"(exit code 3)")
        self.assertEqual(self.lines("running"), [str(vid)])  # the good hook still ran
        vm = await self.vm(vid)
        self.assertEqual((vm.findtext("STATE"), vm.findtext("LCM_STATE")), ("3", "3"))
        self.assertIsNone(vm.find("TEMPLATE/ERROR"))
        self.assertIn("[HKM][E]: Error executing Hook: hang: timed out after 1 s",
                      self.vm_log(vid))
        # The VM goes on as if nothing happened.
        await self.ok("one.vm.action", "shutdown", vid)
        await self.wait_vm(vid, DONE)

    async def test_remote_hook_over_ssh(self):
        """remote = "yes": run over ssh on the VM's host (here 127.0.0.1, a real sshd)."""
        server = start_sshd(self)
        options = " ".join(f"-o {o}" for o in server.ssh_options()[1::2])
        await self.start(f'HM_MAD=[ executable = "exec", arguments = "-t 30 {options}" ]',
                         self.recorder("VM", "RUNNING", "$VMID", remote="yes"),
                         self.recorder("VM", "CREATE", "$VMID", remote="yes"))
        await self.host("127.0.0.1")
        vid = await self.ok("one.vm.allocate", SMALL_VM)
        await self.wait_vm(vid, ACTIVE, RUNNING)
        await wait_for(lambda: self.lines("running"), "the remote RUNNING hook", timeout=90)
        self.assertEqual(self.lines("running"), [str(vid)])
        self.assertEqual(self.lines("create"), [])  # no host yet: skipped, as in 3.4
        with open(server.log_path) as f:
            self.assertIn("Accepted publickey", f.read())
        await self.logged(f"VM {vid}: Success executing Hook: running: recorded 1")


class HostHookTests(HookTestCase):

    async def test_create_error_disable(self):
        await self.start(self.recorder("HOST", "CREATE", "$HID $TEMPLATE"),
                         self.recorder("HOST", "ERROR", "$HID"),
                         self.recorder("HOST", "DISABLE", "$HID"))
        hid = await self.host("node1")
        await wait_for(lambda: self.lines("create"), "the CREATE hook")
        [create] = self.lines("create")
        self.assertEqual(create.split()[0], str(hid))
        host = parse(base64.b64decode(create.split()[1]).decode("utf-8"))
        self.assertEqual((host.tag, host.findtext("NAME")), ("HOST", "node1"))
        self.assertEqual(self.lines("error"), [])

        self.down("node1")
        await self.wait_host(hid, HOST_ERROR)
        await wait_for(lambda: self.lines("error"), "the ERROR hook")
        # HOST_MONITORING_INTERVAL is 1 s: let two more failed rounds pass (counted
        # in oned.log, not timed), then let any hook they fired finish.
        failed = f"Error monitoring host {hid}:"
        rounds = self.oned_log().count(failed)
        await wait_for(lambda: self.oned_log().count(failed) >= rounds + 2,
                       "two more failed monitoring rounds", timeout=90)
        await self.neb.service.hm.idle()
        self.assertEqual(self.lines("error"), [str(hid)])  # once per failure
        self.down("node1", False)
        await self.wait_host(hid, HOST_MONITORED)
        self.down("node1")
        await wait_for(lambda: len(self.lines("error")) == 2, "the second ERROR hook")
        self.down("node1", False)

        await self.ok("one.host.enable", hid, False)
        await wait_for(lambda: self.lines("disable"), "the DISABLE hook")
        self.assertEqual(self.lines("disable"), [str(hid)])

    async def test_stop_while_monitoring_changes_no_host(self):
        """Stopping the daemon while a host's monitoring is in flight (its IM
        request unanswered) neither puts the host in ERROR nor fires the ERROR
        hook; after a restart the host is MONITORED as before (issue 9: it was
        ERROR, so a routine restart could resubmit a healthy host's VMs)."""
        im = self.hanging_im()
        hook = self.recorder("HOST", "ERROR", "$HID")
        await self.start(im, hook)
        hid = await self.host("hostA")
        other = await self.host("hostB")
        self.mark("hang", "hostA")
        await wait_for(lambda: os.path.exists(os.path.join(self.im_folder, "hung", "hostA")),
                       "hostA's monitoring in flight", timeout=90)
        self.assertEqual(await self.host_state(hid), HOST_MONITORING)
        await self.neb.stop()
        self.assertEqual(self.lines("error"), [])
        log = self.oned_log()
        self.assertNotIn("Error monitoring host", log)
        self.assertIn("nebtwist stopped", log)
        self.mark("hang", "hostA", False)
        # Restart on the same files, with monitoring far off so the stored state shows.
        self.neb = await start_nebula(self, [im, hook, "HOST_MONITORING_INTERVAL=600"],
                                      one_location=self.neb.one_location)
        for h in (hid, other):
            host = parse(await self.ok("one.host.info", h))
            self.assertEqual(int(host.findtext("STATE")), HOST_MONITORED, f"host {h}")
            self.assertIsNone(host.find("TEMPLATE/ERROR"))
        await self.neb.service.hm.idle()
        self.assertEqual(self.lines("error"), [])


class WhyTests(HookTestCase):
    """What an operator reads: ``onehost show`` says why a host is in ERROR
    (4.x ``ERROR = [ MESSAGE, TIMESTAMP ]``, gone after a good monitoring);
    ``onevm show`` says why a VM waits (4.x ``SCHED_MESSAGE`` in its
    USER_TEMPLATE, gone once placed). The commands run in a thread against the
    daemon, as a user runs them."""

    async def cli(self, main, *argv):
        out, err = io.StringIO(), io.StringIO()
        env = dict(os.environ, ONE_XMLRPC=self.neb.url,
                   ONE_AUTH=os.path.join(self.neb.one_location, "one_auth"))
        status = await threads.deferToThread(main, list(argv), stdout=out, stderr=err,
                                             environ=env)
        self.assertEqual((status, err.getvalue()), (0, ""), argv)
        return out.getvalue()

    async def test_host_error_reason_and_vm_sched_message(self):
        from nebtwist.cli import onehost, onevm
        await self.start()
        hid = await self.host("node1")
        self.down("node1")
        await self.wait_host(hid, HOST_ERROR)
        show = await self.cli(onehost.main, "show", "node1")
        self.assertRegex(show, r"STATE\s+: (MONITORING_)?ERROR\n")
        self.assertIn("ERROR=[\n  MESSAGE=host node1 is down,\n  TIMESTAMP=", show)
        listing = await self.cli(onehost.main, "list")
        self.assertRegex(listing, r"node1 .* err\n")

        # The only host is in ERROR: the VM says why it waits.
        vid = await self.ok("one.vm.allocate", SMALL_VM)

        async def says():
            return (await self.vm(vid)).findtext("USER_TEMPLATE/SCHED_MESSAGE")

        message = await wait_for(says, "the VM's SCHED_MESSAGE")
        self.assertTrue(message.endswith(" : No host is enabled and monitored to deploy the VM"),
                        message)
        show = await self.cli(onevm.main, "show", str(vid))
        self.assertIn(f"USER TEMPLATE\nSCHED_MESSAGE={message}\n", show)

        self.down("node1", False)
        await self.wait_vm(vid, ACTIVE, RUNNING)
        vm = await self.vm(vid)
        self.assertIsNone(vm.find("USER_TEMPLATE"))
        self.assertNotIn("SCHED_MESSAGE", await self.cli(onevm.main, "show", str(vid)))
        host = parse(await self.ok("one.host.info", hid))
        self.assertIsNone(host.find("TEMPLATE/ERROR"))
        self.assertNotIn("MESSAGE=", await self.cli(onehost.main, "show", "node1"))


class FaultToleranceTests(HookTestCase):
    """The shipped ft/host_error hook, as the commented sample in oned.conf."""

    async def running_on_a(self, mode):
        await self.start('HOST_HOOK=[ name = "error", on = "ERROR", command = "ft/host_error", '
                         f'arguments = "$HID {mode} n", remote = "no" ]')
        a = await self.host("hostA")
        vids = [await self.ok("one.vm.allocate", SMALL_VM) for _ in range(2)]
        for vid in vids:
            await self.wait_vm(vid, ACTIVE, RUNNING)
        b = await self.host("hostB")
        return a, b, vids

    async def test_resubmit(self):
        """A host made to fail has its VMs resubmitted and running on another host."""
        a, b, vids = await self.running_on_a("-r")
        self.down("hostA")
        await self.wait_host(a, HOST_ERROR)
        for vid in vids:
            await wait_for(lambda vid=vid: self._last_host(vid), f"VM {vid} on hostB",
                           timeout=90)
            vm = await self.vm(vid)
            hosts = [h.findtext("HOSTNAME") for h in vm.findall("HISTORY_RECORDS/HISTORY")]
            self.assertEqual(hosts, ["hostA", "hostB"])
        await self.logged(f"[HKM][I]: Host {a}: Success executing Hook: error: "
                          f"VM {vids[0]}: resubmit done VM {vids[1]}: resubmit done")
        self.assertEqual(await self.host_state(b), HOST_MONITORED)

    async def _last_host(self, vid):
        vm = await self.vm(vid)
        records = vm.findall("HISTORY_RECORDS/HISTORY")
        return (int(vm.findtext("STATE")) == ACTIVE and int(vm.findtext("LCM_STATE")) == RUNNING
                and records[-1].findtext("HOSTNAME") == "hostB")

    async def test_delete(self):
        a, _b, vids = await self.running_on_a("-d")
        self.down("hostA")
        for vid in vids:
            await self.wait_vm(vid, DONE, timeout=90)
        await self.logged(f"Host {a}: Success executing Hook: error: VM {vids[0]}: "
                          f"finalize done VM {vids[1]}: finalize done")

    async def test_seed_vm_hook_on_failure_resubmits(self):
        """The slides' VM hook, as written: on = "FAILURE", command = "onevm resubmit"."""
        await self.start('VM_HOOK=[ name = "on_failure_resubmit", on = "FAILURE", '
                         'command = "onevm resubmit", arguments = "$VMID" ]')
        await self.host("node1")
        vid = await self.ok("one.vm.allocate", SMALL_VM + 'DUMMY = [ FAIL = "deploy" ]\n')

        async def resubmitted():
            vm = await self.vm(vid)
            return len(vm.findall("HISTORY_RECORDS/HISTORY")) >= 2

        # FAILED, then resubmitted by `onevm resubmit` (found on the hook's PATH,
        # reaching this daemon through ONE_XMLRPC/ONE_AUTH), then deployed again.
        await wait_for(resubmitted, "the VM to be resubmitted and deployed again", timeout=90)
        await self.logged(f"VM {vid}: Success executing Hook: on_failure_resubmit")

    async def test_resubmitted_vms_never_back_on_the_failed_host(self):
        """Two hosts; hostA fails once, then its next monitoring never answers.
        Its VMs are resubmitted (the ERROR hook waits for that request) while
        hostA is being monitored again
        (MONITORING_ERROR, not MONITORING as in 3.4, so not a candidate): each
        VM's history never shows hostA again and the VM ends RUNNING on hostB.
        (Before, with the striping policy the emptied hostA ranked first and
        took the VMs back.)"""
        im = self.hanging_im()
        await self.start(im, f'HOST_HOOK=[ name = "error", on = "ERROR", '
                             f'command = "{self.hook_after_hang("hostA")}", '
                             f'arguments = "$HID -r n", remote = "no" ]',
                         'DEFAULT_SCHED=[ policy = 1 ]')
        a = await self.host("hostA")
        vids = [await self.ok("one.vm.allocate", SMALL_VM) for _ in range(2)]
        for vid in vids:
            await self.wait_vm(vid, ACTIVE, RUNNING)
        b = await self.host("hostB")
        before = self.monitor_requests("hostA")
        self.mark("fail", "hostA")
        await self.logged(f"[HKM][I]: Host {a}: Success executing Hook: error:", timeout=90)
        for vid in vids:
            await wait_for(lambda vid=vid: self._last_host(vid), f"VM {vid} on hostB",
                           timeout=90)
        self.assertGreater(self.monitor_requests("hostA"), before + 1)
        host = parse(await self.ok("one.host.info", a))
        self.assertEqual(int(host.findtext("STATE")), HOST_MONITORING_ERROR)
        self.assertEqual(host.findtext("TEMPLATE/ERROR/MESSAGE"), "host hostA is down")
        # Several scheduler cycles (SCHED_INTERVAL 0.2 s) pass with hostA retried.
        cycles = self.neb.service.managers["scheduler"].cycles
        await wait_for(lambda: self.neb.service.managers["scheduler"].cycles >= cycles + 5,
                       "five more scheduler cycles")
        for vid in vids:
            vm = await self.vm(vid)
            hosts = [h.findtext("HOSTNAME") for h in vm.findall("HISTORY_RECORDS/HISTORY")]
            self.assertEqual(hosts, ["hostA", "hostB"], f"VM {vid}")
            self.assertEqual((int(vm.findtext("STATE")), int(vm.findtext("LCM_STATE"))),
                             (ACTIVE, RUNNING))
        self.assertEqual(await self.host_state(b), HOST_MONITORED)
