"""Primitives of the EC2 Query front (:mod:`nebtwist.api.ec2`) that its
action modules share: the error type, the EC2 view of states and ids, tags,
filter matching and the text checks. Nothing here imports the front.
"""

import re

from nebtwist.core.objects import (ACTIVE, EPILOG_STOP, SAVE_MIGRATE, SAVE_STOP,
                                   SAVE_SUSPEND)

#: Tag limits (AWS "Tag your Amazon EC2 resources": 50 tags per resource,
#: keys of 128 and values of 256 characters).
MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256

#: Short VM state (``VirtualMachine.short_state``) -> (EC2 code, name): 3.4
#: ``EC2QueryServer.rb`` ``EC2_STATES``, with stopped VMs as econe 3.8+
#: (which added Start/StopInstances) shows them: ``stop`` and ``susp`` are
#: ``stopped`` (80).
_STATES = {}
for _short in ("init", "pend", "hold", "prol", "save", "actv"):
    _STATES[_short] = (0, "pending")
for _short in ("boot", "runn", "migr"):
    _STATES[_short] = (16, "running")
for _short in ("epil", "shut", "clea"):
    _STATES[_short] = (32, "shutting-down")
for _short in ("done", "fail", "unkn"):
    _STATES[_short] = (48, "terminated")
for _short in ("stop", "susp"):
    _STATES[_short] = (80, "stopped")

#: ACTIVE LCM states whose EC2 state is not their short name's: a VM being
#: checkpointed for StopInstances is ``stopping`` (64); a cold migration
#: (SAVE_MIGRATE, short ``save``) is still ``running``.
_LCM_EC2_STATES = {SAVE_STOP: (64, "stopping"), SAVE_SUSPEND: (64, "stopping"),
                   EPILOG_STOP: (64, "stopping"), SAVE_MIGRATE: (16, "running")}

#: Image state name -> EC2 imageState (3.4 ``describe_images.erb``).
_IMAGE_STATES = {"INIT": "pending", "LOCKED": "pending", "READY": "available",
                 "USED": "available", "DISABLED": "failed", "ERROR": "failed"}

#: Characters no EC2 parameter may hold: C0 controls but tab, LF and CR (XML
#: 1.0 cannot carry them, so no reply could echo them), DEL and C1 controls,
#: and the non-characters U+FFFE/U+FFFF. EC2 answers InvalidParameterValue.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


def _shown(text, limit=64):
    """``text`` for a message: control characters escaped, at most ``limit``."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                        else f"\\u{ord(m.group()):04x}", text)
    return text if len(text) <= limit else text[:limit] + "..."


def _tags(obj):
    """``[(key, value)]`` of an object's ``EC2_TAG`` vectors, in order."""
    return [(v.get("KEY", ""), v.get("VALUE", "")) for v in obj.template.get_all("EC2_TAG")
            if isinstance(v, dict)]


def _wildcard(pattern):
    """A matcher for an EC2 filter value: ``*`` any run, ``?`` one character
    (AWS "List and filter your resources"), everything else literal."""
    if "*" not in pattern and "?" not in pattern:
        return lambda value: value == pattern
    regex = re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                               for c in pattern) + r"\Z", re.S)
    return lambda value: regex.match(value) is not None


def _matches(values, wanted):
    """True when one of ``values`` matches one of the filter's ``wanted`` patterns."""
    matchers = [_wildcard(w) for w in wanted]
    return any(m(v) for v in values for m in matchers)


def _printable(text, limit):
    """True for 1..limit characters with no control character (what the
    templates and XML bodies can carry)."""
    return 0 < len(text) <= limit and not any(ord(c) < 32 or ord(c) == 127 for c in text)



class EC2Error(Exception):
    """An EC2 error response.

    :ivar code: the EC2 code (``InvalidInstanceID.NotFound``).
    :ivar status: HTTP status (int).
    :ivar message: text for the user.
    """

    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def ec2_state(vm):
    """``(code, name)`` of a VM in EC2 terms: 0 pending, 16 running,
    32 shutting-down, 48 terminated, 64 stopping, 80 stopped (section 7.1
    mapping, stopped states as econe 3.8+)."""
    if vm.state == ACTIVE:
        special = _LCM_EC2_STATES.get(vm.lcm_state)
        if special is not None:
            return special
    return _STATES.get(vm.short_state(), (0, "pending"))


def instance_id(oid):
    """``i-<vmid>``."""
    return f"i-{oid}"


def ami_id(oid):
    """``ami-%08d``."""
    return f"ami-{int(oid):08d}"
