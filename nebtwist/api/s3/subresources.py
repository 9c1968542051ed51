"""What the S3 repository does not do: refused, never acted on.

A request naming an S3 sub-resource not implemented here (``?acl``,
``?retention``, ``?publicAccessBlock`` ... every name of botocore's S3
service model, :func:`subresource_names`), a change with a query parameter
not understood, or a header asking for server-side encryption, ACLs,
object lock, tagging, another storage class or a conditional write
(:func:`refuse_headers`) is refused by :func:`refuse_unimplemented` before
anything changes, with the S3 error the Amazon S3 API Reference
(2006-03-01) gives (mostly ``NotImplemented``, 501).
"""

from twisted.logger import Logger

from nebtwist.api.s3.errors import (AccessControlListNotSupported, AccessDenied,
                                    InvalidArgument, InvalidBucketAclWithObjectOwnership,
                                    InvalidStorageClass, NotImplementedHere)
from nebtwist.api.s3.params import _header

log = Logger()


#: Every S3 sub-resource name: the query parts of the ``requestUri`` of every
#: operation of the Amazon S3 API Reference (2006-03-01) as botocore's
#: service model lists them (``botocore/data/s3/2006-03-01/service-2.json``,
#: botocore 1.43), ``versionId`` (the version qualifier of the object
#: operations: no object has versions here) and the older names S3 SigV2
#: signs (``defaultObjectAcl``, ``storageClass``). :func:`subresource_names`
#: adds those of the installed botocore's model, so one AWS adds later is
#: refused too.
SUBRESOURCES = frozenset([
    "abac", "accelerate", "acl", "analytics", "attributes", "cors", "defaultObjectAcl",
    "delete", "encryption", "intelligent-tiering", "inventory", "legal-hold", "lifecycle",
    "location", "logging", "metadataConfiguration", "metadataInventoryTable",
    "metadataJournalTable", "metadataTable", "metrics", "notification", "object-lock",
    "ownershipControls", "partNumber", "policy", "policyStatus", "publicAccessBlock",
    "renameObject", "replication", "requestPayment", "restore", "retention", "select",
    "select-type", "session", "storageClass", "tagging", "torrent", "uploadId", "uploads",
    "versionId", "versioning", "versions", "website"])

#: The sub-resources this repository implements, by ``(target, method)``
#: (target ``"service"``, ``"bucket"`` or ``"object"``): GetBucketLocation,
#: ListMultipartUploads, Get/Put/DeleteBucketTagging, DeleteObjects,
#: ListParts, UploadPart and UploadPartCopy, CreateMultipartUpload,
#: CompleteMultipartUpload, AbortMultipartUpload.
#: Any other sub-resource, with any method, answers ``NotImplemented``
#: (object tagging among them).
IMPLEMENTED_SUBRESOURCES = {
    ("bucket", b"GET"): frozenset(["location", "uploads", "tagging"]),
    ("bucket", b"PUT"): frozenset(["tagging"]),
    ("bucket", b"DELETE"): frozenset(["tagging"]),
    ("bucket", b"POST"): frozenset(["delete"]),
    ("object", b"GET"): frozenset(["uploadId"]),
    ("object", b"PUT"): frozenset(["uploadId", "partNumber"]),
    ("object", b"POST"): frozenset(["uploads", "uploadId"]),
    ("object", b"DELETE"): frozenset(["uploadId"]),
}

#: The query parameters the operations that change something understand,
#: by ``(target, method)``: any other (a sub-resource AWS adds tomorrow, a
#: typo) answers ``NotImplemented`` rather than, say, DELETE ``?newthing``
#: deleting the bucket. Reads ignore unknown parameters, as S3 does.
CHANGE_PARAMETERS = {
    ("bucket", b"PUT"): frozenset(["tagging"]), ("bucket", b"DELETE"): frozenset(["tagging"]),
    ("bucket", b"POST"): frozenset(["delete"]),
    ("object", b"PUT"): frozenset(["uploadId", "partNumber"]),
    ("object", b"POST"): frozenset(["uploads", "uploadId"]),
    ("object", b"DELETE"): frozenset(["uploadId"]),
}

#: Query parameters carrying a presigned request's signature (SigV4, S3
#: SigV2) or naming the operation for logs (``x-id``, sent by the AWS SDKs
#: for JavaScript and others): no meaning for the operation.
SIGNING_PARAMETERS = frozenset([
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
    "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token", "AWSAccessKeyId",
    "Signature", "Expires", "x-id"])

#: Canned ACLs (Amazon S3 User Guide, "Access control list (ACL) overview",
#: canned ACL): the bucket's and the object's sets.
BUCKET_CANNED_ACLS = frozenset(["private", "public-read", "public-read-write",
                                "authenticated-read"])
OBJECT_CANNED_ACLS = BUCKET_CANNED_ACLS | frozenset([
    "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write"])

#: Storage classes (API Reference, PutObject ``x-amz-storage-class``); only
#: STANDARD is what the repository does.
STORAGE_CLASSES = frozenset([
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER", "DEEP_ARCHIVE", "OUTPOSTS", "GLACIER_IR", "SNOW", "EXPRESS_ONEZONE",
    "FSX_OPENZFS", "FSX_ONTAP"])

#: Request headers that ask for something this repository does not do,
#: with the values that ask for what it does (``None``: every value is
#: refused). Taken from the request headers of PutObject, CopyObject,
#: CreateMultipartUpload, CompleteMultipartUpload, CreateBucket,
#: DeleteObject and AbortMultipartUpload in the API Reference.
REFUSED_HEADERS = {
    "x-amz-object-lock-mode": None,
    "x-amz-object-lock-retain-until-date": None,
    "x-amz-object-lock-legal-hold": frozenset(["OFF"]),
    "x-amz-bucket-object-lock-enabled": frozenset(["false"]),
    "x-amz-object-ownership": frozenset(["BucketOwnerEnforced"]),
    "x-amz-bucket-namespace": frozenset(["global"]),
    "x-amz-tagging": frozenset([""]),
    "x-amz-tagging-directive": frozenset(["COPY"]),
    "x-amz-website-redirect-location": None,
    "x-amz-write-offset-bytes": None,
    "x-amz-mp-object-size": None,
    # a full-object checksum of a multipart upload, for S3 to verify at
    # completion (parts' own checksums are verified as they arrive)
    "x-amz-checksum-type": frozenset(["COMPOSITE"]),
    "x-amz-if-match-initiated-time": None,
    "x-amz-if-match-last-modified-time": None,
    "x-amz-if-match-size": None,
}

_MODEL_SUBRESOURCES = None


def subresource_names():
    """:data:`SUBRESOURCES` and the sub-resource names of the installed
    botocore's S3 service model (the query parts of every operation's
    ``requestUri``: ``/{Bucket}?acl``, ``/{Bucket}/{Key+}?select&select-type=2``),
    read once per process."""
    global _MODEL_SUBRESOURCES
    if _MODEL_SUBRESOURCES is None:
        names = set(SUBRESOURCES)
        try:
            from botocore.loaders import Loader
            model = Loader().load_service_model("s3", "service-2")
            for operation in model["operations"].values():
                query = operation["http"]["requestUri"].partition("?")[2]
                for part in query.split("&"):
                    name = part.partition("=")[0]
                    if name and name not in ("list-type", "x-id"):
                        names.add(name)
        except Exception as e:  # noqa: BLE001 - the built-in list stands
            log.warn("S3: botocore's S3 model could not be read ({e}); the built-in "
                     "sub-resource list is used", e=e)
        _MODEL_SUBRESOURCES = frozenset(names)
    return _MODEL_SUBRESOURCES


def refuse_unimplemented(request, target, params):
    """Refuse a request asking for what this repository does not do, before
    anything is done (the "S3 must never act on what it does not
    understand" rule).

    - a sub-resource (:func:`subresource_names`) not in
      :data:`IMPLEMENTED_SUBRESOURCES` for this target and method:
      ``NotImplemented`` (501), whatever the method;
    - for a change (PUT, POST, DELETE), a query parameter it does not
      understand (:data:`CHANGE_PARAMETERS`): ``NotImplemented``;
    - the headers of :func:`refuse_headers`.

    :param target: ``"service"``, ``"bucket"`` or ``"object"``.
    :param params: the decoded query (:func:`query_params`).
    :raises S3Error: refused.
    """
    method = request.method
    implemented = IMPLEMENTED_SUBRESOURCES.get((target, method), frozenset())
    names = subresource_names()
    for name in params:
        if name in names and name not in implemented:
            raise NotImplementedHere(f"The {target} sub-resource ?{name} is not implemented "
                                     f"(for {method.decode('latin-1')}).")
    asked = [n for n in params if n in implemented and n != "partNumber"]
    if len(asked) > 1:
        raise NotImplementedHere("The sub-resources " + ", ".join(f"?{n}" for n in asked) +
                                 " together are not implemented.")
    understood = CHANGE_PARAMETERS.get((target, method))
    if understood is None and method in (b"PUT", b"POST", b"DELETE"):
        understood = frozenset()
    if understood is not None:
        for name in params:
            if name not in understood and name not in SIGNING_PARAMETERS:
                raise NotImplementedHere(f"The query parameter ?{name} is not implemented "
                                         f"for {method.decode('latin-1')} on a {target}.")
    refuse_headers(request, target)


def refuse_headers(request, target):
    """Refuse request headers asking for what this repository does not do.

    - server-side encryption (``x-amz-server-side-encryption*``, SSE-S3,
      SSE-KMS, SSE-C, and ``x-amz-copy-source-server-side-encryption-*``):
      ``NotImplemented`` (501); objects are stored as sent, and reading one
      back without the customer key must not work as if it were encrypted;
    - ACLs: ``x-amz-acl`` other than ``private`` (and, for an object,
      ``bucket-owner-full-control``: the same here, every object belonging
      to its bucket's owner) and ``x-amz-grant-*``: as a bucket whose Object
      Ownership is BucketOwnerEnforced (ACLs disabled, the AWS default; User
      Guide "Controlling ownership of objects and disabling ACLs"):
      ``AccessControlListNotSupported`` (400) for an object,
      ``InvalidBucketAclWithObjectOwnership`` (400) for CreateBucket; an
      unknown canned ACL ``InvalidArgument`` (400);
    - ``x-amz-storage-class`` other than STANDARD: ``NotImplemented``
      (``InvalidStorageClass`` for an unknown class);
    - :data:`REFUSED_HEADERS` (object lock, tagging, website redirect,
      appends, conditional deletes): ``NotImplemented``;
    - conditional writes (``If-Match`` / ``If-None-Match`` on PutObject,
      CopyObject's destination, CompleteMultipartUpload, DeleteObject):
      ``NotImplemented`` (they are implemented on GET and HEAD, and as
      ``x-amz-copy-source-if-*``).

    :raises S3Error: refused.
    """
    for raw_name, values in request.requestHeaders.getAllRawHeaders():
        name = raw_name.decode("latin-1").lower()
        value = values[0].decode("latin-1").strip() if values else ""
        if name.startswith(("x-amz-server-side-encryption",
                            "x-amz-copy-source-server-side-encryption")):
            raise NotImplementedHere(f"Server-side encryption ({name}) is not implemented: "
                                     "objects are stored as sent.",
                                     details={"Header": name})
        if name == "x-amz-acl" or name.startswith("x-amz-grant-"):
            if name == "x-amz-acl":
                if value == "private" or (target == "object"
                                          and value == "bucket-owner-full-control"):
                    continue
                known = OBJECT_CANNED_ACLS if target == "object" else BUCKET_CANNED_ACLS
                if value not in known:
                    raise InvalidArgument(details={"ArgumentName": "x-amz-acl",
                                                   "ArgumentValue": value})
            if target == "bucket":
                raise InvalidBucketAclWithObjectOwnership()
            raise AccessControlListNotSupported()
        if name == "x-amz-storage-class":
            if value == "STANDARD":
                continue
            if value not in STORAGE_CLASSES:
                raise InvalidStorageClass(details={"StorageClassRequested": value})
            raise NotImplementedHere(f"The storage class {value} is not implemented "
                                     "(STANDARD only).", details={"Header": name})
        if name in REFUSED_HEADERS:
            accepted = REFUSED_HEADERS[name]
            if accepted is None or value not in accepted:
                raise NotImplementedHere(f"The header {name}: {value} is not implemented.",
                                         details={"Header": name})
        if name in ("if-match", "if-none-match") and target == "object" \
                and request.method in (b"PUT", b"POST", b"DELETE"):
            raise NotImplementedHere(f"Conditional writes ({name}) are not implemented.",
                                     details={"Header": name})


def check_expected_owner(request, bucket, header=b"x-amz-expected-bucket-owner"):
    """``x-amz-expected-bucket-owner`` (or ``x-amz-source-expected-bucket-owner``):
    the bucket's owner id (the uid, as the listings' ``Owner/ID``) must be
    the one given (API Reference, common request headers).

    :raises AccessDenied: another owner.
    """
    expected = _header(request, header)
    if expected is not None and expected.strip() != str(bucket.owner):
        raise AccessDenied()
