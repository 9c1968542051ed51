"""``onehost``: manage the cluster nodes (hosts).

Subcommands::

    onehost create <name> <im_mad> <vmm_mad> [<tm_mad>]
    onehost create <name> <im_mad> <vmm_mad> <vnm_mad> [<cluster>]
    onehost create <name> --im <im_mad> --vm <vmm_mad> [--net|-n <vnm_mad>] [--cluster <id>]
    onehost delete <id|name>
    onehost list
    onehost show <id|name>
    onehost enable <id|name>
    onehost disable <id|name>
    onehost sync

``create`` with three driver arguments and a cluster id, or whose third
driver is a network driver's name (:data:`VNM_NAMES`: ``dummy``, ``fw``,
``ebtables``, ``802.1Q``, ``ovswitch``), uses OpenNebula 3.4's positional
form (``onehost create <host> <im> <vmm> <vnm> [<cluster>]``, sent as
``one.host.allocate(session, name, im, vmm, vnm, cluster)``, cluster -1 by
default). Any other third driver is the OpenNebula 1.4 form's TM driver:
``one.host.allocate(session, name, im, vmm, tm)`` (its host's VN_MAD is
``dummy``). With two drivers ``create`` uses
``one.host.allocate(session, name, im, vmm, -1)`` (no cluster). The options
form (OpenNebula 3.4's ``--im``/``--vm``/``--net``, and the current one
without ``--net``) sends 3.4's ``one.host.allocate(session, name, im, vmm,
vnm, cluster)``, ``vnm`` ``dummy`` and cluster -1 by default; such a host
takes the TM driver ``DEFAULT_TM_MAD`` of oned.conf.

``sync`` touches ``$ONE_LOCATION/var/remotes`` (creating it when missing),
as OpenNebula 3.4's ``onehost sync`` did: every host monitored after that
moment gets its remote scripts copied again by its information driver.
"""

import os
import time

from nebtwist.cli import common
from nebtwist.cli.common import Column, integer, text

#: Host STATE values (``include/Host.h``): 3.4's five, then OpenNebula 4.x's
#: MONITORING_ERROR (a host in ERROR being monitored again) and MONITORING_INIT.
HOST_STATES = ["INIT", "MONITORING", "MONITORED", "ERROR", "DISABLED", "MONITORING_ERROR",
               "MONITORING_INIT"]

#: Short state shown by ``onehost list`` (3.4's on/err/off; a host being
#: monitored again after an error is still ``err`` until a monitoring succeeds,
#: where 4.x's Host.rb says ``retry``).
HOST_SHORT_STATES = {0: "on", 1: "on", 2: "on", 3: "err", 4: "off", 5: "err", 6: "on"}


def state_name(state):
    """Long name of a host STATE number."""
    if 0 <= state < len(HOST_STATES):
        return HOST_STATES[state]
    return str(state)


def short_state(state):
    """Short (``on``/``err``/``off``) name of a host STATE number."""
    return HOST_SHORT_STATES.get(state, str(state))


def _share(host, name):
    return integer(host, "HOST_SHARE/" + name)


#: Columns of ``onehost list``.
LIST_COLUMNS = [
    Column("ID", 2, lambda h: integer(h, "ID"), "right"),
    Column("NAME", 12, lambda h: text(h, "NAME")),
    Column("RVM", 3, lambda h: _share(h, "RUNNING_VMS"), "right"),
    Column("TCPU", 6, lambda h: _share(h, "MAX_CPU"), "right"),
    Column("FCPU", 6, lambda h: _share(h, "FREE_CPU"), "right"),
    Column("ACPU", 6, lambda h: _share(h, "MAX_CPU") - _share(h, "CPU_USAGE"), "right"),
    Column("TMEM", 7, lambda h: _share(h, "MAX_MEM"), "right"),
    Column("FMEM", 7, lambda h: _share(h, "FREE_MEM"), "right"),
    Column("STAT", 4, lambda h: short_state(integer(h, "STATE", -1))),
]


#: The network drivers (oned.conf VN_MAD NAMEs shipped) that tell OpenNebula
#: 3.4's positional ``create`` from 1.4's, whose fourth argument was a TM driver.
VNM_NAMES = ("dummy", "fw", "ebtables", "802.1Q", "ovswitch")


def do_create(ctx, args):
    """``onehost create``: allocate a host, print ``ID: n`` with ``-v``."""
    options = (args.im, args.vm, args.net, args.cluster)
    if any(o is not None for o in options):
        if args.im_mad is not None:
            raise common.CommandError(
                "give the drivers either as arguments (1.4) or with --im/--vm (3.4), not both")
        if args.im is None or args.vm is None:
            raise common.CommandError("--im and --vm are both needed")
        oid = ctx.call("one.host.allocate", args.name, args.im, args.vm, args.net or "dummy",
                       -1 if args.cluster is None else args.cluster)
        common.print_created(ctx, oid)
        return
    if args.im_mad is None or args.vmm_mad is None:
        raise common.CommandError("the information and virtualization drivers are needed: "
                                  "onehost create <name> <im_mad> <vmm_mad> [<tm_mad>]")
    if args.cluster_pos is not None or args.tm_mad in VNM_NAMES:  # 3.4 positional form
        try:
            cluster = -1 if args.cluster_pos is None else int(args.cluster_pos)
        except ValueError:
            raise common.CommandError(f"the cluster must be a number, not "
                                      f"{args.cluster_pos!r}") from None
        oid = ctx.call("one.host.allocate", args.name, args.im_mad, args.vmm_mad, args.tm_mad,
                       cluster)
    elif args.tm_mad is not None:
        oid = ctx.call("one.host.allocate", args.name, args.im_mad, args.vmm_mad, args.tm_mad)
    else:
        oid = ctx.call("one.host.allocate", args.name, args.im_mad, args.vmm_mad, -1)
    common.print_created(ctx, oid)


def do_delete(ctx, args):
    """``onehost delete``: remove a host."""
    ctx.call("one.host.delete", common.resolve_host(ctx, args.host))


def do_enable(ctx, args):
    """``onehost enable``: let the scheduler use a host again."""
    ctx.call("one.host.enable", common.resolve_host(ctx, args.host), True)


def do_disable(ctx, args):
    """``onehost disable``: stop monitoring and scheduling onto a host."""
    ctx.call("one.host.enable", common.resolve_host(ctx, args.host), False)


def do_sync(ctx, args):
    """``onehost sync``: copy the remotes to every host at its next monitoring
    (touch ``$ONE_LOCATION/var/remotes``; ONE_LOCATION defaults to the
    current folder, as for ``twistd nebula``)."""
    environ = os.environ if ctx.environ is None else ctx.environ
    remotes = os.path.join(environ.get("ONE_LOCATION") or os.getcwd(), "var", "remotes")
    try:
        os.makedirs(remotes, exist_ok=True)
        now = time.time()
        os.utime(remotes, (now, now))
    except OSError as e:
        raise common.CommandError(f"cannot touch {remotes}: {e.strerror}") from None


def do_list(ctx, args):
    """``onehost list``: one line per host."""
    body = ctx.call("one.hostpool.info")
    common.print_pool(ctx, body, LIST_COLUMNS, "HOST")


def do_show(ctx, args):
    """``onehost show``: information, shares and monitoring of one host."""
    body = ctx.call("one.host.info", common.resolve_host(ctx, args.host))
    if ctx.want_xml():
        ctx.print_xml(body)
        return
    host = common.parse_xml(body)
    template = host.find("TEMPLATE")
    oid = text(host, "ID")
    info = [
        ("ID", oid),
        ("NAME", text(host, "NAME")),
    ]
    cluster = text(host, "CLUSTER")
    if cluster:
        info.append(("CLUSTER", cluster))
    info += [
        ("STATE", state_name(integer(host, "STATE", -1))),
        ("IM_MAD", text(host, "IM_MAD")),
        ("VM_MAD", text(host, "VM_MAD")),
        ("VN_MAD", text(host, "VN_MAD")),
    ]
    tm_mad = text(template, "TM_MAD", None)
    if tm_mad is None:
        tm_mad = text(host, "TM_MAD", None)  # 1.4 bodies carry it at top level
    if tm_mad is not None:
        info.append(("TM_MAD", tm_mad))
    info.append(("LAST MONITORING TIME", common.format_time(integer(host, "LAST_MON_TIME"))))
    common.print_section(ctx, "HOST %s INFORMATION" % oid, info)
    ctx.out()
    common.print_section(ctx, "HOST SHARES", [
        ("MAX MEM", _share(host, "MAX_MEM")),
        ("USED MEM (REAL)", _share(host, "USED_MEM")),
        ("USED MEM (ALLOCATED)", _share(host, "MEM_USAGE")),
        ("FREE MEM", _share(host, "FREE_MEM")),
        ("MAX CPU", _share(host, "MAX_CPU")),
        ("USED CPU (REAL)", _share(host, "USED_CPU")),
        ("USED CPU (ALLOCATED)", _share(host, "CPU_USAGE")),
        ("FREE CPU", _share(host, "FREE_CPU")),
        ("RUNNING VMS", _share(host, "RUNNING_VMS")),
    ])
    ctx.out()
    ctx.out("MONITORING INFORMATION")
    for line in common.template_lines(template):
        ctx.out(line)


def configure(subparsers):
    """Add the ``onehost`` subcommands to ``subparsers``."""
    sub = common.add_command(subparsers, "create", do_create, "Create a new host")
    sub.add_argument("name", help="host name")
    sub.add_argument("im_mad", nargs="?", default=None, help="information driver")
    sub.add_argument("vmm_mad", nargs="?", default=None, help="virtualization driver")
    sub.add_argument("tm_mad", nargs="?", default=None,
                     help="transfer driver (1.4 form), or network driver (3.4 form)")
    sub.add_argument("cluster_pos", nargs="?", default=None, metavar="cluster",
                     help="cluster id (3.4 positional form)")
    sub.add_argument("--im", default=None, help="information driver (3.4 form)")
    sub.add_argument("--vm", default=None, help="virtualization driver (3.4 form)")
    sub.add_argument("-n", "--net", default=None,
                     help="network driver (VN_MAD; 3.4 form; default dummy)")
    sub.add_argument("--cluster", type=int, default=None, help="cluster id (default -1)")
    for name, handler, help_text in (
        ("delete", do_delete, "Delete a host"),
        ("enable", do_enable, "Enable a host"),
        ("disable", do_disable, "Disable a host"),
    ):
        sub = common.add_command(subparsers, name, handler, help_text)
        sub.add_argument("host", help="host id or name")
    common.add_command(subparsers, "list", do_list, "List the hosts", xml=True)
    common.add_command(subparsers, "sync", do_sync,
                       "Copy the remote scripts to every host at its next monitoring")
    sub = common.add_command(subparsers, "show", do_show, "Show a host", xml=True)
    sub.add_argument("host", help="host id or name")


def main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``onehost``; returns the exit status."""
    return common.run_main(
        "onehost", "Manage OpenNebula hosts", configure,
        argv=argv, stdout=stdout, stderr=stderr, environ=environ,
    )


if __name__ == "__main__":
    raise SystemExit(main())
