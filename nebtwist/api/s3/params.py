"""Reading an S3 request: its path, query and headers.

Path-style ``/bucket/key`` (:func:`split_path`), the decoded query
(:func:`query_params`), ``Range`` (:func:`parse_range`, RFC 9110),
``Content-MD5``, user metadata (``x-amz-meta-*``), the headers stored with
an object, key length and integer query parameters, checked with the limits
and answers of the Amazon S3 API Reference (2006-03-01).
"""

import base64
import re
from urllib.parse import parse_qsl, unquote_to_bytes

from nebtwist.api import awsauth
from nebtwist.api.s3.errors import (InvalidArgument, InvalidDigest, InvalidRange,
                                    InvalidRequest, InvalidURI, KeyTooLongError,
                                    MetadataTooLarge)


#: Highest part number (AWS: 10,000).
MAX_PART_NUMBER = 10000
#: Longest key, in UTF-8 bytes (AWS: 1,024).
MAX_KEY_BYTES = 1024
#: Most bytes of user metadata (``x-amz-meta-*`` names and values; AWS: 2 KB).
MAX_METADATA_BYTES = 2048
#: Object headers kept with an object and sent back on GET / HEAD.
STORED_HEADERS = ("cache-control", "content-disposition", "content-encoding",
                  "content-language", "expires")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)\Z")


def split_path(uri):
    """``(bucket, key)`` of a path-style request URI (bytes).

    :return: ``(None, None)`` for ``/``, ``(bucket, None)`` for
        ``/bucket`` and ``/bucket/``, else ``(bucket, key)`` with the key
        percent-decoded (it may hold ``/``, ``..`` or start with ``/``).
    :raises InvalidURI: the path is not UTF-8 once decoded.
    """
    uri = bytes(uri)
    if uri[:8].lower().startswith((b"http://", b"https://")):
        rest = uri.split(b"//", 1)[1]
        slash = rest.find(b"/")
        uri = rest[slash:] if slash >= 0 else b"/"
    path = uri.partition(b"?")[0]
    try:
        text = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidURI("The request path is not valid UTF-8.") from None
    if not text.startswith("/"):
        raise InvalidURI()
    bucket, sep, key = text[1:].partition("/")
    if not bucket:
        return None, None
    return bucket, (key if sep and key else None)


def query_params(uri):
    """The decoded query of a request URI: ``{name: value}`` (first value)."""
    query = bytes(uri).partition(b"?")[2]
    params = {}
    for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="utf-8",
                          errors="surrogateescape"):
        params.setdefault(k, v)
    return params


def _header(request, name):
    value = request.requestHeaders.getRawHeaders(name)
    return value[0].decode("latin-1") if value else None


def _md5_header(value):
    """The hex digest of a ``Content-MD5`` header.

    :raises InvalidDigest: not the base64 of 16 bytes.
    """
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (ValueError, TypeError):
        digest = b""
    if len(digest) != 16:
        raise InvalidDigest()
    return digest.hex()


def parse_range(value, size):
    """``(first, last)`` byte offsets (inclusive) of a ``Range`` header, or
    None when the header is to be ignored (not one ``bytes=`` range, or
    last before first: RFC 9110 section 14.2).

    :raises InvalidRange: the range starts at or after ``size`` (or asks
        for the last 0 bytes).
    """
    m = _RANGE.match(value.strip())
    if not m or not (m.group(1) or m.group(2)):
        return None
    if m.group(1):
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else size - 1
        if m.group(2) and last < first:
            return None
        if first >= size:
            raise InvalidRange(details={"RangeRequested": value, "ActualObjectSize": size})
        return first, min(last, size - 1)
    suffix = int(m.group(2))
    if suffix == 0 or size == 0:
        raise InvalidRange(details={"RangeRequested": value, "ActualObjectSize": size})
    return max(0, size - suffix), size - 1


def _user_metadata(request):
    """``{x-amz-meta-name (lower case): value}`` of a request's headers.

    :raises MetadataTooLarge: more than :data:`MAX_METADATA_BYTES`.
    """
    meta = {}
    total = 0
    for name, values in request.requestHeaders.getAllRawHeaders():
        lname = name.lower()
        if lname.startswith(b"x-amz-meta-"):
            key = lname.decode("latin-1")
            value = ",".join(v.decode("utf-8", "replace") for v in values)
            meta[key] = value
            total += len(key) - len("x-amz-meta-") + len(value.encode("utf-8"))
    if total > MAX_METADATA_BYTES:
        raise MetadataTooLarge(details={"MaxSizeAllowed": MAX_METADATA_BYTES})
    return meta


def _stored_headers(request):
    headers = {}
    for name in STORED_HEADERS:
        value = _header(request, name.encode())
        if name == "content-encoding":
            value = awsauth.stored_content_encoding(value)
        if value:
            headers[name] = value
    return headers


def _check_key(key):
    if len(key.encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
        raise KeyTooLongError(details={"Size": len(key.encode("utf-8", "surrogateescape")),
                                       "MaxSizeAllowed": MAX_KEY_BYTES})


#: The largest integer query parameter S3 accepts (a signed 32-bit integer).
MAX_INT_PARAM = 2 ** 31 - 1


def _int_param(params, name, default, maximum=None, minimum=0):
    """The integer query parameter ``name`` (``max-keys``, ``max-parts``,
    ``part-number-marker`` ...), ``default`` when absent or empty, at most
    ``maximum`` (a larger one is cut down, as S3 does for ``max-keys``).

    :raises InvalidArgument: not a decimal integer, above
        :data:`MAX_INT_PARAM` ("Provided max-parts not an integer or within
        integer range"), or below ``minimum`` ("Argument max-parts must be
        an integer between 0 and 2147483647"), S3's answers.
    """
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value) if value.strip().lstrip("-").isdigit() else None
    except ValueError:
        number = None
    details = {"ArgumentName": name, "ArgumentValue": value}
    if number is None or number > MAX_INT_PARAM:
        raise InvalidArgument(f"Provided {name} not an integer or within integer range",
                              details=details)
    if number < minimum:
        raise InvalidArgument(f"Argument {name} must be an integer between {minimum} and "
                              f"{MAX_INT_PARAM}", details=details)
    return min(number, maximum) if maximum is not None else number


def _require_checksum(request):
    """The operations S3 wants a body checksum for (DeleteObjects,
    PutBucketTagging: ``Content-MD5`` or an ``x-amz-checksum-*`` header;
    the body decoder verifies it).

    :raises InvalidRequest: neither header.
    """
    if not (request.requestHeaders.hasHeader(b"content-md5") or any(
            n.lower().startswith(b"x-amz-checksum-")
            for n, _ in request.requestHeaders.getAllRawHeaders())):
        raise InvalidRequest("Missing required header for this request: Content-MD5")
