"""The ElasticHosts front as a plug-in (:class:`nebtwist.api.plugin.HTTPFront`).

Enabled in oned.conf with::

    API_FRONT = [ NAME = "elastichosts", ENDPOINT = "tcp:8000:interface=127.0.0.1",
                  CONF = "elastichosts.conf" ]

``CONF`` names the front's configuration (default ``elastichosts.conf``:
beside oned.conf, else in ``$ONE_LOCATION/etc``, else the shipped one). This
module stays light: the front's modules are imported when it starts.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from nebtwist.api.plugin import FrontStartupError, HTTPFront
from nebtwist.interfaces import IAPIFront

#: Where the front listens when its API_FRONT vector has no ENDPOINT.
DEFAULT_ENDPOINTS = ("tcp:8000:interface=127.0.0.1",)


@implementer(IPlugin, IAPIFront)
class ElasticHostsFront(HTTPFront):
    """The ElasticHosts REST API (drives = images, servers = VMs)."""

    name = "elastichosts"
    description = "ElasticHosts REST API (drives and servers; CloudSigma API 1.0 too)"
    default_endpoints = DEFAULT_ENDPOINTS

    def __init__(self):
        self._settings = {}  # id(ctx) -> Settings, from prepare to resource

    @property
    def request_factory(self):
        """:class:`~nebtwist.api.elastichosts.resource.EHRequest` (413 in the API's shape)."""
        from nebtwist.api.elastichosts.resource import EHRequest

        return EHRequest

    async def prepare(self, ctx):
        """Read the front's conf file (``ctx.conf_path("elastichosts.conf")``).

        :raises FrontStartupError: the file cannot be read or holds a bad value.
        """
        from nebtwist.api.elastichosts import settings

        try:
            self._settings[id(ctx)] = settings.load(ctx.conf_path("elastichosts.conf"))
        except settings.ConfError as e:
            raise FrontStartupError(f"elastichosts front: {e}") from None

    def resource(self, ctx):
        """The front's root resource (settings from :meth:`prepare`, else the
        built-in defaults)."""
        from nebtwist.api.elastichosts.resource import ElasticHostsResource
        from nebtwist.api.elastichosts.settings import Settings

        found = self._settings.pop(id(ctx), None)
        return ElasticHostsResource(ctx.requests, found or Settings(), ctx.reactor)
