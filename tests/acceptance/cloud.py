"""Shared set-up of the public cloud acceptance tests: a real ``twistd -n
nebula`` whose public cloud front listens on plain HTTP (econe.conf ``PORT``)
and on TLS (``LISTEN = ssl:...`` with a certificate made by ``nebula-cert``,
which covers 127.0.0.1), a user who is not oneadmin, and a dummy host."""

import os
import socket
import subprocess
import sys

import pyone
from twisted.trial import unittest

from tests.acceptance.test_seed000 import ADMIN_SESSION, FAST, NebulaDaemon, free_port


def listens(port):
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class CloudFrontTestCase(unittest.TestCase):
    """``setUp`` starts the daemon and creates ``USER`` (password ``PASSWORD``,
    class attributes of the subclass) and the dummy host ``host01``.

    Attributes: ``daemon`` (:class:`NebulaDaemon`), ``one`` (pyone as
    oneadmin), ``http_port``, ``tls_port``, ``cert`` (the PEM certificate
    clients trust).
    """

    USER = PASSWORD = None

    def setUp(self):
        self.http_port, self.tls_port = free_port(), free_port()
        location = os.path.abspath(self.mktemp())
        os.makedirs(location)
        key, self.cert = os.path.join(location, "key.pem"), os.path.join(location, "cert.pem")
        done = subprocess.run(
            [sys.executable, "-m", "nebtwist.cli.nebula_cert", "--key", key,
             "--cert", self.cert], capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        listen = f"ssl:{self.tls_port}:interface=127.0.0.1:privateKey={key}:certKey={self.cert}"
        self.daemon = NebulaDaemon(location, list(FAST) + [
            f"econe.PORT={self.http_port}", f'econe.LISTEN="{listen}"'])
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        for port in (self.http_port, self.tls_port):
            self.wait_for(lambda port=port: listens(port), f"the front on {port}")
        self.one = pyone.OneServer(self.daemon.endpoint, session=ADMIN_SESSION)
        for command in (("oneuser", "create", self.USER, self.PASSWORD),
                        ("onehost", "create", "host01", "im_dummy", "vmm_dummy", "tm_dummy")):
            rc, _, err = self.daemon.cli(*command)
            self.assertEqual((rc, err), (0, ""))

    def wait_for(self, predicate, message, timeout=60):
        """:meth:`NebulaDaemon.wait_for`, with the daemon's logs on failure."""
        return self.daemon.wait_for(
            predicate, timeout=timeout,
            message=lambda: f"{message}\n{self.daemon.diagnostics(25)}")
