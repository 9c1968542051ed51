"""The EC2 front against hostile or careful clients (issue 9): control
characters in parameters get EC2's ``InvalidParameterValue`` document, and
``DryRun=true`` answers ``DryRunOperation`` (HTTP 412) or the error the
action would give, changing nothing; real boto3 clients (botocore raises
``ClientError``) and raw signed requests, against an in-process daemon."""

import urllib.request

from lxml import etree
from twisted.internet import threads

from nebtwist.core.objects import RUNNING
from tests.test_ec2 import call, client, raw_sigv2
from tests.test_ec2_actions import EC2TestCase, ready_image
from tests.test_xmlrpc_api import HELEN, add_user, ok, wait_for, wait_host_monitored


def error_document(body):
    """``(Code, Message)`` of an EC2 ``<Response><Errors><Error>`` document."""
    root = etree.fromstring(body)
    return root.findtext("Errors/Error/Code"), root.findtext("Errors/Error/Message")


class ControlCharacterTests(EC2TestCase):
    """A NUL or another control character in any parameter (name or value)
    answered an empty HTTP 500; now InvalidParameterValue, nothing done."""

    async def test_control_characters(self):
        neb = await self.start()
        c = client(neb)
        for char in ("\x00", "\x01", "\x0b", "\x1b", "\x7f", "\x85"):
            error = await self.fails(c, "create_key_pair", "InvalidParameterValue",
                                     KeyName=f"k{char}x")
            self.assertIn("control characters are not allowed", str(error))
            await self.fails(c, "describe_images", "InvalidParameterValue",
                             Filters=[{"Name": "name", "Values": [f"a{char}"]}])
            await self.fails(c, "create_tags", "InvalidParameterValue", Resources=["i-0"],
                             Tags=[{"Key": "k", "Value": f"v{char}"}])
        self.assertEqual((await call(c, "describe_key_pairs"))["KeyPairs"], [])
        self.assertEqual(len(neb.nebula.vmpool), 0)
        # Tab, LF and CR are ordinary characters.
        await call(c, "describe_images", Filters=[{"Name": "name", "Values": ["a\tb\r\n"]}])

        # In a parameter's name, signed or not, POST form or GET query.
        status, body = await threads.deferToThread(
            raw_sigv2, neb.ec2_url, {"Action": "DescribeRegions", "Od\x00d": "1"})
        self.assertEqual(status, 400, body)
        self.assertEqual(error_document(body)[0], "InvalidParameterValue")
        self.assertIn("\\x00", error_document(body)[1])
        for query in ("Action=DescribeRegions&X=%00", "Action=Describe%01Regions"):
            status, body = await threads.deferToThread(self._get, neb.ec2_url + "?" + query)
            self.assertEqual(status, 400, body)
            self.assertEqual(error_document(body)[0], "InvalidParameterValue", body)

    @staticmethod
    def _get(url):
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


class DryRunTests(EC2TestCase):
    """``DryRun=True`` on every implemented action that takes it (EC2 API
    reference): DryRunOperation, and not one object changed."""

    async def test_dry_run_changes_nothing(self):
        neb = await self.start(['econe.ELASTIC_IP_NETWORK="eips"'])
        vnet = await ok(neb, "one.vn.allocate", 'NAME = "eips"\nTYPE = FIXED\nBRIDGE = br1\n'
                                                'LEASES = [ IP = 203.0.113.10 ]\n')
        hid = await ok(neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy", "tm_dummy")
        c = client(neb)
        ami = await ready_image(self, neb, c)
        await wait_host_monitored(neb, hid)
        iid = (await call(c, "run_instances", ImageId=ami, MinCount=1,
                          MaxCount=1))["Instances"][0]["InstanceId"]

        async def running():
            return neb.nebula.vmpool.get(0).lcm_state == RUNNING
        await wait_for(running, "the instance RUNNING", timeout=60)
        await call(c, "create_key_pair", KeyName="kept")
        await call(c, "create_tags", Resources=[iid], Tags=[{"Key": "k", "Value": "v"}])
        ip = (await call(c, "allocate_address"))["PublicIp"]
        nebula = neb.nebula

        def bodies():  # the VM's body but its monitoring (LAST_POLL, usage), which polls change
            vm = nebula.vmpool.get(0)
            return (nebula.userpool.get(0).body(),
                    (vm.state, vm.lcm_state, vm.template.to_text(), len(vm.history)),
                    nebula.imagepool.get(0).body(), nebula.vnpool.get(vnet).info(),
                    len(nebula.imagepool), len(nebula.vmpool))

        before = bodies()
        tag = [{"Key": "k", "Value": "x"}]
        calls = [
            ("describe_regions", {}), ("describe_availability_zones", {}),
            ("describe_instance_types", {}), ("describe_images", {}),
            ("describe_instances", {}), ("describe_key_pairs", {}),
            ("describe_addresses", {}), ("describe_tags", {}),
            ("register_image", dict(Name="img", ImageLocation="b/k")),
            ("deregister_image", dict(ImageId=ami)),
            ("run_instances", dict(ImageId=ami, MinCount=1, MaxCount=1)),
            ("terminate_instances", dict(InstanceIds=[iid])),
            ("stop_instances", dict(InstanceIds=[iid])),
            ("start_instances", dict(InstanceIds=[iid])),
            ("reboot_instances", dict(InstanceIds=[iid])),
            ("create_key_pair", dict(KeyName="k")),
            ("import_key_pair", dict(KeyName="k", PublicKeyMaterial=b"ssh-rsa AAAA")),
            ("delete_key_pair", dict(KeyName="kept")),
            ("allocate_address", {}),
            ("associate_address", dict(PublicIp=ip, InstanceId=iid)),
            ("disassociate_address", dict(PublicIp=ip)),
            ("release_address", dict(PublicIp=ip)),
            ("create_tags", dict(Resources=[iid], Tags=tag)),
            ("delete_tags", dict(Resources=[iid])),
        ]
        for method, kwargs in calls:
            error = await self.fails(c, method, "DryRunOperation", status=412, DryRun=True,
                                     **kwargs)
            self.assertIn("Request would have succeeded, but DryRun flag is set.", str(error))
        self.assertEqual(bodies(), before)

        # What would fail says why: objects of others are not found, an
        # image one may use but not manage is UnauthorizedOperation.
        await add_user(neb, HELEN)
        await ok(neb, "one.image.chmod", 0, -1, -1, -1, -1, -1, -1, 1, -1, -1)
        before = bodies()
        h = client(neb, "helen", "helenpass")
        await self.fails(h, "terminate_instances", "InvalidInstanceID.NotFound",
                         InstanceIds=[iid], DryRun=True)
        await self.fails(h, "deregister_image", "UnauthorizedOperation", status=403,
                         ImageId=ami, DryRun=True)
        await self.fails(h, "create_tags", "UnauthorizedOperation", status=403,
                         Resources=[ami], Tags=tag, DryRun=True)
        await self.fails(c, "run_instances", "InvalidParameterValue", ImageId=ami,
                         MinCount=1, MaxCount=1, InstanceType="x9.huge", DryRun=True)
        await self.fails(c, "run_instances", "InvalidAMIID.NotFound", ImageId="ami-00000099",
                         MinCount=1, MaxCount=1, DryRun=True)
        self.assertEqual(bodies(), before)

        # DryRun=false runs; a value not true/false is refused; UploadImage
        # (OpenNebula's own action) takes no DryRun.
        await call(c, "create_key_pair", KeyName="real", DryRun=False)
        for params, code in (({"Action": "DescribeRegions", "DryRun": "maybe"},
                              "InvalidParameterValue"),
                             ({"Action": "UploadImage", "DryRun": "true"}, "UnknownParameter")):
            status, body = await threads.deferToThread(raw_sigv2, neb.ec2_url, params)
            self.assertEqual((status, error_document(body)[0]), (400, code), body)
