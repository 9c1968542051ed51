"""A ``twistd nebula`` that cannot start says why in one line and exits with
status 1 (so scripts and supervisors see it), leaving no process behind."""

import os
import subprocess

from twisted.trial import unittest

from tests.acceptance.test_seed000 import _twistd_command, free_port


class StartupFailureTest(unittest.TestCase):
    """Start-up errors end the daemon with a non-zero status."""

    def start_daemon(self, *settings):
        location = os.path.abspath(self.mktemp())
        os.makedirs(location)
        auth = os.path.join(location, "one_auth")
        with open(auth, "w") as f:
            f.write("oneadmin:onecloud\n")
        env = dict(os.environ, ONE_LOCATION=location, ONE_AUTH=auth)
        args = ["-n", "--pidfile=", "nebula", "--set", f"PORT={free_port()}",
                "--set", "econe.PORT=0"]  # EC2 front: any free port
        for s in settings:
            args += ["--set", s]
        done = subprocess.run(_twistd_command() + args, env=env, cwd=location,
                              capture_output=True, text=True, timeout=60)
        with open(os.path.join(location, "var", "oned.log")) as f:
            return done.returncode, f.read()

    def test_missing_driver(self):
        rc, log = self.start_daemon('IM_MAD=[name="x", executable="nonexistent"]')
        self.assertEqual(rc, 1)
        lines = [line for line in log.splitlines() if "could not start" in line]
        self.assertEqual(len(lines), 1, log)
        self.assertIn("nonexistent", lines[0])
        self.assertNotIn("Traceback", log)

    def test_missing_driver_names_paths_and_drivers(self):
        """An OpenNebula driver name nebtwist has no match for is reported with
        every path tried and the drivers that exist."""
        rc, log = self.start_daemon('VM_MAD=[name="vmm_vbox", executable="one_vmm_vbox"]')
        self.assertEqual(rc, 1)
        line = [line for line in log.splitlines() if "could not start" in line][0]
        self.assertIn("VM_MAD vmm_vbox: executable one_vmm_vbox not found", line)
        self.assertIn(os.path.join("drivers", "vmm", "one_vmm_vbox"), line)
        self.assertIn(os.path.join("drivers", "one_vmm_vbox"), line)
        self.assertIn("drivers/vmm has: dummy, kvm", line)

    def test_bad_listen_endpoint(self):
        rc, log = self.start_daemon('LISTEN="ssl:0:privateKey=/nonexistent.pem"')
        self.assertEqual(rc, 1)
        self.assertIn("could not start", log)
