"""Acceptance: the seed's public cloud session (seed 000, "Using the Public
Cloud") with the installed econe commands against a real ``twistd -n
nebula``, over HTTP and, as the seed's SSL extra does, over HTTPS (a
certificate made by ``nebula-cert`` on econe.conf ``LISTEN``).

A user with an OpenNebula password uploads an image (``econe-upload``), sees
it (``econe-describe-images -H``), runs an instance of it
(``econe-run-instances 1``), lists it pending then running
(``econe-describe-instances``) and terminates it
(``econe-terminate-instances``), passing ``-K user -S password`` and
``EC2_URL`` as the seed does.
"""

import os
import re
import subprocess
import sys


from tests.acceptance.cloud import CloudFrontTestCase

HOST_MONITORED = 2
USER, PASSWORD = "consequi01", "consequi2010"


def econe_command(name):
    """The installed console script ``name``, or ``python -m nebtwist.cli.econe``."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(path):
        return [path]
    return [sys.executable, "-m", "nebtwist.cli.econe", name]


class EconeSessionTest(CloudFrontTestCase):

    USER, PASSWORD = USER, PASSWORD

    def setUp(self):
        super().setUp()
        self.image = self.daemon.write_file("ttylinux.img", "ttylinux " * 100000)

    def econe(self, url, name, *args):
        """Run ``name args -K USER -S PASSWORD`` with ``EC2_URL=url``; its stdout."""
        env = dict(os.environ, EC2_URL=url + " ", EC2_CA_BUNDLE=self.cert)
        for var in ("EC2_ACCESS_KEY", "EC2_SECRET_KEY", "ONE_AUTH"):
            env.pop(var, None)
        done = subprocess.run(econe_command(name) + [*args, "-K", USER, "-S", PASSWORD],
                              env=env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        self.assertEqual((done.returncode, done.stderr), (0, ""),
                         f"{name} {' '.join(args)}\n{self.daemon.diagnostics(15)}")
        return done.stdout

    def session(self, url):
        out = self.econe(url, "econe-upload", self.image, "--no-progress")
        ami = re.search(r"ami-([0-9]{8})", out) or re.search(r"\b([0-9]+)\b", out)
        self.assertIsNotNone(ami, out)
        image_id = int(ami.group(1))
        self.daemon.wait_for(lambda: self.one.image.info(image_id).STATE == 1,  # READY
                             message=lambda: self.daemon.diagnostics(25))
        self.assertEqual(self.one.image.info(image_id).UNAME, USER)

        lines = self.econe(url, "econe-describe-images", "-H").splitlines()
        self.assertEqual(lines[0].split()[:3], ["Owner", "ImageId", "Location"])
        self.assertTrue(set(lines[1]) <= {"-", " "}, lines[1])
        rows = [line.split() for line in lines[2:]]
        self.assertEqual([r[:2] for r in rows], [[USER, str(image_id)]])

        self.daemon.wait_for(lambda: self.one.host.info(0).STATE == HOST_MONITORED,
                             message=lambda: self.daemon.diagnostics(25))
        row = self.econe(url, "econe-run-instances", str(image_id)).split()
        self.assertEqual((row[0], row[1], row[3]), (USER, str(image_id), "m1.small"))
        vid = row[2]
        self.assertEqual(self.one.vm.info(int(vid)).UNAME, USER)

        def state():
            rows = [line.split() for line in
                    self.econe(url, "econe-describe-instances").splitlines()]
            found = [r for r in rows if r[1:2] == [vid]]
            self.assertEqual(len(found), 1, rows)
            self.assertEqual((found[0][0], found[0][2], found[0][-1]),
                             (USER, str(image_id), "m1.small"))
            return found[0][3]
        self.assertIn(state(), ("pending", "running"))
        self.daemon.wait_for(lambda: state() == "running",
                             message=lambda: self.daemon.diagnostics(25))
        out = self.econe(url, "econe-terminate-instances", vid)
        self.assertIn(vid, out)
        self.daemon.wait_for(lambda: state() == "terminated",
                             message=lambda: self.daemon.diagnostics(25))

    def test_over_http(self):
        self.session(f"http://127.0.0.1:{self.http_port}")

    def test_over_https(self):
        self.session(f"https://127.0.0.1:{self.tls_port}")
