"""A ``twistd nebula`` that cannot start says why in one line and exits with
status 1 (so scripts and supervisors see it), leaving no process behind."""

import os
import signal
import socket
import subprocess

from twisted.trial import unittest

from tests.acceptance.test_seed000 import _twistd_command, free_port


class StartupFailureTest(unittest.TestCase):
    """Start-up errors end the daemon with a non-zero status."""

    def start_daemon(self, *settings, environ=()):
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
        env.update(environ)
        try:
            done = subprocess.run(_twistd_command() + args, env=env, cwd=location,
                                  capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired as e:
            self.fail(f"twistd still running after {e.timeout} s (no exit after a "
                      f"start-up error); output:\n{e.stdout}")
        self.output = done.stdout + done.stderr  # twistd -n logs to stdout
        with open(os.path.join(location, "var", "oned.log")) as f:
            return done.returncode, f.read()

    def assert_one_line(self, rc, log, *words):
        """Status 1, exactly one "could not start" line in oned.log and in
        twistd's output, naming ``words``, and no traceback anywhere."""
        self.assertEqual(rc, 1, self.output)
        for text in (log, self.output):
            lines = [line for line in text.splitlines() if "could not start" in line]
            self.assertEqual(len(lines), 1, text)
            for word in words:
                self.assertIn(word, lines[0])
            self.assertNotIn("Traceback", text)
        return lines[0]

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

    # -- database start-up errors (issue 9 section 4): these failed before the
    # reactor ran, and the daemon then hung with no listener

    def test_unknown_db_backend(self):
        rc, log = self.start_daemon('DB=[BACKEND="oracle"]')
        self.assert_one_line(rc, log, "unknown DB backend 'oracle'")

    def test_db_driver_not_installed(self):
        """A server backend whose Python driver is missing (a stand-in package
        on PYTHONPATH that fails to import, as an uninstalled one does)."""
        stub = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(stub, "pymysql"))
        with open(os.path.join(stub, "pymysql", "__init__.py"), "w") as f:
            f.write("raise ImportError('No module named pymysql')\n")
        path = os.pathsep.join(p for p in (stub, os.environ.get("PYTHONPATH")) if p)
        rc, log = self.start_daemon('DB=[BACKEND="mysql", SERVER="127.0.0.1"]',
                                    environ={"PYTHONPATH": path})
        self.assert_one_line(rc, log, "needs the Python module pymysql")

    def test_db_server_not_answering(self):
        port = free_port()  # nothing listens there
        rc, log = self.start_daemon(
            f'DB=[BACKEND="postgresql", SERVER="127.0.0.1", PORT={port}]')
        self.assert_one_line(rc, log, f"127.0.0.1:{port}")

    def test_busy_xmlrpc_port(self):
        """A busy XML-RPC port: one line (it was a Python traceback), as a
        busy EC2 port gives."""
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc, log = self.start_daemon(f'LISTEN="tcp:{port}:interface=127.0.0.1"')
        self.assert_one_line(rc, log, "XML-RPC API", str(port), "in use")

    def test_busy_ec2_port(self):
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc, log = self.start_daemon(f'econe.LISTEN="tcp:{port}:interface=127.0.0.1"')
        self.assert_one_line(rc, log, "EC2 front", str(port), "in use")


class CtrlCTest(unittest.TestCase):
    """Ctrl-C: the terminal sends SIGINT to the whole foreground process group
    (the daemon and, before issue 9, every driver, each printing a
    KeyboardInterrupt traceback). Drivers are spawned with SIGINT ignored
    (:data:`nebtwist.mad.SPAWN_SCRIPT`), so the daemon alone gets it and stops
    them itself, as on SIGTERM."""

    def test_sigint_to_process_group(self):
        from tests.acceptance.test_seed000 import NebulaDaemon
        daemon = NebulaDaemon(self.mktemp())  # shipped oned.conf: dummy, ssh, kvm, exec drivers
        daemon.start()
        self.addCleanup(daemon.stop)
        process = daemon.process
        os.killpg(process.pid, signal.SIGINT)  # twistd leads its own session
        try:
            rc = process.wait(60)
        except subprocess.TimeoutExpired:
            self.fail("twistd did not end after SIGINT\n" + daemon.diagnostics())
        with open(daemon.output_path, encoding="utf-8", errors="replace") as f:
            output = f.read()
        log = daemon.oned_log()
        self.assertNotIn("Traceback", output)
        self.assertNotIn("KeyboardInterrupt", output)
        self.assertNotIn("Traceback", log)
        self.assertIn("nebtwist stopped", log)
        # The drivers were stopped by the daemon (FINALIZE), not killed by the signal.
        self.assertNotIn("killed by signal", log)
        self.assertNotIn("Restarting driver", log)
        # twistd ends by re-raising SIGINT after a clean stop (Twisted's
        # app._exitWithSignal): the shell sees 130, systemd a clean exit.
        self.assertEqual(rc, -signal.SIGINT)


class UnknownKeyWarningTest(unittest.TestCase):
    """A real daemon warns in oned.log about an unknown key of oned.conf and
    econe.conf, naming file and line; the shipped files give no warning."""

    def test_warnings(self):
        from nebtwist.paths import shipped
        from tests.acceptance.test_seed000 import NebulaDaemon
        daemon = NebulaDaemon(self.mktemp())
        with open(shipped("conf", "oned.conf")) as f:
            oned = f.read()
        with open(shipped("conf", "econe.conf")) as f:
            econe = f.read()
        oned_path = daemon.write_file("oned.conf", oned + 'ECONE_CONF = "econe.conf"\n'
                                      "SCHED_INTERVALL = 5\n")
        econe_path = daemon.write_file("econe.conf", econe + "PROT = 4600\n")
        base = daemon.command()
        at = base.index("nebula") + 1
        daemon.command = lambda: base[:at] + ["--config", oned_path] + base[at:]
        daemon.start()
        self.addCleanup(daemon.stop)
        daemon.wait_for(lambda: "EC2 Query API and S3 listening" in daemon.oned_log(),
                        message="the EC2 front to listen")
        daemon.stop()
        log = daemon.oned_log()
        oned_line = len(oned.splitlines()) + 2
        econe_line = len(econe.splitlines()) + 1
        self.assertIn(f"{oned_path} line {oned_line}: unknown key SCHED_INTERVALL (ignored)", log)
        self.assertIn(f"{econe_path} line {econe_line}: unknown key PROT (ignored)", log)
        self.assertEqual(log.count("unknown key"), 2, log)

    def test_shipped_files_no_warning(self):
        from tests.acceptance.test_seed000 import NebulaDaemon
        daemon = NebulaDaemon(self.mktemp())
        daemon.start()
        self.addCleanup(daemon.stop)
        daemon.wait_for(lambda: "EC2 Query API and S3 listening" in daemon.oned_log(),
                        message="the EC2 front to listen")
        daemon.stop()
        self.assertNotIn("unknown key", daemon.oned_log())
