"""The deployment file: libvirt domain XML for a VM (KVM, QEMU, Xen).

When the host's VM_MAD has TYPE ``kvm``, ``qemu`` or ``xen``, the
VirtualMachineManager writes ``<var>/<vid>/deployment.<seq>`` as a libvirt
domain document built here; the libvirt VMM driver reads it
(LOCAL_DEPLOYMENT_FILE) and hands it to libvirt as it is.

The document follows OpenNebula 3.4's ``src/vmm/LibVirtDriverKVM.cc``
(``LibVirtDriver::deployment_description_kvm``), built with lxml instead of
string streams, so every value is escaped and the document is always well
formed. Element by element (VM template attribute -> domain XML; a value the
VM lacks is taken from the VM_MAD's DEFAULT file, the *defaults* template,
as 3.4's ``get_default``):

=================  =========================================================
``<domain type>``  the VM_MAD's TYPE: ``kvm``, ``qemu`` or ``xen``. kvm/qemu
                   documents declare ``xmlns:qemu`` (3.4 did), so RAW DATA
                   may use ``<qemu:commandline>``.
``<name>``         ``one-<vid>``
MEMORY (MB)        ``<memory unit='KiB'>MEMORY*1024</memory>``; required
                   (VM or defaults), a number > 0 (3.4: ``atoi * 1024``;
                   fractions are rounded to whole KiB here).
CPU                kvm/qemu only: ``<cputune><shares>ceil(CPU*1024)``
                   (OpenNebula 4's cgroup weight; 3.4 wrote none). A number
                   > 0; no CPU, no ``<cputune>``.
VCPU               ``<vcpu>``: VCPU, else the default's VCPU, else 1; an
                   integer > 0.
OS vector          ARCH -> ``<type arch=ARCH>hvm</type>`` (no ``machine``:
                   libvirt picks its default); Xen with KERNEL or BOOTLOADER
                   is paravirtual: ``<type arch=ARCH>linux</type>``. ARCH is
                   required (VM or defaults). KERNEL -> ``<kernel>``, INITRD
                   -> ``<initrd>``, ROOT and KERNEL_CMD ->
                   ``<cmdline>root=/dev/ROOT KERNEL_CMD</cmdline>`` (3.4's
                   concatenation, without its trailing blank when there is
                   no KERNEL_CMD); INITRD/cmdline only with a KERNEL.
                   BOOTLOADER -> ``<bootloader>`` (a child of ``<domain>``,
                   where libvirt's schema has it; 3.4 put it in ``<os>``),
                   only without a KERNEL. BOOT (``hd``, ``fd``, ``cdrom``,
                   ``network``; a comma-separated list gives one ``<boot>``
                   each, in order) -> ``<boot dev=...>``, only without a
                   KERNEL; without KERNEL, BOOTLOADER and BOOT (3.4: "No BOOT
                   device defined and no default provided") it is an error.
DISK i (0-based,   TYPE ``BLOCK``: ``<disk type='block' device='disk'>``
 DISK vectors in   ``<source dev='VM_DIR/disk.i'/>`` (3.4: the TM links
 order)            ``disk.i`` to the device); TYPE ``CDROM``: ``<disk
                   type='file' device='cdrom'>``; any other TYPE: ``<disk
                   type='file' device='disk'>``, both with ``<source
                   file='VM_DIR/disk.i'/>``. TARGET -> ``<target dev>``
                   (required; 3.4: "Wrong target value in DISK"), BUS ->
                   its ``bus`` (lower-cased). ``<driver name='qemu'
                   type=DRIVER>``: the disk's DRIVER, else the defaults' DISK
                   DRIVER, else ``raw`` (3.4), lower-cased; CACHE (disk, then
                   defaults' DISK CACHE) -> its ``cache`` when given.
                   READONLY=yes (any case) -> ``<readonly/>``.
CONTEXT            when the VM has a CONTEXT vector: ``<disk type='file'
                   device='cdrom'>`` with ``<source file='VM_DIR/disk.N'/>``
                   (N = the number of DISK vectors, as
                   :mod:`nebtwist.core.context` and the TM number it),
                   target CONTEXT/TARGET (set at allocation by
                   :mod:`nebtwist.core.variables`; else *device_prefix* +
                   ``b``), ``<readonly/>``, ``<driver name='qemu'
                   type='raw'/>`` (the image is an ISO).
NIC                ``<interface type='bridge'>`` + ``<source bridge=BRIDGE>``,
                   or ``type='ethernet'`` without BRIDGE; MAC (required,
                   ``xx:xx:xx:xx:xx:xx``) -> ``<mac address>``, TARGET ->
                   ``<target dev>``, SCRIPT -> ``<script path>``, MODEL ->
                   ``<model type>``; on an ``ovswitch`` host (VNMMAD)
                   ``<virtualport type='openvswitch'/>``; with an IP and a FILTER (NIC, else the
                   defaults' NIC FILTER): ``<filterref filter=FILTER>`` with
                   ``<parameter name='IP' value=IP/>`` (3.4).
GRAPHICS (first)   TYPE ``vnc``: ``<graphics type='vnc'>`` with LISTEN ->
                   ``listen``, PORT (integer, -1 = automatic) -> ``port``,
                   PASSWD -> ``passwd``, KEYMAP -> ``keymap``; TYPE ``sdl``:
                   ``<graphics type='sdl'/>``. Other types are an error (3.4
                   logged a warning and left the device out).
INPUT (each)       TYPE (required) and BUS -> ``<input type bus>``
                   (lower-cased).
EMULATOR           (defaults only) -> ``<devices><emulator>``; without it
                   libvirt chooses (3.4 wrote ``/usr/bin/kvm``).
FEATURES           ACPI and PAE (``yes``/``no``, any case; VM, else
                   defaults) -> ``<features><acpi/><pae/>``; no feature
                   ``yes``, no ``<features>``.
(balloon)          kvm/qemu: ``<memballoon model='virtio'><stats
                   period='2'/></memballoon>`` so the driver's poll gets
                   memory statistics. Not for Xen.
RAW (each)         when RAW/TYPE is the hypervisor's family (``kvm`` -- or
                   ``qemu`` -- for kvm/qemu, ``xen`` for xen; any case): DATA
                   is read as XML element(s) (hardened parser: no entities,
                   DTD or network) and added to ``<domain>``: see
                   :func:`merge_raw`. 3.4 pasted DATA in as text.
=================  =========================================================

Bad input raises :class:`DeploymentError` (a
:class:`~nebtwist.errors.DriverError`) naming the attribute, so the deploy
fails with that message and the VM goes FAILED; no file is written (the
caller writes the returned text whole).

Untested here: Xen (the machines running the tests have no Xen); the Xen
documents validate against libvirt's schema, that is all.
"""

import math
import re

from lxml import etree

from nebtwist.errors import DriverError

__all__ = ["DeploymentError", "HV_TYPES", "QEMU_NS", "build_domain", "domain_xml",
           "merge_raw", "vm_domain_xml"]

#: VM_MAD TYPEs that get a libvirt domain document.
HV_TYPES = ("kvm", "qemu", "xen")

#: libvirt's QEMU namespace (``<qemu:commandline>``), declared on kvm/qemu domains.
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"

#: RAW TYPEs accepted per hypervisor TYPE.
RAW_FAMILIES = {"kvm": ("kvm", "qemu"), "qemu": ("kvm", "qemu"), "xen": ("xen",)}

#: Elements that appear at most once in ``<domain>`` and hold other elements:
#: a RAW one is merged into ours (children with the same tag replace ours,
#: other children are added) instead of being added beside it.
MERGED = frozenset({"os", "features", "cputune", "memtune", "blkiotune", "numatune",
                    "memoryBacking", "cpu", "clock", "pm", "resource", "sysinfo",
                    "idmap", "perf", "keywrap", "launchSecurity", "iothreadids"})

#: Children of ``<devices>`` that may appear once: a RAW one replaces ours.
SINGLE_DEVICES = frozenset({"emulator", "memballoon", "watchdog", "nvram", "panic", "iommu",
                            "vsock"})

#: ``<domain>`` children a RAW DATA may not set: the driver finds the domain by it.
PROTECTED = frozenset({"name"})

BOOT_DEVICES = ("hd", "fd", "cdrom", "network")

_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}\Z")

_RAW_PARSER = None


class DeploymentError(DriverError):
    """The VM template cannot be turned into a domain document.

    ``attribute`` names the offending template attribute (``"MEMORY"``,
    ``"NIC/MAC"``, ``"RAW/DATA"``...); ``message`` says what is wrong.
    """

    def __init__(self, attribute, message):
        super().__init__(message)
        self.attribute = attribute


def _raw_parser():
    global _RAW_PARSER
    if _RAW_PARSER is None:
        _RAW_PARSER = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            huge_tree=False, remove_comments=True, remove_pis=True, remove_blank_text=True)
    return _RAW_PARSER


# ---------------------------------------------------------------------------
# Reading values


class _Values:
    """A VM template with a defaults template behind it (3.4 ``get_default``)."""

    def __init__(self, template, defaults):
        self.template = template
        self.defaults = defaults

    def single(self, name):
        v = self.template.get_str(name)
        if v is None or not v.strip():
            v = self.defaults.get_str(name) if self.defaults is not None else None
        return v.strip() if v and v.strip() else None

    def vector(self, name):
        v = self.template.get_vector(name)
        return v if v is not None else {}

    def default(self, name, key):
        if self.defaults is None:
            return None
        vec = self.defaults.get_vector(name) or {}
        v = vec.get(key.upper())
        return v.strip() if v and v.strip() else None

    def sub(self, name, key, vec=None):
        """``name/key`` from ``vec`` (default: the first ``name`` vector), else
        from the defaults."""
        vec = self.vector(name) if vec is None else vec
        v = vec.get(key.upper())
        if v is not None and v.strip():
            return v.strip()
        return self.default(name, key)


def _get(vec, key):
    v = vec.get(key)
    return v.strip() if v is not None and v.strip() else None


def _number(attribute, text, what):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise DeploymentError(attribute, f"{attribute} must be {what}, not {text!r}")
    return value


def _positive_int(attribute, text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise DeploymentError(attribute, f"{attribute} must be an integer > 0, not {text!r}")
    return value


def _yes(attribute, text):
    if text is None:
        return False
    low = text.lower()
    if low not in ("yes", "no"):
        raise DeploymentError(attribute, f"{attribute} must be yes or no, not {text!r}")
    return low == "yes"


def _sub(parent, tag, text=None, **attrib):
    el = etree.SubElement(parent, tag, {k: v for k, v in attrib.items() if v is not None})
    if text is not None:
        el.text = text
    return el


# ---------------------------------------------------------------------------
# Element groups


def _memory(domain, values):
    memory = values.single("MEMORY")
    if memory is None:
        raise DeploymentError("MEMORY", "No MEMORY defined and no default provided")
    mb = _number("MEMORY", memory, "a number of MB > 0")
    _sub(domain, "memory", str(max(1, round(mb * 1024))), unit="KiB")


def _cpu(domain, values, hv_type):
    vcpu = values.single("VCPU") or "1"
    _sub(domain, "vcpu", str(_positive_int("VCPU", vcpu)))
    cpu = values.template.get_str("CPU")
    if hv_type != "xen" and cpu is not None and cpu.strip():
        share = _number("CPU", cpu.strip(), "a number > 0")
        tune = _sub(domain, "cputune")
        _sub(tune, "shares", str(max(2, math.ceil(share * 1024))))


def _os(domain, values, hv_type):
    os_vec = values.vector("OS")

    def get(key):
        return values.sub("OS", key, os_vec)

    arch = get("ARCH")
    if arch is None:
        raise DeploymentError("OS/ARCH", "No OS/ARCH defined and no default provided")
    kernel, bootloader, boot = get("KERNEL"), get("BOOTLOADER"), get("BOOT")
    if kernel is None and bootloader is None and boot is None:
        raise DeploymentError("OS/BOOT", "No OS/BOOT device (or KERNEL or BOOTLOADER) "
                                         "defined and no default provided")
    os_el = _sub(domain, "os")
    paravirt = hv_type == "xen" and (kernel is not None or bootloader is not None)
    _sub(os_el, "type", "linux" if paravirt else "hvm", arch=arch)
    if kernel is not None:
        _sub(os_el, "kernel", kernel)
        initrd = get("INITRD")
        if initrd is not None:
            _sub(os_el, "initrd", initrd)
        cmdline = get("KERNEL_CMD") or ""
        root = get("ROOT")
        if root is not None:
            cmdline = f"root=/dev/{root} {cmdline}".rstrip()
        if cmdline:
            _sub(os_el, "cmdline", cmdline)
        return
    if bootloader is not None:
        # libvirt's schema has <bootloader> beside <os>, not in it.
        domain.insert(domain.index(os_el), _make("bootloader", bootloader))
    if boot is not None and not paravirt:  # Xen PV: no <boot> in libvirt's schema
        for dev in boot.split(","):
            dev = dev.strip().lower()
            if dev not in BOOT_DEVICES:
                raise DeploymentError("OS/BOOT", f"OS/BOOT must be one or more of "
                                                 f"{', '.join(BOOT_DEVICES)}, not {boot!r}")
            _sub(os_el, "boot", dev=dev)


def _make(tag, text=None, **attrib):
    el = etree.Element(tag, attrib)
    el.text = text
    return el


def _disks(devices, values, vm_dir):
    default_driver = (values.default("DISK", "DRIVER") or "raw").lower()
    default_cache = values.default("DISK", "CACHE")
    disks = [d for d in values.template.get_all("DISK") if isinstance(d, dict)]
    for i, disk in enumerate(disks):
        target = _get(disk, "TARGET")
        if target is None:
            raise DeploymentError("DISK/TARGET", f"DISK {i} has no TARGET (the device "
                                                 f"the guest sees it as, e.g. hda)")
        dtype = (_get(disk, "TYPE") or "").upper()
        path = f"{vm_dir}/disk.{i}"
        if dtype == "BLOCK":
            el = _sub(devices, "disk", type="block", device="disk")
            _sub(el, "source", dev=path)
        else:
            el = _sub(devices, "disk", type="file",
                      device="cdrom" if dtype == "CDROM" else "disk")
            _sub(el, "source", file=path)
        bus = _get(disk, "BUS")
        _sub(el, "target", dev=target, bus=bus.lower() if bus else None)
        driver = (_get(disk, "DRIVER") or default_driver).lower()
        cache = _get(disk, "CACHE") or default_cache
        _sub(el, "driver", name="qemu", type=driver, cache=cache.lower() if cache else None)
        if _yes("DISK/READONLY", _get(disk, "READONLY")):
            _sub(el, "readonly")
    return len(disks)


def _context(devices, values, vm_dir, count, device_prefix):
    context = values.template.get("CONTEXT")
    if not isinstance(context, dict):
        return
    target = _get(context, "TARGET") or f"{device_prefix}b"
    el = _sub(devices, "disk", type="file", device="cdrom")
    _sub(el, "source", file=f"{vm_dir}/disk.{count}")
    _sub(el, "target", dev=target)
    _sub(el, "driver", name="qemu", type="raw")
    _sub(el, "readonly")


#: VN_MADs whose bridges are Open vSwitch bridges: the domain's interfaces get
#: ``<virtualport type='openvswitch'/>`` (libvirt then adds the tap to the OVS
#: bridge; 3.4 ``LibVirtDriverKVM.cc`` did for ``ovswitch`` hosts).
OVS_VN_MADS = ("ovswitch",)


def _nics(devices, values, vn_mad=None):
    default_filter = values.default("NIC", "FILTER")
    ovs = vn_mad in OVS_VN_MADS
    for i, nic in enumerate(n for n in values.template.get_all("NIC") if isinstance(n, dict)):
        mac = _get(nic, "MAC")
        if mac is None:
            raise DeploymentError("NIC/MAC", f"NIC {i} has no MAC")
        if not _MAC.match(mac):
            raise DeploymentError("NIC/MAC", f"NIC {i}: MAC {mac!r} is not of the form "
                                             f"xx:xx:xx:xx:xx:xx")
        bridge = _get(nic, "BRIDGE")
        el = _sub(devices, "interface", type="bridge" if bridge else "ethernet")
        if bridge:
            _sub(el, "source", bridge=bridge)
            if ovs:
                _sub(el, "virtualport", type="openvswitch")
        _sub(el, "mac", address=mac.lower())
        for key, tag, attr in (("TARGET", "target", "dev"), ("SCRIPT", "script", "path"),
                               ("MODEL", "model", "type")):
            value = _get(nic, key)
            if value is not None:
                _sub(el, tag, **{attr: value})
        ip = _get(nic, "IP")
        nic_filter = _get(nic, "FILTER") or default_filter
        if ip is not None and nic_filter is not None:
            ref = _sub(el, "filterref", filter=nic_filter)
            _sub(ref, "parameter", name="IP", value=ip)


def _graphics(devices, values):
    graphics = values.template.get_vector("GRAPHICS")
    if graphics is None:
        return
    gtype = (_get(graphics, "TYPE") or "").lower()
    if gtype == "sdl":
        _sub(devices, "graphics", type="sdl")
    elif gtype == "vnc":
        port = _get(graphics, "PORT")
        if port is not None:
            try:
                ok = int(port) == -1 or 0 <= int(port) <= 65535
            except ValueError:
                ok = False
            if not ok:
                raise DeploymentError("GRAPHICS/PORT", f"GRAPHICS/PORT must be a TCP port "
                                                       f"(or -1), not {port!r}")
        _sub(devices, "graphics", type="vnc", listen=_get(graphics, "LISTEN"), port=port,
             passwd=_get(graphics, "PASSWD"), keymap=_get(graphics, "KEYMAP"))
    else:
        raise DeploymentError("GRAPHICS/TYPE", f"GRAPHICS/TYPE must be vnc or sdl, not "
                                               f"{graphics.get('TYPE', '')!r}")


def _inputs(devices, values):
    for vec in values.template.get_all("INPUT"):
        if not isinstance(vec, dict):
            continue
        itype = _get(vec, "TYPE")
        if itype is None:
            raise DeploymentError("INPUT/TYPE", "INPUT has no TYPE (mouse, tablet, keyboard)")
        bus = _get(vec, "BUS")
        _sub(devices, "input", type=itype.lower(), bus=bus.lower() if bus else None)


def _features(domain, values):
    acpi = _yes("FEATURES/ACPI", values.sub("FEATURES", "ACPI"))
    pae = _yes("FEATURES/PAE", values.sub("FEATURES", "PAE"))
    if acpi or pae:
        features = _sub(domain, "features")
        if pae:
            _sub(features, "pae")
        if acpi:
            _sub(features, "acpi")


# ---------------------------------------------------------------------------
# RAW


def parse_raw(data):
    """The elements of a RAW DATA string (one or more XML elements).

    :param data: str, e.g. ``"<devices><serial type='pty'/></devices>"``.
    :return: list of lxml elements (comments and processing instructions
        dropped), possibly using the ``qemu:`` prefix for :data:`QEMU_NS`.
    :raises DeploymentError: not well-formed XML (entities, a DTD and
        network access are refused), or text outside the elements.
    """
    wrapped = f'<raw xmlns:qemu="{QEMU_NS}">{data}</raw>'.encode("utf-8")
    try:
        root = etree.fromstring(wrapped, _raw_parser())
    except etree.XMLSyntaxError as e:
        raise DeploymentError("RAW/DATA", f"RAW DATA is not XML: {e.msg}") from None
    if (root.text or "").strip() or any((el.tail or "").strip() for el in root):
        raise DeploymentError("RAW/DATA", "RAW DATA has text outside its XML elements")
    elements = [el for el in root if isinstance(el.tag, str)]
    for el in elements:
        if etree.QName(el).localname == "domain":
            raise DeploymentError("RAW/DATA", "RAW DATA must hold elements of <domain>, "
                                              "not a whole <domain>")
    return elements


def merge_raw(domain, elements):
    """Add RAW elements to ``domain`` (lxml element), keeping it valid.

    * ``<devices>``: its children go into our ``<devices>``; a child that may
      appear once (:data:`SINGLE_DEVICES`: emulator, memballoon...) replaces
      ours.
    * an element that appears once and holds others (:data:`MERGED`: os,
      features, cputune, cpu, clock...) when we have one: its children with
      a tag we have replace ours, the others are added.
    * ``<name>``: refused (:class:`DeploymentError`; the driver finds the
      domain by it).
    * any other element of a tag we already have (memory, vcpu,
      on_poweroff...) replaces ours; the rest is added at the end.
    """
    for el in elements:
        tag = el.tag
        if tag in PROTECTED:
            raise DeploymentError("RAW/DATA", f"RAW DATA may not set <{tag}>")
        ours = domain.find(tag) if not tag.startswith("{") else None
        if ours is None:
            domain.append(el)
        elif tag == "devices":
            _merge_children(ours, el, SINGLE_DEVICES)
        elif tag in MERGED:
            _merge_children(ours, el, None)
        else:
            domain.replace(ours, el)


def _merge_children(ours, raw, replaceable):
    """Move ``raw``'s children into ``ours``. The RAW children of a tag that
    ``ours`` already has (and that is in ``replaceable``, when given) take
    the place of all of ours of that tag (several RAW ``<boot>`` replace our
    ``<boot>`` list); the others are appended."""
    existing = {}
    for child in ours:
        existing.setdefault(child.tag, []).append(child)
    placed = {}
    for child in list(raw):
        tag = child.tag
        if tag in existing and (replaceable is None or tag in replaceable):
            if tag not in placed:
                first = existing[tag][0]
                first.addprevious(child)
                for old in existing[tag]:
                    ours.remove(old)
            else:
                placed[tag].addnext(child)
            placed[tag] = child
        else:
            ours.append(child)


def _raw(domain, values, hv_type):
    for vec in values.template.get_all("RAW"):
        if not isinstance(vec, dict):
            continue
        if (_get(vec, "TYPE") or "").lower() not in RAW_FAMILIES[hv_type]:
            continue
        data = vec.get("DATA") or ""
        if data.strip():
            merge_raw(domain, parse_raw(data))


# ---------------------------------------------------------------------------
# The document


def build_domain(template, vid, vm_dir, hv_type, defaults=None, device_prefix="hd",
                 vn_mad=None):
    """The libvirt ``<domain>`` element for a VM (see the module docstring).

    :param template: the VM's :class:`~nebtwist.template.Template`
        (``vm.template``: MEMORY, CPU, VCPU, OS, DISK, CONTEXT, NIC, GRAPHICS,
        INPUT, FEATURES, RAW).
    :param vid: the VM id (int); the domain is named ``one-<vid>``.
    :param vm_dir: the VM's directory on the host (str, the history record's
        VM_DIR): disk i is ``<vm_dir>/disk.<i>``.
    :param hv_type: ``"kvm"``, ``"qemu"`` or ``"xen"`` (any case).
    :param defaults: the VM_MAD's DEFAULT file as a Template (OS, FEATURES,
        DISK, NIC vectors; EMULATOR, MEMORY, VCPU), or None.
    :param device_prefix: oned.conf ``DEFAULT_DEVICE_PREFIX`` (``hd``): the
        context CD-ROM is ``<prefix>b`` when CONTEXT has no TARGET.
    :param vn_mad: the host's VN_MAD (the history record's VNMMAD), or None:
        ``ovswitch`` (:data:`OVS_VN_MADS`) adds ``<virtualport
        type='openvswitch'/>`` to each bridged interface.
    :return: an lxml element.
    :raises DeploymentError: a missing or malformed attribute (the message
        names it); ``ValueError`` for an unknown ``hv_type``.
    """
    hv_type = hv_type.lower()
    if hv_type not in HV_TYPES:
        raise ValueError(f"no libvirt domain for hypervisor type {hv_type!r}")
    values = _Values(template, defaults)
    nsmap = {"qemu": QEMU_NS} if hv_type != "xen" else None
    domain = etree.Element("domain", {"type": hv_type}, nsmap=nsmap)
    _sub(domain, "name", f"one-{int(vid)}")
    _memory(domain, values)
    _cpu(domain, values, hv_type)
    _os(domain, values, hv_type)
    _features(domain, values)
    devices = _sub(domain, "devices")
    emulator = values.defaults.get_str("EMULATOR") if defaults is not None else None
    if emulator and emulator.strip():
        _sub(devices, "emulator", emulator.strip())
    count = _disks(devices, values, vm_dir)
    _context(devices, values, vm_dir, count, device_prefix)
    _nics(devices, values, vn_mad)
    _graphics(devices, values)
    _inputs(devices, values)
    if hv_type != "xen":
        balloon = _sub(devices, "memballoon", model="virtio")
        _sub(balloon, "stats", period="2")
    _raw(domain, values, hv_type)
    return domain


def domain_xml(template, vid, vm_dir, hv_type, defaults=None, device_prefix="hd",
               vn_mad=None):
    """:func:`build_domain` serialized: str, indented, no XML declaration.

    Same parameters and errors.
    """
    domain = build_domain(template, vid, vm_dir, hv_type, defaults, device_prefix, vn_mad)
    etree.indent(domain, space="  ")
    return etree.tostring(domain, encoding="unicode") + "\n"


def vm_domain_xml(vm, hv_type, defaults=None, device_prefix="hd"):
    """:func:`domain_xml` for a :class:`~nebtwist.core.objects.VirtualMachine`
    on its current host (``vm.last_history.vm_dir``; its VNMMAD decides the
    interfaces' ``virtualport``).

    :raises DeploymentError: as :func:`build_domain`, or the VM has no host.
    """
    h = vm.last_history
    if h is None:
        raise DeploymentError("HISTORY", "the VM has no host")
    return domain_xml(vm.template, vm.oid, h.vm_dir, hv_type, defaults, device_prefix,
                      h.vnm_mad)
