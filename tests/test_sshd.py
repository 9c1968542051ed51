"""Tests of the test sshd fixture (tests/sshd.py) against the real OpenSSH."""

import os
import subprocess

from twisted.trial import unittest

from tests.sshd import start_sshd


class StartSshdTests(unittest.TestCase):
    """start_sshd: a real sshd on loopback, reachable with the generated key."""

    def test_runs_a_command(self):
        """ssh with the fixture's options runs a command as the fixture's user."""
        server = start_sshd(self)
        port, key_path, user = server
        self.assertTrue(os.path.isabs(key_path))
        out = subprocess.run(
            ["ssh", *server.ssh_options(), "127.0.0.1", "echo ok; id -un"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual((out.returncode, out.stdout.split()), (0, ["ok", user]),
                         out.stderr)

    def test_other_key_refused(self):
        """A key that is not in authorized_keys is refused (exit 255)."""
        server = start_sshd(self)
        other = os.path.abspath(self.mktemp())
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other],
                       check=True, capture_output=True)
        out = subprocess.run(["ssh", *server.ssh_options(identity=other), "127.0.0.1", "true"],
                             capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
        self.assertEqual(out.returncode, 255)
        self.assertIn("Permission denied", out.stderr)

    def test_stopped_by_cleanup(self):
        """After the test's cleanups the port no longer answers."""
        server = start_sshd(self)
        self.doCleanups()
        out = subprocess.run(["ssh", *server.ssh_options(), "127.0.0.1", "true"],
                             capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
        self.assertEqual(out.returncode, 255)
        self.assertIn("Connection refused", out.stderr)
