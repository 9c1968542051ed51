"""Images: the pool object and its states (OpenNebula 3.4 ``src/image/Image.cc``,
``include/Image.h``).

:class:`Image` is a pool object whose body follows the 3.4 schema
``image.xsd`` (reference section 1.7); it is stored in the ``image_pool``
table.

Image states (``include/Image.h``): 0 INIT, 1 READY, 2 USED, 3 DISABLED,
4 LOCKED (being copied into the repository), 5 ERROR. Types: 0 OS, 1 CDROM,
2 DATABLOCK. SIZE is in MB. There is one image datastore, 1 (``default``);
datastore 0 is the system datastore, where VM directories live.

Also the authorization errors the image and VM template operations share
(3.4's messages). Registration and the repository files are in
:mod:`nebtwist.core.imagem`, images taken by VM DISKs in
:mod:`nebtwist.core.disks`, the ``one.image.*`` operations in
:mod:`nebtwist.core.requests_images`.
"""

from lxml import etree

from nebtwist.core.objects import Owned, _int, _sub, _text
from nebtwist.errors import AuthorizationError
from nebtwist.template import Template

# Image states and types (include/Image.h, 3.4)
IMG_INIT, IMG_READY, IMG_USED, IMG_DISABLED, IMG_LOCKED, IMG_ERROR = range(6)
IMAGE_STATES = ["INIT", "READY", "USED", "DISABLED", "LOCKED", "ERROR"]
OS, CDROM, DATABLOCK = range(3)
IMAGE_TYPES = ["OS", "CDROM", "DATABLOCK"]

#: The image datastore (3.4 ``DatastorePool``: 0 system, 1 default).
SYSTEM_DATASTORE_ID = 0
DEFAULT_DATASTORE_ID = 1
DEFAULT_DATASTORE = "default"


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


def _denied(user, op, kind, oid):
    return AuthorizationError(
        f"User [{user.oid}] : Not authorized to perform {op} {kind} [{oid}].")


def _check_create(nebula, actor, kind):
    """CREATE authorization, where the core has ACLs (``Nebula.can_create``)."""
    can_create = getattr(nebula, "can_create", None)
    if can_create is not None and not can_create(actor, kind):
        raise AuthorizationError(f"User [{actor.oid}] : Not authorized to perform CREATE "
                                 f"{kind}.")


__all__ = ["Image", "IMAGE_STATES", "IMAGE_TYPES", "IMG_INIT", "IMG_READY", "IMG_USED",
           "IMG_DISABLED", "IMG_LOCKED", "IMG_ERROR", "OS", "CDROM", "DATABLOCK",
           "SYSTEM_DATASTORE_ID", "DEFAULT_DATASTORE_ID", "DEFAULT_DATASTORE"]
