"""The S3 front's twisted.web resource: authentication, routing, answers.

:class:`S3Resource` serves path-style S3 (``/bucket/key``) over a
:class:`~nebtwist.api.s3.store.Repository`: it authenticates each request
(:func:`nebtwist.api.awsauth.verify_request` with
:data:`~nebtwist.api.awsauth.S3_SCHEMES`), refuses what the repository does
not do (:mod:`nebtwist.api.s3.subresources`), routes to the service,
bucket and object operations (the latter in
:class:`~nebtwist.api.s3.object_ops.ObjectOperations`) and renders the
answers and ``<Error>`` documents, as the Amazon S3 API Reference
(2006-03-01) describes them. Upload bodies are verified as they stream to
disk: the front (:mod:`nebtwist.api.front`) calls
:meth:`S3Resource.begin_upload` as soon as the headers are in, so a refused
request stores nothing.
"""

import base64
import itertools
import os
import secrets

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from nebtwist.api import awsauth
from nebtwist.api.s3.body import BodySink
from nebtwist.api.s3.errors import (AccessDenied, EntityTooLarge, InvalidArgument,
                                    InvalidRequest, MalformedXML, MaxMessageLengthExceeded,
                                    MethodNotAllowed, MissingContentLength, NoSuchTagSet,
                                    NotImplementedHere, S3Error, s3_error)
from nebtwist.api.s3.object_ops import ObjectOperations
from nebtwist.api.s3.params import (MAX_PART_NUMBER, _check_key, _header, _int_param,
                                    _md5_header, _require_checksum, _user_metadata,
                                    query_params, split_path)
from nebtwist.api.s3.store import MAX_LIST
from nebtwist.api.s3.subresources import (check_expected_owner, refuse_unimplemented,
                                          subresource_names)
from nebtwist.api.s3.wire import (_iso, _parse_xml, _quote_etag, _response_document, _sub,
                                  _url, _xml_bytes, error_document, parse_tagging)

log = Logger()


#: Default largest body of one PutObject or UploadPart, in bytes (AWS: 5 GiB).
DEFAULT_MAX_OBJECT_SIZE = 5 * 1024 ** 3
#: Largest max-buckets of ListBuckets (AWS: 10,000).
MAX_BUCKETS_LIST = 10000


class S3Resource(ObjectOperations, resource.Resource):
    """Path-style S3 over a :class:`Repository` (see the module docstring).

    :param requests: the core's requests layer (signature secrets, users, the
        clock: :class:`nebtwist.core.requests_access.AccessRequests`).
    :param repository: the :class:`Repository`.
    :param max_object_size: largest PutObject / UploadPart body, in bytes
        (econe.conf ``MAX_OBJECT_SIZE``).
    :param max_body: largest body of any other S3 request, in bytes
        (econe.conf ``MAX_QUERY_BODY``; CompleteMultipartUpload gets at least
        4 MiB, for 10,000 parts).
    """

    isLeaf = True

    def __init__(self, requests, repository, max_object_size=DEFAULT_MAX_OBJECT_SIZE,
                 max_body=1024 * 1024):
        super().__init__()
        self.requests = requests
        self.repository = repository
        self.max_object_size = max_object_size
        self.max_body = max_body
        self.secret_lookup = requests.user_secret
        subresource_names()  # read botocore's model at start-up, not on a request

    # -- before the body ---------------------------------------------------------------

    def body_limit(self, request):
        """The most body bytes a non-upload request may send."""
        if request.method == b"POST" and "uploadId" in query_params(request.uri):
            return max(self.max_body, 4 * 1024 * 1024)
        return self.max_body

    def _authenticate(self, request, body=None):
        auth = awsauth.AuthRequest.from_twisted(request, body=body)
        found = awsauth.verify_request(auth, self.secret_lookup, self.requests.now(),
                                       schemes=awsauth.S3_SCHEMES, services=("s3",))
        user = self.requests.user_by_name(found.access_key)
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


_REQUEST_IDS = itertools.count(1)
_REQUEST_PREFIX = secrets.token_hex(4).upper()


def _request_id():
    """A request id: this process's random prefix and a counter (16 hex digits)."""
    return f"{_REQUEST_PREFIX}{next(_REQUEST_IDS) & 0xFFFFFFFF:08X}"
