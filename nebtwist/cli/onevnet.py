"""``onevnet``: manage virtual networks.

Subcommands::

    onevnet create <template file>
    onevnet delete <id|name>
    onevnet list [a|all|m|mine|g|group|<uid>|<user name>]
    onevnet show <id|name>
    onevnet chown <id|name> <user> [<group>] | chgrp <id|name> <group> | chmod <id|name> <octet>

``list`` defaults to every network the user may see (filter -2).
"""

from nebtwist.cli import common, ownership
from nebtwist.cli.common import Column, integer, text

#: VNET TYPE values: long names (show) and list names.
VNET_TYPES = {0: "RANGED", 1: "FIXED"}
VNET_LIST_TYPES = {0: "Ranged", 1: "Fixed"}

#: Columns of ``onevnet list``.
LIST_COLUMNS = [
    Column("ID", 4, lambda n: integer(n, "ID"), "right"),
    Column("USER", 8, lambda n: text(n, "UNAME") or text(n, "UID")),
    Column("NAME", 15, lambda n: text(n, "NAME")),
    Column("TYPE", 6, lambda n: VNET_LIST_TYPES.get(integer(n, "TYPE", -1), text(n, "TYPE"))),
    Column("BRIDGE", 6, lambda n: text(n, "BRIDGE")),
    Column("#LEASES", 7, lambda n: integer(n, "TOTAL_LEASES"), "right"),
]

#: Columns of the LEASES table in ``onevnet show``.
LEASE_COLUMNS = [
    Column("IP", 15, lambda l: text(l, "IP")),
    Column("MAC", 17, lambda l: text(l, "MAC")),
    Column("USED", 4, lambda l: integer(l, "USED"), "right"),
    Column("VID", 4, lambda l: integer(l, "VID"), "right"),
]


def resolve_vnet(ctx, value):
    """Network id for a network id or name (among the networks the user sees)."""
    return common.resolve(ctx, value, "one.vnpool.info",
                          (common.FILTER_ALL, -1, -1), "VNET", "VNET")


def _rights(vnet, who):
    perms = vnet.find("PERMISSIONS")
    return "".join(
        letter if integer(perms, "%s_%s" % (who, kind)) == 1 else "-"
        for letter, kind in (("u", "U"), ("m", "M"), ("a", "A"))
    )


def do_create(ctx, args):
    """``onevnet create``: allocate a network from a template file."""
    template = common.read_template_file(args.file)
    oid = ctx.call("one.vn.allocate", template, -1)
    common.print_created(ctx, oid)


def do_delete(ctx, args):
    """``onevnet delete``: remove a network."""
    ctx.call("one.vn.delete", resolve_vnet(ctx, args.vnet))


def do_list(ctx, args):
    """``onevnet list``: one line per network."""
    flag = common.pool_filter(ctx, args.filter)
    body = ctx.call("one.vnpool.info", flag, -1, -1)
    common.print_pool(ctx, body, LIST_COLUMNS, "VNET")


def do_show(ctx, args):
    """``onevnet show``: information, template and leases of a network."""
    body = ctx.call("one.vn.info", resolve_vnet(ctx, args.vnet))
    if ctx.want_xml():
        ctx.print_xml(body)
        return
    vnet = common.parse_xml(body)
    oid = text(vnet, "ID")
    vtype = integer(vnet, "TYPE", -1)
    perms = vnet.find("PERMISSIONS")
    public = perms is not None and (
        integer(perms, "GROUP_U") == 1 or integer(perms, "OTHER_U") == 1)
    info = [
        ("ID", oid),
        ("UID", text(vnet, "UID")),
        ("USER", text(vnet, "UNAME")),
        ("GROUP", text(vnet, "GNAME")),
        ("NAME", text(vnet, "NAME")),
        ("TYPE", VNET_TYPES.get(vtype, str(vtype))),
        ("BRIDGE", text(vnet, "BRIDGE")),
        ("VLAN", "Yes" if integer(vnet, "VLAN") else "No"),
    ]
    for label, path in (("PHYSICAL DEVICE", "PHYDEV"), ("VLAN ID", "VLAN_ID"),
                        ("IP START", "RANGE/IP_START"), ("IP END", "RANGE/IP_END")):
        value = text(vnet, path)
        if value:
            info.append((label, value))
    info += [
        ("USED LEASES", integer(vnet, "TOTAL_LEASES")),
        ("PUBLIC", "Yes" if public else "No"),
    ]
    common.print_section(ctx, "VIRTUAL NETWORK %s INFORMATION" % oid, info)
    if perms is not None:
        ctx.out()
        common.print_section(ctx, "PERMISSIONS", [
            ("OWNER", _rights(vnet, "OWNER")),
            ("GROUP", _rights(vnet, "GROUP")),
            ("OTHER", _rights(vnet, "OTHER")),
        ])
    ctx.out()
    ctx.out("VIRTUAL NETWORK TEMPLATE")
    for line in common.template_lines(vnet.find("TEMPLATE")):
        ctx.out(line)
    ctx.out()
    ctx.out("LEASES")
    common.print_table(ctx, LEASE_COLUMNS, vnet.findall("LEASES/LEASE"))


def configure(subparsers):
    """Add the ``onevnet`` subcommands to ``subparsers``."""
    sub = common.add_command(subparsers, "create", do_create,
                             "Create a virtual network from a template file")
    sub.add_argument("file", help="template file")
    sub = common.add_command(subparsers, "delete", do_delete, "Delete a virtual network")
    sub.add_argument("vnet", help="network id or name")
    sub = common.add_command(subparsers, "list", do_list, "List virtual networks", xml=True)
    sub.add_argument("filter", nargs="?", default=None,
                     help="a|all (default), m|mine, g|group, or a user id or name")
    sub = common.add_command(subparsers, "show", do_show, "Show a virtual network", xml=True)
    sub.add_argument("vnet", help="network id or name")
    ownership.add_commands(subparsers, "vn", "virtual network", resolve_vnet)


def main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``onevnet``; returns the exit status."""
    return common.run_main(
        "onevnet", "Manage OpenNebula virtual networks", configure,
        argv=argv, stdout=stdout, stderr=stderr, environ=environ,
    )


if __name__ == "__main__":
    raise SystemExit(main())
