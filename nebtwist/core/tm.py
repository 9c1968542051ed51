"""The TransferManager: writes transfer scripts and runs them through TM drivers.

Scripts follow OpenNebula 3.4's line format (``src/tm/TransferManager.cc``,
reference section 4.4): every line names the TM driver as its second token,
and disk ``i`` lives at ``<host>:<VM_DIR>/disk.i``::

    CLONE tm_dummy frontend:/srv/images/ttylinux.img host01:/var/.../0/7/disk.0
    LN    tm_dummy frontend:/srv/images/shared.img   host01:/var/.../0/7/disk.1
    MKSWAP tm_dummy 1024 host01:/var/.../0/7/disk.2
    MKIMAGE tm_dummy 512 ext3 host01:/var/.../0/7/disk.3
    CONTEXT tm_dummy /var/lib/one/7/context.sh /srv/init.sh host01:/var/.../0/7/disk.4
    DELETE tm_dummy host01:/var/.../0/7

Scripts are written to the VM's front-end directory as
``transfer.<seq>.<action>`` beside ``vm.xml`` (the VM as XML at that
moment, for drivers that want more than the script, such as the dummy TM).
"""

import os
import socket

from twisted.internet import defer

from nebtwist.core.context import context_line, write_context
from nebtwist.errors import DriverError


class TransferManager:
    """Builds prolog/epilog scripts and hands them to the host's TM driver.

    :param nebula: the core (paths, configuration, pools, logs).
    :param drivers: ``name -> ITransferDriver``; the first configured one
        is the default for hosts created without a TM driver.
    """

    def __init__(self, nebula, drivers, default=None):
        self.nebula = nebula
        self.drivers = drivers
        self.default = default if default is not None else next(iter(drivers), "")
        self.frontend = socket.gethostname()

    def tm_name_for(self, host):
        """The TM driver name for ``host``: its ``TM_MAD`` (1.4 form) or the default."""
        return host.tm_mad or self.default

    def _driver(self, name):
        drv = self.drivers.get(name)
        if drv is None:
            raise DriverError(f"TM driver {name!r} is not loaded")
        return drv

    def _source(self, path):
        return path if ":" in path else f"{self.frontend}:{path}"

    def prolog_lines(self, vm):
        """The PROLOG script's lines for ``vm`` (list of str)."""
        h = vm.last_history
        tm = h.tm_mad
        lines = []
        for i, disk in enumerate(d for d in vm.template.get_all("DISK") if isinstance(d, dict)):
            dst = f"{h.hostname}:{h.vm_dir}/disk.{i}"
            dtype = disk.get("TYPE", "disk").lower()
            size = disk.get("SIZE", "")
            if dtype == "swap":
                lines.append(f"MKSWAP {tm} {size or 0} {dst}")
            elif dtype == "fs":
                lines.append(f"MKIMAGE {tm} {size or 0} {disk.get('FORMAT', 'raw')} {dst}")
            elif disk.get("SOURCE"):
                # block devices are linked, never copied; others are cloned
                # unless CLONE = no (3.4 TransferManager::prolog_action).
                linked = dtype == "block" or disk.get("CLONE", "yes").lower() == "no"
                op = "LN" if linked else "CLONE"
                lines.append(f"{op} {tm} {self._source(disk['SOURCE'])} {dst}")
        context = context_line(self.nebula, vm)  # CONTEXT ... disk.<number of DISKs>
        if context:
            lines.append(context)
        return lines

    def epilog_lines(self, vm):
        """The EPILOG script's lines: save disks marked ``SAVE=yes`` (to
        ``SAVE_AS_SOURCE``, a save-as image's, else their SOURCE, as 3.4
        ``TransferManager::epilog_action``), then delete."""
        h = vm.last_history
        tm = h.tm_mad
        lines = []
        for i, disk in enumerate(d for d in vm.template.get_all("DISK") if isinstance(d, dict)):
            target = disk.get("SAVE_AS_SOURCE") or disk.get("SOURCE")
            if disk.get("SAVE", "no").lower() == "yes" and target:
                lines.append(f"MVDS {tm} {h.hostname}:{h.vm_dir}/disk.{i} {target}")
        lines.append(f"DELETE {tm} {h.hostname}:{h.vm_dir}")
        return lines

    def _run(self, vm, action, lines):
        h = vm.last_history
        if h is None:
            return defer.fail(DriverError("the VM has no host"))
        try:
            drv = self._driver(h.tm_mad)
        except DriverError as e:
            return defer.fail(e)
        vm_dir = self.nebula.vm_dir(vm.oid)
        path = os.path.join(vm_dir, f"transfer.{h.seq}.{action}")
        d = self.nebula.files.write([
            (os.path.join(vm_dir, "vm.xml"), vm.info()),
            (path, "".join(line + "\n" for line in lines)),
        ])

        def written(_):
            self.nebula.vm_log(vm, "TM", "I", f"{action}: running {path}")
            return drv.transfer(vm.oid, path)

        def not_written(f):
            f.trap(OSError)
            raise DriverError(f"cannot write {path}: {f.value}")

        return d.addCallbacks(written, not_written)

    def prolog(self, vm):
        """Copy the VM's disks and context to its host; Deferred (errback DriverError).

        ``context.sh`` and ``context.iso`` are written first
        (:func:`nebtwist.core.context.write_context`); a missing FILES entry
        fails the prolog.
        """
        try:
            write_context(self.nebula, vm)
        except DriverError as e:
            return defer.fail(e)
        return self._run(vm, "prolog", self.prolog_lines(vm))

    def epilog(self, vm):
        """Save and delete the VM's files on its host; Deferred."""
        return self._run(vm, "epilog", self.epilog_lines(vm))

    def prolog_migrate(self, vm):
        """Move the VM's directory from its previous host to its new one; Deferred."""
        h, prev = vm.last_history, vm.previous_history
        if prev is None:
            return defer.fail(DriverError("the VM has no previous host"))
        line = f"MV {h.tm_mad} {prev.hostname}:{prev.vm_dir} {h.hostname}:{h.vm_dir}"
        return self._run(vm, "prolog_migrate", [line])

    def stopped_dir(self, vm):
        """Where a STOPPED VM's files wait on the front-end: ``<var>/<vid>/images``."""
        return os.path.join(self.nebula.vm_dir(vm.oid), "images")

    def epilog_stop(self, vm):
        """Move the VM's directory back to the front-end (stop); Deferred."""
        h = vm.last_history
        if h is None:
            return defer.fail(DriverError("the VM has no host"))
        line = f"MV {h.tm_mad} {h.hostname}:{h.vm_dir} {self.frontend}:{self.stopped_dir(vm)}"
        return self._run(vm, "epilog_stop", [line])

    def prolog_resume(self, vm):
        """Move a stopped VM's directory from the front-end to its new host; Deferred."""
        h = vm.last_history
        if h is None:
            return defer.fail(DriverError("the VM has no host"))
        line = f"MV {h.tm_mad} {self.frontend}:{self.stopped_dir(vm)} {h.hostname}:{h.vm_dir}"
        return self._run(vm, "prolog_resume", [line])

    def shared(self, name):
        """Is the VM directory of TM driver ``name`` on storage its hosts share?
        The driver's ``shared`` attribute (oned.conf TM_MAD SHARED; see
        :func:`nebtwist.mad.build_driver`), True for drivers without one."""
        return bool(getattr(self.drivers.get(name), "shared", True))

    def migration_shared(self, vm):
        """True when a live migration of ``vm`` (previous host -> current one)
        needs no copy of its files: both hosts' TM drivers are shared."""
        h, prev = vm.last_history, vm.previous_history
        if h is None or prev is None:
            return True
        return self.shared(h.tm_mad) and self.shared(prev.tm_mad)

    def _run_migrate(self, vm, op):
        """Run ``<OP> <tm> <prev>:<dir> <new>:<dir>`` as transfer ``op.lower()``."""
        h, prev = vm.last_history, vm.previous_history
        if prev is None:
            return defer.fail(DriverError("the VM has no previous host"))
        line = f"{op} {h.tm_mad} {prev.hostname}:{prev.vm_dir} {h.hostname}:{h.vm_dir}"
        return self._run(vm, op.lower(), [line])

    def premigrate(self, vm):
        """Before a live migration between hosts that do not share storage:
        copy the VM's directory from its previous host to its new one
        (``PREMIGRATE <tm> <prev>:<dir> <new>:<dir>``; OpenNebula 4.x+ TM
        ``premigrate``), so the disks, the context CD-ROM and the checkpoint
        path exist there; Deferred (errback DriverError)."""
        return self._run_migrate(vm, "PREMIGRATE")

    def postmigrate(self, vm):
        """After such a live migration succeeded: remove the previous host's
        copy (``POSTMIGRATE <tm> <prev>:<dir> <new>:<dir>``); Deferred."""
        return self._run_migrate(vm, "POSTMIGRATE")

    def premigrate_undo(self, vm):
        """After such a live migration failed: delete the copy made on the new
        host (``DELETE <tm> <new>:<dir>``), the VM still running on the previous
        one; Deferred."""
        h = vm.last_history
        return self._run(vm, "premigrate_undo", [f"DELETE {h.tm_mad} {h.hostname}:{h.vm_dir}"])

    def epilog_delete(self, vm):
        """Delete the VM's files without saving (finalize, resubmit); Deferred."""
        h = vm.last_history
        if h is None:
            return defer.succeed(None)
        return self._run(vm, "epilog_delete", [f"DELETE {h.tm_mad} {h.hostname}:{h.vm_dir}"])
