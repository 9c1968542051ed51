"""S3: nebtwist's image repository against moto's S3 server, in the same run.

Servers, one after the other, each in its own process:

* nebtwist: a real ``twistd -n nebula`` (:class:`common.Daemon`), its public
  cloud front (EC2 Query and S3 on econe.conf ``PORT``) on a free port, the
  repository in the daemon's temporary ``$ONE_LOCATION/var/econe``;
* moto: ``moto_server -H 127.0.0.1 -p PORT`` (the combined server; S3 is
  what it routes path-style requests with no ``Action`` to);
* a null sink: a tiny Twisted HTTP server (below, :data:`SINK`) that reads
  a PUT body and discards it, the upper bound of a Twisted server on this
  machine for the large upload.

Figures:

* small objects (1 KiB): PutObject/s then GetObject/s of the keys just put,
  from several client processes over keep-alive connections;
* large object: one PutObject of ``--large-mib`` MiB (1 GiB) whose body is
  streamed from a 1 MiB buffer (constant client memory), MB/s to nebtwist,
  to the null sink (ratio nebtwist/sink) and to moto (``--moto-large-mib``,
  256 MiB by default: moto and werkzeug hold a body in memory); the MD5 of
  the stored object is checked against the client's with a HEAD;
* the storage ceiling: the bench process itself MD5-hashing the same bytes,
  and writing them to a file on the repository's filesystem, each alone, 1
  MiB at a time (no network, no HTTP): what any server that stores the
  object and answers its ETag must do; the slower of the two bounds a
  server that does them in parallel; ratio nebtwist/ceiling. (The null sink
  does neither, so it measures the loopback and the client, not a
  repository.)
* the daemon's peak RSS (``VmHWM``) and the largest ``VmRSS`` sampled
  every 50 ms during the large upload.

The client: every request is SigV4-signed by botocore (``S3SigV4Auth`` over
an ``AWSRequest``, what boto3 does) *before* the timed loop, small bodies
with their SHA256 (``x-amz-content-sha256``), the large body with
``UNSIGNED-PAYLOAD`` (what boto3 sends for an unhashed stream); requests go
out with ``http.client`` (boto3's own request building and response parsing
would be what is measured, not the server). moto checks no signature.

Usage: ``python bench/bench_s3.py [--objects 6000] [--clients 3]
[--large-mib 1024] [--moto-large-mib 256]``.
"""

import argparse
import hashlib
import http.client
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

#: The password of the daemon's oneadmin (common.SESSION); the S3 secret is its SHA1.
_PASSWORD = common.SESSION.split(":", 1)[1]
MiB = 1024 * 1024

#: The null sink: a Twisted site whose requests drop their body as it comes.
SINK = """
import sys
from twisted.internet import reactor
from twisted.web import resource, server

class Drop(server.Request):
    def gotLength(self, length):
        import io
        self.content = io.BytesIO()
    def handleContentChunk(self, data):
        pass

class Ok(resource.Resource):
    isLeaf = True
    def render(self, request):
        request.setHeader(b"etag", b'"0"')
        return b""

site = server.Site(Ok(), requestFactory=Drop)
site.log = lambda request: None
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
reactor.run()
"""


class Peer:
    """Where requests go: name, port, credentials."""

    def __init__(self, name, port, access, secret):
        self.name, self.port, self.access, self.secret = name, port, access, secret


def _sign(peer, method, path, body=b"", unsigned=False, length=None):
    """The headers of a SigV4-signed S3 request (botocore)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials

    req = AWSRequest(method=method, url=f"http://127.0.0.1:{peer.port}{path}",
                     data=b"" if unsigned else body)
    if unsigned:
        req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(Credentials(peer.access, peer.secret), "s3", "us-east-1").add_auth(req)
    headers = dict(req.headers.items())
    if method == "PUT":
        headers["Content-Length"] = str(len(body) if length is None else length)
    return headers


def _request(conn, method, path, body, headers):
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _small_worker(peer, method, keys, body, start_at, queue):
    try:
        send = body if method == "PUT" else None
        signed = [(f"/bench/{k}", _sign(peer, method, f"/bench/{k}", send or b""))
                  for k in keys]
        conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=60)
        conn.connect()
        bad, first = 0, None
        while time.time() < start_at:
            time.sleep(0.001)
        t0 = time.monotonic()
        for path, headers in signed:
            status, data = _request(conn, method, path, send, headers)
            if status != 200 or (method == "GET" and data != body):
                bad += 1
                first = first or f"HTTP {status}: {data[:200]!r}"
        t1 = time.monotonic()
        conn.close()
        queue.put((len(signed), bad, t0, t1, first))
    except BaseException as e:  # noqa: BLE001 - report to the parent
        queue.put((0, len(keys), 0.0, 0.0, f"{type(e).__name__}: {e}"))


def small_objects(peer, method, count, clients, body):
    """Requests/s of ``count`` PUTs (or GETs) of 1 KiB objects from ``clients``
    processes, each over one keep-alive connection."""
    queue = common._mp.Queue()
    keys = [f"c{i % clients}/k{i:07d}" for i in range(count)]
    shares = [keys[i::clients] for i in range(clients)]
    # Signing happens in the workers before start_at: leave them time for it.
    start_at = time.time() + 1.0 + count / clients * 0.0004
    procs = [common._mp.Process(target=_small_worker,
                                args=(peer, method, share, body, start_at, queue))
             for share in shares]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    bad = sum(r[1] for r in results)
    if bad:
        first = next(r[4] for r in results if r[4])
        raise RuntimeError(f"{peer.name}: {bad} of {count} {method}s failed; first: {first}")
    wall = max(r[3] for r in results) - min(r[2] for r in results)
    return count / wall


def _make_bucket(peer):
    conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=60)
    status, data = _request(conn, "PUT", "/bench", b"", _sign(peer, "PUT", "/bench"))
    conn.close()
    if status != 200:
        raise RuntimeError(f"{peer.name}: CreateBucket: HTTP {status}: {data[:300]!r}")


def large_upload(peer, size, rss=None):
    """One PUT of ``size`` bytes streamed from a 1 MiB buffer.

    :return: ``(MB/s, MD5 hex sent, ETag answered, peak sampled RSS MiB or None)``.
    """
    block = os.urandom(MiB)
    digest = hashlib.md5()
    for _ in range(size // MiB):
        digest.update(block)
    headers = _sign(peer, "PUT", "/bench/large", unsigned=True, length=size)
    peak = [0.0]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], rss())
    sampler = threading.Thread(target=sample, daemon=True) if rss else None
    conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=600)
    conn.connect()
    if sampler:
        sampler.start()
    t0 = time.monotonic()
    conn.putrequest("PUT", "/bench/large", skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    for _ in range(size // MiB):
        conn.send(block)
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.monotonic() - t0
    stop.set()
    if sampler:
        sampler.join()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{peer.name}: large PUT: HTTP {resp.status}: {data[:300]!r}")
    etag = (resp.getheader("ETag") or "").strip('"')
    return size / elapsed / 1e6, digest.hexdigest(), etag, (peak[0] if rss else None)


def storage_ceiling(folder, size):
    """What storing ``size`` bytes costs here without network or HTTP, in
    1 MiB blocks: ``(MD5 MB/s, write MB/s)``, each measured alone (MD5 of
    the bytes; writing them to a new file in ``folder``, then removed; no
    fsync, as the repository). A server that hashes and writes in two
    threads, as nebtwist's does, is bounded by the slower of the two."""
    block = os.urandom(MiB)
    blocks = size // MiB
    digest = hashlib.md5()
    t0 = time.monotonic()
    for _ in range(blocks):
        digest.update(block)
    md5_rate = size / (time.monotonic() - t0) / 1e6
    fd, path = tempfile.mkstemp(dir=folder, prefix="ceiling-")
    try:
        t0 = time.monotonic()
        with os.fdopen(fd, "wb", buffering=0) as f:
            for _ in range(blocks):
                f.write(block)
        write_rate = size / (time.monotonic() - t0) / 1e6
    finally:
        os.unlink(path)
    return md5_rate, write_rate


def _head_etag(peer, key):
    conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=60)
    conn.request("HEAD", f"/bench/{key}", headers=_sign(peer, "HEAD", f"/bench/{key}"))
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, (resp.getheader("ETag") or "").strip('"')


def vm_hwm_mb(pid):
    """Peak resident set size (VmHWM) of a process, MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--objects", type=int, default=6000,
                        help="small objects put then got (default 6000)")
    parser.add_argument("--clients", type=int, default=3,
                        help="client processes for small objects (default 3)")
    parser.add_argument("--large-mib", type=int, default=1024,
                        help="size of the large upload to nebtwist and the sink (default 1024)")
    parser.add_argument("--moto-large-mib", type=int, default=256,
                        help="size of the large upload to moto (default 256)")
    parser.add_argument("--skip-moto", action="store_true", help="nebtwist and the sink only")
    args, _ = parser.parse_known_args(argv)  # run_all passes its shared options too
    print(common.machine_note())
    print(f"client: {args.clients} processes for small objects, botocore SigV4 signed in "
          "advance + http.client keep-alive; one connection for the large upload")
    body = os.urandom(1024)
    results = {}

    secret = hashlib.sha1(_PASSWORD.encode()).hexdigest()
    port = common.free_port()
    with common.Daemon(overrides=[f"econe.PORT={port}"]) as daemon:
        common.wait_port(port)
        peer = Peer("nebtwist", port, "oneadmin", secret)
        _make_bucket(peer)
        rss_before = daemon.rss_mb()
        put = small_objects(peer, "PUT", args.objects, args.clients, body)
        get = small_objects(peer, "GET", args.objects, args.clients, body)
        rss_small = daemon.rss_mb()
        mbs, md5, etag, peak = large_upload(peer, args.large_mib * MiB, daemon.rss_mb)
        status, head = _head_etag(peer, "large")
        if (etag, head, status) != (md5, md5, 200):
            raise RuntimeError(f"nebtwist stored a different object: sent {md5}, "
                               f"ETag {etag}, HEAD {status} {head}")
        md5_rate, write_rate = storage_ceiling(daemon.location, args.large_mib * MiB)
        results["nebtwist"] = {"put": put, "get": get, "large": mbs,
                               "ceiling": min(md5_rate, write_rate), "md5": md5_rate,
                               "write": write_rate,
                               "large_mib": args.large_mib, "hwm": vm_hwm_mb(daemon.pid),
                               "peak": peak, "rss_before": rss_before, "rss_small": rss_small}

    with tempfile.TemporaryDirectory() as tmp:
        port = common.free_port()
        with common.peer_server([sys.executable, "-c", SINK, str(port)], port, tmp, "sink"):
            mbs, _, _, _ = large_upload(Peer("sink", port, "x", "x"), args.large_mib * MiB)
            results["sink"] = {"large": mbs, "large_mib": args.large_mib}

        if not args.skip_moto:
            port = common.free_port()
            moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
            with common.peer_server([moto if os.path.exists(moto) else "moto_server",
                                     "-H", "127.0.0.1", "-p", str(port)],
                                    port, tmp, "moto") as proc:
                peer = Peer("moto", port, "testing", "testing")
                _make_bucket(peer)
                put = small_objects(peer, "PUT", args.objects, args.clients, body)
                get = small_objects(peer, "GET", args.objects, args.clients, body)
                mbs, md5, _, _ = large_upload(peer, args.moto_large_mib * MiB)
                results["moto"] = {"put": put, "get": get, "large": mbs,
                                   "large_mib": args.moto_large_mib, "hwm": vm_hwm_mb(proc.pid)}

    neb = results["nebtwist"]
    for name in ("nebtwist", "moto"):
        f = results.get(name)
        if f is None:
            continue
        print(f"[{name}] small objects (1 KiB, {args.objects}, {args.clients} clients): "
              f"PutObject {f['put']:.0f}/s, GetObject {f['get']:.0f}/s")
    for name in ("nebtwist", "sink", "moto"):
        f = results.get(name)
        if f is not None:
            print(f"[{name}] large PutObject ({f['large_mib']} MiB streamed): "
                  f"{f['large']:.0f} MB/s")
    print(f"[nebtwist] daemon RSS: {neb['rss_before']:.0f} MiB before, {neb['rss_small']:.0f} "
          f"MiB after the small objects, at most {neb['peak']:.0f} MiB sampled during the "
          f"{neb['large_mib']} MiB upload; peak (VmHWM) {neb['hwm']:.0f} MiB")
    if "moto" in results:
        print(f"[moto] server peak RSS (VmHWM) {results['moto']['hwm']:.0f} MiB")
    print(f"[ceiling] {neb['large_mib']} MiB in the bench process: MD5 {neb['md5']:.0f} MB/s, "
          f"write to the repository's filesystem {neb['write']:.0f} MB/s; a storing server "
          f"gets at most {neb['ceiling']:.0f} MB/s")
    print(f"ratio nebtwist/sink, large upload: {neb['large'] / results['sink']['large']:.0%}; "
          f"nebtwist/storage ceiling: {neb['large'] / neb['ceiling']:.0%}")
    if "moto" in results:
        moto = results["moto"]
        print(f"ratio nebtwist/moto: PutObject {neb['put'] / moto['put']:.2f}x, GetObject "
              f"{neb['get'] / moto['get']:.2f}x, large upload {neb['large'] / moto['large']:.2f}x")
    return results


def run(argv=None):
    """For run_all: (figure, measured, target) rows."""
    results = main(argv)
    neb, sink = results["nebtwist"], results["sink"]
    return [("S3 PutObject 1 KiB", f"{neb['put']:.0f}/s", ">= 2,000/s"),
            ("S3 GetObject 1 KiB", f"{neb['get']:.0f}/s", ">= 2,000/s"),
            ("S3 large upload vs null sink", f"{neb['large'] / sink['large']:.0%}", ">= 70%"),
            ("S3 large upload vs storage ceiling", f"{neb['large'] / neb['ceiling']:.0%}", ""),
            ("S3 daemon peak RSS (large upload)", f"{neb['hwm']:.0f} MiB", "< 150 MiB")]


if __name__ == "__main__":
    main()
