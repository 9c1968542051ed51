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

import os
from collections import namedtuple

from twisted.internet import defer

from nebtwist.core.disks import release_vm_images
from nebtwist.core.objects import (
    ACTIVE,
    BOOT,
    CANCEL,
    CLEANUP,
    DONE,
    EPILOG,
    EPILOG_STOP,
    FAILED,
    FAILURE,
    HOLD,
    INIT,
    LCM_INIT,
    LCM_STATES,
    MIGRATE,
    PENDING,
    PROLOG,
    PROLOG_MIGRATE,
    PROLOG_RESUME,
    REASON_ERROR,
    REASON_NONE,
    REASON_STOP_RESUME,
    REASON_USER,
    RUNNING,
    SAVE_MIGRATE,
    SAVE_STOP,
    SAVE_SUSPEND,
    SHUTDOWN,
    STOPPED,
    SUSPENDED,
    UNKNOWN,
    VM_STATES,
    History,
    ip_to_int,
)
from nebtwist.core.vnet import release_lease
from nebtwist.errors import ActionError
from nebtwist.log import OneLogger

log = OneLogger("LCM")

Transition = namedtuple("Transition", "state lcm event new_state new_lcm actions")

#: Leaving a host in failure: the history record closed as ERROR and the
#: host's capacity back. Leases and images stay with a FAILED VM until it is
#: finalized (3.4 ``DispatchManager::failed_action`` keeps them; ``done``
#: releases them), so a resubmitted VM keeps its addresses.
_FAIL = ("close_history_error", "del_capacity", "set_etime")
#: Into DONE: leases and images back, end time.
_DONE = ("release_leases", "release_images", "set_etime")

#: The ACTIVE LCM states (every one but LCM_INIT).
_ACTIVE_LCM = range(1, len(LCM_STATES))

TRANSITIONS = [
    # -- DispatchManager: the queues -------------------------------------------
    Transition(PENDING, LCM_INIT, "deploy", ACTIVE, PROLOG,
               ("add_history", "add_capacity", "prolog_stime", "tm_prolog")),
    # A VM stopped earlier comes back through PROLOG_RESUME (its files are on
    # the front-end) and RESTORE (3.4 picks this when the last REASON is
    # STOP_RESUME).
    Transition(PENDING, LCM_INIT, "deploy_resume", ACTIVE, PROLOG_RESUME,
               ("add_history", "add_capacity", "prolog_stime", "tm_prolog_resume")),
    Transition(PENDING, LCM_INIT, "hold", HOLD, LCM_INIT, ()),
    Transition(HOLD, LCM_INIT, "release", PENDING, LCM_INIT, ()),
    # -- Prolog -------------------------------------------------------------------
    Transition(ACTIVE, PROLOG, "prolog_success", ACTIVE, BOOT, ("prolog_etime", "vmm_deploy")),
    Transition(ACTIVE, PROLOG, "prolog_failure", FAILED, LCM_INIT, ("prolog_etime",) + _FAIL),
    Transition(ACTIVE, PROLOG_RESUME, "prolog_success", ACTIVE, BOOT,
               ("prolog_etime", "vmm_restore")),
    Transition(ACTIVE, PROLOG_RESUME, "prolog_failure", FAILED, LCM_INIT,
               ("prolog_etime",) + _FAIL),
    # -- Boot (DEPLOY, or RESTORE whose success 3.4 maps to DEPLOY_SUCCESS) -------------
    Transition(ACTIVE, BOOT, "deploy_success", ACTIVE, RUNNING,
               ("set_deploy_id", "running_stime")),
    Transition(ACTIVE, BOOT, "deploy_failure", FAILED, LCM_INIT, _FAIL),
    # restart: boot again a VM stuck in BOOT or lost in UNKNOWN.
    Transition(ACTIVE, BOOT, "restart", ACTIVE, BOOT, ("vmm_deploy",)),
    Transition(ACTIVE, UNKNOWN, "restart", ACTIVE, BOOT, ("vmm_deploy",)),
    # reboot: the guest reboots, the state does not change.
    Transition(ACTIVE, RUNNING, "reboot", ACTIVE, RUNNING, ("vmm_reboot",)),
    # -- Shutdown and cancel ------------------------------------------------------------
    Transition(ACTIVE, RUNNING, "shutdown", ACTIVE, SHUTDOWN, ("vmm_shutdown",)),
    Transition(ACTIVE, SHUTDOWN, "shutdown_success", ACTIVE, EPILOG,
               ("running_etime", "epilog_stime", "tm_epilog")),
    Transition(ACTIVE, SHUTDOWN, "shutdown_failure", ACTIVE, RUNNING, ()),
    Transition(ACTIVE, RUNNING, "cancel", ACTIVE, CANCEL, ("vmm_cancel",)),
    Transition(ACTIVE, CANCEL, "cancel_success", ACTIVE, EPILOG,
               ("running_etime", "epilog_stime", "tm_epilog")),
    Transition(ACTIVE, CANCEL, "cancel_failure", ACTIVE, RUNNING, ()),
    # -- Stop: checkpoint, files back to the front-end, host freed ----------------------
    Transition(ACTIVE, RUNNING, "stop", ACTIVE, SAVE_STOP, ("vmm_save",)),
    Transition(ACTIVE, SAVE_STOP, "save_success", ACTIVE, EPILOG_STOP,
               ("running_etime", "epilog_stime", "tm_epilog_stop")),
    Transition(ACTIVE, SAVE_STOP, "save_failure", ACTIVE, RUNNING, ()),
    Transition(ACTIVE, EPILOG_STOP, "epilog_success", STOPPED, LCM_INIT,
               ("epilog_etime", "close_history_stop", "del_capacity")),
    Transition(ACTIVE, EPILOG_STOP, "epilog_failure", FAILED, LCM_INIT,
               ("epilog_etime",) + _FAIL),
    Transition(STOPPED, LCM_INIT, "resume", PENDING, LCM_INIT, ()),
    # -- Suspend: checkpoint, files and capacity stay on the host ----------------------
    Transition(ACTIVE, RUNNING, "suspend", ACTIVE, SAVE_SUSPEND, ("vmm_save",)),
    Transition(ACTIVE, SAVE_SUSPEND, "save_success", SUSPENDED, LCM_INIT, ()),
    Transition(ACTIVE, SAVE_SUSPEND, "save_failure", ACTIVE, RUNNING, ()),
    Transition(SUSPENDED, LCM_INIT, "resume", ACTIVE, BOOT, ("vmm_restore",)),
    # -- Live migration: the new history record (and the new host's capacity) ----------
    # is added at the request; success closes the previous one, failure goes
    # back to the previous host in a new record copied from it.
    Transition(ACTIVE, RUNNING, "livemigrate", ACTIVE, MIGRATE,
               ("add_history", "add_capacity", "vmm_migrate")),
    Transition(ACTIVE, MIGRATE, "migrate_success", ACTIVE, RUNNING,
               ("close_previous_history", "del_previous_capacity", "running_stime")),
    Transition(ACTIVE, MIGRATE, "migrate_failure", ACTIVE, RUNNING,
               ("close_history_error", "del_capacity", "back_to_previous_host")),
    # -- Cold migration: save on the old host, move the files, restore on the new one ---
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
               ("prolog_etime",) + _FAIL),
    # -- Epilog ---------------------------------------------------------------------------
    Transition(ACTIVE, EPILOG, "epilog_success", DONE, LCM_INIT,
               ("epilog_etime", "close_history", "del_capacity") + _DONE),
    Transition(ACTIVE, EPILOG, "epilog_failure", FAILED, LCM_INIT, ("epilog_etime",) + _FAIL),
    # -- Polling (acted on only in RUNNING and UNKNOWN) ------------------------------------
    Transition(ACTIVE, RUNNING, "poll_active", ACTIVE, RUNNING, ("monitor",)),
    Transition(ACTIVE, UNKNOWN, "poll_active", ACTIVE, RUNNING, ("monitor",)),
    Transition(ACTIVE, RUNNING, "poll_disappeared", ACTIVE, UNKNOWN, ("monitor",)),
    Transition(ACTIVE, UNKNOWN, "poll_disappeared", ACTIVE, UNKNOWN, ("monitor",)),
    Transition(ACTIVE, RUNNING, "poll_paused", SUSPENDED, LCM_INIT, ("monitor",)),
    Transition(ACTIVE, UNKNOWN, "poll_paused", SUSPENDED, LCM_INIT, ("monitor",)),
    Transition(ACTIVE, RUNNING, "poll_error", FAILED, LCM_INIT, ("monitor",) + _FAIL),
    Transition(ACTIVE, UNKNOWN, "poll_error", FAILED, LCM_INIT, ("monitor",) + _FAIL),
    # -- Clean-up of an ACTIVE VM (finalize, resubmit): CLEANUP cancels it on its host
    # and deletes its files; driver replies still in flight are ignored. What the
    # clean-up ends in is kept in the VM's ETIME (set on finalize, cleared on
    # resubmit), so it survives a crash (nebtwist.core.recovery re-runs it).
    Transition(ACTIVE, CLEANUP, "cleanup_finalize", DONE, LCM_INIT, _DONE),
    Transition(ACTIVE, CLEANUP, "cleanup_resubmit", PENDING, LCM_INIT, ()),
    # No dead end (issue 9): finalize in CLEANUP ends the VM now, its cancel and
    # delete run again (best effort); resubmit in CLEANUP changes what the
    # running clean-up ends in.
    Transition(ACTIVE, CLEANUP, "finalize", DONE, LCM_INIT, _DONE + ("cleanup_quiet",)),
    Transition(ACTIVE, CLEANUP, "resubmit", ACTIVE, CLEANUP, ("clear_etime",)),
    # -- Recovery after a crash (nebtwist.core.recovery): a host that does not
    # answer leaves a VM whose domain may run in UNKNOWN (polled until it
    # answers; restart, resubmit and delete apply); OpenNebula 3.4's transient
    # FAILURE, never left here, ends in FAILED.
    Transition(ACTIVE, FAILURE, "recover_failure", FAILED, LCM_INIT, _FAIL),
    # -- resubmit: back to PENDING, keeping leases ----------------------------------------
    Transition(FAILED, LCM_INIT, "resubmit", PENDING, LCM_INIT, ("clean_failed",)),
    Transition(HOLD, LCM_INIT, "resubmit", PENDING, LCM_INIT, ()),
    Transition(STOPPED, LCM_INIT, "resubmit", PENDING, LCM_INIT, ("forget_checkpoint",)),
    Transition(PENDING, LCM_INIT, "resubmit", PENDING, LCM_INIT, ()),
    Transition(INIT, LCM_INIT, "resubmit", INIT, LCM_INIT, ()),
    # -- finalize (``onevm delete``), 3.4 DispatchManager::finalize ---------------------------
    Transition(SUSPENDED, LCM_INIT, "finalize", DONE, LCM_INIT,
               ("close_history_user", "del_capacity", "tm_epilog_delete_quiet") + _DONE),
    Transition(FAILED, LCM_INIT, "finalize", DONE, LCM_INIT,
               ("clean_failed",) + _DONE),
]
for _state in (INIT, PENDING, HOLD, STOPPED):
    TRANSITIONS.append(Transition(_state, LCM_INIT, "finalize", DONE, LCM_INIT, _DONE))
for _lcm in (BOOT, RUNNING, SHUTDOWN, CANCEL, SAVE_STOP, SAVE_SUSPEND):
    TRANSITIONS.append(Transition(ACTIVE, _lcm, "recover_unknown", ACTIVE, UNKNOWN, ()))
#: Placements a VM holds in each ACTIVE LCM state: MIGRATE and SAVE_MIGRATE hold
#: capacity on both hosts (the new record is added at the request), PROLOG_MIGRATE
#: has files on both; clean-ups and deletes then act on both.
_BOTH_HOSTS = (MIGRATE, SAVE_MIGRATE)
for _lcm in _ACTIVE_LCM:
    if _lcm == CLEANUP:
        continue
    _leave = ("close_history_user", "del_capacity")
    if _lcm in _BOTH_HOSTS:
        _leave += ("close_previous_history", "del_previous_capacity")
    _both = "_both" if _lcm in _BOTH_HOSTS + (PROLOG_MIGRATE,) else ""
    TRANSITIONS.append(Transition(ACTIVE, _lcm, "finalize", ACTIVE, CLEANUP,
                                  _leave + ("set_etime", "cleanup_finalize" + _both)))
    TRANSITIONS.append(Transition(ACTIVE, _lcm, "resubmit", ACTIVE, CLEANUP,
                                  _leave + ("clear_etime", "cleanup_resubmit" + _both)))
    # ``one.vm.recover`` delete (OpenNebula 5.x DispatchManager::delete): DONE
    # now, the domain cancelled and files deleted after, best effort.
    TRANSITIONS.append(Transition(ACTIVE, _lcm, "delete", DONE, LCM_INIT,
                                  _leave + _DONE + ("cleanup_quiet" + _both,)))
TRANSITIONS.append(Transition(ACTIVE, CLEANUP, "delete", DONE, LCM_INIT,
                              _DONE + ("cleanup_quiet",)))
for _state in (INIT, PENDING, HOLD, STOPPED):
    TRANSITIONS.append(Transition(_state, LCM_INIT, "delete", DONE, LCM_INIT, _DONE))
TRANSITIONS.append(Transition(SUSPENDED, LCM_INIT, "delete", DONE, LCM_INIT,
                              ("close_history_user", "del_capacity") + _DONE
                              + ("cleanup_quiet",)))
TRANSITIONS.append(Transition(FAILED, LCM_INIT, "delete", DONE, LCM_INIT,
                              ("clean_failed",) + _DONE))

TABLE = {(t.state, t.lcm, t.event): t for t in TRANSITIONS}

#: Actions that call drivers: run after the commit.
_DRIVER_ACTIONS = frozenset(a for t in TRANSITIONS for a in t.actions
                            if a.startswith(("vmm_", "tm_", "cleanup_")))


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
    :param vnm: the :class:`~nebtwist.core.vnm.NetworkManager`, or None (no
        network steps: the VNM drivers are not involved at all).

    Network steps around the hypervisor's actions (OpenNebula 3.4
    ``src/vmm_mad/exec/one_vmm_exec.rb``): deploy and restore run ``pre``,
    the VMM action, ``post`` on the VM's host (a ``pre`` failure fails the
    boot before any domain exists; a ``post`` failure cancels the new domain
    first; either way ``clean`` undoes what was made); shutdown, cancel and
    save run ``clean`` once the domain is gone (its failure only logged); a
    live migration runs ``pre`` on the new host, the migration, ``post`` on
    the new host and ``clean`` on the old one; a cold migration saves and
    cleans on the old host, and restores between ``pre`` and ``post`` on the
    new one; every clean-up cancelling a domain cleans after it.
    """

    def __init__(self, nebula, vmm, tm, vnm=None):
        self.nebula = nebula
        self.vmm = vmm
        self.tm = tm
        self.vnm = vnm
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
        new = (vm.state, vm.lcm_state)
        ops = []
        later = []
        for action in row.actions:
            if action in _DRIVER_ACTIONS:
                later.append(action)
            else:
                ops.extend(getattr(self, "_a_" + action)(vm, **kw) or ())
        if old != new:
            self.nebula.vm_log(vm, "LCM", "I", f"New VM state is {state_name(vm)}")
        await self.nebula.vmpool.update(vm, ops)
        # Hooks see the pair just committed, before any driver call starts: a
        # driver action failing at once (tm.prolog on a missing CONTEXT file)
        # triggers its failure event re-entrantly, which changes the VM again and
        # notifies its own pair after its own commit (issue 9: reading the pair
        # after the driver calls ran FAILED hooks twice and skipped PROLOG).
        for hook in self.hooks:
            hook(vm, old, new)
        for action in later:
            getattr(self, "_a_" + action)(vm, **kw)

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
        """Turn a driver Deferred into ``success``/``failure`` events.

        A reply is delivered only while the VM is still in the placement
        (history record) that made the request: a reply that arrives after a
        clean-up, or after the VM was resubmitted and placed again, is ignored.
        """
        vid = vm.oid
        epoch = (len(vm.history), vm.state, vm.lcm_state)

        def current():
            now = self.nebula.vmpool.objects.get(vid)
            return now is not None and (len(now.history), now.state, now.lcm_state) == epoch

        def ok(result):
            if not current():
                log.debug("VM {vid}: ignored a late {e}", vid=vid, e=success)
                return None
            return self.on_driver(vid, success, info=result)

        def bad(f):
            message = getattr(f.value, "message", None) or str(f.value)
            self.nebula.vm_log(vm, "LCM", "E", f"Error {what}: {message}")
            if not current():
                return None
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

    def _a_release_images(self, vm, **_):
        """The VM's images: RUNNING_VMS down, READY again when unused (3.4
        ``ImageManager::release_image``), in the VM's own transaction."""
        return release_vm_images(self.nebula, vm)

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

    def _a_close_history_stop(self, vm, **_):
        self._close(vm, REASON_STOP_RESUME)

    def _a_forget_checkpoint(self, vm, **_):
        """A resubmitted STOPPED VM boots afresh instead of resuming."""
        h = vm.last_history
        if h is not None and h.reason == REASON_STOP_RESUME:
            h.reason = REASON_USER

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
        self._watch(vm, self._networked_boot(vm, self.vmm.deploy), "deploy_success",
                    "deploy_failure", "deploying VM")

    def _networked_boot(self, vm, boot):
        """``pre``, ``boot(vm)`` (a Deferred firing with the deploy id), ``post``
        on the VM's host; Deferred firing with the deploy id. A failure at any
        step leaves no domain and runs ``clean`` (logged), then fails with the
        step's error: ``pre`` -> nothing booted; ``boot`` -> its error;
        ``post`` -> the new domain is cancelled first."""
        if self.vnm is None:
            return boot(vm)

        async def run():
            try:
                await self.vnm.pre(vm)
            except Exception:
                await self.vnm.clean_logged(vm)
                raise
            try:
                deploy_id = await boot(vm)
            except Exception:
                await self.vnm.clean_logged(vm)
                raise
            try:
                await self.vnm.post(vm)
            except Exception:
                vm.deploy_id = (deploy_id or "").strip() or vm.deploy_id
                try:
                    await self.vmm.cancel(vm)
                except Exception as e:  # noqa: BLE001 - logged, the post error is reported
                    self.nebula.vm_log(vm, "LCM", "W", "Cancelling the VM after a network "
                                       f"post failure: {getattr(e, 'message', None) or e}")
                await self.vnm.clean_logged(vm)
                raise
            return deploy_id

        return defer.ensureDeferred(run())

    def _then_clean(self, vm, d, previous=False):
        """``d`` (a VMM action that ends the domain), then ``clean`` on the
        (previous) host when it succeeded; the clean's failure is only logged.
        Deferred with ``d``'s result."""
        if self.vnm is None:
            return d

        def done(result):
            return self.vnm.clean_logged(vm, previous).addCallback(lambda _: result)

        return d.addCallback(done)

    def _a_vmm_shutdown(self, vm, **_):
        self._watch(vm, self._then_clean(vm, self.vmm.shutdown(vm)), "shutdown_success",
                    "shutdown_failure", "shutting down VM")

    def _a_vmm_cancel(self, vm, **_):
        self._watch(vm, self._then_clean(vm, self.vmm.cancel(vm)), "cancel_success",
                    "cancel_failure", "cancelling VM")

    def _a_vmm_migrate(self, vm, **_):
        self._watch(vm, self._networked_migrate(vm), "migrate_success", "migrate_failure",
                    "live-migrating VM")

    def _networked_migrate(self, vm):
        """``pre`` on the new host, the live migration, ``post`` on the new host,
        ``clean`` on the old one. A ``pre`` or migration failure cleans the new
        host (logged) and fails; a ``post`` failure is logged as an error (the
        guest already runs on the new host) and the migration completes."""
        if self.vnm is None:
            return self._live_migrate(vm)

        async def run():
            try:
                await self.vnm.pre(vm)
                result = await self._live_migrate(vm)
            except Exception:
                await self.vnm.clean_logged(vm)
                raise
            try:
                await self.vnm.post(vm)
            except Exception as e:  # noqa: BLE001 - the guest runs there already
                self.nebula.vm_log(vm, "VNM", "E", "Network post on the new host failed: "
                                   f"{getattr(e, 'message', None) or e}")
            await self.vnm.clean_logged(vm, previous=True)
            return result

        return defer.ensureDeferred(run())

    def _live_migrate(self, vm):
        """Live migration; between hosts whose TM drivers do not share storage,
        wrapped in the TM's premigrate (copy the VM directory to the new host)
        and postmigrate (remove the old copy), the copy deleted again if the
        migration fails. Deferred firing when the VM runs on the new host."""
        if self.tm.migration_shared(vm):
            return self.vmm.migrate(vm, shared=True)

        def undo(f):
            d = self.tm.premigrate_undo(vm)
            d.addErrback(lambda g: self.nebula.vm_log(
                vm, "TM", "W", f"premigrate undo: {_message(g)}"))
            return d.addCallback(lambda _: f)

        def cleanup(result):
            d = self.tm.postmigrate(vm)
            d.addErrback(lambda g: self.nebula.vm_log(
                vm, "TM", "W", f"postmigrate: {_message(g)}"))
            return d.addCallback(lambda _: result)

        d = self.tm.premigrate(vm)
        d.addCallback(lambda _: self.vmm.migrate(vm, shared=False).addCallbacks(cleanup, undo))
        return d

    def _a_vmm_save_migrate(self, vm, **_):
        self._watch(vm, self._then_clean(vm, self.vmm.save(vm, previous=True), previous=True),
                    "save_success", "save_failure", "saving VM")

    def _a_tm_prolog_migrate(self, vm, **_):
        self._watch(vm, self.tm.prolog_migrate(vm), "prolog_success", "prolog_failure",
                    "in prolog (migrate)")

    def _a_vmm_restore(self, vm, **_):
        self._watch(vm, self._networked_boot(vm, self.vmm.restore), "deploy_success",
                    "deploy_failure", "restoring VM")

    def _a_vmm_save(self, vm, **_):
        self._watch(vm, self._then_clean(vm, self.vmm.save(vm)), "save_success",
                    "save_failure", "saving VM")

    def _a_vmm_reboot(self, vm, **_):
        d = self.vmm.reboot(vm)
        d.addCallbacks(lambda _: self.nebula.vm_log(vm, "LCM", "I", "VM rebooted"),
                       lambda f: self.nebula.vm_log(
                           vm, "LCM", "E", f"Error rebooting VM: {_message(f)}"))

    def _a_tm_epilog_stop(self, vm, **_):
        self._watch(vm, self.tm.epilog_stop(vm), "epilog_success", "epilog_failure",
                    "in epilog (stop)")

    def _a_tm_prolog_resume(self, vm, **_):
        self._watch(vm, self.tm.prolog_resume(vm), "prolog_success", "prolog_failure",
                    "in prolog (resume)")

    def _a_tm_epilog_delete_quiet(self, vm, **_):
        """Delete the VM's files on its last host; failures are only logged."""
        self._cancel_and_delete(vm, False, "epilog")

    def _cancel_and_delete(self, vm, cancel, what, clean=None):
        """Cancel the VM on its last host (when ``cancel``), run the network's
        ``clean`` there (when ``clean``; default: when ``cancel``), then delete
        its files there; each failure is only logged (``<what> cancel: ...``,
        ``<what> delete: ...``). Deferred."""
        d = self.vmm.cancel(vm) if cancel else defer.succeed(None)
        d.addErrback(lambda f: self.nebula.vm_log(vm, "LCM", "W",
                                                  f"{what} cancel: {_message(f)}"))
        if (cancel if clean is None else clean) and self.vnm is not None:
            d.addCallback(lambda _: self.vnm.clean_logged(vm))  # the domain is gone
        d.addCallback(lambda _: self.tm.epilog_delete(vm))
        d.addErrback(lambda f: self.nebula.vm_log(vm, "LCM", "W",
                                                  f"{what} delete: {_message(f)}"))
        return d

    def _a_clean_failed(self, vm, **_):
        """A FAILED VM leaves its last host: the domain is cancelled there (a
        crashed guest, or one a crashed driver created without answering, may
        still be defined; a domain that is not there is no error), then its
        files are deleted. 3.4 only deleted the files; its drivers created
        transient domains."""
        if vm.last_history is not None:
            self._cancel_and_delete(vm, True, "failed VM")

    def _cancel_and_delete_previous(self, vm, what):
        """As :meth:`_cancel_and_delete` (cancel always) on the VM's previous host
        (a migration cut short: the domain and files may be on either). Deferred."""
        prev = vm.previous_history
        if prev is None:
            return defer.succeed(None)
        d = self.vmm._call(vm, "cancel", previous=True)
        d.addErrback(lambda f: self.nebula.vm_log(
            vm, "LCM", "W", f"{what} cancel on {prev.hostname}: {_message(f)}"))
        if self.vnm is not None:
            d.addCallback(lambda _: self.vnm.clean_logged(vm, previous=True))
        line = f"DELETE {prev.tm_mad} {prev.hostname}:{prev.vm_dir}"
        d.addCallback(lambda _: self.tm._run(vm, "epilog_delete_previous", [line]))
        d.addErrback(lambda f: self.nebula.vm_log(
            vm, "LCM", "W", f"{what} delete on {prev.hostname}: {_message(f)}"))
        return d

    def cleanup_event(self, vm):
        """What a clean-up of ``vm`` ends in: ``"cleanup_finalize"`` when it was
        finalized (its ETIME set on entering CLEANUP), else ``"cleanup_resubmit"``."""
        return "cleanup_finalize" if vm.etime else "cleanup_resubmit"

    def _cleanup(self, vm, both=False):
        """3.4 CLEANUP: cancel the VM on its host (if it was booted; always on the
        previous host when ``both``), delete its files, then end the clean-up
        (:meth:`cleanup_event`, read then: a resubmit in CLEANUP changes it)
        whatever the drivers said, unless the VM has left CLEANUP meanwhile."""
        vid = vm.oid
        epoch = (len(vm.history), vm.state, vm.lcm_state)
        # clean even without a deploy id: a VM cut short in BOOT may have had its
        # network's pre run (clean is idempotent; nothing made, nothing removed)
        d = self._cancel_and_delete(vm, bool(vm.deploy_id), "cleanup", clean=True)
        if both:
            d.addCallback(lambda _: self._cancel_and_delete_previous(vm, "cleanup"))

        def done(_):
            now = self.nebula.vmpool.objects.get(vid)
            if now is None or (len(now.history), now.state, now.lcm_state) != epoch:
                return None
            return self.on_driver(vid, self.cleanup_event(now))

        d.addCallback(done)
        return d

    def _a_cleanup_finalize(self, vm, **_):
        self._cleanup(vm)

    def _a_cleanup_resubmit(self, vm, **_):
        self._cleanup(vm)

    def _a_cleanup_finalize_both(self, vm, **_):
        self._cleanup(vm, both=True)

    def _a_cleanup_resubmit_both(self, vm, **_):
        self._cleanup(vm, both=True)

    def _a_cleanup_quiet(self, vm, **_):
        """After a delete: cancel and delete on the last host, only logged."""
        if vm.last_history is not None:
            self._cancel_and_delete(vm, True, "delete")

    def _a_cleanup_quiet_both(self, vm, **_):
        """After a delete cutting a migration short: on both hosts, only logged."""
        if vm.last_history is not None:
            self._cancel_and_delete(vm, True, "delete").addCallback(
                lambda _: self._cancel_and_delete_previous(vm, "delete"))

    def _a_clear_etime(self, vm, **_):
        vm.etime = 0

    async def network_redo(self, vm, event):
        """After a crash, the network step the driver reply ``event`` would have
        followed, run again before ``event`` is applied (``pre``/``post``/``clean``
        are idempotent in every shipped VNM driver: each records what it made
        and makes or removes only what is missing or there): ``deploy_success``
        -> ``post``; ``migrate_success`` -> ``post`` on the new host and
        ``clean`` on the old; ``migrate_failure`` -> ``clean`` on the new host;
        ``shutdown_success``, ``cancel_success``, ``save_success`` -> ``clean``
        (on the previous host in SAVE_MIGRATE). Failures are logged only."""
        if self.vnm is None or vm.state != ACTIVE:
            return
        vnm = self.vnm

        async def logged(d, what):
            try:
                await d
            except Exception as e:  # noqa: BLE001 - logged, recovery goes on
                self.nebula.vm_log(vm, "VNM", "E", f"Recovery: network {what} failed: "
                                   f"{getattr(e, 'message', None) or e}")

        if event == "deploy_success":
            await logged(vnm.post(vm), "post")
        elif event == "migrate_success":
            await logged(vnm.post(vm), "post")
            await vnm.clean_logged(vm, previous=True)
        elif event == "migrate_failure":
            await vnm.clean_logged(vm)
        elif event in ("shutdown_success", "cancel_success"):
            await vnm.clean_logged(vm)
        elif event == "save_success":
            await vnm.clean_logged(vm, previous=vm.lcm_state == SAVE_MIGRATE)

    # -- recovery: one.vm.recover (OpenNebula 5.x LifeCycleManager::recover/retry) --------

    def boot_action(self, vm):
        """How a VM in BOOT boots: ``"vmm_restore"`` after a cold migration or a
        stop (the front-end holds ``transfer.<seq>.prolog_migrate`` or
        ``.prolog_resume`` for its placement: the checkpoint moved with the
        files), else ``"vmm_deploy"``. A SUSPENDED VM resumed restores its
        checkpoint too, but nothing recorded tells that from a ``restart``: it
        boots afresh from its disks (restoring a checkpoint older than the
        disks would corrupt them)."""
        h = vm.last_history
        if h is not None:
            base = os.path.join(self.nebula.vm_dir(vm.oid), f"transfer.{h.seq}.")
            if os.path.exists(base + "prolog_migrate") or os.path.exists(base + "prolog_resume"):
                return "vmm_restore"
        return "vmm_deploy"

    def retry(self, vm):
        """Issue again the driver operation ``vm``'s LCM_STATE waits for
        (:data:`RETRY`); its reply moves the VM as the first one would have.

        :raises ActionError: the VM waits for no driver operation.
        """
        action = RETRY.get(vm.lcm_state) if vm.state == ACTIVE else None
        if action is None:
            raise ActionError(f"Wrong state to perform action 'retry': VM {vm.oid} is "
                              f"{state_name(vm)} (no pending operation).")
        if action == "boot":
            action = self.boot_action(vm)
        self.nebula.vm_log(vm, "LCM", "I", f"Retrying {LCM_STATES[vm.lcm_state]} ({action})")
        if action == "cleanup":
            self._cleanup(vm)
        else:
            getattr(self, "_a_" + action)(vm)

    async def recover(self, vm, op):
        """``one.vm.recover`` (OpenNebula 5.x ``src/lcm/LifeCycleActions.cc``
        ``recover()``/``retry()``, ``src/rm/RequestManagerVirtualMachine.cc``
        ``VirtualMachineRecover``): ``op`` 0 failure, 1 success, 2 retry, 3 delete.

        success/failure: the pending driver operation is taken as having
        succeeded/failed (:data:`RECOVER`; UNKNOWN goes back to RUNNING either
        way, CLEANUP ends as it would); retry: :meth:`retry`; delete: the VM is
        DONE now from every state but DONE (cancelled and its files deleted
        after, best effort; leases, images and capacity released).

        :raises ActionError: a wrong code; success/failure/retry on a VM that
            is not ACTIVE or waits for nothing (RUNNING); delete on a DONE VM.
        """
        if op not in (0, 1, 2, 3):
            raise ActionError(f"Wrong recovery operation code {op!r} (0 failure, 1 success, "
                              "2 retry, 3 delete).")
        name = ("failure", "success", "retry", "delete")[op]
        self.nebula.vm_log(vm, "LCM", "I", f"Recover ({name}) requested in {state_name(vm)}")
        if op == 3:
            await self.trigger(vm, "delete")
            return
        if vm.state != ACTIVE:
            raise ActionError(f"Recover action is not available for state {state_name(vm)} "
                              f"(VM {vm.oid}).")
        if op == 2:
            self.retry(vm)
            return
        events = RECOVER.get(vm.lcm_state)
        if events is None:
            raise ActionError(f"Wrong state to perform action 'recover': VM {vm.oid} is "
                              f"{state_name(vm)} (no pending operation).")
        event = events[op]
        if event == "cleanup":
            event = self.cleanup_event(vm)
        info = None
        if event == "deploy_success":
            info = vm.deploy_id or f"one-{vm.oid}"  # 5.x: a deploy id for KVM/Xen
        await self.trigger(vm, event, info=info, message=f"recover {name}")


#: ``one.vm.recover`` success/failure: LCM_STATE -> (failure event, success event)
#: (OpenNebula 5.x ``LifeCycleManager::recover``; "cleanup": what the clean-up
#: ends in, :meth:`LifeCycleManager.cleanup_event`).
RECOVER = {
    PROLOG: ("prolog_failure", "prolog_success"),
    PROLOG_MIGRATE: ("prolog_failure", "prolog_success"),
    PROLOG_RESUME: ("prolog_failure", "prolog_success"),
    BOOT: ("deploy_failure", "deploy_success"),
    MIGRATE: ("migrate_failure", "migrate_success"),
    SAVE_STOP: ("save_failure", "save_success"),
    SAVE_SUSPEND: ("save_failure", "save_success"),
    SAVE_MIGRATE: ("save_failure", "save_success"),
    EPILOG_STOP: ("epilog_failure", "epilog_success"),
    EPILOG: ("epilog_failure", "epilog_success"),
    SHUTDOWN: ("shutdown_failure", "shutdown_success"),
    CANCEL: ("cancel_failure", "cancel_success"),
    FAILURE: ("recover_failure", "recover_failure"),
    CLEANUP: ("cleanup", "cleanup"),
    UNKNOWN: ("poll_active", "poll_active"),
}

#: ``one.vm.recover`` retry: LCM_STATE -> the driver action issued again
#: (OpenNebula 5.x ``LifeCycleManager::retry``; "boot": deploy or restore,
#: :meth:`LifeCycleManager.boot_action`; "cleanup": cancel and delete again).
RETRY = {
    PROLOG: "tm_prolog",
    PROLOG_MIGRATE: "tm_prolog_migrate",
    PROLOG_RESUME: "tm_prolog_resume",
    BOOT: "boot",
    MIGRATE: "vmm_migrate",
    SAVE_STOP: "vmm_save",
    SAVE_SUSPEND: "vmm_save",
    SAVE_MIGRATE: "vmm_save_migrate",
    EPILOG_STOP: "tm_epilog_stop",
    EPILOG: "tm_epilog",
    SHUTDOWN: "vmm_shutdown",
    CANCEL: "vmm_cancel",
    CLEANUP: "cleanup",
}


def _message(failure):
    return getattr(failure.value, "message", None) or str(failure.value)
