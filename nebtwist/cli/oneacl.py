"""``oneacl``: manage ACL rules (OpenNebula 3.4).

Subcommands::

    oneacl create "<user> <resource> <rights>"     (or the three as separate words)
    oneacl delete <id>
    oneacl list

A rule is written as in 3.4: user ``#<uid>``, ``@<gid>`` or ``*``; resource
``TYPE[+TYPE...]/<#id|@gid|*>`` with types VM, HOST, NET, IMAGE, USER,
TEMPLATE, GROUP, DATASTORE, CLUSTER; rights ``USE``, ``MANAGE``, ``ADMIN``,
``CREATE`` joined with ``+``. For example::

    oneacl create "@105 VM+NET+IMAGE+TEMPLATE/* CREATE"
    oneacl create "#5 HOST/#2 MANAGE"

The client turns the text into the three hex masks ``one.acl.addrule``
takes (as 3.4's ``OpenNebula::Acl.parse_rule`` did) and prints ``ID: <id>``.
``list`` shows 3.4's columns::

       ID     USER RES_VHNIUTGDC   RID OPE_UMAC
        0       @1     V-NI-T---     *     ---c
        1       @1     -H-------     *     -m--
"""

from nebtwist.cli import common
from nebtwist.cli.common import Column, text
from nebtwist.core.acl import (RESOURCE_LETTERS, RIGHT_LETTERS, AclSyntaxError, parse_rule,
                               to_hex)


def resource_mask(string):
    """The RES_VHNIUTGDC letters of a rule's STRING (``"VM+NET/*"`` -> ``V-N------``)."""
    parts = string.split(" ")
    types = set(parts[1].split("/")[0].split("+")) if len(parts) > 1 else set()
    return "".join(letter if name in types else "-" for name, letter in RESOURCE_LETTERS)


def rights_mask(string):
    """The OPE_UMAC letters of a rule's STRING (``"USE+CREATE"`` -> ``u--c``)."""
    parts = string.split(" ")
    rights = set(parts[2].split("+")) if len(parts) > 2 else set()
    return "".join(letter if name in rights else "-" for name, letter in RIGHT_LETTERS)


def _part(string, index):
    parts = string.split(" ")
    return parts[index] if len(parts) > index else ""


#: Columns of ``oneacl list`` (3.4 ``one_acl_helper.rb``; all right-aligned).
LIST_COLUMNS = [
    Column("ID", 5, lambda a: text(a, "ID"), "right"),
    Column("USER", 8, lambda a: _part(text(a, "STRING"), 0), "right"),
    Column("RES_VHNIUTGDC", 13, lambda a: resource_mask(text(a, "STRING")), "right"),
    Column("RID", 5, lambda a: _part(text(a, "STRING"), 1).split("/")[-1], "right"),
    Column("OPE_UMAC", 8, lambda a: rights_mask(text(a, "STRING")), "right"),
]


def add_rule(ctx, rule):
    """Send ``rule`` (text) to ``one.acl.addrule``; returns the new rule's id.

    :raises common.CommandError: the text is not a rule.
    """
    try:
        masks = parse_rule(rule)
    except AclSyntaxError as e:
        raise common.CommandError(str(e)) from None
    return ctx.call("one.acl.addrule", *(to_hex(m) for m in masks))


def do_create(ctx, args):
    """``oneacl create``: add a rule; prints its id."""
    ctx.out("ID: %s" % add_rule(ctx, " ".join(args.rule)))


def do_delete(ctx, args):
    """``oneacl delete``: remove a rule by id."""
    oid = common.parse_int(args.id)
    if oid is None:
        raise common.CommandError("ACL rule id must be a number, not %r" % args.id)
    ctx.call("one.acl.delrule", oid)


def do_list(ctx, args):
    """``oneacl list``: every rule, in 3.4's columns."""
    body = ctx.call("one.acl.info")
    common.print_pool(ctx, body, LIST_COLUMNS, "ACL")


def configure(subparsers):
    """Add the ``oneacl`` subcommands to ``subparsers``."""
    sub = common.add_command(subparsers, "create", do_create,
                             'Add a rule: "<user> <resource> <rights>"')
    sub.add_argument("rule", nargs="+",
                     help='the rule, e.g. "@1 VM+NET/* CREATE" (one or three words)')
    sub = common.add_command(subparsers, "delete", do_delete, "Delete a rule")
    sub.add_argument("id", help="rule id")
    common.add_command(subparsers, "list", do_list, "List the rules", xml=True)


def main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``oneacl``; returns the exit status."""
    return common.run_main(
        "oneacl", "Manage OpenNebula ACL rules", configure,
        argv=argv, stdout=stdout, stderr=stderr, environ=environ,
    )


if __name__ == "__main__":
    raise SystemExit(main())
