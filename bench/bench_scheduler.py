"""The scheduler at scale: 10,000 pending VMs placed on 1,000 dummy hosts.

Targets (issue 3): at least 500 placements per second and under 500 MB RSS
with 10,000 VMs. For comparison, OpenNebula's scheduler dispatches at most
MAX_DISPATCH = 30 VMs per cycle (3.4 ``sched.conf``: SCHED_INTERVAL = 30 s;
the issue quotes 30 per 15 s cycle, the interval of later releases), which
is computed here, not measured.

Two ways to fill the queue (``--mode``):

``backlog`` (default)
    A daemon with the scheduler off (SCHED_INTERVAL = 3600) gets ``--hosts``
    hosts (``one.host.allocate``; each is monitored at once by the dummy IM)
    and, once all are MONITORED, ``--vms`` VMs (CPU = 0.1, MEMORY = 64: ten per
    host on average; a dummy host has 800 CPU and 16 GB). The daemon is then
    restarted in the same ONE_LOCATION with SCHED_INTERVAL = ``--interval``,
    MAX_VM = MAX_DISPATCH = ``--vms`` and MAX_HOST = ``--max-host``, so its
    first cycle finds the whole queue. Measured from the restart.
``live``
    One daemon with the scheduler on from the start: hosts, then VMs, placed
    while they are being allocated. Measured from the last allocation.

Figures:

* scheduler decisions/s: VMs dispatched per second of the scheduler's own
  decision time (matching, ranking, choosing; not the deploy calls), from
  the per-cycle ``[SCHED]`` line in oned.log;
* dispatch rate: VMs dispatched per second of cycle wall time (decisions plus
  ``dm.deploy`` up to the DB commit of PENDING -> PROLOG, plus whatever else
  the reactor ran while the cycle yielded);
* wall time until every VM is RUNNING (progress from the ``New VM state is
  ACTIVE/RUNNING`` lines of oned.log, read every 0.1 s at no cost to the
  daemon, confirmed with ``one.vmpool.info(-2, -1, -1, 3)`` counting
  LCM_STATE 3), and the end-to-end placement rate;
* reactor stalls: a client thread calls ``one.vm.info`` every 20 ms during
  the placement and records each call's latency (max, p99, calls over 100 ms);
* daemon RSS (VmRSS) with every VM RUNNING, and its peak (VmHWM); daemon CPU.

Usage: ``python bench/bench_scheduler.py [--hosts 1000] [--vms 10000]
[--max-host 20] [--mode backlog|live|both] [--spy PREFIX]``.
"""

import contextlib
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import xmlrpc.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

TARGET_RATE = 500  # placements/s
TARGET_RSS = 500  # MB
#: Issue 9: every one of 10,000 VMs RUNNING within this many seconds of the first dispatch.
GOAL_SECONDS = 30
#: The end-to-end figure bench/README.md recorded (2026-11-21, 10,000 VMs on
#: 1,000 hosts: first dispatch to all RUNNING in 32.6 s); the summary line
#: gives each run's rate as a ratio of it, so a regression shows.
BASELINE_RATE = 306  # VMs/s

_mp = multiprocessing.get_context("fork")

#: Ten per dummy host on average (800 CPU, 16 GB each).
VM_TEMPLATE = common.VM_TEMPLATE

RUNNING_LINE = re.compile(r"VM (\d+): \[LCM\] New VM state is ACTIVE/RUNNING")
DISPATCH_LINE = re.compile(r"\[SCHED\]\[I\]: VM \d+: dispatched to host")
#: The scheduler's per-cycle line (nebtwist.core.scheduler.Scheduler).
CYCLE_LINE = re.compile(
    r"\[SCHED\]\[I\]: Cycle (?P<n>\d+): (?P<pending>\d+) pending VMs \((?P<considered>\d+) "
    r"considered\), (?P<hosts>\d+) hosts, (?P<groups>\d+) groups: (?P<dispatched>\d+) "
    r"dispatched; decisions (?P<decide>[\d.]+) s, deploy calls (?P<deploy>[\d.]+) s, "
    r"cycle (?P<wall>[\d.]+) s, (?P<yields>\d+) yields, longest slice (?P<slice>[\d.]+) s")


# -- hosts ---------------------------------------------------------------------------------

def _host_worker(url, session, names, queue):
    try:
        server = xmlrpc.client.ServerProxy(url)
        errors, first = 0, None
        for name in names:
            r = server.one.host.allocate(session, name, "im_dummy", "vmm_dummy", "dummy", -1)
            if not r[0]:
                errors += 1
                first = first or r[1]
        queue.put((errors, first))
    except BaseException as e:  # noqa: BLE001 - report to the parent
        queue.put((len(names), f"{type(e).__name__}: {e}"))


def host_states(daemon):
    """``{STATE: count}`` over the host pool."""
    from lxml import etree

    ok, body, _ = daemon.proxy().one.hostpool.info(daemon.session)
    if not ok:
        raise RuntimeError(body)
    states = {}
    for s in etree.fromstring(body.encode()).xpath("/HOST_POOL/HOST/STATE/text()"):
        states[int(s)] = states.get(int(s), 0) + 1
    return states


def add_hosts(daemon, n, workers=4, timeout=300):
    """Allocate ``n`` dummy hosts and wait until all are MONITORED (state 2).

    :return: ``(allocation seconds, seconds until all MONITORED)``.
    """
    names = [f"host{i:04d}" for i in range(n)]
    workers = max(1, min(workers, n))
    queue = _mp.Queue()
    procs = [_mp.Process(target=_host_worker,
                         args=(daemon.url, daemon.session, names[i::workers], queue))
             for i in range(workers)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    allocated = time.perf_counter() - t0
    for p in procs:
        p.join()
    failed = sum(e for e, _ in results)
    if failed:
        raise RuntimeError(f"{failed} of {n} host allocations failed; first: "
                           + next(m for e, m in results if m))
    deadline = time.monotonic() + timeout
    while True:
        states = host_states(daemon)
        if states.get(2, 0) == n:
            return allocated, time.perf_counter() - t0
        if time.monotonic() > deadline:
            raise RuntimeError(f"hosts not all MONITORED after {timeout} s: {states}")
        time.sleep(0.2)


# -- watching the placement ------------------------------------------------------------------

class LogTail:
    """Reads oned.log incrementally from where it was when created."""

    def __init__(self, daemon):
        self.path = os.path.join(daemon.location, "var", "oned.log")
        self.offset = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        self.start = self.offset
        self._rest = b""

    def lines(self):
        """New complete lines since the last call."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self._rest + data
        *done, self._rest = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in done]

    def all_lines(self):
        """Every line written since creation."""
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return f.read().decode("utf-8", "replace").splitlines()


#: A VM that fits no host: allocated during the placement to time a call
#: that writes to the database, without adding to the VMs to place.
NOWHERE_TEMPLATE = 'CPU = "0.1"\nMEMORY = "64"\nREQUIREMENTS = "NAME = \\"nowhere\\""\n'


def call_vm_info(vid):
    """A prober call: ``one.vm.info`` of VM ``vid``."""
    return lambda proxy, session: proxy.one.vm.info(session, vid)


def call_vm_allocate(proxy, session):
    return proxy.one.vm.allocate(session, NOWHERE_TEMPLATE)


class Prober(threading.Thread):
    """Makes one XML-RPC call (``call(proxy, session)``) every ``period``
    seconds over a keep-alive connection and records ``(start, latency)``."""

    def __init__(self, daemon, call, period=0.02):
        super().__init__(daemon=True)
        self.proxy = daemon.proxy()
        self.session = daemon.session
        self.call = call
        self.period = period
        self.samples = []
        self.errors = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            t0 = time.perf_counter()
            try:
                ok = self.call(self.proxy, self.session)[0]
            except Exception:  # noqa: BLE001 - counted
                ok = False
            t1 = time.perf_counter()
            if not ok:
                self.errors += 1
            self.samples.append((t0, t1 - t0))
            self._halt.wait(self.period)

    def stop(self):
        self._halt.set()
        self.join(30)

    def figures(self, since=None, until=None):
        lat = sorted(d for t, d in self.samples
                     if (since is None or t >= since) and (until is None or t <= until))
        if not lat:
            return None
        return {"calls": len(lat), "max": lat[-1], "p99": common.percentile(lat, 99),
                "p50": common.percentile(lat, 50), "over_100ms": sum(d > 0.1 for d in lat)}


def running_count(daemon):
    """VMs in ACTIVE/RUNNING (``one.vmpool.info(-2, -1, -1, 3)``, LCM_STATE 3)."""
    ok, body, _ = daemon.proxy().one.vmpool.info(daemon.session, -2, -1, -1, 3)
    if not ok:
        raise RuntimeError(body)
    return body.count("<LCM_STATE>3</LCM_STATE>")


def reactor_cpu_seconds(daemon):
    """CPU seconds of the daemon's main thread (the reactor) so far."""
    with open(f"/proc/{daemon.pid}/task/{daemon.pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drivers_cpu_seconds(daemon):
    """User + system CPU seconds used so far by the daemon's children (the
    driver processes)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{daemon.pid}/task"):
            with open(f"/proc/{daemon.pid}/task/{tid}/children", encoding="ascii") as f:
                for child in f.read().split():
                    with contextlib.suppress(OSError), \
                            open(f"/proc/{child}/stat", encoding="ascii") as st:
                        fields = st.read().rsplit(")", 1)[1].split()
                        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def peak_rss_mb(daemon):
    """The daemon's peak resident set size (VmHWM) in MiB."""
    with open(f"/proc/{daemon.pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_running(daemon, tail, n, t0, timeout):
    """Wait until ``n`` VMs are RUNNING.

    :return: ``(seconds after t0, progress, first)``: ``progress`` lists
        ``(seconds after t0, VMs RUNNING)`` every second; ``first`` is when the
        first ``dispatched to host`` line appeared (seconds after t0, or None).
    """
    seen = set()
    progress = []
    first = None
    next_mark = 1.0
    next_check = 10.0
    while True:
        for line in tail.lines():
            m = RUNNING_LINE.search(line)
            if m:
                seen.add(int(m.group(1)))
            elif first is None and DISPATCH_LINE.search(line):
                first = time.perf_counter() - t0
        now = time.perf_counter() - t0
        if now >= next_mark:
            progress.append((int(now), len(seen)))
            next_mark = int(now) + 1.0
        if len(seen) >= n or now >= next_check:
            count = running_count(daemon)
            if count >= n:
                return time.perf_counter() - t0 if len(seen) < n else now, progress, first
            next_check = now + 5.0
        if now > timeout:
            raise RuntimeError(f"only {len(seen)} of {n} VMs RUNNING after {timeout} s:\n"
                               + daemon.output_tail())
        time.sleep(0.1)


def cycles_from(lines):
    """The scheduler's per-cycle figures (dicts) in these oned.log lines."""
    out = []
    for line in lines:
        m = CYCLE_LINE.search(line)
        if m:
            d = m.groupdict()
            out.append({k: float(v) if "." in v else int(v) for k, v in d.items()})
    return out


# -- the benchmark --------------------------------------------------------------------------

def sched_overrides(args):
    return [f"SCHED_INTERVAL={args.interval}", f"MAX_VM={args.vms}",
            f"MAX_DISPATCH={args.max_dispatch or args.vms}", f"MAX_HOST={args.max_host}"]


def verdict(ok):
    return "met" if ok else "MISSED"


def report_prober(label, what, prober, t0, t_end):
    """Print one prober's latencies over [t0, t_end]; return a table row or None."""
    f = prober.figures(since=t0, until=t_end)
    if not f:
        return None
    print(f"[{label}] {what} during placement: {f['calls']} calls, "
          f"p50 {f['p50'] * 1000:.1f} ms, p99 {f['p99'] * 1000:.0f} ms, "
          f"max {f['max'] * 1000:.0f} ms, {f['over_100ms']} over 100 ms"
          + (f", {prober.errors} errors" if prober.errors else ""))
    worst = sorted(((d, t) for t, d in prober.samples if t0 <= t <= t_end), reverse=True)[:3]
    print(f"[{label}]   slowest: " + ", ".join(f"{d * 1000:.0f} ms at {t - t0:.1f} s"
                                            for d, t in worst))
    return (f"{label}: {what} during placement",
            f"p50/p99/max {f['p50'] * 1000:.0f}/{f['p99'] * 1000:.0f}/{f['max'] * 1000:.0f} ms",
            "")


def start_probers(daemon, vid=0):
    """Start timing ``one.vm.info`` of VM ``vid`` (every 20 ms) and
    ``one.vm.allocate`` (every 200 ms); returns ``(reader, writer, start time)``."""
    reader = Prober(daemon, call_vm_info(vid), period=0.02)
    writer = Prober(daemon, call_vm_allocate, period=0.2)
    reader.start()
    writer.start()
    return reader, writer, time.perf_counter()


def measure(daemon, args, t0, label, probers=None):
    """Watch the placement started at ``t0``; print figures; return table rows.

    :param probers: :func:`start_probers`'s result when the probes started
        earlier (live mode: with the allocations); else they start now.
    """
    tail = LogTail(daemon)
    tail.start = tail.offset = getattr(daemon, "_log_mark", tail.offset)
    reader, writer, probe_t0 = probers or start_probers(daemon)
    probe_t0 = min(probe_t0, t0)
    cpu0, rcpu0, dcpu0 = (daemon.cpu_seconds(), reactor_cpu_seconds(daemon),
                          drivers_cpu_seconds(daemon))
    load0 = os.getloadavg()[0]
    try:
        with common.maybe_spy(daemon, args.spy, f"placement_{label}"):
            wall, progress, first = wait_running(daemon, tail, args.vms, t0, args.timeout)
    finally:
        reader.stop()
        writer.stop()
    cpu = daemon.cpu_seconds() - cpu0
    dcpu = drivers_cpu_seconds(daemon) - dcpu0
    rcpu = reactor_cpu_seconds(daemon) - rcpu0
    t_end = t0 + wall
    rss, peak = daemon.rss_mb(), peak_rss_mb(daemon)
    cycles = cycles_from(tail.all_lines())
    busy = [c for c in cycles if c["dispatched"]]
    rows = []
    e2e = args.vms / wall
    print(f"[{label}] every VM RUNNING {wall:.1f} s after "
          f"{'the restart' if label == 'backlog' else 'the last allocation'}: "
          f"{e2e:.0f} VMs/s end to end; daemon CPU {100 * cpu / wall:.0f}% (reactor thread "
          f"{100 * rcpu / wall:.0f}%), drivers {100 * dcpu / wall:.0f}% "
          f"(load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)")
    if label == "backlog" and first is not None:
        e2e = args.vms / (wall - first)
        print(f"[{label}] first dispatch {first:.1f} s after the restart (start-up and "
              f"SCHED_INTERVAL); from there to every VM RUNNING {wall - first:.1f} s: "
              f"{e2e:.0f} VMs/s")
    step = max(1, int(wall) // 10)
    marks = [p for p in progress if p[0] % step == 0][:12]
    print(f"[{label}] RUNNING over time: " + ", ".join(f"{s}s:{c}" for s, c in marks))
    if busy:
        dispatched = sum(c["dispatched"] for c in busy)
        decide = sum(c["decide"] for c in busy)
        cwall = sum(c["wall"] for c in busy)
        deploy = sum(c["deploy"] for c in busy)
        longest = max(c["slice"] for c in busy)
        decisions = dispatched / max(decide, 1e-9)
        rate = dispatched / max(cwall, 1e-9)
        print(f"[{label}] scheduler: {len(busy)} cycles dispatched {dispatched} VMs "
              f"(largest {max(c['dispatched'] for c in busy)}, "
              f"{max(c['groups'] for c in busy)} groups, {busy[0]['hosts']} hosts)")
        print(f"[{label}] scheduler decisions: {decisions:.0f} VMs/s ({decide:.3f} s in all)")
        print(f"[{label}] dispatch: {rate:.0f} VMs/s over cycle wall time ({cwall:.2f} s; "
              f"deploy calls {deploy:.2f} s; {sum(c['yields'] for c in busy)} yields, "
              f"longest slice {longest * 1000:.0f} ms)")
        rows.append((f"{label}: scheduler decisions", f"{decisions:.0f} /s",
                     f">= {TARGET_RATE}/s: {verdict(decisions >= TARGET_RATE)}"))
        rows.append((f"{label}: dispatch (PENDING -> PROLOG committed)", f"{rate:.0f} /s", ""))
        rows.append((f"{label}: longest scheduler slice", f"{longest * 1000:.0f} ms", ""))
    else:
        print(f"[{label}] (no scheduler cycle lines in oned.log)")
    since = "last allocation" if label == "live" else (
        "first dispatch" if first is not None else "restart")
    # Daemon CPU per VM placed: moves less with other work on the machine
    # than the wall-clock rate does (the reactor, file and database threads
    # share one interpreter lock: the daemon is bound by this figure).
    cpu_ms = 1000 * cpu / args.vms
    print(f"[{label}] summary: {since} to all {args.vms} RUNNING {args.vms / e2e:.1f} s, "
          f"{e2e:.0f} VMs/s = {e2e / BASELINE_RATE:.2f}x the recorded {BASELINE_RATE} VMs/s "
          f"(bench/README.md); daemon CPU {cpu_ms:.2f} ms per VM; load average "
          f"{load0:.1f}-{os.getloadavg()[0]:.1f}; goal all RUNNING in < {GOAL_SECONDS} s"
          + (f" for 10,000: {verdict(args.vms / e2e < GOAL_SECONDS)}" if args.vms == 10000
             else ""))
    rows.append((f"{label}: daemon CPU per VM placed", f"{cpu_ms:.2f} ms", ""))
    rows.append((f"{label}: {since} to all {args.vms} RUNNING",
                 f"{args.vms / e2e:.1f} s ({e2e:.0f} VMs/s)",
                 f">= {TARGET_RATE}/s: {verdict(e2e >= TARGET_RATE)}"))
    for what, prober in (("one.vm.info", reader), ("one.vm.allocate", writer)):
        row = report_prober(label, what, prober, probe_t0, t_end)
        if row:
            rows.append(row)
    print(f"[{label}] daemon RSS: {rss:.1f} MiB with {args.vms} VMs RUNNING "
          f"(peak {peak:.1f} MiB)")
    rows.append((f"{label}: daemon RSS, {args.vms} VMs RUNNING",
                 f"{rss:.1f} MiB (peak {peak:.1f})",
                 f"< {TARGET_RSS} MB: {verdict(peak * 1.048576 < TARGET_RSS)}"))
    return rows, wall


def prepare(daemon, args):
    """Hosts (all MONITORED), then the VMs; prints both."""
    t_alloc, t_mon = add_hosts(daemon, args.hosts, args.workers)
    print(f"hosts: {args.hosts} allocated in {t_alloc:.1f} s, all MONITORED after {t_mon:.1f} s")
    t, rate = common.fill(daemon, args.vms, args.workers, VM_TEMPLATE)
    print(f"vm.allocate: {args.vms} VMs in {t:.1f} s ({rate:.0f}/s, {args.workers} clients)")


#: common.QUIET without SCHED_INTERVAL (a repeated ``--set`` of a key adds a
#: second value, the first one is read: the keys must not be given twice).
QUIET_BUT_SCHEDULER = ["MANAGER_TIMER=3600", "HOST_MONITORING_INTERVAL=3600",
                       "VM_POLLING_INTERVAL=3600"]


def run_backlog(args):
    with common.Daemon(args.overrides, keep=args.keep, profile=args.profile) as daemon:
        prepare(daemon, args)
        log = os.path.join(daemon.location, "var", "oned.log")
        t0 = time.perf_counter()
        daemon.restart(QUIET_BUT_SCHEDULER + sched_overrides(args) + args.overrides,
                       quiet=False)
        ready = time.perf_counter() - t0
        daemon._log_mark = 0
        with contextlib.suppress(OSError):
            # Only the restarted daemon's lines: from its start-up line on.
            with open(log, "rb") as f:
                data = f.read()
            daemon._log_mark = data.rfind(b"Init OpenNebula Log system")
            daemon._log_mark = data.rfind(b"\n", 0, max(daemon._log_mark, 0)) + 1
        print(f"[backlog] restarted with the scheduler on ({' '.join(sched_overrides(args))}); "
              f"answering after {ready:.1f} s (loads {args.vms} VMs, {args.hosts} hosts)")
        return measure(daemon, args, t0, "backlog")[0]


def run_live(args):
    overrides = QUIET_BUT_SCHEDULER + sched_overrides(args) + args.overrides
    with common.Daemon(overrides, quiet=False, keep=args.keep, profile=args.profile) as daemon:
        t_alloc, t_mon = add_hosts(daemon, args.hosts, args.workers)
        print(f"[live] hosts: {args.hosts} allocated in {t_alloc:.1f} s, all MONITORED "
              f"after {t_mon:.1f} s")
        daemon._log_mark = os.path.getsize(os.path.join(daemon.location, "var", "oned.log"))
        # A VM to read during the fill (it fits no host: it stays PENDING).
        ok, vid, _ = daemon.proxy().one.vm.allocate(daemon.session, NOWHERE_TEMPLATE)
        if not ok:
            raise RuntimeError(vid)
        probers = start_probers(daemon, vid)
        t, rate = common.fill(daemon, args.vms, args.workers, VM_TEMPLATE)
        t0 = time.perf_counter()
        print(f"[live] vm.allocate with the scheduler on: {args.vms} VMs in {t:.1f} s "
              f"({rate:.0f}/s; latencies below are from the first allocation on)")
        rows, wall = measure(daemon, args, t0, "live", probers)
        total = t + wall
        print(f"[live] first allocation to every VM RUNNING: {total:.1f} s "
              f"({args.vms / total:.0f} VMs/s, allocation included)")
        rows.insert(0, ("live: vm.allocate with the scheduler on", f"{rate:.0f} /s", ""))
        rows.append(("live: first allocation to all RUNNING",
                     f"{total:.1f} s ({args.vms / total:.0f} VMs/s)", ""))
        return rows


def scheduler_alone(hosts, vms, max_host):
    """One cycle of the real Scheduler in this process, over in-memory pools,
    with a DispatchManager that only marks the VM deployed: the scheduler's
    own cost without the deploy path, the database or a daemon around it.

    :return: the cycle's figures (:attr:`Scheduler.last_cycle`).
    """
    from twisted.internet import task

    from nebtwist.core.config import Config
    from nebtwist.core.templates import compile_expressions
    from nebtwist.core.objects import (ACTIVE, HOST_MONITORED, PENDING, Host, HostShare,
                                       VirtualMachine)
    from nebtwist.core.scheduler import Scheduler
    from nebtwist.template import Template

    class Pool:
        def __init__(self):
            self.objects = {}

    class Core:
        clock = task.Clock()
        config = Config(Template.parse(f"MAX_VM = {vms}\nMAX_DISPATCH = {vms}\n"
                                       f"MAX_HOST = {max_host}\n"))
        hostpool = Pool()
        vmpool = Pool()

    class Dispatch:
        async def deploy(self, vm, host):
            vm.state = ACTIVE

    mem = 16 * 1024 * 1024
    for i in range(hosts):
        Core.hostpool.objects[i] = Host(
            i, f"host{i:04d}", "im_dummy", "vmm_dummy", state=HOST_MONITORED,
            share=HostShare(max_cpu=800, free_cpu=800, max_mem=mem, free_mem=mem))
    for i in range(vms):
        t = Template.parse(VM_TEMPLATE)
        vm = VirtualMachine(i, f"one-{i}", 0, 0, "oneadmin", "oneadmin", None, t,
                            state=PENDING)
        compile_expressions(vm, t)
        Core.vmpool.objects[i] = vm
    # wall-clock slices and figures (the scheduler's default times itself on
    # its clock, which is a fake one here)
    sched = Scheduler(Core, Dispatch(), timer=time.perf_counter)
    d = sched.cycle()
    while not d.called:
        Core.clock.advance(0)
    return sched.last_cycle


def opennebula_note(n):
    """What OpenNebula's default limits would take for ``n`` VMs (computed)."""
    lines = []
    for what, per, interval in (
            ("3.4 sched.conf (SCHED_INTERVAL 30, MAX_DISPATCH 30, MAX_HOST 1)", 30, 30),
            ("the issue's 30 per 15 s cycle", 30, 15)):
        seconds = -(-n // per) * interval
        lines.append(f"{what}: {per / interval:.0f} VM/s, {n} VMs in {seconds} s "
                     f"({seconds / 3600:.1f} h)")
    return lines


def run(argv=None):
    parser = common.new_parser(__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000, help="dummy hosts (default 1000)")
    parser.add_argument("--vms", type=int, default=10000, help="VMs to place (default 10000)")
    parser.add_argument("--max-host", type=int, default=20,
                        help="MAX_HOST: VMs per host per cycle (default 20)")
    parser.add_argument("--max-dispatch", type=int, default=0,
                        help="MAX_DISPATCH (default: --vms)")
    parser.add_argument("--interval", type=float, default=1, help="SCHED_INTERVAL (default 1)")
    parser.add_argument("--mode", choices=("backlog", "live", "both"), default="backlog")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds to wait for every VM RUNNING (default 900)")
    args = parser.parse_args(argv)
    print(common.machine_note())
    rows = []
    alone = scheduler_alone(args.hosts, args.vms, args.max_host)
    rate = alone["dispatched"] / max(alone["decide"], 1e-9)
    print(f"scheduler alone (in this process, no deploy path): {alone['dispatched']} VMs "
          f"on {alone['hosts']} hosts in {alone['wall']:.3f} s, decisions {rate:.0f} VMs/s")
    rows.append(("scheduler alone: decisions", f"{rate:.0f} /s",
                 f">= {TARGET_RATE}/s: {verdict(rate >= TARGET_RATE)}"))
    if args.mode in ("backlog", "both"):
        rows += run_backlog(args)
    if args.mode in ("live", "both"):
        rows += run_live(args)
    note = opennebula_note(args.vms)
    print("OpenNebula's default limits (computed, not measured):")
    for line in note:
        print("  " + line)
    rows.append(("OpenNebula 3.4 defaults (computed)", note[0].split(": ", 1)[1], ""))
    if args.profile:
        common.print_profile(args.profile)
    return rows


if __name__ == "__main__":
    # SIGTERM (e.g. from timeout(1)) unwinds like Ctrl-C, so the daemon is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run()
