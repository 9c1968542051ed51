"""Tags (key/value pairs) on VMs and images.

Kept in the object's template as ``EC2_TAG = [ KEY, VALUE ]`` vectors,
written through the object's pool (they survive a restart), as the EC2 API
(API_CreateTags, API_DeleteTags, API_DescribeTags) has them on instances
and images.

Authorization: tags are read by who may use the object, changed by its owner
(or oneadmin and the oneadmin group); a VM ``vm``, an image ``image``.

Errors: :class:`~nebtwist.errors.NoSuchObject`,
:class:`~nebtwist.errors.AuthorizationError`, :class:`TagLimitExceeded`
(an :class:`~nebtwist.errors.ActionError`), :class:`~nebtwist.errors.APIError`
for an unknown kind.
"""

from dataclasses import dataclass

from nebtwist.core.objects import DONE
from nebtwist.core.requests_access import vectors
from nebtwist.errors import ActionError, APIError, AuthorizationError

#: The template attribute holding the tags.
TAG = "EC2_TAG"

#: Taggable kinds -> the Nebula pool holding them.
KINDS = {"vm": "vmpool", "image": "imagepool"}


class TagLimitExceeded(ActionError):
    """An object would have more tags than allowed."""


@dataclass(frozen=True)
class Tag:
    """A tag of an object: ``kind`` ``vm`` or ``image``, its id ``oid``, the
    ``key`` and ``value`` (strings, value possibly empty)."""

    kind: str
    oid: int
    key: str
    value: str


def tags_of(obj):
    """``[(key, value)]`` of an object's tags, in order."""
    return [(v.get("KEY", ""), v.get("VALUE", "")) for v in vectors(obj, TAG)]


def _vectors(pairs):
    return [{"KEY": key, "VALUE": value} for key, value in pairs]


class TagRequests:
    """Mixin of :class:`nebtwist.core.requests.Requests` (``self.nebula``,
    ``self._store_attributes`` come from it)."""

    def _taggable(self, actor, kind, oid, change):
        if kind not in KINDS:
            raise APIError(f"Objects of kind {kind!r} take no tags (vm, image).")
        obj = getattr(self.nebula, KINDS[kind]).get(int(oid))
        what = "VM" if kind == "vm" else "IMAGE"
        if change:
            if obj.uid != actor.oid and not self.nebula.is_admin(actor):
                raise AuthorizationError(f"User [{actor.oid}] : Not authorized to perform "
                                         f"MANAGE {what} [{obj.oid}]: only its owner may "
                                         f"change its tags.")
        elif not self.nebula.can_use(actor, obj):
            raise AuthorizationError(f"User [{actor.oid}] : Not authorized to perform USE "
                                     f"{what} [{obj.oid}].")
        return obj

    def tag_get(self, actor, kind, oid):
        """The tags of object ``oid`` of ``kind`` (USE), ``[(key, value)]``.

        :raises NoSuchObject: no such object.
        :raises AuthorizationError: the user may not use it.
        """
        return tags_of(self._taggable(actor, kind, oid, False))

    def tag_list(self, actor, include_done=False):
        """The tags of the VMs (not DONE ones unless ``include_done``) and
        images ``actor`` owns, as :class:`Tag` objects, VMs first, by id."""
        out = []
        for kind in ("vm", "image"):
            pool = getattr(self.nebula, KINDS[kind])
            for obj in sorted(pool.objects.values(), key=lambda o: o.oid):
                if obj.uid != actor.oid:
                    continue
                if kind == "vm" and not include_done and obj.state == DONE:
                    continue
                out += [Tag(kind, obj.oid, k, v) for k, v in tags_of(obj)]
        return out

    async def tag_create(self, actor, targets, tags, limit=None):
        """Add or overwrite tags on objects, all in one write.

        :param targets: ``[(kind, oid)]``.
        :param tags: ``[(key, value)]`` (a None value is "").
        :param limit: the most tags an object may then have (None: no limit).
        :raises NoSuchObject, AuthorizationError: a target the user does not
            own (nothing is changed).
        :raises TagLimitExceeded: past ``limit`` (nothing is changed).
        """
        objects = self._targets(actor, targets)
        changes = []
        for kind, obj in objects:
            merged = dict(tags_of(obj))
            for key, value in tags:
                merged[key] = value or ""
            if limit is not None and len(merged) > limit:
                raise TagLimitExceeded(f"A resource may have at most {limit} tags.")
            changes.append((kind, obj, TAG, _vectors(merged.items()), ()))
        await self._store_attributes(changes)

    async def tag_delete(self, actor, targets, tags=()):
        """Remove tags from objects, all in one write: ``(key, None)`` removes
        the key whatever its value, ``(key, value)`` only with that value;
        no ``tags`` removes every tag (AWS DeleteTags).

        :raises NoSuchObject, AuthorizationError: as :meth:`tag_create`.
        """
        objects = self._targets(actor, targets)
        changes = []
        for kind, obj in objects:
            current = tags_of(obj)
            kept = [] if not tags else [
                (k, v) for k, v in current
                if not any(k == dk and (dv is None or dv == v) for dk, dv in tags)]
            if kept != current:
                changes.append((kind, obj, TAG, _vectors(kept), ()))
        if changes:
            await self._store_attributes(changes)

    def _targets(self, actor, targets):
        found = {}
        for kind, oid in targets:
            obj = self._taggable(actor, kind, oid, True)
            found.setdefault((kind, obj.oid), (kind, obj))
        return list(found.values())
