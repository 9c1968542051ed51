"""AWS request authentication for the public cloud front (EC2 Query and S3).

The EC2 Query front and the S3-like image repository call this module to
learn who signed a request; it never looks at what the request asks for.

**Credentials** (OpenNebula 3.4, ``src/cloud/common/CloudAuth/EC2CloudAuth.rb``):
the access key is the OpenNebula user name and the secret key is the stored
``PASSWORD`` field, i.e. the SHA1 hex of the user's password, for users of
the ``core`` and ``public`` auth drivers (:func:`nebula_secret_lookup`,
:func:`ec2_secret`).

**Schemes verified**

* Signature Version 2 (:func:`verify_sigv2`): ``HmacSHA1`` or ``HmacSHA256``
  over ``METHOD\\nhost\\npath\\n<sorted RFC 3986 encoded parameters>``, tried
  with the Host as received, then without its port (boto 2 signs the host
  alone), with a ``Timestamp`` skew window or an ``Expires`` limit.
  Version 1 (the parameters concatenated, sorted case-insensitively) on
  request, as econe 3.4 accepted it; off by default because its string to
  sign is ambiguous (``a=bc`` and ``ab=c`` sign alike; AWS retired it).
* Signature Version 4 (:func:`verify_sigv4`): the ``Authorization:
  AWS4-HMAC-SHA256`` header and the presigned query form (``X-Amz-*``
  parameters), with credential scope, ``X-Amz-Date`` skew and
  ``X-Amz-Expires`` (at most 7 days) checks. The canonical request follows
  AWS's "Create a canonical request for Signature Version 4" and the AWS
  SigV4 test suite: the path is normalised (dot segments removed, repeated
  slashes collapsed) and percent-encoded once more, except for S3, which signs
  the path as sent, encoded once (``service_normalizes_path``). A front of a
  normalising service must act on the normalised path too (``/a/..`` signs
  as ``/``).
* S3's own Signature Version 2 (:func:`verify_s3_sigv2`): ``Authorization:
  AWS key:signature`` (boto3 with ``signature_version='s3'``) and the
  ``AWSAccessKeyId``/``Signature``/``Expires`` presigned URLs boto3 and the
  AWS CLI make by default; path-style requests.
* :func:`verify_request` finds which of these a request carries and verifies
  it, among the schemes a front accepts (:data:`EC2_SCHEMES`,
  :data:`S3_SCHEMES`).
* Payloads (``x-amz-content-sha256``): a SHA256 hex, ``UNSIGNED-PAYLOAD`` and
  the streaming forms ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` (signed chunks),
  ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`` and
  ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (what boto3 sends for S3 uploads over
  HTTPS: ``aws-chunked`` with an ``x-amz-checksum-crc32`` trailer). Bodies are
  decoded by :class:`ChunkedDecoder` (incremental, constant memory) or checked
  by :class:`PayloadVerifier`; :func:`body_decoder` picks the right one.

Every comparison of a signature is constant-time (:func:`hmac.compare_digest`)
and every HMAC comes from the standard library. Why our own verifier: the
well-kept AWS libraries (botocore, awscrt) sign requests but have no server
side verifier, and txaws (which had one) does not run on Python 3; the tests
cross-check this verifier against botocore's own signers, the AWS SigV4 test
suite and the chunked-upload examples of the S3 documentation.

**Errors** are :class:`AWSAuthError` subclasses carrying the EC2 error code
and HTTP status (``code``, ``status``), the S3 ones (``s3_code``,
``s3_status``), a message for the user and, for a signature mismatch, the
``details`` S3 puts in its ``<Error>`` (string to sign, canonical request).

**Requests** are described by :class:`AuthRequest`, independent of the HTTP
server (:meth:`AuthRequest.from_twisted` builds one from a
``twisted.web`` request). Text taken from bytes is decoded as UTF-8 with
``surrogateescape``, so the bytes signed are exactly the bytes received.

In a front (``now`` is the reactor's ``seconds()``)::

    lookup = nebula_secret_lookup(nebula)
    # EC2 Query: the form body is read first, its parameters join the query's.
    req = AuthRequest.from_twisted(request, body=body)
    found = verify_request(req, lookup, now, params=req.query_pairs() + form_pairs,
                           services=("ec2",))
    user = nebula.userpool.find(found.access_key)
    # S3: the body streams through the decoder, to disk.
    req = AuthRequest.from_twisted(request)
    found = verify_request(req, lookup, now, schemes=S3_SCHEMES, services=("s3",))
    decoder = body_decoder(req, found.sigv4)
    for piece in pieces:
        out.write(decoder.feed(piece))
    decoder.finish()  # raises AWSAuthError: delete what was written
"""

import base64
import binascii
import functools
import hashlib
import hmac
import re
import zlib
from collections import namedtuple
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote_from_bytes, unquote_to_bytes

from nebtwist.log import OneLogger

log = OneLogger("AuM")

#: The SigV4 signing algorithm (the only one verified; SigV4a is refused).
ALGORITHM = "AWS4-HMAC-SHA256"
#: ``x-amz-content-sha256`` of a body that is not part of the signature.
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: ``aws-chunked`` body with a signature on every chunk.
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
#: ``aws-chunked`` body with signed chunks and a signed trailer.
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
#: ``aws-chunked`` body, chunks unsigned, an (unsigned) checksum trailer.
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
#: The streaming payload markers, all framed as ``aws-chunked``.
STREAMING_MODES = (STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_TRAILER)
#: SHA256 hex of the empty string.
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: Default clock skew allowed between client and server, in seconds (AWS: 15 min).
DEFAULT_MAX_SKEW = 15 * 60
#: Longest life of a presigned SigV4 URL, in seconds (AWS: 7 days).
MAX_PRESIGNED_EXPIRES = 7 * 24 * 3600

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z\Z")
_NUMBER = re.compile(r"[0-9]{1,18}\Z")


# ---------------------------------------------------------------------------
# Errors


class AWSAuthError(Exception):
    """A request that cannot be authenticated, in both fronts' terms.

    :ivar code: EC2 error code (``<Response><Errors><Error><Code>``).
    :ivar status: HTTP status for the EC2 front.
    :ivar s3_code: S3 error code (``<Error><Code>``).
    :ivar s3_status: HTTP status for the S3 front.
    :ivar message: what went wrong, for the user (never a secret or the
        expected signature).
    :ivar details: extra elements S3 puts in ``<Error>`` (``AWSAccessKeyId``,
        ``StringToSign``, ``SignatureProvided``, ``CanonicalRequest``), or {}.

    Each subclass has the codes of its case; a constructor keyword overrides
    one of them where AWS answers a variant differently.
    """

    code = "AuthFailure"
    status = 401
    s3_code = "AccessDenied"
    s3_status = 403

    def __init__(self, message, *, code=None, status=None, s3_code=None, s3_status=None,
                 details=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if s3_code is not None:
            self.s3_code = s3_code
        if s3_status is not None:
            self.s3_status = s3_status
        self.details = dict(details or {})

    def __str__(self):
        return f"{self.code}: {self.message}"


class AuthFailure(AWSAuthError):
    """Wrong signature, unknown access key, a signed header missing.

    EC2 ``AuthFailure`` (401, as econe 3.4 answered); S3
    ``SignatureDoesNotMatch`` (403), or ``InvalidAccessKeyId`` (403) for an
    unknown key.
    """

    code = "AuthFailure"
    status = 401
    s3_code = "SignatureDoesNotMatch"
    s3_status = 403


class IncompleteSignature(AWSAuthError):
    """The authentication data is malformed or incomplete.

    EC2 ``IncompleteSignature`` (400); S3 ``AuthorizationHeaderMalformed``
    (400), or ``AuthorizationQueryParametersError`` for a presigned URL.
    """

    code = "IncompleteSignature"
    status = 400
    s3_code = "AuthorizationHeaderMalformed"
    s3_status = 400


class RequestExpired(AWSAuthError):
    """The request's time is outside the skew window, or it has expired.

    EC2 ``RequestExpired`` (400); S3 ``RequestTimeTooSkewed`` (403), or
    ``AccessDenied`` (403) for an expired presigned URL.
    """

    code = "RequestExpired"
    status = 400
    s3_code = "RequestTimeTooSkewed"
    s3_status = 403


class InvalidArgument(AWSAuthError):
    """An authentication parameter has a value we do not support.

    EC2 ``InvalidParameterValue`` (400); S3 ``InvalidArgument`` (400).
    """

    code = "InvalidParameterValue"
    status = 400
    s3_code = "InvalidArgument"
    s3_status = 400


class InvalidRequest(AWSAuthError):
    """A body that is not well-formed ``aws-chunked``, or a header it needs.

    EC2 and S3 ``InvalidRequest`` (400).
    """

    code = s3_code = "InvalidRequest"
    status = s3_status = 400


class SignatureDoesNotMatch(AuthFailure):
    """A chunk or trailer signature of a streaming body does not match.

    EC2 ``AuthFailure`` (401); S3 ``SignatureDoesNotMatch`` (403).
    """


class IncompleteBody(AWSAuthError):
    """The body ended early, or holds fewer bytes than it announced.

    EC2 and S3 ``IncompleteBody`` (400).
    """

    code = s3_code = "IncompleteBody"
    status = s3_status = 400


class XAmzContentSHA256Mismatch(AWSAuthError):
    """The body's SHA256 is not the signed ``x-amz-content-sha256``.

    EC2 ``AuthFailure`` (401: the body is not the one signed); S3
    ``XAmzContentSHA256Mismatch`` (400).
    """

    code = "AuthFailure"
    status = 401
    s3_code = "XAmzContentSHA256Mismatch"
    s3_status = 400


class BadDigest(AWSAuthError):
    """A checksum (``x-amz-checksum-*`` header or trailer) does not match.

    EC2 ``InvalidParameterValue`` (400); S3 ``BadDigest`` (400).
    """

    code = "InvalidParameterValue"
    status = 400
    s3_code = "BadDigest"
    s3_status = 400


# ---------------------------------------------------------------------------
# The request model


def _text(value):
    """``str`` of a str or bytes (UTF-8 with surrogateescape: reversible)."""
    if isinstance(value, str):
        return value
    return bytes(value).decode("utf-8", "surrogateescape")


def _raw(value):
    """The bytes of a str made by :func:`_text` (or of bytes)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return bytes(value)


@dataclass(frozen=True)
class AuthRequest:
    """What the verifiers need to know of an HTTP request.

    :ivar method: the HTTP method (``"GET"``, ``"POST"``, ``"PUT"`` ...).
    :ivar path: the request path exactly as received, still percent-encoded,
        without the query (``"/bucket/a%20key"``); str, or bytes.
    :ivar query: the raw query string as received (without ``?``), or a list
        of already decoded ``(name, value)`` pairs.
    :ivar headers: ``(name, value)`` pairs in received order, duplicates kept
        (str or bytes).
    :ivar body: the whole body, when the front has read it (EC2 forms); None
        when it streams (S3 objects).
    :ivar body_sha256: the SHA256 hex of the body, when the front hashed it
        itself instead of passing it.
    :ivar host: the Host as received (``"127.0.0.1:4567"``); used when the
        request has no Host header. Defaults to the Host header.
    """

    method: str
    path: str
    query: object = ""
    headers: tuple = ()
    body: bytes = None
    body_sha256: str = None
    host: str = None
    _header_map: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        headers = tuple((_text(n), _text(v)) for n, v in self.headers)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "method", _text(self.method).upper())
        object.__setattr__(self, "path", _text(self.path))
        if isinstance(self.query, (str, bytes, bytearray)):
            object.__setattr__(self, "query", _text(self.query))
        else:
            object.__setattr__(self, "query",
                               tuple((_text(k), _text(v)) for k, v in self.query))
        hmap = {}
        for name, value in headers:
            hmap.setdefault(name.strip().lower(), []).append(value)
        object.__setattr__(self, "_header_map", hmap)
        if self.host is None:
            hosts = hmap.get("host")
            object.__setattr__(self, "host", hosts[0].strip() if hosts else "")
        else:
            object.__setattr__(self, "host", _text(self.host))

    def header(self, name):
        """The value of header ``name`` (any case), or None.

        :raises InvalidRequest: the header appears more than once.
        """
        values = self._header_map.get(name.lower())
        if not values:
            return None
        if len(values) > 1:
            raise InvalidRequest(f"The header {name} appears more than once.")
        return values[0]

    def header_values(self, name):
        """Every value of header ``name`` (any case), in received order."""
        return list(self._header_map.get(name.lower(), ()))

    def query_pairs(self):
        """The query as decoded ``(name, value)`` str pairs, in order.

        ``+`` is a space and ``%XX`` a byte (form decoding, as the fronts read
        their parameters); a name without ``=`` has the value ``""``.
        """
        if not isinstance(self.query, str):
            return list(self.query)
        return [(_text(k), _text(v)) for k, v in _decoded_query(self.query)]

    @classmethod
    def from_twisted(cls, request, body=None, body_sha256=None):
        """An :class:`AuthRequest` of a ``twisted.web`` request.

        :param request: an ``IRequest`` whose headers have been received.
        :param body: the body bytes, when read (else None).
        :param body_sha256: or the body's SHA256 hex.
        """
        uri = bytes(request.uri)
        lowered = uri[:8].lower()
        if lowered.startswith((b"http://", b"https://")):
            rest = uri.split(b"//", 1)[1]
            slash = rest.find(b"/")
            uri = rest[slash:] if slash >= 0 else b"/"
        path, _, query = uri.partition(b"?")
        headers = [(name, value)
                   for name, values in request.requestHeaders.getAllRawHeaders()
                   for value in values]
        host = request.getHeader(b"host")
        if host is None:
            address = request.getHost()
            host = f"{getattr(address, 'host', '')}:{getattr(address, 'port', '')}"
        return cls(method=request.method, path=path, query=query, headers=headers, body=body,
                   body_sha256=body_sha256, host=host)


# ---------------------------------------------------------------------------
# Encoding helpers


def uri_encode(value, keep_slash=False):
    """AWS ``UriEncode``: every byte but ``A-Za-z0-9-._~`` (and ``/`` if
    ``keep_slash``) as ``%XX`` with upper-case hex; str is taken as UTF-8."""
    return quote_from_bytes(_raw(value), safe="/" if keep_slash else "")


def _split_query(query):
    """Raw ``(name, value)`` pieces of a query string (empty pieces dropped)."""
    pairs = []
    for piece in query.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            pairs.append((name, value))
    return pairs


def _form_decode(text):
    return unquote_to_bytes(_raw(text).replace(b"+", b" "))


def _decoded_query(query):
    """The query's pairs as decoded bytes (``+`` is a space)."""
    return [(_form_decode(k), _form_decode(v)) for k, v in _split_query(query)]


def canonical_query(pairs):
    """The SigV4 canonical query string of decoded ``(name, value)`` pairs:
    each side :func:`uri_encode` d, sorted by name then value, ``&``-joined."""
    encoded = sorted((uri_encode(k), uri_encode(v)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def normalize_path(path):
    """Remove ``.`` and ``..`` segments and collapse repeated slashes
    (RFC 3986 section 5.2.4, as the SigV4 suite's "normalized" cases);
    a trailing slash is kept, an empty path is ``/``."""
    if not path:
        return "/"
    out = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    result = "/" + "/".join(out)
    if path.endswith("/") and result != "/":
        result += "/"
    return result


def canonical_uri(path, normalize=True):
    """The SigV4 canonical URI of a raw request path.

    :param normalize: True for every service but S3: the raw path is
        normalised (:func:`normalize_path`) and percent-encoded again (so
        ``%20`` on the wire signs as ``%2520``); False (S3): the path is
        decoded and encoded once.
    """
    if normalize:
        return uri_encode(normalize_path(path or "/"), keep_slash=True)
    return uri_encode(unquote_to_bytes(_raw(path or "/")), keep_slash=True)


def _trimall(value):
    """Header value with surrounding and repeated whitespace collapsed."""
    return _text(b" ".join(_raw(value).split()))


def hmac_sha256(key, message):
    """HMAC-SHA256 digest (bytes) of ``message`` (str as UTF-8) under ``key``."""
    return hmac.new(key, _raw(message), hashlib.sha256).digest()


@functools.lru_cache(maxsize=512)
def signing_key(secret, date, region, service):
    """The SigV4 signing key of ``secret`` for a credential scope (cached:
    a key serves a user for a day).

    :param date: ``YYYYMMDD``.
    """
    k = hmac_sha256(("AWS4" + secret).encode("utf-8"), date)
    k = hmac_sha256(k, region)
    k = hmac_sha256(k, service)
    return hmac_sha256(k, "aws4_request")


def string_to_sign(timestamp, scope, canonical_request):
    """The SigV4 string to sign of a canonical request (str)."""
    digest = hashlib.sha256(_raw(canonical_request)).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def _epoch(dt):
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _iso(seconds):
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ec2_secret(password):
    """The EC2 secret key of an OpenNebula password: its SHA1 hex (3.4)."""
    return hashlib.sha1(password.encode("utf-8")).hexdigest()


def nebula_secret_lookup(nebula):
    """A ``secret_lookup`` over the users of a :class:`~nebtwist.core.nebula.Nebula`.

    The secret of user ``name`` is its stored ``PASSWORD`` (the SHA1 hex of
    the password) if the user exists, is enabled and uses the ``core`` or
    ``public`` auth driver (3.4 ``EC2CloudAuth``); otherwise None.
    """
    def lookup(name):
        user = nebula.userpool.find(name)
        if user is None or not user.enabled or user.auth_driver not in ("core", "public"):
            return None
        return user.password
    return lookup


def _lookup(secret_lookup, access_key):
    secret = secret_lookup(access_key) if access_key else None
    if secret is None:
        raise AuthFailure(
            "The AWS access key id you provided does not exist in our records.",
            s3_code="InvalidAccessKeyId",
            details={"AWSAccessKeyId": access_key})
    return secret


# ---------------------------------------------------------------------------
# Signature Version 2 (and 1)


def _strip_port(host):
    if host.startswith("["):
        end = host.find("]")
        return host[:end + 1] if end >= 0 else host
    name, sep, port = host.rpartition(":")
    if sep and _NUMBER.match(port):
        return name
    return host


def _one(pairs, name):
    values = [v for k, v in pairs if k == name]
    if len(values) > 1:
        raise IncompleteSignature(f"The parameter {name} appears more than once.")
    return values[0] if values else None


def _b64_signature(text):
    try:
        return base64.b64decode(text.replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        return None


def sigv2_string_to_sign(method, host, path, pairs, exclude=("Signature",)):
    """The SignatureVersion 2 string to sign.

    ``METHOD\\nhost\\npath\\n`` and the parameters but ``exclude``, sorted by
    name (then value), each side RFC 3986 encoded, joined by ``&`` (AWS
    "Signature Version 2 signing process"; 3.4 ``EC2CloudAuth``).

    :param pairs: decoded ``(name, value)`` str pairs.
    """
    kept = sorted((k, v) for k, v in pairs if k not in exclude)
    query = "&".join(f"{uri_encode(k)}={uri_encode(v)}" for k, v in kept)
    return f"{method.upper()}\n{host}\n{path or '/'}\n{query}"


def sigv1_string_to_sign(pairs, exclude=("Signature",)):
    """The SignatureVersion 1 string to sign: names and values concatenated,
    sorted by name case-insensitively, nothing encoded; ``econe_*``
    parameters (3.4's server-side additions) left out."""
    kept = sorted(((k, v) for k, v in pairs if k not in exclude and not k.startswith("econe_")),
                  key=lambda kv: (kv[0].lower(), kv[0]))
    return "".join(k + v for k, v in kept)


def verify_sigv2(request, params, secret_lookup, now, *, max_skew=DEFAULT_MAX_SKEW,
                 allow_v1=False, hosts=(), exclude=("Signature", "file")):
    """Verify an EC2 Query request signed with SignatureVersion 2 (or 1).

    :param request: the :class:`AuthRequest` (method, raw path, Host).
    :param params: every decoded ``(name, value)`` parameter of the request
        (query and form body), or None for the request's query alone.
    :param secret_lookup: ``access_key -> secret`` (str) or None if unknown.
    :param now: the current time, in seconds since the epoch (the reactor's
        ``seconds()``).
    :param max_skew: how far, in seconds, ``Timestamp`` may be from ``now``.
    :param allow_v1: also accept SignatureVersion 1.
    :param hosts: more host names to try (e.g. the configured server name).
    :param exclude: parameters left out of the signature (``Signature``, and
        econe-upload's ``file`` field, as 3.4 did).

    A missing ``SignatureMethod`` means HmacSHA1 (3.4 ``EC2CloudAuth``).

    :return: the access key (the OpenNebula user name).
    :raises IncompleteSignature: a required parameter is missing or repeated.
    :raises InvalidArgument: unsupported SignatureVersion or SignatureMethod.
    :raises RequestExpired: ``Timestamp`` outside the window, or ``Expires``
        passed.
    :raises AuthFailure: unknown access key, or no candidate host gives the
        signature.
    """
    pairs = request.query_pairs() if params is None else [(_text(k), _text(v))
                                                           for k, v in params]
    access_key = _one(pairs, "AWSAccessKeyId")
    signature = _one(pairs, "Signature")
    if not access_key or not signature:
        missing = "AWSAccessKeyId" if not access_key else "Signature"
        raise IncompleteSignature(f"The request must contain the parameter {missing}.")
    version = _one(pairs, "SignatureVersion")
    if version is None:
        raise IncompleteSignature("The request must contain the parameter SignatureVersion.")
    if version not in ("2", "1") or (version == "1" and not allow_v1):
        raise InvalidArgument(f"SignatureVersion {version!r} is not supported "
                              "(use 2, or SigV4).")
    method_name = _one(pairs, "SignatureMethod") or "HmacSHA1"
    digest = {"HmacSHA256": hashlib.sha256, "HmacSHA1": hashlib.sha1}.get(method_name)
    if version == "1":
        digest = hashlib.sha1
    elif digest is None:
        raise InvalidArgument(f"SignatureMethod {method_name!r} is not supported "
                              "(HmacSHA1 or HmacSHA256).")
    _check_v2_time(_one(pairs, "Timestamp"), _one(pairs, "Expires"), now, max_skew)
    secret = _lookup(secret_lookup, access_key)
    provided = _b64_signature(signature)
    if version == "1":
        candidates = [sigv1_string_to_sign(pairs, exclude)]
    else:
        names = []
        for host in (request.host, *hosts):
            for h in (host, host.lower(), _strip_port(host), _strip_port(host).lower()):
                if h and h not in names:
                    names.append(h)
        candidates = [sigv2_string_to_sign(request.method, h, request.path, pairs, exclude)
                      for h in names or [""]]
    for sts in candidates:
        expected = hmac.new(secret.encode("utf-8"), _raw(sts), digest).digest()
        if provided is not None and hmac.compare_digest(expected, provided):
            return access_key
    raise AuthFailure(
        "The request signature we calculated does not match the signature you "
        "provided. Check your key and signing method.",
        details={"AWSAccessKeyId": access_key, "StringToSign": candidates[0],
                 "SignatureProvided": signature})


def _parse_iso8601(text, name):
    try:
        return _epoch(datetime.fromisoformat(text.strip()))
    except (ValueError, AttributeError, OverflowError):
        raise InvalidArgument(f"Invalid {name} {text!r}: an ISO 8601 time is expected "
                              "(2012-05-01T10:00:00Z).") from None


def _check_v2_time(timestamp, expires, now, max_skew):
    if timestamp is not None and expires is not None:
        raise IncompleteSignature("Timestamp and Expires cannot both be given.")
    if timestamp is None and expires is None:
        raise IncompleteSignature("The request must contain Timestamp or Expires.")
    if timestamp is not None:
        when = _parse_iso8601(timestamp, "Timestamp")
        if abs(now - when) > max_skew:
            raise RequestExpired(
                f"Request has expired: its Timestamp {timestamp} is more than "
                f"{max_skew} seconds from the server's time {_iso(now)}.")
    else:
        when = _parse_iso8601(expires, "Expires")
        if now > when:
            raise RequestExpired(f"Request has expired: Expires {expires} is before the "
                                 f"server's time {_iso(now)}.")


# ---------------------------------------------------------------------------
# S3's Signature Version 2 ("AWS key:signature", and its presigned URLs)


#: The sub-resources S3's SigV2 signs in the canonical resource (AWS
#: "Signing and authenticating REST requests"; botocore ``HmacV1Auth``).
S3_SUBRESOURCES = frozenset([
    "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "inventory",
    "lifecycle", "location", "logging", "metrics", "notification", "object-lock",
    "partNumber", "policy", "replication", "requestPayment", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "response-content-language",
    "response-content-type", "response-expires", "restore", "select", "select-type",
    "storageClass", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning",
    "versions", "website"])


def _s3v2_resources(request):
    """Candidate canonical resources: the path as sent (then decoded and
    encoded once; a bucket's with its trailing slash) and the signed
    sub-resources, sorted, values decoded."""
    subs = []
    if isinstance(request.query, str):
        for piece in request.query.split("&"):
            name, eq, value = piece.partition("=")
            name = _text(unquote_to_bytes(_raw(name)))
            if name in S3_SUBRESOURCES:
                subs.append((name, _text(unquote_to_bytes(_raw(value))) if eq else None))
    else:
        subs = [(k, v) for k, v in request.query if k in S3_SUBRESOURCES]
    subs.sort(key=lambda kv: kv[0])
    suffix = "&".join(k if v is None else f"{k}={v}" for k, v in subs)
    paths = [request.path or "/"]
    encoded = uri_encode(unquote_to_bytes(_raw(request.path or "/")), keep_slash=True)
    if encoded not in paths:
        paths.append(encoded)
    if paths[0].count("/") == 1 and len(paths[0]) > 1:
        # A bucket's own resource is "/bucket/" (what botocore signs for "/bucket").
        paths.append(paths[0] + "/")
    return [p + ("?" + suffix if suffix else "") for p in paths]


def s3v2_string_to_sign(method, content_md5, content_type, date, amz_headers, resource):
    """S3's SigV2 string to sign: ``METHOD\nContent-MD5\nContent-Type\n
    Date\n`` then each ``x-amz-*`` header ``name:value\n`` (lower-case
    names, sorted, repeated values joined by ``,``) and the resource.

    :param amz_headers: ``{lower-case name: [values]}``.
    """
    lines = "".join(f"{name}:{','.join(v.strip() for v in amz_headers[name])}\n"
                    for name in sorted(amz_headers))
    return f"{method.upper()}\n{content_md5}\n{content_type}\n{date}\n{lines}{resource}"


def verify_s3_sigv2(request, secret_lookup, now, *, max_skew=DEFAULT_MAX_SKEW):
    """Verify S3's own SigV2: ``Authorization: AWS <key>:<signature>`` or a
    presigned URL (``AWSAccessKeyId``, ``Signature``, ``Expires``), HMAC-SHA1
    as AWS's "Signing and authenticating REST requests" and botocore's
    ``HmacV1Auth``/``HmacV1QueryAuth`` (what boto3 presigns by default).
    Path-style requests only (the bucket is in the path).

    :param request: the :class:`AuthRequest`.
    :param secret_lookup: ``access_key -> secret`` or None.
    :param now: seconds since the epoch.
    :param max_skew: seconds ``Date``/``x-amz-date`` may be from ``now``.
    :return: the access key.
    :raises IncompleteSignature: a malformed header or missing parameter.
    :raises RequestExpired: ``Date`` outside the window, ``Expires`` passed.
    :raises AuthFailure: unknown key or signature mismatch.
    """
    header = request.header("authorization")
    pairs = request.query_pairs()
    query = {k: v for k, v in pairs}
    headers = {}
    for name, values in request._header_map.items():
        headers[name] = list(values)
    if header is not None:
        scheme, _, rest = header.strip().partition(" ")
        access_key, sep, signature = rest.strip().rpartition(":")
        if scheme != "AWS" or not sep or not access_key or not signature:
            raise IncompleteSignature("Malformed Authorization header: 'AWS <access key>:"
                                      "<signature>' is expected.")
        date_header = request.header("date")
        amz_date = request.header("x-amz-date")
        text = amz_date if amz_date is not None else date_header
        if text is None:
            raise AuthFailure("AWS authentication requires a valid Date or x-amz-date header.",
                              s3_code="AccessDenied")
        when = _parse_http_date(text)
        if abs(now - when) > max_skew:
            raise RequestExpired(f"The difference between the request time {text} and the "
                                 f"server's time {_iso(now)} is larger than {max_skew} "
                                 "seconds.")
        dates = [date_header or ""] if amz_date is None else ["", date_header or ""]
    else:
        access_key = query.get("AWSAccessKeyId")
        signature = query.get("Signature")
        expires = query.get("Expires")
        if not access_key or not signature or not expires:
            raise IncompleteSignature(
                "Query-string authentication requires the Signature, Expires and "
                "AWSAccessKeyId parameters.", s3_code="AccessDenied", s3_status=403)
        if not _NUMBER.match(expires):
            raise IncompleteSignature(f"Invalid Expires {expires!r}: seconds since the epoch "
                                      "are expected.", s3_code="AccessDenied", s3_status=403)
        if now > int(expires):
            raise RequestExpired(f"Request has expired: Expires {expires} is before the "
                                 f"server's time {_iso(now)}.", s3_code="AccessDenied")
        for name, value in pairs:
            lname = name.lower()
            if lname.startswith("x-amz-") or lname in ("content-type", "content-md5"):
                headers[lname] = [value]
        dates = [expires]
    secret = _lookup(secret_lookup, access_key)
    amz = {name: values for name, values in headers.items() if name.startswith("x-amz-")}
    md5 = headers.get("content-md5", [""])[0].strip()
    ctype = headers.get("content-type", [""])[0].strip()
    provided = _b64_signature(signature)
    candidates = [s3v2_string_to_sign(request.method, md5, ctype, date, amz, resource)
                  for date in dict.fromkeys(dates) for resource in _s3v2_resources(request)]
    for sts in candidates:
        expected = hmac.new(secret.encode("utf-8"), _raw(sts), hashlib.sha1).digest()
        if provided is not None and hmac.compare_digest(expected, provided):
            return access_key
    raise AuthFailure(
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        details={"AWSAccessKeyId": access_key, "StringToSign": candidates[0],
                 "SignatureProvided": signature})


def _parse_http_date(text):
    """Seconds since the epoch of an RFC 1123 date or ``YYYYMMDDTHHMMSSZ``.

    :raises AuthFailure: neither (S3 ``AccessDenied``).
    """
    text = text.strip()
    if _AMZ_DATE.match(text):
        return _parse_amz_date(text, IncompleteSignature)
    try:
        return _epoch(parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError, OverflowError):
        raise AuthFailure(f"Invalid date {text!r}: AWS authentication requires a valid Date "
                          "or x-amz-date header.", s3_code="AccessDenied") from None


# ---------------------------------------------------------------------------
# Signature Version 4


@dataclass(frozen=True)
class SigV4Result:
    """A request whose SigV4 signature was verified.

    :ivar access_key: the access key (OpenNebula user name).
    :ivar region: the credential scope's region.
    :ivar service: the credential scope's service (``ec2``, ``s3``).
    :ivar timestamp: the signed time, ``YYYYMMDDTHHMMSSZ``.
    :ivar scope: ``date/region/service/aws4_request``.
    :ivar signing_key: the derived key (bytes), for chunk signatures.
    :ivar signature: the request's signature (hex): the seed of a chunk chain.
    :ivar payload_hash: what stood for the body in the canonical request (a
        SHA256 hex, ``UNSIGNED-PAYLOAD`` or a ``STREAMING-*`` marker).
    :ivar body_verified: True when the body itself was checked against
        ``payload_hash`` (the request carried it).
    :ivar presigned: True for the query (presigned URL) form.
    :ivar signed_headers: the names the signature covers.
    :ivar session_token: ``X-Amz-Security-Token`` if sent (nebtwist issues
        none; a front may refuse it), else None.
    :ivar session_token_signed: whether the signature covers that token (a
        token left out of SignedHeaders, or added to a presigned URL after
        signing, is anyone's to change).
    :ivar canonical_request: the canonical request that matched.
    :ivar string_to_sign: its string to sign.
    """

    access_key: str
    region: str
    service: str
    timestamp: str
    scope: str
    signing_key: bytes
    signature: str
    payload_hash: str
    body_verified: bool
    presigned: bool
    signed_headers: tuple
    session_token: str
    session_token_signed: bool
    canonical_request: str
    string_to_sign: str


_V4Auth = namedtuple("_V4Auth", "presigned access_key date region service terminator "
                                "timestamp signed_headers signature expires token")


def _v4_fields(text):
    """``{Credential, SignedHeaders, Signature}`` of an Authorization header's
    parameters (``, `` or ``,`` separated; commas in the access key allowed)."""
    fields = {}
    for part in re.split(r",\s*(?=(?:Credential|SignedHeaders|Signature)=)", text.strip()):
        name, sep, value = part.strip().partition("=")
        if not sep or name in fields:
            raise IncompleteSignature(f"Malformed Authorization header part {part!r}.")
        fields[name] = value.strip().rstrip(",").strip()
    return fields


def _parse_credential(credential, malformed):
    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or not all(parts):
        raise malformed(f"Malformed credential {credential!r}: expected "
                        "<access key>/<YYYYMMDD>/<region>/<service>/aws4_request.")
    return parts


def _parse_amz_date(text, malformed):
    if not text or not _AMZ_DATE.match(text):
        raise malformed(f"Invalid X-Amz-Date {text!r}: YYYYMMDDTHHMMSSZ is expected.")
    try:
        dt = datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]),
                      int(text[11:13]), int(text[13:15]), tzinfo=UTC)
    except ValueError:
        raise malformed(f"Invalid X-Amz-Date {text!r}.") from None
    return dt.timestamp()


def _parse_v4(request):
    """The SigV4 authentication data of a request, header or query form.

    :raises IncompleteSignature: malformed or incomplete.
    :raises InvalidArgument: both forms, or an algorithm but AWS4-HMAC-SHA256.
    :raises AuthFailure: neither form.
    """
    header = request.header("authorization")
    pairs = request.query_pairs()
    presigned = any(k in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")
                    for k, _ in pairs)
    if header is not None and presigned:
        raise InvalidArgument("Only one auth mechanism allowed; only the X-Amz-Algorithm "
                              "query parameter or the Authorization header may be given.")
    if presigned:
        def malformed(message):
            return IncompleteSignature(message, s3_code="AuthorizationQueryParametersError")
        query = {}
        for k, v in pairs:
            if k.startswith("X-Amz-"):
                if k in query:
                    raise malformed(f"The query parameter {k} appears more than once.")
                query[k] = v
        algorithm = query.get("X-Amz-Algorithm")
        if algorithm and algorithm != ALGORITHM:
            raise InvalidArgument(f"X-Amz-Algorithm {algorithm!r} is not supported "
                                  f"(only {ALGORITHM}).")
        missing = [k for k in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                               "X-Amz-SignedHeaders", "X-Amz-Signature") if not query.get(k)]
        if missing:
            raise malformed("Query-string authentication requires the X-Amz-Algorithm, "
                            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, "
                            "X-Amz-SignedHeaders and X-Amz-Expires parameters; missing "
                            + ", ".join(missing) + ".")
        expires = query["X-Amz-Expires"]
        if not _NUMBER.match(expires):
            raise malformed(f"X-Amz-Expires must be a number of seconds, not {expires!r}.")
        credential = query["X-Amz-Credential"]
        timestamp = query["X-Amz-Date"]
        signed = query["X-Amz-SignedHeaders"]
        signature = query["X-Amz-Signature"]
        token = query.get("X-Amz-Security-Token")
        expires = int(expires)
    else:
        def malformed(message):
            return IncompleteSignature(message)
        if header is None:
            raise AuthFailure("The request carries no signature (no Authorization header "
                              "and no X-Amz-Signature).", code="AuthFailure",
                              s3_code="AccessDenied")
        algorithm, _, rest = header.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise InvalidArgument(f"Authorization algorithm {algorithm!r} is not supported "
                                  f"(only {ALGORITHM}).")
        fields = _v4_fields(rest)
        missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
        if missing:
            raise malformed("The Authorization header must hold Credential, SignedHeaders "
                            "and Signature; missing " + ", ".join(missing) + ".")
        credential = fields["Credential"]
        signed = fields["SignedHeaders"]
        signature = fields["Signature"]
        timestamp = request.header("x-amz-date")
        if timestamp is None:
            date = request.header("date")
            if date is None:
                raise malformed("The request must carry an X-Amz-Date or Date header.")
            try:
                timestamp = parsedate_to_datetime(date).astimezone(UTC).strftime(
                    "%Y%m%dT%H%M%SZ")
            except (TypeError, ValueError, IndexError, OverflowError):
                raise malformed(f"Invalid Date header {date!r}.") from None
        token = request.header("x-amz-security-token")
        expires = None
    access_key, date, region, service, terminator = _parse_credential(credential, malformed)
    if terminator != "aws4_request":
        raise malformed(f"The credential must end with aws4_request, not {terminator!r}.")
    names = tuple(signed.split(";"))
    if not all(names) or any(n != n.strip().lower() for n in names):
        raise malformed(f"Malformed SignedHeaders {signed!r}: lower-case names separated "
                        "by ';' are expected.")
    if "host" not in names:
        raise malformed("The host header must be signed.")
    if not presigned and request.header("x-amz-date") is not None and "x-amz-date" not in names:
        raise malformed("The x-amz-date header must be signed.")
    return _V4Auth(presigned, access_key, date, region, service, terminator, timestamp,
                   names, signature.strip().lower(), expires, token)


def _payload_hashes(request, auth):
    """What may stand for the body in the canonical request, most likely
    first: ``x-amz-content-sha256`` if sent; ``UNSIGNED-PAYLOAD`` for a
    presigned S3 URL; the body's SHA256; for another presigned URL whose
    body the front did not read, the empty body's (botocore moves a POST's
    form into the query) or ``UNSIGNED-PAYLOAD``."""
    claimed = request.header("x-amz-content-sha256")
    if claimed is not None:
        claimed = claimed.strip()
        if claimed not in (UNSIGNED_PAYLOAD,) + STREAMING_MODES and not _HEX64.match(claimed):
            raise InvalidArgument(
                f"x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-* value or a "
                f"SHA256 hex, not {claimed!r}.")
        return [claimed]
    if auth.presigned and auth.service == "s3":
        return [UNSIGNED_PAYLOAD]
    if request.body is not None:
        return [hashlib.sha256(request.body).hexdigest()]
    if request.body_sha256 is not None:
        return [request.body_sha256.lower()]
    if auth.presigned:
        return [EMPTY_SHA256, UNSIGNED_PAYLOAD]
    raise InvalidRequest("Missing required header for this request: x-amz-content-sha256.")


def canonical_headers(request, names):
    """The canonical headers block (each ``name:value\\n``) of the signed
    header ``names``: values trimmed, whitespace runs collapsed, repeated
    headers joined by ``,`` in received order.

    :raises AuthFailure: a signed header is absent (``host`` falls back to
        the request's host).
    """
    lines = []
    for name in names:
        values = request.header_values(name)
        if not values:
            if name == "host" and request.host:
                values = [request.host]
            else:
                raise AuthFailure(f"The signed header {name!r} is not in the request.")
        lines.append(f"{name}:{','.join(_trimall(v) for v in values)}\n")
    return "".join(lines)


def canonical_request(request, signed_headers, payload_hash, normalize=True,
                      exclude_query=("X-Amz-Signature",)):
    """The SigV4 canonical request (str) of ``request``.

    ``METHOD\\nURI\\nQUERY\\nHEADERS\\nSIGNED\\nPAYLOAD`` with
    :func:`canonical_uri`, :func:`canonical_query` (the decoded query, without
    ``exclude_query``) and :func:`canonical_headers`.
    """
    return _canonical_requests(request, tuple(signed_headers), payload_hash, normalize,
                               exclude_query, raw_forms=False)[0]


def _canonical_requests(request, names, payload_hash, normalize, exclude, raw_forms=True):
    """The canonical request, then (``raw_forms``) variants of it that other
    clients sign: the S3 path as sent, the query as sent (not re-encoded)."""
    uris = [canonical_uri(request.path, normalize)]
    if raw_forms and not normalize and (request.path or "/") not in uris:
        uris.append(request.path or "/")
    if isinstance(request.query, str):
        queries = [canonical_query((k, v) for k, v in _decoded_query(request.query)
                                   if _text(k) not in exclude)]
        if raw_forms:
            raw = "&".join(f"{k}={v}" for k, v in sorted(_split_query(request.query))
                           if _text(_form_decode(k)) not in exclude)
            if raw not in queries:
                queries.append(raw)
    else:
        queries = [canonical_query((k, v) for k, v in request.query if k not in exclude)]
    headers = canonical_headers(request, names)
    signed = ";".join(names)
    return [f"{request.method}\n{uri}\n{query}\n{headers}\n{signed}\n{payload_hash}"
            for uri in uris for query in queries]


def verify_sigv4(request, secret_lookup, now, *, regions=None, services=None,
                 service_normalizes_path=None, max_skew=DEFAULT_MAX_SKEW,
                 max_expires=MAX_PRESIGNED_EXPIRES, allow_unsigned_session_token=True):
    """Verify a request signed with AWS Signature Version 4.

    Header form (``Authorization: AWS4-HMAC-SHA256 Credential=...,
    SignedHeaders=..., Signature=...`` with ``X-Amz-Date`` or ``Date``) or
    presigned query form (``X-Amz-Algorithm``, ``X-Amz-Credential``,
    ``X-Amz-Date``, ``X-Amz-Expires``, ``X-Amz-SignedHeaders``,
    ``X-Amz-Signature``), as AWS's "Signature Version 4 signing process" and
    "Authenticating Requests: Using Query Parameters" describe.

    The body: ``x-amz-content-sha256`` when sent (a SHA256 hex is checked
    against ``request.body`` when the request carries it; otherwise the front
    checks it with :func:`body_decoder`); else the SHA256 of ``request.body``
    (or ``request.body_sha256``); a presigned S3 URL signs
    ``UNSIGNED-PAYLOAD``.

    :param request: the :class:`AuthRequest`.
    :param secret_lookup: ``access_key -> secret`` (str) or None if unknown.
    :param now: the current time, in seconds since the epoch.
    :param regions: the regions a credential scope may name (None: any).
    :param services: the services a credential scope may name, e.g.
        ``("ec2",)`` or ``("s3",)`` (None: any).
    :param service_normalizes_path: whether the path is normalised and
        encoded twice (every service but S3); None decides from the scope's
        service.
    :param max_skew: seconds the signed time may be from ``now`` (header
        form), or ahead of it (presigned).
    :param max_expires: the longest ``X-Amz-Expires`` accepted, in seconds.
    :param allow_unsigned_session_token: accept a presigned URL whose
        ``X-Amz-Security-Token`` was added after signing (the SigV4 suite's
        ``post-sts-header-after``).
    :return: a :class:`SigV4Result`.
    :raises IncompleteSignature: malformed or incomplete authentication data,
        or a credential scope not of the signed date.
    :raises InvalidArgument: unsupported algorithm or payload marker, both
        auth forms at once.
    :raises RequestExpired: outside the skew window, or an expired URL.
    :raises AuthFailure: no signature at all, unknown access key, a region
        or service not accepted, a signed header missing, or the signature
        does not match.
    :raises InvalidRequest: no ``x-amz-content-sha256`` and no body to hash.
    :raises XAmzContentSHA256Mismatch: the body carried is not the one
        signed.
    """
    auth = _parse_v4(request)
    malformed_code = "AuthorizationQueryParametersError" if auth.presigned else None
    when = _parse_amz_date(auth.timestamp, lambda m: IncompleteSignature(
        m, s3_code=malformed_code))
    if auth.date != auth.timestamp[:8]:
        raise IncompleteSignature(
            f"The credential scope date {auth.date} is not the date of X-Amz-Date "
            f"{auth.timestamp}.", s3_code=malformed_code)
    if regions is not None and auth.region not in regions:
        raise AuthFailure(f"Credential should be scoped to a valid region, not "
                          f"{auth.region!r}.", s3_code="AuthorizationHeaderMalformed",
                          s3_status=400)
    if services is not None and auth.service not in services:
        raise AuthFailure(f"Credential should be scoped to the correct service, not "
                          f"{auth.service!r}.", s3_code="AuthorizationHeaderMalformed",
                          s3_status=400)
    if auth.presigned:
        if not 1 <= auth.expires <= max_expires:
            raise IncompleteSignature(
                f"X-Amz-Expires must be between 1 and {max_expires} seconds.",
                s3_code="AuthorizationQueryParametersError")
        if when - max_skew > now:
            raise RequestExpired(f"Request is not valid yet: X-Amz-Date {auth.timestamp} is "
                                 f"after the server's time {_iso(now)}.",
                                 s3_code="AccessDenied")
        if now > when + auth.expires:
            raise RequestExpired(f"Request has expired: it was valid for {auth.expires} "
                                 f"seconds from {auth.timestamp}; the server's time is "
                                 f"{_iso(now)}.", s3_code="AccessDenied")
    elif abs(now - when) > max_skew:
        raise RequestExpired(f"The difference between the request time {auth.timestamp} and "
                             f"the server's time {_iso(now)} is larger than {max_skew} "
                             "seconds.")
    secret = _lookup(secret_lookup, auth.access_key)
    payload_hashes = _payload_hashes(request, auth)
    normalize = (auth.service != "s3") if service_normalizes_path is None \
        else service_normalizes_path
    scope = f"{auth.date}/{auth.region}/{auth.service}/{auth.terminator}"
    key = signing_key(secret, auth.date, auth.region, auth.service)
    excludes = [("X-Amz-Signature",)]
    if auth.presigned and auth.token is not None and allow_unsigned_session_token:
        excludes.append(("X-Amz-Signature", "X-Amz-Security-Token"))
    first = None
    for payload_hash, exclude in ((p, e) for p in payload_hashes for e in excludes):
        for creq in _canonical_requests(request, auth.signed_headers, payload_hash, normalize,
                                        exclude):
            sts = string_to_sign(auth.timestamp, scope, creq)
            first = first or (creq, sts)
            expected = hmac.new(key, _raw(sts), hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected.encode("ascii"), _raw(auth.signature)):
                verified = _check_carried_body(request, payload_hash)
                token_signed = auth.token is not None and (
                    "X-Amz-Security-Token" not in exclude if auth.presigned
                    else "x-amz-security-token" in auth.signed_headers)
                return SigV4Result(auth.access_key, auth.region, auth.service, auth.timestamp,
                                   scope, key, auth.signature, payload_hash, verified,
                                   auth.presigned, auth.signed_headers, auth.token,
                                   token_signed, creq, sts)
    raise AuthFailure(
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        details={"AWSAccessKeyId": auth.access_key, "StringToSign": first[1],
                 "SignatureProvided": auth.signature, "CanonicalRequest": first[0]})


def _check_carried_body(request, payload_hash):
    if not _HEX64.match(payload_hash):
        return False
    if request.body is not None:
        actual = hashlib.sha256(request.body).hexdigest()
    elif request.body_sha256 is not None:
        actual = request.body_sha256.lower()
    else:
        return False
    if not hmac.compare_digest(actual.encode("ascii"), _raw(payload_hash)):
        raise XAmzContentSHA256Mismatch(
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            details={"ClientComputedContentSHA256": payload_hash,
                     "S3ComputedContentSHA256": actual})
    return True


# ---------------------------------------------------------------------------
# Dispatch


#: What :func:`verify_request` found: ``access_key`` (the user name),
#: ``scheme`` (see :func:`detect_scheme`) and ``sigv4`` (the
#: :class:`SigV4Result`, or None for the other schemes).
Authenticated = namedtuple("Authenticated", "access_key scheme sigv4")

#: The schemes the EC2 Query front accepts.
EC2_SCHEMES = ("sigv4", "sigv4-query", "sigv2")
#: The schemes the S3 front accepts.
S3_SCHEMES = ("sigv4", "sigv4-query", "s3-sigv2", "s3-sigv2-query")


def detect_scheme(request, params=None):
    """Which signature a request carries, without checking it.

    :param params: decoded parameters (query and form), for EC2's SigV2;
        default the query's.
    :return: ``"sigv4"`` (Authorization header), ``"sigv4-query"``
        (presigned), ``"sigv2"`` (EC2 Query ``SignatureVersion`` 2 or 1),
        ``"s3-sigv2"`` (``Authorization: AWS key:signature``),
        ``"s3-sigv2-query"`` (S3 presigned ``AWSAccessKeyId``/``Signature``/
        ``Expires``), or None (anonymous).
    """
    auth = request.header_values("authorization")
    if auth:
        value = auth[0].strip()
        if value.startswith("AWS4-"):
            return "sigv4"
        if value.startswith("AWS "):
            return "s3-sigv2"
    query = {k for k, _ in request.query_pairs()}
    names = query if params is None else {k for k, _ in params}
    if {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"} & query:
        return "sigv4-query"
    if "SignatureVersion" in names:
        return "sigv2"
    if "Signature" in names:
        if "Expires" in query and "AWSAccessKeyId" in query and "Timestamp" not in names:
            return "s3-sigv2-query"
        return "sigv2"
    return None


def verify_request(request, secret_lookup, now, *, params=None, schemes=EC2_SCHEMES,
                   allow_v1=False, max_skew=DEFAULT_MAX_SKEW, hosts=(), **sigv4_options):
    """Verify whichever signature a request carries (:func:`detect_scheme`).

    :param params: decoded parameters (query and form body), for SigV2.
    :param schemes: the schemes accepted (:data:`EC2_SCHEMES`,
        :data:`S3_SCHEMES`).
    :param allow_v1: accept EC2 SignatureVersion 1.
    :param sigv4_options: passed to :func:`verify_sigv4` (``services``,
        ``regions`` ...).
    :return: :data:`Authenticated`.
    :raises AWSAuthError: as the scheme's verifier; :class:`AuthFailure`
        (S3 ``AccessDenied``) for a request with no signature, and
        :class:`InvalidArgument` for a scheme not accepted here.
    """
    scheme = detect_scheme(request, params)
    if scheme is None:
        raise AuthFailure("The request carries no signature (SigV4 or SigV2).",
                          s3_code="AccessDenied")
    if scheme not in schemes:
        raise InvalidArgument(f"This endpoint does not accept {scheme} signatures; "
                              "sign with SigV4.")
    if scheme in ("sigv4", "sigv4-query"):
        result = verify_sigv4(request, secret_lookup, now, max_skew=max_skew, **sigv4_options)
        return Authenticated(result.access_key, scheme, result)
    if scheme == "sigv2":
        access_key = verify_sigv2(request, params, secret_lookup, now, max_skew=max_skew,
                                  allow_v1=allow_v1, hosts=hosts)
        pairs = request.query_pairs() if params is None else params
        if any(k == "SignatureVersion" and v == "1" for k, v in pairs):
            scheme = "sigv1"
        return Authenticated(access_key, scheme, None)
    return Authenticated(verify_s3_sigv2(request, secret_lookup, now, max_skew=max_skew),
                         scheme, None)


# ---------------------------------------------------------------------------
# Checksums (x-amz-checksum-*)


def _crt_checksum(name):
    try:
        from awscrt import checksums
    except ImportError:
        return None
    return getattr(checksums, name, None)


class _CRC:
    """An incremental CRC (``fn(data, crc) -> crc``) with a big-endian digest."""

    def __init__(self, fn, size):
        self.fn, self.size, self.value = fn, size, 0

    def update(self, data):
        self.value = self.fn(data, self.value)

    def digest(self):
        return (self.value & ((1 << (8 * self.size)) - 1)).to_bytes(self.size, "big")


def _crc32c_function():
    """A well-kept CRC32C implementation if one is installed, else None."""
    fn = _crt_checksum("crc32c")  # awscrt: what botocore itself uses
    if fn is not None:
        return fn
    try:
        import google_crc32c
        return lambda data, crc: google_crc32c.extend(crc, bytes(data))
    except ImportError:
        pass
    try:
        import crc32c
        return lambda data, crc: crc32c.crc32c(bytes(data), crc)
    except ImportError:
        return None


def new_checksum(algorithm):
    """An incremental hasher (``update(bytes)``, ``digest() -> bytes``) for an
    ``x-amz-checksum-<algorithm>`` (``crc32``, ``crc32c``, ``crc64nvme``,
    ``sha1``, ``sha256``, ``sha512``), or None when no implementation is
    installed (``crc32c``/``crc64nvme`` need awscrt or a crc32c package).

    :raises KeyError: an algorithm S3 does not define.
    """
    algorithm = algorithm.lower()
    if algorithm == "crc32":
        return _CRC(zlib.crc32, 4)
    if algorithm in ("sha1", "sha256", "sha512"):
        return hashlib.new(algorithm)
    if algorithm == "crc32c":
        fn = _crc32c_function()
        return _CRC(fn, 4) if fn else None
    if algorithm == "crc64nvme":
        fn = _crt_checksum("crc64nvme")
        return _CRC(fn, 8) if fn else None
    if algorithm in ("xxhash64", "xxhash3", "xxhash128"):
        return None
    raise KeyError(algorithm)


#: The checksum algorithms S3 defines (``x-amz-checksum-<algorithm>``).
CHECKSUM_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256", "sha512",
                       "xxhash64", "xxhash3", "xxhash128")


def _checksum_name(name):
    """The algorithm of an ``x-amz-checksum-<algorithm>`` name, or None."""
    name = name.lower()
    if name.startswith("x-amz-checksum-"):
        return name[len("x-amz-checksum-"):]
    return None


class _ChecksumSet:
    """The checksums a body must match (``x-amz-checksum-*`` names, and
    ``content-md5``), computed as it streams."""

    def __init__(self, names):
        self.hashers = {}
        self.unavailable = []
        for name in names:
            if name == "content-md5":
                self.hashers[name] = hashlib.md5(usedforsecurity=False)
                continue
            algorithm = _checksum_name(name)
            if algorithm is None:
                raise InvalidRequest(f"The trailer {name!r} is not supported "
                                     "(x-amz-checksum-<algorithm> only).")
            try:
                hasher = new_checksum(algorithm)
            except KeyError:
                raise InvalidRequest(f"The checksum algorithm of {name!r} is not "
                                     "supported.") from None
            if hasher is None:
                self.unavailable.append(name)
            else:
                self.hashers[name] = hasher

    def update(self, data):
        for hasher in self.hashers.values():
            hasher.update(data)

    def check(self, values):
        """Compare ``{name: base64 value}`` with what was computed.

        :raises BadDigest: a value differs (or is not base64).
        """
        for name, value in values.items():
            hasher = self.hashers.get(name)
            if hasher is None:
                if name in self.unavailable:
                    log.warn("{name} of an upload not verified: no implementation "  # noqa: G010
                             "installed (install awscrt)", name=name)
                continue
            try:
                given = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                given = None
            if given is None or not hmac.compare_digest(given, hasher.digest()):
                if name == "content-md5":
                    raise BadDigest("The Content-MD5 you specified did not match what we "
                                    "received.")
                algorithm = _checksum_name(name).upper()
                raise BadDigest(f"The {algorithm} you specified did not match the "
                                "calculated checksum.")


# ---------------------------------------------------------------------------
# Bodies


def _content_length(value, name):
    if value is None:
        return None
    value = value.strip()
    if not _NUMBER.match(value):
        raise InvalidRequest(f"{name} must be a number of bytes, not {value!r}.")
    return int(value)


def chunk_signature(key, timestamp, scope, previous, data_sha256):
    """The signature (hex) of one ``aws-chunked`` chunk: HMAC of
    ``AWS4-HMAC-SHA256-PAYLOAD\\n<timestamp>\\n<scope>\\n<previous
    signature>\\n<SHA256 of "">\\n<SHA256 hex of the chunk data>``."""
    sts = (f"AWS4-HMAC-SHA256-PAYLOAD\n{timestamp}\n{scope}\n{previous}\n{EMPTY_SHA256}\n"
           f"{data_sha256}")
    return hmac.new(key, sts.encode("ascii"), hashlib.sha256).hexdigest()


def trailer_signature(key, timestamp, scope, previous, trailer_lines):
    """The signature (hex) of signed trailers: HMAC of
    ``AWS4-HMAC-SHA256-TRAILER\\n<timestamp>\\n<scope>\\n<previous>\\n<SHA256 hex
    of the trailers, each "name:value\\n">``."""
    digest = hashlib.sha256(_raw(trailer_lines)).hexdigest()
    sts = f"AWS4-HMAC-SHA256-TRAILER\n{timestamp}\n{scope}\n{previous}\n{digest}"
    return hmac.new(key, sts.encode("ascii"), hashlib.sha256).hexdigest()


_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """Incremental decoder of an ``aws-chunked`` body (AWS "Transferring
    Payload in Multiple Chunks" and "Including Trailing Headers").

    Framing: ``<hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n`` ...,
    a zero-size chunk, then trailer lines ``name:value\\r\\n`` and an empty
    line. Feed it the body in pieces of any size; it returns the payload
    bytes as they come, keeping at most one header or trailer line (bounded)
    in memory. Bytes handed out are provisional until :meth:`finish`
    succeeds: on any error, discard everything the upload wrote.

    :param mode: :data:`STREAMING_PAYLOAD` (every chunk signed, no trailer),
        :data:`STREAMING_PAYLOAD_TRAILER` (signed chunks and trailer) or
        :data:`STREAMING_UNSIGNED_TRAILER` (no signatures).
    :param key: the signing key (:attr:`SigV4Result.signing_key`), for the
        signed modes.
    :param timestamp: the request's ``YYYYMMDDTHHMMSSZ``.
    :param scope: the credential scope.
    :param seed_signature: the request's signature (hex), first link of the
        chain.
    :param trailers: the trailer names announced by ``x-amz-trailer``.
    :param decoded_length: ``x-amz-decoded-content-length``, checked (None:
        not announced).
    :param checksums: ``{name: base64}`` of the payload sent as headers
        (``x-amz-checksum-*``, ``content-md5``), checked at the end.
    :raises InvalidRequest: (constructor) an announced trailer we cannot
        check.
    """

    #: Longest chunk header line (size and signature), in bytes.
    MAX_LINE = 4096
    #: Most trailer bytes.
    MAX_TRAILER = 16 * 1024

    def __init__(self, mode, *, key=None, timestamp=None, scope=None, seed_signature=None,
                 trailers=(), decoded_length=None, checksums=None):
        if mode not in STREAMING_MODES:
            raise ValueError(f"not an aws-chunked payload mode: {mode!r}")
        self.mode = mode
        self.signed = mode != STREAMING_UNSIGNED_TRAILER
        if self.signed and (key is None or not timestamp or not scope or not seed_signature):
            raise ValueError("signed aws-chunked bodies need key, timestamp, scope and seed")
        self._key, self._timestamp, self._scope = key, timestamp, scope
        self._previous = seed_signature
        self.trailer_names = [t.strip().lower() for t in trailers if t.strip()]
        if mode == STREAMING_PAYLOAD and self.trailer_names:
            raise InvalidRequest(f"{STREAMING_PAYLOAD} bodies carry no trailer; use "
                                 f"{STREAMING_PAYLOAD_TRAILER} with x-amz-trailer.")
        self._header_checksums = dict(checksums or {})
        self._checksums = _ChecksumSet(set(self.trailer_names) | set(self._header_checksums))
        self.decoded_length = decoded_length
        #: Payload bytes decoded so far.
        self.decoded = 0
        #: The trailers received (lower-case name -> value), once finished.
        self.trailers = {}
        self._state = _SIZE
        self._line = bytearray()
        self._remaining = 0
        self._chunk_signature = None
        self._chunk_hash = None
        self._crlf = 0
        self._trailer_lines = []
        self._trailer_bytes = 0

    @property
    def done(self):
        """True once the final chunk and trailers have been read."""
        return self._state == _DONE

    @property
    def buffered(self):
        """Bytes held between calls (a partial line): at most
        :attr:`MAX_LINE` or :attr:`MAX_TRAILER`."""
        return len(self._line)

    def feed(self, data):
        """Decode the next piece of the body.

        :param data: bytes (any length, including empty).
        :return: the payload bytes this piece completes (maybe ``b""``).
        :raises InvalidRequest: malformed framing, data after the end, more
            data than ``decoded_length``.
        :raises SignatureDoesNotMatch: a chunk or trailer signature is wrong.
        :raises BadDigest: a trailing checksum does not match.
        """
        buf = data if isinstance(data, (bytes, bytearray)) else bytes(data)
        view = memoryview(buf)
        out = []
        pos, end = 0, len(buf)
        while pos < end:
            state = self._state
            if state == _DATA:
                n = min(self._remaining, end - pos)
                piece = view[pos:pos + n]
                if self._chunk_hash is not None:
                    self._chunk_hash.update(piece)
                self._checksums.update(piece)
                out.append(piece)
                pos += n
                self._remaining -= n
                if self._remaining == 0:
                    self._state, self._crlf = _DATA_END, 0
            elif state == _DATA_END:
                if buf[pos] != b"\r\n"[self._crlf]:
                    raise InvalidRequest("A chunk's data must end with CRLF (the chunk is "
                                         "longer than its size says).")
                pos += 1
                self._crlf += 1
                if self._crlf == 2:
                    self._end_chunk()
                    self._state = _SIZE
            elif state == _DONE:
                if buf[pos:end].strip(b"\r\n"):
                    raise InvalidRequest("Data after the end of the aws-chunked body.")
                pos = end
            else:
                limit = self.MAX_LINE if state == _SIZE else \
                    self.MAX_TRAILER - self._trailer_bytes
                newline = buf.find(b"\n", pos, end)
                stop = end if newline < 0 else newline + 1
                if len(self._line) + stop - pos > limit:
                    raise InvalidRequest("An aws-chunked chunk header or trailer is too long.")
                self._line += view[pos:stop]
                pos = stop
                if newline >= 0:
                    line = bytes(self._line)
                    self._line.clear()
                    if state == _SIZE:
                        self._size_line(line)
                    else:
                        self._trailer_line(line)
        if len(out) == 1:
            return bytes(out[0])
        return b"".join(out)

    def _size_line(self, line):
        if not line.endswith(b"\r\n"):
            raise InvalidRequest("aws-chunked chunk headers end with CRLF.")
        text = line[:-2].decode("ascii", "replace")
        size_text, _, extensions = text.partition(";")
        if not 1 <= len(size_text) <= 16 or any(c not in "0123456789abcdefABCDEF"
                                                for c in size_text):
            raise InvalidRequest(f"Invalid aws-chunked chunk size {size_text[:32]!r}.")
        size = int(size_text, 16)
        if self.signed:
            name, sep, value = extensions.partition("=")
            if name.strip() != "chunk-signature" or not sep \
                    or not _HEX64.match(value.strip().lower()):
                raise InvalidRequest("Each chunk must carry ;chunk-signature=<64 hex digits>.")
            self._chunk_signature = value.strip().lower()
            self._chunk_hash = hashlib.sha256()
        if self.decoded_length is not None and self.decoded + size > self.decoded_length:
            raise InvalidRequest(f"The body holds more than x-amz-decoded-content-length "
                                 f"({self.decoded_length}) bytes.")
        self.decoded += size
        if size:
            self._state, self._remaining = _DATA, size
        else:
            self._end_chunk()
            self._state = _TRAILER

    def _end_chunk(self):
        if not self.signed:
            return
        expected = chunk_signature(self._key, self._timestamp, self._scope, self._previous,
                                   self._chunk_hash.hexdigest())
        if not hmac.compare_digest(expected.encode("ascii"), _raw(self._chunk_signature)):
            raise SignatureDoesNotMatch(
                "The signature of an aws-chunked chunk does not match (wrong key, a changed "
                "byte, or chunks out of order).")
        self._previous = expected
        self._chunk_hash = None

    def _trailer_line(self, line):
        self._trailer_bytes += len(line)
        text = line.rstrip(b"\n").rstrip(b"\r")
        if text:
            name, sep, value = _text(text).partition(":")
            if not sep:
                raise InvalidRequest(f"Malformed aws-chunked trailer {_text(text)[:64]!r}.")
            self._trailer_lines.append((name.strip().lower(), value.strip()))
            return
        self._finish_trailers()
        self._state = _DONE

    def _finish_trailers(self):
        lines = self._trailer_lines
        signature = None
        if self.mode == STREAMING_PAYLOAD_TRAILER:
            if not lines or lines[-1][0] != "x-amz-trailer-signature":
                raise InvalidRequest("The trailer must end with x-amz-trailer-signature.")
            signature = lines[-1][1].lower()
            lines = lines[:-1]
        trailers = {}
        for name, value in lines:
            if name in trailers or name not in self.trailer_names:
                raise InvalidRequest(f"The trailer {name!r} was not announced by "
                                     "x-amz-trailer (or is repeated).")
            trailers[name] = value
        missing = [n for n in self.trailer_names if n not in trailers]
        if missing:
            raise InvalidRequest("The announced trailer " + ", ".join(missing)
                                 + " was not sent.")
        if signature is not None:
            canonical = "".join(f"{n}:{v}\n" for n, v in lines)
            expected = trailer_signature(self._key, self._timestamp, self._scope,
                                         self._previous, canonical)
            if not hmac.compare_digest(expected.encode("ascii"), _raw(signature)):
                raise SignatureDoesNotMatch("The trailer signature of the aws-chunked body "
                                            "does not match.")
        self._checksums.check({**self._header_checksums, **trailers})
        self.trailers = trailers

    def finish(self):
        """The body has ended: check it was whole.

        A body that stops right after its zero-size chunk (no empty line)
        is whole when no trailer was announced (some SDKs end so).

        :return: the trailers (lower-case name -> value).
        :raises IncompleteBody: the body stopped early, or holds fewer bytes
            than ``decoded_length``.
        :raises InvalidRequest: as :meth:`feed`, for an announced trailer.
        """
        if self._state == _TRAILER and not self._line and not self._trailer_lines \
                and not self.trailer_names and self.mode != STREAMING_PAYLOAD_TRAILER:
            self._finish_trailers()
            self._state = _DONE
        if self._state != _DONE:
            raise IncompleteBody("The aws-chunked body ended before its final chunk and "
                                 "trailer.")
        if self.decoded_length is not None and self.decoded != self.decoded_length:
            raise IncompleteBody(f"The body holds {self.decoded} bytes, not the "
                                 f"{self.decoded_length} of x-amz-decoded-content-length.")
        return dict(self.trailers)


class PayloadVerifier:
    """Checks a plain (not ``aws-chunked``) body as it streams.

    :param sha256: the signed ``x-amz-content-sha256`` hex, or None
        (``UNSIGNED-PAYLOAD``, or already checked).
    :param checksums: ``{"x-amz-checksum-<alg>" or "content-md5": base64}``
        from the headers.
    :param length: the expected length in bytes (None: not checked).
    :raises InvalidRequest: (constructor) an unknown checksum algorithm.
    """

    def __init__(self, sha256=None, checksums=None, length=None):
        self._sha256 = hashlib.sha256() if sha256 else None
        self._expected = sha256
        self._values = dict(checksums or {})
        self._checksums = _ChecksumSet(self._values)
        self._length = length
        #: Bytes seen so far.
        self.decoded = 0
        self.trailers = {}
        self.done = False
        self.buffered = 0

    def feed(self, data):
        """Account for the next piece; returns it unchanged (bytes).

        :raises InvalidRequest: more bytes than ``length``.
        """
        if self._sha256 is not None:
            self._sha256.update(data)
        self._checksums.update(data)
        self.decoded += len(data)
        if self._length is not None and self.decoded > self._length:
            raise InvalidRequest(f"The body is longer than its {self._length} bytes.")
        return data

    def finish(self):
        """The body has ended.

        :return: ``{}`` (plain bodies have no trailers).
        :raises IncompleteBody: fewer bytes than ``length``.
        :raises XAmzContentSHA256Mismatch: the body is not the one signed.
        :raises BadDigest: an ``x-amz-checksum-*`` header does not match.
        """
        if self._length is not None and self.decoded != self._length:
            raise IncompleteBody(f"The body holds {self.decoded} bytes, not "
                                 f"{self._length}.")
        if self._sha256 is not None:
            actual = self._sha256.hexdigest()
            if not hmac.compare_digest(actual.encode("ascii"), _raw(self._expected)):
                raise XAmzContentSHA256Mismatch(
                    "The provided 'x-amz-content-sha256' header does not match what was "
                    "computed.", details={"ClientComputedContentSHA256": self._expected,
                                          "S3ComputedContentSHA256": actual})
        self._checksums.check(self._values)
        self.done = True
        return {}


def body_decoder(request, auth=None):
    """The decoder of a request body the front streams.

    ``aws-chunked`` bodies (``x-amz-content-sha256`` a ``STREAMING-*``
    marker) get a :class:`ChunkedDecoder` chained from the request's
    signature, with ``x-amz-trailer`` and ``x-amz-decoded-content-length``;
    other bodies a :class:`PayloadVerifier` of the signed SHA256 (unless
    already checked). Both check the ``x-amz-checksum-*`` and
    ``Content-MD5`` headers (S3 ``BadDigest``). Both have
    ``feed(bytes) -> bytes`` and ``finish() -> trailers``.

    :param request: the :class:`AuthRequest`.
    :param auth: its :class:`SigV4Result`, or None (SigV2, anonymous).
    :raises InvalidRequest: a streaming body without SigV4, an announced
        trailer or checksum we do not know, a malformed length.
    """
    mode = auth.payload_hash if auth is not None else None
    decoded_length = _content_length(request.header("x-amz-decoded-content-length"),
                                     "x-amz-decoded-content-length")
    trailer = request.header("x-amz-trailer")
    trailers = [t for t in (trailer or "").split(",") if t.strip()]
    checksums = {name: values[0] for name, values in request._header_map.items()
                 if name == "content-md5" or _checksum_name(name) in CHECKSUM_ALGORITHMS}
    if mode in STREAMING_MODES:
        if mode == STREAMING_UNSIGNED_TRAILER:
            return ChunkedDecoder(mode, trailers=trailers, decoded_length=decoded_length,
                                  checksums=checksums)
        return ChunkedDecoder(mode, key=auth.signing_key, timestamp=auth.timestamp,
                              scope=auth.scope, seed_signature=auth.signature,
                              trailers=trailers, decoded_length=decoded_length,
                              checksums=checksums)
    claimed = request.header("x-amz-content-sha256")
    if auth is None and claimed and claimed.strip() in STREAMING_MODES:
        raise InvalidRequest("An aws-chunked body needs a SigV4 Authorization header.")
    if trailers:
        raise InvalidRequest("x-amz-trailer needs an aws-chunked body "
                             f"({STREAMING_UNSIGNED_TRAILER}).")
    sha = None
    if auth is not None and not auth.body_verified and _HEX64.match(auth.payload_hash):
        sha = auth.payload_hash
    return PayloadVerifier(sha, checksums)


def stored_content_encoding(value):
    """A ``Content-Encoding`` without ``aws-chunked`` (what to store with the
    object), or None if nothing is left."""
    if not value:
        return None
    kept = [e.strip() for e in value.split(",")
            if e.strip() and e.strip().lower() != "aws-chunked"]
    return ", ".join(kept) or None
