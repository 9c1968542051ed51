"""The request model and the pieces every signature is built from.

:class:`AuthRequest` describes an HTTP request independently of the server
(:meth:`AuthRequest.from_twisted` builds one from a ``twisted.web``
request); text taken from bytes is UTF-8 with ``surrogateescape``, so the
bytes signed are exactly the bytes received. The encoding helpers follow
AWS's "Create a canonical request for Signature Version 4" (URI encoding,
canonical query and path, the signing key and string to sign) and are
shared by SigV2 and SigV4; :func:`ec2_secret` gives a user's secret key as
OpenNebula 3.4's ``EC2CloudAuth.rb`` did (the SHA1 hex of the password).
"""

import functools
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote_from_bytes, unquote_to_bytes

from nebtwist.api.awsauth.errors import AuthFailure, InvalidRequest


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


def _parse_amz_date(text, malformed):
    if not text or not _AMZ_DATE.match(text):
        raise malformed(f"Invalid X-Amz-Date {text!r}: YYYYMMDDTHHMMSSZ is expected.")
    try:
        dt = datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]),
                      int(text[11:13]), int(text[13:15]), tzinfo=UTC)
    except ValueError:
        raise malformed(f"Invalid X-Amz-Date {text!r}.") from None
    return dt.timestamp()


def ec2_secret(password):
    """The EC2 secret key of an OpenNebula password: its SHA1 hex (3.4)."""
    return hashlib.sha1(password.encode("utf-8")).hexdigest()


def _lookup(secret_lookup, access_key):
    secret = secret_lookup(access_key) if access_key else None
    if secret is None:
        raise AuthFailure(
            "The AWS access key id you provided does not exist in our records.",
            s3_code="InvalidAccessKeyId",
            details={"AWSAccessKeyId": access_key})
    return secret
