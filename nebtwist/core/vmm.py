"""The VirtualMachineManager: VM actions and polling through VMM drivers.

For each action it fills a :class:`nebtwist.interfaces.VMMAction` (the 3.4
``VMM_DRIVER_ACTION_DATA``; ``src/vmm/VirtualMachineManager.cc``) and calls
the driver named by the VM's current history record (the host's VM_MAD).
Before a deploy it writes the deployment file ``deployment.<seq>`` into the
VM's front-end directory: libvirt domain XML for a VM_MAD of TYPE kvm, qemu
or xen (:mod:`nebtwist.core.deployment`), else the VM template in
OpenNebula's syntax (drivers that need another format build it from the VM
XML they receive).
"""

import os

from twisted.internet import defer
from twisted.internet.task import LoopingCall

from nebtwist.core.deployment import HV_TYPES, vm_domain_xml
from nebtwist.core.objects import ACTIVE, RUNNING, UNKNOWN
from nebtwist.errors import DriverError
from nebtwist.interfaces import VMMAction
from nebtwist.log import OneLogger

log = OneLogger("VMM")

#: POLL ``STATE`` letter -> LifeCycleManager event (3.4 ``VirtualMachineManagerDriver.cc``).
POLL_EVENTS = {"a": "poll_active", "d": "poll_disappeared", "e": "poll_error",
               "p": "poll_paused"}


def parse_poll(info):
    """``"STATE=a USEDCPU=5 ..."`` -> dict; raises ValueError on a token without ``=``."""
    values = {}
    for token in (info or "").split():
        if "=" not in token:
            raise ValueError(f"bad monitoring token {token!r}")
        k, v = token.split("=", 1)
        values[k.upper()] = v
    return values


class VirtualMachineManager:
    """VM actions and the VM polling loop.

    :param nebula: the core.
    :param drivers: ``name -> IVirtualMachineDriver``.
    """

    def __init__(self, nebula, drivers):
        self.nebula = nebula
        self.drivers = drivers
        self.lcm = None  # set by the core once the LifeCycleManager exists
        self._loop = None

    def _action(self, vm, previous=False, **extra):
        h = vm.previous_history if previous else vm.last_history
        if h is None:
            raise DriverError("the VM has no host")
        drv = self.drivers.get(h.vmm_mad)
        if drv is None:
            raise DriverError(f"VMM driver {h.vmm_mad!r} is not loaded")
        remote = f"{h.vm_dir}/deployment.{h.seq}"
        local = os.path.join(self.nebula.vm_dir(vm.oid), f"deployment.{h.seq}")
        data = VMMAction(host=h.hostname, net_drv=h.vnm_mad, deploy_id=vm.deploy_id,
                         local_deployment_file=local, remote_deployment_file=remote,
                         checkpoint_file=f"{h.vm_dir}/checkpoint", vm_xml=vm.info(), **extra)
        return drv, data

    def _call(self, vm, method, previous=False, **extra):
        try:
            drv, data = self._action(vm, previous, **extra)
        except DriverError as e:
            return defer.fail(e)
        return getattr(drv, method)(vm.oid, data)

    def deploy(self, vm):
        """Write the deployment file and boot the VM; fires with the deploy id.

        The file is ``<var>/<vid>/deployment.<seq>`` (seq of the current
        history record). When the host's VM_MAD driver has ``hv_type`` kvm,
        qemu or xen it is libvirt domain XML from
        :func:`nebtwist.core.deployment.vm_domain_xml` (the driver's
        ``defaults`` template filling what the VM lacks, oned.conf
        ``DEFAULT_DEVICE_PREFIX`` for the context CD-ROM); otherwise the VM
        template in OpenNebula's syntax. Errbacks with a
        :class:`~nebtwist.errors.DriverError`: no host, no such driver, a
        template that makes no domain (:class:`DeploymentError`, nothing
        written), a write error, or the driver's failure.
        """
        h = vm.last_history
        if h is None:
            return self._call(vm, "deploy")  # fails: no host
        drv = self.drivers.get(h.vmm_mad)
        hv_type = str(getattr(drv, "hv_type", "xml") or "xml").lower()
        path = os.path.join(self.nebula.vm_dir(vm.oid), f"deployment.{h.seq}")
        if hv_type in HV_TYPES:
            prefix = self.nebula.config.get("DEFAULT_DEVICE_PREFIX", "hd") or "hd"
            try:
                text = vm_domain_xml(vm, hv_type, getattr(drv, "defaults", None), prefix)
            except DriverError as e:
                return defer.fail(e)
        else:
            text = vm.template.to_text()
        d = self.nebula.files.write([(path, text)])

        def written(_):
            self.nebula.vm_log(vm, "VMM", "I", f"Deploying on {h.hostname}")
            return self._call(vm, "deploy")

        def not_written(f):
            f.trap(OSError)
            raise DriverError(f"cannot write {path}: {f.value}")

        return d.addCallbacks(written, not_written)

    def shutdown(self, vm):
        """Graceful shutdown; Deferred."""
        return self._call(vm, "shutdown")

    def cancel(self, vm):
        """Destroy at once; Deferred."""
        return self._call(vm, "cancel")

    def save(self, vm, previous=False):
        """Checkpoint and stop the VM (``previous``: on its previous host, for a
        cold migration); Deferred."""
        return self._call(vm, "save", previous)

    def reboot(self, vm):
        """Reboot the guest; Deferred."""
        return self._call(vm, "reboot")

    def restore(self, vm):
        """Restore the VM from its checkpoint on its current host; fires with the deploy id."""
        return self._call(vm, "restore")

    def migrate(self, vm, shared=True):
        """Live-migrate from the previous host to the current one; Deferred.

        :param shared: False when the hosts do not share the VM's storage: the
            driver is told (``MIGR_SHARED`` = ``NO``) to copy the disks too.
        """
        prev = vm.previous_history
        if prev is None:
            return defer.fail(DriverError("the VM has no previous host"))
        h = vm.last_history
        try:
            drv = self.drivers[prev.vmm_mad]
        except KeyError:
            return defer.fail(DriverError(f"VMM driver {prev.vmm_mad!r} is not loaded"))
        data = VMMAction(host=prev.hostname, net_drv=prev.vnm_mad, migr_host=h.hostname,
                         migr_net_drv=h.vnm_mad, deploy_id=vm.deploy_id, vm_xml=vm.info(),
                         migr_shared="YES" if shared else "NO")
        return drv.migrate(vm.oid, data)

    def poll(self, vm):
        """Poll the VM and deliver the result to the LifeCycleManager."""
        d = self._call(vm, "poll")
        vid = vm.oid

        def got(info):
            try:
                values = parse_poll(info)
            except ValueError as e:
                log.error("VM {vid}: bad POLL reply: {e}", vid=vid, e=e)
                return None
            event = POLL_EVENTS.get(values.get("STATE", "a")[:1], "poll_active")
            return self.lcm.on_driver(vid, event, info=values)

        def failed(f):
            log.warn("VM {vid}: poll failed: {m}", vid=vid,
                     m=getattr(f.value, "message", f.value))

        return d.addCallbacks(got, failed)

    # -- polling loop -------------------------------------------------------------

    def start(self):
        """Poll VMs every MANAGER_TIMER: up to VM_PER_INTERVAL VMs (RUNNING or
        UNKNOWN) whose last poll is older than VM_POLLING_INTERVAL (0 disables)."""
        interval = self.nebula.config.get_int("VM_POLLING_INTERVAL")
        if interval <= 0:
            return
        timer = min(self.nebula.config.get_float("MANAGER_TIMER"), interval)
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.nebula.clock
        self._loop.start(timer, now=False).addErrback(
            lambda f: log.failure("VM polling loop stopped", f))

    def stop(self):
        """Stop the polling loop."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def tick(self):
        """One polling round (see :meth:`start`)."""
        interval = self.nebula.config.get_int("VM_POLLING_INTERVAL")
        per = self.nebula.config.get_int("VM_PER_INTERVAL")
        now = self.nebula.clock.seconds()
        due = [vm for vm in self.nebula.vmpool
               if vm.state == ACTIVE and vm.lcm_state in (RUNNING, UNKNOWN)
               and now - vm.last_poll >= interval]
        due.sort(key=lambda v: v.last_poll)
        for vm in due[:per]:
            vm.last_poll = int(now)  # not polled again while this poll runs
            vm.touch()  # LAST_POLL is in the body: drop the cached one
            self.poll(vm)
