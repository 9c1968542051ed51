"""Which signature a request carries, and its verification.

:func:`detect_scheme` tells SigV4 (header or presigned), EC2's SigV2/V1
and S3's SigV2 (header or presigned) apart; :func:`verify_request` verifies
whichever a request carries among the schemes a front accepts
(:data:`EC2_SCHEMES`, :data:`S3_SCHEMES`).
"""

from collections import namedtuple

from nebtwist.api.awsauth.errors import AuthFailure, InvalidArgument
from nebtwist.api.awsauth.request import DEFAULT_MAX_SKEW
from nebtwist.api.awsauth.sigv2 import verify_s3_sigv2, verify_sigv2
from nebtwist.api.awsauth.sigv4 import verify_sigv4


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
