"""S3 errors: :class:`S3Error` and one subclass per S3 error code.

Each carries the S3 code, the HTTP status and S3's default message, as the
Amazon S3 API Reference (2006-03-01), "Error responses", lists them; the
front renders one as an ``<Error>`` document
(:func:`nebtwist.api.s3.wire.error_document`). :func:`s3_error` turns an
:class:`~nebtwist.api.awsauth.AWSAuthError` into its S3 shape.
"""

from nebtwist.api import awsauth


class S3Error(Exception):
    """An S3 error response: ``<Error><Code/><Message/>...</Error>``.

    :ivar code: the S3 code (``NoSuchKey``).
    :ivar status: HTTP status (int).
    :ivar message: text for the user.
    :ivar details: more ``<Error>`` elements (name -> text).
    """

    code = "InternalError"
    status = 500
    default_message = "We encountered an internal error. Please try again."

    def __init__(self, message=None, *, code=None, status=None, details=None):
        self.message = message or self.default_message
        super().__init__(self.message)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = dict(details or {})

    def __str__(self):
        return f"{self.code}: {self.message}"


def _error_class(name, status, message, code=None):
    cls = type(name, (S3Error,), {"code": code or name, "status": status,
                                  "default_message": message,
                                  "__doc__": f"S3 ``{code or name}`` ({status})."})
    return cls


NoSuchBucket = _error_class("NoSuchBucket", 404, "The specified bucket does not exist.")
NoSuchKey = _error_class("NoSuchKey", 404, "The specified key does not exist.")
NoSuchUpload = _error_class("NoSuchUpload", 404, "The specified multipart upload does not "
                            "exist. The upload ID might be invalid, or the multipart upload "
                            "might have been aborted or completed.")
AccessDenied = _error_class("AccessDenied", 403, "Access Denied")
BucketNotEmpty = _error_class("BucketNotEmpty", 409, "The bucket you tried to delete is not "
                              "empty.")
BucketAlreadyExists = _error_class("BucketAlreadyExists", 409, "The requested bucket name is "
                                   "not available. The bucket namespace is shared by all "
                                   "users of the system. Please select a different name and "
                                   "try again.")
BucketAlreadyOwnedByYou = _error_class("BucketAlreadyOwnedByYou", 409, "Your previous request "
                                       "to create the named bucket succeeded and you already "
                                       "own it.")
InvalidBucketName = _error_class("InvalidBucketName", 400, "The specified bucket is not "
                                 "valid.")
InvalidRange = _error_class("InvalidRange", 416, "The requested range is not satisfiable")
EntityTooLarge = _error_class("EntityTooLarge", 400, "Your proposed upload exceeds the "
                              "maximum allowed size")
EntityTooSmall = _error_class("EntityTooSmall", 400, "Your proposed upload is smaller than "
                              "the minimum allowed object size.")
MaxMessageLengthExceeded = _error_class("MaxMessageLengthExceeded", 400, "Your request was "
                                        "too big.")
MalformedXML = _error_class("MalformedXML", 400, "The XML you provided was not well-formed "
                            "or did not validate against our published schema.")
MethodNotAllowed = _error_class("MethodNotAllowed", 405, "The specified method is not "
                                "allowed against this resource.")
InvalidPart = _error_class("InvalidPart", 400, "One or more of the specified parts could not "
                           "be found. The part might not have been uploaded, or the specified "
                           "entity tag might not have matched the part's entity tag.")
InvalidPartOrder = _error_class("InvalidPartOrder", 400, "The list of parts was not in "
                                "ascending order. The parts list must be specified in order "
                                "by part number.")
InvalidArgument = _error_class("InvalidArgument", 400, "Invalid Argument")
InvalidRequest = _error_class("InvalidRequest", 400, "Invalid Request")
InvalidDigest = _error_class("InvalidDigest", 400, "The Content-MD5 you specified is not "
                             "valid.")
InvalidURI = _error_class("InvalidURI", 400, "Couldn't parse the specified URI.")
KeyTooLongError = _error_class("KeyTooLongError", 400, "Your key is too long")
MetadataTooLarge = _error_class("MetadataTooLarge", 400, "Your metadata headers exceed the "
                                "maximum allowed metadata size.")
MissingContentLength = _error_class("MissingContentLength", 411, "You must provide the "
                                    "Content-Length HTTP header.")
NotImplementedHere = _error_class("NotImplemented", 501, "A header or query you provided "
                                  "implies functionality that is not implemented.",
                                  code="NotImplemented")
PreconditionFailed = _error_class("PreconditionFailed", 412, "At least one of the "
                                  "preconditions you specified did not hold.")
AccessControlListNotSupported = _error_class("AccessControlListNotSupported", 400,
                                             "The bucket does not allow ACLs")
InvalidBucketAclWithObjectOwnership = _error_class(
    "InvalidBucketAclWithObjectOwnership", 400, "Bucket cannot have ACLs set with "
    "ObjectOwnership's BucketOwnerEnforced setting")
InvalidStorageClass = _error_class("InvalidStorageClass", 400, "The storage class you "
                                   "specified is not valid")
NoSuchTagSet = _error_class("NoSuchTagSet", 404, "The TagSet does not exist")
InvalidTag = _error_class("InvalidTag", 400, "The tag provided was not a valid tag.")
BadRequest = _error_class("BadRequest", 400, "Bad Request")


def s3_error(error):
    """An :class:`S3Error` for an :class:`S3Error` or an
    :class:`~nebtwist.api.awsauth.AWSAuthError` (its ``s3_code``,
    ``s3_status`` and ``details``)."""
    if isinstance(error, S3Error):
        return error
    if isinstance(error, awsauth.AWSAuthError):
        return S3Error(error.message, code=error.s3_code, status=error.s3_status,
                       details=error.details)
    return S3Error()
