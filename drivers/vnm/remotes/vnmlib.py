"""Shared library of nebtwist's VNM action scripts (run on a host).

Every script ``<remotes>/<driver>/<action>`` (driver: ``dummy``, ``fw``,
``ebtables``, ``802.1Q``, ``ovswitch``; action: ``pre``, ``post``,
``clean``) is the same three lines calling :func:`main`, which takes the
driver from the folder name and the action from the file name, as in
OpenNebula 3.4 (``src/vnm_mad/remotes/<driver>/{pre,post,clean}``).

Invocation: ``<action> <base64 of the VM XML>`` (the ``<VM>`` body as in
``one.vm.info``; ``TEMPLATE/NIC`` elements with ``NIC_ID``, ``NETWORK_ID``,
``MAC``, ``IP``, ``BRIDGE``, ``TARGET``, ``VLAN``, ``VLAN_ID``, ``PHYDEV``,
``WHITE_PORTS_TCP``, ``BLACK_PORTS_TCP``, ``WHITE_PORTS_UDP``,
``BLACK_PORTS_UDP``, ``ICMP``); further arguments (3.4 passed the deploy id)
are ignored. Exit status 0 on success; 1 with a one-line message
``vnm/<driver>/<action>: <why>`` on stderr on failure; 2 for a bad
invocation. The whole argument is checked before anything on the host is
touched, so a malformed argument changes nothing.

Environment: ``VNM_STATE_DIR`` (default ``STATE_DIR`` of ``vnm.conf``, else
``/var/lib/one/vnm``): each driver keeps ``<host name>/<driver>.json`` there
(under an flock on ``<host name>/<driver>.lock``; the host name keeps hosts
sharing the folder, e.g. an NFS ``/var/lib/one``, apart) recording what it
made, so ``clean`` removes only that; ``VNM_OVS_DATAPATH`` (OVS bridges'
``datapath_type``; ``netdev`` for the userspace datapath); ``VNM_OVS_DB``
(``ovs-vsctl --db``, e.g. ``unix:/run/ovs/db.sock``; ``ovs-ofctl`` then talks
to ``unix:<its folder>/<bridge>.mgmt``, or to ``$OVS_RUNDIR/<bridge>.mgmt``
when ``OVS_RUNDIR`` is set); ``PATH`` (the commands are looked up there).

Drivers (OpenNebula 3.4 source of each behaviour in brackets):

* ``dummy``: nothing (``dummy/*``), but the argument is still checked.
* ``fw`` [``fw/Firewall.rb``]: ``post`` makes, per NIC with firewall
  attributes, a chain jumped to from ``FORWARD -m physdev
  --physdev-is-bridged --physdev-out <tap>``; ``WHITE_PORTS_TCP/UDP`` accept
  established traffic and the listed ports and drop the rest of that
  protocol; else ``BLACK_PORTS_TCP/UDP`` drop the listed ports; ``ICMP`` =
  ``drop`` (or ``no``) accepts established ICMP and drops the rest. Ports:
  ``22,80,1000:2000``. ``clean`` removes its chains and the rules jumping
  to them. Each is one atomic ``iptables-restore --noflush``.
* ``ebtables`` [``ebtables/Ebtables.rb``], NICs with ``VLAN=YES``: ``post``
  adds ``FORWARD -s ! <net mac>/ff:ff:ff:ff:ff:00 -o <tap> -j DROP`` (net
  mac: the NIC's MAC with the last byte ``00``) and ``FORWARD -s ! <mac> -i
  <tap> -j DROP``; ``clean`` deletes exactly the rules it recorded. (3.4
  zeroes only the last byte, so one network is one /24 of 3.4's MAC = prefix
  + IP scheme.)
* ``802.1Q`` [``802.1Q/HostManaged.rb``], NICs with ``VLAN=YES`` and
  ``PHYDEV``: ``pre`` makes the bridge ``BRIDGE`` and ``<PHYDEV>.<VLAN_ID>``
  (VLAN_ID default ``START_VLAN + NETWORK_ID``), attaches and ups them;
  ``clean`` drops the VM from the users of that bridge and removes the VLAN
  device and the bridge when the last user leaves, each only if made here.
* ``ovswitch`` [``ovswitch/OpenvSwitch.rb``]: ``pre`` makes the OVS bridge
  when missing (``datapath_type=$VNM_OVS_DATAPATH``; libvirt needs it before
  the domain starts); ``post`` sets the port's ``tag`` (``VLAN=YES``) and
  adds anti-spoofing flows: ARP from the port only with ``arp_spa=<IP>``
  (when the NIC has an IP), frames with ``dl_src=<MAC>`` go ``normal``
  (priority 40000), the rest from the port is dropped (39000); ``clean``
  deletes those flows (strictly, one by one), the port if still there, and
  the bridge if it was made here and has no port left.

Departures from 3.4, on purpose:

* fw chains are named ``one-<vid>-<nic_id>`` (3.4: ``one-<vid>-<network_id>``,
  which collides for two NICs of one network); the jump adds
  ``--physdev-is-bridged``; established means ``ESTABLISHED,RELATED``; long
  port lists are split in ``multiport`` rules of at most 15 ports; a
  malformed port range is an error (3.4 silently skipped the rule).
* Commands are ``ip link`` (3.4: ``brctl``, ``vconfig``), ``iptables -w``,
  without ``sudo`` when run as root (``SUDO`` in ``vnm.conf``).
* Every driver records what it made in ``VNM_STATE_DIR`` and cleans only
  that (3.4 grepped the live rules by tap or MAC, and 802.1Q never removed
  anything); 802.1Q keeps the VM ids using each bridge.
* ovswitch handles every NIC with a ``BRIDGE`` (3.4: only ``VLAN=YES``; the anti-spoofing
  flows come from later releases); the bridge is created when missing.
* ``TARGET`` missing means ``one-<vid>-<nic_id>`` (3.4 asked the hypervisor).
"""

import base64
import binascii
import fcntl
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVERS = ("dummy", "fw", "ebtables", "802.1Q", "ovswitch")
ACTIONS = ("pre", "post", "clean")

#: Defaults of vnm.conf's keys.
DEFAULTS = {
    "STATE_DIR": "/var/lib/one/vnm",
    "START_VLAN": "2",
    "SUDO": "auto",
    "IP": "ip",
    "IPTABLES": "iptables -w",
    "IPTABLES_RESTORE": "iptables-restore -w --noflush",
    "EBTABLES": "ebtables",
    "OVS_VSCTL": "ovs-vsctl --timeout=20",
    "OVS_OFCTL": "ovs-ofctl",
    "OVS_DATAPATH": "",
    "OVS_PORT_WAIT": "10",
}

_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
_PORTS = re.compile(r"^(?:\d+|\d+:\d+)(?:,(?:\d+|\d+:\d+))*$")
_FW_ATTRS = ("WHITE_PORTS_TCP", "BLACK_PORTS_TCP", "WHITE_PORTS_UDP",
             "BLACK_PORTS_UDP", "ICMP")


class VNMError(Exception):
    """A failure reported to the front-end: the message goes to stderr."""


# -- configuration ---------------------------------------------------------

def load_conf(path=os.path.join(HERE, "vnm.conf")):
    """``vnm.conf`` as a dict (``KEY = value`` lines, ``#`` comments) over
    :data:`DEFAULTS`. A missing file gives the defaults."""
    conf = dict(DEFAULTS)
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                key, sep, value = line.partition("=")
                if not sep:
                    raise VNMError(f"{path}:{n}: expected KEY = value")
                conf[key.strip().upper()] = value.strip().strip('"')
    except FileNotFoundError:
        pass
    return conf


# -- the VM argument -------------------------------------------------------

class Nic:
    """One ``TEMPLATE/NIC`` of the VM: ``attrs`` (upper-case names to
    text) plus the checked values the drivers use."""

    def __init__(self, vid, attrs):
        self.attrs = attrs
        self.vid = vid
        self.nic_id = attrs.get("NIC_ID", "0")
        if not self.nic_id.isdigit():
            raise VNMError(f"NIC_ID {self.nic_id!r} is not a number")
        self.network_id = attrs.get("NETWORK_ID", "")
        if self.network_id and not self.network_id.lstrip("-").isdigit():
            raise VNMError(f"NETWORK_ID {self.network_id!r} is not a number")
        self.tap = attrs.get("TARGET") or f"one-{vid}-{self.nic_id}"
        _ifname(self.tap, "TARGET")
        self.mac = attrs.get("MAC", "").lower()
        if self.mac and not _MAC.match(self.mac):
            raise VNMError(f"MAC {self.mac!r} of NIC {self.nic_id} is malformed")
        self.ip = attrs.get("IP", "")
        if self.ip:
            m = _IPV4.match(self.ip)
            if not m or any(int(x) > 255 for x in m.groups()):
                raise VNMError(f"IP {self.ip!r} of NIC {self.nic_id} is malformed")
        self.bridge = attrs.get("BRIDGE", "")
        if self.bridge:
            _ifname(self.bridge, "BRIDGE")
        self.vlan = attrs.get("VLAN", "").upper() == "YES"
        self.phydev = attrs.get("PHYDEV", "")
        if self.phydev:
            _ifname(self.phydev, "PHYDEV")
        vlan_id = attrs.get("VLAN_ID", "")
        if vlan_id and (not vlan_id.isdigit() or not 1 <= int(vlan_id) <= 4094):
            raise VNMError(f"VLAN_ID {vlan_id!r} of NIC {self.nic_id} is not in 1..4094")
        self._vlan_id = vlan_id
        for key in _FW_ATTRS[:4]:
            value = attrs.get(key, "").replace(" ", "")
            if value and not _PORTS.match(value):
                raise VNMError(f"{key} {attrs[key]!r} of NIC {self.nic_id} is not "
                               "a port list like 22,80,1000:2000")
            if value and any(int(p) > 65535 for p in re.split("[,:]", value)):
                raise VNMError(f"{key} {attrs[key]!r}: a port above 65535")

    def vlan_id(self, conf):
        """``VLAN_ID``, else ``START_VLAN + NETWORK_ID`` (3.4
        ``HostManaged.rb``); :class:`VNMError` when neither is known."""
        if self._vlan_id:
            return int(self._vlan_id)
        if self.network_id:
            return int(conf["START_VLAN"]) + int(self.network_id)
        raise VNMError(f"NIC {self.nic_id} has VLAN=YES but no VLAN_ID nor NETWORK_ID")

    def ports(self, key):
        """The port list of ``key`` without blanks, or ``""``."""
        return self.attrs.get(key, "").replace(" ", "")


class VM:
    """The VM of the argument: ``vid`` (str of digits) and ``nics``."""

    def __init__(self, vid, nics):
        self.vid = vid
        self.nics = nics


def _ifname(name, what):
    if not _IFNAME.match(name):
        raise VNMError(f"{what} {name!r} is not a usable interface name "
                       "(1-15 of A-Z a-z 0-9 _ . : -)")


def parse_vm(argument):
    """The :class:`VM` of a base64 VM XML argument (str).

    Raises :class:`VNMError` for bad base64, bad XML, a root other than
    ``VM``, a missing or non-numeric ``ID``, or a NIC value that cannot be
    used safely in a command (name, MAC, IP, VLAN_ID, port list)."""
    try:
        raw = base64.b64decode(argument.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise VNMError(f"the argument is not base64 ({e})") from None
    if not raw.strip():
        raise VNMError("the argument decodes to nothing (expected a VM XML)")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as e:
        raise VNMError(f"the argument is not a VM XML ({e})") from None
    if root.tag != "VM":
        raise VNMError(f"the argument's XML root is <{root.tag}>, not <VM>")
    vid = (root.findtext("ID") or "").strip()
    if not vid.isdigit():
        raise VNMError(f"the VM XML has no numeric ID (got {vid!r})")
    nics = []
    for el in root.findall("TEMPLATE/NIC"):
        attrs = {child.tag.upper(): (child.text or "").strip() for child in el}
        nics.append(Nic(vid, attrs))
    return VM(vid, nics)


# -- commands --------------------------------------------------------------

class Runner:
    """Runs host commands (argv lists) named by ``vnm.conf`` keys."""

    def __init__(self, conf):
        self.conf = conf
        sudo = conf.get("SUDO", "auto").lower()
        self.sudo = (["sudo", "-n"] if sudo == "yes" or (sudo == "auto" and os.geteuid() != 0)
                     else [])

    def cmd(self, key):
        return self.sudo + shlex.split(self.conf[key])

    def run(self, key, *args, check=True, input=None):
        """``(code, stdout, stderr)`` of command ``key`` with ``args`` (and
        ``input``, str, on its stdin); with ``check``, a non-zero code
        raises :class:`VNMError`."""
        argv = self.cmd(key) + [str(a) for a in args]
        try:
            p = subprocess.run(argv, input=input, capture_output=True, text=True,
                               errors="replace", timeout=60,
                               **({} if input is not None else {"stdin": subprocess.DEVNULL}))
        except FileNotFoundError:
            raise VNMError(f"command not found: {argv[0]}") from None
        except OSError as e:
            raise VNMError(f"cannot run {argv[0]}: {e.strerror}") from None
        except subprocess.TimeoutExpired:
            raise VNMError(f"timed out: {shlex.join(argv)}") from None
        if check and p.returncode != 0:
            raise VNMError(f"{shlex.join(argv)} failed ({p.returncode}): "
                           f"{(p.stderr or p.stdout).strip()}")
        return p.returncode, p.stdout, p.stderr


# -- state -----------------------------------------------------------------

class State:
    """``<STATE_DIR>/<host name>/<driver>.json`` under an exclusive flock; use as a
    context manager: ``data`` (dict) is written back atomically on a clean
    exit, also after a :class:`VNMError` (so partial work is recorded)."""

    def __init__(self, conf, driver):
        self.dir = os.path.join(os.environ.get("VNM_STATE_DIR") or conf["STATE_DIR"],
                                os.uname().nodename or "localhost")
        self.path = os.path.join(self.dir, f"{driver}.json")
        self.lock_path = os.path.join(self.dir, f"{driver}.lock")
        self.data = {}

    def __enter__(self):
        try:
            os.makedirs(self.dir, exist_ok=True)
            self._lock = open(self.lock_path, "a")
        except OSError as e:
            raise VNMError(f"cannot use the state folder {self.dir}: {e.strerror}") from None
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            with open(self.path, encoding="utf-8") as f:
                self.data = json.load(f)
        except FileNotFoundError:
            self.data = {}
        except ValueError as e:
            self._lock.close()
            raise VNMError(f"state file {self.path} is corrupt: {e}") from None
        return self

    def save(self):
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".state-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def __exit__(self, kind, value, tb):
        try:
            if kind is None or issubclass(kind, VNMError):
                self.save()
        finally:
            self._lock.close()
        return False


# -- drivers ---------------------------------------------------------------

class Driver:
    """Base: ``pre``, ``post``, ``clean`` do nothing."""

    name = "dummy"

    def __init__(self, conf, runner):
        self.conf = conf
        self.r = runner

    def nics(self, vm):
        return vm.nics

    def pre(self, vm):
        pass

    def post(self, vm):
        pass

    def clean(self, vm):
        pass


class Firewall(Driver):
    """iptables per-NIC chains (3.4 ``fw/Firewall.rb``)."""

    name = "fw"

    def nics(self, vm):
        return [n for n in vm.nics if self.rules(n)]

    @staticmethod
    def chain(nic):
        return f"one-{nic.vid}-{nic.nic_id}"

    @staticmethod
    def _multiport(ports):
        """Split a port list in chunks of at most 15 multiport ports."""
        chunks, cur, size = [], [], 0
        for item in ports.split(","):
            cost = 2 if ":" in item else 1
            if size + cost > 15:
                chunks.append(",".join(cur))
                cur, size = [], 0
            cur.append(item)
            size += cost
        chunks.append(",".join(cur))
        return chunks

    @classmethod
    def rules(cls, nic):
        """The NIC's chain's rules (argv lists after ``-A <chain>``)."""
        rules = []
        established = ["-m", "state", "--state", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
        for proto in ("tcp", "udp"):
            white = nic.ports(f"WHITE_PORTS_{proto.upper()}")
            black = nic.ports(f"BLACK_PORTS_{proto.upper()}")
            if white:
                rules.append(["-p", proto] + established)
                for chunk in cls._multiport(white):
                    rules.append(["-p", proto, "-m", "multiport", "--dports", chunk,
                                  "-j", "ACCEPT"])
                rules.append(["-p", proto, "-j", "DROP"])
            elif black:
                for chunk in cls._multiport(black):
                    rules.append(["-p", proto, "-m", "multiport", "--dports", chunk,
                                  "-j", "DROP"])
        if nic.attrs.get("ICMP", "").lower() in ("drop", "no"):
            rules.append(["-p", "icmp"] + established)
            rules.append(["-p", "icmp", "-j", "DROP"])
        return rules

    @staticmethod
    def jump(nic, chain):
        return ["FORWARD", "-m", "physdev", "--physdev-is-bridged",
                "--physdev-out", nic.tap, "-j", chain]

    def post(self, vm):
        """Checks no NIC's chain is someone else's, then makes every chain,
        its rules and its jump in one atomic ``iptables-restore --noflush``."""
        nics = self.nics(vm)
        if not nics:
            return
        with State(self.conf, self.name) as st:
            chains = st.data.setdefault("chains", {})
            listing = self.r.run("IPTABLES", "-S")[1].splitlines()
            existing = {line.split()[1] for line in listing if line.startswith("-N ")}
            for nic in nics:
                chain = self.chain(nic)
                if chain in existing and chain not in chains:
                    raise VNMError(f"iptables chain {chain} exists and was not made "
                                   "by this driver; left alone")
            renew = [self.chain(n) for n in nics if self.chain(n) in chains]
            self._remove(renew)              # ours from an earlier post
            for chain in renew:
                del chains[chain]
            batch = ["*filter"]
            for nic in nics:
                chain = self.chain(nic)
                batch.append(f":{chain} - [0:0]")
                batch += [" ".join(["-A", chain] + rule) for rule in self.rules(nic)]
                batch.append(" ".join(["-A"] + self.jump(nic, chain)))
            batch.append("COMMIT")
            self.r.run("IPTABLES_RESTORE", input="\n".join(batch) + "\n")
            for nic in nics:
                chains[self.chain(nic)] = {"vid": vm.vid, "tap": nic.tap,
                                           "jump": self.jump(nic, self.chain(nic))}

    def _remove(self, chains):
        """Removes ``chains`` (names) and every rule jumping to them, in
        one ``iptables-restore --noflush``; chains already gone are
        skipped."""
        listing = self.r.run("IPTABLES", "-S")[1].splitlines()
        existing = {line.split()[1] for line in listing if line.startswith("-N ")}
        chains = [c for c in chains if c in existing]
        if not chains:
            return
        batch = ["*filter"]
        for line in listing:
            words = line.split()
            if words[:1] == ["-A"] and words[-2:-1] == ["-j"] and words[-1] in chains:
                batch.append("-D" + line[2:])
        for chain in chains:
            batch += [f"-F {chain}", f"-X {chain}"]
        batch.append("COMMIT")
        self.r.run("IPTABLES_RESTORE", input="\n".join(batch) + "\n")

    def clean(self, vm):
        with State(self.conf, self.name) as st:
            chains = st.data.setdefault("chains", {})
            mine = sorted(c for c, rec in chains.items() if rec.get("vid") == vm.vid)
            self._remove(mine)
            for chain in mine:
                del chains[chain]


class Ebtables(Driver):
    """ebtables MAC anti-spoofing and network isolation (3.4
    ``ebtables/Ebtables.rb``)."""

    name = "ebtables"

    def nics(self, vm):
        return [n for n in vm.nics if n.vlan and n.mac]

    @staticmethod
    def rules(nic):
        net_mac = ":".join(nic.mac.split(":")[:-1] + ["00"])
        return [["FORWARD", "-s", "!", f"{net_mac}/ff:ff:ff:ff:ff:00", "-o", nic.tap,
                 "-j", "DROP"],
                ["FORWARD", "-s", "!", nic.mac, "-i", nic.tap, "-j", "DROP"]]

    @staticmethod
    def _norm(text):
        """A rule text with MACs lower-case and zero-padded."""
        def pad(m):
            return ":".join(b.zfill(2) for b in m.group(0).lower().split(":"))
        return " ".join(re.sub(r"\b[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2}){5}\b", pad,
                               text).split())

    def _listed(self):
        out = self.r.run("EBTABLES", "-L", "FORWARD")[1]
        return {self._norm(line) for line in out.splitlines() if line.startswith("-")}

    def post(self, vm):
        with State(self.conf, self.name) as st:
            mine = st.data.setdefault("rules", [])
            listed = self._listed()
            for nic in self.nics(vm):
                for rule in self.rules(nic):
                    if self._norm(" ".join(rule[1:])) in listed:
                        continue    # ours from an earlier post, or an operator's
                    self.r.run("EBTABLES", "-A", *rule)
                    mine.append({"vid": vm.vid, "rule": rule})

    def clean(self, vm):
        with State(self.conf, self.name) as st:
            mine = st.data.setdefault("rules", [])
            listed = self._listed()
            keep = []
            for rec in mine:
                if rec["vid"] != vm.vid:
                    keep.append(rec)
                    continue
                if self._norm(" ".join(rec["rule"][1:])) in listed:
                    self.r.run("EBTABLES", "-D", *rec["rule"])
            st.data["rules"] = keep


class Vlan8021Q(Driver):
    """Bridge and 802.1Q sub-interface per VLAN (3.4
    ``802.1Q/HostManaged.rb``)."""

    name = "802.1Q"

    def nics(self, vm):
        return [n for n in vm.nics if n.vlan and n.phydev]

    def _exists(self, dev):
        return self.r.run("IP", "link", "show", "dev", dev, check=False)[0] == 0

    def _master(self, dev):
        out = self.r.run("IP", "-o", "link", "show", "dev", dev)[1]
        m = re.search(r"\smaster\s+(\S+)", out)
        return m.group(1) if m else None

    def _ports(self, bridge):
        out = self.r.run("IP", "-o", "link", "show", "master", bridge, check=False)[1]
        return [m.group(1).split("@")[0]
                for m in re.finditer(r"^\d+:\s+(\S+?):", out, re.M)]

    def pre(self, vm):
        plans = []
        for nic in self.nics(vm):
            vlan = nic.vlan_id(self.conf)
            bridge = nic.bridge or f"onebr{nic.network_id}"
            _ifname(bridge, "BRIDGE")
            dev = f"{nic.phydev}.{vlan}"
            _ifname(dev, "VLAN device")
            plans.append((nic, vlan, bridge, dev))
        with State(self.conf, self.name) as st:
            bridges = st.data.setdefault("bridges", {})
            devs = st.data.setdefault("vlan_devs", {})
            for nic, vlan, bridge, dev in plans:
                made_bridge = False
                if not self._exists(bridge):
                    self.r.run("IP", "link", "add", "name", bridge, "type", "bridge")
                    made_bridge = True
                    bridges[bridge] = {"created": True, "users": []}
                    self.r.run("IP", "link", "set", "dev", bridge, "up")
                rec = bridges.setdefault(bridge, {"created": False, "users": []})
                if not self._exists(dev):
                    if not self._exists(nic.phydev):
                        self._undo(bridge, made_bridge, bridges)
                        raise VNMError(f"PHYDEV {nic.phydev} does not exist on this host")
                    code, _, err = self.r.run("IP", "link", "add", "link", nic.phydev,
                                              "name", dev, "type", "vlan", "id", vlan,
                                              check=False)
                    if code != 0:
                        self._undo(bridge, made_bridge, bridges)
                        if "Unknown device type" in err:
                            raise VNMError(
                                f"cannot create {dev}: this host's kernel has no 802.1Q "
                                "VLAN support (ip: 'Unknown device type'; load module "
                                "8021q)")
                        raise VNMError(f"cannot create {dev}: {err.strip()}")
                    devs[dev] = {"created": True, "bridge": bridge}
                    self.r.run("IP", "link", "set", "dev", dev, "up")
                if self._master(dev) != bridge:
                    self.r.run("IP", "link", "set", "dev", dev, "master", bridge)
                if vm.vid not in rec["users"]:
                    rec["users"].append(vm.vid)

    def _undo(self, bridge, made_bridge, bridges):
        if made_bridge:
            self.r.run("IP", "link", "del", "dev", bridge, check=False)
            bridges.pop(bridge, None)

    def clean(self, vm):
        with State(self.conf, self.name) as st:
            bridges = st.data.setdefault("bridges", {})
            devs = st.data.setdefault("vlan_devs", {})
            for bridge, rec in sorted(bridges.items()):
                if vm.vid not in rec["users"]:
                    continue
                rec["users"].remove(vm.vid)
                if rec["users"]:
                    continue
                mine = [d for d, r in devs.items() if r.get("bridge") == bridge]
                for dev in mine:
                    if devs[dev].get("created") and self._exists(dev):
                        self.r.run("IP", "link", "del", "dev", dev)
                    del devs[dev]
                if rec.get("created") and self._exists(bridge):
                    if not self._ports(bridge):
                        self.r.run("IP", "link", "del", "dev", bridge)
                    else:
                        continue   # someone else's port on it: keep bridge and record
                del bridges[bridge]


class OpenvSwitch(Driver):
    """OVS bridge, VLAN tag and anti-spoofing flows (3.4
    ``ovswitch/OpenvSwitch.rb``)."""

    name = "ovswitch"

    def nics(self, vm):
        return [n for n in vm.nics if n.bridge]

    def vsctl(self, *args, check=True):
        db = os.environ.get("VNM_OVS_DB")
        return self.r.run("OVS_VSCTL", *([f"--db={db}"] if db else []), *args, check=check)

    def ofctl(self, command, *args, bridge, options=(), check=True, input=None):
        """``ovs-ofctl`` on ``bridge``'s management socket: in
        ``$OVS_RUNDIR``, else beside a ``unix:`` ``VNM_OVS_DB``, else the
        default run dir."""
        rundir = os.environ.get("OVS_RUNDIR")
        db = os.environ.get("VNM_OVS_DB", "")
        if not rundir and db.startswith("unix:"):
            rundir = os.path.dirname(db[5:])
        target = f"unix:{rundir}/{bridge}.mgmt" if rundir else bridge
        return self.r.run("OVS_OFCTL", *options, command, target, *args, check=check,
                          input=input)

    def flow_mods(self, bridge, lines):
        """One ``ovs-ofctl add-flows <bridge> -`` for ``lines`` (``add
        <flow>`` / ``delete_strict <match>``)."""
        if lines:
            self.ofctl("add-flows", "-", bridge=bridge, input="".join(f"{x}\n" for x in lines))

    def _br_exists(self, bridge):
        code, _, err = self.vsctl("br-exists", bridge, check=False)
        if code not in (0, 2):
            raise VNMError(f"ovs-vsctl br-exists {bridge}: {err.strip()}")
        return code == 0

    def pre(self, vm):
        datapath = os.environ.get("VNM_OVS_DATAPATH") or self.conf.get("OVS_DATAPATH")
        with State(self.conf, self.name) as st:
            bridges = st.data.setdefault("bridges", {})
            for nic in self.nics(vm):
                if self._br_exists(nic.bridge):
                    continue
                args = ["add-br", nic.bridge]
                if datapath:
                    args += ["--", "set", "bridge", nic.bridge, f"datapath_type={datapath}"]
                self.vsctl(*args)
                bridges[nic.bridge] = {"created": True}

    def flows(self, nic, ofport):
        """The anti-spoofing flows: ``(match, actions)`` pairs of
        ``ovs-ofctl`` strings; the match is exact for ``--strict
        del-flows``."""
        flows = []
        if nic.ip:
            flows.append((f"priority=40002,in_port={ofport},arp,dl_src={nic.mac},"
                          f"arp_spa={nic.ip}", "normal"))
            flows.append((f"priority=40001,in_port={ofport},arp", "drop"))
        flows.append((f"priority=40000,in_port={ofport},dl_src={nic.mac}", "normal"))
        flows.append((f"priority=39000,in_port={ofport}", "drop"))
        return flows

    def _ofport(self, tap):
        deadline = time.monotonic() + float(self.conf["OVS_PORT_WAIT"])
        while True:
            code, out, err = self.vsctl("--if-exists", "get", "Interface", tap, "ofport",
                                        check=False)
            out = out.strip()
            if code == 0 and out.isdigit() and int(out) > 0:
                return int(out)
            if time.monotonic() > deadline:
                detail = f": {err.strip()}" if err.strip() else ""
                raise VNMError(f"port {tap} has no OpenFlow port number on OVS "
                               f"(ofport {out or 'missing'}{detail})")
            time.sleep(0.1)

    def post(self, vm):
        with State(self.conf, self.name) as st:
            ports = st.data.setdefault("ports", {})
            for nic in self.nics(vm):
                if not nic.mac:
                    raise VNMError(f"NIC {nic.nic_id} has no MAC")
                ofport = self._ofport(nic.tap)
                old = ports.pop(nic.tap, None)
                if old and old["bridge"] != nic.bridge:
                    self._del_flows(old)
                    old = None
                rec = {"vid": vm.vid, "bridge": nic.bridge, "ofport": ofport, "flows": [],
                       "tag": None}
                ports[nic.tap] = rec
                if nic.vlan:
                    tag = nic.vlan_id(self.conf)
                    self.vsctl("set", "Port", nic.tap, f"tag={tag}")
                    rec["tag"] = tag
                flows = self.flows(nic, ofport)
                self.flow_mods(nic.bridge,
                               [f"delete_strict {m}" for m in (old or {}).get("flows", [])]
                               + [f"add {m},actions={a}" for m, a in flows])
                rec["flows"] = [m for m, _ in flows]

    def _del_flows(self, rec, exists=None):
        if exists is None:
            exists = self._br_exists(rec["bridge"])
        if exists:
            self.flow_mods(rec["bridge"], [f"delete_strict {m}" for m in rec["flows"]])

    def clean(self, vm):
        with State(self.conf, self.name) as st:
            ports = st.data.setdefault("ports", {})
            bridges = st.data.setdefault("bridges", {})
            touched = set()
            for tap, rec in sorted(ports.items()):
                if rec["vid"] != vm.vid:
                    continue
                if self._br_exists(rec["bridge"]):
                    self._del_flows(rec, exists=True)
                    self.vsctl("--if-exists", "del-port", rec["bridge"], tap)
                touched.add(rec["bridge"])
                del ports[tap]
            for nic in self.nics(vm):
                touched.add(nic.bridge)
            for bridge in sorted(touched):
                if not bridges.get(bridge, {}).get("created"):
                    continue
                if any(r["bridge"] == bridge for r in ports.values()):
                    continue
                if not self._br_exists(bridge):
                    del bridges[bridge]
                    continue
                if self.vsctl("list-ports", bridge)[1].strip():
                    continue
                self.vsctl("del-br", bridge)
                del bridges[bridge]


CLASSES = {c.name: c for c in (Driver, Firewall, Ebtables, Vlan8021Q, OpenvSwitch)}


# -- entry point -----------------------------------------------------------

def run(driver, action, argument, conf=None):
    """Run ``action`` of ``driver`` for the base64 VM XML ``argument``;
    raises :class:`VNMError`."""
    conf = conf or load_conf()
    vm = parse_vm(argument)
    impl = CLASSES[driver](conf, Runner(conf))
    getattr(impl, action)(vm)


def main(script=None, argv=None):
    """Script entry: driver and action from ``script``'s path (default
    ``sys.argv[0]``), the argument from ``argv`` (default
    ``sys.argv[1:]``); exits 0, 1 (:class:`VNMError`) or 2 (usage)."""
    script = os.path.abspath(script or sys.argv[0])
    argv = sys.argv[1:] if argv is None else argv
    driver = os.path.basename(os.path.dirname(script))
    action = os.path.basename(script)
    prog = f"vnm/{driver}/{action}"
    if driver not in CLASSES or action not in ACTIONS:
        print(f"{prog}: unknown driver or action", file=sys.stderr)
        sys.exit(2)
    if len(argv) < 1:
        print(f"usage: {prog} <base64 VM XML> [deploy id]", file=sys.stderr)
        sys.exit(2)
    try:
        run(driver, action, argv[0])
    except VNMError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:     # a bug: still one line for the front-end's log
        print(f"{prog}: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
