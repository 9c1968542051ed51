"""The ElasticHosts front's names (UUIDs, device keys) and its configuration
file (``elastichosts.conf``).

UUIDs. ElasticHosts names every object by a UUID; nebtwist's objects have
integer ids. A drive, server or user UUID here is a version-4-shaped UUID
whose first groups say the kind and whose last group is the id in hex, so it
is stable and needs no table::

    4e656274-6472-4000-8000-00000000002a    drive  = image 42   ("Nebt" "dr")
    4e656274-7376-4000-8000-000000000007    server = VM 7       ("Nebt" "sv")
    4e656274-7573-4000-8000-000000000000    user   = user 0     ("Nebt" "us")

Standard drives (libcloud's ElasticHosts driver offers a hard-coded table of
ElasticHosts' own standard drive UUIDs as its images) are mapped to images by
name with ``STANDARD_DRIVE = [ UUID = ..., IMAGE = ... ]`` in the conf file.
"""

import math
import re
from dataclasses import dataclass, field

from nebtwist.core.config import ConfigError, read_template

_PREFIX = "4e656274"
KINDS = {"drive": "6472", "server": "7376", "user": "7573"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")


def make_uuid(kind, oid):
    """The UUID (str) of object ``oid`` (int >= 0) of ``kind`` (``drive``,
    ``server`` or ``user``)."""
    return f"{_PREFIX}-{KINDS[kind]}-4000-8000-{oid:012x}"


def is_uuid(text):
    """Whether ``text`` has a UUID's shape."""
    return bool(_UUID.match(text or ""))


def parse_uuid(kind, text):
    """The id (int) a ``kind`` UUID encodes, or None when ``text`` is not one."""
    if not is_uuid(text):
        return None
    parts = text.lower().split("-")
    if parts[0] != _PREFIX or parts[1] != KINDS[kind] or parts[2:4] != ["4000", "8000"]:
        return None
    return int(parts[4], 16)


#: An ElasticHosts device key: IDE bus 0-1 unit 0-1, SCSI unit 0-7, virtio block 0-7.
DEVICE = re.compile(r"^(ide:[01]:[01]|scsi:0:[0-7]|block:[0-7])$")


def device_target(device):
    """The DISK TARGET of an ElasticHosts device key (``ide:0:1`` -> ``hdb``)."""
    bus, _, rest = device.partition(":")
    if bus == "ide":
        b, u = rest.split(":")
        return "hd" + "abcd"[int(b) * 2 + int(u)]
    if bus == "scsi":
        return "sd" + "abcdefgh"[int(rest.split(":")[1])]
    return "vd" + "abcdefgh"[int(rest)]


def target_device(target):
    """The device key of a DISK TARGET, or None (inverse of :func:`device_target`)."""
    target = target or ""
    if len(target) != 3:
        return None
    prefix, letter = target[:2], target[2]
    if prefix == "hd" and letter in "abcd":
        n = "abcd".index(letter)
        return f"ide:{n // 2}:{n % 2}"
    if prefix in ("sd", "vd") and letter in "abcdefgh":
        n = "abcdefgh".index(letter)
        return f"scsi:0:{n}" if prefix == "sd" else f"block:{n}"
    return None


class ConfError(Exception):
    """elastichosts.conf cannot be read or holds a bad value (one line)."""


@dataclass
class Settings:
    """What ``elastichosts.conf`` sets (see the shipped file for each key).

    :ivar cpu_mhz: MHz of one CPU: a server's ``cpu`` (MHz) / cpu_mhz = the
        VM's CPU (cores; at least 0.01).
    :ivar network: name or id of the virtual network ``nic:0:dhcp`` attaches
        to; None: the user's first usable network (lowest id).
    :ivar persistent: the default of a server's ``persistent`` key (bool).
    :ivar stop_timeout: seconds ``/stop`` waits for the VM to be stopped.
    :ivar json_replies: answer JSON to ``Accept: application/json`` (bool;
        ElasticHosts); False: always text (CloudSigma API 1.0).
    :ivar standard: ``{uuid (lower case): image name}`` of the standard drives.
    """

    cpu_mhz: float = 1000.0
    network: str = None
    persistent: bool = False
    stop_timeout: float = 120.0
    json_replies: bool = True
    standard: dict = field(default_factory=dict)

    def cpu_cores(self, mhz):
        """The VM's CPU (float cores, >= 0.01) for ``mhz``."""
        return max(0.01, round(mhz / self.cpu_mhz, 2))

    def cpu_mhz_of(self, cores):
        """A server's ``cpu`` (int MHz) for a VM's CPU (float cores)."""
        return int(round(cores * self.cpu_mhz))

    @staticmethod
    def vcpus_for(cores):
        """``smp auto``: one VCPU per started CPU."""
        return max(1, math.ceil(cores - 1e-9))

    def standard_uuid(self, image_name):
        """The standard drive UUID mapped to ``image_name``, or None."""
        for uuid, name in self.standard.items():
            if name == image_name:
                return uuid
        return None


def _number(template, key, default, path):
    value = template.get_str(key)
    if value is None or not value.strip():
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfError(f"{path}: {key} must be a number, not {value!r}") from None
    if number <= 0:
        raise ConfError(f"{path}: {key} must be positive, not {value!r}")
    return number


def _flag(template, key, default, path):
    value = (template.get_str(key) or default).strip().lower()
    if value not in ("true", "false"):
        raise ConfError(f"{path}: {key} must be true or false, not {value!r}")
    return value == "true"


def load(path):
    """Read ``elastichosts.conf`` (OpenNebula template syntax).

    :return: :class:`Settings`.
    :raises ConfError: an unreadable file, a syntax error, a bad value.
    """
    try:
        template, _text = read_template(path)
    except ConfigError as e:
        raise ConfError(str(e)) from None
    settings = Settings(cpu_mhz=_number(template, "CPU_MHZ", 1000.0, path),
                        stop_timeout=_number(template, "STOP_TIMEOUT", 120.0, path))
    network = (template.get_str("NETWORK") or "").strip()
    settings.network = network or None
    settings.persistent = _flag(template, "PERSISTENT", "false", path)
    settings.json_replies = _flag(template, "JSON_REPLIES", "true", path)
    for vector in template.get_all("STANDARD_DRIVE"):
        if not isinstance(vector, dict):
            raise ConfError(f"{path}: STANDARD_DRIVE must be a vector [ UUID = ..., IMAGE = ... ]")
        uuid = str(vector.get("UUID", "")).strip().lower()
        image = str(vector.get("IMAGE", "")).strip()
        if not is_uuid(uuid) or not image:
            raise ConfError(f"{path}: STANDARD_DRIVE needs a UUID and an IMAGE name, "
                            f"got {vector!r}")
        settings.standard[uuid] = image
    return settings


def shipped_path():
    """The shipped ``conf/elastichosts.conf``."""
    from nebtwist.paths import shipped

    return shipped("conf", "elastichosts.conf")


__all__ = ["ConfError", "DEVICE", "Settings", "device_target", "is_uuid", "load",
           "make_uuid", "parse_uuid", "shipped_path", "target_device"]
