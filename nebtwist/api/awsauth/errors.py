"""AWS authentication errors, with their EC2 and S3 shapes.

:class:`AWSAuthError` and its subclasses carry the EC2 error code and HTTP
status (``code``, ``status``: Amazon EC2 API Reference, "Error codes"),
the S3 ones (``s3_code``, ``s3_status``: Amazon S3 API Reference,
"Error responses"), a message for the user and, for a signature mismatch,
the ``details`` S3 puts in its ``<Error>`` (string to sign, canonical
request).
"""




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
