"""A small synchronous XML-RPC client for the OpenNebula 3.4 API.

This is what the command-line tools (``onehost``, ``onevm``, ...) use to
talk to oned.  It is deliberately blocking and dependency-free (stdlib
:mod:`xmlrpc.client` over one keep-alive HTTP connection).

Where to connect and who to be follow the OpenNebula clients:

* the endpoint is ``$ONE_XMLRPC``, else ``http://localhost:2633/RPC2``;
* the session string is the first line of the file named by ``$ONE_AUTH``,
  else ``~/.one/one_auth``: ``user:password``.  As in the 3.2/3.4 clients
  the password is sent as written (the server hashes it);
* an ``https://`` endpoint's certificate is checked against the system's
  trusted CAs plus every PEM file in the folder ``$ONE_CERT_DIR`` (a private
  CA, or nebula-cert's self-signed certificate), as OpenNebula's Ruby OCA
  (``ONE_CERT_DIR``, 4.x+ ``client.rb``) does.

Every method replies ``[true, value, code]`` or ``[false, message, code]``;
:meth:`OneClient.call` returns the value or raises :class:`OneError`.
Transport trouble (connection refused, HTTP errors, XML-RPC faults,
garbled replies) also raises :class:`OneError`, with a one-line message and
code ``-1``.
"""

import http.client
import os
import socket
import ssl
import urllib.parse
import xmlrpc.client
from xml.parsers.expat import ExpatError

#: Where oned listens unless ``$ONE_XMLRPC`` says otherwise.
DEFAULT_ENDPOINT = "http://localhost:2633/RPC2"

#: Error code used for failures that did not come from the server's reply.
CLIENT_ERROR = -1


class OneError(Exception):
    """A failed call: the server's ``[false, message, code]`` or a local failure.

    ``message`` is what the user should see (for server errors, exactly the
    server's text, e.g. ``[HostInfo] Error getting host [9].``); ``code``
    is the server's error code, or ``-1`` for client-side failures.
    """

    def __init__(self, message, code=CLIENT_ERROR):
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self):
        return self.message


def _environ(environ):
    """The environment mapping to read settings from."""
    return os.environ if environ is None else environ


def default_endpoint(environ=None):
    """The XML-RPC endpoint: ``$ONE_XMLRPC`` or :data:`DEFAULT_ENDPOINT`."""
    return _environ(environ).get("ONE_XMLRPC") or DEFAULT_ENDPOINT


def auth_file_path(environ=None):
    """The credentials file: ``$ONE_AUTH`` or ``~/.one/one_auth``."""
    env = _environ(environ)
    path = env.get("ONE_AUTH")
    if path:
        return path
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".one", "one_auth")


def read_session(path):
    """Read the session string (``user:password``) from an auth file.

    Only the first line counts; surrounding whitespace is dropped.  Raises
    :class:`OneError` if the file is missing, unreadable or malformed.
    """
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline().strip()
    except FileNotFoundError:
        raise OneError("ONE_AUTH file %s not found" % path) from None
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise OneError("Cannot read ONE_AUTH file %s: %s" % (path, reason)) from None
    user, sep, _password = line.partition(":")
    if not sep or not user:
        raise OneError(
            "ONE_AUTH file %s is malformed, it must contain user:password" % path
        )
    return line


def _one_line(text):
    """Collapse ``text`` to a single line."""
    return " ".join(str(text).split())


class _TimeoutMixin:
    """Gives the stdlib transports a socket timeout."""

    def __init__(self, timeout=None, **kwargs):
        super().__init__(**kwargs)
        self._timeout = timeout

    def make_connection(self, host):
        """Reuse or open the keep-alive connection, applying the timeout."""
        conn = super().make_connection(host)
        if self._timeout is not None:
            conn.timeout = self._timeout
        return conn


class _Transport(_TimeoutMixin, xmlrpc.client.Transport):
    """Plain HTTP transport (persistent HTTP/1.1 connection)."""


class _SafeTransport(_TimeoutMixin, xmlrpc.client.SafeTransport):
    """HTTPS transport (persistent HTTP/1.1 connection)."""


def ssl_context(environ=None):
    """The TLS context of ``https://`` endpoints: Python's default verifying
    context (system CAs, host name checked) plus each file of the folder
    ``$ONE_CERT_DIR`` as a trusted certificate (OpenNebula's OCA loads every
    file there into its store too; any file name works, not only ``<hash>.0``).

    :raises OneError: the folder or one of its files cannot be read as PEM.
    """
    context = ssl.create_default_context()
    cert_dir = _environ(environ).get("ONE_CERT_DIR")
    if cert_dir:
        try:
            names = sorted(os.listdir(cert_dir))
        except OSError as e:
            raise OneError(f"ONE_CERT_DIR {cert_dir}: {e.strerror or e}") from None
        for name in names:
            path = os.path.join(cert_dir, name)
            if not os.path.isfile(path):
                continue
            try:
                context.load_verify_locations(cafile=path)
            except (OSError, ssl.SSLError) as e:
                raise OneError(f"ONE_CERT_DIR {path}: not a PEM certificate "
                               f"({_one_line(getattr(e, 'strerror', None) or e)})") from None
    return context


class OneClient:
    """A blocking OpenNebula XML-RPC client bound to one endpoint and session.

    ``endpoint`` defaults to :func:`default_endpoint`; ``session`` defaults
    to the contents of the auth file (:func:`auth_file_path`), read when the
    client is built, so a missing file raises :class:`OneError` at once.
    ``timeout`` (seconds) bounds every socket operation; ``environ`` replaces
    :data:`os.environ` for looking up ``ONE_XMLRPC``, ``ONE_AUTH``,
    ``ONE_CERT_DIR`` and ``HOME``.  The HTTP connection is kept open between calls; :meth:`close`
    (or leaving a ``with`` block) closes it.
    """

    def __init__(self, endpoint=None, session=None, timeout=None, environ=None):
        self.endpoint = endpoint or default_endpoint(environ)
        if session is None:
            session = read_session(auth_file_path(environ))
        self.session = session
        scheme = urllib.parse.urlsplit(self.endpoint).scheme.lower()
        if scheme == "https":
            transport = _SafeTransport(timeout=timeout, context=ssl_context(environ))
        elif scheme == "http":
            transport = _Transport(timeout=timeout)
        else:
            raise OneError(
                "Invalid XML-RPC endpoint %s: only http:// and https:// are supported"
                % self.endpoint
            )
        try:
            self._proxy = xmlrpc.client.ServerProxy(
                self.endpoint, transport=transport, allow_none=False
            )
        except OSError as e:
            raise OneError("Invalid XML-RPC endpoint %s: %s" % (self.endpoint, e)) from None

    def call(self, method, *args):
        """Call ``method(session, *args)`` and return the reply's value.

        A 1.4-style ``[true]`` (no value) returns ``None``.  Raises
        :class:`OneError` with the server's message and code on
        ``[false, message, code]``, and with a one-line description (code
        ``-1``) when the call could not be made or understood.
        """
        try:
            reply = getattr(self._proxy, method)(self.session, *args)
        except xmlrpc.client.Fault as e:
            raise OneError(
                "XML-RPC fault from %s: %s (fault code %s)"
                % (self.endpoint, _one_line(e.faultString), e.faultCode)
            ) from None
        except xmlrpc.client.ProtocolError as e:
            raise OneError(
                "HTTP error from %s: %s %s" % (self.endpoint, e.errcode, _one_line(e.errmsg))
            ) from None
        except ConnectionRefusedError:
            raise OneError("Cannot connect to %s: connection refused" % self.endpoint) from None
        except (socket.timeout, TimeoutError):
            raise OneError("Timed out talking to %s" % self.endpoint) from None
        except http.client.HTTPException as e:
            raise OneError(
                "Bad HTTP reply from %s: %s" % (self.endpoint, _one_line(repr(e)))
            ) from None
        except (ExpatError, xmlrpc.client.ResponseError) as e:
            raise OneError(
                "Malformed XML-RPC reply from %s: %s" % (self.endpoint, _one_line(e))
            ) from None
        except OSError as e:
            reason = e.strerror or str(e) or e.__class__.__name__
            raise OneError("Cannot connect to %s: %s" % (self.endpoint, _one_line(reason))) from None
        return self._unpack(method, reply)

    def _unpack(self, method, reply):
        """Turn ``[ok, value, code]`` into a value or a :class:`OneError`."""
        if not isinstance(reply, (list, tuple)) or not reply or not isinstance(reply[0], bool):
            raise OneError(
                "Unexpected reply from %s to %s: %s"
                % (self.endpoint, method, _one_line(repr(reply))[:200])
            )
        if reply[0]:
            return reply[1] if len(reply) > 1 else None
        message = str(reply[1]) if len(reply) > 1 else "%s failed" % method
        code = reply[2] if len(reply) > 2 and isinstance(reply[2], int) else CLIENT_ERROR
        raise OneError(message, code)

    def close(self):
        """Close the keep-alive HTTP connection (the client stays usable)."""
        try:
            self._proxy("close")()
        except Exception:  # closing must never fail loudly
            pass

    def __enter__(self):
        """Use the client as a context manager that closes it on exit."""
        return self

    def __exit__(self, *exc_info):
        """Close the connection when leaving the ``with`` block."""
        self.close()
        return False
