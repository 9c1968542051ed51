"""OpenStack front: 1,000 servers listed with ``GET /servers/detail``, against
the same listing through the EC2 front's DescribeInstances, in the same run.

One real ``twistd -n nebula`` (:class:`common.Daemon`, scheduler and timers
quiet, so the VMs stay PENDING: ``BUILD`` / ``pending``) with three fronts:
xmlrpc, ec2 (econe.conf PORT on a free port) and openstack (a free port).
One image is registered through XML-RPC; ``--servers`` VMs (default 1,000)
are made with EC2 RunInstances (reservations of 100), all oneadmin's, so
both fronts list the same VMs.

Figures, each over ``--seconds`` with ``--clients`` client processes on
keep-alive ``http.client`` connections, the reply read in full (not parsed):

* ``GET /compute/v2.1/servers/detail`` (microversion 2.79, a token from
  ``POST /identity/v3/auth/tokens`` taken before the run): requests/s,
  p50, reply size, servers in the reply;
* EC2 DescribeInstances (SigV4-signed by botocore, as :mod:`bench_ec2`):
  the same figures;
* the ratio openstack/EC2.

Usage: ``python bench/bench_openstack.py [--servers 1000] [--seconds 5]
[--clients 2]``.
"""

import argparse
import hashlib
import http.client
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_ec2  # noqa: E402
import common  # noqa: E402

_USER, _PASSWORD = common.SESSION.split(":", 1)


def token(port):
    """A Keystone token for oneadmin from the front on ``port``."""
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": _USER, "password": _PASSWORD, "domain": {"name": "Default"}}}}}}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/identity/v3/auth/tokens", body=json.dumps(body),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 201:
        raise RuntimeError(f"token: HTTP {resp.status}: {data[:300]!r}")
    return resp.getheader("X-Subject-Token")


def _lister(port, tok, seconds, start_at, queue):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"X-Auth-Token": tok, "OpenStack-API-Version": "compute 2.79"}

        def get():
            conn.request("GET", "/compute/v2.1/servers/detail", headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()

        status, data = get()  # connect outside the timed window
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {data[:300]!r}")
        size, count = len(data), len(json.loads(data)["servers"])
        n, lat = 0, []
        while time.time() < start_at:
            time.sleep(0.001)
        end = time.perf_counter() + seconds
        now = t0 = time.perf_counter()
        while now < end:
            status, data = get()
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {data[:300]!r}")
            t = time.perf_counter()
            lat.append(t - now)
            now = t
            n += 1
        queue.put((n, now - t0, lat, size, count, None))
    except BaseException as e:  # noqa: BLE001 - report to the parent
        queue.put((0, 0.0, [], 0, 0, f"{type(e).__name__}: {e}"))


def list_servers(port, tok, clients, seconds):
    """(requests/s, p50 s, reply bytes, servers in the reply)."""
    queue = common._mp.Queue()
    start_at = time.time() + 0.5
    procs = [common._mp.Process(target=_lister, args=(port, tok, seconds, start_at, queue))
             for _ in range(clients)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    errors = [r[5] for r in results if r[5]]
    if errors:
        raise RuntimeError(f"openstack: {errors[0]}")
    rate = sum(r[0] / r[1] for r in results)
    lat = sorted(x for r in results for x in r[2])
    return rate, common.percentile(lat, 50), results[0][3], results[0][4]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--servers", type=int, default=1000,
                        help="servers (VMs) listed (default 1000)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="length of each listing run (default 5)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    args = parser.parse_args(argv)
    print(common.machine_note())
    print(f"client: {args.clients} processes, http.client keep-alive")
    ec2_port, os_port = common.free_port(), common.free_port()
    overrides = [f"econe.PORT={ec2_port}", 'API_FRONT=[NAME="xmlrpc"]', 'API_FRONT=[NAME="ec2"]',
                 f'API_FRONT=[NAME="openstack",ENDPOINT="tcp:{os_port}:interface=127.0.0.1"]']
    secret = hashlib.sha1(_PASSWORD.encode()).hexdigest()
    with common.Daemon(overrides=overrides) as daemon:
        common.wait_port(ec2_port)
        common.wait_port(os_port)
        image = bench_ec2._nebtwist_image(daemon)
        peer = bench_ec2.Peer("nebtwist", ec2_port, _USER, secret)
        bench_ec2.fill(peer, image, args.servers)
        tok = token(os_port)
        os_rate, os_p50, os_size, os_count = list_servers(os_port, tok, args.clients,
                                                          args.seconds)
        ec2_rate, ec2_p50, ec2_size, ec2_count = bench_ec2.describe_instances(
            peer, args.clients, args.seconds)
        rss = daemon.rss_mb()
    print(f"[openstack] GET /servers/detail: {os_rate:.1f} requests/s, p50 "
          f"{os_p50 * 1000:.1f} ms, {os_count} servers in reply, {os_size / 1024:.0f} KiB")
    print(f"[ec2] DescribeInstances: {ec2_rate:.1f} requests/s, p50 {ec2_p50 * 1000:.1f} ms, "
          f"{ec2_count} instances in reply, {ec2_size / 1024:.0f} KiB")
    print(f"ratio openstack/ec2: {os_rate / ec2_rate:.2f}x (daemon RSS {rss:.0f} MiB)")
    return {"openstack": os_rate, "ec2": ec2_rate, "count": os_count}


def run(argv=None):
    """For run_all: (figure, measured, target) rows."""
    r = main(argv)
    return [(f"OpenStack GET /servers/detail ({r['count']} servers)", f"{r['openstack']:.0f}/s",
             f"vs EC2 DescribeInstances ({r['ec2']:.1f}/s)")]


if __name__ == "__main__":
    main()
