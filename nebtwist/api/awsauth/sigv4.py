"""Signature Version 4: the ``AWS4-HMAC-SHA256`` header and presigned forms.

:func:`verify_sigv4` checks the credential scope, ``X-Amz-Date`` skew,
``X-Amz-Expires`` (at most 7 days) and the signature over the canonical
request, built as AWS's "Create a canonical request for Signature Version
4" and the AWS SigV4 test suite describe (S3 signs the path as sent,
encoded once; other services normalise it). The result
(:class:`SigV4Result`) seeds the chunk signatures of a streamed body
(:mod:`nebtwist.api.awsauth.payload`).
"""

import hashlib
import hmac
import re
from collections import namedtuple
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from nebtwist.api.awsauth.errors import (AuthFailure, IncompleteSignature, InvalidArgument,
                                         InvalidRequest, RequestExpired,
                                         XAmzContentSHA256Mismatch)
from nebtwist.api.awsauth.request import (ALGORITHM, DEFAULT_MAX_SKEW, EMPTY_SHA256,
                                          MAX_PRESIGNED_EXPIRES, STREAMING_MODES,
                                          UNSIGNED_PAYLOAD, _HEX64, _NUMBER, _decoded_query,
                                          _form_decode, _iso, _lookup, _parse_amz_date, _raw,
                                          _split_query, _text, _trimall, canonical_query,
                                          canonical_uri, signing_key, string_to_sign)


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
