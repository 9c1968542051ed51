"""Tests of :mod:`nebtwist.api.awsauth`: AWS request authentication.

Independent references, not our own signer alone:

* the AWS SigV4 test suite (``../shared/reference/sigv4-test-suite/v4``):
  every case, header and presigned forms, canonical request, string to sign
  and signature held to the suite's files;
* botocore's own signers, run as boto3 runs them (requests captured at
  ``before-send``, or ``botocore.auth`` signers over an ``AWSRequest``):
  SigV4 (EC2, S3, presigned), SigV2 (EC2 ``signature_version='v2'``),
  S3's SigV2 (``HmacV1Auth``, and the presigned URLs boto3 makes by default),
  and the ``aws-chunked`` bodies boto3 sends for S3 uploads over HTTPS;
* the two chunked-upload examples of the S3 documentation ("Transferring
  Payload in Multiple Chunks" and "Including Trailing Headers"), byte for
  byte with the signatures AWS published;
* at the end, unmodified boto3 clients over real HTTP and HTTPS on
  127.0.0.1 against a ``twisted.web`` resource that authenticates with this
  module.
"""

import base64
import hashlib
import hmac
import io
import json
import os
import random
import time
import tracemalloc
import urllib.request
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3
import botocore.auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum, Sha1Checksum, Sha256Checksum
from lxml import etree
from twisted.internet import reactor, ssl
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import http, resource, server

from nebtwist import testing
from nebtwist.api import awsauth as A
from nebtwist.api.awsauth import payload
from nebtwist.log import OneLogger

#: The AWS SigV4 test suite, in ``shared/`` beside the checkout (as CI has it).
SUITE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "shared", "reference", "sigv4-test-suite", "v4")

ALICE, ALICE_SECRET = "alice", "d033e22ae348aeb5660fc2140aec35850c4da997"
SECRETS = {ALICE: ALICE_SECRET}
lookup = SECRETS.get


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def raises(testcase, kind, f, *args, **kwargs):
    """``f(*args)`` raises exactly ``kind``; returns the error."""
    error = testcase.assertRaises(A.AWSAuthError, f, *args, **kwargs)
    testcase.assertIs(type(error), kind, f"{type(error).__name__}: {error}")
    return error


# --------------------------------------------------------------------------- the suite


def parse_http(raw):
    """An :class:`AuthRequest` of a suite ``*.txt`` HTTP request (bytes):
    the target may hold spaces and raw UTF-8; indented lines continue the
    previous header; the body follows the first empty line."""
    head, sep, body = raw.partition(b"\n\n")
    lines = head.split(b"\n")
    method, rest = lines[0].split(b" ", 1)
    target = rest.rpartition(b" ")[0]
    headers = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b"\n" + line)
        elif line:
            name, _, value = line.partition(b":")
            headers.append((name, value))
    path, _, query = target.partition(b"?")
    return A.AuthRequest(method, path, query, headers, body=body if sep else b"")


def suite_case(name):
    d = os.path.join(SUITE, name)

    def read(f, mode="r"):
        with open(os.path.join(d, f), mode) as fh:
            return fh.read()
    ctx = json.loads(read("context.json"))
    now = datetime.fromisoformat(ctx["timestamp"]).timestamp()
    creds = ctx["credentials"]
    return ctx, now, {creds["access_key_id"]: creds["secret_access_key"]}.get, read


def with_header(request, name, change):
    """``request`` with header ``name``'s values changed by ``change``."""
    headers = [(n, change(v) if n.lower() == name else v) for n, v in request.headers]
    return A.AuthRequest(request.method, request.path, request.query, headers,
                         body=request.body)


class SigV4SuiteTests(SynchronousTestCase):
    """Every case of the AWS SigV4 test suite, in its header form and its
    presigned (query) form. Test methods are made per case below."""

    def check_case(self, name):
        ctx, now, secrets, read = suite_case(name)
        for form in ("header", "query"):
            request = parse_http(read(f"{form}-signed-request.txt", "rb"))
            def verify(r, when=now, s=secrets, ctx=ctx):
                return A.verify_sigv4(r, s, when, service_normalizes_path=ctx["normalize"])
            result = verify(request)
            self.assertEqual(result.canonical_request, read(f"{form}-canonical-request.txt"),
                             form)
            self.assertEqual(result.string_to_sign, read(f"{form}-string-to-sign.txt"), form)
            self.assertEqual(result.signature, read(f"{form}-signature.txt").strip(), form)
            self.assertEqual(result.access_key, "AKIDEXAMPLE")
            self.assertEqual((result.region, result.service), (ctx["region"], ctx["service"]))
            self.assertEqual(result.presigned, form == "query")
            # The canonical request is also what canonical_request() builds.
            # The presigned post-sts-header-after URL got its token after signing.
            unsigned_token = form == "query" and result.session_token is not None and \
                "X-Amz-Security-Token" not in result.canonical_request
            excluded = ("X-Amz-Signature",) + (("X-Amz-Security-Token",) if unsigned_token
                                               else ())
            self.assertEqual(unsigned_token, name == "post-sts-header-after" and form == "query")
            if result.session_token is not None:
                # post-sts-header-after adds its token after signing, in both forms.
                self.assertEqual(result.session_token_signed, name != "post-sts-header-after")
            else:
                self.assertFalse(result.session_token_signed)
            self.assertEqual(A.canonical_request(request, result.signed_headers,
                                                 result.payload_hash, ctx["normalize"],
                                                 excluded),
                             result.canonical_request)
            self.check_changes(request, verify, ctx, form, now)

    def check_changes(self, request, verify, ctx, form, now):
        """A changed byte anywhere the signature covers, a wrong secret or a
        wrong time is refused."""
        raises(self, A.AuthFailure, verify, request,
               s={"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEz"}.get)
        raises(self, A.AuthFailure, verify, request, s={}.get)
        changed = [
            A.AuthRequest("PUT" if request.method != "PUT" else "GET", request.path,
                          request.query, request.headers, body=request.body),
            A.AuthRequest(request.method, request.path + "x", request.query, request.headers,
                          body=request.body),
            A.AuthRequest(request.method, request.path,
                          (request.query + "&" if request.query else "") + "x=1",
                          request.headers, body=request.body),
        ]
        result = verify(request)
        for name in result.signed_headers:
            if name in ("x-amz-date", "x-amz-content-sha256"):
                # Malformed once changed: refused before any signature is computed.
                raises(self, A.IncompleteSignature if name == "x-amz-date"
                       else A.InvalidArgument, verify,
                       with_header(request, name, lambda v: v + "x"))
                continue
            changed.append(with_header(request, name, lambda v: v + "x"))
        sig = result.signature
        flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        if form == "query":
            changed.append(A.AuthRequest(request.method, request.path,
                                         request.query.replace(sig, flipped),
                                         request.headers, body=request.body))
        else:
            changed.append(with_header(request, "authorization",
                                       lambda v: v.replace(sig, flipped)))
        for other in changed:
            raises(self, A.AuthFailure, verify, other)
        if request.body:
            longer = A.AuthRequest(request.method, request.path, request.query,
                                   request.headers, body=request.body + b"x")
            # Header form: x-amz-content-sha256 is signed, the body is not that one;
            # query form: the body's own hash is in the canonical request.
            kind = A.XAmzContentSHA256Mismatch if form == "header" else A.AuthFailure
            raises(self, kind, verify, longer)
        if form == "header":
            raises(self, A.RequestExpired, verify, request, when=now + A.DEFAULT_MAX_SKEW + 1)
            raises(self, A.RequestExpired, verify, request, when=now - A.DEFAULT_MAX_SKEW - 1)
            verify(request, when=now + A.DEFAULT_MAX_SKEW)
        else:
            expires = ctx["expiration_in_seconds"]
            verify(request, when=now + expires)
            error = raises(self, A.RequestExpired, verify, request, when=now + expires + 1)
            self.assertEqual((error.s3_code, error.s3_status), ("AccessDenied", 403))


def _suite_test(name):
    def test(self):
        self.check_case(name)
    test.__name__ = "test_" + name.replace("-", "_")
    test.__doc__ = f"SigV4 suite case {name}: header and query forms."
    return test


_SUITE_CASES = sorted(os.listdir(SUITE)) if os.path.isdir(SUITE) else []
for _name in _SUITE_CASES:
    setattr(SigV4SuiteTests, "test_" + _name.replace("-", "_"), _suite_test(_name))


class SuitePresenceTests(SynchronousTestCase):
    def test_all_cases(self):
        """The suite is there, whole: 38 cases, each with both forms."""
        if not os.path.isdir(SUITE):
            self.skipTest(f"The SigV4 test suite is not at {SUITE} (CI runs with shared/ "
                          "beside the checkout)")
        self.assertEqual(len(_SUITE_CASES), 38)
        for name in _SUITE_CASES:
            files = set(os.listdir(os.path.join(SUITE, name)))
            for form in ("header", "query"):
                self.assertIn(f"{form}-signed-request.txt", files, name)


# --------------------------------------------------------------------------- pieces


class CanonicalFormTests(SynchronousTestCase):
    """The canonical pieces, against values written out from the AWS docs."""

    def test_uri_encode(self):
        """Unreserved characters stay; everything else is %XX upper-case, from
        UTF-8; ``/`` only on request."""
        self.assertEqual(A.uri_encode("AZaz09-._~"), "AZaz09-._~")
        self.assertEqual(A.uri_encode("a b+c=d/e*"), "a%20b%2Bc%3Dd%2Fe%2A")
        self.assertEqual(A.uri_encode("/a b/", keep_slash=True), "/a%20b/")
        self.assertEqual(A.uri_encode("\u1234"), "%E1%88%B4")
        self.assertEqual(A.uri_encode(b"\xff"), "%FF")

    def test_normalize_path(self):
        """Dot segments go, slashes collapse, a trailing slash stays."""
        cases = {"": "/", "/": "/", "/./": "/", "//a//": "/a/", "/a/b/../..": "/",
                 "/a/./b": "/a/b", "/a/b/..": "/a", "/..": "/", "/a/": "/a/"}
        for path, expected in cases.items():
            self.assertEqual(A.normalize_path(path), expected, path)

    def test_canonical_uri(self):
        """Services other than S3 encode the (normalised) path once more;
        S3 signs the path encoded once, not normalised."""
        self.assertEqual(A.canonical_uri("/a%20b/./c", normalize=True), "/a%2520b/c")
        self.assertEqual(A.canonical_uri("/a%20b/./c", normalize=False), "/a%20b/./c")
        self.assertEqual(A.canonical_uri("/a b/k~+", normalize=False), "/a%20b/k~%2B")
        self.assertEqual(A.canonical_uri("", normalize=False), "/")

    def test_canonical_query(self):
        """Sorted by encoded name then value; repeated names kept; empty
        values keep their ``=``."""
        pairs = [("b", "2"), ("a", "z"), ("a", "y"), ("c d", ""), ("e", "a+b")]
        self.assertEqual(A.canonical_query(pairs), "a=y&a=z&b=2&c%20d=&e=a%2Bb")

    def test_query_pairs(self):
        """Form decoding: ``+`` is a space, %XX a UTF-8 byte, a bare name has
        the value ``""``; a list of pairs is taken as decoded."""
        request = A.AuthRequest("GET", "/", "a=1+2&b=%E1%88%B4&c&&d=%2B")
        self.assertEqual(request.query_pairs(),
                         [("a", "1 2"), ("b", "\u1234"), ("c", ""), ("d", "+")])
        request = A.AuthRequest("GET", "/", [("x", "a b")])
        self.assertEqual(request.query_pairs(), [("x", "a b")])

    def test_canonical_headers(self):
        """Values trimmed, whitespace runs (tabs, folded lines) collapsed,
        repeated headers joined in received order; host falls back to the
        request's host."""
        request = A.AuthRequest("GET", "/", "", [
            ("My-Header", "  a \t b  "), ("my-header", "c\r\n  d"), ("X-Other", "x")],
            host="h:1")
        self.assertEqual(A.canonical_headers(request, ["host", "my-header", "x-other"]),
                         "host:h:1\nmy-header:a b,c d\nx-other:x\n")
        raises(self, A.AuthFailure, A.canonical_headers, request, ["x-absent"])

    def test_headers_as_bytes(self):
        """Bytes (as twisted.web gives them) round-trip exactly, even when
        they are not UTF-8."""
        request = A.AuthRequest(b"GET", b"/\xe1\x88\xb4", b"k=\xff", [(b"X-B", b"\xff\xfe")])
        self.assertEqual(request.header("x-b").encode("utf-8", "surrogateescape"),
                         b"\xff\xfe")
        self.assertEqual(A.canonical_uri(request.path), "/%E1%88%B4")

    def test_repeated_header_refused_where_one_is_needed(self):
        request = A.AuthRequest("GET", "/", "", [("X-Amz-Date", "1"), ("x-amz-date", "2")])
        raises(self, A.InvalidRequest, request.header, "x-amz-date")

    def test_signing_key(self):
        """The AWS documentation's derived key example (IAM, 20120215)."""
        key = A.signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215",
                            "us-east-1", "iam")
        self.assertEqual(key.hex(), "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e0"
                                    "90d414db404d")

    def test_ec2_secret(self):
        """OpenNebula 3.4: the secret key is the SHA1 hex of the password."""
        self.assertEqual(A.ec2_secret("admin"), ALICE_SECRET)
        self.assertEqual(A.ec2_secret("admin"), hashlib.sha1(b"admin").hexdigest())


# --------------------------------------------------------------------------- botocore


class Raw:
    """What botocore reads a captured response from."""

    def __init__(self, body):
        self.body = body

    def stream(self, **_):
        yield self.body


EC2_REPLY = (b'<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
             b'<requestId>1</requestId><regionInfo/></DescribeRegionsResponse>')


def captured_client(service, url, secret=ALICE_SECRET, key=ALICE, **config):
    """A boto3 client whose requests are captured at ``before-send`` (as
    ``(method, url, headers, body bytes)``) instead of sent."""
    config.setdefault("retries", {"max_attempts": 1})
    if service == "s3":
        config.setdefault("s3", {"addressing_style": "path"})
    client = boto3.session.Session().client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
        aws_secret_access_key=secret, config=Config(**config))
    sent = []

    def before_send(request, **_):
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode("utf-8")
        sent.append((request.method, request.url, list(request.headers.items()), body or b""))
        return AWSResponse(request.url, 200, {"ETag": '"0"'},
                           Raw(EC2_REPLY if service == "ec2" else b""))
    client.meta.events.register("before-send", before_send)
    return client, sent


def received(method, url, headers, body=None, host=None):
    """The :class:`AuthRequest` a server receives for a captured request:
    the Host header urllib3 adds (the URL's netloc) unless given."""
    split = urlsplit(url)
    headers = [(n, v) for n, v in headers]
    if not any(n.lower() == "host" for n, _ in headers):
        headers.insert(0, ("Host", host or split.netloc))
    return A.AuthRequest(method, split.path or "/", split.query, headers, body=body)


def form_pairs(body):
    return parse_qsl(body.decode("utf-8"), keep_blank_values=True)


class SigV4BotocoreTests(SynchronousTestCase):
    """Requests signed by botocore, as boto3 and the AWS CLI send them."""

    def ec2_request(self, **config):
        client, sent = captured_client("ec2", "http://127.0.0.1:4567", **config)
        client.describe_regions()
        return sent[-1]

    def test_ec2_header_form(self):
        """boto3's EC2 request (form body, SigV4 header) is the user's; the
        body is checked against the signature."""
        method, url, headers, body = self.ec2_request()
        now = time.time()
        request = received(method, url, headers, body=body)
        result = A.verify_sigv4(request, lookup, now, services=("ec2",),
                                regions=("us-east-1",))
        self.assertEqual((result.access_key, result.service, result.presigned),
                         (ALICE, "ec2", False))
        self.assertEqual(result.payload_hash, sha256_hex(body))
        self.assertTrue(result.body_verified)
        self.assertEqual(A.verify_request(request, lookup, now).scheme, "sigv4")
        # Hashing the body elsewhere (body_sha256) is as good as carrying it.
        hashed = A.AuthRequest(request.method, request.path, request.query, request.headers,
                               body_sha256=sha256_hex(body))
        self.assertEqual(A.verify_sigv4(hashed, lookup, now).access_key, ALICE)
        # Another body, or none at all to hash: refused.
        other = A.AuthRequest(request.method, request.path, request.query, request.headers,
                              body=body.replace(b"DescribeRegions", b"RunInstances"))
        raises(self, A.AuthFailure, A.verify_sigv4, other, lookup, now)
        bodiless = A.AuthRequest(request.method, request.path, request.query, request.headers)
        raises(self, A.InvalidRequest, A.verify_sigv4, bodiless, lookup, now)

    def test_ec2_scope_checks(self):
        """The credential scope must name an accepted service and region."""
        request = received(*self.ec2_request())
        now = time.time()
        error = raises(self, A.AuthFailure, A.verify_sigv4, request, lookup, now,
                       services=("s3",))
        self.assertEqual((error.s3_code, error.s3_status), ("AuthorizationHeaderMalformed", 400))
        self.assertIn("'ec2'", error.message)
        raises(self, A.AuthFailure, A.verify_sigv4, request, lookup, now,
               regions=("eu-west-1",))

    def test_ec2_wrong_secret_and_unknown_key(self):
        """A wrong secret is AuthFailure (401); an unknown key too, S3's
        InvalidAccessKeyId."""
        method, url, headers, body = self.ec2_request()
        request = received(method, url, headers, body=body)
        now = time.time()
        error = raises(self, A.AuthFailure, A.verify_sigv4, request,
                       {ALICE: "0" * 40}.get, now)
        self.assertEqual((error.code, error.status), ("AuthFailure", 401))
        self.assertEqual((error.s3_code, error.s3_status), ("SignatureDoesNotMatch", 403))
        self.assertIn("CanonicalRequest", error.details)
        self.assertNotIn(ALICE_SECRET, str(error.details))
        error = raises(self, A.AuthFailure, A.verify_sigv4, request, {}.get, now)
        self.assertEqual(error.s3_code, "InvalidAccessKeyId")

    def test_ec2_skew(self):
        """X-Amz-Date more than 15 minutes (or the configured window) from
        the server's clock: RequestExpired (400; S3 RequestTimeTooSkewed)."""
        method, url, headers, body = self.ec2_request()
        request = received(method, url, headers, body=body)
        now = time.time()
        for when in (now + 16 * 60, now - 16 * 60):
            error = raises(self, A.RequestExpired, A.verify_sigv4, request, lookup, when)
            self.assertEqual((error.code, error.status), ("RequestExpired", 400))
            self.assertEqual((error.s3_code, error.s3_status), ("RequestTimeTooSkewed", 403))
        raises(self, A.RequestExpired, A.verify_sigv4, request, lookup, now + 61, max_skew=60)
        A.verify_sigv4(request, lookup, now + 14 * 60)

    def test_ec2_presigned(self):
        """boto3's presigned EC2 URL (SigV4QueryAuth): GET with no body."""
        client, _ = captured_client("ec2", "http://127.0.0.1:4567")
        url = client.generate_presigned_url("describe_regions", Params={}, ExpiresIn=60,
                                            HttpMethod="GET")
        now = time.time()
        request = received("GET", url, [])
        result = A.verify_sigv4(request, lookup, now)
        self.assertTrue(result.presigned)
        self.assertEqual(result.payload_hash, A.EMPTY_SHA256)
        self.assertEqual(A.verify_request(request, lookup, now).scheme, "sigv4-query")
        with_body = received("GET", url, [], body=b"")
        self.assertEqual(A.verify_sigv4(with_body, lookup, now).access_key, ALICE)
        raises(self, A.RequestExpired, A.verify_sigv4, request, lookup, now + 62)
        raises(self, A.AuthFailure, A.verify_sigv4,
               received("GET", url.replace("DescribeRegions", "DescribeImages"), []),
               lookup, now)

    def test_session_token(self):
        """A request signed with a session token: the token is reported (the
        fronts decide; nebtwist issues none)."""
        creds = Credentials(ALICE, ALICE_SECRET, "TOKEN/+=")
        aws = AWSRequest("POST", "http://127.0.0.1:4567/", data=b"Action=DescribeRegions")
        botocore.auth.SigV4Auth(creds, "ec2", "us-east-1").add_auth(aws)
        p = aws.prepare()
        result = A.verify_sigv4(received(p.method, p.url, p.headers.items(), body=p.body),
                                lookup, time.time())
        self.assertEqual(result.session_token, "TOKEN/+=")
        self.assertTrue(result.session_token_signed)
        self.assertIn("x-amz-security-token", result.signed_headers)

    def test_date_header(self):
        """botocore signs with the Date header when the request has one."""
        aws = AWSRequest("POST", "http://127.0.0.1:4567/", data=b"Action=DescribeRegions",
                         headers={"Date": "Mon, 01 Jan 2001 00:00:00 GMT"})
        botocore.auth.SigV4Auth(Credentials(ALICE, ALICE_SECRET), "ec2",
                                "us-east-1").add_auth(aws)
        p = aws.prepare()
        self.assertNotIn("X-Amz-Date", p.headers)
        request = received(p.method, p.url, p.headers.items(), body=p.body)
        self.assertEqual(A.verify_sigv4(request, lookup, time.time()).access_key, ALICE)

    def s3_put(self, url, key="dir/a b/k\u00e9~y+=%!.txt", body=b"x" * 1000, **config):
        client, sent = captured_client("s3", url, **config)
        client.put_object(Bucket="bucket", Key=key, Body=body)
        return sent[-1]

    def test_s3_put_over_http(self):
        """boto3's S3 PutObject over HTTP (SHA256 signed, CRC32 header) with
        an awkward key; the front streams the body through body_decoder."""
        body = os.urandom(5000)
        method, url, headers, wire = self.s3_put("http://127.0.0.1:4568", body=body)
        self.assertEqual(wire, body)
        request = received(method, url, headers)
        result = A.verify_sigv4(request, lookup, time.time(), services=("s3",))
        self.assertEqual(result.payload_hash, sha256_hex(body))
        self.assertFalse(result.body_verified)
        decoder = A.body_decoder(request, result)
        self.assertIsInstance(decoder, A.PayloadVerifier)
        self.assertEqual(b"".join(decoder.feed(body[i:i + 777])
                                  for i in range(0, len(body), 777)), body)
        self.assertEqual(decoder.finish(), {})
        other = A.body_decoder(request, result)
        other.feed(body[:-1] + b"!")
        error = raises(self, A.XAmzContentSHA256Mismatch, other.finish)
        self.assertEqual((error.s3_code, error.s3_status), ("XAmzContentSHA256Mismatch", 400))
        # Carried along, the body is checked at once.
        carried = received(method, url, headers, body=body[:-1] + b"!")
        raises(self, A.XAmzContentSHA256Mismatch, A.verify_sigv4, carried, lookup, time.time())

    def test_s3_put_over_https_is_aws_chunked(self):
        """Over HTTPS boto3 sends STREAMING-UNSIGNED-PAYLOAD-TRAILER,
        aws-chunked with a CRC32 trailer: decoded whole, fed a byte at a
        time."""
        body = os.urandom(3000)
        method, url, headers, wire = self.s3_put("https://127.0.0.1:4568", body=body)
        request = received(method, url, headers)
        self.assertEqual(request.header("content-encoding"), "aws-chunked")
        result = A.verify_sigv4(request, lookup, time.time())
        self.assertEqual(result.payload_hash, A.STREAMING_UNSIGNED_TRAILER)
        decoder = A.body_decoder(request, result)
        self.assertIsInstance(decoder, A.ChunkedDecoder)
        out = b"".join(decoder.feed(wire[i:i + 1]) for i in range(len(wire)))
        self.assertEqual(out, body)
        crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        self.assertEqual(decoder.finish(), {"x-amz-checksum-crc32": crc})
        self.assertIsNone(A.stored_content_encoding(request.header("content-encoding")))

    def test_s3_presigned_sigv4(self):
        """boto3's SigV4 presigned S3 URL (S3SigV4QueryAuth): UNSIGNED-PAYLOAD,
        the path as sent; expiry and the 7-day limit."""
        client, _ = captured_client("s3", "http://127.0.0.1:4568", signature_version="s3v4")
        key = "a b/c\u00e9+d"
        url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": key},
                                            ExpiresIn=120)
        now = time.time()
        request = received("GET", url, [])
        self.assertEqual(unquote(request.path), "/b/" + key)
        result = A.verify_sigv4(request, lookup, now)
        self.assertEqual((result.payload_hash, result.service), (A.UNSIGNED_PAYLOAD, "s3"))
        error = raises(self, A.RequestExpired, A.verify_sigv4, request, lookup, now + 125)
        self.assertEqual((error.s3_code, error.s3_status), ("AccessDenied", 403))
        long = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": key},
                                             ExpiresIn=8 * 24 * 3600)
        error = raises(self, A.IncompleteSignature, A.verify_sigv4, received("GET", long, []),
                       lookup, now)
        self.assertEqual(error.s3_code, "AuthorizationQueryParametersError")

    def test_s3_signers_directly(self):
        """botocore's S3SigV4Auth and S3SigV4QueryAuth over an AWSRequest."""
        creds = Credentials(ALICE, ALICE_SECRET)
        aws = AWSRequest("PUT", "http://127.0.0.1:4568/b/k%20y", data=b"hello")
        botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1").add_auth(aws)
        p = aws.prepare()
        request = received(p.method, p.url, p.headers.items(), body=b"hello")
        self.assertTrue(A.verify_sigv4(request, lookup, time.time()).body_verified)
        aws = AWSRequest("GET", "http://127.0.0.1:4568/b/k%20y")
        botocore.auth.S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=30).add_auth(aws)
        p = aws.prepare()
        self.assertEqual(A.verify_sigv4(received(p.method, p.url, []), lookup,
                                        time.time()).payload_hash, A.UNSIGNED_PAYLOAD)

    def test_unpadded_signed_headers_and_commas(self):
        """An Authorization header without spaces after its commas, and an
        access key holding ``/`` and ``,`` (user names may)."""
        name = "ops/team,a"
        secrets = {name: "pw"}.get
        aws = AWSRequest("POST", "http://h:1/", data=b"Action=X")
        botocore.auth.SigV4Auth(Credentials(name, "pw"), "ec2", "us-east-1").add_auth(aws)
        p = aws.prepare()
        headers = [(k, v.replace(", ", ",") if k == "Authorization" else v)
                   for k, v in p.headers.items()]
        request = received(p.method, p.url, headers, body=p.body)
        self.assertEqual(A.verify_sigv4(request, secrets, time.time()).access_key, name)

    def malformed(self, sent, change):
        """The captured request ``sent`` with its Authorization header changed."""
        method, url, headers, body = sent
        headers = [(k, change(_s(v)) if k == "Authorization" else v) for k, v in headers]
        return received(method, url, headers, body=body)

    def test_malformed_authorization(self):
        """Malformed or incomplete SigV4 data is IncompleteSignature (400),
        an unsupported algorithm InvalidArgument."""
        now = time.time()
        sent = self.ec2_request()
        cases = [
            lambda v: v.split(", Signature=")[0],
            lambda v: v.replace("/aws4_request", ""),
            lambda v: v.replace("/aws4_request", "/aws5_request"),
            lambda v: v.replace("SignedHeaders=content-type;host;", "SignedHeaders="),
            lambda v: v.replace(";host", ";Host"),
            lambda v: v.replace(";x-amz-date", ""),
            lambda v: v.replace("Credential=alice/2", "Credential=alice/1"),
            lambda v: v.replace("Credential=", "Credential=x, Credential="),
        ]
        for change in cases:
            error = raises(self, A.IncompleteSignature, A.verify_sigv4,
                           self.malformed(sent, change), lookup, now)
            self.assertEqual((error.code, error.status), ("IncompleteSignature", 400))
        raises(self, A.InvalidArgument, A.verify_sigv4,
               self.malformed(sent, lambda v: v.replace("AWS4-HMAC-SHA256",
                                                        "AWS4-ECDSA-P256-SHA256")),
               lookup, now)

    def test_bad_dates(self):
        method, url, headers, body = self.ec2_request()
        for value in ("2015-08-30T12:36:00Z", "20151330T123600Z", ""):
            changed = [(k, value if k == "X-Amz-Date" else v) for k, v in headers]
            raises(self, A.IncompleteSignature, A.verify_sigv4,
                   received(method, url, changed, body=body), lookup, time.time())
        dateless = [(k, v) for k, v in headers if k != "X-Amz-Date"]
        raises(self, A.IncompleteSignature, A.verify_sigv4,
               received(method, url, dateless, body=body), lookup, time.time())

    def test_both_forms_and_no_form(self):
        """Authorization header and X-Amz-Algorithm together: InvalidArgument;
        neither: AuthFailure (S3 AccessDenied)."""
        method, url, headers, body = self.ec2_request()
        both = received(method, url + "?X-Amz-Algorithm=AWS4-HMAC-SHA256", headers, body=body)
        raises(self, A.InvalidArgument, A.verify_sigv4, both, lookup, time.time())
        bare = received(method, url, [(k, v) for k, v in headers if k != "Authorization"],
                        body=body)
        error = raises(self, A.AuthFailure, A.verify_sigv4, bare, lookup, time.time())
        self.assertEqual(error.s3_code, "AccessDenied")
        raises(self, A.AuthFailure, A.verify_request, bare, lookup, time.time())
        self.assertIsNone(A.detect_scheme(bare))

    def test_presigned_missing_parameters(self):
        client, _ = captured_client("ec2", "http://127.0.0.1:4567")
        url = client.generate_presigned_url("describe_regions", Params={}, ExpiresIn=60)
        for name in ("X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Algorithm"):
            split = urlsplit(url)
            query = "&".join(p for p in split.query.split("&") if not p.startswith(name + "="))
            request = A.AuthRequest("GET", "/", query, [("Host", split.netloc)], body=b"")
            error = raises(self, A.IncompleteSignature, A.verify_sigv4, request, lookup,
                           time.time())
            self.assertEqual(error.s3_code, "AuthorizationQueryParametersError")
            self.assertIn(name, error.message)

    def test_content_sha256_values(self):
        """x-amz-content-sha256 must be a hex SHA256 or one of the markers."""
        creds = Credentials(ALICE, ALICE_SECRET)
        aws = AWSRequest("PUT", "http://h:1/b/k", data=b"x",
                         headers={"X-Amz-Content-SHA256": "SHA256-OF-SOMETHING"})
        botocore.auth.SigV4Auth(creds, "s3", "us-east-1").add_auth(aws)
        p = aws.prepare()
        raises(self, A.InvalidArgument, A.verify_sigv4,
               received(p.method, p.url, p.headers.items()), lookup, time.time())


def _s(value):
    return value.decode() if isinstance(value, bytes) else value


# --------------------------------------------------------------------------- SigV2


class SigV2Tests(SynchronousTestCase):
    """EC2 Query SignatureVersion 2 (and 1)."""

    def test_boto3_v2_post(self):
        """boto3 with ``signature_version='v2'``: HmacSHA256, parameters in
        the form body, host with its port."""
        client, sent = captured_client("ec2", "http://127.0.0.1:4567", signature_version="v2")
        client.describe_regions(RegionNames=["a b", "c+d"])
        method, url, headers, body = sent[-1]
        params = form_pairs(body)
        self.assertIn(("SignatureMethod", "HmacSHA256"), params)
        request = received(method, url, headers, body=body)
        now = time.time()
        self.assertEqual(A.verify_sigv2(request, params, lookup, now), ALICE)
        self.assertEqual(A.verify_request(request, lookup, now, params=params),
                         (ALICE, "sigv2", None))
        tampered = [(k, "eu-west-1" if v == "a b" else v) for k, v in params]
        raises(self, A.AuthFailure, A.verify_sigv2, request, tampered, lookup, now)
        error = raises(self, A.AuthFailure, A.verify_sigv2, request, params,
                       {ALICE: "0" * 40}.get, now)
        self.assertEqual((error.code, error.status), ("AuthFailure", 401))
        raises(self, A.AuthFailure, A.verify_sigv2, request, params, {}.get, now)

    def v2_get(self, url, params, secret=ALICE_SECRET):
        """botocore's SigV2Auth over a GET (parameters in the query)."""
        aws = AWSRequest("GET", url, params=dict(params))
        botocore.auth.SigV2Auth(Credentials(ALICE, secret)).add_auth(aws)
        return aws.prepare()

    def test_botocore_v2_get(self):
        p = self.v2_get("http://127.0.0.1:4567/", {"Action": "DescribeImages",
                                                  "Version": "2010-08-31"})
        request = received(p.method, p.url, [])
        self.assertEqual(A.verify_sigv2(request, None, lookup, time.time()), ALICE)

    def test_host_without_port(self):
        """boto 2 signs (and sends) the host without its port; a client that
        signs it without the port behind a proxy that adds one passes too.
        A port that is not in the Host header is found only among ``hosts``."""
        params = {"Action": "DescribeImages", "Version": "2010-08-31"}
        now = time.time()
        p = self.v2_get("http://127.0.0.1/", params)
        for host in ("127.0.0.1", "127.0.0.1:4567", "127.0.0.1:80"):
            self.assertEqual(A.verify_sigv2(received(p.method, p.url, [], host=host), None,
                                            lookup, now), ALICE, host)
        p = self.v2_get("http://127.0.0.1:4567/", params)
        request = received(p.method, p.url, [], host="127.0.0.1")
        raises(self, A.AuthFailure, A.verify_sigv2, request, None, lookup, now)
        self.assertEqual(A.verify_sigv2(request, None, lookup, now, hosts=["127.0.0.1:4567"]),
                         ALICE)
        p = self.v2_get("http://[::1]:4567/", params)
        request = received(p.method, p.url, [], host="[::1]")
        self.assertEqual(A.verify_sigv2(request, None, lookup, now,
                                        hosts=["[::1]:4567"]), ALICE)

    def signed(self, params, method="HmacSHA1", version="2", host="Example.com:8773",
               path="/", secret=ALICE_SECRET, http_method="POST"):
        """Parameters signed by hand, with the string to sign written out
        from the AWS SigV2 documentation."""
        params = dict(params, AWSAccessKeyId=ALICE, SignatureVersion=version)
        if version == "2":
            params["SignatureMethod"] = method
            q = "&".join(f"{A.uri_encode(k)}={A.uri_encode(v)}"
                         for k, v in sorted(params.items()))
            sts = f"{http_method}\n{host}\n{path}\n{q}"
            digest = hashlib.sha256 if method == "HmacSHA256" else hashlib.sha1
        else:
            sts = "".join(k + v for k, v in sorted(params.items(), key=lambda kv: kv[0].lower()))
            digest = hashlib.sha1
        sig = base64.b64encode(hmac.new(secret.encode(), sts.encode(), digest).digest())
        params["Signature"] = sig.decode()
        return list(params.items()), sts

    def request(self, host="Example.com:8773", path="/", method="POST"):
        return A.AuthRequest(method, path, "", [("Host", host)])

    def now_params(self, **extra):
        return dict({"Action": "DescribeInstances", "Version": "2009-04-04",
                     "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "InstanceId.1": "i-00000001", "Filter.1.Value.1": "a b/c~d*e"}, **extra)

    def test_hmac_sha1(self):
        """HmacSHA1, as econe 3.4's tools sign; the string to sign is the
        documented one, byte for byte."""
        params, sts = self.signed(self.now_params())
        self.assertEqual(A.sigv2_string_to_sign("POST", "Example.com:8773", "/", params), sts)
        self.assertIn("Filter.1.Value.1=a%20b%2Fc~d%2Ae&InstanceId.1=i-00000001", sts)
        self.assertEqual(A.verify_sigv2(self.request(), params, lookup, time.time()), ALICE)
        # A lower-case host signed by a client is tried as well.
        params, _ = self.signed(self.now_params(), host="example.com:8773")
        self.assertEqual(A.verify_sigv2(self.request(), params, lookup, time.time()), ALICE)

    def test_hmac_sha256_and_path(self):
        params, _ = self.signed(self.now_params(), method="HmacSHA256", path="/ec2/",
                                http_method="GET")
        request = self.request(path="/ec2/", method="GET")
        self.assertEqual(A.verify_sigv2(request, params, lookup, time.time()), ALICE)
        raises(self, A.AuthFailure, A.verify_sigv2, self.request(path="/", method="GET"),
               params, lookup, time.time())

    def test_signature_plus_read_as_space(self):
        """A Signature whose ``+`` became a space (sent unencoded in a query)."""
        for _ in range(50):
            params, _ = self.signed(self.now_params(Nonce=os.urandom(4).hex()))
            if "+" in dict(params)["Signature"]:
                break
        spaced = [(k, v.replace("+", " ") if k == "Signature" else v) for k, v in params]
        self.assertEqual(A.verify_sigv2(self.request(), spaced, lookup, time.time()), ALICE)

    def test_econe_upload_file_field(self):
        """econe-upload's multipart ``file`` field is not signed (3.4)."""
        params, _ = self.signed(self.now_params(Action="UploadImage"))
        params.append(("file", "<the image bytes>"))
        self.assertEqual(A.verify_sigv2(self.request(), params, lookup, time.time()), ALICE)

    def test_version_1(self):
        """SignatureVersion 1 only when allowed; its string to sign."""
        params, sts = self.signed(self.now_params(), version="1")
        self.assertEqual(A.sigv1_string_to_sign(params), sts)
        error = raises(self, A.InvalidArgument, A.verify_sigv2, self.request(), params, lookup,
                       time.time())
        self.assertEqual((error.code, error.status), ("InvalidParameterValue", 400))
        self.assertEqual(A.verify_sigv2(self.request(), params, lookup, time.time(),
                                        allow_v1=True), ALICE)
        self.assertEqual(A.verify_request(self.request(), lookup, time.time(), params=params,
                                          allow_v1=True).scheme, "sigv1")

    def test_unsupported_versions_and_methods(self):
        for extra in ({"SignatureVersion": "3"}, {"SignatureMethod": "HmacMD5"}):
            params, _ = self.signed(self.now_params())
            params = [(k, extra.get(k, v)) for k, v in params]
            raises(self, A.InvalidArgument, A.verify_sigv2, self.request(), params, lookup,
                   time.time())

    def test_missing_or_repeated(self):
        params, _ = self.signed(self.now_params())
        for name in ("Signature", "AWSAccessKeyId"):
            raises(self, A.IncompleteSignature, A.verify_sigv2, self.request(),
                   [(k, v) for k, v in params if k != name], lookup, time.time())
        raises(self, A.IncompleteSignature, A.verify_sigv2, self.request(),
               params + [("Signature", "x")], lookup, time.time())

    def test_timestamp_window(self):
        """Timestamp more than the window from now: RequestExpired (400)."""
        old = (datetime.now(UTC) - timedelta(minutes=16)).strftime("%Y-%m-%dT%H:%M:%SZ")
        params, _ = self.signed(self.now_params(Timestamp=old))
        error = raises(self, A.RequestExpired, A.verify_sigv2, self.request(), params, lookup,
                       time.time())
        self.assertEqual((error.code, error.status), ("RequestExpired", 400))
        self.assertEqual(A.verify_sigv2(self.request(), params, lookup, time.time(),
                                        max_skew=20 * 60), ALICE)
        ahead = (datetime.now(UTC) + timedelta(minutes=16)).isoformat()
        params, _ = self.signed(self.now_params(Timestamp=ahead))
        raises(self, A.RequestExpired, A.verify_sigv2, self.request(), params, lookup,
               time.time())
        params, _ = self.signed(self.now_params(Timestamp="yesterday"))
        raises(self, A.InvalidArgument, A.verify_sigv2, self.request(), params, lookup,
               time.time())

    def test_expires(self):
        """Expires instead of Timestamp: good until then; not both, not none."""
        base = self.now_params()
        del base["Timestamp"]
        later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        params, _ = self.signed(dict(base, Expires=later))
        now = time.time()
        self.assertEqual(A.verify_sigv2(self.request(), params, lookup, now), ALICE)
        raises(self, A.RequestExpired, A.verify_sigv2, self.request(), params, lookup,
               now + 3601)
        params, _ = self.signed(dict(base, Expires=later, Timestamp=later))
        raises(self, A.IncompleteSignature, A.verify_sigv2, self.request(), params, lookup, now)
        params, _ = self.signed(base)
        raises(self, A.IncompleteSignature, A.verify_sigv2, self.request(), params, lookup, now)


class S3SigV2Tests(SynchronousTestCase):
    """S3's own SigV2 (``AWS key:signature``), and the presigned URLs boto3
    makes by default."""

    def test_header_form(self):
        """boto3 with ``signature_version='s3'``: PutObject, then the
        multipart calls whose sub-resources are signed."""
        client, sent = captured_client("s3", "http://127.0.0.1:4568", signature_version="s3")
        client.put_object(Bucket="b", Key="a b/k+y", Body=b"data", ContentType="text/plain",
                          Metadata={"who": "me"})
        client.upload_part(Bucket="b", Key="k", UploadId="u 1", PartNumber=2, Body=b"x")
        client.list_objects(Bucket="b", Prefix="a")
        now = time.time()
        for method, url, headers, _body in sent:
            request = received(method, url, headers)
            self.assertTrue(request.header("authorization").startswith("AWS alice:"))
            self.assertEqual(A.verify_s3_sigv2(request, lookup, now), ALICE, url)
            self.assertEqual(A.verify_request(request, lookup, now, schemes=A.S3_SCHEMES),
                             (ALICE, "s3-sigv2", None))
            raises(self, A.InvalidArgument, A.verify_request, request, lookup, now)
            raises(self, A.RequestExpired, A.verify_s3_sigv2, request, lookup, now + 16 * 60)
            raises(self, A.AuthFailure, A.verify_s3_sigv2, request, {ALICE: "x"}.get, now)
        method, url, headers, _ = sent[1]
        moved = url.replace("partNumber=2", "partNumber=3")
        raises(self, A.AuthFailure, A.verify_s3_sigv2, received(method, moved, headers),
               lookup, now)
        method, url, headers, _ = sent[0]
        changed = [(k, "you" if k.lower() == "x-amz-meta-who" else v) for k, v in headers]
        raises(self, A.AuthFailure, A.verify_s3_sigv2, received(method, url, changed),
               lookup, now)

    def test_presigned_default(self):
        """boto3's default presigned GetObject URL (HmacV1QueryAuth)."""
        client, _ = captured_client("s3", "http://127.0.0.1:4568")
        url = client.generate_presigned_url("get_object",
                                            Params={"Bucket": "b", "Key": "a b/c"},
                                            ExpiresIn=100)
        self.assertIn("AWSAccessKeyId=alice", url)
        request = received("GET", url, [])
        now = time.time()
        self.assertEqual(A.detect_scheme(request), "s3-sigv2-query")
        self.assertEqual(A.verify_request(request, lookup, now, schemes=A.S3_SCHEMES).access_key,
                         ALICE)
        error = raises(self, A.RequestExpired, A.verify_s3_sigv2, request, lookup, now + 101)
        self.assertEqual(error.s3_code, "AccessDenied")
        raises(self, A.AuthFailure, A.verify_s3_sigv2,
               received("GET", url.replace("/b/a%20b/c", "/b/a%20b/d"), []), lookup, now)

    def test_malformed(self):
        request = A.AuthRequest("GET", "/b", "", [("Host", "h"), ("Authorization", "AWS nokey")])
        raises(self, A.IncompleteSignature, A.verify_s3_sigv2, request, lookup, time.time())
        request = A.AuthRequest("GET", "/b", "", [("Host", "h"), ("Authorization", "AWS a:b")])
        error = raises(self, A.AuthFailure, A.verify_s3_sigv2, request, lookup, time.time())
        self.assertEqual(error.s3_code, "AccessDenied")


# --------------------------------------------------------------------------- aws-chunked


DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_TIMESTAMP, DOC_SCOPE = "20130524T000000Z", "20130524/us-east-1/s3/aws4_request"
DOC_NOW = datetime(2013, 5, 24, 0, 0, 30, tzinfo=UTC).timestamp()


def doc_key():
    """The documentation example's signing key, derived here by hand."""
    k = ("AWS4" + DOC_SECRET).encode()
    for part in ("20130524", "us-east-1", "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


DOC_HEADERS = [
    ("Host", "s3.amazonaws.com"), ("x-amz-date", DOC_TIMESTAMP),
    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    ("Authorization", ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/"
                       "s3/aws4_request,SignedHeaders=content-encoding;content-length;host;"
                       "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
                       "x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690"
                       "baa4adea153f7db9fa80a0a9")),
    ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
    ("Content-Encoding", "aws-chunked"), ("x-amz-decoded-content-length", "66560"),
    ("Content-Length", "66824")]
DOC_SIGNATURES = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
                  "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
                  "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]
DOC_TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
DOC_TRAILER_SIGNATURES = ["b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
                          "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
                          "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"]
DOC_TRAILER = (b"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:"
               b"d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n")


def doc_body(signatures, trailer=b""):
    """The documentation's 66560 bytes of ``a`` in chunks of 65536, 1024, 0."""
    return (b"10000;chunk-signature=%s\r\n" % signatures[0].encode() + b"a" * 65536
            + b"\r\n400;chunk-signature=%s\r\n" % signatures[1].encode() + b"a" * 1024
            + b"\r\n0;chunk-signature=%s\r\n" % signatures[2].encode() + trailer + b"\r\n")


def crc32c(data, crc=0):
    """CRC32C (Castagnoli), bit by bit: slow, for the tests' small bodies."""
    crc ^= 0xFFFFFFFF
    for byte in bytes(data):
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def b64(digest):
    return base64.b64encode(digest).decode()


def checksum_value(algorithm, data):
    if algorithm == "crc32":
        return b64(zlib.crc32(data).to_bytes(4, "big"))
    if algorithm == "crc32c":
        return b64(crc32c(data).to_bytes(4, "big"))
    return b64(hashlib.new(algorithm, data).digest())


def encode_chunked(data, chunk_sizes, mode, key=None, seed=None, trailers=(),
                   timestamp=DOC_TIMESTAMP, scope=DOC_SCOPE):
    """A reference aws-chunked encoder written from the S3 documentation:
    chunks of the given sizes (cycled), signed as a chain from ``seed`` in
    the signed modes, then the zero chunk and ``trailers`` ((name, value)),
    signed in the signed-trailer mode."""
    empty = hashlib.sha256(b"").hexdigest()
    previous = seed
    out = []
    sizes = list(chunk_sizes)
    pos, i = 0, 0
    while True:
        size = sizes[i % len(sizes)]
        i += 1
        chunk = data[pos:pos + size]
        pos += len(chunk)
        head = b"%x" % len(chunk)
        if mode != A.STREAMING_UNSIGNED_TRAILER:
            sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", timestamp, scope, previous, empty,
                             hashlib.sha256(chunk).hexdigest()])
            previous = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
            head += b";chunk-signature=" + previous.encode()
        out.append(head + b"\r\n")
        if chunk:
            out.append(chunk + b"\r\n")
            continue
        lines = "".join(f"{n}:{v}\n" for n, v in trailers)
        for name, value in trailers:
            out.append(f"{name}:{value}\r\n".encode())
        if mode == A.STREAMING_PAYLOAD_TRAILER:
            sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", timestamp, scope, previous,
                             hashlib.sha256(lines.encode()).hexdigest()])
            sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
            out.append(f"x-amz-trailer-signature:{sig}\r\n".encode())
        out.append(b"\r\n")
        return b"".join(out)


SEED = "0" * 63 + "1"


def decoder(mode, **kwargs):
    if mode != A.STREAMING_UNSIGNED_TRAILER:
        kwargs.setdefault("key", doc_key())
        kwargs.setdefault("seed_signature", SEED)
        kwargs.setdefault("timestamp", DOC_TIMESTAMP)
        kwargs.setdefault("scope", DOC_SCOPE)
    return A.ChunkedDecoder(mode, **kwargs)


def decode_all(d, body, step):
    out = bytearray()
    for i in range(0, len(body), step):
        out += d.feed(body[i:i + step])
    return bytes(out), d.finish()


class ChunkedDecoderTests(SynchronousTestCase):
    """aws-chunked bodies: the documentation's examples, botocore's, ours."""

    def test_documented_signed_upload(self):
        """The S3 documentation's chunk-signed PUT: the request's signature is
        the documented seed, and every documented chunk signature holds."""
        request = A.AuthRequest("PUT", "/examplebucket/chunkObject.txt", "", DOC_HEADERS)
        result = A.verify_sigv4(request, {"AKIAIOSFODNN7EXAMPLE": DOC_SECRET}.get, DOC_NOW)
        self.assertEqual(result.signature, DOC_HEADERS[3][1][-64:])
        self.assertEqual(result.signing_key, doc_key())
        body = doc_body(DOC_SIGNATURES)
        self.assertEqual(len(body), 66824)
        for step in (1, 1000, len(body)):
            d = A.body_decoder(request, result)
            self.assertEqual(decode_all(d, body, step), (b"a" * 66560, {}))
        for i in range(3):
            signatures = list(DOC_SIGNATURES)
            signatures[i] = signatures[i][:-1] + "0"
            d = A.body_decoder(request, result)
            error = raises(self, A.SignatureDoesNotMatch, decode_all, d, doc_body(signatures),
                           4096)
            self.assertEqual((error.s3_code, error.s3_status), ("SignatureDoesNotMatch", 403))
        changed = bytearray(body)
        changed[5000] = ord("b")
        raises(self, A.SignatureDoesNotMatch, decode_all, A.body_decoder(request, result),
               bytes(changed), 4096)

    def test_documented_signed_trailer(self):
        """The documentation's upload with a signed CRC32C trailer: the
        chain and the trailer signature hold; a changed trailer does not."""
        events = []
        self.patch(payload, "log", OneLogger("AuM", observer=events.append))
        self.patch(payload, "_crc32c_function", lambda: None)
        body = doc_body(DOC_TRAILER_SIGNATURES, DOC_TRAILER)
        d = decoder(A.STREAMING_PAYLOAD_TRAILER, seed_signature=DOC_TRAILER_SEED,
                    trailers=["x-amz-checksum-crc32c"], decoded_length=66560)
        self.assertEqual(decode_all(d, body, 777),
                         (b"a" * 66560, {"x-amz-checksum-crc32c": "sOO8/Q=="}))
        # No CRC32C implementation installed: accepted, and said in the log.
        self.assertEqual([e.get("name") for e in events], ["x-amz-checksum-crc32c"])
        # With one, the documented value is checked (and is right).
        self.patch(payload, "_crc32c_function", lambda: crc32c)
        d = decoder(A.STREAMING_PAYLOAD_TRAILER, seed_signature=DOC_TRAILER_SEED,
                    trailers=["x-amz-checksum-crc32c"])
        self.assertEqual(decode_all(d, body, 65536)[1], {"x-amz-checksum-crc32c": "sOO8/Q=="})
        other = body.replace(b"sOO8/Q==", b"sOO8/A==")
        d = decoder(A.STREAMING_PAYLOAD_TRAILER, seed_signature=DOC_TRAILER_SEED,
                    trailers=["x-amz-checksum-crc32c"])
        raises(self, A.SignatureDoesNotMatch, decode_all, d, other, 65536)
        unsigned = body.replace(DOC_TRAILER.split(b"\r\n")[1] + b"\r\n", b"")
        d = decoder(A.STREAMING_PAYLOAD_TRAILER, seed_signature=DOC_TRAILER_SEED,
                    trailers=["x-amz-checksum-crc32c"])
        raises(self, A.InvalidRequest, decode_all, d, unsigned, 65536)

    def test_signed_round_trips(self):
        """Our reference encoder's signed bodies, any chunk sizes, any split."""
        rng = random.Random(4)
        data = rng.randbytes(20000)
        for sizes in ([1], [7, 8192], [20000], [30000], [3, 5000, 11]):
            small = data[:300] if sizes == [1] else data
            body = encode_chunked(small, sizes, A.STREAMING_PAYLOAD, doc_key(), SEED)
            for step in (1, 13, 4096, len(body)):
                if step == 1 and len(body) > 5000:
                    continue
                d = decoder(A.STREAMING_PAYLOAD, decoded_length=len(small))
                self.assertEqual(decode_all(d, body, step), (small, {}))
                self.assertLessEqual(d.buffered, d.MAX_LINE)
        empty = encode_chunked(b"", [10], A.STREAMING_PAYLOAD, doc_key(), SEED)
        self.assertEqual(decode_all(decoder(A.STREAMING_PAYLOAD), empty, 3), (b"", {}))

    def test_signed_chunks_out_of_order(self):
        """Two equal chunks traded places each carry a valid signature of their
        bytes; only the chain shows they are out of order."""
        data = b"A" * 100 + b"B" * 100
        body = encode_chunked(data, [100], A.STREAMING_PAYLOAD, doc_key(), SEED)
        parts = body.split(b"64;chunk-signature=")
        self.assertEqual(len(parts), 3)
        first = b"64;chunk-signature=" + parts[1]
        second = b"64;chunk-signature=" + parts[2].split(b"0;chunk-signature=")[0]
        rest = b"0;chunk-signature=" + parts[2].split(b"0;chunk-signature=", 1)[1]
        swapped = second + first + rest
        raises(self, A.SignatureDoesNotMatch, decode_all, decoder(A.STREAMING_PAYLOAD),
               swapped, 50)

    def test_signed_trailer_round_trips(self):
        data = random.Random(5).randbytes(9000)
        for algorithm in ("crc32", "sha1", "sha256"):
            name = f"x-amz-checksum-{algorithm}"
            trailers = [(name, checksum_value(algorithm, data))]
            body = encode_chunked(data, [4000], A.STREAMING_PAYLOAD_TRAILER, doc_key(), SEED,
                                  trailers)
            d = decoder(A.STREAMING_PAYLOAD_TRAILER, trailers=[name])
            self.assertEqual(decode_all(d, body, 333), (data, dict(trailers)))
            # Signed correctly over a checksum of other bytes: BadDigest.
            wrong = [(name, checksum_value(algorithm, b"other"))]
            body = encode_chunked(data, [4000], A.STREAMING_PAYLOAD_TRAILER, doc_key(), SEED,
                                  wrong)
            error = raises(self, A.BadDigest, decode_all,
                           decoder(A.STREAMING_PAYLOAD_TRAILER, trailers=[name]), body, 333)
            self.assertEqual((error.s3_code, error.s3_status), ("BadDigest", 400))
            self.assertIn(algorithm.upper(), error.message)

    def test_botocore_chunked_bodies(self):
        """Bodies made by botocore's own AwsChunkedWrapper, as boto3 sends them."""
        data = random.Random(6).randbytes(3 * 1024 * 1024 + 5)
        for cls, algorithm in ((Crc32Checksum, "crc32"), (Sha1Checksum, "sha1"),
                               (Sha256Checksum, "sha256")):
            name = f"x-amz-checksum-{algorithm}"
            body = AwsChunkedWrapper(io.BytesIO(data), checksum_cls=cls,
                                     checksum_name=name).read()
            d = decoder(A.STREAMING_UNSIGNED_TRAILER, trailers=[name], decoded_length=len(data))
            out, trailers = decode_all(d, body, 65536)
            self.assertEqual(out, data)
            self.assertEqual(trailers, {name: checksum_value(algorithm, data)})
            changed = bytearray(body)
            changed[100] ^= 1
            raises(self, A.BadDigest, decode_all,
                   decoder(A.STREAMING_UNSIGNED_TRAILER, trailers=[name]), bytes(changed),
                   65536)
        plain = AwsChunkedWrapper(io.BytesIO(data[:10])).read()
        self.assertEqual(decode_all(decoder(A.STREAMING_UNSIGNED_TRAILER), plain, 1),
                         (data[:10], {}))

    def test_unsigned_ends_after_last_chunk(self):
        """Some SDKs end an unsigned body right after ``0\\r\\n``: whole, when
        no trailer was announced."""
        d = decoder(A.STREAMING_UNSIGNED_TRAILER)
        self.assertEqual(decode_all(d, b"3\r\nabc\r\n0\r\n", 2), (b"abc", {}))
        d = decoder(A.STREAMING_UNSIGNED_TRAILER, trailers=["x-amz-checksum-crc32"])
        raises(self, A.IncompleteBody, decode_all, d, b"3\r\nabc\r\n0\r\n", 2)

    def test_unsigned_extensions_ignored(self):
        d = decoder(A.STREAMING_UNSIGNED_TRAILER)
        self.assertEqual(decode_all(d, b"3;ext=1\r\nabc\r\n0\r\n\r\n", 5), (b"abc", {}))

    def test_framing_errors(self):
        """What is not aws-chunked is InvalidRequest; a cut body IncompleteBody."""
        unsigned = A.STREAMING_UNSIGNED_TRAILER
        good = b"5\r\nhello\r\n0\r\n\r\n"
        cases = [
            (unsigned, b"zz\r\nhello\r\n0\r\n\r\n"),          # not hex
            (unsigned, b"5\nhello\r\n0\r\n\r\n"),             # bare LF
            (unsigned, b"4\r\nhello\r\n0\r\n\r\n"),           # longer than its size
            (unsigned, b"1" * 17 + b"\r\n"),                  # absurd size
            (unsigned, b"1" * 5000),                          # endless line
            (unsigned, good + b"more"),                       # data after the end
            (unsigned, b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"),  # unannounced
            (unsigned, b"5\r\nhello\r\n0\r\nnot a trailer\r\n\r\n"),
            (A.STREAMING_PAYLOAD, good),                      # no chunk signature
            (A.STREAMING_PAYLOAD, b"5;chunk-signature=xyz\r\nhello\r\n"),
        ]
        for mode, body in cases:
            for step in (1, len(body)):
                raises(self, A.InvalidRequest, decode_all, decoder(mode), body, step)
        for cut in (0, 1, 3, 8, 10, len(good) - 2):
            d = decoder(unsigned, trailers=["x-amz-checksum-crc32"])
            d.feed(good[:cut])
            error = raises(self, A.IncompleteBody, d.finish)
            self.assertEqual((error.s3_code, error.s3_status), ("IncompleteBody", 400))
        self.assertEqual(decode_all(decoder(unsigned), good + b"\r\n", 4), (b"hello", {}))

    def test_decoded_length(self):
        """x-amz-decoded-content-length is held to: too few bytes at the end,
        too many as soon as a chunk announces them."""
        good = b"5\r\nhello\r\n0\r\n\r\n"
        raises(self, A.IncompleteBody, decode_all,
               decoder(A.STREAMING_UNSIGNED_TRAILER, decoded_length=6), good, 3)
        d = decoder(A.STREAMING_UNSIGNED_TRAILER, decoded_length=4)
        raises(self, A.InvalidRequest, d.feed, b"5\r\n")

    def test_trailer_announcements(self):
        """A trailer announced and not sent, or of an algorithm S3 does not
        define, is refused; one without an implementation here is logged."""
        raises(self, A.InvalidRequest, decoder, A.STREAMING_UNSIGNED_TRAILER,
               trailers=["x-amz-checksum-md5"])
        raises(self, A.InvalidRequest, decoder, A.STREAMING_UNSIGNED_TRAILER,
               trailers=["x-amz-meta-x"])
        raises(self, A.InvalidRequest, decoder, A.STREAMING_PAYLOAD,
               trailers=["x-amz-checksum-crc32"])
        body = b"5\r\nhello\r\n0\r\n\r\n"
        raises(self, A.InvalidRequest, decode_all,
               decoder(A.STREAMING_UNSIGNED_TRAILER, trailers=["x-amz-checksum-crc32"]), body, 4)
        events = []
        self.patch(payload, "log", OneLogger("AuM", observer=events.append))
        self.patch(payload, "_crt_checksum", lambda name: None)  # as without awscrt
        self.assertIsNone(A.new_checksum("crc64nvme"))
        body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc64nvme:AAAAAAAAAAA=\r\n\r\n"
        d = decoder(A.STREAMING_UNSIGNED_TRAILER, trailers=["x-amz-checksum-crc64nvme"])
        self.assertEqual(decode_all(d, body, 4), (b"hello", {
            "x-amz-checksum-crc64nvme": "AAAAAAAAAAA="}))
        self.assertEqual([e.get("name") for e in events], ["x-amz-checksum-crc64nvme"])

    def test_large_body_in_constant_memory(self):
        """64 MiB unsigned and 32 MiB chunk-signed bodies, fed 64 KiB at a time:
        the decoder's own memory stays flat (tracemalloc peak well under 1 MiB
        beyond the piece in hand)."""
        piece = 64 * 1024
        block = random.Random(7).randbytes(piece)
        key = doc_key()

        def unsigned_stream(count):
            for _ in range(count):
                yield b"%x\r\n" % piece + block + b"\r\n"
            yield b"0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % crc.encode()

        def signed_stream(count):
            previous = SEED
            empty = hashlib.sha256(b"").hexdigest()
            digest = hashlib.sha256(block).hexdigest()
            for data in [block] * count + [b""]:
                sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", DOC_TIMESTAMP, DOC_SCOPE, previous,
                                 empty, digest if data else empty])
                previous = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
                yield b"%x;chunk-signature=%s\r\n" % (len(data), previous.encode()) + data \
                    + b"\r\n"

        count = 1024
        value = 0
        for _ in range(count):
            value = zlib.crc32(block, value)
        crc = b64(value.to_bytes(4, "big"))
        for mode, stream, n in ((A.STREAMING_UNSIGNED_TRAILER, unsigned_stream, count),
                                (A.STREAMING_PAYLOAD, signed_stream, count // 2)):
            trailers = ["x-amz-checksum-crc32"] if mode == A.STREAMING_UNSIGNED_TRAILER else []
            d = decoder(mode, trailers=trailers, decoded_length=n * piece)
            total = 0
            tracemalloc.start()
            try:
                for wire in stream(n):
                    # Re-cut the wire at odd places, as a socket would.
                    for i in range(0, len(wire), 40000):
                        total += len(d.feed(wire[i:i + 40000]))
                    self.assertLessEqual(d.buffered, d.MAX_LINE)
                d.finish()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            self.assertEqual(total, n * piece)
            self.assertLess(peak, 3 * piece + 512 * 1024, mode)


class BodyDecoderTests(SynchronousTestCase):
    """:func:`body_decoder` and :class:`PayloadVerifier`."""

    def test_plain_checksum_headers(self):
        data = b"some object"
        headers = [("x-amz-checksum-sha256", checksum_value("sha256", data)),
                   ("x-amz-checksum-crc32", checksum_value("crc32", data)),
                   ("x-amz-checksum-mode", "ENABLED")]
        request = A.AuthRequest("PUT", "/b/k", "", headers)
        d = A.body_decoder(request)
        self.assertEqual(decode_all(d, data, 3), (data, {}))
        d = A.body_decoder(request)
        d.feed(data + b"!")
        raises(self, A.BadDigest, d.finish)
        bad = A.AuthRequest("PUT", "/b/k", "", [("x-amz-checksum-crc32", "not base64!")])
        d = A.body_decoder(bad)
        raises(self, A.BadDigest, decode_all, d, data, 3)

    def test_content_md5(self):
        """Content-MD5 is held to, on plain and aws-chunked bodies."""
        data = b"abc"
        request = A.AuthRequest("PUT", "/b/k", "", [("Content-MD5",
                                                     b64(hashlib.md5(data).digest()))])
        self.assertEqual(decode_all(A.body_decoder(request), data, 2), (data, {}))
        d = A.body_decoder(request)
        d.feed(b"abd")
        error = raises(self, A.BadDigest, d.finish)
        self.assertIn("Content-MD5", error.message)
        d = decoder(A.STREAMING_UNSIGNED_TRAILER,
                    checksums={"content-md5": b64(hashlib.md5(b"abd").digest())})
        raises(self, A.BadDigest, decode_all, d, b"3\r\nabc\r\n0\r\n\r\n", 4)

    def test_header_checksum_on_chunked_body(self):
        """An x-amz-checksum-* header (not a trailer) on an aws-chunked body."""
        body = b"5\r\nhello\r\n0\r\n\r\n"
        d = decoder(A.STREAMING_UNSIGNED_TRAILER,
                    checksums={"x-amz-checksum-crc32": checksum_value("crc32", b"hello")})
        self.assertEqual(decode_all(d, body, 3), (b"hello", {}))
        d = decoder(A.STREAMING_UNSIGNED_TRAILER,
                    checksums={"x-amz-checksum-crc32": checksum_value("crc32", b"hellO")})
        raises(self, A.BadDigest, decode_all, d, body, 3)

    def test_length(self):
        d = A.PayloadVerifier(length=3)
        d.feed(b"ab")
        raises(self, A.IncompleteBody, d.finish)
        raises(self, A.InvalidRequest, A.PayloadVerifier(length=1).feed, b"ab")

    def test_refusals(self):
        """aws-chunked without SigV4, or a trailer on a plain body."""
        request = A.AuthRequest("PUT", "/b/k", "", [
            ("x-amz-content-sha256", A.STREAMING_UNSIGNED_TRAILER)])
        raises(self, A.InvalidRequest, A.body_decoder, request)
        request = A.AuthRequest("PUT", "/b/k", "", [("x-amz-trailer", "x-amz-checksum-crc32")])
        raises(self, A.InvalidRequest, A.body_decoder, request)
        request = A.AuthRequest("PUT", "/b/k", "", [("x-amz-decoded-content-length", "-1")])
        raises(self, A.InvalidRequest, A.body_decoder, request)

    def test_stored_content_encoding(self):
        self.assertEqual(A.stored_content_encoding("gzip,aws-chunked"), "gzip")
        self.assertEqual(A.stored_content_encoding("aws-chunked, br"), "br")
        self.assertIsNone(A.stored_content_encoding("aws-chunked"))
        self.assertIsNone(A.stored_content_encoding(None))


# --------------------------------------------------------------------------- garbage in


PALETTE = ["", "x", "%", "%zz", "%E1", "=", "&", ";", ",", ":", "/", " ", "\t", "\r\n", "+",
           "\u00e9", "\u0663", "\udcff", "\x00", "AWS4-HMAC-SHA256", "aws4_request",
           "99999999999999999999", "-1", "20151330T123600Z", "Signature=", "Credential=a/b"]


def mutate(rng, text):
    """``text`` (str or bytes) with a random piece replaced, inserted or
    removed."""
    piece = rng.choice(PALETTE)
    if isinstance(text, bytes):
        piece = piece.encode("utf-8", "surrogateescape")
    if not text:
        return piece
    i = rng.randrange(len(text))
    j = min(len(text), i + rng.randrange(4))
    return text[:i] + piece + text[j:]


class GarbageTests(SynchronousTestCase):
    """Whatever a client sends, the verifiers answer with an
    :class:`AWSAuthError` (an API error), never another exception."""

    def samples(self):
        samples = []
        client, sent = captured_client("ec2", "http://127.0.0.1:4567")
        client.describe_regions()
        url = client.generate_presigned_url("describe_regions", Params={}, HttpMethod="GET")
        samples += [received(*sent[-1][:3], body=sent[-1][3]), received("GET", url, [])]
        client, sent = captured_client("ec2", "http://127.0.0.1:4567", signature_version="v2")
        client.describe_regions()
        method, url, headers, body = sent[-1]
        samples.append(received(method, url + "?" + body.decode(), headers, body=b""))
        for version in ("s3", "s3v4"):
            client, sent = captured_client("s3", "https://127.0.0.1:4568",
                                           signature_version=version)
            client.put_object(Bucket="b", Key="k", Body=b"data")
            url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
            samples += [received(*sent[-1][:3]), received("GET", url, [])]
        return samples

    def test_requests(self):
        rng = random.Random(11)
        now = time.time()
        outcomes = set()
        for sample in self.samples():
            for _ in range(400):
                headers = list(sample.headers)
                path, query, method = sample.path, sample.query, sample.method
                for _ in range(rng.randrange(1, 4)):
                    what = rng.randrange(5)
                    if what == 0 and headers:
                        k = rng.randrange(len(headers))
                        headers[k] = (headers[k][0], mutate(rng, headers[k][1]))
                    elif what == 1 and headers:
                        headers.append(rng.choice(headers))
                    elif what == 2 and headers:
                        del headers[rng.randrange(len(headers))]
                    elif what == 3:
                        query = mutate(rng, query)
                    else:
                        path = mutate(rng, path)
                request = A.AuthRequest(method, path, query, headers, body=sample.body)
                try:
                    found = A.verify_request(request, lookup, now,
                                             schemes=A.EC2_SCHEMES + A.S3_SCHEMES)
                    A.body_decoder(request, found.sigv4).finish()
                    outcomes.add("ok")
                except A.AWSAuthError as e:
                    outcomes.add(type(e).__name__)
        self.assertIn("ok", outcomes)
        self.assertGreaterEqual(len(outcomes), 5, outcomes)

    def test_bodies(self):
        rng = random.Random(12)
        data = rng.randbytes(3000)
        bodies = [
            (A.STREAMING_PAYLOAD, encode_chunked(data, [1000], A.STREAMING_PAYLOAD, doc_key(),
                                                 SEED)),
            (A.STREAMING_PAYLOAD_TRAILER, encode_chunked(
                data, [1000], A.STREAMING_PAYLOAD_TRAILER, doc_key(), SEED,
                [("x-amz-checksum-crc32", checksum_value("crc32", data))])),
            (A.STREAMING_UNSIGNED_TRAILER, AwsChunkedWrapper(
                io.BytesIO(data), checksum_cls=Crc32Checksum,
                checksum_name="x-amz-checksum-crc32", chunk_size=1000).read()),
        ]
        outcomes = set()
        for mode, body in bodies:
            trailers = [] if mode == A.STREAMING_PAYLOAD else ["x-amz-checksum-crc32"]
            for _ in range(300):
                wire = body
                for _ in range(rng.randrange(1, 3)):
                    wire = mutate(rng, wire)
                try:
                    decode_all(decoder(mode, trailers=trailers), wire, rng.randrange(1, 2000))
                    outcomes.add("ok")
                except A.AWSAuthError as e:
                    outcomes.add(type(e).__name__)
        self.assertGreaterEqual(len(outcomes), 4, outcomes)


# --------------------------------------------------------------------------- errors


class ErrorTests(SynchronousTestCase):
    def test_codes(self):
        """Each error carries both fronts' codes and statuses."""
        expected = {
            A.AuthFailure: ("AuthFailure", 401, "SignatureDoesNotMatch", 403),
            A.IncompleteSignature: ("IncompleteSignature", 400,
                                    "AuthorizationHeaderMalformed", 400),
            A.RequestExpired: ("RequestExpired", 400, "RequestTimeTooSkewed", 403),
            A.InvalidArgument: ("InvalidParameterValue", 400, "InvalidArgument", 400),
            A.InvalidRequest: ("InvalidRequest", 400, "InvalidRequest", 400),
            A.SignatureDoesNotMatch: ("AuthFailure", 401, "SignatureDoesNotMatch", 403),
            A.IncompleteBody: ("IncompleteBody", 400, "IncompleteBody", 400),
            A.XAmzContentSHA256Mismatch: ("AuthFailure", 401, "XAmzContentSHA256Mismatch",
                                          400),
            A.BadDigest: ("InvalidParameterValue", 400, "BadDigest", 400),
        }
        for cls, codes in expected.items():
            e = cls("m")
            self.assertEqual((e.code, e.status, e.s3_code, e.s3_status), codes, cls.__name__)
            self.assertEqual(str(e), f"{codes[0]}: m")
        e = A.AuthFailure("m", s3_code="InvalidAccessKeyId")
        self.assertEqual((e.s3_code, A.AuthFailure.s3_code),
                         ("InvalidAccessKeyId", "SignatureDoesNotMatch"))


# --------------------------------------------------------------------------- OpenNebula users


class SecretLookupTests(TestCase):
    """The requests layer's ``user_secret`` (the one secret lookup the EC2 and
    S3 fronts use) over a real daemon's users."""

    async def test_users(self):
        """core and public users have their SHA1 as secret; others, unknown
        and disabled users none; a boto3 request signed with the secret of
        OpenNebula's rule authenticates as the user."""
        neb = await testing.start_nebula(self)
        await neb.call("one.user.allocate", "alice", "alice-pw")
        await neb.call("one.user.allocate", "carol", "carol-pw", "public")
        await neb.call("one.user.allocate", "xavier", "x-pw", "x509")
        secret_of = neb.service.requests.user_secret
        self.assertEqual(secret_of("alice"), A.ec2_secret("alice-pw"))
        self.assertEqual(secret_of("carol"), A.ec2_secret("carol-pw"))
        self.assertIsNone(secret_of("xavier"))
        self.assertIsNone(secret_of("nobody"))
        client, sent = captured_client("ec2", "http://127.0.0.1:4567",
                                       secret=A.ec2_secret("alice-pw"))
        client.describe_regions()
        method, url, headers, body = sent[-1]
        request = received(method, url, headers, body=body)
        self.assertEqual(A.verify_request(request, secret_of, time.time()).access_key, "alice")
        neb.nebula.userpool.find("alice").enabled = False
        self.assertIsNone(secret_of("alice"))
        raises(self, A.AuthFailure, A.verify_request, request, secret_of, time.time())


# --------------------------------------------------------------------------- on the wire


def self_signed(directory):
    """A key and self-signed certificate for 127.0.0.1 (PEM file paths)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    os.makedirs(directory, exist_ok=True)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    path = os.path.join(directory, "cert.pem")
    with open(path, "wb") as f:
        f.write(cert_pem)
    return path, cert_pem + key_pem


class AuthResource(resource.Resource):
    """A tiny front over this module: ``/`` is EC2 Query (SigV4 or SigV2),
    ``/<bucket>/<key>`` S3 (SigV4 with aws-chunked, or S3 SigV2); objects are
    kept in ``objects``. Errors in each API's shape."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.objects = {}
        self.refusals = []
        #: (method, path, scheme, payload hash or None) of each request let in.
        self.seen = []

    def render(self, request):
        body = request.content.read()
        auth_request = A.AuthRequest.from_twisted(request)
        now = reactor.seconds()
        try:
            if request.path == b"/":
                auth_request = A.AuthRequest.from_twisted(request, body=body)
                params = auth_request.query_pairs() + parse_qsl(body.decode(),
                                                                keep_blank_values=True)
                found = A.verify_request(auth_request, lookup, now, params=params,
                                         services=("ec2",))
                self.seen.append((request.method, request.path, found.scheme, None))
                request.setHeader(b"content-type", b"text/xml")
                return EC2_REPLY
            found = A.verify_request(auth_request, lookup, now, schemes=A.S3_SCHEMES,
                                     services=("s3",))
            self.seen.append((request.method, request.path, found.scheme,
                              found.sigv4.payload_hash if found.sigv4 else None))
            if request.method == b"PUT":
                decoder = A.body_decoder(auth_request, found.sigv4)
                data = b"".join(decoder.feed(body[i:i + 8192])
                                for i in range(0, len(body), 8192))
                decoder.finish()
                self.objects[request.path] = data
                request.setHeader(b"etag", b'"%s"' % hashlib.md5(data).hexdigest().encode())
                return b""
            return self.objects.get(request.path, b"")
        except A.AWSAuthError as e:
            self.refusals.append(e)
            if request.path == b"/":
                request.setResponseCode(e.status)
                root = etree.Element("Response")
                error = etree.SubElement(etree.SubElement(root, "Errors"), "Error")
                etree.SubElement(error, "Code").text = e.code
                etree.SubElement(error, "Message").text = e.message
                etree.SubElement(root, "RequestID").text = "1"
            else:
                request.setResponseCode(e.s3_status)
                root = etree.Element("Error")
                etree.SubElement(root, "Code").text = e.s3_code
                etree.SubElement(root, "Message").text = e.message
            return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class WireTests(TestCase):
    """Unmodified boto3 clients over real HTTP and HTTPS on 127.0.0.1, in a
    thread, against :class:`AuthResource` on trial's reactor."""

    def setUp(self):
        self.resource = AuthResource()
        site = server.Site(self.resource)
        channels = self.channels = set()

        class Channel(http.HTTPChannel):
            def connectionMade(self):
                super().connectionMade()
                channels.add(self)

            def connectionLost(self, reason):
                channels.discard(self)
                super().connectionLost(reason)

        site.protocol = Channel
        self.http = reactor.listenTCP(0, site, interface="127.0.0.1")
        cert_path, pem = self_signed(self.mktemp())
        self.cert_path = cert_path
        options = ssl.PrivateCertificate.loadPEM(pem).options()
        self.https = reactor.listenSSL(0, site, options, interface="127.0.0.1")
        self.addCleanup(self.close)

    async def close(self):
        await self.http.stopListening()
        await self.https.stopListening()
        for channel in list(self.channels):
            channel.transport.abortConnection()
        for _ in range(100):
            if not self.channels:
                break
            await deferLater(0.01)

    def client(self, service, tls=False, secret=ALICE_SECRET, **config):
        port = (self.https if tls else self.http).getHost().port
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        config.setdefault("retries", {"max_attempts": 1})
        if service == "s3":
            config.setdefault("s3", {"addressing_style": "path"})
        return boto3.session.Session().client(
            service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=ALICE,
            aws_secret_access_key=secret, verify=self.cert_path if tls else None,
            config=Config(**config))

    async def test_ec2(self):
        """DescribeRegions with SigV4 and SigV2, over HTTP and HTTPS; a wrong
        secret gets EC2's AuthFailure with HTTP 401."""
        for tls in (False, True):
            for version in ("v4", "v2"):
                c = self.client("ec2", tls, signature_version=version)
                reply = await deferToThread(c.describe_regions)
                self.assertEqual(reply["Regions"], [])
                c.close()
                self.assertEqual(self.resource.seen.pop()[2],
                                 "sigv4" if version == "v4" else "sigv2")
        c = self.client("ec2", secret="0" * 40)
        error = await self.assertFailure(deferToThread(c.describe_regions), ClientError)
        c.close()
        self.assertEqual(error.response["Error"]["Code"], "AuthFailure")
        self.assertEqual(error.response["ResponseMetadata"]["HTTPStatusCode"], 401)

    async def test_s3_uploads(self):
        """PutObject over HTTPS (aws-chunked, CRC32 trailer) and HTTP (signed
        SHA256), a multipart part, a SigV2 PutObject and presigned GETs: the
        bytes stored are the bytes sent."""
        data = os.urandom(2 * 1024 * 1024 + 3)
        seen = self.resource.seen
        for tls in (True, False):
            c = self.client("s3", tls)
            key = f"dir/a b+{tls}.bin"
            reply = await deferToThread(c.put_object, Bucket="b", Key=key, Body=data)
            self.assertEqual(reply["ETag"], f'"{hashlib.md5(data).hexdigest()}"')
            path = f"/b/{key}".replace(" ", "%20").replace("+", "%2B").encode()
            self.assertEqual(self.resource.objects[path], data)
            mode = A.STREAMING_UNSIGNED_TRAILER if tls else sha256_hex(data)
            self.assertEqual(seen.pop(), (b"PUT", path, "sigv4", mode))
            await deferToThread(c.upload_part, Bucket="b", Key="mp", UploadId="u",
                                PartNumber=1, Body=data[:100000])
            self.assertEqual(self.resource.objects[b"/b/mp"], data[:100000])
            self.assertEqual(seen.pop()[3], A.STREAMING_UNSIGNED_TRAILER if tls
                             else sha256_hex(data[:100000]))
            c.close()
        c = self.client("s3", signature_version="s3")
        await deferToThread(c.put_object, Bucket="b", Key="v2", Body=b"old style")
        self.assertEqual(self.resource.objects[b"/b/v2"], b"old style")
        self.assertEqual(seen.pop()[2], "s3-sigv2")
        c.close()
        for version, scheme in (("s3", "s3-sigv2-query"), ("s3v4", "sigv4-query")):
            c = self.client("s3", signature_version=version)
            url = c.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "v2"})
            c.close()
            got = await deferToThread(lambda u=url: urllib.request.urlopen(u).read())
            self.assertEqual(got, b"old style")
            self.assertEqual(seen.pop()[2], scheme)
        self.assertEqual(self.resource.refusals, [])

    async def test_s3_refusals(self):
        """A wrong secret is S3's SignatureDoesNotMatch (403) and stores
        nothing."""
        c = self.client("s3", True, secret="0" * 40)
        error = await self.assertFailure(
            deferToThread(c.put_object, Bucket="b", Key="k", Body=b"x"), ClientError)
        c.close()
        self.assertEqual(error.response["Error"]["Code"], "SignatureDoesNotMatch")
        self.assertEqual(error.response["ResponseMetadata"]["HTTPStatusCode"], 403)
        self.assertEqual(self.resource.objects, {})


def deferLater(seconds):
    from twisted.internet.task import deferLater as later
    return later(reactor, seconds, lambda: None)

