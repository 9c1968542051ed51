"""EC2 tag actions (AWS EC2 API reference, API_CreateTags, API_DeleteTags,
API_DescribeTags) over the core's tags (:mod:`nebtwist.core.requests_tags`):
:class:`TagActions`, a mixin of :class:`nebtwist.api.ec2.resource.EC2Resource`.
"""

from nebtwist.api.ec2.base import MAX_TAGS, EC2Error, _matches, ami_id, instance_id
from nebtwist.api.ec2.queries import check_tags
from nebtwist.core.requests_tags import TagLimitExceeded


class TagActions:
    """Tags: CreateTags, DeleteTags, DescribeTags on instances and images."""

    def _taggable(self, user, rid):
        """``(kind, oid)`` (:mod:`nebtwist.core.requests_tags`) of a resource
        id the user owns.

        :raises EC2Error: InvalidID (neither ``i-`` nor ``ami-``), the
            instance and image NotFound/Malformed codes, UnauthorizedOperation
            (an image the user may see but does not own).
        """
        if rid.startswith("i-"):
            return "vm", self._instances(user, [rid])[0].oid
        if rid.startswith("ami-"):
            image = self._image(user, rid)
            if image.uid != user.oid:
                raise EC2Error("UnauthorizedOperation",
                               f"Only the owner of {rid} may change its tags.", 403)
            return "image", image.oid
        raise EC2Error("InvalidID", f"The ID '{rid}' is not valid")

    def _tag_targets(self, user, params):
        ids = params.indexed("ResourceId")
        if not ids:
            raise EC2Error("MissingParameter",
                           "The request must contain the parameter ResourceId")
        targets = []
        for rid in ids:
            target = self._taggable(user, rid)
            if target not in targets:
                targets.append(target)
        return targets

    async def create_tags(self, user, params, out):
        """CreateTags: add or overwrite ``Tag.N.Key``/``Tag.N.Value`` (value
        default "") on instances and images the user owns (``ResourceId.N``),
        all in one write (:meth:`nebtwist.core.requests_tags.TagRequests.tag_create`).

        :raises EC2Error: MissingParameter; InvalidParameterValue for a key
            of more than :data:`MAX_TAG_KEY` characters, a value over
            :data:`MAX_TAG_VALUE`, an ``aws:`` key or control characters;
            TagLimitExceeded past :data:`MAX_TAGS` tags on a resource.
        """
        targets = self._tag_targets(user, params)
        tags = params.tags()
        if not tags:
            raise EC2Error("MissingParameter", "The request must contain the parameter Tag")
        check_tags(tags)
        try:
            await self.requests.tag_create(user, targets, tags, limit=MAX_TAGS)
        except TagLimitExceeded as e:
            raise EC2Error("TagLimitExceeded", str(e)) from None
        out.sub(out.root, "return", "true")

    async def delete_tags(self, user, params, out):
        """DeleteTags: remove ``Tag.N.Key`` (any value), or ``Tag.N.Key``
        with ``Tag.N.Value`` (only with that value, "" included), or every
        tag when no ``Tag`` is given, as AWS
        (:meth:`nebtwist.core.requests_tags.TagRequests.tag_delete`)."""
        targets = self._tag_targets(user, params)
        await self.requests.tag_delete(user, targets, params.tags())
        out.sub(out.root, "return", "true")

    async def describe_tags(self, user, params, out):
        """DescribeTags: the tags of the user's instances and images
        (filters resource-id, resource-type ``instance``/``image``, key,
        value; ``*``/``?`` wildcards), ordered by resource."""
        visible = {vm.oid for vm in self._visible(user, self.requests.now())}
        rows = []
        for tag in self.requests.tag_list(user, include_done=True):
            if tag.kind == "vm" and tag.oid not in visible:
                continue
            rows.append({"resource-id": instance_id(tag.oid) if tag.kind == "vm"
                         else ami_id(tag.oid),
                         "resource-type": "instance" if tag.kind == "vm" else "image",
                         "key": tag.key, "value": tag.value})
        for name, values in params.filters():
            if name not in ("resource-id", "resource-type", "key", "value"):
                raise EC2Error("InvalidParameterValue",
                               f"The filter '{name}' is invalid "
                               f"(known: key, resource-id, resource-type, value).")
            rows = [r for r in rows if _matches([r[name]], values)]
        tag_set = out.sub(out.root, "tagSet")
        for r in rows:
            item = out.sub(tag_set, "item")
            out.sub(item, "resourceId", r["resource-id"])
            out.sub(item, "resourceType", r["resource-type"])
            out.sub(item, "key", r["key"])
            out.sub(item, "value", r["value"])

