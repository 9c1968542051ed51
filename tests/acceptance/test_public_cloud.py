"""Acceptance: issue 4's whole public-cloud session against a real
``twistd -n nebula``, with unmodified clients from PyPI, over HTTP and over
TLS (a certificate made by ``nebula-cert``, the front's ``LISTEN = ssl:...``).

A user who is not oneadmin:

1. makes a bucket and uploads a 100 MB image with the AWS CLI (``aws s3 cp``:
   multipart, since the CLI splits anything over 8 MB), lists it and
   downloads it again (same MD5);
2. registers the object as an image (``aws ec2 register-image`` with
   ``ImageLocation = bucket/key``): it is an image of the core pool, the one
   ``oneimage list`` shows;
3. runs two m1.small instances with boto3 (SigV4), sees them running with
   boto3 ``signature_version='v2'`` (SigV2), terminates them and sees them
   terminated;
4. is refused with a wrong secret, removes the object and the bucket, and
   nothing is left in the repository (IMAGE_DIR).
"""

import hashlib
import os
import subprocess

import boto3
import botocore.config

from tests.acceptance.cloud import CloudFrontTestCase

HOST_MONITORED = 2
USER, PASSWORD = "cloud", "cloudpass"
SECRET = hashlib.sha1(PASSWORD.encode()).hexdigest()
SIZE = 100 * 1024 * 1024


class PublicCloudSessionTest(CloudFrontTestCase):

    USER, PASSWORD = USER, PASSWORD

    def setUp(self):
        super().setUp()
        self.image = self.daemon.path("ttylinux.img")
        digest = hashlib.md5()
        with open(self.image, "wb") as f:
            block = os.urandom(1024 * 1024)
            for i in range(SIZE // len(block)):
                piece = bytes([i % 256]) + block[1:]
                digest.update(piece)
                f.write(piece)
        self.md5 = digest.hexdigest()

    def aws(self, url, *args, secret=SECRET, ok=True):
        """Run the AWS CLI as the user; returns stdout, or with ``ok=False``
        (rc, stderr); fails the test on an unexpected rc."""
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        env = dict(os.environ, AWS_ACCESS_KEY_ID=USER, AWS_SECRET_ACCESS_KEY=secret,
                   AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull,
                   AWS_SHARED_CREDENTIALS_FILE=os.devnull, HOME=home,
                   AWS_CA_BUNDLE=self.cert)
        done = subprocess.run(["aws", "--endpoint-url", url, *args], env=env,
                              capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
        if not ok:
            return done.returncode, done.stderr
        self.assertEqual(done.returncode, 0,
                         f"aws {' '.join(args)}: {done.stderr}\n{self.daemon.diagnostics(15)}")
        return done.stdout

    def ec2(self, url, v2=False):
        config = botocore.config.Config(retries={"max_attempts": 1},
                                        signature_version="v2" if v2 else None)
        c = boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                         aws_access_key_id=USER, aws_secret_access_key=SECRET,
                         config=config, verify=self.cert)
        self.addCleanup(c.close)
        return c

    @staticmethod
    def states(c, ids):
        reply = c.describe_instances(InstanceIds=ids)
        return {i["InstanceId"]: i["State"]["Name"]
                for r in reply["Reservations"] for i in r["Instances"]}

    def session(self, url):
        bucket = "images"
        self.assertEqual(self.aws(url, "s3", "mb", f"s3://{bucket}").strip(),
                         f"make_bucket: {bucket}")
        self.aws(url, "s3", "cp", self.image, f"s3://{bucket}/ttylinux.img")
        self.assertRegex(self.aws(url, "s3", "ls"), rf"(?m)^\S+ \S+ {bucket}$")
        self.assertRegex(self.aws(url, "s3", "ls", f"s3://{bucket}/"),
                         rf"(?m)^\S+ \S+ +{SIZE} ttylinux\.img$")
        back = os.path.abspath(self.mktemp())
        self.aws(url, "s3", "cp", f"s3://{bucket}/ttylinux.img", back)
        digest = hashlib.md5()
        with open(back, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        self.assertEqual(digest.hexdigest(), self.md5)

        ami = self.aws(url, "ec2", "register-image", "--name", "ttylinux",
                       "--image-location", f"{bucket}/ttylinux.img",
                       "--query", "ImageId", "--output", "text").strip()
        self.assertRegex(ami, r"^ami-[0-9]{8}$")
        image = self.one.image.info(int(ami[4:]))
        self.assertEqual((image.NAME, image.UNAME), ("ttylinux", USER))

        c, v2 = self.ec2(url), self.ec2(url, v2=True)
        self.wait_for(lambda: [i["State"] for i in
                               c.describe_images(ImageIds=[ami])["Images"]] == ["available"],
                      f"{ami} available")
        self.wait_for(lambda: self.one.host.info(0).STATE == HOST_MONITORED, "host monitored")
        reply = c.run_instances(ImageId=ami, InstanceType="m1.small", MinCount=2, MaxCount=2)
        ids = [i["InstanceId"] for i in reply["Instances"]]
        self.assertEqual(len(ids), 2)
        self.assertEqual({i["InstanceType"] for i in reply["Instances"]}, {"m1.small"})
        self.wait_for(lambda: set(self.states(v2, ids).values()) == {"running"},
                      "both running")
        terminated = v2.terminate_instances(InstanceIds=ids)["TerminatingInstances"]
        self.assertEqual({t["PreviousState"]["Name"] for t in terminated}, {"running"})
        self.wait_for(lambda: self.states(c, ids) == dict.fromkeys(ids, "terminated"),
                      "both terminated")

        rc, err = self.aws(url, "s3", "ls", f"s3://{bucket}/", secret="0" * 40, ok=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("SignatureDoesNotMatch", err)
        self.assertIn(f"delete: s3://{bucket}/ttylinux.img",
                      self.aws(url, "s3", "rm", f"s3://{bucket}/ttylinux.img"))
        self.assertEqual(self.aws(url, "s3", "rb", f"s3://{bucket}").strip(),
                         f"remove_bucket: {bucket}")
        self.assertEqual(self.aws(url, "s3", "ls").strip(), "")
        image_dir = self.daemon.path("var", "econe")
        left = [os.path.join(d, n) for d, _, names in os.walk(image_dir) for n in names]
        self.assertEqual(left, [])
        # The image was copied into the image repository: it outlives the object.
        self.assertEqual(c.describe_images(ImageIds=[ami])["Images"][0]["State"], "available")

    def test_over_http(self):
        self.session(f"http://127.0.0.1:{self.http_port}")

    def test_over_tls(self):
        self.session(f"https://127.0.0.1:{self.tls_port}")
