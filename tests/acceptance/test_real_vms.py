"""Acceptance: real VMs on real hosts, as seed 000 Part II's administrator runs them.

A real ``twistd -n nebula`` on the shipped ``oned.conf`` drives the lab's two hosts
(``tests/hvlab.py``: namespaced hosts ``nt-h1`` and ``nt-h2``, each with its own
libvirtd and sshd) through the real drivers: ``im_kvm`` (probes over ssh), ``vmm_qemu``
(libvirt-python, QEMU TCG) and ``tm_ssh`` / ``tm_shared`` / ``tm_qcow2`` (transfer
scripts). Everything is done with the real ``one*`` commands; the guest is the lab's
tiny Linux, whose serial console (a RAW ``<serial>`` to a file) shows what it read
from its CONTEXT CD-ROM, its disk and its network, and ticks every 2 s.

The tests skip, saying why, without the lab (``tests/hv/lab-up.sh`` as root); each
records itself in ``$NEBTWIST_LAB/ran-tests.txt`` so CI knows they ran.
"""

import os
import re
import signal
import time
import uuid

from twisted.trial import unittest

from tests.acceptance.test_seed000 import (FAST, NebulaDaemon, SeedCloudTestCase,
                                           parse_show)
from tests.hvlab import load_lab, mark_ran, read_console, ticks, wait_console

#: Seconds a guest may take to boot under TCG on a loaded 2-core machine.
BOOT_TIMEOUT = 300
#: Seconds an operation that copies or boots nothing may take.
OP_TIMEOUT = 120


class LabDaemon(NebulaDaemon):
    """A :class:`NebulaDaemon` whose drivers reach the lab's hosts: the lab's ssh
    wrappers first on PATH, as an operator's ~/.ssh/config would be."""

    def __init__(self, lab, location, settings=()):
        super().__init__(location, settings)
        self.lab = lab

    def environ(self, auth_file=None):
        return self.lab.env(super().environ(auth_file))


class RealVMTestCase(SeedCloudTestCase):
    """A daemon on the shipped oned.conf with the lab's hosts; helpers to watch
    guests. ``tm``: the hosts' transfer driver. ``shared_storage``: whether
    DATASTORE_LOCATION is on the lab's shared folder (tm_shared, tm_qcow2) or
    on each host's own disk (tm_ssh)."""

    tm = "tm_ssh"
    shared_storage = False
    extra_settings = ()

    def setUp(self):
        self.lab = load_lab()
        mark_ran(self)
        tag = f"t-{uuid.uuid4().hex[:8]}"
        base = self.lab.shared_dir if self.shared_storage else self.lab.local_dir
        self.ds = os.path.join(base, tag, "datastores")
        self.scratch = os.path.join(self.lab.shared_dir, tag)
        os.makedirs(self.scratch)
        self.vids = []
        settings = list(FAST) + [
            f"DATASTORE_LOCATION={self.ds}",
            f"SCRIPTS_REMOTE_DIR={self.scratch}/remotes",
            "HOST_MONITORING_INTERVAL=4",
            "VM_POLLING_INTERVAL=4",
        ] + list(self.extra_settings)
        self.one = LabDaemon(self.lab, self.mktemp(), settings)
        self.addCleanup(self._clean_lab, os.path.join(base, tag))
        self.addCleanup(self.one.stop)
        self.one.start(timeout=60)

    def _clean_lab(self, top):
        """Destroy what a failed test left on the hosts and remove its files."""
        import shutil
        for vid in self.vids:
            for host in self.lab.hosts:
                self.lab.destroy_domain(host, f"one-{vid}")
        for host in self.lab.hosts:
            shutil.rmtree(self.lab.host_path(host, top), ignore_errors=True)
        shutil.rmtree(top, ignore_errors=True)
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- set-up as the administrator does it ---------------------------------------------

    def add_hosts(self, vmm="vmm_qemu"):
        """``onehost create nt-hN im_kvm <vmm> <tm>`` (seed 000's 1.4 form) for both
        lab hosts; wait until both are MONITORED with the capacity the probes read."""
        for host in self.lab.hosts:
            self.assertEqual(self.ok("onehost", "create", host, "im_kvm", vmm, self.tm), "")
        total_cpu = str(100 * os.cpu_count())

        def monitored():
            rows = self.hosts()
            return len(rows) == 2 and all(
                r["STAT"] == "on" and r["TCPU"] == total_cpu and int(r["TMEM"]) > 0
                for r in rows.values()) and rows
        rows = self.wait_for(monitored, "both lab hosts monitored with their real capacity",
                             timeout=OP_TIMEOUT)
        with open("/proc/meminfo") as f:
            mem_total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
        for host, row in rows.items():
            # the namespaced hosts share this machine's memory: the probes see it all
            self.assertEqual(int(row["TMEM"]), mem_total, host)
            info = parse_show(self.ok("onehost", "show", host))
            self.assertEqual(info["STATE"], "MONITORED")
            out = self.ok("onehost", "show", host)
            self.assertIn("HYPERVISOR=kvm", out)
            self.assertIn(f"HOSTNAME={host}", out)

    def register_image(self):
        """``oneimage register`` of the guest's disk (qcow2); wait until READY."""
        self.one.write_file("guest.img.one", (
            'NAME = "guest-disk"\n'
            f'PATH = "{self.lab.guest.disk}"\n'
            'TYPE = OS\nDEV_PREFIX = "vd"\nBUS = "virtio"\nDRIVER = "qcow2"\n'))
        self.ok("oneimage", "register", "guest.img.one")
        self.wait_for(lambda: any(r["STAT"] == "rdy" for r in self.table("oneimage")),
                      "the guest image READY", timeout=OP_TIMEOUT)

    def create_network(self, ips=("203.0.113.10", "203.0.113.11", "203.0.113.12")):
        """A FIXED network on the hosts' bridge onebr0."""
        leases = "\n".join(f'LEASES = [ IP = "{ip}" ]' for ip in ips)
        self.one.write_file("lab.net", f'NAME = "lab-net"\nTYPE = FIXED\n'
                                       f'BRIDGE = "{self.lab.bridge}"\n{leases}\n')
        self.ok("onevnet", "create", "lab.net")

    def console_path(self, name):
        return os.path.join(self.scratch, f"{name}.console")

    def guest_template(self, name, token, kernel=None, extra=""):
        """A VM template with the lab guest's kernel/initrd, the registered disk,
        a NIC on lab-net, CONTEXT and a RAW serial console to a file.

        No CPU: the scheduler places a VM only where the host's monitored
        FREECPU holds its CPU (3.4 ``HostXML::get_capacity``), and the lab's
        hosts share this machine's cores, so on a busy machine (another
        process keeping both cores busy) a VM asking CPU = 0.5 stays PENDING
        with "no capacity"; these tests are about the life cycle, not
        placement."""
        console = self.console_path(name)
        return (
            f'NAME = "{name}"\nVCPU = 1\nMEMORY = 128\n'
            f'OS = [ KERNEL = "{kernel or self.lab.guest.kernel}", '
            f'INITRD = "{self.lab.guest.initrd}", KERNEL_CMD = "console=ttyS0 quiet" ]\n'
            'DISK = [ IMAGE = "guest-disk" ]\n'
            'NIC = [ NETWORK = "lab-net", MODEL = "virtio" ]\n'
            f'CONTEXT = [ HOSTNAME = "$NAME", IP = "$NIC[IP]", TOKEN = "{token}" ]\n'
            'RAW = [ TYPE = "kvm", DATA = "<devices><serial type=\'file\'>'
            f'<source path=\'{console}\' append=\'on\'/><target port=\'0\'/></serial>'
            '</devices>" ]\n' + extra)

    def create_guest(self, name, **kwargs):
        token = f"ctx-{uuid.uuid4().hex[:10]}"
        vid = self.create_vm(self.guest_template(name, token, **kwargs),
                             filename=f"{name}.one")
        self.vids.append(vid)
        return vid, token

    # -- watching ----------------------------------------------------------------------

    def row(self, vid):
        return self.vms().get(vid)

    def wait_stat(self, vid, stat, timeout=OP_TIMEOUT):
        """Wait until ``onevm list`` shows ``stat``; fail at once on ``fail``."""
        def check():
            r = self.row(vid)
            if r is not None and r["STAT"] == "fail" and stat != "fail":
                self.fail(f"VM {vid} FAILED waiting for {stat}:\n{self.vm_log(vid)}")
            return r if r is not None and r["STAT"] == stat else None
        return self.wait_for(check, lambda: f"VM {vid} in {stat!r}; onevm list:\n"
                             + self.ok("onevm", "list") + "\nvm.log:\n" + self.vm_log(vid),
                             timeout=timeout)

    def wait_moved(self, vid, host, what):
        """Wait until ``onevm list`` shows VM ``vid`` RUNNING on ``host``."""
        self.wait_for(lambda: (self.row(vid) or {}).get("HOSTNAME") == host
                      and self.row(vid)["STAT"] == "runn", what, timeout=OP_TIMEOUT)

    def vm_log(self, vid):
        try:
            with open(os.path.join(self.one.var, str(vid), "vm.log")) as f:
                return f.read()
        except OSError:
            return ""

    def alive(self, console):
        """The guest ticks on: two ticks after the last one seen now."""
        seen = ticks(console)
        last = seen[-1] if seen else 0
        text = read_console(console)
        wait_console(console, f"NEBTWIST-TICK {last + 2}",
                     count=text.count(f"NEBTWIST-TICK {last + 2}") + 1, timeout=BOOT_TIMEOUT)

    def boots(self, console):
        return read_console(console).count("NEBTWIST-GUEST-BOOTED")

    def vm_dir(self, vid):
        return f"{self.ds}/0/{vid}"

    def where(self, vid):
        """Hosts where domain one-<vid> is defined or running."""
        return [h for h in self.lab.hosts if f"one-{vid}" in self.lab.domains(h)]

    def other(self, host):
        return next(h for h in self.lab.hosts if h != host)

    def ping(self, host, ip):
        def answers():
            r = self.lab.netns_exec(host, ["ping", "-c", "1", "-W", "2", ip], timeout=30)
            return r.returncode == 0
        self.wait_for(answers, f"{ip} answers ping from {host}", timeout=OP_TIMEOUT)

    def assert_gone(self, vid):
        """No domain and no files of VM ``vid`` are left on any host."""
        for host in self.lab.hosts:
            self.assertNotIn(f"one-{vid}", self.lab.domains(host), host)
            if not self.shared_storage:
                self.assertEqual(self.lab.files_under(host, self.vm_dir(vid)), [], host)
        if self.shared_storage:
            self.assertFalse(os.path.exists(self.vm_dir(vid)), self.vm_dir(vid))

    # -- the life of a guest -------------------------------------------------------------

    def life(self, reboot=True, check_storage=None):
        """Boot, context, suspend/resume, stop/resume, livemigrate, migrate,
        (reboot), shutdown: the guest checked alive after each step."""
        self.add_hosts()
        self.register_image()
        self.create_network()
        vid, token = self.create_guest("web")
        console = self.console_path("web")
        row = self.wait_stat(vid, "runn", timeout=OP_TIMEOUT)
        host = row["HOSTNAME"]
        self.assertEqual(self.where(vid), [host])
        wait_console(console, "NEBTWIST-CONTEXT-END", timeout=BOOT_TIMEOUT)
        wait_console(console, "NEBTWIST-NET eth0", timeout=OP_TIMEOUT)
        text = read_console(console)
        # the CONTEXT values the guest read from its CD-ROM, and its IP
        context = text.split("NEBTWIST-CONTEXT-BEGIN", 1)[1].split("NEBTWIST-CONTEXT-END")[0]
        self.assertIn('HOSTNAME="web"', context)
        self.assertIn('IP="203.0.113.10"', context)
        self.assertIn(f'TOKEN="{token}"', context)
        self.assertIn("NEBTWIST-DISK hello-from-vda", text)
        self.assertRegex(text, r"NEBTWIST-NET eth0 02:00:cb:00:71:0a 203\.0\.113\.10")
        self.ping(host, "203.0.113.10")
        files = self.lab.files_under(host, self.vm_dir(vid))
        self.assertIn("disk.0", files)
        self.assertIn("disk.1", files)  # the context CD-ROM
        if check_storage:
            check_storage(vid, host)
        self.alive(console)

        # suspend / resume: checkpoint on the host, same boot
        self.ok("onevm", "suspend", vid)
        self.wait_stat(vid, "susp")
        self.assertEqual(self.where(vid), [])
        self.assertIn("checkpoint", self.lab.files_under(host, self.vm_dir(vid)))
        frozen = ticks(console)[-1]
        self.ok("onevm", "resume", vid)
        self.wait_stat(vid, "runn")
        self.alive(console)
        self.assertGreater(ticks(console)[-1], frozen)
        self.assertEqual(self.boots(console), 1)

        # stop / resume: the checkpoint travels with the TM to the front-end and back
        self.ok("onevm", "stop", vid)
        self.wait_stat(vid, "stop")
        self.assertEqual(self.where(vid), [])
        if not self.shared_storage:
            self.assertEqual(self.lab.files_under(host, self.vm_dir(vid)), [])
        stopped = os.path.join(self.one.var, str(vid), "images")
        self.assertIn("checkpoint", os.listdir(stopped))
        self.ok("onevm", "resume", vid)
        row = self.wait_stat(vid, "runn", timeout=OP_TIMEOUT)
        host = row["HOSTNAME"]
        self.assertEqual(self.where(vid), [host])
        self.alive(console)
        self.assertEqual(self.boots(console), 1)

        # live migration: the guest keeps running, it is not rebooted
        target = self.other(host)
        before = ticks(console)[-1]
        self.ok("onevm", "livemigrate", vid, target)
        self.wait_moved(vid, target, "live migration done")
        # the drivers' own LOG lines reach the VM's log, as in 3.4
        self.assertRegex(self.vm_log(vid), rf"\[VMM\]\[I\]: .*migrated one-{vid} from "
                                           rf"{host} to {target} in [0-9.]+ s")
        self.assertRegex(self.vm_log(vid), r"\[TM\]\[I\]: (PREMIGRATE|CLONE)")
        self.assertEqual(self.where(vid), [target])
        self.alive(console)
        self.assertEqual(self.boots(console), 1)
        self.assertGreaterEqual(ticks(console)[-1], before + 2)
        if not self.shared_storage:
            self.assertEqual(self.lab.files_under(host, self.vm_dir(vid)), [])
            self.assertIn("disk.0", self.lab.files_under(target, self.vm_dir(vid)))
        self.ping(target, "203.0.113.10")
        host = target

        # cold migration back: save, move, restore
        target = self.other(host)
        self.ok("onevm", "migrate", vid, target)
        self.wait_moved(vid, target, "cold migration done")
        self.assertEqual(self.where(vid), [target])
        self.alive(console)
        self.assertEqual(self.boots(console), 1)
        host = target

        if reboot:
            self.ok("onevm", "reboot", vid)
            wait_console(console, "NEBTWIST-GUEST-BOOTED", count=2, timeout=BOOT_TIMEOUT)
            self.alive(console)
            self.assertEqual(self.row(vid)["STAT"], "runn")

        # ACPI shutdown to DONE; nothing left on the hosts
        self.ok("onevm", "shutdown", vid)
        self.wait_for(lambda: vid not in self.vms(), "VM shut down (DONE)",
                      timeout=OP_TIMEOUT)
        self.assertIn("NEBTWIST-ACPI-POWEROFF", read_console(console))
        self.assert_gone(vid)
        # deploy, resume after stop, live and cold migration: four placements
        history = self.ok("onevm", "history", vid)
        self.assertEqual(len(history.strip().splitlines()) - 1, 4, history)

        # cancel, on another VM: destroyed at once
        vid2, _ = self.create_guest("db")
        self.wait_stat(vid2, "runn", timeout=OP_TIMEOUT)
        self.ok("onevm", "cancel", vid2)
        self.wait_for(lambda: vid2 not in self.vms(), "VM cancelled (DONE)",
                      timeout=OP_TIMEOUT)
        self.assert_gone(vid2)


class SSHStorageLife(RealVMTestCase):
    """The whole life with tm_ssh: images copied to each host's own disk."""

    tm = "tm_ssh"

    def test_life(self):
        self.life(reboot=True)


class SharedStorageLife(RealVMTestCase):
    """The same life with tm_shared (1.4's tm_nfs): one shared DATASTORE_LOCATION."""

    tm = "tm_shared"
    shared_storage = True

    def test_life(self):
        self.life(reboot=False)


class Qcow2StorageLife(RealVMTestCase):
    """The same life with tm_qcow2: the disk is a copy-on-write overlay of the image."""

    tm = "tm_qcow2"
    shared_storage = True

    def test_life(self):
        import json
        import subprocess

        def overlay(vid, host):
            disk = self.lab.host_path(host, f"{self.vm_dir(vid)}/disk.0")
            info = json.loads(subprocess.run(
                ["qemu-img", "info", "--force-share", "--output=json", disk],
                capture_output=True, text=True, check=True).stdout)
            self.assertEqual(info["format"], "qcow2")
            self.assertTrue(info.get("backing-filename", "").startswith(f"{self.ds}/1/"),
                            info)
        self.life(reboot=False, check_storage=overlay)



def _children(pid):
    """Pids of the live children of ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Failures(RealVMTestCase):
    """What goes wrong on real hosts fails cleanly, and the daemon keeps serving:
    a host whose libvirtd is stopped, a template whose kernel is missing, the
    VMM driver killed in the middle of a deploy."""

    tm = "tm_shared"
    shared_storage = True
    # one libvirt driver process, so the test knows which one to kill
    extra_settings = ('VM_MAD=[name="vmm_qemu", executable="kvm", '
                      'default="vmm_kvm/vmm_kvm.conf", type="qemu"]',)

    def setUp(self):
        super().setUp()
        self.add_hosts()
        self.register_image()
        self.create_network()

    def vm_log_has(self, vid, text):
        return self.wait_for(lambda: text in self.vm_log(vid),
                             lambda: f"{text!r} in VM {vid}'s log:\n{self.vm_log(vid)}")

    def test_host_without_libvirtd(self):
        host = self.lab.hosts[1]
        pid_file = self.lab.host(host)["pid_files"]["libvirtd"]
        with open(pid_file) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGTERM)
        self.addCleanup(self._start_libvirtd, host, pid_file)
        # the probes say why, and the host goes to ERROR
        self.wait_for(lambda: self.hosts()[host]["STAT"] == "err", f"{host} in ERROR",
                      timeout=OP_TIMEOUT)
        show = self.ok("onehost", "show", host)
        self.assertIn("STATE                 : ERROR", show)
        self.assertIn("libvirtd does not answer at qemu:///system", show)
        # the scheduler leaves it alone; deployed there by hand, the VM FAILS
        # with libvirt's message
        vid, _ = self.create_guest("lost", extra=f'REQUIREMENTS = "NAME = \\"{host}\\""\n')
        self.wait_stat(vid, "pend")
        self.ok("onevm", "deploy", vid, host)
        self.wait_stat(vid, "fail", timeout=OP_TIMEOUT)
        log = self.vm_log_has(vid, f"cannot connect to qemu+ssh://{host}/system")
        self.assertIn("libvirt-sock", self.vm_log(vid), log)
        self.assertEqual(self.vms()[vid]["STAT"], "fail")  # the daemon serves on
        self.ok("onevm", "delete", vid)
        self.wait_for(lambda: vid not in self.vms(), "the failed VM deleted")
        # back when libvirtd is; nothing of the VM was left there
        self._start_libvirtd(host, pid_file)
        self.wait_for(lambda: self.hosts()[host]["STAT"] == "on", f"{host} monitored again",
                      timeout=OP_TIMEOUT)
        self.assertEqual(self.where(vid), [])

    def _start_libvirtd(self, host, pid_file):
        """Start the host's libvirtd again (as lab-up.sh did), inside the host."""
        r = self.lab.ssh(host, f"test -S /run/libvirt/libvirt-sock && virsh -c qemu:///system "
                               f"version >/dev/null 2>&1 || libvirtd -d -p {pid_file}")
        self.assertEqual(r.returncode, 0, r.stderr)

        def answers():
            return self.lab.ssh(host, "virsh -c qemu:///system hostname").returncode == 0
        self.wait_for(answers, f"libvirtd on {host} answers", timeout=OP_TIMEOUT)

    def test_missing_kernel(self):
        vid, _ = self.create_guest("nokernel", kernel="/nonexistent/vmlinuz-none")
        self.wait_stat(vid, "fail", timeout=OP_TIMEOUT)
        self.vm_log_has(vid, "/nonexistent/vmlinuz-none")
        self.assertIn("Error deploying VM", self.vm_log(vid))
        self.assertEqual(self.where(vid), [])
        self.assertEqual(parse_show(self.ok("onevm", "show", vid))["STATE"], "FAILED")
        # a FAILED VM keeps its files until deleted; then nothing is left
        self.assertIn("disk.0", os.listdir(self.vm_dir(vid)))
        self.ok("onevm", "delete", vid)
        self.wait_for(lambda: vid not in self.vms(), "the failed VM deleted")
        self.wait_for(lambda: not os.path.exists(self.vm_dir(vid)), "its files deleted")
        self.assert_gone(vid)

    def test_driver_killed_mid_deploy(self):
        daemon = self.one.process.pid

        def kvm_driver():
            pids = [p for p in _children(daemon) if "drivers/vmm/kvm" in _cmdline(p)]
            return pids[0] if len(pids) == 1 else None
        first = self.wait_for(kvm_driver, "one kvm driver process")
        # frozen before the deploy reaches it, killed with the deploy in flight
        os.kill(first, signal.SIGSTOP)
        try:
            vid, _ = self.create_guest("victim")
            self.wait_stat(vid, "boot", timeout=OP_TIMEOUT)
            self.assertIn("Deploying on", self.vm_log(vid))
        finally:
            os.kill(first, signal.SIGKILL)
        # the VM is settled (FAILED, the reason in its log), the driver restarted
        self.wait_stat(vid, "fail", timeout=OP_TIMEOUT)
        self.vm_log_has(vid, "Error deploying VM")
        second = self.wait_for(lambda: (p := kvm_driver()) not in (None, first) and p,
                               "the kvm driver restarted", timeout=OP_TIMEOUT)
        self.assertNotEqual(first, second)
        self.assertEqual(self.where(vid), [])
        self.ok("onevm", "delete", vid)
        # the daemon kept serving, and the new driver process works
        vid2, _ = self.create_guest("after")
        row = self.wait_stat(vid2, "runn", timeout=OP_TIMEOUT)
        self.assertEqual(self.where(vid2), [row["HOSTNAME"]])
        self.ok("onevm", "cancel", vid2)
        self.wait_for(lambda: vid2 not in self.vms(), "cancelled")
        self.assert_gone(vid2)


class SeedOnedConf(RealVMTestCase):
    """Seed 000's driver entries (OpenNebula 1.4/3.4 executables and arguments),
    given as written, start nebtwist's drivers and monitor the lab's hosts."""

    tm = "tm_nfs"
    shared_storage = True
    extra_settings = (
        'IM_MAD=[name="im_kvm", executable="one_im_ssh", arguments="im_kvm/im_kvm.conf"]',
        'VM_MAD=[name="vmm_kvm", executable="one_vmm_kvm", default="vmm_kvm/vmm_kvm.conf", '
        'type="kvm"]',
        'VM_MAD=[name="vmm_xen", executable="one_vmm_xen", default="vmm_xen/vmm_xen.conf", '
        'type="xen"]',
        'TM_MAD=[name="tm_nfs", executable="one_tm", arguments="tm_nfs/tm_nfs.conf"]',
        'TM_MAD=[name="tm_ssh", executable="one_tm", arguments="tm_ssh/tm_ssh.conf"]',
        'TM_MAD=[name="tm_dummy", executable="one_tm", arguments="tm_dummy/tm_dummy.conf"]',
    )

    def test_seed_drivers(self):
        daemon = self.one.process.pid
        drivers = sorted(_cmdline(p).split()[1].split("/drivers/", 1)[1] + " "
                         + " ".join(_cmdline(p).split()[2:])
                         for p in _children(daemon) if "/drivers/" in _cmdline(p))
        self.assertEqual(drivers, [
            "hm/exec -t 60", "im/ssh im_kvm/im_kvm.conf", "tm/exec tm_dummy/tm_dummy.conf",
            "tm/exec tm_nfs/tm_nfs.conf", "tm/exec tm_ssh/tm_ssh.conf", "vmm/kvm ", "vmm/kvm ",
            # the shipped VN_MADs (the seed's 1.4 oned.conf names none)
            "vnm/exec -n", "vnm/exec -t 15 -e VNM_OVS_DATAPATH=netdev ovswitch",
            "vnm/exec -t 15 802.1Q", "vnm/exec -t 15 ebtables", "vnm/exec -t 15 fw",
        ])
        # seed 000: onehost create host01 im_xen vmm_xen tm_nfs, here with KVM probes
        self.add_hosts(vmm="vmm_kvm")
        for host in self.lab.hosts:
            out = self.ok("onehost", "show", host)
            self.assertIn("VM_MAD                : vmm_kvm", out)
            self.assertIn("TM_MAD                : tm_nfs", out)


class CrashRecovery(RealVMTestCase):
    """``kill -9`` of the daemon with a real guest RUNNING (issue 9, section 1): after
    the restart the VM is still RUNNING and its guest kept running on its host (not
    rebooted); killed again, with the domain destroyed while the daemon is down, the
    restart finds it gone. One guest serves both cases (TCG boots are slow)."""

    tm = "tm_shared"
    shared_storage = True
    # one libvirt driver process, so the test knows which one to freeze
    extra_settings = Failures.extra_settings

    def setUp(self):
        super().setUp()
        self.add_hosts()
        self.register_image()
        self.create_network()

    def vm_xml(self, vid):
        from lxml import etree
        import xmlrpc.client
        ok, body, *_ = xmlrpc.client.ServerProxy(self.one.endpoint).one.vm.info(
            self.one.session, vid)
        self.assertTrue(ok, body)
        return etree.fromstring(body.encode())

    def polled_since(self, vid, since):
        """Wait until the VMM polled VM ``vid`` after epoch second ``since``."""
        self.wait_for(lambda: int(self.vm_xml(vid).findtext("LAST_POLL") or 0) > since,
                      f"VM {vid} polled after the restart", timeout=OP_TIMEOUT)

    def kill_and_restart(self, between=None):
        from tests.acceptance.crashchurn import kill9
        kill9(self.one)
        if between is not None:
            between()
        t0 = time.time()
        self.one.start(timeout=OP_TIMEOUT)
        return int(t0)

    def test_running_guest_survives_kill9_and_vanished_domain_found(self):
        vid, _ = self.create_guest("survivor")
        console = self.console_path("survivor")
        host = self.wait_stat(vid, "runn", timeout=OP_TIMEOUT)["HOSTNAME"]
        wait_console(console, "NEBTWIST-GUEST-BOOTED", timeout=BOOT_TIMEOUT)
        self.alive(console)

        # 1. kill -9 with the VM RUNNING: after the restart it is RUNNING on the same
        # host, the domain kept running (same boot, ticking on), and a poll says so
        restarted = self.kill_and_restart()
        self.assertEqual(self.row(vid)["STAT"], "runn", self.vm_log(vid))
        self.assertEqual(self.row(vid)["HOSTNAME"], host)
        self.polled_since(vid, restarted)
        self.assertEqual(self.row(vid)["STAT"], "runn", self.vm_log(vid))
        self.assertEqual(self.where(vid), [host])
        self.alive(console)
        self.assertEqual(self.boots(console), 1)

        # 2. kill -9, the domain destroyed while the daemon is down: found gone
        restarted = self.kill_and_restart(
            between=lambda: self.lab.destroy_domain(host, f"one-{vid}"))
        self.assertEqual(self.where(vid), [])
        row = self.wait_for(lambda: (r := self.row(vid)) and r["STAT"] != "runn" and r,
                            f"VM {vid} found gone after the restart", timeout=OP_TIMEOUT)
        self.assertEqual(row["STAT"], "unkn", self.vm_log(vid))
        info = parse_show(self.ok("onevm", "show", vid))
        self.assertEqual(info["LCM_STATE"], "UNKNOWN")
        self.assertEqual(self.boots(console), 1)  # nothing booted it again
        # an UNKNOWN VM is not a dead end: delete works, nothing is left
        self.ok("onevm", "delete", vid)
        self.wait_for(lambda: vid not in self.vms(), "the vanished VM deleted",
                      timeout=OP_TIMEOUT)
        self.assert_gone(vid)

    def test_shutdown_cut_by_kill9_is_done_after_restart(self):
        """A VM killed in SHUTDOWN (the request never reached libvirt: the driver was
        frozen) is polled at start-up; its domain runs, so the shutdown is issued again
        (core/recovery.py: SHUTDOWN, poll a -> retry) and the VM ends DONE, the guest
        powered off by ACPI, nothing left on the hosts."""
        vid, _ = self.create_guest("halfway")
        console = self.console_path("halfway")
        host = self.wait_stat(vid, "runn", timeout=OP_TIMEOUT)["HOSTNAME"]
        wait_console(console, "NEBTWIST-GUEST-BOOTED", timeout=BOOT_TIMEOUT)
        daemon = self.one.process.pid

        def kvm_driver():
            pids = [p for p in _children(daemon) if "drivers/vmm/kvm" in _cmdline(p)]
            return pids[0] if len(pids) == 1 else None
        driver = self.wait_for(kvm_driver, "one kvm driver process")
        os.kill(driver, signal.SIGSTOP)
        try:
            self.ok("onevm", "shutdown", vid)
            self.wait_stat(vid, "shut")
        finally:
            os.kill(driver, signal.SIGKILL)
        self.kill_and_restart()
        self.assertEqual(self.where(vid), [host])  # the guest ran on meanwhile
        self.wait_for(lambda: vid not in self.vms(), "the VM shut down (DONE) after the "
                      "restart", timeout=OP_TIMEOUT)
        self.assertIn("NEBTWIST-ACPI-POWEROFF", read_console(console))
        self.assertIn("Recovery after restart", self.vm_log(vid))
        self.assertEqual(parse_show(self.ok("onevm", "show", vid))["STATE"], "DONE")
        self.assert_gone(vid)
