"""Crash fault injection: a VM churn driven by several XML-RPC clients while the
daemon is ``kill -9``-ed and restarted, and the checks that follow each restart.

Used by ``tests/acceptance/test_crash_recovery.py`` (a small run) and
``bench/bench_crash.py`` (1,000 VMs, three kills, every database backend).

The churn: ``workers`` client processes, each with its own keep-alive connection,
allocate VMs (dummy drivers; ``DUMMY = [ DELAY ]`` so every driver operation takes
a while and VMs spend time in PROLOG, BOOT, SHUTDOWN, SAVE_*, EPILOG...), let the
scheduler deploy them, and walk each through a *plan* of ``one.vm.action`` /
``one.vm.migrate`` calls (shutdown; cancel; delete; stop, resume, shutdown;
suspend, resume, cancel; livemigrate, shutdown; migrate, delete), each call sent
when the VM reaches the state the action needs. Every call that was sent is
written to the worker's journal before it is sent (``SENT``) and again when it
returned success (``ACK``): an acknowledged change is one the daemon said it had
made, which (DESIGN.md: "an API reply that reports a change is sent only after the
change is committed") must survive a ``kill -9``.

A kill (:meth:`CrashChurn.kill_and_restart`): the clients are paused (calls in
flight go on and fail with the daemon), the daemon gets SIGKILL (its drivers are
ended too, as the operating system ends an orphaned driver whose stdin closed),
the VM states in the database are counted (how many were in a transient state at
the kill), the daemon is started again on the same ONE_LOCATION, database and
port, and the time until ``one.system.version`` answers is measured. Then,
with the clients still paused:

* ``lost``: acknowledged changes not found (:func:`verify`): a VM whose allocation
  was acknowledged is missing, or is in a state before its last acknowledged
  action (per :data:`AFTER`: the states an action leads to until the client's next
  action);
* ``transient``: VMs in a driver-driven state (ACTIVE and not RUNNING/UNKNOWN) a
  fixed ``settle`` time (30 s) after the restart began: a snapshot, not a wait.
  Every driver operation of the churn takes ``delay`` s (1 s), so a VM that the
  reconciliation (or the scheduler) moved on is settled well before.

Only the standard library and lxml are used; everything blocks.
"""

import http.client
import json
import multiprocessing
import os
import random
import signal
import socket
import time
import xmlrpc.client

from lxml import etree

#: VM STATE and LCM_STATE names (OpenNebula 3.4 include/VirtualMachine.h).
VM_STATES = ["INIT", "PENDING", "HOLD", "ACTIVE", "STOPPED", "SUSPENDED", "DONE", "FAILED"]
LCM_STATES = ["LCM_INIT", "PROLOG", "BOOT", "RUNNING", "MIGRATE", "SAVE_STOP",
              "SAVE_SUSPEND", "SAVE_MIGRATE", "PROLOG_MIGRATE", "PROLOG_RESUME",
              "EPILOG_STOP", "EPILOG", "SHUTDOWN", "CANCEL", "FAILURE", "CLEANUP", "UNKNOWN"]
ACTIVE = 3

#: ACTIVE LCM states that are not driver-driven: the VM sits there until someone acts.
SETTLED_LCM = {"RUNNING", "UNKNOWN"}


def state_name(state, lcm):
    """``"ACTIVE/RUNNING"``-style name of a (STATE, LCM_STATE) pair of ints."""
    if state == ACTIVE:
        return f"ACTIVE/{LCM_STATES[lcm]}"
    return VM_STATES[state]


def is_transient(name):
    """True for a driver-driven state: ACTIVE and not RUNNING or UNKNOWN."""
    return name.startswith("ACTIVE/") and name.split("/", 1)[1] not in SETTLED_LCM


#: What each plan step needs before the client sends it.
NEEDS = {
    "shutdown": {"ACTIVE/RUNNING"}, "cancel": {"ACTIVE/RUNNING"},
    "stop": {"ACTIVE/RUNNING"}, "suspend": {"ACTIVE/RUNNING"},
    "livemigrate": {"ACTIVE/RUNNING"}, "migrate": {"ACTIVE/RUNNING"},
    "resume": {"STOPPED", "SUSPENDED"},
    "delete": {"ACTIVE/RUNNING"},
}

_RUN_ON = {"PENDING", "ACTIVE/PROLOG", "ACTIVE/PROLOG_RESUME", "ACTIVE/BOOT", "ACTIVE/RUNNING",
           "ACTIVE/UNKNOWN"}

#: The states an acknowledged action leads to, up to the client's next action: after
#: a restart a VM whose last acknowledged action is A must be in one of AFTER[A]
#: (or of AFTER[B] for an action B sent but unanswered when the daemon died).
#: FAILED is a later state of every driver operation (3.4: a driver failure FAILS
#: the VM; reconciliation FAILS what it cannot decide, the reason in vm.log), but not
#: of a delete, which must end in DONE.
AFTER = {
    "allocate": {"PENDING", "HOLD", "ACTIVE/PROLOG", "ACTIVE/BOOT", "ACTIVE/RUNNING",
                 "ACTIVE/UNKNOWN", "FAILED"},
    "shutdown": {"ACTIVE/SHUTDOWN", "ACTIVE/EPILOG", "DONE", "FAILED"},
    "cancel": {"ACTIVE/CANCEL", "ACTIVE/EPILOG", "DONE", "FAILED"},
    "delete": {"ACTIVE/CLEANUP", "DONE"},
    "stop": {"ACTIVE/SAVE_STOP", "ACTIVE/EPILOG_STOP", "STOPPED", "FAILED"},
    "suspend": {"ACTIVE/SAVE_SUSPEND", "SUSPENDED", "FAILED"},
    "resume": _RUN_ON | {"FAILED"},
    "livemigrate": {"ACTIVE/MIGRATE", "ACTIVE/RUNNING", "ACTIVE/UNKNOWN", "FAILED"},
    "migrate": {"ACTIVE/SAVE_MIGRATE", "ACTIVE/PROLOG_MIGRATE", "ACTIVE/BOOT",
                "ACTIVE/RUNNING", "ACTIVE/UNKNOWN", "FAILED"},
}

#: The churn's plans (after the allocation) and their weights.
PLANS = [
    (("shutdown",), 30),
    (("cancel",), 10),
    (("delete",), 10),
    (("stop", "resume", "shutdown"), 15),
    (("suspend", "resume", "cancel"), 10),
    (("livemigrate", "shutdown"), 15),
    (("migrate", "delete"), 10),
]

#: Seconds a VM may make no progress before its client gives up on it (it is still
#: verified; without start-up reconciliation, VMs caught in a transient state by a
#: kill never move again).
STALL = 120

_mp = multiprocessing.get_context("fork")


def vm_template(name, delay):
    """A churn VM: no NIC, a DISK by SOURCE, every dummy driver operation ``delay`` s."""
    return (f'NAME = "{name}"\nCPU = "0.1"\nMEMORY = "64"\n'
            'DISK = [ SOURCE = "/srv/images/ttylinux.img", TARGET = "hda" ]\n'
            f'DUMMY = [ DELAY = "{delay}" ]\n')


class _Gone(Exception):
    """The daemon did not answer (connection refused, reset, closed)."""


def _call(proxy, method, *args):
    try:
        return getattr(proxy, method)(*args)
    except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as e:
        raise _Gone(f"{type(e).__name__}: {e}") from None


def _vm_state(proxy, session, vid):
    ok, body, *_ = _call(proxy, "one.vm.info", session, vid)
    if not ok:
        return None
    root = etree.fromstring(body.encode())
    return state_name(int(root.findtext("STATE")), int(root.findtext("LCM_STATE")))


def _worker(index, url, session, quota, in_flight, delay, hosts, journal, running, seed):
    """One churn client (a forked process); see the module docstring."""
    rng = random.Random(seed)
    plans = [p for p, _ in PLANS]
    weights = [w for _, w in PLANS]
    out = open(journal, "a", buffering=1, encoding="utf-8")

    def note(*words):
        out.write(" ".join(str(w) for w in words) + "\n")

    proxy = xmlrpc.client.ServerProxy(url)
    vms = {}  # vid -> dict(plan, step, since)
    allocated = 0
    seq = 0

    def lost_daemon(reason):
        nonlocal proxy
        note("GONE", reason)
        running.wait()
        proxy = xmlrpc.client.ServerProxy(url)

    while allocated < quota or vms:
        if not running.is_set():
            running.wait()
            proxy = xmlrpc.client.ServerProxy(url)
        try:
            while allocated < quota and len(vms) < in_flight:
                seq += 1
                note("SENT", "-", "allocate", seq)
                allocated += 1
                ok, vid, *_ = _call(proxy, "one.vm.allocate", session,
                                    vm_template(f"churn-{index}-{seq}", delay))
                if not ok:
                    note("REFUSED", "-", "allocate", seq, json.dumps(vid))
                    continue
                plan = plans[rng.choices(range(len(plans)), weights)[0]]
                note("ACK", vid, "allocate", seq, ",".join(plan))
                vms[vid] = dict(plan=plan, step=0, since=time.monotonic())
            for vid, vm in list(vms.items()):
                state = _vm_state(proxy, session, vid)
                if vm["step"] >= len(vm["plan"]):
                    del vms[vid]  # plan done: the daemon finishes it alone
                    continue
                action = vm["plan"][vm["step"]]
                if state in ("DONE", "FAILED", None):
                    note("END", vid, state)
                    del vms[vid]
                    continue
                if state not in NEEDS[action]:
                    if time.monotonic() - vm["since"] > STALL:
                        note("STALLED", vid, state)
                        del vms[vid]
                    continue
                note("SENT", vid, action)
                vm["step"] += 1
                vm["since"] = time.monotonic()
                try:
                    if action in ("livemigrate", "migrate"):
                        ok, info, *_ = _call(proxy, "one.vm.migrate", session, vid,
                                             rng.choice(hosts), action == "livemigrate")
                    else:
                        ok, info, *_ = _call(proxy, "one.vm.action", session, action, vid)
                except _Gone:
                    del vms[vid]  # outcome unknown: verified as SENT, not ACK
                    raise
                if ok:
                    note("ACK", vid, action)
                else:
                    # the state moved on meanwhile (a poll, a failure): try again later
                    note("REFUSED", vid, action, json.dumps(info))
                    vm["step"] -= 1
            time.sleep(0.2)
        except _Gone as e:
            lost_daemon(e)
    note("DONE")
    out.close()


class Journal:
    """What the clients sent and what was acknowledged, per VM, from the journals."""

    def __init__(self, paths):
        self.acked = {}  # vid -> [acknowledged actions, "allocate" first]
        self.unanswered = {}  # vid -> action sent but not answered (outcome unknown)
        self.stalled = {}
        self.allocations_unanswered = 0
        for path in paths:
            try:
                with open(path, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except FileNotFoundError:
                continue
            sent = None
            for line in lines:
                words = line.split()
                if not words:
                    continue
                kind = words[0]
                if kind == "SENT":
                    if sent is not None and sent[0] == "-":
                        self.allocations_unanswered += 1
                    elif sent is not None:
                        self.unanswered[sent[0]] = sent[1]
                    sent = (words[1] if words[1] == "-" else int(words[1]), words[2])
                elif kind in ("ACK", "REFUSED"):
                    if kind == "ACK":
                        vid = int(words[1])
                        self.acked.setdefault(vid, []).append(words[2])
                        self.unanswered.pop(vid, None)
                    sent = None
                elif kind == "STALLED":
                    self.stalled[int(words[1])] = words[2]
            if sent is not None and sent[0] == "-":
                self.allocations_unanswered += 1
            elif sent is not None:
                self.unanswered[sent[0]] = sent[1]

    @property
    def changes(self):
        """The number of acknowledged changes (allocations and actions)."""
        return sum(len(a) for a in self.acked.values())


def pool_states(proxy, session):
    """``{vid: "STATE[/LCM_STATE]"}`` of every VM, DONE included (one.vmpool.info)."""
    ok, body, *_ = proxy.one.vmpool.info(session, -2, -1, -1, -2)
    if not ok:
        raise RuntimeError(f"one.vmpool.info failed: {body}")
    states = {}
    for vm in etree.fromstring(body.encode()).iterfind("VM"):
        states[int(vm.findtext("ID"))] = state_name(int(vm.findtext("STATE")),
                                                    int(vm.findtext("LCM_STATE")))
    return states


def verify(journal, states):
    """The acknowledged changes not found in ``states``: a list of
    ``(vid, acknowledged actions, unanswered action or None, state found or None)``."""
    lost = []
    for vid, acked in sorted(journal.acked.items()):
        state = states.get(vid)
        pending = journal.unanswered.get(vid)
        allowed = set(AFTER[acked[-1]])
        if pending:
            allowed |= AFTER[pending]
        if state is None or state not in allowed:
            lost.append((vid, acked, pending, state))
    return lost


class CrashChurn:
    """Run the churn against ``daemon`` (a started :class:`CrashDaemon`).

    :param vms: VMs to allocate in all.
    :param workers: client processes.
    :param in_flight: VMs each client walks at once.
    :param delay: seconds every dummy driver operation takes.
    :param folder: where the journals go.
    """

    def __init__(self, daemon, folder, vms=1000, workers=4, in_flight=10, delay=1.0,
                 hosts=4, seed=1, log=print):
        self.daemon = daemon
        self.folder = folder
        self.vms = vms
        self.workers = workers
        self.in_flight = in_flight
        self.delay = delay
        self.host_count = hosts
        self.seed = seed
        self.log = log
        self.running = _mp.Event()
        self.procs = []
        self.journals = [os.path.join(folder, f"journal-{i}.txt") for i in range(workers)]
        self.kills = []

    # -- set-up ------------------------------------------------------------------------------

    def add_hosts(self, timeout=120):
        """``one.host.allocate`` dummy hosts; wait until every one is MONITORED."""
        proxy = self.daemon.proxy()
        s = self.daemon.session
        self.hosts = []
        for i in range(self.host_count):
            ok, hid, *_ = proxy.one.host.allocate(s, f"crash{i:02d}", "im_dummy", "vmm_dummy",
                                                  "tm_dummy")
            if not ok:
                raise RuntimeError(f"one.host.allocate failed: {hid}")
            self.hosts.append(hid)
        deadline = time.monotonic() + timeout
        while True:
            ok, body, *_ = proxy.one.hostpool.info(s)
            monitored = [h for h in etree.fromstring(body.encode()).iterfind("HOST")
                         if h.findtext("STATE") == "2"]
            if len(monitored) == self.host_count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"hosts not MONITORED after {timeout} s: {body[:500]}")
            time.sleep(0.2)

    def start(self):
        """Start the client processes."""
        self.running.set()
        share = [self.vms // self.workers + (1 if i < self.vms % self.workers else 0)
                 for i in range(self.workers)]
        for i, quota in enumerate(share):
            p = _mp.Process(target=_worker, daemon=True, args=(
                i, self.daemon.url, self.daemon.session, quota, self.in_flight, self.delay,
                self.hosts, self.journals[i], self.running, self.seed * 1000 + i))
            p.start()
            self.procs.append(p)

    def stop(self):
        """End the client processes (they are daemonic: also ended at exit)."""
        self.running.set()
        for p in self.procs:
            if p.is_alive():
                p.terminate()
            p.join(10)

    def allocated(self):
        """Allocations acknowledged so far."""
        return sum(1 for path in self.journals if os.path.exists(path)
                   for line in open(path, encoding="utf-8")
                   if line.startswith("ACK ") and " allocate " in line)

    def wait_allocated(self, count, timeout):
        """Block until ``count`` allocations are acknowledged (polling the journals)."""
        deadline = time.monotonic() + timeout
        while self.allocated() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.allocated()} of {count} allocations after "
                                   f"{timeout} s\n{self.daemon.output_tail()}")
            if not any(p.is_alive() for p in self.procs):
                raise RuntimeError("every client ended before the allocations were done")
            time.sleep(0.2)

    def wait_busy(self, count, timeout=60):
        """Block until at least ``count`` VMs are in a transient state (so that a kill
        lands mid-operation); returns how many were, or the most seen in ``timeout`` s."""
        deadline = time.monotonic() + timeout
        best = 0
        proxy = self.daemon.proxy()
        while time.monotonic() < deadline:
            states = pool_states(proxy, self.daemon.session)
            best = max(best, sum(1 for st in states.values() if is_transient(st)))
            if best >= count:
                break
            time.sleep(0.1)
        return best

    def finished(self, timeout):
        """Wait (up to ``timeout`` s) for the clients to walk every VM; True if they did."""
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
        return not any(p.is_alive() for p in self.procs)

    # -- the crash -------------------------------------------------------------------------

    def kill_and_restart(self, settle=30.0, until_settled=False):
        """Pause the clients, ``kill -9`` the daemon, restart it, measure; the clients
        stay paused until :meth:`resume`. Returns (and appends to ``self.kills``) a dict:
        ``transient_at_kill`` (from the database), ``serve_s`` (restart until
        ``one.system.version`` answers), ``lost`` (:func:`verify` list),
        ``transient`` ({vid: state}: ``settle`` s after the restart began, or with
        ``until_settled`` the last poll, as soon as none is transient or ``settle`` s
        have passed), ``settled_s`` (restart until a poll first saw no transient VM,
        None if none did), ``acked`` (acknowledged changes so far), ``unanswered``
        (calls whose answer the kill cut)."""
        self.running.clear()
        self.daemon.kill9()
        at_kill = self.daemon.db_states()
        transient_at_kill = sum(1 for s in at_kill.values() if is_transient(s))
        t0 = time.monotonic()
        serve = self.daemon.restart_timed()
        settled = None
        proxy = self.daemon.proxy()
        while True:
            states = pool_states(proxy, self.daemon.session)
            now = time.monotonic()
            transient = {vid: s for vid, s in states.items() if is_transient(s)}
            if not transient and settled is None:
                settled = now - t0
                if until_settled:
                    break
            if now - t0 >= settle:
                break
            time.sleep(min(1.0, max(0.0, t0 + settle - now)))
        journal = Journal(self.journals)
        result = dict(transient_at_kill=transient_at_kill, vms_at_kill=len(at_kill),
                      serve_s=serve, lost=verify(journal, states), transient=transient,
                      settled_s=settled, acked=journal.changes,
                      unanswered=len(journal.unanswered) + journal.allocations_unanswered,
                      failed=sum(1 for s in states.values() if s == "FAILED"))
        self.kills.append(result)
        when = f"{now - t0:.0f} s after the restart"
        self.log(f"kill #{len(self.kills)}: {transient_at_kill} of {len(at_kill)} VMs "
                 f"transient at the kill; serving again after {serve:.2f} s; "
                 f"{len(result['lost'])} of {journal.changes} acknowledged changes lost; "
                 f"{len(transient)} transient {when}"
                 + (f" ({describe_states(transient, 6)})" if transient else "")
                 + (f"; none transient {settled:.1f} s after the restart"
                    if settled is not None else ""))
        return result

    def resume(self):
        self.running.set()

    def final_check(self, settle_timeout=120):
        """After the churn: poll until no VM is transient (up to ``settle_timeout`` s);
        returns ``(lost list, {vid: state} still transient, states)``."""
        deadline = time.monotonic() + settle_timeout
        while True:
            states = pool_states(self.daemon.proxy(), self.daemon.session)
            transient = {v: s for v, s in states.items() if is_transient(s)}
            if not transient or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        return verify(Journal(self.journals), states), transient, states


def describe_states(states, n=12):
    """A few ``vid=STATE`` pairs of a ``{vid: state}`` dict, for messages."""
    items = sorted(states.items())
    text = ", ".join(f"{v}={s}" for v, s in items[:n])
    return text + (f", ... ({len(items)} in all)" if len(items) > n else "")


def describe_lost(lost, n=10):
    """Lines describing lost changes, for messages."""
    return "\n".join(f"  VM {vid}: acknowledged {'/'.join(acked)}"
                     + (f" (then {pending} unanswered)" if pending else "")
                     + f", found {state or 'missing'}"
                     for vid, acked, pending, state in lost[:n])


# -- the daemon -------------------------------------------------------------------------------

def _members(pgid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def kill9(daemon, timeout=30):
    """``kill -9`` a :class:`~tests.acceptance.test_seed000.NebulaDaemon`'s twistd; then
    wait for its driver processes to end (their stdin closed; SIGKILL after
    ``timeout`` s). The daemon can be started again on the same location and port."""
    process, daemon.process = daemon.process, None
    if process is None:
        return
    pgid = process.pid  # start_new_session: the group is named after twistd
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + timeout
    while _members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in _members(pgid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def make_daemon_class(base):
    """A :class:`~tests.acceptance.test_seed000.NebulaDaemon` subclass with
    ``kill9``, ``restart_timed``, ``proxy``, ``url``, ``db_states``."""

    class CrashDaemon(base):
        """``base`` plus ``kill -9`` and a timed restart on the same port and database.

        :param db: ``dict`` from :func:`nebtwist.dbtesting.fresh_database` (a server
            backend), or None for SQLite in ``var/one.db``.
        """

        def __init__(self, location, settings=(), db=None):
            self.db = db
            extra = []
            if db is not None:
                from nebtwist.dbtesting import db_setting
                extra.append(db_setting(db))
            super().__init__(location, list(settings) + extra)

        @property
        def url(self):
            return self.endpoint

        def proxy(self):
            return xmlrpc.client.ServerProxy(self.endpoint)

        def output_tail(self):
            return self.diagnostics()

        def kill9(self, timeout=30):
            """:func:`kill9` of this daemon."""
            kill9(self, timeout)

        def restart_timed(self, timeout=120):
            """Start again; seconds from the start until ``one.system.version`` answers."""
            t0 = time.monotonic()
            self.start(timeout=timeout)
            while True:
                try:
                    ok, *_ = self.proxy().one.system.version(self.session)
                    if ok:
                        return time.monotonic() - t0
                except (OSError, http.client.HTTPException, xmlrpc.client.Error):
                    pass
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"no answer {timeout} s after the restart\n"
                                       + self.diagnostics())
                time.sleep(0.02)

        def db_states(self):
            """``{vid: state name}`` read from the database's vm_pool (daemon down)."""
            query = "SELECT oid, state, lcm_state FROM vm_pool"
            if self.db is None:
                import sqlite3
                conn = sqlite3.connect(os.path.join(self.var, "one.db"))
                try:
                    rows = conn.execute(query).fetchall()
                finally:
                    conn.close()
            else:
                from nebtwist.dbtesting import admin_connection
                conn = admin_connection(self.db["backend"], self.db["db_name"])
                try:
                    cursor = conn.cursor()
                    cursor.execute(query)
                    rows = cursor.fetchall()
                finally:
                    conn.close()
            return {int(o): state_name(int(s), int(l)) for o, s, l in rows}

    return CrashDaemon


def wait_free(port, timeout=30):
    """Wait until nothing listens on 127.0.0.1:``port`` (the killed daemon's socket)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
