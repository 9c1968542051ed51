"""Recovery after a crash (issue 9 section 1): start-up reconciliation (every
row of :data:`nebtwist.core.recovery.RECOVERY`), ``one.vm.recover`` (every
operation), delete from every state but DONE, and ``onevm recover``.

A crash is reproduced as it leaves the database: VMs are put in transient
states with no driver operation in flight (the drivers died with the daemon),
the daemon is stopped and started again on the same files. Everything runs on
a real in-process daemon with the shipped dummy drivers, whose answers each
VM's template steers (``DUMMY = [ POLL = d ]``: the domain is gone; ``FAIL =
poll``: the host does not answer).
"""

import io
import os

from twisted.internet import reactor, threads
from twisted.internet.task import deferLater
from twisted.trial import unittest

from nebtwist.cli import onevm
from nebtwist.core import recovery
from nebtwist.core.lcm import TRANSITIONS
from nebtwist.core.objects import (ACTIVE, BOOT, CANCEL, CLEANUP, DONE, EPILOG, EPILOG_STOP,
                                   FAILED, FAILURE, LCM_INIT, LCM_STATES, MIGRATE,
                                   PENDING, PROLOG, PROLOG_MIGRATE, PROLOG_RESUME, RUNNING,
                                   SAVE_MIGRATE, SAVE_STOP, SAVE_SUSPEND, SHUTDOWN, STOPPED,
                                   SUSPENDED, UNKNOWN, VM_STATES, History)
from nebtwist.testing import start_nebula

#: No scheduling (VMs stay where the test puts them) and no polling loop (the
#: states reached are the recovery's own), the dummy drivers.
OVERRIDES = ["SCHED_INTERVAL=3600", "VM_POLLING_INTERVAL=0"]

#: Poll answer -> the VM's DUMMY attribute making the dummy VMM give it.
DUMMY = {"a": "", "p": 'DUMMY = [ POLL = "p" ]', "d": 'DUMMY = [ POLL = "d" ]',
         "e": 'DUMMY = [ POLL = "e" ]', "x": 'DUMMY = [ FAIL = "poll" ]'}

S = {"RUNNING": (ACTIVE, RUNNING), "UNKNOWN": (ACTIVE, UNKNOWN), "FAILED": (FAILED, LCM_INIT),
     "DONE": (DONE, LCM_INIT), "SUSPENDED": (SUSPENDED, LCM_INIT),
     "STOPPED": (STOPPED, LCM_INIT), "PENDING": (PENDING, LCM_INIT)}

#: (LCM_STATE, answer) -> (settled state, host of the last record) with the
#: dummy drivers (which succeed at whatever they are asked again).
EXPECTED = {
    (PROLOG, "idempotent"): ("RUNNING", "h0"),
    (PROLOG_MIGRATE, "restartable"): ("RUNNING", "h1"),
    (PROLOG_RESUME, "restartable"): ("RUNNING", "h0"),
    (BOOT, "a"): ("RUNNING", "h0"), (BOOT, "p"): ("SUSPENDED", "h0"),
    (BOOT, "d"): ("RUNNING", "h0"), (BOOT, "e"): ("FAILED", "h0"),
    (BOOT, "x"): ("UNKNOWN", "h0"),
    (MIGRATE, "a"): ("RUNNING", "h1"), (MIGRATE, "p"): ("SUSPENDED", "h1"),
    (MIGRATE, "d"): ("UNKNOWN", "h0"), (MIGRATE, "e"): ("FAILED", "h0"),
    (MIGRATE, "x"): ("UNKNOWN", "h0"),
    (SAVE_STOP, "a"): ("STOPPED", "h0"), (SAVE_STOP, "p"): ("STOPPED", "h0"),
    (SAVE_STOP, "d"): ("STOPPED", "h0"), (SAVE_STOP, "e"): ("FAILED", "h0"),
    (SAVE_STOP, "x"): ("UNKNOWN", "h0"),
    (SAVE_SUSPEND, "a"): ("SUSPENDED", "h0"), (SAVE_SUSPEND, "p"): ("SUSPENDED", "h0"),
    (SAVE_SUSPEND, "d"): ("SUSPENDED", "h0"), (SAVE_SUSPEND, "e"): ("FAILED", "h0"),
    (SAVE_SUSPEND, "x"): ("UNKNOWN", "h0"),
    (SAVE_MIGRATE, "a"): ("RUNNING", "h1"), (SAVE_MIGRATE, "p"): ("RUNNING", "h1"),
    (SAVE_MIGRATE, "d"): ("RUNNING", "h1"), (SAVE_MIGRATE, "e"): ("FAILED", "h0"),
    (SAVE_MIGRATE, "x"): ("UNKNOWN", "h0"),
    (SHUTDOWN, "a"): ("DONE", "h0"), (SHUTDOWN, "p"): ("DONE", "h0"),
    (SHUTDOWN, "d"): ("DONE", "h0"), (SHUTDOWN, "e"): ("FAILED", "h0"),
    (SHUTDOWN, "x"): ("UNKNOWN", "h0"),
    (CANCEL, "a"): ("DONE", "h0"), (CANCEL, "p"): ("DONE", "h0"),
    (CANCEL, "d"): ("DONE", "h0"), (CANCEL, "e"): ("DONE", "h0"),
    (CANCEL, "x"): ("UNKNOWN", "h0"),
    (EPILOG, "idempotent"): ("DONE", "h0"), (EPILOG, "restartable"): ("DONE", "h0"),
    (EPILOG_STOP, "restartable"): ("STOPPED", "h0"),
    (CLEANUP, "-"): ("DONE", "h0"),
    (FAILURE, "-"): ("FAILED", "h0"),
}

#: What the VM's vm.log says for each action (the recovery's line).
LOG_WORDS = {"retry": "the pending operation is issued again"}


def _template(name, answer, lcm):
    lines = [f"NAME = {name}", "CPU = 0.5", "MEMORY = 64"]
    if answer in DUMMY and DUMMY[answer]:
        lines.append(DUMMY[answer])
    if lcm == EPILOG and answer == "restartable":
        lines.append('DISK = [ SOURCE = "/nonexistent/img", SAVE = "yes" ]')
    return "\n".join(lines) + "\n"


async def _wait(predicate, what, timeout=60.0):
    """Poll ``predicate`` every 50 ms until true (generous deadline)."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.05, lambda: None)


def _pair(vm):
    return (vm.state, vm.lcm_state)


def _name(pair):
    state, lcm = pair
    return f"ACTIVE/{LCM_STATES[lcm]}" if state == ACTIVE else VM_STATES[state]


class Daemon:
    """Helpers around a running in-process daemon."""

    def __init__(self, neb):
        self.neb = neb
        self.nebula = neb.service.nebula

    @classmethod
    async def start(cls, testcase, one_location=None, overrides=()):
        neb = await start_nebula(testcase, list(OVERRIDES) + list(overrides),
                                 one_location=one_location)
        return cls(neb)

    async def hosts(self, n=2):
        hosts = []
        for i in range(n):
            ok, hid, _ = await self.neb.call("one.host.allocate", f"h{i}", "im_dummy",
                                             "vmm_dummy", "tm_dummy")
            assert ok, hid
            host = self.nebula.hostpool.get(hid)
            host.share.max_cpu = host.share.free_cpu = 800
            host.share.max_mem = host.share.free_mem = 8 * 1024 * 1024
            hosts.append(host)
        return hosts

    async def vm(self, template):
        ok, vid, _ = await self.neb.call("one.vm.allocate", template)
        assert ok, vid
        return self.nebula.vmpool.get(vid)

    async def place(self, vm, state, lcm, hosts, etime=0):
        """Put ``vm`` in ``state``/``lcm`` as a crash would leave it: its history
        records, host capacity and deploy id as the state machine keeps them,
        stored, with no driver operation in flight."""
        vm.state, vm.lcm_state = state, lcm
        ops = []
        placed = state in (ACTIVE, FAILED, SUSPENDED, STOPPED)
        if placed:
            both = lcm in (MIGRATE, SAVE_MIGRATE, PROLOG_MIGRATE)
            for i in range(2 if both else 1):
                h = hosts[i]
                vm.history.append(History(
                    seq=i, hostname=h.name, hid=h.oid, vm_dir=self.nebula.remote_vm_dir(vm.oid),
                    vmm_mad="vmm_dummy", vnm_mad="dummy", tm_mad="tm_dummy", stime=1,
                    rstime=1 if lcm != PROLOG else 0,
                    etime=1 if (state in (FAILED, STOPPED) or lcm == CLEANUP
                                or (i == 0 and lcm == PROLOG_MIGRATE)) else 0))
                holds = (state in (ACTIVE, SUSPENDED) and lcm != CLEANUP
                         and not (lcm == PROLOG_MIGRATE and i == 0))
                if holds:
                    h.share.add(*vm.capacity())
                    h.touch()
                    ops += self.nebula.hostpool.write_ops(h)
            for h in vm.history[:-1]:
                ops += self.nebula.vmpool.history_ops(vm, h)
            vm.deploy_id = f"dummy-{vm.oid}" if lcm not in (PROLOG, PROLOG_RESUME) else ""
        vm.etime = etime
        await self.nebula.vmpool.update(vm, ops)

    def vm_log(self, vm):
        path = os.path.join(self.nebula.vm_dir(vm.oid), "vm.log")
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def usage(self):
        """``{host name: (cpu, mem, running VMs)}`` held by VMs."""
        return {h.name: (h.share.cpu_usage, h.share.mem_usage, h.share.running_vms)
                for h in self.nebula.hostpool}


class ReconciliationTests(unittest.TestCase):
    """Every row of the recovery table, after a restart."""

    def test_table_covers_every_transient_state(self):
        # every ACTIVE LCM state a driver drives has rows; poll states every answer
        driven = {t.lcm for t in TRANSITIONS if t.state == ACTIVE} - {RUNNING, UNKNOWN}
        self.assertEqual(driven | {FAILURE}, set(recovery.TRANSIENT))
        for row in recovery.RECOVERY:
            if row.probe.startswith("poll"):
                answers = {r.answer for r in recovery.RECOVERY if r.lcm == row.lcm}
                self.assertEqual(answers, set(recovery.POLL_ANSWERS), LCM_STATES[row.lcm])
            if row.action != recovery.RETRY:
                self.assertIn(row.action, {t.event for t in TRANSITIONS
                                           if t.state == ACTIVE and t.lcm == row.lcm})
        self.assertEqual(set(EXPECTED), set(recovery.TABLE))

    async def test_every_row_after_restart(self):
        d = await Daemon.start(self)
        hosts = await d.hosts()
        vms = {}
        for (lcm, answer) in recovery.TABLE:
            name = f"{LCM_STATES[lcm]}-{answer}".replace("_", "-")
            vm = await d.vm(_template(name, answer, lcm))
            await d.place(vm, ACTIVE, lcm, hosts, etime=1 if lcm == CLEANUP else 0)
            vms[(lcm, answer)] = vm.oid
        # a resubmitted VM's clean-up (ETIME 0) ends in PENDING
        resub = await d.vm(_template("CLEANUP-resubmit", "-", CLEANUP))
        await d.place(resub, ACTIVE, CLEANUP, hosts, etime=0)
        settled = await d.vm(_template("RUNNING", "a", RUNNING))
        await d.place(settled, ACTIVE, RUNNING, hosts)
        one_location = d.neb.one_location
        await d.neb.stop()

        d = await Daemon.start(self, one_location)
        summary = await d.neb.service.recovery.done
        pool = d.nebula.vmpool
        for key, (want, host) in EXPECTED.items():
            vm = pool.get(vms[key])
            where = f"{LCM_STATES[key[0]]} {key[1]}"
            await _wait(lambda vm=vm, want=want: _pair(vm) == S[want],
                        f"{where}: {want} (VM {vm.oid} is {_name(_pair(vm))})")
            self.assertEqual(vm.last_history.hostname, host, where)
            row = recovery.TABLE[key]
            await _wait(lambda vm=vm: "Recovery after restart" in d.vm_log(vm),
                        f"{where}: vm.log")
            line = next(ln for ln in d.vm_log(vm).splitlines()
                        if "Recovery after restart: " + LCM_STATES[key[0]] in ln)
            self.assertIn(LOG_WORDS.get(row.action, row.action), line, where)
            if row.why:
                self.assertIn(row.why, line, where)
            self.assertEqual(summary[f"{LCM_STATES[key[0]]} {key[1]} -> {row.action}"],
                             2 if key == (CLEANUP, "-") else 1, where)
        await _wait(lambda: _pair(pool.get(resub.oid)) == S["PENDING"], "resubmit clean-up")
        self.assertEqual(_pair(pool.get(settled.oid)), S["RUNNING"])
        self.assertNotIn(f"VM {settled.oid}", str(summary))
        self.assertEqual(recovery.state_summary(d.nebula), {})
        # host capacity matches the VMs still holding it
        holding = [vm for vm in pool if vm.state in (ACTIVE, SUSPENDED)
                   and vm.lcm_state not in (CLEANUP,)]
        for h in d.nebula.hostpool:
            mine = [vm for vm in holding if vm.last_history.hid == h.oid]
            self.assertEqual(h.share.running_vms, len(mine), h.name)
        with open(os.path.join(d.neb.var_dir, "oned.log"), encoding="utf-8") as f:
            oned = f.read()
        self.assertIn(f"Recovery: {len(vms) + 1} VMs in transient states", oned)
        self.assertIn("Recovery: done, ", oned)

    async def test_reruns_that_fail_fail_the_vm_and_boot_restores_after_a_move(self):
        d = await Daemon.start(self)
        hosts = await d.hosts()
        failing = {}
        for lcm, action, what in ((PROLOG, "prolog", "in prolog"),
                                  (PROLOG_MIGRATE, "prolog_migrate", "in prolog (migrate)"),
                                  (PROLOG_RESUME, "prolog_resume", "in prolog (resume)"),
                                  (EPILOG_STOP, "epilog_stop", "in epilog (stop)")):
            vm = await d.vm(f'NAME = f\nCPU = 0.1\nMEMORY = 8\nDUMMY = [ FAIL = "{action}" ]\n')
            await d.place(vm, ACTIVE, lcm, hosts)
            failing[vm.oid] = (lcm, what)
        fresh = await d.vm(_template("fresh", "d", BOOT))
        await d.place(fresh, ACTIVE, BOOT, hosts)
        moved = await d.vm(_template("moved", "d", BOOT))
        await d.place(moved, ACTIVE, BOOT, hosts)
        os.makedirs(d.nebula.vm_dir(moved.oid), exist_ok=True)
        with open(os.path.join(d.nebula.vm_dir(moved.oid), "transfer.0.prolog_migrate"), "w"):
            pass
        one_location = d.neb.one_location
        await d.neb.stop()

        d = await Daemon.start(self, one_location)
        await d.neb.service.recovery.done
        pool = d.nebula.vmpool
        for vid, (lcm, what) in failing.items():
            vm = pool.get(vid)
            await _wait(lambda vm=vm: _pair(vm) == S["FAILED"], f"{LCM_STATES[lcm]} FAILED")
            await _wait(lambda vm=vm, what=what: f"Error {what}: dummy failure" in d.vm_log(vm),
                        f"{LCM_STATES[lcm]}: the failure in vm.log")
            self.assertIn(f"Recovery after restart: {LCM_STATES[lcm]}", d.vm_log(vm))
        for vm, action, driver in ((fresh, "vmm_deploy", "DEPLOY"),
                                   (moved, "vmm_restore", "RESTORE")):
            vm = pool.get(vm.oid)
            await _wait(lambda vm=vm: _pair(vm) == S["RUNNING"], f"{action}: RUNNING")
            log = d.vm_log(vm)
            self.assertIn(f"Retrying BOOT ({action})", log)
            await _wait(lambda vm=vm, driver=driver: f"[VMM][I]: {driver} h0" in d.vm_log(vm),
                        f"{driver} in vm.log")

    async def test_running_vms_are_polled_once_at_start(self):
        """A domain that vanished while the daemon was down is found at start,
        not when the polling loop's turn comes (5 VMs per 15 s shipped)."""
        slow = ["VM_POLLING_INTERVAL=3600"]
        d = await Daemon.start(self, overrides=slow)
        hosts = await d.hosts(1)
        now = int(reactor.seconds())
        vms = {}
        for answer, want in (("a", "RUNNING"), ("d", "UNKNOWN"), ("e", "FAILED"),
                             ("p", "SUSPENDED")):
            vm = await d.vm(_template(f"run-{answer}", answer, RUNNING))
            await d.place(vm, ACTIVE, RUNNING, hosts)
            vm.last_poll = now  # not due for the loop for an hour
            await d.nebula.vmpool.update(vm)
            vms[vm.oid] = want
        one_location = d.neb.one_location
        await d.neb.stop()
        d = await Daemon.start(self, one_location, slow)
        self.assertEqual(await d.neb.service.recovery.polled, len(vms))
        for vid, want in vms.items():
            vm = d.nebula.vmpool.get(vid)
            await _wait(lambda vm=vm, want=want: _pair(vm) == S[want], f"VM {vid}: {want}")
        with open(os.path.join(d.neb.var_dir, "oned.log"), encoding="utf-8") as f:
            self.assertIn("Recovery: polled 4 RUNNING/UNKNOWN VMs once", f.read())

    async def test_a_host_that_never_answers_holds_only_its_own_share(self):
        """A POLL with no reply counts as no answer after the poll timeout (not
        DRIVER_TIMEOUT), and a silent host's VMs take at most PER_HOST slots:
        the other hosts' VMs are settled meanwhile."""
        from twisted.internet import defer

        d = await Daemon.start(self)
        hosts = await d.hosts()
        silent = [await d.vm(_template(f"s{i}", "a", BOOT)) for i in range(3)]
        for vm in silent:
            await d.place(vm, ACTIVE, BOOT, hosts)  # on h0
        other = await d.vm(_template("o", "a", BOOT))
        await d.place(other, ACTIVE, BOOT, hosts[1:])  # on h1
        lcm = d.neb.service.managers["lcm"]
        real = lcm.vmm._call
        hung = []

        def call(vm, method, previous=False, **kw):
            if method == "poll" and vm.last_history.hostname == "h0":
                hung.append(defer.Deferred())
                return hung[-1]
            return real(vm, method, previous, **kw)

        self.patch(lcm.vmm, "_call", call)
        rec = recovery.Reconciler(d.nebula, lcm, parallel=2, per_host=1, poll_timeout=2)
        rec.snapshot()
        done = rec.start()
        # h1's VM is settled while h0's first VM waits for its reply
        await _wait(lambda: _pair(other) == S["RUNNING"], "h1's VM RUNNING")
        self.assertEqual(len(hung), 1, "one probe at a time on h0")
        summary = await done
        self.assertEqual(summary["BOOT x -> recover_unknown"], 3)
        for vm in silent:
            self.assertEqual(_pair(vm), S["UNKNOWN"])
            await _wait(lambda vm=vm: "no reply within 2 s" in d.vm_log(vm), "the reason")

    async def test_no_transient_vm(self):
        d = await Daemon.start(self)
        summary = await d.neb.service.recovery.done
        self.assertEqual(summary, {})
        with open(os.path.join(d.neb.var_dir, "oned.log"), encoding="utf-8") as f:
            self.assertIn("Recovery: no VM in a transient state", f.read())

    async def test_only_the_vms_found_at_start_are_reconciled(self):
        """VMs that enter a transient state after the snapshot (the scheduler
        deploying, a user acting) have a driver operation in flight: recovery
        must not run it again; a VM changed before its turn is left alone."""
        d = await Daemon.start(self)
        hosts = await d.hosts(1)
        lcm = d.neb.service.managers["lcm"]
        rec = recovery.Reconciler(d.nebula, lcm)
        self.assertEqual(rec.snapshot(), 0)
        later = await d.vm(_template("later", "a", PROLOG))
        await d.place(later, ACTIVE, PROLOG, hosts)  # as if deployed after the snapshot
        self.assertEqual(await rec.start(), {})
        self.assertEqual(_pair(later), (ACTIVE, PROLOG))
        self.assertNotIn("Recovery", d.vm_log(later))

        rec = recovery.Reconciler(d.nebula, lcm)
        self.assertEqual(rec.snapshot(), 1)
        ok, value, _ = await d.neb.call("one.vm.action", "delete", later.oid)
        self.assertTrue(ok, value)
        summary = await rec.start()
        self.assertEqual(summary, {"skipped (changed meanwhile)": 1})
        self.assertNotIn("Recovery", d.vm_log(later))


class RecoverTests(unittest.TestCase):
    """``one.vm.recover``: every operation, both call forms, authorization."""

    async def _stuck(self, d, hosts, lcm, answer="a"):
        vm = await d.vm(_template(f"stuck-{LCM_STATES[lcm]}", answer, lcm))
        await d.place(vm, ACTIVE, lcm, hosts)
        return vm

    async def recover(self, d, vid, op, **kw):
        return await d.neb.call("one.vm.recover", vid, op, **kw)

    async def test_success_failure_retry(self):
        d = await Daemon.start(self)
        hosts = await d.hosts()
        cases = [
            # (state, op, settled state)
            (BOOT, 1, "RUNNING"), (BOOT, True, "RUNNING"), (BOOT, 0, "FAILED"),
            (BOOT, False, "FAILED"), (BOOT, 2, "RUNNING"),
            (PROLOG, 1, "RUNNING"), (PROLOG, 0, "FAILED"), (PROLOG, 2, "RUNNING"),
            (SHUTDOWN, 1, "DONE"), (SHUTDOWN, 0, "RUNNING"), (SHUTDOWN, 2, "DONE"),
            (CANCEL, 1, "DONE"), (CANCEL, 0, "RUNNING"), (CANCEL, 2, "DONE"),
            (SAVE_STOP, 1, "STOPPED"), (SAVE_STOP, 0, "RUNNING"), (SAVE_STOP, 2, "STOPPED"),
            (SAVE_SUSPEND, 1, "SUSPENDED"), (SAVE_SUSPEND, 0, "RUNNING"),
            (SAVE_SUSPEND, 2, "SUSPENDED"),
            (SAVE_MIGRATE, 1, "RUNNING"), (SAVE_MIGRATE, 0, "RUNNING"),
            (SAVE_MIGRATE, 2, "RUNNING"),
            (MIGRATE, 1, "RUNNING"), (MIGRATE, 0, "RUNNING"), (MIGRATE, 2, "RUNNING"),
            (PROLOG_MIGRATE, 1, "RUNNING"), (PROLOG_MIGRATE, 0, "FAILED"),
            (PROLOG_MIGRATE, 2, "RUNNING"),
            (PROLOG_RESUME, 1, "RUNNING"), (PROLOG_RESUME, 0, "FAILED"),
            (PROLOG_RESUME, 2, "RUNNING"),
            (EPILOG, 1, "DONE"), (EPILOG, 0, "FAILED"), (EPILOG, 2, "DONE"),
            (EPILOG_STOP, 1, "STOPPED"), (EPILOG_STOP, 0, "FAILED"), (EPILOG_STOP, 2, "STOPPED"),
            (CLEANUP, 1, "PENDING"), (CLEANUP, 0, "PENDING"), (CLEANUP, 2, "PENDING"),
            (UNKNOWN, 1, "RUNNING"), (UNKNOWN, 0, "RUNNING"),
            (FAILURE, 1, "FAILED"), (FAILURE, 0, "FAILED"),
        ]
        stuck = []
        for lcm, op, want in cases:
            vm = await self._stuck(d, hosts, lcm)
            ok, value, code = await self.recover(d, vm.oid, op)
            self.assertEqual((ok, value), (True, vm.oid), f"{LCM_STATES[lcm]} {op!r}")
            stuck.append((vm, lcm, op, want))
        for vm, lcm, op, want in stuck:
            await _wait(lambda vm=vm, want=want: _pair(vm) == S[want],
                        f"{LCM_STATES[lcm]} recover {op!r}: {want} (is {_name(_pair(vm))})")
            words = {0: "Recover (failure)", 1: "Recover (success)", 2: "Retrying"}[int(op)]
            await _wait(lambda vm=vm, words=words: words in d.vm_log(vm), f"vm.log {words}")

    async def test_refusals(self):
        d = await Daemon.start(self)
        hosts = await d.hosts()
        running = await self._stuck(d, hosts, RUNNING)
        for op in (0, 1, 2):
            ok, msg, code = await self.recover(d, running.oid, op)
            self.assertFalse(ok)
            self.assertIn("[VirtualMachineRecover]", msg)
            self.assertEqual(code, 0x800, msg)
        pending = await d.vm(_template("pending", "a", PENDING))
        ok, msg, code = await self.recover(d, pending.oid, 1)
        self.assertEqual((ok, code), (False, 0x800))
        self.assertIn("Recover action is not available for state PENDING", msg)
        ok, msg, code = await self.recover(d, running.oid, 7)
        self.assertEqual((ok, code), (False, 0x800))
        self.assertIn("Wrong recovery operation code", msg)
        ok, msg, code = await self.recover(d, 999, 1)
        self.assertEqual((ok, code), (False, 0x400))
        # a user who owns a VM manages it, but recover is an admin operation
        ok, uid, _ = await d.neb.call("one.user.allocate", "alice", "pw")
        self.assertTrue(ok, uid)
        ok, vid, _ = await d.neb.call("one.vm.allocate", "NAME = a\nCPU = 0.1\nMEMORY = 8\n",
                                      session="alice:pw")
        self.assertTrue(ok, vid)
        for op in (0, 1, 2, 3):
            ok, msg, code = await self.recover(d, vid, op, session="alice:pw")
            self.assertEqual((ok, code), (False, 0x200), msg)
            self.assertIn("Not authorized to perform ADMIN VM", msg)
        self.assertEqual(_pair(d.nebula.vmpool.get(vid)), S["PENDING"])
        ok, msg, code = await d.neb.call("one.vm.recover", vid, "success")
        self.assertEqual((ok, code), (False, 0x1000), msg)

    async def test_delete_from_every_state_but_done(self):
        d = await Daemon.start(self)
        hosts = await d.hosts()
        ok, net, _ = await d.neb.call("one.vn.allocate",
                                      "NAME = net\nTYPE = FIXED\nBRIDGE = br0\n"
                                      "LEASES = [ IP = 192.0.2.1 ]\n")
        self.assertTrue(ok, net)
        pairs = sorted({(t.state, t.lcm) for t in TRANSITIONS} | {(ACTIVE, FAILURE)}
                       - {(DONE, LCM_INIT)})
        for op in ("recover", "finalize"):
            for state, lcm in pairs:
                vm = await d.vm(_template("del", "a", lcm) + f"NIC = [ NETWORK_ID = {net} ]\n")
                await d.place(vm, state, lcm, hosts)
                where = f"{op} from {_name((state, lcm))}"
                if op == "recover":
                    ok, value, code = await self.recover(d, vm.oid, 3)
                    self.assertEqual((ok, value), (True, vm.oid), where)
                    self.assertEqual(_pair(vm), S["DONE"], f"{where}: at once")
                else:
                    ok, value, code = await d.neb.call("one.vm.action", "delete", vm.oid)
                    self.assertEqual((ok, value), (True, vm.oid), where)
                    await _wait(lambda vm=vm: _pair(vm) == S["DONE"], where)
                self.assertEqual(d.nebula.vnpool.get(net).used_leases, 0, where)
                self.assertEqual(d.usage(), {"h0": (0, 0, 0), "h1": (0, 0, 0)}, where)
                for h in vm.history:
                    self.assertTrue(h.etime, f"{where}: history {h.seq} closed")
        # DONE is the end
        ok, msg, code = await self.recover(d, vm.oid, 3)
        self.assertEqual((ok, code), (False, 0x800), msg)
        ok, msg, code = await d.neb.call("one.vm.action", "delete", vm.oid)
        self.assertEqual((ok, code), (False, 0x800), msg)

    async def test_cleanup_is_no_dead_end(self):
        """finalize and resubmit in CLEANUP (issue 9: both were refused)."""
        d = await Daemon.start(self)
        hosts = await d.hosts()
        vm = await d.vm(_template("c", "a", CLEANUP))
        await d.place(vm, ACTIVE, CLEANUP, hosts, etime=1)  # a finalize cut short
        ok, value, code = await d.neb.call("one.vm.action", "resubmit", vm.oid)
        self.assertEqual((ok, value), (True, vm.oid), value)
        self.assertEqual((_pair(vm), vm.etime), ((ACTIVE, CLEANUP), 0))
        ok, value, code = await self.recover(d, vm.oid, 2)  # the clean-up runs again
        self.assertTrue(ok, value)
        await _wait(lambda: _pair(vm) == S["PENDING"], "resubmitted")
        vm2 = await d.vm(_template("c2", "a", CLEANUP))
        await d.place(vm2, ACTIVE, CLEANUP, hosts)
        ok, value, code = await d.neb.call("one.vm.action", "finalize", vm2.oid)
        self.assertEqual((ok, value), (True, vm2.oid), value)
        self.assertEqual(_pair(vm2), S["DONE"])


class CLITests(unittest.TestCase):
    """``onevm recover <id> --success|--failure|--retry|--delete``."""

    async def cli(self, neb, *argv):
        out, err = io.StringIO(), io.StringIO()
        env = dict(os.environ, ONE_XMLRPC=neb.url, ONE_AUTH=self.auth)
        rc = await threads.deferToThread(onevm.main, list(argv), out, err, env)
        return rc, out.getvalue(), err.getvalue()

    async def test_recover_options(self):
        d = await Daemon.start(self)
        self.auth = os.path.join(d.neb.one_location, "one_auth")
        hosts = await d.hosts()
        for flag, lcm, want in (("--success", BOOT, "RUNNING"), ("--failure", BOOT, "FAILED"),
                                ("--retry", SHUTDOWN, "DONE"), ("--delete", EPILOG, "DONE")):
            vm = await d.vm(_template("cli", "a", lcm))
            await d.place(vm, ACTIVE, lcm, hosts)
            rc, out, err = await self.cli(d.neb, "recover", str(vm.oid), flag)
            self.assertEqual((rc, out, err), (0, "", ""), flag)
            await _wait(lambda vm=vm, want=want: _pair(vm) == S[want], f"{flag}: {want}")
        rc, out, err = await self.cli(d.neb, "recover", str(vm.oid))
        self.assertNotEqual(rc, 0)
        self.assertIn("one of the arguments --success --failure --retry --delete is required",
                      err)
        rc, out, err = await self.cli(d.neb, "recover", str(vm.oid), "--success", "--delete")
        self.assertNotEqual(rc, 0)
        rc, out, err = await self.cli(d.neb, "recover", str(vm.oid), "--success")
        self.assertEqual(rc, 1)
        self.assertIn("[VirtualMachineRecover]", err)

