"""The InformationManager: host monitoring through IM drivers.

Follows OpenNebula 3.4 ``src/im/InformationManager.cc`` (reference 3.1-3.2):
every MANAGER_TIMER tick, up to HOST_PER_INTERVAL hosts whose last
monitoring is older than HOST_MONITORING_INTERVAL, and that are neither
MONITORING nor DISABLED, get a MONITOR request and go to MONITORING; a
host stuck in MONITORING for 600 s goes back to INIT. A SUCCESS reply makes
the host MONITORED, updates its TEMPLATE (replace mode) and copies
TOTALCPU/TOTALMEMORY/FREE*/USED* into HOST_SHARE (``Host::update_info``);
a FAILURE makes it ERROR. Disabled hosts stay DISABLED. The MONITOR
request's update-remotes flag is 1 on a host's first monitoring
(LAST_MON_TIME 0) and when the host is in ERROR.
A newly created or enabled host is monitored at once (3.4 waits for the
next tick).
"""

import os

from twisted.internet.task import LoopingCall

from nebtwist.core.objects import (HOST_DISABLED, HOST_ERROR, HOST_INIT, HOST_MONITORED,
                                   HOST_MONITORING)
from nebtwist.errors import DriverError
from nebtwist.log import OneLogger
from nebtwist.template import Template, TemplateSyntaxError

log = OneLogger("InM")

#: monitoring attribute -> HOST_SHARE field (``Host::update_info``).
SHARE_FIELDS = {"TOTALCPU": "max_cpu", "TOTALMEMORY": "max_mem", "FREECPU": "free_cpu",
                "FREEMEMORY": "free_mem", "USEDCPU": "used_cpu", "USEDMEMORY": "used_mem"}

STUCK_SECONDS = 600


class InformationManager:
    """Monitors hosts.

    :param nebula: the core.
    :param drivers: ``name -> IInformationDriver``.
    """

    def __init__(self, nebula, drivers):
        self.nebula = nebula
        self.drivers = drivers
        self._loop = None
        self.hooks = []  # callables (host, old_state, new_state)

    def start(self):
        """Start the monitoring loop."""
        timer = min(self.nebula.config.get_float("MANAGER_TIMER"),
                    max(1.0, self.nebula.config.get_float("HOST_MONITORING_INTERVAL")))
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.nebula.clock
        self._loop.start(timer, now=True).addErrback(
            lambda f: log.failure("monitoring loop stopped", f))

    def stop(self):
        """Stop the monitoring loop."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def tick(self):
        """One monitoring round (see the module docstring)."""
        now = self.nebula.clock.seconds()
        interval = self.nebula.config.get_int("HOST_MONITORING_INTERVAL")
        per = self.nebula.config.get_int("HOST_PER_INTERVAL")
        due = []
        for host in self.nebula.hostpool:
            if host.state == HOST_MONITORING:
                if now - host.monitoring_started >= STUCK_SECONDS:
                    self._set_state(host, HOST_INIT)
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
        drv = self.drivers.get(host.im_mad)
        log.info("Monitoring host {name} ({hid})", name=host.name, hid=host.oid)
        if drv is None:
            log.error("Host {hid}: IM driver {d} is not loaded", hid=host.oid, d=host.im_mad)
            host.last_mon_time = int(self.nebula.clock.seconds())
            return self._set_state(host, HOST_ERROR)
        # Ask the driver to copy its remotes (probes) first on the host's first
        # monitoring, after a failed one, and after `onehost sync` touched the
        # remotes folder (3.4 InformationManager::timer_action compared the
        # folder's mtime with the host's last monitoring; our ssh driver also
        # keeps a checksum per host, so edited probes are copied anyway).
        update_remotes = (host.last_mon_time == 0 or host.state == HOST_ERROR
                          or self.remotes_mtime() >= host.last_mon_time)
        host.monitoring_started = self.nebula.clock.seconds()
        self._set_state(host, HOST_MONITORING)
        d = drv.monitor(host.oid, host.name, update_remotes)
        return d.addCallbacks(self._success, self._failure, callbackArgs=(host.oid,),
                              errbackArgs=(host.oid,))

    def _success(self, info, hid):
        host = self.nebula.hostpool.objects.get(hid)
        if host is None:
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
        f.trap(DriverError)
        return self._failed(host, f.value.message)

    def _failed(self, host, message):
        host.last_mon_time = int(self.nebula.clock.seconds())
        log.error("Error monitoring host {hid}: {m}", hid=host.oid, m=message)
        host.template.set("ERROR", message)
        return self._set_state(host, HOST_DISABLED if host.state == HOST_DISABLED else HOST_ERROR)
