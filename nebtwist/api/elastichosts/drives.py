"""ElasticHosts drives = nebtwist images.

A drive is an image; its UUID encodes the image id
(:func:`~nebtwist.api.elastichosts.settings.make_uuid`). ``drives/create``
registers a DATABLOCK image of the asked size, persistent for the default
``claim:type exclusive`` (a persistent image serves one VM at a time and
keeps what it writes, as a drive does), not for ``shared``; FSTYPE ``raw``:
an empty sparse file. ``drives/<uuid>/set`` renames it. ``drives/list`` and ``drives/info`` hold the
images the user owns; **standard drives** (``drives/standard/...``) are the
images of others the user may use (public or group images), plus the
``STANDARD_DRIVE`` mappings of elastichosts.conf, listed under their mapped
UUID. Keys of a drive (ElasticHosts names):

=================  =====================================================
drive              the UUID
name               the image NAME
size               bytes (the image SIZE in MB x 1048576)
status             ``active`` (READY, USED, LOCKED), ``inactive`` (DISABLED,
                   ERROR)
imaging            while a copy (``image``, ``clone``) or the registration
                   runs: ``queued`` or ``NN%``; absent otherwise
claim:type         ``exclusive`` (persistent image) or ``shared``
claimed            ``<server uuid>:<device>`` of each VM using it
type               ``disk`` (OS, DATABLOCK) or ``cdrom`` (CDROM)
user               the owner's user UUID
readers            ``ffffffff-ffff-ffff-ffff-ffffffffffff`` for an image
                   others may use, else absent
=================  =====================================================
"""

import re
import zlib

from nebtwist.api.elastichosts import settings as S
from nebtwist.api.elastichosts.wire import EHError, missing, usage
from nebtwist.template import Template

MB = 1024 * 1024
_UNITS = {"": 1, "K": 1024, "M": MB, "G": 1024 * MB, "T": 1024 * 1024 * MB}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
#: Largest ``read`` (ElasticHosts: 4096k).
MAX_READ = 4096 * 1024
#: Largest data of one ``write`` once gunzipped (bounds the memory a small
#: gzip body can ask for; the official upload tool writes 4 MiB chunks).
MAX_WRITE = 64 * MB
_EVERYONE = "ffffffff-ffff-ffff-ffff-ffffffffffff"
_STATUS = {1: "active", 2: "active", 4: "active", 0: "active", 3: "inactive", 5: "inactive"}


def parse_size(text):
    """Bytes (int > 0) of a drive ``size``: a number of bytes, or with a
    ``K``, ``M``, ``G`` or ``T`` suffix (powers of 1024, as ElasticHosts' tools).

    :raises EHError: 400 for anything else.
    """
    match = _SIZE.match(str(text or ""))
    if not match or int(match.group(1)) <= 0:
        raise usage(f"Bad size {text!r}: a number of bytes, or with a G, M or K suffix.")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def _claims(call, image):
    out = []
    for vm in call.requests.vm_list(call.actor):
        for disk in vm.template.get_all("DISK"):
            if isinstance(disk, dict) and str(disk.get("IMAGE_ID", "")) == str(image.oid):
                device = S.target_device(disk.get("TARGET")) or disk.get("TARGET", "")
                out.append(f"{S.make_uuid('server', vm.oid)}:{device}")
    return out


def info(call, image, uuid=None):
    """The drive object (dict) of ``image``; ``uuid`` overrides its UUID
    (a standard drive's mapped UUID)."""
    data = {
        "drive": uuid or S.make_uuid("drive", image.oid),
        "name": image.name,
        "size": str(image.size * MB),
        "status": _STATUS.get(image.state, "inactive"),
        "claim:type": "exclusive" if image.persistent else "shared",
        "type": "cdrom" if image.type == 1 else "disk",
        "user": S.make_uuid("user", image.uid),
    }
    if image.permissions[6]:  # OTHER USE
        data["readers"] = _EVERYONE
    progress = call.requests.image_copy_progress(call.actor, image.oid)
    if progress is not None:
        data["imaging"] = f"{progress.percent}%" if progress.total else "queued"
    elif image.state == 4:  # LOCKED: being registered
        data["imaging"] = "queued"
    if image.running_vms:
        claims = _claims(call, image)
        if claims:
            data["claimed"] = " ".join(claims)
    if image.state == 5 and image.template.get_str("ERROR"):
        data["error"] = image.template.get_str("ERROR")
    return data


def resolve(call, uuid, standard_ok=True):
    """The image a drive UUID names: an image UUID, or (``standard_ok``) a
    standard drive UUID mapped in elastichosts.conf.

    :raises EHError: 404 for an unknown UUID or image.
    """
    iid = S.parse_uuid("drive", uuid)
    if iid is not None:
        return call.requests.image_get(call.actor, iid)
    name = call.settings.standard.get((uuid or "").lower()) if standard_ok else None
    if name is None:
        raise missing(f"Drive {uuid} could not be found.")
    mine = [i for i in call.requests.image_list(call.actor) if i.name == name]
    mine.sort(key=lambda i: (i.uid != call.actor.oid, i.uid != 0, i.oid))
    if not mine:
        raise missing(f"Standard drive {uuid} maps to image {name!r}, which could not be "
                      f"found.")
    return mine[0]


def _own(call):
    return [i for i in call.requests.image_list(call.actor) if i.uid == call.actor.oid]


def _standard(call):
    """[(uuid, image)] of the standard drives."""
    out, seen = [], set()
    for image in call.requests.image_list(call.actor):
        mapped = call.settings.standard_uuid(image.name)
        if mapped is not None and mapped not in seen:
            seen.add(mapped)
            out.append((mapped, image))
        elif image.uid != call.actor.oid:
            out.append((S.make_uuid("drive", image.oid), image))
    return out


async def do_list(call):
    """``drives/list``: the UUIDs of the images the user owns."""
    return 200, [S.make_uuid("drive", i.oid) for i in _own(call)]


async def do_info_all(call):
    """``drives/info``: every image the user owns."""
    return 200, [info(call, i) for i in _own(call)]


async def do_standard_list(call):
    """``drives/standard/list``: the standard drives' UUIDs."""
    return 200, [uuid for uuid, _ in _standard(call)]


async def do_standard_info(call):
    """``drives/standard/info``: the standard drives."""
    return 200, [info(call, image, uuid) for uuid, image in _standard(call)]


async def do_info(call, uuid):
    """``drives/<uuid>/info`` (an image or a standard drive UUID)."""
    image = resolve(call, uuid)
    return 200, info(call, image, uuid if S.parse_uuid("drive", uuid) is None else None)


async def _create(call, name, size, claim="exclusive"):
    if not name or "\n" in name:
        raise usage("A drive needs a name (one line).")
    if claim not in ("exclusive", "shared"):
        raise usage(f"Bad claim:type {claim!r}: exclusive or shared.")
    template = Template()
    template.set("NAME", name)
    template.set("TYPE", "DATABLOCK")
    template.set("SIZE", str((size + MB - 1) // MB))
    template.set("FSTYPE", "raw")
    template.set("PERSISTENT", "YES" if claim == "exclusive" else "NO")
    iid = await call.requests.image_allocate(call.actor, template.to_text())
    image = await call.requests.image_wait(call.actor, iid)
    if image.state == 5:  # ERROR: the file could not be made; nothing is left behind
        reason = image.template.get_str("ERROR") or "the drive's file could not be made"
        await call.requests.image_delete(call.actor, iid)
        raise EHError(500, "failed", f"Drive creation failed: {reason}")
    return image


async def do_create(call):
    """``drives/create``: body ``name``, ``size`` (required), ``claim:type``
    (``exclusive``, the default: a persistent image; ``shared``: a
    non-persistent one, which each server using it gets a copy of); other
    keys (``tags``, ``user:*``, ``encryption:cipher``...) are not kept."""
    body = call.body_object()
    if "size" not in body:
        raise usage("A drive needs a size.")
    image = await _create(call, body.get("name", "").strip(), parse_size(body["size"]),
                          body.get("claim:type", "exclusive").strip())
    return 200, info(call, image)


async def do_clone(call, uuid):
    """CloudSigma 1.0 ``drives/<uuid>/clone``: a new drive (``name``; ``size``
    at least the source's, and 1 MB) holding a copy of the source's content;
    when the copy cannot start, the new drive is deleted."""
    source = resolve(call, uuid)
    body = call.body_object()
    size = max(parse_size(body["size"]) if body.get("size") else 0, source.size * MB, MB)
    image = await _create(call, (body.get("name") or source.name).strip(), size)
    try:
        await call.requests.image_copy(call.actor, image.oid, source.oid)
    except BaseException:  # no half-made clone
        await call.requests.image_delete(call.actor, image.oid)
        raise
    return 200, info(call, image)


async def do_set(call, uuid):
    """``drives/<uuid>/set``: ``name`` (4.x ``one.image.rename``); a drive's
    other keys cannot change here (400)."""
    image = resolve(call, uuid, standard_ok=False)
    body = call.body_object()
    other = sorted(set(body) - {"name"})
    if other or not body:
        refused = f", not {', '.join(other)}" if other else ""
        raise usage(f"Only a drive's name can be set{refused}.")
    await call.requests.image_rename(call.actor, image.oid, str(body["name"]).strip())
    return 200, info(call, call.requests.image_get(call.actor, image.oid))


async def do_destroy(call, uuid):
    """``drives/<uuid>/destroy``: delete the image (not a standard drive's UUID); 204."""
    image = resolve(call, uuid, standard_ok=False)
    await call.requests.image_delete(call.actor, image.oid)
    return 204, None


def _offset(text, what="offset"):
    if text is None:
        return 0
    if not text.isdigit():
        raise usage(f"Bad {what} {text!r}: a whole number of bytes.")
    return int(text)


async def do_write(call, uuid, offset=None):
    """``drives/<uuid>/write[/<offset>]``: the body's raw bytes (or gzip data
    with ``Content-Encoding: gzip``, at most :data:`MAX_WRITE` bytes once
    gunzipped) at ``offset`` (default 0); 204."""
    image = resolve(call, uuid, standard_ok=False)
    data = call.body
    encoding = (call.request.getHeader(b"content-encoding") or b"").strip().lower()
    if encoding == b"gzip":
        codec = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = codec.decompress(data, min(image.size * MB, MAX_WRITE) + 1)
        except zlib.error as e:
            raise usage(f"The gzip body is corrupt: {e}") from None
        if codec.unconsumed_tail or not codec.eof:
            raise usage(f"The gzip body is truncated, or holds more than the drive or "
                        f"{MAX_WRITE} bytes (one write).")
    elif encoding not in (b"", b"identity"):
        raise usage(f"Unknown Content-Encoding {encoding.decode('latin-1')!r} (gzip).")
    await call.requests.image_write(call.actor, image.oid, _offset(offset), data)
    return 204, None


async def do_read(call, uuid, offset, size):
    """``drives/<uuid>/read/<offset>/<size>``: binary, at most 4096k."""
    size = _offset(size, "size") if size is not None else MAX_READ
    if size > MAX_READ:
        raise usage(f"A read is at most {MAX_READ} bytes.")
    image = resolve(call, uuid)
    data = await call.requests.image_read(call.actor, image.oid, _offset(offset), size)
    return 200, data


async def do_image(call, dst, src, mode=None):
    """``drives/<dst>/image/<src>[/gunzip|/gzip]``: copy in the background;
    the destination's ``imaging`` key shows the progress."""
    if mode not in (None, "gunzip", "gzip"):
        raise missing(f"Unknown imaging mode {mode!r}.")
    target = resolve(call, dst, standard_ok=False)
    source = resolve(call, src)
    await call.requests.image_copy(call.actor, target.oid, source.oid, mode)
    return 204, None


#: (method names allowed, path pattern, handler); ``*`` is one path segment.
ROUTES = [
    ("GET POST", ("drives", "list"), do_list),
    ("GET POST", ("drives", "info"), do_info_all),
    ("GET POST", ("drives", "standard", "list"), do_standard_list),
    ("GET POST", ("drives", "standard", "info"), do_standard_info),
    ("POST", ("drives", "create"), do_create),
    ("GET POST", ("drives", "*", "info"), do_info),
    ("POST", ("drives", "*", "clone"), do_clone),
    ("POST", ("drives", "*", "destroy"), do_destroy),
    ("POST", ("drives", "*", "set"), do_set),
    ("POST", ("drives", "*", "write"), do_write),
    ("POST", ("drives", "*", "write", "*"), do_write),
    ("GET POST", ("drives", "*", "read", "*", "*"), do_read),
    ("GET POST", ("drives", "*", "read", "*"), lambda c, u, o: do_read(c, u, o, None)),
    ("POST", ("drives", "*", "image", "*"), do_image),
    ("POST", ("drives", "*", "image", "*", "*"), do_image),
]

__all__ = ["EHError", "ROUTES", "info", "parse_size", "resolve"]
