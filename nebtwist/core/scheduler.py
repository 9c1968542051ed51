"""The Scheduler: matches PENDING VMs to hosts and deploys them.

Follows OpenNebula 3.4's mm_sched (``src/scheduler/``; reference 5.4), run
as a timed loop in the same process instead of a separate XML-RPC client:
every SCHED_INTERVAL seconds it takes up to MAX_VM pending VMs (oldest
first) and the hosts with STATE < 3 (INIT, MONITORING, MONITORED); for each
VM it keeps the hosts that satisfy its REQUIREMENTS and have room for it —
CPU (x100) and MEMORY (x1024 KB) within the host's monitored FREE_CPU /
FREE_MEM *and* within MAX - USAGE of HOST_SHARE, counting what this cycle
already placed — ranks them by the VM's RANK (or the DEFAULT_SCHED policy:
0 packing = RUNNING_VMS, 1 striping = -RUNNING_VMS, 2 load-aware = FREE_CPU,
3 custom = DEFAULT_SCHED's RANK), and deploys on the best, at most
MAX_DISPATCH VMs per cycle and MAX_HOST per host.
"""

from twisted.internet import defer
from twisted.internet.task import LoopingCall

from nebtwist.core.objects import HOST_ERROR, PENDING
from nebtwist.expr import compile_rank
from nebtwist.log import OneLogger

log = OneLogger("SCHED")

POLICY_RANKS = {0: "RUNNING_VMS", 1: "- RUNNING_VMS", 2: "FREE_CPU"}


def host_lookup(host):
    """A ``name -> str`` lookup over a host: TEMPLATE, then HOST_SHARE, then
    the host's own fields (NAME, ID, STATE, CLUSTER_ID, ...), as 3.4's
    ``HostXML`` searches ``/HOST/TEMPLATE``, ``/HOST/HOST_SHARE``, ``/HOST``."""
    values = {"ID": str(host.oid), "NAME": host.name, "STATE": str(host.state),
              "IM_MAD": host.im_mad, "VM_MAD": host.vm_mad, "VN_MAD": host.vn_mad,
              "LAST_MON_TIME": str(host.last_mon_time), "CLUSTER_ID": str(host.cluster_id),
              "CLUSTER": host.cluster}
    for field in host.share.FIELDS:
        values[field.upper()] = str(getattr(host.share, field))
    for name, value in host.template:
        if isinstance(value, str):
            values[name] = value
    return values.get


class Scheduler:
    """The placement loop.

    :param nebula: the core (pools, configuration, clock).
    :param dispatch: the DispatchManager (``deploy(vm, host)`` coroutine).
    """

    def __init__(self, nebula, dispatch):
        self.nebula = nebula
        self.dispatch = dispatch
        self._loop = None
        config = nebula.config
        policy = config.vector("DEFAULT_SCHED")
        try:
            self.policy = int(policy.get("POLICY", 1))
        except ValueError:
            self.policy = 1
        rank = policy.get("RANK", "") if self.policy == 3 else POLICY_RANKS.get(self.policy, "")
        self.default_rank = compile_rank(rank)
        self.cycles = 0
        self.dispatched = 0

    def start(self):
        """Run a cycle every SCHED_INTERVAL seconds."""
        self._loop = LoopingCall(self.cycle)
        self._loop.clock = self.nebula.clock
        self._loop.start(self.nebula.config.get_float("SCHED_INTERVAL"), now=False).addErrback(
            lambda f: log.failure("scheduler loop stopped", f))

    def stop(self):
        """Stop the loop."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def cycle(self):
        """One scheduling cycle; returns a Deferred firing when its deploys are committed."""
        config = self.nebula.config
        max_vm = config.get_int("MAX_VM")
        max_dispatch = config.get_int("MAX_DISPATCH")
        max_host = config.get_int("MAX_HOST")
        self.cycles += 1
        hosts = [h for h in self.nebula.hostpool if h.state < HOST_ERROR]
        pending = sorted((vm for vm in self.nebula.vmpool if vm.state == PENDING),
                         key=lambda v: v.oid)[:max_vm]
        if not pending or not hosts:
            return defer.succeed(0)
        lookups = {h.oid: host_lookup(h) for h in hosts}
        placed_cpu = dict.fromkeys(lookups, 0)
        placed_mem = dict.fromkeys(lookups, 0)
        placed_n = dict.fromkeys(lookups, 0)
        deploys = []
        for vm in pending:
            if len(deploys) >= max_dispatch:
                break
            cpu, mem, _disk = vm.capacity()
            rank = vm.rank or self.default_rank
            best, best_rank = None, None
            for host in hosts:
                hid = host.oid
                if placed_n[hid] >= max_host:
                    continue
                lookup = lookups[hid]
                if vm.requirements is not None and not vm.requirements(lookup):
                    continue
                share = host.share
                c = cpu + placed_cpu[hid]
                m = mem + placed_mem[hid]
                free_cpu = share.free_cpu
                if share.max_cpu and free_cpu >= 0.9 * share.max_cpu:
                    free_cpu = -(-free_cpu // 100) * 100
                if c > free_cpu or m > share.free_mem or not share.test(c, m):
                    continue
                r = rank(lookup)
                if best is None or r > best_rank:
                    best, best_rank = host, r
            if best is None:
                continue
            placed_cpu[best.oid] += cpu
            placed_mem[best.oid] += mem
            placed_n[best.oid] += 1
            log.info("VM {vid}: dispatched to host {hid} ({name})", vid=vm.oid, hid=best.oid,
                     name=best.name)
            deploys.append(defer.ensureDeferred(self.dispatch.deploy(vm, best)))
        self.dispatched += len(deploys)

        def report(results):
            for ok, value in results:
                if not ok:
                    log.error("deploy failed: {m}", m=value.getErrorMessage())
            return len(results)

        return defer.DeferredList(deploys, consumeErrors=True).addCallback(report)
