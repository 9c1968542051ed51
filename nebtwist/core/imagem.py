"""The ImageManager: the image repository (OpenNebula 3.4
``src/image/ImageManager*.cc`` and the ``fs`` datastore's ``cp``/``mkfs``/``rm``
scripts).

:class:`ImageManager` registers images (a local file or an http(s) URL
copied into ``<DATASTORE_LOCATION>/1/<md5 hex>``, or an empty DATABLOCK
made), off the reactor thread, with progress in oned.log; deletes
repository files; and makes the state fixes at start-up. :func:`install`
wires it into a starting daemon (called by :mod:`nebtwist.tap`).

The :class:`~nebtwist.core.images.Image` object and its states are in
:mod:`nebtwist.core.images`; the ``one.image.*`` operations that call this
manager in :mod:`nebtwist.core.requests_images`.
"""

import hashlib
import os
import secrets
import stat
import urllib.parse

from twisted.application import service
from twisted.internet import defer, threads

from nebtwist.core.disks import vm_image_ids
from nebtwist.core.images import (DATABLOCK, DEFAULT_DATASTORE_ID, IMAGE_TYPES, IMG_ERROR,
                                  IMG_LOCKED, IMG_READY, IMG_USED, SYSTEM_DATASTORE_ID, Image,
                                  _check_create)
from nebtwist.core.objects import DONE
from nebtwist.core.templates import check_restricted, under_safe_dirs
from nebtwist.errors import APIError, ActionError, AuthorizationError, NoSuchObject
from nebtwist.log import OneLogger

log = OneLogger("ImM")

#: Bytes per MB (image SIZE is in MB, rounded up as ``du -m`` does).
MB = 1024 * 1024

#: Copy and download chunk size, in bytes.
CHUNK = 1024 * 1024

#: Seconds a download may go without receiving a byte before it fails.
DOWNLOAD_IDLE_TIMEOUT = 60.0

#: Template attributes kept as IMAGE fields rather than in its TEMPLATE
#: (3.4 ``Image::insert`` erases them from the template).
_FIELD_ATTRS = ("TYPE", "PERSISTENT", "SOURCE", "SIZE", "FSTYPE")


# ---------------------------------------------------------------------------
# Repository files (these run in a worker thread)


def _check_safe_path(path, safe_dirs, actor):
    """Refuse a local PATH outside ``safe_dirs`` (a list of folders: oned.conf
    ``IMAGE_SAFE_DIRS``, blank-separated, and a front's own) for a user outside oneadmin's group: the daemon reads the file
    with its own rights, so without this any user could copy any file the
    daemon can read into an image (later OpenNebula: ``SAFE_DIRS``). Symbolic
    links are resolved first.

    :raises AuthorizationError: the path is not under a safe folder.
    """
    if under_safe_dirs(path, safe_dirs):
        return
    raise AuthorizationError(
        f"User [{actor.oid}] : Not authorized to register the local file {path}: only "
        f"oneadmin's group may, or files under IMAGE_SAFE_DIRS; use an http(s) URL.")


class CopyInterrupted(Exception):
    """The daemon is stopping; a copy was abandoned."""


def _copy_file(src, dst, progress, stopping):
    """Copy the regular file ``src`` to ``dst`` in :data:`CHUNK` pieces.

    :param progress: ``(done_bytes, total_bytes)`` callable (thread safe).
    :param stopping: a callable; true when the copy must stop.
    :return: bytes copied.
    :raises OSError, ValueError, CopyInterrupted: ``dst`` is removed.
    """
    st = os.stat(src)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{src} is not a regular file")
    total = st.st_size
    done = 0
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        with open(src, "rb") as fin, open(dst, "xb") as fout:
            while True:
                if stopping():
                    raise CopyInterrupted("nebtwist is stopping")
                chunk = fin.read(CHUNK)
                if not chunk:
                    break
                fout.write(chunk)
                done += len(chunk)
                progress(done, total)
    except BaseException:
        _unlink_quietly(dst)
        raise
    return done


def _make_empty(dst, size_mb):
    """Create ``dst`` as an empty (sparse) file of ``size_mb`` MB."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        with open(dst, "xb") as f:
            f.truncate(size_mb * MB)
    except BaseException:
        _unlink_quietly(dst)
        raise
    return size_mb * MB


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _size_mb(nbytes):
    return (nbytes + MB - 1) // MB


def _is_url(path):
    return urllib.parse.urlsplit(path).scheme.lower() in ("http", "https")


def _yes_no(template, key, what):
    value = template.get(key)
    if value is None:
        return False
    if not isinstance(value, str) or value.strip().upper() not in ("YES", "NO"):
        raise APIError(f"{what} must be YES or NO, not {value!r}.")
    return value.strip().upper() == "YES"


class ImageManager(service.Service):
    """Registers images into the repository and keeps their states right.

    :param nebula: the core (image pool, configuration, clock).
    :param reactor: runs the copies in its thread pool and the downloads
        (``IReactorThreads``, ``IReactorTCP``, ``IReactorTime``).

    Follows 3.4 ``src/image/ImageManagerActions.cc`` and the ``fs``
    datastore's ``cp``/``mkfs``/``rm`` scripts: a registered image is LOCKED
    while its file is copied to ``<DATASTORE_LOCATION>/1/<md5 hex>`` and is
    then READY, or ERROR with the reason in its TEMPLATE/ERROR.
    """

    def __init__(self, nebula, reactor):
        self.nebula = nebula
        self.reactor = reactor
        self.jobs = {}  # image oid -> Deferred of the running copy
        self._cancels = {}  # image oid -> callable abandoning a download
        self._stopping = False
        self._logged = {}

    @property
    def repository(self):
        """The image datastore's directory: ``<DATASTORE_LOCATION>/1``."""
        return os.path.join(self.nebula.datastore_location, str(DEFAULT_DATASTORE_ID))

    def _in_thread(self, f, *args):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)

    # -- registration -------------------------------------------------------------

    async def allocate(self, actor, template, datastore_id=-1, trusted_dirs=()):
        """Register an image from ``template``; returns its id at once.

        Template: NAME (required), TYPE (OS, CDROM, DATABLOCK; default
        ``DEFAULT_IMAGE_TYPE``), PERSISTENT (YES/NO), PATH (an absolute file
        path or an http(s) URL), or for a DATABLOCK SIZE (MB) and FSTYPE with
        no PATH; SOURCE (an existing file used as is: oneadmin's group only,
        as OpenNebula's shipped ``IMAGE_RESTRICTED_ATTR``, which oned.conf
        sets). Other attributes stay in the
        image's TEMPLATE; DEV_PREFIX is added when missing.

        :param datastore_id: 1 (or -1: the default image datastore).
        :param trusted_dirs: folders whose files any user may register, on
            top of oned.conf ``IMAGE_SAFE_DIRS``: a front's own files (the
            EC2 front's staged uploads and S3 objects), never a user's path.
        :raises APIError: a malformed or incomplete template.
        :raises NoSuchObject: an unknown datastore.
        :raises AuthorizationError: an ``IMAGE_RESTRICTED_ATTR`` (SOURCE) given
            by a user not in oneadmin's group.
        :raises ActionError: the user already has an image of that name.
        """
        config = self.nebula.config
        _check_create(self.nebula, actor, "IMAGE")
        if datastore_id not in (-1, DEFAULT_DATASTORE_ID):
            if datastore_id == SYSTEM_DATASTORE_ID:
                raise ActionError("Images cannot be registered in the system datastore [0].")
            raise NoSuchObject(f"Error getting datastore [{datastore_id}].")
        name = template.get("NAME")
        if not isinstance(name, str) or not name.strip():
            raise APIError("No NAME in template.")
        tname = template.get("TYPE", config.get("DEFAULT_IMAGE_TYPE", "OS"))
        if not isinstance(tname, str) or tname.strip().upper() not in IMAGE_TYPES:
            raise APIError(f"Unknown image TYPE {tname!r} (OS, CDROM or DATABLOCK).")
        itype = IMAGE_TYPES.index(tname.strip().upper())
        persistent = _yes_no(template, "PERSISTENT", "PERSISTENT")
        values = {}
        for key in ("PATH", "SOURCE", "FSTYPE", "SIZE"):
            value = template.get(key, "")
            if not isinstance(value, str):
                raise APIError(f"{key} must be a single value.")
            values[key] = value.strip()
        path, source, fstype = values["PATH"], values["SOURCE"], values["FSTYPE"]
        size = 0
        if values["SIZE"]:
            try:
                size = int(values["SIZE"])
                if size <= 0:
                    raise ValueError
            except ValueError:
                raise APIError(f"SIZE must be a positive number of MB, not "
                               f"{values['SIZE']!r}.") from None
        if path and source:
            raise APIError("Template malformed, PATH and SOURCE are mutually exclusive.")
        if not path and not source:
            if itype != DATABLOCK:
                raise APIError("No PATH in template.")
            if not size or not fstype:
                raise APIError("A DATABLOCK image needs a PATH, or a SIZE (MB) and an FSTYPE.")
        if path and not (os.path.isabs(path) or _is_url(path)):
            raise APIError(f"PATH must be an absolute file path or an http(s) URL, "
                           f"not {path!r}.")
        if path and not _is_url(path) and not self.nebula.is_admin(actor):
            _check_safe_path(path, (config.get("IMAGE_SAFE_DIRS") or "").split()
                             + list(trusted_dirs), actor)
        check_restricted(self.nebula, actor, template, "IMAGE_RESTRICTED_ATTR", "Image Template")
        pool = self.nebula.imagepool
        other = pool.find(name, actor.oid)
        if other is not None:
            raise ActionError(f"Error allocating a new image. NAME is already taken by "
                              f"IMAGE {other.oid}.")
        stored = template.copy()
        for key in _FIELD_ATTRS:
            stored.remove(key)
        if not stored.get_str("DEV_PREFIX"):
            stored.set("DEV_PREFIX", config.get("DEFAULT_DEVICE_PREFIX", "hd"))
        group = self.nebula.grouppool.objects.get(actor.gid)
        oid = pool.reserve_oid()
        image = Image(oid, name, actor.oid, actor.gid, actor.name, group.name if group else "",
                      template=stored, itype=itype, persistent=persistent,
                      regtime=int(self.nebula.clock.seconds()), source=source, path=path,
                      fstype=fstype, size=size, state=IMG_READY if source else IMG_LOCKED)
        try:
            await pool.insert(image)
        except BaseException:
            pool.release_oid(oid)
            raise
        if not source:
            self._start_copy(image, path, size)
        else:
            log.info("Image {oid} ({name}) registered with SOURCE {src}", oid=oid, name=name,
                     src=source)
        return oid

    def _new_source(self, image):
        seed = f"{image.oid}:{image.uid}:{image.name}:{self.nebula.clock.seconds()}:" \
               f"{secrets.token_hex(16)}"
        return os.path.join(self.repository, hashlib.md5(seed.encode()).hexdigest())

    def _start_copy(self, image, path, size_mb):
        dst = self._new_source(image)
        d = defer.ensureDeferred(self._fill(image, path, size_mb, dst))
        self.jobs[image.oid] = d

        def done(result):
            self.jobs.pop(image.oid, None)
            self._cancels.pop(image.oid, None)
            self._logged.pop(image.oid, None)
            return result

        d.addBoth(done)
        d.addErrback(lambda f: log.failure("Image {oid}: registration failed", f, oid=image.oid))
        return d

    async def _fill(self, image, path, size_mb, dst):
        """Copy, download or create the image file, then READY or ERROR."""
        try:
            if not path:
                log.info("Image {oid}: creating an empty {size} MB DATABLOCK in {dst}",
                         oid=image.oid, size=size_mb, dst=dst)
                nbytes = await self._in_thread(_make_empty, dst, size_mb)
            elif _is_url(path):
                log.info("Image {oid}: downloading {src} to {dst}", oid=image.oid, src=path,
                         dst=dst)
                nbytes = await self._download(image, path, dst)
            else:
                log.info("Image {oid}: copying {src} to {dst}", oid=image.oid, src=path, dst=dst)
                nbytes = await self._in_thread(_copy_file, path, dst,
                                               self._progress_from_thread(image),
                                               lambda: self._stopping)
        except Exception as e:  # noqa: BLE001 - every failure is the image's ERROR
            if self._stopping:
                message = ("the copy into the repository was interrupted by a stop; delete "
                           "the image and register it again")
            elif isinstance(e, defer.TimeoutError):
                message = f"no answer from {path} within {DOWNLOAD_IDLE_TIMEOUT:g} s"
            else:
                message = _describe(e, path)
            log.error("Image {oid}: cannot register {src}: {m}", oid=image.oid,
                      src=path or "(empty DATABLOCK)", m=message)
            image.state = IMG_ERROR
            image.template.set("ERROR", message)
        else:
            image.source = dst
            image.size = size_mb if not path else _size_mb(nbytes)
            image.state = IMG_READY
            image.template.remove("ERROR")
            log.info("Image {oid} ({name}) is READY: {size} MB in {dst}", oid=image.oid,
                     name=image.name, size=image.size, dst=dst)
        if self.nebula.imagepool.objects.get(image.oid) is image:
            await self.nebula.imagepool.update(image)

    def _progress(self, image, done, total):
        """Log a progress line each time another tenth of the file is copied."""
        if total <= 0:
            return
        step = min(10, done * 10 // total)
        if step > self._logged.get(image.oid, 0):
            self._logged[image.oid] = step
            log.info("Image {oid}: {pct}% copied ({done} of {total} bytes)", oid=image.oid,
                     pct=step * 10, done=done, total=total)

    def _progress_from_thread(self, image):
        def report(done, total):
            self.reactor.callFromThread(self._progress, image, done, total)
        return report

    async def _download(self, image, url, dst):
        """Stream ``url`` into ``dst`` with treq (never the whole body in memory).

        :return: bytes written.
        :raises ValueError: an HTTP status other than 200.
        """
        import treq
        from twisted.web.client import Agent, HTTPConnectionPool

        pool = HTTPConnectionPool(self.reactor, persistent=False)
        client = treq.client.HTTPClient(Agent(self.reactor, pool=pool, connectTimeout=30))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        out = open(dst, "xb")  # noqa: SIM115 - closed below
        written = 0
        total = 0
        collecting = None

        def idle():
            if collecting is not None:
                collecting.cancel()

        def receive(chunk):
            nonlocal written
            if self._stopping:
                raise CopyInterrupted("nebtwist is stopping")
            out.write(chunk)
            written += len(chunk)
            if watchdog.active():
                watchdog.reset(DOWNLOAD_IDLE_TIMEOUT)
            self._progress(image, written, total)

        watchdog = self.reactor.callLater(DOWNLOAD_IDLE_TIMEOUT, idle)
        try:
            request = client.get(url, unbuffered=True)
            request.addTimeout(DOWNLOAD_IDLE_TIMEOUT, self.reactor)
            self._cancels[image.oid] = request.cancel
            response = await request
            if response.code != 200:
                await _drain(response, self.reactor)
                raise ValueError(f"HTTP {response.code} {response.phrase.decode('latin-1')} "
                                 f"for {url}")
            total = response.length if isinstance(response.length, int) else 0
            if not watchdog.active():
                raise ValueError(f"no data from {url} for {DOWNLOAD_IDLE_TIMEOUT:g} s")
            watchdog.reset(DOWNLOAD_IDLE_TIMEOUT)
            collecting = treq.collect(response, receive)
            self._cancels[image.oid] = collecting.cancel
            try:
                await collecting
            except defer.CancelledError:
                if self._stopping:
                    raise CopyInterrupted("nebtwist is stopping") from None
                raise ValueError(f"no data from {url} for {DOWNLOAD_IDLE_TIMEOUT:g} s") from None
            if total and written != total:
                raise ValueError(f"{url} ended after {written} of {total} bytes")
        except BaseException:
            out.close()
            _unlink_quietly(dst)
            raise
        finally:
            if watchdog.active():
                watchdog.cancel()
            out.close()
        return written

    # -- other image operations ---------------------------------------------------

    async def delete(self, image):
        """Remove an image no VM uses, and its file if it is in the repository.

        :raises ActionError: the image is used by VMs or still being copied.
        """
        if image.running_vms > 0:
            raise ActionError(f"Cannot delete image {image.oid}: it is used by "
                              f"{image.running_vms} VM(s).")
        if image.state == IMG_LOCKED or image.oid in self.jobs:
            raise ActionError(f"Cannot delete image {image.oid}: it is being copied into the "
                              f"repository (LOCKED).")
        await self.nebula.imagepool.remove(image)
        source = image.source
        if source and os.path.dirname(os.path.abspath(source)) == os.path.abspath(self.repository):
            await self._in_thread(_unlink_quietly, source)
            log.info("Image {oid} deleted, {src} removed", oid=image.oid, src=source)
        else:
            log.info("Image {oid} deleted", oid=image.oid)

    async def reconcile(self):
        """Start-up: make each image's RUNNING_VMS and USED/READY agree with
        the VMs, and turn registrations a stop interrupted into ERROR."""
        counts = {}
        for vm in self.nebula.vmpool:
            if vm.state == DONE:
                continue
            for iid in vm_image_ids(vm):
                counts[iid] = counts.get(iid, 0) + 1
        ops = []
        for image in self.nebula.imagepool:
            before = (image.state, image.running_vms)
            image.running_vms = counts.get(image.oid, 0)
            if image.state == IMG_LOCKED:
                image.state = IMG_ERROR
                image.template.set("ERROR", "the copy into the repository was interrupted by a "
                                            "restart; delete the image and register it again")
            elif image.state == IMG_USED and image.running_vms == 0:
                image.state = IMG_READY
            elif image.state == IMG_READY and image.running_vms > 0:
                image.state = IMG_USED
            if (image.state, image.running_vms) != before:
                image.touch()
                ops += self.nebula.imagepool.write_ops(image)
                log.warn("Image {oid}: state fixed at start-up to {s} ({n} VMs)",
                         oid=image.oid, s=image.state_name, n=image.running_vms)
        if ops:
            await self.nebula.db.run(ops)

    def stopService(self):
        """Abandon running copies (their images go to ERROR) and wait for them."""
        super().stopService()
        self._stopping = True
        for cancel in list(self._cancels.values()):
            cancel()
        jobs = list(self.jobs.values())
        return defer.DeferredList(jobs, consumeErrors=True) if jobs else None


async def _drain(response, reactor, limit=64 * 1024, seconds=10.0):
    """Read and drop an error response's body (at most ``limit`` bytes, for
    at most ``seconds``), so that its connection closes."""
    import treq

    seen = 0

    def drop(chunk):
        nonlocal seen
        seen += len(chunk)
        if seen > limit:
            raise ValueError("error body too long")

    d = treq.collect(response, drop)
    d.addTimeout(seconds, reactor)
    try:
        await d
    except Exception:  # noqa: BLE001 - the status is the error reported
        pass


def _describe(error, path):
    if isinstance(error, OSError) and error.strerror:
        where = error.filename or path
        return f"cannot read {where}: {error.strerror}" if where else error.strerror
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return message


async def install(parent, nebula, lcm, requests, reactor):
    """Wire the image repository into a starting daemon.

    Fixes image states left by the last run (the LifeCycleManager gives a
    DONE VM's images back, action ``release_images``), gives ``requests`` its :class:`ImageManager` and makes the
    manager a child service of ``parent`` (so a stop waits for its copies).

    :return: the :class:`ImageManager`.
    """
    manager = ImageManager(nebula, reactor)
    await manager.reconcile()
    requests.images = manager
    manager.setServiceParent(parent)
    return manager


__all__ = ["ImageManager", "CopyInterrupted", "install"]
