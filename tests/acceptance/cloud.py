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


class FrontDaemonTestCase(unittest.TestCase):
    """A daemon serving XML-RPC and one more API front (``FRONT``, an
    ``API_FRONT`` NAME) on a free port, with ``USER`` (``PASSWORD``), the
    dummy host ``host01`` MONITORED and the network ``NET`` (a template
    text) that every user may use. Subclasses set the four class attributes
    and call :meth:`start_front` from ``setUp``.

    Attributes once started: ``daemon``, ``one`` (pyone as oneadmin),
    ``port`` (the front's), ``location`` (the daemon's ``ONE_LOCATION``).
    """

    FRONT = USER = PASSWORD = NET = None

    def start_front(self, conf_name, conf_text):
        """Write the front's conf file ``conf_name`` holding ``conf_text``,
        start the daemon with the front on it, and make the user, host and
        network."""
        self.port = free_port()
        self.location = location = os.path.abspath(self.mktemp())
        os.makedirs(location)
        conf = os.path.join(location, conf_name)
        with open(conf, "w", encoding="utf-8") as f:
            f.write(conf_text)
        self.daemon = NebulaDaemon(location, list(FAST) + [
            'API_FRONT=[NAME="xmlrpc"]',
            f'API_FRONT=[NAME="{self.FRONT}",ENDPOINT="tcp:{self.port}:interface=127.0.0.1",'
            f'CONF="{conf}"]'])
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.one = pyone.OneServer(self.daemon.endpoint, session=ADMIN_SESSION)
        rc, _, err = self.daemon.cli("oneuser", "create", self.USER, self.PASSWORD)
        self.assertEqual((rc, err), (0, ""))
        hid = self.one.host.allocate("host01", "im_dummy", "vmm_dummy", "tm_dummy")
        self.wait_for(lambda: self.one.host.info(hid).STATE == 2, "host01 MONITORED")
        nid = self.one.vn.allocate(self.NET, -1)
        self.one.vn.chmod(nid, 1, 1, 0, 0, 0, 0, 1, 0, 0)

    def wait_for(self, predicate, message, timeout=90):
        """:meth:`NebulaDaemon.wait_for`, with the daemon's logs on failure."""
        return self.daemon.wait_for(
            predicate, timeout=timeout,
            message=lambda: f"{message}\n{self.daemon.diagnostics(25)}")
