"""The OCCI 1.1 front as a plug-in (:class:`nebtwist.api.plugin.HTTPFront`).

Enabled in oned.conf with::

    API_FRONT = [ NAME = "occi", ENDPOINT = "tcp:4567:interface=127.0.0.1" ]

Without ``ENDPOINT`` it listens on ``tcp:4567:interface=127.0.0.1``, the port
of OpenNebula 3.x's OCCI server (``occi-server.conf`` ``:port: 4567``); the
EC2 front's econe.conf ``PORT`` defaults to 4567 too, so when both are enabled
one of them needs another port. The front has no conf file of its own: its
resource_tpl Mixins are the VM types of econe.conf, read as the EC2 front
reads them (oned.conf ``ECONE_CONF``, else ``$ONE_LOCATION/etc/econe.conf``,
else the shipped one; :func:`nebtwist.core.config.econe_path`). This module
stays light: the front's modules are imported when it starts.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from nebtwist.api.plugin import FrontStartupError, HTTPFront
from nebtwist.interfaces import IAPIFront

#: Where the front listens when its API_FRONT vector has no ENDPOINT.
DEFAULT_ENDPOINTS = ("tcp:4567:interface=127.0.0.1",)


def load_vmtypes(config, one_location):
    """The econe.conf VM types (:class:`nebtwist.core.vmtypes.VMTypes`) the
    front offers as resource_tpl Mixins.

    :param config: oned.conf (``ECONE_CONF``, ``DEFAULT_DEVICE_PREFIX``), or None
        for the shipped econe.conf.
    :raises FrontStartupError: econe.conf unreadable or malformed, a VM type
        that does not load.
    """
    from nebtwist import paths
    from nebtwist.core import config as configmod
    from nebtwist.core.vmtypes import VMTypeError, VMTypes

    path = (configmod.econe_path(config, one_location) if config is not None
            else paths.shipped("conf", "econe.conf"))
    prefix = (config.get("DEFAULT_DEVICE_PREFIX") if config is not None else None) or "hd"
    try:
        econe = configmod.load_econe(path)
        return VMTypes.load(econe, configmod.econe_templates_dirs(path), device_prefix=prefix)
    except configmod.ConfigError as e:
        raise FrontStartupError(f"occi front: econe.conf: {e}") from None
    except VMTypeError as e:
        raise FrontStartupError(f"occi front: econe.conf VM_TYPE: {e}") from None


@implementer(IPlugin, IAPIFront)
class OCCIFront(HTTPFront):
    """OGF OCCI 1.1 (GFD.183/184/185): compute, network and storage over HTTP."""

    name = "occi"
    description = "OGF OCCI 1.1 HTTP rendering (compute = VMs, network, storage = images)"
    default_endpoints = DEFAULT_ENDPOINTS

    def __init__(self):
        self._vmtypes = {}  # id(ctx) -> VMTypes, from prepare to resource

    async def prepare(self, ctx):
        """Load the econe.conf VM types (:func:`load_vmtypes`).

        :raises FrontStartupError: they cannot be loaded.
        """
        self._vmtypes[id(ctx)] = load_vmtypes(ctx.config, ctx.one_location)

    def resource(self, ctx):
        """The front's root :class:`~nebtwist.api.occi.resource.OCCIResource`
        (bodies up to ``ctx.max_body`` bytes)."""
        from nebtwist.api.occi.resource import OCCIResource

        return OCCIResource(ctx.requests, self._vmtypes.pop(id(ctx), None),
                            max_body=ctx.max_body)
