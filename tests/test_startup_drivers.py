"""The shipped Python drivers end quietly (issue 9 section 4: Ctrl-C printed a
traceback from every driver process).

Each driver of ``drivers/`` that is a Python program is run directly here, as
a terminal or another supervisor would (SIGINT *not* ignored: the daemon's own
spawn ignores it, see :data:`nebtwist.mad.SPAWN_SCRIPT` and
:class:`SpawnIgnoresSIGINTTests`), answers ``INIT``, and is then ended by
SIGINT, SIGTERM or its stdin closing: it must end without writing anything to
stderr (no ``KeyboardInterrupt`` traceback). OpenNebula's drivers end on
``FINALIZE`` or end of input (3.4 ``OpenNebulaDriver.rb``); a signal ends them
as the signal's default action does.
"""

import os
import signal
import subprocess
import sys

from twisted.internet import reactor
from twisted.trial import unittest

from nebtwist import mad, paths

#: (family, executable, arguments) of every Python driver the shipped oned.conf uses.
PYTHON_DRIVERS = [
    ("im", "dummy", []),
    ("im", "ssh", ["-r", "0", "-t", "15", "kvm"]),
    ("vmm", "dummy", []),
    ("vmm", "kvm", []),
    ("tm", "dummy", []),
    ("tm", "exec", ["ssh"]),
    ("hm", "exec", ["-t", "60"]),
    ("vnm", "exec", ["-n"]),
    ("vnm", "exec", ["-t", "15", "fw"]),
    ("vnm", "exec", ["-t", "15", "-e", "VNM_OVS_DATAPATH=netdev", "ovswitch"]),
]

#: Generous: a loaded machine may take seconds to start a Python driver.
TIMEOUT = 60


def _is_python(path):
    with open(path, "rb") as f:
        first = f.readline()
    return first.startswith(b"#!") and b"python" in first


class DriverListTests(unittest.TestCase):
    def test_every_python_driver_is_checked(self):
        """A new Python driver in drivers/<family>/ must be added to PYTHON_DRIVERS."""
        found = set()
        for family in mad.FAMILIES:
            folder = paths.shipped("drivers", family)
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if os.path.isfile(path) and os.access(path, os.X_OK) and _is_python(path):
                    found.add((family, name))
        self.assertEqual(found, {(f, n) for f, n, _ in PYTHON_DRIVERS})


class QuietExitTests(unittest.TestCase):
    """Each Python driver, started and initialised, then ended three ways."""

    def start(self, family, name, arguments):
        location = os.path.abspath(self.mktemp())
        os.makedirs(location)
        env = dict(os.environ, ONE_LOCATION=location, SCRIPTS_REMOTE_DIR=location)
        proc = subprocess.Popen([paths.shipped("drivers", family, name)] + arguments,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=location,
                                start_new_session=True)
        self.addCleanup(self._reap, proc)
        proc.stdin.write(b"INIT\n")
        proc.stdin.flush()
        line = proc.stdout.readline()  # blocks until the driver answers
        if not line.startswith(b"INIT "):
            proc.kill()
            self.fail(f"{family}/{name} did not answer INIT: {line!r} {proc.stderr.read()!r}")
        return proc

    @staticmethod
    def _reap(proc):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def end(self, proc, how):
        if how == "stdin":
            proc.stdin.close()
        else:
            proc.send_signal(how)
        try:
            _, stderr = proc.communicate(timeout=TIMEOUT)
        except ValueError:  # stdin already closed
            stderr = proc.stderr.read()
            proc.wait(TIMEOUT)
        return proc.returncode, stderr.decode("utf-8", "replace")

    def check(self, how, expected_rc):
        for family, name, arguments in PYTHON_DRIVERS:
            proc = self.start(family, name, arguments)
            rc, stderr = self.end(proc, how)
            self.assertEqual(stderr, "", f"{family}/{name}: stderr after {how}")
            self.assertIn(rc, expected_rc, f"{family}/{name}: status after {how}")

    def test_sigint(self):
        """SIGINT (Ctrl-C at a terminal) ends each driver without a traceback:
        it dies of SIGINT, as a C program would."""
        self.check(signal.SIGINT, (-signal.SIGINT,))

    def test_sigterm(self):
        self.check(signal.SIGTERM, (-signal.SIGTERM,))

    def test_stdin_closed(self):
        """End of input (the daemon gone) ends each driver with status 0."""
        self.check("stdin", (0,))


class SpawnIgnoresSIGINTTests(unittest.TestCase):
    """The daemon spawns drivers with SIGINT ignored, in its own process group."""

    def test_spawned_driver_ignores_sigint(self):
        """A real spawn through :func:`nebtwist.mad.spawn_argv`: the program
        runs with SIGINT ignored (it reads its own disposition), in the
        parent's process group."""
        from twisted.internet.utils import getProcessOutput

        code = ("import os, signal, sys; "
                "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, "
                "os.getpgid(0) == int(sys.argv[1]))")
        argv = [sys.executable, "-c", code, str(os.getpgid(0))]
        d = getProcessOutput(mad.SPAWN_SHELL, mad.spawn_argv(argv)[1:], env=os.environ,
                             reactor=reactor)

        def check(out):
            self.assertEqual(out.split(), [b"True", b"True"])
        return d.addCallback(check)
