"""HTTP limits shared by both ports: the XML-RPC API (:mod:`nebtwist.tap`) and
the EC2 Query / S3 front (:mod:`nebtwist.api.front`).

What a client may hold of a front, and for how long (issue 9: one client
trickling a byte every 10 s held a connection for ever; 1,100 of them made
every new client fail; a 1 GiB body was spooled to disk before being refused):

* **Bodies** (:class:`LimitedRequest`): a body over its limit is refused as
  soon as its headers are in (``Content-Length``), or as soon as the limit is
  passed (chunked), and the connection is closed; the body is never read nor
  spooled. XML-RPC: oned.conf ``MESSAGE_SIZE`` (OpenNebula 4.x's key for
  xmlrpc-c's XML size limit), answered ``413`` with an XML-RPC fault; EC2/S3:
  econe.conf ``MAX_QUERY_BODY`` / ``MAX_OBJECT_SIZE`` in their own error shapes.
* **Slow clients** (:class:`LimitedChannel`), after Apache's
  ``mod_reqtimeout``: a request's line and headers must be in within
  ``HEADER_TIMEOUT`` seconds (from the connection, or from the first byte of
  a kept-alive connection's next request), whatever the pace of the bytes;
  its body within ``BODY_TIMEOUT`` seconds plus one second per
  ``BODY_MIN_RATE`` bytes received (a large upload at a fair rate goes on; a
  trickle is cut). Late: ``408 Request Timeout`` and the connection is closed.
  An idle connection is closed after ``KEEPALIVE_TIMEOUT`` seconds (Twisted's
  own idle timeout, ``HTTPChannel.timeOut``, reset by each byte).
  Twisted's ``TimeoutMixin`` alone cannot do the first two: it restarts on
  every byte, which is what a trickling client relies on.
* **Connections** (:class:`ConnectionLimit`): at most ``MAX_CONN`` open at
  once per front (OpenNebula 4.x oned.conf's keys). At the cap the front stops
  accepting: new connections wait in the kernel's listen queue of
  ``MAX_CONN_BACKLOG`` (the listen backlog, as xmlrpc-c's Abyss server does),
  and are served in turn as the timeouts above cut the slow ones. Twisted's
  ``LimitConnectionsByPeer`` counts per address (every client behind one NAT
  or proxy would share a count) and ``LimitTotalConnectionsFactory`` refuses
  rather than queues, so neither fits.

The same keys are read from oned.conf (XML-RPC) and econe.conf (EC2/S3).
"""

import io

from twisted.logger import Logger
from twisted.web import http, server

log = Logger()

#: Defaults of the keys (:class:`HTTPLimits`).
DEFAULTS = {
    "MAX_CONN": 500,
    "MAX_CONN_BACKLOG": 512,
    "KEEPALIVE_TIMEOUT": 15.0,
    "HEADER_TIMEOUT": 20.0,
    "BODY_TIMEOUT": 20.0,
    "BODY_MIN_RATE": 500.0,
}

#: Default of oned.conf ``MESSAGE_SIZE``: the largest XML-RPC request body.
DEFAULT_MESSAGE_SIZE = 16 * 1024 * 1024


class HTTPLimits:
    """The connection and time limits of one front.

    :param max_conn: connections open at once (0 or less: no cap).
    :param max_conn_backlog: the listen backlog.
    :param keepalive_timeout: idle seconds before a connection is closed.
    :param header_timeout: seconds a request line and headers may take.
    :param body_timeout: seconds a body may take, plus
    :param body_min_rate: one more second per this many bytes received.
    """

    def __init__(self, max_conn=DEFAULTS["MAX_CONN"],
                 max_conn_backlog=DEFAULTS["MAX_CONN_BACKLOG"],
                 keepalive_timeout=DEFAULTS["KEEPALIVE_TIMEOUT"],
                 header_timeout=DEFAULTS["HEADER_TIMEOUT"],
                 body_timeout=DEFAULTS["BODY_TIMEOUT"],
                 body_min_rate=DEFAULTS["BODY_MIN_RATE"]):
        self.max_conn = max_conn
        self.max_conn_backlog = max_conn_backlog
        self.keepalive_timeout = keepalive_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate

    @classmethod
    def from_config(cls, config, where="oned.conf"):
        """The limits of oned.conf or econe.conf (keys of :data:`DEFAULTS`).

        :raises ValueError: a value that is not a number, or a negative one.
        """
        values = {}
        for key, default in DEFAULTS.items():
            raw = config.get(key) if config is not None else None
            if raw is None or str(raw).strip() == "":
                values[key.lower()] = default
                continue
            try:
                number = type(default)(float(str(raw).strip()))
            except ValueError:
                number = -1
            if number < 0:
                raise ValueError(f"{where} {key} must be a non-negative number, not {raw!r}")
            values[key.lower()] = number
        if values["body_min_rate"] <= 0:
            raise ValueError(f"{where} BODY_MIN_RATE must be a positive number")
        return cls(**values)

    def endpoint(self, description):
        """``description`` with ``backlog=MAX_CONN_BACKLOG`` for a ``tcp:`` or
        ``ssl:`` endpoint that names no backlog of its own."""
        from nebtwist.tls import parse_description

        try:
            kind, _, kw = parse_description(description)
        except ValueError:
            return description
        if kind not in ("tcp", "ssl", "tcp6") or "backlog" in kw or not self.max_conn_backlog:
            return description
        return f"{description}:backlog={self.max_conn_backlog}"


def message_size(config):
    """oned.conf ``MESSAGE_SIZE`` (bytes; default :data:`DEFAULT_MESSAGE_SIZE`).

    :raises ValueError: not a positive number.
    """
    raw = config.get("MESSAGE_SIZE")
    if raw is None or str(raw).strip() == "":
        return DEFAULT_MESSAGE_SIZE
    try:
        size = int(float(str(raw).strip()))
    except ValueError:
        size = 0
    if size <= 0:
        raise ValueError(f"MESSAGE_SIZE must be a positive number of bytes, not {raw!r}")
    return size


class LimitedChannel(http.HTTPChannel):
    """An ``HTTPChannel`` with the header and body deadlines of its site's
    :class:`HTTPLimits` (``site.limits``), counted by its site's
    :class:`ConnectionLimit`.

    Phases: ``"headers"`` (deadline: HEADER_TIMEOUT), ``"body"`` (deadline:
    BODY_TIMEOUT + received / BODY_MIN_RATE), ``"busy"`` (the request is
    being answered: no deadline), ``"idle"`` (kept alive between requests:
    Twisted's idle timeout only; the first byte starts ``"headers"``).
    """

    _deadline = None
    _phase = "headers"
    _counted = False

    def _limits(self):
        return getattr(getattr(self, "site", None), "limits", None)

    def _arm(self, phase, seconds):
        self._disarm()
        self._phase = phase
        if seconds:
            self._deadline = self.callLater(seconds, self._expired, phase)

    def _disarm(self):
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def connectionMade(self):
        super().connectionMade()
        limits = self._limits()
        if limits is not None:
            self._arm("headers", limits.header_timeout)

    def dataReceived(self, data):
        if self._phase == "idle":
            limits = self._limits()
            self._arm("headers", limits.header_timeout if limits is not None else None)
        elif self._phase == "body" and self._deadline is not None and not self._handlingRequest:
            self._deadline.delay(len(data) / self._limits().body_min_rate)
        super().dataReceived(data)

    def allHeadersReceived(self):
        self._disarm()
        self._phase = "body"
        super().allHeadersReceived()
        limits = self._limits()
        if (self._phase == "body" and self.length != 0 and limits is not None
                and self.transport is not None and not self.transport.disconnected
                and not getattr(self.requests[-1] if self.requests else None, "answered", False)):
            self._arm("body", limits.body_timeout)

    def allContentReceived(self):
        self._disarm()
        self._phase = "busy"
        super().allContentReceived()

    def requestDone(self, request):
        self._disarm()
        self._phase = "idle"  # set first: the next request may be parsed from the buffer
        super().requestDone(request)

    def _expired(self, phase):
        self._deadline = None
        transport = self.transport
        if transport is None or transport.disconnected or self._phase != phase:
            return
        log.debug("HTTP client {peer}: {phase} too slow, closing", peer=transport.getPeer(),
                  phase=phase)
        self._phase = "closed"
        transport.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n")
        self.persistent = False
        transport.loseConnection()
        self._abortingCall = self.callLater(self.abortTimeout or 1, self.forceAbortClient)

    def forceAbortClient(self):
        self._abortingCall = None
        if self.transport is not None and not self.transport.disconnected:
            self.transport.abortConnection()

    def connectionLost(self, reason):
        self._disarm()
        self._phase = "closed"
        aborting = getattr(self, "_abortingCall", None)
        if aborting is not None and aborting.active():
            aborting.cancel()
            self._abortingCall = None
        try:
            super().connectionLost(reason)
        finally:
            if self._counted:
                self._counted = False
                self.site.connection_closed()


class ConnectionLimit:
    """A ``twisted.web.server.Site`` mix-in: :class:`LimitedChannel`
    channels, at most ``limits.max_conn`` of them open (see the module).

    Set :attr:`limits` before listening; call :meth:`listening` with each
    listening port, so that the site can pause and resume accepting.
    """

    protocol = LimitedChannel
    limits = None
    open_connections = 0
    peak_connections = 0  # the most open at once (for tests and benchmarks)
    _paused = False
    _clamping = None

    def listening(self, port):
        """Register a listening port of this site."""
        self.__dict__.setdefault("ports", []).append(port)
        if self._paused:
            _pause(port)

    def buildProtocol(self, addr):
        cap = self.limits.max_conn if self.limits is not None else 0
        if cap and self.open_connections >= cap:
            self._pause()  # a connection accepted in the same batch: closed
            return None
        channel = super().buildProtocol(addr)
        if channel is None:
            return None
        if self.limits is not None:
            channel.timeOut = self.limits.keepalive_timeout or None
        channel._counted = True
        self.open_connections += 1
        self.peak_connections = max(self.peak_connections, self.open_connections)
        if cap and self.open_connections >= cap:
            self._pause()
        elif cap and self._clamping is None:
            self._clamping = self.reactor.callLater(0, self._clamp)
        return channel

    def _clamp(self):
        """Keep each port's accept batch (``tcp.Port.numberAccepts``, which
        Twisted grows by 20 after a full batch) within the room left under
        the cap, so no connection is accepted only to be closed. Runs before
        the next accept (timed calls run before I/O in a reactor turn)."""
        self._clamping = None
        room = self.limits.max_conn - self.open_connections
        for port in self.__dict__.get("ports", []):
            if hasattr(port, "numberAccepts"):
                port.numberAccepts = max(1, min(port.numberAccepts, room))

    def connection_closed(self):
        self.open_connections -= 1
        cap = self.limits.max_conn if self.limits is not None else 0
        if self._paused and (not cap or self.open_connections < cap):
            self._paused = False
            for port in self.__dict__.get("ports", []):
                if getattr(port, "connected", True) and hasattr(port, "startReading"):
                    if hasattr(port, "numberAccepts"):
                        port.numberAccepts = max(1, cap - self.open_connections)
                    port.startReading()

    def _pause(self):
        if not self._paused:
            self._paused = True
            log.info("{n} HTTP connections open (MAX_CONN): new ones wait",
                     n=self.open_connections)
            for port in self.__dict__.get("ports", []):
                _pause(port)


def _pause(port):
    if getattr(port, "connected", True) and hasattr(port, "stopReading"):
        port.stopReading()


class LimitedRequest(server.Request):
    """A request that can be refused before its body is read
    (:meth:`answer_now`) and whose body stops at :attr:`body_limit` bytes:
    past it, :meth:`too_large` answers.

    :attr:`answered`: answered before the body (the connection is closing).
    """

    body_limit = None
    answered = False
    _received = 0
    _dropping = False

    def gotLength(self, length):
        limit = self.body_limit
        if limit is not None and length is not None and length > limit:
            self.too_large(length)
            return
        super().gotLength(length)

    def too_large(self, size):
        """Answer a body of ``size`` bytes (or more) over :attr:`body_limit`
        (subclasses answer in their API's shape)."""
        self.answer_now(413, [(b"Content-Type", b"text/plain; charset=utf-8")],
                        f"The request body ({size} bytes or more) is larger than the "
                        f"{self.body_limit} bytes allowed.\n".encode())

    def answer_now(self, status, headers, body):
        """Answer before the body is read, then close the connection.

        :param headers: ``[(name, value)]`` bytes pairs.
        """
        if self.answered:
            return
        self.answered = True
        self._dropping = True
        self.requestHeaders.removeHeader(b"expect")  # no 100 Continue now
        if self.content is None:
            self.content = io.BytesIO()
        channel = self.channel
        lines = [b"HTTP/1.1 %d %s" % (status, http.RESPONSES.get(status, b"Error"))]
        lines += [name + b": " + value for name, value in headers]
        lines += [b"Content-Length: %d" % len(body), b"Connection: close", b"", b""]
        channel.persistent = False
        if isinstance(channel, LimitedChannel):
            channel._disarm()
        transport = channel.transport
        if transport is not None:
            transport.write(b"\r\n".join(lines) + body)
            channel.loseConnection()

    def handleContentChunk(self, data):
        if self.answered:
            return
        self._received += len(data)
        if self.body_limit is not None and self._received > self.body_limit:
            self.too_large(self._received)
            return
        if not self._dropping:
            super().handleContentChunk(data)

    def process(self):
        if self.answered:  # answered before its body; the connection is closing
            return
        super().process()
