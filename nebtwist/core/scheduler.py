"""The Scheduler: matches PENDING VMs to hosts and deploys them.

Follows OpenNebula 3.4's mm_sched (``src/scheduler/src/sched/Scheduler.cc``;
reference 5.4), run as a timed loop in the same process instead of a
separate XML-RPC client. Every SCHED_INTERVAL seconds a cycle:

1. takes the hosts with STATE < 3 (INIT, MONITORING, MONITORED) and up to
   MAX_VM pending VMs, oldest (lowest id) first, and snapshots each host as
   3.4's ``HostXML`` does: its attributes for REQUIREMENTS and RANK (TEMPLATE,
   then HOST_SHARE, then the HOST fields), its monitored FREE_CPU / FREE_MEM
   and its MAX - USAGE;
2. *match* (``Scheduler::match``): a host suits a VM when the VM's CPU (x100)
   and MEMORY (x1024 KB) are within the host's FREE_CPU (rounded up to a
   whole 100 when >= 90% of MAX_CPU, ``HostXML::get_capacity``) and FREE_MEM,
   and within MAX - USAGE (``HostXML::test_capacity``), the VM's
   REQUIREMENTS hold, and — for an owner outside the oneadmin user and group
   — the ACL rules (``nebula.acl``, when the core has them) give the owner
   MANAGE on the host; suitable hosts are ordered by RANK, cast to int as 3.4
   does (the VM's own RANK, else the DEFAULT_SCHED policy: 0 packing =
   RUNNING_VMS, 1 striping = -RUNNING_VMS, 2 load-aware = FREE_CPU, 3 custom =
   DEFAULT_SCHED's RANK), best first; equal ranks keep host id order (3.4
   normalises by the largest |rank| first, which keeps the order);
3. *dispatch* (``Scheduler::dispatch``): VMs in id order, at most
   MAX_DISPATCH in the cycle, each to the first host of its list that still
   has room — MAX - USAGE counted locally with what this cycle already placed
   (``HostXML::add_capacity``) — and has had fewer than MAX_HOST VMs this
   cycle; ``DispatchManager.deploy`` then moves the VM to PROLOG.

Everything a cycle decides comes from the snapshot of step 1, as 3.4's
scheduler works from the pool it read at the start of the cycle: the
LifeCycleManager adding each deployed VM to its host's HOST_SHARE during the
cycle does not count twice.

Scale. Pending VMs with the same REQUIREMENTS, RANK, capacity and applicable
ACL rules form one *group* and share one matched and ranked host list (compiled expressions are
cached per text, so equal texts are the same closure), so a cycle costs
O(groups x hosts + VMs) instead of O(VMs x hosts). Each group keeps a cursor
into its list: a host that reached MAX_HOST, or no longer has room for the
group's capacity, cannot become usable again within the cycle, so the
cursor moves past it for good. The placements are exactly those of the plain
per-VM scan (``tests/test_scheduler.py`` checks this on random cases).

The cycle never holds the reactor for long: after each slice of work
(``slice`` seconds, default 0.02) it yields with a zero-delay call on the
clock, so API requests and driver replies run in between. A VM that left
PENDING, or a host that was deleted or went to ERROR/DISABLED, during a
yield is skipped. At most ``max_inflight`` (default 16) deploys wait for their
database commit at a time: the cycle waits for room before the next one, so
the single database connection never queues thousands of deploys ahead of
other requests' writes. Each cycle that saw pending VMs writes one line to
oned.log::

    [SCHED][I]: Cycle 3: 10000 pending VMs (10000 considered), 1000 hosts,
    1 groups: 10000 dispatched; decisions 0.0410 s, deploy calls 5.210 s,
    cycle 6.105 s, 412 yields, longest slice 0.031 s

(decisions: the scheduler's own time, matching, ranking, choosing; deploy
calls: time inside ``DispatchManager.deploy`` up to its first wait; cycle: up
to the commit of the last deploy), and keeps the figures in
:attr:`Scheduler.last_cycle`.

Why a VM waits (OpenNebula 4.x ``Scheduler::match_schedule`` and
``VirtualMachineXML::log``): a considered VM that no host can take gets
``SCHED_MESSAGE = "<time> : <reason>"`` in its USER_TEMPLATE, the reason one
of "User is not authorized to use any host", "No host meets the REQUIREMENTS
expression", "No host with enough capacity to deploy the VM" (checked in that
order, over the cycle's candidate hosts), or "No host is enabled and monitored
to deploy the VM" when there is no candidate at all (every host DISABLED, in
ERROR, or being monitored after an error or for the first time). The reason
is found once per group, only for a group that matched no host, so it adds no
per-VM work to a cycle that places VMs. It is written through
``vmpool.update`` only when it changes (the reason last written for each VM is
remembered: 10,000 waiting VMs cost no write per cycle), such writes share the
bound of deploys awaiting their commit, and a VM placed has it removed in the
same commit as its deploy. A VM that waits only because this cycle's earlier
placements used its hosts (or MAX_HOST) gets no message.
"""

import time


from twisted.internet import defer, task

from nebtwist.core.objects import DONE, HOST_ERROR, PENDING
from nebtwist.expr import compile_rank
from nebtwist.log import OneLogger

log = OneLogger("SCHED")

POLICY_RANKS = {0: "RUNNING_VMS", 1: "- RUNNING_VMS", 2: "FREE_CPU"}

#: Host evaluations between two looks at the clock in the match phase.
_MATCH_STRIDE = 256

#: SCHED_MESSAGE reasons (OpenNebula 4.x ``Scheduler::match_schedule``).
NOT_AUTHORIZED = "User is not authorized to use any host"
NO_REQUIREMENTS = "No host meets the REQUIREMENTS expression"
NO_CAPACITY = "No host with enough capacity to deploy the VM"
NO_HOSTS = "No host is enabled and monitored to deploy the VM"


def sched_message(reason, now):
    """``"<time> : <reason>"``, as 4.x's ``VirtualMachineXML::log`` writes it."""
    return f"{time.strftime('%a %b %d %H:%M:%S %Y', time.localtime(now))} : {reason}"


def host_lookup(host):
    """A ``name -> str`` lookup over a host: TEMPLATE, then HOST_SHARE, then
    the host's own fields (NAME, ID, STATE, CLUSTER_ID, ...), as 3.4's
    ``HostXML`` searches ``/HOST/TEMPLATE``, ``/HOST/HOST_SHARE``, ``/HOST``.

    The values are copied: the lookup is a snapshot of the host now."""
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


def free_capacity(share):
    """``(free cpu x100, free memory KB)`` as 3.4's match phase reads them:
    FREE_CPU rounded up to a whole 100 when it is >= 90% of MAX_CPU
    (``HostXML::get_capacity``: 96.7% of a core counts as the whole core)."""
    free_cpu = share.free_cpu
    if share.max_cpu and free_cpu >= 0.9 * share.max_cpu:
        free_cpu = -(-free_cpu // 100) * 100
    return free_cpu, share.free_mem


class _Slot:
    """One host as a cycle sees it (snapshot taken when the cycle starts).

    ``avail_*``: MAX - USAGE minus what this cycle placed; ``placed``: VMs
    placed this cycle; ``dead``: deleted or disabled since the snapshot.
    """

    __slots__ = ("host", "lookup", "free_cpu", "free_mem", "avail_cpu", "avail_mem",
                 "avail_disk", "placed", "dead")

    def __init__(self, host):
        share = host.share
        self.host = host
        self.lookup = host_lookup(host)
        self.free_cpu, self.free_mem = free_capacity(share)
        self.avail_cpu = share.max_cpu - share.cpu_usage
        self.avail_mem = share.max_mem - share.mem_usage
        self.avail_disk = share.max_disk - share.disk_usage
        self.placed = 0
        self.dead = False

    def fits(self, cpu, mem, disk):
        """``HostXML::test_capacity`` against this cycle's local count."""
        return (self.avail_cpu >= cpu and self.avail_mem >= mem
                and (disk == 0 or self.avail_disk >= disk))

    def take(self, cpu, mem, disk):
        """``HostXML::add_capacity``: a VM placed here this cycle."""
        self.avail_cpu -= cpu
        self.avail_mem -= mem
        self.avail_disk -= disk
        self.placed += 1


class _Group:
    """Pending VMs that match and rank hosts alike: same REQUIREMENTS and RANK
    closures and same (cpu, mem, disk). ``hosts``: the matched slots, best
    rank first; ``cursor``: every slot before it is full for this group."""

    __slots__ = ("cpu", "mem", "disk", "hosts", "cursor", "why")

    def __init__(self, cpu, mem, disk):
        self.cpu, self.mem, self.disk = cpu, mem, disk
        self.hosts = []
        self.cursor = 0
        self.why = None  # SCHED_MESSAGE reason when no host matched at all

    def choose(self, max_host):
        """The best slot with room for one more VM of the group, or None."""
        hosts, cpu, mem, disk = self.hosts, self.cpu, self.mem, self.disk
        i, n = self.cursor, len(self.hosts)
        while i < n:
            s = hosts[i]
            if s.placed < max_host and not s.dead and s.fits(cpu, mem, disk):
                break
            i += 1  # full, at MAX_HOST or gone: it stays so for the rest of the cycle
        self.cursor = i
        return hosts[i] if i < n else None


class _Flight:
    """Deploys of a cycle still waiting for their commit, and the cycle
    waiting for room (``waiter``)."""

    __slots__ = ("count", "waiter")

    def __init__(self):
        self.count = 0
        self.waiter = None

    def landed(self, result, limit):
        self.count -= 1
        if self.waiter is not None and self.count < limit:
            waiter, self.waiter = self.waiter, None
            waiter.callback(None)
        return result


class Scheduler:
    """The placement loop.

    :param nebula: the core (pools, configuration, clock).
    :param dispatch: the DispatchManager (``deploy(vm, host)`` coroutine).
    :param slice: seconds of work after which a cycle yields to the reactor.
    :param timer: ``() -> float`` seconds, used only to size slices and for
        the per-cycle figures; default the clock's ``seconds`` — the same clock
        the pause waits on, so a test Clock that nobody advances never makes a
        cycle pause (wall time would, on a loaded machine, and then hang).
    :param max_inflight: deploys of a cycle that may await their commit at
        once (0: no bound).
    """

    def __init__(self, nebula, dispatch, slice=0.02, timer=None, max_inflight=16):
        self.nebula = nebula
        self.dispatch = dispatch
        self.slice = slice
        self.max_inflight = max_inflight
        self.timer = timer if timer is not None else nebula.clock.seconds
        self._loop = None
        self._stopped = False
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
        #: Figures of the last cycle that saw pending VMs (dict; see the module docstring).
        self.last_cycle = None
        #: vid -> the SCHED_MESSAGE reason last written (None: not read from the pool yet).
        self._noted = None

    def start(self):
        """Run a cycle every SCHED_INTERVAL seconds."""
        self._stopped = False
        self._loop = task.LoopingCall(self.cycle)
        self._loop.clock = self.nebula.clock
        self._loop.start(self.nebula.config.get_float("SCHED_INTERVAL"), now=False).addErrback(
            lambda f: log.failure("scheduler loop stopped", f))

    def stop(self):
        """Stop the loop; a running cycle dispatches nothing more."""
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def cycle(self):
        """One scheduling cycle.

        :return: Deferred firing with the number of deploys started, once
            each is committed (a failed deploy is logged, not raised).
        """
        return defer.ensureDeferred(self._cycle())

    async def _pause(self, stats):
        """Let the reactor run (a zero-delay call on the clock)."""
        now = self.timer()
        stats["slice"] = max(stats["slice"], now - stats["_since"])
        stats["_active"] += now - stats["_since"]
        stats["yields"] += 1
        await task.deferLater(self.nebula.clock, 0, lambda: None)
        stats["_since"] = self.timer()

    async def _noting(self, vm, reason, flight, stats):
        """:meth:`_note`, its commit counted with the deploys awaiting theirs."""
        d = self._note(vm, reason)
        if d is not None and self.max_inflight and not d.called:
            flight.count += 1
            d.addBoth(flight.landed, self.max_inflight)
            if flight.count >= self.max_inflight:
                await self._drain(flight, stats)

    async def _drain(self, flight, stats):
        """Wait until fewer than ``max_inflight`` deploys await their commit."""
        now = self.timer()
        stats["slice"] = max(stats["slice"], now - stats["_since"])
        stats["_active"] += now - stats["_since"]
        stats["yields"] += 1
        while flight.count >= self.max_inflight:
            flight.waiter = defer.Deferred()
            await flight.waiter
        stats["_since"] = self.timer()

    async def _match(self, group, requirements, rank, slots, stats, owner=None):
        """Fill ``group.hosts``: the slots that suit it, best rank first.

        ``owner``: ``(uid, gid)`` of VMs whose owner needs MANAGE on the host
        (ACL, ``nebula.acl.allows``), None for oneadmin's VMs.
        """
        cpu, mem, disk = group.cpu, group.mem, group.disk
        acl = self.nebula.acl if owner is not None else None
        ranked = []
        for i, s in enumerate(slots):
            if i % _MATCH_STRIDE == _MATCH_STRIDE - 1 and \
                    self.timer() - stats["_since"] >= self.slice:
                await self._pause(stats)
            # Capacity first: cheaper than REQUIREMENTS, and both must hold.
            if cpu > s.free_cpu or mem > s.free_mem or not s.fits(cpu, mem, disk):
                continue
            if requirements is not None and not requirements(s.lookup):
                continue
            if acl is not None and not acl.allows(owner, "HOST", s.host, "MANAGE"):
                continue
            ranked.append((-int(rank(s.lookup)), i, s))
        ranked.sort(key=lambda t: (t[0], t[1]))
        group.hosts = [s for _, _, s in ranked]
        if not ranked:
            group.why = self._why(requirements, slots, owner)

    def _why(self, requirements, slots, owner):
        """Why no slot suits a group (4.x's order: ACL, REQUIREMENTS, capacity)."""
        if owner is not None:
            acl = self.nebula.acl
            slots = [s for s in slots if acl.allows(owner, "HOST", s.host, "MANAGE")]
            if not slots:
                return NOT_AUTHORIZED
        if requirements is not None and not any(requirements(s.lookup) for s in slots):
            return NO_REQUIREMENTS
        return NO_CAPACITY

    def _note(self, vm, reason):
        """Write ``reason`` as the VM's SCHED_MESSAGE if it is not the one it
        has; a Deferred (the commit) or None when nothing is written."""
        if self._noted.get(vm.oid) == reason:
            return None
        self._noted[vm.oid] = reason
        vm.user_template.set("SCHED_MESSAGE", sched_message(reason, self.nebula.clock.seconds()))
        d = self.nebula.vmpool.update(vm)
        d.addErrback(lambda f: log.failure("VM {vid}: SCHED_MESSAGE not stored", f, vid=vm.oid))
        return d

    def _noted_reasons(self, pending):
        """Forget VMs gone or DONE; on the first cycle read the reasons the
        pending VMs carry (written before a restart)."""
        if self._noted is None:
            self._noted = {}
            for vm in pending:
                text = vm.user_template.get_str("SCHED_MESSAGE")
                if text is not None:
                    self._noted[vm.oid] = text.partition(" : ")[2]
            return
        if self._noted:
            objects = self.nebula.vmpool.objects
            for vid in [v for v in self._noted
                        if v not in objects or objects[v].state == DONE]:
                del self._noted[vid]

    async def _cycle(self):
        timer = self.timer
        t0 = timer()
        config = self.nebula.config
        max_vm = config.get_int("MAX_VM")
        max_dispatch = config.get_int("MAX_DISPATCH")
        max_host = config.get_int("MAX_HOST")
        self.cycles += 1
        hostpool = self.nebula.hostpool
        pending = [vm for vm in self.nebula.vmpool.objects.values() if vm.state == PENDING]
        if not pending:
            return 0
        pending.sort(key=lambda v: v.oid)
        considered = pending[:max_vm]
        self._noted_reasons(pending)
        slots = [_Slot(h) for h in hostpool.objects.values() if h.state < HOST_ERROR]
        stats = {"n": self.cycles, "pending": len(pending), "considered": len(considered),
                 "hosts": len(slots), "groups": 0, "dispatched": 0, "deploy": 0.0,
                 "yields": 0, "slice": 0.0, "_active": 0.0, "_since": t0}
        groups = {}
        deploys = []
        flight = _Flight()
        for vm in considered if not slots else ():
            if self._stopped:
                break
            if timer() - stats["_since"] >= self.slice:
                await self._pause(stats)
            if vm.state == PENDING:
                await self._noting(vm, NO_HOSTS, flight, stats)
        for vm in considered if slots else ():
            if stats["dispatched"] >= max_dispatch or self._stopped:
                break
            if timer() - stats["_since"] >= self.slice:
                await self._pause(stats)
                if self._stopped:
                    break
            if vm.state != PENDING:
                continue  # held, deleted or deployed by hand during a yield
            cpu, mem, disk = vm.capacity()
            rank = vm.rank or self.default_rank
            # 3.4 Scheduler::match: an owner outside the oneadmin group needs MANAGE
            # on the host; the ACL rules that apply to the owner decide, so they
            # are part of the group key.
            acl = getattr(self.nebula, "acl", None)
            rules = (None if acl is None or vm.uid == 0 or vm.gid == 0
                     else acl.rules_for(vm.uid, vm.gid))
            key = (vm.requirements, rank, cpu, mem, disk, rules)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(cpu, mem, disk)
                await self._match(group, vm.requirements, rank, slots, stats,
                                  None if rules is None else (vm.uid, vm.gid))
            while True:
                slot = group.choose(max_host)
                if slot is None:
                    break
                host = slot.host
                if hostpool.objects.get(host.oid) is host and host.state < HOST_ERROR:
                    break
                slot.dead = True  # deleted, disabled or in error since the snapshot
            if slot is None:
                if group.why is not None:
                    await self._noting(vm, group.why, flight, stats)
                continue
            if vm.oid in self._noted:  # placed: its SCHED_MESSAGE goes with the deploy
                del self._noted[vm.oid]
                vm.user_template.remove("SCHED_MESSAGE")
            slot.take(cpu, mem, disk)
            stats["dispatched"] += 1
            log.info("VM {vid}: dispatched to host {hid} ({name})", vid=vm.oid, hid=host.oid,
                     name=host.name)
            t = timer()
            d = defer.ensureDeferred(self.dispatch.deploy(vm, host))
            stats["deploy"] += timer() - t
            deploys.append(d)
            if self.max_inflight and not d.called:
                flight.count += 1
                d.addBoth(flight.landed, self.max_inflight)
                if flight.count >= self.max_inflight:
                    await self._drain(flight, stats)
        now = timer()
        stats["slice"] = max(stats["slice"], now - stats["_since"])
        stats["_active"] += now - stats["_since"]
        stats["groups"] = len(groups)
        self.dispatched += len(deploys)
        results = await defer.DeferredList(deploys, consumeErrors=True)
        for ok, value in results:
            if not ok:
                log.error("deploy failed: {m}", m=value.getErrorMessage())
        stats["wall"] = timer() - t0
        stats["decide"] = stats.pop("_active") - stats["deploy"]
        del stats["_since"]
        self.last_cycle = stats
        log.info("Cycle {n}: {pending} pending VMs ({considered} considered), {hosts} hosts, "
                 "{groups} groups: {dispatched} dispatched; decisions {decide:.4f} s, "
                 "deploy calls {deploy:.3f} s, cycle {wall:.3f} s, {yields} yields, "
                 "longest slice {slice:.3f} s", **stats)
        return len(deploys)
