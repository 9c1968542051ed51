"""API fronts as Twisted plug-ins: what a front gets, how it is found and started.

A front (XML-RPC, EC2/S3, OpenStack, OCCI, ElasticHosts, or a third party's)
is an object providing :class:`~nebtwist.interfaces.IAPIFront` and
``twisted.plugin.IPlugin``, placed in a dropin module of the
:mod:`nebtwist.plugins` package (any installed distribution may add one:
the package extends its ``__path__`` with ``pluginPackagePaths``, Twisted's
idiom for ``twisted.plugins``). :func:`find_fronts` collects them with
``twisted.plugin.getPlugins``.

oned.conf enables fronts, one ``API_FRONT`` vector each::

    API_FRONT = [ NAME = "xmlrpc" ]
    API_FRONT = [ NAME = "ec2", CONF = "econe.conf" ]
    API_FRONT = [ NAME = "openstack", ENDPOINT = "tcp:5000:interface=127.0.0.1" ]

``ENDPOINT`` holds one or more Twisted endpoint strings separated by blanks
(``tcp:``, or ``ssl:`` for TLS in the same process, see :mod:`nebtwist.tls`);
without it the front's defaults apply. With no ``API_FRONT`` at all the
daemon enables ``xmlrpc`` and ``ec2``, as before fronts were plug-ins. Each
enabled front is built into a child service of the daemon
(:class:`nebtwist.tap.NebulaService`) once the core is ready.
"""

import os
from dataclasses import dataclass, field

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.plugin import getPlugins
from twisted.web import server

from nebtwist import tls
from nebtwist.api.limits import ConnectionLimit, HTTPLimits, LimitedRequest
from nebtwist.interfaces import IAPIFront
from nebtwist.log import OneLogger
from nebtwist.paths import shipped

log = OneLogger("ReM")

#: The fronts enabled when oned.conf has no ``API_FRONT`` (nebtwist before plug-ins).
DEFAULT_FRONTS = ("xmlrpc", "ec2")


class FrontStartupError(Exception):
    """A front cannot start (bad configuration, busy port...): one line, which
    the daemon logs before it stops (exit status 1)."""


@dataclass
class FrontContext:
    """What a front is given to build itself.

    :ivar reactor: the reactor (or a test clock/memory reactor).
    :ivar requests: the core :class:`~nebtwist.core.requests.Requests`, the
        only way a front reaches pools, managers and the database.
    :ivar config: oned.conf (:class:`nebtwist.core.config.Config`).
    :ivar vector: the front's ``API_FRONT`` vector (dict, upper-case keys).
    :ivar one_location: ``$ONE_LOCATION`` (str).
    :ivar var_dir: the daemon's var directory (str).
    :ivar limits: oned.conf's connection and time limits
        (:class:`~nebtwist.api.limits.HTTPLimits`).
    :ivar max_body: oned.conf ``MESSAGE_SIZE`` in bytes (int).
    :ivar overrides: the daemon's ``--set`` strings (list of str).
    :ivar endpoints: endpoint description strings to listen on (list of str):
        the vector's ``ENDPOINT`` split at blanks, else the front's defaults.
    """

    reactor: object
    requests: object
    config: object = None
    vector: dict = field(default_factory=dict)
    one_location: str = "."
    var_dir: str = "var"
    limits: HTTPLimits = field(default_factory=HTTPLimits)
    max_body: int = 1 << 30
    overrides: list = field(default_factory=list)
    endpoints: list = field(default_factory=list)

    @classmethod
    def for_tests(cls, requests, reactor, **kw):
        """A context with defaults for in-memory tests (no configuration file)."""
        return cls(reactor=reactor, requests=requests, **kw)

    @property
    def name(self):
        """The front's NAME (str)."""
        return str(self.vector.get("NAME", ""))

    def conf_path(self, default_name):
        """The front's configuration file: the vector's ``CONF`` (else
        ``default_name``), taken relative to oned.conf's folder, then
        ``$ONE_LOCATION/etc``, else the shipped ``conf/`` (an absolute
        ``CONF`` is used as given)."""
        name = str(self.vector.get("CONF") or default_name)
        if os.path.isabs(name):
            return name
        candidates = []
        if self.config is not None and getattr(self.config, "path", None):
            candidates.append(os.path.join(os.path.dirname(os.path.abspath(self.config.path)),
                                           name))
        candidates.append(os.path.join(self.one_location, "etc", name))
        for path in candidates:
            if os.path.exists(path):
                return path
        return shipped("conf", name)


def endpoints_of(vector, defaults):
    """The endpoint strings of an ``API_FRONT`` vector: its ``ENDPOINT`` split
    at blanks, else ``defaults`` (list of str)."""
    text = str(vector.get("ENDPOINT") or "").strip()
    return text.split() if text else list(defaults)


def find_fronts(package=None):
    """Every front plug-in found, by NAME: ``{name: IAPIFront provider}``.

    :param package: the dropin package searched (default :mod:`nebtwist.plugins`).
    :raises FrontStartupError: two plug-ins claim the same NAME.
    """
    if package is None:
        import nebtwist.plugins as package
    found = {}
    for front in getPlugins(IAPIFront, package):
        name = front.name
        if name in found and found[name] is not front:
            raise FrontStartupError(f"two API front plug-ins are named {name!r}: "
                                    f"{type(found[name]).__module__} and "
                                    f"{type(front).__module__}")
        found[name] = front
    return found


def enabled_vectors(config):
    """The ``API_FRONT`` vectors of oned.conf (list of dicts, upper-case keys),
    or the :data:`DEFAULT_FRONTS` when there is none.

    :raises FrontStartupError: a vector without NAME, or a NAME given twice.
    """
    vectors = [dict(v) for v in config.vectors("API_FRONT")] if config is not None else []
    if not vectors:
        return [{"NAME": name} for name in DEFAULT_FRONTS]
    seen = set()
    for v in vectors:
        name = str(v.get("NAME") or "").strip()
        if not name:
            raise FrontStartupError("API_FRONT needs a NAME")
        if name in seen:
            raise FrontStartupError(f"API_FRONT {name!r} is given twice")
        seen.add(name)
        v["NAME"] = name
    return vectors


class _Site(ConnectionLimit, server.Site):
    """A front's Site: connection and time limits (:mod:`nebtwist.api.limits`),
    no HTTP access lines in oned.log."""

    def log(self, request):
        pass


class FrontService(service.Service):
    """A front's child service: :meth:`listen` (a coroutine returning the
    listening ports) runs on start; stopping stops listening.

    :ivar ports: the listening ports (``IListeningPort``), once listening.
    :ivar listening: Deferred firing (with the ports) once every endpoint
        listens, or failing with :class:`FrontStartupError`.
    """

    def __init__(self, front, ctx):
        self.front = front
        self.ctx = ctx
        self.name = front.name
        self.ports = []
        self.listening = None

    def startService(self):
        super().startService()
        self.listening = defer.ensureDeferred(self._start())

    async def _start(self):
        self.ports = await self.listen()
        return self.ports

    async def listen(self):
        """Listen on ``self.ctx.endpoints``; returns the ports."""
        raise NotImplementedError

    def stopService(self):
        super().stopService()
        ports, self.ports = self.ports, []
        return defer.DeferredList([defer.maybeDeferred(p.stopListening) for p in ports])


class HTTPFrontService(FrontService):
    """Serves one :class:`HTTPFront`'s resource on its endpoints."""

    site = None

    async def listen(self):
        ctx = self.ctx
        await self.front.prepare(ctx)
        site = self.site = _Site(self.front.resource(ctx),
                                 requestFactory=self.front.request_factory)
        site.displayTracebacks = False
        site.noisy = False
        site.max_body, site.limits = ctx.max_body, ctx.limits
        try:
            ports = await tls.listen(ctx.reactor, [ctx.limits.endpoint(d) for d in ctx.endpoints],
                                     site)
        except tls.TLSConfigError as e:
            where = (f"API_FRONT {self.name} ENDPOINT" if ctx.vector.get("ENDPOINT")
                     else self.front.defaults_key)
            raise FrontStartupError(f"{where} {e}") from None
        except CannotListenError as e:
            raise FrontStartupError(f"{self.front.label}: {e}") from None
        for desc, port in zip(ctx.endpoints, ports):
            site.listening(port)
            log.info("{n} listening on {d} ({a})", n=self.front.label, d=desc,
                     a=port.getHost())
        return ports


class HTTPFront:
    """Base class of a front served over HTTP by ``twisted.web``.

    Subclasses declare ``@implementer(IPlugin, IAPIFront)``, set :attr:`name`,
    :attr:`description` and :attr:`default_endpoints`, and implement
    :meth:`resource`.
    """

    name = None
    description = ""

    @property
    def label(self):
        """How oned.log and start-up errors name the front (``"<name> front"``)."""
        return f"{self.name} front"
    #: Endpoint strings used when the ``API_FRONT`` vector has no ENDPOINT.
    default_endpoints = ()
    #: What a start-up error calls the default endpoints (a configuration key).
    defaults_key = "endpoint"
    #: The request class of the front's Site (a :class:`LimitedRequest`:
    #: bodies over ``max_body`` refused at their headers).
    request_factory = LimitedRequest

    def defaults(self, ctx):
        """The endpoints when the vector names none (default: :attr:`default_endpoints`)."""
        return list(self.default_endpoints)

    async def prepare(self, ctx):
        """Awaited before :meth:`resource` (read the front's conf...).

        :raises FrontStartupError: the front cannot start.
        """

    def resource(self, ctx):
        """The root ``IResource`` of the front."""
        raise NotImplementedError

    def build(self, ctx):
        """An :class:`HTTPFrontService` for ``ctx`` (``ctx.endpoints`` filled
        from the front's defaults when empty)."""
        if not ctx.endpoints:
            ctx.endpoints = endpoints_of(ctx.vector, self.defaults(ctx))
        return HTTPFrontService(self, ctx)
