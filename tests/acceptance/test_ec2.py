"""Acceptance: the EC2 Query front of a real ``twistd nebula`` with boto3
(SigV4, and ``signature_version='v2'``), unmodified, as a public-cloud user
would: list the image, run two m1.small instances, see them running,
terminate them and see them terminated (issue 4, first slice; the image is
registered with ``oneimage`` since UploadImage/RegisterImage come later)."""

import hashlib
import socket

import boto3
import botocore.config
import pyone
from botocore.exceptions import ClientError
from twisted.trial import unittest

from tests.acceptance.test_seed000 import ADMIN_SESSION, FAST, NebulaDaemon, free_port

HOST_MONITORED = 2


class EC2Test(unittest.TestCase):

    def setUp(self):
        self.ec2_port = free_port()
        self.daemon = NebulaDaemon(self.mktemp(), list(FAST) + [f"econe.PORT={self.ec2_port}"])
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.wait_for(self.ec2_listens, "the EC2 front listening")
        self.one = pyone.OneServer(self.daemon.endpoint, session=ADMIN_SESSION)
        self.url = f"http://127.0.0.1:{self.ec2_port}/"

    def ec2_listens(self):
        try:
            socket.create_connection(("127.0.0.1", self.ec2_port), timeout=1).close()
            return True
        except OSError:
            return False

    def wait_for(self, predicate, message):
        return self.daemon.wait_for(
            predicate, message=lambda: f"{message}\n{self.daemon.diagnostics(25)}")

    def client(self, secret="onecloud", v2=False):
        config = botocore.config.Config(retries={"max_attempts": 1},
                                        signature_version="v2" if v2 else None)
        c = boto3.client("ec2", endpoint_url=self.url, region_name="us-east-1",
                         aws_access_key_id="oneadmin",
                         aws_secret_access_key=hashlib.sha1(secret.encode()).hexdigest(),
                         config=config)
        self.addCleanup(c.close)
        return c

    def states(self, c):
        reply = c.describe_instances()
        return {i["InstanceId"]: i["State"]["Name"]
                for r in reply["Reservations"] for i in r["Instances"]}

    def test_run_two_small_instances(self):
        rc, _, err = self.daemon.cli("onehost", "create", "host01", "im_dummy", "vmm_dummy",
                                     "tm_dummy")
        self.assertEqual((rc, err), (0, ""))
        disk = self.daemon.write_file("ttylinux.img", "boot sector" * 1000)
        tmpl = self.daemon.write_file("image.one", f'NAME = "ttylinux"\nPATH = {disk}\n')
        rc, _, err = self.daemon.cli("oneimage", "register", tmpl)
        self.assertEqual((rc, err), (0, ""))
        c, v2 = self.client(), self.client(v2=True)
        self.wait_for(lambda: [i["State"] for i in c.describe_images()["Images"]]
                      == ["available"], "ami-00000000 available")
        self.assertEqual([i["ImageId"] for i in v2.describe_images()["Images"]],
                         ["ami-00000000"])
        with self.assertRaises(ClientError) as caught:
            self.client("wrong").run_instances(ImageId="ami-00000000", InstanceType="m1.small",
                                               MinCount=2, MaxCount=2)
        self.assertEqual(caught.exception.response["Error"]["Code"], "AuthFailure")
        self.assertEqual(self.states(c), {})

        self.wait_for(lambda: self.one.host.info(0).STATE == HOST_MONITORED, "host monitored")
        reply = c.run_instances(ImageId="ami-00000000", InstanceType="m1.small",
                                MinCount=2, MaxCount=2)
        ids = [i["InstanceId"] for i in reply["Instances"]]
        self.assertEqual(len(ids), 2)
        self.wait_for(lambda: set(self.states(v2).values()) == {"running"}, "both running")
        terminated = c.terminate_instances(InstanceIds=ids)["TerminatingInstances"]
        self.assertEqual({t["CurrentState"]["Name"] for t in terminated}, {"shutting-down"})
        self.wait_for(lambda: self.states(c) == dict.fromkeys(ids, "terminated"),
                      "both terminated")
