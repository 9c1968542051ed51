"""EC2 Query actions and parameters the front learnt from real clients
(issue 11): pages (``MaxResults``/``NextToken``), ``TagSpecification.N``,
RunInstances' placement, the DescribeImages owners/filters,
DescribeRegions/AvailabilityZones/InstanceTypes with their names and
filters, DescribeInstanceStatus and CreateImage (OpenNebula's save-as).

:class:`QueryActions` is mixed into :class:`nebtwist.api.ec2.EC2Resource`,
whose helpers (``_instances``, ``_visible``, ``requests``, ``nebula``,
``zone``, ``region``, ``vmtypes``) it uses. Shapes follow the AWS EC2 API
reference (``API_<Action>.html``).
"""

import base64
import binascii
import math
import re

from twisted.logger import Logger

from nebtwist.api.ec2_base import (_IMAGE_STATES, MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS,
                                   EC2Error, _matches, _printable, _shown, _tags, ami_id,
                                   ec2_state, instance_id)
from nebtwist.core.objects import ACTIVE, RUNNING
from nebtwist.errors import ActionError
from nebtwist.template import Template

log = Logger()

def _public(image):
    """``"true"`` for an image anyone may use (OTHER_U), else ``"false"``."""
    return "true" if image.permissions[6] else "false"


def _image_tag_filter(key):
    return lambda image, wanted: _matches([v for k, v in _tags(image) if k == key], wanted)


#: DescribeImages filters (AWS API reference, API_DescribeImages): name ->
#: ``match(image, wanted)``. ``owner-id`` is the owner's name (this front's
#: account ids); no image has an ``owner-alias`` (amazon, aws-marketplace).
_IMAGE_FILTERS = {
    "image-id": lambda im, w: _matches([ami_id(im.oid)], w),
    "name": lambda im, w: _matches([im.name], w),
    "description": lambda im, w: _matches([im.template.get_str("DESCRIPTION") or ""], w),
    "state": lambda im, w: _matches([_IMAGE_STATES.get(im.state_name, "pending")], w),
    "owner-id": lambda im, w: _matches([im.uname], w),
    "owner-alias": lambda im, w: False,
    "is-public": lambda im, w: _matches([_public(im)], w),
    "architecture": lambda im, w: _matches(["i386"], w),
    "image-type": lambda im, w: _matches(["machine"], w),
    "root-device-type": lambda im, w: _matches(["instance-store"], w),
    "tag-key": lambda im, w: _matches([k for k, _ in _tags(im)], w),
    "tag-value": lambda im, w: _matches([v for _, v in _tags(im)], w),
}


#: DescribeInstanceStatus filters.
_STATUS_FILTERS = ("instance-id", "instance-state-name", "instance-state-code",
                   "availability-zone", "instance-status.status",
                   "instance-status.reachability", "system-status.status",
                   "system-status.reachability")


#: ``TagSpecification.N.ResourceType`` and ``TagSpecification.N.Tag.M.Key/Value``.
_TAG_SPEC = re.compile(r"TagSpecification\.([0-9]+)\."
                       r"(?:(ResourceType)|Tag\.([0-9]+)\.(Key|Value))\Z")


def max_results(params, low=5, high=1000, combined_with=None):
    """The ``MaxResults`` of a paginated Describe action (None without one).

    :param combined_with: a parameter name (``InstanceId``) whose ``.N``
        values may not come with ``MaxResults``.
    :raises EC2Error: InvalidParameterValue outside ``low..high`` (AWS API
        reference: DescribeInstances takes 5 to 1000);
        InvalidParameterCombination with ``combined_with`` values.
    """
    value = params.get("MaxResults")
    if value is None or value == "":
        return None
    if combined_with and any(params.indexed(combined_with)):
        raise EC2Error("InvalidParameterCombination",
                       f"The parameter {combined_with}s cannot be used with the parameter "
                       f"maxResults")
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise EC2Error("InvalidParameterValue",
                       f"Value ( {value} ) for parameter maxResults is invalid. Expecting a "
                       f"value between {low} and {high}.")
    return number


def page(objects, params, limit):
    """One page of ``objects`` (pool objects in ``oid`` order): those after
    the ``NextToken``'s object, at most ``limit`` (None: all).

    A token is the base64 (URL alphabet) of ``after:<oid>``: the last
    object of the previous page; objects that went meanwhile do not shift
    the next page.

    :return: ``(page, next token or None)``; a token only when more follow.
    :raises EC2Error: InvalidPaginationToken for a token this front did
        not make (AWS "Error codes for the Amazon EC2 API").
    """
    token = params.get("NextToken")
    if token:
        try:
            text = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
        except (binascii.Error, ValueError, UnicodeError):
            text = ""
        m = re.fullmatch(r"after:([0-9]{1,10})", text)
        if not m:
            raise EC2Error("InvalidPaginationToken",
                           f"The pagination token '{_shown(token)}' is invalid.")
        after = int(m.group(1))
        objects = [o for o in objects if o.oid > after]
    if limit is None or len(objects) <= limit:
        return objects, None
    page = objects[:limit]
    return page, base64.urlsafe_b64encode(f"after:{page[-1].oid}".encode()).decode("ascii")


def tag_specifications(pairs):
    """The ``TagSpecification.N.ResourceType`` with its
    ``TagSpecification.N.Tag.M.Key`` / ``.Value`` as ``[(resource type,
    [(key, value)])]`` in N order (a missing value is ""), of the
    request's ``pairs``.

    :raises EC2Error: InvalidParameterValue for a specification without
        a resource type or a value without a key.
    """
    kinds, keys, values = {}, {}, {}
    for k, v in pairs:
        m = _TAG_SPEC.match(k)
        if not m:
            continue
        n = int(m.group(1))
        if m.group(2):
            kinds[n] = v
        else:
            (keys if m.group(4) == "Key" else values)[(n, int(m.group(3)))] = v
    for n, tag in values:
        if (n, tag) not in keys:
            raise EC2Error("InvalidParameterValue", f"TagSpecification.{n}.Tag.{tag}.Value "
                                                    f"is given without its Key.")
    specs = []
    for n in sorted(set(kinds) | {n for n, _ in keys}):
        if not kinds.get(n):
            raise EC2Error("InvalidParameterValue",
                           f"TagSpecification.{n} needs a ResourceType.")
        tags = [(keys[(n, t)], values.get((n, t)) or "")
                for _, t in sorted(k for k in keys if k[0] == n)]
        specs.append((kinds[n], tags))
    return specs


def check_tags(tags):
    """Check tags to be set (``[(key, value or None)]``), as AWS "Tag your
    Amazon EC2 resources": keys of 1 to :data:`MAX_TAG_KEY` characters not
    starting with ``aws:``, values of at most :data:`MAX_TAG_VALUE`, no
    control characters.

    :raises EC2Error: InvalidParameterValue naming the first bad tag.
    """
    for key, value in tags:
        if not _printable(key, MAX_TAG_KEY) or key.lower().startswith("aws:"):
            raise EC2Error("InvalidParameterValue",
                           f"Invalid tag key '{key}': 1 to {MAX_TAG_KEY} characters, no "
                           f"control characters, not starting with aws:.")
        if value and not _printable(value, MAX_TAG_VALUE):
            raise EC2Error("InvalidParameterValue",
                           f"Invalid value for tag '{key}': at most {MAX_TAG_VALUE} "
                           f"characters, no control characters.")


class QueryActions:
    """The actions and helpers of this module, mixed into
    :class:`nebtwist.api.ec2.EC2Resource`."""

    @staticmethod
    def _narrow(rows, params, known, what):
        """Rows (``{filter name: value}``) matching every ``Filter.N``.

        :raises EC2Error: InvalidParameterValue for a filter not in ``known``.
        """
        for name, values in params.filters():
            if name not in known:
                raise EC2Error("InvalidParameterValue",
                               f"The filter '{name}' is invalid for {what} "
                               f"(known: {', '.join(sorted(known))}).")
            rows = [r for r in rows if _matches([r[name]], values)]
        return rows

    async def describe_regions(self, user, params, out):
        """DescribeRegions: the one region of this front; ``RegionName.N``
        naming another is InvalidParameterValue, as AWS; filters
        region-name, endpoint, opt-in-status (AWS API reference,
        API_DescribeRegions).

        :raises EC2Error: InvalidParameterValue.
        """
        unknown = [n for n in params.indexed("RegionName") if n != self.region]
        if unknown:
            raise EC2Error("InvalidParameterValue",
                           f"Invalid region names: [{', '.join(unknown)}]")
        rows = self._narrow([{"region-name": self.region, "endpoint": self.region,
                              "opt-in-status": "opt-in-not-required"}],
                            params, ("region-name", "endpoint", "opt-in-status"), "regions")
        info = out.sub(out.root, "regionInfo")
        for row in rows:
            item = out.sub(info, "item")
            out.sub(item, "regionName", row["region-name"])
            out.sub(item, "regionEndpoint", row["endpoint"])
            out.sub(item, "optInStatus", row["opt-in-status"])

    async def describe_availability_zones(self, user, params, out):
        """DescribeAvailabilityZones: the one zone (``placement`` of
        instances), with its ``zoneId`` (:attr:`zone_id`). ``ZoneName.N`` or
        ``ZoneId.N`` naming another is InvalidParameterValue, as AWS;
        filters zone-name, zone-id, region-name, state, zone-type,
        group-name, opt-in-status (AWS API reference,
        API_DescribeAvailabilityZones).

        :raises EC2Error: InvalidParameterValue.
        """
        for param, known in (("ZoneName", self.zone), ("ZoneId", self.zone_id)):
            unknown = [n for n in params.indexed(param) if n != known]
            if unknown:
                raise EC2Error("InvalidParameterValue",
                               f"The {'zone ID' if param == 'ZoneId' else 'zone'} "
                               f"'{unknown[0]}' does not exist in the region {self.region}.")
        row = {"zone-name": self.zone, "zone-id": self.zone_id, "region-name": self.region,
               "state": "available", "zone-type": "availability-zone",
               "group-name": self.region, "opt-in-status": "opt-in-not-required"}
        rows = self._narrow([row], params, tuple(row), "availability zones")
        info = out.sub(out.root, "availabilityZoneInfo")
        for row in rows:
            item = out.sub(info, "item")
            out.sub(item, "zoneName", row["zone-name"])
            out.sub(item, "zoneId", row["zone-id"])
            out.sub(item, "zoneState", row["state"])
            out.sub(item, "regionName", row["region-name"])
            out.sub(item, "groupName", row["group-name"])
            out.sub(item, "optInStatus", row["opt-in-status"])
            out.sub(item, "zoneType", row["zone-type"])
            out.sub(item, "messageSet")

    async def describe_instance_types(self, user, params, out):
        """DescribeInstanceTypes: the econe.conf VM types, with the CPU, VCPU
        and MEMORY (MiB) their template renders; ``InstanceType.N`` and
        filters instance-type, vcpu-info.default-vcpus,
        memory-info.size-in-mib (AWS API reference,
        API_DescribeInstanceTypes).

        :raises EC2Error: InvalidInstanceType for an unknown type;
            InvalidParameterValue for an unknown filter.
        """
        wanted = params.indexed("InstanceType")
        for name in wanted:
            if name not in self.vmtypes:
                raise EC2Error("InvalidInstanceType",
                               f"The following supplied instance types do not exist: [{name}]")
        rows = []
        for name in wanted or self.vmtypes.names():
            tpl = Template.parse(self.vmtypes.render(name, image_id=0, user=user.name,
                                                     user_id=user.oid))
            vcpus = tpl.get_int("VCPU") or max(1, math.ceil(tpl.get_float("CPU", 1.0)))
            rows.append({"instance-type": name, "vcpu-info.default-vcpus": str(vcpus),
                         "memory-info.size-in-mib": str(tpl.get_int("MEMORY", 0))})
        rows = self._narrow(rows, params, ("instance-type", "vcpu-info.default-vcpus",
                                           "memory-info.size-in-mib"), "instance types")
        types = out.sub(out.root, "instanceTypeSet")
        for row in rows:
            item = out.sub(types, "item")
            out.sub(item, "instanceType", row["instance-type"])
            out.sub(out.sub(item, "vCpuInfo"), "defaultVCpus", row["vcpu-info.default-vcpus"])
            out.sub(out.sub(item, "memoryInfo"), "sizeInMiB", row["memory-info.size-in-mib"])

    def _narrow_images(self, user, images, params):
        """DescribeImages' ``Owner.N``, ``ExecutableBy.N`` and ``Filter.N``
        (see :meth:`nebtwist.api.ec2.EC2Resource.describe_images`) applied to
        ``images``.

        :raises EC2Error: InvalidParameterValue for an unknown filter.
        """
        owners = params.indexed("Owner")
        if owners:
            images = [im for im in images
                      if any(im.uid == user.oid if o == "self" else im.uname == o
                             for o in owners)]
        executable = params.indexed("ExecutableBy")
        if executable:
            users = self.nebula.userpool
            launchers = []
            for name in executable:
                if name not in ("self", "all"):
                    name = users.find(name)
                launchers.append(name)
            images = [im for im in images if any(
                _public(im) == "true" if who == "all" else
                who == "self" or (who is not None and self.nebula.can_use(who, im))
                for who in launchers)]
        for name, values in params.filters():
            if name.startswith("tag:") and len(name) > 4:
                match = _image_tag_filter(name[4:])
            else:
                match = _IMAGE_FILTERS.get(name)
            if match is None:
                raise EC2Error("InvalidParameterValue",
                               f"The filter '{name}' is invalid "
                               f"(known: {', '.join(sorted(_IMAGE_FILTERS))}, tag:KEY).")
            images = [im for im in images if match(im, values)]
        return images

    def _placement_and_tags(self, params):
        """Check RunInstances' ``Placement.AvailabilityZone`` and
        ``TagSpecification.N``; return the instance tags ``{key: value}``.

        :raises EC2Error: see :meth:`run_instances`.
        """
        zone = params.get("Placement.AvailabilityZone")
        if zone and zone != self.zone:
            raise EC2Error("InvalidParameterValue", f"Invalid availability zone: [{zone}]")
        instance_tags = {}
        for kind, tags in tag_specifications(params.pairs):
            if kind != "instance":
                raise EC2Error("InvalidParameterValue",
                               f"'{kind}' is not a valid taggable resource type for this "
                               f"operation: only instance is supported here.")
            check_tags(tags)
            instance_tags.update(tags)
        if len(instance_tags) > MAX_TAGS:
            raise EC2Error("TagLimitExceeded", f"A resource may have at most {MAX_TAGS} tags.")
        return instance_tags

    @staticmethod
    def _status(vm):
        """``(instance status, reachability)`` of a VM: ``ok``/``passed``
        once it runs (ACTIVE/RUNNING), ``initializing`` while it boots
        (EC2 ``running`` already), ``not-applicable`` (no details) when
        it is not running (AWS API reference, InstanceStatusSummary)."""
        if ec2_state(vm)[1] != "running":
            return "not-applicable", None
        if vm.state == ACTIVE and vm.lcm_state == RUNNING:
            return "ok", "passed"
        return "initializing", "initializing"

    async def describe_instance_status(self, user, params, out):
        """DescribeInstanceStatus: the status of the user's running
        instances (all of them with ``IncludeAllInstances=true``), named by
        ``InstanceId.N`` or not; filters instance-id, instance-state-name,
        instance-state-code, availability-zone, instance-status.status,
        instance-status.reachability, system-status.status,
        system-status.reachability; ``MaxResults`` (5 to 1000) and
        ``NextToken`` as DescribeInstances (AWS API reference,
        API_DescribeInstanceStatus). The system status is the instance's:
        the front knows no more of the host than the VM shows.

        :raises EC2Error: the instance id errors of :meth:`_instances`;
            InvalidParameterValue for an unknown filter;
            InvalidParameterCombination; InvalidPaginationToken.
        """
        limit = max_results(params, combined_with="InstanceId")
        ids = params.indexed("InstanceId")
        vms = (self._instances(user, ids) if ids
               else self._visible(user, self.nebula.clock.seconds()))
        if not params.bool("IncludeAllInstances"):
            vms = [vm for vm in vms if ec2_state(vm)[1] == "running"]
        rows = []
        for vm in vms:
            status, reach = self._status(vm)
            code, name = ec2_state(vm)
            rows.append({"instance-id": instance_id(vm.oid), "instance-state-name": name,
                         "instance-state-code": str(code), "availability-zone": self.zone,
                         "instance-status.status": status,
                         "instance-status.reachability": reach or "",
                         "system-status.status": status,
                         "system-status.reachability": reach or "", "vm": vm})
        rows = self._narrow(rows, params, _STATUS_FILTERS, "instance status")
        vms, token = page([r["vm"] for r in rows], params, limit)
        statuses = out.sub(out.root, "instanceStatusSet")
        for vm in vms:
            item = out.sub(statuses, "item")
            out.sub(item, "instanceId", instance_id(vm.oid))
            out.sub(item, "availabilityZone", self.zone)
            code, name = ec2_state(vm)
            state = out.sub(item, "instanceState")
            out.sub(state, "code", code)
            out.sub(state, "name", name)
            status, reach = self._status(vm)
            for tag in ("systemStatus", "instanceStatus"):
                summary = out.sub(item, tag)
                out.sub(summary, "status", status)
                details = out.sub(summary, "details")
                if reach is not None:
                    detail = out.sub(details, "item")
                    out.sub(detail, "name", "reachability")
                    out.sub(detail, "status", reach)
        if token is not None:
            out.sub(out.root, "nextToken", token)

    def _dry_create_image(self, user, params):
        self._may_create("IMAGE")(user, params)
        self._instances(user, [params.require("InstanceId")])

    async def create_image(self, user, params, out):
        """CreateImage (``InstanceId``, ``Name``, ``Description``): the
        instance's first disk saved as a new image, OpenNebula's save-as
        (3.4 ``one.vm.savedisk``, :meth:`nebtwist.core.requests_savedisk.
        SaveDiskRequests.vm_savedisk`): the ``imageId`` is answered at once,
        the image is ``pending`` (LOCKED) until the instance is terminated
        (its disk is copied at its shutdown), then ``available``; ``failed``
        if the instance ends without a shutdown. ``NoReboot`` changes
        nothing: the instance is never rebooted. (AWS API reference,
        API_CreateImage, for the parameters and errors.)

        :raises EC2Error: MissingParameter; InvalidAMIName.Malformed (a name
            of 3 to 128 characters of letters, digits, ``()[] ./-'@_``, as
            AWS); InvalidAMIName.Duplicate; the instance id errors;
            IncorrectInstanceState for a terminated instance, one with no
            disk made from an image, or whose disk is being saved already;
            UnauthorizedOperation.
        """
        vm = self._instances(user, [params.require("InstanceId")])[0]
        name = params.require("Name")
        if not re.fullmatch(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}", name):
            raise EC2Error("InvalidAMIName.Malformed",
                           f"AMI names must be between 3 and 128 characters long, and may "
                           f"contain letters, numbers, parentheses, brackets, spaces, "
                           f"periods, slashes, dashes, single quotes, at-signs and "
                           f"underscores; not '{_shown(name)}'.")
        taken = self.nebula.imagepool.find(name, user.oid)
        if taken is not None:
            raise EC2Error("InvalidAMIName.Duplicate",
                           f"AMI name {name} is already in use by AMI {ami_id(taken.oid)}")
        description = params.get("Description") or None
        if description is not None and not _printable(description, 255):
            raise EC2Error("InvalidParameterValue",
                           "Invalid value for Description: at most 255 characters.")
        try:
            oid = await self.requests.vm_savedisk(user, vm.oid, 0, name,
                                                  description=description)
        except ActionError as e:
            raise EC2Error("IncorrectInstanceState", str(e)) from None
        log.info("EC2: image {oid} ({name}) will be saved from {iid} for {user}", oid=oid,
                 name=name, iid=instance_id(vm.oid), user=user.name)
        out.sub(out.root, "imageId", ami_id(oid))
