"""Where real S3 clients and the repository disagreed (issue 11, item 6):
cases a third party's S3 conformance suite found, each checked here with
boto3 against the S3 front of an in-process daemon, as :mod:`tests.test_s3`
does: CreateBucket of one's own bucket in us-east-1, an empty
ListObjectsV2 continuation token, ListParts pages, bucket tagging and
UploadPartCopy. The behaviours are those of the Amazon S3 API Reference
(2006-03-01)."""

import base64
import hashlib
import os

from twisted.internet import threads

from tests.test_s3 import HELEN, HELEN_SECRET, MiB, S3Case, call, client, code_of, raw
from tests.test_s3 import error_code
from tests.test_s3_refusals import state
from tests.test_xmlrpc_api import add_user

try:
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover - CI installs boto3 (.ci/run)
    pass


class CreateBucketTests(S3Case):
    """API Reference, CreateBucket / BucketAlreadyOwnedByYou."""

    async def test_own_bucket_again_in_us_east_1(self):
        """Re-creating one's own us-east-1 bucket (no LocationConstraint)
        answers 200 and changes nothing: the objects, the creation date and
        the files stay. Outside us-east-1 (the bucket's LocationConstraint
        or the request's) it is BucketAlreadyOwnedByYou (409); another
        user's bucket is BucketAlreadyExists (409)."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="legacy")
        await call(c, "put_object", Bucket="legacy", Key="kept", Body=b"still here")
        await call(c, "create_bucket", Bucket="eu.bucket",
                   CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        before = (await call(c, "list_buckets"))["Buckets"]
        files = state(neb.image_dir)
        again = await call(c, "create_bucket", Bucket="legacy")
        self.assertEqual((again["ResponseMetadata"]["HTTPStatusCode"], again["Location"]),
                         (200, "/legacy"))
        self.assertEqual((await call(c, "list_buckets"))["Buckets"], before)
        self.assertEqual(state(neb.image_dir), files)
        got = await call(c, "get_object", Bucket="legacy", Key="kept")
        self.assertEqual(await threads.deferToThread(got["Body"].read), b"still here")
        for kwargs in ({"Bucket": "eu.bucket",
                        "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}},
                       {"Bucket": "eu.bucket"},
                       {"Bucket": "legacy",
                        "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}}):
            with self.assertRaises(ClientError, msg=kwargs) as caught:
                await call(c, "create_bucket", **kwargs)
            self.assertEqual(code_of(caught.exception), ("BucketAlreadyOwnedByYou", 409), kwargs)
        await add_user(neb, f"{HELEN}:helenpass")
        helen = client(neb, user=HELEN, secret=HELEN_SECRET)
        with self.assertRaises(ClientError) as caught:
            await call(helen, "create_bucket", Bucket="legacy")
        self.assertEqual(code_of(caught.exception), ("BucketAlreadyExists", 409))
        self.assertEqual(state(neb.image_dir), files)


class ListObjectsTests(S3Case):
    """API Reference, ListObjectsV2 ``continuation-token``."""

    async def test_empty_continuation_token(self):
        """An empty ContinuationToken is InvalidArgument (400), as S3
        answers, not the first page again; so is one naming no key. The
        token S3 gave continues the listing."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="lst")
        for key in ("a", "b", "c"):
            await call(c, "put_object", Bucket="lst", Key=key, Body=key.encode())
        with self.assertRaises(ClientError) as caught:
            await call(c, "list_objects_v2", Bucket="lst", ContinuationToken="")
        self.assertEqual(code_of(caught.exception), ("InvalidArgument", 400))
        self.assertEqual(caught.exception.response["Error"].get("ArgumentName"),
                         "continuation-token")
        status, _, reply = await threads.deferToThread(
            raw, neb.ec2_url, "GET", "/lst?list-type=2&continuation-token=")
        self.assertEqual((status, error_code(reply)), (400, "InvalidArgument"))
        page = await call(c, "list_objects_v2", Bucket="lst", MaxKeys=2)
        self.assertEqual([o["Key"] for o in page["Contents"]], ["a", "b"])
        rest = await call(c, "list_objects_v2", Bucket="lst",
                          ContinuationToken=page["NextContinuationToken"])
        self.assertEqual([o["Key"] for o in rest["Contents"]], ["c"])
        self.assertEqual(rest["ContinuationToken"], page["NextContinuationToken"])


class ListPartsTests(S3Case):
    """API Reference, ListParts: "returns a maximum of 1,000 uploaded parts.
    The default number of parts returned is 1,000 parts"; a truncated page
    gives IsTruncated and NextPartNumberMarker, which ``part-number-marker``
    continues after."""

    async def upload_parts(self, c, bucket, key, upload_id, numbers):
        """Upload a one-byte part of each number (four at a time)."""
        def send(number):
            c.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                          Body=b"%d" % (number % 10))

        def send_all():
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(send, numbers))
        await threads.deferToThread(send_all)

    async def test_pages(self):
        """1,005 parts: without max-parts 1,000 come, truncated, the next
        marker 1000; max-parts above 1,000 is 1,000 (MaxParts says so); the
        marker continues with the last 5, not truncated, PartNumberMarker
        echoed; a small max-parts pages; boto3's paginator sees every part
        once; a marker past the last part gives none; max-parts and
        part-number-marker that are not integers (or negative) are
        InvalidArgument."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="parts")
        uid = (await call(c, "create_multipart_upload", Bucket="parts", Key="k"))["UploadId"]
        args = {"Bucket": "parts", "Key": "k", "UploadId": uid}

        def numbers(page):
            return [p["PartNumber"] for p in page.get("Parts", [])]
        empty = await call(c, "list_parts", **args)
        self.assertEqual((numbers(empty), empty["IsTruncated"], empty["PartNumberMarker"],
                          empty.get("NextPartNumberMarker"), empty["MaxParts"]),
                         ([], False, 0, 0, 1000))
        await self.upload_parts(c, "parts", "k", uid, range(1, 1006))
        first = await call(c, "list_parts", **args)
        self.assertEqual((numbers(first), first["IsTruncated"], first["MaxParts"],
                          first["NextPartNumberMarker"]),
                         (list(range(1, 1001)), True, 1000, 1000))
        big = await call(c, "list_parts", MaxParts=5000, **args)
        self.assertEqual((numbers(big), big["IsTruncated"], big["MaxParts"],
                          big["NextPartNumberMarker"]),
                         (list(range(1, 1001)), True, 1000, 1000))
        rest = await call(c, "list_parts", PartNumberMarker=first["NextPartNumberMarker"],
                          **args)
        self.assertEqual((numbers(rest), rest["IsTruncated"], rest["PartNumberMarker"]),
                         (list(range(1001, 1006)), False, 1000))
        small = await call(c, "list_parts", MaxParts=3, PartNumberMarker=10, **args)
        self.assertEqual((numbers(small), small["IsTruncated"], small["MaxParts"],
                          small["PartNumberMarker"], small["NextPartNumberMarker"]),
                         ([11, 12, 13], True, 3, 10, 13))
        part = small["Parts"][0]
        self.assertEqual((part["Size"], part["ETag"]),
                         (1, '"%s"' % hashlib.md5(b"1").hexdigest()))
        past = await call(c, "list_parts", PartNumberMarker=1005, **args)
        self.assertEqual((numbers(past), past["IsTruncated"], past.get("NextPartNumberMarker")),
                         ([], False, 1005))
        none = await call(c, "list_parts", MaxParts=0, **args)
        self.assertEqual((numbers(none), none["IsTruncated"], none["MaxParts"]), ([], False, 0))

        def paginate():
            seen = []
            for page in c.get_paginator("list_parts").paginate(
                    PaginationConfig={"PageSize": 300}, **args):
                seen += numbers(page)
            return seen
        self.assertEqual(await threads.deferToThread(paginate), list(range(1, 1006)))
        for name, kwarg in (("max-parts", "MaxParts"),
                            ("part-number-marker", "PartNumberMarker")):
            for value, message in (
                    (-1, f"Argument {name} must be an integer between 0 and 2147483647"),
                    (2 ** 31, f"Provided {name} not an integer or within integer range")):
                with self.assertRaises(ClientError, msg=(name, value)) as caught:
                    await call(c, "list_parts", **{kwarg: value}, **args)
                self.assertEqual((code_of(caught.exception),
                                  caught.exception.response["Error"]["Message"]),
                                 (("InvalidArgument", 400), message))
            status, _, reply = await threads.deferToThread(
                raw, neb.ec2_url, "GET", f"/parts/k?uploadId={uid}&{name}=x")
            self.assertEqual((status, error_code(reply)), (400, "InvalidArgument"), name)
        maximum = await call(c, "list_parts", MaxParts=2 ** 31 - 1,
                             PartNumberMarker=2 ** 31 - 1, **args)
        self.assertEqual((numbers(maximum), maximum["MaxParts"]), ([], 1000))


class BucketTaggingTests(S3Case):
    """API Reference, PutBucketTagging / GetBucketTagging /
    DeleteBucketTagging; limits of the User Guide (50 tags, keys up to 128
    characters, values up to 256, keys unique). Object tagging stays
    refused (tests.test_s3_refusals)."""

    async def test_put_get_delete(self):
        """No tags: NoSuchTagSet (404). Put, get (the order kept, an empty
        value, Unicode), replace (SigV2 too), delete (204, again 204): the tags survive
        a restart of the repository (bucket.json). Only the owner changes
        them; oneadmin reads another user's. The objects are untouched."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="tagged")
        await call(c, "put_object", Bucket="tagged", Key="obj", Body=b"kept")
        with self.assertRaises(ClientError) as caught:
            await call(c, "get_bucket_tagging", Bucket="tagged")
        self.assertEqual(code_of(caught.exception), ("NoSuchTagSet", 404))
        tags = [{"Key": "project", "Value": "nebula"}, {"Key": "empty", "Value": ""},
                {"Key": "K" * 128, "Value": "v" * 256}, {"Key": "città", "Value": "€ 5"}]
        put = await call(c, "put_bucket_tagging", Bucket="tagged", Tagging={"TagSet": tags})
        self.assertEqual(put["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual((await call(c, "get_bucket_tagging", Bucket="tagged"))["TagSet"], tags)
        neb.service.ec2_ports[0].site.front.s3.repository.load()
        self.assertEqual((await call(c, "get_bucket_tagging", Bucket="tagged"))["TagSet"], tags)
        v2 = client(neb, v2=True)  # S3 SigV2 signs ?tagging as a sub-resource
        await call(v2, "put_bucket_tagging", Bucket="tagged",
                   Tagging={"TagSet": [{"Key": "only", "Value": "one"}]})
        self.assertEqual((await call(v2, "get_bucket_tagging", Bucket="tagged"))["TagSet"],
                         [{"Key": "only", "Value": "one"}])

        await add_user(neb, f"{HELEN}:helenpass")
        helen = client(neb, user=HELEN, secret=HELEN_SECRET)
        await call(helen, "create_bucket", Bucket="hers")
        await call(helen, "put_bucket_tagging", Bucket="hers",
                   Tagging={"TagSet": [{"Key": "owner", "Value": "helen"}]})
        self.assertEqual((await call(c, "get_bucket_tagging", Bucket="hers"))["TagSet"],
                         [{"Key": "owner", "Value": "helen"}])
        for method, kwargs in (("put_bucket_tagging", {"Tagging": {"TagSet": []}}),
                               ("delete_bucket_tagging", {})):
            with self.assertRaises(ClientError, msg=method) as caught:
                await call(c, method, Bucket="hers", **kwargs)
            self.assertEqual(code_of(caught.exception), ("AccessDenied", 403), method)
        with self.assertRaises(ClientError) as caught:
            await call(helen, "get_bucket_tagging", Bucket="tagged")
        self.assertEqual(code_of(caught.exception), ("AccessDenied", 403))

        for _ in range(2):
            deleted = await call(c, "delete_bucket_tagging", Bucket="tagged")
            self.assertEqual(deleted["ResponseMetadata"]["HTTPStatusCode"], 204)
            with self.assertRaises(ClientError) as caught:
                await call(c, "get_bucket_tagging", Bucket="tagged")
            self.assertEqual(code_of(caught.exception), ("NoSuchTagSet", 404))
        neb.service.ec2_ports[0].site.front.s3.repository.load()
        with self.assertRaises(ClientError) as caught:
            await call(c, "get_bucket_tagging", Bucket="tagged")
        self.assertEqual(code_of(caught.exception), ("NoSuchTagSet", 404))
        got = await call(c, "get_object", Bucket="tagged", Key="obj")
        self.assertEqual(await threads.deferToThread(got["Body"].read), b"kept")
        for method, kwargs in (("get_bucket_tagging", {}), ("delete_bucket_tagging", {}),
                               ("put_bucket_tagging", {"Tagging": {"TagSet": tags}})):
            with self.assertRaises(ClientError, msg=method) as caught:
                await call(c, method, Bucket="nothere", **kwargs)
            self.assertEqual(code_of(caught.exception), ("NoSuchBucket", 404), method)
        self.assertNotIn("nothere", os.listdir(os.path.join(neb.image_dir, "buckets")))

    async def test_limits(self):
        """51 tags (BadRequest), a key of 129 characters, an empty key (sent
        raw: boto3 will not), an ``aws:`` key, a value of 257 characters, a key twice (InvalidTag),
        a body that is not a Tagging document (MalformedXML), no checksum
        (InvalidRequest): refused, and the tags before stay as they were."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="lim")
        before = [{"Key": "a", "Value": "b"}]
        await call(c, "put_bucket_tagging", Bucket="lim", Tagging={"TagSet": before})
        files = state(neb.image_dir)
        many = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
        for tag_set, expected in (
                (many, ("BadRequest", 400)),
                ([{"Key": "K" * 129, "Value": "v"}], ("InvalidTag", 400)),
                ([{"Key": "aws:cloudformation:stack-name", "Value": "v"}],
                 ("InvalidTag", 400)),
                ([{"Key": "k", "Value": "v" * 257}], ("InvalidTag", 400)),
                ([{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}],
                 ("InvalidTag", 400))):
            with self.assertRaises(ClientError, msg=tag_set[:2]) as caught:
                await call(c, "put_bucket_tagging", Bucket="lim", Tagging={"TagSet": tag_set})
            self.assertEqual(code_of(caught.exception), expected, tag_set[:2])
        self.assertEqual(code_of(caught.exception) + (caught.exception.response["Error"]
                                                      ["Message"],),
                         ("InvalidTag", 400, "Cannot provide multiple Tags with the same key"))
        await call(c, "put_bucket_tagging", Bucket="lim", Tagging={"TagSet": many[:50]})
        self.assertEqual(len((await call(c, "get_bucket_tagging", Bucket="lim"))["TagSet"]), 50)
        await call(c, "put_bucket_tagging", Bucket="lim", Tagging={"TagSet": before})
        self.assertEqual(state(neb.image_dir), files)

        md5 = {"Content-MD5": ""}
        ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
        for body in (b"<Retention><Mode>GOVERNANCE</Mode></Retention>",
                     b"<Tagging %s/>" % ns.encode(),
                     b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
                     b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value><Value>w</Value>"
                     b"</Tag></TagSet></Tagging>",
                     b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet>"
                     b"<Other/></Tagging>",
                     b"not xml"):
            md5["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
            status, _, reply = await threads.deferToThread(raw, neb.ec2_url, "PUT",
                                                           "/lim?tagging", body, md5)
            self.assertEqual((status, error_code(reply)), (400, "MalformedXML"), body)
        body = b"<Tagging><TagSet><Tag><Key></Key><Value>v</Value></Tag></TagSet></Tagging>"
        md5["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        status, _, reply = await threads.deferToThread(raw, neb.ec2_url, "PUT", "/lim?tagging",
                                                       body, md5)
        self.assertEqual((status, error_code(reply)), (400, "InvalidTag"))
        body = b"<Tagging><TagSet><Tag><Key>x</Key><Value>y</Value></Tag></TagSet></Tagging>"
        status, _, reply = await threads.deferToThread(raw, neb.ec2_url, "PUT",
                                                       "/lim?tagging", body)
        self.assertEqual((status, error_code(reply)), (400, "InvalidRequest"))
        self.assertEqual(state(neb.image_dir), files)
        self.assertEqual((await call(c, "get_bucket_tagging", Bucket="lim"))["TagSet"], before)
        # what is not bucket tagging stays refused
        for method, path in (("HEAD", "/lim?tagging"), ("POST", "/lim?tagging"),
                             ("GET", "/lim?tagging&location")):
            status, _, _ = await threads.deferToThread(raw, neb.ec2_url, method, path)
            self.assertEqual(status, 501, (method, path))


class UploadPartCopyTests(S3Case):
    """API Reference, UploadPartCopy: a part copied from an existing object,
    all of it or ``x-amz-copy-source-range``, with the copy source's
    conditions as CopyObject."""

    async def test_copy_parts(self):
        """Part 1: 5 MiB from the middle of one object (a range), part 2:
        all of another (5 MiB + 7), part 3: its first 100 bytes; each
        CopyPartResult ETag is the MD5 of the bytes copied, ListParts shows
        them, the completed object has the bytes and the multipart ETag.
        boto3's managed copy (UploadPartCopy above its threshold) copies a
        12 MiB object whole. Nothing is left staged."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="src")
        await call(c, "create_bucket", Bucket="dst")
        big, mid = os.urandom(6 * MiB + 100), os.urandom(5 * MiB + 7)
        await call(c, "put_object", Bucket="src", Key="big", Body=big)
        await call(c, "put_object", Bucket="src", Key="dir/mid", Body=mid)
        uid = (await call(c, "create_multipart_upload", Bucket="dst", Key="joined",
                          ContentType="application/x-joined"))["UploadId"]
        args = {"Bucket": "dst", "Key": "joined", "UploadId": uid}
        pieces = [big[1000:1000 + 5 * MiB], mid, big[:100]]
        copies = [
            await call(c, "upload_part_copy", PartNumber=1, CopySource="src/big",
                       CopySourceRange=f"bytes=1000-{1000 + 5 * MiB - 1}", **args),
            await call(c, "upload_part_copy", PartNumber=2,
                       CopySource={"Bucket": "src", "Key": "dir/mid"}, **args),
            await call(c, "upload_part_copy", PartNumber=3, CopySource="/src/big",
                       CopySourceRange="bytes=0-99", **args)]
        etags = [f'"{hashlib.md5(p).hexdigest()}"' for p in pieces]
        self.assertEqual([r["CopyPartResult"]["ETag"] for r in copies], etags)
        for r in copies:
            self.assertIn("LastModified", r["CopyPartResult"])
        listed = await call(c, "list_parts", **args)
        self.assertEqual([(p["PartNumber"], p["Size"], p["ETag"]) for p in listed["Parts"]],
                         [(n, len(p), e) for n, p, e in zip((1, 2, 3), pieces, etags)])
        done = await call(c, "complete_multipart_upload", MultipartUpload={"Parts": [
            {"PartNumber": n, "ETag": e} for n, e in zip((1, 2, 3), etags)]}, **args)
        expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in pieces)).hexdigest()
        self.assertEqual(done["ETag"], f'"{expected}-3"')
        got = await call(c, "get_object", Bucket="dst", Key="joined")
        body = await threads.deferToThread(got["Body"].read)
        self.assertEqual((hashlib.md5(body).digest(), len(body), got["ContentType"]),
                         (hashlib.md5(b"".join(pieces)).digest(), sum(map(len, pieces)),
                          "application/x-joined"))

        whole = os.urandom(12 * MiB)
        await call(c, "put_object", Bucket="src", Key="whole", Body=whole)

        def managed_copy():
            from boto3.s3.transfer import TransferConfig
            c.copy({"Bucket": "src", "Key": "whole"}, "dst", "copied",
                   Config=TransferConfig(multipart_threshold=8 * MiB,
                                         multipart_chunksize=5 * MiB, max_concurrency=2))
        await threads.deferToThread(managed_copy)
        got = await call(c, "get_object", Bucket="dst", Key="copied")
        copied = await threads.deferToThread(got["Body"].read)
        self.assertEqual(hashlib.md5(copied).digest(), hashlib.md5(whole).digest())
        self.assertTrue(got["ETag"].endswith('-3"'), got["ETag"])
        self.assertEqual(self.staging(neb), [])

    async def test_refused(self):
        """A range past the source's end ("Range specified is not valid for
        source object of size"), not ``bytes=first-last`` (InvalidArgument),
        failing ``x-amz-copy-source-if-*`` conditions (PreconditionFailed),
        a missing source key or bucket, another user's source (helen
        copying oneadmin's object: oneadmin may read every bucket), an unknown
        upload, a source version, part numbers 0 and 10001: refused, and the
        upload's parts and the repository's files as before. Passing
        conditions copy. A range on CopyObject is refused (NotImplemented),
        not ignored; CopyObject's conditions are the same."""
        neb = await self.start()
        c = client(neb)
        await call(c, "create_bucket", Bucket="src")
        data = os.urandom(1000)
        put = await call(c, "put_object", Bucket="src", Key="obj", Body=data)
        await add_user(neb, f"{HELEN}:helenpass")
        helen = client(neb, user=HELEN, secret=HELEN_SECRET)
        await call(helen, "create_bucket", Bucket="hers")
        await call(helen, "put_object", Bucket="hers", Key="secret", Body=b"hers")
        uid = (await call(c, "create_multipart_upload", Bucket="src", Key="mp"))["UploadId"]
        args = {"Bucket": "src", "Key": "mp", "UploadId": uid, "PartNumber": 1}
        await call(c, "upload_part", Body=b"first", **args)
        files = state(neb.image_dir)
        src = "src/obj"
        later = "Tue, 01 Jan 2041 00:00:00 GMT"
        earlier = "Mon, 01 Jan 2001 00:00:00 GMT"
        invalid_form = ("InvalidArgument", 400)
        for kwargs, expected in (
                ({"CopySource": src, "CopySourceRange": "bytes=0-1000"}, invalid_form),
                ({"CopySource": src, "CopySourceRange": "bytes=1000-1000"}, invalid_form),
                ({"CopySource": src, "CopySourceRange": "bytes=10-5"}, invalid_form),
                ({"CopySource": src, "CopySourceRange": "bytes=10-"}, invalid_form),
                ({"CopySource": src, "CopySourceRange": "bytes=-10"}, invalid_form),
                ({"CopySource": src, "CopySourceRange": "10-20"}, invalid_form),
                ({"CopySource": src, "CopySourceIfMatch": '"0123"'},
                 ("PreconditionFailed", 412)),
                ({"CopySource": src, "CopySourceIfNoneMatch": put["ETag"]},
                 ("PreconditionFailed", 412)),
                ({"CopySource": src, "CopySourceIfModifiedSince": later},
                 ("PreconditionFailed", 412)),
                ({"CopySource": src, "CopySourceIfUnmodifiedSince": earlier},
                 ("PreconditionFailed", 412)),
                ({"CopySource": "src/none"}, ("NoSuchKey", 404)),
                ({"CopySource": "nobucket/obj"}, ("NoSuchBucket", 404)),
                ({"CopySource": {"Bucket": "src", "Key": "obj", "VersionId": "v1"}},
                 ("NotImplemented", 501)),
                ({"CopySource": src, "UploadId": "0" * 32}, ("NoSuchUpload", 404)),
                ({"CopySource": src, "Key": "other"}, ("NoSuchUpload", 404)),
                ({"CopySource": src, "PartNumber": 0}, ("InvalidArgument", 400)),
                ({"CopySource": src, "PartNumber": 10001}, ("InvalidArgument", 400))):
            try:
                await call(c, "upload_part_copy", **{**args, **kwargs})
            except ClientError as e:
                error = e
            else:
                self.fail(f"not refused: {kwargs}")
            self.assertEqual(code_of(error), expected, kwargs)
            if kwargs.get("CopySourceRange") == "bytes=0-1000":
                self.assertEqual(error.response["Error"]["Message"],
                                 "Range specified is not valid for source object of size: "
                                 "1000")
        hers = (await call(helen, "create_multipart_upload", Bucket="hers",
                           Key="mp"))["UploadId"]
        with self.assertRaises(ClientError) as caught:  # not hers to read
            await call(helen, "upload_part_copy", Bucket="hers", Key="mp", UploadId=hers,
                       PartNumber=1, CopySource=src)
        self.assertEqual(code_of(caught.exception), ("AccessDenied", 403))
        status, _, reply = await threads.deferToThread(  # boto3 will not send it
            raw, neb.ec2_url, "PUT", "/src/copy", b"",
            {"x-amz-copy-source": src, "x-amz-copy-source-range": "bytes=0-9"})
        self.assertEqual((status, error_code(reply)), (501, "NotImplemented"))
        for condition in ({"CopySourceIfMatch": '"0123"'},
                          {"CopySourceIfNoneMatch": put["ETag"]},
                          {"CopySourceIfUnmodifiedSince": earlier}):
            with self.assertRaises(ClientError) as caught:  # CopyObject's, the same
                await call(c, "copy_object", Bucket="src", Key="copy", CopySource=src,
                           **condition)
            self.assertEqual(code_of(caught.exception), ("PreconditionFailed", 412))
        self.assertEqual({k: v for k, v in state(neb.image_dir).items()
                          if hers not in k}, files)
        self.assertEqual(self.staging(neb), [])
        self.assertNotIn("Parts", await call(helen, "list_parts", Bucket="hers", Key="mp",
                                             UploadId=hers))
        parts = await call(c, "list_parts", Bucket="src", Key="mp", UploadId=uid)
        self.assertEqual([(p["PartNumber"], p["Size"]) for p in parts["Parts"]], [(1, 5)])

        ok = await call(c, "upload_part_copy", CopySource=src, CopySourceIfMatch=put["ETag"],
                        CopySourceIfUnmodifiedSince=later, CopySourceRange="bytes=999-999",
                        **args)
        self.assertEqual(ok["CopyPartResult"]["ETag"], f'"{hashlib.md5(data[999:]).hexdigest()}"')
        ok = await call(c, "upload_part_copy", CopySource=src, CopySourceIfNoneMatch='"0123"',
                        CopySourceIfModifiedSince=earlier, **{**args, "PartNumber": 2})
        self.assertEqual(ok["CopyPartResult"]["ETag"], put["ETag"])
        parts = await call(c, "list_parts", Bucket="src", Key="mp", UploadId=uid)
        self.assertEqual([(p["PartNumber"], p["Size"]) for p in parts["Parts"]],
                         [(1, 1), (2, 1000)])
