"""EC2 Query API: nebtwist's front against moto's EC2 server, in the same run.

Two servers, the same client, the same requests:

* nebtwist: a real ``twistd -n nebula`` (:class:`common.Daemon`, scheduler
  and timers quiet, so the instances stay ``pending``), its EC2 front on a
  free port, one image registered through XML-RPC for the AMI;
* moto: ``moto.moto_server.werkzeug_app.create_backend_app('ec2')`` under
  werkzeug's threaded ``run_simple`` (the EC2-only app: the combined
  ``moto_server`` mis-routes SigV2 EC2 requests, real-components.md), in a
  subprocess.

Figures (each printed for both servers, then nebtwist/moto):

* ``RunInstances accepted/s``: client processes each send RunInstances
  (MinCount = MaxCount = 1) back to back for a fixed number of requests;
  a request counts when the reply is a 200 with an ``instancesSet``.
* ``DescribeInstances``: with 1,000 instances in 10 reservations of 100
  (moto pages DescribeInstances at 100 *reservations*, so 10 reservations
  return every instance in one page on both), requests/s over keep-alive
  connections, the reply read in full (not parsed), and the reply size.

The client signs every request with botocore's SigV4 signer (``SigV4Auth``
over an ``AWSRequest``, what boto3 does) and sends it with ``http.client``:
boto3's response parsing would otherwise be what is measured.

Usage: ``python bench/bench_ec2.py [--instances 1000] [--seconds 5]
[--clients 2] [--runs 400]``.
"""

import argparse
import hashlib
import http.client
import os
import re
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

#: The password of the daemon's oneadmin (common.SESSION); the EC2 secret is its SHA1.
_PASSWORD = common.SESSION.split(":", 1)[1]

MOTO_APP = """
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import create_backend_app
run_simple("127.0.0.1", int(sys.argv[1]), create_backend_app("ec2"), threaded=True)
"""


class Peer:
    """Where requests go: host, port, credentials."""

    def __init__(self, name, port, access, secret):
        self.name, self.port, self.access, self.secret = name, port, access, secret


def _signed(peer, params):
    """(body, headers) of a SigV4-signed EC2 Query POST."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = urllib.parse.urlencode(params)
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:{peer.port}/", data=body,
                     headers={"Content-Type":
                              "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(peer.access, peer.secret), "ec2", "us-east-1").add_auth(req)
    return body.encode(), dict(req.headers.items())


def _call(conn, peer, params):
    body, headers = _signed(peer, params)
    conn.request("POST", "/", body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, data


def _runner(peer, image, count, start_at, queue):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=60)
        ok = 0
        first = None
        while time.time() < start_at:
            time.sleep(0.001)
        t0 = time.perf_counter()
        for _ in range(count):
            status, data = _call(conn, peer, {
                "Action": "RunInstances", "Version": "2016-11-15", "ImageId": image,
                "InstanceType": "m1.small", "MinCount": "1", "MaxCount": "1"})
            if status == 200 and b"instancesSet" in data:
                ok += 1
            elif first is None:
                first = data[:300]
        queue.put((ok, time.perf_counter() - t0, first))
    except BaseException as e:  # noqa: BLE001 - report to the parent
        queue.put((0, 0.0, f"{type(e).__name__}: {e}"))


def run_instances(peer, image, clients, runs):
    """RunInstances accepted per second (``runs`` requests in all)."""
    queue = common._mp.Queue()
    share = [runs // clients + (1 if i < runs % clients else 0) for i in range(clients)]
    start_at = time.time() + 0.5
    procs = [common._mp.Process(target=_runner, args=(peer, image, n, start_at, queue))
             for n in share]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    ok = sum(r[0] for r in results)
    wall = max(r[1] for r in results) or float("nan")
    errors = [r[2] for r in results if r[2]]
    if ok < runs:
        raise RuntimeError(f"{peer.name}: {runs - ok} of {runs} RunInstances refused; "
                           f"first: {errors[0] if errors else '?'}")
    return ok / wall


def _describer(peer, seconds, start_at, queue):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=60)
        params = {"Action": "DescribeInstances", "Version": "2016-11-15"}
        status, data = _call(conn, peer, params)  # connect outside the timed window
        size = len(data)
        count = data.count(b"<instanceId>")
        n = 0
        lat = []
        while time.time() < start_at:
            time.sleep(0.001)
        end = time.perf_counter() + seconds
        now = t0 = time.perf_counter()
        while now < end:
            status, data = _call(conn, peer, params)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {data[:300]!r}")
            t = time.perf_counter()
            lat.append(t - now)
            now = t
            n += 1
        queue.put((n, now - t0, lat, size, count, None))
    except BaseException as e:  # noqa: BLE001 - report to the parent
        queue.put((0, 0.0, [], 0, 0, f"{type(e).__name__}: {e}"))


def describe_instances(peer, clients, seconds):
    """(requests/s, p50 s, reply bytes, instances in the reply)."""
    queue = common._mp.Queue()
    start_at = time.time() + 0.5
    procs = [common._mp.Process(target=_describer, args=(peer, seconds, start_at, queue))
             for _ in range(clients)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    errors = [r[5] for r in results if r[5]]
    if errors:
        raise RuntimeError(f"{peer.name}: {errors[0]}")
    rate = sum(r[0] / r[1] for r in results)
    lat = sorted(x for r in results for x in r[2])
    return rate, common.percentile(lat, 50), results[0][3], results[0][4]


def fill(peer, image, instances):
    """``instances`` instances in reservations of 100."""
    conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=120)
    left = instances
    while left:
        n = min(100, left)
        status, data = _call(conn, peer, {
            "Action": "RunInstances", "Version": "2016-11-15", "ImageId": image,
            "InstanceType": "m1.small", "MinCount": str(n), "MaxCount": str(n)})
        if status != 200:
            raise RuntimeError(f"{peer.name}: RunInstances x{n}: HTTP {status}: {data[:300]!r}")
        left -= n


def _nebtwist_image(daemon):
    """Register a small image through XML-RPC and wait for READY; its ami id."""
    path = os.path.join(daemon.location, "bench.img")
    with open(path, "wb") as f:
        f.write(os.urandom(1 << 20))
    proxy = daemon.proxy()
    ok, oid, _ = proxy.one.image.allocate(daemon.session,
                                          f'NAME = "bench"\nPATH = "{path}"\nTYPE = "OS"\n')
    if not ok:
        raise RuntimeError(f"image allocate: {oid}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ok, body, _ = proxy.one.image.info(daemon.session, oid)
        state = re.search(r"<STATE>(\d+)</STATE>", body)
        if state and state.group(1) == "1":  # READY
            return f"ami-{oid:08d}"
        time.sleep(0.1)
    raise RuntimeError("the bench image did not become READY")


def _peer_figures(peer, image, args, rss=None):
    fill(peer, image, args.instances)
    rate, p50, size, count = describe_instances(peer, args.clients, args.seconds)
    run_rate = run_instances(peer, image, args.clients, args.runs)
    figures = {"run": run_rate, "describe": rate, "p50": p50, "size": size, "count": count}
    if rss is not None:
        figures["rss"] = rss()
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--instances", type=int, default=1000,
                        help="instances DescribeInstances lists (default 1000)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="length of the DescribeInstances run (default 5)")
    parser.add_argument("--clients", type=int, default=2,
                        help="client processes (default 2)")
    parser.add_argument("--runs", type=int, default=400,
                        help="RunInstances requests for the accepted/s figure (default 400)")
    args = parser.parse_args(argv)
    print(common.machine_note())
    print(f"client: {args.clients} processes, botocore SigV4 signing + http.client keep-alive")
    results = {}

    secret = hashlib.sha1(_PASSWORD.encode()).hexdigest()
    port = common.free_port()
    with common.Daemon(overrides=[f"econe.PORT={port}"]) as daemon:
        common.wait_port(port)
        image = _nebtwist_image(daemon)
        peer = Peer("nebtwist", port, "oneadmin", secret)
        results["nebtwist"] = _peer_figures(peer, image, args, daemon.rss_mb)

    port = common.free_port()
    with tempfile.TemporaryDirectory() as tmp, \
            common.peer_server([sys.executable, "-c", MOTO_APP, str(port)], port, tmp, "moto"):
        peer = Peer("moto", port, "testing", "testing")
        results["moto"] = _peer_figures(peer, "ami-12c6146b", args)

    neb, moto = results["nebtwist"], results["moto"]
    for name, f in results.items():
        print(f"[{name}] RunInstances: {f['run']:.0f} accepted/s ({args.runs} requests, "
              f"{args.clients} clients)")
        print(f"[{name}] DescribeInstances: {f['describe']:.1f} requests/s, p50 "
              f"{f['p50'] * 1000:.1f} ms, {f['count']} instances in reply, "
              f"{f['size'] / 1024:.0f} KiB" + (f", daemon RSS {f['rss']:.0f} MiB"
                                                if "rss" in f else ""))
    print(f"ratio nebtwist/moto: RunInstances {neb['run'] / moto['run']:.2f}x, "
          f"DescribeInstances {neb['describe'] / moto['describe']:.2f}x")
    return results


def run(argv=None):
    """For run_all: (figure, measured, target) rows."""
    results = main(argv)
    neb, moto = results["nebtwist"], results["moto"]
    return [(f"EC2 DescribeInstances ({neb['count']} instances)", f"{neb['describe']:.0f}/s",
             f"> moto ({moto['describe']:.1f}/s)"),
            ("EC2 RunInstances accepted", f"{neb['run']:.0f}/s",
             f"> moto ({moto['run']:.0f}/s)")]


if __name__ == "__main__":
    main()
