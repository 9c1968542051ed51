"""``oneuser``: manage OpenNebula users.

Subcommands::

    oneuser create <name> <password>     (core authentication)
    oneuser delete <id|name>
    oneuser list
    oneuser show <id|name>
    oneuser passwd <id|name> <password>
    oneuser chgrp <id|name> <group id|name>
    oneuser chauth <id|name> <driver> [<password>]
    oneuser enable|disable <id|name>

Passwords are sent as typed; the server stores their SHA1.
"""

from nebtwist.cli import common
from nebtwist.cli.ownership import resolve_group
from nebtwist.cli.common import Column, integer, text

#: Columns of ``oneuser list`` (the 1.4 layout).
LIST_COLUMNS = [
    Column("UID", 3, lambda u: integer(u, "ID"), "right"),
    Column("NAME", 12, lambda u: text(u, "NAME")),
    Column("PASSWORD", 40, lambda u: text(u, "PASSWORD")),
    Column("ENABLE", 6, lambda u: "True" if integer(u, "ENABLED") else "False"),
]


def do_create(ctx, args):
    """``oneuser create``: allocate a core-authenticated user."""
    oid = ctx.call("one.user.allocate", args.name, args.password, "core")
    common.print_created(ctx, oid)


def do_delete(ctx, args):
    """``oneuser delete``: remove a user."""
    ctx.call("one.user.delete", common.resolve_user(ctx, args.user))


def do_passwd(ctx, args):
    """``oneuser passwd``: change a user's password."""
    ctx.call("one.user.passwd", common.resolve_user(ctx, args.user), args.password)


def do_chgrp(ctx, args):
    """``oneuser chgrp``: move a user to another group (one.user.chgrp)."""
    ctx.call("one.user.chgrp", common.resolve_user(ctx, args.user),
             resolve_group(ctx, args.group))


def do_chauth(ctx, args):
    """``oneuser chauth``: set a user's auth driver (and password)."""
    ctx.call("one.user.chauth", common.resolve_user(ctx, args.user), args.driver,
             args.password or "")


def make_enable(enable):
    """``oneuser enable|disable``: one.user.enable (a disabled user cannot log in)."""

    def do_enable(ctx, args):
        ctx.call("one.user.enable", common.resolve_user(ctx, args.user), enable)

    return do_enable


def do_list(ctx, args):
    """``oneuser list``: one line per user."""
    body = ctx.call("one.userpool.info")
    common.print_pool(ctx, body, LIST_COLUMNS, "USER")


def do_show(ctx, args):
    """``oneuser show``: one user's information and template."""
    body = ctx.call("one.user.info", common.resolve_user(ctx, args.user))
    if ctx.want_xml():
        ctx.print_xml(body)
        return
    user = common.parse_xml(body)
    oid = text(user, "ID")
    common.print_section(ctx, "USER %s INFORMATION" % oid, [
        ("ID", oid),
        ("NAME", text(user, "NAME")),
        ("GROUP", text(user, "GNAME") or text(user, "GID")),
        ("PASSWORD", text(user, "PASSWORD")),
        ("AUTH_DRIVER", text(user, "AUTH_DRIVER")),
        ("ENABLED", "Yes" if integer(user, "ENABLED") else "No"),
    ])
    ctx.out()
    ctx.out("USER TEMPLATE")
    for line in common.template_lines(user.find("TEMPLATE")):
        ctx.out(line)


def configure(subparsers):
    """Add the ``oneuser`` subcommands to ``subparsers``."""
    sub = common.add_command(subparsers, "create", do_create, "Create a new user")
    sub.add_argument("name", help="user name")
    sub.add_argument("password", help="password")
    sub = common.add_command(subparsers, "delete", do_delete, "Delete a user")
    sub.add_argument("user", help="user id or name")
    sub = common.add_command(subparsers, "passwd", do_passwd, "Change a user's password")
    sub.add_argument("user", help="user id or name")
    sub.add_argument("password", help="new password")
    common.add_command(subparsers, "list", do_list, "List the users", xml=True)
    sub = common.add_command(subparsers, "show", do_show, "Show a user", xml=True)
    sub.add_argument("user", help="user id or name")
    sub = common.add_command(subparsers, "chgrp", do_chgrp, "Move a user to another group")
    sub.add_argument("user", help="user id or name")
    sub.add_argument("group", help="group id or name")
    sub = common.add_command(subparsers, "chauth", do_chauth,
                             "Set a user's authentication driver (and password)")
    sub.add_argument("user", help="user id or name")
    sub.add_argument("driver", help="auth driver: core, public, ssh, x509, ...")
    sub.add_argument("password", nargs="?", default="", help="new password or secret")
    for name, enable, help_text in (("enable", True, "Enable a user"),
                                    ("disable", False, "Disable a user (it cannot log in)")):
        sub = common.add_command(subparsers, name, make_enable(enable), help_text)
        sub.add_argument("user", help="user id or name")


def main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``oneuser``; returns the exit status."""
    return common.run_main(
        "oneuser", "Manage OpenNebula users", configure,
        argv=argv, stdout=stdout, stderr=stderr, environ=environ,
    )


if __name__ == "__main__":
    raise SystemExit(main())
