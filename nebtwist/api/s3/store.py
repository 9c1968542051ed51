"""The S3-like repository's object store: buckets, objects, multipart uploads.

:class:`Repository` keeps buckets, objects (:class:`ObjectInfo`), their
tags and multipart uploads (:class:`MultipartUpload`, :class:`Part`) in
files and JSON sidecars under one folder, with an in-memory index per
bucket (:class:`Bucket`); it knows nothing of HTTP (the twisted.web side is
:mod:`nebtwist.api.s3.resource`). Limits and behaviours follow the Amazon
S3 API Reference (2006-03-01) and the Amazon S3 User Guide.

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

import bisect
import hashlib
import ipaddress
import os
import re
import secrets
import shutil
import time

from twisted.internet import threads
from twisted.logger import Logger

from nebtwist.api.s3.errors import (AccessDenied, BucketAlreadyExists, BucketAlreadyOwnedByYou,
                                    BucketNotEmpty, EntityTooSmall, InvalidBucketName,
                                    InvalidPart, InvalidPartOrder, MalformedXML, NoSuchBucket,
                                    NoSuchKey, NoSuchUpload)
from nebtwist.api.s3.files import (_concatenate, _copy_range, _mkstemp, _read_json, _unlink,
                                   _write_all, _write_json)
from nebtwist.api.s3.records import Bucket, MultipartUpload, ObjectInfo, Part

log = Logger()


#: Smallest part of a multipart upload but the last, in bytes (AWS: 5 MiB).
MIN_PART_SIZE = 5 * 1024 * 1024
#: Largest max-keys / max-parts / max-uploads (AWS: 1,000).
MAX_LIST = 1000
#: How long a completed multipart upload's CompleteMultipartUpload answer
#: is repeated to a retry of that request, in seconds (S3 answers a repeated
#: CompleteMultipartUpload with the same success for a while, so that a
#: client whose first answer was lost does not see NoSuchUpload), and how
#: many are remembered per bucket. Kept in memory only.
COMPLETED_MEMORY = 3600
COMPLETED_MEMORY_COUNT = 1000
_SIDECAR = re.compile(r"[0-9a-f]{64}\.json\Z")
_PART_FILE = re.compile(r"([0-9]{5})-([0-9a-f]{32})\Z")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}\Z")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")


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


def _after_prefix(common):
    """The smallest string after every string starting with ``common``."""
    return common[:-1] + chr(ord(common[-1]) + 1)
