"""TLS termination for nebtwist's network fronts: TLS 1.2 or newer only.

A front listens on Twisted endpoint description strings (``tcp:2633``,
``ssl:2634:privateKey=key.pem:certKey=cert.pem``, ...). Twisted's own
``ssl:`` parser builds a ``CertificateOptions`` that still accepts TLS 1.0 and
1.1; :func:`server_endpoint` parses ``ssl:`` descriptions itself, with
Twisted's syntax (``:`` separates, ``=`` assigns, ``\\`` escapes the next
character) and parameters (the port, ``interface``, ``backlog``,
``privateKey`` -- default ``server.pem`` --, ``certKey`` -- default the
private key file --, ``extraCertChain``, ``dhParameters``), and builds an
:class:`~twisted.internet.endpoints.SSL4ServerEndpoint` whose
``CertificateOptions`` has ``raiseMinimumTo=TLSv1_2``. ``sslmethod`` is
refused (it could only lower the floor). Other descriptions go to Twisted's
``serverFromString`` unchanged.

Key and certificate files are read and checked at start-up, so a wrong path,
an unreadable file, a file that is not PEM, or a key that does not belong to
the certificate is one :class:`TLSConfigError` naming the file, not a
traceback at the first connection.

The XML-RPC core (``nebtwist.tap``) uses :func:`listen`; another front (EC2,
S3, ...) calls it with its own endpoint list and site.

OpenNebula 3.4 itself serves XML-RPC over plain HTTP only (xmlrpc-c's Abyss
server; ``RequestManager.cc``) and leaves TLS to a reverse proxy; this module
is the nebtwist extension the issue asks for.
"""

import os
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString

__all__ = ["TLSConfigError", "parse_description", "server_endpoint", "listen",
           "certificate_options"]


class TLSConfigError(ValueError):
    """An endpoint description or its key/certificate files are unusable.

    The message is one line and names the description's parameter and file.
    """


def parse_description(description):
    """Split an endpoint description with Twisted's strports syntax.

    ``"ssl:8443:privateKey=/a\\:b/k.pem"`` -> ``("ssl", ["8443"],
    {"privateKey": "/a:b/k.pem"})``.

    :param description: a ``str``.
    :return: ``(kind, positional args, keyword args)``; kind is the first field.
    :raises TLSConfigError: an empty description.
    """
    fields = []  # each: list of parts split on the first unescaped '='
    current, parts = "", []
    it = iter(description)
    for ch in it:
        if ch == "\\":
            current += next(it, "")
        elif ch == ":":
            parts.append(current)
            fields.append(parts)
            current, parts = "", []
        elif ch == "=" and not parts:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    fields.append(parts)
    if not fields or fields[0] == [""]:
        raise TLSConfigError("empty endpoint description")
    kind = fields[0][0]
    args, kw = [], {}
    for f in fields[1:]:
        if len(f) == 1:
            args.append(f[0])
        else:
            kw[f[0]] = f[1]
    return kind, args, kw


def _read(param, path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(f"{param} {path}: cannot read: {e.strerror or e}") from None


_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _load_certs(param, path):
    data = _read(param, path)
    blocks = _CERT_RE.findall(data)
    if not blocks:
        raise TLSConfigError(f"{param} {path}: no PEM certificate in the file")
    certs = []
    for block in blocks:
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError as e:
            raise TLSConfigError(f"{param} {path}: not a valid PEM certificate ({e})") from None
    return certs


def _load_key(param, path):
    data = _read(param, path)
    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise TLSConfigError(f"{param} {path}: no PEM private key in the file")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSConfigError(f"{param} {path}: the private key is encrypted "
                             "(a server key must not need a passphrase)") from None
    except (ValueError, Exception) as e:  # cryptography raises ValueError/UnsupportedAlgorithm
        raise TLSConfigError(f"{param} {path}: not a valid PEM private key ({e})") from None


def _public_der(key):
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_options(private_key, cert_key=None, extra_cert_chain=None, dh_parameters=None):
    """A server ``CertificateOptions`` that negotiates TLS 1.2 or newer only.

    :param private_key: path of a PEM private key (unencrypted).
    :param cert_key: path of the PEM certificate (default: ``private_key``,
        which then holds both, as in Twisted's ``ssl:`` endpoint).
    :param extra_cert_chain: path of PEM intermediate certificates, or None.
    :param dh_parameters: path of a PEM DH parameters file, or None.
    :return: :class:`twisted.internet.ssl.CertificateOptions`.
    :raises TLSConfigError: a file missing, unreadable, not PEM, or the key not
        matching the certificate.
    """
    from OpenSSL import crypto
    from twisted.internet import ssl

    if cert_key is None:
        cert_key = private_key
    key = _load_key("privateKey", private_key)
    cert = _load_certs("certKey", cert_key)[0]
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise TLSConfigError(f"privateKey {private_key} does not match the certificate "
                             f"in certKey {cert_key}")
    chain = None
    if extra_cert_chain is not None:
        chain = [crypto.X509.from_cryptography(c)
                 for c in _load_certs("extraCertChain", extra_cert_chain)]
    dh = None
    if dh_parameters is not None:
        _read("dhParameters", dh_parameters)
        from twisted.python.filepath import FilePath
        dh = ssl.DiffieHellmanParameters.fromFile(FilePath(dh_parameters))
    return ssl.CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(cert),
        extraCertChain=chain,
        dhParameters=dh,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )


_SSL_PARAMS = {"port", "interface", "backlog", "privateKey", "certKey",
               "extraCertChain", "dhParameters"}


def server_endpoint(reactor, description):
    """A listening endpoint for ``description``; ``ssl:`` ones are TLS 1.2+.

    :param reactor: the reactor (IReactorTCP/IReactorSSL).
    :param description: a Twisted endpoint string, e.g. ``"tcp:2633"`` or
        ``"ssl:2634:privateKey=key.pem:certKey=cert.pem"``.
    :return: an ``IStreamServerEndpoint``.
    :raises TLSConfigError: a bad ``ssl:`` description or its files (see
        :func:`certificate_options`), or any description Twisted rejects.
    """
    try:
        kind, args, kw = parse_description(description)
    except TLSConfigError as e:
        raise TLSConfigError(f"{description!r}: {e}") from None
    if kind != "ssl":
        try:
            return serverFromString(reactor, description)
        except (ValueError, TypeError, KeyError) as e:
            raise TLSConfigError(f"{description!r}: {e}") from None
    unknown = sorted(set(kw) - _SSL_PARAMS)
    if "sslmethod" in kw:
        raise TLSConfigError(f"{description!r}: sslmethod is not supported "
                             "(nebtwist serves TLS 1.2 or newer only)")
    if unknown:
        raise TLSConfigError(f"{description!r}: unknown parameter(s) {', '.join(unknown)}")
    names = ["port", "privateKey", "certKey", "sslmethod", "interface", "backlog",
             "extraCertChain", "dhParameters"]  # Twisted's positional order
    for name, value in zip(names, args):
        if name in kw:
            raise TLSConfigError(f"{description!r}: {name} given twice")
        kw[name] = value
    if len(args) > len(names):
        raise TLSConfigError(f"{description!r}: too many fields")
    if "port" not in kw:
        raise TLSConfigError(f"{description!r}: no port")
    try:
        port = int(kw["port"])
        backlog = int(kw.get("backlog", 50))
    except ValueError:
        raise TLSConfigError(f"{description!r}: port and backlog must be integers") from None
    try:
        options = certificate_options(
            kw.get("privateKey", "server.pem"), kw.get("certKey"),
            kw.get("extraCertChain"), kw.get("dhParameters"))
    except TLSConfigError as e:
        raise TLSConfigError(f"{description!r}: {e}") from None
    return SSL4ServerEndpoint(reactor, port, options, backlog=backlog,
                              interface=kw.get("interface", ""))


async def listen(reactor, descriptions, factory):
    """Listen ``factory`` on every description (all checked before any listens).

    :param descriptions: endpoint strings (see :func:`server_endpoint`).
    :return: the list of ``IListeningPort``, in order.
    :raises TLSConfigError: a bad description or key/certificate file.
    :raises twisted.internet.error.CannotListenError: a port cannot be bound
        (ports opened before it are closed).
    """
    endpoints = [server_endpoint(reactor, d) for d in descriptions]
    ports = []
    try:
        for ep in endpoints:
            ports.append(await ep.listen(factory))
    except BaseException:
        for p in ports:
            await p.stopListening()
        raise
    return ports


def escape(value):
    """Escape ``value`` (a path) for an endpoint description (``:``, ``=``, ``\\``)."""
    return re.sub(r"([\\:=])", r"\\\1", os.fspath(value))
