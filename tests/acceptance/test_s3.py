"""Acceptance: the S3-like image repository of a real ``twistd nebula`` with
the AWS CLI (``aws`` from the awscli PyPI package), unmodified, as a
public-cloud user (not oneadmin) would, over HTTP and over TLS (a
certificate made by ``nebula-cert``, the front's ``LISTEN = ssl:...``,
verified with ``--ca-bundle``): make a bucket, copy a 100 MB file in
(multipart: the CLI splits anything over 8 MB into parallel parts), list it,
copy it back (ranged parallel GETs) with the same MD5, remove it, remove the
bucket. A wrong secret is refused. Nothing is left in IMAGE_DIR."""

import hashlib
import os
import socket
import subprocess
import sys

from twisted.trial import unittest

from tests.acceptance.test_seed000 import FAST, NebulaDaemon, free_port

USER, PASSWORD = "s3user", "s3pass"
SECRET = hashlib.sha1(PASSWORD.encode()).hexdigest()
SIZE = 100 * 1024 * 1024


class AWSCLITest(unittest.TestCase):

    def setUp(self):
        self.http_port, self.tls_port = free_port(), free_port()
        location = os.path.abspath(self.mktemp())
        os.makedirs(location)
        self.cert = os.path.join(location, "cert.pem")
        key = os.path.join(location, "key.pem")
        done = subprocess.run(
            [sys.executable, "-m", "nebtwist.cli.nebula_cert", "--key", key,
             "--cert", self.cert, "--cn", "127.0.0.1"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        listen = f"ssl:{self.tls_port}:interface=127.0.0.1:privateKey={key}:certKey={self.cert}"
        self.daemon = NebulaDaemon(location, list(FAST) + [
            f"econe.PORT={self.http_port}", f'econe.LISTEN="{listen}"'])
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        for port in (self.http_port, self.tls_port):
            self.daemon.wait_for(lambda port=port: self.listens(port),
                                 message=lambda: f"the front on {port}\n"
                                                 f"{self.daemon.diagnostics(25)}")
        rc, _, err = self.daemon.cli("oneuser", "create", USER, PASSWORD)
        self.assertEqual((rc, err), (0, ""))
        self.image_dir = os.path.join(location, "var", "econe")
        self.file = os.path.join(location, "disk.img")
        digest = hashlib.md5()
        block = os.urandom(1024 * 1024)
        with open(self.file, "wb") as f:
            for i in range(SIZE // len(block)):
                piece = bytes([i % 256]) + block[1:]
                digest.update(piece)
                f.write(piece)
        self.md5 = digest.hexdigest()

    @staticmethod
    def listens(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def aws(self, url, *args, secret=SECRET, ok=True):
        """Run ``aws --endpoint-url URL ARGS`` as the user; (rc, stdout, stderr)."""
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        env = dict(os.environ, AWS_ACCESS_KEY_ID=USER, AWS_SECRET_ACCESS_KEY=secret,
                   AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull,
                   AWS_SHARED_CREDENTIALS_FILE=os.devnull, HOME=home)
        tls = ["--ca-bundle", self.cert] if url.startswith("https") else []
        done = subprocess.run(["aws", "--endpoint-url", url, *tls, *args], env=env,
                              capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        if ok:
            self.assertEqual(done.returncode, 0, f"aws {' '.join(args)}: {done.stderr}\n"
                                                 f"{self.daemon.diagnostics(15)}")
        return done.returncode, done.stdout, done.stderr

    def session(self, url):
        bucket = "images"
        _, out, _ = self.aws(url, "s3", "mb", f"s3://{bucket}")
        self.assertEqual(out.strip(), f"make_bucket: {bucket}")
        self.aws(url, "s3", "cp", self.file, f"s3://{bucket}/ttylinux.img")
        _, out, _ = self.aws(url, "s3", "ls")
        self.assertRegex(out, rf"(?m)^\S+ \S+ {bucket}$")
        _, out, _ = self.aws(url, "s3", "ls", f"s3://{bucket}/")
        self.assertRegex(out, rf"(?m)^\S+ \S+ +{SIZE} ttylinux\.img$")
        back = os.path.abspath(self.mktemp())
        self.aws(url, "s3", "cp", f"s3://{bucket}/ttylinux.img", back)
        digest = hashlib.md5()
        with open(back, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        self.assertEqual(digest.hexdigest(), self.md5)
        os.unlink(back)

        rc, _, err = self.aws(url, "s3", "ls", f"s3://{bucket}/", secret="0" * 40, ok=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("SignatureDoesNotMatch", err)

        _, out, _ = self.aws(url, "s3", "rm", f"s3://{bucket}/ttylinux.img")
        self.assertIn("delete: s3://images/ttylinux.img", out)
        _, out, _ = self.aws(url, "s3", "rb", f"s3://{bucket}")
        self.assertEqual(out.strip(), f"remove_bucket: {bucket}")
        _, out, _ = self.aws(url, "s3", "ls")
        self.assertEqual(out.strip(), "")
        left = [os.path.join(d, n) for d, _, names in os.walk(self.image_dir) for n in names]
        self.assertEqual(left, [])

    def test_over_http(self):
        self.session(f"http://127.0.0.1:{self.http_port}")

    def test_over_tls(self):
        self.session(f"https://127.0.0.1:{self.tls_port}")
