"""The EC2 front where real clients and AWS's API reference disagreed with
it (issue 11): found by running a third party's EC2 test suite against the
front. Each test drives an unmodified boto3 client (and raw SigV2 requests
where boto3 will not send the shape) against an in-process daemon with the
dummy drivers, and fails on the behaviour it replaces."""

import base64
import os

from lxml import etree
from twisted.internet import reactor, threads

from tests.test_ec2 import call, client, raw_sigv2, sleep, wait_states
from tests.test_ec2_actions import EC2TestCase, booted, ready_image
from tests.test_xmlrpc_api import HELEN, add_user, ok, wait_host_monitored


def instance_ids(reply):
    """Instance ids of a DescribeInstances reply, in order."""
    return [i["InstanceId"] for r in reply["Reservations"] for i in r["Instances"]]


def code_of(body):
    return etree.fromstring(body).findtext("Errors/Error/Code")


async def run(c, ami, count=1, **kwargs):
    """RunInstances of ``count`` m1.small; their ids."""
    reply = await call(c, "run_instances", ImageId=ami, MinCount=count, MaxCount=count,
                       **kwargs)
    return [i["InstanceId"] for i in reply["Instances"]]


class FilterTests(EC2TestCase):
    """Filters: every filter must match (AND), values within one filter OR
    (AWS "List and filter your resources using the console / CLI")."""

    async def test_repeated_filter_names_and(self):
        neb = await self.start()
        c = client(neb)
        ami = await ready_image(self, neb, c)
        first, second = await run(c, ami, 2)
        await call(c, "create_tags", Resources=[first],
                   Tags=[{"Key": "role", "Value": "api"}, {"Key": "colour", "Value": "green"}])
        await call(c, "create_tags", Resources=[second],
                   Tags=[{"Key": "role", "Value": "api"}, {"Key": "colour", "Value": "blue"}])
        both = await call(c, "describe_instances", Filters=[
            {"Name": "tag-value", "Values": ["api"]},
            {"Name": "tag-value", "Values": ["green"]}])
        self.assertEqual(instance_ids(both), [first])
        either = await call(c, "describe_instances", Filters=[
            {"Name": "tag-value", "Values": ["green", "blue"]}])
        self.assertEqual(instance_ids(either), [first, second])
        none = await call(c, "describe_instances", Filters=[
            {"Name": "tag:colour", "Values": ["green"]},
            {"Name": "tag:colour", "Values": ["blue"]}])
        self.assertEqual(instance_ids(none), [])
        tags = await call(c, "describe_tags", Filters=[
            {"Name": "value", "Values": ["api", "green"]},
            {"Name": "value", "Values": ["green"]}])
        self.assertEqual([(t["ResourceId"], t["Value"]) for t in tags["Tags"]],
                         [(first, "green")])


class IdTests(EC2TestCase):
    """Ids of AWS's form that name nothing are NotFound, not Malformed (AWS
    "Error codes for the Amazon EC2 API": Malformed is for ids whose form
    is not valid)."""

    async def test_aws_form_ids(self):
        neb = await self.start()
        c = client(neb)
        for iid in ("i-1234abcd", "i-0123456789abcdef0", "i-12345678"):
            for method in ("describe_instances", "terminate_instances", "stop_instances",
                           "start_instances", "reboot_instances"):
                await self.fails(c, method, "InvalidInstanceID.NotFound", InstanceIds=[iid])
            await self.fails(c, "create_tags", "InvalidInstanceID.NotFound", Resources=[iid],
                             Tags=[{"Key": "k", "Value": "v"}])
        for ami in ("ami-abcd1234", "ami-0123456789abcdef0"):
            await self.fails(c, "describe_images", "InvalidAMIID.NotFound", ImageIds=[ami])
            await self.fails(c, "run_instances", "InvalidAMIID.NotFound", ImageId=ami,
                             MinCount=1, MaxCount=1)
            await self.fails(c, "deregister_image", "InvalidAMIID.NotFound", ImageId=ami)
        for iid in ("i-x", "i-0123456789abcdef", "i-ABCD1234", "instance"):
            await self.fails(c, "describe_instances", "InvalidInstanceID.Malformed",
                             InstanceIds=[iid])
        for ami in ("ami-x", "ami-abc", "ami-0123456789abcdef00", "image"):
            await self.fails(c, "describe_images", "InvalidAMIID.Malformed", ImageIds=[ami])
        self.assertEqual(len(neb.nebula.vmpool), 0)


class ErrorCodeTests(EC2TestCase):
    """Error codes as AWS gives them."""

    async def test_codes(self):
        neb = await self.start()
        c = client(neb)
        for params, code in (
                ({"Action": "TerminateInstances"}, "MissingParameter"),
                ({"Action": "TerminateInstances", "InstanceId.1": ""}, "MissingParameter"),
                ({"Action": "CreateTags", "ResourceId.1": "vol-1234abcd", "Tag.1.Key": "k"},
                 "InvalidID"),
                ({"Action": "CreateTags", "ResourceId.1": "", "Tag.1.Key": "k"},
                 "InvalidID"),
                ({"Action": "CreateTags", "ResourceId.1": "zzz", "Tag.1.Key": "k"},
                 "InvalidID"),
                # AWS answers InvalidKey.Format ("Key is not in valid OpenSSH
                # public key format"), as real ImportKeyPair replies show.
                ({"Action": "ImportKeyPair", "KeyName": "k",
                  "PublicKeyMaterial": base64.b64encode(b"ssh-rsa nonsense").decode()},
                 "InvalidKey.Format")):
            status, body = await threads.deferToThread(raw_sigv2, neb.ec2_url, params)
            self.assertEqual((status, code_of(body)), (400, code), params)
        await self.fails(c, "terminate_instances", "MissingParameter", InstanceIds=[])
        await self.fails(c, "create_tags", "InvalidID", Resources=["sg-1234abcd"],
                         Tags=[{"Key": "k", "Value": "v"}])


class PaginationTests(EC2TestCase):
    """DescribeInstances ``MaxResults`` (5 to 1000) and ``NextToken``, as the
    AWS API reference (API_DescribeInstances): not with ``InstanceId``."""

    async def test_pages(self):
        neb = await self.start()
        c = client(neb)
        ami = await ready_image(self, neb, c)
        ids = await run(c, ami, 7)
        ids += await run(c, ami, 5)
        await call(c, "create_tags", Resources=ids[::2], Tags=[{"Key": "even", "Value": "y"}])
        first = await call(c, "describe_instances", MaxResults=5)
        self.assertEqual(instance_ids(first), ids[:5])
        self.assertTrue(first.get("NextToken"))
        second = await call(c, "describe_instances", MaxResults=5,
                            NextToken=first["NextToken"])
        self.assertEqual(instance_ids(second), ids[5:10])
        third = await call(c, "describe_instances", MaxResults=5,
                           NextToken=second["NextToken"])
        self.assertEqual(instance_ids(third), ids[10:])
        self.assertNotIn("NextToken", third)
        # boto3's paginator follows the tokens; with a filter, pages of it.
        pages = await threads.deferToThread(lambda: list(
            c.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "tag:even", "Values": ["y"]}],
                PaginationConfig={"PageSize": 5})))
        self.assertEqual([instance_ids(p) for p in pages], [ids[0:10:2], ids[10::2]])
        exact = await call(c, "describe_instances", MaxResults=12)
        self.assertEqual(instance_ids(exact), ids)
        self.assertNotIn("NextToken", exact)
        await self.fails(c, "describe_instances", "InvalidParameterCombination",
                         InstanceIds=[ids[0]], MaxResults=5)
        for bad in (4, 1001, 0):
            await self.fails(c, "describe_instances", "InvalidParameterValue", MaxResults=bad)
        for token in ("garbage", base64.b64encode(b"nothing").decode()):
            await self.fails(c, "describe_instances", "InvalidPaginationToken",
                             MaxResults=5, NextToken=token)
        # Another user's token does not show this user's instances.
        await add_user(neb, HELEN)
        helen = client(neb, "helen", "helenpass")
        self.assertEqual(instance_ids(await call(helen, "describe_instances", MaxResults=5,
                                                 NextToken=first["NextToken"])), [])


class RunInstancesTests(EC2TestCase):
    """RunInstances ``TagSpecification.N`` (ResourceType instance) and
    ``Placement.AvailabilityZone`` (AWS API reference, API_RunInstances)."""

    async def test_tag_specifications_and_placement(self):
        neb = await self.start()
        c = client(neb)
        ami = await ready_image(self, neb, c)
        ids = await run(c, ami, 2, Placement={"AvailabilityZone": "default"},
                        TagSpecifications=[{"ResourceType": "instance", "Tags": [
                            {"Key": "Name", "Value": "web"}, {"Key": "tier", "Value": ""}]}])
        reply = await call(c, "describe_instances", Filters=[
            {"Name": "tag:Name", "Values": ["web"]}])
        self.assertEqual(instance_ids(reply), ids)
        for instance in reply["Reservations"][0]["Instances"]:
            self.assertEqual(sorted((t["Key"], t["Value"]) for t in instance["Tags"]),
                             [("Name", "web"), ("tier", "")])
            self.assertEqual(instance["Placement"]["AvailabilityZone"], "default")
        tags = (await call(c, "describe_tags", Filters=[
            {"Name": "resource-id", "Values": [ids[0]]}]))["Tags"]
        self.assertEqual(sorted(t["Key"] for t in tags), ["Name", "tier"])

        count = len(neb.nebula.vmpool)
        for kwargs, code in (
                (dict(Placement={"AvailabilityZone": "us-east-1z"}), "InvalidParameterValue"),
                (dict(TagSpecifications=[{"ResourceType": "instance", "Tags": [
                    {"Key": "aws:x", "Value": "v"}]}]), "InvalidParameterValue"),
                (dict(TagSpecifications=[{"ResourceType": "instance", "Tags": [
                    {"Key": f"k{i}", "Value": "v"} for i in range(51)]}]), "TagLimitExceeded"),
                (dict(TagSpecifications=[{"ResourceType": "image", "Tags": [
                    {"Key": "k", "Value": "v"}]}]), "InvalidParameterValue"),
                (dict(TagSpecifications=[{"ResourceType": "instance", "Tags": [
                    {"Key": "k", "Value": "v" * 257}]}]), "InvalidParameterValue")):
            await self.fails(c, "run_instances", code, ImageId=ami, MinCount=1, MaxCount=1,
                             **kwargs)
        self.assertEqual(len(neb.nebula.vmpool), count, "nothing half made")
        await self.fails(c, "run_instances", "InvalidParameterValue", ImageId=ami, MinCount=1,
                         MaxCount=1, DryRun=True, Placement={"AvailabilityZone": "mars-1a"})
        await self.fails(c, "run_instances", "DryRunOperation", status=412, ImageId=ami,
                         MinCount=1, MaxCount=1, DryRun=True,
                         Placement={"AvailabilityZone": "default"})
        status, body = await threads.deferToThread(raw_sigv2, neb.ec2_url, {
            "Action": "RunInstances", "ImageId": ami, "MinCount": "1", "MaxCount": "1",
            "TagSpecification.1.ResourceType": "instance",
            "TagSpecification.1.Tag.1.Value": "v"})
        self.assertEqual((status, code_of(body)), (400, "InvalidParameterValue"), body)
        self.assertEqual(len(neb.nebula.vmpool), count)


class ImageQueryTests(EC2TestCase):
    """DescribeImages ``Filter.N``, ``Owner.N`` and ``ExecutableBy.N`` (AWS
    API reference, API_DescribeImages)."""

    async def test_filters_owners_executable_by(self):
        neb = await self.start()
        c = client(neb)
        mine = await ready_image(self, neb, c, "tty")
        other = await ready_image(self, neb, c, "debian")
        await call(c, "create_tags", Resources=[other], Tags=[{"Key": "os", "Value": "deb"}])
        await add_user(neb, HELEN)
        helen = client(neb, "helen", "helenpass")
        # oneadmin's "debian" is made public (OTHER_U): helen may use it.
        await ok(neb, "one.image.chmod", 1, -1, -1, -1, -1, -1, -1, 1, -1, -1)

        def names(reply):
            return [i["Name"] for i in reply["Images"]]

        self.assertEqual(names(await call(c, "describe_images", Filters=[
            {"Name": "name", "Values": ["deb*"]}])), ["debian"])
        self.assertEqual(names(await call(c, "describe_images", Filters=[
            {"Name": "image-id", "Values": [mine, other]},
            {"Name": "tag:os", "Values": ["deb"]}])), ["debian"])
        self.assertEqual(names(await call(c, "describe_images", Filters=[
            {"Name": "state", "Values": ["available"]},
            {"Name": "is-public", "Values": ["false"]}])), ["tty"])
        self.assertEqual(names(await call(c, "describe_images", Filters=[
            {"Name": "owner-id", "Values": ["oneadmin"]}])), ["tty", "debian"])
        await self.fails(c, "describe_images", "InvalidParameterValue",
                         Filters=[{"Name": "colour", "Values": ["red"]}])

        self.assertEqual(names(await call(helen, "describe_images")), ["debian"])
        self.assertEqual(names(await call(helen, "describe_images", Owners=["self"])), [])
        self.assertEqual(names(await call(c, "describe_images", Owners=["self"])),
                         ["tty", "debian"])
        self.assertEqual(names(await call(helen, "describe_images", Owners=["oneadmin"])),
                         ["debian"])
        self.assertEqual(names(await call(helen, "describe_images", Owners=["amazon"])), [])
        self.assertEqual(names(await call(c, "describe_images",
                                          Owners=["amazon", "self"])), ["tty", "debian"])
        self.assertEqual(names(await call(c, "describe_images", ExecutableUsers=["all"])),
                         ["debian"])
        self.assertEqual(names(await call(c, "describe_images", ExecutableUsers=["helen"])),
                         ["debian"])
        self.assertEqual(names(await call(helen, "describe_images", ExecutableUsers=["self"])),
                         ["debian"])
        self.assertEqual(names(await call(c, "describe_images", ExecutableUsers=["self"],
                                          Owners=["self"])), ["tty", "debian"])
        public = {i["Name"]: i["Public"] for i in
                  (await call(c, "describe_images"))["Images"]}
        self.assertEqual(public, {"tty": False, "debian": True})


class StaticDescribeTests(EC2TestCase):
    """DescribeInstanceTypes filters; DescribeRegions ``RegionName.N`` and
    DescribeAvailabilityZones ``ZoneName.N``/``ZoneId.N`` (unknown ones are
    InvalidParameterValue, as AWS) with ``zoneId``."""

    async def test_instance_types(self):
        neb = await self.start()
        c = client(neb)

        async def types(**kwargs):
            reply = await call(c, "describe_instance_types", **kwargs)
            return sorted(t["InstanceType"] for t in reply["InstanceTypes"])

        self.assertEqual(await types(Filters=[{"Name": "instance-type",
                                               "Values": ["m1.s*"]}]), ["m1.small"])
        self.assertEqual(await types(Filters=[{"Name": "memory-info.size-in-mib",
                                               "Values": ["256"]}]), ["m1.small"])
        self.assertEqual(await types(Filters=[
            {"Name": "instance-type", "Values": ["m1.small", "m1.large"]},
            {"Name": "memory-info.size-in-mib", "Values": ["1"]}]), [])
        self.assertEqual(len(await types(Filters=[{"Name": "vcpu-info.default-vcpus",
                                                   "Values": ["1", "2", "4", "8"]}])), 2)
        for name in ("colour", "instance-types"):
            await self.fails(c, "describe_instance_types", "InvalidParameterValue",
                             Filters=[{"Name": name, "Values": ["x"]}])

    async def test_regions_and_zones(self):
        neb = await self.start()
        c = client(neb)
        regions = (await call(c, "describe_regions", RegionNames=["default"]))["Regions"]
        self.assertEqual([r["RegionName"] for r in regions], ["default"])
        self.assertEqual((await call(c, "describe_regions", Filters=[
            {"Name": "region-name", "Values": ["nowhere"]}]))["Regions"], [])
        await self.fails(c, "describe_regions", "InvalidParameterValue",
                         RegionNames=["default", "mars-1"])
        zones = (await call(c, "describe_availability_zones"))["AvailabilityZones"]
        self.assertEqual(len(zones), 1)
        self.assertEqual(zones[0]["ZoneName"], "default")
        self.assertTrue(zones[0]["ZoneId"])
        by_id = await call(c, "describe_availability_zones", ZoneIds=[zones[0]["ZoneId"]])
        self.assertEqual([z["ZoneName"] for z in by_id["AvailabilityZones"]], ["default"])
        by_name = await call(c, "describe_availability_zones", ZoneNames=["default"])
        self.assertEqual([z["ZoneId"] for z in by_name["AvailabilityZones"]],
                         [zones[0]["ZoneId"]])
        self.assertEqual((await call(c, "describe_availability_zones", Filters=[
            {"Name": "zone-name", "Values": ["other"]}]))["AvailabilityZones"], [])
        await self.fails(c, "describe_availability_zones", "InvalidParameterValue",
                         ZoneNames=["mars-1a"])
        await self.fails(c, "describe_availability_zones", "InvalidParameterValue",
                         ZoneIds=["mars-az9"])
        await self.fails(c, "describe_availability_zones", "InvalidParameterValue",
                         Filters=[{"Name": "colour", "Values": ["x"]}])


class InstanceStatusTests(EC2TestCase):
    """DescribeInstanceStatus (AWS API reference, API_DescribeInstanceStatus):
    running instances by default, all with ``IncludeAllInstances``."""

    async def test_status(self):
        neb = await self.start()
        hid = await ok(neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy", "tm_dummy")
        c = client(neb)
        ami = await ready_image(self, neb, c)
        await wait_host_monitored(neb, hid)
        running, = await run(c, ami)
        await wait_states(self, c, [running], "running")
        await booted(neb.nebula.vmpool.get(int(running[2:])))
        await ok(neb, "one.host.enable", hid, False)
        pending, = await run(c, ami)

        def statuses(reply):
            return {s["InstanceId"]: s for s in reply["InstanceStatuses"]}

        default = statuses(await call(c, "describe_instance_status"))
        self.assertEqual(sorted(default), [running])
        status = default[running]
        self.assertEqual(status["InstanceState"], {"Code": 16, "Name": "running"})
        self.assertEqual(status["AvailabilityZone"], "default")
        self.assertEqual(status["InstanceStatus"]["Status"], "ok")
        self.assertEqual(status["SystemStatus"]["Status"], "ok")
        self.assertEqual(status["InstanceStatus"]["Details"],
                         [{"Name": "reachability", "Status": "passed"}])

        everything = statuses(await call(c, "describe_instance_status",
                                         IncludeAllInstances=True))
        self.assertEqual(sorted(everything), sorted([running, pending]))
        self.assertEqual(everything[pending]["InstanceState"]["Name"], "pending")
        self.assertEqual(everything[pending]["InstanceStatus"]["Status"], "not-applicable")
        by_state = statuses(await call(c, "describe_instance_status", IncludeAllInstances=True,
                                       Filters=[{"Name": "instance-state-name",
                                                 "Values": ["pending"]}]))
        self.assertEqual(sorted(by_state), [pending])
        named = statuses(await call(c, "describe_instance_status", InstanceIds=[pending]))
        self.assertEqual(named, {}, "a pending instance without IncludeAllInstances")
        named = statuses(await call(c, "describe_instance_status", InstanceIds=[pending],
                                    IncludeAllInstances=True))
        self.assertEqual(sorted(named), [pending])
        await self.fails(c, "describe_instance_status", "InvalidInstanceID.NotFound",
                         InstanceIds=["i-1234abcd"])
        await self.fails(c, "describe_instance_status", "InvalidParameterValue",
                         Filters=[{"Name": "colour", "Values": ["x"]}])
        await self.fails(c, "describe_instance_status", "InvalidParameterCombination",
                         InstanceIds=[running], MaxResults=5)
        paged = await call(c, "describe_instance_status", IncludeAllInstances=True,
                           MaxResults=5)
        self.assertEqual(sorted(statuses(paged)), sorted([running, pending]))
        self.assertNotIn("NextToken", paged)


class CreateImageTests(EC2TestCase):
    """CreateImage: OpenNebula's save-as (3.4 ``one.vm.savedisk``): the id
    at once, the image pending (LOCKED) until the instance's shutdown moved
    its disk there (MVDS at the epilog), failed if it ends otherwise."""

    async def image_state(self, c, ami):
        return (await call(c, "describe_images", ImageIds=[ami]))["Images"][0]["State"]

    async def wait_image(self, c, ami, wanted, timeout=90.0):
        deadline = reactor.seconds() + timeout
        while (state := await self.image_state(c, ami)) != wanted:
            if reactor.seconds() > deadline:
                self.fail(f"{ami} is {state}, not {wanted}")
            await sleep(0.1)

    async def test_save_as(self):
        neb = await self.start()
        hid = await ok(neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy", "tm_dummy")
        c = client(neb)
        ami = await ready_image(self, neb, c)
        await wait_host_monitored(neb, hid)
        iid, = await run(c, ami)
        await wait_states(self, c, [iid], "running")
        vm = neb.nebula.vmpool.get(int(iid[2:]))
        await booted(vm)

        saved = (await call(c, "create_image", InstanceId=iid, Name="web (v1)",
                            Description="from web"))["ImageId"]
        self.assertRegex(saved, r"^ami-[0-9]{8}$")
        self.assertNotEqual(saved, ami)
        described = (await call(c, "describe_images", ImageIds=[saved]))["Images"][0]
        self.assertEqual((described["Name"], described["Description"], described["State"]),
                         ("web (v1)", "from web", "pending"))
        image = neb.nebula.imagepool.get(int(saved[4:]))
        self.assertEqual((image.template.get_str("SAVED_VM_ID"),
                          image.template.get_str("SAVED_IMAGE_ID"),
                          image.template.get_str("SAVED_DISK_ID")),
                         (str(vm.oid), str(int(ami[4:])), "0"))
        disk = vm.template.get_vector("DISK")
        self.assertEqual((disk["SAVE"], disk["SAVE_AS"], disk["SAVE_AS_SOURCE"]),
                         ("YES", str(image.oid), image.source))

        for kwargs, code in (
                (dict(InstanceId=iid, Name="web (v1)"), "InvalidAMIName.Duplicate"),
                (dict(InstanceId=iid, Name="x" * 129), "InvalidAMIName.Malformed"),
                (dict(InstanceId=iid, Name="bad|name"), "InvalidAMIName.Malformed"),
                (dict(InstanceId=iid, Name="web v2"), "IncorrectInstanceState"),
                (dict(InstanceId="i-1234abcd", Name="web v3"), "InvalidInstanceID.NotFound")):
            await self.fails(c, "create_image", code, **kwargs)
        for name in ("x", ""):  # boto3 will not send a name that short
            status, body = await threads.deferToThread(raw_sigv2, neb.ec2_url, {
                "Action": "CreateImage", "InstanceId": iid, "Name": name})
            self.assertEqual((status, code_of(body)),
                             (400, "InvalidAMIName.Malformed" if name else "MissingParameter"))
        self.assertEqual(len((await call(c, "describe_images"))["Images"]), 2,
                         "nothing half made")

        await call(c, "terminate_instances", InstanceIds=[iid])
        await wait_states(self, c, [iid], "terminated")
        await self.wait_image(c, saved, "available")
        epilog = os.path.join(neb.nebula.vm_dir(vm.oid), f"transfer.{vm.last_history.seq}.epilog")
        with open(epilog) as f:
            lines = f.read().splitlines()
        self.assertIn(f"MVDS tm_dummy {vm.last_history.hostname}:{vm.last_history.vm_dir}"
                      f"/disk.0 {image.source}", lines)
        await self.fails(c, "create_image", "IncorrectInstanceState", InstanceId=iid,
                         Name="too late")
        # The saved image runs instances like any other.
        again, = await run(c, saved)
        self.assertEqual((await call(c, "describe_instances", InstanceIds=[again]))
                         ["Reservations"][0]["Instances"][0]["ImageId"], saved)

    async def test_ended_without_shutdown(self):
        """An instance finalized before any shutdown (still pending): the
        image is failed, nothing was saved."""
        neb = await self.start()
        c = client(neb)
        ami = await ready_image(self, neb, c)
        iid, = await run(c, ami)  # no host: it stays pending
        saved = (await call(c, "create_image", InstanceId=iid, Name="never"))["ImageId"]
        self.assertEqual(await self.image_state(c, saved), "pending")
        await call(c, "terminate_instances", InstanceIds=[iid])
        await self.wait_image(c, saved, "failed")
        image = neb.nebula.imagepool.get(int(saved[4:]))
        self.assertIn("without saving", image.template.get_str("ERROR"))
        await self.fails(c, "run_instances", "InvalidParameterValue", ImageId=saved,
                         MinCount=1, MaxCount=1)
