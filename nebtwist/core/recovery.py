"""Start-up reconciliation: no VM stays in a driver-driven state after a crash.

A VM whose LCM_STATE waits for a driver (PROLOG, BOOT, SHUTDOWN, SAVE_*, ...)
when the daemon dies waits for a reply that never comes: the driver processes
died with it. OpenNebula leaves such VMs to the operator (``onevm recover``,
5.x ``src/lcm/LifeCycleActions.cc`` ``recover()``/``retry()``); Nova reconciles
at start (``ComputeManager.init_host`` / ``_init_instance``). nebtwist does
the latter: at start-up, every VM found in a transient state is driven to a
settled one, deciding from the driver's answer where one exists.

The decision is one table, :data:`RECOVERY`, in the style of
:data:`nebtwist.core.lcm.TRANSITIONS`: each row is
``(LCM_STATE, probe, answer) -> (action, then_poll)``.

Probes:

* ``poll``: POLL the VM on its host through its VMM driver; the answer is the
  POLL ``STATE`` letter (``a`` running, ``p`` paused, ``d`` gone, ``e``
  error) or ``x`` when no answer comes (the host or driver does not answer).
  ``poll_previous``: the same on the VM's previous host (a cold migration
  saves the VM where it ran).
* ``transfer``: how the pending transfer runs again (no host is asked).
  ``idempotent``: PROLOG's CLONE, LN, MKSWAP, MKIMAGE and CONTEXT only write
  into the VM's directory on its host, and are re-run into a clean one (a
  DELETE first); an EPILOG that is only a DELETE. ``restartable``: a MV
  (PROLOG_MIGRATE, PROLOG_RESUME, EPILOG_STOP) or an EPILOG saving a disk
  (MVDS) is not idempotent, but every shipped script (``drivers/tm/remotes/
  */mv``, ``mvds``; OpenNebula 3.4's ``tm_mv.sh`` likewise) keeps its source
  until the destination is complete (a copy into ``<dst>.part`` renamed, or
  a rename): a run cut half-way repeats from an intact source, and a run
  that had finished fails on its missing source without touching the
  destination, so the VM FAILS with that reason (a move is never taken as
  done without proof).
* ``cleanup``: CLEANUP's cancel and delete are idempotent: always re-run.
* ``none``: nothing to ask.

Before an event of a VMM reply is applied, the network step that reply would
have been followed by runs again (:meth:`nebtwist.core.lcm.LifeCycleManager.
network_redo`: ``post`` after a boot found running, ``clean`` after a domain
found gone, both ends of a migration); the VNM scripts are idempotent, and a
failure is only logged. A ``retry`` issues the whole networked operation
again (``pre``, the VMM action, ``post``; or the action and ``clean``).

Actions: an event of the life-cycle table (the pending operation's success or
failure path: its rows do the bookkeeping and start the next driver call), or
``retry``: the pending driver operation issued again
(:meth:`nebtwist.core.lcm.LifeCycleManager.retry`), its reply moving the VM on
as the first one would have. ``then_poll``: once RUNNING, the VM is polled at
once and the answer delivered as the polling loop would (``a`` stays
RUNNING, ``p`` SUSPENDED, ``d`` UNKNOWN, ``e`` FAILED, no answer UNKNOWN).

=============  ==============  ===============  ===================================
LCM_STATE      probe           answer           action
=============  ==============  ===============  ===================================
PROLOG         transfer        idempotent       retry (DELETE, then the prolog)
PROLOG_MIGRATE transfer        restartable      retry (the MV; fails: FAILED)
PROLOG_RESUME  transfer        restartable      retry (the MV; fails: FAILED)
BOOT           poll            a                deploy_success -> RUNNING
BOOT           poll            p                deploy_success, then poll
BOOT           poll            d                retry (deploy, or restore after a
                                                cold migration or stop)
BOOT           poll            e                deploy_failure -> FAILED
BOOT           poll            x                recover_unknown -> UNKNOWN
MIGRATE        poll            a                migrate_success -> RUNNING (new host)
MIGRATE        poll            p                migrate_success, then poll
MIGRATE        poll            d, e, x          migrate_failure (previous host),
                                                then poll
SAVE_STOP,     poll            a, p             retry (save)
SAVE_SUSPEND   poll            d                save_success -> EPILOG_STOP /
                                                SUSPENDED
               poll            e                save_failure, then poll
               poll            x                recover_unknown -> UNKNOWN
SAVE_MIGRATE   poll_previous   a, p             retry (save on the previous host)
SAVE_MIGRATE   poll_previous   d                save_success -> PROLOG_MIGRATE
SAVE_MIGRATE   poll_previous   e, x             save_failure, then poll
SHUTDOWN       poll            a, p             retry (shutdown)
SHUTDOWN       poll            d                shutdown_success -> EPILOG
SHUTDOWN       poll            e                shutdown_failure, then poll (FAILED)
SHUTDOWN       poll            x                recover_unknown -> UNKNOWN
CANCEL         poll            a, p, e          retry (cancel)
CANCEL         poll            d                cancel_success -> EPILOG
CANCEL         poll            x                recover_unknown -> UNKNOWN
EPILOG         transfer        idempotent       retry (the DELETE)
EPILOG         transfer        restartable      retry (MVDS, DELETE; fails: FAILED)
EPILOG_STOP    transfer        restartable      retry (the MV; fails: FAILED)
CLEANUP        cleanup         -                retry (cancel, delete; then DONE
                                                or PENDING as the VM's ETIME says)
FAILURE        none            -                recover_failure -> FAILED
=============  ==============  ===============  ===================================

A saved VM whose domain is gone (``d`` in SAVE_*) is taken as saved: its
checkpoint is checked by the restore that resumes it (a missing one FAILS
it then). A VM that FAILS here keeps its leases and images, as any FAILED VM
(``onevm resubmit`` or ``delete``). RUNNING and UNKNOWN are settled: they
are polled once each right after (unless VM_POLLING_INTERVAL is 0), so a
domain that vanished while the daemon was down is found at once (UNKNOWN)
rather than when the polling loop's turn comes; the other states are not
ACTIVE.

Every VM gets a ``vm.log`` line ``Recovery after restart: <STATE> <answer>:
<what is done>``; oned.log gets ``Recovery: <n> VMs in transient states ...``
when it starts and ``Recovery: done, <n> VMs in <s> s: <counts>`` at the
end (``Recovery: polled <n> RUNNING/UNKNOWN VMs once ...`` after the polls).
At most :data:`PARALLEL` VMs are probed at once, at most :data:`PER_HOST` on one
host (a host that does not answer holds only its own share), and a POLL
unanswered after :data:`POLL_TIMEOUT` s counts as no answer (DRIVER_TIMEOUT,
300 s shipped, would hold the VM that long); the start-up does not
wait for it (the API serves meanwhile; a VM changed by a request before its
turn is left alone). Hosts are not involved: reconciliation needs neither the
scheduler nor host monitoring.
"""

import time
from collections import Counter, namedtuple

from twisted.internet import defer

from nebtwist.core.lcm import state_name
from nebtwist.core.objects import (ACTIVE, BOOT, CANCEL, CLEANUP, EPILOG, EPILOG_STOP, FAILURE,
                                   LCM_STATES, MIGRATE, PROLOG, PROLOG_MIGRATE, PROLOG_RESUME,
                                   RUNNING, SAVE_MIGRATE, SAVE_STOP, SAVE_SUSPEND, SHUTDOWN,
                                   UNKNOWN)
from nebtwist.core.vmm import parse_poll
from nebtwist.log import OneLogger

log = OneLogger("LCM")

#: VMs probed at once.
PARALLEL = 64

#: VMs of one host probed at once.
PER_HOST = 16

#: Seconds a recovery POLL may take before it counts as no answer (``x``).
POLL_TIMEOUT = 30.0

#: The action that issues the pending driver operation again.
RETRY = "retry"

Row = namedtuple("Row", "lcm probe answer action then_poll why")

#: POLL answers: a running, p paused, d gone, e error, x no answer.
POLL_ANSWERS = ("a", "p", "d", "e", "x")

_ANSWER_TEXT = {"a": "the domain runs", "p": "the domain is paused", "d": "the domain is gone",
                "e": "the domain is in error", "x": "no answer from the host",
                "idempotent": "an idempotent transfer",
                "restartable": "a move that keeps its source until it is done",
                "-": ""}


def _poll_rows(lcm, probe, actions, why):
    """Rows for every POLL answer: ``actions`` maps answers to (action, then_poll)."""
    return [Row(lcm, probe, a, actions[a][0], actions[a][1], why.get(a, "")) for a in POLL_ANSWERS]


#: Why a move may run again.
_MOVE = "if it had finished, it fails on its missing source and the VM FAILS"

_SAVE = {"a": (RETRY, False), "p": (RETRY, False), "d": ("save_success", False),
         "e": ("save_failure", True), "x": ("recover_unknown", False)}

#: The recovery table (see the module docstring).
RECOVERY = (
    [Row(PROLOG, "transfer", "idempotent", RETRY, False, "into a clean directory"),
     Row(PROLOG_MIGRATE, "transfer", "restartable", RETRY, False, _MOVE),
     Row(PROLOG_RESUME, "transfer", "restartable", RETRY, False, _MOVE)]
    + _poll_rows(BOOT, "poll", {
        "a": ("deploy_success", False), "p": ("deploy_success", True), "d": (RETRY, False),
        "e": ("deploy_failure", False), "x": ("recover_unknown", False)},
        {})
    + _poll_rows(MIGRATE, "poll", {
        "a": ("migrate_success", False), "p": ("migrate_success", True),
        "d": ("migrate_failure", True), "e": ("migrate_failure", True),
        "x": ("migrate_failure", True)},
        {"d": "not on the new host: back to the previous one",
         "e": "not running on the new host: back to the previous one",
         "x": "not known on the new host: back to the previous one"})
    + _poll_rows(SAVE_STOP, "poll", _SAVE, {"d": "taken as saved"})
    + _poll_rows(SAVE_SUSPEND, "poll", _SAVE, {"d": "taken as saved"})
    + _poll_rows(SAVE_MIGRATE, "poll_previous", dict(_SAVE, x=("save_failure", True)),
                 {"d": "taken as saved"})
    + _poll_rows(SHUTDOWN, "poll", {
        "a": (RETRY, False), "p": (RETRY, False), "d": ("shutdown_success", False),
        "e": ("shutdown_failure", True), "x": ("recover_unknown", False)}, {})
    + _poll_rows(CANCEL, "poll", {
        "a": (RETRY, False), "p": (RETRY, False), "d": ("cancel_success", False),
        "e": (RETRY, False), "x": ("recover_unknown", False)}, {})
    + [Row(EPILOG, "transfer", "idempotent", RETRY, False, "a DELETE only"),
       Row(EPILOG, "transfer", "restartable", RETRY, False,
           "saving a disk (MVDS); " + _MOVE),
       Row(EPILOG_STOP, "transfer", "restartable", RETRY, False, _MOVE),
       Row(CLEANUP, "cleanup", "-", RETRY, False, "cancel and delete are idempotent"),
       Row(FAILURE, "none", "-", "recover_failure", False, "")]
)

TABLE = {(r.lcm, r.answer): r for r in RECOVERY}

#: LCM states reconciled at start-up.
TRANSIENT = frozenset(r.lcm for r in RECOVERY)

#: What a poll done after the action delivers (the polling loop's events).
_THEN_POLL = {"a": "poll_active", "p": "poll_paused", "d": "poll_disappeared",
              "e": "poll_error", "x": "recover_unknown"}


def transient_vms(nebula):
    """The VMs in a state :data:`RECOVERY` settles (ACTIVE, LCM_STATE in
    :data:`TRANSIENT`), by id."""
    return sorted((vm for vm in nebula.vmpool
                   if vm.state == ACTIVE and vm.lcm_state in TRANSIENT), key=lambda v: v.oid)


def transfer_answer(lcm_manager, vm):
    """``"idempotent"`` or ``"restartable"`` for a VM in a transfer state."""
    if vm.lcm_state == PROLOG:
        return "idempotent"
    if vm.lcm_state == EPILOG:
        lines = lcm_manager.tm.epilog_lines(vm)
        if all(line.split()[0] == "DELETE" for line in lines):
            return "idempotent"
    return "restartable"


class Reconciler:
    """Runs :data:`RECOVERY` over the VMs in transient states.

    :param nebula: the core (pools, logs, clock).
    :param lcm: the :class:`~nebtwist.core.lcm.LifeCycleManager` (its ``vmm``
        and ``tm`` reach the drivers).
    :param parallel: VMs probed at once.
    :param per_host: VMs of one host probed at once.
    :param poll_timeout: seconds before a POLL counts as unanswered.

    Use: :meth:`snapshot` before anything else may move VMs (the scheduler,
    the API), then :meth:`start`; :attr:`done` fires with the summary
    (:class:`collections.Counter` of ``"<STATE> <answer> -> <action>"``).

    Then, unless VM_POLLING_INTERVAL is 0, the VMs found RUNNING or UNKNOWN
    are polled once each (the polling loop's own path, :meth:`VirtualMachineManager.poll
    <nebtwist.core.vmm.VirtualMachineManager.poll>`), at most ``parallel`` at a
    time: the loop polls VM_PER_INTERVAL VMs per MANAGER_TIMER (5 per 15 s
    shipped), so a domain that vanished while the daemon was down would
    otherwise be found only when its turn came (Nova syncs every instance's
    power state in ``init_host`` likewise). :attr:`polled` fires with their
    number.
    """

    def __init__(self, nebula, lcm, parallel=PARALLEL, per_host=PER_HOST,
                 poll_timeout=POLL_TIMEOUT):
        self.nebula = nebula
        self.lcm = lcm
        self.parallel = parallel
        self.per_host = per_host
        self.poll_timeout = poll_timeout
        self.vms = None  # [(vm, epoch)] found transient by snapshot()
        self.settled = []  # [(vm, epoch)] found RUNNING or UNKNOWN by snapshot()
        self.done = defer.Deferred()
        self.polled = defer.Deferred()
        self.summary = Counter()
        self.running = False
        self._stopped = False

    @staticmethod
    def _epoch(vm):
        return (len(vm.history), vm.state, vm.lcm_state)

    def snapshot(self):
        """Note the VMs in transient states now; returns how many."""
        self.vms = [(vm, self._epoch(vm)) for vm in transient_vms(self.nebula)]
        self.settled = [(vm, self._epoch(vm)) for vm in self.nebula.vmpool
                        if vm.state == ACTIVE and vm.lcm_state in (RUNNING, UNKNOWN)]
        return len(self.vms)

    def start(self):
        """Reconcile the VMs of :meth:`snapshot` (taken now if not yet); returns
        :attr:`done`, which never errbacks."""
        if self.vms is None:  # a later snapshot would see VMs moved since, in flight
            self.snapshot()
        self.running = True
        d = defer.ensureDeferred(self._run())
        d.addErrback(lambda f: log.failure("Recovery failed", f))
        d.addBoth(self._finish)
        d.addCallback(lambda _: defer.ensureDeferred(self._poll_settled()))
        d.addErrback(lambda f: log.failure("Recovery: polling the running VMs failed", f))
        d.addBoth(lambda _: self.polled.called or self.polled.callback(self._n_polled))
        return self.done

    def _finish(self, _):
        self.running = False
        if not self.done.called:
            self.done.callback(self.summary)

    _n_polled = 0

    async def _poll_settled(self):
        """Poll the RUNNING and UNKNOWN VMs of the snapshot once (see the class)."""
        if not self.settled or self.nebula.config.get_int("VM_POLLING_INTERVAL") <= 0:
            return
        started = time.monotonic()
        vmm = self.lcm.vmm
        def poll(vm, epoch):
            if self._stopped or not self._still(vm, epoch):
                return None
            vm.last_poll = int(self.nebula.clock.seconds())  # the loop skips it meanwhile
            vm.touch()  # LAST_POLL is in the (cached) body
            self._n_polled += 1
            return vmm.poll(vm)

        await defer.DeferredList(self._bounded(self.settled, poll), consumeErrors=True)
        log.info("Recovery: polled {n} RUNNING/UNKNOWN VMs once in {t:.2f} s", n=self._n_polled,
                 t=time.monotonic() - started)

    def stop(self):
        """Start no further VM (the daemon stops); those in flight finish."""
        self._stopped = True

    async def _run(self):
        n = len(self.vms)
        if not n:
            log.info("Recovery: no VM in a transient state")
            return
        started = time.monotonic()
        states = Counter(LCM_STATES[vm.lcm_state] for vm, _ in self.vms)
        log.info("Recovery: {n} VMs in transient states after a restart ({s}); reconciling, "
                 "{p} at a time", n=n, p=self.parallel,
                 s=", ".join(f"{k} {v}" for k, v in sorted(states.items())))
        await defer.DeferredList(self._bounded(self.vms, lambda vm, e: defer.ensureDeferred(
            self._one(vm, e))), consumeErrors=True)
        log.info("Recovery: done, {n} VMs in {t:.2f} s: {c}", n=n, t=time.monotonic() - started,
                 c=", ".join(f"{k} {v}" for k, v in sorted(self.summary.items())) or "-")

    def _bounded(self, vms, work):
        """Deferreds of ``work(vm, epoch)`` for each of ``vms``, run at most
        :attr:`per_host` per host (the host slot taken first, so a VM waiting
        for its host holds no global slot) and :attr:`parallel` in all."""
        every = defer.DeferredSemaphore(self.parallel)
        hosts = {}
        out = []
        for vm, epoch in vms:
            h = vm.last_history
            host = hosts.setdefault(h.hid if h is not None else None,
                                    defer.DeferredSemaphore(self.per_host))
            out.append(host.run(lambda vm=vm, e=epoch: every.run(work, vm, e)))
        return out

    def _still(self, vm, epoch):
        now = self.nebula.vmpool.objects.get(vm.oid)
        return now is vm and self._epoch(vm) == epoch

    async def _one(self, vm, epoch):
        """Reconcile one VM; never raises (a failure is logged and counted)."""
        if self._stopped or not self._still(vm, epoch):
            self.summary["skipped (changed meanwhile)"] += 1
            return
        lcm_name = LCM_STATES[vm.lcm_state]
        try:
            answer, info = await self._probe(vm)
            if self._stopped or not self._still(vm, epoch):
                self.summary["skipped (changed meanwhile)"] += 1
                return
            row = TABLE[(vm.lcm_state, answer)]
            await self._act(vm, row, info)
        except Exception as e:  # noqa: BLE001 - one VM's failure must not stop the others
            if self._stopped:  # the daemon stops: drivers and database go away
                log.warn("Recovery of VM {vid} ({s}) cut by the stop: {e}", vid=vm.oid,
                         s=lcm_name, e=e)
                self.summary["cut by the stop"] += 1
                return
            log.failure("Recovery of VM {vid} ({s}) failed", vid=vm.oid, s=lcm_name)
            self.nebula.vm_log(vm, "LCM", "E", f"Recovery after restart failed: {e}")
            self.summary[f"{lcm_name} error"] += 1
            return
        self.summary[f"{lcm_name} {answer} -> {row.action}"] += 1

    @staticmethod
    def _still_in(vm, row):
        """Is ``vm`` still ACTIVE in ``row``'s LCM_STATE (after an await)?"""
        return vm.state == ACTIVE and vm.lcm_state == row.lcm

    async def _probe(self, vm):
        """``(answer, info)`` for ``vm``: see the module docstring."""
        probe = next(r.probe for r in RECOVERY if r.lcm == vm.lcm_state)
        if probe in ("poll", "poll_previous"):
            return await self._poll(vm, probe == "poll_previous")
        if probe == "transfer":
            return transfer_answer(self.lcm, vm), None
        return "-", None

    async def _poll(self, vm, previous=False):
        """POLL ``vm`` on its (previous) host: ``(letter, values)``; ``("x",
        message)`` when the driver fails or answers nonsense."""
        try:
            d = self.lcm.vmm._call(vm, "poll", previous)
            d.addTimeout(self.poll_timeout, self.nebula.clock)
            reply = await d
            values = parse_poll(reply)
        except defer.TimeoutError:
            return "x", f"no reply within {self.poll_timeout:g} s"
        except Exception as e:  # noqa: BLE001 - a DriverError, a bad reply
            return "x", getattr(e, "message", None) or str(e)
        letter = (values.get("STATE") or "a")[:1].lower()
        return (letter if letter in POLL_ANSWERS else "a"), values

    def _log(self, vm, row, info, level="I"):
        what = _ANSWER_TEXT.get(row.answer, row.answer)
        if row.answer == "x" and info:
            what += f" ({info})"
        action = ("the pending operation is issued again" if row.action == RETRY
                  else row.action)
        parts = [p for p in (what, row.why) if p]
        self.nebula.vm_log(vm, "LCM", level, f"Recovery after restart: "
                           f"{LCM_STATES[vm.lcm_state]}: {'; '.join(parts)}: {action}")

    async def _act(self, vm, row, info):
        lcm = self.lcm
        failing = row.action in ("prolog_failure", "epilog_failure", "deploy_failure",
                                 "recover_failure")
        self._log(vm, row, info, "E" if failing else "W" if row.action == "recover_unknown"
                  else "I")
        if row.action == RETRY:
            if vm.lcm_state == PROLOG:
                # into a clean directory: whatever the cut prolog left goes first
                try:
                    await lcm.tm.epilog_delete(vm)
                except Exception as e:  # noqa: BLE001 - the prolog will tell
                    self.nebula.vm_log(vm, "LCM", "W", f"Recovery: delete before the prolog: "
                                       f"{getattr(e, 'message', None) or e}")
                if vm.state != ACTIVE or vm.lcm_state != PROLOG:
                    return
            lcm.retry(vm)
            return
        kw = {"message": f"recovery after restart: {_ANSWER_TEXT.get(row.answer, '')}"}
        if row.action == "deploy_success":
            kw["info"] = vm.deploy_id or f"one-{vm.oid}"
        elif row.action.startswith("poll_") and isinstance(info, dict):
            kw["info"] = info
        await lcm.network_redo(vm, row.action)  # the VNM step the reply would follow
        if not self._still_in(vm, row):
            return
        await lcm.trigger(vm, row.action, **kw)
        if row.then_poll and vm.state == ACTIVE and vm.lcm_state == RUNNING:
            answer, values = await self._poll(vm)
            event = _THEN_POLL[answer]
            if vm.state == ACTIVE and vm.lcm_state == RUNNING and lcm.allowed(vm, event):
                if answer != "a":
                    self.nebula.vm_log(vm, "LCM", "W" if answer in "dx" else "E",
                                       f"Recovery after restart: polled on "
                                       f"{vm.last_history.hostname}: {_ANSWER_TEXT[answer]}")
                await lcm.trigger(vm, event, info=values if isinstance(values, dict) else None,
                                  message="recovery after restart: poll")


def state_summary(nebula):
    """``{"ACTIVE/BOOT": n, ...}`` of the VMs in transient states (for tests and benches)."""
    return Counter(state_name(vm) for vm in transient_vms(nebula))


__all__ = ["RECOVERY", "TABLE", "TRANSIENT", "Reconciler", "transient_vms", "state_summary",
           "PARALLEL", "PER_HOST", "POLL_TIMEOUT"]
