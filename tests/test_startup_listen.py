"""Binding each front to chosen addresses (issue 9 section 4: both fronts
always listened on 0.0.0.0, whatever econe.conf SERVER said).

oned.conf ``LISTEN_ADDRESS`` (OpenNebula 5+'s key) is the XML-RPC ``PORT``'s
address; econe.conf ``SERVER``, when it is an address, is the EC2 ``PORT``'s
(econe-server bound ``:server:``). The listening ports' ``getHost()`` are
checked, and a connection to another local address is refused.
"""

import socket

from twisted.internet import threads
from twisted.trial import unittest

from nebtwist.testing import start_nebula


def _other_address():
    """A non-loopback address of this machine, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # documentation range: nothing is sent
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def _connects(host, port):
    try:
        socket.create_connection((host, port), timeout=10).close()
        return True
    except OSError:
        return False


class ListenAddressTests(unittest.TestCase):

    async def test_loopback_only(self):
        neb = await start_nebula(self, ['LISTEN_ADDRESS="127.0.0.1"',
                                        'econe.SERVER="127.0.0.1"'])
        xmlrpc_port = neb.service.ports[0].getHost()
        ec2_port = neb.service.ec2_ports[0].getHost()
        self.assertEqual(xmlrpc_port.host, "127.0.0.1")
        self.assertEqual(ec2_port.host, "127.0.0.1")
        self.assertTrue(await threads.deferToThread(_connects, "127.0.0.1", xmlrpc_port.port))
        other = _other_address()
        if other is not None:  # the same ports are not reachable on another address
            self.assertFalse(await threads.deferToThread(_connects, other, xmlrpc_port.port))
            self.assertFalse(await threads.deferToThread(_connects, other, ec2_port.port))

    async def test_ipv6_loopback(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback")
        neb = await start_nebula(self, ['LISTEN_ADDRESS="::1"', 'econe.SERVER="::1"'])
        self.assertEqual(neb.service.ports[0].getHost().host, "::1")
        self.assertEqual(neb.service.ec2_ports[0].getHost().host, "::1")

    async def test_defaults(self):
        """No LISTEN_ADDRESS: every address; an econe.conf SERVER that is a
        host name only names the front (signatures): every address."""
        neb = await start_nebula(self, ['econe.SERVER="cloud.example.org"'])
        self.assertEqual(neb.service.ports[0].getHost().host, "0.0.0.0")
        self.assertEqual(neb.service.ec2_ports[0].getHost().host, "0.0.0.0")
