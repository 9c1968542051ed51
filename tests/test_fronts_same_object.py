"""One VM, every front: the fronts render the same core object (issue 11).

A server made through the OpenStack front is the EC2 front's instance and
the XML-RPC front's VM; an EC2 tag on it is in ``one.vm.info``; an OpenStack
delete is seen as ``terminated`` by EC2. The daemon serves XML-RPC and EC2 on
real ports (boto3 unmodified); the OpenStack resource runs over the same
core in memory (``tests.test_openstack.call``).
"""

from lxml import etree
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from nebtwist import paths
from nebtwist.api.openstack import common
from nebtwist.api.openstack.config import build_settings
from nebtwist.api.openstack.resource import OpenStackResource
from nebtwist.testing import start_nebula
from tests.test_ec2 import call as ec2_call
from tests.test_ec2 import client, wait_states
from tests.test_image import register, write
from tests.test_openstack import call, password_body
from tests.test_xmlrpc_api import HELEN, add_user, ok, wait_host_monitored

try:
    import boto3
except ImportError:  # pragma: no cover - the test extra installs boto3
    boto3 = None


class SameObjectTests(TestCase):

    timeout = 240

    async def test_openstack_server_is_the_ec2_instance_and_the_vm(self):
        if boto3 is None:
            self.skipTest("boto3 is not installed")
        neb = await start_nebula(self)
        hid = await ok(neb, "one.host.allocate", "host01", "im_dummy", "vmm_dummy", "tm_dummy")
        await wait_host_monitored(neb, hid)
        helen_id = await add_user(neb, HELEN)
        path = write(self, b"\0" * 4096)
        image_id, _ = await register(neb, f'NAME = "ttylinux"\nPATH = "{path}"\nTYPE = OS\n')
        await ok(neb, "one.image.chown", image_id, helen_id, 1)
        openstack = OpenStackResource(build_settings(
            paths.shipped("conf", "openstack.conf"), neb.service.requests, reactor))

        status, body, headers = await call(openstack, "POST", "/identity/v3/auth/tokens",
                                           password_body("helen", "helenpass", "users"))
        self.assertEqual(status, 201, body)
        nova = {"X-Auth-Token": headers["x-subject-token"],
                "OpenStack-API-Version": "compute 2.79"}
        status, body, _ = await call(openstack, "POST", "/compute/v2.1/servers", {"server": {
            "name": "web", "flavorRef": "m1.small", "networks": "none",
            "imageRef": common.to_uuid("image", image_id)}}, nova)
        self.assertEqual(status, 202, body)
        sid = body["server"]["id"]
        vid = common.from_uuid("server", sid)

        ec2 = client(neb, "helen", "helenpass")
        iid = f"i-{vid}"
        await wait_states(self, ec2, [iid], "running")
        await ec2_call(ec2, "create_tags", Resources=[iid],
                       Tags=[{"Key": "tier", "Value": "web"}])
        info = etree.fromstring((await ok(neb, "one.vm.info", vid, session=HELEN)).encode())
        self.assertEqual(info.findtext("NAME"), "web")
        self.assertEqual(info.findtext("UID"), str(helen_id))
        self.assertEqual([(t.findtext("KEY"), t.findtext("VALUE"))
                          for t in info.findall("TEMPLATE/EC2_TAG")], [("tier", "web")])

        status, body, _ = await call(openstack, "DELETE", f"/compute/v2.1/servers/{sid}",
                                     None, nova)
        self.assertEqual(status, 204, body)
        await wait_states(self, ec2, [iid], "terminated")
        info = etree.fromstring((await ok(neb, "one.vm.info", vid, session=HELEN)).encode())
        self.assertEqual(info.findtext("STATE"), "6")  # DONE
