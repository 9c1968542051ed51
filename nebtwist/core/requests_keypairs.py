"""Key pairs of users: SSH public keys kept by the core for VMs to receive.

A user's key pairs are ``EC2_KEYPAIR = [ NAME, ID, FINGERPRINT, PUBLIC_KEY,
TYPE, CREATED ]`` vectors of the user's template (written through the user
pool, so they survive a restart), as OpenNebula's econe server kept them in
its user templates. The private key of a created pair is given once and never
stored (AWS EC2 API reference, API_CreateKeyPair).

Authorization: a user sees and changes its own key pairs; oneadmin (and the
oneadmin group) those of any user (``uid``), as ``one.user.info``.

Errors: :class:`KeyPairExists` (an :class:`~nebtwist.errors.ActionError`),
:class:`NoSuchKeyPair` (:class:`~nebtwist.errors.NoSuchObject`),
:class:`BadPublicKey` (:class:`~nebtwist.errors.APIError`),
:class:`~nebtwist.errors.AuthorizationError`.
"""

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass

from twisted.internet import threads

from nebtwist.core.requests_access import vectors
from nebtwist.errors import ActionError, APIError, AuthorizationError, NoSuchObject

#: The template attribute holding the key pairs.
KEYPAIR = "EC2_KEYPAIR"


class KeyPairExists(ActionError):
    """The user has a key pair of that name already."""


class NoSuchKeyPair(NoSuchObject):
    """The user has no key pair of that name (or id)."""


class BadPublicKey(APIError):
    """Not an OpenSSH RSA (1024 to 16384 bits) or ED25519 public key."""


@dataclass(frozen=True)
class KeyPair:
    """A key pair of a user.

    :ivar name: the user's name for it (unique per user).
    :ivar fingerprint: RSA keys created here: SHA1 of the DER PKCS#8 private
        key; imported RSA keys: MD5 of the DER SubjectPublicKeyInfo; ED25519
        keys: base64 SHA256 of the OpenSSH blob (colon hex for the first two;
        as AWS computes them).
    :ivar public_key: the OpenSSH public key line (``ssh-rsa AAAA...``).
    :ivar created: seconds since the epoch (int), or None when not recorded.
    :ivar id: ``key-<17 hex>``.
    :ivar type: ``rsa`` or ``ed25519``.
    """

    name: str
    fingerprint: str
    public_key: str
    created: int = None
    id: str = ""
    type: str = "rsa"

    @classmethod
    def from_vector(cls, v):
        created = v.get("CREATED", "")
        return cls(v.get("NAME", ""), v.get("FINGERPRINT", ""), v.get("PUBLIC_KEY", ""),
                   int(created) if created.isdigit() else None, v.get("ID", ""),
                   v.get("TYPE", "rsa") or "rsa")


def _colon_hex(digest):
    return ":".join(f"{b:02x}" for b in digest)


def new_rsa_key():
    """A new RSA 2048 key pair (slow: run it in a thread).

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


def imported_key(material):
    """Check a public key to import.

    :param material: base64 of an OpenSSH public key line (``ssh-rsa AAAA...
        comment``; boto3 and the AWS CLI encode it so), or the line itself.
    :return: ``(key type, fingerprint, OpenSSH public key str)``. RSA keys
        (1024 to 16384 bits) have the MD5 of their DER SubjectPublicKeyInfo,
        colon hex; ED25519 keys the base64 SHA256 of their OpenSSH blob, as
        AWS computes for imported keys (API_ImportKeyPair).
    :raises BadPublicKey: anything else.
    """
    from cryptography.exceptions import UnsupportedAlgorithm
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
    except (ValueError, TypeError, IndexError, UnsupportedAlgorithm):
        key = None  # an unknown key type ("not a key") too: not a 500
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
        raise BadPublicKey("Key is not in valid OpenSSH public key format (an RSA or ED25519 "
                           "public key, base64 encoded).")
    public = key.public_bytes(serialization.Encoding.OpenSSH,
                              serialization.PublicFormat.OpenSSH).decode("ascii")
    return kind, fingerprint, public


class KeyPairRequests:
    """Mixin of :class:`nebtwist.core.requests.Requests` (``self.nebula``,
    ``self._store_attributes`` come from it)."""

    def _keypair_owner(self, actor, uid):
        if uid is None or uid == -1 or uid == actor.oid:
            return actor
        if not self.nebula.is_admin(actor):
            raise AuthorizationError(f"User [{actor.oid}] : Not authorized to perform "
                                     f"MANAGE USER [{uid}].")
        return self.nebula.userpool.get(uid)

    def keypair_list(self, actor, uid=None):
        """The key pairs of ``actor`` (or of user ``uid``: oneadmin only), in
        creation order, as :class:`KeyPair` objects.

        :raises AuthorizationError: another user's, for a non-admin.
        :raises NoSuchObject: no user ``uid``.
        """
        user = self._keypair_owner(actor, uid)
        return [KeyPair.from_vector(v) for v in vectors(user, KEYPAIR)]

    def keypair_get(self, actor, name, uid=None):
        """The :class:`KeyPair` named ``name`` of ``actor`` (or user ``uid``).

        :raises NoSuchKeyPair: none of that name.
        :raises AuthorizationError: another user's, for a non-admin.
        """
        for pair in self.keypair_list(actor, uid):
            if pair.name == name:
                return pair
        raise NoSuchKeyPair(f"The key pair '{name}' does not exist")

    async def _keypair_add(self, actor, uid, name, kind, fingerprint, public):
        user = self._keypair_owner(actor, uid)
        if not isinstance(name, str) or not name:
            raise APIError("The key pair name cannot be empty.")
        if any(p.name == name for p in self.keypair_list(actor, uid)):
            raise KeyPairExists(f"The keypair '{name}' already exists.")
        vector = {"NAME": name, "ID": f"key-{secrets.token_hex(9)[:17]}",
                  "FINGERPRINT": fingerprint, "PUBLIC_KEY": public, "TYPE": kind,
                  "CREATED": str(int(self.now()))}
        await self._store_attributes([("user", user, KEYPAIR,
                                       user.template.get_all(KEYPAIR) + [vector], ())])
        return KeyPair.from_vector(vector)

    async def keypair_create(self, actor, name, uid=None, reactor=None):
        """Create an RSA 2048 key pair named ``name`` (the key is made in a
        thread of ``reactor``'s pool, default the global reactor's).

        :return: ``(KeyPair, private key PEM str)``; the private key is not
            kept.
        :raises KeyPairExists: the user has a key pair of that name.
        :raises APIError: an empty name.
        :raises AuthorizationError: another user's, for a non-admin.
        """
        self._keypair_owner(actor, uid)
        if any(p.name == name for p in self.keypair_list(actor, uid)):
            raise KeyPairExists(f"The keypair '{name}' already exists.")
        if reactor is None:
            from twisted.internet import reactor
        pem, fingerprint, public = await threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), new_rsa_key)
        pair = await self._keypair_add(actor, uid, name, "rsa", fingerprint, public)
        return pair, pem

    async def keypair_import(self, actor, name, material, uid=None):
        """Keep the public key ``material`` (:func:`imported_key`) as key pair
        ``name``; returns the :class:`KeyPair`.

        :raises BadPublicKey: not an RSA or ED25519 OpenSSH public key.
        :raises KeyPairExists: the user has a key pair of that name.
        :raises AuthorizationError: another user's, for a non-admin.
        """
        kind, fingerprint, public = imported_key(material)
        return await self._keypair_add(actor, uid, name, kind, fingerprint, public)

    async def keypair_delete(self, actor, name=None, key_id=None, uid=None):
        """Forget the key pair named ``name`` (or whose id is ``key_id``).
        VMs started with it keep their key.

        :return: the :class:`KeyPair` removed.
        :raises NoSuchKeyPair: none such.
        :raises AuthorizationError: another user's, for a non-admin.
        """
        user = self._keypair_owner(actor, uid)
        field, value = ("ID", key_id) if key_id else ("NAME", name)
        found = [v for v in vectors(user, KEYPAIR) if v.get(field) == value]
        if not found:
            what = "key pair ID" if key_id else "key pair"
            raise NoSuchKeyPair(f"The {what} '{value}' does not exist")
        kept = [v for v in user.template.get_all(KEYPAIR)
                if not (isinstance(v, dict) and v.get(field) == value)]
        await self._store_attributes([("user", user, KEYPAIR, kept, ())])
        return KeyPair.from_vector(found[0])
