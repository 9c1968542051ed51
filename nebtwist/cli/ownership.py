"""``chown``, ``chgrp`` and ``chmod`` subcommands shared by the ``one*`` tools.

As in OpenNebula 3.4's CLI (``one_helper.rb``, ``OpenNebula::PoolElement``)::

    onevm chown <vm> <user> [<group>]     one.vm.chown(id, uid, gid or -1)
    onevm chgrp <vm> <group>              one.vm.chown(id, -1, gid)
    onevm chmod <vm> <octet>              one.vm.chmod(id, 9 bits)

Users and groups may be given by id or name. The octet has three digits
(owner, group, other), each the sum of 4 (USE), 2 (MANAGE) and 1 (ADMIN):
``640`` is ``um- u-- ---`` (3.4 ``PoolElement#chmod_octet``).
"""

from nebtwist.cli import common


def resolve_group(ctx, value):
    """Group id for a group id or name (through ``one.grouppool.info``)."""
    return common.resolve(ctx, value, "one.grouppool.info", (), "GROUP", "GROUP")


def octet_bits(octet):
    """``"640"`` -> the nine 1/0 values of ``one.*.chmod`` (OWNER_U ... OTHER_A).

    :raises common.CommandError: not three digits 0-7.
    """
    text = str(octet).strip()
    if len(text) != 3 or any(c not in "01234567" for c in text):
        raise common.CommandError(
            "Permissions must be an octet of three digits 0-7 (owner, group, other; "
            "4 = use, 2 = manage, 1 = admin), e.g. 640, not %r" % octet)
    bits = []
    for digit in text:
        n = int(digit)
        bits += [1 if n & 4 else 0, 1 if n & 2 else 0, 1 if n & 1 else 0]
    return bits


def rights_string(element):
    """``um-`` style OWNER/GROUP/OTHER strings of a body's ``PERMISSIONS``."""
    perms = element.find("PERMISSIONS")
    out = []
    for who in ("OWNER", "GROUP", "OTHER"):
        out.append("".join(
            letter if common.integer(perms, "%s_%s" % (who, kind)) == 1 else "-"
            for letter, kind in (("u", "U"), ("m", "M"), ("a", "A"))))
    return out


def add_commands(subparsers, prefix, kind, resolve_object):
    """Add ``chown``, ``chgrp`` and ``chmod`` to a tool.

    :param prefix: the API prefix (``"vm"`` for ``one.vm.chown``).
    :param kind: how help texts name the object (``"VM"``).
    :param resolve_object: ``(ctx, value) -> id`` for the object argument.
    """

    def do_chown(ctx, args):
        oid = resolve_object(ctx, args.object)
        uid = common.resolve_user(ctx, args.user)
        gid = resolve_group(ctx, args.group) if args.group is not None else -1
        ctx.call("one.%s.chown" % prefix, oid, uid, gid)

    def do_chgrp(ctx, args):
        oid = resolve_object(ctx, args.object)
        ctx.call("one.%s.chown" % prefix, oid, -1, resolve_group(ctx, args.group))

    def do_chmod(ctx, args):
        bits = octet_bits(args.octet)
        ctx.call("one.%s.chmod" % prefix, resolve_object(ctx, args.object), *bits)

    sub = common.add_command(subparsers, "chown", do_chown,
                             "Change the owner (and group) of the %s" % kind)
    sub.add_argument("object", help="%s id or name" % kind)
    sub.add_argument("user", help="new owner: user id or name")
    sub.add_argument("group", nargs="?", default=None, help="new group: group id or name")
    sub = common.add_command(subparsers, "chgrp", do_chgrp, "Change the group of the %s" % kind)
    sub.add_argument("object", help="%s id or name" % kind)
    sub.add_argument("group", help="new group: group id or name")
    sub = common.add_command(subparsers, "chmod", do_chmod,
                             "Change the permissions of the %s (octet, e.g. 640)" % kind)
    sub.add_argument("object", help="%s id or name" % kind)
    sub.add_argument("octet", help="three digits 0-7: owner, group, other "
                                   "(4 use + 2 manage + 1 admin)")
