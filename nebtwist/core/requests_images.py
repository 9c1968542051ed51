"""The ``one.image.*`` and ``one.imagepool.info`` operations (OpenNebula 3.4
``src/rm/RequestManagerImage.cc``), mixed into
:class:`nebtwist.core.requests.Requests`.

They check what the user may do and call the
:class:`~nebtwist.core.imagem.ImageManager` or store the image; the
``one.template.*`` operations are in :mod:`nebtwist.core.requests_templates`.
"""

from nebtwist.core.imagem import ImageManager
from nebtwist.core.images import (IMAGE_TYPES, IMG_DISABLED, IMG_ERROR, IMG_LOCKED, IMG_READY,
                                  IMG_USED, _denied)
from nebtwist.core.templates import check_restricted, max_template_size, parse_template
from nebtwist.errors import APIError, ActionError
from nebtwist.log import OneLogger

log = OneLogger("ImM")

#: Pool filter flags (``src/rm/RequestManagerPoolInfoFilter.cc``).
_ALL = -2


async def _store_template(pool, obj, template):
    """Give ``obj`` a new TEMPLATE and store it; if the database refuses, the
    old TEMPLATE is put back, so memory and database stay the same."""
    old = obj.template
    obj.template = template
    try:
        await pool.update(obj)
    except BaseException:
        obj.template = old
        obj.touch()
        raise


class ImageRequests:
    """``one.image.*`` operations, mixed into
    :class:`nebtwist.core.requests.Requests` (which provides ``nebula``,
    ``dm`` and ``_filter``). ``images`` is the :class:`ImageManager` set by
    :func:`nebtwist.core.imagem.install` (made on first use otherwise).

    Authorization as 3.4 (``src/rm/RequestManagerImage.cc``): info needs
    USE, update, delete, enable, persistent and chtype need MANAGE.
    """

    images = None

    def _image_manager(self):
        if self.images is None:
            self.images = ImageManager(self.nebula, self.nebula.clock)
        return self.images

    def _image(self, actor, iid, op="MANAGE"):
        image = self.nebula.imagepool.get(iid)
        allowed = (self.nebula.can_use if op == "USE" else self.nebula.can_manage)(actor, image)
        if not allowed:
            raise _denied(actor, op, "IMAGE", iid)
        return image

    # -- images ------------------------------------------------------------------------

    async def image_allocate(self, actor, text, datastore_id=-1, trusted_dirs=()):
        """Register an image (see :meth:`ImageManager.allocate`, ``trusted_dirs``
        included); returns its id."""
        template = parse_template(text, "image template", max_template_size(self.nebula.config))
        return await self._image_manager().allocate(actor, template, datastore_id,
                                                    trusted_dirs=trusted_dirs)

    async def image_delete(self, actor, iid):
        """Delete an image no VM uses (MANAGE)."""
        await self._image_manager().delete(self._image(actor, iid))
        return iid

    def image_info(self, actor, iid):
        """``<IMAGE>`` (USE)."""
        return self._image(actor, iid, "USE").info()

    async def image_update(self, actor, iid, text):
        """Replace an image's TEMPLATE (MANAGE); its fields (TYPE, SOURCE,
        PERSISTENT...) are changed by their own operations. A user outside
        oneadmin's group may not give an ``IMAGE_RESTRICTED_ATTR``
        (OpenNebula 4.x ``RequestManagerUpdateTemplate``)."""
        image = self._image(actor, iid)
        template = parse_template(text, "image template", max_template_size(self.nebula.config))
        check_restricted(self.nebula, actor, template, "IMAGE_RESTRICTED_ATTR", "Image Template")
        await _store_template(self.nebula.imagepool, image, template)
        return iid

    async def _image_change(self, image, change):
        """Apply ``change(image)`` and store it; undone if the store fails."""
        saved = (image.state, image.persistent, image.type, image.template.copy())
        change(image)
        try:
            await self.nebula.imagepool.update(image)
        except BaseException:
            image.state, image.persistent, image.type, image.template = saved
            image.touch()
            raise

    async def image_enable(self, actor, iid, enable):
        """Enable (DISABLED or ERROR -> READY) or disable (READY or ERROR ->
        DISABLED) an image (MANAGE; 3.4 ``ImageManager::enable_image``).

        :raises ActionError: the image is USED or LOCKED, or is in ERROR
            with no file in the repository (enabling it could not help).
        """
        image = self._image(actor, iid)
        verb = "enabled" if enable else "disabled"
        if enable:
            if image.state == IMG_READY:
                return iid
            if image.state == IMG_ERROR and not image.source:
                raise ActionError(f"Image {iid} cannot be enabled: its registration failed "
                                  f"and it has no file; delete it and register it again.")
            allowed, target = (IMG_DISABLED, IMG_ERROR), IMG_READY
        else:
            if image.state == IMG_DISABLED:
                return iid
            allowed, target = (IMG_READY, IMG_ERROR), IMG_DISABLED
        if image.state not in allowed:
            raise ActionError(f"Image {iid} cannot be {verb} in state {image.state_name}.")

        def change(img):
            img.state = target
            if enable:
                img.template.remove("ERROR")

        await self._image_change(image, change)
        log.info("Image {oid} {verb}", oid=iid, verb=verb)
        return iid

    async def image_persistent(self, actor, iid, persistent):
        """Make an image persistent or not (MANAGE).

        :raises ActionError: VMs use it (3.4 refuses the change then).
        """
        image = self._image(actor, iid)
        if image.persistent == bool(persistent):
            return iid
        if image.running_vms > 0 or image.state == IMG_USED:
            raise ActionError(f"Cannot change the persistent flag of image {iid}: it is used "
                              f"by {image.running_vms} VM(s).")

        def change(img):
            img.persistent = bool(persistent)

        await self._image_change(image, change)
        return iid

    async def image_chtype(self, actor, iid, type_name):
        """Change an image's TYPE to OS, CDROM or DATABLOCK (MANAGE).

        :raises APIError: an unknown type.
        :raises ActionError: VMs use it or it is being copied.
        """
        image = self._image(actor, iid)
        if not isinstance(type_name, str) or type_name.strip().upper() not in IMAGE_TYPES:
            raise APIError(f"Unknown image TYPE {type_name!r} (OS, CDROM or DATABLOCK).")
        if image.state in (IMG_USED, IMG_LOCKED):
            raise ActionError(f"Cannot change the type of image {iid} in state "
                              f"{image.state_name}.")
        itype = IMAGE_TYPES.index(type_name.strip().upper())

        def change(img):
            img.type = itype

        await self._image_change(image, change)
        return iid

    def imagepool_info(self, actor, flag=_ALL, start=-1, end=-1):
        """``<IMAGE_POOL>`` filtered by the 3.4 flags (-3 mine, -2 all,
        -1 mine and my group's, >= 0 that user's), ids in [start, end]."""
        pool = self.nebula.imagepool
        return pool.dump(self._filter(actor, sorted(pool, key=lambda i: i.oid), flag, start,
                                      end))


__all__ = ["ImageRequests"]
