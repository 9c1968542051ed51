"""The public cloud front: one ``twisted.web`` site on econe.conf's endpoints.

The site's root (:class:`FrontRoot`) routes each request either to the EC2
Query API (:class:`nebtwist.api.ec2.EC2Resource`): a request on ``/`` with
an ``Action`` in its query, or a POST on ``/`` with a form body
(``application/x-www-form-urlencoded``, or ``multipart/form-data`` as
econe-upload sends); or else to the S3-like image repository
(:class:`nebtwist.api.s3.S3Resource`, path-style ``/bucket/key``).
OpenNebula 3.4 ran econe as a separate Sinatra server (``econe-server.rb``)
behind a lighttpd TLS proxy; here it is part of the controller's reactor and
terminates TLS itself (:mod:`nebtwist.tls`).

Bodies (:class:`FrontRequest`): an S3 upload (PutObject, UploadPart) is
authenticated as soon as its headers are in and streams to a staging file of
the repository while it arrives (memory stays flat whatever the size); every
other body is collected as Twisted does (in memory, or a temporary file over
100 kB), within econe.conf's limits: ``MAX_OBJECT_SIZE`` (one object, one
part, an UploadImage body; default 5 GiB, AWS's single PUT limit) and
``MAX_QUERY_BODY`` (any other body; default 1 MiB). A body over its limit is
refused in the API's own error shape before it is read (Content-Length), or
as soon as it passes the limit (chunked), and the connection is closed.
"""

import io
import os
import uuid
import weakref
from urllib.parse import parse_qsl

from lxml import etree
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.web import resource, server
from twisted.web.http_headers import Headers
from zope.interface import implementer

from nebtwist.api import awsauth, s3
from nebtwist.api.ec2 import EC2Resource
from nebtwist.api.limits import ConnectionLimit, HTTPLimits, LimitedRequest
from nebtwist.api.plugin import FrontService, FrontStartupError
from nebtwist.core.vmtypes import VMTypeError
from nebtwist.interfaces import IAPIFront

log = Logger()

#: Default econe.conf ``MAX_OBJECT_SIZE``, bytes (AWS's single PUT limit, 5 GiB).
DEFAULT_MAX_OBJECT_SIZE = s3.DEFAULT_MAX_OBJECT_SIZE
#: Default econe.conf ``MAX_QUERY_BODY``, bytes (1 MiB).
DEFAULT_MAX_QUERY_BODY = 1024 * 1024

_FORMS = (b"application/x-www-form-urlencoded", b"multipart/form-data")


def _content_type(request):
    value = request.requestHeaders.getRawHeaders(b"content-type")
    return value[0].split(b";")[0].strip().lower() if value else b""


def is_ec2(method, uri, content_type):
    """Whether a request goes to the EC2 Query API: path ``/`` with an
    ``Action`` query parameter, or a POST on ``/`` with a form body.

    :param method: the HTTP method (bytes).
    :param uri: the request URI (bytes, origin or absolute form).
    :param content_type: the media type of the body, lower case (bytes).
    """
    if uri[:8].lower().startswith((b"http://", b"https://")):
        rest = uri.split(b"//", 1)[1]
        slash = rest.find(b"/")
        uri = rest[slash:] if slash >= 0 else b"/"
    path, _, query = uri.partition(b"?")
    if path != b"/":
        return False
    if b"Action" in query and any(
            k == "Action" for k, _ in parse_qsl(query.decode("latin-1"),
                                                keep_blank_values=True)):
        return True
    return method == b"POST" and content_type in _FORMS


def ec2_error_document(code, message, request_id):
    """An EC2 error body (``<Response><Errors><Error>``), as the EC2 front
    answers."""
    root = etree.Element("Response")
    error = etree.SubElement(etree.SubElement(root, "Errors"), "Error")
    etree.SubElement(error, "Code").text = code
    etree.SubElement(error, "Message").text = message
    etree.SubElement(root, "RequestID").text = request_id
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


#: Socket read size while a large upload body streams in (Twisted reads 64 KiB).
STREAM_READ_SIZE = 256 * 1024


def _read_size(transport, size):
    """Set the read size of a TCP transport (or of the one under a TLS one)."""
    for _ in range(3):
        if transport is None:
            return
        if isinstance(getattr(transport, "bufferSize", None), int):
            transport.bufferSize = max(transport.bufferSize, size)
            return
        transport = getattr(transport, "transport", None)


class _ResponseHeaders(Headers):
    """Response headers that send ``x-amz-meta-*`` names in lower case, as
    S3 does (Twisted writes every name Capitalized-Like-This; botocore keeps
    the case of what follows ``x-amz-meta-`` as the metadata key)."""

    def getAllRawHeaders(self):
        for name, values in super().getAllRawHeaders():
            yield (name.lower() if name.startswith(b"X-Amz-Meta-") else name), values


class FrontRequest(LimitedRequest):
    """A request of the public cloud site that routes and limits its body
    as it arrives (see the module docstring).

    ``gotLength`` runs once the headers are in (Twisted's ``HTTPChannel``
    knows the method and URI then): the request is routed, and an S3 upload
    gets its :class:`~nebtwist.api.s3.BodySink` from
    :meth:`S3Resource.begin_upload <nebtwist.api.s3.S3Resource.begin_upload>`,
    which ``handleContentChunk`` then feeds. A refused upload keeps its error
    for the render (its body is read and dropped), or is answered at once
    when the client waits for ``100-continue`` or the body is too large.

    :ivar route: ``"ec2"`` or ``"s3"`` (None when unknown).
    :ivar sink: the S3 upload's body sink, or None.
    :ivar refused: the error to answer at render, or None.
    """

    route = None
    sink = None
    refused = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.responseHeaders = _ResponseHeaders()

    def gotLength(self, length):
        channel = self.channel
        front = getattr(getattr(channel, "site", None), "front", None)
        command = getattr(channel, "_command", None)
        uri = getattr(channel, "_path", None)
        if front is None or command is None or uri is None:
            return super().gotLength(length)
        self.method, self.uri = command, uri
        front.headers_received(self, length)

    def keep_body(self, length, limit):
        """Collect the body as Twisted does, up to ``limit`` bytes."""
        self.body_limit = limit
        server.Request.gotLength(self, length)

    def drop_body(self, error, limit):
        """Read and drop the body, answer ``error`` at render; ``error`` is
        answered at once if more than ``limit`` bytes come."""
        self.refused = error
        self._dropping = True
        self._received = 0
        self.body_limit = limit
        self.content = io.BytesIO()

    def stream_body(self, sink):
        """Send the body to ``sink`` as it arrives."""
        self.sink = sink
        self.content = io.BytesIO()
        if sink.path is not None:  # a large body: read the socket in larger pieces
            _read_size(self.channel.transport, STREAM_READ_SIZE)

    def answer_now(self, status, headers, body):
        """Answer before the body is read (an S3 upload's staged part
        discarded), then close the connection (:mod:`nebtwist.api.limits`)."""
        if self.sink is not None:
            self.sink.discard()
            self.sink = None
        super().answer_now(status, headers, body)

    def too_large(self, size):
        """A body past its limit: :meth:`Front.too_large`."""
        self.channel.site.front.too_large(self, size)

    def handleContentChunk(self, data):
        if self.answered:
            return
        if self.sink is not None:
            front = self.channel.site.front
            try:
                self.sink.feed(data)
            except s3.EntityTooLarge as e:
                self.answer_now(*front.s3.error_response(self, e))
            except (s3.S3Error, awsauth.AWSAuthError) as e:
                self.sink.discard()
                self.sink = None
                self.drop_body(e, front.max_query_body)
            except OSError as e:
                log.error("S3 upload to {p} failed: {e}", p=self.sink.path, e=str(e))
                self.sink.discard()
                self.sink = None
                self.drop_body(s3.S3Error(), front.max_query_body)
            return
        super().handleContentChunk(data)  # counted against body_limit

    def connectionLost(self, reason):
        if self.sink is not None:  # an interrupted upload leaves nothing
            self.sink.discard()
            self.sink = None
        super().connectionLost(reason)


class Front:
    """What the site's requests ask once their headers are in: the route
    and the body limits.

    :param ec2: the :class:`EC2Resource`.
    :param s3: the :class:`~nebtwist.api.s3.S3Resource` (None: no S3).
    :param max_object_size: econe.conf ``MAX_OBJECT_SIZE`` (bytes).
    :param max_query_body: econe.conf ``MAX_QUERY_BODY`` (bytes).
    """

    def __init__(self, ec2, s3_resource, max_object_size=DEFAULT_MAX_OBJECT_SIZE,
                 max_query_body=DEFAULT_MAX_QUERY_BODY):
        self.ec2 = ec2
        self.s3 = s3_resource
        self.max_object_size = max_object_size
        self.max_query_body = max_query_body

    def route(self, request):
        """``"ec2"`` or ``"s3"`` for a request whose method and URI are known."""
        if self.s3 is None or is_ec2(request.method, request.uri, _content_type(request)):
            return "ec2"
        return "s3"

    def headers_received(self, request, length):
        """Route ``request`` and decide where its body goes (:class:`FrontRequest`)."""
        request.route = route = self.route(request)
        if route == "ec2":
            limit = (self.max_object_size if _content_type(request) == b"multipart/form-data"
                     else self.max_query_body)
            request.keep_body(length, limit)
            if length is not None and length > limit:
                self.too_large(request, length)
            return
        try:
            sink = self.s3.begin_upload(request, length)
        except Exception as e:  # noqa: BLE001 - answered in S3's shape
            if not isinstance(e, (s3.S3Error, awsauth.AWSAuthError)):
                log.failure("S3 upload could not start")
                e = s3.S3Error()
            expects = request.requestHeaders.getRawHeaders(b"expect") or []
            # The client waits for 100 Continue, or would send a large body
            # for nothing: answer now. Else read and drop the body first.
            if isinstance(e, s3.EntityTooLarge) or any(
                    v.lower() == b"100-continue" for v in expects) or (
                    length is not None and length > self.max_query_body):
                request.answer_now(*self.s3.error_response(request, e))
            else:
                request.drop_body(e, self.max_query_body)
            return
        if sink is not None:
            request.stream_body(sink)
            return
        limit = self.s3.body_limit(request)
        request.keep_body(length, limit)
        if length is not None and length > limit:
            self.too_large(request, length)

    def too_large(self, request, size):
        """Refuse a body over its limit, in the API's error shape, at once
        (a request already refused: with its own error)."""
        if request.refused is not None:
            request.answer_now(*self.s3.error_response(request, request.refused))
            return
        if request.route == "ec2":
            request_id = str(uuid.uuid4())
            body = ec2_error_document(
                "RequestEntityTooLarge",
                f"The request body ({size} bytes or more) is larger than the "
                f"{request.body_limit} bytes allowed.", request_id)
            request.answer_now(413, [(b"Content-Type", b"text/xml;charset=UTF-8")], body)
            return
        error = s3.MaxMessageLengthExceeded(details={"MaxMessageLengthBytes":
                                                     request.body_limit})
        request.answer_now(*self.s3.error_response(request, error))


class FrontRoot(resource.Resource):
    """The site's root: each request to :attr:`ec2` or :attr:`s3`
    (:meth:`Front.route`)."""

    isLeaf = True

    def __init__(self, front):
        super().__init__()
        self.front = front

    def render(self, request):
        route = getattr(request, "route", None) or self.front.route(request)
        if route == "s3":
            return self.front.s3.render(request)
        return self.front.ec2.render(request)


def build_site(requests, vmtypes, econe_config=None, repository=None):
    """The public cloud :class:`twisted.web.server.Site`.

    :param econe_config: econe.conf: ``SERVER`` and ``SSL_SERVER`` are host
        names a SigV2 signature may name besides the Host header; ``REGION``
        and ``ZONE`` (default ``default``) are answered by DescribeRegions
        and DescribeAvailabilityZones; ``MAX_OBJECT_SIZE`` and
        ``MAX_QUERY_BODY`` limit bodies (bytes); ``MAX_CONN``,
        ``MAX_CONN_BACKLOG``, ``KEEPALIVE_TIMEOUT``, ``HEADER_TIMEOUT``,
        ``BODY_TIMEOUT`` and ``BODY_MIN_RATE`` limit connections
        (:class:`nebtwist.api.limits.HTTPLimits`).
    :param repository: the S3 :class:`~nebtwist.api.s3.Repository`, loaded;
        None: the site serves the EC2 Query API alone.
    :raises ValueError: a limit is not a (positive) number.
    """
    def get(key):
        return econe_config.get(key) if econe_config is not None else None

    region = get("REGION") or "default"
    zone = get("ZONE") or "default"
    hosts = [h for h in (get("SERVER"), get("SSL_SERVER")) if h]
    max_object = _size(get("MAX_OBJECT_SIZE"), DEFAULT_MAX_OBJECT_SIZE, "MAX_OBJECT_SIZE")
    max_query = _size(get("MAX_QUERY_BODY"), DEFAULT_MAX_QUERY_BODY, "MAX_QUERY_BODY")
    ec2 = EC2Resource(requests, vmtypes, region=region, zone=zone, hosts=hosts,
                      econe=econe_config)  # ELASTIC_IP_NETWORK, *_SCRIPT (ec2/)
    ec2.repository = repository  # RegisterImage reads objects (Repository.object_file)
    ec2.max_upload = max_object  # the largest UploadImage body
    s3_resource = None
    if repository is not None:
        s3_resource = s3.S3Resource(requests, repository, max_object_size=max_object,
                                    max_body=max_query)
    front = Front(ec2, s3_resource, max_object, max_query)
    site = _Site(FrontRoot(front), requestFactory=FrontRequest, parsePOSTFormSubmission=False)
    site.front = front
    site.limits = HTTPLimits.from_config(econe_config, "econe.conf")  # MAX_CONN, timeouts
    site.displayTracebacks = False
    site.noisy = False
    site.log = lambda request: None
    return site


def _size(value, default, name):
    if value is None or str(value).strip() == "":
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number <= 0:
        raise ValueError(f"{name} must be a positive number of bytes, not {value!r}")
    return number


class _Site(ConnectionLimit, server.Site):
    """A Site that knows its open connections, so that stopping the front
    closes kept-alive client connections too; with the connection and time
    limits of :mod:`nebtwist.api.limits` (econe.conf)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.channels = weakref.WeakSet()

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self.channels.add(protocol)
        return protocol


def _transport(channel):
    """The transport of an HTTP channel (or of the channel a wrapper holds)."""
    inner = getattr(channel, "_channel", channel)
    transport = getattr(inner, "transport", None)
    return transport if hasattr(transport, "abortConnection") else None


class _Listening:
    """A listening port of the EC2 front: :meth:`stopListening` also drops
    the open connections (a Deferred firing once they are gone)."""

    def __init__(self, port, site, clock):
        self.port = port
        self.site = site
        self.clock = clock

    def getHost(self):
        return self.port.getHost()

    def stopListening(self):
        return defer.ensureDeferred(self._stop())

    async def _stop(self):
        await self.port.stopListening()
        transports = [t for t in map(_transport, list(self.site.channels)) if t is not None]
        for transport in transports:
            if not transport.disconnected:
                transport.abortConnection()
        for _ in range(100):  # connectionLost runs on a later reactor turn
            if all(t.disconnected for t in transports):
                break
            await task.deferLater(self.clock, 0.01, lambda: None)


class EC2StartupError(Exception):
    """econe.conf, a VM type or an EC2 listener is wrong (one line)."""


def image_dir(econe, one_location):
    """The S3 repository root: econe.conf ``IMAGE_DIR`` when absolute, else
    that relative path under ``$ONE_LOCATION/var`` (default
    ``$ONE_LOCATION/var/econe``)."""
    value = (econe.get("IMAGE_DIR") or "").strip()
    var = os.path.join(one_location, "var")
    if not value:
        return os.path.join(var, "econe")
    return value if os.path.isabs(value) else os.path.join(var, value)


async def install(reactor, requests, config, one_location, overrides=(),
                  conf_path=None, descriptions=None):
    """Start the public cloud front: read econe.conf, compile its VM types,
    load the S3 repository (``IMAGE_DIR``, :func:`image_dir`) and listen.

    :param config: oned.conf (``ECONE_CONF``, ``DEFAULT_DEVICE_PREFIX``).
    :param overrides: the ``--set`` values; ``econe.KEY=VALUE`` ones apply to
        econe.conf.
    :param conf_path: econe.conf's path (default :func:`nebtwist.core.config.econe_path`).
    :param descriptions: endpoint strings that replace econe.conf's PORT and
        LISTEN (an ``API_FRONT`` ENDPOINT).
    :return: the listening ports: econe.conf ``PORT`` (``tcp:PORT``, default
        4567, 0 for any free port) then each ``LISTEN`` endpoint
        (:func:`nebtwist.tls.listen`).
    :raises EC2StartupError: econe.conf unreadable or malformed, a VM type
        that fails to load, an IMAGE_DIR that cannot be made or read, a bad
        size limit, a bad endpoint, or a port that cannot be bound.
    """
    from twisted.internet.error import CannotListenError

    from nebtwist import tls
    from nebtwist.core import config as configmod
    from nebtwist.core.vmtypes import VMTypes

    path = conf_path or configmod.econe_path(config, one_location)
    try:
        econe = configmod.load_econe(path, overrides)
        port = econe.get_int("PORT", 4567)
    except configmod.ConfigError as e:
        raise EC2StartupError(f"econe.conf: {e}") from None
    for where, key in econe.unknown_keys():  # a typo is not silently ignored
        log.warn("{w}: unknown key {k} (ignored)", w=where, k=key)
    try:
        vmtypes = VMTypes.load(econe, configmod.econe_templates_dirs(path),
                               device_prefix=config.get("DEFAULT_DEVICE_PREFIX") or "hd")
    except VMTypeError as e:
        raise EC2StartupError(f"econe.conf VM_TYPE: {e}") from None
    # PORT on SERVER when it is an address, as econe-server bound :server:;
    # a host name only names the front for signatures: every address.
    server = (econe.get("SERVER") or "").strip()
    if not descriptions:
        descriptions = [configmod.tcp_description(
            port, server if configmod.is_ip_address(server) else None)] + [
            v for v in econe.template.get_all("LISTEN") if isinstance(v, str)]
    root = image_dir(econe, one_location)
    repository = s3.Repository(root, clock=reactor)
    try:
        repository.load()
    except OSError as e:
        raise EC2StartupError(f"econe.conf IMAGE_DIR {root}: {e.strerror or e}") from None
    try:
        site = build_site(requests, vmtypes, econe, repository)
    except ValueError as e:
        raise EC2StartupError(f"econe.conf: {e}") from None
    try:
        ports = await tls.listen(reactor, [site.limits.endpoint(d) for d in descriptions],
                                 site)
    except tls.TLSConfigError as e:
        raise EC2StartupError(f"econe.conf LISTEN {e}") from None
    except CannotListenError as e:
        raise EC2StartupError(f"EC2 front: {e}") from None
    for desc, p in zip(descriptions, ports):
        site.listening(p)
        log.info("EC2 Query API and S3 listening on {d} ({a})", d=desc, a=p.getHost())
    return [_Listening(p, site, reactor) for p in ports]


# -- the front plug-in (nebtwist.api.plugin) --------------------------------------------------

class _EC2FrontService(FrontService):
    """The EC2 Query + S3 front as a child service: :func:`install` on start."""

    async def listen(self):
        ctx = self.ctx
        conf = ctx.vector.get("CONF")
        try:
            return await install(
                ctx.reactor, ctx.requests, ctx.config, ctx.one_location,
                ctx.overrides, conf_path=ctx.conf_path(conf) if conf else None,
                descriptions=ctx.endpoints)
        except EC2StartupError as e:
            raise FrontStartupError(str(e)) from None


@implementer(IPlugin, IAPIFront)
class EC2Front:
    """The public cloud front (OpenNebula's econe): the EC2 Query API and the
    S3-like image repository on one port.

    ``API_FRONT = [ NAME = "ec2", CONF = "econe.conf", ENDPOINT = "..." ]``:
    ``CONF`` replaces oned.conf's ``ECONE_CONF``; ``ENDPOINT`` replaces
    econe.conf's ``PORT``/``SERVER`` and ``LISTEN``.
    """

    name = "ec2"
    description = "EC2 Query API and S3 repository (OpenNebula's econe)"

    def build(self, ctx):
        from nebtwist.api.plugin import endpoints_of

        if not ctx.endpoints:
            ctx.endpoints = endpoints_of(ctx.vector, ())
        return _EC2FrontService(self, ctx)
