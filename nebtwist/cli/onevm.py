"""``onevm``: manage virtual machines.

Subcommands::

    onevm create <template file>
    onevm deploy <vm> <host id|name>
    onevm shutdown|hold|release|stop|cancel|suspend|resume|restart|resubmit|reboot <vm>
    onevm delete <vm>                         (the "finalize" action)
    onevm recover <vm> --success|--failure|--retry|--delete
    onevm migrate|livemigrate <vm> <host id|name>
    onevm list [a|all|m|mine|g|group|<uid>|<user name>]
    onevm show <vm>
    onevm history <vm>
    onevm top [filter] [-d SECONDS] [-n COUNT]
    onevm chown <vm> <user> [<group>] | chgrp <vm> <group> | chmod <vm> <octet>

``<vm>`` is a VM id (or the name of a VM that is not DONE).  Actions use
the 3.4 call ``one.vm.action(session, action, id)``.  ``list`` shows every
VM the user may see except DONE ones.
"""

from nebtwist.cli import common, ownership
from nebtwist.cli.common import Column, integer, text

#: VM STATE names and short names (3.4).
VM_STATES = ["INIT", "PENDING", "HOLD", "ACTIVE", "STOPPED", "SUSPENDED", "DONE", "FAILED"]
VM_SHORT_STATES = ["init", "pend", "hold", "actv", "stop", "susp", "done", "fail"]

#: LCM_STATE names and short names (3.4; LCM_INIT has no short name).
LCM_STATES = [
    "LCM_INIT", "PROLOG", "BOOT", "RUNNING", "MIGRATE", "SAVE_STOP", "SAVE_SUSPEND",
    "SAVE_MIGRATE", "PROLOG_MIGRATE", "PROLOG_RESUME", "EPILOG_STOP", "EPILOG",
    "SHUTDOWN", "CANCEL", "FAILURE", "CLEANUP", "UNKNOWN",
]
LCM_SHORT_STATES = [
    "", "prol", "boot", "runn", "migr", "save", "save", "save", "migr", "prol",
    "epil", "epil", "shut", "shut", "fail", "clea", "unkn",
]

#: STATE value of ACTIVE VMs, whose LCM_STATE is what matters.
ACTIVE = 3

#: Pool state filter: every state except DONE.
ANY_BUT_DONE = -1

#: Subcommands that map directly onto ``one.vm.action``.
SIMPLE_ACTIONS = [
    ("shutdown", "shutdown", "Shut down a running VM"),
    ("delete", "finalize", "Delete a VM (finalize it)"),
    ("hold", "hold", "Hold a pending VM"),
    ("release", "release", "Release a held VM"),
    ("stop", "stop", "Stop a running VM (save it to the front-end)"),
    ("cancel", "cancel", "Cancel (destroy) a running VM"),
    ("suspend", "suspend", "Suspend a running VM on its host"),
    ("resume", "resume", "Resume a stopped or suspended VM"),
    ("restart", "restart", "Boot again a VM stuck in BOOT or UNKNOWN"),
    ("resubmit", "resubmit", "Send a VM back to PENDING"),
    ("reboot", "reboot", "Reboot a running VM"),
]


def _name(names, value):
    if 0 <= value < len(names):
        return names[value]
    return str(value)


def short_state(vm):
    """Short status of a ``<VM>`` element (LCM short name when ACTIVE)."""
    state = integer(vm, "STATE", -1)
    if state == ACTIVE:
        lcm = integer(vm, "LCM_STATE", -1)
        short = _name(LCM_SHORT_STATES, lcm)
        return short or "actv"
    return _name(VM_SHORT_STATES, state)


def last_history(vm):
    """The last ``HISTORY_RECORDS/HISTORY`` element, or ``None``."""
    records = vm.findall("HISTORY_RECORDS/HISTORY")
    return records[-1] if records else None


def hostname(vm):
    """Host of the VM's last history record ("" if it never had one)."""
    return text(last_history(vm), "HOSTNAME")


def elapsed(vm):
    """Running time as ``DD HH:MM:SS``: STIME to ETIME, or to now if not ended."""
    stime = integer(vm, "STIME")
    etime = integer(vm, "ETIME")
    end = etime if etime > 0 else int(common.now())
    return common.format_elapsed(end - stime)


#: Columns of ``onevm list``.
LIST_COLUMNS = [
    Column("ID", 4, lambda v: integer(v, "ID"), "right"),
    Column("USER", 8, lambda v: text(v, "UNAME") or text(v, "UID")),
    Column("NAME", 8, lambda v: text(v, "NAME")),
    Column("STAT", 4, short_state),
    Column("CPU", 3, lambda v: integer(v, "CPU"), "right"),
    Column("MEM", 7, lambda v: integer(v, "MEMORY"), "right"),
    Column("HOSTNAME", 15, hostname),
    Column("TIME", 11, elapsed, "right"),
]


def resolve_vm(ctx, value):
    """VM id for a VM id, or for the name of a VM that is not DONE."""
    return common.resolve(ctx, value, "one.vmpool.info",
                          (common.FILTER_ALL, -1, -1, ANY_BUT_DONE), "VM", "VM")


def do_create(ctx, args):
    """``onevm create``: allocate a VM from a template file."""
    template = common.read_template_file(args.file)
    oid = ctx.call("one.vm.allocate", template)
    common.print_created(ctx, oid)


def do_deploy(ctx, args):
    """``onevm deploy``: start a pending VM on a host."""
    vid = resolve_vm(ctx, args.vm)
    hid = common.resolve_host(ctx, args.host)
    ctx.call("one.vm.deploy", vid, hid)


def make_action(action):
    """Handler for a subcommand that calls ``one.vm.action(action, id)``."""
    def do_action(ctx, args):
        ctx.call("one.vm.action", action, resolve_vm(ctx, args.vm))
    do_action.__doc__ = "``one.vm.action`` with ``%s``." % action
    return do_action


#: ``onevm recover`` options -> ``one.vm.recover`` operation codes (OpenNebula 5.x).
RECOVER_OPS = {"failure": 0, "success": 1, "retry": 2, "delete": 3}


def do_recover(ctx, args):
    """``onevm recover``: settle by hand a VM whose driver operation never
    ended: take it as succeeded or failed, issue it again, or delete the VM
    (``one.vm.recover(id, op)``; an admin operation)."""
    ctx.call("one.vm.recover", resolve_vm(ctx, args.vm), RECOVER_OPS[args.op])


def make_migrate(live):
    """Handler for ``migrate`` (``live=False``) or ``livemigrate``."""
    def do_migrate(ctx, args):
        vid = resolve_vm(ctx, args.vm)
        hid = common.resolve_host(ctx, args.host)
        ctx.call("one.vm.migrate", vid, hid, live)
    do_migrate.__doc__ = "``one.vm.migrate`` with live=%s." % live
    return do_migrate


def do_list(ctx, args):
    """``onevm list``: one line per VM (DONE VMs excluded)."""
    flag = common.pool_filter(ctx, args.filter)
    body = ctx.call("one.vmpool.info", flag, -1, -1, ANY_BUT_DONE)
    common.print_pool(ctx, body, LIST_COLUMNS, "VM")


def do_show(ctx, args):
    """``onevm show``: information, monitoring and template of one VM."""
    body = ctx.call("one.vm.info", resolve_vm(ctx, args.vm))
    if ctx.want_xml():
        ctx.print_xml(body)
        return
    vm = common.parse_xml(body)
    oid = text(vm, "ID")
    state = integer(vm, "STATE", -1)
    lcm = integer(vm, "LCM_STATE", -1)
    common.print_section(ctx, "VIRTUAL MACHINE %s INFORMATION" % oid, [
        ("ID", oid),
        ("NAME", text(vm, "NAME")),
        ("USER", text(vm, "UNAME") or text(vm, "UID")),
        ("GROUP", text(vm, "GNAME") or text(vm, "GID")),
        ("STATE", _name(VM_STATES, state)),
        ("LCM_STATE", _name(LCM_STATES, lcm)),
        ("HOSTNAME", hostname(vm)),
        ("START TIME", common.format_time(integer(vm, "STIME"))),
        ("END TIME", common.format_time(integer(vm, "ETIME"))),
        ("DEPLOY ID", text(vm, "DEPLOY_ID") or "-"),
    ])
    ctx.out()
    common.print_section(ctx, "VIRTUAL MACHINE MONITORING", [
        ("NET_TX", integer(vm, "NET_TX")),
        ("NET_RX", integer(vm, "NET_RX")),
        ("USED MEMORY", integer(vm, "MEMORY")),
        ("USED CPU", integer(vm, "CPU")),
    ])
    ctx.out()
    user_template = vm.find("USER_TEMPLATE")
    if user_template is not None and len(user_template):
        # OpenNebula 4.x: the scheduler's SCHED_MESSAGE (why a VM waits) lives here.
        ctx.out("USER TEMPLATE")
        for line in common.template_lines(user_template):
            ctx.out(line)
        ctx.out()
    ctx.out("VIRTUAL MACHINE TEMPLATE")
    for line in common.template_lines(vm.find("TEMPLATE")):
        ctx.out(line)


#: History REASON short names (3.4 ``VirtualMachine.rb``).
REASON_SHORT = ["none", "erro", "stop", "user", "canc"]


def _history_rows(vm):
    return vm.findall("HISTORY_RECORDS/HISTORY")


def _span(start, end):
    if start <= 0:
        return "-"
    return common.format_elapsed((end if end > 0 else int(common.now())) - start)


#: Columns of ``onevm history`` (3.4 ``onevm history``).
HISTORY_COLUMNS = [
    Column("SEQ", 3, lambda h: integer(h, "SEQ"), "right"),
    Column("HOSTNAME", 15, lambda h: text(h, "HOSTNAME")),
    Column("REASON", 6, lambda h: _name(REASON_SHORT, integer(h, "REASON", -1))),
    Column("START", 14, lambda h: common.format_time(integer(h, "STIME"))),
    Column("TIME", 11, lambda h: _span(integer(h, "STIME"), integer(h, "ETIME")), "right"),
    Column("PTIME", 11, lambda h: _span(integer(h, "PSTIME"), integer(h, "PETIME")), "right"),
]


def do_history(ctx, args):
    """``onevm history``: one line per placement of the VM."""
    body = ctx.call("one.vm.info", resolve_vm(ctx, args.vm))
    if ctx.want_xml():
        ctx.print_xml(body)
        return
    vm = common.parse_xml(body)
    common.print_table(ctx, HISTORY_COLUMNS, _history_rows(vm))


def do_top(ctx, args):
    """``onevm top``: the list, refreshed every ``-d`` seconds (``-n`` times; Ctrl-C ends)."""
    import time

    flag = common.pool_filter(ctx, args.filter)
    count = 0
    try:
        while True:
            pool = common.parse_xml(ctx.call("one.vmpool.info", flag, -1, -1, ANY_BUT_DONE))
            if count and ctx.stdout.isatty():
                ctx.stdout.write("\x1b[H\x1b[2J")  # clear the terminal between refreshes
            common.print_table(ctx, LIST_COLUMNS, pool.findall("VM"))
            count += 1
            if args.count and count >= args.count:
                return
            time.sleep(args.delay)
    except KeyboardInterrupt:
        return


def configure(subparsers):
    """Add the ``onevm`` subcommands to ``subparsers``."""
    sub = common.add_command(subparsers, "create", do_create, "Create a VM from a template file")
    sub.add_argument("file", help="template file")
    sub = common.add_command(subparsers, "deploy", do_deploy, "Deploy a pending VM on a host")
    sub.add_argument("vm", help="VM id")
    sub.add_argument("host", help="host id or name")
    for name, action, help_text in SIMPLE_ACTIONS:
        sub = common.add_command(subparsers, name, make_action(action), help_text)
        sub.add_argument("vm", help="VM id")
    for name, live, help_text in (
        ("migrate", False, "Migrate a running VM to another host (save and restore)"),
        ("livemigrate", True, "Migrate a running VM to another host without stopping it"),
    ):
        sub = common.add_command(subparsers, name, make_migrate(live), help_text)
        sub.add_argument("vm", help="VM id")
        sub.add_argument("host", help="host id or name")
    sub = common.add_command(subparsers, "recover", do_recover,
                             "Recover a VM stuck in a driver operation (admin)")
    sub.add_argument("vm", help="VM id")
    group = sub.add_mutually_exclusive_group(required=True)
    for op, help_text in (
        ("success", "take the pending operation as succeeded"),
        ("failure", "take the pending operation as failed"),
        ("retry", "issue the pending operation again"),
        ("delete", "delete the VM now, from any state but DONE"),
    ):
        group.add_argument("--" + op, dest="op", action="store_const", const=op,
                           help=help_text)
    sub = common.add_command(subparsers, "list", do_list, "List VMs", xml=True)
    sub.add_argument("filter", nargs="?", default=None,
                     help="a|all (default), m|mine, g|group, or a user id or name")
    sub = common.add_command(subparsers, "show", do_show, "Show a VM", xml=True)
    sub.add_argument("vm", help="VM id")
    sub = common.add_command(subparsers, "history", do_history, "Show a VM's placements",
                             xml=True)
    sub.add_argument("vm", help="VM id")
    sub = common.add_command(subparsers, "top", do_top, "List VMs, refreshed")
    sub.add_argument("filter", nargs="?", default=None,
                     help="a|all (default), m|mine, g|group, or a user id or name")
    sub.add_argument("-d", "--delay", type=float, default=5.0, help="seconds between refreshes")
    sub.add_argument("-n", "--count", type=int, default=0, help="refreshes (0: until Ctrl-C)")
    ownership.add_commands(subparsers, "vm", "VM", resolve_vm)  # chown, chgrp, chmod


def main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``onevm``; returns the exit status."""
    return common.run_main(
        "onevm", "Manage OpenNebula virtual machines", configure,
        argv=argv, stdout=stdout, stderr=stderr, environ=environ,
    )


if __name__ == "__main__":
    raise SystemExit(main())
