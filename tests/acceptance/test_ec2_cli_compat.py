"""Acceptance: the AWS CLI (``aws ec2``, unmodified, from PyPI) against the
EC2 front of a real ``twistd nebula`` where it and the front disagreed
(issue 11): two filters of one name AND, ``--max-results``/``NextToken``
pages, ``--tag-specifications`` and ``--placement`` at run-instances,
AWS-form ids that name nothing, unknown zones, describe-instance-status,
describe-images ``--owners`` and create-image."""

import hashlib
import json
import os
import subprocess

from twisted.trial import unittest

from tests.acceptance import test_ec2

HOST_MONITORED = 2


class AwsCliCompatTest(unittest.TestCase):

    setUp = test_ec2.EC2Test.setUp  # a daemon, its EC2 front on a free port, pyone
    ec2_listens = test_ec2.EC2Test.ec2_listens
    wait_for = test_ec2.EC2Test.wait_for

    def aws(self, *args, ok=True):
        """Run ``aws ec2 args... --output json`` as oneadmin; returns the
        parsed output, or with ``ok=False`` the stderr of a failure."""
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        env = dict(os.environ, AWS_ACCESS_KEY_ID="oneadmin",
                   AWS_SECRET_ACCESS_KEY=hashlib.sha1(b"onecloud").hexdigest(),
                   AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull,
                   AWS_SHARED_CREDENTIALS_FILE=os.devnull, HOME=home)
        done = subprocess.run(["aws", "--endpoint-url", self.url, "ec2", *args,
                               "--output", "json"], env=env, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
        if not ok:
            self.assertNotEqual(done.returncode, 0, f"aws ec2 {' '.join(args)} succeeded")
            return done.stderr
        self.assertEqual(done.returncode, 0,
                         f"aws ec2 {' '.join(args)}: {done.stderr}\n"
                         f"{self.daemon.diagnostics(15)}")
        return json.loads(done.stdout) if done.stdout.strip() else None

    def test_cli_session(self):
        rc, _, err = self.daemon.cli("onehost", "create", "host01", "im_dummy", "vmm_dummy",
                                     "tm_dummy")
        self.assertEqual((rc, err), (0, ""))
        disk = self.daemon.write_file("ttylinux.img", "boot sector" * 1000)
        tmpl = self.daemon.write_file("image.one", f'NAME = "ttylinux"\nPATH = {disk}\n')
        rc, _, err = self.daemon.cli("oneimage", "register", tmpl)
        self.assertEqual((rc, err), (0, ""))
        self.wait_for(lambda: [i["State"] for i in self.aws("describe-images")["Images"]]
                      == ["available"], "ami-00000000 available")
        self.assertEqual(self.aws("describe-images", "--owners", "amazon")["Images"], [])
        self.assertEqual([i["ImageId"] for i in
                          self.aws("describe-images", "--owners", "self")["Images"]],
                         ["ami-00000000"])
        self.wait_for(lambda: self.one.host.info(0).STATE == HOST_MONITORED, "host monitored")

        reply = self.aws("run-instances", "--image-id", "ami-00000000", "--count", "6",
                         "--instance-type", "m1.small",
                         "--placement", "AvailabilityZone=default",
                         "--tag-specifications",
                         "ResourceType=instance,Tags=[{Key=role,Value=api}]")
        ids = [i["InstanceId"] for i in reply["Instances"]]
        self.assertEqual(len(ids), 6)
        self.aws("create-tags", "--resources", ids[0], "--tags", "Key=colour,Value=green")
        both = self.aws("describe-instances", "--filters", "Name=tag-value,Values=api",
                        "Name=tag-value,Values=green",
                        "--query", "Reservations[].Instances[].InstanceId")
        self.assertEqual(both, [ids[0]])

        page = self.aws("describe-instances", "--no-paginate", "--max-results", "5")
        self.assertEqual(sum(len(r["Instances"]) for r in page["Reservations"]), 5)
        rest = self.aws("describe-instances", "--no-paginate", "--max-results", "5",
                        "--next-token", page["NextToken"],
                        "--query", "Reservations[].Instances[].InstanceId")
        self.assertEqual(rest, ids[5:])
        self.assertEqual(self.aws("describe-instances", "--page-size", "5",
                                  "--query", "Reservations[].Instances[].InstanceId"), ids)

        self.assertIn("InvalidInstanceID.NotFound",
                      self.aws("describe-instances", "--instance-ids", "i-1234abcd", ok=False))
        self.assertIn("InvalidParameterValue",
                      self.aws("describe-availability-zones", "--zone-names", "mars-1a",
                               ok=False))
        self.assertIn("InvalidParameterValue",
                      self.aws("run-instances", "--image-id", "ami-00000000",
                               "--placement", "AvailabilityZone=mars-1a", ok=False))
        zones = self.aws("describe-availability-zones")["AvailabilityZones"]
        self.assertEqual([(z["ZoneName"], z["ZoneId"]) for z in zones],
                         [("default", "default-az1")])

        self.wait_for(lambda: len(self.aws("describe-instance-status")["InstanceStatuses"])
                      == 6, "six instances running")
        saved = self.aws("create-image", "--instance-id", ids[0], "--name", "api v1")["ImageId"]
        self.aws("terminate-instances", "--instance-ids", *ids)
        self.wait_for(lambda: self.aws("describe-images", "--image-ids", saved)
                      ["Images"][0]["State"] == "available", f"{saved} available")
