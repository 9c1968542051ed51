"""The deployment file writer (nebtwist.core.deployment): libvirt domain XML
per element group, the DEFAULT file, RAW merging and errors, every document
checked with libvirt's own ``virt-xml-validate``; the VirtualMachineManager
writing it on a core with fake drivers and in a whole daemon; and a
generated document defined (not started) in a real libvirt."""

import os
import shutil
import subprocess
import uuid

from lxml import etree
from twisted.trial import unittest

from nebtwist import paths
from nebtwist.core.deployment import (QEMU_NS, DeploymentError, build_domain, domain_xml,
                                      vm_domain_xml)
from nebtwist.core.objects import ACTIVE, BOOT, FAILED, RUNNING as LCM_RUNNING, History
from nebtwist.errors import DriverError
from nebtwist.template import Template
from nebtwist.testing import start_nebula

from tests.test_lcm import Core
from tests.test_xmlrpc_api import RUNNING, ok, wait_host_monitored, wait_vm

VALIDATE = shutil.which("virt-xml-validate") or (
    "/usr/bin/virt-xml-validate" if os.access("/usr/bin/virt-xml-validate", os.X_OK) else None)

VM_DIR = "/var/lib/one/datastores/0/7"


def shipped_defaults(name="vmm_kvm"):
    """The shipped DEFAULT file ``conf/<name>/<name>.conf`` as a Template."""
    with open(paths.shipped("conf", name, f"{name}.conf"), encoding="utf-8") as f:
        return Template.parse(f.read())


KVM_DEFAULTS = shipped_defaults("vmm_kvm")
XEN_DEFAULTS = shipped_defaults("vmm_xen")

#: A VM template like the seeds' (1.4 template reference + ttylinux), after
#: allocation: disks resolved, NIC leases and CONTEXT/TARGET filled.
SEED_LIKE = """
NAME     = "vm-example"
CPU      = 0.5
MEMORY   = 128
VCPU     = 2
OS = [ kernel = "/srv/cloud/one/ttylinux/vmlinuz", initrd = "/srv/cloud/one/ttylinux/initrd.gz",
       kernel_cmd = "console=ttyS0 ro", root = "sda1" ]
FEATURES = [ pae = "no", acpi = "yes" ]
DISK = [ source = "/srv/cloud/images/ttylinux/ttylinux.img", target = "sda", bus = "scsi",
         readonly = "no", clone = "yes", type = "DISK", driver = "qcow2" ]
DISK = [ type = "swap", size = "1024", target = "sdb" ]
DISK = [ type = "block", source = "/dev/vg0/data", target = "sdc", cache = "none" ]
DISK = [ type = "CDROM", source = "/srv/cloud/images/install.iso", target = "hdc",
         readonly = "yes" ]
NIC = [ network = "One-TD", ip = "10.0.0.5", bridge = "br0", target = "one-7-0",
        mac = "02:00:0a:00:00:05", model = "virtio", script = "/etc/qemu-ifup" ]
NIC = [ network = "public", mac = "02:00:cb:00:71:0a" ]
INPUT = [ type = "tablet", bus = "usb" ]
GRAPHICS = [ type = "vnc", listen = "loclahost", port = "5902", passwd = "s3cr3t",
             keymap = "es" ]
CONTEXT = [ hostname = "vm-example", files = "/srv/init.sh", target = "hdd" ]
RAW = [ type = "kvm", data = "<devices><serial type='pty'><target port='0'/></serial></devices>" ]
RAW = [ type = "xen", data = "<on_crash>preserve</on_crash>" ]
"""


def parse(text):
    return etree.fromstring(text.encode("utf-8"))


class Validating:
    """Builds documents and checks each with libvirt's virt-xml-validate."""

    validated = 0

    def validate(self, text):
        if VALIDATE is None:
            self.skipTest("virt-xml-validate is not installed (package libvirt-clients)")
        path = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        run = subprocess.run([VALIDATE, path, "domain"], capture_output=True, text=True,
                             timeout=120)
        self.assertEqual(run.returncode, 0, f"{run.stdout}{run.stderr}\n{text}")
        Validating.validated += 1

    def dom(self, template, hv="qemu", defaults=KVM_DEFAULTS, vid=7, prefix="hd",
            validate=True):
        """``template`` (text) -> the domain document, parsed; validated."""
        if isinstance(template, str):
            template = Template.parse(template)
        text = domain_xml(template, vid, VM_DIR, hv, defaults, prefix)
        if validate:
            self.validate(text)
        return parse(text)

    def error(self, template, attribute, hv="qemu", defaults=KVM_DEFAULTS):
        """The DeploymentError ``template`` raises; checks it names ``attribute``."""
        with self.assertRaises(DeploymentError) as cm:
            build_domain(Template.parse(template), 7, VM_DIR, hv, defaults)
        e = cm.exception
        self.assertIsInstance(e, DriverError)
        self.assertEqual(e.attribute, attribute)
        self.assertIn(attribute.split("/")[0], e.message)
        return e


MINIMAL = 'MEMORY = 64\n'


class CapacityTests(Validating, unittest.TestCase):
    """<domain type>, name, memory (KiB), vcpu, cputune shares."""

    def test_minimal(self):
        dom = self.dom(MINIMAL)
        self.assertEqual(dom.tag, "domain")
        self.assertEqual(dom.get("type"), "qemu")
        self.assertEqual(dom.nsmap.get("qemu"), QEMU_NS)
        self.assertEqual(dom.findtext("name"), "one-7")
        self.assertEqual(dom.find("memory").get("unit"), "KiB")
        self.assertEqual(dom.findtext("memory"), str(64 * 1024))
        self.assertEqual(dom.findtext("vcpu"), "1")
        self.assertIsNone(dom.find("cputune"), "no CPU, no shares")
        self.assertEqual(len(dom.findall("devices")), 1)

    def test_types(self):
        for hv in ("kvm", "KVM", "qemu"):
            self.assertEqual(self.dom(MINIMAL, hv=hv).get("type"), hv.lower())
        with self.assertRaises(ValueError):
            build_domain(Template.parse(MINIMAL), 7, VM_DIR, "xml")

    def test_cpu_vcpu(self):
        dom = self.dom("MEMORY = 64\nCPU = 0.5\nVCPU = 4\n")
        self.assertEqual(dom.findtext("cputune/shares"), "512")
        self.assertEqual(dom.findtext("vcpu"), "4")
        self.assertEqual(self.dom("MEMORY=64\nCPU=0.1").findtext("cputune/shares"), "103")
        self.assertEqual(self.dom("MEMORY=64\nCPU=2").findtext("cputune/shares"), "2048")

    def test_fractional_memory_and_defaults(self):
        self.assertEqual(self.dom("MEMORY = 0.5").findtext("memory"), "512")
        defaults = Template.parse('MEMORY = 256\nVCPU = 2\nOS = [ ARCH = "i686", BOOT = hd ]')
        dom = self.dom("CPU = 1", defaults=defaults)
        self.assertEqual(dom.findtext("memory"), str(256 * 1024))
        self.assertEqual(dom.findtext("vcpu"), "2")
        self.assertEqual(dom.find("os/type").get("arch"), "i686")

    def test_errors(self):
        e = self.error("MEMORY = lots", "MEMORY")
        self.assertIn("'lots'", e.message)
        self.error("MEMORY = -1", "MEMORY")
        self.error("MEMORY = nan", "MEMORY")
        self.error("CPU = 1", "MEMORY")
        self.error("MEMORY = 64\nCPU = x", "CPU")
        self.error("MEMORY = 64\nCPU = 0", "CPU")
        self.error("MEMORY = 64\nVCPU = 1.5", "VCPU")
        self.error("MEMORY = 64\nVCPU = 0", "VCPU")


class OsTests(Validating, unittest.TestCase):
    """OS: ARCH, BOOT, KERNEL/INITRD/cmdline, BOOTLOADER; defaults."""

    def test_defaults_file(self):
        dom = self.dom(MINIMAL)
        os_el = dom.find("os")
        self.assertEqual(os_el.findtext("type"), "hvm")
        self.assertEqual(os_el.find("type").attrib, {"arch": "x86_64"}, "no machine")
        self.assertEqual([b.get("dev") for b in os_el.findall("boot")], ["hd"])
        self.assertIsNone(os_el.find("kernel"))

    def test_kernel(self):
        dom = self.dom(MINIMAL + 'OS = [ KERNEL = /k/vmlinuz, INITRD = /k/initrd.img, '
                                 'ROOT = vda1, KERNEL_CMD = "console=ttyS0 ro" ]')
        os_el = dom.find("os")
        self.assertEqual([(c.tag, c.text) for c in os_el][1:],
                         [("kernel", "/k/vmlinuz"), ("initrd", "/k/initrd.img"),
                          ("cmdline", "root=/dev/vda1 console=ttyS0 ro")])
        self.assertIsNone(os_el.find("boot"), "no <boot> with a kernel")
        dom = self.dom(MINIMAL + "OS = [ KERNEL = /k, ROOT = sda ]")
        self.assertEqual(dom.findtext("os/cmdline"), "root=/dev/sda")
        dom = self.dom(MINIMAL + "OS = [ KERNEL = /k ]")
        self.assertIsNone(dom.find("os/cmdline"))
        self.assertIsNone(dom.find("os/initrd"))

    def test_boot_list_and_bootloader(self):
        dom = self.dom(MINIMAL + 'OS = [ BOOT = "CDROM, hd" ]')
        self.assertEqual([b.get("dev") for b in dom.findall("os/boot")], ["cdrom", "hd"])
        dom = self.dom(MINIMAL + 'OS = [ BOOTLOADER = "/usr/bin/pygrub", ARCH = i686 ]')
        self.assertEqual(dom.findtext("bootloader"), "/usr/bin/pygrub")
        self.assertIsNone(dom.find("os/bootloader"), "a child of <domain>, not of <os>")
        self.assertEqual(dom.find("os/type").get("arch"), "i686")

    def test_errors(self):
        self.error(MINIMAL, "OS/ARCH", defaults=None)
        self.error(MINIMAL + "OS = [ ARCH = x86_64 ]", "OS/BOOT", defaults=None)
        e = self.error(MINIMAL + "OS = [ BOOT = floppy ]", "OS/BOOT")
        self.assertIn("'floppy'", e.message)


class DiskTests(Validating, unittest.TestCase):
    """DISK i -> <VM_DIR>/disk.i; types, target, bus, driver, cache, readonly."""

    def test_disks(self):
        dom = self.dom(MINIMAL + """
            DISK = [ TARGET = hda, SOURCE = /img/a ]
            DISK = [ TARGET = vdb, BUS = VIRTIO, DRIVER = qcow2, CACHE = none, TYPE = fs ]
            DISK = [ TARGET = hdc, TYPE = cdrom, READONLY = YES ]
            DISK = [ TARGET = sdd, TYPE = BLOCK, SOURCE = /dev/vg/lv, READONLY = no ]
            """)
        disks = dom.findall("devices/disk")
        self.assertEqual(len(disks), 4)
        self.assertEqual([(d.get("type"), d.get("device")) for d in disks],
                         [("file", "disk"), ("file", "disk"), ("file", "cdrom"),
                          ("block", "disk")])
        self.assertEqual([d.find("source").get("file") for d in disks[:3]],
                         [f"{VM_DIR}/disk.{i}" for i in range(3)])
        self.assertEqual(disks[3].find("source").attrib, {"dev": f"{VM_DIR}/disk.3"},
                         "3.4: the TM links disk.i to the device")
        self.assertEqual([d.find("target").attrib for d in disks],
                         [{"dev": "hda"}, {"dev": "vdb", "bus": "virtio"}, {"dev": "hdc"},
                          {"dev": "sdd"}])
        self.assertEqual([d.find("driver").attrib for d in disks],
                         [{"name": "qemu", "type": "raw"},
                          {"name": "qemu", "type": "qcow2", "cache": "none"},
                          {"name": "qemu", "type": "raw"}, {"name": "qemu", "type": "raw"}])
        self.assertEqual([d.find("readonly") is not None for d in disks],
                         [False, False, True, False])

    def test_default_driver(self):
        defaults = Template.parse('OS = [ ARCH = x86_64, BOOT = hd ]\n'
                                  'DISK = [ DRIVER = qcow2, CACHE = writeback ]')
        dom = self.dom(MINIMAL + "DISK = [ TARGET = vda ]\nDISK = [ TARGET = vdb, DRIVER = raw ]",
                       defaults=defaults)
        self.assertEqual([d.find("driver").attrib for d in dom.findall("devices/disk")],
                         [{"name": "qemu", "type": "qcow2", "cache": "writeback"},
                          {"name": "qemu", "type": "raw", "cache": "writeback"}])
        dom = self.dom(MINIMAL + "DISK = [ TARGET = vda ]",
                       defaults=Template.parse("OS = [ ARCH = x86_64, BOOT = hd ]"))
        self.assertEqual(dom.find("devices/disk/driver").get("type"), "raw", "3.4's default")

    def test_errors(self):
        e = self.error(MINIMAL + "DISK = [ SOURCE = /a, TARGET = hda ]\nDISK = [ SOURCE = /b ]",
                       "DISK/TARGET")
        self.assertIn("DISK 1", e.message)
        self.error(MINIMAL + "DISK = [ TARGET = hda, READONLY = maybe ]", "DISK/READONLY")


class ContextTests(Validating, unittest.TestCase):
    """The context CD-ROM: disk.<number of DISKs>, target, readonly, raw."""

    def test_context(self):
        dom = self.dom(MINIMAL + "DISK = [ TARGET = hda ]\nDISK = [ TARGET = hdb ]\n"
                                 "CONTEXT = [ HOSTNAME = x, TARGET = hdd ]")
        ctx = dom.findall("devices/disk")[-1]
        self.assertEqual(ctx.attrib, {"type": "file", "device": "cdrom"})
        self.assertEqual(ctx.find("source").get("file"), f"{VM_DIR}/disk.2")
        self.assertEqual(ctx.find("target").attrib, {"dev": "hdd"})
        self.assertEqual(ctx.find("driver").attrib, {"name": "qemu", "type": "raw"})
        self.assertIsNotNone(ctx.find("readonly"))

    def test_default_target_and_none(self):
        dom = self.dom(MINIMAL + "CONTEXT = [ HOSTNAME = x ]", prefix="sd")
        disks = dom.findall("devices/disk")
        self.assertEqual(len(disks), 1)
        self.assertEqual(disks[0].find("source").get("file"), f"{VM_DIR}/disk.0")
        self.assertEqual(disks[0].find("target").get("dev"), "sdb")
        self.assertEqual(self.dom(MINIMAL + "DISK = [ TARGET = hda ]").findall("devices/disk")
                         [-1].get("device"), "disk", "no CONTEXT, no CD-ROM")


class NicTests(Validating, unittest.TestCase):
    """NIC -> <interface>: bridge/ethernet, mac, target, script, model, filterref."""

    def test_nics(self):
        dom = self.dom(MINIMAL + """
            NIC = [ BRIDGE = onebr0, MAC = 02:00:0A:0B:00:09, TARGET = one-7-0, MODEL = virtio,
                    SCRIPT = /etc/qemu-ifup, IP = 203.0.113.9 ]
            NIC = [ MAC = 02:00:cb:00:71:0a ]
            """)
        a, b = dom.findall("devices/interface")
        self.assertEqual(a.get("type"), "bridge")
        self.assertEqual([(c.tag, dict(c.attrib)) for c in a],
                         [("source", {"bridge": "onebr0"}),
                          ("mac", {"address": "02:00:0a:0b:00:09"}),
                          ("target", {"dev": "one-7-0"}), ("script", {"path": "/etc/qemu-ifup"}),
                          ("model", {"type": "virtio"})])
        self.assertEqual(b.get("type"), "ethernet")
        self.assertEqual([c.tag for c in b], ["mac"])

    def test_filter(self):
        defaults = Template.parse("OS = [ ARCH = x86_64, BOOT = hd ]\n"
                                  "NIC = [ FILTER = clean-traffic ]")
        dom = self.dom(MINIMAL + "NIC = [ BRIDGE = br0, MAC = 02:00:00:00:00:01, IP = 10.0.0.1 ]\n"
                                 "NIC = [ BRIDGE = br0, MAC = 02:00:00:00:00:02 ]\n"
                                 "NIC = [ BRIDGE = br0, MAC = 02:00:00:00:00:03, IP = 10.0.0.3,"
                                 " FILTER = no-spoofing ]", defaults=defaults)
        refs = [i.find("filterref") for i in dom.findall("devices/interface")]
        self.assertEqual(refs[0].get("filter"), "clean-traffic")
        self.assertEqual(refs[0].find("parameter").attrib, {"name": "IP", "value": "10.0.0.1"})
        self.assertIsNone(refs[1], "no IP, no filter")
        self.assertEqual(refs[2].get("filter"), "no-spoofing")
        self.assertIsNone(self.dom(MINIMAL + "NIC = [ MAC = 02:00:00:00:00:01, IP = 10.0.0.1 ]")
                          .find("devices/interface/filterref"), "no FILTER anywhere")

    def test_errors(self):
        e = self.error(MINIMAL + "NIC = [ BRIDGE = br0 ]", "NIC/MAC")
        self.assertIn("NIC 0 has no MAC", e.message)
        self.error(MINIMAL + "NIC = [ BRIDGE = br0, MAC = 02:00:zz:00:00:01 ]", "NIC/MAC")


class IoTests(Validating, unittest.TestCase):
    """GRAPHICS, INPUT, FEATURES, EMULATOR, the balloon."""

    def test_graphics(self):
        dom = self.dom(MINIMAL + 'GRAPHICS = [ TYPE = "VNC", LISTEN = 127.0.0.1, PORT = 5907, '
                                 'PASSWD = "p\'&<", KEYMAP = es ]')
        self.assertEqual(dict(dom.find("devices/graphics").attrib),
                         {"type": "vnc", "listen": "127.0.0.1", "port": "5907",
                          "passwd": "p'&<", "keymap": "es"})
        dom = self.dom(MINIMAL + "GRAPHICS = [ TYPE = vnc, PORT = -1 ]")
        self.assertEqual(dom.find("devices/graphics").get("port"), "-1")
        dom = self.dom(MINIMAL + "GRAPHICS = [ TYPE = sdl ]")
        self.assertEqual(dict(dom.find("devices/graphics").attrib), {"type": "sdl"})
        self.error(MINIMAL + "GRAPHICS = [ TYPE = spice3d ]", "GRAPHICS/TYPE")
        self.error(MINIMAL + "GRAPHICS = [ TYPE = vnc, PORT = http ]", "GRAPHICS/PORT")
        self.error(MINIMAL + "GRAPHICS = [ TYPE = vnc, PORT = 70000 ]", "GRAPHICS/PORT")

    def test_input(self):
        dom = self.dom(MINIMAL + "INPUT = [ TYPE = Tablet, BUS = USB ]\nINPUT = [ TYPE = mouse ]")
        self.assertEqual([dict(i.attrib) for i in dom.findall("devices/input")],
                         [{"type": "tablet", "bus": "usb"}, {"type": "mouse"}])
        self.error(MINIMAL + "INPUT = [ BUS = usb ]", "INPUT/TYPE")

    def test_features(self):
        self.assertEqual([c.tag for c in self.dom(MINIMAL).find("features")], ["acpi"],
                         "vmm_kvm.conf: ACPI yes, PAE no")
        self.assertIsNone(self.dom(MINIMAL + 'FEATURES = [ acpi="no" ]').find("features"),
                          "the seed's ttylinux")
        dom = self.dom(MINIMAL + "FEATURES = [ PAE = YES ]")
        self.assertEqual([c.tag for c in dom.find("features")], ["pae", "acpi"])
        self.assertIsNone(self.dom(MINIMAL + "OS = [ ARCH = x86_64, BOOT = hd ]",
                                   defaults=None).find("features"))
        self.error(MINIMAL + "FEATURES = [ ACPI = on ]", "FEATURES/ACPI")

    def test_emulator_and_balloon(self):
        self.assertIsNone(self.dom(MINIMAL).find("devices/emulator"), "commented out")
        defaults = Template.parse("EMULATOR = /usr/bin/qemu-system-x86_64\n"
                                  "OS = [ ARCH = x86_64, BOOT = hd ]")
        dom = self.dom(MINIMAL, defaults=defaults)
        self.assertEqual(dom.find("devices")[0].tag, "emulator")
        self.assertEqual(dom.findtext("devices/emulator"), "/usr/bin/qemu-system-x86_64")
        balloon = dom.find("devices/memballoon")
        self.assertEqual(balloon.get("model"), "virtio")
        self.assertEqual(balloon.find("stats").get("period"), "2")


class RawTests(Validating, unittest.TestCase):
    """RAW DATA of the hypervisor's family merged into the document."""

    def test_family_filter(self):
        text = (MINIMAL + "RAW = [ TYPE = KVM, DATA = \"<on_crash>preserve</on_crash>\" ]\n"
                          "RAW = [ TYPE = xen, DATA = \"<on_reboot>destroy</on_reboot>\" ]\n")
        for hv in ("kvm", "qemu"):
            dom = self.dom(text, hv=hv)
            self.assertEqual(dom.findtext("on_crash"), "preserve")
            self.assertIsNone(dom.find("on_reboot"))
        dom = self.dom(text, hv="xen", defaults=XEN_DEFAULTS)
        self.assertIsNone(dom.find("on_crash"))
        self.assertEqual(dom.findtext("on_reboot"), "destroy")
        dom = self.dom(MINIMAL + 'RAW = [ TYPE = qemu, DATA = "<on_crash>destroy</on_crash>" ]')
        self.assertEqual(dom.findtext("on_crash"), "destroy", "qemu counts as the kvm family")

    def test_merge(self):
        data = ("<devices><serial type='file'><source path='/tmp/one-7.console'/>"
                "<target port='0'/></serial><console type='pty'/>"
                "<memballoon model='none'/></devices>"
                "<features><apic/><acpi/></features>"
                "<os><boot dev='network'/><boot dev='cdrom'/></os>"
                "<memory unit='MiB'>100</memory>"
                "<!-- a comment --><on_poweroff>destroy</on_poweroff>"
                "<qemu:commandline><qemu:arg value='-no-hpet'/></qemu:commandline>")
        tpl = Template([("MEMORY", "64"), ("DISK", {"TARGET": "hda"}),
                        ("RAW", {"TYPE": "kvm", "DATA": data})])
        dom = self.dom(tpl)
        self.assertEqual(len(dom.findall("devices")), 1)
        self.assertEqual([c.tag for c in dom.find("devices")],
                         ["disk", "memballoon", "serial", "console"])
        self.assertEqual(dom.find("devices/memballoon").get("model"), "none", "replaced")
        self.assertEqual([c.tag for c in dom.find("features")], ["acpi", "apic"])
        self.assertEqual([b.get("dev") for b in dom.findall("os/boot")], ["network", "cdrom"])
        self.assertEqual(len(dom.findall("memory")), 1)
        self.assertEqual(dom.findtext("memory"), "100")
        self.assertEqual(dom.findtext("on_poweroff"), "destroy")
        self.assertEqual(dom.find(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg").get("value"),
                         "-no-hpet")

    def test_new_singletons_and_pins(self):
        data = ("<cpu mode='host-model'/><cputune><vcpupin vcpu='0' cpuset='0'/>"
                "<vcpupin vcpu='1' cpuset='1'/></cputune>")
        dom = self.dom(MINIMAL + "CPU = 1\nVCPU = 2\n" +
                       f'RAW = [ TYPE = kvm, DATA = "{data}" ]')
        self.assertEqual([c.tag for c in dom.find("cputune")], ["shares", "vcpupin", "vcpupin"])
        self.assertEqual(dom.find("cpu").get("mode"), "host-model")

    def test_errors(self):
        def raw(data):
            return Template([("MEMORY", "64"), ("RAW", {"TYPE": "kvm", "DATA": data})])

        for data, words in [("<devices><serial>", "not XML"),
                            ("devices", "text outside"),
                            ("<a/>tail", "text outside"),
                            ("<a>&xxe;</a>", "not XML"),
                            ('<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
                             "not XML"),
                            ("<domain type='kvm'/>", "whole <domain>"),
                            ("<name>evil</name>", "<name>")]:
            with self.assertRaises(DeploymentError, msg=data) as cm:
                build_domain(raw(data), 7, VM_DIR, "kvm", KVM_DEFAULTS)
            self.assertEqual(cm.exception.attribute, "RAW/DATA")
            self.assertIn(words, cm.exception.message)
        self.assertEqual(self.dom(raw("  ")).findtext("name"), "one-7", "empty DATA: nothing")


class XenTests(Validating, unittest.TestCase):
    """TYPE xen (untested against a real Xen: schema only)."""

    def test_hvm(self):
        dom = self.dom(MINIMAL + "CPU = 1\nDISK = [ TARGET = hda ]\n"
                                 "NIC = [ BRIDGE = xenbr0, MAC = 02:00:00:00:00:01, "
                                 "SCRIPT = vif-bridge ]\nGRAPHICS = [ TYPE = vnc ]",
                       hv="xen", defaults=XEN_DEFAULTS)
        self.assertEqual(dom.get("type"), "xen")
        self.assertNotIn("qemu", dom.nsmap)
        self.assertIsNone(dom.find("cputune"))
        self.assertIsNone(dom.find("devices/memballoon"))
        self.assertEqual(dom.findtext("os/type"), "hvm")
        self.assertEqual([c.tag for c in dom.find("features")], ["pae", "acpi"])

    def test_paravirtual(self):
        dom = self.dom(MINIMAL + "OS = [ KERNEL = /boot/vmlinuz-xen, INITRD = /boot/initrd-xen,"
                                 " ROOT = xvda1 ]\nDISK = [ TARGET = xvda, BUS = xen ]",
                       hv="xen", defaults=XEN_DEFAULTS)
        self.assertEqual(dom.findtext("os/type"), "linux")
        self.assertIsNone(dom.find("os/boot"))
        dom = self.dom(MINIMAL + "OS = [ BOOTLOADER = /usr/bin/pygrub ]", hv="xen",
                       defaults=XEN_DEFAULTS)
        self.assertEqual(dom.findtext("bootloader"), "/usr/bin/pygrub")
        self.assertEqual(dom.findtext("os/type"), "linux")
        self.assertIsNone(dom.find("os/boot"), "libvirt's schema has no <boot> for Xen PV")


class SeedTests(Validating, unittest.TestCase):
    """A whole seed-like template for every TYPE."""

    def test_seed_like(self):
        tpl = Template.parse(SEED_LIKE)
        for hv, defaults in (("kvm", KVM_DEFAULTS), ("qemu", KVM_DEFAULTS),
                             ("xen", XEN_DEFAULTS)):
            dom = self.dom(tpl, hv=hv, defaults=defaults)
            self.assertEqual(len(dom.findall("devices/disk")), 5)
            self.assertEqual(dom.findall("devices/disk")[-1].find("source").get("file"),
                             f"{VM_DIR}/disk.4")
            self.assertEqual(len(dom.findall("devices/interface")), 2)
            self.assertEqual(dom.findtext("memory"), "131072")
            self.assertEqual(dom.findtext("vcpu"), "2")
            self.assertEqual(dom.find("devices/serial") is not None, hv != "xen")
            self.assertEqual(dom.findtext("on_crash"), "preserve" if hv == "xen" else None)
        self.assertGreater(Validating.validated, 0)

    def test_vm_object(self):
        """vm_domain_xml takes VM_DIR from the VM's current history record."""
        class VM:
            oid = 42
            template = Template.parse(MINIMAL + "DISK = [ TARGET = hda ]")
            last_history = History(seq=0, vm_dir="/ds/0/42")

        dom = parse(vm_domain_xml(VM, "qemu", KVM_DEFAULTS))
        self.assertEqual(dom.findtext("name"), "one-42")
        self.assertEqual(dom.find("devices/disk/source").get("file"), "/ds/0/42/disk.0")
        VM.last_history = None
        with self.assertRaises(DeploymentError):
            vm_domain_xml(VM, "qemu", KVM_DEFAULTS)


# ---------------------------------------------------------------------------
# The VirtualMachineManager


class VmmDeployTests(Validating, unittest.TestCase):
    """deploy.<seq> on a core with fake drivers (real SQLite, Clock)."""

    async def _boot(self, core, text):
        host = await core.host("h0")
        vm = await core.dm.allocate(core.admin, text)
        await core.dm.deploy(vm, host)
        core.tmd.last("transfer").succeed()
        await core.settle()
        return vm

    async def test_libvirt_xml_for_qemu(self):
        core = await Core.make(self)
        core.vmmd.hv_type = "qemu"
        core.vmmd.defaults = KVM_DEFAULTS
        vm = await self._boot(core, "CPU = 0.1\nMEMORY = 32\n"
                                    "DISK = [ SOURCE = /srv/a.img, TARGET = hda ]\n"
                                    "CONTEXT = [ HOSTNAME = $NAME ]\n")
        path = os.path.join(core.nebula.vm_dir(vm.oid), "deployment.0")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.validate(text)
        dom = parse(text)
        self.assertEqual(dom.get("type"), "qemu")
        self.assertEqual(dom.findtext("name"), f"one-{vm.oid}")
        vm_dir = vm.last_history.vm_dir
        self.assertEqual([d.find("source").get("file") for d in dom.findall("devices/disk")],
                         [f"{vm_dir}/disk.0", f"{vm_dir}/disk.1"])
        call = core.vmmd.last("deploy")
        self.assertEqual(call.args[0].local_deployment_file, path)
        call.succeed("one-%d" % vm.oid)
        await core.settle()
        self.assertEqual((vm.state, vm.lcm_state), (ACTIVE, LCM_RUNNING))

    async def test_template_text_otherwise(self):
        core = await Core.make(self)  # the fake driver has no hv_type: "xml"
        vm = await self._boot(core, "CPU = 0.1\nMEMORY = 32\n")
        with open(os.path.join(core.nebula.vm_dir(vm.oid), "deployment.0")) as f:
            self.assertEqual(Template.parse(f.read()).get("MEMORY"), "32")
        self.assertEqual(len(core.vmmd.pending("deploy")), 1)

    async def test_bad_template_fails_the_deploy(self):
        core = await Core.make(self)
        core.vmmd.hv_type = "kvm"
        core.vmmd.defaults = KVM_DEFAULTS
        vm = await self._boot(core, "CPU = 0.1\nMEMORY = 32\n"
                                    "RAW = [ TYPE = kvm, DATA = \"<devices>\" ]\n")
        self.assertEqual(core.vmmd.pending("deploy"), [], "the driver is not called")
        self.assertFalse(os.path.exists(os.path.join(core.nebula.vm_dir(vm.oid),
                                                     "deployment.0")))
        self.assertEqual(vm.state, FAILED)
        with open(os.path.join(core.nebula.vm_dir(vm.oid), "vm.log")) as f:
            log = f.read()
        self.assertIn("Error deploying VM: RAW DATA is not XML", log)
        self.assertNotEqual(vm.lcm_state, BOOT)


class DaemonTests(Validating, unittest.TestCase):
    """A whole daemon whose dummy VMM driver says it is TYPE qemu."""

    async def test_deployment_file_is_libvirt_xml(self):
        neb = await start_nebula(self)
        drv = neb.service.drivers["vmm"]["vmm_dummy"]
        drv.hv_type = "qemu"
        drv.defaults = KVM_DEFAULTS
        hid = await ok(neb, "one.host.allocate", "node1", "im_dummy", "vmm_dummy", -1)
        await ok(neb, "one.vn.allocate", 'NAME = "lan"\nTYPE = FIXED\nBRIDGE = onebr0\n'
                                         "LEASES = [ IP = 203.0.113.9 ]\n")
        await wait_host_monitored(neb, hid)
        vid = await ok(neb, "one.vm.allocate", """
            NAME = web
            CPU = 0.5
            MEMORY = 64
            OS = [ KERNEL = /srv/guest/vmlinuz, INITRD = /srv/guest/initrd.img,
                   KERNEL_CMD = "console=ttyS0" ]
            DISK = [ SOURCE = /srv/images/disk.qcow2, TARGET = vda, BUS = virtio,
                     DRIVER = qcow2 ]
            NIC = [ NETWORK = "lan", MODEL = virtio ]
            CONTEXT = [ HOSTNAME = "$NAME", IP = "$NIC[IP]" ]
            RAW = [ TYPE = kvm, DATA = "<devices><serial type='pty'/></devices>" ]
            """)
        await wait_vm(neb, vid, 3, RUNNING)
        with open(os.path.join(neb.var_dir, str(vid), "deployment.0"), encoding="utf-8") as f:
            text = f.read()
        self.validate(text)
        dom = parse(text)
        self.assertEqual(dom.findtext("name"), f"one-{vid}")
        self.assertEqual(dom.findtext("os/cmdline"), "console=ttyS0")
        iface = dom.find("devices/interface")
        self.assertEqual(iface.find("source").get("bridge"), "onebr0")
        self.assertRegex(iface.find("mac").get("address"), r"^02:00:cb:00:71:09$")
        disks = dom.findall("devices/disk")
        self.assertEqual([d.get("device") for d in disks], ["disk", "cdrom"])
        self.assertEqual(disks[1].find("target").get("dev"), "hdb")
        self.assertIsNotNone(dom.find("devices/serial"))


# ---------------------------------------------------------------------------
# A real libvirt


class LibvirtDefineTests(Validating, unittest.TestCase):
    """The generated document as libvirt itself takes it: defined, read back,
    undefined (never started)."""

    def _connect(self):
        try:
            import libvirt
        except ImportError:
            self.skipTest("libvirt-python is not installed")
        libvirt.registerErrorHandler(lambda *_: None, None)
        for uri in ("qemu:///system", "test:///default"):
            try:
                return libvirt, libvirt.open(uri), uri
            except libvirt.libvirtError:
                continue
        self.skipTest("no libvirt connection")

    def test_define_and_undefine(self):
        libvirt, conn, uri = self._connect()
        self.addCleanup(conn.close)
        vid = 900000 + uuid.uuid4().int % 99999
        tpl = Template.parse(SEED_LIKE)
        text = domain_xml(tpl, vid, f"/var/tmp/nebtwist-define-{vid}", "qemu", KVM_DEFAULTS)
        self.validate(text)
        dom = conn.defineXML(text)

        def undefine():
            try:
                dom.undefine()
            except libvirt.libvirtError:
                pass

        self.addCleanup(undefine)
        self.assertEqual(dom.name(), f"one-{vid}")
        self.assertFalse(dom.isActive())
        back = etree.fromstring(dom.XMLDesc(0).encode("utf-8"))
        self.assertEqual(back.get("type"), "qemu")
        self.assertEqual(back.findtext("memory"), "131072")
        self.assertEqual(back.find("memory").get("unit"), "KiB")
        self.assertEqual([d.find("target").get("dev") for d in back.findall("devices/disk")],
                         ["sda", "sdb", "sdc", "hdc", "hdd"])
        self.assertEqual([i.find("mac").get("address") for i in back.findall("devices/interface")],
                         ["02:00:0a:00:00:05", "02:00:cb:00:71:0a"])
        self.assertEqual(back.findtext("cputune/shares"), "512")
        dom.undefine()
        self.assertNotIn(f"one-{vid}", conn.listDefinedDomains(), uri)
