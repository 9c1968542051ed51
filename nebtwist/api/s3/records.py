"""The S3 repository's records in memory: buckets, objects, uploads, parts.

:class:`Bucket` (owner, tags, the sorted key index), :class:`ObjectInfo`
(one object's sidecar), :class:`MultipartUpload` and :class:`Part`, with
the JSON documents they are stored as; :class:`~nebtwist.api.s3.store.Repository`
makes, loads and changes them (see :mod:`nebtwist.api.s3.store` for the
files). Their fields are those S3 lists (Amazon S3 API Reference
(2006-03-01), ListObjectsV2, ListParts, ListMultipartUploads).
"""

import hashlib
import os
import re


_VERSIONED = re.compile(r"[0-9a-f]{64}-[0-9a-f]{12}\Z")


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
