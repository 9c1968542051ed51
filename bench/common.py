"""Shared helpers for the benchmarks: a real daemon, filling its VM pool, figures.

:class:`Daemon` runs ``twistd -n --pidfile= nebula --set PORT=N`` as a
subprocess in a fresh temporary ``$ONE_LOCATION`` with the shipped dummy
drivers, waits until the XML-RPC port answers, and always stops it (SIGTERM,
then SIGKILL of its own process group) when the ``with`` block ends, also on
error or Ctrl-C. By default the scheduler and the manager timers are set to
an hour, so allocated VMs stay PENDING and nothing but the benchmark's calls
runs in the daemon.

:func:`fill` allocates N VMs with ``one.vm.allocate`` from several client
processes, each with its own keep-alive connection, and reports the rate.

These are benchmarks that print their figures, not timed tests: nothing here
asserts a target.
"""

import argparse
import contextlib
import http.client
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xmlrpc.client

SESSION = "oneadmin:benchpass"

#: oned.conf overrides that keep the daemon quiet during a benchmark.
QUIET = ("SCHED_INTERVAL=3600", "MANAGER_TIMER=3600",
         "HOST_MONITORING_INTERVAL=3600", "VM_POLLING_INTERVAL=3600")

#: The template every benchmark VM is allocated from (no NIC: no network needed;
#: a DISK by SOURCE, since ``IMAGE = name`` needs an image in the repository).
VM_TEMPLATE = ('CPU = "0.1"\nMEMORY = "64"\n'
               'DISK = [ SOURCE = "/srv/images/ttylinux.img", TARGET = "hda" ]\n')

#: Client processes are forked (cheap on Linux; they only need the standard library).
_mp = multiprocessing.get_context("fork")


def machine_note():
    """One line describing where the figures were measured."""
    return (f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"{os.uname().sysname} {os.uname().release}")


def loadavg():
    """The 1, 5 and 15 minute load averages as one string ("0.52 0.61 0.70")."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def get_lab():
    """The real-hypervisor lab (``tests.hvlab.Lab``) for benchmarks that need it, or
    None after printing why it cannot be used (no lab up, not root, tests not importable)."""
    try:
        from tests.hvlab import load_lab
        from twisted.trial.unittest import SkipTest
    except ImportError as e:
        print(f"SKIP: tests.hvlab not importable ({e})")
        return None
    try:
        return load_lab()
    except SkipTest as e:
        print(f"SKIP: {e}")
        return None


def free_port():
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=30):
    """Wait until something accepts connections on 127.0.0.1:``port``.

    :param proc: the ``subprocess.Popen`` expected to listen; its exit is an error.
    :raises RuntimeError: it exited, or nothing listened in ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


@contextlib.contextmanager
def peer_server(argv, port, folder, name):
    """Run a peer server (moto, a null sink) for the ``with`` block.

    Starts ``argv`` in ``folder`` (its output in ``folder/<name>.log``), waits
    until it listens on ``port`` and yields the ``Popen``; at the end of the
    block it is terminated (killed after 10 s), on error too.
    """
    log = open(os.path.join(folder, f"{name}.log"), "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=folder)
    try:
        wait_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Daemon:
    """A real nebtwist daemon in a temporary ONE_LOCATION.

    :param overrides: extra ``KEY=VALUE`` for ``--set`` (after :data:`QUIET`
        when ``quiet``).
    :param quiet: add :data:`QUIET` (scheduler and timers once an hour).
    :param keep: keep the temporary directory (its path is printed).
    :param profile: write a cProfile of the whole daemon run to this path
        (twistd ``--profile --profiler=cprofile --savestats``; slows it down).
    :param start_timeout: seconds to wait for the port.
    """

    def __init__(self, overrides=(), quiet=True, keep=False, profile=None, start_timeout=60):
        self.overrides = (list(QUIET) if quiet else []) + list(overrides)
        self.keep = keep
        self.profile = profile
        self.start_timeout = start_timeout
        self.port = None
        self.proc = None
        self.location = None
        self.session = SESSION

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/RPC2"

    @property
    def pid(self):
        return self.proc.pid

    def proxy(self):
        """A new keep-alive XML-RPC proxy to the daemon."""
        return xmlrpc.client.ServerProxy(self.url)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        if self.location is None:  # a restart (see restart()) keeps its location
            self.location = tempfile.mkdtemp(prefix="nebtwist-bench-")
        auth = os.path.join(self.location, "one_auth")
        with open(auth, "w", encoding="utf-8") as f:
            f.write(self.session + "\n")
        self.port = free_port()
        env = dict(os.environ, ONE_LOCATION=self.location, ONE_AUTH=auth)
        twistd = shutil.which("twistd") or "twistd"
        cmd = [twistd, "-n", "--pidfile="]
        if self.profile:
            cmd += [f"--profile={os.path.abspath(self.profile)}", "--profiler=cprofile",
                    "--savestats"]
        cmd += ["nebula", "--set", f"PORT={self.port}"]
        for o in self.overrides:
            cmd += ["--set", o]
        self._out = open(os.path.join(self.location, "twistd.out"), "ab")
        # Own session: the daemon and its drivers form one process group that
        # stop() can end without touching anything else.
        self.proc = subprocess.Popen(cmd, cwd=self.location, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode} during start-up:\n"
                                   + self.output_tail())
            try:
                version = self.proxy().one.system.version(self.session)
                if version[0]:
                    return
            except (OSError, http.client.HTTPException, xmlrpc.client.Error):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not answer on port {self.port} in "
                                   f"{self.start_timeout} s:\n" + self.output_tail())
            time.sleep(0.1)

    def output_tail(self, n=30):
        """The last lines of twistd's output and of oned.log."""
        out = []
        for name in ("twistd.out", os.path.join("var", "oned.log")):
            path = os.path.join(self.location, name)
            with contextlib.suppress(OSError), open(path, errors="replace") as f:
                out.append(f"--- {name}\n" + "".join(f.readlines()[-n:]))
        return "\n".join(out)

    def rss_mb(self):
        """The daemon's resident set size (VmRSS) in MiB."""
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self):
        """User + system CPU seconds the daemon process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def restart(self, overrides=None, quiet=True):
        """Stop the daemon and start it again in the same ``ONE_LOCATION`` (same
        database, oned.log and one_auth) on a new port.

        :param overrides: new ``--set`` overrides (after :data:`QUIET` when
            ``quiet``); None keeps the current ones. A key given twice gets
            two values and the first is read, so a key of :data:`QUIET`
            (SCHED_INTERVAL, ...) takes a new value only with ``quiet=False``.
        """
        self.stop(remove=False)
        if overrides is not None:
            self.overrides = (list(QUIET) if quiet else []) + list(overrides)
        for attempt in range(3):
            try:
                self.start()
                return
            except RuntimeError as e:
                # The new free port can be taken by another process meanwhile.
                if "Address already in use" not in str(e) or attempt == 2:
                    raise
                self.stop(remove=False)

    def stop(self, timeout=30, remove=True):
        """Stop the daemon (SIGTERM, then SIGKILL to its group) and clean up
        (``remove=False``: keep the temporary location, for :meth:`restart`)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            # The drivers are children of the daemon, in its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.proc = proc  # keep pid for messages; poll() says it ended
        if getattr(self, "_out", None) is not None:
            self._out.close()
            self._out = None
        if self.location and os.path.isdir(self.location) and remove:
            if self.keep:
                print(f"(kept {self.location})")
            else:
                shutil.rmtree(self.location, ignore_errors=True)
            self.location = None


# -- filling the pool ------------------------------------------------------------------------

def _allocate_worker(url, session, count, template, queue):
    try:
        server = xmlrpc.client.ServerProxy(url)
        errors = 0
        first = None
        for _ in range(count):
            r = server.one.vm.allocate(session, template)
            if not r[0]:
                errors += 1
                first = first or r[1]
        queue.put((errors, first))
    except BaseException as e:  # noqa: BLE001 - report to the parent
        queue.put((count, f"{type(e).__name__}: {e}"))


def fill(daemon, n, workers=4, template=VM_TEMPLATE):
    """Allocate ``n`` VMs from ``workers`` client processes.

    :return: ``(seconds, allocations_per_second)``.
    :raises RuntimeError: any allocation failed.
    """
    workers = max(1, min(workers, n))
    share = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    queue = _mp.Queue()
    procs = [_mp.Process(target=_allocate_worker,
                         args=(daemon.url, daemon.session, c, template, queue))
             for c in share]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    failed = sum(e for e, _ in results)
    if failed:
        first = next(m for e, m in results if m)
        raise RuntimeError(f"{failed} of {n} allocations failed; first: {first}")
    return elapsed, n / elapsed


def fill_and_report(daemon, n, workers=4, spy=None):
    """:func:`fill`, printing the figures; returns the allocation rate.

    :param spy: py-spy output prefix (see :func:`maybe_spy`), or None.
    """
    before = daemon.rss_mb()
    # Large fills go in five parts, to show whether allocation slows as the pool grows.
    parts = 5 if n >= 5000 else 1
    sizes = [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
    rates = []
    elapsed = 0.0
    with maybe_spy(daemon, spy, "allocate"):
        for size in sizes:
            t, r = fill(daemon, size, workers)
            elapsed += t
            rates.append(r)
    rate = n / elapsed
    count = len(pool_ids(daemon))
    if count < n:
        raise RuntimeError(f"pool holds {count} VMs after allocating {n}")
    each = (f"; by fifths of the fill: {', '.join(f'{r:.0f}' for r in rates)}/s"
            if parts > 1 else "")
    print(f"vm.allocate: {rate:.0f} allocations/s ({n} VMs in {elapsed:.1f} s, "
          f"{workers} client processes{each})")
    print(f"daemon RSS: {before:.1f} MiB empty, {daemon.rss_mb():.1f} MiB with {count} VMs")
    return rate


def pool_ids(daemon):
    """The ids in the VM pool (one ``one.vmpool.info`` call, parsed with lxml)."""
    from lxml import etree

    ok, body, _ = daemon.proxy().one.vmpool.info(daemon.session, -2, -1, -1, -1)
    if not ok:
        raise RuntimeError(body)
    return [int(x) for x in etree.fromstring(body.encode()).xpath("/VM_POOL/VM/ID/text()")]


# -- figures ------------------------------------------------------------------------------

def table(head, rows):
    """Plain-text table: ``head`` a tuple of column titles, ``rows`` tuples of the
    same length (any values, shown with ``str``); columns padded, rules around."""
    widths = [max(len(str(r[i])) for r in list(rows) + [head]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    out = [line, "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    out.append(line)
    return "\n".join(out)


def percentile(sorted_values, p):
    """The ``p``-th percentile (0..100) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def common_arguments(parser):
    """Arguments every benchmark takes."""
    parser.add_argument("--workers", type=int, default=4,
                        help="client processes filling the pool (default 4)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the daemon's temporary ONE_LOCATION")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile the daemon into FILE (pstats; slows it down)")
    parser.add_argument("--spy", metavar="PREFIX",
                        help="sample the daemon with py-spy during each phase, into "
                             "PREFIX.<phase>.txt, and print the top functions")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="extra oned.conf override (repeatable)")
    return parser


def new_parser(description):
    return common_arguments(argparse.ArgumentParser(description=description))


def print_profile(path, n=25):
    """Print the top ``n`` cumulative and own-time entries of a pstats file."""
    import pstats

    if not os.path.exists(path):
        print(f"(no profile written to {path})")
        return
    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(n)
    stats.sort_stats("cumulative").print_stats(n)


# -- sampling the daemon with py-spy (optional: pip install py-spy) ------------------------

class Spy:
    """``py-spy record`` of the daemon's main thread while a ``with`` block runs.

    Samples only what the daemon does during the block (unlike ``--profile``,
    which covers the whole run, fill included, and slows every call down).
    Writes collapsed stacks to ``path``; :meth:`summary` prints the top
    functions by own and by inclusive samples.
    """

    def __init__(self, daemon, path, rate=500):
        self.daemon = daemon
        self.path = os.path.abspath(path)
        self.rate = rate
        self.proc = None

    def __enter__(self):
        exe = shutil.which("py-spy")
        if exe is None:
            print("(py-spy not installed: pip install py-spy; not sampling)")
            return self
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(self.daemon.pid), "--format", "raw",
             "--rate", str(self.rate), "--nonblocking", "-o", self.path],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # let it attach
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return False

    def summary(self, n=20):
        """Print the top ``n`` functions of the reactor thread (own and inclusive
        share of its busy samples) and how busy the other threads were."""
        if not os.path.exists(self.path):
            print(f"(no py-spy output in {self.path})")
            return
        own, incl, main, other = {}, {}, 0, 0
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if not count.isdigit():
                    continue
                c = int(count)
                frames = stack.split(";")
                if not frames[0].startswith("<module> (twistd"):
                    other += c  # database and other pool threads
                    continue
                main += c
                # "func (file:line)" -> "func (file)": one entry per function.
                names = [re.sub(r":\d+\)$", ")", fr) for fr in frames]
                own[names[-1]] = own.get(names[-1], 0) + c
                for fr in set(names):
                    incl[fr] = incl.get(fr, 0) + c
        print(f"py-spy: {main} busy samples of the reactor thread, {other} of other threads "
              f"at {self.rate}/s ({self.path})")
        for title, table in (("own", own), ("inclusive", incl)):
            print(f"  reactor thread, top {n} by {title} samples:")
            # Frames in every sample (twistd's start-up stack) say nothing.
            rows = [(fr, c) for fr, c in table.items() if c < main or table is own]
            for fr, c in sorted(rows, key=lambda kv: -kv[1])[:n]:
                print(f"    {100 * c / max(main, 1):5.1f}%  {fr}")


@contextlib.contextmanager
def maybe_spy(daemon, prefix, phase, n=15):
    """A :class:`Spy` of ``phase`` into ``PREFIX.<phase>.txt`` when ``prefix`` is set."""
    if not prefix:
        yield None
        return
    spy = Spy(daemon, f"{prefix}.{phase}.txt")
    with spy:
        yield spy
    print(f"--- {phase}")
    spy.summary(n)
