"""Responsiveness under load: one.vm.info latency while clients poll one.vmpool.info.

Issue 9 (section 5) goal: 200 concurrent clients on 10,000 VMs, 10 of them
polling ``one.vmpool.info``: 0 errors and ``one.vm.info`` p99 under 100 ms.

Fills the pool with ``--vms`` PENDING VMs, then runs three phases of
``--seconds`` each against the same daemon, with the same clients:

1. ``floor``: ``--clients`` clients calling ``one.system.version`` (no pool
   work at all: what HTTP, XML-RPC parsing, authentication and the clients
   themselves cost on this machine);
2. ``vm.info``: the same clients calling ``one.vm.info`` on random VMs;
3. ``vm.info + pool``: ``--pollers`` of the clients poll
   ``one.vmpool.info(-2, -1, -1, -1)`` back to back instead (each reply is the
   whole 10,000-VM pool), the others keep calling ``one.vm.info``. With
   ``--churn`` calls/s of ``one.vm.chmod`` from one more client, so the pool
   changes under the pollers and listings are rebuilt (not only answered
   from the shared build).

Each ``one.vm.info`` client calls once every ``--interval`` seconds (open
loop, random phase): 200 clients each waiting for its answer and asking again
at once (``--interval 0``, closed loop) mostly measure the queue (latency =
clients / throughput) and the clients' own CPU, not responsiveness. Latency is measured from the moment a call was due, so a
late answer also delays (and counts against) the next call. Clients are raw
HTTP/1.1 keep-alive connections driven by asyncio in several processes
(``--procs``), with pre-built request bodies: cheap enough that 200 of them
do not saturate the 2 cores the daemon shares with them; pollers read the
whole reply and check its status and end but do not parse it.

Prints per phase: calls, errors, p50/p99/max latency, pool polls and MB/s,
the daemon's CPU, the load average, and the ratio of the loaded p99 to the
floor's p99.

Usage: ``python bench/bench_load.py [--vms 10000] [--clients 200] [--pollers 10]``.
"""

import asyncio
import os
import random
import sys
import time
import xmlrpc.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

TARGET_P99 = 0.100


def _post(port, body):
    return (b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: text/xml\r\n"
            b"Content-Length: %d\r\n\r\n" % (port, len(body))) + body


async def _exchange(reader, writer, request):
    """Send one request and read its whole response; returns (status, body)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("response without Content-Length")
    body = await reader.readexactly(length)
    return status, body


def _ok(status, body):
    return status == 200 and b"<boolean>1</boolean>" in body[:300] and \
        body.rstrip().endswith(b"</methodResponse>")


async def _caller(port, requests, interval, start, end, rng, out, label="call"):
    """Open loop: one call every ``interval`` s from ``start`` (plus a random
    phase) until ``end``; latency from the time each call was due."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    due = start + rng.uniform(0, max(interval, 0))
    lat, errors, first_error = [], 0, None
    try:
        while due < end:
            now = loop.time()
            if interval <= 0:
                due = now  # closed loop: ask again as soon as answered
            elif due > now:
                await asyncio.sleep(due - now)
            try:
                status, body = await _exchange(reader, writer, rng.choice(requests))
                if not _ok(status, body):
                    errors += 1
                    first_error = first_error or body[:200]
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                errors += 1
                first_error = first_error or repr(e)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            lat.append(loop.time() - due)
            due = due + interval if interval > 0 else loop.time()
    finally:
        writer.close()
    out.append((label, lat, errors, first_error, 0))


async def _poller(port, request, start, end, out):
    """Closed loop: ask again as soon as the previous reply was read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    lat, errors, first_error, nbytes = [], 0, None, 0
    now = loop.time()
    if start > now:
        await asyncio.sleep(start - now)
    try:
        while loop.time() < end:
            t0 = loop.time()
            try:
                status, body = await _exchange(reader, writer, request)
                nbytes += len(body)
                if not _ok(status, body):
                    errors += 1
                    first_error = first_error or body[:200]
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                errors += 1
                first_error = first_error or repr(e)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            lat.append(loop.time() - t0)
    finally:
        writer.close()
    out.append(("poll", lat, errors, first_error, nbytes))


def _process(port, specs, start_at, seconds, seed, queue):
    """One client process: run ``specs`` (kind, requests, interval) together."""
    try:
        async def main():
            loop = asyncio.get_running_loop()
            start = loop.time() + max(0.0, start_at - time.time())
            end = start + seconds
            rng = random.Random(seed)
            out = []
            tasks = []
            for kind, requests, interval in specs:
                if kind == "poll":
                    tasks.append(_poller(port, requests[0], start, end, out))
                else:
                    tasks.append(_caller(port, requests, interval, start, end,
                                         random.Random(rng.random()), out, kind))
            await asyncio.gather(*tasks)
            return out

        queue.put((asyncio.run(main()), None))
    except BaseException as e:  # noqa: BLE001 - report to the parent
        queue.put(([], f"{type(e).__name__}: {e}"))


def run_phase(daemon, name, call_requests, clients, pollers, interval, seconds, procs,
              churn_requests=None, churn_rate=0.0):
    """Run one phase; returns a dict of figures."""
    poll_request = _post(daemon.port, xmlrpc.client.dumps(
        (daemon.session, -2, -1, -1, -1), "one.vmpool.info").encode())
    callers = clients - pollers
    # Callers spread over all but one process; pollers (heavy readers) get their own.
    call_procs = max(1, procs - (1 if pollers else 0))
    specs = [[] for _ in range(call_procs)]
    for i in range(callers):
        specs[i % call_procs].append(("call", call_requests, interval))
    if churn_requests and churn_rate > 0:
        specs[0].append(("churn", churn_requests, 1.0 / churn_rate))
    if pollers:
        specs.append([("poll", [poll_request], 0)] * pollers)
    queue = common._mp.Queue()
    start_at = time.time() + 1.0  # every process connected and waiting
    ps = [common._mp.Process(target=_process, args=(daemon.port, s, start_at, seconds,
                                                    100 + i, queue))
          for i, s in enumerate(specs)]
    load0 = os.getloadavg()[0]
    for p in ps:
        p.start()
    cpu0 = None
    while time.time() < start_at:
        time.sleep(0.01)
    cpu0, t0 = daemon.cpu_seconds(), time.perf_counter()
    results = []
    failures = []
    for _ in ps:
        out, err = queue.get()
        results.extend(out)
        if err:
            failures.append(err)
    wall = time.perf_counter() - t0
    cpu = daemon.cpu_seconds() - cpu0
    for p in ps:
        p.join()
    if failures:
        raise RuntimeError(f"{name}: client process failed: {failures[0]}")
    calls = [r for r in results if r[0] == "call"]
    churned = sum(len(r[1]) for r in results if r[0] == "churn")
    lat = sorted(x for r in calls for x in r[1])
    polls = [r for r in results if r[0] == "poll"]
    poll_lat = sorted(x for r in polls for x in r[1])
    errors = sum(r[2] for r in results)
    first = next((r[3] for r in results if r[3]), None)
    return {
        "name": name, "calls": len(lat), "errors": errors, "first_error": first,
        "p50": common.percentile(lat, 50), "p99": common.percentile(lat, 99),
        "max": lat[-1] if lat else float("nan"),
        "over": sum(1 for x in lat if x > TARGET_P99),
        "polls": len(poll_lat), "poll_p50": common.percentile(poll_lat, 50),
        "poll_max": poll_lat[-1] if poll_lat else float("nan"),
        "poll_mb": sum(r[4] for r in polls) / 1e6, "wall": wall, "churned": churned,
        "cpu": cpu / wall if wall else float("nan"), "load": (load0, os.getloadavg()[0]),
    }


def show(r):
    polls = ""
    if r["polls"]:
        polls = (f"; vmpool.info: {r['polls']} replies ({r['polls'] / r['wall']:.1f}/s, "
                 f"{r['poll_mb'] / r['wall']:.0f} MB/s), p50 {r['poll_p50'] * 1000:.0f} ms, "
                 f"max {r['poll_max'] * 1000:.0f} ms")
    if r["churned"]:
        polls += f"; {r['churned']} one.vm.chmod meanwhile"
    print(f"[{r['name']}] {r['calls']} calls ({r['calls'] / r['wall']:.0f}/s), "
          f"{r['errors']} errors, p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms, "
          f"max {r['max'] * 1000:.0f} ms, {r['over']} over {TARGET_P99 * 1000:.0f} ms{polls}; "
          f"daemon CPU {100 * r['cpu']:.0f}%, load average {r['load'][0]:.1f} -> "
          f"{r['load'][1]:.1f}")
    if r["first_error"]:
        print(f"[{r['name']}]   first error: {r['first_error']!r}")


def main(argv=None):
    parser = common.new_parser(__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--pollers", type=int, default=10,
                        help="clients polling one.vmpool.info back to back (default 10)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between one client's calls (default 1; 0: closed "
                             "loop, each client asks again as soon as answered)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase (default 20)")
    parser.add_argument("--procs", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--churn", type=float, default=20.0,
                        help="one.vm.chmod calls/s during the pool phase (default 20; 0: none)")
    args = parser.parse_args(argv)
    print(common.machine_note())
    with common.Daemon(args.overrides, keep=args.keep, profile=args.profile) as daemon:
        common.fill_and_report(daemon, args.vms, args.workers)
        ids = common.pool_ids(daemon)
        rng = random.Random(7)
        session = daemon.session
        version = [_post(daemon.port, xmlrpc.client.dumps((session,),
                                                          "one.system.version").encode())]
        info = [_post(daemon.port, xmlrpc.client.dumps((session, vid), "one.vm.info").encode())
                for vid in rng.sample(ids, min(len(ids), 2000))]
        # chmod keeps the VMs' permissions as they are but is a real change (touch + commit).
        churn = [_post(daemon.port, xmlrpc.client.dumps(
            (session, vid, 1, 1, 0, 0, 0, 0, 0, 0, 0), "one.vm.chmod").encode())
            for vid in rng.sample(ids, min(len(ids), 200))]
        results = []
        with common.maybe_spy(daemon, args.spy, "floor"):
            results.append(run_phase(daemon, "floor: system.version", version, args.clients, 0,
                                     args.interval, args.seconds, args.procs))
        show(results[-1])
        with common.maybe_spy(daemon, args.spy, "vm_info"):
            results.append(run_phase(daemon, "vm.info", info, args.clients, 0, args.interval,
                                     args.seconds, args.procs))
        show(results[-1])
        with common.maybe_spy(daemon, args.spy, "vm_info_pool"):
            results.append(run_phase(daemon, f"vm.info + {args.pollers} vmpool.info pollers",
                                     info, args.clients, args.pollers, args.interval,
                                     args.seconds, args.procs, churn, args.churn))
        show(results[-1])
        floor, loaded = results[0], results[-1]
        errors = sum(r["errors"] for r in results)
        verdict = "met" if loaded["p99"] < TARGET_P99 and errors == 0 else "NOT met"
        print(f"summary: {args.clients} clients on {len(ids)} VMs, {args.pollers} polling "
              f"vmpool.info (+{args.churn:g} chmod/s): vm.info p99 "
              f"{loaded['p99'] * 1000:.1f} ms vs floor (system.version) p99 "
              f"{floor['p99'] * 1000:.1f} ms = {loaded['p99'] / floor['p99']:.1f}x floor; "
              f"vm.info alone p99 {results[1]['p99'] * 1000:.1f} ms; {errors} errors; "
              f"goal p99 < {TARGET_P99 * 1000:.0f} ms and 0 errors: {verdict}")
    return results


def run(argv=None):
    """:func:`main`, as summary rows for run_all.py."""
    results = main(argv)
    floor, alone, loaded = results
    errors = sum(r["errors"] for r in results)
    ok = loaded["p99"] < TARGET_P99 and errors == 0
    return [
        ("load: vm.info p99, pool polled (floor: system.version)",
         f"{loaded['p99'] * 1000:.1f} ms ({loaded['p99'] / floor['p99']:.1f}x floor "
         f"{floor['p99'] * 1000:.1f} ms), {errors} errors",
         f"< {TARGET_P99 * 1000:.0f} ms, 0 errors: {'met' if ok else 'MISSED'}"),
        ("load: vm.info p99, no pool polling", f"{alone['p99'] * 1000:.1f} ms", ""),
        ("load: vmpool.info replies/s while polled",
         f"{loaded['polls'] / loaded['wall']:.1f} /s (p50 {loaded['poll_p50'] * 1000:.0f} ms)",
         ""),
    ]


if __name__ == "__main__":
    main()
