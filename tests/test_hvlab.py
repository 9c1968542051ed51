"""The real-hypervisor lab itself (tests/hvlab.py, tests/hv/*.sh): both hosts answer
libvirt over qemu+ssh, are distinct hosts, share ``$NEBTWIST_LAB/shared`` but not
``$NEBTWIST_LAB/local``, and the test guest boots on one of them.

Skips, with the reason, without a lab (start one as root: ``tests/hv/lab-up.sh``).
One guest boot in the whole module (a TCG boot takes 5-35 s).
"""

import os
import shutil
import subprocess
import tempfile
import time
import uuid

from lxml import etree
from twisted.trial import unittest

from tests.hvlab import (
    ConsoleTimeout, GuestFiles, Lab, load_lab, mark_ran, read_console, ticks, wait_console)

#: lxml parser for libvirt's replies: no entities, no network, no huge trees.
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def domain_xml(name, guest, disk, console, bridge=None, mac=None):
    """libvirt domain XML (str) for the lab guest, in the shape of OpenNebula 3.4's
    ``src/vmm/LibVirtDriverKVM.cc`` deployment file: TCG (``type='qemu'``), direct kernel
    boot, ``disk`` (qcow2) as virtio vda, serial console to the file ``console``, an
    optional bridged virtio NIC. No ``panic=-1``: a guest that panics stops, it does not
    reboot-loop."""
    E = etree.Element
    dom = E("domain", type="qemu")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "memory", unit="MiB").text = "128"
    etree.SubElement(dom, "vcpu").text = "1"
    os_ = etree.SubElement(dom, "os")
    etree.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    etree.SubElement(os_, "kernel").text = guest.kernel
    etree.SubElement(os_, "initrd").text = guest.initrd
    etree.SubElement(os_, "cmdline").text = "console=ttyS0 quiet"
    etree.SubElement(etree.SubElement(dom, "features"), "acpi")
    for event, action in (("poweroff", "destroy"), ("reboot", "restart"), ("crash", "destroy")):
        etree.SubElement(dom, "on_" + event).text = action
    dev = etree.SubElement(dom, "devices")
    d = etree.SubElement(dev, "disk", type="file", device="disk")
    etree.SubElement(d, "driver", name="qemu", type="qcow2")
    etree.SubElement(d, "source", file=disk)
    etree.SubElement(d, "target", dev="vda", bus="virtio")
    if bridge:
        nic = etree.SubElement(dev, "interface", type="bridge")
        etree.SubElement(nic, "source", bridge=bridge)
        etree.SubElement(nic, "mac", address=mac)
        etree.SubElement(nic, "model", type="virtio")
    s = etree.SubElement(dev, "serial", type="file")
    etree.SubElement(s, "source", path=console, append="on")
    etree.SubElement(s, "target", port="0")
    return etree.tostring(dom, encoding="unicode")


class HelperTests(unittest.TestCase):
    """The parts of tests/hvlab.py that need no lab."""

    def lab(self, path="/lab"):
        return Lab({
            "lab": path,
            "hosts": [{"name": "nt-h1", "ip": "198.51.100.1", "netns": "nt-h1",
                       "dir": f"{path}/hosts/nt-h1", "local": f"{path}/hosts/nt-h1/local",
                       "pid_files": {}}],
            "ssh": {"bin_dir": f"{path}/bin", "config": f"{path}/ssh/config"},
            "guest": {"kernel": "k", "initrd": "i", "disk": "d"},
            "bridge": {"name": "onebr0", "ip": "203.0.113.254"},
            "frontend": {"ip": "198.51.100.254"},
            "local_dir": f"{path}/local", "shared_dir": f"{path}/shared"})

    def test_paths_and_env(self):
        lab = self.lab()
        self.assertEqual(lab.hosts, ["nt-h1"])
        self.assertEqual(lab.guest, GuestFiles("k", "i", "d"))
        self.assertEqual(lab.uri("nt-h1"), "qemu+ssh://nt-h1/system")
        self.assertEqual(lab.host_path("nt-h1", "/lab/local/0/5/disk.0"),
                         "/lab/hosts/nt-h1/local/0/5/disk.0")
        self.assertEqual(lab.host_path("nt-h1", "/var/lib/libvirt/qemu/save/x"),
                         "/lab/hosts/nt-h1/lib/qemu/save/x")
        self.assertEqual(lab.host_path("nt-h1", "/lab/shared/a"), "/lab/shared/a")
        self.assertEqual(lab.host_path("nt-h1", "/lab/localx"), "/lab/localx")
        self.assertRaises(ValueError, lab.host_path, "nt-h1", "local/a")
        self.assertRaises(KeyError, lab.ip, "nt-h9")
        env = lab.env({"PATH": "/usr/bin:/lab/bin"})
        self.assertEqual(env["PATH"], "/lab/bin:/usr/bin")
        self.assertEqual(env["NEBTWIST_LAB"], "/lab")

    def test_files_under(self):
        top = os.path.abspath(self.mktemp())
        lab = self.lab(top)
        d = os.path.join(top, "hosts", "nt-h1", "local", "0", "7")
        os.makedirs(os.path.join(d, "sub"))
        for p in ("disk.0", "sub/x"):
            open(os.path.join(d, p), "w").close()
        os.symlink("/nowhere", os.path.join(d, "disk.1"))
        self.assertEqual(lab.files_under("nt-h1", f"{top}/local/0/7"),
                         ["disk.0", "disk.1", "sub/x"])
        self.assertEqual(lab.files_under("nt-h1", f"{top}/local/0/8"), [])

    def test_console_helpers(self):
        path = self.mktemp()
        self.assertEqual(read_console(path), "")
        with open(path, "wb") as f:
            f.write(b"NEBTWIST-GUEST-BOOTED 3.1\nNEBTWIST-TICK 1\n\xffNEBTWIST-TICK 2\r\n"
                    b"NEBTWIST-TICK 1\n")
        self.assertEqual(ticks(path), [1, 1])   # the line with a stray byte is not a tick
        self.assertGreaterEqual(wait_console(path, "NEBTWIST-TICK", count=3), 0)
        e = self.assertRaises(ConsoleTimeout, wait_console, path, "NEBTWIST-DISK",
                              timeout=0.2, poll=0.05)
        self.assertIn("NEBTWIST-GUEST-BOOTED 3.1", str(e))

    def test_no_lab_skips(self):
        old = os.environ.get("NEBTWIST_LAB")
        os.environ["NEBTWIST_LAB"] = os.path.abspath(self.mktemp())
        try:
            e = self.assertRaises(unittest.SkipTest, load_lab)
        finally:
            if old is None:
                del os.environ["NEBTWIST_LAB"]
            else:
                os.environ["NEBTWIST_LAB"] = old
        self.assertIn("lab.json is missing", str(e))


class LabTests(unittest.TestCase):
    """The running lab (real hypervisors)."""

    def setUp(self):
        self.lab = load_lab()
        mark_ran(self)

    def test_hosts_answer_libvirt(self):
        """Both hosts answer libvirt over qemu+ssh, with their own hostname and host UUID,
        through the connection the tests use and through the PATH wrappers the drivers
        use (virsh)."""
        lab = self.lab
        self.assertEqual(lab.hosts, ["nt-h1", "nt-h2"])
        uuids = {}
        for h in lab.hosts:
            conn = lab.libvirt_open(h)
            try:
                self.assertEqual(conn.getHostname(), h)
                caps = etree.fromstring(conn.getCapabilities().encode(), PARSER)
                uuids[h] = caps.findtext("host/uuid")
                self.assertIsNotNone(caps.find("guest/arch/domain[@type='qemu']"))
            finally:
                conn.close()
            self.assertEqual(uuids[h], lab.host(h)["host_uuid"])
            self.assertIsInstance(lab.domains(h), list)
        self.assertEqual(len(set(uuids.values())), 2, uuids)
        r = subprocess.run(["virsh", "-c", lab.uri("nt-h2"), "hostname"], env=lab.env(),
                           capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "nt-h2"), r.stderr)
        # host to host, as a peer-to-peer migration or an ssh TM between hosts does it
        r = lab.ssh("nt-h1", "ssh nt-h2 hostname")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "nt-h2"), r.stderr)

    def test_shared_and_local(self):
        """$NEBTWIST_LAB/shared is one folder for all; $NEBTWIST_LAB/local is each host's
        own (and the front-end's own)."""
        lab = self.lab
        name = f"test_hvlab-{uuid.uuid4().hex[:8]}"
        shared = os.path.join(lab.shared_dir, name)
        local = os.path.join(lab.local_dir, name)
        self.addCleanup(lambda: [os.unlink(p) for p in [shared] + [
            lab.host_path(h, local) for h in lab.hosts] if os.path.exists(p)])
        r = lab.ssh("nt-h1", ["sh", "-c", 'echo "$1" > "$2" && echo "$3" > "$4"', "-",
                              "from-h1", shared, "h1-only", local])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(shared) as f:
            self.assertEqual(f.read(), "from-h1\n")
        self.assertEqual(lab.ssh("nt-h2", ["cat", shared]).stdout, "from-h1\n")
        # local: h1's file is on the root fs under hosts/nt-h1/local, not anywhere else
        self.assertFalse(os.path.exists(local))
        with open(lab.host_path("nt-h1", local)) as f:
            self.assertEqual(f.read(), "h1-only\n")
        self.assertIn(name, lab.files_under("nt-h1", lab.local_dir))
        self.assertNotIn(name, lab.files_under("nt-h2", lab.local_dir))
        r = lab.ssh("nt-h2", ["test", "-e", local])
        self.assertEqual(r.returncode, 1, r.stderr)
        r = lab.ssh("nt-h2", ["sh", "-c", 'echo h2-only > "$1"', "-", local])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(lab.ssh("nt-h1", ["cat", local]).stdout, "h1-only\n")
        with open(lab.host_path("nt-h2", local)) as f:
            self.assertEqual(f.read(), "h2-only\n")

    def test_guest_boots(self):
        """The test guest boots on nt-h1 (libvirt-python createXML, TCG): console markers
        BOOTED, DISK (its qcow2 overlay of the lab's disk), NET (IP from the
        OpenNebula-style MAC, reachable on onebr0 from the host) and advancing TICKs."""
        import libvirt
        lab = self.lab
        host = "nt-h1"
        run = tempfile.mkdtemp(prefix="test_hvlab-", dir=lab.shared_dir)
        self.addCleanup(shutil.rmtree, run, True)
        name = f"nt-test-hvlab-{os.getpid()}"
        disk = os.path.join(run, "disk.qcow2")
        console = os.path.join(run, "console")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        lab.guest.disk, disk], check=True, timeout=120)
        mac, ip = "02:00:cb:00:71:0b", "203.0.113.11"
        xml = domain_xml(name, lab.guest, disk, console, lab.bridge, mac)
        lab.destroy_domain(host, name)
        conn = lab.libvirt_open(host)
        self.addCleanup(conn.close)
        t0 = time.monotonic()
        dom = conn.createXML(xml, 0)
        self.addCleanup(lab.destroy_domain, host, name)
        self.assertIn(name, lab.domains(host))
        self.assertEqual(dom.state()[0], libvirt.VIR_DOMAIN_RUNNING)
        wait_console(console, "NEBTWIST-GUEST-BOOTED")
        wait_console(console, "NEBTWIST-TICK 2")
        took = time.monotonic() - t0
        text = read_console(console)
        self.assertIn("NEBTWIST-DISK hello-from-vda", text)
        self.assertIn("NEBTWIST-CONTEXT-NONE", text)
        self.assertIn(f"NEBTWIST-NET eth0 {mac} {ip}", text)
        self.assertEqual(text.count("NEBTWIST-GUEST-BOOTED"), 1)
        self.assertEqual(ticks(console)[:2], [1, 2])
        ping = shutil.which("ping")
        argv = [ping] if ping else ["busybox", "ping"]
        r = lab.netns_exec(host, argv + ["-c", "1", "-W", "5", ip])
        if r.returncode:
            r = lab.netns_exec(host, argv + ["-c", "3", "-W", "5", ip])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        print(f"\n  guest on {host}: NEBTWIST-TICK 2 {took:.1f} s after createXML")
