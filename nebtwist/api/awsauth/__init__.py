"""AWS request authentication for the public cloud front (EC2 Query and S3).

The EC2 Query front and the S3-like image repository call this module to
learn who signed a request; it never looks at what the request asks for.

**Credentials** (OpenNebula 3.4, ``src/cloud/common/CloudAuth/EC2CloudAuth.rb``):
the access key is the OpenNebula user name and the secret key is the stored
``PASSWORD`` field, i.e. the SHA1 hex of the user's password, for users of
the ``core`` and ``public`` auth drivers (the requests layer's
:meth:`~nebtwist.core.requests_access.AccessRequests.user_secret`,
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

    lookup = requests.user_secret  # nebtwist.core.requests_access
    # EC2 Query: the form body is read first, its parameters join the query's.
    req = AuthRequest.from_twisted(request, body=body)
    found = verify_request(req, lookup, now, params=req.query_pairs() + form_pairs,
                           services=("ec2",))
    user = requests.user_by_name(found.access_key)
    # S3: the body streams through the decoder, to disk.
    req = AuthRequest.from_twisted(request)
    found = verify_request(req, lookup, now, schemes=S3_SCHEMES, services=("s3",))
    decoder = body_decoder(req, found.sigv4)
    for piece in pieces:
        out.write(decoder.feed(piece))
    decoder.finish()  # raises AWSAuthError: delete what was written

**Modules**: :mod:`~nebtwist.api.awsauth.errors` (:class:`AWSAuthError` and
its kinds), :mod:`~nebtwist.api.awsauth.request` (:class:`AuthRequest`, the
canonical request pieces, secret lookup), :mod:`~nebtwist.api.awsauth.sigv2`
(EC2 SigV2/V1 and S3 SigV2), :mod:`~nebtwist.api.awsauth.sigv4`,
:mod:`~nebtwist.api.awsauth.verify` (:func:`verify_request`) and
:mod:`~nebtwist.api.awsauth.payload` (:func:`body_decoder`, chunked bodies,
checksums). This package re-exports their public names.
"""

from nebtwist.api.awsauth.errors import (AWSAuthError, AuthFailure, BadDigest, IncompleteBody,
                                         IncompleteSignature, InvalidArgument, InvalidRequest,
                                         RequestExpired, SignatureDoesNotMatch,
                                         XAmzContentSHA256Mismatch)
from nebtwist.api.awsauth.payload import (CHECKSUM_ALGORITHMS, ChunkedDecoder, PayloadVerifier,
                                          body_decoder, chunk_signature, new_checksum,
                                          stored_content_encoding, trailer_signature)
from nebtwist.api.awsauth.request import (ALGORITHM, DEFAULT_MAX_SKEW, EMPTY_SHA256,
                                          MAX_PRESIGNED_EXPIRES, STREAMING_MODES,
                                          STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER,
                                          STREAMING_UNSIGNED_TRAILER, UNSIGNED_PAYLOAD,
                                          AuthRequest, canonical_query, canonical_uri,
                                          ec2_secret, hmac_sha256,
                                          normalize_path, signing_key, string_to_sign,
                                          uri_encode)
from nebtwist.api.awsauth.sigv2 import (S3_SUBRESOURCES, s3v2_string_to_sign,
                                        sigv1_string_to_sign, sigv2_string_to_sign,
                                        verify_s3_sigv2, verify_sigv2)
from nebtwist.api.awsauth.sigv4 import (SigV4Result, canonical_headers, canonical_request,
                                        verify_sigv4)
from nebtwist.api.awsauth.verify import (EC2_SCHEMES, S3_SCHEMES, Authenticated, detect_scheme,
                                         verify_request)

__all__ = ["ALGORITHM", "CHECKSUM_ALGORITHMS", "DEFAULT_MAX_SKEW", "EC2_SCHEMES",
           "EMPTY_SHA256", "MAX_PRESIGNED_EXPIRES", "S3_SCHEMES", "S3_SUBRESOURCES",
           "STREAMING_MODES", "STREAMING_PAYLOAD", "STREAMING_PAYLOAD_TRAILER",
           "STREAMING_UNSIGNED_TRAILER", "UNSIGNED_PAYLOAD", "AWSAuthError", "AuthFailure",
           "AuthRequest", "Authenticated", "BadDigest", "ChunkedDecoder", "IncompleteBody",
           "IncompleteSignature", "InvalidArgument", "InvalidRequest", "PayloadVerifier",
           "RequestExpired", "SigV4Result", "SignatureDoesNotMatch",
           "XAmzContentSHA256Mismatch", "body_decoder", "canonical_headers", "canonical_query",
           "canonical_request", "canonical_uri", "chunk_signature", "detect_scheme",
           "ec2_secret", "hmac_sha256", "new_checksum",
           "normalize_path", "s3v2_string_to_sign", "signing_key", "sigv1_string_to_sign",
           "sigv2_string_to_sign", "stored_content_encoding", "string_to_sign",
           "trailer_signature", "uri_encode", "verify_request", "verify_s3_sigv2",
           "verify_sigv2", "verify_sigv4"]
