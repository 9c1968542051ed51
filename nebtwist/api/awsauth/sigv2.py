"""Signature Version 2 (and 1) of the EC2 Query API, and S3's own SigV2.

:func:`verify_sigv2`: ``HmacSHA1`` or ``HmacSHA256`` over
``METHOD\\nhost\\npath\\n<sorted RFC 3986 encoded parameters>`` (AWS
"Signature Version 2 signing process"), with the Host as received then
without its port, a ``Timestamp`` skew window or an ``Expires`` limit;
Version 1 on request. :func:`verify_s3_sigv2`: ``Authorization: AWS
key:signature`` and the ``AWSAccessKeyId``/``Signature``/``Expires``
presigned URLs (Amazon S3 "Signing and authenticating REST requests").
"""

import base64
import binascii
import hashlib
import hmac
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from nebtwist.api.awsauth.errors import (AuthFailure, IncompleteSignature, InvalidArgument,
                                         RequestExpired)
from nebtwist.api.awsauth.request import (DEFAULT_MAX_SKEW, _AMZ_DATE, _NUMBER, _epoch, _iso,
                                          _lookup, _parse_amz_date, _raw, _text, uri_encode)


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
