"""Streamed S3 bodies: uploads received to disk, objects sent from it.

:class:`BodySink` takes a PutObject or UploadPart body as it arrives,
decoded and verified by :func:`nebtwist.api.awsauth.body_decoder`
(``x-amz-content-sha256``, ``aws-chunked`` signed chunks and checksum
trailers, ``Content-MD5``: the Amazon S3 API Reference (2006-03-01),
PutObject, and "Authenticating Requests: Using the Authorization Header
(Transferring Payload in Multiple Chunks)"), MD5-hashed, into memory or a
staging file written by a thread of its own (:class:`_Writer`), with flow
control on the connection. :class:`_Slice` and :class:`_Sender` stream a
GetObject body (or a range of it) from its file.
"""

import hashlib
import queue
import threading

from twisted.internet import defer
from twisted.protocols.basic import FileSender

from nebtwist.api.s3.errors import EntityTooLarge, InvalidRequest
from nebtwist.api.s3.files import _unlink, _write_all


#: Upload bodies announced at most this long are received in memory (and
#: written once, at commit); longer ones stream to a staging file.
SMALL_BODY = 64 * 1024


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
