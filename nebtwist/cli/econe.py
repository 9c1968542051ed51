"""The ``econe-*`` commands: the public cloud (EC2 Query API) from the shell.

::

    econe-upload FILE                       UploadImage: put an image file in the cloud
    econe-register LOCATION                 RegisterImage: an uploaded image, or bucket/key
    econe-describe-images [IMAGE ...]       DescribeImages
    econe-run-instances IMAGE [-t TYPE] [-n COUNT] [-k KEYNAME] [-d DATA | -f FILE]
    econe-describe-instances [INSTANCE ...] DescribeInstances
    econe-terminate-instances INSTANCE ...  TerminateInstances

The tools of OpenNebula 1.4/3.4 (``src/cloud/ec2/bin/econe-*``,
``src/cloud/ec2/lib/EC2QueryClient.rb``; reference section 7.1), with the
options and output of the seed's session::

    $ econe-describe-images -H -K consequi01 -S consequi2010
    Owner      ImageId      Location
    ...
    oneadmin   1            /srv/cloud/public_repo/1

Credentials, first found wins (as the 3.4 tools):

1. ``-K/--access-key USER`` and ``-S/--secret-key SECRET``;
2. ``$EC2_ACCESS_KEY`` and ``$EC2_SECRET_KEY``;
3. the ``user:password`` file ``$ONE_AUTH`` (default ``~/.one/one_auth``,
   as the ``one*`` commands): the secret is the SHA1 hex of the password.

The EC2 secret of an OpenNebula user is the SHA1 hex of the password (the
stored ``PASSWORD``). A ``-S``/``$EC2_SECRET_KEY`` value that is already 40
hex digits is used as it is (3.4 and AWS-style); anything else is taken as
the password and hashed (1.4's ``EC2QueryClient`` hashed every value, which
is what the seed's ``-S consequi2010`` relies on). Giving only one of a
pair (``-K`` without ``-S``) is an error, never a silent fall-back.

Endpoint: ``-U/--url`` or ``$EC2_URL`` (surrounding blanks ignored), default
``http://localhost:4567/``. ``https://`` URLs verify the server's
certificate against the system CAs, or against ``--ca-bundle FILE`` /
``$EC2_CA_BUNDLE``; ``--insecure`` skips the check (a self-signed first
set-up). ``$https_proxy``/``$http_proxy``/``$no_proxy`` are honoured.

Requests are EC2 Query POSTs signed with SignatureVersion 2, HmacSHA256
(botocore's :class:`~botocore.auth.SigV2Auth`; what econe's and euca2ools'
clients sent), ``Version`` :data:`API_VERSION`, sent with urllib3; replies
are parsed with lxml. ``econe-upload`` POSTs ``multipart/form-data`` to the
endpoint (3.4 ``EC2QueryClient#upload_image``): the signed fields and the
image in the field ``file``, streamed from disk.

Ids: the server speaks ``ami-00000001`` and ``i-18``; the tools take either
those or the bare OpenNebula numbers (``1``, ``18``) and print the numbers,
as the seed shows (``--ec2-ids`` prints the server's ids).

Exit status: 0 on success; 1 on any failure, with one line on stderr:
``econe-xxx: <Code>: <Message>`` for an error the server answered,
``econe-xxx: <what went wrong>`` otherwise (never a traceback).
"""

import argparse
import base64
import errno
import hashlib
import os
import re
import secrets
import sys
import time
import urllib.parse
import urllib.request

from nebtwist import client as one_client
from nebtwist.cli import common
from nebtwist.cli.common import CommandError

#: Where the tools go without ``-U`` or ``$EC2_URL`` (3.4 ``EC2QueryClient.rb``).
DEFAULT_URL = "http://localhost:4567/"

#: The ``Version`` sent (3.4 ``EC2QueryClient::Client::API_VERSION``); the
#: server answers in that version's namespace, which the tools ignore.
API_VERSION = "2008-12-01"

#: Seconds to wait for a connection, and for each read of a reply.
CONNECT_TIMEOUT = 30
READ_TIMEOUT = 600

#: Bytes sent per write while uploading.
BLOCK_SIZE = 1 << 20

#: Seconds between redraws of the upload progress bar.
PROGRESS_INTERVAL = 0.1

_SHA1_HEX = re.compile(r"[0-9a-fA-F]{40}\Z")
_NUMBER = re.compile(r"[0-9]+\Z")
_AMI = re.compile(r"ami-0*([0-9]+)\Z")
_INSTANCE = re.compile(r"i-0*([0-9]+)\Z")
_COUNT = re.compile(r"([0-9]+)(?:-([0-9]+))?\Z")

CREDENTIALS_HELP = """\
credentials (first found wins):
  -K USER -S SECRET           both options
  EC2_ACCESS_KEY, EC2_SECRET_KEY
  ONE_AUTH                    a user:password file (default ~/.one/one_auth);
                              the secret is the SHA1 hex of the password
  A secret of 40 hex digits is the SHA1 of the password and is used as it is;
  any other -S / EC2_SECRET_KEY value is the password itself and is hashed.

endpoint:
  -U URL or EC2_URL (default %s); https:// verifies the server
  against the system CAs, or --ca-bundle FILE / EC2_CA_BUNDLE; --insecure
  skips the check.

ids: images and instances may be given as OpenNebula numbers (1, 18) or EC2
ids (ami-00000001, i-18); numbers are printed unless --ec2-ids.
""" % DEFAULT_URL


class ServerError(Exception):
    """An error reply of the EC2 server.

    :ivar code: the EC2 error code (``AuthFailure``, ``InvalidAMIID.NotFound``).
    :ivar message: the server's message.
    :ivar status: the HTTP status (int).
    """

    def __init__(self, code, message, status):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


# ---------------------------------------------------------------- settings


def sha1_hex(text):
    """SHA1 hex digest of ``text`` (UTF-8): an OpenNebula password's EC2 secret."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def ec2_secret(value):
    """The EC2 secret for a ``-S``/``$EC2_SECRET_KEY`` value.

    40 hex digits are taken as the SHA1 of the password already (returned
    lower-cased, as the server stores it); anything else is the password
    and is hashed.
    """
    if _SHA1_HEX.match(value):
        return value.lower()
    return sha1_hex(value)


def credentials(args, environ):
    """``(access key, secret)`` from the options, the environment or ONE_AUTH.

    :param args: parsed options (``access_key``, ``secret_key``; None when
        not given).
    :param environ: the environment mapping.
    :raises CommandError: half a pair given, or no credentials anywhere.
    """
    if args.access_key is not None or args.secret_key is not None:
        if not args.access_key or not args.secret_key:
            given, missing = (("-K/--access-key", "-S/--secret-key") if args.access_key
                              else ("-S/--secret-key", "-K/--access-key"))
            raise CommandError(f"{given} needs {missing} as well")
        return args.access_key, ec2_secret(args.secret_key)
    access, secret = environ.get("EC2_ACCESS_KEY"), environ.get("EC2_SECRET_KEY")
    if access or secret:
        if not access or not secret:
            given, missing = (("EC2_ACCESS_KEY", "EC2_SECRET_KEY") if access
                              else ("EC2_SECRET_KEY", "EC2_ACCESS_KEY"))
            raise CommandError(f"{given} is set but {missing} is not")
        return access, ec2_secret(secret)
    path = one_client.auth_file_path(environ)
    if not os.path.exists(path):
        raise CommandError(
            "No credentials: give -K and -S, set EC2_ACCESS_KEY and EC2_SECRET_KEY, "
            f"or ONE_AUTH (no file {path})")
    user, _, password = one_client.read_session(path).partition(":")
    return user, sha1_hex(password)


def endpoint(args, environ):
    """The endpoint URL (``-U``, else ``$EC2_URL``, else :data:`DEFAULT_URL`).

    Blanks around it are dropped (the seed's ``EC2_URL`` ends with one); a
    missing path becomes ``/``; user info, query and fragment are dropped,
    and so is the scheme's default port, so that the host signed is the
    ``Host`` header sent.

    :raises CommandError: not an http(s) URL with a host, or a bad port.
    """
    raw = args.url if args.url and args.url.strip() else environ.get("EC2_URL")
    url = (raw or "").strip() or DEFAULT_URL
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        raise CommandError(f"Invalid URL {url}: bad port") from None
    if scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"Invalid URL {url}: use http://HOST[:PORT]/ or https://HOST[:PORT]/")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    return urllib.parse.urlunsplit((scheme, host, parts.path or "/", "", ""))


def ca_bundle(args, environ):
    """``--ca-bundle`` or ``$EC2_CA_BUNDLE`` (None: the system CAs).

    :raises CommandError: the file does not exist.
    """
    path = (args.ca_bundle or environ.get("EC2_CA_BUNDLE") or "").strip() or None
    if path is not None and not os.path.isfile(path):
        raise CommandError(f"CA bundle {path} not found")
    return path


def image_param(value):
    """``ImageId`` for an argument: ``1`` -> ``ami-00000001``; anything else
    is sent as given (the server judges it)."""
    value = value.strip()
    return f"ami-{int(value):08d}" if _NUMBER.match(value) else value


def instance_param(value):
    """``InstanceId`` for an argument: ``18`` -> ``i-18``; anything else as given."""
    value = value.strip()
    return f"i-{int(value)}" if _NUMBER.match(value) else value


def location_param(value):
    """``ImageLocation`` for econe-register: a number is an uploaded image's
    id (``ami-%08d``); ``ami-...`` and ``bucket/key`` are sent as given."""
    return image_param(value)


def short_image(value):
    """``ami-00000001`` -> ``1`` (other values unchanged)."""
    m = _AMI.match(value or "")
    return m.group(1) if m else value


def short_instance(value):
    """``i-18`` -> ``18`` (other values unchanged)."""
    m = _INSTANCE.match(value or "")
    return m.group(1) if m else value


# ---------------------------------------------------------------- transport


def _proxy_for(url):
    """The proxy URL the environment names for ``url``, or None."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


class EC2Client:
    """A blocking EC2 Query client bound to one endpoint and one key pair.

    :param url: the endpoint (:func:`endpoint`).
    :param access_key: the user name.
    :param secret: the EC2 secret (SHA1 hex of the password).
    :param ca_bundle: PEM file of the CAs to trust for https (None: the
        system's).
    :param insecure: do not verify the server's certificate.
    """

    def __init__(self, url, access_key, secret, ca_bundle=None, insecure=False):
        import urllib3

        self.url = url
        self.access_key = access_key
        self.secret = secret
        options = dict(num_pools=1, maxsize=1, retries=False, blocksize=BLOCK_SIZE,
                       timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT))
        if urllib.parse.urlsplit(url).scheme == "https":
            if insecure:
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
                options.update(cert_reqs="CERT_NONE")
            else:  # no ca_certs: urllib3 loads the system's default CAs
                options.update(cert_reqs="CERT_REQUIRED", ca_certs=ca_bundle)
        proxy = _proxy_for(url)
        try:
            self.pool = (urllib3.ProxyManager(proxy, **options) if proxy
                         else urllib3.PoolManager(**options))
        except (ValueError, urllib3.exceptions.HTTPError) as e:
            raise CommandError(f"Invalid proxy {proxy}: {e}") from None

    def _signer(self):
        from botocore.auth import SigV2Auth
        from botocore.credentials import Credentials

        return SigV2Auth(Credentials(self.access_key, self.secret))

    def call(self, action, params=None):
        """Run ``action`` with ``params`` ({name: str}); returns the reply's
        root element (namespaces stripped).

        :raises ServerError: the server answered an EC2 error.
        :raises CommandError: the request could not be made or the reply
            could not be read.
        """
        from botocore.awsrequest import AWSRequest

        data = {"Action": action, "Version": API_VERSION}
        data.update(params or {})
        request = AWSRequest(method="POST", url=self.url, data=data)
        self._signer().add_auth(request)
        body = urllib.parse.urlencode(request.data).encode("utf-8")
        return self._send(body, {"Content-Type":
                                 "application/x-www-form-urlencoded; charset=utf-8"})

    def upload(self, path, progress=None):
        """UploadImage: POST the file at ``path`` as ``multipart/form-data``
        (3.4 ``EC2QueryClient#upload_image``), read from disk while it is
        sent. ``progress(count)`` is called with each block's size.

        :return: the reply's root element (``RegisterImageResponse``).
        :raises ServerError, CommandError: as :meth:`call`; CommandError also
            when the file cannot be read or shrinks while being sent.
        """
        from botocore.awsrequest import AWSRequest

        fields = {
            "Action": "UploadImage",
            "SignatureVersion": "2",
            "SignatureMethod": "HmacSHA256",
            "AWSAccessKeyId": self.access_key,
            "Version": API_VERSION,
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        fields["Signature"] = self._signer().calc_signature(
            AWSRequest(method="POST", url=self.url), fields)[1]
        body = MultipartBody(fields, "file", path, progress)
        try:
            return self._send(body, {
                "Content-Type": f"multipart/form-data; boundary={body.boundary}",
                "Content-Length": str(body.length)})
        finally:
            body.close()

    def _send(self, body, headers):
        from urllib3.exceptions import HTTPError

        headers = dict(headers, **{"User-Agent": "nebtwist-econe"})
        try:
            response = self.pool.urlopen("POST", self.url, body=body, headers=headers,
                                         redirect=False, retries=False)
        except CommandError:
            raise
        except HTTPError as e:
            raise CommandError(self._transport_message(e)) from None
        except OSError as e:
            raise CommandError(f"Cannot talk to {self.url}: {e.strerror or e}") from None
        return self._reply(response.status, response.reason, response.data)

    def _reply(self, status, reason, data):
        if 200 <= status < 300:
            return common.parse_xml(data)
        try:
            root = common.parse_xml(data)
        except CommandError:
            root = None
        error = None
        if root is not None:
            error = root if root.tag == "Error" else root.find(".//Error")
        if error is not None and common.text(error, "Code"):
            raise ServerError(common.text(error, "Code"),
                              " ".join(common.text(error, "Message").split()), status)
        raise CommandError(f"HTTP {status} {reason or ''} from {self.url}".rstrip())

    def _transport_message(self, e):
        """One line for a urllib3 failure."""
        from urllib3 import exceptions as ux

        url = self.url
        cause = e.__cause__ or e.__context__
        if isinstance(e, ux.NameResolutionError):
            return f"Cannot connect to {url}: unknown host {urllib.parse.urlsplit(url).hostname}"
        if isinstance(e, ux.NewConnectionError):
            if isinstance(cause, ConnectionRefusedError) or getattr(
                    cause, "errno", None) == errno.ECONNREFUSED:
                return f"Cannot connect to {url}: connection refused (is the EC2 server up?)"
            reason = getattr(cause, "strerror", None) or str(cause or e)
            return f"Cannot connect to {url}: {reason}"
        if isinstance(e, ux.ConnectTimeoutError):
            return f"Cannot connect to {url}: timed out"
        if isinstance(e, ux.ReadTimeoutError):
            return f"Timed out waiting for {url}"
        if isinstance(e, ux.SSLError):
            reason = getattr(cause, "verify_message", None) or getattr(
                cause, "reason", None) or str(cause or e)
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in str(e) or "certificate" in str(reason):
                hint = (" (trust the server's certificate with --ca-bundle FILE or "
                        "EC2_CA_BUNDLE, or skip the check with --insecure)")
            return f"TLS error talking to {url}: {reason}{hint}"
        if isinstance(e, ux.ProxyError):
            return f"Proxy error talking to {url}: {' '.join(str(e).split())}"
        if isinstance(e, ux.ProtocolError):
            reason = cause if cause is not None else (e.args[-1] if e.args else e)
            if isinstance(reason, CommandError):
                return str(reason)
            text = getattr(reason, "strerror", None) or " ".join(str(reason).split())
            return f"Connection to {url} lost: {text}"
        return f"Cannot talk to {url}: {' '.join(str(e).split())}"

    def close(self):
        """Close the pooled connections."""
        self.pool.clear()


class MultipartBody:
    """A ``multipart/form-data`` body read on demand: the ``fields`` parts,
    then the file at ``path`` as part ``file_field`` (``filename`` its base
    name, ``application/octet-stream``), never held whole in memory.

    :ivar boundary: the boundary (str).
    :ivar length: the body's size in bytes, for ``Content-Length``.
    :raises CommandError: the file cannot be opened.
    """

    def __init__(self, fields, file_field, path, progress=None, boundary=None):
        self.boundary = boundary or "----econe-" + secrets.token_hex(16)
        self.path = path
        self.progress = progress
        try:
            self._file = open(path, "rb")
        except FileNotFoundError:
            raise CommandError(f"Image file {path} not found") from None
        except IsADirectoryError:
            raise CommandError(f"{path} is a folder, not an image file") from None
        except OSError as e:
            raise CommandError(f"Cannot read {path}: {e.strerror or e}") from None
        try:
            self.size = self._file.seek(0, os.SEEK_END)
            self._file.seek(0)
        except OSError as e:
            self._file.close()
            raise CommandError(f"Cannot read {path}: {e.strerror or e}") from None
        dash = b"--" + self.boundary.encode("ascii")
        parts = []
        for name, value in fields.items():
            parts.append(b"%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                         % (dash, _quote(name), str(value).encode("utf-8")))
        filename = _quote(os.path.basename(path) or "image")
        parts.append(b"%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                     b"Content-Type: application/octet-stream\r\n\r\n"
                     % (dash, _quote(file_field), filename))
        self._head = b"".join(parts)
        self._tail = b"\r\n" + dash + b"--\r\n"
        self.length = len(self._head) + self.size + len(self._tail)
        self._segments = [self._head, None, self._tail]  # None: the file
        self._left = self.size

    def read(self, size=-1):
        """Up to ``size`` bytes of the body (b"" at its end)."""
        if size is None or size < 0:
            size = BLOCK_SIZE
        while self._segments:
            segment = self._segments[0]
            if segment is None:
                if self._left <= 0:
                    self._segments.pop(0)
                    continue
                try:
                    data = self._file.read(min(size, self._left))
                except OSError as e:
                    raise CommandError(f"Cannot read {self.path}: {e.strerror or e}") from None
                if not data:
                    raise CommandError(f"{self.path} shrank while it was being uploaded")
                self._left -= len(data)
                if self.progress is not None:
                    self.progress(len(data))
                return data
            if not segment:
                self._segments.pop(0)
                continue
            data, self._segments[0] = segment[:size], segment[size:]
            return data
        return b""

    def close(self):
        """Close the file."""
        self._file.close()


def _quote(text):
    """A form-data header parameter value: UTF-8, quotes and line breaks escaped."""
    return (text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ")
            .replace("\n", " ").encode("utf-8"))


def _human(count):
    """Bytes as ``12.3 MiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover


class Progress:
    """A one-line upload progress bar on ``stream``, redrawn at most every
    :data:`PROGRESS_INTERVAL` seconds: name, percentage, bar, bytes sent
    and rate."""

    WIDTH = 30

    def __init__(self, stream, name, total, clock=time.monotonic):
        self.stream = stream
        self.name = name if len(name) <= 24 else name[:21] + "..."
        self.total = total
        self.done = 0
        self.clock = clock
        self.start = clock()
        self.drawn = None  # when the line was last drawn
        self.drawn_done = None  # and with how many bytes

    def __call__(self, count):
        self.done += count
        now = self.clock()
        if self.drawn is None or now - self.drawn >= PROGRESS_INTERVAL or self.done >= self.total:
            self.draw(now)

    def draw(self, now=None):
        """Redraw the line."""
        now = self.clock() if now is None else now
        self.drawn, self.drawn_done = now, self.done
        fraction = self.done / self.total if self.total else 1.0
        filled = int(fraction * self.WIDTH)
        rate = self.done / max(now - self.start, 1e-6)
        line = (f"\r{self.name} {int(fraction * 100):3d}% [{'#' * filled}"
                f"{' ' * (self.WIDTH - filled)}] {_human(self.done)} / {_human(self.total)}"
                f"  {_human(rate)}/s ")
        try:
            self.stream.write(line)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def finish(self):
        """Draw the last state (unless shown already) and end the line."""
        if self.drawn_done != self.done:
            self.draw()
        try:
            self.stream.write("\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass


# ---------------------------------------------------------------- running a tool


class Context:
    """What a command works with: parsed args, streams, environment, and the
    :class:`EC2Client` (built on first use, so usage errors never need
    credentials)."""

    def __init__(self, prog, args, stdout, stderr, environ):
        self.prog = prog
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.environ = environ
        self._client = None

    @property
    def client(self):
        """The :class:`EC2Client` for the options and environment."""
        if self._client is None:
            url = endpoint(self.args, self.environ)
            access, secret = credentials(self.args, self.environ)
            bundle = ca_bundle(self.args, self.environ)
            if self.args.insecure and url.startswith("https:"):
                self.err(f"{self.prog}: warning: not verifying the server's certificate "
                         "(--insecure)")
            self._client = EC2Client(url, access, secret, ca_bundle=bundle,
                                     insecure=self.args.insecure)
        return self._client

    def out(self, line=""):
        """Write one line to stdout."""
        self.stdout.write(line + "\n")

    def err(self, line):
        """Write one line to stderr."""
        self.stderr.write(line + "\n")

    def image(self, value):
        """An image id for output: the number, or the EC2 id with --ec2-ids."""
        return value if self.args.ec2_ids else short_image(value)

    def instance(self, value):
        """An instance id for output: the number, or the EC2 id with --ec2-ids."""
        return value if self.args.ec2_ids else short_instance(value)

    def table(self, columns, rows):
        """Print ``rows`` under ``columns`` (:class:`common.Column`); the
        header line and a dashed rule only with ``-H``."""
        lines = common.render_table(columns, rows)
        if getattr(self.args, "headers", False):
            self.out(lines[0])
            self.out("-" * max(len(line) for line in lines))
        for line in lines[1:]:
            self.out(line)

    def close(self):
        """Close the client's connections, if any were opened."""
        if self._client is not None:
            self._client.close()
            self._client = None


def _version():
    try:
        from importlib.metadata import version
        return version("nebtwist")
    except Exception:  # not installed: running from a checkout
        return "unknown"


def _parser(prog, description, stdout, stderr, headers):
    cls = type("Parser", (common.CliParser,), {"out_stream": stdout, "err_stream": stderr})
    parser = cls(prog=prog, description=description, epilog=CREDENTIALS_HELP,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-K", "--access-key", metavar="USER",
                        help="the user name (EC2 access key id)")
    parser.add_argument("-S", "--secret-key", metavar="SECRET",
                        help="the password, or the SHA1 hex of it")
    parser.add_argument("-U", "--url", metavar="URL",
                        help=f"the EC2 server (default $EC2_URL, else {DEFAULT_URL})")
    parser.add_argument("--ca-bundle", metavar="FILE",
                        help="PEM file of the CAs trusted for https (default "
                             "$EC2_CA_BUNDLE, else the system's)")
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify the server's https certificate")
    if headers:
        parser.add_argument("-H", "--headers", action="store_true",
                            help="print the column headers")
    parser.add_argument("--ec2-ids", action="store_true",
                        help="print EC2 ids (ami-00000001, i-18) instead of numbers")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s (nebtwist) {_version()}")
    return parser


def run(prog, description, configure, handler, argv=None, stdout=None, stderr=None,
        environ=None, headers=True):
    """Run one ``econe-*`` tool; returns the exit status.

    ``configure(parser)`` adds the tool's own arguments; ``handler(ctx,
    args)`` does the work. Every failure becomes one ``prog: ...`` line on
    stderr and status 1.
    """
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    environ = os.environ if environ is None else environ
    parser = _parser(prog, description, stdout, stderr, headers)
    configure(parser)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except common._ParserExit as e:
        return e.status
    ctx = Context(prog, args, stdout, stderr, environ)
    try:
        handler(ctx, args)
        return 0
    except ServerError as e:
        _report(stderr, f"{prog}: {e.code}: {e.message}")
    except (CommandError, one_client.OneError) as e:
        _report(stderr, f"{prog}: {e}")
    except KeyboardInterrupt:
        _report(stderr, f"{prog}: Interrupted")
    except BrokenPipeError:
        pass
    except Exception as e:  # never a traceback
        _report(stderr, f"{prog}: Unexpected error: {e.__class__.__name__}: "
                        f"{' '.join(str(e).split())}")
    finally:
        ctx.close()
    return 1


def _report(stderr, message):
    try:
        stderr.write(message + "\n")
        stderr.flush()
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------- the commands


def _upload_args(parser):
    parser.add_argument("file", metavar="FILE", help="the image file to upload")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="show a progress bar on stderr (default: when it is a terminal)")
    group.add_argument("--no-progress", dest="progress", action="store_false",
                       help="never show the progress bar")


def do_upload(ctx, args):
    """``econe-upload FILE``: UploadImage; prints ``Success: ImageId <id>``."""
    path = args.file
    if not os.path.exists(path):
        raise CommandError(f"Image file {path} not found")
    client = ctx.client
    show = args.progress
    if show is None:
        show = bool(getattr(ctx.stderr, "isatty", lambda: False)())
    bar = None
    if show:
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        bar = Progress(ctx.stderr, os.path.basename(path), size)
    try:
        root = client.upload(path, progress=bar)
    finally:
        if bar is not None:
            bar.finish()
    image = common.text(root, ".//imageId")
    if not image:
        raise CommandError("The server's reply names no imageId")
    ctx.out(f"Success: ImageId {ctx.image(image)}")


def _register_args(parser):
    parser.add_argument("location", metavar="LOCATION",
                        help="an uploaded image (1 or ami-00000001), or bucket/key "
                             "of the S3 repository")


def do_register(ctx, args):
    """``econe-register LOCATION``: RegisterImage; prints ``Success: ImageId <id>``."""
    root = ctx.client.call("RegisterImage", {"ImageLocation": location_param(args.location)})
    image = common.text(root, ".//imageId")
    if not image:
        raise CommandError("The server's reply names no imageId")
    ctx.out(f"Success: ImageId {ctx.image(image)}")


def _describe_images_args(parser):
    parser.add_argument("images", metavar="IMAGE", nargs="*",
                        help="only these images (1 or ami-00000001)")


def _cell(value):
    """A table cell: ``-`` for an empty value, so columns stay countable."""
    return value if value else "-"


def do_describe_images(ctx, args):
    """``econe-describe-images``: ``Owner ImageId Location Status``."""
    params = {f"ImageId.{n}": image_param(v) for n, v in enumerate(args.images, 1)}
    root = ctx.client.call("DescribeImages", params)
    columns = [
        common.Column("Owner", 10, lambda i: _cell(common.text(i, "imageOwnerId"))),
        common.Column("ImageId", 12, lambda i: _cell(ctx.image(common.text(i, "imageId")))),
        common.Column("Location", 0, lambda i: _cell(common.text(i, "imageLocation"))),
        common.Column("Status", 0, lambda i: _cell(common.text(i, "imageState"))),
    ]
    ctx.table(columns, root.findall("imagesSet/item"))


def _run_instances_args(parser):
    parser.add_argument("image", metavar="IMAGE", help="the image (1 or ami-00000001)")
    parser.add_argument("-t", "--type", metavar="TYPE",
                        help="instance type (default: the server's, m1.small)")
    parser.add_argument("-n", "--instance-count", metavar="COUNT", default="1",
                        help="how many: N, or MIN-MAX (default 1)")
    parser.add_argument("-k", "--key", metavar="KEYNAME", help="key pair name")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-d", "--user-data", metavar="DATA", help="user data (text)")
    group.add_argument("-f", "--user-data-file", metavar="FILE", help="user data from a file")


def _count(value):
    """``N`` or ``MIN-MAX`` -> (min, max)."""
    m = _COUNT.match(value.strip())
    if not m:
        raise CommandError(f"Invalid instance count {value}: use N or MIN-MAX")
    low = int(m.group(1))
    high = int(m.group(2)) if m.group(2) else low
    if low < 1 or high < low:
        raise CommandError(f"Invalid instance count {value}: use N or MIN-MAX, 1 <= MIN <= MAX")
    return low, high


def do_run_instances(ctx, args):
    """``econe-run-instances IMAGE``: ``Owner ImageId InstanceId InstanceType``."""
    low, high = _count(args.instance_count)
    params = {"ImageId": image_param(args.image), "MinCount": str(low), "MaxCount": str(high)}
    if args.type:
        params["InstanceType"] = args.type
    if args.key:
        params["KeyName"] = args.key
    data = None
    if args.user_data is not None:
        data = args.user_data.encode("utf-8")
    elif args.user_data_file is not None:
        try:
            with open(args.user_data_file, "rb") as f:
                data = f.read()
        except OSError as e:
            raise CommandError(f"Cannot read user data file {args.user_data_file}: "
                               f"{e.strerror or e}") from None
    if data is not None:
        params["UserData"] = base64.b64encode(data).decode("ascii")
    root = ctx.client.call("RunInstances", params)
    owner = common.text(root, "ownerId")
    columns = [
        common.Column("Owner", 10, lambda i: _cell(owner)),
        common.Column("ImageId", 12, lambda i: _cell(ctx.image(common.text(i, "imageId")))),
        common.Column("InstanceId", 13,
                      lambda i: _cell(ctx.instance(common.text(i, "instanceId")))),
        common.Column("InstanceType", 0, lambda i: _cell(common.text(i, "instanceType"))),
    ]
    ctx.table(columns, root.findall("instancesSet/item"))


def _describe_instances_args(parser):
    parser.add_argument("instances", metavar="INSTANCE", nargs="*",
                        help="only these instances (18 or i-18)")


def do_describe_instances(ctx, args):
    """``econe-describe-instances``: ``Owner Id ImageId State IP Type``."""
    params = {f"InstanceId.{n}": instance_param(v) for n, v in enumerate(args.instances, 1)}
    root = ctx.client.call("DescribeInstances", params)
    rows = []
    for reservation in root.findall("reservationSet/item"):
        owner = common.text(reservation, "ownerId")
        rows.extend((owner, item) for item in reservation.findall("instancesSet/item"))

    def ip(item):
        return (common.text(item, "dnsName") or common.text(item, "ipAddress")
                or common.text(item, "privateIpAddress"))

    columns = [
        common.Column("Owner", 10, lambda r: _cell(r[0])),
        common.Column("Id", 11, lambda r: _cell(ctx.instance(common.text(r[1], "instanceId")))),
        common.Column("ImageId", 12, lambda r: _cell(ctx.image(common.text(r[1], "imageId")))),
        common.Column("State", 8, lambda r: _cell(common.text(r[1], "instanceState/name"))),
        common.Column("IP", 15, lambda r: _cell(ip(r[1]))),
        common.Column("Type", 0, lambda r: _cell(common.text(r[1], "instanceType"))),
    ]
    ctx.table(columns, rows)


def _terminate_args(parser):
    parser.add_argument("instances", metavar="INSTANCE", nargs="+",
                        help="the instances to terminate (18 or i-18)")


def do_terminate_instances(ctx, args):
    """``econe-terminate-instances INSTANCE...``: one
    ``Success: Terminating <id> in <previous> state`` line each (3.4)."""
    params = {f"InstanceId.{n}": instance_param(v) for n, v in enumerate(args.instances, 1)}
    root = ctx.client.call("TerminateInstances", params)
    for item in root.findall("instancesSet/item"):
        ctx.out("Success: Terminating %s in %s state" % (
            ctx.instance(common.text(item, "instanceId")),
            common.text(item, "previousState/name") or "unknown"))


#: name -> (description, configure, handler, has -H)
COMMANDS = {
    "econe-upload": ("Upload an image file to the cloud's image repository "
                     "(prints its ImageId)", _upload_args, do_upload, False),
    "econe-register": ("Register an uploaded image, or an object of the S3 repository, "
                       "as an image", _register_args, do_register, False),
    "econe-describe-images": ("List the images you may run",
                              _describe_images_args, do_describe_images, True),
    "econe-run-instances": ("Run instances of an image",
                            _run_instances_args, do_run_instances, True),
    "econe-describe-instances": ("List your instances",
                                 _describe_instances_args, do_describe_instances, True),
    "econe-terminate-instances": ("Terminate instances",
                                  _terminate_args, do_terminate_instances, False),
}


def _main(name, argv=None, stdout=None, stderr=None, environ=None):
    description, configure, handler, headers = COMMANDS[name]
    return run(name, description, configure, handler, argv=argv, stdout=stdout,
               stderr=stderr, environ=environ, headers=headers)


def upload_main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``econe-upload``; returns the exit status."""
    return _main("econe-upload", argv, stdout, stderr, environ)


def register_main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``econe-register``; returns the exit status."""
    return _main("econe-register", argv, stdout, stderr, environ)


def describe_images_main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``econe-describe-images``; returns the exit status."""
    return _main("econe-describe-images", argv, stdout, stderr, environ)


def run_instances_main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``econe-run-instances``; returns the exit status."""
    return _main("econe-run-instances", argv, stdout, stderr, environ)


def describe_instances_main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``econe-describe-instances``; returns the exit status."""
    return _main("econe-describe-instances", argv, stdout, stderr, environ)


def terminate_instances_main(argv=None, stdout=None, stderr=None, environ=None):
    """Entry point of ``econe-terminate-instances``; returns the exit status."""
    return _main("econe-terminate-instances", argv, stdout, stderr, environ)


def main(argv=None):
    """``python -m nebtwist.cli.econe COMMAND ARGS...``: COMMAND is
    ``describe-images`` (or ``econe-describe-images``), etc."""
    argv = sys.argv[1:] if argv is None else list(argv)
    names = ", ".join(n[len("econe-"):] for n in COMMANDS)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(f"usage: python -m nebtwist.cli.econe COMMAND [ARGS...]\n"
                         f"commands: {names}\n")
        return 0 if argv else 1
    name = argv[0] if argv[0].startswith("econe-") else "econe-" + argv[0]
    if name not in COMMANDS:
        sys.stderr.write(f"econe: unknown command {argv[0]} (commands: {names})\n")
        return 1
    return _main(name, argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
