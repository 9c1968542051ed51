"""oned.conf: loading, ``--set`` overrides and defaults.

oned.conf is written in OpenNebula's template language, so
:class:`nebtwist.template.Template` reads it. Built-in defaults follow
OpenNebula 3.4 ``src/nebula/NebulaTemplate.cc`` (reference section 10); the
scheduler keys (``SCHED_INTERVAL``, ``MAX_VM``, ``MAX_DISPATCH``,
``MAX_HOST``, ``DEFAULT_SCHED``) live in oned.conf too, since the scheduler
runs in the same process (3.4 kept them in ``sched.conf``).
"""

import os

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


class Config:
    """oned.conf as a :class:`Template` plus typed accessors.

    :param template: the parsed file with overrides applied.
    :param path: where it was read from (for messages).
    """

    def __init__(self, template, path=None):
        self.template = template
        self.path = path

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


def load(path, overrides=()):
    """Read oned.conf and apply ``--set`` overrides.

    :param overrides: ``KEY=VALUE`` strings. The overrides for one KEY
        together replace every KEY attribute of the file; VALUE is parsed as
        template syntax (so vectors work: ``VM_HOOK=[name="x", on="RUNNING"]``).
        Keys starting ``econe.`` are skipped here (they belong to econe.conf).
    :raises ConfigError: unreadable file, syntax error (with line and
        column), or a malformed override.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        template = Template.parse(text)
    except TemplateSyntaxError as e:
        raise ConfigError(f"{path}: {e}") from None
    apply_overrides(template, [o for o in overrides if not o.lower().startswith("econe.")])
    return Config(template, path)


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
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        template = Template.parse(text)
    except TemplateSyntaxError as e:
        raise ConfigError(f"{path}: {e}") from None
    apply_overrides(template, [o[len("econe."):] for o in overrides
                               if o.lower().startswith("econe.")])
    return EconeConfig(template, path)
