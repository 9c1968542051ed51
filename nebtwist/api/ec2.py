"""The EC2 Query API front.

A ``twisted.web`` resource answering GET and POST (form-encoded or
``multipart/form-data`` body) on ``/``, dispatched on the ``Action``
parameter, as OpenNebula 3.4's econe-server (``src/cloud/ec2/lib/
econe-server.rb``, ``EC2QueryServer.rb``; reference section 7.1) did, but
calling the core directly.

* Authentication: :func:`nebtwist.api.awsauth.verify_request` (SigV4, SigV2);
  the access key is the user name, the secret the stored SHA1 hex password.
* Responses: ``<{Action}Response xmlns="http://ec2.amazonaws.com/doc/<Version>/">``
  with a ``requestId``; ``Version`` is the request's (default
  :data:`DEFAULT_VERSION`; a missing or malformed one is fine).
* Errors: ``<Response><Errors><Error><Code/><Message/></Error></Errors>
  <RequestID/></Response>`` with the code's HTTP status; never a traceback.
* Ids: instances ``i-<vmid>``, images ``ami-%08d``, reservations ``r-...``,
  key pairs ``key-<17 hex>``. An id of AWS's own form (``i-1234abcd``,
  ``ami-0123456789abcdef0``) names nothing here: NotFound, not Malformed.

Actions (shapes per the AWS EC2 API reference, ``API_<Action>.html``):

* DescribeRegions, DescribeAvailabilityZones, DescribeInstanceTypes.
* Instances: RunInstances, DescribeInstances, DescribeInstanceStatus,
  TerminateInstances, StartInstances, StopInstances, RebootInstances.
* Images: DescribeImages, RegisterImage, DeregisterImage, CreateImage
  (OpenNebula's save-as) and econe's UploadImage
  (:meth:`EC2Resource.upload_image`).
* Filters (``Filter.N.Name``/``Filter.N.Value.M``): every filter must
  match, one of a filter's values is enough, as AWS; an unknown filter name
  is InvalidParameterValue.
* Key pairs: CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair,
  kept in the user's template as ``EC2_KEYPAIR = [ NAME, ID, FINGERPRINT,
  PUBLIC_KEY, TYPE, CREATED ]`` vectors.
* Elastic IPs (econe.conf ``ELASTIC_IP_NETWORK``; 3.4 ``:elasticips_vnet_id``):
  AllocateAddress, ReleaseAddress, AssociateAddress, DisassociateAddress,
  DescribeAddresses; held leases of that network, recorded in its template as
  ``EC2_ADDRESSES = [ IP, UID, INSTANCE_ID ]`` vectors.
* Tags: CreateTags, DeleteTags, DescribeTags on instances and images, kept in
  the object's template as ``EC2_TAG = [ KEY, VALUE ]`` vectors.

Everything the front adds to core objects goes through the pools' normal
write-through path (:meth:`nebtwist.core.pool.Pool.write_ops`), so it
survives a restart; a failed write puts memory back as it was.
"""

import base64
import binascii
import hashlib
import os
import re
import secrets
import shlex
import tempfile
import time
import uuid
from urllib.parse import parse_qsl

from lxml import etree
from twisted.internet import defer, protocol, threads
from twisted.logger import Logger
from twisted.web import resource, server

from nebtwist.api import awsauth
from nebtwist.api.ec2_base import (_CONTROL, _IMAGE_STATES, MAX_TAGS, EC2Error, _matches,
                                   _printable, _shown, _tags, ami_id, ec2_state, instance_id)
from nebtwist.api.ec2_queries import (QueryActions, _public, check_tags, max_results,
                                      page)
from nebtwist.core.objects import DONE, int_to_ip, ip_to_int
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
#: Ids of AWS's own form (8 or 17 lower-case hex digits): one that names
#: nothing here is NotFound, not Malformed, as AWS answers for such ids.
_AWS_INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})\Z")
_AWS_AMI_ID = re.compile(r"ami-(?:[0-9a-f]{8}|[0-9a-f]{17})\Z")
_INDEXED = re.compile(r"([A-Za-z]+)\.([0-9]+)\Z")
_TAG_PARAM = re.compile(r"Tag\.([0-9]+)\.(Key|Value)\Z")

#: Seconds a terminated (DONE) instance stays visible, as AWS does (about an hour).
TERMINATED_VISIBLE = 3600

#: Largest UploadImage file, in bytes, when the front sets no ``max_upload``
#: (5 GiB, AWS's single PUT limit).
DEFAULT_MAX_UPLOAD = 5 * 1024 ** 3
#: Largest form body (urlencoded) or multipart text field, in bytes.
MAX_FORM_FIELD = 1024 * 1024
#: Bytes read at a time from a multipart body.
_CHUNK = 1024 * 1024

#: Seconds an ASSOCIATE_SCRIPT / DISASSOCIATE_SCRIPT may run before it is
#: killed (and the call fails).
SCRIPT_TIMEOUT = 60.0

#: UploadImage answers a RegisterImageResponse (3.4 ``econe-server.rb``).
_RESPONSE_NAMES = {"UploadImage": "RegisterImage"}

#: EC2's answer to ``DryRun=true`` when the request would have succeeded
#: (HTTP 412; botocore raises ClientError with this code).
DRY_RUN_MESSAGE = "Request would have succeeded, but DryRun flag is set."


def check_characters(pairs):
    """Refuse a parameter name or value holding a control character
    (:data:`_CONTROL`) with EC2's ``InvalidParameterValue``.

    :raises EC2Error: naming the parameter, the character escaped.
    """
    for name, value in pairs:
        if _CONTROL.search(name):
            raise EC2Error("InvalidParameterValue",
                           f"The parameter name ({_shown(name)}) is invalid: control "
                           f"characters are not allowed.")
        if _CONTROL.search(value):
            raise EC2Error("InvalidParameterValue",
                           f"Value ({_shown(value)}) for parameter {name} is invalid: "
                           f"control characters are not allowed.")


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


def _iso(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))


def _sub(parent, tag, text=None):
    el = etree.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def _colon_hex(digest):
    return ":".join(f"{b:02x}" for b in digest)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


# -- key pairs -------------------------------------------------------------------------


def _new_rsa_key():
    """A new RSA 2048 key pair for CreateKeyPair (runs in a thread).

    :return: ``(private PEM str, fingerprint, OpenSSH public key str)``; the
        fingerprint is the SHA1 of the DER PKCS#8 private key, colon hex, as
        AWS gives for the key pairs it creates (AWS "Verify the fingerprint
        of your key pair").
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode("ascii")
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    return pem, _colon_hex(hashlib.sha1(der).digest()), public.decode("ascii")


def _imported_key(material):
    """Check an ImportKeyPair ``PublicKeyMaterial``.

    :param material: the parameter: base64 of an OpenSSH public key line
        (``ssh-rsa AAAA... comment``; boto3 and the AWS CLI encode it), or
        the line itself.
    :return: ``(key type, fingerprint, OpenSSH public key str)``. RSA keys
        (1024 to 16384 bits) have the MD5 of their DER SubjectPublicKeyInfo,
        colon hex; ED25519 keys the base64 SHA256 of their OpenSSH blob, as
        AWS computes for imported keys.
    :raises EC2Error: ``InvalidKey.Format`` for anything else.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    text = material.strip()
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        data = text.encode("utf-8", "surrogateescape")
    if not data.lstrip().startswith(b"ssh-"):
        data = text.encode("utf-8", "surrogateescape")
    try:
        key = serialization.load_ssh_public_key(data.strip())
    except (ValueError, TypeError, IndexError) as e:
        log.debug("ImportKeyPair: {e}", e=e)
        key = None
    if isinstance(key, rsa.RSAPublicKey) and 1024 <= key.key_size <= 16384:
        spki = key.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo)
        kind, fingerprint = "rsa", _colon_hex(hashlib.md5(spki).digest())
    elif isinstance(key, ed25519.Ed25519PublicKey):
        blob = key.public_bytes(serialization.Encoding.OpenSSH,
                                serialization.PublicFormat.OpenSSH).split()[1]
        kind = "ed25519"
        fingerprint = base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest())
        fingerprint = fingerprint.decode("ascii")
    else:
        raise EC2Error("InvalidKey.Format",
                       "Key is not in valid OpenSSH public key format (an RSA or ED25519 "
                       "public key, base64 encoded).")
    public = key.public_bytes(serialization.Encoding.OpenSSH,
                              serialization.PublicFormat.OpenSSH).decode("ascii")
    return kind, fingerprint, public


def _keypairs(user):
    """The user's key pair vectors (live dicts), in order."""
    return [v for v in user.template.get_all("EC2_KEYPAIR") if isinstance(v, dict)]


def _keypair(user, name):
    return next((k for k in _keypairs(user) if k.get("NAME") == name), None)


# -- multipart bodies (econe-upload) ---------------------------------------------------


class _Upload:
    """The ``file`` field of a multipart body, staged on disk.

    :ivar path: the staging file (absolute).
    :ivar size: bytes.
    :ivar filename: the name the client gave, or None.
    :ivar kept: set by the action that took the file over (else the front
        deletes it when the request ends).
    """

    def __init__(self, path, filename):
        self.path = path
        self.filename = filename
        self.size = 0
        self.kept = False


class _FormError(Exception):
    def __init__(self, message, code="InvalidParameterValue", status=400):
        super().__init__(message)
        self.code = code
        self.status = status


def _read_multipart(content, boundary, folder, max_file, max_field=MAX_FORM_FIELD,
                    sha256=True):
    """Parse a ``multipart/form-data`` body from the file ``content``
    (streaming, with the ``multipart`` package's push parser; runs in a
    thread).

    The ``file`` field goes to a new file in ``folder``; other fields are
    text (UTF-8, undecodable bytes kept as surrogates, as
    :mod:`nebtwist.api.awsauth` reads parameters).

    :param sha256: hash the whole body (for a SigV4 signature; econe's SigV2
        does not cover the body).
    :return: ``(pairs, upload or None, sha256 hex of the whole body or None)``.
    :raises _FormError: a malformed body, a second file, a field over
        ``max_field`` bytes, or a file over ``max_file`` bytes
        (``RequestEntityTooLarge``, 413). Nothing is left on disk.
    """
    import multipart

    content.seek(0)
    parser = multipart.PushMultipartParser(boundary, max_segment_count=256)
    digest = hashlib.sha256() if sha256 else None
    pairs = []
    upload = out = None
    name = buf = None
    try:
        try:
            while True:
                chunk = content.read(_CHUNK)
                if digest is not None:
                    digest.update(chunk)
                for event in parser.parse(chunk):
                    if isinstance(event, multipart.MultipartSegment):
                        name = event.name
                        if name == "file":
                            if upload is not None:
                                raise _FormError("The body has more than one file field.")
                            os.makedirs(folder, exist_ok=True)
                            fd, path = tempfile.mkstemp(prefix="upload-", dir=folder)
                            upload = _Upload(path, event.filename)
                            out = os.fdopen(fd, "wb")
                        else:
                            buf = bytearray()
                    elif event is None:
                        if name == "file":
                            out.close()
                            out = None
                        else:
                            pairs.append((name, bytes(buf).decode("utf-8", "surrogateescape")))
                        name = buf = None
                    elif name == "file":
                        upload.size += len(event)
                        if upload.size > max_file:
                            raise _FormError(f"The file is larger than the {max_file} bytes "
                                             f"allowed.", "RequestEntityTooLarge", 413)
                        out.write(event)
                    else:
                        buf += event
                        if len(buf) > max_field:
                            raise _FormError(f"The form field {name} is too long.")
                if not chunk:
                    break
            parser.close()
        except multipart.MultipartError as e:
            raise _FormError(f"Malformed multipart/form-data body: {e}") from None
    except BaseException:
        if out is not None:
            out.close()
        if upload is not None:
            _unlink(upload.path)
        raise
    return pairs, upload, digest.hexdigest() if digest is not None else None


# -- associate / disassociate scripts --------------------------------------------------


class _ScriptProtocol(protocol.ProcessProtocol):
    """Collects a script's output (the last 4 kB) and its end."""

    def __init__(self, done):
        self.done = done
        self.output = b""

    def outReceived(self, data):
        self.output = (self.output + data)[-4096:]

    errReceived = outReceived

    def processEnded(self, reason):
        value = reason.value
        self.done.callback((getattr(value, "exitCode", None), getattr(value, "signal", None),
                            self.output.decode("utf-8", "replace")))


async def run_script(reactor, command, args, timeout=SCRIPT_TIMEOUT):
    """Run econe.conf's ``command`` (split as a shell would, then ``args``
    appended) without a shell, as 3.4 ran ``:associate_script``.

    :return: ``(exit code, signal, output)``: code None when killed (after
        ``timeout`` seconds) or not startable.
    """
    argv = shlex.split(command) + [str(a) for a in args]
    done = defer.Deferred()
    proto = _ScriptProtocol(done)
    try:
        transport = reactor.spawnProcess(proto, argv[0], argv, env=dict(os.environ))
    except (OSError, ValueError) as e:
        return None, None, str(e)

    def kill():
        try:
            transport.signalProcess("KILL")
        except Exception:  # noqa: BLE001 - it ended meanwhile
            pass

    timer = reactor.callLater(timeout, kill)
    try:
        return await done
    finally:
        if timer.active():
            timer.cancel()


class _Params:
    """The decoded request parameters (and the staged ``file`` of a
    multipart body, ``upload``)."""

    def __init__(self, pairs, upload=None):
        self.pairs = pairs
        self.values = {}
        self.upload = upload
        for k, v in pairs:
            self.values.setdefault(k, v)

    def get(self, name, default=None):
        return self.values.get(name, default)

    def has(self, name):
        return name in self.values

    def require(self, name):
        value = self.values.get(name)
        if value is None or value == "":
            raise EC2Error("MissingParameter",
                           f"The request must contain the parameter {name}")
        return value

    def bool(self, name):
        value = self.values.get(name)
        if value is None or value == "":
            return False
        if value.lower() not in ("true", "false"):
            raise EC2Error("InvalidParameterValue",
                           f"Value ({value}) for parameter {name} is invalid. "
                           f"Expected true or false.")
        return value.lower() == "true"

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
        """``Filter.N.Name`` / ``Filter.N.Value.M`` as ``[(name, set of
        values)]`` in N order. A name may come more than once: every filter
        must match (AND), one of a filter's values is enough (OR), as AWS
        ("List and filter your resources": ``tag-value=api`` and
        ``tag-value=green`` as two filters are resources with both).

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
        filters = []
        for n in sorted(set(names) | set(values), key=lambda n: (not n.isdigit(), int(n)
                                                                  if n.isdigit() else 0, n)):
            if not names.get(n) or not values.get(n):
                raise EC2Error("InvalidParameterValue",
                               f"Filter.{n} needs a Name and at least one Value.")
            filters.append((names[n], values[n]))
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

    def tags(self):
        """``Tag.N.Key`` / ``Tag.N.Value`` as ``[(key, value or None)]`` in N
        order (None: no ``Tag.N.Value`` was sent).

        :raises EC2Error: InvalidParameterValue for a value without a key.
        """
        keys, values = {}, {}
        for k, v in self.pairs:
            m = _TAG_PARAM.match(k)
            if m:
                (keys if m.group(2) == "Key" else values)[int(m.group(1))] = v
        for n in values:
            if n not in keys:
                raise EC2Error("InvalidParameterValue", f"Tag.{n}.Value is given without "
                                                        f"Tag.{n}.Key.")
        return [(keys[n], values.get(n)) for n in sorted(keys)]


class EC2Resource(QueryActions, resource.Resource):
    """The EC2 Query API on ``/``.

    :param nebula: the :class:`~nebtwist.core.nebula.Nebula` (users, pools,
        clock: ``nebula.clock.seconds()`` is "now" for signature checks).
    :param requests: the core :class:`~nebtwist.core.requests.Requests`.
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
        #: the zone's ``zoneId`` (AWS's are like ``use1-az1``); the front may set it
        self.zone_id = f"{region}-az1"
        self.repository = None
        self.max_upload = DEFAULT_MAX_UPLOAD
        self.upload_dir = None
        self.reactor = None
        self.secret_lookup = awsauth.nebula_secret_lookup(nebula)
        #: address changes (and their scripts) run one at a time
        self._addresses = defer.DeferredLock()
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
                or os.path.join(self.nebula.var_dir, "econe-uploads"))

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
                                         self.nebula.clock.seconds(), params=pairs,
                                         schemes=awsauth.EC2_SCHEMES, hosts=self.hosts)
            user = self.nebula.userpool.find(who.access_key)
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
            if not self.nebula.can_create(user, kind):
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
        if not self.nebula.can_manage(user, image):
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

    async def _store(self, changes):
        """Give core objects new values of one template attribute each and
        write them in one transaction; if the write fails, the old values
        are put back.

        :param changes: ``[(pool, obj, name, values, extra_ops)]``: every
            ``name`` attribute of ``obj.template`` is replaced by ``values``
            (vector dicts), in place (other holders of the template, the
            core's managers, see the change and keep theirs);
            ``extra_ops`` are more statements (or ``()``).
        """
        saved = []
        ops = []
        try:
            for pool, obj, name, values, extra in changes:
                saved.append((obj, name, obj.template.get_all(name)))
                _replace(obj.template, name, values)
                obj.touch()
                ops += pool.write_ops(obj) + list(extra)
            await self.nebula.db.run(ops)
        except BaseException:
            for obj, name, values in reversed(saved):
                _replace(obj.template, name, values)
                obj.touch()
            raise

    # -- regions, zones, types ---------------------------------------------------------

    # -- images ------------------------------------------------------------------------

    def _images(self, user):
        pool = self.nebula.imagepool
        return [im for im in sorted(pool.objects.values(), key=lambda i: i.oid)
                if self.nebula.can_use(user, im)]

    def _image(self, user, ami):
        m = _AMI_ID.match(ami or "")
        if not m and not _AWS_AMI_ID.match(ami or ""):
            raise EC2Error("InvalidAMIID.Malformed", f"Invalid id: \"{ami}\"")
        image = self.nebula.imagepool.objects.get(int(m.group(1))) if m else None
        if image is None or not self.nebula.can_use(user, image):
            raise EC2Error("InvalidAMIID.NotFound", f"The image id '[{ami}]' does not exist")
        return image

    async def describe_images(self, user, params, out):
        """DescribeImages: the images the user may use (``ImageId.N``), with
        their description and tags, narrowed as the AWS API reference
        (API_DescribeImages) says:

        * ``Owner.N``: ``self`` (the user's own), an owner's name (this
          front's account ids); ``amazon``, ``aws-marketplace`` and
          ``aws-backup-vault`` own nothing here. An image of any one of them.
        * ``ExecutableBy.N``: ``self`` (images the user may launch: all it
          sees), ``all`` (public ones: OTHER_U), or a user name (images that
          user may use). An image any one of them may launch.
        * ``Filter.N`` (:data:`_IMAGE_FILTERS` and ``tag:KEY``), every one
          matching, ``*``/``?`` wildcards.

        ``isPublic`` is true for images anyone may use (OTHER_U).

        :raises EC2Error: InvalidAMIID.NotFound/Malformed for ``ImageId.N``;
            InvalidParameterValue for an unknown filter.
        """
        wanted = params.indexed("ImageId")
        images = ([self._image(user, ami) for ami in wanted] if wanted
                  else self._images(user))
        images = self._narrow_images(user, images, params)
        images_set = out.sub(out.root, "imagesSet")
        for image in images:
            item = out.sub(images_set, "item")
            out.sub(item, "imageId", ami_id(image.oid))
            out.sub(item, "imageLocation", image.source or image.path or image.name)
            out.sub(item, "imageState", _IMAGE_STATES.get(image.state_name, "pending"))
            out.sub(item, "imageOwnerId", image.uname)
            out.sub(item, "isPublic", _public(image))
            out.sub(item, "architecture", "i386")
            out.sub(item, "imageType", "machine")
            out.sub(item, "name", image.name)
            description = image.template.get_str("DESCRIPTION")
            if description:
                out.sub(item, "description", description)
            out.sub(item, "rootDeviceType", "instance-store")
            out.tag_set(item, image)

    async def _register_file(self, user, name, path, description=None, staged=None):
        """Register the file ``path`` as an OS image named ``name`` owned by
        ``user``, through the core (the image manager copies it into the
        image datastore, LOCKED until READY); returns the image id.

        A user outside oneadmin's group may register a local path only under
        oned.conf ``IMAGE_SAFE_DIRS``; the files here are the front's own (an
        upload it staged, an object of its repository), so their folders are
        passed as the image manager's ``trusted_dirs``.

        :param staged: an :class:`_Upload` whose file is deleted once the
            copy ends.
        :raises EC2Error: a bad name (InvalidParameterValue), one the user
            already has (InvalidAMIName.Duplicate), or a user who may not
            create images (UnauthorizedOperation).
        """
        if not _printable(name, 128):
            raise EC2Error("InvalidParameterValue",
                           f"Invalid value '{name}' for Name: 1 to 128 characters, no "
                           f"control characters.")
        if not self.nebula.can_create(user, "IMAGE"):
            raise EC2Error("UnauthorizedOperation",
                           f"User [{user.oid}] : Not authorized to perform CREATE IMAGE.", 403)
        taken = self.nebula.imagepool.find(name, user.oid)
        if taken is not None:
            raise EC2Error("InvalidAMIName.Duplicate",
                           f"AMI name {name} is already in use by AMI {ami_id(taken.oid)}")
        attrs = [("NAME", name), ("PATH", path), ("TYPE", "OS")]
        if description:
            attrs.append(("DESCRIPTION", description))
        trusted = [d for d in (self._upload_dir(), getattr(self.repository, "root", None)) if d]
        oid = await self.requests.image_allocate(user, Template(attrs).to_text(),
                                                 trusted_dirs=trusted)
        if staged is not None:
            staged.kept = True
            job = getattr(getattr(self.requests, "images", None), "jobs", {}).get(oid)
            if job is None:
                _unlink(staged.path)
            else:
                job.addBoth(lambda result: (_unlink(staged.path), result)[1])
        log.info("EC2: image {oid} ({name}) registered for {user} from {path}", oid=oid,
                 name=name, user=user.name, path=path)
        return oid

    async def register_image(self, user, params, out):
        """RegisterImage.

        * ``ImageLocation = "bucket/key"`` (or ``s3://bucket/key``): that
          object of the S3-like repository becomes an OS image of the core
          pool (``oneimage list``), named ``Name`` (default: the key's last
          segment), with ``Description`` kept as DESCRIPTION. Repository
          errors: NoSuchBucket/NoSuchKey and others are InvalidParameterValue,
          AccessDenied is UnauthorizedOperation.
        * ``ImageLocation = "ami-00000042"`` (or ``42``): econe 3.4's form for
          an image uploaded with UploadImage: a DISABLED image is enabled;
          the id is answered.

        Response: ``<imageId>ami-%08d</imageId>``.
        """
        location = params.require("ImageLocation").strip()
        m = re.fullmatch(r"(?:ami-)?([0-9]{1,9})", location)
        if m:
            image = self._image(user, ami_id(m.group(1)))
            if image.state_name == "DISABLED":
                await self.requests.image_enable(user, image.oid, True)
            out.sub(out.root, "imageId", ami_id(image.oid))
            return
        if location.startswith("s3://"):
            location = location[len("s3://"):]
        bucket, _, key = location.partition("/")
        if not bucket or not key:
            raise EC2Error("InvalidParameterValue",
                           f"Invalid value '{location}' for ImageLocation: bucket/key of the "
                           f"image repository, or an image id (ami-00000000).")
        if self.repository is None:
            raise EC2Error("InvalidParameterValue",
                           "There is no image repository (S3) on this front: no repository.")
        try:
            path = await defer.maybeDeferred(self.repository.object_file, user, bucket, key)
        except Exception as e:  # noqa: BLE001 - S3Error subclasses carry .code
            code = getattr(e, "code", None)
            if code is None:
                raise
            message = getattr(e, "message", None) or str(e)
            if code == "AccessDenied":
                raise EC2Error("UnauthorizedOperation",
                               f"Not authorized to read {bucket}/{key}: {message}", 403) from None
            raise EC2Error("InvalidParameterValue",
                           f"Invalid value '{bucket}/{key}' for ImageLocation: {code}: "
                           f"{message}") from None
        name = params.get("Name") or key.rstrip("/").rsplit("/", 1)[-1] or f"ec2-{uuid.uuid4()}"
        oid = await self._register_file(user, name, path, params.get("Description"))
        out.sub(out.root, "imageId", ami_id(oid))

    async def upload_image(self, user, params, out):
        """UploadImage (econe-upload, 3.4): a ``multipart/form-data`` POST
        whose ``file`` field is the image. It is staged on disk while the
        body is parsed, registered as an OS image named ``ec2-<uuid>``
        (:meth:`_register_file`) and the staged file removed once copied.
        Answers a RegisterImageResponse with the ``imageId``.

        :raises EC2Error: MissingParameter without a ``file`` field.
        """
        if params.upload is None:
            raise EC2Error("MissingParameter",
                           "The request must contain the parameter file (a multipart/"
                           "form-data field holding the image).")
        oid = await self._register_file(user, f"ec2-{uuid.uuid4()}", params.upload.path,
                                        staged=params.upload)
        out.sub(out.root, "imageId", ami_id(oid))

    async def deregister_image(self, user, params, out):
        """DeregisterImage: delete the image (and its repository file)
        through the core; an image VMs use or still being copied is refused
        (``IncorrectState``) and nothing is lost; another user's image is
        UnauthorizedOperation, an unknown one InvalidAMIID.NotFound."""
        image = self._image(user, params.require("ImageId"))
        try:
            await self.requests.image_delete(user, image.oid)
        except ActionError as e:
            raise EC2Error("IncorrectState", str(e)) from None
        out.sub(out.root, "return", "true")

    # -- instances ---------------------------------------------------------------------

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
            keypair = _keypair(user, key_name)
            if keypair is None:
                raise EC2Error("InvalidKeyPair.NotFound",
                               f"The key pair '{key_name}' does not exist")
            public_key = keypair.get("PUBLIC_KEY") or None
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
            self._instance(out, instances, self.nebula.vmpool.get(vid), {})

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
        for vm in sorted(self.nebula.vmpool.objects.values(), key=lambda v: v.oid):
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
            vm = self.nebula.vmpool.objects.get(int(m.group(1))) if m else None
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
               else self._visible(user, self.nebula.clock.seconds()))
        eips = self._associations()
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
        await self._drop_addresses(vms)
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
            item = self._state_change(out, iset, vm, current, previous)
            out.sub(item, "shutdownState", 32)

    def _allowed(self, vm, action):
        from nebtwist.core.dm import ACTIONS

        dm = getattr(self.requests, "dm", None)
        lcm = getattr(dm, "lcm", None)
        return lcm is None or lcm.allowed(vm, ACTIONS[action])

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
            if self._allowed(vm, action):
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
            if not self._allowed(vm, "reboot"):
                raise EC2Error("IncorrectInstanceState",
                               f"The instance '{instance_id(vm.oid)}' is not running "
                               f"({ec2_state(vm)[1]}).")
        for vm in vms:
            try:
                await self.requests.vm_action(user, "reboot", vm.oid)
            except ActionError as e:
                raise EC2Error("IncorrectInstanceState", str(e)) from None
        out.sub(out.root, "return", "true")

    # -- key pairs ---------------------------------------------------------------------

    @staticmethod
    def _key_name(params):
        name = params.require("KeyName")
        if not name.isascii() or not _printable(name, 255):
            raise EC2Error("InvalidParameterValue",
                           f"Invalid value '{name}' for KeyName: 1 to 255 ASCII characters.")
        return name

    async def _add_keypair(self, user, name, kind, fingerprint, public):
        if _keypair(user, name) is not None:
            raise EC2Error("InvalidKeyPair.Duplicate", f"The keypair '{name}' already exists.")
        vector = {"NAME": name, "ID": f"key-{secrets.token_hex(9)[:17]}",
                  "FINGERPRINT": fingerprint, "PUBLIC_KEY": public, "TYPE": kind,
                  "CREATED": str(int(self.nebula.clock.seconds()))}
        await self._store([(self.nebula.userpool, user, "EC2_KEYPAIR",
                            user.template.get_all("EC2_KEYPAIR") + [vector], ())])
        return vector

    async def create_key_pair(self, user, params, out):
        """CreateKeyPair: a new RSA 2048 key pair (``KeyType`` rsa, ``KeyFormat``
        pem). The private key is answered (``keyMaterial``, PEM) and never
        stored; the user keeps the name, id, fingerprint (SHA1 of the DER
        PKCS#8 private key, colon hex, as AWS) and OpenSSH public key.

        :raises EC2Error: InvalidKeyPair.Duplicate, InvalidParameterValue.
        """
        name = self._key_name(params)
        for param, allowed in (("KeyType", "rsa"), ("KeyFormat", "pem")):
            value = params.get(param) or allowed
            if value != allowed:
                raise EC2Error("InvalidParameterValue",
                               f"Invalid value '{value}' for {param}: only {allowed} is "
                               f"supported.")
        if _keypair(user, name) is not None:
            raise EC2Error("InvalidKeyPair.Duplicate", f"The keypair '{name}' already exists.")
        reactor = self._reactor()
        pem, fingerprint, public = await threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), _new_rsa_key)
        vector = await self._add_keypair(user, name, "rsa", fingerprint, public)
        out.sub(out.root, "keyName", name)
        out.sub(out.root, "keyFingerprint", fingerprint)
        out.sub(out.root, "keyMaterial", pem)
        out.sub(out.root, "keyPairId", vector["ID"])

    async def import_key_pair(self, user, params, out):
        """ImportKeyPair: keep ``PublicKeyMaterial`` (base64 of an OpenSSH
        RSA or ED25519 public key) as key pair ``KeyName``; the fingerprint
        is the MD5 of the DER SubjectPublicKeyInfo, colon hex (RSA), as AWS.

        :raises EC2Error: InvalidKey.Format, InvalidKeyPair.Duplicate.
        """
        name = self._key_name(params)
        kind, fingerprint, public = _imported_key(params.require("PublicKeyMaterial"))
        vector = await self._add_keypair(user, name, kind, fingerprint, public)
        out.sub(out.root, "keyName", name)
        out.sub(out.root, "keyFingerprint", fingerprint)
        out.sub(out.root, "keyPairId", vector["ID"])

    async def describe_key_pairs(self, user, params, out):
        """DescribeKeyPairs: the user's key pairs (``KeyName.N``,
        ``KeyPairId.N``; filters key-name, key-pair-id, fingerprint,
        key-type); ``IncludePublicKey=true`` adds ``publicKey``.

        :raises EC2Error: InvalidKeyPair.NotFound for a name or id the user
            does not have.
        """
        pairs = _keypairs(user)
        names, ids = params.indexed("KeyName"), params.indexed("KeyPairId")
        for wanted, field, what in ((names, "NAME", "key pair"), (ids, "ID", "key pair ID")):
            for value in wanted:
                if not any(k.get(field) == value for k in pairs):
                    raise EC2Error("InvalidKeyPair.NotFound",
                                   f"The {what} '{value}' does not exist")
        if names:
            pairs = [k for k in pairs if k.get("NAME") in names]
        if ids:
            pairs = [k for k in pairs if k.get("ID") in ids]
        fields = {"key-name": "NAME", "key-pair-id": "ID", "fingerprint": "FINGERPRINT",
                  "key-type": "TYPE"}
        for name, wanted in params.filters():
            if name not in fields:
                raise EC2Error("InvalidParameterValue",
                               f"The filter '{name}' is invalid "
                               f"(known: {', '.join(sorted(fields))}).")
            pairs = [k for k in pairs if _matches([k.get(fields[name], "")], wanted)]
        include = params.bool("IncludePublicKey")
        key_set = out.sub(out.root, "keySet")
        for k in pairs:
            item = out.sub(key_set, "item")
            out.sub(item, "keyPairId", k.get("ID", ""))
            out.sub(item, "keyName", k.get("NAME", ""))
            out.sub(item, "keyFingerprint", k.get("FINGERPRINT", ""))
            out.sub(item, "keyType", k.get("TYPE", "rsa"))
            if k.get("CREATED", "").isdigit():
                out.sub(item, "createTime", _iso(int(k["CREATED"])))
            if include:
                out.sub(item, "publicKey", k.get("PUBLIC_KEY", ""))

    async def delete_key_pair(self, user, params, out):
        """DeleteKeyPair (``KeyName`` or ``KeyPairId``): forget the key pair;
        deleting one that does not exist succeeds too, as AWS. Instances
        started with it keep their key."""
        key_id = params.get("KeyPairId")
        name = None if key_id else self._key_name(params)
        field, value = ("ID", key_id) if key_id else ("NAME", name)
        found = [k for k in _keypairs(user) if k.get(field) == value]
        if found:
            kept = [k for k in user.template.get_all("EC2_KEYPAIR")
                    if not (isinstance(k, dict) and k.get(field) == value)]
            await self._store([(self.nebula.userpool, user, "EC2_KEYPAIR", kept, ())])
            out.sub(out.root, "keyPairId", found[0].get("ID", ""))
        out.sub(out.root, "return", "true")

    # -- elastic IPs -------------------------------------------------------------------

    def _eip_network(self):
        """The econe.conf ``ELASTIC_IP_NETWORK`` network (an id, or a name:
        oneadmin's network of that name first).

        :raises EC2Error: ``Unsupported`` when it is not set (3.4 answered
            the address calls so without ``:elasticips_vnet_id``) or names
            no network.
        """
        value = self.econe.get("ELASTIC_IP_NETWORK") if self.econe is not None else None
        if not value:
            raise EC2Error("Unsupported", "Elastic IP addresses are not available here: "
                                          "econe.conf sets no ELASTIC_IP_NETWORK.")
        pool = self.nebula.vnpool
        if value.strip().isdigit():
            vnet = pool.objects.get(int(value))
        else:
            named = sorted((v for v in pool.objects.values() if v.name == value),
                           key=lambda v: (v.uid != 0, v.oid))
            vnet = named[0] if named else None
        if vnet is None:
            raise EC2Error("Unsupported", f"Elastic IP addresses are not available here: "
                                          f"the network {value!r} (econe.conf "
                                          f"ELASTIC_IP_NETWORK) does not exist.")
        return vnet

    @staticmethod
    def _entries(vnet):
        return [v for v in vnet.template.get_all("EC2_ADDRESSES") if isinstance(v, dict)]

    def _associated_vm(self, entry):
        """The live (not DONE) VM an address entry is associated with, or None."""
        vid = entry.get("INSTANCE_ID", "")
        vm = self.nebula.vmpool.objects.get(int(vid)) if vid.isdigit() else None
        return vm if vm is not None and vm.state != DONE else None

    def _associations(self):
        """``{vm id: elastic IP}`` of the associated addresses ({} without a
        network)."""
        if self.econe is None or not self.econe.get("ELASTIC_IP_NETWORK"):
            return {}
        try:
            vnet = self._eip_network()
        except EC2Error:
            return {}
        found = {}
        for entry in self._entries(vnet):
            vm = self._associated_vm(entry)
            if vm is not None:
                found[vm.oid] = entry.get("IP", "")
        return found

    @staticmethod
    def _public_ip(params):
        value = params.require("PublicIp")
        try:
            return int_to_ip(ip_to_int(value))
        except ValueError:
            raise EC2Error("InvalidAddress.Malformed",
                           f"Invalid value '{value}' for PublicIp.") from None

    def _own_entry(self, vnet, user, ip):
        """The address entry of ``ip``, which must be the user's.

        :raises EC2Error: InvalidAddress.NotFound (nobody holds it),
            AuthFailure (another user's; as AWS for an address of another
            account).
        """
        entry = next((e for e in self._entries(vnet) if e.get("IP") == ip), None)
        if entry is None:
            raise EC2Error("InvalidAddress.NotFound", f"Address '{ip}' not found.")
        if entry.get("UID") != str(user.oid):
            raise EC2Error("AuthFailure",
                           f"You do not have permission to access the address '{ip}'.")
        return entry

    async def _address_script(self, key, elastic_ip, vm):
        """Run econe.conf ``key`` (ASSOCIATE_SCRIPT or DISASSOCIATE_SCRIPT)
        with the elastic IP and the VM's private IP, if it is set.

        :raises EC2Error: InternalError when the script fails (exit status
            other than 0, killed after :data:`SCRIPT_TIMEOUT`, not startable).
        """
        command = self.econe.get(key) if self.econe is not None else None
        if not command:
            return
        private = _vm_ip(vm) if vm is not None else ""
        args = [elastic_ip, private] if private else [elastic_ip]
        code, signal, output = await run_script(self._reactor(), command, args)
        if code != 0:
            how = f"exit status {code}" if code is not None else (
                f"signal {signal}" if signal else "it could not run")
            log.error("EC2 {key} {args} failed ({how}): {output}", key=key, args=args,
                      how=how, output=output.strip())
            raise EC2Error("InternalError",
                           f"The address could not be {'dis' if 'DIS' in key else ''}"
                           f"associated: {key} failed ({how}).", 500)

    async def allocate_address(self, user, params, out):
        """AllocateAddress: hold a free lease of the ELASTIC_IP_NETWORK
        network for the user (USED with VID -1, the 3.4 hold, so no VM NIC
        gets it) and record it (``EC2_ADDRESSES``), in one write.

        :raises EC2Error: Unsupported (no network), AddressLimitExceeded
            (no free lease).
        """
        vnet = self._eip_network()
        await self._addresses.acquire()
        try:
            from nebtwist.core.vnet import acquire_lease, release_lease

            try:
                lease = acquire_lease(vnet, -1, self.nebula.config.get("MAC_PREFIX"))
            except ActionError as e:
                raise EC2Error("AddressLimitExceeded", str(e)) from None
            ip = int_to_ip(lease.ip)
            vector = {"IP": ip, "UID": str(user.oid), "INSTANCE_ID": ""}
            try:
                await self._store([(self.nebula.vnpool, vnet, "EC2_ADDRESSES",
                                    vnet.template.get_all("EC2_ADDRESSES") + [vector],
                                    self.nebula.vnpool.lease_ops(vnet, [lease]))])
            except BaseException:
                release_lease(vnet, lease.ip, -1)
                raise
        finally:
            self._addresses.release()
        log.info("EC2: address {ip} allocated to {user}", ip=ip, user=user.name)
        out.sub(out.root, "publicIp", ip)
        out.sub(out.root, "domain", "standard")

    async def release_address(self, user, params, out):
        """ReleaseAddress: give the lease back to the network; an associated
        address is disassociated first (DISASSOCIATE_SCRIPT)."""
        vnet = self._eip_network()
        ip = self._public_ip(params)
        await self._addresses.acquire()
        try:
            from nebtwist.core.vnet import release_lease

            entry = self._own_entry(vnet, user, ip)
            vm = self._associated_vm(entry)
            if vm is not None:
                await self._address_script("DISASSOCIATE_SCRIPT", ip, vm)
            number = ip_to_int(ip)
            lease = release_lease(vnet, number, -1)

            kept = [e for e in vnet.template.get_all("EC2_ADDRESSES")
                    if not (isinstance(e, dict) and e.get("IP") == ip)]
            try:
                await self._store([(self.nebula.vnpool, vnet, "EC2_ADDRESSES", kept,
                                    self.nebula.vnpool.lease_ops(vnet, [lease])
                                    if lease is not None else ())])
            except BaseException:
                if lease is not None:
                    lease.used, lease.vid = True, -1
                    vnet.leases[number] = lease
                    vnet.touch()
                raise
        finally:
            self._addresses.release()
        log.info("EC2: address {ip} released by {user}", ip=ip, user=user.name)
        out.sub(out.root, "return", "true")

    async def associate_address(self, user, params, out):
        """AssociateAddress (``PublicIp``, ``InstanceId``): run econe.conf
        ASSOCIATE_SCRIPT with the elastic IP and the instance's private IP
        (3.4 ``associate_address``), then record the association
        (DescribeInstances shows ``ipAddress``). An address associated with
        another instance, or another address of this instance, is
        disassociated first (DISASSOCIATE_SCRIPT), as EC2-Classic moved
        addresses. A failing script is an error and nothing is recorded.

        :raises EC2Error: IncorrectInstanceState for a terminated instance,
            or one with no private IP when a script is set.
        """
        vnet = self._eip_network()
        ip = self._public_ip(params)
        iid = params.require("InstanceId")
        await self._addresses.acquire()
        try:
            entry = self._own_entry(vnet, user, ip)
            vm = self._instances(user, [iid])[0]
            if vm.state == DONE or ec2_state(vm)[1] in ("terminated", "shutting-down"):
                raise EC2Error("IncorrectInstanceState",
                               f"The instance '{iid}' is {ec2_state(vm)[1]}.")
            if not _vm_ip(vm) and self.econe.get("ASSOCIATE_SCRIPT"):
                raise EC2Error("IncorrectInstanceState",
                               f"The instance '{iid}' has no private IP address.")
            current = self._associated_vm(entry)
            if current is not None and current.oid == vm.oid:
                out.sub(out.root, "return", "true")
                return
            others = [e for e in self._entries(vnet)
                      if e is not entry and e.get("INSTANCE_ID") == str(vm.oid)]
            cleared = []
            try:
                if current is not None:
                    await self._address_script("DISASSOCIATE_SCRIPT", ip, current)
                    cleared.append(entry)
                for other in others:
                    await self._address_script("DISASSOCIATE_SCRIPT", other.get("IP", ""), vm)
                    cleared.append(other)
                await self._address_script("ASSOCIATE_SCRIPT", ip, vm)
            except BaseException:
                if cleared:  # what was undone on the hosts is undone in the records
                    await self._set_instances(vnet, {id(e): "" for e in cleared})
                raise
            changes = {id(e): "" for e in others}
            changes[id(entry)] = str(vm.oid)
            await self._set_instances(vnet, changes)
        finally:
            self._addresses.release()
        log.info("EC2: address {ip} associated with {iid}", ip=ip, iid=iid)
        out.sub(out.root, "return", "true")

    async def _drop_addresses(self, vms):
        """Disassociate the elastic IPs of instances being terminated, as EC2
        does: DISASSOCIATE_SCRIPT runs for each (a failure is logged, the
        instance goes anyway) and the associations are forgotten."""
        if self.econe is None or not self.econe.get("ELASTIC_IP_NETWORK"):
            return
        try:
            vnet = self._eip_network()
        except EC2Error:
            return
        by_id = {str(vm.oid): vm for vm in vms if vm.state != DONE}
        await self._addresses.acquire()
        try:
            entries = [e for e in self._entries(vnet) if e.get("INSTANCE_ID") in by_id]
            for entry in entries:
                try:
                    await self._address_script("DISASSOCIATE_SCRIPT", entry.get("IP", ""),
                                               by_id[entry["INSTANCE_ID"]])
                except EC2Error:
                    pass  # logged; the instance is terminated all the same
            if entries:
                await self._set_instances(vnet, {id(e): "" for e in entries})
        finally:
            self._addresses.release()

    async def _set_instances(self, vnet, changes):
        """Set INSTANCE_ID of address entries (``{id(entry): value}``) and store."""
        values = [dict(e, INSTANCE_ID=changes[id(e)]) if id(e) in changes else e
                  for e in vnet.template.get_all("EC2_ADDRESSES")]
        await self._store([(self.nebula.vnpool, vnet, "EC2_ADDRESSES", values, ())])

    async def disassociate_address(self, user, params, out):
        """DisassociateAddress (``PublicIp``): run DISASSOCIATE_SCRIPT with the
        elastic IP and the instance's private IP, then forget the
        association; an address associated with nothing is fine."""
        vnet = self._eip_network()
        ip = self._public_ip(params)
        await self._addresses.acquire()
        try:
            entry = self._own_entry(vnet, user, ip)
            vm = self._associated_vm(entry)
            if vm is not None:
                await self._address_script("DISASSOCIATE_SCRIPT", ip, vm)
            if entry.get("INSTANCE_ID"):
                await self._set_instances(vnet, {id(entry): ""})
        finally:
            self._addresses.release()
        out.sub(out.root, "return", "true")

    async def describe_addresses(self, user, params, out):
        """DescribeAddresses: the user's addresses (``PublicIp.N``; filters
        public-ip, instance-id, domain), each with ``publicIp``, ``domain``
        standard and ``instanceId`` (empty when not associated).

        :raises EC2Error: InvalidAddress.NotFound for an address the user
            does not hold.
        """
        vnet = self._eip_network()
        mine = [e for e in self._entries(vnet) if e.get("UID") == str(user.oid)]
        wanted = params.indexed("PublicIp")
        for ip in wanted:
            if not any(e.get("IP") == ip for e in mine):
                raise EC2Error("InvalidAddress.NotFound", f"Address '{ip}' not found.")
        if wanted:
            mine = [e for e in mine if e.get("IP") in wanted]
        rows = []
        for e in mine:
            vm = self._associated_vm(e)
            rows.append({"public-ip": e.get("IP", ""), "domain": "standard",
                         "instance-id": instance_id(vm.oid) if vm is not None else ""})
        for name, values in params.filters():
            if name not in ("public-ip", "instance-id", "domain"):
                raise EC2Error("InvalidParameterValue",
                               f"The filter '{name}' is invalid "
                               f"(known: domain, instance-id, public-ip).")
            rows = [r for r in rows if _matches([r[name]], values)]
        addresses = out.sub(out.root, "addressesSet")
        for r in rows:
            item = out.sub(addresses, "item")
            out.sub(item, "publicIp", r["public-ip"])
            out.sub(item, "domain", r["domain"])
            out.sub(item, "instanceId", r["instance-id"])

    # -- tags --------------------------------------------------------------------------

    def _taggable(self, user, rid):
        """``(pool, object, resource type)`` of a resource id the user owns.

        :raises EC2Error: InvalidID (neither ``i-`` nor ``ami-``), the
            instance and image NotFound/Malformed codes, UnauthorizedOperation
            (an image the user may see but does not own).
        """
        if rid.startswith("i-"):
            return self.nebula.vmpool, self._instances(user, [rid])[0], "instance"
        if rid.startswith("ami-"):
            image = self._image(user, rid)
            if image.uid != user.oid:
                raise EC2Error("UnauthorizedOperation",
                               f"Only the owner of {rid} may change its tags.", 403)
            return self.nebula.imagepool, image, "image"
        raise EC2Error("InvalidID", f"The ID '{rid}' is not valid")

    def _tag_targets(self, user, params):
        ids = params.indexed("ResourceId")
        if not ids:
            raise EC2Error("MissingParameter",
                           "The request must contain the parameter ResourceId")
        targets = {}
        for rid in ids:
            pool, obj, _ = self._taggable(user, rid)
            targets.setdefault((id(pool), obj.oid), (pool, obj))
        return list(targets.values())

    @staticmethod
    def _tag_vectors(tags):
        return [{"KEY": key, "VALUE": value} for key, value in tags]

    async def create_tags(self, user, params, out):
        """CreateTags: add or overwrite ``Tag.N.Key``/``Tag.N.Value`` (value
        default "") on instances and images the user owns (``ResourceId.N``),
        all in one write.

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
        changes = []
        for pool, obj in targets:
            merged = dict(_tags(obj))
            for key, value in tags:
                merged[key] = value or ""
            if len(merged) > MAX_TAGS:
                raise EC2Error("TagLimitExceeded",
                               f"A resource may have at most {MAX_TAGS} tags.")
            changes.append((pool, obj, "EC2_TAG", self._tag_vectors(merged.items()), ()))
        await self._store(changes)
        out.sub(out.root, "return", "true")

    async def delete_tags(self, user, params, out):
        """DeleteTags: remove ``Tag.N.Key`` (any value), or ``Tag.N.Key``
        with ``Tag.N.Value`` (only with that value, "" included), or every
        tag when no ``Tag`` is given, as AWS."""
        targets = self._tag_targets(user, params)
        tags = params.tags()
        changes = []
        for pool, obj in targets:
            current = _tags(obj)
            kept = [] if not tags else [
                (k, v) for k, v in current
                if not any(k == dk and (dv is None or dv == v) for dk, dv in tags)]
            if kept != current:
                changes.append((pool, obj, "EC2_TAG", self._tag_vectors(kept), ()))
        if changes:
            await self._store(changes)
        out.sub(out.root, "return", "true")

    async def describe_tags(self, user, params, out):
        """DescribeTags: the tags of the user's instances and images
        (filters resource-id, resource-type ``instance``/``image``, key,
        value; ``*``/``?`` wildcards), ordered by resource."""
        rows = []
        for vm in self._visible(user, self.nebula.clock.seconds()):
            rows += [{"resource-id": instance_id(vm.oid), "resource-type": "instance",
                      "key": k, "value": v} for k, v in _tags(vm)]
        for image in sorted(self.nebula.imagepool.objects.values(), key=lambda i: i.oid):
            if image.uid == user.oid:
                rows += [{"resource-id": ami_id(image.oid), "resource-type": "image",
                          "key": k, "value": v} for k, v in _tags(image)]
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


def _replace(template, name, values):
    """Replace every ``name`` attribute of ``template`` (in place) by ``values``."""
    template.remove(name)
    for value in values:
        template.add(name, value)


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
