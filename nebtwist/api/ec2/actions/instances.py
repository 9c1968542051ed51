"""EC2 instance actions (AWS EC2 API reference, API_RunInstances,
API_DescribeInstances, API_TerminateInstances, API_StartInstances,
API_StopInstances, API_RebootInstances; OpenNebula econe 3.4
``EC2QueryServer.rb``): :class:`InstanceActions`, a mixin of
:class:`nebtwist.api.ec2.resource.EC2Resource`, calling the requests layer.
"""

import base64
import binascii
import secrets

from twisted.logger import Logger

from nebtwist.api.ec2.base import (_AWS_INSTANCE_ID, _INSTANCE_ID, EC2Error, _matches, _tags,
                                   ec2_state, instance_id)
from nebtwist.api.ec2.params import _iso
from nebtwist.api.ec2.queries import max_results, page
from nebtwist.core.objects import DONE
from nebtwist.core.requests_keypairs import NoSuchKeyPair
from nebtwist.core.vmtypes import UnknownVMType, VMTypeError
from nebtwist.errors import ActionError, AuthorizationError, NoSuchObject
from nebtwist.template import Template

log = Logger()

#: Seconds a terminated (DONE) instance stays visible, as AWS does (about an hour).
TERMINATED_VISIBLE = 3600


def _vm_image(vm):
    image = vm.template.get_str("IMAGE_ID")
    if image is None:
        image = (vm.template.get_vector("DISK") or {}).get("IMAGE_ID")
    return f"ami-{int(image):08d}" if image and image.isdigit() else ""


def _vm_ip(vm):
    """The VM's private address (its first NIC's IP), or ""."""
    return (vm.template.get_vector("NIC") or {}).get("IP") or ""


def _tag_filter(key):
    def match(vm, wanted):
        return _matches([v for k, v in _tags(vm) if k == key], wanted)
    return match


#: DescribeInstances filters: name -> ``match(vm, wanted, eips)``.
_INSTANCE_FILTERS = {
    "instance-id": lambda vm, w, e: _matches([f"i-{vm.oid}"], w),
    "instance-state-name": lambda vm, w, e: _matches([ec2_state(vm)[1]], w),
    "instance-state-code": lambda vm, w, e: _matches([str(ec2_state(vm)[0])], w),
    "instance-type": lambda vm, w, e: _matches([vm.template.get_str("INSTANCE_TYPE") or ""], w),
    "image-id": lambda vm, w, e: _matches([_vm_image(vm)], w),
    "key-name": lambda vm, w, e: _matches([vm.template.get_str("EC2_KEYNAME") or ""], w),
    "private-ip-address": lambda vm, w, e: _matches([_vm_ip(vm)], w),
    "ip-address": lambda vm, w, e: _matches([e.get(vm.oid, "")], w),
    "reservation-id": lambda vm, w, e: _matches([_reservation(vm)], w),
    "tag-key": lambda vm, w, e: _matches([k for k, _ in _tags(vm)], w),
    "tag-value": lambda vm, w, e: _matches([v for _, v in _tags(vm)], w),
}


def _reservation(vm):
    return vm.template.get_str("EC2_RESERVATION") or f"r-{vm.oid:017x}"


class InstanceActions:
    """Instances: RunInstances, DescribeInstances, Terminate/Start/Stop/RebootInstances."""

    async def run_instances(self, user, params, out):
        """RunInstances: ``MaxCount`` VMs of ``InstanceType`` (default
        m1.small) on ``ImageId``, one reservation. ``KeyName`` names one of
        the user's key pairs (InvalidKeyPair.NotFound otherwise): its name
        and public key reach the type's template (``key_name``,
        ``public_key``; the shipped ones put SSH_PUBLIC_KEY in CONTEXT) and
        the VM keeps ``EC2_KEYNAME``. Everything is checked and rendered
        before the first VM is created.

        ``TagSpecification.N`` of ResourceType ``instance`` tags every new
        instance (``EC2_TAG`` vectors, as CreateTags), from its creation;
        ``Placement.AvailabilityZone`` must be this front's zone (AWS API
        reference, API_RunInstances).

        :raises EC2Error: InvalidParameterValue for another zone ("Invalid
            availability zone"), a resource type other than ``instance``
            (this front has no volumes, interfaces...) or a bad tag;
            TagLimitExceeded past :data:`MAX_TAGS` tags.
        """
        image = self._image(user, params.require("ImageId"))
        instance_tags = self._placement_and_tags(params)
        itype = params.get("InstanceType") or "m1.small"
        if itype not in self.vmtypes:
            raise EC2Error("InvalidParameterValue",
                           f"Invalid value '{itype}' for InstanceType.")
        min_count = params.int("MinCount", 1)
        max_count = params.int("MaxCount", min_count)
        if max_count < min_count:
            raise EC2Error("InvalidParameterValue",
                           "MaxCount must be greater than or equal to MinCount.")
        user_data = params.get("UserData") or None
        if user_data is not None:
            try:
                base64.b64decode(user_data, validate=True)
            except (binascii.Error, ValueError):
                raise EC2Error("InvalidParameterValue",
                               "Invalid BASE64 encoding of user data.") from None
        key_name = params.get("KeyName") or None
        public_key = None
        if key_name is not None:
            try:
                public_key = self.requests.keypair_get(user, key_name).public_key or None
            except NoSuchKeyPair:
                raise EC2Error("InvalidKeyPair.NotFound",
                               f"The key pair '{key_name}' does not exist") from None
        try:
            text = self.vmtypes.render(itype, image_id=image.oid, image_path=image.source,
                                       user_data=user_data, key_name=key_name,
                                       public_key=public_key, user=user.name,
                                       user_id=user.oid)
        except UnknownVMType:
            raise EC2Error("InvalidParameterValue",
                           f"Invalid value '{itype}' for InstanceType.") from None
        except VMTypeError as e:
            log.error("EC2 RunInstances: {e}", e=str(e))
            raise EC2Error("InternalError", str(e), 500) from None
        reservation = f"r-{secrets.token_hex(4)}"
        created = []
        try:
            for index in range(max_count):
                extra = [("EC2_RESERVATION", reservation), ("EC2_LAUNCH_INDEX", str(index))]
                if key_name is not None:
                    extra.append(("EC2_KEYNAME", key_name))
                extra += [("EC2_TAG", {"KEY": k, "VALUE": v}) for k, v in instance_tags.items()]
                created.append(await self.requests.vm_allocate(
                    user, text + "\n" + Template(extra).to_text()))
        except BaseException:
            for vid in created:  # all or nothing
                try:
                    await self.requests.vm_action(user, "finalize", vid)
                except Exception:
                    log.failure("EC2 RunInstances: cleaning up VM {vid}", vid=vid)
            raise
        out.sub(out.root, "reservationId", reservation)
        out.sub(out.root, "ownerId", user.name)
        out.sub(out.root, "groupSet")
        instances = out.sub(out.root, "instancesSet")
        for vid in created:
            self._instance(out, instances, self.requests.vm_get(user, vid), {})

    def _instance(self, out, parent, vm, eips):
        item = out.sub(parent, "item")
        tpl = vm.template
        out.sub(item, "instanceId", instance_id(vm.oid))
        out.sub(item, "imageId", _vm_image(vm))
        code, name = ec2_state(vm)
        state = out.sub(item, "instanceState")
        out.sub(state, "code", code)
        out.sub(state, "name", name)
        ip = _vm_ip(vm)
        out.sub(item, "privateDnsName", ip)
        out.sub(item, "dnsName", ip)
        out.sub(item, "reason")
        key_name = tpl.get_str("EC2_KEYNAME")
        if key_name:
            out.sub(item, "keyName", key_name)
        out.sub(item, "amiLaunchIndex", tpl.get_str("EC2_LAUNCH_INDEX") or "0")
        out.sub(item, "productCodes")
        out.sub(item, "instanceType", tpl.get_str("INSTANCE_TYPE") or "")
        out.sub(item, "launchTime", _iso(vm.stime))
        out.sub(out.sub(item, "placement"), "availabilityZone", self.zone)
        out.sub(out.sub(item, "monitoring"), "state", "disabled")
        if ip:
            out.sub(item, "privateIpAddress", ip)
        if eips.get(vm.oid):
            out.sub(item, "ipAddress", eips[vm.oid])
        out.tag_set(item, vm)

    def _visible(self, user, now):
        vms = []
        for vm in self.requests.vm_list(user, include_done=True):
            if vm.uid != user.oid:
                continue
            if vm.state == DONE and vm.etime and now - vm.etime > TERMINATED_VISIBLE:
                continue
            vms.append(vm)
        return vms

    def _instances(self, user, ids):
        """The user's VMs named by ``ids`` (``i-N``), in order.

        :raises EC2Error: InvalidInstanceID.NotFound for an id of this
            front's form or AWS's (``i-1234abcd``, ``i-0123456789abcdef0``)
            that names none of the user's VMs; InvalidInstanceID.Malformed
            for any other id.
        """
        vms = []
        for iid in ids:
            m = _INSTANCE_ID.match(iid)
            if not m and not _AWS_INSTANCE_ID.match(iid):
                raise EC2Error("InvalidInstanceID.Malformed", f"Invalid id: \"{iid}\"")
            vm = None
            if m:
                try:
                    vm = self.requests.vm_get(user, int(m.group(1)))
                except (NoSuchObject, AuthorizationError):
                    pass
            if vm is None or vm.uid != user.oid:
                raise EC2Error("InvalidInstanceID.NotFound",
                               f"The instance ID '{iid}' does not exist")
            vms.append(vm)
        return vms

    def _required_instances(self, user, params):
        ids = params.indexed("InstanceId")
        if not any(ids):  # none, or only empty ones (InstanceId.1=)
            raise EC2Error("MissingParameter",
                           "The request must contain the parameter InstanceId")
        return self._instances(user, ids)

    async def describe_instances(self, user, params, out):
        """DescribeInstances: the user's instances (``InstanceId.N``; filters
        instance-id, instance-state-name, instance-state-code, instance-type,
        image-id, key-name, private-ip-address, ip-address, reservation-id,
        tag-key, tag-value and ``tag:KEY``, values with ``*``/``?``
        wildcards), grouped by reservation, with keyName, ipAddress (an
        associated elastic IP) and tagSet.

        Every filter must match; one of a filter's values is enough.
        ``MaxResults`` (5 to 1000 instances a page) and ``NextToken`` page
        the instances (after the filters), ``nextToken`` naming the next
        page (AWS API reference, API_DescribeInstances).

        :raises EC2Error: InvalidParameterCombination for ``MaxResults``
            with ``InstanceId.N``; InvalidParameterValue for a ``MaxResults``
            out of range or an unknown filter; InvalidPaginationToken.
        """
        limit = max_results(params, combined_with="InstanceId")
        ids = params.indexed("InstanceId")
        vms = (self._instances(user, ids) if ids
               else self._visible(user, self.requests.now()))
        eips = self._associations(user)
        for name, wanted in params.filters():
            if name.startswith("tag:") and len(name) > 4:
                match = _tag_filter(name[4:])
                vms = [vm for vm in vms if match(vm, wanted)]
                continue
            match = _INSTANCE_FILTERS.get(name)
            if match is None:
                raise EC2Error("InvalidParameterValue",
                               f"The filter '{name}' is invalid "
                               f"(known: {', '.join(sorted(_INSTANCE_FILTERS))}, tag:KEY).")
            vms = [vm for vm in vms if match(vm, wanted, eips)]
        vms, token = page(vms, params, limit)
        groups = {}
        for vm in vms:
            groups.setdefault(_reservation(vm), []).append(vm)
        rset = out.sub(out.root, "reservationSet")
        for rid, members in groups.items():
            item = out.sub(rset, "item")
            out.sub(item, "reservationId", rid)
            out.sub(item, "ownerId", user.name)
            out.sub(item, "groupSet")
            instances = out.sub(item, "instancesSet")
            for vm in members:
                self._instance(out, instances, vm, eips)
        if token is not None:
            out.sub(out.root, "nextToken", token)

    @staticmethod
    def _state_change(out, parent, vm, current, previous):
        item = out.sub(parent, "item")
        out.sub(item, "instanceId", instance_id(vm.oid))
        for tag, (code, name) in (("currentState", current), ("previousState", previous)):
            state = out.sub(item, tag)
            out.sub(state, "code", code)
            out.sub(state, "name", name)
        return item

    async def terminate_instances(self, user, params, out):
        """TerminateInstances: ``shutdown`` a running VM, else ``finalize``
        it (3.4 ``terminate_instances``); a DONE one is left alone. Their
        elastic IPs are disassociated first (:meth:`_drop_addresses`)."""
        vms = self._required_instances(user, params)
        await self._drop_addresses(user, vms)
        iset = out.sub(out.root, "instancesSet")
        for vm in vms:
            previous = ec2_state(vm)
            if vm.state != DONE:  # FAILED (terminated in EC2 terms) is finalized too
                action = "shutdown" if vm.short_state() == "runn" else "finalize"
                await self.requests.vm_action(user, action, vm.oid)
            try:
                vm = self.requests.vm_get(user, vm.oid)
            except NoSuchObject:
                pass
            current = ec2_state(vm)
            if vm.state != DONE and current == previous and previous[0] != 48:
                current = (32, "shutting-down")
            item = self._state_change(out, iset, vm, current, previous)
            out.sub(item, "shutdownState", 32)

    def _allowed(self, user, vm, action):
        return self.requests.vm_action_allowed(user, vm, action)

    async def _change_states(self, user, params, out, action, done_states, verb):
        """Run core ``action`` on every named instance; an instance already
        in one of ``done_states`` (EC2 names) is left as it is, as AWS does.

        Every instance is checked before the first action.

        :raises EC2Error: IncorrectInstanceState naming the first instance
            that can take neither.
        """
        vms = self._required_instances(user, params)
        todo = []
        for vm in vms:
            if self._allowed(user, vm, action):
                todo.append(True)
            elif ec2_state(vm)[1] in done_states:
                todo.append(False)
            else:
                raise EC2Error("IncorrectInstanceState",
                               f"The instance '{instance_id(vm.oid)}' is not in a state from "
                               f"which it can be {verb} ({ec2_state(vm)[1]}).")
        iset = out.sub(out.root, "instancesSet")
        for vm, act in zip(vms, todo):
            previous = ec2_state(vm)
            if act:
                try:
                    await self.requests.vm_action(user, action, vm.oid)
                except ActionError as e:
                    raise EC2Error("IncorrectInstanceState", str(e)) from None
            self._state_change(out, iset, vm, ec2_state(vm), previous)

    async def start_instances(self, user, params, out):
        """StartInstances: core ``resume`` of a STOPPED VM (back to PENDING,
        rescheduled) or a SUSPENDED one (restored on its host); a running or
        pending instance is left as it is; others are IncorrectInstanceState.
        (econe 3.8+ ``start_instances``.)"""
        await self._change_states(user, params, out, "resume", ("running", "pending"),
                                  "started")

    async def stop_instances(self, user, params, out):
        """StopInstances: core ``stop`` of a RUNNING VM (checkpoint, files
        back to the front-end, host freed: STOPPED). ``Force=true`` uses
        ``poweroff`` instead (3.4 ``suspend``: the checkpoint stays on the
        host, with no transfer, so the stop is quicker; today's OpenNebula
        StopInstances powers off too). A stopping or stopped instance is
        left as it is; others are IncorrectInstanceState."""
        action = "poweroff" if params.bool("Force") else "stop"
        await self._change_states(user, params, out, action, ("stopping", "stopped"),
                                  "stopped")

    async def reboot_instances(self, user, params, out):
        """RebootInstances: core ``reboot`` (VMM REBOOT, the state does not
        change) of RUNNING VMs; IncorrectInstanceState for any other."""
        vms = self._required_instances(user, params)
        for vm in vms:
            if not self._allowed(user, vm, "reboot"):
                raise EC2Error("IncorrectInstanceState",
                               f"The instance '{instance_id(vm.oid)}' is not running "
                               f"({ec2_state(vm)[1]}).")
        for vm in vms:
            try:
                await self.requests.vm_action(user, "reboot", vm.oid)
            except ActionError as e:
                raise EC2Error("IncorrectInstanceState", str(e)) from None
        out.sub(out.root, "return", "true")

