"""The object operations of :class:`~nebtwist.api.s3.resource.S3Resource`.

:class:`ObjectOperations` holds what the resource does with ``/bucket/key``
once a request is authenticated and its refusals checked: PutObject and
UploadPart (their bodies already streamed, :meth:`_finish_upload`),
CopyObject, UploadPartCopy, GetObject and HeadObject (``Range``, ``If-*``
conditions, ``response-*`` overrides), DeleteObject, CreateMultipartUpload,
CompleteMultipartUpload, AbortMultipartUpload and ListParts, as the Amazon
S3 API Reference (2006-03-01) describes each. A mixin: it uses the
resource's ``repository``, ``max_object_size`` and ``_send`` /
``_send_xml``.
"""

import re
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_to_bytes

from nebtwist.api.s3.body import _Sender, _Slice
from nebtwist.api.s3.errors import (InvalidArgument, InvalidRange, InvalidRequest,
                                    MalformedXML, MethodNotAllowed, NoSuchBucket,
                                    NotImplementedHere, PreconditionFailed)
from nebtwist.api.s3.params import (MAX_PART_NUMBER, _header, _int_param, _stored_headers,
                                    _user_metadata, parse_range)
from nebtwist.api.s3.store import MAX_LIST
from nebtwist.api.s3.subresources import check_expected_owner
from nebtwist.api.s3.wire import (_http_date, _iso, _parse_xml, _quote_etag,
                                  _response_document, _sub)


#: Objects up to this size are read in one piece on GET; larger ones stream.
SMALL_OBJECT = 64 * 1024
#: GET query parameters that override a response header (presigned URLs).
RESPONSE_OVERRIDES = {"response-content-type": b"content-type",
                      "response-content-language": b"content-language",
                      "response-expires": b"expires",
                      "response-cache-control": b"cache-control",
                      "response-content-disposition": b"content-disposition",
                      "response-content-encoding": b"content-encoding"}
_COPY_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]+)\Z")


class ObjectOperations:
    """The object operations of :class:`~nebtwist.api.s3.resource.S3Resource`
    (see the module docstring)."""

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
