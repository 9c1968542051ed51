"""The OpenStack front's ``twisted.web`` resource: routing, tokens, JSON.

One leaf resource serves the three APIs under one port, as devstack's
paths do: ``/identity`` (Keystone v3, :mod:`~nebtwist.api.openstack.identity`),
``/compute`` (Nova v2.1, :mod:`~nebtwist.api.openstack.compute`) and
``/image`` (Glance v2, :mod:`~nebtwist.api.openstack.image`). Every route
but the version documents and ``POST /identity/v3/auth/tokens`` needs a
live ``X-Auth-Token`` (401 otherwise).

The catalog's URLs (and the documents' links) start with openstack.conf
``PUBLIC_URL`` when set, else ``http(s)://`` + the request's ``Host``
header (else the address the request came in on).

Errors are answered in the API's shape (:mod:`~nebtwist.api.openstack.common`);
core errors map to them: ``NoSuchObject`` 404 ``itemNotFound``,
``AuthorizationError`` 403 ``forbidden``, ``ActionError`` 409
``conflictingRequest``, ``APIError`` 400 ``badRequest``; anything else is
logged and answered 500 ``computeFault``, without a traceback.
"""

import json
from urllib.parse import parse_qsl

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from nebtwist.api.openstack import compute, identity, image
from nebtwist.api.openstack.common import KeystoneError, OpenStackError, json_body, not_found
from nebtwist.errors import (ActionError, APIError, AuthenticationError, AuthorizationError,
                             NebulaError, NoSuchObject)

log = Logger()

#: Default largest request body, bytes (1 MiB).
DEFAULT_MAX_BODY = 1024 * 1024


class Settings:
    """What the front serves with (see :func:`nebtwist.api.openstack.front.load`):

    :param requests: the core :class:`~nebtwist.core.requests.Requests`.
    :param vmtypes: the :class:`~nebtwist.core.vmtypes.VMTypes`.
    :param flavors: ``{name: Flavor}``.
    :param clock: ``IReactorTime`` (token times).
    :param region: the catalog's region (``RegionOne``).
    :param public_url: the catalog's base URL, or None (from ``Host``).
    :param token_lifetime: seconds.
    :param network: the network (name) of ``"networks": "auto"``, or None.
    :param max_body: largest request body, bytes.
    """

    def __init__(self, requests, vmtypes, flavors, clock, region="RegionOne", public_url=None,
                 token_lifetime=3600, network=None, max_body=DEFAULT_MAX_BODY):
        self.requests = requests
        self.vmtypes = vmtypes
        self.flavors = flavors
        self.region = region
        self.public_url = public_url.rstrip("/") if public_url else None
        self.network = network
        self.max_body = max_body
        self.tokens = identity.TokenStore(clock, token_lifetime)
        self.log = log


class Call:
    """One request as the handlers see it: ``request``, ``requests``,
    ``front`` (:class:`Settings`), ``base`` (URL prefix), ``args`` (query,
    dict str -> last value), ``actor`` (the token's User, or None),
    ``token``, ``microversion`` ((2, n))."""

    def __init__(self, request, front, base):
        self.request = request
        self.front = front
        self.requests = front.requests
        self.base = base
        query = request.uri.partition(b"?")[2].decode("latin-1")
        self.args = dict(parse_qsl(query, keep_blank_values=True))
        self.actor = None
        self.token = None
        self.microversion = compute.MIN_MICROVERSION

    def header(self, name):
        value = self.request.getHeader(name)
        return value.decode("latin-1") if isinstance(value, bytes) else value


def base_url(request, settings):
    """The URL prefix of links: ``PUBLIC_URL`` or ``scheme://Host``."""
    if settings.public_url:
        return settings.public_url
    scheme = "https" if request.isSecure() else "http"
    host = request.getHeader(b"host")
    if host:
        host = host.decode("latin-1").strip()
    if not host or any(c in host for c in "/\\ @?#"):
        addr = request.getHost()
        name = getattr(addr, "host", "localhost")
        host = f"[{name}]:{addr.port}" if ":" in name else f"{name}:{addr.port}"
    return f"{scheme}://{host}"


class OpenStackResource(resource.Resource):
    """The front's root resource (a leaf: it routes every path itself).

    :param settings: a :class:`Settings`.
    """

    isLeaf = True

    def __init__(self, settings):
        super().__init__()
        self.settings = settings

    def render(self, request):
        d = defer.ensureDeferred(self._serve(request))
        d.addErrback(self._failed, request)
        return server.NOT_DONE_YET

    @staticmethod
    def _failed(failure, request):
        log.failure("OpenStack front: answering failed", failure)
        if not getattr(request, "finished", True) and not getattr(request, "_disconnected", 0):
            data = json.dumps({"computeFault": {"code": 500, "message":
                                                "Unexpected API Error. See oned.log."}}).encode()
            request.setResponseCode(500)
            request.setHeader("Content-Type", "application/json")
            request.write(data)
            request.finish()

    async def _serve(self, request):
        call = Call(request, self.settings, base_url(request, self.settings))
        finished = []
        request.notifyFinish().addBoth(finished.append)
        headers = {}
        try:
            status, body, *more = await self._route(call)
            if more:
                headers.update(more[0])
        except OpenStackError as e:
            status, body, headers = e.status, e.body(), e.headers
        except NebulaError as e:
            err = _core_error(e, call)
            status, body, headers = err.status, err.body(), err.headers
        except Exception:
            log.failure("OpenStack front: {method} {uri}",
                        method=request.method.decode("latin-1"),
                        uri=request.uri.decode("latin-1"))
            status, body = 500, {"computeFault": {
                "code": 500, "message": "Unexpected API Error. See oned.log."}}
        if finished:  # the client went away
            return
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name, value)
        if call.microversion is not None and _path(request)[:1] == ["compute"]:
            version = ".".join(map(str, call.microversion))
            request.setHeader("OpenStack-API-Version", f"compute {version}")
            request.setHeader("X-OpenStack-Nova-API-Version", version)
            request.setHeader("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")
        if body is not None and request.method != b"HEAD":
            data = json.dumps(body).encode("utf-8")
            request.setHeader("Content-Type", "application/json")
            request.setHeader("Content-Length", str(len(data)))
            request.write(data)
        elif body is None:
            request.setHeader("Content-Length", "0")
        request.finish()

    # -- routing ------------------------------------------------------------------------------

    async def _route(self, call):
        path = _path(call.request)
        method = call.request.method
        head = path[0] if path else ""
        if head == "identity":
            return await self._identity(call, path[1:], method)
        if head == "compute":
            return await self._compute(call, path[1:], method)
        if head == "image":
            return await self._image(call, path[1:], method)
        raise not_found(f"No API at /{'/'.join(path)}: see /identity, /compute, /image.")

    def _authenticate(self, call, error=None):
        token = self.settings.tokens.lookup(call.header("x-auth-token"))
        if token is None:
            raise error or OpenStackError(
                401, "unauthorized", "The request you have made requires authentication.",
                {"WWW-Authenticate": f'Keystone uri="{call.base}/identity"'})
        call.token, call.actor = token, token.user
        return token

    async def _identity(self, call, path, method):
        settings = self.settings
        if path in ([], ["v3"]):
            _only(method, b"GET", b"HEAD", keystone=True)
            return identity.versions(call.base) if not path else identity.version(call.base)
        if path != ["v3", "auth", "tokens"]:
            raise KeystoneError(404, "The resource could not be found.")
        if method == b"POST":
            try:
                body = json_body(call.request, settings.max_body)
            except OpenStackError as e:
                raise KeystoneError(e.status, e.message) from None
            user = identity.authenticate(settings.requests, body, call.base)
            text, token = settings.tokens.issue(user)
            return 201, identity.token_body(token, call.base, settings.region), {
                "X-Subject-Token": text}
        _only(method, b"GET", b"HEAD", b"DELETE", b"POST", keystone=True)
        self._authenticate(call, identity.unauthorized(base=call.base))
        subject = call.header("x-subject-token")
        if method == b"DELETE":
            if not settings.tokens.revoke(subject):
                raise KeystoneError(404, f"Could not find token: {subject}")
            return 204, None
        token = settings.tokens.lookup(subject)
        if token is None:
            raise KeystoneError(404, f"Could not find token: {subject}")
        return 200, identity.token_body(token, call.base, settings.region), {
            "X-Subject-Token": subject}

    async def _compute(self, call, path, method):
        if path and path[-1] == "":
            path = path[:-1]
        if not path:
            _only(method, b"GET", b"HEAD")
            call.microversion = None
            return 200, {"versions": [compute.version_doc(call.base)]}
        if path[0] != "v2.1":
            raise not_found(f"Unknown compute API version {path[0]!r}; see /compute.")
        if len(path) == 1:
            _only(method, b"GET", b"HEAD")
            call.microversion = None
            return 200, {"version": compute.version_doc(call.base)}
        call.microversion = None
        self._authenticate(call)
        call.microversion = compute.parse_microversion(call.header)
        rest = path[1:]
        # Nova's legacy URLs carry the project id: /v2.1/{project_id}/servers.
        if rest[0] == str(call.token.project) and len(rest) > 1:
            rest = rest[1:]
        kind = rest[0]
        if kind == "servers":
            return await self._servers(call, rest[1:], method)
        if kind == "flavors":
            if rest[1:] in ([], ["detail"]):
                _only(method, b"GET", b"HEAD")
                return compute.list_flavors(call, detail=bool(rest[1:]))
            if len(rest) == 2:
                _only(method, b"GET", b"HEAD")
                return compute.show_flavor(call, rest[1])
        raise not_found("The resource could not be found.")

    async def _servers(self, call, rest, method):
        max_body = self.settings.max_body
        if not rest:
            if method == b"POST":
                return await compute.create_server(call, json_body(call.request, max_body))
            _only(method, b"GET", b"HEAD", b"POST")
            return await compute.list_servers(call, detail=False)
        if rest == ["detail"]:
            _only(method, b"GET", b"HEAD")
            return await compute.list_servers(call, detail=True)
        if len(rest) == 1:
            if method == b"DELETE":
                return await compute.delete_server(call, rest[0])
            _only(method, b"GET", b"HEAD", b"DELETE")
            return await compute.show_server(call, rest[0])
        if len(rest) == 2 and rest[1] == "action":
            _only(method, b"POST")
            return await compute.server_action(call, rest[0], json_body(call.request, max_body))
        raise not_found("The resource could not be found.")

    async def _image(self, call, path, method):
        if path and path[-1] == "":
            path = path[:-1]
        if path in ([], ["v2"]):
            _only(method, b"GET", b"HEAD")
            return image.versions(call.base)
        if path[0] != "v2":
            raise not_found(f"Unknown image API version {path[0]!r}; see /image.")
        self._authenticate(call)
        if path[1:] == ["images"]:
            _only(method, b"GET", b"HEAD")
            return await image.list_images(call)
        if len(path) == 3 and path[1] == "images":
            _only(method, b"GET", b"HEAD")
            return await image.show_image(call, path[2])
        raise not_found("The resource could not be found.")


def _path(request):
    raw = request.path.decode("latin-1")
    from urllib.parse import unquote

    parts = [unquote(p) for p in raw.split("/")[1:]]
    return parts if parts != [""] else []


def _only(method, *allowed, keystone=False):
    if method not in allowed:
        names = ", ".join(m.decode() for m in allowed)
        if keystone:
            raise KeystoneError(405, f"Method {method.decode('latin-1')} is not allowed "
                                     f"(allowed: {names}).", {"Allow": names})
        raise OpenStackError(405, "badMethod", f"Method {method.decode('latin-1')} is not "
                                               f"allowed (allowed: {names}).", {"Allow": names})


def _core_error(error, call):
    """The OpenStack error of a core exception."""
    if isinstance(error, NoSuchObject):
        return OpenStackError(404, "itemNotFound", str(error))
    if isinstance(error, AuthorizationError):
        return OpenStackError(403, "forbidden", str(error))
    if isinstance(error, AuthenticationError):
        return OpenStackError(401, "unauthorized", str(error))
    if isinstance(error, ActionError):
        return OpenStackError(409, "conflictingRequest", str(error))
    if isinstance(error, APIError):
        return OpenStackError(400, "badRequest", str(error))
    return OpenStackError(500, "computeFault", str(error))
