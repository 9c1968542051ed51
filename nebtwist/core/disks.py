"""Images taken by VM DISKs (OpenNebula 3.4 ``ImagePool::disk_attribute``,
``Image::disk_attribute``, ``ImageManager::acquire_image`` /
``release_image``).

:class:`ImageClaim` is how a new VM's ``DISK = [ IMAGE = "name" ]`` and
``DISK = [ IMAGE_ID = n ]`` become disks the TransferManager can copy, and
how the images are taken (RUNNING_VMS, state USED); :func:`release_vm_images`
gives them back when the VM is DONE. A FAILED VM keeps its images (and its
leases) until it is finalized or resubmitted, as 3.4's
``DispatchManager::failed_action`` does. :func:`vm_image_ids` lists the
images a VM's DISKs use (the ImageManager counts them at start-up).

Used by the DispatchManager (claim) and the LifeCycleManager (release);
imports neither.
"""

from nebtwist.core.images import (CDROM, IMG_DISABLED, IMG_ERROR, IMG_INIT, IMG_LOCKED,
                                  IMG_READY, IMG_USED, OS, _denied)
from nebtwist.errors import APIError, ActionError, NoSuchObject
from nebtwist.log import OneLogger

log = OneLogger("ImM")


def _is_image_disk(disk):
    return isinstance(disk, dict) and ("IMAGE_ID" in disk or "IMAGE" in disk)


class ImageClaim:
    """The images one new VM takes, so that they can be given back if the VM
    is not created after all.

    ::

        claim = ImageClaim(nebula)
        ops += claim.take(user, vm)      # fills the VM's DISKs, takes images
        ...                              # on failure: claim.undo()

    :param nebula: the core (image pool, authorization, configuration).
    """

    def __init__(self, nebula):
        self.nebula = nebula
        self.taken = []

    def find(self, user, disk):
        """The image a DISK names: ``IMAGE_ID``, or ``IMAGE`` (the user's own
        image of that name first, then one they may use; ``IMAGE_UNAME`` or
        ``IMAGE_UID`` pick the owner as in 3.4).

        :raises APIError: a malformed IMAGE_ID or IMAGE_UID.
        :raises NoSuchObject: no such image.
        """
        pool = self.nebula.imagepool
        if "IMAGE_ID" in disk:
            try:
                return pool.get(int(disk["IMAGE_ID"]))
            except ValueError:
                raise APIError(f"Wrong IMAGE_ID {disk['IMAGE_ID']!r} in DISK.") from None
        name = disk["IMAGE"]
        uname = disk.get("IMAGE_UNAME")
        uid = disk.get("IMAGE_UID")
        if uid is not None:
            try:
                uid = int(uid)
            except ValueError:
                raise APIError(f"Wrong IMAGE_UID {uid!r} in DISK.") from None
        candidates = [i for i in pool if i.name == name
                      and (uname is None or i.uname == uname) and (uid is None or i.uid == uid)]
        candidates.sort(key=lambda i: (i.uid != user.oid, i.uid != 0, i.oid))
        candidates = [i for i in candidates if self.nebula.can_use(user, i)] or candidates
        if not candidates:
            raise NoSuchObject(f"Error getting image [{name}].")
        return candidates[0]

    def take(self, user, vm):
        """Resolve ``vm``'s image DISKs and take the images.

        Each such DISK gains IMAGE, IMAGE_ID, SOURCE, TYPE (``DISK`` or
        ``CDROM``), READONLY, CLONE and SAVE (``CLONE=NO``/``SAVE=YES`` for a
        persistent image, whose disk the epilog moves back with MVDS), and a
        TARGET unless given: DEV_PREFIX (disk, then image, then
        ``DEFAULT_DEVICE_PREFIX``) plus ``a`` for OS, ``c`` for CDROM and
        ``e``, ``f``... for DATABLOCKs (3.4 ``Image::disk_attribute``).
        BUS and DRIVER come from the image template when the disk has none.

        :return: database statements storing the changed images.
        :raises APIError: malformed DISK, or more than one OS or CDROM image.
        :raises NoSuchObject: an unknown image.
        :raises AuthorizationError: an image the user may not use.
        :raises ActionError: an image that is disabled, in error, still being
            copied, or persistent and already used. Nothing is changed.
        """
        default_prefix = self.nebula.config.get("DEFAULT_DEVICE_PREFIX", "hd")
        datablocks = 0
        counts = {OS: 0, CDROM: 0}
        try:
            for disk in vm.template.get_all("DISK"):
                if not _is_image_disk(disk):
                    continue
                image = self.find(user, disk)
                if not self.nebula.can_use(user, image):
                    raise _denied(user, "USE", "IMAGE", image.oid)
                if image.type in counts:
                    counts[image.type] += 1
                    if counts[image.type] > 1:
                        raise APIError(f"VM can not use more than one {image.type_name} "
                                       f"image.")
                self._acquire(image)
                prefix = disk.get("DEV_PREFIX") or image.template.get_str("DEV_PREFIX") \
                    or default_prefix
                disk.update(IMAGE=image.name, IMAGE_ID=str(image.oid), SOURCE=image.source)
                if image.persistent:
                    disk.update(CLONE="NO", SAVE="YES", PERSISTENT="YES")
                else:
                    disk.update(CLONE="YES", SAVE="NO")
                if image.type == CDROM:
                    disk.update(TYPE="CDROM", READONLY="YES")
                else:
                    disk.update(TYPE="DISK", READONLY="NO")
                for key in ("BUS", "DRIVER"):
                    value = image.template.get_str(key)
                    if value and not disk.get(key):
                        disk[key] = value
                if not disk.get("TARGET"):
                    if image.type == OS:
                        letter = "a"
                    elif image.type == CDROM:
                        letter = "c"
                    else:
                        letter = chr(ord("e") + datablocks)
                        datablocks += 1
                    disk["TARGET"] = prefix + letter
        except BaseException:
            self.undo()
            raise
        vm.touch()
        ops = []
        for image in {i.oid: i for i in self.taken}.values():
            ops += self.nebula.imagepool.write_ops(image)
        return ops

    def _acquire(self, image):
        """Take one use of ``image`` (3.4 ``ImageManager::acquire_image``)."""
        why = {
            IMG_DISABLED: "it is disabled",
            IMG_LOCKED: "it is still being copied into the repository (LOCKED)",
            IMG_ERROR: "it is in the ERROR state"
                       + (f" ({image.template.get_str('ERROR')})"
                          if image.template.get_str("ERROR") else ""),
            IMG_INIT: "it is not ready (INIT)",
        }.get(image.state)
        if why is None and image.state == IMG_USED and image.persistent:
            why = "it is persistent and already used by another VM"
        if why is not None:
            raise ActionError(f"Cannot use image {image.oid} ({image.name}): {why}.")
        image.running_vms += 1
        image.state = IMG_USED
        image.touch()
        self.taken.append(image)

    def undo(self):
        """Give back every image :meth:`take` took (in memory only: nothing
        was committed)."""
        for image in reversed(self.taken):
            _release(image)
        self.taken = []


def _release(image):
    image.running_vms = max(0, image.running_vms - 1)
    if image.running_vms == 0 and image.state == IMG_USED:
        image.state = IMG_READY
    image.touch()


def vm_image_ids(vm):
    """Ids of the images ``vm``'s DISKs use (one per disk, in order)."""
    ids = []
    for disk in vm.template.get_all("DISK"):
        if isinstance(disk, dict) and "IMAGE_ID" in disk:
            try:
                ids.append(int(disk["IMAGE_ID"]))
            except ValueError:
                continue
    return ids


def release_vm_images(nebula, vm):
    """Give back the images of a VM that is now DONE.

    Each use is released once: RUNNING_VMS goes down and an image no VM uses
    is READY again (3.4 ``ImageManager::release_image``). Changes memory.

    :return: database statements storing the changed images.
    """
    changed = {}
    for iid in vm_image_ids(vm):
        image = nebula.imagepool.objects.get(iid)
        if image is None:
            continue
        _release(image)
        changed[iid] = image
    ops = []
    for image in changed.values():
        ops += nebula.imagepool.write_ops(image)
        log.info("Image {oid} released by VM {vid}: {n} VM(s) use it, {s}", oid=image.oid,
                 vid=vm.oid, n=image.running_vms, s=image.state_name)
    return ops


__all__ = ["ImageClaim", "vm_image_ids", "release_vm_images"]
