"""The image repository and VM templates (OpenNebula 3.4 ``src/image/``,
``src/vm_template/``).

What lives here:

* :class:`Image` and :class:`VMTemplate`, pool objects whose bodies follow the
  3.4 schemas ``image.xsd`` and ``vmtemplate.xsd`` (reference section 1.7);
  they are stored in the ``image_pool`` and ``template_pool`` tables.
* :class:`ImageClaim`: how a new VM's ``DISK = [ IMAGE = "name" ]`` and
  ``DISK = [ IMAGE_ID = n ]`` become disks the TransferManager can copy
  (3.4 ``ImagePool::disk_attribute``, ``Image::disk_attribute``), and how the
  images are taken (RUNNING_VMS, state USED); :func:`release_vm_images`
  gives them back when the VM is DONE. A FAILED VM keeps its images (and
  its leases) until it is finalized or resubmitted, as 3.4's
  ``DispatchManager::failed_action`` does.
* :class:`ImageManager`: registration (a local file or an http(s) URL copied
  into ``<DATASTORE_LOCATION>/1/<md5 hex>``, or an empty DATABLOCK made), off
  the reactor thread, with progress in oned.log; deletion of repository
  files; the state fixes made at start-up.
* :class:`ImageRequests`: the ``one.image.*``, ``one.imagepool.info``,
  ``one.template.*`` and ``one.templatepool.info`` operations, mixed into
  :class:`nebtwist.core.requests.Requests`.

Image states (``include/Image.h``): 0 INIT, 1 READY, 2 USED, 3 DISABLED,
4 LOCKED (being copied into the repository), 5 ERROR. Types: 0 OS, 1 CDROM,
2 DATABLOCK. SIZE is in MB. There is one image datastore, 1 (``default``);
datastore 0 is the system datastore, where VM directories live.
"""

import hashlib
import os
import secrets
import stat
import urllib.parse

from lxml import etree
from twisted.application import service
from twisted.internet import defer, threads

from nebtwist.core.objects import DONE, ONEADMIN_GROUP, Owned, _int, _sub, _text
from nebtwist.core.templates import (check_restricted, max_template_size, parse_template,
                                     under_safe_dirs)
from nebtwist.errors import APIError, ActionError, AuthorizationError, NoSuchObject
from nebtwist.log import OneLogger
from nebtwist.template import Template

log = OneLogger("ImM")

# Image states and types (include/Image.h, 3.4)
IMG_INIT, IMG_READY, IMG_USED, IMG_DISABLED, IMG_LOCKED, IMG_ERROR = range(6)
IMAGE_STATES = ["INIT", "READY", "USED", "DISABLED", "LOCKED", "ERROR"]
OS, CDROM, DATABLOCK = range(3)
IMAGE_TYPES = ["OS", "CDROM", "DATABLOCK"]

#: The image datastore (3.4 ``DatastorePool``: 0 system, 1 default).
SYSTEM_DATASTORE_ID = 0
DEFAULT_DATASTORE_ID = 1
DEFAULT_DATASTORE = "default"

#: Bytes per MB (image SIZE is in MB, rounded up as ``du -m`` does).
MB = 1024 * 1024

#: Copy and download chunk size, in bytes.
CHUNK = 1024 * 1024

#: Seconds a download may go without receiving a byte before it fails.
DOWNLOAD_IDLE_TIMEOUT = 60.0

#: Template attributes kept as IMAGE fields rather than in its TEMPLATE
#: (3.4 ``Image::insert`` erases them from the template).
_FIELD_ATTRS = ("TYPE", "PERSISTENT", "SOURCE", "SIZE", "FSTYPE")


class Image(Owned):
    """A 3.4 image (``src/image/Image.cc``).

    :param itype: ``OS``, ``CDROM`` or ``DATABLOCK`` (0, 1, 2).
    :param persistent: a persistent image is used by one VM at a time and
        saved back when that VM ends.
    :param regtime: registration time, UNIX seconds.
    :param source: the file in the repository (what VMs' disks copy).
    :param path: where it was registered from (file path or URL; may be "").
    :param fstype: DATABLOCK file system type.
    :param size: MB.
    :param state: an ``IMG_*`` state.
    :param running_vms: VMs (not DONE) using it.
    """

    TABLE = "image_pool"
    ROOT = "IMAGE"

    def __init__(self, oid, name, uid, gid, uname, gname, permissions=None, template=None,
                 itype=OS, persistent=False, regtime=0, source="", path="", fstype="", size=0,
                 state=IMG_INIT, running_vms=0, datastore_id=DEFAULT_DATASTORE_ID,
                 datastore=DEFAULT_DATASTORE):
        super().__init__(oid, name, uid, gid, uname, gname, permissions, template)
        self.type = itype
        self.persistent = persistent
        self.regtime = regtime
        self.source = source
        self.path = path
        self.fstype = fstype
        self.size = size
        self.state = state
        self.running_vms = running_vms
        self.datastore_id = datastore_id
        self.datastore = datastore

    @property
    def type_name(self):
        """``"OS"``, ``"CDROM"`` or ``"DATABLOCK"``."""
        return IMAGE_TYPES[self.type]

    @property
    def state_name(self):
        """``"READY"``-style name of the state."""
        return IMAGE_STATES[self.state]

    def to_xml(self):
        root = etree.Element("IMAGE")
        _sub(root, "ID", self.oid)
        self._xml_owner(root)
        for tag, value in (("TYPE", self.type), ("PERSISTENT", 1 if self.persistent else 0),
                           ("REGTIME", self.regtime), ("SOURCE", self.source),
                           ("PATH", self.path), ("FSTYPE", self.fstype), ("SIZE", self.size),
                           ("STATE", self.state), ("RUNNING_VMS", self.running_vms),
                           ("DATASTORE_ID", self.datastore_id),
                           ("DATASTORE", self.datastore)):
            _sub(root, tag, value)
        root.append(self.template.to_xml())
        return root

    @classmethod
    def from_xml(cls, el):
        return cls(_int(el, "ID"), _text(el, "NAME"),
                   template=Template.from_xml(el.find("TEMPLATE")), itype=_int(el, "TYPE"),
                   persistent=_int(el, "PERSISTENT") == 1, regtime=_int(el, "REGTIME"),
                   source=_text(el, "SOURCE"), path=_text(el, "PATH"),
                   fstype=_text(el, "FSTYPE"), size=_int(el, "SIZE"), state=_int(el, "STATE"),
                   running_vms=_int(el, "RUNNING_VMS"),
                   datastore_id=_int(el, "DATASTORE_ID", DEFAULT_DATASTORE_ID),
                   datastore=_text(el, "DATASTORE", DEFAULT_DATASTORE), **cls._read_owner(el))


class VMTemplate(Owned):
    """A 3.4 VM template (``src/vm_template/VMTemplate.cc``): a VM template
    stored to be instantiated later. Its TEMPLATE keeps NAME, as 3.x does."""

    TABLE = "template_pool"
    ROOT = "VMTEMPLATE"

    def __init__(self, oid, name, uid, gid, uname, gname, permissions=None, template=None,
                 regtime=0):
        super().__init__(oid, name, uid, gid, uname, gname, permissions, template)
        self.regtime = regtime

    def to_xml(self):
        root = etree.Element("VMTEMPLATE")
        _sub(root, "ID", self.oid)
        self._xml_owner(root)
        _sub(root, "REGTIME", self.regtime)
        root.append(self.template.to_xml())
        return root

    @classmethod
    def from_xml(cls, el):
        return cls(_int(el, "ID"), _text(el, "NAME"),
                   template=Template.from_xml(el.find("TEMPLATE")), regtime=_int(el, "REGTIME"),
                   **cls._read_owner(el))


# ---------------------------------------------------------------------------
# VM disks


def _denied(user, op, kind, oid):
    return AuthorizationError(
        f"User [{user.oid}] : Not authorized to perform {op} {kind} [{oid}].")


def _check_create(nebula, actor, kind):
    """CREATE authorization, where the core has ACLs (``Nebula.can_create``)."""
    can_create = getattr(nebula, "can_create", None)
    if can_create is not None and not can_create(actor, kind):
        raise AuthorizationError(f"User [{actor.oid}] : Not authorized to perform CREATE "
                                 f"{kind}.")


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


# ---------------------------------------------------------------------------
# The API operations


#: Pool filter flags (``src/rm/RequestManagerPoolInfoFilter.cc``).
_ALL = -2


class ImageRequests:
    """``one.image.*`` and ``one.template.*`` operations, mixed into
    :class:`nebtwist.core.requests.Requests` (which provides ``nebula``,
    ``dm`` and ``_filter``). ``images`` is the :class:`ImageManager` set by
    :func:`install` (made on first use otherwise).

    Authorization as 3.4 (``src/rm/RequestManagerImage.cc``,
    ``RequestManagerVMTemplate.cc``): info and instantiate need USE,
    update, delete, enable, persistent and chtype need MANAGE.
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

    def _vmtemplate(self, actor, tid, op="MANAGE"):
        tmpl = self.nebula.tplpool.get(tid)
        allowed = (self.nebula.can_use if op == "USE" else self.nebula.can_manage)(actor, tmpl)
        if not allowed:
            raise _denied(actor, op, "TEMPLATE", tid)
        return tmpl

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

    # -- VM templates ------------------------------------------------------------------

    async def template_allocate(self, actor, text):
        """Store a VM template; returns its id.

        A user outside oneadmin's group may not give a ``VM_RESTRICTED_ATTR``
        (OpenNebula 4.x ``TemplateAllocate``; 3.4 checked at instantiation).

        :raises APIError: malformed template or no NAME.
        :raises AuthorizationError: a restricted attribute.
        :raises ActionError: the user already has a template of that name.
        """
        template = parse_template(text, "VM template", max_template_size(self.nebula.config))
        check_restricted(self.nebula, actor, template)
        _check_create(self.nebula, actor, "TEMPLATE")
        name = template.get("NAME")
        if not isinstance(name, str) or not name.strip():
            raise APIError("No NAME in template.")
        pool = self.nebula.tplpool
        other = pool.find(name, actor.oid)
        if other is not None:
            raise ActionError(f"Error allocating a new template. NAME is already taken by "
                              f"TEMPLATE {other.oid}.")
        group = self.nebula.grouppool.objects.get(actor.gid)
        oid = pool.reserve_oid()
        tmpl = VMTemplate(oid, name, actor.oid, actor.gid, actor.name,
                          group.name if group else "", template=template,
                          regtime=int(self.nebula.clock.seconds()))
        try:
            await pool.insert(tmpl)
        except BaseException:
            pool.release_oid(oid)
            raise
        return oid

    def template_info(self, actor, tid):
        """``<VMTEMPLATE>`` (USE)."""
        return self._vmtemplate(actor, tid, "USE").info()

    async def template_delete(self, actor, tid):
        """Delete a VM template (MANAGE); VMs made from it are not touched."""
        await self.nebula.tplpool.remove(self._vmtemplate(actor, tid))
        return tid

    async def template_update(self, actor, tid, text):
        """Replace a VM template's contents (MANAGE); its name is kept. A user
        outside oneadmin's group may not give a ``VM_RESTRICTED_ATTR``
        (OpenNebula 4.x ``RequestManagerUpdateTemplate``)."""
        tmpl = self._vmtemplate(actor, tid)
        template = parse_template(text, "VM template", max_template_size(self.nebula.config))
        check_restricted(self.nebula, actor, template)
        await _store_template(self.nebula.tplpool, tmpl, template)
        return tid

    async def template_instantiate(self, actor, tid, name="", hold=False, extra=""):
        """Create a VM from a stored template (USE); returns the VM id.

        The VM's template is a copy of the stored one with NAME set to
        ``name`` when given and TEMPLATE_ID added; ``extra`` (template text)
        adds or replaces attributes (later OpenNebula versions' argument);
        ``hold`` leaves the VM in HOLD. The VM belongs to the caller
        (3.4 ``VMTemplateInstantiate``). Errors are those of one.vm.allocate.

        ``VM_RESTRICTED_ATTR``, for a caller outside oneadmin's group: a
        template owned by oneadmin's group may hold restricted attributes
        (3.4 checks only templates of other owners), the ``extra`` attributes
        may not (later versions check the caller's additions).
        """
        tmpl = self._vmtemplate(actor, tid, "USE")
        template = tmpl.template.copy()
        if extra:
            added = parse_template(extra, "extra template",
                                   max_template_size(self.nebula.config))
            check_restricted(self.nebula, actor, added)
            template.replace_from(added)
        if not (tmpl.uid == 0 or tmpl.gid == ONEADMIN_GROUP):
            check_restricted(self.nebula, actor, tmpl.template)
        if name:
            template.set("NAME", name)
        template.set("TEMPLATE_ID", str(tmpl.oid))
        vm = await self.dm.allocate(actor, template.to_text(), check_restricted_attrs=False)
        if hold:
            await self.dm.action(vm, "hold")
        return vm.oid

    def templatepool_info(self, actor, flag=_ALL, start=-1, end=-1):
        """``<VMTEMPLATE_POOL>`` filtered by the 3.4 flags."""
        pool = self.nebula.tplpool
        return pool.dump(self._filter(actor, sorted(pool, key=lambda t: t.oid), flag, start,
                                      end))


__all__ = ["Image", "VMTemplate", "ImageClaim", "ImageManager", "ImageRequests",
           "release_vm_images", "install", "IMAGE_STATES", "IMAGE_TYPES"]
