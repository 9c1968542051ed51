"""EC2 key pair actions (AWS EC2 API reference, API_CreateKeyPair,
API_ImportKeyPair, API_DescribeKeyPairs, API_DeleteKeyPair) over the core's
key pairs (:mod:`nebtwist.core.requests_keypairs`): :class:`KeyPairActions`,
a mixin of :class:`nebtwist.api.ec2.resource.EC2Resource`.
"""

from nebtwist.api.ec2.base import EC2Error, _matches, _printable
from nebtwist.api.ec2.params import _iso
from nebtwist.core.requests_keypairs import BadPublicKey, KeyPairExists, NoSuchKeyPair


class KeyPairActions:
    """Key pairs: CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair."""

    @staticmethod
    def _key_name(params):
        name = params.require("KeyName")
        if not name.isascii() or not _printable(name, 255):
            raise EC2Error("InvalidParameterValue",
                           f"Invalid value '{name}' for KeyName: 1 to 255 ASCII characters.")
        return name

    async def create_key_pair(self, user, params, out):
        """CreateKeyPair: a new RSA 2048 key pair (``KeyType`` rsa, ``KeyFormat``
        pem), made by the core (:meth:`nebtwist.core.requests_keypairs.
        KeyPairRequests.keypair_create`). The private key is answered
        (``keyMaterial``, PEM) and never stored; the user keeps the name, id,
        fingerprint (SHA1 of the DER PKCS#8 private key, colon hex, as AWS)
        and OpenSSH public key.

        :raises EC2Error: InvalidKeyPair.Duplicate, InvalidParameterValue.
        """
        name = self._key_name(params)
        for param, allowed in (("KeyType", "rsa"), ("KeyFormat", "pem")):
            value = params.get(param) or allowed
            if value != allowed:
                raise EC2Error("InvalidParameterValue",
                               f"Invalid value '{value}' for {param}: only {allowed} is "
                               f"supported.")
        try:
            pair, pem = await self.requests.keypair_create(user, name, reactor=self._reactor())
        except KeyPairExists as e:
            raise EC2Error("InvalidKeyPair.Duplicate", str(e)) from None
        out.sub(out.root, "keyName", name)
        out.sub(out.root, "keyFingerprint", pair.fingerprint)
        out.sub(out.root, "keyMaterial", pem)
        out.sub(out.root, "keyPairId", pair.id)

    async def import_key_pair(self, user, params, out):
        """ImportKeyPair: keep ``PublicKeyMaterial`` (base64 of an OpenSSH
        RSA or ED25519 public key) as key pair ``KeyName``; the fingerprint
        is the MD5 of the DER SubjectPublicKeyInfo, colon hex (RSA), as AWS
        (:meth:`nebtwist.core.requests_keypairs.KeyPairRequests.keypair_import`).

        :raises EC2Error: InvalidKey.Format, InvalidKeyPair.Duplicate.
        """
        name = self._key_name(params)
        material = params.require("PublicKeyMaterial")
        try:
            pair = await self.requests.keypair_import(user, name, material)
        except BadPublicKey as e:
            raise EC2Error("InvalidKey.Format", str(e)) from None
        except KeyPairExists as e:
            raise EC2Error("InvalidKeyPair.Duplicate", str(e)) from None
        out.sub(out.root, "keyName", name)
        out.sub(out.root, "keyFingerprint", pair.fingerprint)
        out.sub(out.root, "keyPairId", pair.id)

    async def describe_key_pairs(self, user, params, out):
        """DescribeKeyPairs: the user's key pairs (``KeyName.N``,
        ``KeyPairId.N``; filters key-name, key-pair-id, fingerprint,
        key-type); ``IncludePublicKey=true`` adds ``publicKey``.

        :raises EC2Error: InvalidKeyPair.NotFound for a name or id the user
            does not have.
        """
        pairs = self.requests.keypair_list(user)
        names, ids = params.indexed("KeyName"), params.indexed("KeyPairId")
        for wanted, field, what in ((names, "name", "key pair"), (ids, "id", "key pair ID")):
            for value in wanted:
                if not any(getattr(k, field) == value for k in pairs):
                    raise EC2Error("InvalidKeyPair.NotFound",
                                   f"The {what} '{value}' does not exist")
        if names:
            pairs = [k for k in pairs if k.name in names]
        if ids:
            pairs = [k for k in pairs if k.id in ids]
        fields = {"key-name": "name", "key-pair-id": "id", "fingerprint": "fingerprint",
                  "key-type": "type"}
        for name, wanted in params.filters():
            if name not in fields:
                raise EC2Error("InvalidParameterValue",
                               f"The filter '{name}' is invalid "
                               f"(known: {', '.join(sorted(fields))}).")
            pairs = [k for k in pairs if _matches([getattr(k, fields[name])], wanted)]
        include = params.bool("IncludePublicKey")
        key_set = out.sub(out.root, "keySet")
        for k in pairs:
            item = out.sub(key_set, "item")
            out.sub(item, "keyPairId", k.id)
            out.sub(item, "keyName", k.name)
            out.sub(item, "keyFingerprint", k.fingerprint)
            out.sub(item, "keyType", k.type)
            if k.created is not None:
                out.sub(item, "createTime", _iso(k.created))
            if include:
                out.sub(item, "publicKey", k.public_key)

    async def delete_key_pair(self, user, params, out):
        """DeleteKeyPair (``KeyName`` or ``KeyPairId``): forget the key pair;
        deleting one that does not exist succeeds too, as AWS. Instances
        started with it keep their key."""
        key_id = params.get("KeyPairId")
        name = None if key_id else self._key_name(params)
        try:
            pair = await self.requests.keypair_delete(user, name=name, key_id=key_id)
        except NoSuchKeyPair:
            pass
        else:
            out.sub(out.root, "keyPairId", pair.id)
        out.sub(out.root, "return", "true")

