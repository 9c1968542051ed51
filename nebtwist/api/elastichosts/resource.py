"""The ElasticHosts front's ``twisted.web`` resource: routing, HTTP Basic
authentication, bodies, and core errors in ElasticHosts' shape.

Every command is one request whose path is the command's words joined by
``/`` (``elastichosts servers <uuid> info`` -> ``/servers/<uuid>/info``);
the official tool POSTs everything, so every command takes POST and the
read-only ones GET too. Authentication is HTTP Basic with the nebtwist user
name and password (ElasticHosts: user UUID and secret API key), checked by
``Requests.authenticate``.

Errors (status, ``X-Elastic-Error``): no or bad credentials 401 ``auth``
(with ``WWW-Authenticate``); :class:`~nebtwist.errors.AuthorizationError`
403 ``auth``; :class:`~nebtwist.errors.NoSuchObject` or an unknown command
404 ``missing``; a method the command does not take 405 ``method``;
:class:`~nebtwist.errors.ActionError` 409 ``busy``;
:class:`~nebtwist.errors.APIError` or a malformed body 400 ``usage``; a
body over oned.conf ``MESSAGE_SIZE`` 413 ``usage``; anything else 500
``failed`` (logged in oned.log, never shown).
"""

from twisted.internet import defer
from twisted.web import resource, server

from nebtwist.api.elastichosts import drives, servers
from nebtwist.api.elastichosts.wire import EHError, parse_body, render, render_error
from nebtwist.api.limits import LimitedRequest
from nebtwist.errors import (ActionError, APIError, AuthenticationError, AuthorizationError,
                             NoSuchObject)
from nebtwist.log import OneLogger

log = OneLogger("ReM")

ROUTES = drives.ROUTES + servers.ROUTES

_ERRORS = ((AuthenticationError, 401, "auth"), (AuthorizationError, 403, "auth"),
           (NoSuchObject, 404, "missing"), (ActionError, 409, "busy"),
           (APIError, 400, "usage"))


class EHRequest(LimitedRequest):
    """A request whose body over ``MESSAGE_SIZE`` is refused in ElasticHosts'
    shape (413, ``X-Elastic-Error: usage``) before it is read."""

    def gotLength(self, length):
        self.body_limit = getattr(getattr(self.channel, "site", None), "max_body", None)
        super().gotLength(length)

    def too_large(self, size):
        self.answer_now(413, [(b"Content-Type", b"text/plain; charset=utf-8"),
                              (b"X-Elastic-Error", b"usage")],
                        f"The request body ({size} bytes or more) is larger than the "
                        f"{self.body_limit} bytes allowed (MESSAGE_SIZE).\n".encode())


class Call:
    """One command being served: what a handler works with.

    :ivar request: the ``twisted.web`` request.
    :ivar actor: the authenticated :class:`~nebtwist.core.objects.User`.
    :ivar body: the request body (bytes).
    :ivar requests: the core ``Requests``.
    :ivar settings: :class:`~nebtwist.api.elastichosts.settings.Settings`.
    :ivar reactor: the reactor (timers).
    """

    def __init__(self, request, actor, body, requests, settings, reactor):
        self.request = request
        self.actor = actor
        self.body = body
        self.requests = requests
        self.settings = settings
        self.reactor = reactor

    def body_object(self):
        """The body as one object (dict of str; see :func:`wire.parse_body`)."""
        return parse_body(self.request, self.body)


def match(method, segments):
    """``(handler, args)`` for a request, or raises EHError 404/405."""
    allowed = False
    for methods, pattern, handler in ROUTES:
        if len(pattern) != len(segments):
            continue
        args = []
        for want, got in zip(pattern, segments):
            if want == "*":
                args.append(got)
            elif want != got:
                break
        else:
            if method in methods.split():
                return handler, args
            allowed = True
    if allowed:
        raise EHError(405, "method", f"{method} is not allowed on /{'/'.join(segments)}.")
    raise EHError(404, "missing", f"Unknown command /{'/'.join(segments)}.")


class ElasticHostsResource(resource.Resource):
    """The root resource of the front.

    :param requests: the core ``Requests``.
    :param settings: :class:`~nebtwist.api.elastichosts.settings.Settings`.
    :param reactor: the reactor (the waits of ``stop`` and ``destroy``).
    """

    isLeaf = True

    def __init__(self, requests, settings, reactor):
        super().__init__()
        self.requests = requests
        self.settings = settings
        self.reactor = reactor

    def render(self, request):
        d = defer.ensureDeferred(self._serve(request))
        finished = []
        request.notifyFinish().addBoth(finished.append)

        def write(body):
            if finished:  # the client went away
                return
            if body:
                request.setHeader(b"content-length", b"%d" % len(body))
                request.write(body)
            request.finish()

        d.addCallback(write)
        d.addErrback(lambda f: log.failure("ElasticHosts request failed", f))
        return server.NOT_DONE_YET

    async def _serve(self, request):
        try:
            return await self._dispatch(request)
        except EHError as e:
            return render_error(request, e)
        except AuthenticationError as e:
            request.setHeader(b"www-authenticate", b'Basic realm="nebtwist"')
            return render_error(request, EHError(401, "auth", e.message))
        except tuple(c for c, _, _ in _ERRORS) as e:
            for cls, status, kind in _ERRORS:
                if isinstance(e, cls):
                    return render_error(request, EHError(status, kind, e.message))
            raise
        except Exception:  # noqa: BLE001 - a bug: logged, never shown
            log.failure("ElasticHosts: {m} {p} failed", m=request.method.decode("latin-1"),
                        p=request.path.decode("latin-1"))
            return render_error(request, EHError(500, "failed", "Internal error; see oned.log."))

    async def _dispatch(self, request):
        method = request.method.decode("latin-1").upper()
        segments = [s.decode("utf-8", "replace") for s in request.postpath]
        while segments and segments[-1] == "":
            segments.pop()
        handler, args = match(method, segments)
        name = request.getUser().decode("utf-8", "replace")
        password = request.getPassword().decode("utf-8", "replace")
        if not name:
            raise AuthenticationError("HTTP Basic authentication (user name and password) is "
                                      "required.")
        actor = self.requests.authenticate(name, password)
        request.content.seek(0)
        body = request.content.read()
        call = Call(request, actor, body, self.requests, self.settings, self.reactor)
        code, data = await handler(call, *args)
        request.setResponseCode(code)
        if code == 204 or data is None:
            return b""
        if isinstance(data, bytes):
            request.setHeader(b"content-type", b"application/octet-stream")
            return data
        return render(request, data, self.settings.json_replies)
