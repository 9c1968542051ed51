"""The S3-like image repository: path-style S3 on the public cloud front.

OpenNebula 3.4's econe-server stored uploaded images in ``IMAGE_DIR`` before
registering them; here that folder is a small S3-compatible object store
that the AWS CLI, boto3 and other S3 clients use unmodified, on the same
site and ports as the EC2 Query API (:mod:`nebtwist.api.front` routes
between the two). The EC2 front's RegisterImage reads objects from it
(:meth:`Repository.object_file`).

**Operations** (path-style only: ``/bucket/key``), as the Amazon S3 API
Reference (2006-03-01) describes them: ListBuckets (``max-buckets``,
``continuation-token``, ``prefix``, ``bucket-region``), CreateBucket,
DeleteBucket, HeadBucket, GetBucketLocation, Put/Get/DeleteBucketTagging,
ListObjects (v1 and v2, with ``encoding-type=url``), PutObject, CopyObject,
GetObject (``Range``, ``If-*`` conditions, ``response-*`` overrides),
HeadObject, DeleteObject, DeleteObjects, CreateMultipartUpload, UploadPart,
UploadPartCopy (``x-amz-copy-source-range``, ``x-amz-copy-source-if-*``),
CompleteMultipartUpload (repeated shortly after, the same success),
AbortMultipartUpload, ListParts, ListMultipartUploads.

**What it does not do, it refuses** before anything changes
(:func:`refuse_unimplemented`): every other S3 sub-resource (``?acl``,
``?retention``, ``?publicAccessBlock`` ... the names of botocore's S3
service model), with any method, answers ``NotImplemented`` (501); so does
a PUT, POST or DELETE with a query parameter it does not know, and a
request body element it would ignore (DeleteObjects ``VersionId``).
Server-side encryption, ACLs other than ``private``, object lock, object
tagging, website redirects, storage classes other than STANDARD and conditional
writes are refused (:func:`refuse_headers`), never stored as if they had
not been asked for.

**Authentication**: :func:`nebtwist.api.awsauth.verify_request` with
:data:`~nebtwist.api.awsauth.S3_SCHEMES` (SigV4 header and presigned, S3
SigV2 header and presigned), the access key being the nebtwist user name
and the secret the SHA1 hex of its password, as for the EC2 front.
Upload bodies (PutObject, UploadPart) are verified as they stream to disk
(:func:`~nebtwist.api.awsauth.body_decoder`: ``x-amz-content-sha256``,
``aws-chunked`` signed chunks and checksum trailers, ``Content-MD5``); the
front (:mod:`nebtwist.api.front`) calls :meth:`S3Resource.begin_upload` as
soon as the headers are in, so a refused request stores nothing.

**Ownership**: a bucket belongs to the user who made it; any other user gets
``AccessDenied`` (403), except that oneadmin (uid 0) may read every bucket.
Bucket names are global and follow S3's rules (``InvalidBucketName``).

**Storage**: files and JSON sidecars under the repository root (econe.conf
``IMAGE_DIR``), an in-memory index per bucket; see
:mod:`nebtwist.api.s3.store` for the layout and the commit order.

**Modules**: :mod:`~nebtwist.api.s3.store` (:class:`Repository`: buckets,
objects, multipart uploads, tags; no HTTP), :mod:`~nebtwist.api.s3.records`
(the records it keeps), :mod:`~nebtwist.api.s3.files` (atomic sidecars,
copies), :mod:`~nebtwist.api.s3.body` (:class:`BodySink`: upload bodies
streamed to disk; GET bodies sent), :mod:`~nebtwist.api.s3.resource`
(:class:`S3Resource`, the twisted.web side: authentication, routing,
service and bucket operations) and :mod:`~nebtwist.api.s3.object_ops` (its
object operations), :mod:`~nebtwist.api.s3.params` (path, query and headers
of a request), :mod:`~nebtwist.api.s3.subresources` (the refusals),
:mod:`~nebtwist.api.s3.errors` (:class:`S3Error` and the S3 error codes) and
:mod:`~nebtwist.api.s3.wire` (the XML of S3 bodies). This package re-exports
their public names.
"""

from nebtwist.api.s3.body import SMALL_BODY, BodySink
from nebtwist.api.s3.errors import (AccessControlListNotSupported, AccessDenied, BadRequest,
                                    BucketAlreadyExists, BucketAlreadyOwnedByYou,
                                    BucketNotEmpty, EntityTooLarge, EntityTooSmall,
                                    InvalidArgument, InvalidBucketAclWithObjectOwnership,
                                    InvalidBucketName, InvalidDigest, InvalidPart,
                                    InvalidPartOrder, InvalidRange, InvalidRequest,
                                    InvalidStorageClass, InvalidTag, InvalidURI,
                                    KeyTooLongError, MalformedXML, MaxMessageLengthExceeded,
                                    MetadataTooLarge, MethodNotAllowed, MissingContentLength,
                                    NoSuchBucket, NoSuchKey, NoSuchTagSet, NoSuchUpload,
                                    NotImplementedHere, PreconditionFailed, S3Error, s3_error)
from nebtwist.api.s3.object_ops import RESPONSE_OVERRIDES, SMALL_OBJECT, ObjectOperations
from nebtwist.api.s3.params import (MAX_INT_PARAM, MAX_KEY_BYTES, MAX_METADATA_BYTES,
                                    MAX_PART_NUMBER, STORED_HEADERS, parse_range, query_params,
                                    split_path)
from nebtwist.api.s3.records import Bucket, MultipartUpload, ObjectInfo, Part
from nebtwist.api.s3.resource import DEFAULT_MAX_OBJECT_SIZE, MAX_BUCKETS_LIST, S3Resource
from nebtwist.api.s3.store import (COMPLETED_MEMORY, COMPLETED_MEMORY_COUNT, MAX_LIST,
                                   MIN_PART_SIZE, Repository, valid_bucket_name)
from nebtwist.api.s3.subresources import (BUCKET_CANNED_ACLS, CHANGE_PARAMETERS,
                                          IMPLEMENTED_SUBRESOURCES, OBJECT_CANNED_ACLS,
                                          REFUSED_HEADERS, SIGNING_PARAMETERS, STORAGE_CLASSES,
                                          SUBRESOURCES, check_expected_owner, refuse_headers,
                                          refuse_unimplemented, subresource_names)
from nebtwist.api.s3.wire import (MAX_BUCKET_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE, S3_NS,
                                  error_document, parse_tagging)

__all__ = ["BUCKET_CANNED_ACLS", "CHANGE_PARAMETERS", "COMPLETED_MEMORY",
           "COMPLETED_MEMORY_COUNT", "DEFAULT_MAX_OBJECT_SIZE", "IMPLEMENTED_SUBRESOURCES",
           "MAX_BUCKETS_LIST", "MAX_BUCKET_TAGS", "MAX_INT_PARAM", "MAX_KEY_BYTES", "MAX_LIST",
           "MAX_METADATA_BYTES", "MAX_PART_NUMBER", "MAX_TAG_KEY", "MAX_TAG_VALUE",
           "MIN_PART_SIZE", "OBJECT_CANNED_ACLS", "REFUSED_HEADERS", "RESPONSE_OVERRIDES",
           "S3_NS", "SIGNING_PARAMETERS", "SMALL_BODY", "SMALL_OBJECT", "STORAGE_CLASSES",
           "STORED_HEADERS", "SUBRESOURCES", "AccessControlListNotSupported", "AccessDenied",
           "BadRequest", "BodySink", "Bucket", "BucketAlreadyExists",
           "BucketAlreadyOwnedByYou", "BucketNotEmpty", "EntityTooLarge", "EntityTooSmall",
           "InvalidArgument", "InvalidBucketAclWithObjectOwnership", "InvalidBucketName",
           "InvalidDigest", "InvalidPart", "InvalidPartOrder", "InvalidRange",
           "InvalidRequest", "InvalidStorageClass", "InvalidTag", "InvalidURI",
           "KeyTooLongError", "MalformedXML", "MaxMessageLengthExceeded", "MetadataTooLarge",
           "MethodNotAllowed", "MissingContentLength", "MultipartUpload", "NoSuchBucket",
           "NoSuchKey", "NoSuchTagSet", "NoSuchUpload", "NotImplementedHere", "ObjectInfo",
           "ObjectOperations", "Part", "PreconditionFailed", "Repository", "S3Error",
           "S3Resource", "check_expected_owner", "error_document", "parse_range",
           "parse_tagging", "query_params", "refuse_headers", "refuse_unimplemented",
           "s3_error", "split_path", "subresource_names", "valid_bucket_name"]
