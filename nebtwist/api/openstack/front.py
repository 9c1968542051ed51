"""The OpenStack front as a plug-in (:class:`nebtwist.api.plugin.HTTPFront`).

Enabled in oned.conf with::

    API_FRONT = [ NAME = "openstack", ENDPOINT = "tcp:5000:interface=127.0.0.1",
                  CONF = "openstack.conf" ]

``CONF`` names the front's configuration (default ``openstack.conf``: beside
oned.conf, else in ``$ONE_LOCATION/etc``, else the shipped one). This module
stays light: the front's modules are imported when it starts.
"""

import json

from twisted.plugin import IPlugin
from zope.interface import implementer

from nebtwist.api.limits import LimitedRequest
from nebtwist.api.plugin import FrontStartupError, HTTPFront
from nebtwist.interfaces import IAPIFront

#: Where the front listens when its API_FRONT vector has no ENDPOINT
#: (Keystone's public port, 5000).
DEFAULT_ENDPOINTS = ("tcp:5000:interface=127.0.0.1",)


class OpenStackRequest(LimitedRequest):
    """A request whose body over oned.conf ``MESSAGE_SIZE`` is refused before
    it is read, in Nova's shape (413 ``overLimit``)."""

    def gotLength(self, length):
        self.body_limit = getattr(getattr(self.channel, "site", None), "max_body", None)
        super().gotLength(length)

    def too_large(self, size):
        body = {"overLimit": {"code": 413, "message":
                              f"Request body ({size} bytes or more) is larger than the "
                              f"{self.body_limit} bytes allowed."}}
        self.answer_now(413, [(b"Content-Type", b"application/json")],
                        json.dumps(body).encode())


@implementer(IPlugin, IAPIFront)
class OpenStackFront(HTTPFront):
    """Keystone v3, Nova v2.1 and Glance v2 for OpenStack clients."""

    name = "openstack"
    description = "OpenStack-compatible API (Keystone v3, Nova v2.1, Glance v2)"
    default_endpoints = DEFAULT_ENDPOINTS
    request_factory = OpenStackRequest

    def __init__(self):
        self._settings = {}  # id(ctx) -> Settings, from prepare to resource

    async def prepare(self, ctx):
        """Read openstack.conf (``ctx.conf_path("openstack.conf")``) and
        compile its flavors.

        :raises FrontStartupError: the file cannot be read, holds a bad
            value, or a VM type fails to render.
        """
        from nebtwist.api.openstack.config import build_settings
        from nebtwist.core.config import ConfigError

        prefix = (ctx.config.get("DEFAULT_DEVICE_PREFIX") if ctx.config is not None
                  else None) or "hd"
        try:
            settings = build_settings(ctx.conf_path("openstack.conf"), ctx.requests,
                                      ctx.reactor, device_prefix=prefix)
        except ConfigError as e:
            raise FrontStartupError(f"openstack front: {e}") from None
        if ctx.max_body:
            settings.max_body = min(settings.max_body, ctx.max_body)
        self._settings[id(ctx)] = settings

    def resource(self, ctx):
        """The front's root resource (settings from :meth:`prepare`)."""
        from nebtwist.api.openstack.resource import OpenStackResource

        settings = self._settings.pop(id(ctx), None)
        if settings is None:
            raise FrontStartupError("openstack front: resource() before prepare()")
        return OpenStackResource(settings)
