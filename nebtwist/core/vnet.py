"""Virtual networks: building them from templates, and their leases.

Follows OpenNebula 3.4 ``src/vnm/VirtualNetwork.cc``, ``RangedLeases.cc`` and
``FixedLeases.cc`` (reference section 6):

* RANGED: ``NETWORK_ADDRESS`` (optionally CIDR ``a.b.c.d/n``), else
  ``NETWORK_MASK``, else ``NETWORK_SIZE`` (``A``/``B``/``C`` or a number N,
  giving ceil(log2(N+2)) host bits; default oned.conf ``NETWORK_SIZE``). The
  derived ``NETWORK_MASK`` is written back and ``NETWORK_SIZE`` removed.
  ``IP_START``/``IP_END`` default to the first and last host address; both
  may be given instead of an address. Leases go round-robin from a cursor.
* FIXED: ``LEASES = [ IP = ..., MAC = ... ]`` repeated, MAC optional.
* MAC = ``MAC_PREFIX`` + the IP's four octets.
"""

import ipaddress
import math
import re

from nebtwist.core.objects import (FIXED, RANGED, Lease, VirtualNetwork, int_to_ip,
                                   ip_to_int, mac_for)
from nebtwist.errors import ActionError, APIError

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def _mask_bits_for_size(size):
    s = size.strip().upper()
    if s == "A":
        return 8
    if s == "B":
        return 16
    if s == "C":
        return 24
    try:
        n = int(s)
    except ValueError:
        raise APIError(f"NETWORK_SIZE {size!r} is not A, B, C or a number") from None
    if n <= 0:
        raise APIError(f"NETWORK_SIZE must be positive, not {n}")
    host_bits = math.ceil(math.log2(n + 2))
    if host_bits > 30:
        raise APIError(f"NETWORK_SIZE {n} is too large")
    return 32 - host_bits


#: A Linux network device name (IFNAMSIZ 16: at most 15 characters).
_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")


def build_vnet(template, oid, owner, group_name, mac_prefix="02:00", default_size="254"):
    """A :class:`VirtualNetwork` from a parsed network template.

    :param template: :class:`nebtwist.template.Template` (modified in place:
        NETWORK_MASK written back, NETWORK_SIZE removed).
    :param owner: the creating :class:`~nebtwist.core.objects.User`.
    :raises APIError: a missing NAME/TYPE/BRIDGE, a bad address, a range
        outside its network, or a malformed lease; nothing is created.
    """
    name = template.get_str("NAME")
    if not name:
        raise APIError("No NAME in template for Virtual Network.")
    vtype_s = (template.get_str("TYPE") or "").upper()
    if vtype_s not in ("RANGED", "FIXED"):
        raise APIError("Wrong TYPE in template for Virtual Network: must be RANGED or FIXED.")
    phydev = template.get_str("PHYDEV") or ""
    bridge = template.get_str("BRIDGE") or ""
    if not bridge:
        if not phydev:
            raise APIError("No BRIDGE in template for Virtual Network.")
        bridge = f"onebr{oid}"
    for key, value in (("PHYDEV", phydev), ("BRIDGE", bridge)):
        if value and not _IFNAME.fullmatch(value):
            raise APIError(f"Wrong {key} {value!r} in template for Virtual Network: a network "
                           "device name (letters, digits, '.', '_', '-'; at most 15).")
    vlan_s = (template.get_str("VLAN") or ("YES" if phydev else "NO")).upper()
    vlan_id = template.get_str("VLAN_ID") or ""
    if vlan_id and not (vlan_id.isdigit() and 0 < int(vlan_id) < 4095):
        raise APIError(f"Wrong VLAN_ID {vlan_id!r} in template for Virtual Network: "
                       "a number from 1 to 4094.")
    perms = (1, 1, 0, 0, 0, 0, 0, 0, 0)
    if owner.oid == 0:
        # OpenNebula 1.4: networks created by oneadmin are public.
        perms = (1, 1, 0, 1, 0, 0, 1, 0, 0)
    vnet = VirtualNetwork(oid, name, owner.oid, owner.gid, owner.name, group_name, perms,
                          template, vtype=RANGED if vtype_s == "RANGED" else FIXED,
                          bridge=bridge, vlan=1 if vlan_s == "YES" else 0, phydev=phydev,
                          vlan_id=vlan_id)
    if vnet.type == RANGED:
        _ranged(vnet, template, default_size)
    else:
        _fixed(vnet, template, mac_prefix)
    return vnet


def _ranged(vnet, template, default_size):
    address = template.get_str("NETWORK_ADDRESS")
    ip_start = template.get_str("IP_START")
    ip_end = template.get_str("IP_END")
    try:
        if address:
            if "/" in address:
                address, bits_s = address.split("/", 1)
                bits = int(bits_s)
            elif template.get_str("NETWORK_MASK"):
                mask = ipaddress.IPv4Address(template.get_str("NETWORK_MASK"))
                bits = bin(int(mask)).count("1")
            else:
                bits = _mask_bits_for_size(template.get_str("NETWORK_SIZE") or default_size)
            net_addr = ip_to_int(address)
            if not 0 <= bits <= 30:
                raise APIError(f"Wrong network mask /{bits} for NETWORK_ADDRESS.")
        elif ip_start and ip_end:
            first, last = ip_to_int(ip_start), ip_to_int(ip_end)
            bits = 32
            while bits > 0 and (first >> (32 - bits)) != (last >> (32 - bits)):
                bits -= 1
            net_addr = first & (((1 << bits) - 1) << (32 - bits))
        else:
            raise APIError("No NETWORK_ADDRESS in template for Virtual Network.")
        mask = ((1 << bits) - 1) << (32 - bits) if bits else 0
        if net_addr & mask != net_addr:
            raise APIError(f"NETWORK_ADDRESS {int_to_ip(net_addr)} is not the base address "
                           f"of a /{bits} network.")
        broadcast = net_addr | (~mask & 0xFFFFFFFF)
        first = ip_to_int(ip_start) if ip_start else net_addr + 1
        last = ip_to_int(ip_end) if ip_end else broadcast - 1
    except ValueError as e:
        raise APIError(f"Wrong address in template for Virtual Network: {e}") from None
    if not (net_addr < first <= last < broadcast) and bits < 31:
        raise APIError(f"IP_START/IP_END must lie inside {int_to_ip(net_addr)}/{bits}.")
    vnet.ip_start, vnet.ip_end = first, last
    template.set("NETWORK_ADDRESS", int_to_ip(net_addr))
    template.set("NETWORK_MASK", int_to_ip(mask))
    template.remove("NETWORK_SIZE")


def _fixed(vnet, template, mac_prefix):
    for value in template.get_all("LEASES"):
        if not isinstance(value, dict) or not value.get("IP"):
            raise APIError("Each LEASES of a FIXED network needs an IP: LEASES = [ IP = ... ]")
        try:
            ip = ip_to_int(value["IP"])
        except ValueError:
            raise APIError(f"Wrong IP {value['IP']!r} in LEASES.") from None
        if ip in vnet.leases:
            raise APIError(f"Lease {value['IP']} is repeated.")
        mac = (value.get("MAC") or mac_for(mac_prefix, ip)).lower()
        if not _MAC.fullmatch(mac):
            raise APIError(f"Wrong MAC {value['MAC']!r} in LEASES (expected xx:xx:xx:xx:xx:xx).")
        vnet.leases[ip] = Lease(ip, mac)
    if not vnet.leases:
        raise APIError("A FIXED network needs at least one LEASES = [ IP = ... ].")
    template.remove("LEASES")


def acquire_lease(vnet, vid, mac_prefix, ip=None):
    """Take a free lease of ``vnet`` for VM ``vid`` (``ip``: that address).

    :return: the :class:`Lease` (now used).
    :raises ActionError: no free lease, or the asked address is taken or
        not in the network.
    """
    if ip is not None:
        try:
            n = ip_to_int(ip)
        except ValueError:
            raise ActionError(f"Wrong IP {ip!r} requested.") from None
        lease = vnet.leases.get(n)
        if vnet.type == RANGED:
            if not vnet.ip_start <= n <= vnet.ip_end:
                raise ActionError(f"IP {ip} is not in virtual network {vnet.oid}.")
            if lease is None:
                lease = vnet.leases[n] = Lease(n, mac_for(mac_prefix, n))
        elif lease is None:
            raise ActionError(f"IP {ip} is not a lease of virtual network {vnet.oid}.")
        if lease.used:
            raise ActionError(f"IP {ip} of virtual network {vnet.oid} is already in use.")
    elif vnet.type == RANGED:
        size = vnet.ip_end - vnet.ip_start + 1
        lease = None
        for step in range(size):
            n = vnet.ip_start + (vnet.cursor + step) % size
            current = vnet.leases.get(n)
            if current is None or not current.used:
                lease = current or Lease(n, mac_for(mac_prefix, n))
                vnet.leases[n] = lease
                vnet.cursor = (vnet.cursor + step + 1) % size
                break
        if lease is None:
            raise ActionError(f"Virtual network {vnet.oid} ({vnet.name}) has no free leases.")
    else:
        lease = next((x for _, x in sorted(vnet.leases.items()) if not x.used), None)
        if lease is None:
            raise ActionError(f"Virtual network {vnet.oid} ({vnet.name}) has no free leases.")
    lease.used = True
    lease.vid = vid
    vnet.touch()
    return lease


def release_lease(vnet, ip, vid):
    """Free the lease ``ip`` (int) if VM ``vid`` holds it; returns it or None.

    RANGED networks forget a freed lease (only used ones are kept).
    """
    lease = vnet.leases.get(ip)
    if lease is None or not lease.used or lease.vid != vid:
        return None
    lease.used = False
    lease.vid = -1
    if vnet.type == RANGED:
        del vnet.leases[ip]
    vnet.touch()
    return lease
