"""openstack.conf: the OpenStack front's settings (see the shipped
``conf/openstack.conf`` for the keys and their defaults)."""

import os

from nebtwist.core.config import Config, ConfigError, econe_templates_dirs, read_template

#: Built-in values of openstack.conf's keys.
DEFAULTS = {"REGION": "RegionOne", "TOKEN_LIFETIME": "3600", "MAX_BODY": "1048576"}
#: The keys openstack.conf may hold.
KEYS = ("PUBLIC_URL", "REGION", "TOKEN_LIFETIME", "MAX_BODY", "NETWORK", "VM_TYPE")


class OpenStackConfig(Config):
    """openstack.conf as a :class:`~nebtwist.core.config.Config` with
    :data:`DEFAULTS` (and none of oned.conf's)."""

    def get(self, key, default=None):
        values = [v for v in self.template.get_all(key) if isinstance(v, str)]
        if values:
            return values[-1]
        return DEFAULTS.get(key.upper(), default)


def load(path):
    """Read openstack.conf.

    :return: an :class:`OpenStackConfig`.
    :raises ConfigError: unreadable, a syntax error, an unknown key, or a
        bad value (TOKEN_LIFETIME and MAX_BODY positive integers;
        PUBLIC_URL an http(s) URL).
    """
    template, text = read_template(path)
    config = OpenStackConfig(template, path)
    config.text = text
    unknown = [name for name in template.names() if name.upper() not in KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]} (known: {', '.join(KEYS)})")
    for key in ("TOKEN_LIFETIME", "MAX_BODY"):
        value = config.get(key)
        if not (value or "").strip().isdigit() or int(value) <= 0:
            raise ConfigError(f"{path}: {key} must be a positive integer, not {value!r}")
    url = config.get("PUBLIC_URL")
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{path}: PUBLIC_URL must be an http:// or https:// URL, not {url!r}")
    return config


def templates_dirs(path):
    """The folders the VM type templates are looked up in:
    ``ec2query_templates`` beside openstack.conf, then the shipped one."""
    return econe_templates_dirs(os.path.abspath(path))


def build_settings(path, requests, clock, device_prefix="hd"):
    """The front's :class:`~nebtwist.api.openstack.resource.Settings` from
    openstack.conf at ``path``: flavors compiled and rendered once.

    :raises ConfigError: see :func:`load`; a VM type that fails to load
        or render (its file and line).
    """
    from nebtwist.api.openstack.flavors import load_flavors
    from nebtwist.api.openstack.resource import Settings
    from nebtwist.core.vmtypes import VMTypeError, VMTypes

    config = load(path)
    try:
        vmtypes = VMTypes.load(config, templates_dirs(path), device_prefix=device_prefix)
        flavors = load_flavors(vmtypes)
    except VMTypeError as e:
        raise ConfigError(f"{path}: {e}") from None
    return Settings(requests, vmtypes, flavors, clock, region=config.get("REGION"),
                    public_url=config.get("PUBLIC_URL") or None,
                    token_lifetime=int(config.get("TOKEN_LIFETIME")),
                    network=config.get("NETWORK") or None,
                    max_body=int(config.get("MAX_BODY")))
