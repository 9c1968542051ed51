"""Save-as of a VM's disk: OpenNebula 3.4's ``one.vm.savedisk``
(``VirtualMachineSaveDisk`` in ``src/rm/RequestManagerVirtualMachine.cc``,
``VirtualMachine::save_disk``), as a mixin of
:class:`nebtwist.core.requests.Requests`.

The disk is not copied at once: a new image is made LOCKED, with the SOURCE
the disk will be moved to, and the VM's DISK is marked ``SAVE = YES``,
``SAVE_AS = <image id>``, ``SAVE_AS_SOURCE = <that SOURCE>``. The VM's
EPILOG (at its shutdown) moves the disk there (``MVDS``, 3.4
``TransferManager::epilog_action``), and the image is READY when the VM
reaches DONE from EPILOG. A VM that ends any other way (finalized, failed)
leaves the image in ERROR, as 3.4 ``ImageManager::release_image`` does for
a LOCKED save-as image of a failed VM.
"""

import os
import secrets

from twisted.internet import defer
from twisted.logger import Logger

from nebtwist.core.images import IMG_ERROR, IMG_LOCKED, IMG_READY, Image
from nebtwist.core.objects import ACTIVE, DONE, EPILOG, FAILED
from nebtwist.errors import ActionError, APIError, AuthorizationError

log = Logger()


def _disks(vm):
    return [d for d in vm.template.get_all("DISK") if isinstance(d, dict)]


class SaveDiskRequests:
    """``vm_savedisk``, mixed into :class:`nebtwist.core.requests.Requests`
    (which provides ``nebula``, ``dm`` and the image manager of
    :class:`nebtwist.core.requests_images.ImageRequests`)."""

    _savedisk_watching = False

    def watch_saved_disks(self):
        """Follow VM state changes (the LCM's ``hooks``) to settle save-as
        images: READY when their VM reaches DONE from EPILOG, ERROR when it
        ends otherwise. Idempotent; made by :meth:`vm_savedisk` and by the
        fronts that offer it."""
        lcm = getattr(getattr(self, "dm", None), "lcm", None)
        if self._savedisk_watching or lcm is None:
            return
        lcm.hooks.append(self._settle_saved_disks)
        self._savedisk_watching = True

    def _settle_saved_disks(self, vm, old, new):
        """LCM hook ``(vm, (state, lcm) before, after)``; never raises."""
        if new[0] not in (DONE, FAILED):
            return
        saved = old == (ACTIVE, EPILOG) and new[0] == DONE
        for disk in _disks(vm):
            iid = disk.get("SAVE_AS", "")
            image = self.nebula.imagepool.objects.get(int(iid)) if iid.isdigit() else None
            if image is None or image.state != IMG_LOCKED:
                continue
            if saved:
                image.state = IMG_READY
                image.template.remove("ERROR")
                log.info("Image {oid}: disk saved from VM {vid}", oid=image.oid, vid=vm.oid)
            else:
                image.state = IMG_ERROR
                image.template.set("ERROR", f"VM {vm.oid} ended without saving its disk "
                                            f"(it was not shut down through its epilog)")
                log.warn("Image {oid}: VM {vid} ended without saving its disk",
                         oid=image.oid, vid=vm.oid)
            image.touch()
            d = defer.ensureDeferred(self.nebula.imagepool.update(image))
            d.addErrback(lambda f, oid=image.oid: log.failure(
                "Image {oid}: cannot store its save-as state", f, oid=oid))

    async def vm_savedisk(self, actor, vid, disk_id, name, itype="", description=None):
        """Save disk ``disk_id`` (its index among the VM's DISKs) of VM
        ``vid`` as a new image ``name`` when the VM shuts down (3.4
        ``one.vm.savedisk``: MANAGE on the VM, CREATE IMAGE).

        The image (owned by ``actor``, TYPE ``itype`` or the original
        image's, the original's template attributes, ``SAVED_IMAGE_ID``,
        ``SAVED_DISK_ID``, ``SAVED_VM_ID``, ``DESCRIPTION``) and the VM's
        marked DISK are written in one transaction.

        :return: the new image id (LOCKED until the VM's epilog saved it).
        :raises NoSuchObject: no VM ``vid``.
        :raises AuthorizationError: no MANAGE on the VM, or no CREATE IMAGE.
        :raises APIError: a bad name or type.
        :raises ActionError: a VM that is DONE or FAILED; no such disk, a
            disk not made from an image, a persistent one (saved in place
            already), one already being saved; a name the actor's images
            already have.
        """
        vm = self.nebula.vmpool.get(vid)
        if not self.nebula.can_manage(actor, vm):
            raise AuthorizationError(f"User [{actor.oid}] : Not authorized to perform "
                                     f"MANAGE VM [{vid}].")
        if not self.nebula.can_create(actor, "IMAGE"):
            raise AuthorizationError(f"User [{actor.oid}] : Not authorized to perform "
                                     f"CREATE IMAGE.")
        if not isinstance(name, str) or not name.strip():
            raise APIError("The image name cannot be empty.")
        if vm.state in (DONE, FAILED):
            raise ActionError(f"Cannot save disk {disk_id} of VM {vid}: the VM is "
                              f"{'DONE' if vm.state == DONE else 'FAILED'}.")
        disks = _disks(vm)
        if not 0 <= disk_id < len(disks):
            raise ActionError(f"VM {vid} has no DISK {disk_id}.")
        disk = disks[disk_id]
        original = (self.nebula.imagepool.objects.get(int(disk["IMAGE_ID"]))
                    if disk.get("IMAGE_ID", "").isdigit() else None)
        if original is None:
            raise ActionError(f"DISK {disk_id} of VM {vid} is not made from an image.")
        if disk.get("PERSISTENT", "").upper() == "YES":
            raise ActionError(f"Source image for DISK {disk_id} is persistent: it is saved "
                              f"in place.")
        if disk.get("SAVE_AS"):
            raise ActionError(f"DISK {disk_id} of VM {vid} is already going to be saved as "
                              f"image {disk['SAVE_AS']}.")
        pool = self.nebula.imagepool
        taken = pool.find(name, actor.oid)
        if taken is not None:
            raise ActionError(f"Error allocating a new image. NAME is already taken by "
                              f"IMAGE {taken.oid}.")
        types = ("OS", "CDROM", "DATABLOCK")
        if itype and str(itype).upper() not in types:
            raise APIError(f"Unknown image TYPE {itype!r} (OS, CDROM or DATABLOCK).")
        image_type = types.index(str(itype).upper()) if itype else original.type
        self.watch_saved_disks()

        template = original.template.copy()
        for key in ("ERROR", "DESCRIPTION", "SAVED_IMAGE_ID", "SAVED_DISK_ID", "SAVED_VM_ID"):
            template.remove(key)
        template.set("SAVED_IMAGE_ID", str(original.oid))
        template.set("SAVED_DISK_ID", str(disk_id))
        template.set("SAVED_VM_ID", str(vm.oid))
        if description:
            template.set("DESCRIPTION", description)
        source = os.path.join(self._image_manager().repository, secrets.token_hex(16))
        group = self.nebula.grouppool.objects.get(actor.gid)
        oid = pool.reserve_oid()
        image = Image(oid, name, actor.oid, actor.gid, actor.name, group.name if group else "",
                      template=template, itype=image_type, persistent=False,
                      regtime=int(self.nebula.clock.seconds()), source=source,
                      size=original.size, state=IMG_LOCKED)
        before = dict(disk)
        disk.update(SAVE="YES", SAVE_AS=str(oid), SAVE_AS_SOURCE=source)
        vm.touch()
        try:
            await pool.insert(image, self.nebula.vmpool.write_ops(vm))
        except BaseException:
            disk.clear()
            disk.update(before)
            vm.touch()
            pool.release_oid(oid)
            raise
        log.info("VM {vid}: DISK {disk} will be saved as image {oid} ({name})", vid=vid,
                 disk=disk_id, oid=oid, name=name)
        return oid
