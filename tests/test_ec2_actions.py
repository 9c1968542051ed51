"""The EC2 front's instance actions (Start/Stop/RebootInstances), key pairs
and tags, with boto3 (SigV4 and SigV2) against an in-process daemon with the
dummy drivers; tags and key pairs are checked in the database and across a
daemon restart."""

import base64
import hashlib
import os

from lxml import etree
from twisted.internet import reactor, threads
from twisted.trial.unittest import TestCase

from nebtwist.core.objects import ACTIVE, RUNNING, STOPPED, SUSPENDED
from nebtwist.testing import start_nebula, without_sched_message
from tests.test_ec2 import call, client, sleep, states, wait_states
from tests.test_xmlrpc_api import HELEN, add_user, ok, wait_host_monitored

try:
    import boto3
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover - CI installs boto3 (.ci/run)
    boto3 = None


async def ready_image(testcase, neb, c, name="tty"):
    """Register a small image through the core and wait until it is available."""
    src = os.path.abspath(testcase.mktemp())
    with open(src, "wb") as f:
        f.write(b"disk" * 256)
    iid = await ok(neb, "one.image.allocate", f'NAME = "{name}"\nPATH = "{src}"\n', 1)
    ami = f"ami-{iid:08d}"
    deadline = reactor.seconds() + 90
    while (await call(c, "describe_images", ImageIds=[ami]))["Images"][0]["State"] \
            != "available":
        if reactor.seconds() > deadline:
            testcase.fail(f"{ami} not available")
        await sleep(0.1)
    return ami


def error_code(caught):
    return caught.exception.response["Error"]["Code"]


class EC2TestCase(TestCase):

    timeout = 120

    def setUp(self):
        if boto3 is None:
            self.skipTest("boto3 is not installed")

    async def start(self, overrides=()):
        neb = await start_nebula(self, overrides)
        return neb

    async def fails(self, c, method, code, status=400, **kwargs):
        """Assert ``c.method(**kwargs)`` fails with EC2 error ``code``."""
        with self.assertRaises(ClientError, msg=f"{method} {kwargs}") as caught:
            await call(c, method, **kwargs)
        self.assertEqual(error_code(caught), code, f"{method} {kwargs}")
        self.assertEqual(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"],
                         status, f"{method} {kwargs}")
        return caught.exception


async def booted(vm, timeout=90.0):
    """Wait until ``vm`` is ACTIVE/RUNNING: EC2 shows BOOT as ``running``
    already (3.4 ``EC2_STATES``), but reboot and stop need the VM booted (its
    network's pre and post included)."""
    deadline = reactor.seconds() + timeout
    while not (vm.state == ACTIVE and vm.lcm_state == RUNNING):
        if reactor.seconds() > deadline:
            raise AssertionError(f"VM {vm.oid} not RUNNING after {timeout} s")
        await sleep(0.05)


class InstanceStateTests(EC2TestCase):
    """Stop (checkpoint), Force stop (poweroff), Start, Reboot on dummy drivers."""

    async def test_stop_start_reboot(self):
        neb = await self.start()
        hid = await ok(neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy", "tm_dummy")
        c, v2 = client(neb), client(neb, v2=True)
        ami = await ready_image(self, neb, c)
        await wait_host_monitored(neb, hid)
        # The only host is disabled while the instance is new, so it is surely
        # still pending (not placed) when reboot and stop are asked.
        await ok(neb, "one.host.enable", hid, False)
        iid = (await call(c, "run_instances", ImageId=ami, MinCount=1,
                          MaxCount=1))["Instances"][0]["InstanceId"]
        self.assertEqual(states(await call(c, "describe_instances")), {iid: "pending"})
        # Not running yet (pending): no reboot, no stop.
        await self.fails(c, "reboot_instances", "IncorrectInstanceState", InstanceIds=[iid])
        await self.fails(c, "stop_instances", "IncorrectInstanceState", InstanceIds=[iid])
        await ok(neb, "one.host.enable", hid, True)
        await wait_states(self, c, [iid], "running")
        vm = neb.nebula.vmpool.get(0)
        await booted(vm)

        reply = await call(c, "reboot_instances", InstanceIds=[iid])
        self.assertEqual(reply["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(states(await call(c, "describe_instances")), {iid: "running"})

        changes = (await call(c, "stop_instances", InstanceIds=[iid]))["StoppingInstances"]
        self.assertEqual([(s["InstanceId"], s["PreviousState"], s["CurrentState"])
                          for s in changes],
                         [(iid, {"Code": 16, "Name": "running"},
                           {"Code": 64, "Name": "stopping"})])
        await wait_states(self, c, [iid], "stopped")
        self.assertEqual(vm.state, STOPPED)
        await self.fails(v2, "reboot_instances", "IncorrectInstanceState", InstanceIds=[iid])
        again = (await call(v2, "stop_instances", InstanceIds=[iid]))["StoppingInstances"]
        self.assertEqual((again[0]["PreviousState"]["Name"], again[0]["CurrentState"]["Name"]),
                         ("stopped", "stopped"), "stopping a stopped instance changes nothing")

        started = (await call(v2, "start_instances", InstanceIds=[iid]))["StartingInstances"]
        self.assertEqual((started[0]["PreviousState"]["Name"],
                          started[0]["CurrentState"]["Name"]), ("stopped", "pending"))
        await wait_states(self, c, [iid], "running")
        await booted(vm)
        self.assertEqual(len(vm.history), 2, "rescheduled: a second placement")

        forced = (await call(c, "stop_instances", InstanceIds=[iid],
                             Force=True))["StoppingInstances"]
        self.assertEqual(forced[0]["CurrentState"]["Name"], "stopping")
        await wait_states(self, c, [iid], "stopped")
        self.assertEqual(vm.state, SUSPENDED, "Force: poweroff, kept on the host")
        started = (await call(c, "start_instances", InstanceIds=[iid]))["StartingInstances"]
        self.assertEqual(started[0]["PreviousState"]["Name"], "stopped")
        await wait_states(self, c, [iid], "running")
        await booted(vm)
        same = (await call(c, "start_instances", InstanceIds=[iid]))["StartingInstances"]
        self.assertEqual((same[0]["PreviousState"]["Name"], same[0]["CurrentState"]["Name"]),
                         ("running", "running"))

        await call(c, "terminate_instances", InstanceIds=[iid])
        await wait_states(self, c, [iid], "terminated")
        for method in ("start_instances", "stop_instances", "reboot_instances"):
            await self.fails(c, method, "IncorrectInstanceState", InstanceIds=[iid])
            await self.fails(c, method, "InvalidInstanceID.NotFound", InstanceIds=["i-99"])
            await self.fails(c, method, "InvalidInstanceID.Malformed", InstanceIds=["i-x"])
        await add_user(neb, HELEN)
        helen = client(neb, "helen", "helenpass")
        await self.fails(helen, "stop_instances", "InvalidInstanceID.NotFound",
                         InstanceIds=[iid])

    async def test_all_checked_first(self):
        """One instance that cannot stop: none is stopped."""
        neb = await self.start()
        hid = await ok(neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy", "tm_dummy")
        c = client(neb)
        ami = await ready_image(self, neb, c)
        await wait_host_monitored(neb, hid)
        first = (await call(c, "run_instances", ImageId=ami, MinCount=1,
                            MaxCount=1))["Instances"][0]["InstanceId"]
        await wait_states(self, c, [first], "running")
        await ok(neb, "one.host.enable", hid, False)  # the next one stays pending
        second = (await call(c, "run_instances", ImageId=ami, MinCount=1,
                             MaxCount=1))["Instances"][0]["InstanceId"]
        await self.fails(c, "stop_instances", "IncorrectInstanceState",
                         InstanceIds=[first, second])
        self.assertEqual(states(await call(c, "describe_instances")),
                         {first: "running", second: "pending"})


class KeyPairTests(EC2TestCase):
    """CreateKeyPair/ImportKeyPair/DescribeKeyPairs/DeleteKeyPair, and the
    public key in a new instance's CONTEXT."""

    async def test_round_trip(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        neb = await self.start()
        c, v2 = client(neb), client(neb, v2=True)
        created = await call(c, "create_key_pair", KeyName="mykey")
        self.assertEqual(created["KeyName"], "mykey")
        self.assertRegex(created["KeyPairId"], r"^key-[0-9a-f]{17}$")
        private = serialization.load_pem_private_key(created["KeyMaterial"].encode(), None)
        self.assertIsInstance(private, rsa.RSAPrivateKey)
        self.assertEqual(private.key_size, 2048)
        self.assertIn("BEGIN RSA PRIVATE KEY", created["KeyMaterial"])
        der = private.private_bytes(serialization.Encoding.DER,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        sha1 = hashlib.sha1(der).hexdigest()
        self.assertEqual(created["KeyFingerprint"],
                         ":".join(sha1[i:i + 2] for i in range(0, 40, 2)))
        public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                   serialization.PublicFormat.OpenSSH).decode()

        imported_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        line = imported_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b" me@laptop"
        imported = await call(v2, "import_key_pair", KeyName="laptop",
                              PublicKeyMaterial=line)
        spki = imported_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        md5 = hashlib.md5(spki).hexdigest()
        self.assertEqual(imported["KeyFingerprint"],
                         ":".join(md5[i:i + 2] for i in range(0, 32, 2)))

        await self.fails(c, "create_key_pair", "InvalidKeyPair.Duplicate", KeyName="mykey")
        await self.fails(c, "import_key_pair", "InvalidKeyPair.Duplicate", KeyName="laptop",
                         PublicKeyMaterial=line)
        for garbage in (b"not a key", b"ssh-rsa AAAAB3NzaC1yc2E= x",
                        base64.b64encode(b"ssh-dss AAAA")):
            await self.fails(c, "import_key_pair", "InvalidKey.Format", KeyName="bad",
                             PublicKeyMaterial=garbage)
        await self.fails(c, "create_key_pair", "InvalidParameterValue", KeyName="x" * 256)
        await self.fails(c, "create_key_pair", "InvalidParameterValue", KeyName="é")

        pairs = (await call(c, "describe_key_pairs"))["KeyPairs"]
        self.assertEqual([(k["KeyName"], k["KeyFingerprint"], k["KeyType"]) for k in pairs],
                         [("mykey", created["KeyFingerprint"], "rsa"),
                          ("laptop", imported["KeyFingerprint"], "rsa")])
        one = (await call(v2, "describe_key_pairs", KeyNames=["laptop"],
                          IncludePublicKey=True))["KeyPairs"]
        self.assertEqual([k["KeyName"] for k in one], ["laptop"])
        self.assertEqual(one[0]["PublicKey"].split()[:2], line.decode().split()[:2])
        by_filter = (await call(c, "describe_key_pairs", Filters=[
            {"Name": "key-name", "Values": ["my*"]}]))["KeyPairs"]
        self.assertEqual([k["KeyName"] for k in by_filter], ["mykey"])
        await self.fails(c, "describe_key_pairs", "InvalidKeyPair.NotFound", KeyNames=["nope"])

        # Stored with the user (the private key never is), in the database too.
        admin = neb.nebula.userpool.get(0)
        self.assertEqual([v["NAME"] for v in admin.template.get_all("EC2_KEYPAIR")],
                         ["mykey", "laptop"])
        self.assertEqual(admin.template.get_all("EC2_KEYPAIR")[0]["PUBLIC_KEY"], public)
        rows = await neb.nebula.db.select("SELECT body FROM user_pool WHERE oid = 0")
        self.assertIn("laptop", rows[0][0])
        self.assertNotIn("PRIVATE", rows[0][0])
        await add_user(neb, HELEN)
        helen = client(neb, "helen", "helenpass")
        self.assertEqual((await call(helen, "describe_key_pairs"))["KeyPairs"], [])

        # RunInstances: the public key reaches the VM's CONTEXT; keyName shown.
        ami = await ready_image(self, neb, c)
        await self.fails(c, "run_instances", "InvalidKeyPair.NotFound", ImageId=ami,
                         MinCount=1, MaxCount=1, KeyName="nope")
        await self.fails(helen, "run_instances", "InvalidAMIID.NotFound", ImageId=ami,
                         MinCount=1, MaxCount=1, KeyName="mykey")
        self.assertEqual(len(neb.nebula.vmpool), 0)
        reply = await call(c, "run_instances", ImageId=ami, MinCount=1, MaxCount=1,
                           KeyName="mykey")
        self.assertEqual(reply["Instances"][0]["KeyName"], "mykey")
        vm = neb.nebula.vmpool.get(0)
        self.assertEqual(vm.template.get_vector("CONTEXT")["SSH_PUBLIC_KEY"], public)
        described = (await call(v2, "describe_instances"))["Reservations"][0]["Instances"][0]
        self.assertEqual(described["KeyName"], "mykey")
        filtered = await call(c, "describe_instances", Filters=[
            {"Name": "key-name", "Values": ["mykey"]}])
        self.assertEqual(len(filtered["Reservations"]), 1)

        # DeleteKeyPair: gone, and deleting it again is fine (as AWS).
        await call(c, "delete_key_pair", KeyName="mykey")
        await call(c, "delete_key_pair", KeyName="mykey")
        await call(c, "delete_key_pair", KeyPairId=imported["KeyPairId"])
        self.assertEqual((await call(c, "describe_key_pairs"))["KeyPairs"], [])
        self.assertEqual(admin.template.get_all("EC2_KEYPAIR"), [])
        self.assertEqual(vm.template.get_vector("CONTEXT")["SSH_PUBLIC_KEY"], public,
                         "the instance keeps its key")


class TagTests(EC2TestCase):
    """CreateTags/DeleteTags/DescribeTags on instances and images; tags in
    DescribeInstances/DescribeImages and their filters; limits; a restart."""

    async def test_tags(self):
        neb = await start_nebula(self)
        c, v2 = client(neb), client(neb, v2=True)
        ami = await ready_image(self, neb, c)
        iid = (await call(c, "run_instances", ImageId=ami, MinCount=1,
                          MaxCount=1))["Instances"][0]["InstanceId"]
        await call(c, "create_tags", Resources=[iid, ami], Tags=[
            {"Key": "Name", "Value": "web"}, {"Key": "env", "Value": "prod"},
            {"Key": "empty"}])
        await call(v2, "create_tags", Resources=[ami], Tags=[{"Key": "env", "Value": "test"}])

        instance = (await call(c, "describe_instances"))["Reservations"][0]["Instances"][0]
        self.assertEqual(instance["Tags"], [{"Key": "Name", "Value": "web"},
                                            {"Key": "env", "Value": "prod"},
                                            {"Key": "empty", "Value": ""}])
        image = (await call(c, "describe_images", ImageIds=[ami]))["Images"][0]
        self.assertEqual({t["Key"]: t["Value"] for t in image["Tags"]},
                         {"Name": "web", "env": "test", "empty": ""})
        for filters, found in (([{"Name": "tag:env", "Values": ["prod"]}], [iid]),
                               ([{"Name": "tag:env", "Values": ["dev", "pr*"]}], [iid]),
                               ([{"Name": "tag:env", "Values": ["dev"]}], []),
                               ([{"Name": "tag-key", "Values": ["Name"]}], [iid]),
                               ([{"Name": "tag-value", "Values": ["w?b"]}], [iid]),
                               ([{"Name": "tag:owner", "Values": ["*"]}], [])):
            got = await call(c, "describe_instances", Filters=filters)
            self.assertEqual(sorted(states(got)), found, filters)

        tags = (await call(c, "describe_tags"))["Tags"]
        self.assertEqual([(t["ResourceId"], t["ResourceType"], t["Key"], t["Value"])
                          for t in tags],
                         [(iid, "instance", "Name", "web"), (iid, "instance", "env", "prod"),
                          (iid, "instance", "empty", ""), (ami, "image", "Name", "web"),
                          (ami, "image", "env", "test"), (ami, "image", "empty", "")])
        images = (await call(v2, "describe_tags", Filters=[
            {"Name": "resource-type", "Values": ["image"]},
            {"Name": "key", "Values": ["env"]}]))["Tags"]
        self.assertEqual([(t["ResourceId"], t["Value"]) for t in images], [(ami, "test")])
        by_value = (await call(c, "describe_tags", Filters=[
            {"Name": "value", "Values": ["pro*"]}]))["Tags"]
        self.assertEqual([(t["ResourceId"], t["Key"]) for t in by_value], [(iid, "env")])
        await self.fails(c, "describe_tags", "InvalidParameterValue",
                         Filters=[{"Name": "colour", "Values": ["red"]}])

        # DeleteTags: a value that does not match keeps the tag; key only removes it.
        await call(c, "delete_tags", Resources=[iid], Tags=[{"Key": "env", "Value": "dev"}])
        await call(c, "delete_tags", Resources=[iid], Tags=[{"Key": "Name", "Value": "web"},
                                                            {"Key": "empty", "Value": ""}])
        await call(c, "delete_tags", Resources=[ami], Tags=[{"Key": "env"}])
        tags = (await call(c, "describe_tags"))["Tags"]
        self.assertEqual([(t["ResourceId"], t["Key"]) for t in tags],
                         [(iid, "env"), (ami, "Name"), (ami, "empty")])

        # Limits and bad input: nothing changes.
        for kwargs, code in (
                (dict(Resources=[iid], Tags=[{"Key": "k" * 129, "Value": "v"}]),
                 "InvalidParameterValue"),
                (dict(Resources=[iid], Tags=[{"Key": "k", "Value": "v" * 257}]),
                 "InvalidParameterValue"),
                (dict(Resources=[iid], Tags=[{"Key": "aws:secret", "Value": "v"}]),
                 "InvalidParameterValue"),
                (dict(Resources=[iid], Tags=[{"Key": f"k{i}", "Value": "v"}
                                             for i in range(50)]), "TagLimitExceeded"),
                (dict(Resources=[iid, "i-99"], Tags=[{"Key": "k", "Value": "v"}]),
                 "InvalidInstanceID.NotFound"),
                (dict(Resources=[iid, "vol-1"], Tags=[{"Key": "k", "Value": "v"}]),
                 "InvalidID"),
                (dict(Resources=["ami-00000042"], Tags=[{"Key": "k", "Value": "v"}]),
                 "InvalidAMIID.NotFound"),
                (dict(Resources=[iid], Tags=[]), "MissingParameter")):
            await self.fails(c, "create_tags", code, **kwargs)
        self.assertEqual(len((await call(c, "describe_tags"))["Tags"]), 3)
        self.assertEqual((await call(c, "create_tags", Resources=[iid], Tags=[
            {"Key": f"k{i}", "Value": "v"} for i in range(49)]))["ResponseMetadata"]
            ["HTTPStatusCode"], 200, "50 tags are fine")
        await call(c, "delete_tags", Resources=[iid], Tags=[
            {"Key": f"k{i}"} for i in range(49)])

        # Only the owner: another user does not see the instance; the image
        # (made public) they may see but not tag.
        await add_user(neb, HELEN)
        helen = client(neb, "helen", "helenpass")
        await self.fails(helen, "create_tags", "InvalidInstanceID.NotFound", Resources=[iid],
                         Tags=[{"Key": "k", "Value": "v"}])
        await ok(neb, "one.image.chmod", int(ami[4:]), -1, -1, -1, -1, -1, -1, 1, -1, -1)
        await self.fails(helen, "create_tags", "UnauthorizedOperation", status=403,
                         Resources=[ami], Tags=[{"Key": "k", "Value": "v"}])
        await self.fails(helen, "delete_tags", "UnauthorizedOperation", status=403,
                         Resources=[ami])
        self.assertEqual((await call(helen, "describe_tags"))["Tags"], [])

        # Stored with the objects, and there after a restart.
        rows = await neb.nebula.db.select("SELECT body FROM vm_pool WHERE oid = 0")
        tpl = etree.fromstring(rows[0][0].encode()).find("TEMPLATE")
        self.assertEqual([(t.findtext("KEY"), t.findtext("VALUE"))
                          for t in tpl.findall("EC2_TAG")], [("env", "prod")])
        before = (await call(c, "describe_tags"))["Tags"]
        await neb.stop()
        again = await start_nebula(self, one_location=neb.one_location)
        c2 = client(again)
        self.assertEqual((await call(c2, "describe_tags"))["Tags"], before)
        image = (await call(c2, "describe_images", ImageIds=[ami]))["Images"][0]
        self.assertEqual({t["Key"] for t in image["Tags"]}, {"Name", "empty"})
        # DeleteTags without Tag: all of them.
        await call(c2, "delete_tags", Resources=[iid, ami])
        self.assertEqual((await call(c2, "describe_tags"))["Tags"], [])


class BadRequestTests(EC2TestCase):
    """The new actions with a wrong secret change nothing; missing or bad
    parameters get their EC2 codes (sent raw: boto3 checks them first)."""

    async def test_bad_requests(self):
        from tests.test_ec2 import raw_sigv2, sha1_hex

        neb = await self.start(['econe.ELASTIC_IP_NETWORK="eips"'])
        vnet = await ok(neb, "one.vn.allocate", 'NAME = "eips"\nTYPE = FIXED\nBRIDGE = br1\n'
                                                'LEASES = [ IP = 203.0.113.10 ]\n')
        c = client(neb)
        ami = await ready_image(self, neb, c)
        iid = (await call(c, "run_instances", ImageId=ami, MinCount=1,
                          MaxCount=1))["Instances"][0]["InstanceId"]
        await call(c, "create_key_pair", KeyName="kept")
        await call(c, "create_tags", Resources=[iid], Tags=[{"Key": "k", "Value": "v"}])
        nebula = neb.nebula

        def bodies():
            return (nebula.userpool.get(0).body(),
                    without_sched_message(nebula.vmpool.get(0).body()),
                    nebula.imagepool.get(0).body(), nebula.vnpool.get(vnet).info(),
                    len(nebula.imagepool), len(nebula.vmpool))

        before = bodies()
        bad = client(neb, secret=sha1_hex("wrong"), v2=True)
        tag = [{"Key": "k", "Value": "x"}]
        for method, kwargs in (
                ("create_key_pair", dict(KeyName="k")),
                ("import_key_pair", dict(KeyName="k", PublicKeyMaterial=b"ssh-rsa AAAA")),
                ("delete_key_pair", dict(KeyName="kept")),
                ("create_tags", dict(Resources=[iid], Tags=tag)),
                ("delete_tags", dict(Resources=[iid])),
                ("stop_instances", dict(InstanceIds=[iid])),
                ("terminate_instances", dict(InstanceIds=[iid])),
                ("allocate_address", {}),
                ("register_image", dict(Name="img", ImageLocation="b/k")),
                ("deregister_image", dict(ImageId=ami))):
            await self.fails(bad, method, "AuthFailure", status=401, **kwargs)
        self.assertEqual(bodies(), before)

        for params, code in (
                ({"Action": "CreateKeyPair"}, "MissingParameter"),
                ({"Action": "ImportKeyPair", "KeyName": "k"}, "MissingParameter"),
                ({"Action": "DeleteKeyPair"}, "MissingParameter"),
                ({"Action": "CreateTags", "Tag.1.Key": "k"}, "MissingParameter"),
                ({"Action": "CreateTags", "ResourceId.1": iid, "Tag.1.Value": "v"},
                 "InvalidParameterValue"),
                ({"Action": "DeleteTags"}, "MissingParameter"),
                ({"Action": "StartInstances"}, "MissingParameter"),
                ({"Action": "StopInstances", "InstanceId.1": iid, "Force": "maybe"},
                 "InvalidParameterValue"),
                ({"Action": "RebootInstances"}, "MissingParameter"),
                ({"Action": "RegisterImage"}, "MissingParameter"),
                ({"Action": "DeregisterImage"}, "MissingParameter"),
                ({"Action": "UploadImage"}, "MissingParameter"),
                ({"Action": "AssociateAddress", "InstanceId": iid}, "MissingParameter"),
                ({"Action": "AssociateAddress", "PublicIp": "203.0.113.10"},
                 "MissingParameter"),
                ({"Action": "ReleaseAddress"}, "MissingParameter"),
                ({"Action": "DescribeKeyPairs", "Filter.1.Name": "colour",
                  "Filter.1.Value.1": "red"}, "InvalidParameterValue"),
                ({"Action": "DescribeAddresses", "PublicIp.1": "203.0.113.10"},
                 "InvalidAddress.NotFound"),
                ({"Action": "StartInstances", "InstanceId.1": "i-0x"},
                 "InvalidInstanceID.Malformed"),
                ({"Action": "CreateTags", "ResourceId.1": "ami-zz", "Tag.1.Key": "k"},
                 "InvalidAMIID.Malformed")):
            status, body = await threads.deferToThread(raw_sigv2, neb.ec2_url, params)
            self.assertEqual((status, etree.fromstring(body).findtext("Errors/Error/Code")),
                             (400, code), params)
        self.assertEqual(bodies(), before)
