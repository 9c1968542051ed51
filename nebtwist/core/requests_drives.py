"""Requests on an image's content and a VM's capacity, for fronts whose API
treats images as raw block devices (the ElasticHosts drives of
:mod:`nebtwist.api.elastichosts`).

* :meth:`DriveRequests.image_write`: raw bytes into an image's repository
  file at an offset (ElasticHosts ``drives/<uuid>/write[/<offset>]``).
* :meth:`DriveRequests.image_copy`: copy one image's content into another
  (optionally gunzipping or gzipping on the way), in the background; its
  progress is :meth:`DriveRequests.image_copy_progress` (ElasticHosts
  ``drives/<dst>/image/<src>[/gzip|/gunzip]`` and its ``imaging`` key).
* :meth:`DriveRequests.image_rename`: 4.x ``one.image.rename``.
* :meth:`DriveRequests.vm_rename` and :meth:`DriveRequests.vm_resize`:
  OpenNebula 4.x's ``one.vm.rename`` (any state) and ``one.vm.resize``
  (``src/rm/RequestManagerVirtualMachine.cc``: PENDING, HOLD or FAILED;
  4.x also POWEROFF, which 3.4 does not have).

An image being written to by a VM (USED), still being copied into the
repository (LOCKED) or without a file refuses content changes with
:class:`~nebtwist.errors.ActionError`; the destination of a copy is LOCKED
until the copy ends (READY, or ERROR with the reason in its TEMPLATE/ERROR),
so no VM takes it half-written and ``one.image.delete`` refuses it meanwhile.
"""

import os
import zlib

from twisted.internet import defer

from nebtwist.core.objects import FAILED, HOLD, PENDING
from nebtwist.errors import APIError, ActionError
from nebtwist.log import OneLogger

log = OneLogger("ImM")

# 3.4 image states (include/Image.h); the same numbers as nebtwist.core.image.
_READY, _USED, _DISABLED, _LOCKED, _ERROR = 1, 2, 3, 4, 5

#: Bytes read or written per step of a copy.
_CHUNK = 1024 * 1024
_MB = 1024 * 1024

#: VM states where :meth:`DriveRequests.vm_resize` is allowed (4.x, without POWEROFF).
RESIZE_STATES = (PENDING, HOLD, FAILED)


class CopyProgress:
    """Where a background copy stands: ``done`` and ``total`` bytes (``total``
    0 until known); written by the copying thread, read by the reactor's."""

    def __init__(self):
        self.done = 0
        self.total = 0

    @property
    def percent(self):
        """0..99 (int) while copying."""
        if self.total <= 0:
            return 0
        return min(99, self.done * 100 // self.total)


def _pwrite(path, offset, data):
    """Write ``data`` at ``offset`` of the existing file ``path``."""
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    finally:
        os.close(fd)


def _pread(path, offset, size):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def _copy(src, dst, limit, mode, progress, stopping=lambda: False):
    """Copy ``src`` into the existing file ``dst`` from its start, never past
    ``limit`` bytes (``dst`` keeps its size; the rest of it is unchanged).

    :param mode: ``None`` (as is), ``"gunzip"`` (``src`` is gzip data: its
        content is written; a ``src`` that is not gzip data is copied as is)
        or ``"gzip"`` (``src`` compressed with gzip).
    :param stopping: a callable, true when the daemon stops (the copy is
        abandoned: ``ValueError``).
    :return: bytes written.
    :raises ValueError: the content does not fit in ``limit`` bytes, corrupt
        gzip data, or the daemon is stopping.
    """
    progress.total = os.path.getsize(src)
    written = 0
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        head = fin.read(2)
        fin.seek(0)
        if mode == "gunzip" and head == b"\x1f\x8b":
            codec = zlib.decompressobj(16 + zlib.MAX_WBITS)
            transform, finish = codec.decompress, codec.flush
        elif mode == "gzip":
            codec = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            transform, finish = codec.compress, codec.flush
        else:
            transform, finish = bytes, bytes
        while True:
            if stopping():
                raise ValueError("interrupted by a stop of nebtwist; copy it again")
            chunk = fin.read(_CHUNK)
            out = transform(chunk) if chunk else finish()
            if out:
                if written + len(out) > limit:
                    raise ValueError(f"the content is larger than the destination's "
                                     f"{limit} bytes")
                fout.write(out)
                written += len(out)
            if not chunk:
                break
            progress.done += len(chunk)
    return written


class DriveRequests:
    """Mixin of :class:`nebtwist.core.requests.Requests` (which provides
    ``nebula``, ``_image``, ``_vm`` and ``_image_manager``)."""

    _copies = None  # image id -> CopyProgress of the running copy into it

    def _content_image(self, actor, iid, what):
        image = self._image(actor, int(iid))
        why = {_USED: "it is used by a VM", _LOCKED: "it is being copied or written (LOCKED)",
               _DISABLED: "it is disabled"}.get(image.state)
        if why is None and (not image.source or not os.path.isfile(image.source)):
            why = "it has no file in the repository"
        if why is not None:
            raise ActionError(f"Cannot {what} image {image.oid} ({image.name}): {why}.")
        return image

    async def _wait_registered(self, iid):
        """Wait for the registration copy of image ``iid`` (a new DATABLOCK is
        LOCKED while its file is made), if one runs."""
        job = self._image_manager().jobs.get(iid)
        if job is not None and self._copies is not None and iid in self._copies:
            return
        if job is not None:
            d = defer.Deferred()
            job.addBoth(lambda r: (d.callback(None), r)[1])
            await d

    async def image_write(self, actor, iid, offset, data):
        """Write ``data`` (bytes) at byte ``offset`` of image ``iid``'s file
        (MANAGE on the image). The file keeps its size.

        :return: the number of bytes written (int).
        :raises APIError: a negative offset, or bytes past the file's end.
        :raises ActionError: the image is used by a VM, being copied,
            disabled, or has no file.
        """
        if not isinstance(offset, int) or offset < 0:
            raise APIError(f"The offset must be a whole number of bytes >= 0, not {offset!r}.")
        await self._wait_registered(int(iid))
        image = self._content_image(actor, iid, "write to")
        size = os.path.getsize(image.source)
        if offset + len(data) > size:
            raise APIError(f"Cannot write {len(data)} bytes at offset {offset} of image "
                           f"{image.oid}: it holds {size} bytes.")
        if data:
            await self._image_manager()._in_thread(_pwrite, image.source, offset, bytes(data))
        return len(data)

    async def image_copy(self, actor, dst, src, mode=None):
        """Start copying image ``src``'s content into image ``dst`` (USE on
        ``src``, MANAGE on ``dst``); returns at once, the copy runs in a
        thread while ``dst`` is LOCKED.

        :param mode: None, ``"gunzip"`` or ``"gzip"`` (see :func:`_copy`).
        :return: a Deferred firing (with None) once the copy has ended, READY
            or in ERROR (for tests and callers that wait).
        :raises APIError: an unknown mode, ``src`` equal to ``dst``, or a
            plain copy whose source is larger than ``dst``.
        :raises ActionError: ``dst`` used, locked or disabled; ``src`` in
            ERROR, LOCKED or without a file.
        """
        if mode not in (None, "gunzip", "gzip"):
            raise APIError(f"Unknown imaging mode {mode!r} (gzip or gunzip).")
        dst, src = int(dst), int(src)
        if dst == src:
            raise APIError("An image cannot be copied into itself.")
        source = self._image(actor, src, "USE")
        if source.state in (_LOCKED, _ERROR) or not source.source \
                or not os.path.isfile(source.source):
            raise ActionError(f"Cannot copy image {source.oid} ({source.name}): it is not "
                              f"ready ({source.state_name}).")
        await self._wait_registered(dst)
        target = self._content_image(actor, dst, "copy into")
        limit = os.path.getsize(target.source)
        if mode is None and os.path.getsize(source.source) > limit:
            raise APIError(f"Image {source.oid} holds {os.path.getsize(source.source)} bytes, "
                           f"more than the {limit} bytes of image {target.oid}.")
        manager = self._image_manager()
        progress = CopyProgress()
        if self._copies is None:
            self._copies = {}
        self._copies[target.oid] = progress
        before = target.state
        target.state = _LOCKED
        try:
            await self.nebula.imagepool.update(target)
        except BaseException:
            target.state = before
            target.touch()
            del self._copies[target.oid]
            raise
        log.info("Image {dst}: copying the content of image {src}{how}", dst=target.oid,
                 src=source.oid, how=f" ({mode})" if mode else "")
        job = defer.ensureDeferred(self._run_copy(target, source.source, limit, mode,
                                                  progress, before))
        manager.jobs[target.oid] = job

        def ended(result):
            if manager.jobs.get(target.oid) is job:
                del manager.jobs[target.oid]
            self._copies.pop(target.oid, None)
            return result

        job.addBoth(ended)
        job.addErrback(lambda f: log.failure("Image {oid}: copy failed", f, oid=target.oid))
        return job

    async def _run_copy(self, target, path, limit, mode, progress, before):
        try:
            manager = self._image_manager()
            written = await manager._in_thread(_copy, path, target.source, limit, mode,
                                               progress, lambda: manager._stopping)
        except Exception as e:  # noqa: BLE001 - every failure is the image's ERROR
            message = getattr(e, "strerror", None) or str(e) or type(e).__name__
            log.error("Image {oid}: copy failed: {m}", oid=target.oid, m=message)
            target.state = _ERROR
            target.template.set("ERROR", f"copy failed: {message}")
        else:
            log.info("Image {oid}: {n} bytes copied", oid=target.oid, n=written)
            target.state = before if before != _ERROR else _READY
            target.template.remove("ERROR")
        if self.nebula.imagepool.objects.get(target.oid) is target:
            await self.nebula.imagepool.update(target)

    async def image_wait(self, actor, iid):
        """Wait until no copy into image ``iid`` runs (its registration, or an
        :meth:`image_copy`); USE on the image. Returns the image."""
        image = self._image(actor, int(iid), "USE")
        job = self._image_manager().jobs.get(image.oid)
        if job is not None:
            d = defer.Deferred()
            job.addBoth(lambda r: (d.callback(None), r)[1])
            await d
        return image

    async def image_read(self, actor, iid, offset, size):
        """``size`` bytes from byte ``offset`` of image ``iid``'s file (USE);
        fewer at the file's end.

        :raises APIError: a negative offset or size.
        :raises ActionError: the image has no file, or is being copied.
        """
        if not isinstance(offset, int) or offset < 0 or not isinstance(size, int) or size < 0:
            raise APIError("The offset and size must be whole numbers of bytes >= 0.")
        image = self._image(actor, int(iid), "USE")
        if image.state == _LOCKED or not image.source or not os.path.isfile(image.source):
            raise ActionError(f"Cannot read image {image.oid} ({image.name}): it is "
                              f"{'being copied' if image.state == _LOCKED else 'without a file'}.")
        return await self._image_manager()._in_thread(_pread, image.source, offset, size)

    def image_copy_progress(self, actor, iid):
        """The :class:`CopyProgress` of the copy running into image ``iid``
        (USE), or None when no copy runs."""
        image = self._image(actor, int(iid), "USE")
        return (self._copies or {}).get(image.oid)

    async def image_rename(self, actor, iid, name):
        """Give image ``iid`` a new NAME (MANAGE; 4.x ``one.image.rename``,
        ``src/rm/RequestManagerRename.cc``: the owner's image names stay unique).

        :raises APIError: an empty name or one with a newline.
        :raises ActionError: the owner has another image of that name.
        """
        image = self._image(actor, int(iid))
        if not isinstance(name, str) or not name.strip() or "\n" in name:
            raise APIError("The image name cannot be empty or hold a newline.")
        other = self.nebula.imagepool.find(name, image.uid)
        if other is not None and other is not image:
            raise ActionError(f"Cannot rename image {image.oid}: NAME is already taken by "
                              f"IMAGE {other.oid}.")
        old = image.name
        image.name = name
        image.touch()
        try:
            await self.nebula.imagepool.update(image)
        except BaseException:
            image.name = old
            image.touch()
            raise
        return image.oid

    async def vm_rename(self, actor, vid, name):
        """Give VM ``vid`` a new NAME (MANAGE; any state; 4.x ``one.vm.rename``).

        :raises APIError: an empty name or one with a newline.
        """
        vm = self._vm(actor, int(vid))
        if not isinstance(name, str) or not name.strip() or "\n" in name:
            raise APIError("The VM name cannot be empty or hold a newline.")
        old = vm.name
        vm.name = name
        vm.template.set("NAME", name)
        try:
            await self.nebula.vmpool.update(vm)
        except BaseException:
            vm.name = old
            vm.template.set("NAME", old)
            vm.touch()
            raise
        return vm.oid

    async def vm_resize(self, actor, vid, cpu=None, memory=None, vcpu=None):
        """Change VM ``vid``'s CPU (cores, float), MEMORY (MB, int) and VCPU
        (int); None keeps a value (MANAGE; 4.x ``one.vm.resize``: only in
        PENDING, HOLD or FAILED, where the VM holds no host capacity).

        :raises APIError: a value that is not a positive number.
        :raises ActionError: the VM is in another state.
        """
        vm = self._vm(actor, int(vid))
        if vm.state not in RESIZE_STATES:
            from nebtwist.core.lcm import state_name

            raise ActionError(f"Cannot resize VM {vm.oid}: it is {state_name(vm)}; the "
                              f"capacity changes only in PENDING, HOLD or FAILED.")
        changes = {}
        for key, value, kind in (("CPU", cpu, float), ("MEMORY", memory, int),
                                 ("VCPU", vcpu, int)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 \
                    or (kind is int and int(value) != value):
                raise APIError(f"{key} must be a positive number, not {value!r}.")
            changes[key] = f"{value:g}" if kind is float else str(int(value))
        saved = vm.template.copy()
        for key, value in changes.items():
            vm.template.set(key, value)
        vm.touch()
        try:
            await self.nebula.vmpool.update(vm)
        except BaseException:
            vm.template = saved
            vm.touch()
            raise
        return vm.oid


__all__ = ["CopyProgress", "DriveRequests", "RESIZE_STATES"]
