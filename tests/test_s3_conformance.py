"""Where real S3 clients and the repository disagreed (issue 11, item 6):
cases a third party's S3 conformance suite found, each checked here with
boto3 against the S3 front of an in-process daemon, as :mod:`tests.test_s3`
does: CreateBucket of one's own bucket in us-east-1, an empty
ListObjectsV2 continuation token, ListParts pages, bucket tagging and
UploadPartCopy. The behaviours are those of the Amazon S3 API Reference
(2006-03-01)."""

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
