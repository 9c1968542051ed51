"""The XML-RPC core API: OpenNebula's ``one.*`` methods on ``/RPC2``.

The RequestManager parses and type-checks each call, authenticates the
session string (its first parameter), calls :class:`nebtwist.core.requests.Requests`
and answers in OpenNebula 3.4's shape (``src/rm/Request.cc``)::

    [True, value, 0]                           # success
    [False, "[MethodName] message", code]      # failure

with the 3.4 codes of :mod:`nebtwist.errors`. Wrong arity or types answer
``0x1000`` naming the expected signature; a body that is not XML-RPC at all
gets an XML-RPC fault (Twisted's), and the server keeps serving.

Several generations of clients are accepted where they differ:

* ``one.host.allocate``: 1.4 (name, im, vmm, tm), 3.4 (name, im, vmm, vnm,
  cluster) and current (name, im, vmm, cluster) forms, told apart by arity
  and types; the CLI's (name, im, vmm, -1) is the current form.
* ``one.vm.action``: the 3.4 order (action, id); today's action names
  (``terminate`` ...) map to 3.4's.
* pool infos: 1.4's single filter argument, 3.4's (filter, start, end[, state])
  and current clients' extra arguments.
* ``one.vm.recover``: 5.x's operation code (0 failure, 1 success, 2 retry,
  3 delete) and 4.2's boolean (true success, false failure).
* ``one.vm.info``/``one.host.info``: a trailing boolean (current ``decrypt``)
  is accepted and ignored.
"""

from twisted.internet import defer
from twisted.internet.interfaces import IPullProducer
from twisted.plugin import IPlugin
from twisted.web import xmlrpc
from zope.interface import implementer

from nebtwist.api.images import image_methods
from nebtwist.api.limits import LimitedRequest
from nebtwist.api.plugin import HTTPFront
from nebtwist.core.groups import xmlrpc_table as groups_table
from nebtwist.core.pool import PoolXML
from nebtwist.errors import APIError, INTERNAL, NebulaError
from nebtwist.interfaces import IAPIFront
from nebtwist.log import OneLogger

log = OneLogger("ReM")


#: String values at least this long are sent as CDATA (see RequestManager._cbRender).
CDATA_THRESHOLD = 1024


#: Bytes written per reactor turn when a pool listing is sent (see _SliceProducer).
SLICE = 256 * 1024


def _response_head(ok):
    return ("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n"
            "<value><array><data>\n<value><boolean>" + ("1" if ok else "0")
            + "</boolean></value>\n<value><string><![CDATA[").encode()


def _response_tail(code):
    return ("]]></string></value>\n<value><int>" + str(int(code))
            + "</int></value>\n</data></array></value>\n</param>\n</params>\n"
            "</methodResponse>\n").encode()


@implementer(IPullProducer)
class _SliceProducer:
    """Writes a response made of many byte pieces (a pool listing's cached
    bodies) about :data:`SLICE` bytes at a time, each time the connection has
    sent the previous slice: other calls are served between slices, and a slow
    reader never makes the whole reply sit in memory twice."""

    def __init__(self, request, parts):
        self.request = request
        self.parts = parts
        self.index = 0

    def start(self):
        self.request.registerProducer(self, False)

    def resumeProducing(self):
        parts, i, n = self.parts, self.index, len(self.parts)
        chunk, size = [], 0
        while i < n and size < SLICE:
            chunk.append(parts[i])
            size += len(parts[i])
            i += 1
        self.index = i
        if chunk:
            self.request.write(b"".join(chunk))
        if i >= n:
            self.parts = ()
            self.request.unregisterProducer()
            self.request.finish()

    def stopProducing(self):
        self.parts = ()
        self.index = 0


#: Further method tables, one per area (images, groups, ...): callables
#: ``(requests, Signature) -> {method: (MessageName, [Signature, ...])}``.
EXTRA_TABLES = []
EXTRA_TABLES.append(image_methods)  # one.image.*, one.template.* (nebtwist.api.images)
EXTRA_TABLES.append(groups_table)  # one.group.*, one.acl.*, chown/chmod (nebtwist.core.groups)


class Signature:
    """One accepted parameter list: types after the session, and a binder.

    :param types: string of ``i`` (int, not bool), ``s`` (str), ``b`` (bool
        or 0/1); optional trailing parameters are listed after ``|``.
    :param bind: ``(user, *args) -> awaitable or value`` calling the core.
    """

    def __init__(self, types, bind):
        required, _, optional = types.partition("|")
        self.required = required
        self.optional = optional
        self.bind = bind

    def matches(self, args):
        n = len(args)
        if not len(self.required) <= n <= len(self.required) + len(self.optional):
            return False
        return all(_is(t, a) for t, a in zip(self.required + self.optional, args))

    def describe(self):
        opt = f"[, {', '.join(_TYPE_NAMES[t] for t in self.optional)}]" if self.optional else ""
        return "(session" + "".join(", " + _TYPE_NAMES[t] for t in self.required) + opt + ")"


_TYPE_NAMES = {"i": "int", "s": "string", "b": "bool"}


def _is(t, value):
    if t == "i":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "s":
        return isinstance(value, str)
    if t == "b":
        return isinstance(value, bool) or (isinstance(value, int) and value in (0, 1))
    return False


class RequestManager(xmlrpc.XMLRPC):
    """The ``/RPC2`` resource.

    :param nebula: the core (authentication).
    :param requests: :class:`~nebtwist.core.requests.Requests`.
    :param max_body: largest request body accepted, in bytes.
    """

    def __init__(self, nebula, requests, max_body=64 * 1024 * 1024):
        super().__init__(allowNone=False, useDateTime=False)
        self.nebula = nebula
        self.requests = requests
        self.max_body = max_body
        self.methods = self._table(requests)

    @staticmethod
    def _table(r):
        table = RequestManager._core_table(r)
        for extra in EXTRA_TABLES:
            table.update(extra(r, Signature))
        return table

    @staticmethod
    def _core_table(r):
        def S(types, bind):
            return Signature(types, bind)

        return {
            # users and groups
            "one.user.allocate": ("UserAllocate", [
                S("ss|s", lambda u, n, p, d="core": r.user_allocate(u, n, p, d))]),
            "one.user.delete": ("UserDelete", [S("i", r.user_delete)]),
            "one.user.info": ("UserInfo", [S("i|b", lambda u, i, *_: r.user_info(u, i))]),
            "one.user.passwd": ("UserChangePassword", [S("is", r.user_passwd)]),
            "one.userpool.info": ("UserPoolInfo", [S("", r.userpool_info)]),
            "one.group.info": ("GroupInfo", [S("i|b", lambda u, i, *_: r.group_info(u, i))]),
            "one.grouppool.info": ("GroupPoolInfo", [S("", r.grouppool_info)]),
            # hosts
            "one.host.allocate": ("HostAllocate", [
                S("ssss", lambda u, n, im, vmm, tm: r.host_allocate(u, n, im, vmm, "dummy", tm)),
                S("sssi", lambda u, n, im, vmm, c: r.host_allocate(u, n, im, vmm, "dummy",
                                                                    None, c)),
                S("ssssi", lambda u, n, im, vmm, vnm, c: r.host_allocate(
                    u, n, im, vmm, vnm, None, c)),
            ]),
            "one.host.delete": ("HostDelete", [S("i", r.host_delete)]),
            "one.host.info": ("HostInfo", [S("i|b", lambda u, i, *_: r.host_info(u, i))]),
            "one.host.enable": ("HostEnable", [S("ib", lambda u, i, e: r.host_enable(
                u, i, bool(e)))]),
            "one.hostpool.info": ("HostPoolInfo", [S("", r.hostpool_info)]),
            # virtual networks
            "one.vn.allocate": ("VirtualNetworkAllocate", [S("s|i", r.vn_allocate)]),
            "one.vn.delete": ("VirtualNetworkDelete", [S("i", r.vn_delete)]),
            "one.vn.info": ("VirtualNetworkInfo", [S("i|b", lambda u, i, *_: r.vn_info(u, i))]),
            "one.vnpool.info": ("VirtualNetworkPoolInfo", [S("|iii", r.vnpool_info)]),
            # virtual machines
            "one.vm.allocate": ("VirtualMachineAllocate", [
                S("s|b", lambda u, t, *_: r.vm_allocate(u, t))]),
            "one.vm.deploy": ("VirtualMachineDeploy", [
                S("ii|bis", lambda u, v, h, *_: r.vm_deploy(u, v, h))]),
            "one.vm.action": ("VirtualMachineAction", [S("si", r.vm_action)]),
            # 5.x (id, int op) and 4.2 (id, bool success); 0/1 mean the same in both
            "one.vm.recover": ("VirtualMachineRecover", [S("ii", r.vm_recover),
                                                         S("ib", r.vm_recover)]),
            "one.vm.migrate": ("VirtualMachineMigrate", [
                S("iib|bii", lambda u, v, h, live, *_: r.vm_migrate(u, v, h, live))]),
            "one.vm.info": ("VirtualMachineInfo", [S("i|b", lambda u, i, *_: r.vm_info(u, i))]),
            "one.vmpool.info": ("VirtualMachinePoolInfo", [
                S("|iiiis", lambda u, f=-2, s=-1, e=-1, st=-1, *_: r.vmpool_info(
                    u, f, s, e, st))]),
            # system
            "one.system.version": ("SystemVersion", [S("", r.system_version)]),
            "one.system.config": ("SystemConfig", [S("", r.system_config)]),
        }

    def listProcedures(self):
        """Every method name served."""
        return sorted(self.methods)

    def render_POST(self, request):
        """Refuse oversize bodies before parsing (``[false, ..., 0x1000]`` is
        not possible without a method name, so an XML-RPC fault answers)."""
        request.content.seek(0, 2)
        size = request.content.tell()
        request.content.seek(0, 0)
        if size > self.max_body:
            request.setHeader(b"content-type", b"text/xml; charset=utf-8")
            self._cbRender(xmlrpc.Fault(self.FAILURE, f"Request body of {size} bytes is over "
                                        f"the limit of {self.max_body}"), request)
            return xmlrpc.server.NOT_DONE_YET
        return super().render_POST(request)

    def _cbRender(self, result, request, responseFailed=None):
        """Write the response; large string values go out as CDATA.

        ``[ok, "<VM_POOL>...", code]`` escaped the standard way turns every
        ``<`` into ``&lt;``, which XML parsers report one entity at a time: a
        10,000-VM pool took Python's xmlrpc.client 0.3 s to read. A CDATA
        section (valid in any XML-RPC ``<string>``) carries the same value
        and reads about ten times faster, with a smaller body.
        """
        if (not responseFailed and isinstance(result, list) and len(result) == 3
                and isinstance(result[1], PoolXML)):
            # A pool listing: its cached pieces, written in slices.
            ok, listing, code = result
            head, tail = _response_head(ok), _response_tail(code)
            request.setHeader(b"content-length", b"%d" % (len(head) + len(listing) + len(tail)))
            _SliceProducer(request, [head, *listing.parts, tail]).start()
            return
        if (not responseFailed and isinstance(result, list) and len(result) == 3
                and isinstance(result[1], str) and len(result[1]) >= CDATA_THRESHOLD):
            ok, value, code = result
            body = "".join((
                "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n"
                "<value><array><data>\n<value><boolean>", "1" if ok else "0",
                "</boolean></value>\n<value><string><![CDATA[",
                value.replace("]]>", "]]]]><![CDATA[>"),
                "]]></string></value>\n<value><int>", str(int(code)),
                "</int></value>\n</data></array></value>\n</param>\n</params>\n"
                "</methodResponse>\n")).encode("utf-8")
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
            request.finish()
            return
        super()._cbRender(result, request, responseFailed)

    def lookupProcedure(self, procedurePath):
        """The handler for ``procedurePath``; unknown methods get a fault."""
        entry = self.methods.get(procedurePath)
        if entry is None:
            raise xmlrpc.NoSuchFunction(self.NOT_FOUND,
                                        f"method {procedurePath!r} is not supported")
        name, signatures = entry

        def handler(*args):
            return defer.ensureDeferred(self._call(name, signatures, args))

        return handler

    async def _call(self, name, signatures, args):
        try:
            if not args or not isinstance(args[0], str):
                raise APIError("The first parameter must be the session string "
                               "(user:password).")
            session, params = args[0], args[1:]
            user = self.nebula.authenticate(session)
            for sig in signatures:
                if sig.matches(params):
                    break
            else:
                expected = " or ".join(s.describe() for s in signatures)
                got = "(session" + "".join(", " + type(a).__name__ for a in params) + ")"
                raise APIError(f"Wrong parameters: expected {expected}, got {got}.")
            result = sig.bind(user, *params)
            if hasattr(result, "__await__"):
                result = await result
            return [True, result, 0]
        except NebulaError as e:
            log.debug("{name}: {m}", name=name, m=e.message)
            return [False, f"[{name}] {e.message}", e.code]
        except Exception as e:  # noqa: BLE001 - never a traceback to the client
            log.failure("{name} failed", name=name)
            return [False, f"[{name}] Internal error: {type(e).__name__}: {e}", INTERNAL]


# -- the front plug-in (nebtwist.api.plugin) --------------------------------------------------

class XMLRPCRequest(LimitedRequest):
    """A request that does not parse POST bodies as HTML forms (XML-RPC bodies
    are not forms, and Twisted's Content-Type parsing costs ~10% of a call),
    and refuses a body over oned.conf ``MESSAGE_SIZE`` (``site.max_body``) at
    its headers (:mod:`nebtwist.api.limits`): 413 with an XML-RPC fault."""

    def __init__(self, *args, **kwargs):
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)

    def gotLength(self, length):
        self.body_limit = getattr(getattr(self.channel, "site", None), "max_body", None)
        super().gotLength(length)

    def too_large(self, size):
        import xmlrpc.client

        fault = xmlrpc.client.Fault(8002, f"Request body of {size} bytes or more is over the "
                                          f"limit of {self.body_limit} (MESSAGE_SIZE)")
        self.answer_now(413, [(b"Content-Type", b"text/xml; charset=utf-8")],
                        xmlrpc.client.dumps(fault, methodresponse=True).encode())


@implementer(IPlugin, IAPIFront)
class XMLRPCFront(HTTPFront):
    """OpenNebula's XML-RPC API (``one.*`` at ``/RPC2``), the front the one*
    commands, pyone and the hooks use.

    Endpoints when ``API_FRONT = [ NAME = "xmlrpc" ]`` names none: oned.conf
    ``PORT`` (2633) on ``LISTEN_ADDRESS`` (OpenNebula 5's key; all addresses
    when unset), then each oned.conf ``LISTEN`` endpoint string.
    """

    name = "xmlrpc"
    description = "OpenNebula's XML-RPC API (one.* on PORT, /RPC2)"
    label = "XML-RPC API"
    defaults_key = "LISTEN"
    request_factory = XMLRPCRequest

    def defaults(self, ctx):
        from nebtwist.core import config as configmod

        config = ctx.config
        return [configmod.tcp_description(config.get_int("PORT"),
                                          config.get("LISTEN_ADDRESS"))] + [
            v for v in config.template.get_all("LISTEN") if isinstance(v, str)]

    def resource(self, ctx):
        return RequestManager(ctx.requests.nebula, ctx.requests, max_body=ctx.max_body)
