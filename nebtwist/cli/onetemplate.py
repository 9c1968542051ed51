"""``onetemplate``: manage VM templates (OpenNebula 3.4's ``onetemplate``).

Subcommands::

    onetemplate create <template file>
    onetemplate list [a|all|m|mine|g|group|<uid>|<user name>]
    onetemplate show <id|name>
    onetemplate update <id|name> <template file>
    onetemplate delete <id|name>
    onetemplate instantiate <id|name> [--name NAME] [--hold]

A stored template is a VM template (NAME, CPU, MEMORY, DISK = [ IMAGE =
... ], NIC, ...); ``instantiate`` creates a VM from it, named ``NAME`` when
given, and prints ``VM ID: <id>`` as 3.4 does.
"""

from nebtwist.cli import common, ownership
from nebtwist.cli.common import Column, integer, text
from nebtwist.cli.oneimage import print_permissions

#: Columns of ``onetemplate list``.
LIST_COLUMNS = [
    Column("ID", 4, lambda t: integer(t, "ID"), "right"),
    Column("USER", 8, lambda t: text(t, "UNAME") or text(t, "UID")),
    Column("GROUP", 8, lambda t: text(t, "GNAME") or text(t, "GID")),
    Column("NAME", 14, lambda t: text(t, "NAME")),
    Column("REGTIME", 14, lambda t: common.format_time(integer(t, "REGTIME"))),
]


def resolve_template(ctx, value):
    """Template id for a template id or name (among the templates the user sees)."""
    return common.resolve(ctx, value, "one.templatepool.info",
                          (common.FILTER_ALL, -1, -1), "VMTEMPLATE", "VMTEMPLATE")


def do_create(ctx, args):
    """``onetemplate create``: store a VM template from a file."""
    oid = ctx.call("one.template.allocate", common.read_template_file(args.file))
    common.print_created(ctx, oid)


def do_list(ctx, args):
    """``onetemplate list``: one line per template."""
    flag = common.pool_filter(ctx, args.filter)
    body = ctx.call("one.templatepool.info", flag, -1, -1)
    common.print_pool(ctx, body, LIST_COLUMNS, "VMTEMPLATE")


def do_show(ctx, args):
    """``onetemplate show``: information and contents of a template."""
    body = ctx.call("one.template.info", resolve_template(ctx, args.template))
    if ctx.want_xml():
        ctx.print_xml(body)
        return
    tmpl = common.parse_xml(body)
    oid = text(tmpl, "ID")
    common.print_section(ctx, "TEMPLATE %s INFORMATION" % oid, [
        ("ID", oid),
        ("NAME", text(tmpl, "NAME")),
        ("USER", text(tmpl, "UNAME")),
        ("GROUP", text(tmpl, "GNAME")),
        ("REGISTER TIME", common.format_time(integer(tmpl, "REGTIME"))),
    ])
    print_permissions(ctx, tmpl)
    ctx.out()
    ctx.out("TEMPLATE CONTENTS")
    for line in common.template_lines(tmpl.find("TEMPLATE")):
        ctx.out(line)


def do_update(ctx, args):
    """``onetemplate update``: replace a template's contents with a file's."""
    ctx.call("one.template.update", resolve_template(ctx, args.template),
             common.read_template_file(args.file))


def do_delete(ctx, args):
    """``onetemplate delete``: remove a template (its VMs are not touched)."""
    ctx.call("one.template.delete", resolve_template(ctx, args.template))


def do_instantiate(ctx, args):
    """``onetemplate instantiate``: create a VM from a template."""
    tid = resolve_template(ctx, args.template)
    if args.hold:
        vid = ctx.call("one.template.instantiate", tid, args.name or "", True, "")
    else:
        vid = ctx.call("one.template.instantiate", tid, args.name or "")
    ctx.out("VM ID: %s" % vid)


def configure(subparsers):
    """Add the ``onetemplate`` subcommands to ``subparsers``."""
    sub = common.add_command(subparsers, "create", do_create,
                             "Store a VM template from a file")
    sub.add_argument("file", help="template file")
    sub = common.add_command(subparsers, "list", do_list, "List VM templates", xml=True)
    sub.add_argument("filter", nargs="?", default=None,
                     help="a|all (default), m|mine, g|group, or a user id or name")
    sub = common.add_command(subparsers, "show", do_show, "Show a VM template", xml=True)
    sub.add_argument("template", help="template id or name")
    sub = common.add_command(subparsers, "update", do_update,
                             "Replace the contents of a VM template")
    sub.add_argument("template", help="template id or name")
    sub.add_argument("file", help="template file")
    sub = common.add_command(subparsers, "delete", do_delete, "Delete a VM template")
    sub.add_argument("template", help="template id or name")
    sub = common.add_command(subparsers, "instantiate", do_instantiate,
                             "Create a VM from a template")
    sub.add_argument("template", help="template id or name")
    sub.add_argument("-n", "--name", default=None, help="name of the new VM")
    sub.add_argument("--hold", action="store_true", default=False,
                     help="create the VM on hold (not scheduled until released)")
    ownership.add_commands(subparsers, "template", "template", resolve_template)


def main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``onetemplate``; returns the exit status."""
    return common.run_main(
        "onetemplate", "Manage OpenNebula VM templates", configure,
        argv=argv, stdout=stdout, stderr=stderr, environ=environ,
    )


if __name__ == "__main__":
    raise SystemExit(main())
