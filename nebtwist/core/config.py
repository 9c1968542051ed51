"""oned.conf: loading, ``--set`` overrides and defaults.

oned.conf is written in OpenNebula's template language, so
:class:`nebtwist.template.Template` reads it. Built-in defaults follow
OpenNebula 3.4 ``src/nebula/NebulaTemplate.cc`` (reference section 10); the
scheduler keys (``SCHED_INTERVAL``, ``MAX_VM``, ``MAX_DISPATCH``,
``MAX_HOST``, ``DEFAULT_SCHED``) live in oned.conf too, since the scheduler
runs in the same process (3.4 kept them in ``sched.conf``).
"""

import os
import re

from nebtwist.paths import shipped
from nebtwist.template import Template, TemplateSyntaxError

#: Built-in values used when oned.conf does not set a key.
DEFAULTS = {
    "MANAGER_TIMER": "15",
    "HOST_MONITORING_INTERVAL": "600",
    "HOST_PER_INTERVAL": "15",
    "VM_POLLING_INTERVAL": "600",
    "VM_PER_INTERVAL": "5",
    "PORT": "2633",
    "DEBUG_LEVEL": "3",
    "NETWORK_SIZE": "254",
    "MAC_PREFIX": "02:00",
    "SCRIPTS_REMOTE_DIR": "/var/tmp/one",
    "SESSION_EXPIRATION_TIME": "0",
    "SCHED_INTERVAL": "30",
    "MAX_VM": "300",
    "MAX_DISPATCH": "30",
    "MAX_HOST": "1",
    "DRIVER_TIMEOUT": "300",
}


class ConfigError(Exception):
    """oned.conf (or a ``--set`` value) cannot be read or parsed."""


#: oned.conf keys nebtwist reads, plus OpenNebula's (3.4 to 6.x oned.conf)
#: that it accepts and ignores, so an OpenNebula oned.conf loads without
#: warnings. Every key the shipped conf/oned.conf names (even commented out)
#: is known too (:func:`known_keys`). Anything else draws a start-up warning.
ONED_KEYS = frozenset("""
    MANAGER_TIMER HOST_MONITORING_INTERVAL HOST_PER_INTERVAL VM_POLLING_INTERVAL
    VM_PER_INTERVAL PORT LISTEN DEBUG_LEVEL DB SESSION_EXPIRATION_TIME
    ENABLE_OTHER_PERMISSIONS MAC_PREFIX NETWORK_SIZE DATASTORE_LOCATION IMAGE_SAFE_DIRS
    DEFAULT_IMAGE_TYPE DEFAULT_DEVICE_PREFIX ECONE_CONF SCHED_INTERVAL MAX_VM MAX_DISPATCH
    MAX_HOST DEFAULT_SCHED DRIVER_TIMEOUT IM_MAD VM_MAD TM_MAD HM_MAD VN_MAD DEFAULT_TM_MAD
    SCRIPTS_REMOTE_DIR VM_HOOK HOST_HOOK VM_RESTRICTED_ATTR IMAGE_RESTRICTED_ATTR
    MAX_CONN MAX_CONN_BACKLOG MAX_TEMPLATE_SIZE MESSAGE_SIZE TIMEOUT HEADER_TIMEOUT
    BODY_TIMEOUT BODY_MIN_RATE KEEPALIVE_TIMEOUT KEEPALIVE_MAX_CONN
    MONITORING_INTERVAL MONITORING_THREADS HOST_MONITORING_EXPIRATION_TIME
    VM_MONITORING_EXPIRATION_TIME LISTEN_ADDRESS VNC_BASE_PORT VNC_PORTS LOG
    DATASTORE_BASE_PATH DATASTORE_CAPACITY_CHECK DEFAULT_CDROM_DEVICE_PREFIX DEFAULT_UMASK
    DATASTORE_MAD AUTH_MAD AUTH_MAD_CONF VNET_RESTRICTED_ATTR INHERIT_DATASTORE_ATTR
    INHERIT_IMAGE_ATTR INHERIT_VNET_ATTR RPC_LOG LOG_CALL_FORMAT HOOK_LOG_CONF DEFAULT_COST
    DEFAULT_AUTH ONEGATE_ENDPOINT FEDERATION RAFT VM_SUBMIT_ON_HOLD TM_MAD_CONF DS_MAD_CONF
    MARKET_MAD MARKET_MAD_CONF VN_MAD_CONF IPAM_MAD VLAN_IDS VXLAN_IDS VM_ADMIN_OPERATIONS
    VM_MAD_CONF DEFAULT_VDC_HOST_ACL DEFAULT_VDC_DATASTORE_ACL DEFAULT_VDC_VNET_ACL
    DEFAULT_VDC_CLUSTER_HOST_ACL DEFAULT_VDC_CLUSTER_DATASTORE_ACL
    DEFAULT_VDC_CLUSTER_NET_ACL DOCUMENT_ENCRYPTED_ATTR HOST_ENCRYPTED_ATTR
    VM_ENCRYPTED_ATTR VNET_ENCRYPTED_ATTR CLUSTER_ENCRYPTED_ATTR DATASTORE_ENCRYPTED_ATTR
    VM_USE_OPERATIONS VM_MANAGE_OPERATIONS VM_MONITORING_EXPIRATION API_LIST_ORDER
    CONTEXT_RESTRICTED_DIRS CONTEXT_SAFE_DIRS SHOWBACK_ONLY_RUNNING API_FRONT
""".split())

#: econe.conf keys nebtwist reads, plus OpenNebula econe's that it ignores.
ECONE_KEYS = frozenset("""
    SERVER PORT SSL_SERVER IMAGE_DIR MAX_OBJECT_SIZE MAX_QUERY_BODY LISTEN NETWORK
    ELASTIC_IP_NETWORK ASSOCIATE_SCRIPT DISASSOCIATE_SCRIPT VM_TYPE REGION ZONE
    MAX_CONN MAX_CONN_BACKLOG HEADER_TIMEOUT BODY_TIMEOUT BODY_MIN_RATE TIMEOUT
    KEEPALIVE_TIMEOUT
    ONE_XMLRPC AUTH CORE_AUTH LOG DEBUG_LEVEL DATASTORE_ID TEMPLATE_LOCATION VIEWS
    INSTANCE_TYPES DESCRIBE_WITH_TERMINATED_INSTANCES TERMINATED_INSTANCES_EXPIRATION_TIME
    ELASTICIPS_VNET_ID ASSOCIATE_SCRIPT_ARGS
""".split())

_KEY_LINE = re.compile(r"^[ \t]*#?[ \t]*([A-Z][A-Z0-9_]*)[ \t]*=", re.M)


def known_keys(builtin, shipped_name):
    """``builtin`` plus every key the shipped ``conf/<shipped_name>`` names,
    commented out or not (keys other sessions document there stay known)."""
    keys = set(builtin)
    try:
        with open(shipped("conf", shipped_name), encoding="utf-8") as f:
            keys.update(_KEY_LINE.findall(f.read()))
    except OSError:
        pass
    return keys


def unknown_keys(config, known):
    """``[(where, key)]`` for each attribute of ``config`` whose name is not in
    ``known``: ``where`` is ``"<path> line <n>"`` (the first line setting it),
    or ``"--set"`` for an override."""
    text = getattr(config, "text", None) or ""
    lines = {}
    for number, line in enumerate(text.splitlines(), 1):
        m = re.match(r"[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*=", line)
        if m:
            lines.setdefault(m.group(1).upper(), number)
    found = []
    for name in config.template.names():
        if name.upper() in known:
            continue
        number = lines.get(name.upper())
        if number:
            where = f"{config.path} line {number}"
        else:
            where = "--set" if text else (config.path or "configuration")
        found.append((where, name.upper()))
    return found


class Config:
    """oned.conf as a :class:`Template` plus typed accessors.

    :param template: the parsed file with overrides applied.
    :param path: where it was read from (for messages).
    """

    def __init__(self, template, path=None):
        self.template = template
        self.path = path
        self.text = None  # the file's text (for line numbers in warnings)

    def unknown_keys(self):
        """``[(where, KEY)]`` of the keys nebtwist neither reads nor accepts
        (see :data:`ONED_KEYS`), for start-up warnings."""
        return unknown_keys(self, known_keys(ONED_KEYS, "oned.conf"))

    def get(self, key, default=None):
        """A single value as str (built-in default, then ``default``).

        When a key is given more than once (``--set PORT=1 --set PORT=2``),
        the last single value wins.
        """
        values = [v for v in self.template.get_all(key) if isinstance(v, str)]
        value = values[-1] if values else None
        if value is None:
            value = DEFAULTS.get(key.upper(), default)
        return value

    def get_int(self, key, default=0):
        """A single value as int; raises ConfigError if not a number."""
        value = self.get(key, None)
        if value is None:
            return default
        try:
            return int(float(value))
        except ValueError:
            raise ConfigError(f"{key} must be a number, not {value!r}") from None

    def get_float(self, key, default=0.0):
        """A single value as float; raises ConfigError if not a number."""
        value = self.get(key, None)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, not {value!r}") from None

    def vectors(self, key):
        """Every vector value of ``key`` (list of dicts with uppercase keys)."""
        return [v for v in self.template.get_all(key) if isinstance(v, dict)]

    def vector(self, key):
        """The first vector value of ``key`` or an empty dict."""
        v = self.template.get_vector(key)
        return dict(v) if v else {}


def default_path(one_location):
    """``$ONE_LOCATION/etc/oned.conf`` if present, else the shipped ``conf/oned.conf``."""
    local = os.path.join(one_location, "etc", "oned.conf")
    return local if os.path.exists(local) else shipped("conf", "oned.conf")


def read_template(path):
    """Read and parse a configuration file in OpenNebula's template syntax
    (oned.conf, econe.conf, a front's own file).

    :return: ``(Template, text)``.
    :raises ConfigError: unreadable file, or a syntax error (with line and column).
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        return Template.parse(text), text
    except TemplateSyntaxError as e:
        raise ConfigError(f"{path}: {e}") from None


def load(path, overrides=()):
    """Read oned.conf and apply ``--set`` overrides.

    :param overrides: ``KEY=VALUE`` strings. The overrides for one KEY
        together replace every KEY attribute of the file; VALUE is parsed as
        template syntax (so vectors work: ``VM_HOOK=[name="x", on="RUNNING"]``).
        Keys starting ``econe.`` are skipped here (they belong to econe.conf).
    :raises ConfigError: unreadable file, syntax error (with line and
        column), or a malformed override.
    """
    template, text = read_template(path)
    apply_overrides(template, [o for o in overrides if not o.lower().startswith("econe.")])
    config = Config(template, path)
    config.text = text
    return config


def apply_overrides(template, overrides):
    """Apply ``KEY=VALUE`` overrides to ``template`` (see :func:`load`)."""
    replaced = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set needs KEY=VALUE, got {item!r}")
        key = item.split("=", 1)[0].strip()
        try:
            parsed = Template.parse(item)
        except TemplateSyntaxError as e:
            raise ConfigError(f"--set {item!r}: {e}") from None
        if len(parsed) != 1:
            raise ConfigError(f"--set {item!r} must set exactly one attribute")
        name, value = next(iter(parsed))
        if not key or name != key.upper():
            raise ConfigError(f"--set {item!r}: bad key")
        replaced.setdefault(name, []).append(value)
    for name, values in replaced.items():
        template.remove(name)
        for value in values:
            template.add(name, value)


#: Built-in econe.conf values (OpenNebula 3.4 ``econe.conf``: port 4567).
ECONE_DEFAULTS = {
    "SERVER": "127.0.0.1",
    "PORT": "4567",
}


class EconeConfig(Config):
    """econe.conf: like :class:`Config`, with :data:`ECONE_DEFAULTS`."""

    def unknown_keys(self):
        """``[(where, KEY)]`` of keys not in :data:`ECONE_KEYS`."""
        return unknown_keys(self, known_keys(ECONE_KEYS, "econe.conf"))

    def get(self, key, default=None):
        """A single value as str (econe built-in default, then ``default``)."""
        values = [v for v in self.template.get_all(key) if isinstance(v, str)]
        if values:
            return values[-1]
        return ECONE_DEFAULTS.get(key.upper(), default)


def econe_path(config, one_location):
    """Where econe.conf is: oned.conf ``ECONE_CONF`` (relative to oned.conf's
    folder), else ``$ONE_LOCATION/etc/econe.conf`` if present, else the
    shipped ``conf/econe.conf``."""
    named = config.get("ECONE_CONF")
    if named:
        base = os.path.dirname(os.path.abspath(config.path)) if config.path else one_location
        return os.path.join(base, named)
    local = os.path.join(one_location, "etc", "econe.conf")
    return local if os.path.exists(local) else shipped("conf", "econe.conf")


def econe_templates_dirs(econe_conf_path):
    """The folders searched for VM type templates: ``ec2query_templates``
    beside econe.conf, then the shipped one (list of str, existing only)."""
    dirs = [os.path.join(os.path.dirname(os.path.abspath(econe_conf_path)), "ec2query_templates"),
            shipped("conf", "ec2query_templates")]
    seen = []
    for d in dirs:
        if os.path.isdir(d) and d not in seen:
            seen.append(d)
    return seen


def load_econe(path, overrides=()):
    """Read econe.conf and apply the ``econe.KEY=VALUE`` overrides.

    :param overrides: the same ``--set`` list :func:`load` takes; only items
        starting ``econe.`` (any case) are used, without that prefix
        (``econe.PORT=4600`` sets PORT).
    :return: an :class:`EconeConfig`.
    :raises ConfigError: unreadable file, syntax error, or a malformed override.
    """
    template, text = read_template(path)
    apply_overrides(template, [o[len("econe."):] for o in overrides
                               if o.lower().startswith("econe.")])
    econe = EconeConfig(template, path)
    econe.text = text
    return econe


def tcp_description(port, interface=None):
    """The endpoint string of a front's ``PORT``: ``tcp:PORT`` (every
    address) or ``tcp:PORT:interface=ADDRESS``, the address escaped (IPv6)."""
    from nebtwist.tls import escape

    interface = (interface or "").strip()
    if not interface:
        return f"tcp:{port}"
    return f"tcp:{port}:interface={escape(interface)}"


def is_ip_address(value):
    """Whether ``value`` is an IPv4 or IPv6 address literal."""
    import ipaddress

    try:
        ipaddress.ip_address((value or "").strip())
    except ValueError:
        return False
    return True
