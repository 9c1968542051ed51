"""The OCCI 1.1 front's ``twisted.web`` resource (OGF GFD.185 over GFD.183/184).

Paths (GFD.185 "Various Operations and their Prerequisites and Behaviors"):

=====================================  ==========================================
``GET /-/``, ``/.well-known/org/ogf/   the query interface: every Kind,
occi/-/``                              Mixin and Action; request Categories filter
``GET /compute/``                      the user's VMs (not DONE) as locations;
                                       ``204`` when there is none; request
                                       Categories filter (Mixins the VM has)
``POST /compute/``                     create: ``201`` + ``Location``
``GET /compute/<id>``                  the entity; a DONE VM is ``410``
``POST /compute/<id>?action=<a>``      trigger an Action; ``200``
``DELETE /compute/<id>``               delete: 3.4 ``finalize``; ``200``
``GET|POST /network/``, ``GET|DELETE   virtual networks (up: 200, down: 400)
/network/<id>``, ``?action=up|down``
``GET|POST /storage/``, ``GET|DELETE   images (online, offline: 3.4 enable,
/storage/<id>``, ``?action=..``        disable)
``GET /link/networkinterface/[id]``,   a VM's NICs and image DISKs as Links
``GET /link/storagelink/[id]``
``GET /entity/``, ``/resource/``,      OCCI Core's Kinds: every resource, every
``/link/``                             link, or both
``GET /mixin/.../``                    a Mixin's location: the entities with it
                                       (os_tpl ``image_<ID>``, resource_tpl, ...)
=====================================  ==========================================

Compute Actions and the OpenNebula 3.4 actions they run (``one.vm.action``):
``start`` -> ``release`` (HOLD) or ``resume`` (STOPPED, SUSPENDED);
``stop`` -> ``shutdown`` (``method`` graceful or acpioff, the default) or
``cancel`` (``poweroff``); ``restart`` (``warm``, ``cold``, ``graceful``) ->
``reboot`` of a RUNNING VM (3.4 has no hard reset of a running guest), or
``restart`` (3.4's redeploy) of a VM in BOOT or UNKNOWN; ``suspend``
(``hibernate``, ``suspend``) -> ``suspend``. The core decides whether the
state allows it; when not, ``400`` (GFD.185 "Operations on Resource
Instances": "If an action is not available a Bad Request should be
returned").

Representations (GFD.185 "Content-type and Accept headers"): ``Accept``
``text/plain`` (the default; the structures in the body), ``text/occi`` (in
headers; body ``OK``),
``text/uri-list`` (listings only; ``400`` otherwise); anything else ``406``.

Authentication: HTTP Basic with a nebtwist user's name and password
(``Requests.authenticate``); OpenNebula 3.x's OCCI clients sent the SHA1 hex
of the password as the password (``OCCIClient.rb``), which is accepted too.
Every answer carries ``Server: nebtwist OCCI/1.1``; a client whose
``User-Agent`` asks for a later ``OCCI/X.Y`` gets ``501`` (GFD.185
"Versioning"). Errors (GFD.185 "Return codes"): ``400`` bad rendering or
template, an Action the state does not allow; ``401`` no or bad
credentials; ``403`` not authorized; ``404`` no such entity; ``405`` method
not allowed; ``406``; ``409`` a conflict the core reports (a name taken, a
network with leases in use); ``410`` DONE VM; ``413`` body too large;
``500`` internal; ``501`` not implemented; each with a one-line
``text/plain`` message.
"""

import base64
import inspect
import re
from urllib.parse import parse_qs

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from nebtwist import errors
from nebtwist.api.occi import build, entities, model
from nebtwist.api.occi.rendering import (TEXT_OCCI, URI_LIST, BadRendering, OCCIError,
                                         Structures, choose_type, parse_structures)
from nebtwist.core.objects import BOOT, DONE, HOLD, UNKNOWN

log = Logger()

_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")
_OCCI_VERSION = re.compile(r"\bOCCI/(\d+)\.(\d+)")
#: The ``Server`` header of every answer (GFD.185 "Versioning").
SERVER = b"nebtwist OCCI/1.1"
_QUERY_PATHS = ("/-/", "/.well-known/org/ogf/occi/-/")

_STATUS = ((errors.AuthenticationError, 401), (errors.AuthorizationError, 403),
           (errors.NoSuchObject, 404), (errors.ActionError, 409), (errors.APIError, 400))

#: Default largest request body (bytes) when the front is given none.
DEFAULT_MAX_BODY = 1024 * 1024


async def _call(fn, *args):
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class _Reply:
    """What a handler answers: a status, and a rendering or locations
    (``listing``: an answer ``text/uri-list`` may render)."""

    def __init__(self, status=200, rendering=None, locations=None, listing=False):
        self.status = status
        self.rendering = rendering
        self.locations = locations
        self.listing = listing


class OCCIResource(resource.Resource):
    """The OCCI front's root resource (module docstring for paths and codes).

    :param requests: the core :class:`~nebtwist.core.requests.Requests` (the
        front's only way into the core: ``authenticate``, ``vm_get``,
        ``vm_list``, ``vm_allocate``, ``vm_action``, ``vnet_get``, ``vnet_list``,
        ``vn_allocate``, ``vn_delete``, ``image_get``, ``image_list``,
        ``image_allocate``, ``image_delete``, ``image_enable``).
    :param vmtypes: the econe.conf :class:`~nebtwist.core.vmtypes.VMTypes`
        offered as resource_tpl Mixins (None: none).
    :param max_body: the largest request body, bytes (``413`` above).
    :param realm: the HTTP Basic realm.
    """

    isLeaf = True

    def __init__(self, requests, vmtypes=None, max_body=DEFAULT_MAX_BODY,
                 realm="nebtwist OCCI"):
        super().__init__()
        self.requests = requests
        self.vmtypes = vmtypes
        self.max_body = max_body
        self.realm = realm
        self._resource_tpls = None

    # -- twisted.web ------------------------------------------------------------------------

    def render(self, request):
        d = defer.ensureDeferred(self._answer(request))
        d.addErrback(lambda f: log.failure("OCCI request failed", f))
        return server.NOT_DONE_YET

    async def _answer(self, request):
        try:
            reply, mtype = await self._handle(request)
        except OCCIError as e:
            self._error(request, e.status, e.message, e.status == 401)
        except errors.NebulaError as e:
            status = next((s for cls, s in _STATUS if isinstance(e, cls)), 500)
            self._error(request, status, e.message, status == 401)
        except Exception:  # noqa: BLE001 - never a traceback to the client
            log.failure("OCCI {m} {u}: internal error", m=request.method, u=request.uri)
            self._error(request, 500, "Internal error (see oned.log).")
        else:
            self._write(request, reply, mtype)

    def _finish(self, request, status, body, ctype):
        if getattr(request, "_disconnected", False) or request.finished:
            return
        request.setHeader(b"server", SERVER)
        request.setResponseCode(status)
        request.setHeader(b"content-type", ctype)
        request.setHeader(b"content-length", b"%d" % len(body))
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    def _error(self, request, status, message, challenge=False):
        if challenge:
            request.setHeader(b"www-authenticate", f'Basic realm="{self.realm}"'.encode())
        body = (message.rstrip() + "\n").encode("utf-8")
        self._finish(request, status, body, b"text/plain; charset=utf-8")

    def _base(self, request):
        host = request.getHeader(b"host")
        if not host:
            addr = request.getHost()
            host = f"{addr.host}:{addr.port}".encode()
        scheme = b"https" if request.isSecure() else b"http"
        return (scheme + b"://" + host).decode("latin-1")

    def _write(self, request, reply, mtype):
        lines = []  # (header name, value)
        if reply.rendering is not None:
            r = reply.rendering
            # The query interface renders Categories whole; an entity names
            # its Kind and Mixins only (GFD.185 "Operations on Resource Instances").
            lines += [("Category", c.render(full=r.query)) for c in r.categories]
            lines += [("Link", v) for v in r.links]
            lines += [("X-OCCI-Attribute", f"{k}={entities.render_value(v)}")
                      for k, v in r.attributes]
        base = self._base(request)
        locations = [base + loc for loc in (reply.locations or ())]
        if reply.status == 201:
            request.setHeader(b"location", locations[0].encode("utf-8"))
        if mtype == URI_LIST:
            body = "".join(loc + "\n" for loc in locations).encode("utf-8")
            self._finish(request, reply.status, body, b"text/uri-list")
            return
        lines += [("X-OCCI-Location", loc) for loc in locations]
        if mtype == TEXT_OCCI:
            for name, value in lines:
                request.responseHeaders.addRawHeader(name.encode(), value.encode("utf-8"))
            self._finish(request, reply.status, b"OK\n" if reply.status != 204 else b"",
                         b"text/occi")
        else:
            body = "".join(f"{n}: {v}\n" for n, v in lines).encode("utf-8")
            if not body and reply.status == 200:
                body = b"OK\n"
            self._finish(request, reply.status, body if reply.status != 204 else b"",
                         b"text/plain; charset=utf-8")

    # -- request handling -------------------------------------------------------------------

    async def _authenticate(self, request):
        value = request.getHeader(b"authorization") or b""
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"basic" or not token.strip():
            raise OCCIError("Authentication required (HTTP Basic, a nebtwist user).", 401)
        try:
            name, sep, password = base64.b64decode(token.strip(), validate=True).decode(
                "utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise OCCIError("Malformed HTTP Basic credentials.", 401) from None
        if not sep or not name:
            raise OCCIError("Malformed HTTP Basic credentials.", 401)
        try:
            return await _call(self.requests.authenticate, name, password)
        except errors.AuthenticationError:
            if not _SHA1.match(password):
                raise
        # OpenNebula 3.x OCCI: the password field is SHA1(password) in hex.
        return await _call(self.requests.authenticate_sha1, name, password)

    async def _handle(self, request):
        path = request.path.decode("utf-8", "replace")
        method = request.method.decode("ascii", "replace")
        accept = request.getHeader(b"accept")
        mtype = choose_type(accept.decode("latin-1") if accept else None)
        if mtype is None:
            raise OCCIError(f"Cannot render {accept.decode('latin-1')!r}: this front "
                            f"renders text/plain, text/occi and text/uri-list.", 406)
        agent = (request.getHeader(b"user-agent") or b"").decode("latin-1")
        asked = _OCCI_VERSION.search(agent)
        if asked and (int(asked.group(1)), int(asked.group(2))) > (1, 1):
            raise OCCIError(f"OCCI/{asked.group(1)}.{asked.group(2)} is not implemented: "
                            f"this front speaks OCCI/1.1.", 501)
        actor = await self._authenticate(request)
        body = request.content.read(self.max_body + 1) if request.content else b""
        if len(body) > self.max_body:
            raise OCCIError(f"Request body over {self.max_body} bytes.", 413)
        ctype = (request.getHeader(b"content-type") or b"").decode("latin-1")
        ctype = ctype.split(";")[0].strip().lower()
        headers = [(k.decode("latin-1"), v.decode("utf-8", "replace"))
                   for k, vs in request.requestHeaders.getAllRawHeaders() for v in vs]
        structures = parse_structures(headers, body, ctype)
        query = {k.decode("utf-8", "replace"): v[0].decode("utf-8", "replace")
                 for k, v in parse_qs(request.uri.partition(b"?")[2]).items()}
        reply = await self._route(actor, method, path, structures, query)
        if mtype == URI_LIST and not reply.listing:
            raise BadRendering("text/uri-list renders listings of locations only.")
        return reply, mtype

    async def _route(self, actor, method, path, st, query):
        if path in _QUERY_PATHS:
            if method in ("GET", "HEAD"):
                return await self._query(actor, st)
            if method in ("PUT", "POST", "DELETE"):
                raise OCCIError("User-defined Mixins are not supported.", 501)
            raise OCCIError(f"{method} is not allowed on the query interface.", 405)
        if path in ("/entity/", "/resource/", "/link/"):
            if method not in ("GET", "HEAD"):
                raise OCCIError(f"{method} is not allowed on {path}.", 405)
            return await self._core_collection(actor, path)
        parts = path.strip("/").split("/")
        if parts[0] in ("compute", "network", "storage") and len(parts) <= 2:
            return await self._resource(actor, method, parts, path, st, query)
        if parts[0] == "link" and len(parts) in (2, 3) and parts[1] in (
                "networkinterface", "storagelink"):
            if method not in ("GET", "HEAD"):
                raise OCCIError(f"{method} is not allowed on links: links are made with "
                                f"their compute.", 405)
            return await self._link(actor, parts[1], parts[2] if len(parts) == 3 else None,
                                    path)
        if parts[0] == "mixin" and path.endswith("/"):
            if method not in ("GET", "HEAD"):
                raise OCCIError(f"{method} is not allowed on a Mixin's location: nebtwist's "
                                f"Mixins are set when an entity is created.", 405)
            return await self._mixin_collection(actor, path, st)
        raise OCCIError(f"No OCCI entity or collection at {path}.", 404)

    async def _resource(self, actor, method, parts, path, st, query):
        kind = parts[0]
        if len(parts) == 1 or not parts[1]:
            if not path.endswith("/"):
                raise OCCIError(f"No OCCI entity at {path}; the collection is {path}/.", 404)
            if method in ("GET", "HEAD"):
                return await self._collection(actor, kind, st)
            if method == "POST":
                return await self._create(actor, kind, st)
            raise OCCIError(f"{method} is not allowed on /{kind}/.", 405)
        if not parts[1].isdigit() or path.endswith("/"):
            raise OCCIError(f"No OCCI entity at {path}.", 404)
        oid = int(parts[1])
        if method in ("GET", "HEAD"):
            return _Reply(rendering=await self._entity(actor, kind, oid))
        if method == "DELETE":
            await self._delete(actor, kind, oid)
            return _Reply()
        if method == "POST" and "action" in query:
            await self._action(actor, kind, oid, query["action"], st)
            return _Reply()
        if method == "POST":
            raise OCCIError("Updating an entity (adding Mixins or attributes) is not "
                            "supported.", 501)
        raise OCCIError(f"{method} is not allowed on /{kind}/{oid}.", 405)

    # -- the query interface (GFD.185 "Handling the Query Interface") ---------------------

    def _resource_tpl_categories(self):
        """The resource_tpl Mixins, titled with the CPU and MEMORY (MB) each
        VM type's template renders (as the EC2 front's DescribeInstanceTypes)."""
        if self._resource_tpls is None:
            from nebtwist.core.vmtypes import VMTypeError
            from nebtwist.template import Template

            out = []
            for name in (self.vmtypes.names() if self.vmtypes else ()):
                try:
                    t = Template.parse(self.vmtypes.render(name, image_id=0, user="oneadmin"))
                    cpu, memory = float(t.get_str("CPU")), float(t.get_str("MEMORY"))
                except (VMTypeError, TypeError, ValueError):
                    cpu = memory = None
                out.append(model.resource_tpl(name, cpu, memory))
            self._resource_tpls = out
        return self._resource_tpls

    async def _query(self, actor, st):
        images = await _call(self.requests.image_list, actor)
        categories = list(model.STATIC)
        categories += [model.os_tpl(i) for i in sorted(images, key=lambda i: i.oid)
                       if i.type == 0]
        categories += self._resource_tpl_categories()
        wanted = {(t, s) for t, s, _c in st.categories}
        if wanted:
            categories = [c for c in categories if (c.term, c.scheme) in wanted]
        return _Reply(rendering=entities.Rendering(categories=categories, query=True))

    # -- collections, entities, creation ----------------------------------------------------

    async def _renderings(self, actor, kind):
        """``[(location, Rendering)]`` of the user's entities of ``kind``."""
        render = {"compute": entities.compute, "network": entities.network,
                  "storage": entities.storage}[kind]
        return [(f"/{kind}/{o.oid}", render(o)) for o in await self._objects(actor, kind)]

    @staticmethod
    def _listing(found, wanted):
        """A listing of the locations whose rendering has every Category of
        ``wanted`` (``(term, scheme)`` pairs; GFD.185 "Operations on Mixins or
        Kinds": a Category in the request filters); ``204`` when empty."""
        locations = [loc for loc, r in found
                     if not wanted or wanted <= {(c.term, c.scheme) for c in r.categories}]
        return _Reply(204 if not locations else 200, locations=locations, listing=True)

    async def _collection(self, actor, kind, st):
        wanted = {(t, s) for t, s, c in st.categories if c != "action"}
        if not wanted:  # no rendering needed: ids only
            return self._listing(
                [(f"/{kind}/{o.oid}", None) for o in await self._objects(actor, kind)], set())
        return self._listing(await self._renderings(actor, kind), wanted)

    async def _objects(self, actor, kind):
        if kind == "compute":
            objs = [o for o in await _call(self.requests.vm_list, actor) if o.state != DONE]
        elif kind == "network":
            objs = await _call(self.requests.vnet_list, actor)
        else:
            objs = await _call(self.requests.image_list, actor)
        return sorted(objs, key=lambda o: o.oid)

    async def _core_collection(self, actor, path):
        """The locations of OCCI Core's Kinds: ``/resource/`` (computes,
        networks, storages), ``/link/`` (networkinterfaces, storagelinks),
        ``/entity/`` (both)."""
        locations = []
        if path in ("/entity/", "/resource/"):
            for kind in ("compute", "network", "storage"):
                locations += [f"/{kind}/{o.oid}" for o in await self._objects(actor, kind)]
        if path in ("/entity/", "/link/"):
            for kind in ("networkinterface", "storagelink"):
                locations += (await self._link(actor, kind, None, path)).locations
        return _Reply(204 if not locations else 200, locations=locations, listing=True)

    async def _mixin_collection(self, actor, path, st):
        """``GET`` a Mixin's location: the entities that have it (GFD.185
        "Operations on Mixins or Kinds")."""
        query = await self._query(actor, Structures())
        mixin = next((c for c in query.rendering.categories
                      if c.cls == "mixin" and c.location == path), None)
        if mixin is None:
            raise OCCIError(f"No OCCI Mixin at {path}.", 404)
        found = []
        for kind in ("compute", "network", "storage"):
            found += await self._renderings(actor, kind)
        wanted = {(mixin.term, mixin.scheme)}
        wanted |= {(t, s) for t, s, c in st.categories if c != "action"}
        return self._listing(found, wanted)

    async def _entity(self, actor, kind, oid):
        if kind == "compute":
            vm = await _call(self.requests.vm_get, actor, oid)
            if vm.state == DONE:
                raise OCCIError(f"compute {oid} is gone (DONE).", 410)
            return entities.compute(vm)
        if kind == "network":
            return entities.network(await _call(self.requests.vnet_get, actor, oid))
        return entities.storage(await _call(self.requests.image_get, actor, oid))

    async def _create(self, actor, kind, st):
        if kind == "compute":
            text = build.compute_template(st, actor, self.vmtypes)
            oid = await _call(self.requests.vm_allocate, actor, text)
        elif kind == "network":
            oid = await _call(self.requests.vn_allocate, actor, build.network_template(st))
        else:
            oid = await _call(self.requests.image_allocate, actor, build.storage_template(st))
        return _Reply(201, locations=[f"/{kind}/{oid}"], listing=True)

    async def _delete(self, actor, kind, oid):
        if kind == "compute":
            vm = await _call(self.requests.vm_get, actor, oid)
            if vm.state == DONE:
                raise OCCIError(f"compute {oid} is gone (DONE).", 410)
            await _call(self.requests.vm_action, actor, "finalize", oid)
        elif kind == "network":
            await _call(self.requests.vn_delete, actor, oid)
        else:
            await _call(self.requests.image_delete, actor, oid)

    # -- actions (GFD.185 "Operations on Resource Instances"; GFD.184's Actions) ----------

    async def _action(self, actor, kind, oid, term, st):
        scheme = {"compute": model.COMPUTE_ACTION, "network": model.NETWORK_ACTION,
                  "storage": model.STORAGE_ACTION}[kind]
        actions = [(t, s) for t, s, c in st.categories if c == "action"]
        if actions != [(term, scheme)]:
            raise BadRendering(f"the request must name the Action {scheme}{term} (one "
                               f"Category of class action)")
        method = st.attributes.get("method")
        if method is not None and not isinstance(method, str):
            raise BadRendering("the method attribute must be a string")
        if kind == "compute":
            vm = await _call(self.requests.vm_get, actor, oid)
            name = _compute_action(vm, term, method)
            try:
                await _call(self.requests.vm_action, actor, name, oid)
            except errors.ActionError as e:  # "not available": Bad Request
                raise OCCIError(e.message, 400) from None
        elif kind == "network":
            await _call(self.requests.vnet_get, actor, oid)
            if term == "down":
                raise OCCIError("A nebtwist virtual network is always active: it cannot be "
                                "brought down (delete it instead).", 400)
            if term != "up":
                raise BadRendering(f"unknown network Action {term!r} (up, down)")
        else:
            if term not in ("online", "offline"):
                raise BadRendering(f"unknown storage Action {term!r} (online, offline)")
            try:
                await _call(self.requests.image_enable, actor, oid, term == "online")
            except errors.ActionError as e:
                raise OCCIError(e.message, 400) from None

    # -- links ------------------------------------------------------------------------------

    async def _link(self, actor, kind, link_id, path):
        vms = [vm for vm in await _call(self.requests.vm_list, actor) if vm.state != DONE]
        ids = entities.nic_links if kind == "networkinterface" else entities.disk_links
        if not link_id:
            locations = [f"/link/{kind}/{lid}" for vm in sorted(vms, key=lambda v: v.oid)
                         for lid, _v, _n in ids(vm)]
            return _Reply(204 if not locations else 200, locations=locations, listing=True)
        m = re.match(r"^compute_(\d+)_(nic|disk)_\d+$", link_id)
        vm = None
        if m and m.group(2) == ("nic" if kind == "networkinterface" else "disk"):
            vm = await _call(self.requests.vm_get, actor, int(m.group(1)))
        render = entities.networkinterface if kind == "networkinterface" else entities.storagelink
        rendering = render(vm, link_id) if vm is not None and vm.state != DONE else None
        if rendering is None:
            raise OCCIError(f"No OCCI link at {path}.", 404)
        return _Reply(rendering=rendering)


#: compute Action methods (GFD.184 Table 6) -> OpenNebula 3.4 ``one.vm.action``.
_STOP = {None: "shutdown", "graceful": "shutdown", "acpioff": "shutdown", "poweroff": "cancel"}
_RESTART = {None: "reboot", "graceful": "reboot", "warm": "reboot", "cold": "reboot"}
_SUSPEND = {None: "suspend", "hibernate": "suspend", "suspend": "suspend"}


def _compute_action(vm, term, method):
    """The 3.4 action of compute Action ``term`` with ``method`` (module docstring).

    :raises BadRendering: an unknown Action or method.
    """
    if term == "start":
        if method is not None:
            raise BadRendering("the start Action takes no method")
        return "release" if vm.state == HOLD else "resume"
    table = {"stop": _STOP, "restart": _RESTART, "suspend": _SUSPEND}.get(term)
    if table is None:
        raise BadRendering(f"unknown compute Action {term!r} (start, stop, restart, suspend)")
    if method not in table:
        raise BadRendering(f"unknown method {method!r} of {term} "
                           f"({', '.join(k for k in table if k)})")
    if term == "restart" and vm.lcm_state in (BOOT, UNKNOWN):
        return "restart"  # 3.4: deploy again a VM that did not boot or was lost
    return table[method]


__all__ = ["OCCIResource"]
