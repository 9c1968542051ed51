"""The XML-RPC front as a plug-in (:mod:`nebtwist.api.plugin`)."""

from twisted.plugin import IPlugin
from zope.interface import implementer

from nebtwist.api.limits import LimitedRequest
from nebtwist.api.plugin import HTTPFront
from nebtwist.api.xmlrpc.resource import RequestManager
from nebtwist.interfaces import IAPIFront


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
        return RequestManager(ctx.requests, max_body=ctx.max_body)
