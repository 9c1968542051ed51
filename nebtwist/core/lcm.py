"""The VM state machine and the LifeCycleManager that runs it.

The machine is one table, :data:`TRANSITIONS`: each row is
``(STATE, LCM_STATE, event) -> (new STATE, new LCM_STATE, actions)``, after
OpenNebula 3.4 ``src/dm/DispatchManagerActions.cc``,
``src/dm/DispatchManagerStates.cc``, ``src/lcm/LifeCycleActions.cc`` and
``src/lcm/LifeCycleStates.cc`` (reference section 2.3). An event with no row
for the VM's current pair is refused (a user action: ActionError, code 0x800)
or ignored and logged (a late driver reply), which is how "driver replies in
states that ignore them" works.

Actions are names of methods ``LifeCycleManager._a_<name>``. State-changing
actions run first and may return database statements; the VM, its history,
its host and its leases are then committed in one transaction; actions named
``vmm_*``/``tm_*`` (driver calls) start only after that commit, and their
replies come back as further events.
"""

from collections import namedtuple

from twisted.internet import defer

from nebtwist.core.objects import (ACTIVE, BOOT, CANCEL, DONE, EPILOG, FAILED, HOLD, INIT,
                                   LCM_INIT, LCM_STATES, MIGRATE, PENDING, PROLOG,
                                   PROLOG_MIGRATE, REASON_ERROR, REASON_NONE, REASON_USER,
                                   RUNNING, SAVE_MIGRATE, SHUTDOWN, STOPPED, UNKNOWN, VM_STATES,
                                   History, ip_to_int)
from nebtwist.core.vnet import release_lease
from nebtwist.errors import ActionError, DriverError
from nebtwist.log import OneLogger

log = OneLogger("LCM")

Transition = namedtuple("Transition", "state lcm event new_state new_lcm actions")

#: Actions every way into DONE or FAILED shares: capacity back, leases back.
_RELEASE = ("del_capacity", "release_leases", "set_etime")

TRANSITIONS = [
    # DispatchManager: placement and pending-queue actions.
    Transition(PENDING, LCM_INIT, "deploy", ACTIVE, PROLOG,
               ("add_history", "add_capacity", "prolog_stime", "tm_prolog")),
    Transition(PENDING, LCM_INIT, "hold", HOLD, LCM_INIT, ()),
    Transition(HOLD, LCM_INIT, "release", PENDING, LCM_INIT, ()),
    # Prolog.
    Transition(ACTIVE, PROLOG, "prolog_success", ACTIVE, BOOT, ("prolog_etime", "vmm_deploy")),
    Transition(ACTIVE, PROLOG, "prolog_failure", FAILED, LCM_INIT,
               ("prolog_etime", "close_history_error") + _RELEASE),
    # Boot.
    Transition(ACTIVE, BOOT, "deploy_success", ACTIVE, RUNNING,
               ("set_deploy_id", "running_stime")),
    Transition(ACTIVE, BOOT, "deploy_failure", FAILED, LCM_INIT,
               ("close_history_error",) + _RELEASE),
    # Shutdown and cancel.
    Transition(ACTIVE, RUNNING, "shutdown", ACTIVE, SHUTDOWN, ("vmm_shutdown",)),
    Transition(ACTIVE, SHUTDOWN, "shutdown_success", ACTIVE, EPILOG,
               ("running_etime", "epilog_stime", "tm_epilog")),
    Transition(ACTIVE, SHUTDOWN, "shutdown_failure", ACTIVE, RUNNING, ()),
    Transition(ACTIVE, RUNNING, "cancel", ACTIVE, CANCEL, ("vmm_cancel",)),
    Transition(ACTIVE, CANCEL, "cancel_success", ACTIVE, EPILOG,
               ("running_etime", "epilog_stime", "tm_epilog")),
    Transition(ACTIVE, CANCEL, "cancel_failure", ACTIVE, RUNNING, ()),
    # Live migration: the new history record (and the new host's capacity)
    # is added at the request; success closes the previous one, failure goes
    # back to the previous host in a new record copied from it.
    Transition(ACTIVE, RUNNING, "livemigrate", ACTIVE, MIGRATE,
               ("add_history", "add_capacity", "vmm_migrate")),
    Transition(ACTIVE, MIGRATE, "migrate_success", ACTIVE, RUNNING,
               ("close_previous_history", "del_previous_capacity", "running_stime")),
    Transition(ACTIVE, MIGRATE, "migrate_failure", ACTIVE, RUNNING,
               ("close_history_error", "del_capacity", "back_to_previous_host")),
    # Cold migration: save on the old host, move the files, restore on the new one.
    Transition(ACTIVE, RUNNING, "migrate", ACTIVE, SAVE_MIGRATE,
               ("add_history", "add_capacity", "vmm_save_migrate")),
    Transition(ACTIVE, SAVE_MIGRATE, "save_success", ACTIVE, PROLOG_MIGRATE,
               ("close_previous_history", "del_previous_capacity", "prolog_stime",
                "tm_prolog_migrate")),
    Transition(ACTIVE, SAVE_MIGRATE, "save_failure", ACTIVE, RUNNING,
               ("close_history_error", "del_capacity", "back_to_previous_host")),
    Transition(ACTIVE, PROLOG_MIGRATE, "prolog_success", ACTIVE, BOOT,
               ("prolog_etime", "vmm_restore")),
    Transition(ACTIVE, PROLOG_MIGRATE, "prolog_failure", FAILED, LCM_INIT,
               ("prolog_etime", "close_history_error") + _RELEASE),
    # Epilog.
    Transition(ACTIVE, EPILOG, "epilog_success", DONE, LCM_INIT,
               ("epilog_etime", "close_history") + _RELEASE),
    Transition(ACTIVE, EPILOG, "epilog_failure", FAILED, LCM_INIT,
               ("epilog_etime", "close_history_error") + _RELEASE),
    # Polling (only acted on in RUNNING and UNKNOWN).
    Transition(ACTIVE, RUNNING, "poll_active", ACTIVE, RUNNING, ("monitor",)),
    Transition(ACTIVE, UNKNOWN, "poll_active", ACTIVE, RUNNING, ("monitor",)),
    Transition(ACTIVE, RUNNING, "poll_disappeared", ACTIVE, UNKNOWN, ("monitor",)),
    Transition(ACTIVE, UNKNOWN, "poll_disappeared", ACTIVE, UNKNOWN, ("monitor",)),
    Transition(ACTIVE, RUNNING, "poll_error", FAILED, LCM_INIT,
               ("monitor", "close_history_error") + _RELEASE),
    Transition(ACTIVE, UNKNOWN, "poll_error", FAILED, LCM_INIT,
               ("monitor", "close_history_error") + _RELEASE),
]
# finalize (``onevm delete``): straight to DONE from the queues and from FAILED
# (3.4 DispatchManager::finalize); from ACTIVE the VM is cleaned up on its host.
for _state in (INIT, PENDING, HOLD, STOPPED, FAILED):
    TRANSITIONS.append(Transition(_state, LCM_INIT, "finalize", DONE, LCM_INIT,
                                  ("release_leases", "set_etime")))
for _lcm in range(1, len(LCM_STATES)):
    TRANSITIONS.append(Transition(ACTIVE, _lcm, "finalize", DONE, LCM_INIT,
                                  ("close_history_user",) + _RELEASE + ("cleanup",)))

TABLE = {(t.state, t.lcm, t.event): t for t in TRANSITIONS}

#: Actions that call drivers: run after the commit.
_DRIVER_ACTIONS = frozenset(a for t in TRANSITIONS for a in t.actions
                            if a.startswith(("vmm_", "tm_")) or a == "cleanup")


def state_name(vm):
    """``"ACTIVE/RUNNING"``-style name of a VM's state pair."""
    if vm.state == ACTIVE:
        return f"ACTIVE/{LCM_STATES[vm.lcm_state]}"
    return VM_STATES[vm.state]


class LifeCycleManager:
    """Runs :data:`TRANSITIONS` on VMs.

    :param nebula: the :class:`nebtwist.core.nebula.Nebula` (pools, clock,
        configuration, paths).
    :param vmm: the :class:`~nebtwist.core.vmm.VirtualMachineManager`.
    :param tm: the :class:`~nebtwist.core.tm.TransferManager`.
    """

    def __init__(self, nebula, vmm, tm):
        self.nebula = nebula
        self.vmm = vmm
        self.tm = tm
        self.hooks = []  # callables (vm, old_pair, new_pair) after each commit

    def allowed(self, vm, event):
        """True when ``event`` has a row for ``vm``'s current state."""
        return (vm.state, vm.lcm_state, event) in TABLE

    async def trigger(self, vm, event, **kw):
        """Apply ``event`` to ``vm`` now and commit.

        :param kw: event data (``host`` for deploy, ``deploy_id``,
            ``message``, ``info``).
        :raises ActionError: no row for the VM's state (nothing changes).
        :return: after the change is committed (driver calls started).
        """
        row = TABLE.get((vm.state, vm.lcm_state, event))
        if row is None:
            raise ActionError(f"Wrong state to perform action {event!r}: "
                              f"VM {vm.oid} is {state_name(vm)}.")
        old = (vm.state, vm.lcm_state)
        vm.state, vm.lcm_state = row.new_state, row.new_lcm
        ops = []
        later = []
        for action in row.actions:
            if action in _DRIVER_ACTIONS:
                later.append(action)
            else:
                ops.extend(getattr(self, "_a_" + action)(vm, **kw) or ())
        if old != (vm.state, vm.lcm_state):
            self.nebula.vm_log(vm, "LCM", "I", f"New VM state is {state_name(vm)}")
        await self.nebula.vmpool.update(vm, ops)
        for action in later:
            getattr(self, "_a_" + action)(vm, **kw)
        for hook in self.hooks:
            hook(vm, old, (vm.state, vm.lcm_state))

    def on_driver(self, vid, event, **kw):
        """Deliver a driver's reply as ``event`` to VM ``vid``.

        A reply for a VM that is gone, or whose state has no row for it, is
        logged as ignored (3.4 logs "Ignored:" likewise).
        """
        vm = self.nebula.vmpool.objects.get(vid)
        if vm is None or not self.allowed(vm, event):
            where = state_name(vm) if vm is not None else "gone"
            log.debug("VM {vid}: ignored {event} (VM is {where})", vid=vid, event=event,
                      where=where)
            return defer.succeed(None)
        d = defer.ensureDeferred(self.trigger(vm, event, **kw))
        d.addErrback(lambda f: log.failure("VM {vid}: {event} failed", f, vid=vid, event=event))
        return d

    def _watch(self, vm, d, success, failure, what):
        """Turn a driver Deferred into ``success``/``failure`` events."""
        vid = vm.oid

        def ok(result):
            return self.on_driver(vid, success, info=result)

        def bad(f):
            f.trap(DriverError, Exception)
            message = getattr(f.value, "message", None) or str(f.value)
            self.nebula.vm_log(vm, "LCM", "E", f"Error {what}: {message}")
            return self.on_driver(vid, failure, message=message)

        d.addCallbacks(ok, bad)
        return d

    # -- state-changing actions ----------------------------------------------------

    def _now(self):
        return int(self.nebula.clock.seconds())

    def _a_add_history(self, vm, host, **_):
        seq = len(vm.history)
        vm.history.append(History(
            seq=seq, hostname=host.name, vm_dir=self.nebula.remote_vm_dir(vm.oid), hid=host.oid,
            stime=self._now(), vmm_mad=host.vm_mad, vnm_mad=host.vn_mad,
            tm_mad=self.tm.tm_name_for(host), reason=REASON_NONE))

    def _host_of(self, vm):
        h = vm.last_history
        return self.nebula.hostpool.objects.get(h.hid) if h is not None else None

    def _a_close_previous_history(self, vm, **_):
        prev = vm.previous_history
        if prev is None:
            return []
        now = self._now()
        prev.etime = now
        if prev.rstime and not prev.retime:
            prev.retime = now
        prev.reason = REASON_USER
        return self.nebula.vmpool.history_ops(vm, prev)

    def _a_del_previous_capacity(self, vm, **_):
        prev = vm.previous_history
        host = self.nebula.hostpool.objects.get(prev.hid) if prev is not None else None
        if host is None:
            return []
        host.share.delete(*vm.capacity())
        host.touch()
        return self.nebula.hostpool.write_ops(host)

    def _a_back_to_previous_host(self, vm, **_):
        """After a failed migration: a new record copied from the previous one."""
        failed = vm.last_history
        prev = vm.previous_history
        if prev is None:
            return []
        ops = self.nebula.vmpool.history_ops(vm, failed)
        copy = History(**{f: getattr(prev, f) for f in History.FIELDS})
        copy.seq = failed.seq + 1
        copy.stime = copy.rstime = self._now()
        copy.etime = copy.retime = copy.pstime = copy.petime = copy.estime = copy.eetime = 0
        copy.reason = REASON_NONE
        vm.history.append(copy)
        return ops

    def _a_add_capacity(self, vm, **_):
        host = self._host_of(vm)
        if host is None:
            return []
        host.share.add(*vm.capacity())
        host.touch()
        return self.nebula.hostpool.write_ops(host)

    def _a_del_capacity(self, vm, **_):
        host = self._host_of(vm)
        if host is None:
            return []
        host.share.delete(*vm.capacity())
        host.touch()
        return self.nebula.hostpool.write_ops(host)

    def _a_release_leases(self, vm, **_):
        ops = []
        pool = self.nebula.vnpool
        for nic in vm.template.get_all("NIC"):
            if not isinstance(nic, dict) or "NETWORK_ID" not in nic or "IP" not in nic:
                continue
            vnet = pool.objects.get(int(nic["NETWORK_ID"]))
            if vnet is None:
                continue
            lease = release_lease(vnet, ip_to_int(nic["IP"]), vm.oid)
            if lease is not None:
                vnet.touch()
                ops.extend(pool.lease_ops(vnet, [lease]))
                ops.extend(pool.write_ops(vnet))
        return ops

    def _a_set_etime(self, vm, **_):
        vm.etime = self._now()

    def _set_history(self, vm, **fields):
        h = vm.last_history
        if h is not None:
            for k, v in fields.items():
                setattr(h, k, v)

    def _a_prolog_stime(self, vm, **_):
        self._set_history(vm, pstime=self._now())

    def _a_prolog_etime(self, vm, **_):
        self._set_history(vm, petime=self._now())

    def _a_running_stime(self, vm, **_):
        self._set_history(vm, rstime=self._now())

    def _a_running_etime(self, vm, **_):
        self._set_history(vm, retime=self._now())

    def _a_epilog_stime(self, vm, **_):
        self._set_history(vm, estime=self._now())

    def _a_epilog_etime(self, vm, **_):
        self._set_history(vm, eetime=self._now())

    def _close(self, vm, reason):
        h = vm.last_history
        if h is None:
            return
        now = self._now()
        h.etime = now
        h.reason = reason
        for start, end in (("pstime", "petime"), ("rstime", "retime"), ("estime", "eetime")):
            if getattr(h, start) and not getattr(h, end):
                setattr(h, end, now)

    def _a_close_history(self, vm, **_):
        self._close(vm, REASON_NONE)

    def _a_close_history_error(self, vm, message=None, **_):
        self._close(vm, REASON_ERROR)

    def _a_close_history_user(self, vm, **_):
        self._close(vm, REASON_USER)

    def _a_set_deploy_id(self, vm, info=None, **_):
        vm.deploy_id = (info or "").strip() or vm.deploy_id

    def _a_monitor(self, vm, info=None, **_):
        values = info or {}
        conversions = (("USEDMEMORY", "memory"), ("USEDCPU", "cpu"), ("NETTX", "net_tx"),
                       ("NETRX", "net_rx"))
        for key, attr in conversions:
            if key in values:
                try:
                    setattr(vm, attr, int(float(values[key])))
                except ValueError:
                    pass
        for key, value in values.items():
            if key not in ("STATE",) and key not in dict(conversions):
                vm.template.set(key, value)
        vm.last_poll = self._now()

    # -- driver actions (after commit) --------------------------------------------

    def _a_tm_prolog(self, vm, **_):
        self._watch(vm, self.tm.prolog(vm), "prolog_success", "prolog_failure", "in prolog")

    def _a_tm_epilog(self, vm, **_):
        self._watch(vm, self.tm.epilog(vm), "epilog_success", "epilog_failure", "in epilog")

    def _a_vmm_deploy(self, vm, **_):
        self._watch(vm, self.vmm.deploy(vm), "deploy_success", "deploy_failure", "deploying VM")

    def _a_vmm_shutdown(self, vm, **_):
        self._watch(vm, self.vmm.shutdown(vm), "shutdown_success", "shutdown_failure",
                    "shutting down VM")

    def _a_vmm_cancel(self, vm, **_):
        self._watch(vm, self.vmm.cancel(vm), "cancel_success", "cancel_failure",
                    "cancelling VM")

    def _a_vmm_migrate(self, vm, **_):
        self._watch(vm, self.vmm.migrate(vm), "migrate_success", "migrate_failure",
                    "live-migrating VM")

    def _a_vmm_save_migrate(self, vm, **_):
        self._watch(vm, self.vmm.save(vm, previous=True), "save_success", "save_failure",
                    "saving VM")

    def _a_tm_prolog_migrate(self, vm, **_):
        self._watch(vm, self.tm.prolog_migrate(vm), "prolog_success", "prolog_failure",
                    "in prolog (migrate)")

    def _a_vmm_restore(self, vm, **_):
        self._watch(vm, self.vmm.restore(vm), "deploy_success", "deploy_failure",
                    "restoring VM")

    def _a_cleanup(self, vm, **_):
        """Best-effort removal of a finalized VM from its host (3.4 CLEANUP)."""
        d = self.vmm.cancel(vm) if vm.deploy_id else defer.succeed(None)
        d.addErrback(lambda f: self.nebula.vm_log(
            vm, "LCM", "W", f"cleanup cancel: {getattr(f.value, 'message', f.value)}"))
        d.addCallback(lambda _: self.tm.epilog_delete(vm))
        d.addErrback(lambda f: self.nebula.vm_log(
            vm, "LCM", "W", f"cleanup delete: {getattr(f.value, 'message', f.value)}"))
