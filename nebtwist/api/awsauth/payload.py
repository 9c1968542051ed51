"""Payloads: streamed ``aws-chunked`` bodies, signed SHA256s and checksums.

:class:`ChunkedDecoder` decodes an ``aws-chunked`` body incrementally, in
constant memory, checking each chunk's signature
(``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``, ``...-PAYLOAD-TRAILER``) or not
(``STREAMING-UNSIGNED-PAYLOAD-TRAILER``) and the trailers, as AWS's
"Signature calculations for the Authorization header: Transferring payload
in multiple chunks" describes; :class:`PayloadVerifier` checks a plain
body against its signed ``x-amz-content-sha256``. Both check
``x-amz-checksum-*`` (:func:`new_checksum`) and ``Content-MD5`` (S3
``BadDigest``); :func:`body_decoder` picks the right one for a request.
"""

import base64
import binascii
import hashlib
import hmac
import zlib

from nebtwist.api.awsauth.errors import (BadDigest, IncompleteBody, InvalidRequest,
                                         SignatureDoesNotMatch, XAmzContentSHA256Mismatch)
from nebtwist.api.awsauth.request import (EMPTY_SHA256, STREAMING_MODES, STREAMING_PAYLOAD,
                                          STREAMING_PAYLOAD_TRAILER,
                                          STREAMING_UNSIGNED_TRAILER, _HEX64, _NUMBER, _raw,
                                          _text)
from nebtwist.log import OneLogger

log = OneLogger("AuM")


# ---------------------------------------------------------------------------
# Checksums (x-amz-checksum-*)


def _crt_checksum(name):
    try:
        from awscrt import checksums
    except ImportError:
        return None
    return getattr(checksums, name, None)


class _CRC:
    """An incremental CRC (``fn(data, crc) -> crc``) with a big-endian digest."""

    def __init__(self, fn, size):
        self.fn, self.size, self.value = fn, size, 0

    def update(self, data):
        self.value = self.fn(data, self.value)

    def digest(self):
        return (self.value & ((1 << (8 * self.size)) - 1)).to_bytes(self.size, "big")


def _crc32c_function():
    """A well-kept CRC32C implementation if one is installed, else None."""
    fn = _crt_checksum("crc32c")  # awscrt: what botocore itself uses
    if fn is not None:
        return fn
    try:
        import google_crc32c
        return lambda data, crc: google_crc32c.extend(crc, bytes(data))
    except ImportError:
        pass
    try:
        import crc32c
        return lambda data, crc: crc32c.crc32c(bytes(data), crc)
    except ImportError:
        return None


def new_checksum(algorithm):
    """An incremental hasher (``update(bytes)``, ``digest() -> bytes``) for an
    ``x-amz-checksum-<algorithm>`` (``crc32``, ``crc32c``, ``crc64nvme``,
    ``sha1``, ``sha256``, ``sha512``), or None when no implementation is
    installed (``crc32c``/``crc64nvme`` need awscrt or a crc32c package).

    :raises KeyError: an algorithm S3 does not define.
    """
    algorithm = algorithm.lower()
    if algorithm == "crc32":
        return _CRC(zlib.crc32, 4)
    if algorithm in ("sha1", "sha256", "sha512"):
        return hashlib.new(algorithm)
    if algorithm == "crc32c":
        fn = _crc32c_function()
        return _CRC(fn, 4) if fn else None
    if algorithm == "crc64nvme":
        fn = _crt_checksum("crc64nvme")
        return _CRC(fn, 8) if fn else None
    if algorithm in ("xxhash64", "xxhash3", "xxhash128"):
        return None
    raise KeyError(algorithm)


#: The checksum algorithms S3 defines (``x-amz-checksum-<algorithm>``).
CHECKSUM_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256", "sha512",
                       "xxhash64", "xxhash3", "xxhash128")


def _checksum_name(name):
    """The algorithm of an ``x-amz-checksum-<algorithm>`` name, or None."""
    name = name.lower()
    if name.startswith("x-amz-checksum-"):
        return name[len("x-amz-checksum-"):]
    return None


class _ChecksumSet:
    """The checksums a body must match (``x-amz-checksum-*`` names, and
    ``content-md5``), computed as it streams."""

    def __init__(self, names):
        self.hashers = {}
        self.unavailable = []
        for name in names:
            if name == "content-md5":
                self.hashers[name] = hashlib.md5(usedforsecurity=False)
                continue
            algorithm = _checksum_name(name)
            if algorithm is None:
                raise InvalidRequest(f"The trailer {name!r} is not supported "
                                     "(x-amz-checksum-<algorithm> only).")
            try:
                hasher = new_checksum(algorithm)
            except KeyError:
                raise InvalidRequest(f"The checksum algorithm of {name!r} is not "
                                     "supported.") from None
            if hasher is None:
                self.unavailable.append(name)
            else:
                self.hashers[name] = hasher

    def update(self, data):
        for hasher in self.hashers.values():
            hasher.update(data)

    def check(self, values):
        """Compare ``{name: base64 value}`` with what was computed.

        :raises BadDigest: a value differs (or is not base64).
        """
        for name, value in values.items():
            hasher = self.hashers.get(name)
            if hasher is None:
                if name in self.unavailable:
                    log.warn("{name} of an upload not verified: no implementation "  # noqa: G010
                             "installed (install awscrt)", name=name)
                continue
            try:
                given = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                given = None
            if given is None or not hmac.compare_digest(given, hasher.digest()):
                if name == "content-md5":
                    raise BadDigest("The Content-MD5 you specified did not match what we "
                                    "received.")
                algorithm = _checksum_name(name).upper()
                raise BadDigest(f"The {algorithm} you specified did not match the "
                                "calculated checksum.")


# ---------------------------------------------------------------------------
# Bodies


def _content_length(value, name):
    if value is None:
        return None
    value = value.strip()
    if not _NUMBER.match(value):
        raise InvalidRequest(f"{name} must be a number of bytes, not {value!r}.")
    return int(value)


def chunk_signature(key, timestamp, scope, previous, data_sha256):
    """The signature (hex) of one ``aws-chunked`` chunk: HMAC of
    ``AWS4-HMAC-SHA256-PAYLOAD\\n<timestamp>\\n<scope>\\n<previous
    signature>\\n<SHA256 of "">\\n<SHA256 hex of the chunk data>``."""
    sts = (f"AWS4-HMAC-SHA256-PAYLOAD\n{timestamp}\n{scope}\n{previous}\n{EMPTY_SHA256}\n"
           f"{data_sha256}")
    return hmac.new(key, sts.encode("ascii"), hashlib.sha256).hexdigest()


def trailer_signature(key, timestamp, scope, previous, trailer_lines):
    """The signature (hex) of signed trailers: HMAC of
    ``AWS4-HMAC-SHA256-TRAILER\\n<timestamp>\\n<scope>\\n<previous>\\n<SHA256 hex
    of the trailers, each "name:value\\n">``."""
    digest = hashlib.sha256(_raw(trailer_lines)).hexdigest()
    sts = f"AWS4-HMAC-SHA256-TRAILER\n{timestamp}\n{scope}\n{previous}\n{digest}"
    return hmac.new(key, sts.encode("ascii"), hashlib.sha256).hexdigest()


_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """Incremental decoder of an ``aws-chunked`` body (AWS "Transferring
    Payload in Multiple Chunks" and "Including Trailing Headers").

    Framing: ``<hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n`` ...,
    a zero-size chunk, then trailer lines ``name:value\\r\\n`` and an empty
    line. Feed it the body in pieces of any size; it returns the payload
    bytes as they come, keeping at most one header or trailer line (bounded)
    in memory. Bytes handed out are provisional until :meth:`finish`
    succeeds: on any error, discard everything the upload wrote.

    :param mode: :data:`STREAMING_PAYLOAD` (every chunk signed, no trailer),
        :data:`STREAMING_PAYLOAD_TRAILER` (signed chunks and trailer) or
        :data:`STREAMING_UNSIGNED_TRAILER` (no signatures).
    :param key: the signing key (:attr:`SigV4Result.signing_key`), for the
        signed modes.
    :param timestamp: the request's ``YYYYMMDDTHHMMSSZ``.
    :param scope: the credential scope.
    :param seed_signature: the request's signature (hex), first link of the
        chain.
    :param trailers: the trailer names announced by ``x-amz-trailer``.
    :param decoded_length: ``x-amz-decoded-content-length``, checked (None:
        not announced).
    :param checksums: ``{name: base64}`` of the payload sent as headers
        (``x-amz-checksum-*``, ``content-md5``), checked at the end.
    :raises InvalidRequest: (constructor) an announced trailer we cannot
        check.
    """

    #: Longest chunk header line (size and signature), in bytes.
    MAX_LINE = 4096
    #: Most trailer bytes.
    MAX_TRAILER = 16 * 1024

    def __init__(self, mode, *, key=None, timestamp=None, scope=None, seed_signature=None,
                 trailers=(), decoded_length=None, checksums=None):
        if mode not in STREAMING_MODES:
            raise ValueError(f"not an aws-chunked payload mode: {mode!r}")
        self.mode = mode
        self.signed = mode != STREAMING_UNSIGNED_TRAILER
        if self.signed and (key is None or not timestamp or not scope or not seed_signature):
            raise ValueError("signed aws-chunked bodies need key, timestamp, scope and seed")
        self._key, self._timestamp, self._scope = key, timestamp, scope
        self._previous = seed_signature
        self.trailer_names = [t.strip().lower() for t in trailers if t.strip()]
        if mode == STREAMING_PAYLOAD and self.trailer_names:
            raise InvalidRequest(f"{STREAMING_PAYLOAD} bodies carry no trailer; use "
                                 f"{STREAMING_PAYLOAD_TRAILER} with x-amz-trailer.")
        self._header_checksums = dict(checksums or {})
        self._checksums = _ChecksumSet(set(self.trailer_names) | set(self._header_checksums))
        self.decoded_length = decoded_length
        #: Payload bytes decoded so far.
        self.decoded = 0
        #: The trailers received (lower-case name -> value), once finished.
        self.trailers = {}
        self._state = _SIZE
        self._line = bytearray()
        self._remaining = 0
        self._chunk_signature = None
        self._chunk_hash = None
        self._crlf = 0
        self._trailer_lines = []
        self._trailer_bytes = 0

    @property
    def done(self):
        """True once the final chunk and trailers have been read."""
        return self._state == _DONE

    @property
    def buffered(self):
        """Bytes held between calls (a partial line): at most
        :attr:`MAX_LINE` or :attr:`MAX_TRAILER`."""
        return len(self._line)

    def feed(self, data):
        """Decode the next piece of the body.

        :param data: bytes (any length, including empty).
        :return: the payload bytes this piece completes (maybe ``b""``).
        :raises InvalidRequest: malformed framing, data after the end, more
            data than ``decoded_length``.
        :raises SignatureDoesNotMatch: a chunk or trailer signature is wrong.
        :raises BadDigest: a trailing checksum does not match.
        """
        buf = data if isinstance(data, (bytes, bytearray)) else bytes(data)
        view = memoryview(buf)
        out = []
        pos, end = 0, len(buf)
        while pos < end:
            state = self._state
            if state == _DATA:
                n = min(self._remaining, end - pos)
                piece = view[pos:pos + n]
                if self._chunk_hash is not None:
                    self._chunk_hash.update(piece)
                self._checksums.update(piece)
                out.append(piece)
                pos += n
                self._remaining -= n
                if self._remaining == 0:
                    self._state, self._crlf = _DATA_END, 0
            elif state == _DATA_END:
                if buf[pos] != b"\r\n"[self._crlf]:
                    raise InvalidRequest("A chunk's data must end with CRLF (the chunk is "
                                         "longer than its size says).")
                pos += 1
                self._crlf += 1
                if self._crlf == 2:
                    self._end_chunk()
                    self._state = _SIZE
            elif state == _DONE:
                if buf[pos:end].strip(b"\r\n"):
                    raise InvalidRequest("Data after the end of the aws-chunked body.")
                pos = end
            else:
                limit = self.MAX_LINE if state == _SIZE else \
                    self.MAX_TRAILER - self._trailer_bytes
                newline = buf.find(b"\n", pos, end)
                stop = end if newline < 0 else newline + 1
                if len(self._line) + stop - pos > limit:
                    raise InvalidRequest("An aws-chunked chunk header or trailer is too long.")
                self._line += view[pos:stop]
                pos = stop
                if newline >= 0:
                    line = bytes(self._line)
                    self._line.clear()
                    if state == _SIZE:
                        self._size_line(line)
                    else:
                        self._trailer_line(line)
        if len(out) == 1:
            return bytes(out[0])
        return b"".join(out)

    def _size_line(self, line):
        if not line.endswith(b"\r\n"):
            raise InvalidRequest("aws-chunked chunk headers end with CRLF.")
        text = line[:-2].decode("ascii", "replace")
        size_text, _, extensions = text.partition(";")
        if not 1 <= len(size_text) <= 16 or any(c not in "0123456789abcdefABCDEF"
                                                for c in size_text):
            raise InvalidRequest(f"Invalid aws-chunked chunk size {size_text[:32]!r}.")
        size = int(size_text, 16)
        if self.signed:
            name, sep, value = extensions.partition("=")
            if name.strip() != "chunk-signature" or not sep \
                    or not _HEX64.match(value.strip().lower()):
                raise InvalidRequest("Each chunk must carry ;chunk-signature=<64 hex digits>.")
            self._chunk_signature = value.strip().lower()
            self._chunk_hash = hashlib.sha256()
        if self.decoded_length is not None and self.decoded + size > self.decoded_length:
            raise InvalidRequest(f"The body holds more than x-amz-decoded-content-length "
                                 f"({self.decoded_length}) bytes.")
        self.decoded += size
        if size:
            self._state, self._remaining = _DATA, size
        else:
            self._end_chunk()
            self._state = _TRAILER

    def _end_chunk(self):
        if not self.signed:
            return
        expected = chunk_signature(self._key, self._timestamp, self._scope, self._previous,
                                   self._chunk_hash.hexdigest())
        if not hmac.compare_digest(expected.encode("ascii"), _raw(self._chunk_signature)):
            raise SignatureDoesNotMatch(
                "The signature of an aws-chunked chunk does not match (wrong key, a changed "
                "byte, or chunks out of order).")
        self._previous = expected
        self._chunk_hash = None

    def _trailer_line(self, line):
        self._trailer_bytes += len(line)
        text = line.rstrip(b"\n").rstrip(b"\r")
        if text:
            name, sep, value = _text(text).partition(":")
            if not sep:
                raise InvalidRequest(f"Malformed aws-chunked trailer {_text(text)[:64]!r}.")
            self._trailer_lines.append((name.strip().lower(), value.strip()))
            return
        self._finish_trailers()
        self._state = _DONE

    def _finish_trailers(self):
        lines = self._trailer_lines
        signature = None
        if self.mode == STREAMING_PAYLOAD_TRAILER:
            if not lines or lines[-1][0] != "x-amz-trailer-signature":
                raise InvalidRequest("The trailer must end with x-amz-trailer-signature.")
            signature = lines[-1][1].lower()
            lines = lines[:-1]
        trailers = {}
        for name, value in lines:
            if name in trailers or name not in self.trailer_names:
                raise InvalidRequest(f"The trailer {name!r} was not announced by "
                                     "x-amz-trailer (or is repeated).")
            trailers[name] = value
        missing = [n for n in self.trailer_names if n not in trailers]
        if missing:
            raise InvalidRequest("The announced trailer " + ", ".join(missing)
                                 + " was not sent.")
        if signature is not None:
            canonical = "".join(f"{n}:{v}\n" for n, v in lines)
            expected = trailer_signature(self._key, self._timestamp, self._scope,
                                         self._previous, canonical)
            if not hmac.compare_digest(expected.encode("ascii"), _raw(signature)):
                raise SignatureDoesNotMatch("The trailer signature of the aws-chunked body "
                                            "does not match.")
        self._checksums.check({**self._header_checksums, **trailers})
        self.trailers = trailers

    def finish(self):
        """The body has ended: check it was whole.

        A body that stops right after its zero-size chunk (no empty line)
        is whole when no trailer was announced (some SDKs end so).

        :return: the trailers (lower-case name -> value).
        :raises IncompleteBody: the body stopped early, or holds fewer bytes
            than ``decoded_length``.
        :raises InvalidRequest: as :meth:`feed`, for an announced trailer.
        """
        if self._state == _TRAILER and not self._line and not self._trailer_lines \
                and not self.trailer_names and self.mode != STREAMING_PAYLOAD_TRAILER:
            self._finish_trailers()
            self._state = _DONE
        if self._state != _DONE:
            raise IncompleteBody("The aws-chunked body ended before its final chunk and "
                                 "trailer.")
        if self.decoded_length is not None and self.decoded != self.decoded_length:
            raise IncompleteBody(f"The body holds {self.decoded} bytes, not the "
                                 f"{self.decoded_length} of x-amz-decoded-content-length.")
        return dict(self.trailers)


class PayloadVerifier:
    """Checks a plain (not ``aws-chunked``) body as it streams.

    :param sha256: the signed ``x-amz-content-sha256`` hex, or None
        (``UNSIGNED-PAYLOAD``, or already checked).
    :param checksums: ``{"x-amz-checksum-<alg>" or "content-md5": base64}``
        from the headers.
    :param length: the expected length in bytes (None: not checked).
    :raises InvalidRequest: (constructor) an unknown checksum algorithm.
    """

    def __init__(self, sha256=None, checksums=None, length=None):
        self._sha256 = hashlib.sha256() if sha256 else None
        self._expected = sha256
        self._values = dict(checksums or {})
        self._checksums = _ChecksumSet(self._values)
        self._length = length
        #: Bytes seen so far.
        self.decoded = 0
        self.trailers = {}
        self.done = False
        self.buffered = 0

    def feed(self, data):
        """Account for the next piece; returns it unchanged (bytes).

        :raises InvalidRequest: more bytes than ``length``.
        """
        if self._sha256 is not None:
            self._sha256.update(data)
        self._checksums.update(data)
        self.decoded += len(data)
        if self._length is not None and self.decoded > self._length:
            raise InvalidRequest(f"The body is longer than its {self._length} bytes.")
        return data

    def finish(self):
        """The body has ended.

        :return: ``{}`` (plain bodies have no trailers).
        :raises IncompleteBody: fewer bytes than ``length``.
        :raises XAmzContentSHA256Mismatch: the body is not the one signed.
        :raises BadDigest: an ``x-amz-checksum-*`` header does not match.
        """
        if self._length is not None and self.decoded != self._length:
            raise IncompleteBody(f"The body holds {self.decoded} bytes, not "
                                 f"{self._length}.")
        if self._sha256 is not None:
            actual = self._sha256.hexdigest()
            if not hmac.compare_digest(actual.encode("ascii"), _raw(self._expected)):
                raise XAmzContentSHA256Mismatch(
                    "The provided 'x-amz-content-sha256' header does not match what was "
                    "computed.", details={"ClientComputedContentSHA256": self._expected,
                                          "S3ComputedContentSHA256": actual})
        self._checksums.check(self._values)
        self.done = True
        return {}


def body_decoder(request, auth=None):
    """The decoder of a request body the front streams.

    ``aws-chunked`` bodies (``x-amz-content-sha256`` a ``STREAMING-*``
    marker) get a :class:`ChunkedDecoder` chained from the request's
    signature, with ``x-amz-trailer`` and ``x-amz-decoded-content-length``;
    other bodies a :class:`PayloadVerifier` of the signed SHA256 (unless
    already checked). Both check the ``x-amz-checksum-*`` and
    ``Content-MD5`` headers (S3 ``BadDigest``). Both have
    ``feed(bytes) -> bytes`` and ``finish() -> trailers``.

    :param request: the :class:`AuthRequest`.
    :param auth: its :class:`SigV4Result`, or None (SigV2, anonymous).
    :raises InvalidRequest: a streaming body without SigV4, an announced
        trailer or checksum we do not know, a malformed length.
    """
    mode = auth.payload_hash if auth is not None else None
    decoded_length = _content_length(request.header("x-amz-decoded-content-length"),
                                     "x-amz-decoded-content-length")
    trailer = request.header("x-amz-trailer")
    trailers = [t for t in (trailer or "").split(",") if t.strip()]
    checksums = {name: values[0] for name, values in request._header_map.items()
                 if name == "content-md5" or _checksum_name(name) in CHECKSUM_ALGORITHMS}
    if mode in STREAMING_MODES:
        if mode == STREAMING_UNSIGNED_TRAILER:
            return ChunkedDecoder(mode, trailers=trailers, decoded_length=decoded_length,
                                  checksums=checksums)
        return ChunkedDecoder(mode, key=auth.signing_key, timestamp=auth.timestamp,
                              scope=auth.scope, seed_signature=auth.signature,
                              trailers=trailers, decoded_length=decoded_length,
                              checksums=checksums)
    claimed = request.header("x-amz-content-sha256")
    if auth is None and claimed and claimed.strip() in STREAMING_MODES:
        raise InvalidRequest("An aws-chunked body needs a SigV4 Authorization header.")
    if trailers:
        raise InvalidRequest("x-amz-trailer needs an aws-chunked body "
                             f"({STREAMING_UNSIGNED_TRAILER}).")
    sha = None
    if auth is not None and not auth.body_verified and _HEX64.match(auth.payload_hash):
        sha = auth.payload_hash
    return PayloadVerifier(sha, checksums)


def stored_content_encoding(value):
    """A ``Content-Encoding`` without ``aws-chunked`` (what to store with the
    object), or None if nothing is left."""
    if not value:
        return None
    kept = [e.strip() for e in value.split(",")
            if e.strip() and e.strip().lower() != "aws-chunked"]
    return ", ".join(kept) or None
