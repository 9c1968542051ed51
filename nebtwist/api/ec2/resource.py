"""The EC2 Query front's ``twisted.web`` resource: HTTP, authentication,
dispatch on ``Action``, ``DryRun`` and the response envelope
(:class:`EC2Resource`); the actions are its mixins
(:mod:`nebtwist.api.ec2.actions`, :mod:`nebtwist.api.ec2.queries`).
See :mod:`nebtwist.api.ec2` for the whole front.
"""

import re
import uuid
from urllib.parse import parse_qsl

from lxml import etree
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.web import resource, server

from nebtwist.api import awsauth
from nebtwist.api.ec2.actions.addresses import AddressActions
from nebtwist.api.ec2.actions.images import ImageActions
from nebtwist.api.ec2.actions.instances import InstanceActions
from nebtwist.api.ec2.actions.keypairs import KeyPairActions
from nebtwist.api.ec2.actions.tags import TagActions
from nebtwist.api.ec2.base import EC2Error, _shown, _tags
from nebtwist.api.ec2.params import (DEFAULT_MAX_UPLOAD, MAX_FORM_FIELD, _FormError, _Params,
                                     _read_multipart, _sub, _unlink, check_characters)
from nebtwist.api.ec2.queries import QueryActions
from nebtwist.errors import ActionError, APIError, AuthorizationError, NebulaError, NoSuchObject

log = Logger()

#: Version used when the request names none.
DEFAULT_VERSION = "2016-11-15"
_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")

#: UploadImage answers a RegisterImageResponse (3.4 ``econe-server.rb``).
_RESPONSE_NAMES = {"UploadImage": "RegisterImage"}

#: EC2's answer to ``DryRun=true`` when the request would have succeeded
#: (HTTP 412; botocore raises ClientError with this code).
DRY_RUN_MESSAGE = "Request would have succeeded, but DryRun flag is set."


class EC2Resource(QueryActions, InstanceActions, ImageActions, KeyPairActions,
                  AddressActions, TagActions, resource.Resource):
    """The EC2 Query API on ``/``.

    :param requests: the core :class:`~nebtwist.core.requests.Requests`:
        everything goes through it, the signature secrets
        (:meth:`~nebtwist.core.requests_access.AccessRequests.user_secret`)
        and "now" for signature checks (``requests.now()``) included.
    :param vmtypes: the :class:`~nebtwist.core.vmtypes.VMTypes` of econe.conf.
    :param region: the region name answered by DescribeRegions.
    :param econe: econe.conf (:class:`nebtwist.core.config.EconeConfig`).

    Attributes the front may set after construction: ``repository`` (the
    S3-like repository: ``object_file(user, bucket, key)`` gives an object's
    file, for RegisterImage; None without one), ``max_upload`` (bytes of an
    UploadImage file, default :data:`DEFAULT_MAX_UPLOAD`), ``upload_dir``
    (where UploadImage files are staged; default the repository's
    ``staging_dir``, else ``<var>/econe-uploads``)
    and ``reactor`` (spawns the address scripts, runs the threads; default
    the global reactor).
    """

    isLeaf = True

    def __init__(self, requests, vmtypes, region="default", zone="default",
                 hosts=(), econe=None):
        super().__init__()
        #: econe.conf (an EconeConfig, or None): ELASTIC_IP_NETWORK,
        #: ASSOCIATE_SCRIPT and DISASSOCIATE_SCRIPT are read from it
        self.econe = econe
        #: more host names SigV2 signatures may name (econe.conf SERVER, SSL_SERVER)
        self.hosts = tuple(hosts)
        self.requests = requests
        self.vmtypes = vmtypes
        self.region = region
        self.zone = zone
        #: the zone's ``zoneId`` (AWS's are like ``use1-az1``); the front may set it
        self.zone_id = f"{region}-az1"
        self.repository = None
        self.max_upload = DEFAULT_MAX_UPLOAD
        self.upload_dir = None
        self.reactor = None
        self.secret_lookup = requests.user_secret
        # CreateImage's save-as images settle when their VMs end, restarts included.
        watch = getattr(requests, "watch_saved_disks", None)
        if watch is not None:
            watch()
        self.actions = {
            "DescribeRegions": self.describe_regions,
            "DescribeAvailabilityZones": self.describe_availability_zones,
            "DescribeInstanceTypes": self.describe_instance_types,
            "DescribeImages": self.describe_images,
            "RegisterImage": self.register_image,
            "DeregisterImage": self.deregister_image,
            "CreateImage": self.create_image,
            "UploadImage": self.upload_image,
            "RunInstances": self.run_instances,
            "DescribeInstances": self.describe_instances,
            "DescribeInstanceStatus": self.describe_instance_status,
            "TerminateInstances": self.terminate_instances,
            "StartInstances": self.start_instances,
            "StopInstances": self.stop_instances,
            "RebootInstances": self.reboot_instances,
            "CreateKeyPair": self.create_key_pair,
            "ImportKeyPair": self.import_key_pair,
            "DescribeKeyPairs": self.describe_key_pairs,
            "DeleteKeyPair": self.delete_key_pair,
            "AllocateAddress": self.allocate_address,
            "ReleaseAddress": self.release_address,
            "AssociateAddress": self.associate_address,
            "DisassociateAddress": self.disassociate_address,
            "DescribeAddresses": self.describe_addresses,
            "CreateTags": self.create_tags,
            "DeleteTags": self.delete_tags,
            "DescribeTags": self.describe_tags,
        }

    def _reactor(self):
        if self.reactor is None:
            from twisted.internet import reactor
            return reactor
        return self.reactor

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
        _sub(error, "Code", _shown(code, 128))
        _sub(error, "Message", _shown(message, 4096))
        _sub(root, "RequestID", request_id)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    @staticmethod
    def _content_type(request):
        ctype = request.getHeader(b"content-type") or ""
        return ctype.decode("latin-1") if isinstance(ctype, bytes) else ctype

    @staticmethod
    def _query_pairs(request):
        query = bytes(request.uri).partition(b"?")[2].decode("latin-1")
        return parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace")

    @classmethod
    def _params(cls, request, body):
        pairs = cls._query_pairs(request)
        ctype = cls._content_type(request)
        if body and ctype.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            pairs += parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                               encoding="utf-8", errors="replace")
        return pairs

    def _upload_dir(self):
        return (self.upload_dir or getattr(self.repository, "staging_dir", None)
                or self.requests.work_dir("econe-uploads"))

    async def _read_form(self, request, ctype):
        """The parameters and staged file of a multipart body (econe-upload).

        :return: ``(pairs, upload or None, body sha256 hex)``; the hash only
            for a SigV4 (``Authorization`` header) request.
        """
        import multipart

        _, options = multipart.parse_options_header(ctype)
        boundary = options.get("boundary")
        if not boundary or request.content is None:
            raise EC2Error("InvalidParameterValue",
                           "A multipart/form-data body needs a boundary.")
        reactor = self._reactor()
        try:
            pairs, upload, sha = await threads.deferToThreadPool(
                reactor, reactor.getThreadPool(), _read_multipart, request.content, boundary,
                self._upload_dir(), self.max_upload or DEFAULT_MAX_UPLOAD, MAX_FORM_FIELD,
                request.getHeader(b"authorization") is not None)
        except _FormError as e:
            raise EC2Error(e.code, str(e), e.status) from None
        finally:
            request.content.seek(0)
        return self._query_pairs(request) + pairs, upload, sha

    async def _dispatch(self, request, request_id):
        upload = None
        try:
            ctype = self._content_type(request)
            if ctype.split(";")[0].strip().lower() == "multipart/form-data":
                # econe-upload: the fields are the parameters, the image is
                # the file field; the body is never read into memory.
                pairs, upload, sha = await self._read_form(request, ctype)
                auth = awsauth.AuthRequest.from_twisted(request, body_sha256=sha)
            else:
                body = b""
                if request.content is not None:
                    request.content.seek(0)
                    body = request.content.read(MAX_FORM_FIELD + 1)
                    request.content.seek(0)
                    if len(body) > MAX_FORM_FIELD:
                        raise EC2Error("RequestEntityTooLarge",
                                       f"The request body is larger than the {MAX_FORM_FIELD} "
                                       f"bytes allowed.", 413)
                pairs = self._params(request, body)
                auth = awsauth.AuthRequest.from_twisted(request, body=body)
            check_characters(pairs)
            params = _Params(pairs, upload)
            who = awsauth.verify_request(auth, self.secret_lookup,
                                         self.requests.now(), params=pairs,
                                         schemes=awsauth.EC2_SCHEMES, hosts=self.hosts)
            user = self.requests.user_by_name(who.access_key)
            if user is None:  # removed while signing
                raise EC2Error("AuthFailure", "User not authorized.", 401)
            return await self._act(user, params, request_id)
        finally:
            if upload is not None and not upload.kept:
                _unlink(upload.path)

    async def _act(self, user, params, request_id):
        action = params.get("Action")
        if not action:
            raise EC2Error("MissingParameter", "The request must contain the parameter Action")
        handler = self.actions.get(action)
        if handler is None:
            raise EC2Error("InvalidAction",
                           f"The action {action} is not valid for this web service.")
        if params.has("DryRun"):
            await self._dry_run(user, action, params)
        version = params.get("Version") or DEFAULT_VERSION
        if not _VERSION.match(version):
            version = DEFAULT_VERSION
        ns = f"http://ec2.amazonaws.com/doc/{version}/"
        name = _RESPONSE_NAMES.get(action, action)
        # The tree is built without a namespace and the root declares EC2's as
        # the default one when serialised: the same document, and lxml no
        # longer resolves a namespace for each of the (for DescribeInstances,
        # tens of thousands of) elements, which was over a third of the time.
        root = etree.Element(f"{name}Response")
        _sub(root, "requestId", request_id)
        try:
            await handler(user, params, _Builder(ns, root))
        except AuthorizationError as e:
            raise EC2Error("UnauthorizedOperation", str(e), 403) from None
        except (ActionError, APIError, NoSuchObject) as e:
            raise EC2Error("InvalidParameterValue", str(e)) from None
        except NebulaError as e:
            log.error("EC2 {action}: {e}", action=action, e=str(e))
            raise EC2Error("InternalError", str(e), 500) from None
        body = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        start = f"<{name}Response>".encode()
        return body.replace(start, f'<{name}Response xmlns="{ns}">'.encode(), 1)

    async def _dry_run(self, user, action, params):
        """``DryRun=true``: check what the action would (permissions, the
        objects it names) and answer ``DryRunOperation`` (412) without running
        it; ``UnauthorizedOperation`` (403) or the action's own error when it
        would fail (EC2 API reference, "DryRun" of every action here but
        UploadImage, OpenNebula's own, which takes none: ``UnknownParameter``).
        ``DryRun=false`` runs the action.

        :raises EC2Error: always when ``DryRun`` is true.
        """
        if not params.bool("DryRun"):
            return
        if action not in self.dry_checks:
            raise EC2Error("UnknownParameter", f"The parameter DryRun is not recognized "
                                               f"by {action}.")
        check = self.dry_checks[action]
        if check is not None:
            try:
                check(user, params)
            except AuthorizationError as e:
                raise EC2Error("UnauthorizedOperation", str(e), 403) from None
        raise EC2Error("DryRunOperation", DRY_RUN_MESSAGE, 412)

    def _may_create(self, kind):
        def check(user, params):
            if not self.requests.may_create(user, kind):
                raise EC2Error("UnauthorizedOperation", f"User [{user.oid}] : Not authorized "
                                                        f"to perform CREATE {kind}.", 403)
        return check

    def _dry_run_instance(self, user, params):
        self._may_create("VM")(user, params)
        self._image(user, params.require("ImageId"))
        self._placement_and_tags(params)
        itype = params.get("InstanceType") or "m1.small"
        if itype not in self.vmtypes:
            raise EC2Error("InvalidParameterValue", f"Invalid value '{itype}' for InstanceType.")

    def _dry_deregister(self, user, params):
        image = self._image(user, params.require("ImageId"))
        if not self.requests.may_manage(user, image):
            raise EC2Error("UnauthorizedOperation", f"User [{user.oid}] : Not authorized to "
                                                    f"perform MANAGE IMAGE [{image.oid}].", 403)

    def _dry_address(self, user, params):
        self._eip_network()
        if params.has("InstanceId"):
            self._instances(user, [params.require("InstanceId")])

    @property
    def dry_checks(self):
        """Action -> the checks ``DryRun`` makes (None: none but the
        signature), for every action that takes ``DryRun``."""
        instances = self._required_instances
        return {
            "DescribeRegions": None, "DescribeAvailabilityZones": None,
            "DescribeInstanceTypes": None, "DescribeImages": None,
            "DescribeInstances": None, "DescribeInstanceStatus": None,
            "DescribeKeyPairs": None, "DescribeAddresses": None,
            "DescribeTags": None,
            "RegisterImage": self._may_create("IMAGE"),
            "DeregisterImage": self._dry_deregister,
            "CreateImage": self._dry_create_image,
            "RunInstances": self._dry_run_instance,
            "TerminateInstances": instances, "StartInstances": instances,
            "StopInstances": instances, "RebootInstances": instances,
            "CreateKeyPair": lambda u, p: self._key_name(p),
            "ImportKeyPair": lambda u, p: self._key_name(p),
            "DeleteKeyPair": lambda u, p: self._key_name(p),
            "AllocateAddress": lambda u, p: self._eip_network(),
            "ReleaseAddress": self._dry_address, "AssociateAddress": self._dry_address,
            "DisassociateAddress": self._dry_address,
            "CreateTags": self._tag_targets, "DeleteTags": self._tag_targets,
        }


class _Builder:
    """Sub-elements of the response (un-namespaced while built: the root
    gets EC2's default namespace when serialised, see ``_dispatch``)."""

    def __init__(self, ns, root):
        self.ns = ns
        self.root = root

    def sub(self, parent, tag, text=None):
        return _sub(parent, tag, text)

    def tag_set(self, parent, obj):
        """``tagSet`` of an object's ``EC2_TAG`` vectors (none when untagged)."""
        tags = _tags(obj)
        if tags:
            tag_set = self.sub(parent, "tagSet")
            for key, value in tags:
                item = self.sub(tag_set, "item")
                self.sub(item, "key", key)
                self.sub(item, "value", value)
