"""Integration tests of drivers/tm/exec and its script sets (drivers/tm/remotes).

The real driver is spawned through the core's adapter
(``nebtwist.mad.build_driver("tm", ...)``) and given transfer scripts shaped
like the ones ``nebtwist/core/tm.py`` writes. For the ssh set, two "hosts"
``hosta`` and ``hostb`` are aliases of a real test sshd on 127.0.0.1
(``tests/sshd.py``): ``ssh``/``scp`` wrappers first on the driver's PATH add
``-F <config>``, and each host keeps its VM folders in its own directory, so
every copy between them is a real one over ssh. The front-end is this
machine's own host name (no ssh).

The 1 GiB clone measurement (ssh set vs qcow2 set) runs only with
``NEBTWIST_TM_BENCH=1`` and prints its figures; it asserts no timings.
"""

import gzip
import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.server import Site
from twisted.web.static import File

from nebtwist.errors import DriverError
from nebtwist.mad import build_driver
from tests.sshd import start_sshd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXEC = os.path.join(ROOT, "drivers", "tm", "exec")
REMOTES = os.path.join(ROOT, "drivers", "tm", "remotes")
FRONTEND = socket.gethostname()
OPS = ("clone", "ln", "mkswap", "mkimage", "mkimage", "context", "mv", "mvds", "delete",
       "premigrate", "postmigrate")

#: The seed's exercise (OpenNebula 3.4 course, "Make the clone script aware of
#: compressed images"): a clone that gunzips *.gz sources on the host.
GZ_CLONE = r"""#!/bin/sh
# clone SRC DST -- the ssh clone, aware of compressed (.gz) images
set -e
. "$TM_COMMON"
SRC=$1
DST=$2
DST_HOST=$(arg_host "$DST")
DST_PATH=$(arg_path "$DST")
SRC_HOST=$(arg_host "$SRC")
SRC_PATH=$(arg_path "$SRC")
ssh_make_path "$DST_HOST" "$(dirname "$DST_PATH")"
case $SRC_PATH in
*.gz)
    log "gz-aware clone: uncompressing $SRC in $DST"
    copy_file "$SRC_HOST" "$SRC_PATH" "$DST_HOST" "$DST_PATH.gz" "Error copying $SRC"
    ssh_exec_and_log "$DST_HOST" "gunzip -f $(q "$DST_PATH.gz")" "Error uncompressing $DST_PATH.gz"
    ;;
*)
    log "gz-aware clone: copying $SRC in $DST"
    copy_file "$SRC_HOST" "$SRC_PATH" "$DST_HOST" "$DST_PATH" "Error copying $SRC"
    ;;
esac
"""


def run(*argv, check=True):
    """Run a command; its CompletedProcess (text)."""
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120)


def qemu_info(path):
    """``qemu-img info --output=json`` of ``path`` as a dict."""
    return json.loads(run("qemu-img", "info", "-U", "--output=json", path).stdout)


def blkid_type(path):
    """The file system / swap TYPE blkid sees in ``path``."""
    return run("blkid", "-o", "value", "-s", "TYPE", path).stdout.strip()


def same(a, b):
    return run("cmp", "-s", a, b, check=False).returncode == 0


def write_random(path, size):
    """Write ``size`` bytes of random data (1 MiB at a time) to ``path``."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n


class TMTestBase(TestCase):
    """A temp front-end (ONE_LOCATION, images, var) and the driver starter."""

    def setUp(self):
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.one_location = os.path.join(self.base, "one")
        self.images = os.path.join(self.base, "images")
        self.var = os.path.join(self.base, "var")
        for d in (self.one_location, self.images, self.var):
            os.makedirs(d)
        # A short TMPDIR: the scripts' ssh control sockets live under it.
        self.tmpdir = tempfile.mkdtemp(prefix="nt-tm-")
        self.addCleanup(shutil.rmtree, self.tmpdir, True)
        self.env = dict(os.environ, ONE_LOCATION=self.one_location, TMPDIR=self.tmpdir)
        self.logs = []

    async def start(self, arguments, name="tm_ssh"):
        mad = build_driver("tm", reactor, {"NAME": name, "EXECUTABLE": EXEC,
                                           "ARGUMENTS": arguments, "TIMEOUT": 120},
                           env=self.env)
        mad.on_log = lambda *a: self.logs.append(a)
        mad.init_timeout = 15
        mad.startService()
        self.addCleanup(mad.stopService)
        await mad.started()
        return mad

    def script(self, vid, action, lines):
        """Write ``<var>/<vid>/transfer.0.<action>``; its path."""
        folder = os.path.join(self.var, str(vid))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"transfer.0.{action}")
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        return path

    def logged(self, vid):
        return [m for (_lvl, oid, m) in self.logs if oid == vid]

    def image(self, name, size=3 << 20):
        path = os.path.join(self.images, name)
        write_random(path, size)
        return path

    def context(self, vid, with_iso=True, files=()):
        """``<var>/<vid>/context.sh`` (and context.iso unless ``with_iso`` is false)."""
        folder = os.path.join(self.var, str(vid))
        os.makedirs(folder, exist_ok=True)
        ctx = os.path.join(folder, "context.sh")
        with open(ctx, "w") as f:
            f.write(f'HOSTNAME="one-{vid}"\nETH0_IP="10.0.0.{vid}"\n')
        if with_iso:
            run("genisoimage", "-quiet", "-o", os.path.join(folder, "context.iso"),
                "-V", "CONTEXT", "-J", "-R", ctx, *files)
        return ctx


class SshHostsBase(TMTestBase):
    """Two "hosts", hosta and hostb: aliases of a real sshd on 127.0.0.1."""

    def setUp(self):
        super().setUp()
        self.sshd = start_sshd(self)
        port, key, user = self.sshd
        self.bin = os.path.join(self.base, "bin")
        os.makedirs(self.bin)
        config = os.path.join(self.base, "ssh_config")
        with open(config, "w") as f:
            f.write(f"Host hosta hostb\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
                    f"  IdentityFile {key}\n  IdentitiesOnly yes\n"
                    f"  UserKnownHostsFile {self.sshd.known_hosts}\n"
                    "  StrictHostKeyChecking yes\n  ConnectTimeout 20\n  LogLevel ERROR\n")
        for tool in ("ssh", "scp"):
            wrapper = os.path.join(self.bin, tool)
            with open(wrapper, "w") as f:
                f.write(f"#!/bin/sh\nexec {shutil.which(tool)} -F {shlex.quote(config)} \"$@\"\n")
            os.chmod(wrapper, 0o755)
        self.env["PATH"] = self.bin + os.pathsep + self.env["PATH"]
        self.addCleanup(self.stop_masters)
        # Each "host" keeps its datastore in its own folder.
        self.ds = {h: os.path.join(self.base, h, "datastores") for h in ("hosta", "hostb")}

    def stop_masters(self):
        """Stop the ssh masters the scripts left (ControlPersist) by their sockets."""
        control = os.path.join(self.tmpdir, f"nebtwist-tm-{os.getuid()}")
        if os.path.isdir(control):
            for sock in os.listdir(control):
                subprocess.run([os.path.join(self.bin, "ssh"), "-o",
                                f"ControlPath={os.path.join(control, sock)}", "-O", "exit",
                                "hosta"], capture_output=True, timeout=30)

    def connections(self):
        """How many ssh connections the test sshd accepted so far."""
        with open(self.sshd.log_path, errors="replace") as f:
            return sum(1 for line in f if "Accepted publickey" in line)

    def vm_dir(self, host, vid):
        return os.path.join(self.ds[host], "0", str(vid))


class SshSetTests(SshHostsBase):
    """The ssh set between two aliases of a real sshd, and the front-end."""

    async def test_lifecycle(self):
        """Prolog (CLONE, LN, MKSWAP, MKIMAGE qcow2 and ext4, CONTEXT), MV between
        hosts, to the front-end and back, MVDS, DELETE: real copies over one
        shared ssh connection."""
        mad = await self.start("ssh")
        vid = 20
        img = self.image("ttylinux.img")
        ctx = self.context(vid)
        a = self.vm_dir("hosta", vid)
        prolog = self.script(vid, "prolog", [
            f"CLONE tm_ssh {FRONTEND}:{img} hosta:{a}/disk.0",
            f"LN tm_ssh {FRONTEND}:{img} hosta:{a}/disk.1",
            f"MKSWAP tm_ssh 64 hosta:{a}/disk.2",
            f"MKIMAGE tm_ssh 32 qcow2 hosta:{a}/disk.3",
            f"MKIMAGE tm_ssh 32 ext4 hosta:{a}/disk.4",
            f"CONTEXT tm_ssh {ctx} hosta:{a}/disk.5",
        ])
        self.assertIsNone(await mad.transfer(vid, prolog))
        self.assertTrue(same(img, f"{a}/disk.0"))
        self.assertTrue(same(img, f"{a}/disk.1"))
        self.assertEqual(blkid_type(f"{a}/disk.2"), "swap")
        self.assertEqual(os.path.getsize(f"{a}/disk.2"), 64 << 20)
        info = qemu_info(f"{a}/disk.3")
        self.assertEqual((info["format"], info["virtual-size"]), ("qcow2", 32 << 20))
        self.assertEqual(blkid_type(f"{a}/disk.4"), "ext4")
        self.assertTrue(same(os.path.join(self.var, str(vid), "context.iso"), f"{a}/disk.5"))
        messages = self.logged(vid)
        self.assertEqual([m.split(":")[0] for m in messages if m.split(":")[0].isupper()],
                         ["CLONE", "LN", "MKSWAP", "MKIMAGE", "MKIMAGE", "CONTEXT"])
        self.assertIn(f"CLONE: {FRONTEND}:{img} hosta:{a}/disk.0", messages)
        self.assertIn(f"clone: Cloning {FRONTEND}:{img} in hosta:{a}/disk.0", messages)
        before = sorted(os.listdir(a))

        # MV hosta -> hostb (cold migration)
        b = self.vm_dir("hostb", vid)
        path = self.script(vid, "prolog_migrate", [f"MV tm_ssh hosta:{a} hostb:{b}"])
        self.assertIsNone(await mad.transfer(vid, path))
        self.assertFalse(os.path.exists(a))
        self.assertEqual(sorted(os.listdir(b)), before)
        self.assertTrue(same(img, f"{b}/disk.0"))
        self.assertEqual(blkid_type(f"{b}/disk.4"), "ext4")

        # MV hostb -> the front-end (stop) and back to hosta (resume)
        stopped = os.path.join(self.var, str(vid), "images")
        path = self.script(vid, "epilog_stop", [f"MV tm_ssh hostb:{b} {FRONTEND}:{stopped}"])
        self.assertIsNone(await mad.transfer(vid, path))
        self.assertFalse(os.path.exists(b))
        self.assertEqual(sorted(os.listdir(stopped)), before)
        path = self.script(vid, "prolog_resume", [f"MV tm_ssh {FRONTEND}:{stopped} hosta:{a}"])
        self.assertIsNone(await mad.transfer(vid, path))
        self.assertFalse(os.path.exists(stopped))
        self.assertEqual(sorted(os.listdir(a)), before)
        self.assertTrue(same(img, f"{a}/disk.0"))

        # MV to the same place: nothing
        path = self.script(vid, "noop", [f"MV tm_ssh hosta:{a} hosta:{a}"])
        self.assertIsNone(await mad.transfer(vid, path))
        self.assertEqual(sorted(os.listdir(a)), before)

        # Epilog: MVDS (save disk.0 into the datastore), DELETE
        saved = os.path.join(self.images, "saved", "ttylinux-saved.img")
        with open(f"{a}/disk.0", "r+b") as f:  # the VM wrote to its disk
            f.write(b"written by the guest")
        path = self.script(vid, "epilog", [f"MVDS tm_ssh hosta:{a}/disk.0 {saved}",
                                           f"DELETE tm_ssh hosta:{a}"])
        self.assertIsNone(await mad.transfer(vid, path))
        with open(saved, "rb") as f:
            self.assertEqual(f.read(20), b"written by the guest")
        self.assertEqual(os.path.getsize(saved), os.path.getsize(img))
        self.assertFalse(os.path.exists(saved + ".part"))
        self.assertFalse(os.path.exists(a))
        self.assertEqual(os.listdir(os.path.dirname(a)), [])

        # Connection sharing: 12 operations (plus mkdirs, renames, removals)
        # reached the hosts through one or two ssh connections.
        self.assertLessEqual(self.connections(), 2)
        control = os.path.join(self.tmpdir, f"nebtwist-tm-{os.getuid()}")
        self.assertEqual(os.stat(control).st_mode & 0o777, 0o700)
        check = subprocess.run([os.path.join(self.bin, "ssh"), "-o",
                                f"ControlPath={control}/%C", "-O", "check", "hosta"],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn("Master running", check.stderr)

    async def test_premigrate_postmigrate(self):
        """PREMIGRATE copies the folder to the new host (keeping the old copy);
        POSTMIGRATE removes the old one."""
        mad = await self.start("ssh")
        vid = 21
        img = self.image("base.img")
        a, b = self.vm_dir("hosta", vid), self.vm_dir("hostb", vid)
        prolog = self.script(vid, "prolog", [f"CLONE tm_ssh {FRONTEND}:{img} hosta:{a}/disk.0",
                                             f"MKSWAP tm_ssh 8 hosta:{a}/disk.1"])
        self.assertIsNone(await mad.transfer(vid, prolog))
        path = self.script(vid, "premigrate", [f"PREMIGRATE tm_ssh hosta:{a} hostb:{b}"])
        self.assertIsNone(await mad.transfer(vid, path))
        self.assertEqual(sorted(os.listdir(a)), ["disk.0", "disk.1"])
        self.assertEqual(sorted(os.listdir(b)), ["disk.0", "disk.1"])
        self.assertTrue(same(img, f"{b}/disk.0"))
        self.assertEqual(blkid_type(f"{b}/disk.1"), "swap")
        path = self.script(vid, "postmigrate", [f"POSTMIGRATE tm_ssh hosta:{a} hostb:{b}"])
        self.assertIsNone(await mad.transfer(vid, path))
        self.assertFalse(os.path.exists(a))
        self.assertTrue(same(img, f"{b}/disk.0"))

    async def test_context_built_without_iso(self):
        """Without context.iso beside context.sh, CONTEXT builds one from
        context.sh and the FILES."""
        mad = await self.start("ssh")
        vid = 22
        extra = os.path.join(self.images, "init.sh")
        with open(extra, "w") as f:
            f.write("echo hello\n")
        ctx = self.context(vid, with_iso=False)
        a = self.vm_dir("hosta", vid)
        path = self.script(vid, "prolog", [f"CONTEXT tm_ssh {ctx} {extra} hosta:{a}/disk.1"])
        self.assertIsNone(await mad.transfer(vid, path))
        listing = run("isoinfo", "-i", f"{a}/disk.1", "-R", "-f").stdout.split()
        self.assertEqual(sorted(listing), ["/context.sh", "/init.sh"])
        self.assertEqual(blkid_type(f"{a}/disk.1"), "iso9660")
        label = run("blkid", "-o", "value", "-s", "LABEL", f"{a}/disk.1").stdout.strip()
        self.assertEqual(label, "CONTEXT")

    async def test_failure_stops_the_script(self):
        """A failing line (missing source) fails the transfer with the script's
        message; the lines after it do not run."""
        mad = await self.start("ssh")
        vid = 23
        a = self.vm_dir("hosta", vid)
        missing = os.path.join(self.images, "missing.img")
        path = self.script(vid, "prolog", [f"MKSWAP tm_ssh 8 hosta:{a}/disk.0",
                                           f"CLONE tm_ssh {FRONTEND}:{missing} hosta:{a}/disk.1",
                                           f"MKSWAP tm_ssh 8 hosta:{a}/disk.2"])
        e = await self.assertFailure(mad.transfer(vid, path), DriverError)
        self.assertTrue(e.message.startswith(
            f"Error copying {FRONTEND}:{missing} to hosta:{a}/disk.1: "), e.message)
        self.assertIn("No such file or directory", e.message)
        self.assertEqual(os.listdir(a), ["disk.0"])
        ops = [m.split(":")[0] for m in self.logged(vid) if m.split(":")[0].isupper()]
        self.assertEqual(ops, ["MKSWAP", "CLONE"])
        self.assertTrue(any(lvl == "E" and "failed" in m for lvl, oid, m in self.logs
                            if oid == vid))

    async def test_unreachable_host(self):
        """A host ssh cannot resolve fails with ssh's complaint."""
        mad = await self.start("ssh")
        path = self.script(24, "epilog", ["DELETE tm_ssh nosuchhost.invalid:/srv/0/24"])
        e = await self.assertFailure(mad.transfer(24, path), DriverError)
        self.assertIn("Error deleting nosuchhost.invalid:/srv/0/24", e.message)
        self.assertIn("nosuchhost.invalid", e.message)

    async def test_unknown_op_and_bad_paths(self):
        """An operation without a script names the op and the folder; DELETE
        refuses an empty path and MKSWAP a non-numeric size."""
        mad = await self.start("ssh")
        path = self.script(25, "prolog", ["FROB tm_ssh a b", "MKSWAP tm_ssh 8 hosta:/x/disk.0"])
        e = await self.assertFailure(mad.transfer(25, path), DriverError)
        self.assertEqual(e.message, "unknown transfer operation FROB: no script frob in "
                                    f"{os.path.join(REMOTES, 'ssh')}")
        path = self.script(25, "epilog", ["../../../bin/true tm_ssh a"])
        e = await self.assertFailure(mad.transfer(25, path), DriverError)
        self.assertTrue(e.message.startswith("unknown transfer operation ../../../BIN/TRUE:"))
        path = self.script(25, "epilog", ["DELETE tm_ssh hosta:"])
        e = await self.assertFailure(mad.transfer(25, path), DriverError)
        self.assertEqual(e.message, "empty delete path")
        path = self.script(25, "epilog", ["DELETE tm_ssh hosta:/"])
        e = await self.assertFailure(mad.transfer(25, path), DriverError)
        self.assertEqual(e.message, "refusing to delete /")
        path = self.script(25, "prolog", ["MKSWAP tm_ssh 1G hosta:/x/disk.0"])
        e = await self.assertFailure(mad.transfer(25, path), DriverError)
        self.assertEqual(e.message, "invalid size '1G' (MB expected)")
        path = self.script(25, "prolog", ["MKSWAP tm_ssh"])
        e = await self.assertFailure(mad.transfer(25, path), DriverError)
        self.assertTrue(e.message.startswith("usage: mkswap SIZE_MB DST"), e.message)

    async def test_one_location_override(self):
        """$ONE_LOCATION/var/remotes/tm/ssh/ is used when it exists: the
        administrator's gz-aware clone (the seed's exercise) runs."""
        custom = os.path.join(self.one_location, "var", "remotes", "tm", "ssh")
        shutil.copytree(os.path.join(REMOTES, "ssh"), custom)
        with open(os.path.join(custom, "clone"), "w") as f:
            f.write(GZ_CLONE)
        mad = await self.start("ssh")
        vid = 26
        img = self.image("compressed.img")
        with open(img, "rb") as src, gzip.open(img + ".gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        a = self.vm_dir("hosta", vid)
        path = self.script(vid, "prolog", [f"CLONE tm_ssh {FRONTEND}:{img}.gz hosta:{a}/disk.0",
                                           f"LN tm_ssh {FRONTEND}:{img} hosta:{a}/disk.1"])
        self.assertIsNone(await mad.transfer(vid, path))
        self.assertEqual(sorted(os.listdir(a)), ["disk.0", "disk.1"])
        self.assertTrue(same(img, f"{a}/disk.0"))
        self.assertTrue(same(img, f"{a}/disk.1"))  # ln ran the custom clone too
        messages = self.logged(vid)
        self.assertIn(f"clone: gz-aware clone: uncompressing {FRONTEND}:{img}.gz in "
                      f"hosta:{a}/disk.0", messages)
        self.assertIn(f"clone: gz-aware clone: copying {FRONTEND}:{img} in "
                      f"hosta:{a}/disk.1", messages)

    async def test_http_clone(self):
        """CLONE of an http URL downloads it on the host (curl); a 404 fails."""
        served = os.path.join(self.base, "www")
        os.makedirs(served)
        img = os.path.join(served, "disk.img")
        write_random(img, 2 << 20)
        port = reactor.listenTCP(0, Site(File(served)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}"
        mad = await self.start("ssh")
        vid = 27
        a = self.vm_dir("hostb", vid)
        path = self.script(vid, "prolog", [f"CLONE tm_ssh {url}/disk.img hostb:{a}/disk.0"])
        self.assertIsNone(await mad.transfer(vid, path))
        self.assertTrue(same(img, f"{a}/disk.0"))
        self.assertIn(f"clone: Downloading {url}/disk.img", self.logged(vid))
        path = self.script(vid, "prolog", [f"CLONE tm_ssh {url}/nope.img hostb:{a}/disk.1"])
        e = await self.assertFailure(mad.transfer(vid, path), DriverError)
        self.assertTrue(e.message.startswith(f"Error downloading {url}/nope.img: "), e.message)
        self.assertIn("404", e.message)
        self.assertEqual(os.listdir(a), ["disk.0"])


class SharedSetTests(TMTestBase):
    """shared (via the 1.4 form tm_nfs/tm_nfs.conf), qcow2 and dummy: on the
    front-end, no ssh."""

    async def test_nfs_14_form(self):
        """ARGUMENTS tm_nfs/tm_nfs.conf runs the shared set: CLONE copies, LN
        links, MV to the same path does nothing, MV elsewhere renames, MVDS
        moves, DELETE removes."""
        mad = await self.start("tm_nfs/tm_nfs.conf", name="tm_nfs")
        vid = 30
        img = self.image("shared.img")
        ctx = self.context(vid)
        d = os.path.join(self.base, "shared", "0", str(vid))
        path = self.script(vid, "prolog", [
            f"CLONE tm_nfs {FRONTEND}:{img} nt-h1:{d}/disk.0",
            f"LN tm_nfs {FRONTEND}:{img} nt-h1:{d}/disk.1",
            f"MKSWAP tm_nfs 16 nt-h1:{d}/disk.2",
            f"MKIMAGE tm_nfs 16 ext4 nt-h1:{d}/disk.3",
            f"CONTEXT tm_nfs {ctx} nt-h1:{d}/disk.4",
        ])
        self.assertIsNone(await mad.transfer(vid, path))
        self.assertFalse(os.path.islink(f"{d}/disk.0"))
        self.assertTrue(same(img, f"{d}/disk.0"))
        self.assertEqual(os.readlink(f"{d}/disk.1"), img)
        self.assertEqual(blkid_type(f"{d}/disk.2"), "swap")
        self.assertEqual(blkid_type(f"{d}/disk.3"), "ext4")
        self.assertEqual(blkid_type(f"{d}/disk.4"), "iso9660")
        self.assertIn("clone: Cloning", " ".join(self.logged(vid)))
        path = self.script(vid, "migrate", [f"MV tm_nfs nt-h1:{d} nt-h2:{d}",
                                            f"PREMIGRATE tm_nfs nt-h1:{d} nt-h2:{d}",
                                            f"POSTMIGRATE tm_nfs nt-h1:{d} nt-h2:{d}"])
        self.assertIsNone(await mad.transfer(vid, path))
        self.assertEqual(len(os.listdir(d)), 5)
        stopped = os.path.join(self.var, str(vid), "images")
        path = self.script(vid, "stop", [f"MV tm_nfs nt-h2:{d} {FRONTEND}:{stopped}"])
        self.assertIsNone(await mad.transfer(vid, path))
        self.assertFalse(os.path.exists(d))
        self.assertEqual(len(os.listdir(stopped)), 5)
        saved = os.path.join(self.images, "saved.img")
        path = self.script(vid, "epilog", [f"MVDS tm_nfs nt-h1:{stopped}/disk.0 {saved}",
                                           f"DELETE tm_nfs nt-h1:{stopped}"])
        self.assertIsNone(await mad.transfer(vid, path))
        self.assertTrue(same(img, saved))
        self.assertFalse(os.path.exists(stopped))
        self.assertTrue(os.path.exists(img))  # a link's target is never deleted

    async def test_qcow2_overlay_and_flatten(self):
        """qcow2 CLONE makes an overlay backed by the source (its format from
        qemu-img info); MVDS flattens the VM's disk into a standalone image."""
        mad = await self.start("qcow2", name="tm_qcow2")
        vid = 31
        raw = self.image("base.raw", 4 << 20)
        base = os.path.join(self.images, "base.qcow2")
        run("qemu-img", "convert", "-O", "qcow2", raw, base)
        d = os.path.join(self.base, "shared", "0", str(vid))
        path = self.script(vid, "prolog", [f"CLONE tm_qcow2 {FRONTEND}:{base} nt-h1:{d}/disk.0",
                                           f"CLONE tm_qcow2 {FRONTEND}:{raw} nt-h1:{d}/disk.1",
                                           f"MKIMAGE tm_qcow2 8 qcow2 nt-h1:{d}/disk.2"])
        self.assertIsNone(await mad.transfer(vid, path))
        info = qemu_info(f"{d}/disk.0")
        self.assertEqual(info["format"], "qcow2")
        self.assertEqual(info["backing-filename"], base)
        self.assertEqual(info["backing-filename-format"], "qcow2")
        self.assertEqual(info["virtual-size"], 4 << 20)
        self.assertLess(os.path.getsize(f"{d}/disk.0"), 1 << 20)
        info = qemu_info(f"{d}/disk.1")
        self.assertEqual((info["backing-filename"], info["backing-filename-format"]),
                         (raw, "raw"))
        self.assertEqual(run("qemu-img", "compare", raw, f"{d}/disk.1").returncode, 0)
        # The guest writes to its overlay; MVDS flattens it into the datastore.
        run("qemu-io", "-c", "write -P 0x5a 0 64k", f"{d}/disk.0")
        saved = os.path.join(self.images, "saved.qcow2")
        path = self.script(vid, "epilog", [f"MVDS tm_qcow2 nt-h1:{d}/disk.0 {saved}",
                                           f"DELETE tm_qcow2 nt-h1:{d}"])
        self.assertIsNone(await mad.transfer(vid, path))
        info = qemu_info(saved)
        self.assertEqual(info["format"], "qcow2")
        self.assertNotIn("backing-filename", info)
        self.assertEqual(run("qemu-img", "compare", raw, saved, check=False).returncode, 1)
        with open(raw, "rb") as f:
            tail = f.read()[65536:]
        out = os.path.join(self.base, "flat.raw")
        run("qemu-img", "convert", "-O", "raw", saved, out)
        with open(out, "rb") as f:
            data = f.read()
        self.assertEqual(data[:65536], b"\x5a" * 65536)
        self.assertEqual(data[65536:], tail)
        self.assertFalse(os.path.exists(d))
        self.assertTrue(os.path.exists(base))

    async def test_dummy_set(self):
        """Every dummy op logs and succeeds; nothing is made."""
        mad = await self.start("dummy", name="tm_dummy")
        lines = [f"{op.upper()} tm_dummy a:/x b:/y" for op in sorted(set(OPS))]
        path = self.script(32, "prolog", lines)
        self.assertIsNone(await mad.transfer(32, path))
        messages = self.logged(32)
        for op in sorted(set(OPS)):
            self.assertIn(f"{op}: dummy: {op} a:/x b:/y", messages)
        self.assertFalse(os.path.exists("/x"))

    async def test_timeout_and_remotes_dir(self):
        """-d picks the remotes root; an operation over -w seconds is killed."""
        root = os.path.join(self.base, "remotes")
        os.makedirs(os.path.join(root, "slow"))
        script = os.path.join(root, "slow", "clone")
        with open(script, "w") as f:
            f.write('#!/bin/sh\necho "started $VMID"\nsleep 60\n')
        os.chmod(script, 0o755)
        mad = await self.start(f"-d {root} -w 1 slow", name="tm_slow")
        path = self.script(33, "prolog", ["CLONE tm_slow a b", "CLONE tm_slow c d"])
        started = time.monotonic()
        e = await self.assertFailure(mad.transfer(33, path), DriverError)
        self.assertLess(time.monotonic() - started, 30)
        self.assertEqual(e.message, "clone timed out after 1 s")
        self.assertIn("started 33", self.logged(33))
        self.assertEqual([m for m in self.logged(33) if m.startswith("CLONE")], ["CLONE: a b"])

    async def test_missing_script_file(self):
        mad = await self.start("dummy", name="tm_dummy")
        path = os.path.join(self.var, "nope", "transfer.0.prolog")
        e = await self.assertFailure(mad.transfer(34, path), DriverError)
        self.assertEqual(e.message, f"transfer script {path} not found")


class CloneBenchmark(SshHostsBase):
    """1 GiB CLONE: ssh set (a real copy over ssh) vs qcow2 set (an overlay).

    Runs with NEBTWIST_TM_BENCH=1; prints figures, asserts no timings.
    """

    def setUp(self):
        if not os.environ.get("NEBTWIST_TM_BENCH"):
            raise SkipTest("set NEBTWIST_TM_BENCH=1 to measure 1 GiB clones")
        super().setUp()

    async def test_clone_1gib(self):
        img = os.path.join(self.images, "big.raw")
        t0 = time.monotonic()
        write_random(img, 1 << 30)
        print(f"\n  wrote 1 GiB of random data in {time.monotonic() - t0:.2f} s")
        self.addCleanup(os.remove, img)
        ssh = await self.start("ssh")
        qcow = await self.start("qcow2", name="tm_qcow2")
        for rnd in range(2):
            a = self.vm_dir("hosta", 40 + rnd)
            path = self.script(40 + rnd, "prolog", [f"CLONE tm_ssh {FRONTEND}:{img} hosta:{a}/disk.0"])
            t0 = time.monotonic()
            await ssh.transfer(40 + rnd, path)
            t_ssh = time.monotonic() - t0
            self.assertTrue(same(img, f"{a}/disk.0"))
            shutil.rmtree(a)
            d = os.path.join(self.base, "shared", str(50 + rnd))
            path = self.script(50 + rnd, "prolog", [f"CLONE tm_qcow2 {FRONTEND}:{img} h:{d}/disk.0"])
            t0 = time.monotonic()
            await qcow.transfer(50 + rnd, path)
            t_q = time.monotonic() - t0
            shutil.rmtree(d)
            print(f"  round {rnd + 1}: CLONE 1 GiB ssh (scp over loopback) {t_ssh:.2f} s, "
                  f"qcow2 overlay {t_q:.3f} s; sshd connections so far {self.connections()}")

    async def test_small_ops_sharing(self):
        """20 MKSWAP 1 MB on hosta with and without connection sharing."""
        for sharing, vid in (("yes", 60), ("no", 61)):
            self.env["NEBTWIST_TM_SHARING"] = sharing
            mad = await self.start("ssh")
            a = self.vm_dir("hosta", vid)
            path = self.script(vid, "prolog", [f"MKSWAP tm_ssh 1 hosta:{a}/disk.{i}"
                                               for i in range(20)])
            before = self.connections()
            t0 = time.monotonic()
            await mad.transfer(vid, path)
            took = time.monotonic() - t0
            print(f"\n  20 x MKSWAP 1 MB over ssh, sharing={sharing}: {took:.2f} s "
                  f"({took / 20 * 1000:.0f} ms/op), {self.connections() - before} connections")
            await mad.stopService()
