"""The requests layer's key pairs (nebtwist.core.requests_keypairs), through
an in-process daemon: create, import, list, get, delete; authorization (a
user sees and changes only its own; oneadmin any user's) and errors."""

import base64

from twisted.internet import defer
from twisted.trial import unittest

from nebtwist.core.requests_keypairs import (BadPublicKey, KeyPair, KeyPairExists,
                                             NoSuchKeyPair, imported_key)
from nebtwist.errors import ActionError, APIError, AuthorizationError, NoSuchObject
from nebtwist.testing import start_nebula

#: An ED25519 OpenSSH public key.
ED25519 = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl "
           "test@example")


class KeyPairRequestsTests(unittest.TestCase):

    timeout = 120

    def test_key_pairs(self):
        async def run():
            neb = await start_nebula(self, ["SCHED_INTERVAL=3600"])
            requests = neb.service.requests
            admin = requests.authenticate("oneadmin", "onecloud")
            for name in ("alice", "bob"):
                ok, _, _ = await neb.call("one.user.allocate", name, "pw")
                self.assertTrue(ok)
            alice = requests.authenticate("alice", "pw")
            bob = requests.authenticate("bob", "pw")
            self.assertEqual(requests.keypair_list(alice), [])

            pair, pem = await requests.keypair_create(alice, "k1")
            self.assertIsInstance(pair, KeyPair)
            self.assertEqual((pair.name, pair.type), ("k1", "rsa"))
            self.assertTrue(pem.startswith("-----BEGIN RSA PRIVATE KEY-----"))
            self.assertTrue(pair.public_key.startswith("ssh-rsa "))
            self.assertRegex(pair.id, r"^key-[0-9a-f]{17}$")
            self.assertEqual(len(pair.fingerprint.split(":")), 20)  # SHA1
            self.assertLess(abs(pair.created - requests.now()), 5)
            self.assertNotIn(pem, str(alice.template.get_all("EC2_KEYPAIR")))  # not kept

            imported = await requests.keypair_import(
                alice, "k2", base64.b64encode(ED25519.encode()).decode())
            self.assertEqual(imported.type, "ed25519")
            self.assertEqual(imported.public_key, ED25519.rsplit(" ", 1)[0])
            self.assertEqual([p.name for p in requests.keypair_list(alice)], ["k1", "k2"])
            self.assertEqual(requests.keypair_get(alice, "k1"), pair)

            # Errors: a taken name, a bad key, an empty name, an unknown one.
            with self.assertRaises(KeyPairExists) as caught:
                await requests.keypair_create(alice, "k1")
            self.assertIsInstance(caught.exception, ActionError)
            self.assertEqual(str(caught.exception), "The keypair 'k1' already exists.")
            with self.assertRaises(KeyPairExists):
                await requests.keypair_import(alice, "k2", ED25519)
            for material in ("not a key", "ssh-rsa AAAA", base64.b64encode(b"x").decode()):
                with self.assertRaises(BadPublicKey) as caught:
                    await requests.keypair_import(alice, "k3", material)
                self.assertIsInstance(caught.exception, APIError)
            with self.assertRaises(APIError):
                await requests.keypair_import(alice, "", ED25519)
            with self.assertRaises(NoSuchKeyPair) as caught:
                requests.keypair_get(alice, "nope")
            self.assertIsInstance(caught.exception, NoSuchObject)

            # Another user sees none of them and cannot reach alice's.
            self.assertEqual(requests.keypair_list(bob), [])
            with self.assertRaises(NoSuchKeyPair):
                requests.keypair_get(bob, "k1")
            with self.assertRaises(NoSuchKeyPair):
                await requests.keypair_delete(bob, name="k1")
            for call in (lambda: requests.keypair_list(bob, uid=alice.oid),
                         lambda: requests.keypair_get(bob, "k1", uid=alice.oid)):
                with self.assertRaises(AuthorizationError):
                    call()
            with self.assertRaises(AuthorizationError):
                await requests.keypair_delete(bob, name="k1", uid=alice.oid)
            with self.assertRaises(AuthorizationError):
                await requests.keypair_import(bob, "mine", ED25519, uid=alice.oid)
            self.assertEqual(len(requests.keypair_list(alice)), 2)
            # bob may have a key pair of the same name: names are per user.
            await requests.keypair_import(bob, "k1", ED25519)
            # oneadmin reaches any user's.
            self.assertEqual([p.name for p in requests.keypair_list(admin, uid=alice.oid)],
                             ["k1", "k2"])
            with self.assertRaises(NoSuchObject):
                requests.keypair_list(admin, uid=999)

            # Delete by name and by id; what is gone is gone from the database too.
            self.assertEqual(await requests.keypair_delete(alice, name="k1"), pair)
            gone = await requests.keypair_delete(admin, key_id=imported.id, uid=alice.oid)
            self.assertEqual(gone.name, "k2")
            self.assertEqual(requests.keypair_list(alice), [])
            with self.assertRaises(NoSuchKeyPair):
                await requests.keypair_delete(alice, key_id=imported.id)
            rows = await requests.nebula.db.select(
                f"SELECT body FROM user_pool WHERE oid = {alice.oid}")
            self.assertNotIn("EC2_KEYPAIR", str(rows))
            self.assertEqual([p.name for p in requests.keypair_list(bob)], ["k1"])
        return defer.ensureDeferred(run())

    def test_imported_key_formats(self):
        """RSA and ED25519, base64 or bare; the RSA fingerprint is AWS's MD5."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()
        kind, fingerprint, public = imported_key(base64.b64encode(line.encode()).decode())
        self.assertEqual((kind, public), ("rsa", line))
        self.assertEqual(len(fingerprint.split(":")), 16)
        self.assertEqual(imported_key(line + " comment"), (kind, fingerprint, public))
        self.assertEqual(imported_key(ED25519)[0], "ed25519")
        ecdsa = "ecdsa-sha2-nistp256 " + line.split()[1]  # a key of another kind
        with self.assertRaises(BadPublicKey):
            imported_key(ecdsa)
