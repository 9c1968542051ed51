"""The InformationManager: host monitoring through IM drivers.

Follows OpenNebula 3.4 ``src/im/InformationManager.cc`` (reference 3.1-3.2):
every MANAGER_TIMER tick, up to HOST_PER_INTERVAL hosts whose last
monitoring is older than HOST_MONITORING_INTERVAL, and that are neither
being monitored nor DISABLED, get a MONITOR request. A SUCCESS reply makes
the host MONITORED, updates its TEMPLATE (replace mode) and copies
TOTALCPU/TOTALMEMORY/FREE*/USED* into HOST_SHARE (``Host::update_info``);
a FAILURE makes it ERROR. Disabled hosts stay DISABLED. The MONITOR
request's update-remotes flag is 1 on a host's first monitoring
(LAST_MON_TIME 0) and when the host is in ERROR.
A newly created or enabled host is monitored at once (3.4 waits for the
next tick).

From OpenNebula 4.x (``include/Host.h``, ``src/host/Host.cc``):

* While monitored, a host is MONITORING if it was MONITORED,
  MONITORING_ERROR if it was in ERROR and MONITORING_INIT if it was INIT
  (3.4 had one MONITORING for all three). The scheduler takes hosts with
  STATE < 3, so a host whose last monitoring failed, or that was never
  monitored, receives no VM until a monitoring succeeds: resubmitted VMs of a
  failed host are never placed back on it while it is retried. A host stuck
  being monitored for 600 s goes back to the state it was monitored from
  (3.4: INIT).
* A failed monitoring records why in the host's TEMPLATE as
  ``ERROR = [ MESSAGE = "...", TIMESTAMP = "Fri Dec  4 19:02:11 2026" ]``
  (``Host::touch``/``error_info`` in 4.x), shown by ``onehost show``; the next
  successful monitoring removes it.

Shutdown changes nothing (nebtwist's choice; 3.4 let the driver's end fail
the requests in flight): after :meth:`InformationManager.stop` a reply,
or the failure of a request cut short by the driver stopping, is dropped,
and every host being monitored is written back in the state it was
monitored from, without hooks. A host found being monitored at start-up
(the daemon was killed) is likewise put back first, so a restart never
turns a healthy host into ERROR nor fires an ERROR hook.
"""

import os
import time

from twisted.internet import defer
from twisted.internet.task import LoopingCall

from nebtwist.core.objects import (HOST_DISABLED, HOST_ERROR, HOST_INIT, HOST_MONITORED,
                                   HOST_MONITORING, HOST_MONITORING_ERROR, HOST_MONITORING_FROM,
                                   HOST_MONITORING_INIT)
from nebtwist.errors import DriverError
from nebtwist.log import OneLogger
from nebtwist.template import Template, TemplateSyntaxError

log = OneLogger("InM")

#: monitoring attribute -> HOST_SHARE field (``Host::update_info``).
SHARE_FIELDS = {"TOTALCPU": "max_cpu", "TOTALMEMORY": "max_mem", "FREECPU": "free_cpu",
                "FREEMEMORY": "free_mem", "USEDCPU": "used_cpu", "USEDMEMORY": "used_mem"}

STUCK_SECONDS = 600

#: The state a host is in while monitored, by the state it is monitored from (4.x).
MONITORING_OF = {HOST_ERROR: HOST_MONITORING_ERROR, HOST_INIT: HOST_MONITORING_INIT}


def monitoring_state(state):
    """The state of a host in ``state`` while it is being monitored."""
    if state in HOST_MONITORING_FROM:
        return state
    return MONITORING_OF.get(state, HOST_MONITORING)


def settled_state(state):
    """``state`` if the host is not being monitored, else the state it is
    monitored from (MONITORING -> MONITORED, MONITORING_ERROR -> ERROR,
    MONITORING_INIT -> INIT)."""
    return HOST_MONITORING_FROM.get(state, state)


def error_vector(message, now):
    """The TEMPLATE ``ERROR`` vector of a failed monitoring (4.x
    ``Host::error_info``): MESSAGE and a ctime TIMESTAMP (local time, as oned)."""
    return {"MESSAGE": message, "TIMESTAMP": time.ctime(now)}


class InformationManager:
    """Monitors hosts.

    :param nebula: the core.
    :param drivers: ``name -> IInformationDriver``.
    """

    def __init__(self, nebula, drivers):
        self.nebula = nebula
        self.drivers = drivers
        self._loop = None
        self._stopping = False
        self.hooks = []  # callables (host, old_state, new_state)

    def _settle(self, host):
        """Put a host being monitored back in the state it was monitored from,
        without hooks (start-up after a kill, shutdown); Deferred."""
        host.state = settled_state(host.state)
        d = self.nebula.hostpool.update(host)
        d.addErrback(lambda f: log.failure("cannot store host {hid}", f, hid=host.oid))
        return d

    def start(self):
        """Start the monitoring loop (hosts left being monitored by a daemon
        that was killed are first put back, see the module docstring)."""
        self._stopping = False
        for host in self.nebula.hostpool:
            if host.state in HOST_MONITORING_FROM:
                self._settle(host)
        timer = min(self.nebula.config.get_float("MANAGER_TIMER"),
                    max(1.0, self.nebula.config.get_float("HOST_MONITORING_INTERVAL")))
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.nebula.clock
        self._loop.start(timer, now=True).addErrback(
            lambda f: log.failure("monitoring loop stopped", f))

    def stop(self):
        """Stop the monitoring loop; from now on monitoring results are dropped
        and no host changes state (see the module docstring).

        :return: Deferred firing when the hosts being monitored are stored back
            in the state they were monitored from.
        """
        self._stopping = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return defer.DeferredList([self._settle(host) for host in self.nebula.hostpool
                                   if host.state in HOST_MONITORING_FROM])

    def tick(self):
        """One monitoring round (see the module docstring)."""
        now = self.nebula.clock.seconds()
        interval = self.nebula.config.get_int("HOST_MONITORING_INTERVAL")
        per = self.nebula.config.get_int("HOST_PER_INTERVAL")
        due = []
        for host in self.nebula.hostpool:
            if host.state in HOST_MONITORING_FROM:
                if now - host.monitoring_started >= STUCK_SECONDS:
                    self._set_state(host, settled_state(host.state))
                continue
            if host.state == HOST_DISABLED:
                continue
            if now - host.last_mon_time >= interval:
                due.append(host)
        due.sort(key=lambda h: h.last_mon_time)
        for host in due[:per]:
            self.monitor(host)

    def _set_state(self, host, state):
        old = host.state
        host.state = state
        d = self.nebula.hostpool.update(host)
        d.addErrback(lambda f: log.failure("cannot store host {hid}", f, hid=host.oid))
        if old != state:
            for hook in self.hooks:
                hook(host, old, state)
        return d

    def remotes_mtime(self):
        """Modification time (UNIX s) of ``$ONE_LOCATION/var/remotes``, which
        ``onehost sync`` touches; 0 when it does not exist."""
        try:
            return os.stat(os.path.join(self.nebula.var_dir, "remotes")).st_mtime
        except OSError:
            return 0

    def monitor(self, host):
        """Monitor ``host`` now; returns a Deferred firing when stored."""
        if self._stopping:
            return defer.succeed(None)
        drv = self.drivers.get(host.im_mad)
        log.info("Monitoring host {name} ({hid})", name=host.name, hid=host.oid)
        if drv is None:
            return self._failed(host, f"IM driver {host.im_mad} is not loaded")
        # Ask the driver to copy its remotes (probes) first on the host's first
        # monitoring, after a failed one, and after `onehost sync` touched the
        # remotes folder (3.4 InformationManager::timer_action compared the
        # folder's mtime with the host's last monitoring; our ssh driver also
        # keeps a checksum per host, so edited probes are copied anyway).
        update_remotes = (host.last_mon_time == 0
                          or settled_state(host.state) == HOST_ERROR
                          or self.remotes_mtime() >= host.last_mon_time)
        host.monitoring_started = self.nebula.clock.seconds()
        self._set_state(host, monitoring_state(host.state))
        d = drv.monitor(host.oid, host.name, update_remotes)
        return d.addCallbacks(self._success, self._failure, callbackArgs=(host.oid,),
                              errbackArgs=(host.oid,))

    def _success(self, info, hid):
        host = self.nebula.hostpool.objects.get(hid)
        if host is None or self._stopping:
            return None
        try:
            values = Template.parse_monitoring(info)
        except TemplateSyntaxError as e:
            return self._failed(host, f"cannot parse monitoring info: {e}")
        host.template.replace_from(values)
        host.template.remove("ERROR")
        for key, field in SHARE_FIELDS.items():
            v = values.get_str(key)
            if v is not None:
                try:
                    setattr(host.share, field, int(float(v)))
                except ValueError:
                    pass
        host.last_mon_time = int(self.nebula.clock.seconds())
        log.debug("Host {hid} successfully monitored.", hid=hid)
        return self._set_state(host, HOST_DISABLED if host.state == HOST_DISABLED
                               else HOST_MONITORED)

    def _failure(self, f, hid):
        host = self.nebula.hostpool.objects.get(hid)
        if host is None:
            return None
        if self._stopping:
            log.debug("Host {hid}: monitoring cut short by the shutdown: {m}", hid=hid,
                      m=f.getErrorMessage())
            return None
        f.trap(DriverError)
        return self._failed(host, f.value.message)

    def _failed(self, host, message):
        now = self.nebula.clock.seconds()
        host.last_mon_time = int(now)
        log.error("Error monitoring host {hid}: {m}", hid=host.oid, m=message)
        host.template.set("ERROR", error_vector(message, now))
        return self._set_state(host, HOST_DISABLED if host.state == HOST_DISABLED else HOST_ERROR)
