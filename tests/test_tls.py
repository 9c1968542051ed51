"""TLS termination (nebtwist.tls) and the ``nebula-cert`` command.

The daemon tests start a whole nebtwist in-process (start_nebula) with an
``ssl:`` LISTEN endpoint on 127.0.0.1 and talk to it with real clients
(Python's ssl module under xmlrpc.client, and pyone over requests) on
threads, so the handshakes are the real OpenSSL ones on both sides.
"""

import datetime
import io
import os
import ssl
import stat
import xmlrpc.client

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.internet import threads
from twisted.trial import unittest

from nebtwist.cli import nebula_cert
from nebtwist.template import Template
from nebtwist.testing import ONEADMIN_SESSION, start_nebula
from nebtwist.tls import TLSConfigError, parse_description, server_endpoint


def make_cert(testcase, *argv, dirname=None):
    """Run nebula-cert in a fresh directory; returns (key path, cert path, stdout)."""
    d = os.path.abspath(testcase.mktemp() if dirname is None else dirname)
    os.makedirs(d, exist_ok=True)
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    out, err = io.StringIO(), io.StringIO()
    rc = nebula_cert.main(["--key", key, "--cert", cert, *argv], stdout=out, stderr=err)
    testcase.assertEqual((rc, err.getvalue()), (0, ""))
    return key, cert, out.getvalue()


def listen_line(stdout):
    """The LISTEN value printed by nebula-cert, read as oned.conf would read it."""
    line = [ln for ln in stdout.splitlines() if ln.startswith("LISTEN")][0]
    return Template.parse(line + "\n").get_all("LISTEN")[0]


def public_der(key):
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


class NebulaCertTests(unittest.TestCase):

    def test_default_ec_certificate(self):
        key_path, cert_path, out = make_cert(self, "--cn", "front.example",
                                             "--san", "cloud.example", "--san", "10.1.2.3",
                                             "--days", "30")
        self.assertEqual(stat.S_IMODE(os.stat(key_path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(cert_path).st_mode), 0o644)
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        self.assertIsInstance(key, ec.EllipticCurvePrivateKey)
        self.assertEqual(key.curve.name, "secp256r1")
        self.assertEqual(public_der(cert.public_key()), public_der(key.public_key()))
        self.assertEqual(cert.subject, cert.issuer)
        self.assertEqual(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value,
                         "front.example")
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["localhost", "cloud.example"])
        self.assertEqual([str(a) for a in san.get_values_for_type(x509.IPAddress)],
                         ["127.0.0.1", "::1", "10.1.2.3"])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.assertLessEqual(cert.not_valid_before_utc, now)
        lifetime = cert.not_valid_after_utc - now
        self.assertTrue(datetime.timedelta(days=29, hours=23) < lifetime
                        <= datetime.timedelta(days=30), lifetime)
        # Self-signed: the certificate verifies with its own key.
        cert.verify_directly_issued_by(cert)
        # The printed line is a usable oned.conf LISTEN value naming both files.
        kind, args, kw = parse_description(listen_line(out))
        self.assertEqual((kind, args, kw), ("ssl", ["2634"],
                                            {"privateKey": key_path, "certKey": cert_path}))

    def test_rsa_and_port(self):
        key_path, cert_path, out = make_cert(self, "--rsa", "--port", "8443")
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        self.assertIsInstance(key, rsa.RSAPrivateKey)
        self.assertEqual(key.key_size, 2048)
        self.assertEqual(parse_description(listen_line(out))[1], ["8443"])

    def test_path_with_colon_is_escaped(self):
        d = os.path.join(os.path.abspath(self.mktemp()), "a:b=c")
        key_path, cert_path, out = make_cert(self, dirname=d)
        _, _, kw = parse_description(listen_line(out))
        self.assertEqual((kw["privateKey"], kw["certKey"]), (key_path, cert_path))
        server_endpoint(None, listen_line(out))  # the files load through the same path

    def test_refuses_to_overwrite_without_force(self):
        key_path, cert_path, _ = make_cert(self)
        with open(cert_path, "rb") as f:
            before = f.read()
        err = io.StringIO()
        rc = nebula_cert.main(["--key", key_path, "--cert", cert_path],
                              stdout=io.StringIO(), stderr=err)
        self.assertEqual(rc, 1)
        self.assertIn("exists (use --force to overwrite)", err.getvalue())
        with open(cert_path, "rb") as f:
            self.assertEqual(f.read(), before)
        os.chmod(key_path, 0o644)
        rc = nebula_cert.main(["--key", key_path, "--cert", cert_path, "--force"],
                              stdout=io.StringIO(), stderr=io.StringIO())
        self.assertEqual(rc, 0)
        with open(cert_path, "rb") as f:
            self.assertNotEqual(f.read(), before)
        self.assertEqual(stat.S_IMODE(os.stat(key_path).st_mode), 0o600)

    def test_bad_days(self):
        d = os.path.abspath(self.mktemp())
        os.makedirs(d)
        err = io.StringIO()
        rc = nebula_cert.main(["--key", os.path.join(d, "k"), "--cert", os.path.join(d, "c"),
                               "--days", "0"], stdout=io.StringIO(), stderr=err)
        self.assertEqual(rc, 1)
        self.assertIn("--days must be at least 1", err.getvalue())
        self.assertEqual(os.listdir(d), [])


class EndpointTests(unittest.TestCase):

    def test_parse_twisted_syntax(self):
        self.assertEqual(parse_description("ssl:8443:interface=127.0.0.1:privateKey=/x\\:y"),
                         ("ssl", ["8443"], {"interface": "127.0.0.1", "privateKey": "/x:y"}))
        self.assertEqual(parse_description("tcp:port=1:interface=\\:\\:1"),
                         ("tcp", [], {"port": "1", "interface": "::1"}))
        self.assertEqual(parse_description("a:b=c=d"), ("a", [], {"b": "c=d"}))

    def assertConfigError(self, description, *fragments):
        with self.assertRaises(TLSConfigError) as cm:
            server_endpoint(None, description)
        msg = str(cm.exception)
        self.assertNotIn("\n", msg)
        for fragment in fragments:
            self.assertIn(fragment, msg)
        return msg

    def test_missing_key_file(self):
        missing = os.path.abspath(self.mktemp())
        self.assertConfigError(f"ssl:0:privateKey={missing}", "privateKey", missing,
                               "cannot read", "No such file")

    def test_key_not_matching_certificate(self):
        key1, _, _ = make_cert(self)
        _, cert2, _ = make_cert(self)
        self.assertConfigError(f"ssl:0:privateKey={key1}:certKey={cert2}",
                               "does not match the certificate", key1, cert2)

    def test_files_swapped(self):
        key, cert, _ = make_cert(self)
        self.assertConfigError(f"ssl:0:privateKey={cert}:certKey={key}",
                               "no PEM private key", cert)

    def test_sslmethod_and_unknown_parameters_refused(self):
        key, cert, _ = make_cert(self)
        self.assertConfigError(f"ssl:0:privateKey={key}:certKey={cert}:sslmethod=TLSv1_METHOD",
                               "sslmethod is not supported", "TLS 1.2")
        self.assertConfigError(f"ssl:0:privateKey={key}:certKey={cert}:verify=yes",
                               "unknown parameter(s) verify")
        self.assertConfigError(f"ssl:privateKey={key}", "no port")

    def test_context_refuses_tls_below_1_2(self):
        """The server context itself has TLS 1.0/1.1 (and SSLv3) switched off,
        whatever the OpenSSL security level would otherwise allow."""
        from OpenSSL import SSL

        from nebtwist.tls import certificate_options

        key, cert, _ = make_cert(self)
        options = certificate_options(key, cert).getContext().set_options(0)
        off = SSL.OP_NO_SSLv3 | SSL.OP_NO_TLSv1 | SSL.OP_NO_TLSv1_1
        self.assertEqual(options & off, off)
        self.assertFalse(options & SSL.OP_NO_TLSv1_2)
        self.assertFalse(options & SSL.OP_NO_TLSv1_3)

    def test_unknown_kind(self):
        self.assertConfigError("nosuchkind:1", "nosuchkind")


def client_context(cafile, minimum=None, maximum=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def tls11_handshake(port):
    """A TLS 1.1-only handshake to 127.0.0.1:port; returns the protocol name.

    :raises OpenSSL.SSL.Error: the handshake failed.
    """
    import socket

    from OpenSSL import SSL

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_1_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_1_VERSION)
    ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(None)  # pyOpenSSL needs a blocking socket (else WantReadError)
    try:
        conn = SSL.Connection(ctx, sock)
        conn.set_connect_state()
        conn.do_handshake()
        return conn.get_protocol_version_name()
    finally:
        sock.close()


def permissive_tls11_server(cert, key):
    """The control: tls11_handshake against a server allowing TLS 1.0+.

    Returns the negotiated protocol name (``"TLSv1.1"`` when this machine's
    OpenSSL can speak TLS 1.1 at all; the test skips otherwise).
    """
    import socket
    import threading
    import warnings

    from OpenSSL import SSL

    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(cert, key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        srv.minimum_version = ssl.TLSVersion.TLSv1
    srv.set_ciphers("DEFAULT:@SECLEVEL=0")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(10)

    def serve():
        try:
            conn, _ = listener.accept()
            with conn, srv.wrap_socket(conn, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            pass

    t = threading.Thread(target=serve)
    t.start()
    try:
        return tls11_handshake(listener.getsockname()[1])
    except SSL.Error as e:
        raise unittest.SkipTest(f"this OpenSSL cannot complete a TLS 1.1 handshake: {e}")
    finally:
        t.join(10)
        listener.close()


class DaemonOverTLSTests(unittest.TestCase):

    async def start(self):
        key, cert, out = make_cert(self)
        line = listen_line(out).replace("ssl:2634:", "ssl:0:interface=127.0.0.1:", 1)
        neb = await start_nebula(self, [f'LISTEN="{line}"'])
        self.assertEqual(len(neb.service.ports), 2)
        port = neb.service.ports[1].getHost().port
        return neb, key, cert, port

    async def version_over(self, url, ctx):
        def call():
            proxy = xmlrpc.client.ServerProxy(url, context=ctx)
            try:
                return proxy.one.system.version(ONEADMIN_SESSION)
            finally:
                proxy("close")()
        return await threads.deferToThread(call)

    async def test_xmlrpc_over_tls_versions(self):
        neb, key, cert, port = await self.start()
        url = f"https://127.0.0.1:{port}/RPC2"
        expected = (await neb.call("one.system.version"))
        self.assertTrue(expected[0])
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = client_context(cert, minimum=version, maximum=version)
            self.assertEqual(await self.version_over(url, ctx), expected, version)
        # Also by name (SAN localhost), with Python's default verifying context.
        ctx = ssl.create_default_context(cafile=cert)
        self.assertEqual(await self.version_over(f"https://localhost:{port}/RPC2", ctx),
                         expected)
        # TLS 1.1: refused in the handshake. The client (pyOpenSSL: Python's ssl
        # client cannot offer TLS 1.1 under this OpenSSL's policy at all) is first
        # shown to complete a TLS 1.1 handshake with a server that allows it.
        # (OpenSSL 3's default security level on the server would refuse TLS 1.1
        # on its own too; test_context_refuses_tls_below_1_2 pins nebtwist's floor.)
        from OpenSSL import SSL

        self.assertEqual(await threads.deferToThread(permissive_tls11_server, cert, key),
                         "TLSv1.1")
        with self.assertRaises(SSL.Error):
            await threads.deferToThread(tls11_handshake, port)
        # Plain HTTP to the TLS port is not served.
        with self.assertRaises((xmlrpc.client.ProtocolError, OSError,
                                xmlrpc.client.ResponseError)):
            await self.version_over(f"http://127.0.0.1:{port}/RPC2", None)
        # The plain tcp: API still answers.
        self.assertEqual(neb.service.ports[0].getHost().port, neb.port)

    async def test_pyone_over_tls(self):
        try:
            import pyone
        except ImportError:
            self.skipTest("pyone is not installed (pip install '.[test]')")
        neb, _, cert, port = await self.start()

        def read():
            one = pyone.OneServer(f"https://127.0.0.1:{port}/RPC2",
                                  session=ONEADMIN_SESSION, https_verify=cert)
            try:
                return one.user.info(0).NAME
            finally:
                close = getattr(one, "server_close", None)
                if close is not None:
                    close()

        self.assertEqual(await threads.deferToThread(read), "oneadmin")

    async def test_bad_key_path_fails_startup(self):
        from nebtwist.tap import StartupError

        _, cert, _ = make_cert(self)
        missing = os.path.join(os.path.abspath(self.mktemp()), "nokey.pem")
        with self.assertRaises(StartupError) as cm:
            await start_nebula(self, [f'LISTEN="ssl:0:privateKey={missing}:certKey={cert}"'])
        msg = str(cm.exception)
        self.assertNotIn("\n", msg)
        self.assertTrue(msg.startswith("LISTEN 'ssl:0:"), msg)
        self.assertIn(f"privateKey {missing}: cannot read", msg)


class CLICertDirTests(unittest.TestCase):
    """The one* commands trust a private CA through ``ONE_CERT_DIR``
    (OpenNebula's CLI variable; issue 9 section 4: only the undocumented
    SSL_CERT_FILE worked)."""

    async def test_one_cert_dir(self):
        import subprocess
        import sys

        from nebtwist.client import OneClient, OneError

        neb, _, cert, port = await DaemonOverTLSTests.start(self)
        url = f"https://localhost:{port}/RPC2"
        certs = os.path.abspath(self.mktemp())
        os.makedirs(certs)
        with open(cert, "rb") as src, open(os.path.join(certs, "nebula.pem"), "wb") as dst:
            dst.write(src.read())
        base = {k: v for k, v in os.environ.items()
                if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "ONE_CERT_DIR")}

        def name(environ):
            with OneClient(url, ONEADMIN_SESSION, timeout=30, environ=environ) as client:
                return Template.from_xml(client.call("one.user.info", 0)).get("NAME")

        # Without it the self-signed certificate is refused ...
        with self.assertRaises(OneError) as cm:
            await threads.deferToThread(name, base)
        self.assertIn("certificate verify failed", str(cm.exception))
        # ... with it, trusted; the real command too.
        self.assertEqual(await threads.deferToThread(name, dict(base, ONE_CERT_DIR=certs)),
                         "oneadmin")
        auth = os.path.join(certs, "..", "one_auth")
        with open(auth, "w") as f:
            f.write(ONEADMIN_SESSION + "\n")
        env = dict(base, ONE_CERT_DIR=certs, ONE_XMLRPC=url, ONE_AUTH=auth)
        done = await threads.deferToThread(
            subprocess.run, [sys.executable, "-m", "nebtwist.cli.oneuser", "show", "0"],
            env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("oneadmin", done.stdout)
        # A folder holding something else than a certificate: one clear line.
        with open(os.path.join(certs, "junk.pem"), "w") as f:
            f.write("not a certificate\n")
        with self.assertRaises(OneError) as cm:
            await threads.deferToThread(name, dict(base, ONE_CERT_DIR=certs))
        self.assertIn("junk.pem: not a PEM certificate", str(cm.exception))
