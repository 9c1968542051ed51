"""one.vm.info calls per second from client processes (design target > 1,000/s).

Fills the pool with 1,000 PENDING VMs, then each client process calls
``one.vm.info`` on random ids for a few seconds over one keep-alive
connection (``xmlrpc.client.ServerProxy``), timing every call. Runs with 1 and
with 2 client processes by default and prints, per run::

    vm.info: 1234 calls/s (1 client), p50 0.8 ms, p99 2.1 ms, daemon CPU 97%

Usage: ``python bench/bench_vm_info.py [--vms 1000] [--seconds 5] [--clients 1,2]``.
"""

import os
import random
import sys
import time
import xmlrpc.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

TARGET = 1000.0


def _client(url, session, ids, seconds, start_at, seed, queue):
    try:
        rng = random.Random(seed)
        server = xmlrpc.client.ServerProxy(url)
        server.one.vm.info(session, ids[0])  # connect outside the timed window
        sock = server._ServerProxy__transport._connection[1].sock
        lat = []
        errors = 0
        while time.time() < start_at:
            time.sleep(0.001)
        end = time.perf_counter() + seconds
        now = time.perf_counter()
        t_begin = now
        while now < end:
            vid = rng.choice(ids)
            r = server.one.vm.info(session, vid)
            t = time.perf_counter()
            lat.append(t - now)
            now = t
            if not r[0]:
                errors += 1
        # One connection for the whole run: the same socket object is still in use.
        same = server._ServerProxy__transport._connection[1].sock is sock
        queue.put((lat, now - t_begin, errors, same, None))
    except BaseException as e:  # noqa: BLE001 - report to the parent
        queue.put(([], 0.0, 0, False, f"{type(e).__name__}: {e}"))


def measure(daemon, ids, clients, seconds):
    """Run ``clients`` processes for ``seconds``; return a dict of figures."""
    queue = common._mp.Queue()
    start_at = time.time() + 0.5
    procs = [common._mp.Process(target=_client, args=(daemon.url, daemon.session, ids, seconds,
                                                      start_at, 1000 + i, queue))
             for i in range(clients)]
    for p in procs:
        p.start()
    while time.time() < start_at:
        time.sleep(0.001)
    cpu0, wall0 = daemon.cpu_seconds(), time.perf_counter()
    results = [queue.get() for _ in procs]
    cpu1, wall1 = daemon.cpu_seconds(), time.perf_counter()
    for p in procs:
        p.join()
    errs = [r[4] for r in results if r[4]]
    if errs:
        raise RuntimeError(f"client failed: {errs[0]}")
    lat = sorted(x for r in results for x in r[0])
    calls = len(lat)
    rate = sum(len(r[0]) / r[1] for r in results)
    return {
        "clients": clients,
        "calls": calls,
        "rate": rate,
        "p50": common.percentile(lat, 50) * 1000,
        "p99": common.percentile(lat, 99) * 1000,
        "max": lat[-1] * 1000 if lat else float("nan"),
        "errors": sum(r[2] for r in results),
        "keepalive": all(r[3] for r in results),
        "cpu": (cpu1 - cpu0) / (wall1 - wall0) * 100,
    }


def run(argv=None):
    parser = common.new_parser(__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=1000, help="VMs in the pool (default 1000)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="length of each run (default 5)")
    parser.add_argument("--clients", default="1,2",
                        help="comma-separated client process counts (default 1,2)")
    args = parser.parse_args(argv)
    print(common.machine_note())
    rows = []
    with common.Daemon(args.overrides, keep=args.keep, profile=args.profile) as daemon:
        alloc = common.fill_and_report(daemon, args.vms, args.workers, args.spy)
        rows.append(("vm.allocate (fill)", f"{alloc:.0f} /s", ""))
        ids = common.pool_ids(daemon)
        size = len(daemon.proxy().one.vm.info(daemon.session, ids[0])[1])
        print(f"vm.info response: {size} bytes of <VM> XML")
        for n in (int(c) for c in args.clients.split(",")):
            with common.maybe_spy(daemon, args.spy, f"vm_info_{n}clients"):
                m = measure(daemon, ids, n, args.seconds)
            ka = "" if m["keepalive"] else ", connection NOT kept alive"
            err = f", {m['errors']} errors" if m["errors"] else ""
            print(f"vm.info: {m['rate']:.0f} calls/s ({n} client{'s' if n > 1 else ''}), "
                  f"p50 {m['p50']:.2f} ms, p99 {m['p99']:.2f} ms, max {m['max']:.1f} ms, "
                  f"daemon CPU {m['cpu']:.0f}% ({m['calls']} calls{err}{ka})")
            verdict = "met" if m["rate"] > TARGET else "MISSED"
            rows.append((f"vm.info, {n} client{'s' if n > 1 else ''}",
                         f"{m['rate']:.0f} calls/s, p50 {m['p50']:.2f} ms, "
                         f"p99 {m['p99']:.2f} ms", f"> {TARGET:.0f}/s: {verdict}"))
        rss = daemon.rss_mb()
        print(f"daemon RSS after the runs: {rss:.1f} MiB")
    if args.profile:
        common.print_profile(args.profile)
    return rows


if __name__ == "__main__":
    run()
