"""Real VMs on the lab: controller overhead of a boot, 1 GiB clone, live migration.

Runs on the real-hypervisor lab (``tests/hvlab.py``: hosts ``nt-h1`` and ``nt-h2``,
started as root with ``tests/hv/lab-up.sh``); without it, prints why and exits 0.
Each figure comes with its floor or peer measured in the same run:

1. **Boot**: a real daemon on the shipped ``oned.conf`` (``DATASTORE_LOCATION`` under
   the lab's shared folder, hosts added as ``im_kvm vmm_qemu tm_qcow2``, the guest disk
   registered as an image, a FIXED network on ``onebr0``). ``--runs`` times:
   ``one.vm.allocate`` of the lab guest (pinned to nt-h1 by REQUIREMENTS), ``one.vm.info``
   every 50 ms until RUNNING (the first time each LCM state is seen splits it into
   PENDING, PROLOG and BOOT), then ``cancel`` and wait until DONE. Floor: libvirt-python
   ``createXML`` (over the same ``qemu+ssh`` URI the driver uses) of the daemon's own
   ``var/<vid>/deployment.0`` with another name, MAC and console, and a fresh qcow2
   overlay of the same image plus a copy of the context CD-ROM, timed from call to
   return, then destroyed. One guest at a time.
2. **Clone of a 1 GiB image** (``os.urandom``, incompressible): the shipped TM scripts
   ``ssh/clone`` (scp to nt-h1's private local folder) and ``qcow2/clone`` (an overlay on
   the shared folder), run as the TM driver runs them, with the lab's ssh on PATH.
3. **Live migration**: one guest booted through the daemon, ``one.vm.migrate(vid, other,
   True)`` back and forth ``--migrations`` times: libvirt's time as the VMM driver logs
   it (``migrated one-N from A to B in X s`` in ``var/oned.log``) against MIGRATE ->
   RUNNING on the new host as ``one.vm.info`` shows it (polled every 50 ms).

Prints figures as it goes and a table at the end; asserts nothing on time. Everything
it starts (daemon, domains, files under the lab folders) is removed at the end, on
error too.

Usage: ``python bench/bench_realvm.py [--runs 5] [--migrations 6] [--skip-clone]
[--skip-boot] [--skip-migrate] [--clone-mib 1024]`` (as root, the lab up).
"""

import contextlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import common  # noqa: E402

#: VM and LCM states (OpenNebula 3.4 include/VirtualMachine.h).
ACTIVE, DONE, FAILED = 3, 6, 7
PROLOG, BOOT, RUNNING, MIGRATE = 1, 2, 3, 4
LCM_NAMES = {0: "LCM_INIT", 1: "PROLOG", 2: "BOOT", 3: "RUNNING", 4: "MIGRATE",
             14: "FAILURE", 15: "CLEANUP", 13: "CANCEL", 11: "EPILOG"}
POLL = 0.05
BOOT_TIMEOUT = 300
OP_TIMEOUT = 180
#: Guest addresses (FIXED leases on each host's own onebr0); away from the tests' .10-.12.
IPS = ("203.0.113.210", "203.0.113.211", "203.0.113.212")

#: The kvm driver's LOG I line after migrateToURI3 returned (in oned.log, as
#: ``[VMM][I]: VM <vid>: migrated one-<vid> from A to B in X s``).
_MIGRATED = r"VM {vid}: migrated one-{vid} from (\S+) to (\S+) in ([0-9.]+) s"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def fmt(values, unit="s"):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return (f"median {median(values):.2f} {unit} (min {min(values):.2f}, "
            f"max {max(values):.2f}, n={len(values)})")


# -- the lab ------------------------------------------------------------------------------

class Workspace:
    """Folders this run owns under the lab (one tag), removed by :meth:`clean`."""

    def __init__(self, lab):
        self.lab = lab
        self.tag = f"bench-{uuid.uuid4().hex[:8]}"
        self.shared = os.path.join(lab.shared_dir, self.tag)
        self.local = os.path.join(lab.local_dir, self.tag)   # front-end's and hosts' view
        os.makedirs(self.shared)
        os.makedirs(self.local)

    def clean(self):
        for host in self.lab.hosts:
            shutil.rmtree(self.lab.host_path(host, self.local), ignore_errors=True)
        shutil.rmtree(self.local, ignore_errors=True)
        shutil.rmtree(self.shared, ignore_errors=True)


# -- 2. clone -----------------------------------------------------------------------------

def make_big_file(path, mib):
    """``mib`` MiB of os.urandom data at ``path`` (written in 4 MiB chunks, fsynced)."""
    chunk = 4 << 20
    with open(path, "wb") as f:
        left = mib << 20
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def run_clone(lab, tm_set, src, dst):
    """Run the shipped ``drivers/tm/remotes/<tm_set>/clone src dst`` as the TM driver
    does (lab env); return its wall seconds. RuntimeError when it fails."""
    script = os.path.join(ROOT, "drivers", "tm", "remotes", tm_set, "clone")
    env = lab.env()
    env["TM_COMMON"] = os.path.join(ROOT, "drivers", "tm", "remotes", "tm_common.sh")
    t0 = time.perf_counter()
    r = subprocess.run([script, src, dst], env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=1800)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{tm_set}/clone {src} {dst}: exit {r.returncode}\n"
                           f"{r.stdout}{r.stderr}")
    return elapsed


def bench_clone(lab, ws, mib, qcow2_runs=3):
    """Clone a ``mib`` MiB image to nt-h1 with tm_ssh and tm_qcow2; returns a dict."""
    host = lab.hosts[0]
    front = socket.gethostname()
    big = os.path.join(ws.local, "big.img")          # the front-end's own local folder
    print(f"[clone] writing {mib} MiB of os.urandom data to {big} ...")
    t0 = time.perf_counter()
    make_big_file(big, mib)
    write_s = time.perf_counter() - t0
    print(f"[clone] written in {write_s:.1f} s ({mib / write_s:.0f} MiB/s)")
    # qcow2's source must be where the hosts see it: a hard link on the shared folder
    # (same file system, no copy).
    shared_big = os.path.join(ws.shared, "big.img")
    try:
        os.link(big, shared_big)
    except OSError:
        shutil.copyfile(big, shared_big)
    out = {"mib": mib, "write": write_s}
    try:
        dst = os.path.join(ws.local, "ssh-vm", "disk.0")
        out["ssh"] = run_clone(lab, "ssh", f"{front}:{big}", f"{host}:{dst}")
        copied = os.path.getsize(lab.host_path(host, dst))
        if copied != mib << 20:
            raise RuntimeError(f"ssh clone left {copied} bytes on {host}, not {mib << 20}")
        print(f"[clone] tm_ssh   {mib} MiB -> {host}:{dst}: {out['ssh']:.2f} s "
              f"({mib / out['ssh']:.0f} MiB/s)")
        os.unlink(lab.host_path(host, dst))
        q = []
        for i in range(qcow2_runs):
            qdst = os.path.join(ws.shared, f"qcow2-vm{i}", "disk.0")
            q.append(run_clone(lab, "qcow2", f"{front}:{shared_big}", f"{host}:{qdst}"))
            info = json.loads(subprocess.run(
                ["qemu-img", "info", "-U", "--output=json", qdst], capture_output=True,
                text=True, check=True).stdout)
            if info.get("backing-filename") != shared_big:
                raise RuntimeError(f"qcow2 clone: unexpected backing file {info}")
        out["qcow2"] = median(q)
        out["qcow2_all"] = q
        print(f"[clone] tm_qcow2 {mib} MiB -> {host}: {fmt(q)}")
        print(f"[clone] ratio ssh / qcow2: {out['ssh'] / out['qcow2']:.0f}x")
    finally:
        for p in (big, shared_big):
            with contextlib.suppress(OSError):
                os.unlink(p)
    return out


# -- the daemon ---------------------------------------------------------------------------

class Cloud:
    """A real daemon on the lab (common.Daemon with the lab's ssh on PATH)."""

    def __init__(self, lab, ws, keep=False, overrides=()):
        self.lab = lab
        self.ws = ws
        self.ds = os.path.join(ws.shared, "datastores")
        # common.Daemon takes os.environ: put the lab's ssh wrappers first on PATH.
        os.environ.update(lab.env())
        self.daemon = common.Daemon([
            "SCHED_INTERVAL=1", "MANAGER_TIMER=1",
            "HOST_MONITORING_INTERVAL=4", "VM_POLLING_INTERVAL=30",
            f"DATASTORE_LOCATION={self.ds}",
            f"SCRIPTS_REMOTE_DIR={ws.shared}/remotes",
        ] + list(overrides), quiet=False, keep=keep, start_timeout=120)
        self.vids = []
        self.hids = {}

    def __enter__(self):
        self.daemon.__enter__()
        self.rpc = self.daemon.proxy()
        self.s = self.daemon.session
        return self

    def __exit__(self, *exc):
        try:
            for vid in self.vids:
                for host in self.lab.hosts:
                    with contextlib.suppress(Exception):
                        self.lab.destroy_domain(host, f"one-{vid}")
        finally:
            self.daemon.__exit__(*exc)
        return False

    @property
    def var(self):
        return os.path.join(self.daemon.location, "var")

    def call(self, method, *args):
        ok, body = getattr(self.rpc, method)(self.s, *args)[:2]
        if not ok:
            raise RuntimeError(f"{method}{args!r}: {body}")
        return body

    def skip_ids(self, count):
        """Allocate and finalize ``count`` VMs (no host yet, so none is placed), so
        this daemon's domains (one-<vid>) do not clash with other daemons' on the lab."""
        for _ in range(count):
            vid = self.call("one.vm.allocate", common.VM_TEMPLATE)
            self.call("one.vm.action", "finalize", vid)

    def setup(self, tm="tm_qcow2"):
        from lxml import etree
        for host in self.lab.hosts:
            self.hids[host] = self.call("one.host.allocate", host, "im_kvm", "vmm_qemu", tm)
        self.call("one.image.allocate", (
            'NAME = "guest-disk"\n'
            f'PATH = "{self.lab.guest.disk}"\n'
            'TYPE = OS\nDEV_PREFIX = "vd"\nBUS = "virtio"\nDRIVER = "qcow2"\n'))
        leases = "\n".join(f'LEASES = [ IP = "{ip}" ]' for ip in IPS)
        self.call("one.vn.allocate", f'NAME = "lab-net"\nTYPE = FIXED\n'
                                     f'BRIDGE = "{self.lab.bridge}"\n{leases}\n')
        deadline = time.monotonic() + OP_TIMEOUT
        while True:
            states = {h: int(etree.fromstring(self.call("one.host.info", hid).encode())
                             .findtext("STATE")) for h, hid in self.hids.items()}
            pool = etree.fromstring(self.call("one.imagepool.info", -2, -1, -1).encode())
            ready = [int(x) for x in pool.xpath("/IMAGE_POOL/IMAGE/STATE/text()")]
            if all(s == 2 for s in states.values()) and ready == [1]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"hosts {states} / image {ready} not ready in {OP_TIMEOUT} s"
                                   f"\n{self.daemon.output_tail()}")
            time.sleep(0.5)

    def template(self, name, host):
        console = os.path.join(self.ws.shared, f"{name}.console")
        return console, (
            f'NAME = "{name}"\nCPU = 0.5\nVCPU = 1\nMEMORY = 128\n'
            f'OS = [ KERNEL = "{self.lab.guest.kernel}", '
            f'INITRD = "{self.lab.guest.initrd}", KERNEL_CMD = "console=ttyS0 quiet" ]\n'
            'DISK = [ IMAGE = "guest-disk" ]\n'
            'NIC = [ NETWORK = "lab-net", MODEL = "virtio" ]\n'
            'CONTEXT = [ HOSTNAME = "$NAME", IP = "$NIC[IP]" ]\n'
            f'REQUIREMENTS = "HOSTNAME = \\"{host}\\""\n'
            'RAW = [ TYPE = "kvm", DATA = "<devices><serial type=\'file\'>'
            f'<source path=\'{console}\' append=\'on\'/><target port=\'0\'/></serial>'
            '</devices>" ]\n')

    def state(self, vid):
        """``(STATE, LCM_STATE, last history HOSTNAME or None)``."""
        from lxml import etree
        root = etree.fromstring(self.call("one.vm.info", vid).encode())
        hosts = root.xpath("HISTORY_RECORDS/HISTORY/HOSTNAME/text()")
        return (int(root.findtext("STATE")), int(root.findtext("LCM_STATE")),
                hosts[-1] if hosts else None)

    def watch(self, vid, t0, done, timeout):
        """Poll one.vm.info every 50 ms until ``done(state, lcm, host)``; return
        ``{lcm_state: seconds from t0 it was first seen}`` and the end time."""
        seen = {}
        deadline = time.monotonic() + timeout
        while True:
            st, lcm, host = self.state(vid)
            now = time.perf_counter()
            if st == ACTIVE:
                seen.setdefault(lcm, now - t0)
            if st == FAILED or (st == ACTIVE and lcm == 14):
                raise RuntimeError(f"VM {vid} failed:\n{self.vm_log(vid)[-3000:]}")
            if done(st, lcm, host):
                return seen, now - t0
            if time.monotonic() > deadline:
                raise RuntimeError(f"VM {vid} stuck in state {st}/{LCM_NAMES.get(lcm, lcm)} "
                                   f"after {timeout} s:\n{self.vm_log(vid)[-3000:]}")
            time.sleep(POLL)

    def migrations(self, vid):
        """The driver's migration lines for ``vid`` in oned.log: [(from, to, seconds)]."""
        with contextlib.suppress(OSError), open(os.path.join(self.var, "oned.log"),
                                                 errors="replace") as f:
            return re.findall(_MIGRATED.format(vid=vid), f.read())
        return []

    def vm_log(self, vid):
        with contextlib.suppress(OSError), open(os.path.join(self.var, str(vid), "vm.log"),
                                                 errors="replace") as f:
            return f.read()
        return ""

    def boot(self, name, host):
        """Allocate a guest pinned to ``host``; wait until RUNNING. Returns
        ``(vid, console, figures)``."""
        console, tmpl = self.template(name, host)
        t0 = time.perf_counter()
        vid = self.call("one.vm.allocate", tmpl)
        self.vids.append(vid)
        seen, total = self.watch(vid, t0, lambda st, lcm, h: st == ACTIVE and lcm == RUNNING,
                                 OP_TIMEOUT)
        p, b = seen.get(PROLOG), seen.get(BOOT)
        fig = {"total": total,
               "pending": p if p is not None else None,
               "prolog": (b - p) if (p is not None and b is not None) else None,
               "boot": (total - b) if b is not None else None}
        if p is not None:
            fig["dispatched"] = total - p
        return vid, console, fig

    def cancel(self, vid):
        t0 = time.perf_counter()
        self.call("one.vm.action", "cancel", vid)
        _, t = self.watch(vid, t0, lambda st, lcm, h: st == DONE, OP_TIMEOUT)
        return t


# -- 1. boot and its floor ----------------------------------------------------------------

def floor_xml(cloud, vid, folder, n):
    """The daemon's deployment.0 of ``vid`` made runnable beside it: another name, no
    uuid, another MAC and tap name, a fresh overlay of the same image for qcow2
    disks with a backing file, copies of the other VM files (the context CD-ROM), its
    own console. Returns (domain name, XML str)."""
    from lxml import etree
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    path = os.path.join(cloud.var, str(vid), "deployment.0")
    root = etree.parse(path, parser).getroot()
    name = f"nt-{cloud.ws.tag}-floor{n}"
    root.find("name").text = name
    for el in root.findall("uuid"):
        root.remove(el)
    os.makedirs(folder, exist_ok=True)
    vm_dir = os.path.join(cloud.ds, "0", str(vid))
    for src in root.xpath("devices/disk/source[@file]"):
        f = src.get("file")
        if not f.startswith(vm_dir + "/"):
            continue
        new = os.path.join(folder, os.path.basename(f))
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", f],
                                         capture_output=True, text=True, check=True).stdout)
        backing = info.get("full-backing-filename") or info.get("backing-filename")
        if info.get("format") == "qcow2" and backing:
            fmt_ = info.get("backing-filename-format", "qcow2")
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt_, "-b",
                            backing, new], check=True)
        else:
            shutil.copyfile(f, new)
        src.set("file", new)
    for i, mac in enumerate(root.xpath("devices/interface/mac")):
        mac.set("address", f"02:00:cb:00:71:{0xf0 + n % 8 + 8 * i:02x}")
    for tgt in root.xpath("devices/interface/target"):
        tgt.getparent().remove(tgt)
    for src in root.xpath("devices/serial/source[@path]"):
        src.set("path", os.path.join(folder, "console"))
    return name, etree.tostring(root, encoding="unicode")


def bench_boot(cloud, runs):
    import libvirt
    lab = cloud.lab
    host = lab.hosts[0]
    boots, floors = [], []
    for i in range(runs):
        vid, console, fig = cloud.boot(f"boot{i}", host)
        folder = os.path.join(cloud.ws.shared, f"floor{i}")
        name, xml = floor_xml(cloud, vid, folder, i)
        done = cloud.cancel(vid)
        boots.append(fig)
        print(f"[boot {i}] VM {vid}: allocate -> RUNNING {fig['total']:.2f} s "
              f"(PENDING {_f(fig['pending'])}, PROLOG {_f(fig['prolog'])}, "
              f"BOOT {_f(fig['boot'])}); cancel -> DONE {done:.2f} s; load {common.loadavg()}")
        conn = lab.libvirt_open(host)
        try:
            t0 = time.perf_counter()
            dom = conn.createXML(xml, 0)
            floor = time.perf_counter() - t0
            floors.append(floor)
            t0 = time.perf_counter()
            dom.destroy()
            print(f"[boot {i}] floor: createXML {floor:.2f} s, destroy "
                  f"{time.perf_counter() - t0:.2f} s")
        except libvirt.libvirtError as e:
            print(f"[boot {i}] floor createXML failed: {e}")
        finally:
            with contextlib.suppress(Exception):
                lab.destroy_domain(host, name)
            conn.close()
            shutil.rmtree(folder, ignore_errors=True)
    out = {
        "total": median([b["total"] for b in boots]),
        "pending": median([b["pending"] for b in boots]),
        "prolog": median([b["prolog"] for b in boots]),
        "boot": median([b["boot"] for b in boots]),
        "dispatched": median([b.get("dispatched") for b in boots]),
        "floor": median(floors),
        "runs": boots, "floors": floors,
    }
    print(f"[boot] allocate -> RUNNING: {fmt([b['total'] for b in boots])}")
    print(f"[boot]   PENDING (scheduler, SCHED_INTERVAL=1): "
          f"{fmt([b['pending'] for b in boots])}")
    print(f"[boot]   PROLOG (tm_qcow2 clone + context): {fmt([b['prolog'] for b in boots])}")
    print(f"[boot]   BOOT (deploy: driver + libvirt createXML): "
          f"{fmt([b['boot'] for b in boots])}")
    print(f"[boot] floor, libvirt createXML alone: {fmt(floors)}")
    print(f"[boot] added by nebtwist: {out['total'] - out['floor']:.2f} s from allocate, "
          f"{out['dispatched'] - out['floor']:.2f} s from dispatch (PROLOG seen); "
          f"BOOT / floor {out['boot'] / out['floor']:.2f}x")
    return out


def _f(x):
    return "n/a" if x is None else f"{x:.2f} s"


# -- 3. live migration --------------------------------------------------------------------

def bench_migrate(cloud, migrations):
    from tests.hvlab import ConsoleTimeout, wait_console
    lab = cloud.lab
    host = lab.hosts[0]
    vid, console, fig = cloud.boot("mig", host)
    print(f"[migrate] VM {vid} RUNNING on {host} in {fig['total']:.2f} s; "
          "waiting for the guest to boot")
    try:
        waited = wait_console(console, "NEBTWIST-GUEST-BOOTED", timeout=BOOT_TIMEOUT)
        print(f"[migrate] guest booted ({waited:.1f} s more)")
    except ConsoleTimeout:
        print("[migrate] guest not booted yet; migrating anyway")
    libvirt_s, nebtwist_s = [], []
    for i in range(migrations):
        target = next(h for h in lab.hosts if h != host)
        before = len(cloud.migrations(vid))
        t0 = time.perf_counter()
        cloud.call("one.vm.migrate", vid, cloud.hids[target], True)
        seen, total = cloud.watch(
            vid, t0, lambda st, lcm, h: st == ACTIVE and lcm == RUNNING and h == target,
            OP_TIMEOUT)
        deadline = time.monotonic() + 10
        while True:
            found = cloud.migrations(vid)
            if len(found) > before or time.monotonic() > deadline:
                break
            time.sleep(POLL)
        lv = float(found[before][2]) if len(found) > before else None
        libvirt_s.append(lv)
        nebtwist_s.append(total)
        print(f"[migrate {i}] {host} -> {target}: MIGRATE -> RUNNING {total:.2f} s, "
              f"libvirt (driver's log) {_f(lv)}; load {common.loadavg()}")
        host = target
    done = cloud.cancel(vid)
    print(f"[migrate] cancel -> DONE {done:.2f} s")
    out = {"libvirt": median(libvirt_s), "nebtwist": median(nebtwist_s),
           "libvirt_all": libvirt_s, "nebtwist_all": nebtwist_s}
    print(f"[migrate] libvirt migrateToURI3: {fmt(libvirt_s)}")
    print(f"[migrate] nebtwist MIGRATE -> RUNNING: {fmt(nebtwist_s)}")
    print(f"[migrate] ratio nebtwist / libvirt: {out['nebtwist'] / out['libvirt']:.2f}x, "
          f"added {out['nebtwist'] - out['libvirt']:.2f} s")
    return out


# -- main ---------------------------------------------------------------------------------

def run(argv=None):
    parser = common.new_parser(__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="boots (default 5)")
    parser.add_argument("--migrations", type=int, default=6,
                        help="live migrations, alternating hosts (default 6)")
    parser.add_argument("--clone-mib", type=int, default=1024,
                        help="size of the cloned image in MiB (default 1024)")
    parser.add_argument("--skip-clone", action="store_true")
    parser.add_argument("--skip-boot", action="store_true")
    parser.add_argument("--skip-migrate", action="store_true")
    args = parser.parse_args(argv)
    print(common.machine_note())
    lab = common.get_lab()
    if lab is None:
        return [("real VMs (bench_realvm)", "skipped: no lab", "")]
    print(f"lab: {lab.path}, hosts {lab.hosts}; load average {common.loadavg()}")
    rows, summary = [], []
    ws = Workspace(lab)
    try:
        if not args.skip_clone:
            c = bench_clone(lab, ws, args.clone_mib)
            summary.append((f"clone {args.clone_mib} MiB tm_ssh", f"{c['ssh']:.2f} s",
                            f"tm_qcow2 {c['qcow2']:.3f} s", f"{c['ssh'] / c['qcow2']:.0f}x"))
            rows.append((f"clone {args.clone_mib} MiB: tm_ssh / tm_qcow2",
                         f"{c['ssh']:.2f} s / {c['qcow2']:.3f} s", ""))
        if not (args.skip_boot and args.skip_migrate):
            with Cloud(lab, ws, keep=args.keep, overrides=args.overrides) as cloud:
                cloud.skip_ids(1000 + random.randrange(1000))
                cloud.setup("tm_qcow2")
                print(f"daemon up, hosts MONITORED, image READY; load {common.loadavg()}")
                if not args.skip_boot:
                    b = bench_boot(cloud, args.runs)
                    summary += [
                        ("boot: allocate -> RUNNING", f"{b['total']:.2f} s",
                         f"createXML {b['floor']:.2f} s", f"{b['total'] / b['floor']:.2f}x"),
                        ("  PENDING / PROLOG / BOOT",
                         f"{b['pending']:.2f} / {b['prolog']:.2f} / {b['boot']:.2f} s", "",
                         ""),
                        ("  added by nebtwist (allocate)",
                         f"{b['total'] - b['floor']:.2f} s", "", ""),
                        ("  added by nebtwist (dispatch)",
                         f"{b['dispatched'] - b['floor']:.2f} s", "", ""),
                    ]
                    rows.append(("real boot, added over createXML",
                                 f"{b['total'] - b['floor']:.2f} s "
                                 f"({b['dispatched'] - b['floor']:.2f} s after dispatch)",
                                 "< 1 s"))
                if not args.skip_migrate:
                    m = bench_migrate(cloud, args.migrations)
                    summary.append(("livemigrate: MIGRATE -> RUNNING",
                                    f"{m['nebtwist']:.2f} s",
                                    f"libvirt {m['libvirt']:.2f} s",
                                    f"{m['nebtwist'] / m['libvirt']:.2f}x"))
                    rows.append(("livemigrate, nebtwist / libvirt",
                                 f"{m['nebtwist']:.2f} s / {m['libvirt']:.2f} s", ""))
    finally:
        ws.clean()
    print(f"=== bench_realvm summary ({common.machine_note()}; load average {common.loadavg()})")
    print(common.table(("figure", "measured", "floor / peer", "ratio"), summary))
    return rows


if __name__ == "__main__":
    run()
