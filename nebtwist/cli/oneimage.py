"""``oneimage``: manage the image repository (OpenNebula 3.4's ``oneimage``).

Subcommands::

    oneimage register <template file> [-d DATASTORE]   (alias: create)
    oneimage list [a|all|m|mine|g|group|<uid>|<user name>]
    oneimage show <id|name>
    oneimage delete <id|name>
    oneimage enable <id|name>
    oneimage disable <id|name>
    oneimage persistent <id|name>
    oneimage nonpersistent <id|name>
    oneimage chtype <id|name> <OS|CDROM|DATABLOCK>
    oneimage update <id|name> <template file>

A template names the image and where its file comes from::

    NAME = "ttylinux"
    PATH = /srv/images/ttylinux.img        # or http://..., copied in
    TYPE = OS                              # OS, CDROM or DATABLOCK
    PERSISTENT = NO

Registration returns at once; the image is ``lock`` while its file is
copied into the repository, then ``rdy`` (or ``err``: ``oneimage show``
gives the reason). Columns and short names follow 3.4's
``oneimage_helper.rb`` and ``Image.rb``.
"""

from nebtwist.cli import common, ownership
from nebtwist.cli.common import Column, integer, text

#: IMAGE STATE values: long names (show) and list names (3.4 Image.rb).
IMAGE_STATES = ["INIT", "READY", "USED", "DISABLED", "LOCKED", "ERROR"]
SHORT_STATES = ["init", "rdy", "used", "disa", "lock", "err"]
#: IMAGE TYPE values: long and list names.
IMAGE_TYPES = ["OS", "CDROM", "DATABLOCK"]
SHORT_TYPES = ["OS", "CD", "DB"]


def _pick(names, value):
    return names[value] if 0 <= value < len(names) else str(value)


#: Columns of ``oneimage list``.
LIST_COLUMNS = [
    Column("ID", 4, lambda i: integer(i, "ID"), "right"),
    Column("USER", 8, lambda i: text(i, "UNAME") or text(i, "UID")),
    Column("GROUP", 8, lambda i: text(i, "GNAME") or text(i, "GID")),
    Column("NAME", 12, lambda i: text(i, "NAME")),
    Column("DATASTORE", 9, lambda i: text(i, "DATASTORE")),
    Column("SIZE", 6, lambda i: "%dM" % integer(i, "SIZE"), "right"),
    Column("TYPE", 4, lambda i: _pick(SHORT_TYPES, integer(i, "TYPE", -1))),
    Column("PER", 3, lambda i: "Yes" if integer(i, "PERSISTENT") else "No"),
    Column("STAT", 4, lambda i: _pick(SHORT_STATES, integer(i, "STATE", -1))),
    Column("RVMS", 4, lambda i: integer(i, "RUNNING_VMS"), "right"),
]


def resolve_image(ctx, value):
    """Image id for an image id or name (among the images the user sees)."""
    return common.resolve(ctx, value, "one.imagepool.info",
                          (common.FILTER_ALL, -1, -1), "IMAGE", "IMAGE")


def rights(el, who):
    """``um-``-style rights of ``who`` (OWNER, GROUP, OTHER) in ``el``'s PERMISSIONS."""
    perms = el.find("PERMISSIONS")
    return "".join(
        letter if integer(perms, "%s_%s" % (who, kind)) == 1 else "-"
        for letter, kind in (("u", "U"), ("m", "M"), ("a", "A"))
    )


def print_permissions(ctx, el):
    """The PERMISSIONS section of a show command (nothing if absent)."""
    if el.find("PERMISSIONS") is None:
        return
    ctx.out()
    common.print_section(ctx, "PERMISSIONS", [
        (who, rights(el, who)) for who in ("OWNER", "GROUP", "OTHER")])


def do_register(ctx, args):
    """``oneimage register``: register an image from a template file."""
    template = common.read_template_file(args.file)
    oid = ctx.call("one.image.allocate", template, args.datastore)
    common.print_created(ctx, oid)


def do_list(ctx, args):
    """``oneimage list``: one line per image."""
    flag = common.pool_filter(ctx, args.filter)
    body = ctx.call("one.imagepool.info", flag, -1, -1)
    common.print_pool(ctx, body, LIST_COLUMNS, "IMAGE")


def do_show(ctx, args):
    """``oneimage show``: information and template of an image."""
    body = ctx.call("one.image.info", resolve_image(ctx, args.image))
    if ctx.want_xml():
        ctx.print_xml(body)
        return
    img = common.parse_xml(body)
    oid = text(img, "ID")
    info = [
        ("ID", oid),
        ("NAME", text(img, "NAME")),
        ("USER", text(img, "UNAME")),
        ("GROUP", text(img, "GNAME")),
        ("DATASTORE", text(img, "DATASTORE")),
        ("TYPE", _pick(IMAGE_TYPES, integer(img, "TYPE", -1))),
        ("REGISTER TIME", common.format_time(integer(img, "REGTIME"))),
        ("PERSISTENT", "Yes" if integer(img, "PERSISTENT") else "No"),
        ("SOURCE", text(img, "SOURCE")),
        ("PATH", text(img, "PATH")),
    ]
    if text(img, "FSTYPE"):
        info.append(("FSTYPE", text(img, "FSTYPE")))
    info += [
        ("SIZE", "%dM" % integer(img, "SIZE")),
        ("STATE", _pick(SHORT_STATES, integer(img, "STATE", -1))),
        ("RUNNING_VMS", integer(img, "RUNNING_VMS")),
    ]
    common.print_section(ctx, "IMAGE %s INFORMATION" % oid, info)
    print_permissions(ctx, img)
    ctx.out()
    ctx.out("IMAGE TEMPLATE")
    for line in common.template_lines(img.find("TEMPLATE")):
        ctx.out(line)


def _simple(method, *extra):
    def handler(ctx, args):
        ctx.call(method, resolve_image(ctx, args.image), *extra)
    return handler


def do_chtype(ctx, args):
    """``oneimage chtype``: change the TYPE of an image."""
    ctx.call("one.image.chtype", resolve_image(ctx, args.image), args.type.upper())


def do_update(ctx, args):
    """``oneimage update``: replace an image's template with a file's contents."""
    template = common.read_template_file(args.file)
    ctx.call("one.image.update", resolve_image(ctx, args.image), template)


def configure(subparsers):
    """Add the ``oneimage`` subcommands to ``subparsers``."""
    for name in ("register", "create"):
        sub = common.add_command(subparsers, name, do_register,
                                 "Register an image from a template file")
        sub.add_argument("file", help="template file (NAME, PATH or SOURCE, TYPE, ...)")
        sub.add_argument("-d", "--datastore", type=int, default=1,
                         help="datastore id (default 1, the image datastore)")
    sub = common.add_command(subparsers, "list", do_list, "List images", xml=True)
    sub.add_argument("filter", nargs="?", default=None,
                     help="a|all (default), m|mine, g|group, or a user id or name")
    sub = common.add_command(subparsers, "show", do_show, "Show an image", xml=True)
    sub.add_argument("image", help="image id or name")
    for name, handler, help_text in (
            ("delete", _simple("one.image.delete"), "Delete an image"),
            ("enable", _simple("one.image.enable", True), "Enable an image"),
            ("disable", _simple("one.image.enable", False),
             "Disable an image (VMs cannot use it)"),
            ("persistent", _simple("one.image.persistent", True),
             "Make an image persistent (one VM at a time, saved back)"),
            ("nonpersistent", _simple("one.image.persistent", False),
             "Make an image non-persistent")):
        sub = common.add_command(subparsers, name, handler, help_text)
        sub.add_argument("image", help="image id or name")
    sub = common.add_command(subparsers, "chtype", do_chtype, "Change the type of an image")
    sub.add_argument("image", help="image id or name")
    sub.add_argument("type", help="OS, CDROM or DATABLOCK")
    sub = common.add_command(subparsers, "update", do_update,
                             "Replace the template of an image")
    sub.add_argument("image", help="image id or name")
    sub.add_argument("file", help="template file")
    ownership.add_commands(subparsers, "image", "image", resolve_image)  # chown, chgrp, chmod


def main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``oneimage``; returns the exit status."""
    return common.run_main(
        "oneimage", "Manage OpenNebula images", configure,
        argv=argv, stdout=stdout, stderr=stderr, environ=environ,
    )


if __name__ == "__main__":
    raise SystemExit(main())
