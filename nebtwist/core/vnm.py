"""The NetworkManager: a VM's host networking through VN_MAD drivers.

OpenNebula 3.4 had no manager of its own for this: its VMM exec driver
(``src/vmm_mad/exec/one_vmm_exec.rb``) ran the host's VNM scripts around the
hypervisor's action (``pre`` before deploy, restore and migrate; ``post``
after them; ``clean`` after shutdown, cancel, save and on the source host of
a migration), with the driver named by the history record's VNMMAD (the
host's VN_MAD when the VM was placed there). nebtwist keeps the same order
in the LifeCycleManager (:mod:`nebtwist.core.lcm`), calling this manager, so
any VM_MAD works with any network driver.
"""

from twisted.internet import defer

from nebtwist.errors import DriverError
from nebtwist.log import OneLogger

log = OneLogger("VNM")

#: The VN_MAD that does nothing; a host naming it needs no loaded driver.
DUMMY = "dummy"


class NetworkManager:
    """Runs ``pre``/``post``/``clean`` of the VM's host VN_MAD.

    :param nebula: the core (:class:`nebtwist.core.nebula.Nebula`: pools, vm_log).
    :param drivers: ``name -> IVirtualNetworkDriver`` (the oned.conf VN_MAD NAMEs).
    """

    def __init__(self, nebula, drivers):
        self.nebula = nebula
        self.drivers = drivers

    def names(self):
        """The VN_MAD names a host may take: the loaded drivers, and ``dummy``."""
        return sorted(set(self.drivers) | {DUMMY})

    def _run(self, vm, action, previous=False):
        h = vm.previous_history if previous else vm.last_history
        if h is None:
            return defer.fail(DriverError(f"{action}: the VM has no host"))
        name = h.vnm_mad or DUMMY
        drv = self.drivers.get(name)
        if drv is None:
            if name == DUMMY:
                return defer.succeed(None)  # nothing to do on the host
            return defer.fail(DriverError(f"{action}: VN_MAD driver {name!r} is not loaded"))
        self.nebula.vm_log(vm, "VNM", "I", f"Network {action} ({name}) on {h.hostname}")
        try:
            xml = vm.info()
        except Exception as e:  # noqa: BLE001 - a VM that cannot be rendered
            return defer.fail(DriverError(f"{action}: {e}"))
        return defer.maybeDeferred(getattr(drv, action), vm.oid, h.hostname, xml)

    def pre(self, vm, previous=False):
        """``pre`` on the VM's current host (``previous``: its previous one),
        before its domain exists. Deferred firing with None; errbacks with
        :class:`~nebtwist.errors.DriverError` (``pre: <driver's message>``;
        a VN_MAD that is not loaded, other than ``dummy``)."""
        return self._run(vm, "pre", previous)

    def post(self, vm, previous=False):
        """``post`` once the domain runs; as :meth:`pre`."""
        return self._run(vm, "post", previous)

    def clean(self, vm, previous=False):
        """``clean`` once the domain is gone; as :meth:`pre`."""
        return self._run(vm, "clean", previous)

    def clean_logged(self, vm, previous=False):
        """:meth:`clean`, its failure only written to the VM's log (a warning:
        the VM moves on whatever it says, as 3.4's exec driver did). Deferred
        firing with None."""
        d = self.clean(vm, previous)

        def failed(f):
            message = getattr(f.value, "message", None) or str(f.value)
            self.nebula.vm_log(vm, "VNM", "W", f"Network clean failed: {message}")

        return d.addErrback(failed)
