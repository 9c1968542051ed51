"""The public cloud front: one ``twisted.web`` site on econe.conf's endpoints.

The site's root routes each request to the EC2 Query API
(:class:`nebtwist.api.ec2.EC2Resource`): GET or POST on ``/`` with an
``Action``. OpenNebula 3.4 ran this as a separate Sinatra server
(``econe-server.rb``) behind a lighttpd TLS proxy; here it is part of the
controller's reactor and terminates TLS itself (:mod:`nebtwist.tls`).
"""

import weakref

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.web import server

from nebtwist.api.ec2 import EC2Resource
from nebtwist.core.vmtypes import VMTypeError

log = Logger()


def build_site(nebula, requests, vmtypes, econe_config=None):
    """A :class:`twisted.web.server.Site` serving :class:`EC2Resource`.

    :param econe_config: econe.conf: ``SERVER`` and ``SSL_SERVER`` are host
        names a SigV2 signature may name besides the Host header; ``REGION``
        and ``ZONE`` (default ``default``) are answered by DescribeRegions
        and DescribeAvailabilityZones.
    """
    region = (econe_config.get("REGION") if econe_config is not None else None) or "default"
    zone = (econe_config.get("ZONE") if econe_config is not None else None) or "default"
    hosts = [h for h in (econe_config.get("SERVER"), econe_config.get("SSL_SERVER"))
             if h] if econe_config is not None else []
    site = _Site(EC2Resource(nebula, requests, vmtypes, region=region, zone=zone,
                             hosts=hosts, econe=econe_config))
    site.displayTracebacks = False
    site.noisy = False
    site.log = lambda request: None
    return site


class _Site(server.Site):
    """A Site that knows its open connections, so that stopping the front
    closes kept-alive client connections too."""

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


async def install(reactor, nebula, requests, config, one_location, overrides=()):
    """Start the EC2 front: read econe.conf, compile its VM types and listen.

    :param config: oned.conf (``ECONE_CONF``, ``DEFAULT_DEVICE_PREFIX``).
    :param overrides: the ``--set`` values; ``econe.KEY=VALUE`` ones apply to
        econe.conf.
    :return: the listening ports: econe.conf ``PORT`` (``tcp:PORT``, default
        4567, 0 for any free port) then each ``LISTEN`` endpoint
        (:func:`nebtwist.tls.listen`).
    :raises EC2StartupError: econe.conf unreadable or malformed, a VM type
        that fails to load, a bad endpoint, or a port that cannot be bound.
    """
    from twisted.internet.error import CannotListenError

    from nebtwist import tls
    from nebtwist.core import config as configmod
    from nebtwist.core.vmtypes import VMTypes

    path = configmod.econe_path(config, one_location)
    try:
        econe = configmod.load_econe(path, overrides)
        port = econe.get_int("PORT", 4567)
    except configmod.ConfigError as e:
        raise EC2StartupError(f"econe.conf: {e}") from None
    try:
        vmtypes = VMTypes.load(econe, configmod.econe_templates_dirs(path),
                               device_prefix=config.get("DEFAULT_DEVICE_PREFIX") or "hd")
    except VMTypeError as e:
        raise EC2StartupError(f"econe.conf VM_TYPE: {e}") from None
    descriptions = [f"tcp:{port}"] + [
        v for v in econe.template.get_all("LISTEN") if isinstance(v, str)]
    site = build_site(nebula, requests, vmtypes, econe)
    try:
        ports = await tls.listen(reactor, descriptions, site)
    except tls.TLSConfigError as e:
        raise EC2StartupError(f"econe.conf LISTEN {e}") from None
    except CannotListenError as e:
        raise EC2StartupError(f"EC2 front: {e}") from None
    for desc, p in zip(descriptions, ports):
        log.info("EC2 Query API listening on {d} ({a})", d=desc, a=p.getHost())
    return [_Listening(p, site, reactor) for p in ports]
