"""``onegroup``: manage groups (OpenNebula 3.4).

Subcommands::

    onegroup create <name>
    onegroup delete <id|name>
    onegroup list
    onegroup show [<id|name>]        (default: your own group)

``create`` prints the new group's id, then, as 3.4's ``onegroup`` did, adds
the group's default ACL rules (its users may create VMs, networks, images
and templates, and deploy on any host) and prints each rule's id::

    ID: 100
    ACL_ID: 2
    ACL_ID: 3
"""

from nebtwist.cli import common
from nebtwist.cli.common import Column, integer, text
from nebtwist.cli.ownership import resolve_group

#: Default rules of a new group, after ``@<gid>`` (3.4 ``OpenNebula::Group``).
GROUP_DEFAULT_ACLS = ("VM+NET+IMAGE+TEMPLATE/* CREATE", "HOST/* MANAGE")

#: Columns of ``onegroup list``.
LIST_COLUMNS = [
    Column("ID", 4, lambda g: integer(g, "ID"), "right"),
    Column("NAME", 15, lambda g: text(g, "NAME")),
]


def do_create(ctx, args):
    """``onegroup create``: the group, then its default ACL rules."""
    from nebtwist.cli.oneacl import add_rule

    gid = ctx.call("one.group.allocate", args.name)
    ctx.out("ID: %s" % gid)
    for rule in GROUP_DEFAULT_ACLS:
        ctx.out("ACL_ID: %s" % add_rule(ctx, "@%s %s" % (gid, rule)))


def do_delete(ctx, args):
    """``onegroup delete``: remove an empty group."""
    ctx.call("one.group.delete", resolve_group(ctx, args.group))


def do_list(ctx, args):
    """``onegroup list``: one line per group you may see."""
    body = ctx.call("one.grouppool.info")
    common.print_pool(ctx, body, LIST_COLUMNS, "GROUP")


def do_show(ctx, args):
    """``onegroup show``: a group and its users."""
    gid = resolve_group(ctx, args.group) if args.group is not None else -1
    body = ctx.call("one.group.info", gid)
    if ctx.want_xml():
        ctx.print_xml(body)
        return
    group = common.parse_xml(body)
    oid = text(group, "ID")
    common.print_section(ctx, "GROUP %s INFORMATION" % oid, [
        ("ID", oid),
        ("NAME", text(group, "NAME")),
    ])
    ctx.out()
    ctx.out("USERS")
    names = {}
    try:
        users = common.parse_xml(ctx.call("one.userpool.info"))
        names = {text(u, "ID"): text(u, "NAME") for u in users.findall("USER")}
    except Exception:  # noqa: BLE001 - names are a courtesy; ids are the answer
        names = {}
    rows = [(i.text or "", names.get(i.text or "", "")) for i in group.findall("USERS/ID")]
    common.print_table(ctx, [Column("ID", 2, lambda r: r[0], "right"),
                             Column("NAME", 4, lambda r: r[1])], rows)


def configure(subparsers):
    """Add the ``onegroup`` subcommands to ``subparsers``."""
    sub = common.add_command(subparsers, "create", do_create,
                             "Create a group and its default ACL rules")
    sub.add_argument("name", help="group name")
    sub = common.add_command(subparsers, "delete", do_delete, "Delete an empty group")
    sub.add_argument("group", help="group id or name")
    common.add_command(subparsers, "list", do_list, "List the groups", xml=True)
    sub = common.add_command(subparsers, "show", do_show, "Show a group and its users",
                             xml=True)
    sub.add_argument("group", nargs="?", default=None,
                     help="group id or name (default: your group)")


def main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``onegroup``; returns the exit status."""
    return common.run_main(
        "onegroup", "Manage OpenNebula groups", configure,
        argv=argv, stdout=stdout, stderr=stderr, environ=environ,
    )


if __name__ == "__main__":
    raise SystemExit(main())
