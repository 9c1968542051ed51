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

**Storage** under the repository root (econe.conf ``IMAGE_DIR``)::

    .staging/                      bodies being received (same filesystem)
    buckets/<bucket>/bucket.json   owner, creation time, location
    buckets/<bucket>/objects/<hh>/<sha256>.json         metadata sidecar
    buckets/<bucket>/objects/<hh>/<sha256>-<version>    data
    buckets/<bucket>/uploads/<upload id>/upload.json    a multipart upload
    buckets/<bucket>/uploads/<upload id>/<NNNNN>-<md5>  its parts

``<sha256>`` is the SHA256 hex of ``bucket/key``: no file name is ever
built from a key, so a key (``../../etc/passwd``, ``/abs``) is only a name.
A body is written to ``.staging``, moved next to its sidecar under a new
version name, then the sidecar (written to a temporary name and renamed) is
the commit point; the old version is removed after. Start-up
(:meth:`Repository.load`) reads every sidecar into an in-memory sorted index
per bucket (listings never touch the disk) and removes what a crash left
(staging files, unreferenced data, temporary sidecars). Files are not
fsynced: a crash may lose the last writes, never expose half of one.
"""

import base64
import bisect
import hashlib
import ipaddress
import itertools
import json
import os
import re
import queue
import secrets
import shutil
import threading
import time
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import parse_qsl, quote, unquote_to_bytes

from lxml import etree
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.web import resource, server

from nebtwist.api import awsauth

log = Logger()

#: The S3 XML namespace.
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
#: Default largest body of one PutObject or UploadPart, in bytes (AWS: 5 GiB).
DEFAULT_MAX_OBJECT_SIZE = 5 * 1024 ** 3
#: Smallest part of a multipart upload but the last, in bytes (AWS: 5 MiB).
MIN_PART_SIZE = 5 * 1024 * 1024
#: Highest part number (AWS: 10,000).
MAX_PART_NUMBER = 10000
#: Longest key, in UTF-8 bytes (AWS: 1,024).
MAX_KEY_BYTES = 1024
#: Most bytes of user metadata (``x-amz-meta-*`` names and values; AWS: 2 KB).
MAX_METADATA_BYTES = 2048
#: Largest max-keys / max-parts / max-uploads (AWS: 1,000).
MAX_LIST = 1000
#: Largest max-buckets of ListBuckets (AWS: 10,000).
MAX_BUCKETS_LIST = 10000
#: Most tags of a bucket, longest tag key and value, in Unicode characters
#: (Amazon S3 User Guide, "Using cost allocation S3 bucket tags": 50 tags;
#: keys up to 128 characters, values up to 256, keys unique).
MAX_BUCKET_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
#: How long a completed multipart upload's CompleteMultipartUpload answer
#: is repeated to a retry of that request, in seconds (S3 answers a repeated
#: CompleteMultipartUpload with the same success for a while, so that a
#: client whose first answer was lost does not see NoSuchUpload), and how
#: many are remembered per bucket. Kept in memory only.
COMPLETED_MEMORY = 3600
COMPLETED_MEMORY_COUNT = 1000
#: Objects up to this size are read in one piece on GET; larger ones stream.
SMALL_OBJECT = 64 * 1024
#: Upload bodies announced at most this long are received in memory (and
#: written once, at commit); longer ones stream to a staging file.
SMALL_BODY = 64 * 1024
#: Object headers kept with an object and sent back on GET / HEAD.
STORED_HEADERS = ("cache-control", "content-disposition", "content-encoding",
                  "content-language", "expires")
#: GET query parameters that override a response header (presigned URLs).
RESPONSE_OVERRIDES = {"response-content-type": b"content-type",
                      "response-content-language": b"content-language",
                      "response-expires": b"expires",
                      "response-cache-control": b"cache-control",
                      "response-content-disposition": b"content-disposition",
                      "response-content-encoding": b"content-encoding"}

_VERSIONED = re.compile(r"[0-9a-f]{64}-[0-9a-f]{12}\Z")
_SIDECAR = re.compile(r"[0-9a-f]{64}\.json\Z")
_PART_FILE = re.compile(r"([0-9]{5})-([0-9a-f]{32})\Z")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}\Z")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)\Z")
_COPY_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]+)\Z")


# ---------------------------------------------------------------------------
# Errors


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


def error_document(error, resource_path, request_id):
    """The XML bytes of an S3 ``<Error>``."""
    root = etree.Element("Error")
    _sub(root, "Code", error.code)
    _sub(root, "Message", error.message)
    for name, value in error.details.items():
        _sub(root, name, value)
    _sub(root, "Resource", resource_path)
    _sub(root, "RequestId", request_id)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# ---------------------------------------------------------------------------
# Helpers


def _sub(parent, tag, text=None):
    el = etree.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def _iso(seconds):
    """``2012-05-01T10:00:00.000Z`` (S3's XML times, milliseconds)."""
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + \
        f".{int((seconds - whole) * 1000):03d}Z"


def _http_date(seconds):
    return formatdate(int(seconds), usegmt=True)


def _quote_etag(etag):
    return f'"{etag}"'


def _url(text):
    """``encoding-type=url``: percent-encode all but unreserved characters
    and ``/`` (spaces and ``+`` encoded, so either decoding is right)."""
    return quote(text, safe="/~")


def valid_bucket_name(name):
    """True when ``name`` follows S3's rules for new buckets: 3 to 63
    lower-case letters, digits, dots and hyphens, a letter or digit at each
    end, no ``..``, ``.-`` or ``-.``, not an IPv4 address, no reserved
    prefix (``xn--``, ``sthree-``) or suffix (``-s3alias``, ``--ol-s3``)
    (AWS "Bucket naming rules")."""
    if not _BUCKET.match(name) or ".." in name or ".-" in name or "-." in name:
        return False
    if name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        return False
    try:
        ipaddress.IPv4Address(name)
        return False
    except ValueError:
        return True


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


def _write_json(path, document):
    """Write ``document`` as JSON to ``path`` atomically (temporary name,
    then rename)."""
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    data = json.dumps(document, separators=(",", ":")).encode("utf-8")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, [data])
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _concatenate(sources, target):
    """Copy the files ``sources`` one after the other into ``target`` (in
    the kernel where it can: ``copy_file_range``). Runs in a thread."""
    with open(target, "wb") as out:
        for source in sources:
            with open(source, "rb") as f:
                remaining = os.fstat(f.fileno()).st_size
                try:
                    while remaining > 0:
                        n = os.copy_file_range(f.fileno(), out.fileno(), remaining)
                        if n <= 0:
                            break
                        remaining -= n
                except OSError:
                    pass
                if remaining > 0:  # no copy_file_range here: copy the rest by hand
                    f.seek(os.fstat(f.fileno()).st_size - remaining)
                    out.seek(0, os.SEEK_END)
                    shutil.copyfileobj(f, out, 1024 * 1024)


def _copy_range(source, first, length, target):
    """Copy ``length`` bytes of the file ``source`` from offset ``first``
    to the new file ``target``; the MD5 hex of those bytes. Runs in a thread.

    :raises OSError: ``source`` is gone (FileNotFoundError) or shorter.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    with open(source, "rb") as f, open(target, "wb") as out:
        f.seek(first)
        remaining = length
        while remaining > 0:
            data = f.read(min(remaining, 1024 * 1024))
            if not data:
                raise OSError(f"{source} is shorter than its sidecar says")
            md5.update(data)
            out.write(data)
            remaining -= len(data)
    return md5.hexdigest()


# ---------------------------------------------------------------------------
# The repository


def _uid(user):
    return getattr(user, "oid", user)


def _stored_tags(value):
    """The tag set of a ``bucket.json`` (``[[key, value], ...]``) as
    ``[(key, value)]``, or None (none, or not that shape)."""
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t)
               for t in value):
        log.warn("S3 repository: a bucket's tags are not a list of pairs; ignored")
        return None
    return [tuple(t) for t in value]


class ObjectInfo:
    """One stored object (its sidecar, in memory).

    :ivar key: the key (str).
    :ivar size: bytes.
    :ivar etag: MD5 hex (``<md5 of the part MD5s>-N`` for multipart).
    :ivar mtime: last modified, seconds since the epoch.
    :ivar content_type: the ``Content-Type`` given at upload.
    :ivar headers: other stored headers (:data:`STORED_HEADERS`), or {}.
    :ivar meta: user metadata (``x-amz-meta-`` lower-case name -> value).
    :ivar data: the data file's name (``<sha256>-<version>``).
    """

    __slots__ = ("key", "size", "etag", "mtime", "content_type", "headers", "meta", "data")

    def __init__(self, key, size, etag, mtime, content_type, headers, meta, data):
        self.key, self.size, self.etag, self.mtime = key, size, etag, mtime
        self.content_type, self.headers, self.meta, self.data = (content_type, headers, meta,
                                                                 data)

    def document(self):
        doc = {"key": self.key, "size": self.size, "etag": self.etag, "mtime": self.mtime,
               "content_type": self.content_type, "data": self.data}
        if self.headers:
            doc["headers"] = self.headers
        if self.meta:
            doc["meta"] = self.meta
        return doc

    @classmethod
    def from_document(cls, doc):
        if not isinstance(doc, dict) or not isinstance(doc.get("key"), str) \
                or not _VERSIONED.match(str(doc.get("data", ""))):
            return None
        try:
            return cls(doc["key"], int(doc["size"]), str(doc["etag"]), float(doc["mtime"]),
                       str(doc.get("content_type") or "binary/octet-stream"),
                       dict(doc.get("headers") or {}), dict(doc.get("meta") or {}),
                       doc["data"])
        except (KeyError, TypeError, ValueError):
            return None


class Part:
    """One uploaded part: ``number``, ``etag`` (MD5 hex), ``size``,
    ``mtime``, ``file`` (its name in the upload's folder)."""

    __slots__ = ("number", "etag", "size", "mtime", "file")

    def __init__(self, number, etag, size, mtime, file):
        self.number, self.etag, self.size, self.mtime, self.file = (number, etag, size,
                                                                   mtime, file)


class MultipartUpload:
    """A multipart upload in progress.

    :ivar upload_id: 32 hex digits.
    :ivar key: the object's key.
    :ivar owner: the uid of the user who started it.
    :ivar parts: part number -> :class:`Part`.
    :ivar completing: True while CompleteMultipartUpload joins the parts.
    """

    __slots__ = ("upload_id", "key", "owner", "owner_name", "initiated", "content_type",
                 "headers", "meta", "path", "parts", "completing")

    def __init__(self, upload_id, key, owner, owner_name, initiated, content_type, headers,
                 meta, path):
        self.upload_id, self.key, self.owner, self.owner_name = (upload_id, key, owner,
                                                                 owner_name)
        self.initiated, self.content_type, self.headers, self.meta = (initiated, content_type,
                                                                      headers, meta)
        self.path = path
        self.parts = {}
        self.completing = False

    def document(self):
        return {"upload_id": self.upload_id, "key": self.key, "owner": self.owner,
                "owner_name": self.owner_name, "initiated": self.initiated,
                "content_type": self.content_type, "headers": self.headers,
                "meta": self.meta}


class Bucket:
    """A bucket: its owner and its sorted key index.

    :ivar name: the bucket name.
    :ivar owner: the owner's uid; ``owner_name`` its name then.
    :ivar created: seconds since the epoch.
    :ivar location: the LocationConstraint given at creation ("" if none).
    :ivar keys: every key, sorted (code point order = UTF-8 byte order).
    :ivar objects: key -> :class:`ObjectInfo`.
    :ivar uploads: upload id -> :class:`MultipartUpload`.
    :ivar completed: upload id -> ``(key, parts, ObjectInfo, when)`` of the
        uploads completed in the last :data:`COMPLETED_MEMORY` seconds
        (oldest first).
    :ivar tags: the tag set (PutBucketTagging): ``[(key, value)]`` in the
        order given, or None when the bucket has none.
    """

    __slots__ = ("name", "owner", "owner_name", "created", "location", "path", "keys",
                 "objects", "uploads", "dirs", "completed", "tags")

    def __init__(self, name, owner, owner_name, created, location, path, tags=None):
        self.name, self.owner, self.owner_name = name, owner, owner_name
        self.created, self.location, self.path = created, location, path
        self.tags = tags
        self.keys = []
        self.objects = {}
        self.uploads = {}
        self.dirs = set()  # fan-out folders known to exist
        self.completed = {}

    def document(self, tags=None):
        """The ``bucket.json`` document (with ``tags`` instead of the
        bucket's own when given: ``[]`` for none)."""
        doc = {"name": self.name, "owner": self.owner, "owner_name": self.owner_name,
               "created": self.created, "location": self.location}
        tags = self.tags if tags is None else tags
        if tags:
            doc["tags"] = [[k, v] for k, v in tags]
        return doc

    def key_hash(self, key):
        """The SHA256 hex naming ``key``'s files."""
        return hashlib.sha256(f"{self.name}/{key}".encode("utf-8", "surrogateescape")
                              ).hexdigest()

    def fan(self, digest):
        return os.path.join(self.path, "objects", digest[:2])

    def data_path(self, info):
        return os.path.join(self.fan(info.data[:64]), info.data)


class Repository:
    """The object store of the S3 front (see the module docstring).

    Every method runs in the reactor thread and touches only small files;
    joining multipart uploads and copies run in a thread.

    :param root: the repository folder (econe.conf ``IMAGE_DIR``), made if
        missing.
    :param clock: ``seconds()`` provider (the reactor), for times stored.
    """

    def __init__(self, root, clock=time):
        self.root = os.path.abspath(root)
        #: Where bodies are received before they are moved into place (the
        #: same filesystem as the objects); see :meth:`staging_file`.
        self.staging_dir = os.path.join(self.root, ".staging")
        self.buckets_dir = os.path.join(self.root, "buckets")
        self.clock = clock
        #: bucket name -> :class:`Bucket`
        self.buckets = {}

    def now(self):
        seconds = getattr(self.clock, "seconds", None)
        return seconds() if seconds is not None else self.clock.time()

    # -- start-up ----------------------------------------------------------------------

    def load(self):
        """Make the folders, forget what a crash left, and read every bucket,
        object sidecar and multipart upload into memory.

        :raises OSError: the root cannot be made or read.
        """
        os.makedirs(self.buckets_dir, exist_ok=True)
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        os.makedirs(self.staging_dir, exist_ok=True)
        self.buckets = {}
        for entry in sorted(os.scandir(self.buckets_dir), key=lambda e: e.name):
            if not entry.is_dir(follow_symlinks=False):
                continue
            doc = _read_json(os.path.join(entry.path, "bucket.json"))
            if not isinstance(doc, dict) or doc.get("name") != entry.name \
                    or not valid_bucket_name(entry.name):
                log.warn("S3 repository: {p} is not a bucket (no valid bucket.json); "
                         "ignored", p=entry.path)
                continue
            bucket = Bucket(entry.name, int(doc.get("owner", 0)),
                            str(doc.get("owner_name", "")), float(doc.get("created", 0)),
                            str(doc.get("location") or ""), entry.path,
                            _stored_tags(doc.get("tags")))
            self._load_objects(bucket)
            self._load_uploads(bucket)
            self.buckets[bucket.name] = bucket
        count = sum(len(b.objects) for b in self.buckets.values())
        log.info("S3 repository {root}: {b} buckets, {n} objects", root=self.root,
                 b=len(self.buckets), n=count)

    def _load_objects(self, bucket):
        objects = os.path.join(bucket.path, "objects")
        if not os.path.isdir(objects):
            return
        for fan in os.scandir(objects):
            if not fan.is_dir(follow_symlinks=False):
                continue
            bucket.dirs.add(fan.path)
            names = os.listdir(fan.path)
            referenced = set()
            for name in names:
                if not _SIDECAR.match(name):
                    continue
                info = ObjectInfo.from_document(_read_json(os.path.join(fan.path, name)))
                if info is None or bucket.key_hash(info.key) != name[:64] \
                        or info.data[:64] != name[:64] or info.data not in names:
                    log.warn("S3 repository: bad sidecar {p} removed",
                             p=os.path.join(fan.path, name))
                    _unlink(os.path.join(fan.path, name))
                    continue
                bucket.objects[info.key] = info
                referenced.add(info.data)
            for name in names:  # data no sidecar names, temporary sidecars
                if not _SIDECAR.match(name) and name not in referenced:
                    _unlink(os.path.join(fan.path, name))
        bucket.keys = sorted(bucket.objects)

    def _load_uploads(self, bucket):
        uploads = os.path.join(bucket.path, "uploads")
        if not os.path.isdir(uploads):
            return
        for entry in os.scandir(uploads):
            doc = _read_json(os.path.join(entry.path, "upload.json"))
            if not _UPLOAD_ID.match(entry.name) or not isinstance(doc, dict) \
                    or doc.get("upload_id") != entry.name:
                shutil.rmtree(entry.path, ignore_errors=True)
                continue
            upload = MultipartUpload(entry.name, str(doc["key"]), int(doc.get("owner", 0)),
                                     str(doc.get("owner_name", "")),
                                     float(doc.get("initiated", 0)),
                                     str(doc.get("content_type") or "binary/octet-stream"),
                                     dict(doc.get("headers") or {}),
                                     dict(doc.get("meta") or {}), entry.path)
            for part in sorted(os.scandir(entry.path), key=lambda e: e.stat().st_mtime):
                m = _PART_FILE.match(part.name)
                if m is None:
                    if part.name != "upload.json":
                        _unlink(part.path)
                    continue
                number = int(m.group(1))
                previous = upload.parts.get(number)
                if previous is not None:  # replaced, and the old file left by a crash
                    _unlink(os.path.join(entry.path, previous.file))
                st = part.stat()
                upload.parts[number] = Part(number, m.group(2), st.st_size, st.st_mtime,
                                            part.name)
            bucket.uploads[upload.upload_id] = upload

    # -- buckets -----------------------------------------------------------------------

    def bucket(self, user, name, write=False):
        """The bucket ``name`` if ``user`` may use it.

        :param user: the core user (``.oid``) or a uid.
        :param write: the caller changes the bucket or its objects (only the
            owner may); reading is also allowed to oneadmin (uid 0).
        :raises NoSuchBucket: no such bucket.
        :raises AccessDenied: another user's bucket.
        """
        bucket = self.buckets.get(name)
        if bucket is None:
            raise NoSuchBucket(details={"BucketName": name})
        uid = _uid(user)
        if bucket.owner != uid and (write or uid != 0):
            raise AccessDenied()
        return bucket

    def buckets_of(self, user):
        """The buckets owned by ``user``, by name."""
        uid = _uid(user)
        return [b for _, b in sorted(self.buckets.items()) if b.owner == uid]

    def create_bucket(self, user, name, location=""):
        """Make bucket ``name`` for ``user`` (the core user).

        A bucket the user already has in us-east-1 (no LocationConstraint),
        asked for again in us-east-1, is that bucket, unchanged (its ACLs,
        always ``private`` here, need no reset): AWS's legacy behaviour
        (API Reference, CreateBucket, BucketAlreadyOwnedByYou: returned "in
        all Amazon Web Services Regions except in the North Virginia
        Region. For legacy compatibility, if you re-create an existing
        bucket that you already own in the North Virginia Region, Amazon S3
        returns 200 OK").

        :param location: the LocationConstraint asked for ("" or
            ``us-east-1``: us-east-1).
        :return: the :class:`Bucket` (the existing one in the case above).
        :raises InvalidBucketName: not a valid S3 bucket name.
        :raises BucketAlreadyOwnedByYou: the user has it already, and it or
            the request is outside us-east-1.
        :raises BucketAlreadyExists: another user has it.
        """
        if not valid_bucket_name(name):
            raise InvalidBucketName(details={"BucketName": name})
        existing = self.buckets.get(name)
        if existing is not None:
            if existing.owner == _uid(user):
                if existing.location in ("", "us-east-1") and location in ("", "us-east-1"):
                    return existing
                raise BucketAlreadyOwnedByYou(details={"BucketName": name})
            raise BucketAlreadyExists(details={"BucketName": name})
        path = os.path.join(self.buckets_dir, name)
        bucket = Bucket(name, _uid(user), getattr(user, "name", ""), self.now(), location or "",
                        path)
        shutil.rmtree(path, ignore_errors=True)  # a leftover without bucket.json
        os.makedirs(os.path.join(path, "objects"))
        try:
            _write_json(os.path.join(path, "bucket.json"), bucket.document())
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        self.buckets[name] = bucket
        return bucket

    def delete_bucket(self, user, name):
        """Remove an empty bucket (and its unfinished multipart uploads).

        :raises NoSuchBucket, AccessDenied: as :meth:`bucket`.
        :raises BucketNotEmpty: it holds objects, or an upload is completing.
        """
        bucket = self.bucket(user, name, write=True)
        if bucket.objects or any(u.completing for u in bucket.uploads.values()):
            raise BucketNotEmpty(details={"BucketName": name})
        trash = os.path.join(self.staging_dir, f"deleted-{name}-{secrets.token_hex(4)}")
        os.replace(bucket.path, trash)  # gone at once; removed at leisure
        del self.buckets[name]
        shutil.rmtree(trash, ignore_errors=True)

    def set_bucket_tags(self, bucket, tags):
        """Replace a bucket's tag set (``[(key, value)]``, checked by the
        caller), or remove it (None or ``[]``): ``bucket.json`` is rewritten
        (atomically) first, the bucket in memory changed after.

        :raises NoSuchBucket: the bucket was deleted meanwhile.
        :raises OSError: ``bucket.json`` could not be written (nothing changed).
        """
        if self.buckets.get(bucket.name) is not bucket:
            raise NoSuchBucket(details={"BucketName": bucket.name})
        tags = [tuple(t) for t in tags] if tags else None
        _write_json(os.path.join(bucket.path, "bucket.json"), bucket.document(tags or []))
        bucket.tags = tags

    # -- objects -----------------------------------------------------------------------

    def staging_file(self, prefix="body-"):
        """A new empty file in the staging folder: ``(binary file open for
        writing, path)``. What is written there is moved into place with
        :meth:`put_object` / :meth:`put_part` (same filesystem), or deleted by
        the caller. Start-up empties the staging folder."""
        fd, path = _mkstemp(self.staging_dir, prefix)
        return os.fdopen(fd, "wb"), path

    def get_object(self, bucket, key):
        """The :class:`ObjectInfo` of ``key`` in a :class:`Bucket`.

        :raises NoSuchKey: no such key.
        """
        info = bucket.objects.get(key)
        if info is None:
            raise NoSuchKey(details={"Key": key})
        return info

    def object_path(self, bucket, info):
        """The absolute path of an object's data file."""
        return bucket.data_path(info)

    def object_file(self, user, bucket, key):
        """The absolute path of the data file of object ``bucket/key``, for
        ``user`` (the core user or a uid) to read (e.g. RegisterImage).

        The file is replaced, not rewritten, when the object is overwritten:
        a reader that opened it keeps the version it opened.

        :raises NoSuchBucket: no such bucket.
        :raises AccessDenied: the user may not read the bucket.
        :raises NoSuchKey: no such key.
        """
        b = self.bucket(user, bucket)
        return self.object_path(b, self.get_object(b, key))

    def put_object(self, bucket, key, staged, size, etag, content_type=None, headers=None,
                   meta=None, mtime=None, data=None):
        """Store the staged file ``staged`` (or the bytes ``data``) as
        ``key``, replacing any object of that key: the data file (under a
        new version name), then the sidecar (the commit point), then the
        index; the old version's file is removed last.

        :return: the new :class:`ObjectInfo`.
        """
        digest = bucket.key_hash(key)
        fan = bucket.fan(digest)
        if fan not in bucket.dirs:
            os.makedirs(fan, exist_ok=True)
            bucket.dirs.add(fan)
        name = f"{digest}-{secrets.token_hex(6)}"
        data_path = os.path.join(fan, name)
        if data is not None:  # a new name: nothing reads it before the sidecar names it
            fd = os.open(data_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                _write_all(fd, [data])
            except BaseException:
                os.close(fd)
                _unlink(data_path)
                raise
            os.close(fd)
        else:
            os.replace(staged, data_path)
        info = ObjectInfo(key, size, etag, self.now() if mtime is None else mtime,
                          content_type or "binary/octet-stream", dict(headers or {}),
                          dict(meta or {}), name)
        try:
            _write_json(os.path.join(fan, digest + ".json"), info.document())
        except BaseException:
            _unlink(data_path)
            raise
        old = bucket.objects.get(key)
        bucket.objects[key] = info
        if old is None:
            bisect.insort(bucket.keys, key)
        else:
            _unlink(os.path.join(fan, old.data))
        return info

    def delete_object(self, bucket, key):
        """Remove ``key`` (nothing when absent, as S3). Returns True if it was there."""
        info = bucket.objects.pop(key, None)
        if info is None:
            return False
        i = bisect.bisect_left(bucket.keys, key)
        if i < len(bucket.keys) and bucket.keys[i] == key:
            del bucket.keys[i]
        fan = bucket.fan(info.data[:64])
        _unlink(os.path.join(fan, info.data[:64] + ".json"))
        _unlink(os.path.join(fan, info.data))
        return True

    def list_objects(self, bucket, prefix="", delimiter="", after="", limit=MAX_LIST):
        """A page of a bucket's listing, from the in-memory index.

        :param prefix: only keys starting so.
        :param delimiter: roll keys whose rest (after the prefix) holds it up
            to a common prefix (one entry each).
        :param after: start after this key (marker, start-after, token).
        :param limit: most entries (objects and common prefixes); 0 gives
            nothing, not truncated (as S3 answers ``max-keys=0``).
        :return: ``(objects, prefixes, truncated, last)``: the
            :class:`ObjectInfo` list, the common prefixes, whether more
            follow, and the last entry returned (the next marker).
        """
        if limit <= 0:  # S3: max-keys=0 lists nothing and is not truncated
            return [], [], False, None
        keys = bucket.keys
        i = bisect.bisect_right(keys, after) if after else 0
        if prefix:
            i = max(i, bisect.bisect_left(keys, prefix))
        objects, prefixes = [], []
        last = None
        while i < len(keys):
            key = keys[i]
            if prefix and not key.startswith(prefix):
                break
            if delimiter:
                cut = key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = key[:cut + len(delimiter)]
                    if common == after or (after and after.startswith(common)):
                        i = bisect.bisect_left(keys, _after_prefix(common), i)
                        continue
                    if len(objects) + len(prefixes) >= limit:
                        return objects, prefixes, True, last
                    prefixes.append(common)
                    last = common
                    i = bisect.bisect_left(keys, _after_prefix(common), i)
                    continue
            if len(objects) + len(prefixes) >= limit:
                return objects, prefixes, True, last
            objects.append(bucket.objects[key])
            last = key
            i += 1
        return objects, prefixes, False, last

    # -- multipart ---------------------------------------------------------------------

    def create_upload(self, user, bucket, key, content_type=None, headers=None, meta=None):
        """Start a multipart upload of ``key``; returns the :class:`MultipartUpload`."""
        upload_id = secrets.token_hex(16)
        path = os.path.join(bucket.path, "uploads", upload_id)
        os.makedirs(path)
        upload = MultipartUpload(upload_id, key, _uid(user), getattr(user, "name", ""),
                                 self.now(), content_type or "binary/octet-stream",
                                 dict(headers or {}), dict(meta or {}), path)
        try:
            _write_json(os.path.join(path, "upload.json"), upload.document())
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        bucket.uploads[upload_id] = upload
        return upload

    def upload(self, bucket, upload_id, key=None):
        """The upload ``upload_id`` of a bucket (of ``key`` if given).

        :raises NoSuchUpload: unknown, of another key, or completing.
        """
        upload = bucket.uploads.get(upload_id)
        if upload is None or upload.completing or (key is not None and upload.key != key):
            raise NoSuchUpload(details={"UploadId": upload_id})
        return upload

    def put_part(self, bucket, upload, number, staged, size, etag, data=None):
        """Move a staged part (or write the bytes ``data``) into its upload,
        replacing an earlier part of that number. Returns the :class:`Part`.

        :raises NoSuchUpload: the upload was aborted or completed meanwhile.
        """
        if bucket.uploads.get(upload.upload_id) is not upload or upload.completing:
            raise NoSuchUpload(details={"UploadId": upload.upload_id})
        name = f"{number:05d}-{etag}"
        if data is not None:
            f, staged = self.staging_file()
            try:
                with f:
                    f.write(data)
            except BaseException:
                _unlink(staged)
                raise
        os.replace(staged, os.path.join(upload.path, name))
        old = upload.parts.get(number)
        if old is not None and old.file != name:
            _unlink(os.path.join(upload.path, old.file))
        part = Part(number, etag, size, self.now(), name)
        upload.parts[number] = part
        return part

    def abort_upload(self, bucket, upload):
        """Forget an upload and remove its folder and every part file."""
        bucket.uploads.pop(upload.upload_id, None)
        shutil.rmtree(upload.path, ignore_errors=True)

    def check_parts(self, upload, wanted):
        """The parts a CompleteMultipartUpload names, checked.

        :param wanted: ``[(part number, ETag without quotes)]`` in request order.
        :raises MalformedXML: no part.
        :raises InvalidPartOrder: numbers not strictly ascending.
        :raises InvalidPart: a part not uploaded, or of another ETag.
        :raises EntityTooSmall: a part but the last under :data:`MIN_PART_SIZE`.
        """
        if not wanted:
            raise MalformedXML("The XML you provided was not well-formed or did not "
                               "validate against our published schema (no Part).")
        parts = []
        previous = 0
        for number, etag in wanted:
            if number <= previous:
                raise InvalidPartOrder()
            previous = number
            part = upload.parts.get(number)
            if part is None or part.etag != etag.strip().strip('"').lower():
                raise InvalidPart(details={"UploadId": upload.upload_id,
                                           "PartNumber": number, "ETag": etag})
            parts.append(part)
        for part in parts[:-1]:
            if part.size < MIN_PART_SIZE:
                raise EntityTooSmall(details={"ProposedSize": part.size,
                                              "MinSizeAllowed": MIN_PART_SIZE,
                                              "PartNumber": part.number,
                                              "ETag": part.etag})
        return parts

    def completed_upload(self, bucket, upload_id, key, wanted):
        """The :class:`ObjectInfo` stored by the CompleteMultipartUpload of
        ``upload_id`` if it completed in the last :data:`COMPLETED_MEMORY`
        seconds, for ``key`` and the same parts ``wanted`` (``[(number,
        ETag)]``); else None."""
        done = bucket.completed.get(upload_id)
        if done is None or self.now() - done[3] > COMPLETED_MEMORY:
            return None
        normal = tuple((n, e.strip().strip('"').lower()) for n, e in wanted)
        if done[0] != key or done[1] != normal:
            return None
        return done[2]

    def _remember_completed(self, bucket, upload, parts, info):
        now = self.now()
        completed = bucket.completed
        for upload_id, done in list(completed.items()):
            if now - done[3] <= COMPLETED_MEMORY and len(completed) < COMPLETED_MEMORY_COUNT:
                break
            del completed[upload_id]
        completed[upload.upload_id] = (upload.key, tuple((p.number, p.etag) for p in parts),
                                       info, now)

    async def complete_upload(self, bucket, upload, parts):
        """Join ``parts`` (from :meth:`check_parts`) into the object (in a
        thread), store it and remove the upload.

        :return: the new :class:`ObjectInfo` (ETag: MD5 of the parts' binary
            MD5s, ``-N``).
        """
        upload.completing = True
        fd, staged = _mkstemp(self.staging_dir, "complete-")
        os.close(fd)
        try:
            await threads.deferToThread(
                _concatenate, [os.path.join(upload.path, p.file) for p in parts], staged)
            etag = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in parts),
                               usedforsecurity=False).hexdigest() + f"-{len(parts)}"
            if self.buckets.get(bucket.name) is not bucket:
                raise NoSuchBucket(details={"BucketName": bucket.name})
            info = self.put_object(bucket, upload.key, staged, sum(p.size for p in parts),
                                   etag, upload.content_type, upload.headers, upload.meta)
        except BaseException:
            _unlink(staged)
            upload.completing = False
            raise
        self.abort_upload(bucket, upload)
        self._remember_completed(bucket, upload, parts, info)
        return info

    async def copy_object(self, source_bucket, source, bucket, key, content_type, headers,
                          meta):
        """Copy an object (in a thread) to ``bucket/key``; returns the new
        :class:`ObjectInfo` (same ETag)."""
        fd, staged = _mkstemp(self.staging_dir, "copy-")
        os.close(fd)
        try:
            try:
                await threads.deferToThread(_concatenate,
                                            [self.object_path(source_bucket, source)], staged)
            except FileNotFoundError:  # deleted or replaced meanwhile
                raise NoSuchKey(details={"Key": source.key}) from None
            if self.buckets.get(bucket.name) is not bucket:
                raise NoSuchBucket(details={"BucketName": bucket.name})
            return self.put_object(bucket, key, staged, source.size, source.etag,
                                   content_type, headers, meta)
        except BaseException:
            _unlink(staged)
            raise

    async def copy_part(self, source_bucket, source, first, length, bucket, upload, number):
        """UploadPartCopy: bytes ``first`` to ``first + length - 1`` of the
        object ``source`` (an :class:`ObjectInfo` of ``source_bucket``),
        copied (in a thread) as part ``number`` of ``upload``.

        :return: the new :class:`Part` (ETag: the MD5 of the bytes copied,
            as S3 gives for a copied part).
        :raises NoSuchKey: the source was deleted or replaced meanwhile.
        :raises NoSuchBucket: the upload's bucket was deleted meanwhile.
        :raises NoSuchUpload: the upload was aborted or completed meanwhile.
        """
        fd, staged = _mkstemp(self.staging_dir, "copy-")
        os.close(fd)
        try:
            try:
                md5 = await threads.deferToThread(
                    _copy_range, self.object_path(source_bucket, source), first, length,
                    staged)
            except FileNotFoundError:  # deleted or replaced meanwhile
                raise NoSuchKey(details={"Key": source.key}) from None
            if self.buckets.get(bucket.name) is not bucket:
                raise NoSuchBucket(details={"BucketName": bucket.name})
            return self.put_part(bucket, upload, number, staged, length, md5)
        except BaseException:
            _unlink(staged)
            raise


def _mkstemp(folder, prefix):
    while True:
        path = os.path.join(folder, prefix + secrets.token_hex(8))
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), path
        except FileExistsError:
            continue


def _after_prefix(common):
    """The smallest string after every string starting with ``common``."""
    return common[:-1] + chr(ord(common[-1]) + 1)


# ---------------------------------------------------------------------------
# Streamed bodies


class BodySink:
    """An upload body as it arrives: decoded and verified
    (:func:`~nebtwist.api.awsauth.body_decoder`), MD5 hashed, limited to
    ``limit`` decoded bytes, and kept where :meth:`Repository.put_object`
    / :meth:`Repository.put_part` take it from.

    The front feeds it from the request's ``handleContentChunk``. A body
    announced at most :data:`SMALL_BODY` bytes long stays in memory (one
    file is written, at commit); any other goes to a staging file, written
    by a thread of its own (:class:`_Writer`) while the reactor receives
    and MD5-hashes the next bytes; the connection stops being read while
    more than :data:`_Writer.HIGH` bytes wait to be written, so memory stays
    flat whatever the size.

    :param repository: the :class:`Repository` (its staging folder).
    :param decoder: the body decoder (``feed``/``finish``).
    :param limit: the most decoded bytes.
    :param expected: the decoded size announced (Content-Length or
        ``x-amz-decoded-content-length``), or None.
    :param transport: the connection's transport (paused and resumed), or None.
    :ivar size: decoded bytes received.
    :ivar path: the staging file, or None for a body kept in memory.
    """

    def __init__(self, repository, decoder, limit, expected=None, transport=None):
        self.decoder = decoder
        self.limit = limit
        self.expected = expected
        self.size = 0
        self.done = False
        self.path = None
        self._memory = None
        self._writer = None
        if expected is not None and expected <= SMALL_BODY:
            self._memory = []
            self.md5 = hashlib.md5(usedforsecurity=False)
        else:
            file, self.path = repository.staging_file()
            self._writer = _Writer(file, transport)

    def feed(self, data):
        """Decode the next piece of the body and pass it on.

        :raises EntityTooLarge: more than ``limit`` bytes.
        :raises awsauth.AWSAuthError: a chunk signature or the framing is wrong.
        :raises OSError: the disk refused (an earlier piece).
        """
        out = self.decoder.feed(data)
        if not out:
            return
        self.size += len(out)
        if self.size > self.limit:
            raise EntityTooLarge(details={"MaxSizeAllowed": self.limit})
        if self._memory is not None and self.size > self.expected:
            raise InvalidRequest("The body is longer than its announced length.")
        if self._writer is not None:
            self._writer.put(out)
        else:
            self.md5.update(out)
            self._memory.append(out)

    async def finish(self):
        """The body has ended: check it (signature, SHA256, checksums) and
        wait until it is all on disk.

        :return: the MD5 hex of the body.
        :raises awsauth.AWSAuthError: the body is not what was signed (the
            caller then :meth:`discard` s it).
        :raises OSError: it could not be written.
        """
        self.decoder.finish()
        if self._writer is None:
            return self.md5.hexdigest()
        return await self._writer.close()

    def data(self):
        """The body, when it was kept in memory (else None)."""
        return b"".join(self._memory) if self._memory is not None else None

    def committed(self):
        """The body was stored: nothing to delete."""
        self.done = True

    def discard(self):
        """Forget the body and delete its staging file (unless committed)."""
        if self.done:
            return
        self.done = True
        self._memory = None
        if self._writer is not None:
            self._writer.abort()
        if self.path is not None:
            _unlink(self.path)


class _Writer:
    """Writes a body to its file in a thread of its own, in order, while
    the reactor thread receives and MD5-hashes the next bytes.

    The reactor thread :meth:`put` s pieces (hashing them: ``hashlib``
    releases the GIL, and one thread fewer means fewer GIL hand-overs,
    which cost more than they save); they go to the writing thread in
    batches of about :data:`BATCH` bytes. While more than :data:`HIGH` bytes
    wait to be written the transport is paused; it is resumed below
    :data:`LOW`.
    """

    BATCH = 1024 * 1024
    HIGH = 4 * 1024 * 1024
    LOW = 1024 * 1024

    def __init__(self, file, transport=None):
        from twisted.internet import reactor
        self.reactor = reactor
        self.file = file
        self.transport = transport
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.error = None
        self.queued = 0
        self.paused = False
        self.stopped = False
        self._batch, self._batch_size = [], 0
        self._queue = queue.SimpleQueue()
        self._closed = defer.Deferred()
        threading.Thread(target=self._run, name="s3-body-writer", daemon=True).start()

    def put(self, data):
        if self.error is not None:
            raise self.error
        self.md5.update(data)
        self._batch.append(data)
        self._batch_size += len(data)
        if self._batch_size >= self.BATCH:
            self._flush()

    def _flush(self):
        if self._batch:
            self.queued += self._batch_size
            self._queue.put((self._batch, self._batch_size))
            self._batch, self._batch_size = [], 0
            if self.queued > self.HIGH and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pauseProducing()

    def _drained(self, size, error):
        self.queued -= size
        if error is not None and self.error is None:
            self.error = error
        if self.paused and self.queued < self.LOW:
            self.paused = False
            if not self.stopped and self.transport is not None:
                self.transport.resumeProducing()

    def _run(self):
        fd = self.file.fileno()
        error = None
        while True:
            item = self._queue.get()
            if item is None:
                break
            pieces, size = item
            if error is None and not self.stopped:
                try:
                    _write_all(fd, pieces)
                except OSError as e:
                    error = e
            self.reactor.callFromThread(self._drained, size, error)
        try:
            self.file.close()
        except OSError as e:
            error = error or e
        self.reactor.callFromThread(self._finished, error)

    def _finished(self, error):
        if error is not None and self.error is None:
            self.error = error
        self._closed.callback(None)

    async def close(self):
        """Write what is left, wait for the thread; the MD5 hex.

        :raises OSError: a write failed.
        """
        self._flush()
        self._queue.put(None)
        await self._closed
        if self.error is not None:
            raise self.error
        return self.md5.hexdigest()

    def abort(self):
        """Stop writing (the thread ends and closes the file); a paused
        transport is resumed (the rest of the body may still be read and
        dropped)."""
        if self.stopped:
            return
        self.stopped = True
        self._batch = []
        self._queue.put(None)
        if self.paused:
            self.paused = False
            try:
                self.transport.resumeProducing()
            except Exception:  # noqa: BLE001 - a transport already gone
                pass


def _write_all(fd, pieces):
    """``os.writev`` every piece (all of it, in order)."""
    pieces = [memoryview(p) for p in pieces if len(p)]
    while pieces:
        written = os.writev(fd, pieces[:512])
        while written and pieces:
            n = len(pieces[0])
            if written >= n:
                written -= n
                pieces.pop(0)
            else:
                pieces[0] = pieces[0][written:]
                written = 0


class _Slice:
    """A file object's ``read`` limited to ``length`` bytes from where it is."""

    def __init__(self, f, length):
        self.f, self.remaining = f, length

    def read(self, n):
        n = min(n, self.remaining)
        if n <= 0:
            return b""
        data = self.f.read(n)
        self.remaining -= len(data)
        return data


class _Sender(FileSender):
    CHUNK_SIZE = 256 * 1024


# ---------------------------------------------------------------------------
# What the repository does not do: refused, never acted on


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


# ---------------------------------------------------------------------------
# The resource


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


def _parse_xml(body):
    """The root element of a small XML request body (namespace dropped).

    :raises MalformedXML: not XML.
    """
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        root = etree.fromstring(body, parser)
    except (etree.XMLSyntaxError, ValueError):
        raise MalformedXML() from None
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


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


def _only_children(element, allowed):
    """The child elements of ``element``, each's tag one of ``allowed``.

    :raises MalformedXML: another element, or text between them.
    """
    children = [c for c in element if isinstance(c.tag, str)]
    if any(c.tag not in allowed for c in children) or (element.text or "").strip() \
            or any((c.tail or "").strip() for c in element):
        raise MalformedXML()
    return children


def parse_tagging(body):
    """The tag set of a PutBucketTagging body (API Reference,
    PutBucketTagging: ``<Tagging><TagSet><Tag><Key/><Value/></Tag>...``),
    checked as S3 does: at most :data:`MAX_BUCKET_TAGS` tags, keys of 1 to
    :data:`MAX_TAG_KEY` characters not starting with ``aws:`` (reserved
    for AWS), values of at most :data:`MAX_TAG_VALUE`, no key twice. The
    tags' characters are not restricted further.

    :param body: the request body (bytes).
    :return: ``[(key, value)]`` in the order given (``[]``: no tags).
    :raises MalformedXML: not that document (another element, a Tag
        without Key or Value, two of either).
    :raises BadRequest: more than 50 tags ("Bucket tag count cannot be
        greater than 50").
    :raises InvalidTag: a key or value too long or empty key, an ``aws:``
        key, a key given twice ("Cannot provide multiple Tags with the same
        key").
    """
    root = _parse_xml(body)
    if root.tag != "Tagging":
        raise MalformedXML()
    sets = _only_children(root, {"TagSet"})
    if len(sets) != 1:
        raise MalformedXML()
    tags = []
    for tag in _only_children(sets[0], {"Tag"}):
        fields = _only_children(tag, {"Key", "Value"})
        if sorted(f.tag for f in fields) != ["Key", "Value"] \
                or any(len(f) for f in fields):
            raise MalformedXML()
        tags.append((tag.findtext("Key") or "", tag.findtext("Value") or ""))
    if len(tags) > MAX_BUCKET_TAGS:
        raise BadRequest(f"Bucket tag count cannot be greater than {MAX_BUCKET_TAGS}")
    seen = set()
    for key, value in tags:
        if not key or len(key) > MAX_TAG_KEY:
            raise InvalidTag("The TagKey you have provided is invalid",
                             details={"TagKey": key[:MAX_TAG_KEY]})
        if key.startswith("aws:"):
            raise InvalidTag("The TagKey you have provided is invalid: the aws: prefix is "
                             "reserved for AWS use", details={"TagKey": key})
        if len(value) > MAX_TAG_VALUE:
            raise InvalidTag("The TagValue you have provided is invalid",
                             details={"TagKey": key})
        if key in seen:
            raise InvalidTag("Cannot provide multiple Tags with the same key",
                             details={"TagKey": key})
        seen.add(key)
    return tags


def _response_document(tag):
    return etree.Element(tag, nsmap={None: S3_NS})


def _xml_bytes(root):
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class S3Resource(resource.Resource):
    """Path-style S3 over a :class:`Repository` (see the module docstring).

    :param nebula: the core (users, ``clock``).
    :param repository: the :class:`Repository`.
    :param max_object_size: largest PutObject / UploadPart body, in bytes
        (econe.conf ``MAX_OBJECT_SIZE``).
    :param max_body: largest body of any other S3 request, in bytes
        (econe.conf ``MAX_QUERY_BODY``; CompleteMultipartUpload gets at least
        4 MiB, for 10,000 parts).
    """

    isLeaf = True

    def __init__(self, nebula, repository, max_object_size=DEFAULT_MAX_OBJECT_SIZE,
                 max_body=1024 * 1024):
        super().__init__()
        self.nebula = nebula
        self.repository = repository
        self.max_object_size = max_object_size
        self.max_body = max_body
        self.secret_lookup = awsauth.nebula_secret_lookup(nebula)
        subresource_names()  # read botocore's model at start-up, not on a request

    # -- before the body ---------------------------------------------------------------

    def body_limit(self, request):
        """The most body bytes a non-upload request may send."""
        if request.method == b"POST" and "uploadId" in query_params(request.uri):
            return max(self.max_body, 4 * 1024 * 1024)
        return self.max_body

    def _authenticate(self, request, body=None):
        auth = awsauth.AuthRequest.from_twisted(request, body=body)
        found = awsauth.verify_request(auth, self.secret_lookup, self.nebula.clock.seconds(),
                                       schemes=awsauth.S3_SCHEMES, services=("s3",))
        user = self.nebula.userpool.find(found.access_key)
        if user is None:  # removed meanwhile
            raise AccessDenied()
        return user, auth, found

    def begin_upload(self, request, length):
        """Called by the front once the headers of a request are in
        (``request.method`` and ``request.uri`` set).

        For PutObject and UploadPart: verify the signature, the bucket, its
        owner, the upload and the size, and open the staging file.

        :param length: the body length (Content-Length), or None (chunked).
        :return: a :class:`BodySink` to feed the body to, or None when the
            request is not an upload (its body is handled as usual).
        :raises S3Error: refused (:class:`EntityTooLarge` when too big).
        :raises awsauth.AWSAuthError: the signature is wrong.
        """
        if request.method != b"PUT" or request.requestHeaders.hasHeader(b"x-amz-copy-source"):
            return None
        bucket_name, key = split_path(request.uri)
        if key is None:
            return None
        params = query_params(request.uri)
        part = None
        if "partNumber" in params or "uploadId" in params:
            if "partNumber" not in params or "uploadId" not in params:
                raise InvalidRequest("UploadPart needs both partNumber and uploadId.")
            part = _int_param(params, "partNumber", 1, minimum=1)
            if part > MAX_PART_NUMBER:
                raise InvalidArgument(f"Part number must be an integer between 1 and "
                                      f"{MAX_PART_NUMBER}, inclusive",
                                      details={"ArgumentName": "partNumber",
                                               "ArgumentValue": params["partNumber"]})
        _check_key(key)
        user, auth, found = self._authenticate(request)
        # PUT ?acl, ?retention, SSE-C ...: refused before a byte is stored
        refuse_unimplemented(request, "object", params)
        bucket = self.repository.bucket(user, bucket_name, write=True)
        check_expected_owner(request, bucket)
        upload = self.repository.upload(bucket, params["uploadId"], key) if part else None
        claimed = (_header(request, b"x-amz-content-sha256") or "").strip()
        if claimed in awsauth.STREAMING_MODES:  # aws-chunked: the decoded size
            decoded = (_header(request, b"x-amz-decoded-content-length") or "").strip()
            size = int(decoded) if decoded.isdigit() else None
        else:
            size = length
        if size is None and length is None and not request.requestHeaders.hasHeader(
                b"transfer-encoding"):
            raise MissingContentLength()
        if size is not None and size > self.max_object_size:
            raise EntityTooLarge(details={"ProposedSize": size,
                                          "MaxSizeAllowed": self.max_object_size})
        md5 = _header(request, b"content-md5")
        if md5 is not None:
            _md5_header(md5)
        decoder = awsauth.body_decoder(auth, found.sigv4)
        meta = None if part else _user_metadata(request)
        transport = getattr(getattr(request, "channel", None), "transport", None)
        sink = BodySink(self.repository, decoder, self.max_object_size, size, transport)
        sink.context = (user, bucket, key, upload, part, meta)
        return sink

    # -- rendering ---------------------------------------------------------------------

    def render(self, request):
        d = defer.ensureDeferred(self._handle(request))

        def unexpected(f):
            log.failure("S3 request failed", f)
            if not request.finished and not request._disconnected:
                request.setResponseCode(500)
                request.finish()
        d.addErrback(unexpected)
        return server.NOT_DONE_YET

    def error_response(self, request, error, request_id=None):
        """``(status, headers, body)`` of an S3 error for ``request`` (an
        :class:`S3Error` or :class:`~nebtwist.api.awsauth.AWSAuthError`)."""
        error = s3_error(error)
        request_id = request_id or _request_id()
        path = bytes(request.uri).partition(b"?")[0].decode("utf-8", "replace")
        body = b"" if request.method == b"HEAD" else error_document(error, path, request_id)
        headers = [(b"x-amz-request-id", request_id.encode()),
                   (b"content-type", b"application/xml")]
        return error.status, headers, body

    async def _handle(self, request):
        request_id = _request_id()
        sink = getattr(request, "sink", None)
        try:
            refused = getattr(request, "refused", None)
            if refused is not None:
                raise refused
            await self._dispatch(request, request_id, sink)
        except (S3Error, awsauth.AWSAuthError) as e:
            self._send_error(request, e, request_id)
        except Exception:
            log.failure("S3 request {id} failed", id=request_id)
            self._send_error(request, S3Error(), request_id)
        finally:
            if sink is not None:
                sink.discard()

    def _gone(self, request):
        return request.finished or request._disconnected

    def _send_error(self, request, error, request_id):
        if self._gone(request):
            return
        status, headers, body = self.error_response(request, error, request_id)
        request.setResponseCode(status)
        for name, value in headers:
            request.setHeader(name, value)
        request.setHeader(b"content-length", b"%d" % len(body))
        if body:
            request.write(body)
        request.finish()

    def _send(self, request, request_id, status=200, body=b"", headers=()):
        if self._gone(request):
            return
        request.setResponseCode(status)
        request.setHeader(b"x-amz-request-id", request_id.encode())
        for name, value in headers:
            request.setHeader(name, value)
        if body:
            request.setHeader(b"content-type", b"application/xml")
        if status != 204:
            request.setHeader(b"content-length", b"%d" % len(body))
        if body and request.method != b"HEAD":
            request.write(body)
        request.finish()

    def _send_xml(self, request, request_id, root, headers=()):
        self._send(request, request_id, 200, _xml_bytes(root), headers)

    def _body(self, request):
        if request.content is None:
            return b""
        request.content.seek(0)
        return request.content.read()

    async def _dispatch(self, request, request_id, sink):
        method = request.method
        if sink is not None:
            return await self._finish_upload(request, request_id, sink)
        bucket_name, key = split_path(request.uri)
        params = query_params(request.uri)
        if method == b"PUT" and key is not None \
                and not request.requestHeaders.hasHeader(b"x-amz-copy-source"):
            # An upload whose headers the front did not see first (a channel
            # other than Twisted's HTTP/1.1 one): Twisted collected the body;
            # it goes through the same checks from there.
            content = request.content
            length = 0
            if content is not None:
                length = content.seek(0, os.SEEK_END)
                content.seek(0)
            sink = self.begin_upload(request, length)
            try:
                for piece in iter(lambda: content.read(1024 * 1024) if content else b"", b""):
                    sink.feed(piece)
                return await self._finish_upload(request, request_id, sink)
            finally:
                sink.discard()
        body = self._body(request)
        if len(body) > self.body_limit(request):
            raise MaxMessageLengthExceeded(details={"MaxMessageLengthBytes":
                                                    self.body_limit(request)})
        user, auth, found = self._authenticate(request, body)
        if method not in (b"GET", b"HEAD", b"PUT", b"POST", b"DELETE"):
            raise MethodNotAllowed()
        refuse_unimplemented(request, "service" if bucket_name is None else
                             "bucket" if key is None else "object", params)
        existing = self.repository.buckets.get(bucket_name) if bucket_name else None
        if existing is not None:
            check_expected_owner(request, existing)
        if body:  # checksums (Content-MD5, x-amz-checksum-*), an aws-chunked frame
            decoder = awsauth.body_decoder(auth, found.sigv4)
            body = decoder.feed(body)
            decoder.finish()
        if bucket_name is None:
            if method not in (b"GET", b"HEAD"):
                raise MethodNotAllowed()
            return self._list_buckets(request, request_id, user, params)
        if key is None:
            return await self._bucket_op(request, request_id, user, bucket_name, params, body)
        _check_key(key)
        return await self._object_op(request, request_id, user, bucket_name, key, params, body)

    # -- service and bucket operations -------------------------------------------------

    def _list_buckets(self, request, request_id, user, params):
        """ListBuckets (API Reference, ListBuckets): ``max-buckets`` (1 to
        10,000; without it every bucket), ``continuation-token`` (the
        ``ContinuationToken`` of the previous page: the next page starts
        after that bucket), ``prefix``, ``bucket-region``."""
        prefix = params.get("prefix", "")
        region = params.get("bucket-region")
        limit = _int_param(params, "max-buckets", None, minimum=1)
        if limit is not None and limit > MAX_BUCKETS_LIST:
            raise InvalidArgument(f"max-buckets must be between 1 and {MAX_BUCKETS_LIST}",
                                  details={"ArgumentName": "max-buckets",
                                           "ArgumentValue": params["max-buckets"]})
        after = ""
        token = params.get("continuation-token")
        if token is not None:
            try:
                after = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
            except (ValueError, UnicodeError):
                after = None
            if not after:
                raise InvalidArgument("The continuation token provided is incorrect",
                                      details={"ArgumentName": "continuation-token"})
        chosen = [b for b in self.repository.buckets_of(user)
                  if b.name.startswith(prefix) and b.name > after
                  and (region is None or (b.location or "us-east-1") == region)]
        more = limit is not None and len(chosen) > limit
        if limit is not None:
            chosen = chosen[:limit]
        root = _response_document("ListAllMyBucketsResult")
        owner = _sub(root, "Owner")
        _sub(owner, "ID", user.oid)
        _sub(owner, "DisplayName", user.name)
        buckets = _sub(root, "Buckets")
        for bucket in chosen:
            item = _sub(buckets, "Bucket")
            _sub(item, "Name", bucket.name)
            _sub(item, "CreationDate", _iso(bucket.created))
            _sub(item, "BucketRegion", bucket.location or "us-east-1")
        if more:
            _sub(root, "ContinuationToken",
                 base64.urlsafe_b64encode(chosen[-1].name.encode("utf-8")).decode("ascii"))
        if "prefix" in params:
            _sub(root, "Prefix", prefix)
        self._send_xml(request, request_id, root)

    async def _bucket_op(self, request, request_id, user, name, params, body):
        method = request.method
        repo = self.repository
        if "tagging" in params:
            return self._bucket_tagging(request, request_id, user, name, body)
        if method == b"PUT":
            location = ""
            if body.strip():
                root = _parse_xml(body)
                if root.tag != "CreateBucketConfiguration":
                    raise MalformedXML()
                other = [el.tag for el in root if isinstance(el.tag, str)
                         and el.tag != "LocationConstraint"]
                if other:  # Location, Bucket (directory buckets), Tags ...
                    raise NotImplementedHere(f"CreateBucketConfiguration/{other[0]} is not "
                                             "implemented.")
                location = (root.findtext("LocationConstraint") or "").strip()
            repo.create_bucket(user, name, location)
            return self._send(request, request_id, headers=[(b"location", f"/{name}".encode())])
        if method == b"DELETE":
            repo.delete_bucket(user, name)
            return self._send(request, request_id, 204)
        if method == b"POST":
            if "delete" in params:
                return self._delete_objects(request, request_id, user, name, body)
            raise MethodNotAllowed()
        if method not in (b"GET", b"HEAD"):
            raise MethodNotAllowed()
        bucket = repo.bucket(user, name)
        if method == b"HEAD":
            return self._send(request, request_id, headers=[
                (b"x-amz-bucket-region", (bucket.location or "us-east-1").encode())])
        if "location" in params:
            root = _response_document("LocationConstraint")
            if bucket.location:
                root.text = bucket.location
            return self._send_xml(request, request_id, root)
        if "uploads" in params:
            return self._list_uploads(request, request_id, bucket, params)
        return self._list_objects(request, request_id, bucket, params)

    def _list_objects(self, request, request_id, bucket, params):
        v2 = params.get("list-type") == "2"
        if params.get("list-type") not in (None, "1", "2"):
            raise InvalidArgument("Invalid list-type.")
        encoding = params.get("encoding-type")
        if encoding not in (None, "url"):
            raise InvalidArgument("Invalid Encoding Method specified in Request",
                                  details={"ArgumentName": "encoding-type",
                                           "ArgumentValue": encoding})
        enc = _url if encoding == "url" else (lambda s: s)
        prefix = params.get("prefix", "")
        delimiter = params.get("delimiter", "")
        limit = _int_param(params, "max-keys", MAX_LIST, MAX_LIST)
        if v2:
            token = params.get("continuation-token")
            start_after = params.get("start-after", "")
            after = start_after
            if token is not None:
                # an empty token (or one naming no key) is no token S3 gave:
                # InvalidArgument, as S3 answers, not the first page again
                try:
                    after = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
                except (ValueError, UnicodeError):
                    after = ""
                if not after:
                    raise InvalidArgument("The continuation token provided is incorrect",
                                          details={"ArgumentName": "continuation-token"})
        else:
            after = params.get("marker", "")
        objects, prefixes, truncated, last = self.repository.list_objects(
            bucket, prefix, delimiter, after, limit)
        root = _response_document("ListBucketResult")
        _sub(root, "Name", bucket.name)
        _sub(root, "Prefix", enc(prefix) if v2 else prefix)
        if v2:
            if token is not None:
                _sub(root, "ContinuationToken", token)
            if start_after:
                _sub(root, "StartAfter", enc(start_after))
            _sub(root, "KeyCount", len(objects) + len(prefixes))
        else:
            _sub(root, "Marker", enc(after))
        _sub(root, "MaxKeys", limit)
        if delimiter:
            _sub(root, "Delimiter", enc(delimiter))
        if encoding:
            _sub(root, "EncodingType", encoding)
        _sub(root, "IsTruncated", "true" if truncated else "false")
        if truncated and last is not None:
            if v2:
                _sub(root, "NextContinuationToken",
                     base64.urlsafe_b64encode(last.encode("utf-8")).decode("ascii"))
            else:
                _sub(root, "NextMarker", enc(last))
        owner_id, owner_name = str(bucket.owner), bucket.owner_name
        for info in objects:
            item = _sub(root, "Contents")
            _sub(item, "Key", enc(info.key))
            _sub(item, "LastModified", _iso(info.mtime))
            _sub(item, "ETag", _quote_etag(info.etag))
            _sub(item, "Size", info.size)
            if not v2 or params.get("fetch-owner") == "true":
                owner = _sub(item, "Owner")
                _sub(owner, "ID", owner_id)
                _sub(owner, "DisplayName", owner_name)
            _sub(item, "StorageClass", "STANDARD")
        for common in prefixes:
            _sub(_sub(root, "CommonPrefixes"), "Prefix", enc(common))
        self._send_xml(request, request_id, root)

    def _list_uploads(self, request, request_id, bucket, params):
        prefix = params.get("prefix", "")
        key_marker = params.get("key-marker", "")
        id_marker = params.get("upload-id-marker", "")
        limit = _int_param(params, "max-uploads", MAX_LIST, MAX_LIST)
        uploads = sorted((u for u in bucket.uploads.values()
                          if u.key.startswith(prefix) and not u.completing),
                         key=lambda u: (u.key, u.initiated, u.upload_id))
        if key_marker:
            uploads = [u for u in uploads if u.key > key_marker or
                       (u.key == key_marker and id_marker and u.upload_id > id_marker)]
        page, truncated = uploads[:limit], len(uploads) > limit
        root = _response_document("ListMultipartUploadsResult")
        _sub(root, "Bucket", bucket.name)
        _sub(root, "KeyMarker", key_marker)
        _sub(root, "UploadIdMarker", id_marker)
        if truncated and page:
            _sub(root, "NextKeyMarker", page[-1].key)
            _sub(root, "NextUploadIdMarker", page[-1].upload_id)
        _sub(root, "Prefix", prefix)
        _sub(root, "MaxUploads", limit)
        _sub(root, "IsTruncated", "true" if truncated else "false")
        for upload in page:
            item = _sub(root, "Upload")
            _sub(item, "Key", upload.key)
            _sub(item, "UploadId", upload.upload_id)
            for tag in ("Initiator", "Owner"):
                who = _sub(item, tag)
                _sub(who, "ID", upload.owner)
                _sub(who, "DisplayName", upload.owner_name)
            _sub(item, "StorageClass", "STANDARD")
            _sub(item, "Initiated", _iso(upload.initiated))
        self._send_xml(request, request_id, root)

    def _bucket_tagging(self, request, request_id, user, name, body):
        """PutBucketTagging, GetBucketTagging, DeleteBucketTagging (API
        Reference). PUT replaces the whole tag set (:func:`parse_tagging`;
        Content-MD5 or an ``x-amz-checksum-*`` required, as S3; an empty
        TagSet removes it) and answers 204, as DELETE does; GET of a bucket
        without tags is ``NoSuchTagSet`` (404).

        :raises NoSuchBucket, AccessDenied: as :meth:`Repository.bucket`
            (only the owner changes tags; oneadmin may read them).
        :raises InvalidTag, BadRequest, MalformedXML, InvalidRequest: a PUT refused.
        """
        method = request.method
        repo = self.repository
        if method == b"GET":
            bucket = repo.bucket(user, name)
            if not bucket.tags:
                raise NoSuchTagSet(details={"BucketName": name})
            root = _response_document("Tagging")
            tag_set = _sub(root, "TagSet")
            for key, value in bucket.tags:
                tag = _sub(tag_set, "Tag")
                _sub(tag, "Key", key)
                _sub(tag, "Value", value)
            return self._send_xml(request, request_id, root)
        if method == b"PUT":
            _require_checksum(request)
            bucket = repo.bucket(user, name, write=True)
            repo.set_bucket_tags(bucket, parse_tagging(body))
            return self._send(request, request_id, 204)
        if method == b"DELETE":
            bucket = repo.bucket(user, name, write=True)
            if bucket.tags:
                repo.set_bucket_tags(bucket, None)
            return self._send(request, request_id, 204)
        raise MethodNotAllowed()

    def _delete_objects(self, request, request_id, user, name, body):
        _require_checksum(request)
        bucket = self.repository.bucket(user, name, write=True)
        root = _parse_xml(body)
        if root.tag != "Delete":
            raise MalformedXML()
        quiet = (root.findtext("Quiet") or "").strip().lower() == "true"
        keys = [el.findtext("Key") for el in root.findall("Object")]
        if len(keys) > MAX_LIST or any(k is None for k in keys):
            raise MalformedXML()
        for el in root.findall("Object"):
            other = [c.tag for c in el if isinstance(c.tag, str) and c.tag != "Key"]
            if other:  # VersionId, ETag, LastModifiedTime, Size: not what we would delete
                raise NotImplementedHere(f"Delete/Object/{other[0]} is not implemented.")
        result = _response_document("DeleteResult")
        for key in keys:
            try:
                _check_key(key)
                self.repository.delete_object(bucket, key)
            except S3Error as e:
                item = _sub(result, "Error")
                _sub(item, "Key", key)
                _sub(item, "Code", e.code)
                _sub(item, "Message", e.message)
                continue
            if not quiet:
                _sub(_sub(result, "Deleted"), "Key", key)
        self._send_xml(request, request_id, result)

    # -- object operations -------------------------------------------------------------

    async def _object_op(self, request, request_id, user, bucket_name, key, params, body):
        method = request.method
        repo = self.repository
        # sub-resources, query parameters and headers: refuse_unimplemented
        if method in (b"GET", b"HEAD"):
            bucket = repo.bucket(user, bucket_name)
            if "uploadId" in params and method == b"GET":
                return self._list_parts(request, request_id, bucket, key, params)
            return self._get_object(request, request_id, bucket, key, params)
        bucket = repo.bucket(user, bucket_name, write=True)
        if method == b"PUT":
            if "partNumber" in params or "uploadId" in params:
                return await self._upload_part_copy(request, request_id, user, bucket, key,
                                                    params)
            return await self._copy_object(request, request_id, user, bucket, key)
        if method == b"DELETE":
            if "uploadId" in params:
                upload = repo.upload(bucket, params["uploadId"], key)
                repo.abort_upload(bucket, upload)
            else:
                repo.delete_object(bucket, key)
            return self._send(request, request_id, 204)
        if method == b"POST":
            if "uploads" in params:
                upload = repo.create_upload(user, bucket, key, _header(request, b"content-type"),
                                            _stored_headers(request), _user_metadata(request))
                root = _response_document("InitiateMultipartUploadResult")
                _sub(root, "Bucket", bucket.name)
                _sub(root, "Key", key)
                _sub(root, "UploadId", upload.upload_id)
                return self._send_xml(request, request_id, root)
            if "uploadId" in params:
                return await self._complete(request, request_id, bucket, key, params, body)
        raise MethodNotAllowed()

    async def _finish_upload(self, request, request_id, sink):
        user, bucket, key, upload, part, meta = sink.context
        md5 = await sink.finish()
        if upload is not None:
            stored = self.repository.put_part(bucket, upload, part, sink.path, sink.size, md5,
                                              data=sink.data())
            sink.committed()
            return self._send(request, request_id, headers=[
                (b"etag", _quote_etag(stored.etag).encode())])
        if self.repository.buckets.get(bucket.name) is not bucket:
            raise NoSuchBucket(details={"BucketName": bucket.name})
        info = self.repository.put_object(bucket, key, sink.path, sink.size, md5,
                                          _header(request, b"content-type"),
                                          _stored_headers(request), meta, data=sink.data())
        sink.committed()
        self._send(request, request_id, headers=[(b"etag", _quote_etag(info.etag).encode())])

    def _list_parts(self, request, request_id, bucket, key, params):
        """ListParts (API Reference): at most ``max-parts`` parts (default
        and largest 1,000; 0 lists none, not truncated, as ``max-keys=0``)
        after ``part-number-marker``; ``NextPartNumberMarker`` is always
        there (the last part listed, else the marker: 0 for an upload with
        no part, as S3 answers), ``IsTruncated`` when more follow.

        :raises NoSuchUpload: no such upload of this key.
        :raises InvalidArgument: ``max-parts`` or ``part-number-marker`` not
            an integer from 0 to 2,147,483,647.
        """
        upload = self.repository.upload(bucket, params["uploadId"], key)
        marker = _int_param(params, "part-number-marker", 0)
        limit = _int_param(params, "max-parts", MAX_LIST, MAX_LIST)
        numbers = sorted(n for n in upload.parts if n > marker)
        page, truncated = numbers[:limit], limit > 0 and len(numbers) > limit
        root = _response_document("ListPartsResult")
        _sub(root, "Bucket", bucket.name)
        _sub(root, "Key", key)
        _sub(root, "UploadId", upload.upload_id)
        for tag in ("Initiator", "Owner"):
            who = _sub(root, tag)
            _sub(who, "ID", upload.owner)
            _sub(who, "DisplayName", upload.owner_name)
        _sub(root, "StorageClass", "STANDARD")
        _sub(root, "PartNumberMarker", marker)
        _sub(root, "NextPartNumberMarker", page[-1] if page else marker)
        _sub(root, "MaxParts", limit)
        _sub(root, "IsTruncated", "true" if truncated else "false")
        for number in page:
            part = upload.parts[number]
            item = _sub(root, "Part")
            _sub(item, "PartNumber", number)
            _sub(item, "LastModified", _iso(part.mtime))
            _sub(item, "ETag", _quote_etag(part.etag))
            _sub(item, "Size", part.size)
        self._send_xml(request, request_id, root)

    async def _complete(self, request, request_id, bucket, key, params, body):
        """CompleteMultipartUpload; the same request again, shortly after it
        succeeded, gets the same success (:meth:`Repository.completed_upload`)."""
        root = _parse_xml(body)
        if root.tag != "CompleteMultipartUpload":
            raise MalformedXML()
        wanted = []
        for el in root.findall("Part"):
            number, etag = el.findtext("PartNumber"), el.findtext("ETag")
            if number is None or etag is None or not number.strip().isdigit():
                raise MalformedXML()
            wanted.append((int(number), etag))
        info = None
        if params["uploadId"] not in bucket.uploads:
            info = self.repository.completed_upload(bucket, params["uploadId"], key, wanted)
        if info is None:
            upload = self.repository.upload(bucket, params["uploadId"], key)
            parts = self.repository.check_parts(upload, wanted)
            info = await self.repository.complete_upload(bucket, upload, parts)
        result = _response_document("CompleteMultipartUploadResult")
        host = _header(request, b"host") or ""
        scheme = "https" if request.isSecure() else "http"
        _sub(result, "Location", f"{scheme}://{host}/{bucket.name}/{quote(key, safe='/~')}")
        _sub(result, "Bucket", bucket.name)
        _sub(result, "Key", key)
        _sub(result, "ETag", _quote_etag(info.etag))
        self._send_xml(request, request_id, result)

    def _copy_source(self, request, user):
        """The ``x-amz-copy-source`` object of CopyObject and UploadPartCopy
        (``bucket/key``, percent-encoded, a leading ``/`` allowed), which
        ``user`` may read, its ``x-amz-copy-source-if-*`` conditions met.

        :return: ``(source Bucket, ObjectInfo)``.
        :raises MethodNotAllowed: no such header.
        :raises InvalidArgument: not ``bucket/key``, or not UTF-8.
        :raises NotImplementedHere: a ``?versionId=`` (no versions here).
        :raises NoSuchBucket, AccessDenied, NoSuchKey: the source.
        :raises PreconditionFailed: a condition failed.
        """
        source = _header(request, b"x-amz-copy-source")
        if source is None:
            raise MethodNotAllowed()
        path = source.partition("?")[0]
        try:
            path = unquote_to_bytes(path.encode("latin-1")).decode("utf-8")
        except (UnicodeError, ValueError):
            raise InvalidArgument("Invalid copy source encoding.") from None
        src_bucket_name, _, src_key = path.lstrip("/").partition("/")
        if not src_bucket_name or not src_key:
            raise InvalidArgument("Copy Source must mention the source bucket and key: "
                                  "sourcebucket/sourcekey",
                                  details={"ArgumentName": "x-amz-copy-source",
                                           "ArgumentValue": source})
        if "?" in source:  # ?versionId=: no versions here
            raise NotImplementedHere("A version of the copy source is not implemented.",
                                     details={"Header": "x-amz-copy-source"})
        src_bucket = self.repository.bucket(user, src_bucket_name)
        check_expected_owner(request, src_bucket, b"x-amz-source-expected-bucket-owner")
        src = self.repository.get_object(src_bucket, src_key)
        self._check_conditions(request, src, prefix=b"x-amz-copy-source-if-")
        return src_bucket, src

    async def _upload_part_copy(self, request, request_id, user, bucket, key, params):
        """UploadPartCopy (API Reference): part ``partNumber`` of upload
        ``uploadId`` copied from the ``x-amz-copy-source`` object (its
        ``x-amz-copy-source-if-*`` conditions as CopyObject's), all of it or
        the ``x-amz-copy-source-range`` ``bytes=first-last`` (zero-based,
        inclusive). Answers ``<CopyPartResult>`` with the part's ETag (the
        MD5 of the bytes copied) and LastModified.

        :raises InvalidRequest: partNumber or uploadId missing; more than
            the largest object size to copy.
        :raises InvalidArgument: a part number outside 1 to 10,000; a range
            not of that form ("The x-amz-copy-source-range value must be of
            the form bytes=first-last ..."), or not within the source
            ("Range specified is not valid for source object of size: N").
        :raises NoSuchUpload, NoSuchKey, NoSuchBucket, AccessDenied,
            PreconditionFailed: as S3.
        """
        if "partNumber" not in params or "uploadId" not in params:
            raise InvalidRequest("UploadPartCopy needs both partNumber and uploadId.")
        number = _int_param(params, "partNumber", 1, minimum=1)
        if number > MAX_PART_NUMBER:
            raise InvalidArgument(f"Part number must be an integer between 1 and "
                                  f"{MAX_PART_NUMBER}, inclusive",
                                  details={"ArgumentName": "partNumber",
                                           "ArgumentValue": params["partNumber"]})
        upload = self.repository.upload(bucket, params["uploadId"], key)
        src_bucket, src = self._copy_source(request, user)
        first, length = 0, src.size
        wanted = _header(request, b"x-amz-copy-source-range")
        if wanted is not None:
            m = _COPY_RANGE.match(wanted.strip())
            if m is None or int(m.group(1)) > int(m.group(2)):
                raise InvalidArgument(
                    "The x-amz-copy-source-range value must be of the form bytes=first-last "
                    "where first and last are the zero-based offsets of the first and last "
                    "bytes to copy", details={"ArgumentName": "x-amz-copy-source-range",
                                              "ArgumentValue": wanted})
            first, last = int(m.group(1)), int(m.group(2))
            if last >= src.size:
                raise InvalidArgument(f"Range specified is not valid for source object of "
                                      f"size: {src.size}",
                                      details={"ArgumentName": "x-amz-copy-source-range",
                                               "ArgumentValue": wanted})
            length = last - first + 1
        if length > self.max_object_size:
            raise InvalidRequest(f"The specified copy source is larger than the maximum "
                                 f"allowable size for a copy source: {self.max_object_size}")
        part = await self.repository.copy_part(src_bucket, src, first, length, bucket, upload,
                                               number)
        root = _response_document("CopyPartResult")
        _sub(root, "LastModified", _iso(part.mtime))
        _sub(root, "ETag", _quote_etag(part.etag))
        self._send_xml(request, request_id, root)

    async def _copy_object(self, request, request_id, user, bucket, key):
        if request.requestHeaders.hasHeader(b"x-amz-copy-source-range"):
            # a range is UploadPartCopy's: not the whole object copied instead
            raise NotImplementedHere("x-amz-copy-source-range is implemented for "
                                     "UploadPartCopy only, not CopyObject.",
                                     details={"Header": "x-amz-copy-source-range"})
        src_bucket, src = self._copy_source(request, user)
        src_key = src.key
        directive = (_header(request, b"x-amz-metadata-directive") or "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise InvalidArgument("Unknown metadata directive.")
        if directive == "COPY":
            if src_bucket is bucket and src_key == key:
                raise InvalidRequest(
                    "This copy request is illegal because it is trying to copy an object to "
                    "itself without changing the object's metadata, storage class, website "
                    "redirect location or encryption attributes.")
            content_type, headers, meta = src.content_type, src.headers, src.meta
        else:
            content_type = _header(request, b"content-type")
            headers, meta = _stored_headers(request), _user_metadata(request)
        info = await self.repository.copy_object(src_bucket, src, bucket, key, content_type,
                                                 headers, meta)
        root = _response_document("CopyObjectResult")
        _sub(root, "LastModified", _iso(info.mtime))
        _sub(root, "ETag", _quote_etag(info.etag))
        self._send_xml(request, request_id, root)

    def _check_conditions(self, request, info, prefix=b"if-"):
        """``If-Match``, ``If-None-Match``, ``If-Modified-Since``,
        ``If-Unmodified-Since`` (or, ``prefix`` being
        ``x-amz-copy-source-if-``, their copy source forms).

        :return: True when the answer is 304 Not Modified (GET/HEAD).
        :raises PreconditionFailed: If-Match / If-Unmodified-Since fail.
        """
        etag = info.etag

        def tags(value):
            return {t.strip().strip('"') for t in value.split(",")}

        def when(value):
            try:
                return parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError, IndexError):
                return None

        match = _header(request, prefix + b"match")
        none_match = _header(request, prefix + b"none-match")
        modified = _header(request, prefix + b"modified-since")
        unmodified = _header(request, prefix + b"unmodified-since")
        if match is not None and etag not in tags(match) and "*" not in tags(match):
            raise PreconditionFailed(details={"Condition": "If-Match"})
        if match is None and unmodified is not None:
            t = when(unmodified)
            if t is not None and int(info.mtime) > t:
                raise PreconditionFailed(details={"Condition": "If-Unmodified-Since"})
        not_modified = False
        if none_match is not None:
            if etag in tags(none_match) or "*" in tags(none_match):
                not_modified = True
        elif modified is not None:
            t = when(modified)
            if t is not None and int(info.mtime) <= t:
                not_modified = True
        if not_modified and prefix != b"if-":
            raise PreconditionFailed(details={"Condition": "x-amz-copy-source-If-None-Match"})
        return not_modified

    def _get_object(self, request, request_id, bucket, key, params):
        info = self.repository.get_object(bucket, key)
        headers = [(b"etag", _quote_etag(info.etag).encode()),
                   (b"last-modified", _http_date(info.mtime).encode()),
                   (b"accept-ranges", b"bytes"),
                   (b"content-type", info.content_type.encode("latin-1", "replace"))]
        for name, value in info.headers.items():
            headers.append((name.encode(), value.encode("latin-1", "replace")))
        for name, value in info.meta.items():
            headers.append((name.encode("latin-1"), value.encode("utf-8")))
        if request.method == b"GET":
            for name, header in RESPONSE_OVERRIDES.items():
                if name in params:
                    headers.append((header, params[name].encode("utf-8")))
        if self._check_conditions(request, info):
            request.setResponseCode(304)
            request.setHeader(b"x-amz-request-id", request_id.encode())
            for name, value in headers[:2]:
                request.setHeader(name, value)
            request.finish()
            return
        first, last = 0, info.size - 1
        status = 200
        range_header = _header(request, b"range")
        if range_header is not None:
            try:
                wanted = parse_range(range_header, info.size)
            except InvalidRange:
                request.setHeader(b"content-range", b"bytes */%d" % info.size)
                raise
            if wanted is not None:
                first, last = wanted
                status = 206
                headers.append((b"content-range",
                                b"bytes %d-%d/%d" % (first, last, info.size)))
        length = max(0, last - first + 1)
        request.setResponseCode(status)
        request.setHeader(b"x-amz-request-id", request_id.encode())
        for name, value in headers:
            request.setHeader(name, value)
        request.setHeader(b"content-length", b"%d" % length)
        if request.method == b"HEAD" or length == 0:
            request.finish()
            return
        path = self.repository.object_path(bucket, info)
        f = open(path, "rb")  # noqa: SIM115 - closed when sent
        if length <= SMALL_OBJECT:
            with f:
                f.seek(first)
                data = f.read(length)
            request.write(data)
            request.finish()
            return
        f.seek(first)
        d = _Sender().beginFileTransfer(_Slice(f, length), request)

        def sent(_):
            f.close()
            if not request._disconnected and not request.finished:
                request.finish()

        def stopped(failure):  # the client went away
            f.close()
        d.addCallbacks(sent, stopped)


_REQUEST_IDS = itertools.count(1)
_REQUEST_PREFIX = secrets.token_hex(4).upper()


def _request_id():
    """A request id: this process's random prefix and a counter (16 hex digits)."""
    return f"{_REQUEST_PREFIX}{next(_REQUEST_IDS) & 0xFFFFFFFF:08X}"


__all__ = ["S3Error", "NoSuchBucket", "NoSuchKey", "NoSuchUpload", "AccessDenied",
           "Repository", "S3Resource", "BodySink", "error_document", "s3_error",
           "split_path", "valid_bucket_name", "parse_range"]
