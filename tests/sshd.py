"""A real OpenSSH server on 127.0.0.1 for tests: :func:`start_sshd`.

Tests that run something "on a host" over ssh (the ssh IM driver, remote
hooks, ssh transfer scripts) use a real ``/usr/sbin/sshd`` started here, on a
free loopback port, with keys generated into the test's temporary directory,
so nothing outside that directory is read or changed (except ``/run/sshd``,
the privilege-separation directory sshd insists on; it is created if missing).
``.ci/run`` installs ``openssh-server`` and ``openssh-client``; where
``sshd`` or ``ssh-keygen`` is missing the test is skipped with the reason.

Usage (``port, key_path, user`` unpack like a tuple)::

    def setUp(self):
        self.sshd = start_sshd(self)     # stopped by a cleanup
        port, key, user = self.sshd
        subprocess.run(["ssh", *self.sshd.ssh_options(), "127.0.0.1", "true"])

The server runs in the foreground (``sshd -D -e``) as the current user (root
on CI; a non-root sshd can only log in as its own user, which is fine for
tests) with ``UsePAM no``, ``StrictModes no``, key authentication only, and a
``PidFile`` and log in the temporary directory (``sshd.log``, worth reading
when a test fails). The host key is written to a ``known_hosts`` file beside
the client key, so clients can keep strict host-key checking.
"""

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import NamedTuple

from twisted.trial.unittest import SkipTest

__all__ = ["SSHServer", "start_sshd", "SSHD", "SSH_KEYGEN"]

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


class SSHServer(NamedTuple):
    """A running test sshd: unpacks as ``(port, key_path, user)``.

    ``port`` -- int, the TCP port on 127.0.0.1;
    ``key_path`` -- absolute path (str) of the client's private key
    (ed25519, no passphrase), authorized for ``user``;
    ``user`` -- the login name (str) the key is authorized for.
    """

    port: int
    key_path: str
    user: str

    @property
    def directory(self):
        """The temporary directory holding keys, config, pid file and log."""
        return os.path.dirname(self.key_path)

    @property
    def known_hosts(self):
        """Path of a known_hosts file naming ``[127.0.0.1]:port``'s host key."""
        return os.path.join(self.directory, "known_hosts")

    @property
    def log_path(self):
        """Path of sshd's own log (``sshd -e`` output)."""
        return os.path.join(self.directory, "sshd.log")

    def ssh_options(self, identity=None):
        """ssh/scp ``-o`` options (list of str) reaching this server.

        Port, identity (``identity``, a private key path, instead of
        ``key_path``: to try a key the server does not accept), user, the
        known_hosts file with strict checking, batch mode (never prompt), and
        a short connect timeout. The same list works for ``ssh`` and ``scp``
        (both take ``-o Port=``).
        """
        return [
            "-o", f"Port={self.port}",
            "-o", f"User={self.user}",
            "-o", f"IdentityFile={identity or self.key_path}",
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
            "-o", "LogLevel=ERROR",
        ]


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (int)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path):
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "nebtwist-test",
         "-f", path],
        check=True, stdin=subprocess.DEVNULL, capture_output=True,
    )


def _wait_listening(proc, port, log_path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.settimeout(2)
                if s.recv(4).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def start_sshd(testcase, timeout=10.0):
    """Start a real sshd on 127.0.0.1 for *testcase*; return :class:`SSHServer`.

    :param testcase: the running ``twisted.trial`` TestCase; its ``mktemp``
        gives the directory and ``addCleanup`` stops the server (SIGTERM, then
        SIGKILL after 5 s) at the end of the test.
    :param timeout: seconds to wait for the server to greet (float).
    :raises SkipTest: if ``/usr/sbin/sshd`` or ``ssh-keygen`` is missing.
    :raises RuntimeError: if sshd does not come up (its log is in the
        message).
    """
    if not os.access(SSHD, os.X_OK):
        raise SkipTest(f"{SSHD} is missing (apt-get install openssh-server)")
    if not os.access(SSH_KEYGEN, os.X_OK):
        raise SkipTest("ssh-keygen is missing (apt-get install openssh-client)")
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    host_key = os.path.join(directory, "ssh_host_ed25519_key")
    client_key = os.path.join(directory, "id_ed25519")
    _keygen(host_key)
    _keygen(client_key)
    authorized = os.path.join(directory, "authorized_keys")
    shutil.copyfile(client_key + ".pub", authorized)
    user = getpass.getuser()
    if os.getuid() == 0:
        # sshd needs its privilege-separation directory (Debian: /run/sshd).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)

    last_log = ""
    for _attempt in range(3):  # a port taken between probe and bind: retry
        port = free_port()
        config = os.path.join(directory, "sshd_config")
        with open(config, "w") as f:
            f.write(
                f"Port {port}\n"
                "ListenAddress 127.0.0.1\n"
                f"HostKey {host_key}\n"
                f"AuthorizedKeysFile {authorized}\n"
                f"PidFile {os.path.join(directory, 'sshd.pid')}\n"
                "UsePAM no\n"
                "StrictModes no\n"
                "PubkeyAuthentication yes\n"
                "PasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\n"
                "PermitRootLogin prohibit-password\n"
                f"AllowUsers {user}\n"
                "MaxStartups 100\n"
                "MaxSessions 100\n"
                "UseDNS no\n"
                "LogLevel VERBOSE\n"
                "Subsystem sftp internal-sftp\n"
            )
        with open(os.path.join(directory, "known_hosts"), "w") as f, \
                open(host_key + ".pub") as pub:
            key_type, key_b64 = pub.read().split()[:2]
            f.write(f"[127.0.0.1]:{port} {key_type} {key_b64}\n")
        log_path = os.path.join(directory, "sshd.log")
        log = open(log_path, "ab")
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", config],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,
        )
        log.close()
        if _wait_listening(proc, port, log_path, timeout):
            testcase.addCleanup(_stop, proc)
            return SSHServer(port, client_key, user)
        _stop(proc)
        with open(log_path, errors="replace") as f:
            last_log = f.read()
    raise RuntimeError(f"sshd did not start; its log:\n{last_log}")


def _stop(proc):
    if proc.poll() is None:
        # Its own session (start_new_session): the listener and the
        # per-connection children it forked.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
