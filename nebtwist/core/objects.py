"""The pool objects and their OpenNebula 3.4 XML bodies.

Each object serialises to the element its 3.4 schema names
(``share/doc/xsd/*.xsd``; reference section 1.7) and reads itself back from
that body, which is what the database stores (3.4's ``body`` column). Bodies
carry no namespace, as oned's replies do not.

Units follow OpenNebula: VM ``TEMPLATE/CPU`` in cores (0.5), HOST_SHARE CPU in
hundredths of a core (50); VM ``TEMPLATE/MEMORY`` in MB, HOST_SHARE memory in KB.

The serialised body is cached (:meth:`PoolObject.body`, and as the UTF-8
bytes a pool reply is assembled from, :meth:`PoolObject.body_bytes`) and
dropped by :meth:`PoolObject.touch` whenever the object changes, so pool
listings are a join of cached pieces and only changed objects are serialised
again. Every change goes through ``Pool.update`` (which touches) or touches
the object itself; :data:`generation` counts the touches, so a cached pool
reply knows whether any object changed since it was built.
"""

import ipaddress
import re

from lxml import etree

from nebtwist.template import Template

# ---------------------------------------------------------------------------
# VM states (include/VirtualMachine.h, 3.4)

INIT, PENDING, HOLD, ACTIVE, STOPPED, SUSPENDED, DONE, FAILED = range(8)
VM_STATES = ["INIT", "PENDING", "HOLD", "ACTIVE", "STOPPED", "SUSPENDED", "DONE", "FAILED"]

(LCM_INIT, PROLOG, BOOT, RUNNING, MIGRATE, SAVE_STOP, SAVE_SUSPEND, SAVE_MIGRATE,
 PROLOG_MIGRATE, PROLOG_RESUME, EPILOG_STOP, EPILOG, SHUTDOWN, CANCEL, FAILURE,
 CLEANUP, UNKNOWN) = range(17)
LCM_STATES = ["LCM_INIT", "PROLOG", "BOOT", "RUNNING", "MIGRATE", "SAVE_STOP",
              "SAVE_SUSPEND", "SAVE_MIGRATE", "PROLOG_MIGRATE", "PROLOG_RESUME",
              "EPILOG_STOP", "EPILOG", "SHUTDOWN", "CANCEL", "FAILURE", "CLEANUP", "UNKNOWN"]

# History REASON (include/History.h)
REASON_NONE, REASON_ERROR, REASON_STOP_RESUME, REASON_USER, REASON_CANCEL = range(5)

# Host states (include/Host.h): 3.4's five, then two of OpenNebula 4.x's: a host
# being monitored after an ERROR (MONITORING_ERROR) or from INIT (MONITORING_INIT)
# is not MONITORING, so the scheduler (STATE < 3) never places a VM on a host
# whose last monitoring failed, or that was never monitored, until one succeeds.
HOST_INIT, HOST_MONITORING, HOST_MONITORED, HOST_ERROR, HOST_DISABLED = range(5)
HOST_MONITORING_ERROR, HOST_MONITORING_INIT = 5, 6
HOST_STATES = ["INIT", "MONITORING", "MONITORED", "ERROR", "DISABLED", "MONITORING_ERROR",
               "MONITORING_INIT"]
#: A host state being monitored -> the state it was monitored from (4.x names).
HOST_MONITORING_FROM = {HOST_MONITORING: HOST_MONITORED, HOST_MONITORING_ERROR: HOST_ERROR,
                        HOST_MONITORING_INIT: HOST_INIT}

# Virtual network types
RANGED, FIXED = 0, 1

ONEADMIN_ID = 0
ONEADMIN_GROUP, USERS_GROUP = 0, 1

PERMISSION_NAMES = ("OWNER_U", "OWNER_M", "OWNER_A", "GROUP_U", "GROUP_M", "GROUP_A",
                    "OTHER_U", "OTHER_M", "OTHER_A")

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


def parse_xml(text):
    """Parse trusted XML (our own bodies) with a hardened lxml parser."""
    if isinstance(text, str):
        text = text.encode()
    return etree.fromstring(text, _PARSER)


def _sub(parent, tag, value):
    el = etree.SubElement(parent, tag)
    if value is not None and value != "":
        el.text = str(value)
    return el


#: Characters lxml refuses in text (XML 1.0): a value holding one is
#: serialised through lxml, which raises as it always did.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class _NotPlain(Exception):
    """A value the fast serialiser leaves to lxml."""


def _el(tag, value):
    """``<TAG>value</TAG>`` as lxml writes a :func:`_sub` element (``<TAG/>``
    when empty; ``&``, ``<``, ``>`` and ``\\r`` escaped)."""
    if value is None or value == "":
        return f"<{tag}/>"
    text = str(value)
    if _NOT_XML.search(text):
        raise _NotPlain(tag)
    if "&" in text or "<" in text or ">" in text or "\r" in text:
        text = (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                .replace("\r", "&#13;"))
    return f"<{tag}>{text}</{tag}>"


def _int(el, tag, default=0):
    v = el.findtext(tag)
    return int(v) if v not in (None, "") else default


def _text(el, tag, default=""):
    v = el.findtext(tag)
    return v if v is not None else default


#: Bumped by every :meth:`PoolObject.touch` (any object of any pool): a pool
#: reply built at generation ``g`` is still exact while ``generation == g``.
generation = 0


def cdata_bytes(text):
    """``text`` as UTF-8 bytes safe inside one XML ``<![CDATA[...]]>`` section
    (each ``]]>`` split across two sections)."""
    return text.replace("]]>", "]]]]><![CDATA[>").encode("utf-8")


class PoolObject:
    """What every pool object has: an oid, a name, a template and a cached body.

    ``TABLE`` is its database table and ``ROOT`` its XML element name.
    """

    TABLE = ""
    ROOT = ""
    _body = None
    _body_bytes = None

    def __init__(self, oid, name, template=None):
        self.oid = oid
        self.name = name
        self.template = template if template is not None else Template()
        self._body = None
        self._body_bytes = None

    def touch(self):
        """Drop the cached body; call after every change (``Pool.update`` does)."""
        global generation
        generation += 1
        self._body = None
        self._body_bytes = None

    def body(self):
        """The object's XML body as a str (cached)."""
        if self._body is None:
            self._body = self._fast_xml(False) or etree.tostring(self.to_xml(),
                                                                 encoding="unicode")
        return self._body

    def _fast_xml(self, extended):
        """The body (``extended``: the info body) written as text, exactly as
        lxml would write it, or None to let lxml do it (the default; values
        lxml refuses)."""
        return None

    def body_bytes(self):
        """:meth:`body` as UTF-8 bytes ready for a CDATA section
        (:func:`cdata_bytes`; cached): what pool replies are joined from."""
        if self._body_bytes is None:
            self._body_bytes = cdata_bytes(self.body())
        return self._body_bytes

    def fresh_body(self):
        """The body serialised now, ignoring the cache (tests compare it with
        :meth:`body` to find a change made without :meth:`touch`)."""
        return etree.tostring(self.to_xml(), encoding="unicode")

    def info(self):
        """The XML answered by ``one.<object>.info`` (by default the body)."""
        return self.body()

    def to_xml(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def db_columns(self):
        """Columns besides ``oid`` written with the body (dict)."""
        return {"name": self.name}


class Owned(PoolObject):
    """An object with an owner, a group and 3.4 permission bits."""

    def __init__(self, oid, name, uid, gid, uname, gname, permissions=None, template=None):
        super().__init__(oid, name, template)
        self.uid = uid
        self.gid = gid
        self.uname = uname
        self.gname = gname
        self.permissions = list(permissions or (1, 1, 0, 0, 0, 0, 0, 0, 0))

    def _xml_owner(self, root):
        _sub(root, "UID", self.uid)
        _sub(root, "GID", self.gid)
        _sub(root, "UNAME", self.uname)
        _sub(root, "GNAME", self.gname)
        _sub(root, "NAME", self.name)
        perms = etree.SubElement(root, "PERMISSIONS")
        for tag, v in zip(PERMISSION_NAMES, self.permissions):
            _sub(perms, tag, v)

    @staticmethod
    def _read_owner(el):
        perms = el.find("PERMISSIONS")
        permissions = [_int(perms, t) for t in PERMISSION_NAMES] if perms is not None else None
        return dict(uid=_int(el, "UID"), gid=_int(el, "GID"), uname=_text(el, "UNAME"),
                    gname=_text(el, "GNAME"), permissions=permissions)

    def db_columns(self):
        p = self.permissions
        return {"name": self.name, "uid": self.uid, "gid": self.gid,
                "owner_u": p[0], "group_u": p[3], "other_u": p[6]}


class ExtendedInfo:
    """For objects whose ``one.<object>.info`` body extends their pool body
    (a VM's every history record, a network's leases): subclasses build both
    with ``_xml(extended)``; the extended body is cached like :meth:`body`."""

    _info = None

    def _xml(self, extended):  # pragma: no cover - abstract
        raise NotImplementedError

    def to_xml(self):
        return self._xml(False)

    def _info_is_body(self):
        """True when the extended body would equal the pool body."""
        return False

    def info(self):
        if self._info is None:
            if self._info_is_body():
                self._info = self.body()
            else:
                self._info = self._fast_xml(True) or etree.tostring(self._xml(True),
                                                                    encoding="unicode")
        return self._info

    def touch(self):
        super().touch()
        self._info = None


# ---------------------------------------------------------------------------


class Group(PoolObject):
    """A 3.4 group (``src/group/Group.cc``); users are listed by id."""

    TABLE = "group_pool"
    ROOT = "GROUP"

    def __init__(self, oid, name, users=(), template=None):
        super().__init__(oid, name, template)
        self.users = sorted(set(users))

    def to_xml(self):
        root = etree.Element("GROUP")
        _sub(root, "ID", self.oid)
        _sub(root, "NAME", self.name)
        users = etree.SubElement(root, "USERS")
        for uid in self.users:
            _sub(users, "ID", uid)
        return root

    @classmethod
    def from_xml(cls, el):
        users = [int(x.text) for x in el.findall("USERS/ID")]
        return cls(_int(el, "ID"), _text(el, "NAME"), users)

    def db_columns(self):
        return {"name": self.name, "uid": 0, "gid": self.oid, "owner_u": 1, "group_u": 0,
                "other_u": 0}


class User(PoolObject):
    """A 3.4 user (``src/um/User.cc``).

    ``password`` is what is stored: the SHA1 hex of the password for the
    ``core`` auth driver.
    """

    TABLE = "user_pool"
    ROOT = "USER"

    def __init__(self, oid, name, password, gid=USERS_GROUP, gname="users", auth_driver="core",
                 enabled=True, template=None):
        super().__init__(oid, name, template)
        self.password = password
        self.gid = gid
        self.gname = gname
        self.auth_driver = auth_driver
        self.enabled = enabled

    def to_xml(self):
        root = etree.Element("USER")
        _sub(root, "ID", self.oid)
        _sub(root, "GID", self.gid)
        _sub(root, "GNAME", self.gname)
        _sub(root, "NAME", self.name)
        _sub(root, "PASSWORD", self.password)
        _sub(root, "AUTH_DRIVER", self.auth_driver)
        _sub(root, "ENABLED", 1 if self.enabled else 0)
        root.append(self.template.to_xml())
        return root

    @classmethod
    def from_xml(cls, el):
        return cls(_int(el, "ID"), _text(el, "NAME"), _text(el, "PASSWORD"), _int(el, "GID"),
                   _text(el, "GNAME"), _text(el, "AUTH_DRIVER", "core"),
                   _int(el, "ENABLED", 1) == 1, Template.from_xml(el.find("TEMPLATE")))

    def db_columns(self):
        return {"name": self.name, "uid": self.oid, "gid": self.gid, "owner_u": 1,
                "group_u": 0, "other_u": 0}


# ---------------------------------------------------------------------------


class HostShare:
    """A host's capacity (``src/host/HostShare.cc``).

    ``*_usage``: capacity allocated by nebtwist to the VMs on the host (CPU
    in hundredths of a core, memory in KB, disk in MB); ``max_*``, ``free_*``,
    ``used_*``: the monitored values.
    """

    FIELDS = ("disk_usage", "mem_usage", "cpu_usage", "max_disk", "max_mem", "max_cpu",
              "free_disk", "free_mem", "free_cpu", "used_disk", "used_mem", "used_cpu",
              "running_vms")

    def __init__(self, **values):
        for f in self.FIELDS:
            setattr(self, f, int(values.get(f, 0)))

    def test(self, cpu, mem, disk=0):
        """True when ``cpu`` (x100) and ``mem`` (KB) fit in MAX - USAGE."""
        return (self.max_cpu - self.cpu_usage >= cpu and self.max_mem - self.mem_usage >= mem
                and (self.max_disk - self.disk_usage >= disk or disk == 0))

    def add(self, cpu, mem, disk=0):
        """Account a VM placed on the host."""
        self.cpu_usage += cpu
        self.mem_usage += mem
        self.disk_usage += disk
        self.running_vms += 1

    def delete(self, cpu, mem, disk=0):
        """Release what :meth:`add` accounted."""
        self.cpu_usage -= cpu
        self.mem_usage -= mem
        self.disk_usage -= disk
        self.running_vms -= 1

    def to_xml(self, parent):
        el = etree.SubElement(parent, "HOST_SHARE")
        for f in self.FIELDS:
            _sub(el, f.upper(), getattr(self, f))
        return el

    @classmethod
    def from_xml(cls, el):
        return cls(**{f: _int(el, f.upper()) for f in cls.FIELDS})


class Host(PoolObject):
    """A 3.4 host (``src/host/Host.cc``).

    A host created in the 1.4 form (name, im, vmm, tm) keeps its TM driver
    as ``TM_MAD`` in its TEMPLATE (the 3.4 schema has no element for it).
    """

    TABLE = "host_pool"
    ROOT = "HOST"

    def __init__(self, oid, name, im_mad, vm_mad, vn_mad="dummy", state=HOST_INIT,
                 last_mon_time=0, cluster_id=-1, cluster="", share=None, template=None):
        super().__init__(oid, name, template)
        self.im_mad = im_mad
        self.vm_mad = vm_mad
        self.vn_mad = vn_mad
        self.state = state
        self.last_mon_time = last_mon_time
        self.cluster_id = cluster_id
        self.cluster = cluster
        self.share = share or HostShare()
        self.monitoring_started = 0  # reactor seconds when MONITORING began (not stored)

    @property
    def tm_mad(self):
        """The TM driver named at creation (1.4 form) or ``None``."""
        return self.template.get_str("TM_MAD")

    def to_xml(self):
        root = etree.Element("HOST")
        _sub(root, "ID", self.oid)
        _sub(root, "NAME", self.name)
        _sub(root, "STATE", self.state)
        _sub(root, "IM_MAD", self.im_mad)
        _sub(root, "VM_MAD", self.vm_mad)
        _sub(root, "VN_MAD", self.vn_mad)
        _sub(root, "LAST_MON_TIME", self.last_mon_time)
        _sub(root, "CLUSTER_ID", self.cluster_id)
        _sub(root, "CLUSTER", self.cluster)
        self.share.to_xml(root)
        root.append(self.template.to_xml())
        return root

    @classmethod
    def from_xml(cls, el):
        return cls(_int(el, "ID"), _text(el, "NAME"), _text(el, "IM_MAD"), _text(el, "VM_MAD"),
                   _text(el, "VN_MAD"), _int(el, "STATE"), _int(el, "LAST_MON_TIME"),
                   _int(el, "CLUSTER_ID", -1), _text(el, "CLUSTER"),
                   HostShare.from_xml(el.find("HOST_SHARE")),
                   Template.from_xml(el.find("TEMPLATE")))

    def db_columns(self):
        return {"name": self.name, "state": self.state, "last_mon_time": self.last_mon_time,
                "uid": 0, "gid": 0, "owner_u": 1, "group_u": 0, "other_u": 0}


# ---------------------------------------------------------------------------


def ip_to_int(ip):
    """``"192.168.0.5"`` -> int; raises ValueError for a bad address."""
    return int(ipaddress.IPv4Address(ip.strip()))


def int_to_ip(n):
    """int -> dotted quad."""
    return str(ipaddress.IPv4Address(n))


def mac_for(prefix, ip):
    """OpenNebula's MAC for an IP: the 16-bit ``prefix`` then the four octets.

    ``mac_for("02:00", ip_to_int("192.168.0.5")) == "02:00:c0:a8:00:05"``
    (``Leases::Lease::mac_to_string``).
    """
    octets = ip.to_bytes(4, "big")
    return prefix.lower() + ":" + ":".join(f"{b:02x}" for b in octets)


class Lease:
    """One address of a network: ``ip`` as int, ``mac`` string, owner ``vid``."""

    __slots__ = ("ip", "mac", "used", "vid")

    def __init__(self, ip, mac, used=False, vid=-1):
        self.ip = ip
        self.mac = mac
        self.used = used
        self.vid = vid

    def to_xml(self, parent):
        el = etree.SubElement(parent, "LEASE")
        _sub(el, "IP", int_to_ip(self.ip))
        _sub(el, "MAC", self.mac)
        _sub(el, "USED", 1 if self.used else 0)
        _sub(el, "VID", self.vid)
        return el

    def db_body(self):
        return (f"<LEASE><IP>{self.ip}</IP><MAC>{self.mac}</MAC>"
                f"<USED>{1 if self.used else 0}</USED><VID>{self.vid}</VID></LEASE>")

    @classmethod
    def from_db(cls, body):
        el = parse_xml(body)
        return cls(_int(el, "IP"), _text(el, "MAC"), _int(el, "USED") == 1, _int(el, "VID", -1))


class VirtualNetwork(ExtendedInfo, Owned):
    """A 3.4 virtual network (``src/vnm/VirtualNetwork.cc``) with its leases.

    RANGED networks keep only their used leases in :attr:`leases`
    (``ip int -> Lease``) and hand out addresses round-robin from a cursor
    (``src/vnm/RangedLeases.cc``); FIXED networks keep every lease.
    """

    TABLE = "network_pool"
    ROOT = "VNET"

    def __init__(self, oid, name, uid, gid, uname, gname, permissions=None, template=None,
                 vtype=RANGED, bridge="", vlan=0, phydev="", vlan_id="", ip_start=0, ip_end=0,
                 cluster_id=-1, cluster=""):
        super().__init__(oid, name, uid, gid, uname, gname, permissions, template)
        self.type = vtype
        self.bridge = bridge
        self.vlan = vlan
        self.phydev = phydev
        self.vlan_id = vlan_id
        self.ip_start = ip_start
        self.ip_end = ip_end
        self.cluster_id = cluster_id
        self.cluster = cluster
        self.leases = {}
        self.cursor = 0

    @property
    def used_leases(self):
        """How many leases are in use (TOTAL_LEASES)."""
        return sum(1 for lease in self.leases.values() if lease.used)

    def _xml(self, with_leases):
        """The VNET body; ``with_leases`` adds ``<LEASES>`` (``one.vn.info``)."""
        root = etree.Element("VNET")
        _sub(root, "ID", self.oid)
        self._xml_owner(root)
        _sub(root, "CLUSTER_ID", self.cluster_id)
        _sub(root, "CLUSTER", self.cluster)
        _sub(root, "TYPE", self.type)
        _sub(root, "BRIDGE", self.bridge)
        _sub(root, "VLAN", self.vlan)
        _sub(root, "PHYDEV", self.phydev)
        _sub(root, "VLAN_ID", self.vlan_id)
        if self.type == RANGED:
            rng = etree.SubElement(root, "RANGE")
            _sub(rng, "IP_START", int_to_ip(self.ip_start))
            _sub(rng, "IP_END", int_to_ip(self.ip_end))
        _sub(root, "TOTAL_LEASES", self.used_leases)
        root.append(self.template.to_xml())
        if with_leases:
            leases = etree.SubElement(root, "LEASES")
            for ip in sorted(self.leases):
                self.leases[ip].to_xml(leases)
        return root

    @classmethod
    def from_xml(cls, el):
        rng = el.find("RANGE")
        vnet = cls(_int(el, "ID"), _text(el, "NAME"), template=Template.from_xml(el.find("TEMPLATE")),
                   vtype=_int(el, "TYPE"), bridge=_text(el, "BRIDGE"), vlan=_int(el, "VLAN"),
                   phydev=_text(el, "PHYDEV"), vlan_id=_text(el, "VLAN_ID"),
                   ip_start=ip_to_int(rng.findtext("IP_START")) if rng is not None else 0,
                   ip_end=ip_to_int(rng.findtext("IP_END")) if rng is not None else 0,
                   cluster_id=_int(el, "CLUSTER_ID", -1), cluster=_text(el, "CLUSTER"),
                   **cls._read_owner(el))
        return vnet

    def size(self):
        """How many addresses the network can lease."""
        if self.type == RANGED:
            return self.ip_end - self.ip_start + 1
        return len(self.leases)


# ---------------------------------------------------------------------------


class History:
    """One placement of a VM on a host (``src/vm/History.cc``).

    Times are UNIX seconds (0 = not yet). ``vm_dir`` is the VM's directory on
    the host; the 3.4 schema also wants ``TMMAD`` (the host's TM driver).
    """

    FIELDS = ("seq", "hostname", "vm_dir", "hid", "stime", "etime", "vmm_mad", "vnm_mad",
              "tm_mad", "pstime", "petime", "rstime", "retime", "estime", "eetime", "reason")
    TAGS = ("SEQ", "HOSTNAME", "VM_DIR", "HID", "STIME", "ETIME", "VMMMAD", "VNMMAD", "TMMAD",
            "PSTIME", "PETIME", "RSTIME", "RETIME", "ESTIME", "EETIME", "REASON")
    _STRINGS = {"hostname", "vm_dir", "vmm_mad", "vnm_mad", "tm_mad"}

    def __init__(self, **values):
        for f in self.FIELDS:
            setattr(self, f, values.get(f, "" if f in self._STRINGS else 0))

    def to_xml(self, parent=None):
        el = etree.Element("HISTORY") if parent is None else etree.SubElement(parent, "HISTORY")
        for f, tag in zip(self.FIELDS, self.TAGS):
            _sub(el, tag, getattr(self, f))
        return el

    def text(self):
        """The ``<HISTORY>`` element as text (see :meth:`PoolObject._fast_xml`);
        raises :class:`_NotPlain` for a value lxml must write."""
        return "<HISTORY>" + "".join(_el(tag, getattr(self, f))
                                     for f, tag in zip(self.FIELDS, self.TAGS)) + "</HISTORY>"

    def body(self):
        try:
            return self.text()
        except _NotPlain:
            return etree.tostring(self.to_xml(), encoding="unicode")

    @classmethod
    def from_xml(cls, el):
        values = {}
        for f, tag in zip(cls.FIELDS, cls.TAGS):
            values[f] = _text(el, tag) if f in cls._STRINGS else _int(el, tag)
        return cls(**values)


class VirtualMachine(ExtendedInfo, Owned):
    """A 3.4 VM (``src/vm/VirtualMachine.cc``).

    ``memory``/``cpu``/``net_tx``/``net_rx`` are the *monitored* values from
    POLL (KB, percent, bytes); the requested capacity is ``TEMPLATE/CPU`` and
    ``TEMPLATE/MEMORY``. :attr:`history` holds every record, oldest first; the
    pool body shows the last one, ``one.vm.info`` all of them.
    :attr:`user_template` is OpenNebula 4.x's ``USER_TEMPLATE`` (the scheduler's
    ``SCHED_MESSAGE``); the body carries it only when it is not empty, so 3.4
    bodies stay as they were.
    """

    TABLE = "vm_pool"
    ROOT = "VM"

    def __init__(self, oid, name, uid, gid, uname, gname, permissions=None, template=None,
                 state=INIT, lcm_state=LCM_INIT, stime=0, etime=0, deploy_id="", last_poll=0,
                 memory=0, cpu=0, net_tx=0, net_rx=0):
        super().__init__(oid, name, uid, gid, uname, gname, permissions, template)
        self.state = state
        self.lcm_state = lcm_state
        self.stime = stime
        self.etime = etime
        self.deploy_id = deploy_id
        self.last_poll = last_poll
        self.memory = memory
        self.cpu = cpu
        self.net_tx = net_tx
        self.net_rx = net_rx
        self.history = []
        self.user_template = Template()  # 4.x USER_TEMPLATE (SCHED_MESSAGE)
        self.requirements = None  # compiled REQUIREMENTS (not stored)
        self.rank = None  # compiled RANK (not stored)

    @property
    def last_history(self):
        """The current (last) history record, or None."""
        return self.history[-1] if self.history else None

    @property
    def previous_history(self):
        """The record before the last, or None."""
        return self.history[-2] if len(self.history) > 1 else None

    def capacity(self):
        """Requested capacity as (cpu x100, memory KB, disk MB) ints."""
        try:
            cpu = float(self.template.get_str("CPU") or 0)
        except ValueError:
            cpu = 0.0
        try:
            mem = float(self.template.get_str("MEMORY") or 0)
        except ValueError:
            mem = 0.0
        return int(round(cpu * 100)), int(mem * 1024), 0

    def _info_is_body(self):
        # A VM placed at most once lists the same records either way: one
        # serialisation serves the pool body and one.vm.info (and the VM XML
        # the TM and VMM drivers get at each step of a placement).
        return len(self.history) <= 1

    def _fast_xml(self, all_history):
        # What _xml builds, written as text (three to four times quicker:
        # each state change of a placement writes the body to the database).
        # The TEMPLATE is written by lxml (its values are CDATA sections).
        try:
            p = self.permissions
            head = "".join((
                "<VM>", _el("ID", self.oid), _el("UID", self.uid), _el("GID", self.gid),
                _el("UNAME", self.uname), _el("GNAME", self.gname), _el("NAME", self.name),
                "<PERMISSIONS>", "".join(_el(t, v) for t, v in zip(PERMISSION_NAMES, p)),
                "</PERMISSIONS>",
                _el("LAST_POLL", self.last_poll), _el("STATE", self.state),
                _el("LCM_STATE", self.lcm_state), _el("STIME", self.stime),
                _el("ETIME", self.etime), _el("DEPLOY_ID", self.deploy_id),
                _el("MEMORY", self.memory), _el("CPU", self.cpu), _el("NET_TX", self.net_tx),
                _el("NET_RX", self.net_rx)))
            records = self.history if all_history else self.history[-1:]
            history = ("<HISTORY_RECORDS>" + "".join(h.text() for h in records)
                       + "</HISTORY_RECORDS>") if records else "<HISTORY_RECORDS/>"
        except _NotPlain:
            return None
        template = etree.tostring(self.template.to_xml(), encoding="unicode")
        if len(self.user_template):  # 4.x USER_TEMPLATE (SCHED_MESSAGE), as _xml
            template += etree.tostring(self.user_template.to_xml("USER_TEMPLATE"),
                                       encoding="unicode")
        return head + template + history + "</VM>"

    def _xml(self, all_history):
        """The VM body; ``all_history`` lists every record (``one.vm.info``),
        else only the last (pool listings)."""
        root = etree.Element("VM")
        _sub(root, "ID", self.oid)
        self._xml_owner(root)
        for tag, v in (("LAST_POLL", self.last_poll), ("STATE", self.state),
                       ("LCM_STATE", self.lcm_state), ("STIME", self.stime),
                       ("ETIME", self.etime), ("DEPLOY_ID", self.deploy_id),
                       ("MEMORY", self.memory), ("CPU", self.cpu), ("NET_TX", self.net_tx),
                       ("NET_RX", self.net_rx)):
            _sub(root, tag, v)
        root.append(self.template.to_xml())
        if len(self.user_template):
            root.append(self.user_template.to_xml("USER_TEMPLATE"))
        records = etree.SubElement(root, "HISTORY_RECORDS")
        for h in (self.history if all_history else self.history[-1:]):
            h.to_xml(records)
        return root

    @classmethod
    def from_xml(cls, el):
        vm = cls(_int(el, "ID"), _text(el, "NAME"), template=Template.from_xml(el.find("TEMPLATE")),
                 state=_int(el, "STATE"), lcm_state=_int(el, "LCM_STATE"),
                 stime=_int(el, "STIME"), etime=_int(el, "ETIME"),
                 deploy_id=_text(el, "DEPLOY_ID"), last_poll=_int(el, "LAST_POLL"),
                 memory=_int(el, "MEMORY"), cpu=_int(el, "CPU"), net_tx=_int(el, "NET_TX"),
                 net_rx=_int(el, "NET_RX"), **cls._read_owner(el))
        user = el.find("USER_TEMPLATE")
        if user is not None:
            vm.user_template = Template.from_xml(user)
        return vm

    def db_columns(self):
        cols = super().db_columns()
        cols.update(last_poll=self.last_poll, state=self.state, lcm_state=self.lcm_state)
        return cols

    def short_state(self):
        """The CLI's four-letter state (``src/oca/ruby/OpenNebula/VirtualMachine.rb``)."""
        if self.state == ACTIVE:
            return LCM_SHORT[self.lcm_state]
        return VM_SHORT[self.state]


VM_SHORT = ["init", "pend", "hold", "actv", "stop", "susp", "done", "fail"]
LCM_SHORT = ["", "prol", "boot", "runn", "migr", "save", "save", "save", "migr", "prol",
             "epil", "epil", "shut", "shut", "fail", "clea", "unkn"]
