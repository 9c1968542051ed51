"""Glance v2, read-only: nebtwist's images.

Routes (Image API v2 reference, https://docs.openstack.org/api-ref/image/v2/):
``GET /image`` (versions, 300), ``GET /image/v2/images`` (filters ``name``
exact, ``id=in:a,b`` (ids may be double-quoted, as Glance's ``in:``
operator), ``status``, ``visibility``; paging ``limit``/``marker``) and
``GET /image/v2/images/{id}`` (404 unknown or not visible).

An image's JSON: ``id`` (UUID, :mod:`nebtwist.api.openstack.common`),
``name``, ``status`` from the image state (INIT, LOCKED: ``saving``; READY,
USED: ``active``; DISABLED: ``deactivated``; ERROR: ``killed``),
``visibility`` from its permissions (OTHER USE: ``public``, GROUP USE:
``shared``, else ``private``), ``owner`` the group id (the project),
``size`` in bytes (nebtwist's SIZE is MB), ``disk_format`` from the
template's ``DRIVER`` (``qcow2``, else ``raw``), ``container_format``
``bare``, and the nebtwist ``TYPE`` (OS, CDROM, DATABLOCK) as the extra
property ``nebtwist_type``.
"""

from nebtwist.api.openstack.common import from_uuid, iso8601, to_uuid
from nebtwist.api.openstack.compute import maybe_await
from nebtwist.errors import AuthorizationError, NoSuchObject

#: nebtwist image state (INIT, READY, USED, DISABLED, LOCKED, ERROR) -> Glance status.
STATUS = ["saving", "active", "active", "deactivated", "saving", "killed"]


def versions(base):
    """``GET /image``: (300, the versions document)."""
    values = [{"id": vid, "status": status,
               "links": [{"rel": "self", "href": f"{base}/image/v2/"}]}
              for vid, status in (("v2.16", "CURRENT"), ("v2.0", "SUPPORTED"))]
    return 300, {"versions": values}


def image_view(image):
    """An image's Glance v2 JSON (dict)."""
    iid = to_uuid("image", image.oid)
    perms = list(image.permissions) if getattr(image, "permissions", None) else [0] * 9
    visibility = "public" if perms[6] else "shared" if perms[3] else "private"
    driver = (image.template.get_str("DRIVER") or "").lower()
    created = iso8601(image.regtime)
    return {
        "id": iid, "name": image.name,
        "status": STATUS[image.state] if 0 <= image.state < len(STATUS) else "killed",
        "visibility": visibility, "protected": False, "os_hidden": False,
        "owner": str(image.gid), "size": int(image.size or 0) * 1024 * 1024,
        "virtual_size": None, "min_disk": 0, "min_ram": 0,
        "disk_format": "qcow2" if driver == "qcow2" else "raw", "container_format": "bare",
        "checksum": None, "os_hash_algo": None, "os_hash_value": None,
        "created_at": created, "updated_at": created, "tags": [],
        "self": f"/v2/images/{iid}", "file": f"/v2/images/{iid}/file",
        "schema": "/v2/schemas/image", "nebtwist_type": image.type_name,
    }


def _in_list(value):
    ids = []
    for item in value[3:].split(","):
        item = item.strip().strip('"')
        if item:
            ids.append(item)
    return ids


async def list_images(call):
    """``GET /image/v2/images``: (200, ``{"images", "first", "schema"[, "next"]}``)."""
    from nebtwist.api.openstack.common import bad_request

    images = sorted(await maybe_await(call.requests.image_list(call.actor)),
                    key=lambda i: i.oid)
    views = [image_view(i) for i in images]
    args = call.args
    if "name" in args:
        views = [v for v in views if v["name"] == args["name"]]
    if "id" in args:
        value = args["id"]
        if not value.startswith("in:"):
            wanted = {from_uuid("image", value)}
        else:
            wanted = {from_uuid("image", item) for item in _in_list(value)}
        views = [v for v in views if from_uuid("image", v["id"]) in wanted]
    for key in ("status", "visibility"):
        if key in args and not (key == "visibility" and args[key] == "all"):
            views = [v for v in views if v[key] == args[key]]
    marker = args.get("marker")
    if marker:
        ids = [v["id"] for v in views]
        if marker not in ids:
            raise bad_request(f"Invalid marker. Image {marker} could not be found.")
        views = views[ids.index(marker) + 1:]
    body = {"first": "/v2/images", "schema": "/v2/schemas/images"}
    if "limit" in args:
        try:
            limit = int(args["limit"])
            if limit < 0:
                raise ValueError
        except ValueError:
            raise bad_request("limit param must be a non-negative integer") from None
        if len(views) > limit:
            views = views[:limit]
            body["next"] = f"/v2/images?limit={limit}&marker={views[-1]['id']}" if views else None
    body["images"] = views
    return 200, body


async def show_image(call, ref):
    """``GET /image/v2/images/{id}``: (200, the image), 404 ``itemNotFound``
    unknown or not visible."""
    from nebtwist.api.openstack.common import not_found

    missing = not_found(f"No image found with ID {ref}")
    iid = from_uuid("image", ref)
    if iid is None:
        raise missing
    try:
        image = await maybe_await(call.requests.image_get(call.actor, iid))
    except (NoSuchObject, AuthorizationError):
        raise missing from None
    return 200, image_view(image)
