"""The EC2 Query API front (first slice).

A ``twisted.web`` resource answering GET and POST (form-encoded body) on
``/``, dispatched on the ``Action`` parameter, as OpenNebula 3.4's
econe-server (``src/cloud/ec2/lib/econe-server.rb``, ``EC2QueryServer.rb``;
reference section 7.1) did, but calling the core directly.

* Authentication: :func:`nebtwist.api.awsauth.verify_request` (SigV4, SigV2);
  the access key is the user name, the secret the stored SHA1 hex password.
* Responses: ``<{Action}Response xmlns="http://ec2.amazonaws.com/doc/<Version>/">``
  with a ``requestId``; ``Version`` is the request's (default
  :data:`DEFAULT_VERSION`).
* Errors: ``<Response><Errors><Error><Code/><Message/></Error></Errors>
  <RequestID/></Response>`` with the code's HTTP status; never a traceback.
* Ids: instances ``i-<vmid>``, images ``ami-%08d``, reservations ``r-...``.

Actions of this slice: DescribeRegions, DescribeAvailabilityZones,
DescribeInstanceTypes, DescribeImages, RunInstances, DescribeInstances,
TerminateInstances. ``KeyName`` in RunInstances is accepted and not used yet
(key pairs are a later slice).
"""

import base64
import binascii
import math
import re
import secrets
import time
import uuid
from urllib.parse import parse_qsl

from lxml import etree
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from nebtwist.api import awsauth
from nebtwist.core.objects import DONE
from nebtwist.core.vmtypes import UnknownVMType, VMTypeError
from nebtwist.errors import (
    ActionError,
    APIError,
    AuthorizationError,
    NebulaError,
    NoSuchObject,
)
from nebtwist.template import Template

log = Logger()

#: Version used when the request names none.
DEFAULT_VERSION = "2016-11-15"
_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_INSTANCE_ID = re.compile(r"i-([0-9]{1,9})\Z")
_AMI_ID = re.compile(r"ami-([0-9]{1,9})\Z")
_INDEXED = re.compile(r"([A-Za-z]+)\.([0-9]+)\Z")

#: Seconds a terminated (DONE) instance stays visible, as AWS does (about an hour).
TERMINATED_VISIBLE = 3600

#: Short VM state (``VirtualMachine.short_state``) -> (EC2 code, name): 3.4
#: ``EC2QueryServer.rb`` ``EC2_STATES``.
_STATES = {}
for _short in ("init", "pend", "hold", "stop", "susp", "prol", "save", "actv"):
    _STATES[_short] = (0, "pending")
for _short in ("boot", "runn", "migr"):
    _STATES[_short] = (16, "running")
for _short in ("epil", "shut", "clea"):
    _STATES[_short] = (32, "shutting-down")
for _short in ("done", "fail", "unkn"):
    _STATES[_short] = (48, "terminated")

#: Image state name -> EC2 imageState (3.4 ``describe_images.erb``).
_IMAGE_STATES = {"INIT": "pending", "LOCKED": "pending", "READY": "available",
                 "USED": "available", "DISABLED": "failed", "ERROR": "failed"}


def _vm_image(vm):
    image = vm.template.get_str("IMAGE_ID")
    if image is None:
        image = (vm.template.get_vector("DISK") or {}).get("IMAGE_ID")
    return f"ami-{int(image):08d}" if image and image.isdigit() else ""


#: DescribeInstances filters: name -> the VM's value.
_INSTANCE_FILTERS = {
    "instance-id": lambda vm: f"i-{vm.oid}",
    "instance-state-name": lambda vm: ec2_state(vm)[1],
    "instance-state-code": lambda vm: str(ec2_state(vm)[0]),
    "instance-type": lambda vm: vm.template.get_str("INSTANCE_TYPE") or "",
    "image-id": _vm_image,
}


class EC2Error(Exception):
    """An EC2 error response.

    :ivar code: the EC2 code (``InvalidInstanceID.NotFound``).
    :ivar status: HTTP status (int).
    :ivar message: text for the user.
    """

    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def ec2_state(vm):
    """``(code, name)`` of a VM in EC2 terms (section 7.1 mapping)."""
    return _STATES.get(vm.short_state(), (0, "pending"))


def instance_id(oid):
    """``i-<vmid>``."""
    return f"i-{oid}"


def ami_id(oid):
    """``ami-%08d``."""
    return f"ami-{int(oid):08d}"


def _iso(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))


def _sub(parent, tag, text=None):
    el = etree.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


class _Params:
    """The decoded request parameters."""

    def __init__(self, pairs):
        self.pairs = pairs
        self.values = {}
        for k, v in pairs:
            self.values.setdefault(k, v)

    def get(self, name, default=None):
        return self.values.get(name, default)

    def require(self, name):
        value = self.values.get(name)
        if value is None or value == "":
            raise EC2Error("MissingParameter",
                           f"The request must contain the parameter {name}")
        return value

    def int(self, name, default, minimum=1):
        value = self.values.get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or number < minimum:
            raise EC2Error("InvalidParameterValue",
                           f"Value ({value}) for parameter {name} is invalid. "
                           f"Expected an integer of at least {minimum}.")
        return number

    def filters(self):
        """``Filter.N.Name`` / ``Filter.N.Value.M`` as {name: set of values}.

        :raises EC2Error: InvalidParameterValue for a filter without a name
            or without values.
        """
        names, values = {}, {}
        for k, v in self.pairs:
            parts = k.split(".")
            if len(parts) == 3 and parts[0] == "Filter" and parts[2] == "Name":
                names[parts[1]] = v
            elif len(parts) == 4 and parts[0] == "Filter" and parts[2] == "Value":
                values.setdefault(parts[1], set()).add(v)
        filters = {}
        for n in sorted(set(names) | set(values)):
            if not names.get(n) or not values.get(n):
                raise EC2Error("InvalidParameterValue",
                               f"Filter.{n} needs a Name and at least one Value.")
            filters.setdefault(names[n], set()).update(values[n])
        return filters

    def indexed(self, prefix):
        """The values of ``prefix.N`` (``InstanceId.1``, ``InstanceId.01``),
        in N order."""
        found = []
        for k, v in self.pairs:
            m = _INDEXED.match(k)
            if m and m.group(1) == prefix:
                found.append((int(m.group(2)), v))
        return [v for _, v in sorted(found, key=lambda item: item[0])]


class EC2Resource(resource.Resource):
    """The EC2 Query API on ``/``.

    :param nebula: the :class:`~nebtwist.core.nebula.Nebula` (users, pools,
        clock: ``nebula.clock.seconds()`` is "now" for signature checks).
    :param requests: the core :class:`~nebtwist.core.requests.Requests`.
    :param vmtypes: the :class:`~nebtwist.core.vmtypes.VMTypes` of econe.conf.
    :param region: the region name answered by DescribeRegions.
    :param econe: econe.conf (:class:`nebtwist.core.config.EconeConfig`).
    """

    isLeaf = True

    def __init__(self, nebula, requests, vmtypes, region="default", zone="default",
                 hosts=(), econe=None):
        super().__init__()
        #: econe.conf (an EconeConfig, or None): ELASTIC_IP_NETWORK,
        #: ASSOCIATE_SCRIPT and DISASSOCIATE_SCRIPT are read from it
        self.econe = econe
        #: more host names SigV2 signatures may name (econe.conf SERVER, SSL_SERVER)
        self.hosts = tuple(hosts)
        self.nebula = nebula
        self.requests = requests
        self.vmtypes = vmtypes
        self.region = region
        self.zone = zone
        self.secret_lookup = awsauth.nebula_secret_lookup(nebula)
        self.actions = {
            "DescribeRegions": self.describe_regions,
            "DescribeAvailabilityZones": self.describe_availability_zones,
            "DescribeInstanceTypes": self.describe_instance_types,
            "DescribeImages": self.describe_images,
            "RunInstances": self.run_instances,
            "DescribeInstances": self.describe_instances,
            "TerminateInstances": self.terminate_instances,
        }

    # -- HTTP --------------------------------------------------------------------------

    def render_GET(self, request):
        return self._render(request)

    def render_POST(self, request):
        return self._render(request)

    def render_HEAD(self, request):
        return self._render(request)

    def _render(self, request):
        d = defer.ensureDeferred(self._handle(request))

        def unexpected(f):
            log.failure("EC2 request failed", f)
            if not request.finished and not getattr(request, "_disconnected", False):
                request.setResponseCode(500)
                request.finish()
        d.addErrback(unexpected)
        return server.NOT_DONE_YET

    async def _handle(self, request):
        request_id = str(uuid.uuid4())
        try:
            status, body = 200, await self._dispatch(request, request_id)
        except EC2Error as e:
            status, body = e.status, self._error(e.code, e.message, request_id)
        except awsauth.AWSAuthError as e:
            status, body = e.status, self._error(e.code, e.message, request_id)
        except Exception:
            log.failure("EC2 request {id} failed", id=request_id)
            status, body = 500, self._error(
                "InternalError", "An internal error has occurred.", request_id)
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/xml;charset=UTF-8")
        request.setHeader(b"content-length", str(len(body)).encode())
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    @staticmethod
    def _error(code, message, request_id):
        root = etree.Element("Response")
        error = _sub(_sub(root, "Errors"), "Error")
        _sub(error, "Code", code)
        _sub(error, "Message", message)
        _sub(root, "RequestID", request_id)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    @staticmethod
    def _params(request, body):
        query = bytes(request.uri).partition(b"?")[2].decode("latin-1")
        pairs = parse_qsl(query, keep_blank_values=True, encoding="utf-8",
                          errors="replace")
        ctype = (request.getHeader(b"content-type") or "")
        ctype = ctype.decode("latin-1") if isinstance(ctype, bytes) else ctype
        if body and ctype.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            pairs += parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                               encoding="utf-8", errors="replace")
        return pairs

    async def _dispatch(self, request, request_id):
        body = b""
        if request.content is not None:
            request.content.seek(0)
            body = request.content.read()
            request.content.seek(0)
        pairs = self._params(request, body)
        params = _Params(pairs)
        auth = awsauth.AuthRequest.from_twisted(request, body=body)
        who = awsauth.verify_request(auth, self.secret_lookup, self.nebula.clock.seconds(),
                                     params=pairs, schemes=awsauth.EC2_SCHEMES,
                                     hosts=self.hosts)
        user = self.nebula.userpool.find(who.access_key)
        if user is None:  # removed while signing
            raise EC2Error("AuthFailure", "User not authorized.", 401)
        action = params.get("Action")
        if not action:
            raise EC2Error("MissingParameter", "The request must contain the parameter Action")
        handler = self.actions.get(action)
        if handler is None:
            raise EC2Error("InvalidAction",
                           f"The action {action} is not valid for this web service.")
        version = params.get("Version") or DEFAULT_VERSION
        if not _VERSION.match(version):
            version = DEFAULT_VERSION
        ns = f"http://ec2.amazonaws.com/doc/{version}/"
        root = etree.Element(f"{{{ns}}}{action}Response", nsmap={None: ns})
        _sub(root, f"{{{ns}}}requestId", request_id)
        try:
            await handler(user, params, _Builder(ns, root))
        except AuthorizationError as e:
            raise EC2Error("UnauthorizedOperation", str(e), 403) from None
        except (ActionError, APIError, NoSuchObject) as e:
            raise EC2Error("InvalidParameterValue", str(e)) from None
        except NebulaError as e:
            log.error("EC2 {action}: {e}", action=action, e=str(e))
            raise EC2Error("InternalError", str(e), 500) from None
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    # -- actions -----------------------------------------------------------------------

    async def describe_regions(self, user, params, out):
        """DescribeRegions: the one region of this front."""
        item = out.sub(out.sub(out.root, "regionInfo"), "item")
        out.sub(item, "regionName", self.region)
        out.sub(item, "regionEndpoint", self.region)

    async def describe_availability_zones(self, user, params, out):
        """DescribeAvailabilityZones: the one zone (``placement`` of instances)."""
        item = out.sub(out.sub(out.root, "availabilityZoneInfo"), "item")
        out.sub(item, "zoneName", self.zone)
        out.sub(item, "zoneState", "available")
        out.sub(item, "regionName", self.region)
        out.sub(item, "messageSet")

    async def describe_instance_types(self, user, params, out):
        """DescribeInstanceTypes: the econe.conf VM types, with the CPU, VCPU
        and MEMORY (MiB) their template renders."""
        wanted = params.indexed("InstanceType")
        for name in wanted:
            if name not in self.vmtypes:
                raise EC2Error("InvalidInstanceType",
                               f"The following supplied instance types do not exist: [{name}]")
        names = wanted or self.vmtypes.names()
        types = out.sub(out.root, "instanceTypeSet")
        for name in names:
            tpl = Template.parse(self.vmtypes.render(name, image_id=0, user=user.name,
                                                     user_id=user.oid))
            item = out.sub(types, "item")
            out.sub(item, "instanceType", name)
            vcpus = tpl.get_int("VCPU") or max(1, math.ceil(tpl.get_float("CPU", 1.0)))
            out.sub(out.sub(item, "vCpuInfo"), "defaultVCpus", vcpus)
            out.sub(out.sub(item, "memoryInfo"), "sizeInMiB", tpl.get_int("MEMORY", 0))

    def _images(self, user):
        pool = self.nebula.imagepool
        return [im for im in sorted(pool.objects.values(), key=lambda i: i.oid)
                if self.nebula.can_use(user, im)]

    def _image(self, user, ami):
        m = _AMI_ID.match(ami or "")
        if not m:
            raise EC2Error("InvalidAMIID.Malformed", f"Invalid id: \"{ami}\"")
        image = self.nebula.imagepool.objects.get(int(m.group(1)))
        if image is None or not self.nebula.can_use(user, image):
            raise EC2Error("InvalidAMIID.NotFound", f"The image id '[{ami}]' does not exist")
        return image

    async def describe_images(self, user, params, out):
        """DescribeImages: the images the user may use (``ImageId.N`` filter)."""
        wanted = params.indexed("ImageId")
        images = ([self._image(user, ami) for ami in wanted] if wanted
                  else self._images(user))
        images_set = out.sub(out.root, "imagesSet")
        for image in images:
            item = out.sub(images_set, "item")
            out.sub(item, "imageId", ami_id(image.oid))
            out.sub(item, "imageLocation", image.source or image.path or image.name)
            out.sub(item, "imageState", _IMAGE_STATES.get(image.state_name, "pending"))
            out.sub(item, "imageOwnerId", image.uname)
            out.sub(item, "isPublic", "false")
            out.sub(item, "architecture", "i386")
            out.sub(item, "imageType", "machine")
            out.sub(item, "name", image.name)
            out.sub(item, "rootDeviceType", "instance-store")

    async def run_instances(self, user, params, out):
        """RunInstances: ``MaxCount`` VMs of ``InstanceType`` (default
        m1.small) on ``ImageId``, one reservation. Everything is checked and
        rendered before the first VM is created."""
        image = self._image(user, params.require("ImageId"))
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
        try:
            text = self.vmtypes.render(itype, image_id=image.oid, image_path=image.source,
                                       user_data=user_data, user=user.name, user_id=user.oid)
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
                extra = (f'\nEC2_RESERVATION = "{reservation}"\n'
                         f'EC2_LAUNCH_INDEX = "{index}"\n')
                created.append(await self.requests.vm_allocate(user, text + extra))
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
            self._instance(out, instances, self.nebula.vmpool.get(vid))

    def _reservation(self, vm):
        return vm.template.get_str("EC2_RESERVATION") or f"r-{vm.oid:017x}"

    def _instance(self, out, parent, vm):
        item = out.sub(parent, "item")
        tpl = vm.template
        out.sub(item, "instanceId", instance_id(vm.oid))
        out.sub(item, "imageId", _vm_image(vm))
        code, name = ec2_state(vm)
        state = out.sub(item, "instanceState")
        out.sub(state, "code", code)
        out.sub(state, "name", name)
        nic = tpl.get_vector("NIC") or {}
        ip = nic.get("IP") or ""
        out.sub(item, "privateDnsName", ip)
        out.sub(item, "dnsName", ip)
        out.sub(item, "reason")
        out.sub(item, "amiLaunchIndex", tpl.get_str("EC2_LAUNCH_INDEX") or "0")
        out.sub(item, "productCodes")
        out.sub(item, "instanceType", tpl.get_str("INSTANCE_TYPE") or "")
        out.sub(item, "launchTime", _iso(vm.stime))
        out.sub(out.sub(item, "placement"), "availabilityZone", self.zone)
        out.sub(out.sub(item, "monitoring"), "state", "disabled")
        if ip:
            out.sub(item, "privateIpAddress", ip)

    def _visible(self, user, now):
        vms = []
        for vm in sorted(self.nebula.vmpool.objects.values(), key=lambda v: v.oid):
            if vm.uid != user.oid:
                continue
            if vm.state == DONE and vm.etime and now - vm.etime > TERMINATED_VISIBLE:
                continue
            vms.append(vm)
        return vms

    def _instances(self, user, ids):
        """The user's VMs named by ``ids`` (``i-N``), in order."""
        vms = []
        for iid in ids:
            m = _INSTANCE_ID.match(iid)
            if not m:
                raise EC2Error("InvalidInstanceID.Malformed", f"Invalid id: \"{iid}\"")
            vm = self.nebula.vmpool.objects.get(int(m.group(1)))
            if vm is None or vm.uid != user.oid:
                raise EC2Error("InvalidInstanceID.NotFound",
                               f"The instance ID '{iid}' does not exist")
            vms.append(vm)
        return vms

    async def describe_instances(self, user, params, out):
        """DescribeInstances: the user's instances (``InstanceId.N``; filters
        instance-id, instance-state-name, instance-state-code, instance-type,
        image-id), grouped by reservation."""
        ids = params.indexed("InstanceId")
        vms = (self._instances(user, ids) if ids
               else self._visible(user, self.nebula.clock.seconds()))
        for name, wanted in params.filters().items():
            match = _INSTANCE_FILTERS.get(name)
            if match is None:
                raise EC2Error("InvalidParameterValue",
                               f"The filter '{name}' is invalid "
                               f"(known: {', '.join(sorted(_INSTANCE_FILTERS))}).")
            vms = [vm for vm in vms if match(vm) in wanted]
        groups = {}
        for vm in vms:
            groups.setdefault(self._reservation(vm), []).append(vm)
        rset = out.sub(out.root, "reservationSet")
        for rid, members in groups.items():
            item = out.sub(rset, "item")
            out.sub(item, "reservationId", rid)
            out.sub(item, "ownerId", user.name)
            out.sub(item, "groupSet")
            instances = out.sub(item, "instancesSet")
            for vm in members:
                self._instance(out, instances, vm)

    async def terminate_instances(self, user, params, out):
        """TerminateInstances: ``shutdown`` a running VM, else ``finalize``
        it (3.4 ``terminate_instances``); a DONE one is left alone."""
        ids = params.indexed("InstanceId")
        if not ids:
            raise EC2Error("MissingParameter",
                           "The request must contain the parameter InstanceId")
        vms = self._instances(user, ids)
        iset = out.sub(out.root, "instancesSet")
        for vm in vms:
            previous = ec2_state(vm)
            if vm.state != DONE:  # FAILED (terminated in EC2 terms) is finalized too
                action = "shutdown" if vm.short_state() == "runn" else "finalize"
                await self.requests.vm_action(user, action, vm.oid)
            vm = self.nebula.vmpool.objects.get(vm.oid, vm)
            current = ec2_state(vm)
            if vm.state != DONE and current == previous and previous[0] != 48:
                current = (32, "shutting-down")
            item = out.sub(iset, "item")
            out.sub(item, "instanceId", instance_id(vm.oid))
            for tag, (code, name) in (("currentState", current), ("previousState", previous)):
                state = out.sub(item, tag)
                out.sub(state, "code", code)
                out.sub(state, "name", name)
            out.sub(item, "shutdownState", 32)


class _Builder:
    """Sub-elements in the response's namespace."""

    def __init__(self, ns, root):
        self.ns = ns
        self.root = root

    def sub(self, parent, tag, text=None):
        return _sub(parent, f"{{{self.ns}}}{tag}", text)
