"""The S3-like image repository (nebtwist.api.s3) on the public cloud front
of an in-process daemon, with boto3 (path-style, SigV4 and S3 SigV2) as the
client, presigned URLs fetched with treq, and raw HTTP requests (signed with
botocore) for what boto3 will not send: a wrong body, an interrupted upload,
an oversized one. boto3 blocks, so it runs in threads."""

import base64
import datetime
import hashlib
import hmac
import http.client
import os
import socket
import time

from lxml import etree
from twisted.internet import reactor, task, threads
from twisted.trial.unittest import TestCase

from nebtwist.api import awsauth, s3
from nebtwist.testing import start_nebula
from tests.test_xmlrpc_api import add_user

try:
    import boto3
    import botocore.auth
    import botocore.awsrequest
    import botocore.config
    import botocore.credentials
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover - CI installs boto3 (.ci/run)
    boto3 = None

ADMIN_SECRET = hashlib.sha1(b"onecloud").hexdigest()
HELEN, HELEN_SECRET = "helen", hashlib.sha1(b"helenpass").hexdigest()
MiB = 1024 * 1024


def client(neb, user="oneadmin", secret=ADMIN_SECRET, v2=False, url=None, verify=None):
    """A boto3 S3 client of the daemon (path-style; SigV4, or S3 SigV2)."""
    config = botocore.config.Config(s3={"addressing_style": "path"},
                                    retries={"max_attempts": 1},
                                    signature_version="s3" if v2 else "s3v4")
    c = boto3.client("s3", endpoint_url=url or neb.ec2_url, region_name="us-east-1",
                     aws_access_key_id=user, aws_secret_access_key=secret, config=config,
                     verify=verify)
    neb.testcase.addCleanup(lambda: threads.deferToThread(c.close))
    return c


def call(c, method, **kwargs):
    """``c.method(**kwargs)`` in a thread (a Deferred)."""
    return threads.deferToThread(lambda: getattr(c, method)(**kwargs))


def code_of(error):
    return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]


def signed(url, method, path, body=b"", headers=None, user="oneadmin", secret=ADMIN_SECRET,
           sign_body=None):
    """``(headers dict)`` of a request SigV4-signed by botocore for S3, the
    payload hash being that of ``sign_body`` (default ``body``)."""
    request = botocore.awsrequest.AWSRequest(method=method, url=url.rstrip("/") + path,
                                             data=body if sign_body is None else sign_body,
                                             headers=dict(headers or {}))
    botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(user, secret), "s3",
                              "us-east-1").add_auth(request)
    headers = {k: v for k, v in request.headers.items()}
    if method in ("PUT", "POST"):
        headers["Content-Length"] = str(len(body))
    return headers


def raw(url, method, path, body=b"", headers=None, **sign):
    """Send a signed request with http.client; returns (status, headers, body)."""
    all_headers = signed(url, method, path, body, headers, **sign)
    host, port = url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def error_code(body):
    return etree.fromstring(body).findtext("Code")


def head_bytes(url, method, path, headers, body=None):
    """The request line and headers of a raw request (bytes), ``body`` hashed."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v.decode() if isinstance(v, bytes) else v}" for k, v in headers.items()
              if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), (host, int(port))


def read_response(sock):
    """Read from ``sock`` until it closes or a whole response head is in; the bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    return data


async def sleep(seconds):
    await task.deferLater(reactor, seconds, lambda: None)


def files_under(root):
    out = set()
    for folder, _, names in os.walk(root):
        for name in names:
            out.add(os.path.join(folder, name))
    return out


class S3Case(TestCase):

    timeout = 120

    def setUp(self):
        if boto3 is None:
            self.skipTest("boto3 is not installed")

    async def start(self, overrides=()):
        neb = await start_nebula(self, overrides)
        neb.testcase = self
        neb.image_dir = os.path.join(neb.one_location, "var", "econe")
        return neb

    def staging(self, neb):
        return sorted(os.listdir(os.path.join(neb.image_dir, ".staging")))

    async def until(self, predicate, message, timeout=90.0):
        deadline = reactor.seconds() + timeout
        while not predicate():
            if reactor.seconds() > deadline:
                self.fail(message)
            await sleep(0.05)


class BucketObjectTests(S3Case):
    """The bucket and object operations with boto3 SigV4 over HTTP."""

    async def test_buckets(self):
        """Create (with and without a configuration), list, head, location,
        bad names, existing names, delete (BucketNotEmpty until empty)."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="images")
        await call(c, "create_bucket", Bucket="eu.images",
                   CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        names = [b["Name"] for b in (await call(c, "list_buckets"))["Buckets"]]
        self.assertEqual(names, ["eu.images", "images"])
        head = await call(c, "head_bucket", Bucket="images")
        self.assertEqual(head["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual((await call(c, "get_bucket_location", Bucket="eu.images"))
                         ["LocationConstraint"], "eu-west-1")
        self.assertIsNone((await call(c, "get_bucket_location", Bucket="images"))
                          .get("LocationConstraint"))
        for bad in ("ab", "Images", "a..b", "192.168.1.1", "-abc", "x" * 64, "a_b"):
            with self.assertRaises(ClientError, msg=bad) as caught:
                await call(c, "create_bucket", Bucket=bad)
            self.assertEqual(code_of(caught.exception), ("InvalidBucketName", 400), bad)
        with self.assertRaises(ClientError) as caught:  # us-east-1: tests.test_s3_conformance
            await call(c, "create_bucket", Bucket="eu.images",
                       CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        self.assertEqual(code_of(caught.exception), ("BucketAlreadyOwnedByYou", 409))
        with self.assertRaises(ClientError) as caught:
            await call(c, "head_bucket", Bucket="nothere")
        self.assertEqual(code_of(caught.exception), ("404", 404))
        with self.assertRaises(ClientError) as caught:
            await call(c, "list_objects_v2", Bucket="nothere")
        self.assertEqual(code_of(caught.exception), ("NoSuchBucket", 404))
        await call(c, "put_object", Bucket="images", Key="k", Body=b"x")
        with self.assertRaises(ClientError) as caught:
            await call(c, "delete_bucket", Bucket="images")
        self.assertEqual(code_of(caught.exception), ("BucketNotEmpty", 409))
        await call(c, "delete_object", Bucket="images", Key="k")
        await call(c, "delete_bucket", Bucket="images")
        names = [b["Name"] for b in (await call(c, "list_buckets"))["Buckets"]]
        self.assertEqual(names, ["eu.images"])
        self.assertEqual(os.listdir(os.path.join(neb.image_dir, "buckets")), ["eu.images"])
        with self.assertRaises(ClientError) as caught:
            await call(c, "get_bucket_acl", Bucket="eu.images")
        self.assertEqual(code_of(caught.exception), ("NotImplemented", 501))

    async def test_objects(self):
        """Put (metadata, content type, Content-MD5), get, head, ranges,
        conditions, copy, delete (a missing key too), delete many."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="bkt")
        data = bytes(range(256)) * 400  # 102,400 bytes: streamed on GET
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        put = await call(c, "put_object", Bucket="bkt", Key="dir/disk.img", Body=data,
                         ContentType="application/x-raw-disk", ContentMD5=md5,
                         Metadata={"Os": "ttylinux", "arch": "i686"},
                         ContentDisposition="attachment")
        self.assertEqual(put["ETag"], f'"{hashlib.md5(data).hexdigest()}"')
        got = await call(c, "get_object", Bucket="bkt", Key="dir/disk.img")
        self.assertEqual(await threads.deferToThread(got["Body"].read), data)
        self.assertEqual(got["ContentType"], "application/x-raw-disk")
        self.assertEqual(got["Metadata"], {"os": "ttylinux", "arch": "i686"})
        self.assertEqual(got["ContentDisposition"], "attachment")
        self.assertEqual(got["ContentLength"], len(data))
        head = await call(c, "head_object", Bucket="bkt", Key="dir/disk.img")
        self.assertEqual((head["ContentLength"], head["ETag"]), (len(data), put["ETag"]))
        self.assertEqual(head["AcceptRanges"], "bytes")

        for spec, first, last in (("bytes=0-9", 0, 9), ("bytes=100000-", 100000, 102399),
                                  ("bytes=-5", 102395, 102399),
                                  ("bytes=102000-999999", 102000, 102399)):
            part = await call(c, "get_object", Bucket="bkt", Key="dir/disk.img", Range=spec)
            self.assertEqual(part["ResponseMetadata"]["HTTPStatusCode"], 206, spec)
            self.assertEqual(part["ContentRange"], f"bytes {first}-{last}/{len(data)}")
            self.assertEqual(await threads.deferToThread(part["Body"].read),
                             data[first:last + 1], spec)
        with self.assertRaises(ClientError) as caught:
            await call(c, "get_object", Bucket="bkt", Key="dir/disk.img", Range="bytes=200000-")
        self.assertEqual(code_of(caught.exception), ("InvalidRange", 416))
        whole = await call(c, "get_object", Bucket="bkt", Key="dir/disk.img", Range="bytes=9-2")
        self.assertEqual(whole["ResponseMetadata"]["HTTPStatusCode"], 200)
        whole["Body"].close()

        with self.assertRaises(ClientError) as caught:
            await call(c, "get_object", Bucket="bkt", Key="dir/disk.img", IfNoneMatch=put["ETag"])
        self.assertEqual(code_of(caught.exception)[1], 304)
        with self.assertRaises(ClientError) as caught:
            await call(c, "get_object", Bucket="bkt", Key="dir/disk.img", IfMatch='"0000"')
        self.assertEqual(code_of(caught.exception), ("PreconditionFailed", 412))

        copied = await call(c, "copy_object", Bucket="bkt", Key="copy.img",
                            CopySource={"Bucket": "bkt", "Key": "dir/disk.img"})
        self.assertEqual(copied["CopyObjectResult"]["ETag"], put["ETag"])
        got = await call(c, "get_object", Bucket="bkt", Key="copy.img")
        self.assertEqual(await threads.deferToThread(got["Body"].read), data)
        self.assertEqual(got["Metadata"], {"os": "ttylinux", "arch": "i686"})
        replaced = await call(c, "copy_object", Bucket="bkt", Key="copy.img",
                              CopySource="bkt/dir/disk.img", MetadataDirective="REPLACE",
                              Metadata={"new": "yes"}, ContentType="text/plain")
        self.assertEqual(replaced["CopyObjectResult"]["ETag"], put["ETag"])
        head = await call(c, "head_object", Bucket="bkt", Key="copy.img")
        self.assertEqual((head["Metadata"], head["ContentType"]), ({"new": "yes"}, "text/plain"))

        with self.assertRaises(ClientError) as caught:
            await call(c, "put_object", Bucket="bkt", Key="bad", Body=b"abc",
                       ContentMD5=base64.b64encode(hashlib.md5(b"abd").digest()).decode())
        self.assertEqual(code_of(caught.exception), ("BadDigest", 400))
        with self.assertRaises(ClientError) as caught:
            await call(c, "get_object", Bucket="bkt", Key="bad")
        self.assertEqual(code_of(caught.exception), ("NoSuchKey", 404))
        with self.assertRaises(ClientError) as caught:
            await call(c, "head_object", Bucket="bkt", Key="bad")
        self.assertEqual(code_of(caught.exception), ("404", 404))

        empty = await call(c, "put_object", Bucket="bkt", Key="empty", Body=b"")
        self.assertEqual(empty["ETag"], f'"{hashlib.md5(b"").hexdigest()}"')
        got = await call(c, "get_object", Bucket="bkt", Key="empty")
        self.assertEqual(await threads.deferToThread(got["Body"].read), b"")

        deleted = await call(c, "delete_object", Bucket="bkt", Key="copy.img")
        self.assertEqual(deleted["ResponseMetadata"]["HTTPStatusCode"], 204)
        again = await call(c, "delete_object", Bucket="bkt", Key="copy.img")
        self.assertEqual(again["ResponseMetadata"]["HTTPStatusCode"], 204)
        many = await call(c, "delete_objects", Bucket="bkt", Delete={
            "Objects": [{"Key": "dir/disk.img"}, {"Key": "empty"}, {"Key": "never"}]})
        self.assertEqual(sorted(d["Key"] for d in many["Deleted"]),
                         ["dir/disk.img", "empty", "never"])
        self.assertEqual((await call(c, "list_objects_v2", Bucket="bkt"))["KeyCount"], 0)
        data_files = [f for f in files_under(os.path.join(neb.image_dir, "buckets", "bkt"))
                      if not f.endswith("bucket.json")]
        self.assertEqual(data_files, [])
        self.assertEqual(self.staging(neb), [])

    async def test_listings(self):
        """ListObjects v1 and v2: prefix, delimiter and common prefixes,
        marker / start-after / continuation token, max-keys, truncation,
        url-encoded keys; paginators see every key once."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="lst")
        keys = ([f"a/{i:02d}" for i in range(12)] + ["a/sub/x", "a/sub/y", "b/1", "b/2",
                                                    "c", "d e+f%", "é/ü", "z\u2603"])

        def put_all():
            for k in keys:
                c.put_object(Bucket="lst", Key=k, Body=k.encode())
        await threads.deferToThread(put_all)

        v1 = await call(c, "list_objects", Bucket="lst", Delimiter="/")
        self.assertEqual([p["Prefix"] for p in v1["CommonPrefixes"]], ["a/", "b/", "é/"])
        self.assertEqual([o["Key"] for o in v1["Contents"]], ["c", "d e+f%", "z\u2603"])
        self.assertFalse(v1["IsTruncated"])
        sub = await call(c, "list_objects", Bucket="lst", Prefix="a/", Delimiter="/")
        self.assertEqual([p["Prefix"] for p in sub["CommonPrefixes"]], ["a/sub/"])
        self.assertEqual(len(sub["Contents"]), 12)
        page = await call(c, "list_objects", Bucket="lst", Prefix="a/", MaxKeys=5)
        self.assertTrue(page["IsTruncated"])
        self.assertEqual([o["Key"] for o in page["Contents"]], keys[:5])
        self.assertEqual(page["NextMarker"], "a/04")
        nxt = await call(c, "list_objects", Bucket="lst", Prefix="a/", Marker=page["NextMarker"],
                         MaxKeys=100)
        self.assertEqual([o["Key"] for o in nxt["Contents"]], keys[5:14])
        self.assertEqual(nxt["Contents"][0]["Size"], len(keys[5]))
        mixed = await call(c, "list_objects", Bucket="lst", Delimiter="/", MaxKeys=2)
        self.assertEqual(([p["Prefix"] for p in mixed["CommonPrefixes"]], mixed["NextMarker"]),
                         (["a/", "b/"], "b/"))
        rest = await call(c, "list_objects", Bucket="lst", Delimiter="/", Marker="b/")
        self.assertEqual(([p["Prefix"] for p in rest["CommonPrefixes"]],
                          [o["Key"] for o in rest["Contents"]]),
                         (["é/"], ["c", "d e+f%", "z\u2603"]))

        v2 = await call(c, "list_objects_v2", Bucket="lst", MaxKeys=7)
        self.assertEqual((v2["KeyCount"], v2["IsTruncated"]), (7, True))
        v2b = await call(c, "list_objects_v2", Bucket="lst",
                         ContinuationToken=v2["NextContinuationToken"])
        self.assertEqual([o["Key"] for o in v2["Contents"] + v2b["Contents"]], sorted(keys))
        after = await call(c, "list_objects_v2", Bucket="lst", StartAfter="b/1")
        self.assertEqual([o["Key"] for o in after["Contents"]],
                         [k for k in sorted(keys) if k > "b/1"])
        zero = await call(c, "list_objects_v2", Bucket="lst", MaxKeys=0)
        self.assertEqual((zero["KeyCount"], zero.get("Contents")), (0, None))

        def paginate(version):
            method = "list_objects_v2" if version == 2 else "list_objects"
            found = []
            for p in c.get_paginator(method).paginate(Bucket="lst",
                                                      PaginationConfig={"PageSize": 3}):
                found += [o["Key"] for o in p.get("Contents", [])]
            return found
        self.assertEqual(await threads.deferToThread(paginate, 1), sorted(keys))
        self.assertEqual(await threads.deferToThread(paginate, 2), sorted(keys))
        got = await call(c, "get_object", Bucket="lst", Key="d e+f%")
        self.assertEqual(await threads.deferToThread(got["Body"].read), b"d e+f%")

    async def test_keys_cannot_escape(self):
        """Keys with ``..`` segments, a leading ``/`` or odd bytes are names:
        nothing is written outside IMAGE_DIR, no file is named after a key,
        and GET returns what was stored."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="esc")
        before = files_under(neb.one_location)
        keys = ["../../etc/x", "/abs", "../../../../../../../tmp/nebtwist-s3-escape",
                "a/../../b", "..", "./.", "//double//", "%2e%2e/x", "dir/../../../bucket.json"]
        for k in keys:
            await call(c, "put_object", Bucket="esc", Key=k, Body=k.encode())
        for k in keys:
            got = await call(c, "get_object", Bucket="esc", Key=k)
            self.assertEqual(await threads.deferToThread(got["Body"].read), k.encode(), k)
        listed = [o["Key"] for o in (await call(c, "list_objects_v2", Bucket="esc"))["Contents"]]
        self.assertEqual(listed, sorted(keys))
        self.assertFalse(os.path.exists("/tmp/nebtwist-s3-escape"))
        self.assertFalse(os.path.exists("/etc/x"))
        created = files_under(neb.one_location) - before
        outside = [f for f in created if not f.startswith(neb.image_dir + os.sep)]
        self.assertEqual(outside, [])
        names = {os.path.basename(f) for f in files_under(neb.image_dir)}
        for name in names:
            self.assertRegex(name, r"^([0-9a-f]{64}(\.json|-[0-9a-f]{12})|bucket\.json)$")
        with open(os.path.join(neb.image_dir, "buckets", "esc", "bucket.json")) as f:
            self.assertIn('"name":"esc"', f.read())
        path = neb.service.ec2_ports[0].site.front.s3.repository.object_file(
            neb.nebula.userpool.get(0), "esc", "../../etc/x")
        self.assertTrue(path.startswith(neb.image_dir + os.sep))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"../../etc/x")


class MultipartTests(S3Case):
    """Multipart uploads: parts, listing, completion rules, abort."""

    async def test_multipart(self):
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="mpu")
        created = await call(c, "create_multipart_upload", Bucket="mpu", Key="big.img",
                             ContentType="application/octet-stream", Metadata={"a": "b"})
        uid = created["UploadId"]
        part1, part2, part3 = os.urandom(5 * MiB), os.urandom(5 * MiB + 3), b"tail"
        etags = []
        for n, body in ((1, part1), (2, part2), (3, part3)):
            r = await call(c, "upload_part", Bucket="mpu", Key="big.img", UploadId=uid,
                           PartNumber=n, Body=body)
            self.assertEqual(r["ETag"], f'"{hashlib.md5(body).hexdigest()}"')
            etags.append(r["ETag"])
        parts = await call(c, "list_parts", Bucket="mpu", Key="big.img", UploadId=uid)
        self.assertEqual([(p["PartNumber"], p["Size"], p["ETag"]) for p in parts["Parts"]],
                         [(1, 5 * MiB, etags[0]), (2, 5 * MiB + 3, etags[1]), (3, 4, etags[2])])
        page = await call(c, "list_parts", Bucket="mpu", Key="big.img", UploadId=uid,
                          MaxParts=2)
        self.assertEqual((page["IsTruncated"], page["NextPartNumberMarker"]), (True, 2))
        uploads = await call(c, "list_multipart_uploads", Bucket="mpu")
        self.assertEqual([(u["Key"], u["UploadId"]) for u in uploads["Uploads"]],
                         [("big.img", uid)])

        async def complete_fails(parts, code):
            with self.assertRaises(ClientError) as caught:
                await call(c, "complete_multipart_upload", Bucket="mpu", Key="big.img",
                           UploadId=uid, MultipartUpload={"Parts": parts})
            self.assertEqual(code_of(caught.exception), (code, 400))
        await complete_fails([{"PartNumber": 2, "ETag": etags[1]},
                              {"PartNumber": 1, "ETag": etags[0]}], "InvalidPartOrder")
        await complete_fails([{"PartNumber": 1, "ETag": etags[1]}], "InvalidPart")
        await complete_fails([{"PartNumber": 4, "ETag": etags[0]}], "InvalidPart")
        await complete_fails([{"PartNumber": 3, "ETag": etags[2]},
                              {"PartNumber": 4, "ETag": etags[0]}], "InvalidPart")
        await complete_fails([{"PartNumber": 1, "ETag": etags[0]},
                              {"PartNumber": 3, "ETag": etags[2]},
                              {"PartNumber": 5, "ETag": etags[2]}], "InvalidPart")
        small = await call(c, "create_multipart_upload", Bucket="mpu", Key="small")
        for n in (1, 2):
            await call(c, "upload_part", Bucket="mpu", Key="small", UploadId=small["UploadId"],
                       PartNumber=n, Body=b"tiny")
        with self.assertRaises(ClientError) as caught:
            await call(c, "complete_multipart_upload", Bucket="mpu", Key="small",
                       UploadId=small["UploadId"], MultipartUpload={"Parts": [
                           {"PartNumber": 1, "ETag": f'"{hashlib.md5(b"tiny").hexdigest()}"'},
                           {"PartNumber": 2, "ETag": f'"{hashlib.md5(b"tiny").hexdigest()}"'}]})
        self.assertEqual(code_of(caught.exception), ("EntityTooSmall", 400))

        done = await call(c, "complete_multipart_upload", Bucket="mpu", Key="big.img",
                          UploadId=uid, MultipartUpload={"Parts": [
                              {"PartNumber": n, "ETag": e} for n, e in zip((1, 2, 3), etags)]})
        expected = hashlib.md5(b"".join(hashlib.md5(p).digest()
                                        for p in (part1, part2, part3))).hexdigest() + "-3"
        self.assertEqual(done["ETag"], f'"{expected}"')
        got = await call(c, "get_object", Bucket="mpu", Key="big.img")
        body = await threads.deferToThread(got["Body"].read)
        self.assertEqual(hashlib.md5(body).digest(),
                         hashlib.md5(part1 + part2 + part3).digest())
        self.assertEqual((got["ETag"], got["Metadata"]), (f'"{expected}"', {"a": "b"}))
        with self.assertRaises(ClientError) as caught:
            await call(c, "list_parts", Bucket="mpu", Key="big.img", UploadId=uid)
        self.assertEqual(code_of(caught.exception), ("NoSuchUpload", 404))

        upload_dir = os.path.join(neb.image_dir, "buckets", "mpu", "uploads")
        self.assertEqual(os.listdir(upload_dir), [small["UploadId"]])
        self.assertEqual(len(os.listdir(os.path.join(upload_dir, small["UploadId"]))), 3)
        aborted = await call(c, "abort_multipart_upload", Bucket="mpu", Key="small",
                             UploadId=small["UploadId"])
        self.assertEqual(aborted["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(os.listdir(upload_dir), [])
        with self.assertRaises(ClientError) as caught:
            await call(c, "upload_part", Bucket="mpu", Key="small", UploadId=small["UploadId"],
                       PartNumber=3, Body=b"late")
        self.assertEqual(code_of(caught.exception), ("NoSuchUpload", 404))
        self.assertEqual((await call(c, "list_multipart_uploads", Bucket="mpu"))
                         .get("Uploads", []), [])
        self.assertEqual(self.staging(neb), [])

    async def test_upload_file(self):
        """boto3's managed transfer (multipart above 8 MB, ranged parallel
        download) round-trips a 17 MB file."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="xfer")
        src = os.path.abspath(self.mktemp())
        with open(src, "wb") as f:
            f.write(os.urandom(17 * MiB + 1))
        await call(c, "upload_file", Filename=src, Bucket="xfer", Key="disk")
        head = await call(c, "head_object", Bucket="xfer", Key="disk")
        self.assertRegex(head["ETag"], r'^"[0-9a-f]{32}-3"$')
        dst = src + ".back"
        await call(c, "download_file", Bucket="xfer", Key="disk", Filename=dst)
        with open(src, "rb") as a, open(dst, "rb") as b:
            self.assertEqual(hashlib.md5(a.read()).digest(), hashlib.md5(b.read()).digest())


class AuthTests(S3Case):
    """Signatures (SigV4, S3 SigV2, presigned), payload checks and ownership."""

    async def test_signatures(self):
        """SigV2 clients work; presigned GET URLs (SigV4 and SigV2) work
        with treq, expired ones do not; a wrong secret, an unknown key and
        a skewed clock get S3's codes and store nothing."""
        import treq
        from twisted.web.client import Agent, HTTPConnectionPool

        neb = await self.start()
        c, v2 = client(neb), client(neb, v2=True)
        await call(v2, "create_bucket", Bucket="sig")
        await call(v2, "put_object", Bucket="sig", Key="a b/ü", Body=b"v2 body",
                   Metadata={"k": "v"})
        got = await call(c, "get_object", Bucket="sig", Key="a b/ü")
        self.assertEqual(await threads.deferToThread(got["Body"].read), b"v2 body")
        listed = await call(v2, "list_objects", Bucket="sig")
        self.assertEqual([o["Key"] for o in listed["Contents"]], ["a b/ü"])
        mp = await call(v2, "create_multipart_upload", Bucket="sig", Key="m")
        await call(v2, "upload_part", Bucket="sig", Key="m", UploadId=mp["UploadId"],
                   PartNumber=1, Body=b"only")
        await call(v2, "complete_multipart_upload", Bucket="sig", Key="m",
                   UploadId=mp["UploadId"], MultipartUpload={"Parts": [
                       {"PartNumber": 1, "ETag": f'"{hashlib.md5(b"only").hexdigest()}"'}]})

        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        http_client = treq.client.HTTPClient(Agent(reactor, pool=pool))
        for signer in (c, v2):
            url = signer.generate_presigned_url("get_object",
                                                Params={"Bucket": "sig", "Key": "a b/ü"})
            response = await http_client.get(url)
            self.assertEqual((response.code, await treq.content(response)), (200, b"v2 body"))
            if signer is c:  # SigV4: signed an hour ago, valid for a minute
                earlier = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
                    hours=1)
                self.patch(botocore.auth, "get_current_datetime", lambda: earlier)
                expired = signer.generate_presigned_url(
                    "get_object", Params={"Bucket": "sig", "Key": "a b/ü"}, ExpiresIn=60)
                self.patch(botocore.auth, "get_current_datetime",
                           lambda: datetime.datetime.now(datetime.timezone.utc))
            else:  # SigV2: Expires in the past
                expired = signer.generate_presigned_url(
                    "get_object", Params={"Bucket": "sig", "Key": "a b/ü"}, ExpiresIn=-10)
            response = await http_client.get(expired)
            self.assertEqual((response.code, error_code(await treq.content(response))),
                             (403, "AccessDenied"))
        response = await http_client.get(neb.ec2_url + "sig/a%20b/%C3%BC")
        self.assertEqual((response.code, error_code(await treq.content(response))),
                         (403, "AccessDenied"))

        for bad, code in ((client(neb, secret="0" * 40), "SignatureDoesNotMatch"),
                          (client(neb, v2=True, secret="0" * 40), "SignatureDoesNotMatch"),
                          (client(neb, user="nobody"), "InvalidAccessKeyId")):
            with self.assertRaises(ClientError) as caught:
                await call(bad, "put_object", Bucket="sig", Key="forged", Body=b"x" * 2 * MiB)
            self.assertEqual(code_of(caught.exception), (code, 403))
            with self.assertRaises(ClientError) as caught:
                await call(bad, "list_objects_v2", Bucket="sig")
            self.assertEqual(code_of(caught.exception), (code, 403))
        skewed = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
        self.patch(botocore.auth, "get_current_datetime", lambda: skewed)
        with self.assertRaises(ClientError) as caught:
            await call(c, "put_object", Bucket="sig", Key="forged", Body=b"late")
        self.assertEqual(code_of(caught.exception), ("RequestTimeTooSkewed", 403))
        self.patch(botocore.auth, "get_current_datetime",
                   lambda: datetime.datetime.now(datetime.timezone.utc))
        listed = await call(c, "list_objects_v2", Bucket="sig")
        self.assertEqual([o["Key"] for o in listed["Contents"]], ["a b/ü", "m"])
        self.assertEqual(self.staging(neb), [])

    async def test_payload_checks(self):
        """A body that is not the signed one (x-amz-content-sha256), a
        signed aws-chunked body with a forged chunk, and an unsigned-trailer
        body with a wrong CRC32 are refused with nothing stored; good ones
        are stored decoded."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="pay")
        url = neb.ec2_url
        status, _, body = await threads.deferToThread(
            raw, url, "PUT", "/pay/sha", b"evil body", sign_body=b"good body")
        self.assertEqual((status, error_code(body)), (400, "XAmzContentSHA256Mismatch"))
        status, headers, body = await threads.deferToThread(raw, url, "PUT", "/pay/sha",
                                                            b"good body")
        self.assertEqual(status, 200)

        payload = os.urandom(70000)

        def chunked(forge=False, unsigned=False, crc=None):
            """A PUT with an aws-chunked body (chunks of 32 KiB)."""
            mode = awsauth.STREAMING_UNSIGNED_TRAILER if unsigned else awsauth.STREAMING_PAYLOAD
            now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            host = url.split("//")[1].rstrip("/")
            hdrs = {"Host": host, "X-Amz-Date": now, "X-Amz-Content-SHA256": mode,
                    "Content-Encoding": "aws-chunked",
                    "X-Amz-Decoded-Content-Length": str(len(payload))}
            if unsigned:
                hdrs["X-Amz-Trailer"] = "x-amz-checksum-crc32"
            names = sorted(k.lower() for k in hdrs)
            scope = f"{now[:8]}/us-east-1/s3/aws4_request"
            auth_req = awsauth.AuthRequest("PUT", "/pay/chunked", "",
                                           list(hdrs.items()))
            creq = awsauth.canonical_request(auth_req, names, mode, normalize=False)
            key = awsauth.signing_key(ADMIN_SECRET, now[:8], "us-east-1", "s3")
            seed = hmac.new(key, awsauth.string_to_sign(now, scope, creq).encode(),
                            hashlib.sha256).hexdigest()
            hdrs["Authorization"] = (f"AWS4-HMAC-SHA256 Credential=oneadmin/{scope}, "
                                     f"SignedHeaders={';'.join(names)}, Signature={seed}")
            pieces, previous = [], seed
            chunks = [payload[i:i + 32768] for i in range(0, len(payload), 32768)] + [b""]
            for n, chunk in enumerate(chunks):
                if unsigned:
                    pieces.append(b"%x\r\n" % len(chunk) + chunk + (b"\r\n" if chunk else b""))
                    continue
                sig = awsauth.chunk_signature(key, now, scope, previous,
                                              hashlib.sha256(chunk).hexdigest())
                previous = sig
                if forge and n == 1:
                    chunk = b"X" + chunk[1:]
                pieces.append(b"%x;chunk-signature=%s\r\n" % (len(chunk), sig.encode())
                              + chunk + b"\r\n")
            if unsigned:
                import zlib
                value = crc or base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
                pieces.append(f"x-amz-checksum-crc32:{value}\r\n\r\n".encode())
            body = b"".join(pieces)
            conn = http.client.HTTPConnection(*hdrs["Host"].split(":"), timeout=10)
            try:
                conn.request("PUT", "/pay/chunked", body=body, headers=hdrs)
                response = conn.getresponse()
                return response.status, response.read()
            finally:
                conn.close()

        for kwargs, expected in (({"forge": True}, (403, "SignatureDoesNotMatch")),
                                 ({"unsigned": True, "crc": "AAAAAA=="}, (400, "BadDigest"))):
            status, body = await threads.deferToThread(chunked, **kwargs)
            self.assertEqual((status, error_code(body)), expected)
            with self.assertRaises(ClientError):
                await call(c, "head_object", Bucket="pay", Key="chunked")
            self.assertEqual(self.staging(neb), [])
        for kwargs in ({}, {"unsigned": True}):
            status, body = await threads.deferToThread(chunked, **kwargs)
            self.assertEqual(status, 200, body)
            got = await call(c, "get_object", Bucket="pay", Key="chunked")
            self.assertEqual(await threads.deferToThread(got["Body"].read), payload)

    async def test_ownership(self):
        """Buckets are global and belong to their maker: another user gets
        BucketAlreadyExists and AccessDenied on everything; oneadmin may read
        helen's bucket but not change it."""
        neb = await self.start()
        await add_user(neb, f"{HELEN}:helenpass")
        admin, helen = client(neb), client(neb, user=HELEN, secret=HELEN_SECRET)
        await call(helen, "create_bucket", Bucket="helens")
        await call(helen, "put_object", Bucket="helens", Key="k", Body=b"hers")
        await call(admin, "create_bucket", Bucket="admins")
        with self.assertRaises(ClientError) as caught:
            await call(admin, "create_bucket", Bucket="helens")
        self.assertEqual(code_of(caught.exception), ("BucketAlreadyExists", 409))
        self.assertEqual([b["Name"] for b in (await call(helen, "list_buckets"))["Buckets"]],
                         ["helens"])
        self.assertEqual([b["Name"] for b in (await call(admin, "list_buckets"))["Buckets"]],
                         ["admins"])
        denied = [("list_objects_v2", {"Bucket": "admins"}),
                  ("put_object", {"Bucket": "admins", "Key": "x", "Body": b"x"}),
                  ("delete_bucket", {"Bucket": "admins"}),
                  ("create_multipart_upload", {"Bucket": "admins", "Key": "x"})]
        for method, kwargs in denied:
            with self.assertRaises(ClientError, msg=method) as caught:
                await call(helen, method, **kwargs)
            self.assertEqual(code_of(caught.exception), ("AccessDenied", 403), method)
        with self.assertRaises(ClientError) as caught:
            await call(helen, "head_bucket", Bucket="admins")
        self.assertEqual(code_of(caught.exception), ("403", 403))
        got = await call(admin, "get_object", Bucket="helens", Key="k")
        self.assertEqual(await threads.deferToThread(got["Body"].read), b"hers")
        listed = await call(admin, "list_objects_v2", Bucket="helens")
        self.assertEqual([o["Key"] for o in listed["Contents"]], ["k"])
        for method, kwargs in (("put_object", {"Bucket": "helens", "Key": "k", "Body": b"x"}),
                               ("delete_object", {"Bucket": "helens", "Key": "k"}),
                               ("copy_object", {"Bucket": "helens", "Key": "c",
                                                "CopySource": "helens/k"})):
            with self.assertRaises(ClientError, msg=method) as caught:
                await call(admin, method, **kwargs)
            self.assertEqual(code_of(caught.exception), ("AccessDenied", 403), method)
        with self.assertRaises(ClientError) as caught:
            await call(helen, "copy_object", Bucket="helens", Key="c", CopySource="admins/none")
        self.assertEqual(code_of(caught.exception), ("AccessDenied", 403))
        repo = neb.service.ec2_ports[0].site.front.s3.repository
        helen_user = neb.nebula.userpool.find(HELEN)
        with self.assertRaises(s3.AccessDenied) as caught:
            repo.object_file(helen_user, "admins", "x")
        self.assertEqual((caught.exception.code, caught.exception.status), ("AccessDenied", 403))
        with self.assertRaises(s3.NoSuchKey):
            repo.object_file(helen_user, "helens", "nope")
        with self.assertRaises(s3.NoSuchBucket) as caught:
            repo.object_file(helen_user, "nobucket", "x")
        self.assertEqual(caught.exception.code, "NoSuchBucket")
        self.assertTrue(repo.object_file(0, "helens", "k").startswith(neb.image_dir))

    async def test_over_tls(self):
        """Over the TLS listener boto3 sends uploads aws-chunked with a CRC32
        trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER): put, multipart and get."""
        from tests.test_tls import listen_line, make_cert

        _, cert, out = make_cert(self)
        line = listen_line(out).replace("ssl:2634:", "ssl:0:interface=127.0.0.1:", 1)
        neb = await self.start([f'econe.LISTEN="{line}"'])
        url = f"https://127.0.0.1:{neb.service.ec2_ports[1].getHost().port}/"
        c = client(neb, url=url, verify=cert)
        sent = []
        c.meta.events.register("before-send.s3.PutObject",
                               lambda request, **_: sent.append(dict(request.headers)))
        await call(c, "create_bucket", Bucket="tls")
        data = os.urandom(300000)
        await call(c, "put_object", Bucket="tls", Key="obj", Body=data)
        self.assertEqual(sent[0].get("X-Amz-Content-SHA256"),
                         awsauth.STREAMING_UNSIGNED_TRAILER.encode())
        got = await call(c, "get_object", Bucket="tls", Key="obj")
        self.assertEqual(await threads.deferToThread(got["Body"].read), data)
        self.assertEqual(got["ETag"], f'"{hashlib.md5(data).hexdigest()}"')
        src = os.path.abspath(self.mktemp())
        with open(src, "wb") as f:
            f.write(os.urandom(9 * MiB))
        await call(c, "upload_file", Filename=src, Bucket="tls", Key="big")
        head = await call(c, "head_object", Bucket="tls", Key="big")
        self.assertEqual(head["ContentLength"], 9 * MiB)
        self.assertRegex(head["ETag"], r"-2\"$")


class LimitTests(S3Case):
    """Body limits, early answers, interrupted uploads."""

    async def test_limits(self):
        """With MAX_OBJECT_SIZE = 1 MiB and MAX_QUERY_BODY = 64 KiB: an
        object, a part or an EC2 form over its limit is refused in its API's
        shape before the body is read (Content-Length) or when the count
        passes the limit (chunked); nothing is stored."""
        neb = await self.start(["econe.MAX_OBJECT_SIZE=1048576",
                                "econe.MAX_QUERY_BODY=65536"])
        c = client(neb)
        await call(c, "create_bucket", Bucket="lim")
        await call(c, "put_object", Bucket="lim", Key="ok", Body=b"x" * MiB)
        with self.assertRaises(ClientError) as caught:
            await call(c, "put_object", Bucket="lim", Key="big", Body=b"x" * (MiB + 1))
        self.assertEqual(code_of(caught.exception), ("EntityTooLarge", 400))
        mp = await call(c, "create_multipart_upload", Bucket="lim", Key="m")
        with self.assertRaises(ClientError) as caught:
            await call(c, "upload_part", Bucket="lim", Key="m", UploadId=mp["UploadId"],
                       PartNumber=1, Body=b"x" * (2 * MiB))
        self.assertEqual(code_of(caught.exception), ("EntityTooLarge", 400))

        url = neb.ec2_url

        def send_head_only(method, path, headers, body_for_signature):
            """Send only the head of a request announcing a large body; the
            response that comes before any body byte."""
            hdrs = signed(url, method, path, body_for_signature, headers)
            hdrs["Content-Length"] = str(len(body_for_signature))
            head, address = head_bytes(url, method, path, hdrs)
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(head)
                return read_response(sock)

        answer = await threads.deferToThread(send_head_only, "PUT", "/lim/early", {},
                                             b"y" * (3 * MiB))
        self.assertIn(b" 400 ", answer.split(b"\r\n")[0])
        self.assertIn(b"EntityTooLarge", answer)
        self.assertIn(b"Connection: close", answer)

        def chunked_put(total):
            hdrs = signed(url, "PUT", "/lim/chunked", b"z" * total)
            hdrs.pop("Content-Length", None)
            hdrs["Transfer-Encoding"] = "chunked"
            head, address = head_bytes(url, "PUT", "/lim/chunked", hdrs)
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(head)
                try:
                    for _ in range(total // 65536):
                        sock.sendall(b"10000\r\n" + b"z" * 65536 + b"\r\n")
                    sock.sendall(b"0\r\n\r\n")
                except OSError:
                    pass  # the server answered and closed
                return read_response(sock)
        answer = await threads.deferToThread(chunked_put, 2 * MiB)
        self.assertIn(b" 400 ", answer.split(b"\r\n")[0])
        self.assertIn(b"EntityTooLarge", answer)
        answer = await threads.deferToThread(chunked_put, 512 * 1024)
        self.assertIn(b" 200 ", answer.split(b"\r\n")[0])

        status, _, body = await threads.deferToThread(
            raw, url, "PUT", "/toolarge", b"<CreateBucketConfiguration>" + b" " * 70000
            + b"</CreateBucketConfiguration>")
        self.assertEqual((status, error_code(body)), (400, "MaxMessageLengthExceeded"))

        def ec2_form(size):
            conn = http.client.HTTPConnection(*url.split("//")[1].rstrip("/").split(":"),
                                              timeout=10)
            try:
                conn.request("POST", "/", body=b"Action=DescribeRegions&x=" + b"a" * size,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
                response = conn.getresponse()
                return response.status, response.read()
            finally:
                conn.close()
        status, body = await threads.deferToThread(ec2_form, 70000)
        self.assertEqual((status, etree.fromstring(body).findtext("Errors/Error/Code")),
                         (413, "RequestEntityTooLarge"))
        status, body = await threads.deferToThread(ec2_form, 100)  # unsigned: to EC2
        self.assertEqual((status, etree.fromstring(body).findtext("Errors/Error/Code")),
                         (401, "AuthFailure"))

        keys = [o["Key"] for o in (await call(c, "list_objects_v2", Bucket="lim"))["Contents"]]
        self.assertEqual(keys, ["chunked", "ok"])
        self.assertEqual(self.staging(neb), [])
        upload_dir = os.path.join(neb.image_dir, "buckets", "lim", "uploads", mp["UploadId"])
        self.assertEqual(os.listdir(upload_dir), ["upload.json"])

    async def test_expect_continue(self):
        """``Expect: 100-continue``: a good upload gets 100 Continue; a
        refused one (bad signature, no bucket) gets its error at once and no
        100, before any body byte."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="exp")
        url = neb.ec2_url
        body = b"e" * 100000

        def head_only(path, **sign):
            hdrs = signed(url, "PUT", path, body, {"Expect": "100-continue"}, **sign)
            hdrs["Content-Length"] = str(len(body))
            head, address = head_bytes(url, "PUT", path, hdrs)
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(head)
                first = read_response(sock)
                if first.startswith(b"HTTP/1.1 100"):
                    sock.sendall(body)
                    first += read_response(sock)
                return first
        answer = await threads.deferToThread(head_only, "/exp/good")
        self.assertTrue(answer.startswith(b"HTTP/1.1 100 Continue"), answer[:80])
        self.assertIn(b"HTTP/1.1 200 OK", answer)
        answer = await threads.deferToThread(head_only, "/exp/bad", secret="1" * 40)
        self.assertTrue(answer.startswith(b"HTTP/1.1 403"), answer[:80])
        self.assertIn(b"SignatureDoesNotMatch", answer)
        answer = await threads.deferToThread(head_only, "/none/x")
        self.assertTrue(answer.startswith(b"HTTP/1.1 404"), answer[:80])
        self.assertIn(b"NoSuchBucket", answer)

        def no_expect(size):
            """A refused upload without Expect: a small body is read and
            dropped, then answered (the connection stays usable); a large
            one is answered at once and the connection closed."""
            data = b"n" * size
            hdrs = signed(url, "PUT", "/exp/refused", data, secret="1" * 40)
            head, address = head_bytes(url, "PUT", "/exp/refused", hdrs)
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(head)
                if size < MiB:
                    sock.sendall(data)
                return read_response(sock)
        answer = await threads.deferToThread(no_expect, 50000)
        self.assertTrue(answer.startswith(b"HTTP/1.1 403"), answer[:80])
        self.assertNotIn(b"Connection: close", answer)
        answer = await threads.deferToThread(no_expect, 3 * MiB)
        self.assertTrue(answer.startswith(b"HTTP/1.1 403"), answer[:80])
        self.assertIn(b"Connection: close", answer)
        keys = [o["Key"] for o in (await call(c, "list_objects_v2", Bucket="exp"))["Contents"]]
        self.assertEqual(keys, ["good"])
        self.assertEqual(self.staging(neb), [])

    async def test_interrupted_uploads(self):
        """A client that goes away in the middle of a PutObject or an
        UploadPart body leaves no file behind and no object or part."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="cut")
        mp = await call(c, "create_multipart_upload", Bucket="cut", Key="m")
        url = neb.ec2_url
        body = b"c" * (4 * MiB)
        for path in ("/cut/put", f"/cut/m?partNumber=1&uploadId={mp['UploadId']}"):
            hdrs = signed(url, "PUT", path, body)
            head, address = head_bytes(url, "PUT", path, hdrs)
            sock = socket.create_connection(address, timeout=10)
            sock.sendall(head + body[:MiB])
            await self.until(lambda: len(self.staging(neb)) == 1, "no staging file")
            await sleep(0.2)
            staged = os.path.join(neb.image_dir, ".staging", self.staging(neb)[0])
            self.assertGreater(os.path.getsize(staged), 0)
            sock.close()
            await self.until(lambda: self.staging(neb) == [], f"{path}: staging file left")
        keys = (await call(c, "list_objects_v2", Bucket="cut")).get("Contents", [])
        self.assertEqual(keys, [])
        parts = await call(c, "list_parts", Bucket="cut", Key="m", UploadId=mp["UploadId"])
        self.assertEqual(parts.get("Parts", []), [])
        upload_dir = os.path.join(neb.image_dir, "buckets", "cut", "uploads", mp["UploadId"])
        self.assertEqual(os.listdir(upload_dir), ["upload.json"])

    async def test_routing(self):
        """EC2 Query requests (``/?Action=``, form POSTs on ``/``) still reach
        the EC2 front; ``GET /`` without Action is S3's ListBuckets."""
        neb = await self.start()
        ec2 = boto3.client("ec2", endpoint_url=neb.ec2_url, region_name="us-east-1",
                           aws_access_key_id="oneadmin", aws_secret_access_key=ADMIN_SECRET,
                           config=botocore.config.Config(retries={"max_attempts": 1}))
        self.addCleanup(lambda: threads.deferToThread(ec2.close))
        regions = await call(ec2, "describe_regions")
        self.assertEqual([r["RegionName"] for r in regions["Regions"]], ["default"])
        status, _, body = await threads.deferToThread(raw, neb.ec2_url, "GET", "/")
        self.assertEqual(status, 200)
        self.assertEqual(etree.QName(etree.fromstring(body)).localname, "ListAllMyBucketsResult")
        status, _, body = await threads.deferToThread(raw, neb.ec2_url, "PATCH", "/nob/k")
        self.assertEqual((status, error_code(body)), (405, "MethodNotAllowed"))

    async def test_body_collected_first(self):
        """An upload whose body Twisted collected before the S3 front saw it
        (a channel that does not tell the method and path early) is checked
        and stored the same way."""
        from twisted.web import server

        from nebtwist.api import front

        self.patch(front.FrontRequest, "gotLength", server.Request.gotLength)
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="late")
        data = os.urandom(300000)
        await call(c, "put_object", Bucket="late", Key="k", Body=data)
        got = await call(c, "get_object", Bucket="late", Key="k")
        self.assertEqual(await threads.deferToThread(got["Body"].read), data)
        with self.assertRaises(ClientError) as caught:
            await call(c, "put_object", Bucket="late", Key="bad", Body=b"abc",
                       ContentMD5=base64.b64encode(hashlib.md5(b"abd").digest()).decode())
        self.assertEqual(code_of(caught.exception), ("BadDigest", 400))
        self.assertEqual(self.staging(neb), [])

    async def test_errors(self):
        """Malformed XML bodies, HEAD errors without a body, and an internal
        failure answered as S3's InternalError XML (no traceback), nothing
        stored."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="err")
        url = neb.ec2_url
        status, _, body = await threads.deferToThread(raw, url, "PUT", "/xml", b"<not xml")
        self.assertEqual((status, error_code(body)), (400, "MalformedXML"))
        mp = await call(c, "create_multipart_upload", Bucket="err", Key="m")
        status, _, body = await threads.deferToThread(
            raw, url, "POST", f"/err/m?uploadId={mp['UploadId']}", b"<Other/>")
        self.assertEqual((status, error_code(body)), (400, "MalformedXML"))
        status, headers, body = await threads.deferToThread(raw, url, "HEAD", "/err/none")
        self.assertEqual((status, body), (404, b""))
        self.assertIn("x-amz-request-id", {k.lower() for k in headers})

        repo = neb.service.ec2_ports[0].site.front.s3.repository

        def broken(*args, **kwargs):
            raise RuntimeError("disk on fire")
        self.patch(repo, "put_object", broken)
        status, _, body = await threads.deferToThread(raw, url, "PUT", "/err/k", b"x" * 100)
        self.assertEqual((status, error_code(body)), (500, "InternalError"))
        self.assertNotIn(b"Traceback", body)
        self.assertNotIn(b"disk on fire", body)
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(self.staging(neb), [])


class RepositoryTests(TestCase):
    """The repository on disk, without a daemon: what start-up reads back
    and what it cleans."""

    def test_reload_and_cleanup(self):
        root = os.path.abspath(self.mktemp())
        repo = s3.Repository(root)
        repo.load()
        bucket = repo.create_bucket(7, "keep")
        for key, body in (("a", b"1"), ("b/c", b"22"), ("a", b"333")):
            f, path = repo.staging_file()
            with f:
                f.write(body)
            repo.put_object(bucket, key, path, len(body), hashlib.md5(body).hexdigest(),
                            "text/plain", meta={"x-amz-meta-k": "v"})
        upload = repo.create_upload(7, bucket, "big")
        f, path = repo.staging_file()
        with f:
            f.write(b"part")
        repo.put_part(bucket, upload, 1, path, 4, hashlib.md5(b"part").hexdigest())
        # What a crash would leave: a staging file, an unreferenced data file,
        # a temporary sidecar, a folder without bucket.json.
        f, junk = repo.staging_file()
        f.close()
        fan = os.path.dirname(repo.object_file(7, "keep", "a"))
        orphan = os.path.join(fan, "0" * 64 + "-" + "0" * 12)
        tmp = os.path.join(fan, "0" * 64 + ".json.tmp-1234")
        for p in (orphan, tmp):
            with open(p, "w") as f:
                f.write("x")
        os.makedirs(os.path.join(root, "buckets", "half"))

        again = s3.Repository(root)
        again.load()
        self.assertEqual(sorted(again.buckets), ["keep"])
        b = again.buckets["keep"]
        self.assertEqual(b.keys, ["a", "b/c"])
        with open(again.object_file(7, "keep", "a"), "rb") as f:
            self.assertEqual(f.read(), b"333")
        self.assertEqual(b.objects["a"].meta, {"x-amz-meta-k": "v"})
        self.assertEqual(b.objects["a"].content_type, "text/plain")
        self.assertEqual([(p.number, p.size) for p in b.uploads[upload.upload_id].parts.values()],
                         [(1, 4)])
        self.assertFalse(os.path.exists(junk))
        self.assertFalse(os.path.exists(orphan))
        self.assertFalse(os.path.exists(tmp))
        self.assertEqual(len(os.listdir(fan)), 2)  # one sidecar, one data file
        self.assertEqual(os.listdir(again.staging_dir), [])
        with self.assertRaises(s3.AccessDenied):
            again.object_file(8, "keep", "a")
        again.object_file(0, "keep", "a")  # oneadmin reads every bucket

    def test_image_dir(self):
        """econe.conf IMAGE_DIR: absolute as given, relative under
        $ONE_LOCATION/var, unset $ONE_LOCATION/var/econe; the shipped
        econe.conf names the default."""
        from nebtwist.api.front import image_dir
        from nebtwist.core.config import load_econe
        from nebtwist.paths import shipped

        shipped_conf = shipped("conf", "econe.conf")
        self.assertEqual(image_dir(load_econe(shipped_conf), "/one"), "/one/var/econe")
        for value, expected in (("/srv/s3", "/srv/s3"), ("repo", "/one/var/repo"),
                                ('""', "/one/var/econe")):
            econe = load_econe(shipped_conf, [f"econe.IMAGE_DIR={value}"])
            self.assertEqual(image_dir(econe, "/one"), expected, value)

    def test_ranges_and_names(self):
        self.assertEqual(s3.parse_range("bytes=0-0", 10), (0, 0))
        self.assertEqual(s3.parse_range("bytes=-3", 10), (7, 9))
        self.assertEqual(s3.parse_range("bytes=5-", 10), (5, 9))
        self.assertIsNone(s3.parse_range("bytes=0-1,3-4", 10))
        self.assertIsNone(s3.parse_range("items=0-1", 10))
        for bad in ("bytes=10-", "bytes=-0"):
            with self.assertRaises(s3.S3Error):
                s3.parse_range(bad, 10)
        self.assertEqual(s3.split_path(b"/b/..%2F..%2Fx?acl"), ("b", "../../x"))
        self.assertEqual(s3.split_path(b"/b//abs"), ("b", "/abs"))
        self.assertEqual(s3.split_path(b"/b/"), ("b", None))
        self.assertEqual(s3.split_path(b"http://h:1/b/k"), ("b", "k"))
        with self.assertRaises(s3.S3Error):
            s3.split_path(b"/b/%ff")
        for good in ("abc", "a.b-c", "1" * 63, "my.bucket.1"):
            self.assertTrue(s3.valid_bucket_name(good), good)
        for bad in ("ab", "a" * 64, "a..b", "a.-b", "10.0.0.1", "xn--abc", "abc-", "ABC"):
            self.assertFalse(s3.valid_bucket_name(bad), bad)


class _Transport:
    """Records pauseProducing / resumeProducing."""

    def __init__(self):
        self.calls = []

    def pauseProducing(self):
        self.calls.append("pause")

    def resumeProducing(self):
        self.calls.append("resume")


class BodySinkTests(TestCase):
    """A large body goes to disk through the writer thread, with the
    connection paused while too much waits to be written."""

    def repository(self):
        repo = s3.Repository(os.path.abspath(self.mktemp()))
        repo.load()
        return repo

    async def test_flow_control(self):
        repo = self.repository()
        transport = _Transport()
        sink = s3.BodySink(repo, awsauth.PayloadVerifier(), 64 * MiB, 20 * MiB, transport)
        self.addCleanup(sink.discard)
        piece = os.urandom(64 * 1024)
        # The writer reports progress through the reactor, which does not run
        # while the pieces are fed: the queue passes HIGH and the transport is paused.
        for _ in range(20 * 16):
            sink.feed(piece)
        self.assertEqual(transport.calls, ["pause"])
        md5 = await sink.finish()
        self.assertEqual(md5, hashlib.md5(piece * (20 * 16)).hexdigest())
        self.assertEqual(transport.calls, ["pause", "resume"])
        self.assertEqual(os.path.getsize(sink.path), 20 * MiB)
        sink.discard()
        self.assertFalse(os.path.exists(sink.path))

    async def test_discard_resumes(self):
        """A body dropped while the connection is paused lets it be read
        again (the rest is read and thrown away), and leaves no file."""
        repo = self.repository()
        transport = _Transport()
        sink = s3.BodySink(repo, awsauth.PayloadVerifier(), 64 * MiB, None, transport)
        for _ in range(10 * 16):
            sink.feed(b"d" * 65536)
        self.assertEqual(transport.calls, ["pause"])
        sink.discard()
        self.assertEqual(transport.calls, ["pause", "resume"])
        await sleep(0.2)  # the thread ends
        self.assertEqual(os.listdir(repo.staging_dir), [])

    def test_small_bodies_stay_in_memory(self):
        repo = self.repository()
        sink = s3.BodySink(repo, awsauth.PayloadVerifier(), 64 * MiB, 1000)
        sink.feed(b"x" * 1000)
        self.assertIsNone(sink.path)
        self.assertEqual(os.listdir(repo.staging_dir), [])
        with self.assertRaises(s3.S3Error):  # more than announced
            sink.feed(b"y")
        big = s3.BodySink(repo, awsauth.PayloadVerifier(), 10, None)
        self.addCleanup(big.discard)
        with self.assertRaises(s3.EntityTooLarge):
            big.feed(b"z" * 11)
