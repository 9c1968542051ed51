"""The S3 repository never acts on what it does not understand (issue 9,
section 3b): sub-resources, query parameters and headers it does not
implement are refused before anything changes; and the replies S3 gives to
a repeated CompleteMultipartUpload, ``max-keys=0`` and a paginated
ListBuckets.

The daemon runs in-process (:func:`nebtwist.testing.start_nebula`); the
clients are boto3 and raw requests signed by botocore (for what boto3 will
not send), as in :mod:`tests.test_s3`. The sub-resource names are those of
botocore's S3 service model (the query parts of every operation's
``requestUri``), so the list follows AWS's."""

import base64
import hashlib
import os
import shutil
import subprocess
import urllib.request

from twisted.internet import threads

from lxml import etree

from tests.test_s3 import (ADMIN_SECRET, MiB, S3Case, call, client, code_of,
                           error_code as _error_code, raw)

try:
    import botocore.loaders
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover - CI installs boto3 (.ci/run)
    pass


def model_subresources():
    """``{name: {(method, target)}}`` of every S3 sub-resource of the
    installed botocore's S3 service model (Amazon S3 API Reference
    2006-03-01): the query parts of the operations' ``requestUri``
    (``/{Bucket}?acl``, ``/{Bucket}/{Key+}?select&select-type=2``); target
    ``"bucket"`` or ``"object"``. ``list-type`` (ListObjectsV2's parameter,
    not a sub-resource) and ``x-id`` are left out; the qualifiers
    ``uploadId``, ``partNumber`` and ``versionId`` (query members of the
    object operations, S3 SigV2 sub-resources) are added."""
    model = botocore.loaders.Loader().load_service_model("s3", "service-2")
    names = {}
    for operation in model["operations"].values():
        path, _, query = operation["http"]["requestUri"].partition("?")
        target = "object" if "{Key+}" in path else "bucket"
        for part in query.split("&"):
            name = part.partition("=")[0]
            if name and name not in ("list-type", "x-id"):
                names.setdefault(name, set()).add((operation["http"]["method"], target))
    names.setdefault("versionId", set()).update({("GET", "object"), ("DELETE", "object")})
    names.setdefault("uploadId", set()).update({("GET", "object"), ("PUT", "object"),
                                                ("POST", "object"), ("DELETE", "object")})
    names.setdefault("partNumber", set()).update({("GET", "object"), ("PUT", "object")})
    return names


#: What the repository implements (its module docstring's operations):
#: ``(target, method, sub-resource)``. Every other combination must answer
#: NotImplemented.
IMPLEMENTED = {("bucket", "GET", "location"), ("bucket", "GET", "uploads"),
               ("bucket", "GET", "tagging"), ("bucket", "PUT", "tagging"),
               ("bucket", "DELETE", "tagging"),
               ("bucket", "POST", "delete"), ("object", "GET", "uploadId"),
               ("object", "PUT", "uploadId"), ("object", "PUT", "partNumber"),
               ("object", "POST", "uploads"), ("object", "POST", "uploadId"),
               ("object", "DELETE", "uploadId")}

METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")


def error_code(body):
    """The ``<Code>`` of an S3 error document, or the start of what came instead."""
    try:
        return _error_code(body)
    except etree.XMLSyntaxError:
        return repr(body[:40])


def state(root):
    """``{path under root: SHA256 of the content}`` of every file."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


class RefusalCase(S3Case):

    async def populated(self):
        """A daemon with bucket ``full`` (object ``obj``: ``original``) and
        the empty bucket ``empty``; ``(neb, boto3 client)``."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="full")
        await call(c, "create_bucket", Bucket="empty")
        await call(c, "put_object", Bucket="full", Key="obj", Body=b"original",
                   ContentType="text/plain")
        return neb, c

    async def assertUnchanged(self, neb, c, before):
        """The repository's files are ``before`` (nothing staged), ``full/obj``
        still reads ``original`` and both buckets exist."""
        self.assertEqual(state(neb.image_dir), before)
        self.assertEqual(self.staging(neb), [])
        got = await call(c, "get_object", Bucket="full", Key="obj")
        self.assertEqual(await threads.deferToThread(got["Body"].read), b"original")
        names = [b["Name"] for b in (await call(c, "list_buckets"))["Buckets"]]
        self.assertEqual(names, ["empty", "full"])


class SubresourceTests(RefusalCase):
    """API Reference (2006-03-01): every sub-resource the repository does
    not implement answers ``NotImplemented`` (501, an S3 ``<Error>``
    document) with every method, and changes nothing."""

    async def test_every_subresource_refused(self):
        """Each sub-resource name of botocore's S3 model, with GET, HEAD,
        PUT, POST and DELETE, on an empty bucket and on an object (an XML
        body for PUT and POST): 501 NotImplemented, and the files, the
        object and the buckets are as before. The names AWS documents for
        the operations the issue names (DELETE ?publicAccessBlock deleted
        the bucket; PUT ?retention replaced the object) are among them."""
        neb, c = await self.populated()
        names = model_subresources()
        for documented in ("accelerate", "acl", "analytics", "attributes", "cors", "delete",
                           "encryption", "intelligent-tiering", "inventory", "legal-hold",
                           "lifecycle", "location", "logging", "metrics", "notification",
                           "object-lock", "ownershipControls", "policy", "policyStatus",
                           "publicAccessBlock", "replication", "requestPayment", "restore",
                           "retention", "select", "tagging", "torrent", "versioning",
                           "versions", "website", "uploads", "uploadId", "partNumber"):
            self.assertIn(documented, names)
        before = state(neb.image_dir)
        cases = [(target, method, name) for name in sorted(names) for method in METHODS
                 for target in ("bucket", "object")
                 if (target, method, name) not in IMPLEMENTED]
        # the pairs of a documented operation are all there
        for name, uses in names.items():
            for method, target in uses:
                if (target, method, name) not in IMPLEMENTED:
                    self.assertIn((target, method, name), cases)

        def send_all():
            answers = []
            for target, method, name in cases:
                path = "/empty" if target == "bucket" else "/full/obj"
                query = f"?{name}" if name != "versionId" else "?versionId=3HL4kqtJlcpXroDTDmJ"
                body = b"<Retention><Mode>GOVERNANCE</Mode></Retention>" \
                    if method in ("PUT", "POST") else b""
                status, _, reply = raw(neb.ec2_url, method, path + query, body)
                answers.append((target, method, name, status,
                                error_code(reply) if reply else None))
            return answers
        answers = await threads.deferToThread(send_all)
        wrong = [a for a in answers
                 if a[3] != 501 or a[4] != ("NotImplemented" if a[1] != "HEAD" else None)]
        self.assertEqual(wrong, [])
        self.assertGreater(len(answers), 400)
        await self.assertUnchanged(neb, c, before)

    async def test_issue_cases(self):
        """The cases found by the conformance suite, one by one with boto3:
        DELETE ?publicAccessBlock / ?encryption / ?ownershipControls on an
        empty bucket, PUT ?legal-hold / ?retention on an object, GET
        ?attributes and ?policyStatus."""
        neb, c = await self.populated()
        before = state(neb.image_dir)
        for method, kwargs in (
                ("delete_public_access_block", {"Bucket": "empty"}),
                ("delete_bucket_encryption", {"Bucket": "empty"}),
                ("delete_bucket_ownership_controls", {"Bucket": "empty"}),
                ("put_object_legal_hold", {"Bucket": "full", "Key": "obj",
                                           "LegalHold": {"Status": "ON"}}),
                ("put_object_retention", {"Bucket": "full", "Key": "obj", "Retention": {
                    "Mode": "GOVERNANCE", "RetainUntilDate": "2030-01-01T00:00:00Z"}}),
                ("get_object_attributes", {"Bucket": "full", "Key": "obj",
                                           "ObjectAttributes": ["ETag"]}),
                ("get_bucket_policy_status", {"Bucket": "full"}),
                ("put_bucket_versioning", {"Bucket": "empty", "VersioningConfiguration":
                                           {"Status": "Enabled"}}),
                ("list_object_versions", {"Bucket": "full"}),
                ("put_object_tagging", {"Bucket": "full", "Key": "obj",
                                        "Tagging": {"TagSet": [{"Key": "a", "Value": "b"}]}}),
                ("delete_object", {"Bucket": "full", "Key": "obj", "VersionId": "v1"})):
            with self.assertRaises(ClientError, msg=method) as caught:
                await call(c, method, **kwargs)
            self.assertEqual(code_of(caught.exception), ("NotImplemented", 501), method)
        await self.assertUnchanged(neb, c, before)

    async def test_unknown_parameters_of_changes(self):
        """A PUT, POST or DELETE with a query parameter the operation does not
        have (a sub-resource AWS may add later) is refused: NotImplemented,
        nothing changed. Reads ignore unknown parameters, as S3 does; the
        signature parameters of a presigned URL and ``x-id`` are no
        parameters of the operation."""
        neb, c = await self.populated()
        before = state(neb.image_dir)

        def send_all():
            out = []
            for method, path in (("DELETE", "/empty?newthing"), ("DELETE", "/full/obj?foo=1"),
                                 ("PUT", "/empty?newthing"), ("PUT", "/full/obj?newthing"),
                                 ("POST", "/full/obj?newthing"),
                                 ("PUT", "/full/obj?uploadId=x&partNumber=1&extra=1"),
                                 ("DELETE", "/empty?location"),
                                 ("PUT", "/newbucket?list-type=2"),
                                 ("GET", "/full?location&uploads")):
                status, _, reply = raw(neb.ec2_url, method, path, b"<x/>" if method in (
                    "PUT", "POST") else b"")
                out.append((method, path, status, error_code(reply)))
            return out
        for method, path, status, code in await threads.deferToThread(send_all):
            self.assertEqual((status, code), (501, "NotImplemented"), f"{method} {path}")
        await self.assertUnchanged(neb, c, before)
        status, _, reply = await threads.deferToThread(raw, neb.ec2_url, "GET",
                                                       "/full?newthing")
        self.assertEqual(status, 200)
        self.assertIn(b"<Key>obj</Key>", reply)
        status, _, _ = await threads.deferToThread(raw, neb.ec2_url, "PUT",
                                                   "/full/new?x-id=PutObject", b"data")
        self.assertEqual(status, 200)
        url = await threads.deferToThread(c.generate_presigned_url, "put_object",
                                          Params={"Bucket": "full", "Key": "presigned"})

        def put_presigned():
            request = urllib.request.Request(url, data=b"signed in the URL", method="PUT")
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        self.assertEqual(await threads.deferToThread(put_presigned), 200)
        got = await call(c, "get_object", Bucket="full", Key="presigned")
        self.assertEqual(await threads.deferToThread(got["Body"].read), b"signed in the URL")

    async def test_bodies_with_unknown_elements(self):
        """DeleteObjects naming a VersionId (or an ETag condition) and a
        CreateBucketConfiguration with elements other than
        LocationConstraint are refused (NotImplemented): deleting the
        current object instead of a version, or a bucket without its tags,
        is not what was asked. A copy of a source version likewise."""
        neb, c = await self.populated()
        before = state(neb.image_dir)
        for objects in ([{"Key": "obj", "VersionId": "v1"}], [{"Key": "obj", "ETag": '"x"'}]):
            with self.assertRaises(ClientError) as caught:
                await call(c, "delete_objects", Bucket="full", Delete={"Objects": objects})
            self.assertEqual(code_of(caught.exception), ("NotImplemented", 501))
        body = (b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                b'<LocationConstraint>eu-west-1</LocationConstraint>'
                b'<Tags><Tag><Key>a</Key><Value>b</Value></Tag></Tags>'
                b'</CreateBucketConfiguration>')
        status, _, reply = await threads.deferToThread(raw, neb.ec2_url, "PUT", "/tagged", body)
        self.assertEqual((status, error_code(reply)), (501, "NotImplemented"))
        with self.assertRaises(ClientError) as caught:
            await call(c, "copy_object", Bucket="full", Key="copy",
                       CopySource={"Bucket": "full", "Key": "obj", "VersionId": "v1"})
        self.assertEqual(code_of(caught.exception), ("NotImplemented", 501))
        await self.assertUnchanged(neb, c, before)


class HeaderTests(RefusalCase):
    """Request headers asking for what the repository does not do are
    refused and nothing is stored (API Reference: PutObject, CopyObject,
    CreateMultipartUpload, CreateBucket, GetObject request headers; Error
    responses)."""

    async def refused(self, neb, c, calls):
        before = state(neb.image_dir)
        for method, kwargs, expected in calls:
            with self.assertRaises(ClientError, msg=(method, kwargs)) as caught:
                await call(c, method, **kwargs)
            self.assertEqual(code_of(caught.exception), expected, (method, kwargs))
        await self.assertUnchanged(neb, c, before)
        self.assertEqual((await call(c, "list_multipart_uploads", Bucket="full"))
                         .get("Uploads", []), [])

    async def test_server_side_encryption(self):
        """SSE-C, SSE-S3 and SSE-KMS on PutObject (a small body and a
        streamed one), CreateMultipartUpload, CopyObject and GetObject:
        NotImplemented (501). An object uploaded with a customer key must
        not read back without it."""
        neb, c = await self.populated()
        key = os.urandom(32)
        sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
        not_implemented = ("NotImplemented", 501)
        await self.refused(neb, c, [
            ("put_object", {"Bucket": "full", "Key": "obj", "Body": b"secret", **sse_c},
             not_implemented),
            ("put_object", {"Bucket": "full", "Key": "big", "Body": os.urandom(MiB), **sse_c},
             not_implemented),
            ("put_object", {"Bucket": "full", "Key": "new", "Body": b"x",
                            "ServerSideEncryption": "AES256"}, not_implemented),
            ("put_object", {"Bucket": "full", "Key": "new", "Body": b"x",
                            "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/k"},
             not_implemented),
            ("create_multipart_upload", {"Bucket": "full", "Key": "mp", **sse_c},
             not_implemented),
            ("create_multipart_upload", {"Bucket": "full", "Key": "mp",
                                         "ServerSideEncryption": "AES256"}, not_implemented),
            ("copy_object", {"Bucket": "full", "Key": "copy", "ServerSideEncryption": "AES256",
                             "CopySource": {"Bucket": "full", "Key": "obj"}}, not_implemented),
            ("copy_object", {"Bucket": "full", "Key": "copy",
                             "CopySourceSSECustomerAlgorithm": "AES256",
                             "CopySourceSSECustomerKey": key,
                             "CopySource": {"Bucket": "full", "Key": "obj"}}, not_implemented),
            ("get_object", {"Bucket": "full", "Key": "obj", **sse_c}, not_implemented),
        ])

    async def test_acls(self):
        """Canned ACLs other than private (and bucket-owner-full-control for
        an object) and grant headers: the answers of a bucket whose Object
        Ownership is BucketOwnerEnforced, S3's default (ACLs disabled):
        AccessControlListNotSupported for objects,
        InvalidBucketAclWithObjectOwnership for CreateBucket, InvalidArgument
        for an unknown canned ACL. private is accepted."""
        neb, c = await self.populated()
        not_supported = ("AccessControlListNotSupported", 400)
        await self.refused(neb, c, [
            ("put_object", {"Bucket": "full", "Key": "obj", "Body": b"x", "ACL": "public-read"},
             not_supported),
            ("put_object", {"Bucket": "full", "Key": "obj", "Body": b"x",
                            "GrantRead": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'},
             not_supported),
            ("put_object", {"Bucket": "full", "Key": "obj", "Body": b"x", "ACL": "bogus"},
             ("InvalidArgument", 400)),
            ("create_multipart_upload", {"Bucket": "full", "Key": "mp",
                                         "ACL": "public-read-write"}, not_supported),
            ("copy_object", {"Bucket": "full", "Key": "copy", "ACL": "authenticated-read",
                             "CopySource": {"Bucket": "full", "Key": "obj"}}, not_supported),
            ("create_bucket", {"Bucket": "public", "ACL": "public-read"},
             ("InvalidBucketAclWithObjectOwnership", 400)),
        ])
        await call(c, "put_object", Bucket="full", Key="priv", Body=b"p", ACL="private")
        await call(c, "put_object", Bucket="full", Key="bofc", Body=b"p",
                   ACL="bucket-owner-full-control")
        await call(c, "create_bucket", Bucket="private-one", ACL="private")

    async def test_other_semantics(self):
        """Object lock, tagging, website redirect, storage classes other than
        STANDARD, conditional writes and deletes, a full-object checksum of a
        multipart upload, object lock or ACL-enabled ownership at bucket
        creation: refused (NotImplemented;
        InvalidStorageClass for an unknown class). STANDARD is accepted."""
        neb, c = await self.populated()
        not_implemented = ("NotImplemented", 501)
        put = {"Bucket": "full", "Key": "obj", "Body": b"replaced"}
        await self.refused(neb, c, [
            ("put_object", {**put, "Tagging": "a=b"}, not_implemented),
            ("put_object", {**put, "WebsiteRedirectLocation": "/elsewhere"}, not_implemented),
            ("put_object", {**put, "StorageClass": "GLACIER"}, not_implemented),
            ("put_object", {**put, "StorageClass": "NO_SUCH_CLASS"},
             ("InvalidStorageClass", 400)),
            ("put_object", {**put, "ObjectLockMode": "GOVERNANCE",
                            "ObjectLockRetainUntilDate": "2030-01-01T00:00:00Z"},
             not_implemented),
            ("put_object", {**put, "ObjectLockLegalHoldStatus": "ON"}, not_implemented),
            ("put_object", {**put, "IfNoneMatch": "*"}, not_implemented),
            ("put_object", {**put, "IfMatch": '"0"'}, not_implemented),
            ("create_multipart_upload", {"Bucket": "full", "Key": "mp", "Tagging": "a=b"},
             not_implemented),
            ("create_multipart_upload", {"Bucket": "full", "Key": "mp",
                                         "ChecksumAlgorithm": "CRC32",
                                         "ChecksumType": "FULL_OBJECT"}, not_implemented),
            ("copy_object", {"Bucket": "full", "Key": "copy", "TaggingDirective": "REPLACE",
                             "Tagging": "a=b", "CopySource": {"Bucket": "full", "Key": "obj"}},
             not_implemented),
            ("copy_object", {"Bucket": "full", "Key": "copy", "StorageClass": "STANDARD_IA",
                             "CopySource": {"Bucket": "full", "Key": "obj"}}, not_implemented),
            ("delete_object", {"Bucket": "full", "Key": "obj", "IfMatch": '"0"'},
             not_implemented),
            ("create_bucket", {"Bucket": "locked", "ObjectLockEnabledForBucket": True},
             not_implemented),
            ("create_bucket", {"Bucket": "writer", "ObjectOwnership": "ObjectWriter"},
             not_implemented),
        ])
        await call(c, "put_object", Bucket="full", Key="std", Body=b"s",
                   StorageClass="STANDARD")
        await call(c, "create_bucket", Bucket="enforced", ObjectOwnership="BucketOwnerEnforced")

    async def test_expected_bucket_owner(self):
        """``x-amz-expected-bucket-owner`` (and the copy source's): another
        owner than the bucket's (its uid, the listings' Owner/ID) is
        AccessDenied and nothing is written; the right one works."""
        neb, c = await self.populated()
        await self.refused(neb, c, [
            ("put_object", {"Bucket": "full", "Key": "obj", "Body": b"x",
                            "ExpectedBucketOwner": "111122223333"}, ("AccessDenied", 403)),
            ("delete_object", {"Bucket": "full", "Key": "obj",
                               "ExpectedBucketOwner": "111122223333"}, ("AccessDenied", 403)),
            ("delete_bucket", {"Bucket": "empty", "ExpectedBucketOwner": "111122223333"},
             ("AccessDenied", 403)),
            ("copy_object", {"Bucket": "full", "Key": "copy",
                             "ExpectedSourceBucketOwner": "111122223333",
                             "CopySource": {"Bucket": "full", "Key": "obj"}},
             ("AccessDenied", 403)),
        ])
        await call(c, "put_object", Bucket="full", Key="mine", Body=b"m",
                   ExpectedBucketOwner="0")


class ReplyTests(RefusalCase):
    """Replies S3 gives that the repository got wrong."""

    async def test_complete_twice(self):
        """A second CompleteMultipartUpload of an upload that just completed
        gets the same success (S3 answers so for a while: a client whose
        first answer was lost retries); with other parts, or after the
        upload is aborted-then-unknown, NoSuchUpload as before."""
        neb, c = await self.populated()
        created = await call(c, "create_multipart_upload", Bucket="full", Key="mp")
        uid = created["UploadId"]
        parts = []
        for n, body in ((1, os.urandom(5 * MiB)), (2, b"tail")):
            r = await call(c, "upload_part", Bucket="full", Key="mp", UploadId=uid,
                           PartNumber=n, Body=body)
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        first = await call(c, "complete_multipart_upload", Bucket="full", Key="mp",
                           UploadId=uid, MultipartUpload={"Parts": parts})
        again = await call(c, "complete_multipart_upload", Bucket="full", Key="mp",
                           UploadId=uid, MultipartUpload={"Parts": parts})
        self.assertEqual((again["ETag"], again["Key"], again["Bucket"]),
                         (first["ETag"], "mp", "full"))
        head = await call(c, "head_object", Bucket="full", Key="mp")
        self.assertEqual((head["ETag"], head["ContentLength"]), (first["ETag"], 5 * MiB + 4))
        for other_key, other_parts in (("mp", parts[:1]), ("other", parts)):
            with self.assertRaises(ClientError) as caught:
                await call(c, "complete_multipart_upload", Bucket="full", Key=other_key,
                           UploadId=uid, MultipartUpload={"Parts": other_parts})
            self.assertEqual(code_of(caught.exception), ("NoSuchUpload", 404))

    async def test_max_keys_zero(self):
        """ListObjects v1 and v2 with ``max-keys=0``: no contents and
        IsTruncated false (what S3 answers)."""
        neb, c = await self.populated()
        v1 = await call(c, "list_objects", Bucket="full", MaxKeys=0)
        self.assertEqual((v1["IsTruncated"], v1.get("Contents"), v1["MaxKeys"]),
                         (False, None, 0))
        v2 = await call(c, "list_objects_v2", Bucket="full", MaxKeys=0)
        self.assertEqual((v2["IsTruncated"], v2.get("Contents"), v2["KeyCount"]),
                         (False, None, 0))
        self.assertNotIn("NextContinuationToken", v2)

    async def test_list_buckets_pages(self):
        """ListBuckets honours MaxBuckets, gives a ContinuationToken while
        more follow and accepts it (``continuation-token``), and filters by
        Prefix and BucketRegion (API Reference, ListBuckets); boto3's
        paginator sees every bucket once. max-buckets 0, 10001 and a bad
        token are InvalidArgument."""
        neb, c = await self.populated()
        for name in ("bb1", "bb2", "bb3", "cc1"):
            await call(c, "create_bucket", Bucket=name)
        await call(c, "create_bucket", Bucket="eu1",
                   CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        everything = ["bb1", "bb2", "bb3", "cc1", "empty", "eu1", "full"]
        page = await call(c, "list_buckets", MaxBuckets=2)
        self.assertEqual([b["Name"] for b in page["Buckets"]], ["bb1", "bb2"])
        self.assertIn("ContinuationToken", page)
        rest = await call(c, "list_buckets", MaxBuckets=10,
                          ContinuationToken=page["ContinuationToken"])
        self.assertEqual([b["Name"] for b in rest["Buckets"]], everything[2:])
        self.assertNotIn("ContinuationToken", rest)
        prefixed = await call(c, "list_buckets", Prefix="bb", MaxBuckets=2)
        self.assertEqual(([b["Name"] for b in prefixed["Buckets"]], prefixed["Prefix"]),
                         (["bb1", "bb2"], "bb"))
        last = await call(c, "list_buckets", Prefix="bb", MaxBuckets=2,
                          ContinuationToken=prefixed["ContinuationToken"])
        self.assertEqual([b["Name"] for b in last["Buckets"]], ["bb3"])
        self.assertNotIn("ContinuationToken", last)
        eu = await call(c, "list_buckets", BucketRegion="eu-west-1")
        self.assertEqual([(b["Name"], b["BucketRegion"]) for b in eu["Buckets"]],
                         [("eu1", "eu-west-1")])

        def paginate():
            found = []
            for p in c.get_paginator("list_buckets").paginate(
                    PaginationConfig={"PageSize": 3}):
                found += [b["Name"] for b in p["Buckets"]]
            return found
        self.assertEqual(await threads.deferToThread(paginate), everything)
        self.assertEqual([b["Name"] for b in (await call(c, "list_buckets"))["Buckets"]],
                         everything)
        for query in ("?max-buckets=0", "?max-buckets=10001",
                      "?continuation-token=" + base64.urlsafe_b64encode(b"").decode() + "%25"):
            status, _, reply = await threads.deferToThread(raw, neb.ec2_url, "GET", "/" + query)
            self.assertEqual((status, error_code(reply)), (400, "InvalidArgument"), query)


class ClientTests(RefusalCase):
    """What the AWS CLI sends by default is still understood."""

    async def test_aws_cli(self):
        """``aws s3`` mb, cp (one PUT, and a 9 MB multipart upload with the
        CLI's default checksum headers), ls, cp back, rm, rb: all work."""
        if shutil.which("aws") is None:
            self.skipTest("the AWS CLI is not installed")
        neb = await self.start()
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        small, big = os.path.join(home, "small"), os.path.join(home, "big")
        with open(small, "wb") as f:
            f.write(b"small file")
        with open(big, "wb") as f:
            f.write(os.urandom(9 * MiB))
        env = dict(os.environ, AWS_ACCESS_KEY_ID="oneadmin", AWS_SECRET_ACCESS_KEY=ADMIN_SECRET,
                   AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull,
                   AWS_SHARED_CREDENTIALS_FILE=os.devnull, HOME=home)

        def aws(*args):
            done = subprocess.run(["aws", "--endpoint-url", neb.ec2_url, *args], env=env,
                                  capture_output=True, text=True, timeout=300,
                                  stdin=subprocess.DEVNULL)
            self.assertEqual(done.returncode, 0, f"aws {' '.join(args)}: {done.stderr}")
            return done.stdout

        def session():
            aws("s3", "mb", "s3://cli")
            aws("s3", "cp", small, "s3://cli/small")
            aws("s3", "cp", big, "s3://cli/big")
            listing = aws("s3", "ls", "s3://cli/")
            buckets = aws("s3", "ls")
            aws("s3", "cp", "s3://cli/big", big + ".back")
            with open(big, "rb") as a, open(big + ".back", "rb") as b:
                same = a.read() == b.read()
            aws("s3", "rm", "--recursive", "s3://cli/")
            aws("s3", "rb", "s3://cli")
            return listing, buckets, same, aws("s3", "ls")
        listing, buckets, same, after = await threads.deferToThread(session)
        self.assertRegex(listing, r"(?m) 10 small$")
        self.assertRegex(listing, rf"(?m) {9 * MiB} big$")
        self.assertRegex(buckets, r"(?m) cli$")
        self.assertTrue(same)
        self.assertEqual(after.strip(), "")

