"""one.vmpool.info latency with 10,000 VMs in the pool (target < 0.3 s).

For comparison: OpenNebula 6.10 answers in 0.78 s with 20,000 VMs.

Fills the pool with 10,000 PENDING VMs (printing the allocation rate), then
times ``one.vmpool.info(session, -2, -1, -1, -1)`` ten times from this client
process over one keep-alive connection, with a raw ``http.client`` request so
the figures split:

* server: time to the first byte of the response (the daemon has assembled
  the listing from its VMs' cached bodies by then, and writes it in slices;
  repeated identical calls with nothing changed share one build),
* transfer: the rest of the body,
* total request: server + transfer, without parsing,
* client parse: ``xmlrpc.client.loads`` of the body (what every Python client,
  pyone included, pays on top); also shown with expat's ``buffer_text`` on.

Usage: ``python bench/bench_vmpool_info.py [--vms 10000] [--repeat 10]``.
"""

import http.client
import os
import statistics
import sys
import time
import xmlrpc.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

TARGET = 0.3


def timed_call(conn, body):
    """One raw POST; returns (ttfb, total, response bytes)."""
    t0 = time.perf_counter()
    conn.request("POST", "/RPC2", body, {"Content-Type": "text/xml"})
    resp = conn.getresponse()
    # getresponse() returns once the status line and headers are read: the
    # first bytes of the reply.
    t1 = time.perf_counter()
    data = resp.read()
    t2 = time.perf_counter()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
    return t1 - t0, t2 - t0, data


def loads_buffered(data):
    """``xmlrpc.client.loads`` with expat's ``buffer_text`` on: one character-data
    callback per string instead of one per entity (``&lt;`` ...), which is what
    a pool's escaped XML is full of. Shows what a client could save."""
    parser, unmarshaller = xmlrpc.client.getparser()
    parser._parser.buffer_text = True
    parser.feed(data)
    parser.close()
    return unmarshaller.close()


def stats(values):
    return min(values), statistics.median(values), max(values)


def fmt(name, values, unit="s"):
    lo, med, hi = stats(values)
    return f"{name}: min {lo:.3f} {unit}, median {med:.3f} {unit}, max {hi:.3f} {unit}"


def run(argv=None):
    parser = common.new_parser(__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10000,
                        help="VMs in the pool (default 10000)")
    parser.add_argument("--repeat", type=int, default=10,
                        help="timed one.vmpool.info calls (default 10)")
    args = parser.parse_args(argv)
    print(common.machine_note())
    rows = []
    with common.Daemon(args.overrides, keep=args.keep, profile=args.profile) as daemon:
        alloc = common.fill_and_report(daemon, args.vms, args.workers, args.spy)
        rows.append((f"vm.allocate (fill {args.vms})", f"{alloc:.0f} /s", ""))
        body = xmlrpc.client.dumps((daemon.session, -2, -1, -1, -1), "one.vmpool.info")
        conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=120)
        timed_call(conn, body)  # open the connection; not counted
        ttfb, total, parse, parse_buffered, sizes, daemon_cpu = [], [], [], [], [], []
        count = None
        spy = common.maybe_spy(daemon, args.spy, "vmpool_info")
        spy.__enter__()
        for _ in range(args.repeat):
            cpu0 = daemon.cpu_seconds()
            first, whole, data = timed_call(conn, body)
            daemon_cpu.append(daemon.cpu_seconds() - cpu0)
            t0 = time.perf_counter()
            ok, xml, _code = xmlrpc.client.loads(data)[0][0]
            parse.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            loads_buffered(data)
            parse_buffered.append(time.perf_counter() - t0)
            if not ok:
                raise RuntimeError(xml)
            ttfb.append(first)
            total.append(whole)
            sizes.append(len(data))
            count = xml.count("<VM><ID>")
        conn.close()
        spy.__exit__(None, None, None)
        rss = daemon.rss_mb()
        transfer = [b - a for a, b in zip(ttfb, total)]
        end_to_end = [a + b for a, b in zip(total, parse)]
        mb = statistics.median(sizes) / 1e6
        print(f"vmpool.info: {count} VMs, response {mb:.2f} MB "
              f"({statistics.median(sizes) / max(count, 1):.0f} bytes/VM), "
              f"{args.repeat} calls")
        print("vmpool.info " + fmt("server (time to first byte)", ttfb))
        print("vmpool.info " + fmt("transfer (first to last byte)", transfer))
        print("vmpool.info " + fmt("total request (no parse)", total))
        print("vmpool.info " + fmt("client parse (xmlrpc.client.loads)", parse))
        print("vmpool.info " + fmt("end to end (request + parse)", end_to_end))
        print("vmpool.info " + fmt("client parse, expat buffer_text=True", parse_buffered))
        print("vmpool.info " + fmt("daemon CPU per call", daemon_cpu))
        print(f"daemon RSS: {rss:.1f} MiB with {count} VMs")
        med = statistics.median(total)
        verdict = "met" if med < TARGET else "MISSED"
        rows.append((f"vmpool.info, {count} VMs, request",
                     "min/median/max {:.3f}/{:.3f}/{:.3f} s".format(*stats(total)),
                     f"< {TARGET} s: {verdict}"))
        e2e = statistics.median(end_to_end)
        rows.append(("vmpool.info, end to end (xmlrpc.client)",
                     "min/median/max {:.3f}/{:.3f}/{:.3f} s".format(*stats(end_to_end)),
                     f"< {TARGET} s: {'met' if e2e < TARGET else 'MISSED'}"))
        rows.append(("vmpool.info, server (TTFB)",
                     "min/median/max {:.3f}/{:.3f}/{:.3f} s".format(*stats(ttfb)), ""))
        rows.append(("vmpool.info, client parse",
                     "min/median/max {:.3f}/{:.3f}/{:.3f} s".format(*stats(parse)), ""))
        rows.append(("vmpool.info, response size", f"{mb:.2f} MB", ""))
        rows.append((f"daemon RSS, {count} VMs", f"{rss:.1f} MiB", ""))
    if args.profile:
        common.print_profile(args.profile)
    return rows


if __name__ == "__main__":
    run()
