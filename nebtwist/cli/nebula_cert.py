"""``nebula-cert``: a private key and a self-signed certificate for a first TLS set-up.

::

    nebula-cert [--cn NAME] [--san DNS-or-IP ...] [--days N] [--rsa]
                [--port PORT] [--force] --key key.pem --cert cert.pem

Writes an EC P-256 key (``--rsa``: RSA 2048) in PKCS#8 PEM, mode 0600, and a
self-signed X.509 v3 certificate (SHA-256, serverAuth) whose subject
alternative names are ``localhost``, ``127.0.0.1``, ``::1`` and every
``--san``; then prints the ``LISTEN`` line for oned.conf. Existing files are
not overwritten without ``--force``. Exit status: 0 written, 1 refused or
failed (one ``nebula-cert: ...`` line on stderr), 2 usage error.

OpenNebula 3.4 has no such command (its fronts were put behind a TLS proxy);
this is the nebtwist first-set-up helper the TLS issue asks for.
"""

import argparse
import datetime
import ipaddress
import os
import socket
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nebtwist.tls import escape

#: Names always in the certificate, so local clients can verify it.
DEFAULT_SANS = ("localhost", "127.0.0.1", "::1")


def _general_name(value):
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def make_self_signed(cn, sans=(), days=365, key_type="ec", now=None):
    """Build a key and its self-signed certificate.

    :param cn: the subject (and issuer) common name.
    :param sans: extra subject alternative names (DNS names or IP addresses,
        as strings); :data:`DEFAULT_SANS` are always included.
    :param days: validity in days from ``now`` (not-before is 5 minutes
        earlier, for clock skew).
    :param key_type: ``"ec"`` (P-256) or ``"rsa"`` (2048 bits).
    :param now: an aware ``datetime`` (default: the current UTC time).
    :return: ``(key_pem bytes, cert_pem bytes)``.
    :raises ValueError: ``days`` < 1, an unknown key_type or an invalid name.
    """
    if days < 1:
        raise ValueError("--days must be at least 1")
    if key_type == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(f"unknown key type {key_type!r}")
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    names = []
    for value in list(DEFAULT_SANS) + list(sans):
        if value and value not in names:
            names.append(value)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=(key_type == "rsa"),
            content_commitment=False, data_encipherment=False, key_agreement=False,
            key_cert_sign=False, crl_sign=False, encipher_only=False,
            decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _write(path, data, mode, force):
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)  # an existing file (--force) gets the mode too
        os.write(fd, data)
    finally:
        os.close(fd)


def build_parser():
    p = argparse.ArgumentParser(
        prog="nebula-cert",
        description="Write a private key and a self-signed certificate for nebtwist's "
                    "TLS listeners, and print the oned.conf LISTEN line.")
    p.add_argument("--key", required=True, help="private key file to write (mode 0600)")
    p.add_argument("--cert", required=True, help="certificate file to write (mode 0644)")
    p.add_argument("--cn", default=None, help="common name (default: this host's FQDN)")
    p.add_argument("--san", action="append", default=[], metavar="DNS-or-IP",
                   help="extra subject alternative name (repeatable); localhost, "
                        "127.0.0.1 and ::1 are always included")
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    p.add_argument("--rsa", action="store_true", help="RSA 2048 key instead of EC P-256")
    p.add_argument("--port", type=int, default=2634,
                   help="port in the printed LISTEN line (default 2634)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    return p


def main(argv=None, stdout=None, stderr=None):
    """Run the command; returns the exit status (see the module docstring)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    args = build_parser().parse_args(argv)
    key_path, cert_path = os.path.abspath(args.key), os.path.abspath(args.cert)
    if key_path == cert_path:
        print("nebula-cert: --key and --cert must be different files", file=stderr)
        return 1
    if not args.force:
        for path in (key_path, cert_path):
            if os.path.exists(path):
                print(f"nebula-cert: {path} exists (use --force to overwrite)", file=stderr)
                return 1
    cn = args.cn or socket.getfqdn() or "localhost"
    try:
        key_pem, cert_pem = make_self_signed(cn, args.san, args.days,
                                             "rsa" if args.rsa else "ec")
        _write(key_path, key_pem, 0o600, args.force)
        _write(cert_path, cert_pem, 0o644, args.force)
    except (ValueError, OSError) as e:
        print(f"nebula-cert: {e}", file=stderr)
        return 1
    print(f"wrote {key_path} and {cert_path}", file=stdout)
    print("add to oned.conf:", file=stdout)
    print(f'LISTEN = "ssl:{args.port}:privateKey={escape(key_path)}:'
          f'certKey={escape(cert_path)}"', file=stdout)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
